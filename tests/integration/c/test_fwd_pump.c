/*
 * The CLI's byte pump (src/cli/fwd.c) between a socket and a QUIC stream, in one process:
 * two nk_node_drivers on loopback UDP, a connection between them, and on each side a pump
 * whose descriptor is one end of a socketpair the test holds the other end of.
 * - 3 MB one way, the writer half-closes: the bytes arrive whole and in order, then EOF;
 *   the other way 1 MB after that (half-close both ways), both pumps done;
 * - backpressure: while the far reader reads nothing, the near pump stops reading its socket
 *   (the test's writes hit EAGAIN) and what waits in the stream stays bounded; then it drains;
 * - a reset (fwd_pump_abort) reaches the other pump as a failure with its reason;
 * - a pump whose bytes are all acknowledged is not done before the peer's "delivered" arrives.
 * The preamble parser and the "delivered" message's spellings, in memory: tests/unit/test_fwd.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fwd.h"
#include "natkit/node_driver.h"
#include "loopback.h"

typedef struct side {
    nk_node_driver *d;
    nk_identity id;
    nk_addr local;
    nk_conn *conn;
    int connected;
    int sp[2];           /* sp[0]: the pump's fd, sp[1]: the test's */
    fwd_pump pump;
    int has_stream;
    uint8_t pre[FWD_PREAMBLE_LEN];
    size_t pre_have;
    int kind;
    int hold_msgs;       /* messages are not read (a "delivered" waits in the connection) */
} side;

/* The "delivered" messages for the pump's stream, as p2p.c routes them. */
static void read_msgs(side *s, nk_conn *c)
{
    uint8_t m[256];
    int n;
    int64_t sid;
    while ((n = nk_conn_recv(c, m, sizeof(m))) >= 0)
        if (fwd_delivered_parse(m, (size_t)n, &sid) == 1 && sid == s->pump.sid)
            fwd_pump_on_delivered(&s->pump);
}

static void on_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    side *s = ctx;
    (void)d;
    switch (ev->type) {
    case NK_NODE_EV_CONNECTED:
        s->connected = 1;
        s->conn = ev->conn;
        break;
    case NK_NODE_EV_STREAM_OPENED:
        fwd_pump_set_stream(&s->pump, ev->conn, ev->stream_id);
        s->has_stream = 1;
        break;
    case NK_NODE_EV_STREAM_READABLE:
        if (s->has_stream && s->kind == 0) { /* the preamble first, as listen does */
            uint8_t b[FWD_PREAMBLE_LEN];
            int n = nk_conn_stream_read(ev->conn, ev->stream_id, b, FWD_PREAMBLE_LEN - s->pre_have);
            if (n > 0)
                fwd_preamble_feed(s->pre, &s->pre_have, b, (size_t)n, &s->kind);
        }
        fwd_pump_on_readable(&s->pump);
        break;
    case NK_NODE_EV_STREAM_RESET:
        fwd_pump_on_reset(&s->pump, ev->app_error);
        break;
    case NK_NODE_EV_READABLE:
        if (!s->hold_msgs)
            read_msgs(s, ev->conn);
        break;
    default:
        break;
    }
}

static void side_open(side *s)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(loopback_node_open(&s->d, &s->id, &s->local, on_event, s), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s->sp), 0);
    int small = 64 * 1024; /* small socket buffers: backpressure shows quickly */
    setsockopt(s->sp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(s->sp[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(fwd_pump_init(&s->pump, s->sp[0], s->sp[0], 1), 0);
}

static void side_close(side *s)
{
    fwd_pump_free(&s->pump);
    close(s->sp[0]);
    close(s->sp[1]);
    nk_node_driver_free(s->d);
    nk_identity_wipe(&s->id);
}

/* One turn of both loops: the nodes, then the pumps (with their fds polled at once). */
static void turn(side *a, side *b)
{
    side *s2[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        side *s = s2[i];
        short ie, oe;
        fwd_pump_wants(&s->pump, &ie, &oe);
        struct pollfd pf = {.fd = s->sp[0], .events = (short)(ie | oe)};
        nk_node_driver_poll_fds(s->d, 1, &pf, 1);
        if (s->has_stream && s->kind != 0)
            fwd_pump_run(&s->pump, pf.revents, pf.revents);
    }
}

static void connect_pair(side *a, side *b)
{
    nk_conn *ca, *cb;
    int64_t now = nk_node_driver_now();
    assert_int_equal(nk_node_connect_direct(nk_node_driver_node(a->d), now, &b->id.id, &b->local, &ca), 0);
    assert_int_equal(nk_node_connect_direct(nk_node_driver_node(b->d), now, &a->id.id, &a->local, &cb), 0);
    int64_t end = nk_node_driver_now() + 10000;
    while ((!a->connected || !b->connected) && nk_node_driver_now() < end)
        turn(a, b);
    assert_true(a->connected && b->connected);
    /* the client opens the stream with the preamble (as connect does) */
    side *c = nk_conn_is_client(a->conn) ? a : b;
    int64_t sid;
    assert_int_equal(nk_conn_stream_open(c->conn, &sid), 0);
    uint8_t pre[FWD_PREAMBLE_LEN];
    fwd_preamble_put(pre, FWD_KIND_FORWARD);
    assert_int_equal(nk_conn_stream_write(c->conn, sid, pre, sizeof(pre)), FWD_PREAMBLE_LEN);
    fwd_pump_set_stream(&c->pump, c->conn, sid);
    c->has_stream = 1;
    c->kind = FWD_KIND_FORWARD;
    side *srv = c == a ? b : a;
    while (srv->kind == 0 && nk_node_driver_now() < end)
        turn(a, b);
    assert_int_equal(srv->kind, FWD_KIND_FORWARD);
}

/* Two sides, connected, with the forwarding stream open. */
static void pair_open(side *a, side *b)
{
    side_open(a);
    side_open(b);
    connect_pair(a, b);
}

static void pair_close(side *a, side *b)
{
    side_close(a);
    side_close(b);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* Moves len bytes from `from`'s test end to `to`'s test end through both pumps; the writer
 * half-closes at the end; returns once `to` read EOF. *again: how often the writer's socket
 * was full (backpressure seen). stall_ms: `to` reads nothing for that long first. */
static void transfer(side *a, side *b, side *from, side *to, size_t len, int64_t stall_ms, unsigned *again,
                     size_t *max_waiting)
{
    uint8_t *src = malloc(len), *dst = malloc(len);
    assert_non_null(src);
    assert_non_null(dst);
    fill(src, len, (uint32_t)len);
    size_t wr = 0, rd = 0;
    int shut = 0, eof = 0;
    int64_t start = nk_node_driver_now(), end = start + 30000;
    while (!eof && nk_node_driver_now() < end) {
        if (wr < len) {
            ssize_t n = write(from->sp[1], src + wr, len - wr);
            if (n > 0)
                wr += (size_t)n;
            else if (errno == EAGAIN)
                (*again)++;
        } else if (!shut) {
            shutdown(from->sp[1], SHUT_WR);
            shut = 1;
        }
        if (max_waiting != NULL && from->pump.sid >= 0) {
            size_t w = nk_conn_stream_unacked(from->pump.conn, from->pump.sid);
            if (w > *max_waiting)
                *max_waiting = w;
        }
        if (nk_node_driver_now() - start >= stall_ms) {
            for (;;) {
                ssize_t n = read(to->sp[1], dst + rd, len - rd < 65536 ? len - rd : 65536);
                if (n > 0)
                    rd += (size_t)n;
                else {
                    eof = n == 0;
                    break;
                }
                if (rd == len) {
                    uint8_t x;
                    eof = read(to->sp[1], &x, 1) == 0;
                    break;
                }
            }
        }
        turn(a, b);
    }
    assert_true(eof);
    assert_int_equal(rd, len);
    assert_memory_equal(src, dst, len);
    free(src);
    free(dst);
}

static void test_pump_halfclose_both_ways(void **state)
{
    (void)state;
    side a, b;
    pair_open(&a, &b);
    unsigned again = 0;
    transfer(&a, &b, &a, &b, 3000000, 0, &again, NULL); /* a -> b, a half-closes */
    assert_true(a.pump.fin_sent);
    assert_true(b.pump.out_shut);
    assert_false(b.pump.fin_sent); /* b's direction is still open */
    transfer(&a, &b, &b, &a, 1000000, 0, &again, NULL); /* then b -> a */
    int64_t end = nk_node_driver_now() + 5000;
    while ((!fwd_pump_done(&a.pump) || !fwd_pump_done(&b.pump)) && nk_node_driver_now() < end)
        turn(&a, &b);
    assert_true(fwd_pump_done(&a.pump));
    assert_true(fwd_pump_done(&b.pump));
    assert_false(a.pump.failed || b.pump.failed);
    assert_true(a.pump.delivered && b.pump.delivered); /* each side said the other's bytes were out */
    assert_int_equal(a.pump.bytes_up, 3000000);
    assert_int_equal(b.pump.bytes_down, 3000000);
    assert_int_equal(b.pump.bytes_up, 1000000);
    pair_close(&a, &b);
}

/* Acknowledged is not delivered: with both directions ended and every byte of a's acknowledged,
 * a's pump is not done until b's "delivered" (b wrote everything to its socket) is read. */
static void test_pump_waits_for_delivered(void **state)
{
    (void)state;
    side a, b;
    pair_open(&a, &b);
    unsigned again = 0;
    a.hold_msgs = 1;
    transfer(&a, &b, &a, &b, 200000, 0, &again, NULL);
    transfer(&a, &b, &b, &a, 1000, 0, &again, NULL);
    int64_t end = nk_node_driver_now() + 5000;
    while ((fwd_pump_unacked(&a.pump) > 0 || !b.pump.told || !fwd_pump_done(&b.pump)) && nk_node_driver_now() < end)
        turn(&a, &b);
    assert_true(a.pump.fin_sent && a.pump.out_shut && fwd_pump_unacked(&a.pump) == 0);
    assert_true(b.pump.told);           /* b's "delivered" is on its way (waiting in a's connection) */
    assert_true(fwd_pump_done(&b.pump)); /* a told b too */
    assert_false(a.pump.delivered);
    assert_false(fwd_pump_done(&a.pump));
    a.hold_msgs = 0;
    read_msgs(&a, a.pump.conn);
    assert_true(a.pump.delivered);
    assert_true(fwd_pump_done(&a.pump));
    pair_close(&a, &b);
}

static void test_pump_backpressure(void **state)
{
    (void)state;
    side a, b;
    pair_open(&a, &b);
    unsigned again = 0;
    size_t max_waiting = 0;
    /* b's reader sleeps 1.5 s: a's socket fills (EAGAIN), the stream's unacknowledged bytes stay
     * within QUIC's windows, nothing is lost when b reads again */
    transfer(&a, &b, &a, &b, 8000000, 1500, &again, &max_waiting);
    assert_true(again > 0);
    assert_true(max_waiting <= 2 * 1024 * 1024);
    pair_close(&a, &b);
}

static void test_pump_reset(void **state)
{
    (void)state;
    side a, b;
    pair_open(&a, &b);
    fwd_pump_abort(&b.pump, FWD_ERR_CONNECT, "test");
    int64_t end = nk_node_driver_now() + 5000;
    while (!a.pump.failed && nk_node_driver_now() < end)
        turn(&a, &b);
    assert_true(a.pump.failed);
    assert_string_equal(a.pump.why, fwd_err_text(FWD_ERR_CONNECT));
    assert_true(fwd_pump_done(&a.pump));
    pair_close(&a, &b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pump_halfclose_both_ways),
        cmocka_unit_test(test_pump_waits_for_delivered),
        cmocka_unit_test(test_pump_backpressure),
        cmocka_unit_test(test_pump_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
