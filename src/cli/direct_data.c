/*
 * natkit CLI, `accept` / `dial`: the data phase.
 *
 *   One fwd_pump (fwd.h, the pump of connect/listen) moves stdin -> the carrier -> the peer and
 *   the peer -> stdout, non-blocking both ways with backpressure end to end: stdin is read when
 *   the carrier took the last read, the carrier is read when stdout took the last bytes (a stdout
 *   nobody reads holds the peer back through QUIC's flow control or TCP's window).
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

static void peer_finished(dstate *st)
{
    if (!st->peer_done)
        say(st, "the peer finished sending");
    st->peer_done = 1;
}

/* A control message that is not an upgrade message: the peer's "delivered" for our data (fwd.h), or
 * 'U'. */
void direct_on_message(dstate *st, const uint8_t *p, size_t n, int64_t now)
{
    int64_t sid;
    int dk = fwd_delivered_parse(p, n, &sid);
    if (dk != 0) { /* a malformed one is ignored */
        if (dk > 0 && st->io_ready && sid == (st->tcp_up ? FWD_DELIVERED_TCP : st->dat_tx))
            fwd_pump_on_delivered(&st->io);
        return;
    }
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
    uint64_t sent = st->io.bytes_up, received = st->io.bytes_down;
    say(st, "%s: sent %llu bytes, received %llu bytes in %.3f s (%.1f MB/s total)", st->tcp_up ? "TCP" : "UDP",
        (unsigned long long)sent, (unsigned long long)received, secs, (double)(sent + received) / 1e6 / secs);
}

/* The run ends without the peer's word that it has everything: exit 1, saying what was and was
 * not confirmed (why: what happened). */
static void lost_peer(dstate *st, const char *why)
{
    const fwd_pump *p = &st->io;
    unsigned long long up = p->bytes_up, down = p->bytes_down;
    say(st, "lost the peer before the transfer ended (%s): %s %llu bytes %s, %s (%llu bytes received)", why,
        !p->fin_sent ? "our data had not ended:" : p->delivered ? "the peer had confirmed that our" : "the peer had not confirmed that our",
        up, !p->fin_sent ? "sent so far" : "and their end reached its output",
        st->peer_done ? "its data had ended and is all on our stdout" : "its data had not ended", down);
    direct_fail(st, CLI_EXIT_FAIL);
}

/* The QUIC connection closed before we were done. It carries the peer's "delivered" (TCP too), so
 * the run cannot end well without it. A peer closes on its own only once it is done (it had our
 * FIN, and this version also our "delivered"), so with our FIN sent the pump drains what the peer
 * sent before its close (still here to read) to stdout; direct_drive_data ends the run once the
 * peer's data has ended: 0 when the peer had confirmed ours, else 1. */
void direct_on_closed(dstate *st, const nk_quic_event *ev, int64_t now)
{
    char why[sizeof(st->closed_why)];
    (void)now;
    if (st->done || st->closed)
        return;
    size_t rl = strlen(ev->reason);
    if (ev->err == NK_ERR_CLOSED && rl > 0) /* "peer closed[: PHRASE]" (an empty phrase: none) */
        snprintf(why, sizeof(why), "the session closed: %.*s", (int)(rl >= 2 && strcmp(ev->reason + rl - 2, ": ") == 0 ? rl - 2 : rl),
                 ev->reason);
    else
        snprintf(why, sizeof(why), "the session closed: %s (%s)",
                 ev->err == NK_ERR_CLOSED ? "closed by the peer" : ev->err == 0 ? "closed here" : nk_strerror(ev->err),
                 ev->reason);
    snprintf(st->closed_why, sizeof(st->closed_why), "%s", why);
    if (st->io_ready && st->io.fin_sent) {
        st->closed = 1;
        return;
    }
    if (st->io_ready) {
        lost_peer(st, why);
        return;
    }
    say(st, "%s", why);
    direct_fail(st, CLI_EXIT_FAIL);
}

/* ---- the carriers of the pump (fwd.h) ---- */

/* Both carriers: the peer's data and its end are on stdout: "delivered" on our control stream, for
 * the peer's data stream (UDP) or the sealed TCP stream. */
static int tell_delivered(void *ctx)
{
    dstate *st = ctx;
    uint8_t msg[FWD_DELIVERED_MAX];
    int64_t sid = st->tcp_up ? FWD_DELIVERED_TCP : st->dat_rx;
    size_t n = sid == FWD_DELIVERED_TCP || sid >= 0 ? fwd_delivered_put(msg, sizeof(msg), sid) : 0;
    return n > 0 ? direct_ctl_send(st, msg, n) : 0;
}

/* UDP: ours is our data stream, theirs the peer's (each side sends only on its own). */
static int udp_write(void *ctx, const uint8_t *b, size_t n)
{
    dstate *st = ctx;
    int k = nk_quic_stream_write(st->q, st->dat_tx, b, n);
    return k == NK_ERR_AGAIN ? 0 : k;
}

static int udp_read(void *ctx, uint8_t *b, size_t cap)
{
    dstate *st = ctx;
    int rc = st->dat_rx < 0 ? NK_ERR_AGAIN : nk_quic_stream_read(st->q, st->dat_rx, b, cap);
    if (rc == NK_ERR_NOT_FOUND)
        rc = 0; /* finished and forgotten: its FIN was read */
    if (rc < 0 && rc != NK_ERR_AGAIN)
        st->carrier_err = rc;
    st->rx_again = rc == NK_ERR_AGAIN;
    return rc;
}

static void udp_shutdown(void *ctx)
{
    dstate *st = ctx;
    nk_quic_stream_shutdown(st->q, st->dat_tx);
}

/* After our FIN: 0 once our stream is forgotten (NOT_FOUND), i.e. it finished both ways: our bytes
 * and FIN were acknowledged and the peer's empty FIN in the other direction was read. */
static size_t udp_unacked(void *ctx)
{
    dstate *st = ctx;
    uint8_t b[64];
    size_t n = nk_quic_stream_unacked(st->q, st->dat_tx);
    if (n > 0 || !st->io.fin_sent)
        return n;
    return nk_quic_stream_read(st->q, st->dat_tx, b, sizeof(b)) == NK_ERR_NOT_FOUND ? 0 : 1;
}

/* TCP: the sealed stream; its end-of-stream record is the FIN. */
static int tcp_write(void *ctx, const uint8_t *b, size_t n)
{
    dstate *st = ctx;
    int k = nk_tcp_stream_write(st->ts, b, n);
    if (k < 0 && k != NK_ERR_AGAIN)
        st->carrier_err = k;
    return k == NK_ERR_AGAIN ? 0 : k;
}

static int tcp_read(void *ctx, uint8_t *b, size_t cap)
{
    dstate *st = ctx;
    int rc = nk_tcp_stream_pump(st->ts); /* reading made room in the seal: it takes what waits */
    if (rc == 0)
        rc = nk_tcp_stream_read(st->ts, b, cap);
    if (rc == NK_ERR_CLOSED)
        rc = 0; /* the peer's end-of-stream record */
    if (rc < 0 && rc != NK_ERR_AGAIN)
        st->carrier_err = rc;
    st->rx_again = rc == NK_ERR_AGAIN;
    return rc;
}

static void tcp_shutdown(void *ctx)
{
    dstate *st = ctx;
    st->tcp_shut = nk_tcp_stream_shutdown(st->ts) == 0; /* no room for the record: tcp_unacked retries */
}

/* Ours is delivered once the end-of-stream record is sealed and every byte went to the kernel. */
static size_t tcp_unacked(void *ctx)
{
    dstate *st = ctx;
    if (st->io.fin_sent && !st->tcp_shut)
        tcp_shutdown(st);
    return (!st->io.fin_sent || st->tcp_shut) && nk_tcp_stream_flushed(st->ts) ? 0 : 1;
}

int direct_io_init(dstate *st)
{
    if (fwd_pump_init(&st->io, STDIN_FILENO, STDOUT_FILENO, 0) != 0)
        return -1;
    st->io.out_kind = fwd_out_kind(STDOUT_FILENO); /* stdout is written without blocking the loop */
    return 0;
}

/* The pump gets its carrier once the data phase has one. */
static void start_io(dstate *st)
{
    if (st->io_ready || st->done)
        return;
    if (st->tcp_up)
        st->carrier = (fwd_carrier){tcp_write, tcp_read, tcp_shutdown, tcp_unacked, tell_delivered, st};
    else if (st->udp_fallback && st->session_up && st->dat_tx >= 0)
        st->carrier = (fwd_carrier){udp_write, udp_read, udp_shutdown, udp_unacked, tell_delivered, st};
    else
        return;
    fwd_pump_set_carrier(&st->io, &st->carrier);
    st->io_ready = 1;
}

void direct_io_wants(const dstate *st, short *in_events, short *out_events)
{
    *in_events = *out_events = 0;
    if (st->io_ready && !st->done)
        fwd_pump_wants(&st->io, in_events, out_events);
}

/* More of the peer's bytes may be waiting (the last read did not say "nothing now"): no sleeping. */
int direct_io_busy(const dstate *st)
{
    return st->io_ready && !st->done && !st->io.failed && !st->io.peer_fin && st->io.down_len == 0 && !st->rx_again;
}

void direct_drive_data(dstate *st, short in_revents, short out_revents, int64_t now)
{
    start_io(st);
    if (!st->io_ready || st->done)
        return;
    if (st->tcp_up) {
        /* the socket is served every turn, not only when the pump reads: sealed bytes (and our
         * end-of-stream record) go to the kernel while stdout holds the reading back */
        int rc = nk_tcp_stream_pump(st->ts);
        if (rc != 0 && !st->io.failed) {
            st->carrier_err = rc;
            fwd_pump_abort(&st->io, FWD_ERR_RESET, "the TCP stream failed");
        }
        if (st->io.fin_sent && !st->tcp_shut)
            tcp_shutdown(st);
    }
    fwd_pump_run(&st->io, in_revents, out_revents);
    if (st->io.failed) {
        char why[128];
        if (st->io.sys_errno != 0)
            snprintf(why, sizeof(why), "%s: %s", st->io.why, strerror(st->io.sys_errno));
        else if (st->carrier_err != 0)
            snprintf(why, sizeof(why), "%s stream failed: %s", st->tcp_up ? "TCP" : "the peer's data",
                     nk_strerror(st->carrier_err));
        else
            snprintf(why, sizeof(why), "the data stream failed: %s", st->io.why);
        if (st->carrier_err != 0 && st->io.sys_errno == 0)
            lost_peer(st, st->closed ? st->closed_why : why); /* the peer went away (reset, cut short) */
        else {
            say(st, "%s", why);
            direct_fail(st, CLI_EXIT_FAIL);
        }
        return;
    }
    if (st->io.out_shut)
        peer_finished(st); /* its end came and everything before it is on stdout */
    if (!st->said_waiting && !st->closed && st->io.bytes_up > 0 && st->io.fin_sent && !st->io.delivered &&
        fwd_pump_unacked(&st->io) == 0) {
        st->said_waiting = 1;
        say(st, "all %llu bytes and our end went out; waiting for the peer to confirm that they reached its output",
            (unsigned long long)st->io.bytes_up);
    }
    if (st->closed && !st->tcp_up && !st->peer_done && st->io.down_len == 0 && st->rx_again) {
        lost_peer(st, st->closed_why); /* UDP: what the peer sent before its close is all read */
        return;
    }
    if (st->closed && st->peer_done && !st->io.delivered) {
        lost_peer(st, st->closed_why);
        return;
    }
    /* done: the peer confirmed that our data reached its output, and got our confirmation (it closes
     * once it has it, or we saw it acknowledged) */
    if (st->closed ? st->peer_done : fwd_pump_done(&st->io) && direct_ctl_acked(st)) {
        report_throughput(st, now);
        direct_fail(st, CLI_EXIT_OK);
    }
}

/* Stopped by SIGINT/SIGTERM: exit 0 only when nothing was lost, i.e. the peer confirmed that every
 * byte taken from stdin reached its output ("delivered") and the peer, if there was one, had ended
 * its direction. Waiting for a dialer with nothing read is not a loss. */
int direct_stop_status(dstate *st)
{
    int ours_left = st->io_ready && (st->io.up_len > 0 || (st->io.bytes_up > 0 && !st->io.delivered));
    int theirs_left = st->session_up && !st->peer_done;
    if (!ours_left && !theirs_left) {
        say(st, "stopped by a signal; nothing was lost");
        return CLI_EXIT_OK;
    }
    say(st, "stopped by a signal before the transfer finished: %s",
        ours_left ? "the peer had not confirmed that our bytes reached its output"
                  : "the peer's data had not all reached our stdout");
    return CLI_EXIT_FAIL;
}
