/*
 * natkit CLI, `accept` / `dial`: the data phase.
 *
 *   TCP  stdin -> nk_tcp_stream; end of stdin -> its end-of-stream record. Done when our
 *        direction is shut and flushed and the peer's end-of-stream record was read.
 *   UDP  stdin -> our QUIC data stream (raw bytes, QUIC's flow and congestion control, no
 *        loss); end of stdin -> its FIN. Done when our stream finished both ways (every byte
 *        and the FIN acknowledged by the peer) and the peer's FIN was read (it may still be
 *        sending after we finished: we wait, as long as the connection lives).
 *   The side that decides on UDP (--udp-only, no listener, TCP failed, no announcement)
 *   sends 'U' on its control stream first, so the other side follows instead of waiting
 *   for TCP.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "direct_internal.h"

#define say direct_say

void direct_go_udp(dstate *st, int64_t now)
{
    uint8_t m = MSG_UDP;
    if (st->udp_fallback || st->tcp_up)
        return;
    st->udp_fallback = 1;
    st->data_ms = now;
    direct_close_tcp_setup(st);
    if (st->q == NULL)
        return;
    direct_ctl_send(st, &m, 1);
    if (nk_quic_stream_open(st->q, &st->dat_tx) != 0) {
        say(st, "cannot open the data stream");
        direct_fail(st, CLI_EXIT_FAIL);
    }
}

static void write_out(dstate *st, const uint8_t *p, size_t n)
{
    fwrite(p, 1, n, stdout);
    st->received += n;
}

/* What write_out gave stdout is out; a failed write (a closed pipe, a full disk) lost the peer's
 * bytes: the transfer fails (exit 1) instead of ending as if they had arrived. 0 or -1. */
static int flush_out(dstate *st)
{
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    say(st, "writing stdout failed: %s", strerror(errno));
    direct_fail(st, CLI_EXIT_FAIL);
    return -1;
}

static void peer_finished(dstate *st)
{
    if (!st->peer_done)
        say(st, "the peer finished sending");
    st->peer_done = 1;
}

/* A control message that is not an upgrade message. */
void direct_on_message(dstate *st, const uint8_t *p, size_t n, int64_t now)
{
    if (st->tcp_up)
        return; /* both sides chose TCP: UDP carries no data */
    if (p[0] == MSG_UDP && n == 1 && !st->udp_fallback) {
        say(st, "the %s carries the data over the UDP session: so do we", st->o->acceptor ? "dialer" : "acceptor");
        direct_go_udp(st, now);
    }
}

static void report_throughput(dstate *st, int64_t now)
{
    double secs = (double)(now - st->data_ms) / 1000.0;
    if (secs <= 0)
        secs = 0.001;
    say(st, "%s: sent %llu bytes, received %llu bytes in %.3f s (%.1f MB/s total)", st->tcp_up ? "TCP" : "UDP",
        (unsigned long long)st->sent, (unsigned long long)st->received, secs,
        (double)(st->sent + st->received) / 1e6 / secs);
}

/* The QUIC connection closed before we were done. Once TCP is up it no longer matters. A peer
 * closes on its own only after it read our FIN, so with its FIN read (what it sent before its
 * close is still here to read) nothing was lost. */
void direct_on_closed(dstate *st, const nk_quic_event *ev, int64_t now)
{
    if (st->tcp_up || st->done)
        return;
    if (st->udp_fallback)
        direct_pull_udp(st);
    say(st, "the session closed: %s (%s)",
        ev->err == NK_ERR_CLOSED ? "closed by the peer" : ev->err == 0 ? "closed here" : nk_strerror(ev->err),
        ev->reason);
    if (st->udp_fallback && st->peer_done && st->end_sent) {
        report_throughput(st, now);
        direct_fail(st, CLI_EXIT_OK);
        return;
    }
    direct_fail(st, CLI_EXIT_FAIL);
}

void direct_read_stdin(dstate *st)
{
    ssize_t n = read(STDIN_FILENO, st->in, sizeof(st->in));
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
        st->stdin_open = 0;
    if (n > 0) {
        st->in_off = 0;
        st->in_len = (size_t)n;
    }
}

static void push_tcp(dstate *st)
{
    while (st->in_len > 0) {
        int rc = nk_tcp_stream_write(st->ts, st->in + st->in_off, st->in_len);
        if (rc <= 0)
            break;
        st->in_off += (size_t)rc;
        st->in_len -= (size_t)rc;
        st->sent += (uint64_t)rc;
    }
    if (!st->stdin_open && st->in_len == 0 && !st->shut && nk_tcp_stream_shutdown(st->ts) == 0)
        st->shut = 1;
}

static void push_udp(dstate *st)
{
    uint8_t buf[64];
    while (st->in_len > 0) {
        int rc = nk_quic_stream_write(st->q, st->dat_tx, st->in + st->in_off, st->in_len);
        if (rc <= 0)
            break; /* no room: a WRITABLE event follows; stdin waits meanwhile */
        st->in_off += (size_t)rc;
        st->in_len -= (size_t)rc;
        st->sent += (uint64_t)rc;
    }
    if (!st->stdin_open && st->in_len == 0 && !st->end_sent && nk_quic_stream_shutdown(st->q, st->dat_tx) == 0)
        st->end_sent = 1;
    /* Our stream is forgotten (NOT_FOUND) once it finished both ways: our bytes and FIN were
     * acknowledged and the peer's empty FIN in the other direction was read. */
    if (st->end_sent && !st->dat_tx_done &&
        nk_quic_stream_read(st->q, st->dat_tx, buf, sizeof(buf)) == NK_ERR_NOT_FOUND)
        st->dat_tx_done = st->shut = 1;
}

/* The peer's data stream -> stdout, until its FIN. */
void direct_pull_udp(dstate *st)
{
    static uint8_t buf[65536];
    int rc;
    if (st->dat_rx < 0 || st->peer_done)
        return;
    while ((rc = nk_quic_stream_read(st->q, st->dat_rx, buf, sizeof(buf))) > 0)
        write_out(st, buf, (size_t)rc);
    if (flush_out(st) != 0)
        return;
    if (rc == 0 || rc == NK_ERR_NOT_FOUND)
        peer_finished(st);
    else if (rc == NK_ERR_CLOSED) {
        say(st, "the peer abandoned its data stream");
        direct_fail(st, CLI_EXIT_FAIL);
    }
}

static void pull_tcp(dstate *st)
{
    uint8_t buf[65536];
    int rc = 0, n, moved = 1;
    /* reading makes room in the seal, which may take what the driver holds or the kernel has: again */
    for (int round = 0; round < 32 && moved && rc == 0; round++) {
        moved = 0;
        rc = nk_tcp_stream_pump(st->ts);
        while (rc == 0 && (n = nk_tcp_stream_read(st->ts, buf, sizeof(buf))) > 0) {
            write_out(st, buf, (size_t)n);
            moved = 1;
        }
    }
    if (flush_out(st) != 0)
        return;
    if (rc == 0)
        rc = nk_tcp_stream_read(st->ts, buf, sizeof(buf));
    if (rc == NK_ERR_CLOSED) {
        peer_finished(st);
    } else if (rc != NK_ERR_AGAIN && rc != 0) {
        say(st, "TCP stream failed: %s", nk_strerror(rc));
        direct_fail(st, CLI_EXIT_FAIL);
    }
}

void direct_drive_data(dstate *st, int64_t now)
{
    if (st->tcp_up) {
        pull_tcp(st);
        if (!st->done)
            push_tcp(st);
        if (st->shut && st->peer_done && nk_tcp_stream_flushed(st->ts)) {
            report_throughput(st, now);
            st->done = 1;
        }
    } else if (st->udp_fallback && st->session_up && !st->done && st->dat_tx >= 0) {
        direct_pull_udp(st);
        push_udp(st);
        if (st->shut && st->peer_done) {
            report_throughput(st, now);
            st->done = 1;
        }
    }
}

/* Stopped by SIGINT/SIGTERM: exit 0 only when nothing was lost, i.e. every byte taken from stdin
 * was delivered (UDP: acknowledged; TCP: handed to the kernel) and the peer, if there was one, had
 * ended its direction. Waiting for a dialer with nothing read is not a loss. */
int direct_stop_status(dstate *st)
{
    const uint8_t *p;
    int ours_left = st->in_len > 0;
    if (st->tcp_up)
        ours_left |= nk_tcpseal_pending(nk_tcp_stream_seal(st->ts), &p) > 0;
    else if (st->q != NULL && st->dat_tx >= 0)
        ours_left |= nk_quic_stream_unacked(st->q, st->dat_tx) > 0;
    int theirs_left = st->session_up && !st->peer_done;
    if (!ours_left && !theirs_left) {
        say(st, "stopped by a signal; nothing was lost");
        return CLI_EXIT_OK;
    }
    say(st, "stopped by a signal before the transfer finished: %s", ours_left ? "our data was not all delivered"
                                                                               : "the peer had not finished sending");
    return CLI_EXIT_FAIL;
}
