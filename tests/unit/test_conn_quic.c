/*
 * The data plane of nk_conn (QUIC under every connection):
 * - the message framing (node/msgframe.h) byte by byte, at its limits;
 * - 20 MB of seeded random bytes over one stream between two nodes in the
 *   simulator (tests/sim, 40 ms RTT, a real hub server core), byte-identical, at 0 %
 *   and 10 % loss and while the path changes mid-transfer (direct cut -> hub ->
 *   direct); a stream reset; a datagram round trip; messages larger than a packet.
 * Simulated throughputs are printed for the record. The burst stall of issue 12 through the
 * public API (two nk_node_drivers on loopback UDP) is tests/integration/c/test_conn_quic_loopback.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/hub_server.h"
#include "natkit/node.h"
#include "natkit/quic.h"
#include "node/msgframe.h"
#include "nodes.h"

#define TOTAL (20u * 1000 * 1000)

/* ---- message framing ------------------------------------------------------------------- */

static void test_msgframe(void **state)
{
    (void)state;
    nk__msgrx r;
    uint8_t wire[64];
    size_t len;
    /* three messages (5 bytes, empty, 3 bytes), fed one byte at a time */
    nk__msgframe_header(wire, 5);
    memcpy(wire + 4, "hello", 5);
    nk__msgframe_header(wire + 9, 0);
    nk__msgframe_header(wire + 13, 3);
    memcpy(wire + 17, "abc", 3);
    nk__msgrx_init(&r, 16);
    const char *want[] = {"hello", "", "abc"};
    int got = 0;
    for (size_t i = 0; i < 20; i++) {
        int n = nk__msgrx_feed(&r, wire + i, 1);
        assert_int_equal(n, 1);
        const uint8_t *m = nk__msgrx_message(&r, &len);
        if (m != NULL) {
            assert_true(got < 3);
            assert_int_equal(len, strlen(want[got]));
            assert_memory_equal(m, want[got], len);
            /* a waiting message takes no more bytes */
            assert_int_equal(nk__msgrx_feed(&r, wire, 4), 0);
            nk__msgrx_next(&r);
            got++;
        }
    }
    assert_int_equal(got, 3);
    /* all at once: it stops after the first whole message */
    assert_int_equal(nk__msgrx_feed(&r, wire, 20), 9);
    assert_non_null(nk__msgrx_message(&r, &len));
    nk__msgrx_next(&r);
    assert_int_equal(nk__msgrx_feed(&r, wire + 9, 11), 4);
    nk__msgrx_next(&r);
    /* the want/got interface refuses more than it asked for */
    uint8_t *dst;
    assert_int_equal(nk__msgrx_want(&r, &dst), 4);
    assert_int_equal(nk__msgrx_got(&r, 5), NK_ERR_INVAL);
    nk__msgrx_free(&r);
    /* a length over the maximum fails for good, before anything is allocated */
    nk__msgrx_init(&r, 16);
    nk__msgframe_header(wire, 17);
    assert_int_equal(nk__msgrx_feed(&r, wire, 4), NK_ERR_MALFORMED);
    assert_int_equal(nk__msgrx_feed(&r, wire, 4), 0);
    assert_int_equal(nk__msgrx_got(&r, 0), NK_ERR_MALFORMED);
    assert_int_equal(nk__msgrx_want(&r, &dst), 0);
    nk__msgrx_free(&r);
    nk__msgrx_init(&r, 16);
    nk__msgframe_header(wire, 0xffffffffu);
    assert_int_equal(nk__msgrx_feed(&r, wire, 8), NK_ERR_MALFORMED);
    nk__msgrx_free(&r);
}

/* ---- two nodes and a hub in the simulator ------------------------------------------- */

/* a seeded byte source: the sender's and the receiver's copies give the same bytes */
typedef struct bytes_src {
    sim_rng rng;
    uint8_t chunk[8192];
    size_t off, len;
    uint64_t made;
} bytes_src;

static void src_init(bytes_src *s, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    sim_rng_seed(&s->rng, seed);
}

static void src_refill(bytes_src *s)
{
    if (s->off < s->len)
        return;
    for (size_t i = 0; i < sizeof(s->chunk); i += 8) {
        uint64_t v = sim_rng_next(&s->rng);
        memcpy(s->chunk + i, &v, 8);
    }
    s->off = 0;
    s->len = sizeof(s->chunk);
}

typedef struct world {
    sim_nodes net;            /* two nodes, the hub, the clock and the queue (tests/sim/nodes.h) */
    sim_rng rng;
    nk_conn *conn[2];
    int connected[2], disconnected[2], path_changes[2];
    int disc_err[2];
    uint64_t disc_code[2];
    char disc_reason[2][128];
    nk_path_kind path[2];
    /* the stream transfer: node 1 writes stream sid, node 0 reads it */
    int64_t sid;
    bytes_src tx, rx;
    uint64_t sent, received, total;
    int fin_sent, fin_seen, mismatch;
    uint64_t rate;            /* bytes per simulated ms the writer may write (0: as fast as it can) */
    int64_t tx_start;
    int64_t first_byte_at, last_byte_at;
    /* stream and datagram events at node 0 / node 1 */
    int opened[2], resets[2], finished[2];
    uint64_t reset_code[2];
    int64_t reset_sid[2];
    char dgram[2][64];
    int dgrams[2];
} world;

static void pump_writer(world *w)
{
    if (w->conn[1] == NULL || w->sid < 0 || w->fin_sent)
        return;
    uint64_t limit = w->total;
    if (w->rate > 0 && w->rate * (uint64_t)(w->net.clock.now - w->tx_start) < limit)
        limit = w->rate * (uint64_t)(w->net.clock.now - w->tx_start);
    while (w->sent < limit) {
        src_refill(&w->tx);
        size_t n = w->tx.len - w->tx.off;
        if (n > limit - w->sent)
            n = (size_t)(limit - w->sent);
        int k = nk_conn_stream_write(w->conn[1], w->sid, w->tx.chunk + w->tx.off, n);
        if (k == NK_ERR_AGAIN || k == 0)
            return; /* STREAM_WRITABLE follows */
        assert_true(k > 0);
        w->tx.off += (size_t)k;
        w->sent += (uint64_t)k;
    }
    if (w->sent < w->total)
        return; /* the rate limit: more on the next turn */
    assert_int_equal(nk_conn_stream_shutdown(w->conn[1], w->sid), 0);
    w->fin_sent = 1;
}

static void pump_reader(world *w, int64_t sid)
{
    uint8_t buf[16384];
    int n;
    while ((n = nk_conn_stream_read(w->conn[0], sid, buf, sizeof(buf))) > 0) {
        if (w->first_byte_at < 0)
            w->first_byte_at = w->net.clock.now;
        for (int i = 0; i < n;) {
            src_refill(&w->rx);
            size_t k = w->rx.len - w->rx.off;
            if (k > (size_t)(n - i))
                k = (size_t)(n - i);
            if (memcmp(buf + i, w->rx.chunk + w->rx.off, k) != 0)
                w->mismatch++;
            w->rx.off += k;
            i += (int)k;
        }
        w->received += (uint64_t)n;
        w->last_byte_at = w->net.clock.now;
    }
    if (n == 0)
        w->fin_seen = 1;
    else
        assert_int_equal(n, NK_ERR_AGAIN);
}

static void on_event(void *ctx, int i, const nk_node_event *ev)
{
    world *w = ctx;
    uint8_t buf[256];
    int n;
    switch (ev->type) {
    case NK_NODE_EV_CONNECTED:
        w->connected[i]++;
        w->path[i] = ev->path.kind;
        w->conn[i] = ev->conn;
        break;
    case NK_NODE_EV_PATH_CHANGED:
        w->path[i] = ev->path.kind;
        w->path_changes[i]++;
        break;
    case NK_NODE_EV_DISCONNECTED:
        w->disconnected[i]++;
        w->disc_err[i] = ev->err;
        w->disc_code[i] = ev->app_error;
        snprintf(w->disc_reason[i], sizeof(w->disc_reason[i]), "%s", ev->reason != NULL ? ev->reason : "");
        break;
    case NK_NODE_EV_STREAM_OPENED:
        w->opened[i]++;
        break;
    case NK_NODE_EV_STREAM_READABLE:
        if (i == 0 && ev->stream_id == w->sid)
            pump_reader(w, ev->stream_id);
        else
            while (nk_conn_stream_read(ev->conn, ev->stream_id, buf, sizeof(buf)) > 0)
                ;
        break;
    case NK_NODE_EV_STREAM_WRITABLE:
        if (i == 1 && ev->stream_id == w->sid)
            pump_writer(w);
        break;
    case NK_NODE_EV_STREAM_FINISHED:
        w->finished[i]++;
        break;
    case NK_NODE_EV_STREAM_RESET:
        w->resets[i]++;
        w->reset_code[i] = ev->app_error;
        w->reset_sid[i] = ev->stream_id;
        break;
    case NK_NODE_EV_DATAGRAM:
        while ((n = nk_conn_datagram_read(ev->conn, buf, sizeof(buf) - 1)) >= 0) {
            buf[n] = 0;
            snprintf(w->dgram[i], sizeof(w->dgram[i]), "%.63s", (char *)buf);
            w->dgrams[i]++;
        }
        break;
    default:
        break;
    }
}

static void on_turn(void *ctx)
{
    pump_writer(ctx);
}

static void run_until(world *w, int64_t until)
{
    sim_nodes_run_until(&w->net, until);
}

/* Two registered nodes; node 1 connects to node 0 and both report CONNECTED on a direct path. */
static world *world_new_cc(uint64_t seed, int keepalive_ms, int cc)
{
    world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    sim_rng_seed(&w->rng, sim_seed(seed));
    assert_int_equal(sim_nodes_init(&w->net, &w->rng), 0);
    w->net.ctx = w;
    w->net.on_event = on_event;
    w->net.on_turn = on_turn;
    w->sid = -1;
    w->first_byte_at = -1;
    for (int i = 0; i < 2; i++) {
        nk_node_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.accept = i == 0;
        cfg.keepalive_ms = keepalive_ms;
        cfg.cc = cc;
        cfg.random = sim_random;
        cfg.random_ctx = &w->rng;
        assert_int_equal(sim_nodes_add(&w->net, &cfg), 0);
    }
    run_until(w, w->net.clock.now + 500);
    nk_conn *c;
    assert_int_equal(nk_node_connect(w->net.nodes[1], w->net.clock.now, &w->net.ids[0].id, &c), 0);
    run_until(w, w->net.clock.now + 3000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w->connected[i], 1);
        assert_int_equal(w->path[i], NK_PATH_DIRECT);
    }
    assert_ptr_equal(w->conn[1], c);
    assert_true(nk_conn_is_client(w->conn[1]));
    assert_false(nk_conn_is_client(w->conn[0]));
    return w;
}

static world *world_new(uint64_t seed, int keepalive_ms)
{
    return world_new_cc(seed, keepalive_ms, NK_QUIC_CC_CUBIC);
}

static void world_free(world *w)
{
    sim_nodes_free(&w->net);
    free(w);
}

/* node 1 opens a stream and starts writing total seeded bytes, then FIN */
static void start_transfer(world *w, uint64_t total)
{
    src_init(&w->tx, 0x5eed);
    src_init(&w->rx, 0x5eed);
    w->total = total;
    assert_int_equal(nk_conn_stream_open(w->conn[1], &w->sid), 0);
    assert_true(w->sid >= 4); /* streams 0 and 1 carry messages */
    w->first_byte_at = -1;
    w->tx_start = w->net.clock.now;
    pump_writer(w);
}

static double finish_transfer(world *w, const char *what, int64_t limit_ms)
{
    int64_t start = w->net.clock.now;
    while (!w->fin_seen && w->net.clock.now - start < limit_ms)
        run_until(w, w->net.clock.now + 1000);
    if (!w->fin_seen)
        fail_msg("%s: %llu of %llu bytes after %lld ms", what, (unsigned long long)w->received,
                 (unsigned long long)w->total, (long long)limit_ms);
    assert_int_equal(w->received, w->total);
    assert_int_equal(w->mismatch, 0);
    assert_int_equal(w->finished[0], 1);
    assert_int_equal(w->disconnected[0] + w->disconnected[1], 0);
    double secs = (double)(w->last_byte_at - w->first_byte_at) / 1000.0;
    double mbs = secs > 0 ? (double)w->total / 1e6 / secs : 0;
    printf("    %s: %.1f MB in %.2f s simulated: %.2f MB/s\n", what, (double)w->total / 1e6, secs, mbs);
    return mbs;
}

static void test_stream_20mb_clean(void **state)
{
    (void)state;
    world *w = world_new(1, 0);
    start_transfer(w, TOTAL);
    finish_transfer(w, "20 MB, one stream, 40 ms RTT, 0% loss", 120000);
    world_free(w);
}

static void test_stream_20mb_lossy(void **state)
{
    (void)state;
    world *w = world_new(2, 0);
    w->net.udp_loss = 0.10;
    start_transfer(w, TOTAL);
    finish_transfer(w, "20 MB, one stream, 40 ms RTT, 10% loss each way, CUBIC", 3600000);
    world_free(w);
}

static void test_stream_20mb_lossy_bbr(void **state)
{
    (void)state;
    world *w = world_new_cc(2, 0, NK_QUIC_CC_BBR);
    w->net.udp_loss = 0.10;
    start_transfer(w, TOTAL);
    finish_transfer(w, "20 MB, one stream, 40 ms RTT, 10% loss each way, BBR", 3600000);
    world_free(w);
}

/* 20 MB while the direct path is cut (the connection moves to the hub relay) and comes back
 * (it moves back to direct): every byte, once, in order. */
static void test_stream_20mb_path_changes(void **state)
{
    (void)state;
    world *w = world_new(3, 1000);
    w->rate = 1000; /* 1 MB/s: the transfer outlasts both moves */
    start_transfer(w, TOTAL);
    while (w->received < TOTAL / 4)
        run_until(w, w->net.clock.now + 100);
    w->net.udp_blocked = 1;
    int64_t cut = w->net.clock.now;
    while (!(w->path[0] == NK_PATH_HUB && w->path[1] == NK_PATH_HUB)) {
        assert_true(w->net.clock.now - cut < 15000);
        run_until(w, w->net.clock.now + 100);
    }
    int64_t down = w->net.clock.now - cut;
    uint64_t at_hub = w->received;
    run_until(w, w->net.clock.now + 3000); /* on the hub for a while */
    uint64_t via_hub = w->received - at_hub;
    w->net.udp_blocked = 0;
    int64_t heal = w->net.clock.now;
    while (!(w->path[0] == NK_PATH_DIRECT && w->path[1] == NK_PATH_DIRECT)) {
        assert_true(w->net.clock.now - heal < 15000);
        run_until(w, w->net.clock.now + 100);
    }
    printf("    path changes: direct -> hub %lld ms after the cut, %.1f MB in 3 s on the hub, hub -> direct "
           "%lld ms after the heal\n",
           (long long)down, (double)via_hub / 1e6, (long long)(w->net.clock.now - heal));
    assert_true(w->received < TOTAL); /* the move back happened mid-transfer */
    finish_transfer(w, "20 MB across direct -> hub -> direct", 300000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w->path_changes[i], 2);
        assert_int_equal(w->connected[i], 1);
    }
    world_free(w);
}

/* A reset stream: the peer hears the code; messages and datagrams go both ways meanwhile. */
static void test_reset_datagram_messages(void **state)
{
    (void)state;
    world *w = world_new(4, 0);
    int64_t sid;
    assert_int_equal(nk_conn_stream_open(w->conn[0], &sid), 0);
    assert_int_equal(sid, 5); /* the server's first user stream (1 carries its messages) */
    assert_int_equal(nk_conn_stream_write(w->conn[0], sid, (const uint8_t *)"abc", 3), 3);
    run_until(w, w->net.clock.now + 200);
    assert_int_equal(w->opened[1], 1);
    assert_int_equal(nk_conn_stream_reset(w->conn[0], sid, 42), 0);
    run_until(w, w->net.clock.now + 200);
    assert_int_equal(w->resets[1], 1);
    assert_int_equal(w->reset_code[1], 42);
    assert_int_equal(w->reset_sid[1], sid);
    /* the message streams are not the user's */
    assert_int_equal(nk_conn_stream_write(w->conn[0], 0, (const uint8_t *)"x", 1), NK_ERR_INVAL);
    assert_int_equal(nk_conn_stream_read(w->conn[1], 1, (uint8_t *)"x", 1), NK_ERR_INVAL);
    assert_int_equal(nk_conn_stream_write(w->conn[0], 1, (const uint8_t *)"x", 1), NK_ERR_INVAL); /* its own */
    assert_int_equal(nk_conn_stream_write(w->conn[1], 0, (const uint8_t *)"x", 1), NK_ERR_INVAL);
    assert_int_equal(nk_conn_stream_shutdown(w->conn[1], 0), NK_ERR_INVAL);
    assert_int_equal(nk_conn_stream_reset(w->conn[0], 1, 1), NK_ERR_INVAL);
    /* the node's counters: one connection each, every event polled, none dropped */
    for (int i = 0; i < 2; i++) {
        nk_node_stats_t ns;
        nk_node_stats(w->net.nodes[i], &ns);
        assert_int_equal(ns.conns, 1);
        assert_int_equal(ns.events_queued, 0);
        assert_int_equal(ns.events_dropped, 0);
    }

    /* a datagram there and back */
    assert_true(nk_conn_datagram_max(w->conn[1]) >= 1000);
    assert_int_equal(nk_conn_datagram_send(w->conn[1], (const uint8_t *)"ping", 4), 0);
    run_until(w, w->net.clock.now + 100);
    assert_string_equal(w->dgram[0], "ping");
    assert_int_equal(nk_conn_datagram_send(w->conn[0], (const uint8_t *)"pong", 4), 0);
    run_until(w, w->net.clock.now + 100);
    assert_string_equal(w->dgram[1], "pong");
    uint8_t big[2000] = {0};
    assert_int_equal(nk_conn_datagram_send(w->conn[0], big, sizeof(big)), NK_ERR_LIMIT);

    /* messages far larger than a packet, both ways, whole */
    static uint8_t msg[300000], got[300000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(nk_conn_send(w->conn[1], w->net.clock.now, msg, sizeof(msg)), 0);
    assert_int_equal(nk_conn_send(w->conn[0], w->net.clock.now, msg, 100), 0);
    run_until(w, w->net.clock.now + 1000);
    assert_int_equal(nk_conn_recv(w->conn[0], got, 1000), NK_ERR_NOBUFS); /* it stays */
    assert_int_equal(nk_conn_recv(w->conn[0], got, sizeof(got)), (int)sizeof(msg));
    assert_memory_equal(got, msg, sizeof(msg));
    assert_int_equal(nk_conn_recv(w->conn[0], got, sizeof(got)), NK_ERR_AGAIN);
    assert_int_equal(nk_conn_recv(w->conn[1], got, sizeof(got)), 100);
    assert_memory_equal(got, msg, 100);
    assert_int_equal(nk_conn_unacked(w->conn[0]) + nk_conn_unacked(w->conn[1]), 0);
    assert_int_equal(nk_conn_send(w->conn[1], w->net.clock.now, msg, NK_CONN_MAX_MESSAGE + 1), NK_ERR_LIMIT);

    /* both ends derive the same exporter bytes */
    uint8_t k0[32], k1[32];
    assert_int_equal(nk_conn_export(w->conn[0], "natkit test", (const uint8_t *)"ctx", 3, k0, sizeof(k0)), 0);
    assert_int_equal(nk_conn_export(w->conn[1], "natkit test", (const uint8_t *)"ctx", 3, k1, sizeof(k1)), 0);
    assert_memory_equal(k0, k1, sizeof(k0));

    /* close: the peer is told */
    nk_conn_close(w->conn[1], w->net.clock.now);
    run_until(w, w->net.clock.now + 500);
    assert_int_equal(w->disconnected[0], 1);
    assert_int_equal(nk_node_conn_count(w->net.nodes[1]), 0);
    world_free(w);
}

/* nk_conn_close at 30 % loss each way: the CONNECTION_CLOSE goes out five times (over 375 ms), so the
 * peer hears it at once rather than at its idle timeout (30 s); the closed end frees the connection.
 * 60 seeds: with three copies, some of them left the peer to its idle timeout. */
static void test_close_at_30_percent_loss(void **state)
{
    (void)state;
    for (uint64_t seed = 10; seed < 70; seed++) {
        world *w = world_new(seed, 0);
        assert_int_equal(nk_conn_send(w->conn[1], w->net.clock.now, (const uint8_t *)"bye", 3), 0);
        w->net.udp_loss = 0.30;
        int64_t t0 = w->net.clock.now;
        nk_conn_close(w->conn[1], w->net.clock.now);
        while (w->disconnected[0] == 0 && w->net.clock.now - t0 < 10000)
            run_until(w, w->net.clock.now + 50);
        assert_int_equal(w->disconnected[0], 1);
        assert_true(w->net.clock.now - t0 < 5000);
        assert_int_equal(w->disconnected[1], 0); /* nothing is reported about a closed connection */
        run_until(w, w->net.clock.now + 500);     /* the later copies leave over 375 ms, then it is freed */
        assert_int_equal(nk_node_conn_count(w->net.nodes[1]), 0);
        uint8_t buf[8];
        assert_int_equal(nk_conn_recv(w->conn[0], buf, sizeof(buf)), 3); /* what was sent arrived */
        world_free(w);
    }
}

/* nk_conn_close_ex: the peer's DISCONNECTED carries the code and the phrase (made printable: no
 * quotes, backslashes or control bytes; at most 40 bytes of it); nk_conn_close: neither. */
static void test_close_with_reason(void **state)
{
    (void)state;
    world *w = world_new(21, 0);
    nk_conn_close_ex(w->conn[1], w->net.clock.now, 0x4e4b10, "stopped");
    run_until(w, w->net.clock.now + 500);
    assert_int_equal(w->disconnected[0], 1);
    assert_int_equal(w->disc_err[0], NK_ERR_CLOSED);
    assert_int_equal(w->disc_code[0], 0x4e4b10);
    assert_string_equal(w->disc_reason[0], "peer closed the connection: stopped");
    world_free(w);

    w = world_new(22, 0);
    nk_conn_close_ex(w->conn[0], w->net.clock.now, 9,
                     "a \"quoted\"\\ \x01phrase that is much longer than forty bytes, cut");
    run_until(w, w->net.clock.now + 500);
    assert_int_equal(w->disconnected[1], 1);
    assert_int_equal(w->disc_code[1], 9);
    assert_string_equal(w->disc_reason[1], "peer closed the connection: a ?quoted?? ?phrase that is much longer ");
    world_free(w);

    w = world_new(23, 0);
    nk_conn_close(w->conn[1], w->net.clock.now);
    run_until(w, w->net.clock.now + 500);
    assert_int_equal(w->disc_code[0], 0);
    assert_string_equal(w->disc_reason[0], "peer closed the connection");
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msgframe),
        cmocka_unit_test(test_reset_datagram_messages),
        cmocka_unit_test(test_close_at_30_percent_loss),
        cmocka_unit_test(test_close_with_reason),
        cmocka_unit_test(test_stream_20mb_clean),
        cmocka_unit_test(test_stream_20mb_path_changes),
        cmocka_unit_test(test_stream_20mb_lossy),
        cmocka_unit_test(test_stream_20mb_lossy_bbr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
