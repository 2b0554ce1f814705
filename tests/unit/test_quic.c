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
#include "quic/internal.h"

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

/* cc: both ends' NK_QUIC_CC_* */
static void world_init_cc(world *w, int loss_pct, int64_t jitter_ms, const nk_peer_id *client_expects,
                          const nk_peer_id *server_expects, const nk_identity *server_id, uint64_t seed, int cc)
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
                        .random = rng_fill, .random_ctx = &w->keys[0], .cc = cc};
    nk_quic_config s = {.role = NK_QUIC_SERVER, .identity = server_id, .peer = server_expects,
                        .random = rng_fill, .random_ctx = &w->keys[1], .cc = cc};
    assert_int_equal(nk_quic_new(&w->q[0], &c, w->now), 0);
    assert_int_equal(nk_quic_new(&w->q[1], &s, w->now), 0);
}

static void world_init(world *w, int loss_pct, int64_t jitter_ms, const nk_peer_id *client_expects,
                       const nk_peer_id *server_expects, const nk_identity *server_id, uint64_t seed)
{
    world_init_cc(w, loss_pct, jitter_ms, client_expects, server_expects, server_id, seed, NK_QUIC_CC_CUBIC);
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

/* Runs until CONNECTED on both sides (1), or CLOSED on one (0: *closed is that event); other
 * events are consumed. */
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

/* Runs until both ends reported CLOSED (or ms passed, or nothing is left to do): which ends
 * reported CONNECTED, which CLOSED, and their CLOSED events. */
static void world_run_to_close(world *w, int64_t ms, int connected[2], int closed[2], nk_quic_event cl[2])
{
    int64_t end = w->now + ms;
    connected[0] = connected[1] = closed[0] = closed[1] = 0;
    while (w->now < end && !(closed[0] && closed[1]) && !w->stalled) {
        world_step(w);
        for (int i = 0; i < 2; i++) {
            nk_quic_event ev;
            while (nk_quic_poll_event(w->q[i], &ev) == 0) {
                if (ev.type == NK_QUIC_EV_CONNECTED)
                    connected[i] = 1;
                if (ev.type == NK_QUIC_EV_CLOSED) {
                    closed[i] = 1;
                    cl[i] = ev;
                }
            }
        }
    }
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
    int connected[2], closed[2];
    nk_quic_event cl[2];
    world_run_to_close(&w, 5000, connected, closed, cl);
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
    int connected[2], closed[2];
    nk_quic_event cl[2];
    world_run_to_close(&w, 5000, connected, closed, cl);
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

static void test_timeouts(void **state)
{
    (void)state;
    /* Nothing gets through: the client gives up after the handshake timeout (10 s). */
    world w;
    world_init(&w, 100, 0, &id_server.id, NULL, &id_server, 4);
    int64_t start = w.now;
    nk_quic_event ev;
    assert_false(world_connect(&w, w.now + 60000, &ev));
    assert_int_equal(ev.type, NK_QUIC_EV_CLOSED);
    assert_int_equal(ev.err, NK_ERR_TIMEOUT);
    assert_true(w.now - start >= 10000 && w.now - start <= 10100);
    world_free(&w);

    /* Connected, then the network goes away: keep-alives go unanswered and the idle timeout
     * (30 s) closes both ends silently. */
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 5);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    w.loss_pct = 100;
    start = w.now;
    int closed[2] = {0, 0};
    while (!(closed[0] && closed[1]) && w.now < start + 120000 && !w.stalled) {
        world_step(&w);
        for (int i = 0; i < 2; i++)
            while (nk_quic_poll_event(w.q[i], &ev) == 0)
                if (ev.type == NK_QUIC_EV_CLOSED) {
                    assert_int_equal(ev.err, NK_ERR_TIMEOUT);
                    closed[i] = 1;
                }
    }
    assert_true(closed[0] && closed[1]);
    assert_true(w.now - start >= 30000 && w.now - start <= 40000);
    assert_int_equal(nk_quic_next_deadline(w.q[0]), NK_DEADLINE_NONE);
    world_free(&w);
}

/* ---- transfers ------------------------------------------------------------------------------ */
/* One stream's worth of bytes from endpoint `from` to the other, on its own stream. */
typedef struct flow {
    int from;
    const uint8_t *data;
    size_t len;
    size_t written, got;
    int64_t id;
    int opened, fin_sent, fin_got, short_writes, writable_events, mismatch;
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
            /* the reverse direction is unused: finish it so the stream closes on both ends */
            nk_quic_stream_shutdown(q, f->id);
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
    uint8_t *p = malloc(n > 0 ? n : 1);
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

static flow *flow_by_id(flow *f, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].opened && f[i].id == id)
            return &f[i];
    return NULL;
}

static void side_events(world *w, int side, flow *f, size_t nf)
{
    nk_quic_event ev;
    while (nk_quic_poll_event(w->q[side], &ev) == 0) {
        assert_int_not_equal(ev.type, NK_QUIC_EV_CLOSED);
        flow *x = ev.stream_id >= 0 ? flow_by_id(f, nf, ev.stream_id) : NULL;
        if (ev.type == NK_QUIC_EV_STREAM_OPENED)
            assert_non_null(x);
        if (ev.type == NK_QUIC_EV_STREAM_WRITABLE && x != NULL && x->from == side) {
            x->writable_events++;
            flow_write(w->q[side], x);
        }
        if (ev.type == NK_QUIC_EV_STREAM_READABLE && x != NULL && x->from != side)
            flow_read(w->q[side], x);
        if (ev.type == NK_QUIC_EV_STREAM_READABLE && x != NULL && x->from == side) {
            uint8_t b[1];
            assert_int_equal(nk_quic_stream_read(w->q[side], x->id, b, 1), 0); /* the unused way back: FIN */
        }
    }
}

/* Runs every flow to its FIN and checks the bytes. Returns the simulated ms it took. */
static int64_t run_flows(world *w, flow *f, size_t nf)
{
    int64_t t0 = w->now, limit = w->now + 3600 * 1000;
    for (;;) {
        for (size_t i = 0; i < nf; i++) {
            if (!f[i].opened) {
                int rv = nk_quic_stream_open(w->q[f[i].from], &f[i].id);
                if (rv == NK_ERR_AGAIN)
                    continue; /* the peer's stream limit: it grows as streams close */
                assert_int_equal(rv, 0);
                f[i].opened = 1;
                flow_write(w->q[f[i].from], &f[i]);
            }
        }
        size_t done = 0;
        for (size_t i = 0; i < nf; i++)
            done += f[i].fin_got;
        if (done == nf || w->now >= limit || w->stalled)
            break;
        world_step(w);
        side_events(w, 0, f, nf);
        side_events(w, 1, f, nf);
    }
    for (size_t i = 0; i < nf; i++) {
        assert_true(f[i].fin_got);
        assert_false(f[i].mismatch);
        assert_int_equal(f[i].got, f[i].len);
    }
    return w->now - t0;
}

static void report(world *w, const char *what, size_t bytes, int64_t ms)
{
    nk_quic_stats_t st;
    nk_quic_stats(w->q[0], &st);
    printf("# %s: %zu bytes at %d%% loss%s in %lld simulated ms = %.2f MB/s; %llu + %llu datagrams "
           "(%llu + %llu dropped), client srtt %lld us, cwnd %llu\n",
           what, bytes, w->loss_pct, w->jitter_ms > 0 ? " with reordering" : "", (long long)ms,
           (double)bytes / 1e3 / (double)(ms > 0 ? ms : 1), (unsigned long long)w->sent[0],
           (unsigned long long)w->sent[1], (unsigned long long)w->dropped[0], (unsigned long long)w->dropped[1],
           (long long)st.srtt_us, (unsigned long long)st.cwnd);
}

/* n bytes client->server on one stream, with FIN, using write backpressure. */
static void bulk(int loss_pct, int64_t jitter_ms, size_t n, int cc, uint64_t seed, const char *what)
{
    world w;
    world_init_cc(&w, loss_pct, jitter_ms, &id_server.id, NULL, &id_server, seed, cc);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    uint8_t *data = random_bytes(n, seed * 3 + 1);
    flow f = {.from = 0, .data = data, .len = n};
    int64_t ms = run_flows(&w, &f, 1);
    assert_true(f.short_writes > 0);   /* the send buffer pushed back ... */
    assert_true(f.writable_events > 0); /* ... and WRITABLE brought the writer back */
    report(&w, what, n, ms);
    free(data);
    world_free(&w);
}

static void test_bulk_20mb(void **state)
{
    (void)state;
    bulk(0, 0, 20u << 20, NK_QUIC_CC_CUBIC, 10, "20 MB, CUBIC");
}

static void test_bulk_20mb_loss10(void **state)
{
    (void)state;
    bulk(10, 0, 20u << 20, NK_QUIC_CC_CUBIC, 11, "20 MB, CUBIC");
}

static void test_bulk_bbr_loss10(void **state)
{
    (void)state;
    bulk(10, 0, 20u << 20, NK_QUIC_CC_BBR, 12, "20 MB, BBR");
}

static void test_bulk_reorder_loss(void **state)
{
    (void)state;
    bulk(5, 15, 4u << 20, NK_QUIC_CC_CUBIC, 13, "4 MB, CUBIC");
}

static void test_both_directions(void **state)
{
    (void)state;
    world w;
    world_init(&w, 1, 0, &id_server.id, NULL, &id_server, 14);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    size_t n = 4u << 20;
    uint8_t *a = random_bytes(n, 1), *b = random_bytes(n, 2);
    flow f[2] = {{.from = 0, .data = a, .len = n}, {.from = 1, .data = b, .len = n}};
    int64_t ms = run_flows(&w, f, 2);
    report(&w, "both directions, two streams", 2 * n, ms);
    free(a);
    free(b);
    world_free(&w);
}

static void test_many_streams(void **state)
{
    (void)state;
    world w;
    world_init(&w, 2, 0, &id_server.id, NULL, &id_server, 15);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    enum { N = 150, SIZE = 10 * 1024 };
    uint8_t *data = random_bytes(N * SIZE, 3);
    flow *f = calloc(N, sizeof(*f));
    assert_non_null(f);
    for (size_t i = 0; i < N; i++) {
        f[i].from = (int)(i % 5 == 4); /* a fifth of them from the server */
        f[i].data = data + i * SIZE;
        f[i].len = SIZE;
    }
    int64_t ms = run_flows(&w, f, N);
    report(&w, "150 streams x 10 KB (more than the 100-stream limit)", N * SIZE, ms);
    /* every stream finished on both ends is forgotten (white box) */
    for (int i = 0; i < 20; i++) {
        world_step(&w);
        side_events(&w, 0, f, N);
        side_events(&w, 1, f, N);
    }
    assert_int_equal(w.q[0]->nstreams, 0);
    assert_int_equal(w.q[1]->nstreams, 0);
    free(f);
    free(data);
    world_free(&w);
}

/* Garbage, truncated and replayed datagrams do not hurt an established connection. */
static uint8_t tapped[2][8][1500];
static size_t tapped_len[2][8];
static unsigned tapped_n[2];

static void tap_copy(world *w, int from, const uint8_t *p, size_t n)
{
    (void)w;
    unsigned k = tapped_n[from]++ % 8;
    memcpy(tapped[from][k], p, n);
    tapped_len[from][k] = n;
}

static void garbage_run(uint64_t seed)
{
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 19);
    w.tap = tap_copy;
    assert_true(world_connect(&w, w.now + 10000, NULL));
    size_t n = 1u << 20;
    uint8_t *data = random_bytes(n, 9);
    flow f = {.from = 0, .data = data, .len = n};
    assert_int_equal(nk_quic_stream_open(w.q[0], &f.id), 0);
    f.opened = 1;
    flow_write(w.q[0], &f);
    rng r = {seed};
    while (!f.fin_got && !w.stalled) {
        world_step(&w);
        for (int side = 0; side < 2 && tapped_n[1 - side] > 0; side++) {
            uint8_t junk[1500];
            unsigned k = (unsigned)(rng_next(&r) % 8);
            size_t len = tapped_len[1 - side][k];
            memcpy(junk, tapped[1 - side][k], len);
            switch (rng_next(&r) % 4) {
            case 0: /* a replay */
                break;
            case 1: /* truncated */
                len = (size_t)(rng_next(&r) % (len + 1));
                break;
            case 2: /* one bit flipped */
                if (len > 0)
                    junk[rng_next(&r) % len] ^= (uint8_t)(1u << (rng_next(&r) % 8));
                break;
            default: /* random bytes */
                len = (size_t)(rng_next(&r) % 1400);
                rng_fill(&r, junk, len);
            }
            nk_quic_handle_datagram(w.q[side], w.now, junk, len);
        }
        nk_quic_event ev;
        while (nk_quic_poll_event(w.q[0], &ev) == 0) {
            if (ev.type == NK_QUIC_EV_CLOSED)
                fail_msg("closed: %s", ev.reason);
            if (ev.type == NK_QUIC_EV_STREAM_WRITABLE)
                flow_write(w.q[0], &f);
        }
        while (nk_quic_poll_event(w.q[1], &ev) == 0) {
            if (ev.type == NK_QUIC_EV_CLOSED)
                fail_msg("closed: %s", ev.reason);
            if (ev.type == NK_QUIC_EV_STREAM_READABLE)
                flow_read(w.q[1], &f);
        }
    }
    assert_true(f.fin_got);
    assert_false(f.mismatch);
    assert_int_equal(f.got, n);
    free(data);
    world_free(&w);
}

static void test_garbage_ignored(void **state)
{
    (void)state;
    for (uint64_t seed = 77; seed < 80; seed++)
        garbage_run(seed);
}

/* ---- datagrams, exporter, reset, memory ------------------------------------------------------ */
static void test_datagram_and_exporter(void **state)
{
    (void)state;
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 16);
    uint8_t big[2000] = {0};
    assert_int_equal(nk_quic_datagram_send(w.q[0], big, 10), NK_ERR_STATE);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    size_t max = nk_quic_datagram_max(w.q[0]);
    assert_true(max >= 1000 && max < 1200);
    assert_int_equal(nk_quic_datagram_send(w.q[0], big, max + 1), NK_ERR_LIMIT);
    const uint8_t ping[] = "ping over an unreliable datagram";
    assert_int_equal(nk_quic_datagram_send(w.q[0], ping, sizeof(ping)), 0);
    int echoed = 0;
    uint8_t buf[1500];
    for (int i = 0; i < 50 && !echoed; i++) {
        world_step(&w);
        nk_quic_event ev;
        while (nk_quic_poll_event(w.q[1], &ev) == 0) {
            if (ev.type != NK_QUIC_EV_DATAGRAM)
                continue;
            int n = nk_quic_datagram_read(w.q[1], buf, sizeof(buf));
            assert_int_equal(n, sizeof(ping));
            assert_memory_equal(buf, ping, sizeof(ping));
            assert_int_equal(nk_quic_datagram_send(w.q[1], buf, (size_t)n), 0);
        }
        while (nk_quic_poll_event(w.q[0], &ev) == 0) {
            if (ev.type != NK_QUIC_EV_DATAGRAM)
                continue;
            assert_int_equal(nk_quic_datagram_read(w.q[0], buf, 4), NK_ERR_NOBUFS);
            assert_int_equal(nk_quic_datagram_read(w.q[0], buf, sizeof(buf)), sizeof(ping));
            echoed = 1;
        }
    }
    assert_true(echoed);
    assert_int_equal(nk_quic_datagram_read(w.q[0], buf, sizeof(buf)), NK_ERR_AGAIN);

    uint8_t k0[32], k1[32], k2[32];
    const uint8_t ctx[] = {1, 2, 3};
    assert_int_equal(nk_quic_export(w.q[0], "EXPORTER-natkit-test", ctx, sizeof(ctx), k0, sizeof(k0)), 0);
    assert_int_equal(nk_quic_export(w.q[1], "EXPORTER-natkit-test", ctx, sizeof(ctx), k1, sizeof(k1)), 0);
    assert_memory_equal(k0, k1, sizeof(k0));
    assert_int_equal(nk_quic_export(w.q[1], "EXPORTER-natkit-other", ctx, sizeof(ctx), k2, sizeof(k2)), 0);
    assert_memory_not_equal(k0, k2, sizeof(k0));

    /* a second connection between the same peers exports different bytes */
    world w2;
    world_init(&w2, 0, 0, &id_server.id, NULL, &id_server, 17);
    assert_true(world_connect(&w2, w2.now + 10000, NULL));
    assert_int_equal(nk_quic_export(w2.q[0], "EXPORTER-natkit-test", ctx, sizeof(ctx), k2, sizeof(k2)), 0);
    assert_memory_not_equal(k0, k2, sizeof(k0));
    world_free(&w2);
    world_free(&w);
}

/* After the handshake both ends have dropped their GnuTLS session (memory): key updates (which
 * ngtcp2 derives from the secrets it keeps) still work both ways, data still flows, and the
 * exporter (now computed from the exporter secret) still agrees on both ends. */
static int initiate_key_update(world *w, int side)
{
    nk_quic *q = w->q[side];
    ngtcp2_tstamp ts = (ngtcp2_tstamp)(w->now - q->base_ms) * NGTCP2_MILLISECONDS + NGTCP2_SECONDS;
    return ngtcp2_conn_initiate_key_update(q->conn, ts);
}

static void test_tls_dropped_key_update(void **state)
{
    (void)state;
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 23);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    for (int k = 0; k < 20; k++)
        world_step(&w); /* HANDSHAKE_DONE reaches the client: the handshake is confirmed */
    assert_null(w.q[0]->tls);
    assert_null(w.q[1]->tls);
    assert_null(w.q[0]->cred);
    uint8_t k_before[48];
    assert_int_equal(nk_quic_export(w.q[0], "EXPORTER-natkit-test", NULL, 0, k_before, sizeof(k_before)), 0);
    static uint8_t data[300000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 31 + 7);
    for (int round = 0; round < 4; round++) {
        /* each side in turn; ngtcp2 refuses a new update until the last one was confirmed, which
         * the flow in between takes care of */
        assert_int_equal(initiate_key_update(&w, round % 2), 0);
        flow f[2] = {{.from = 0, .data = data, .len = sizeof(data)}, {.from = 1, .data = data, .len = 1000}};
        run_flows(&w, f, 2);
        for (int k = 0; k < 200; k++)
            world_step(&w); /* the old keys are discarded after 3 PTO */
    }
    uint8_t k0[48], k1[48];
    assert_int_equal(nk_quic_export(w.q[0], "EXPORTER-natkit-test", NULL, 0, k0, sizeof(k0)), 0);
    assert_int_equal(nk_quic_export(w.q[1], "EXPORTER-natkit-test", NULL, 0, k1, sizeof(k1)), 0);
    assert_memory_equal(k0, k1, sizeof(k0));
    assert_memory_equal(k0, k_before, sizeof(k0)); /* key updates leave the exporter alone */
    assert_true(nk_quic_connected(w.q[0], NULL) && nk_quic_connected(w.q[1], NULL));
    world_free(&w);
}

static void test_stream_reset(void **state)
{
    (void)state;
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 18);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    int64_t id;
    assert_int_equal(nk_quic_stream_open(w.q[0], &id), 0);
    assert_int_equal(nk_quic_stream_write(w.q[0], id, (const uint8_t *)"hello", 5), 5);
    int reset = 0, opened = 0;
    for (int i = 0; i < 100 && !reset; i++) {
        world_step(&w);
        nk_quic_event ev;
        while (nk_quic_poll_event(w.q[1], &ev) == 0) {
            if (ev.type == NK_QUIC_EV_STREAM_OPENED) {
                opened = 1;
                assert_int_equal(nk_quic_stream_reset(w.q[0], id, 42), 0);
            }
            if (ev.type == NK_QUIC_EV_STREAM_RESET) {
                assert_int_equal(ev.app_error, 42);
                assert_int_equal(ev.stream_id, id);
                reset = 1;
            }
        }
        while (nk_quic_poll_event(w.q[0], &ev) == 0)
            ;
    }
    assert_true(opened && reset);
    uint8_t buf[16];
    int rv = nk_quic_stream_read(w.q[1], id, buf, sizeof(buf));
    assert_true(rv == NK_ERR_CLOSED || rv == NK_ERR_NOT_FOUND);
    assert_int_equal(nk_quic_stream_write(w.q[0], id, buf, 1) < 0, 1);
    world_free(&w);
}

extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* Both sides close at the same moment: each answers the other's close (ngtcp2 reads nothing while
 * closing, so a close looks like any datagram), but only at the 1st, 2nd, 4th, ... datagram
 * (RFC 9000 10.2.1), so the exchange ends after a few packets; both report CLOSED (err 0). */
static void test_close_both_at_once(void **state)
{
    (void)state;
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 31);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    for (int k = 0; k < 20; k++)
        world_step(&w);
    uint64_t before[2] = {w.sent[0], w.sent[1]};
    assert_int_equal(nk_quic_close(w.q[0], w.now, 7), 0);
    assert_int_equal(nk_quic_close(w.q[1], w.now, 7), 0);
    assert_int_equal(nk_quic_close(w.q[1], w.now, 7), NK_ERR_STATE);
    int steps = 0;
    while (!w.stalled && steps < 1000)
        world_step(&w), steps++;
    assert_true(w.stalled); /* nothing in flight, no timer: the exchange is over */
    assert_null(w.queue[0]);
    assert_null(w.queue[1]);
    for (int i = 0; i < 2; i++) {
        /* our close, then answers to the peer's close and its first answer: 3 each */
        uint64_t n = w.sent[i] - before[i];
        assert_true(n >= 1 && n <= 3);
        int closed = 0;
        nk_quic_event ev;
        while (nk_quic_poll_event(w.q[i], &ev) == 0)
            if (ev.type == NK_QUIC_EV_CLOSED) {
                closed++;
                assert_int_equal(ev.err, 0);
                assert_int_equal(ev.app_error, 7);
            }
        assert_int_equal(closed, 1);
        assert_false(nk_quic_connected(w.q[i], NULL));
    }
    world_free(&w);
}

/* A peer that keeps sending to a closed endpoint gets a close for its 1st, 2nd, 4th, 8th, ...
 * datagram only; once that peer has the close (draining), it sends nothing more at all. */
static void test_close_rate_limited(void **state)
{
    (void)state;
    world w;
    world_init(&w, 0, 0, &id_server.id, NULL, &id_server, 32);
    assert_true(world_connect(&w, w.now + 10000, NULL));
    for (int k = 0; k < 20; k++)
        world_step(&w);
    /* a datagram of the client's, to play a client that has not heard the close yet */
    int64_t sid;
    assert_int_equal(nk_quic_stream_open(w.q[0], &sid), 0);
    assert_int_equal(nk_quic_stream_write(w.q[0], sid, (const uint8_t *)"still talking", 13), 13);
    uint8_t from_client[1500], from_server[1500], buf[1500];
    int cn = nk_quic_poll_transmit(w.q[0], w.now, from_client, sizeof(from_client));
    assert_true(cn > 0);

    assert_int_equal(nk_quic_close(w.q[1], w.now, 0), 0);
    int close_len = nk_quic_poll_transmit(w.q[1], w.now, from_server, sizeof(from_server));
    assert_true(close_len > 0); /* the close */
    assert_int_equal(nk_quic_poll_transmit(w.q[1], w.now, buf, sizeof(buf)), NK_ERR_AGAIN);
    enum { N = 1000 };
    int answers = 0;
    for (int i = 1; i <= N; i++) {
        assert_int_equal(nk_quic_handle_datagram(w.q[1], w.now + i, from_client, (size_t)cn), NK_ERR_CLOSED);
        int n, got = 0;
        while ((n = nk_quic_poll_transmit(w.q[1], w.now + i, buf, sizeof(buf))) > 0) {
            assert_int_equal(n, close_len);
            assert_memory_equal(buf, from_server, (size_t)n); /* the same close again */
            got++;
        }
        assert_int_equal(n, NK_ERR_AGAIN);
        assert_int_equal(got, (i & (i - 1)) == 0); /* i a power of two */
        answers += got;
    }
    assert_int_equal(answers, 10); /* 1, 2, 4, ..., 512 */
    assert_int_equal(nk_quic_next_deadline(w.q[1]), NK_DEADLINE_NONE);

    /* the client gets the close: CLOSED (the peer's code), then draining: silent */
    nk_quic_event ev;
    while (nk_quic_poll_event(w.q[0], &ev) == 0)
        ;
    nk_quic_handle_datagram(w.q[0], w.now, from_server, (size_t)close_len);
    int closed = 0;
    while (nk_quic_poll_event(w.q[0], &ev) == 0)
        if (ev.type == NK_QUIC_EV_CLOSED) {
            closed++;
            assert_int_equal(ev.err, NK_ERR_CLOSED);
        }
    assert_int_equal(closed, 1);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(nk_quic_handle_datagram(w.q[0], w.now + i, from_server, (size_t)close_len), NK_ERR_CLOSED);
        assert_int_equal(nk_quic_poll_transmit(w.q[0], w.now + i, buf, sizeof(buf)), NK_ERR_AGAIN);
    }
    assert_int_equal(nk_quic_close(w.q[0], w.now, 0), NK_ERR_STATE);
    assert_int_equal(nk_quic_poll_transmit(w.q[0], w.now, buf, sizeof(buf)), NK_ERR_AGAIN);
    world_free(&w);
}

static size_t heap_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes != NULL)
        return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
}

static void test_idle_memory(void **state)
{
    (void)state;
    enum { N = 8 };
    static world w[N];
    size_t before = heap_in_use();
    for (int i = 0; i < N; i++) {
        world_init(&w[i], 0, 0, &id_server.id, NULL, &id_server, 100 + (uint64_t)i);
        assert_true(world_connect(&w[i], w[i].now + 10000, NULL));
        /* a short exchange, then idle: everything acknowledged, no stream left */
        flow f = {.from = 0, .data = (const uint8_t *)"0123456789", .len = 10};
        run_flows(&w[i], &f, 1);
        for (int k = 0; k < 20; k++)
            world_step(&w[i]);
    }
    size_t after = heap_in_use();
    nk_quic_stats_t c, s;
    nk_quic_stats(w[0].q[0], &c);
    nk_quic_stats(w[0].q[1], &s);
    size_t per = (after - before) / (2 * N);
    printf("# idle connection: %zu heap bytes per endpoint in all (GnuTLS included); ngtcp2 + natkit "
           "buffers: client %zu, server %zu\n",
           per, c.mem_bytes, s.mem_bytes);
    /* The goal is 64 KiB per idle connection in all. Measured here (issue 12): ~91 KiB per
     * endpoint in all, of which ngtcp2 0.12 keeps ~76-84 KiB (its connection, object pools and
     * skip-list blocks, see docs/internals/quic.md); the GnuTLS session is gone after the
     * handshake (it was ~30 KiB more). Bounds with ~12 % margin, so that a regression fails. */
    assert_null(w[0].q[0]->tls);
    assert_null(w[0].q[1]->tls);
    assert_true(per < 100 * 1024);
    assert_true(c.mem_bytes < 96 * 1024 && s.mem_bytes < 96 * 1024);
    for (int i = 0; i < N; i++)
        world_free(&w[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_wrong_peer_client),
        cmocka_unit_test(test_wrong_peer_server),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_bulk_20mb),
        cmocka_unit_test(test_bulk_20mb_loss10),
        cmocka_unit_test(test_bulk_bbr_loss10),
        cmocka_unit_test(test_bulk_reorder_loss),
        cmocka_unit_test(test_both_directions),
        cmocka_unit_test(test_many_streams),
        cmocka_unit_test(test_garbage_ignored),
        cmocka_unit_test(test_datagram_and_exporter),
        cmocka_unit_test(test_tls_dropped_key_update),
        cmocka_unit_test(test_stream_reset),
        cmocka_unit_test(test_close_both_at_once),
        cmocka_unit_test(test_close_rate_limited),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
