/*
 * natkit CLI, `accept` / `dial`: the data phase.
 *
 *   TCP  stdin -> nk_tcp_stream; end of stdin -> its end-of-stream record. Done when our
 *        direction is shut and flushed and the peer's end-of-stream record was read.
 *   UDP  stdin -> session messages 'D' | bytes; end of stdin -> 'E'. Done when our 'E' went
 *        out and every message was acknowledged, and the peer's 'E' arrived (it may still be
 *        sending after we finished: we wait, as long as the session lives).
 *   The side that decides on UDP (--udp-only, no listener, TCP failed, no announcement)
 *   sends 'U' first, so the other side follows instead of waiting for TCP.
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
    if (st->s != NULL)
        nk_session_send(st->s, &m, 1); /* the queue is empty of data at this point: it fits */
}

static void write_out(dstate *st, const uint8_t *p, size_t n)
{
    fwrite(p, 1, n, stdout);
    st->received += n;
}

static void peer_finished(dstate *st)
{
    if (!st->peer_done)
        say(st, "the peer finished sending");
    st->peer_done = 1;
}

/* A session message that is not an upgrade message. */
void direct_on_message(dstate *st, const uint8_t *p, size_t n, int64_t now)
{
    if (st->tcp_up)
        return; /* both sides chose TCP: the session carries no data */
    if (p[0] == MSG_DATA)
        write_out(st, p + 1, n - 1);
    else if (p[0] == MSG_END && n == 1)
        peer_finished(st);
    else if (p[0] == MSG_UDP && n == 1 && !st->udp_fallback) {
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

/* The session closed before we were done. Once TCP is up the session no longer matters. A peer
 * closes on its own only after our 'E' arrived, so with its 'E' in hand nothing was lost. */
void direct_on_closed(dstate *st, int err, int64_t now)
{
    if (st->tcp_up || st->done)
        return;
    say(st, "the session closed: %s",
        err == NK_ERR_CLOSED ? "closed by the peer" : err == 0 ? "closed here" : nk_strerror(err));
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

static void push_udp(dstate *st, int64_t now)
{
    uint8_t msg[UDP_CHUNK + 1];
    while (st->in_len > 0) {
        size_t c = st->in_len < UDP_CHUNK ? st->in_len : UDP_CHUNK;
        msg[0] = MSG_DATA;
        memcpy(msg + 1, st->in + st->in_off, c);
        if (nk_session_send(st->s, msg, c + 1) != 0)
            break;
        st->in_off += c;
        st->in_len -= c;
        st->sent += c;
    }
    msg[0] = MSG_END;
    if (!st->stdin_open && st->in_len == 0 && !st->end_sent && nk_session_send(st->s, msg, 1) == 0)
        st->end_sent = 1;
    direct_flush_session(st, now);
    if (st->end_sent && nk_session_unacked(st->s) == 0)
        st->shut = 1;
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
    fflush(stdout);
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
    } else if (st->udp_fallback && st->session_up && !st->done) {
        push_udp(st, now);
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
    else if (st->s != NULL)
        ours_left |= nk_session_unacked(st->s) > 0;
    int theirs_left = st->session_up && !st->peer_done;
    if (!ours_left && !theirs_left) {
        say(st, "stopped by a signal; nothing was lost");
        return CLI_EXIT_OK;
    }
    say(st, "stopped by a signal before the transfer finished: %s", ours_left ? "our data was not all delivered"
                                                                               : "the peer had not finished sending");
    return CLI_EXIT_FAIL;
}
