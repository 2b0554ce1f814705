/*
 * The QUIC core (src/quic/) between two endpoints in one process: simulated
 * time, a datagram queue each way with a one-way delay, seeded loss and
 * optional jitter (which reorders). No sockets, no sleeping.
 *
 * The little world below (struct world, world_step) is self-contained so it
 * can move into the shared test simulator later.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>

#include <cmocka.h>
#include <sodium.h>

#include "natkit/quic.h"

/* ---- the world ------------------------------------------------------------------------------ */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static void rng_fill(void *ctx, uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(rng_next(ctx) >> 24);
}

typedef struct pkt {
    struct pkt *next;
    int64_t at;
    size_t len;
    uint8_t data[1500];
} pkt;

typedef struct world {
    nk_quic *q[2];           /* 0: client, 1: server */
    int64_t now;
    rng net;                 /* loss and jitter */
    rng keys[2];             /* each endpoint's random source */
    int loss_pct;
    int64_t delay_ms, jitter_ms;
    pkt *queue[2];           /* towards endpoint i, sorted by arrival */
    uint64_t sent[2], dropped[2];
    int stalled;
    void (*tap)(struct world *w, int from, const uint8_t *p, size_t n); /* sees every datagram sent */
} world;

static void make_identity(nk_identity *id, uint8_t seed_byte)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof(seed));
    crypto_sign_seed_keypair(id->id.key, id->secret, seed);
}

static nk_identity id_client, id_server, id_other;

static void world_init(world *w, int loss_pct, int64_t jitter_ms, const nk_peer_id *client_expects,
                       const nk_peer_id *server_expects, const nk_identity *server_id, uint64_t seed)
{
    memset(w, 0, sizeof(*w));
    w->now = 1000;
    w->net.s = seed * 0x9e3779b97f4a7c15ull + 1;
    w->keys[0].s = seed + 11;
    w->keys[1].s = seed + 23;
    w->loss_pct = loss_pct;
    w->delay_ms = 20;
    w->jitter_ms = jitter_ms;
    nk_quic_config c = {.role = NK_QUIC_CLIENT, .identity = &id_client, .peer = client_expects,
                        .random = rng_fill, .random_ctx = &w->keys[0]};
    nk_quic_config s = {.role = NK_QUIC_SERVER, .identity = server_id, .peer = server_expects,
                        .random = rng_fill, .random_ctx = &w->keys[1]};
    assert_int_equal(nk_quic_new(&w->q[0], &c, w->now), 0);
    assert_int_equal(nk_quic_new(&w->q[1], &s, w->now), 0);
}

static void world_free(world *w)
{
    for (int i = 0; i < 2; i++) {
        nk_quic_free(w->q[i]);
        while (w->queue[i] != NULL) {
            pkt *p = w->queue[i];
            w->queue[i] = p->next;
            free(p);
        }
    }
}

static void enqueue(world *w, int to, const uint8_t *data, size_t len)
{
    pkt *p = malloc(sizeof(*p));
    assert_non_null(p);
    p->at = w->now + w->delay_ms + (w->jitter_ms > 0 ? (int64_t)(rng_next(&w->net) % (uint64_t)w->jitter_ms) : 0);
    p->len = len;
    memcpy(p->data, data, len);
    pkt **pp = &w->queue[to];
    while (*pp != NULL && (*pp)->at <= p->at)
        pp = &(*pp)->next;
    p->next = *pp;
    *pp = p;
}

static void flush(world *w, int from)
{
    uint8_t buf[1500];
    int n;
    while ((n = nk_quic_poll_transmit(w->q[from], w->now, buf, sizeof(buf))) > 0) {
        w->sent[from]++;
        if (w->tap != NULL)
            w->tap(w, from, buf, (size_t)n);
        if (w->loss_pct > 0 && (int)(rng_next(&w->net) % 100) < w->loss_pct) {
            w->dropped[from]++;
            continue;
        }
        enqueue(w, 1 - from, buf, (size_t)n);
    }
    assert_int_equal(n, NK_ERR_AGAIN);
}

/* Sends what is ready, moves time to the next deadline or arrival, delivers and fires timers. */
static void world_step(world *w)
{
    flush(w, 0);
    flush(w, 1);
    int64_t t = NK_DEADLINE_NONE;
    for (int i = 0; i < 2; i++) {
        int64_t d = nk_quic_next_deadline(w->q[i]);
        if (d < t)
            t = d;
        if (w->queue[i] != NULL && w->queue[i]->at < t)
            t = w->queue[i]->at;
    }
    if (t == NK_DEADLINE_NONE) {
        w->stalled = 1;
        return;
    }
    if (t > w->now)
        w->now = t;
    for (int i = 0; i < 2; i++) {
        while (w->queue[i] != NULL && w->queue[i]->at <= w->now) {
            pkt *p = w->queue[i];
            w->queue[i] = p->next;
            nk_quic_handle_datagram(w->q[i], w->now, p->data, p->len);
            free(p);
        }
        if (nk_quic_next_deadline(w->q[i]) <= w->now)
            nk_quic_handle_timeout(w->q[i], w->now);
    }
}

/* Runs until CONNECTED on both sides (1), or CLOSED on one (0); events other than these are
 * left queued only if keep is set. */
static int world_connect(world *w, int64_t limit_ms, nk_quic_event *closed)
{
    int connected[2] = {0, 0};
    while (w->now < limit_ms && !w->stalled) {
        world_step(w);
        for (int i = 0; i < 2; i++) {
            nk_quic_event ev;
            while (nk_quic_poll_event(w->q[i], &ev) == 0) {
                if (ev.type == NK_QUIC_EV_CONNECTED)
                    connected[i] = 1;
                if (ev.type == NK_QUIC_EV_CLOSED) {
                    if (closed != NULL)
                        *closed = ev;
                    return 0;
                }
            }
        }
        if (connected[0] && connected[1])
            return 1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    make_identity(&id_client, 1);
    make_identity(&id_server, 2);
    make_identity(&id_other, 3);
    return 0;
}

/* ---- handshake and authentication ---------------------------------------------------------- */
static void test_handshake(void **state)
{
    (void)state;
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 1);
    int64_t start = w.now;
    nk_peer_id seen[2];
    int connected[2] = {0, 0};
    int64_t at[2] = {0, 0};
    while ((!connected[0] || !connected[1]) && w.now < start + 5000) {
        world_step(&w);
        for (int i = 0; i < 2; i++) {
            nk_quic_event ev;
            while (nk_quic_poll_event(w.q[i], &ev) == 0) {
                assert_int_not_equal(ev.type, NK_QUIC_EV_CLOSED);
                if (ev.type == NK_QUIC_EV_CONNECTED) {
                    connected[i] = 1;
                    seen[i] = ev.peer;
                    at[i] = w.now;
                }
            }
        }
    }
    assert_true(connected[0] && connected[1]);
    assert_true(nk_peer_id_equal(&seen[0], &id_server.id));
    assert_true(nk_peer_id_equal(&seen[1], &id_client.id));
    nk_peer_id p;
    assert_int_equal(nk_quic_connected(w.q[1], &p), 1);
    assert_true(nk_peer_id_equal(&p, &id_client.id));
    printf("# handshake: client connected after %lld ms, server after %lld ms (one-way delay %lld ms, "
           "RTT %lld ms); %llu + %llu datagrams\n",
           (long long)(at[0] - start), (long long)(at[1] - start), (long long)w.delay_ms,
           (long long)(2 * w.delay_ms), (unsigned long long)w.sent[0], (unsigned long long)w.sent[1]);
    assert_true(at[0] - start <= 2 * 2 * w.delay_ms + 5); /* 1 RTT plus slack, well below 2 */

    /* A graceful close reaches the other side with the application's code. */
    assert_int_equal(nk_quic_close(w.q[0], w.now, 7), 0);
    nk_quic_event ev;
    int got = 0;
    while (!got && w.now < start + 10000 && !w.stalled) {
        world_step(&w);
        while (nk_quic_poll_event(w.q[1], &ev) == 0)
            if (ev.type == NK_QUIC_EV_CLOSED)
                got = 1;
    }
    assert_true(got);
    assert_int_equal(ev.err, NK_ERR_CLOSED);
    assert_int_equal(ev.app_error, 7);
    world_free(&w);
}

static void test_wrong_peer_client(void **state)
{
    (void)state;
    world w;
    /* the client expects id_other, the server is id_server */
    world_init(&w, 0, 0, &id_other.id, NULL, &id_server, 2);
    int connected[2] = {0, 0}, closed[2] = {0, 0};
    nk_quic_event cl[2];
    int64_t end = w.now + 5000;
    while (w.now < end && !(closed[0] && closed[1]) && !w.stalled) {
        world_step(&w);
        for (int i = 0; i < 2; i++) {
            nk_quic_event ev;
            while (nk_quic_poll_event(w.q[i], &ev) == 0) {
                if (ev.type == NK_QUIC_EV_CONNECTED)
                    connected[i] = 1;
                if (ev.type == NK_QUIC_EV_CLOSED) {
                    closed[i] = 1;
                    cl[i] = ev;
                }
            }
        }
    }
    assert_false(connected[0]);
    assert_true(closed[0]);
    assert_int_equal(cl[0].err, NK_ERR_AUTH);
    assert_string_equal(cl[0].reason, "peer ID mismatch");
    assert_true(closed[1]); /* the server hears the refusal */
    assert_false(connected[1]);
    printf("# wrong peer: client \"%s\", server \"%s\"\n", cl[0].reason, cl[1].reason);
    world_free(&w);
}

static void test_wrong_peer_server(void **state)
{
    (void)state;
    world w;
    /* the server only accepts id_other; id_client connects */
    world_init(&w, 0, 0, &id_server.id, &id_other.id, &id_server, 3);
    int connected[2] = {0, 0}, closed[2] = {0, 0};
    nk_quic_event cl[2];
    int64_t end = w.now + 5000;
    while (w.now < end && !(closed[0] && closed[1]) && !w.stalled) {
        world_step(&w);
        for (int i = 0; i < 2; i++) {
            nk_quic_event ev;
            while (nk_quic_poll_event(w.q[i], &ev) == 0) {
                if (ev.type == NK_QUIC_EV_CONNECTED)
                    connected[i] = 1;
                if (ev.type == NK_QUIC_EV_CLOSED) {
                    closed[i] = 1;
                    cl[i] = ev;
                }
            }
        }
    }
    assert_false(connected[1]);
    assert_true(closed[1]);
    assert_int_equal(cl[1].err, NK_ERR_AUTH);
    assert_string_equal(cl[1].reason, "peer ID mismatch");
    assert_true(closed[0]);
    assert_int_equal(cl[0].err, NK_ERR_AUTH);
    /* TLS 1.3: the client finishes its flight before the server judges its key, so it may have
     * reported CONNECTED first; it must be closed now. */
    assert_int_equal(nk_quic_connected(w.q[0], NULL), 0);
    printf("# server refusing: server \"%s\", client \"%s\"\n", cl[1].reason, cl[0].reason);
    world_free(&w);
}

/* ---- bulk transfer ---------------------------------------------------------------------------- */
typedef struct flow {
    const uint8_t *data;
    size_t len;
    size_t written, got;
    int64_t id;
    int fin_sent, fin_got, short_writes, writable_events, mismatch;
} flow;

static void flow_write(nk_quic *q, flow *f)
{
    while (f->written < f->len) {
        size_t want = f->len - f->written;
        if (want > 65536)
            want = 65536;
        int n = nk_quic_stream_write(q, f->id, f->data + f->written, want);
        if (n == NK_ERR_AGAIN) {
            f->short_writes++;
            return;
        }
        assert_true(n > 0);
        f->written += (size_t)n;
        if ((size_t)n < want) {
            f->short_writes++;
            return;
        }
    }
    if (!f->fin_sent) {
        assert_int_equal(nk_quic_stream_shutdown(q, f->id), 0);
        f->fin_sent = 1;
    }
}

static void flow_read(nk_quic *q, flow *f)
{
    static uint8_t buf[65536];
    for (;;) {
        int n = nk_quic_stream_read(q, f->id, buf, sizeof(buf));
        if (n == NK_ERR_AGAIN)
            return;
        if (n == 0) {
            f->fin_got = 1;
            return;
        }
        assert_true(n > 0);
        if (f->got + (size_t)n > f->len || memcmp(buf, f->data + f->got, (size_t)n) != 0)
            f->mismatch = 1;
        f->got += (size_t)n;
    }
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    rng r = {seed};
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v = rng_next(&r);
        memcpy(p + i, &v, 8);
    }
    for (size_t i = n & ~(size_t)7; i < n; i++)
        p[i] = (uint8_t)rng_next(&r);
    return p;
}

/* Transfers up/down bytes client->server and server->client on one stream each, FIN, and checks
 * both arrive intact. Returns the simulated ms from CONNECTED to the last byte. */
static int64_t transfer(int loss_pct, int64_t jitter_ms, size_t up, size_t down, uint64_t seed)
{
    world w;
    world_init(&w, loss_pct, jitter_ms, &id_server.id, NULL, &id_server, seed);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    int64_t t0 = w.now;
    uint8_t *a = random_bytes(up > 0 ? up : 1, seed * 3 + 1), *b = random_bytes(down > 0 ? down : 1, seed * 5 + 2);
    flow cs = {.data = a, .len = up}, sr = {.data = a, .len = up, .id = -1};   /* client sends, server reads */
    flow ss = {.data = b, .len = down, .id = -1}, cr = {.data = b, .len = down}; /* server sends, client reads */
    assert_int_equal(nk_quic_stream_open(w.q[0], &cs.id), 0);
    cr.id = cs.id;
    flow_write(w.q[0], &cs);
    int64_t limit = w.now + 3600 * 1000;
    while (!(sr.fin_got && cr.fin_got) && w.now < limit && !w.stalled) {
        world_step(&w);
        nk_quic_event ev;
        while (nk_quic_poll_event(w.q[0], &ev) == 0) {
            assert_int_not_equal(ev.type, NK_QUIC_EV_CLOSED);
            if (ev.type == NK_QUIC_EV_STREAM_WRITABLE) {
                cs.writable_events++;
                flow_write(w.q[0], &cs);
            }
            if (ev.type == NK_QUIC_EV_STREAM_READABLE)
                flow_read(w.q[0], &cr);
        }
        while (nk_quic_poll_event(w.q[1], &ev) == 0) {
            assert_int_not_equal(ev.type, NK_QUIC_EV_CLOSED);
            if (ev.type == NK_QUIC_EV_STREAM_OPENED) {
                assert_int_equal(sr.id, -1);
                sr.id = ss.id = ev.stream_id;
                flow_write(w.q[1], &ss);
            }
            if (ev.type == NK_QUIC_EV_STREAM_WRITABLE) {
                ss.writable_events++;
                flow_write(w.q[1], &ss);
            }
            if (ev.type == NK_QUIC_EV_STREAM_READABLE)
                flow_read(w.q[1], &sr);
        }
    }
    int64_t ms = w.now - t0;
    assert_true(sr.fin_got && cr.fin_got);
    assert_false(sr.mismatch);
    assert_false(cr.mismatch);
    assert_int_equal(sr.got, up);
    assert_int_equal(cr.got, down);
    if (up > 2 * 256 * 1024) {
        assert_true(cs.short_writes > 0);
        assert_true(cs.writable_events > 0);
    }
    nk_quic_stats st;
    nk_quic_get_stats(w.q[0], &st);
    printf("# %zu + %zu bytes at %d%% loss%s: %lld simulated ms, %.2f MB/s; client sent %llu datagrams "
           "(%llu dropped), srtt %lld us, cwnd %llu\n",
           up, down, loss_pct, jitter_ms > 0 ? " with reordering" : "", (long long)ms,
           (double)(up + down) / 1e3 / (double)(ms > 0 ? ms : 1), (unsigned long long)w.sent[0],
           (unsigned long long)w.dropped[0], (long long)st.srtt_us, (unsigned long long)st.cwnd);
    free(a);
    free(b);
    world_free(&w);
    return ms;
}

static void test_bulk_20mb(void **state)
{
    (void)state;
    transfer(0, 0, 20u << 20, 0, 10);
}

static void test_bulk_20mb_loss10(void **state)
{
    (void)state;
    transfer(10, 0, 20u << 20, 0, 11);
}

static void test_bulk_reorder_loss(void **state)
{
    (void)state;
    transfer(5, 15, 4u << 20, 0, 12);
}

static void test_both_directions(void **state)
{
    (void)state;
    transfer(1, 0, 3u << 20, 3u << 20, 13);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_wrong_peer_client),
        cmocka_unit_test(test_wrong_peer_server),
        cmocka_unit_test(test_bulk_20mb),
        cmocka_unit_test(test_bulk_20mb_loss10),
        cmocka_unit_test(test_bulk_reorder_loss),
        cmocka_unit_test(test_both_directions),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
