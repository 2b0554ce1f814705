/*
 * The secure session, two (or 200) endpoints in one process, in the test
 * world of tests/sim: its clock and a link that loses, reorders (jitter) and
 * duplicates packets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "natkit/session.h"
#include "cursor.h"
#include "session/internal.h"
#include "sim.h"

typedef sim_rng rng; /* tests/sim's seeded source */

/* ---- the simulated network ----------------------------------------------------------------- */

#define MAX_ENDPOINTS 200
/* A captured packet. */
typedef struct packet {
    nk_path_id path;
    size_t len;
    uint8_t data[1500];
} packet;

/* In flight: a sim_pkt with dst the endpoint and aux the path. */
typedef struct net {
    sim_clock clock;
    rng r;
    sim_queue q;   /* q.link: latency, jitter, loss, dup */
    nk_session *ep[MAX_ENDPOINTS];
    int peer_of[MAX_ENDPOINTS];
    rng ep_rng[MAX_ENDPOINTS];
    int n;
    /* a tap: when set, every packet endpoint tap_from emits is copied here (no delivery change) */
    int tap_from;
    packet tapped[64];
    size_t ntapped;
    int drop_next_from[MAX_ENDPOINTS]; /* drop this many of the next packets an endpoint emits */
} net;

static nk_identity ids[4];

static int setup_ids(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        if (nk_identity_generate(&ids[i]) != 0)
            return -1;
    return 0;
}

static net *net_new(uint64_t seed, double loss, double dup, int64_t latency, int64_t jitter)
{
    net *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    sim_rng_seed(&n->r, seed + sim_seed(0));
    sim_queue_init(&n->q, &n->r);
    n->q.link = (sim_link){.delay_ms = latency, .jitter_ms = jitter, .loss = loss, .dup = dup};
    sim_clock_init(&n->clock, 1000);
    n->tap_from = -1;
    return n;
}

static void net_free(net *n)
{
    for (int i = 0; i < n->n; i++)
        nk_session_free(n->ep[i]);
    sim_queue_free(&n->q);
    free(n);
}

static nk_session_config base_config(const nk_identity *me, const nk_peer_id *peer, int initiator)
{
    nk_session_config c;
    memset(&c, 0, sizeof(c));
    c.identity = me;
    c.peer = peer;
    c.initiator = initiator;
    return c;
}

/* Adds a connected-to-be pair (initiator, responder); returns the initiator's index. */
static int net_add_pair(net *n, nk_session_config ci, nk_session_config cr)
{
    int a = n->n, b = n->n + 1;
    assert_true(b < MAX_ENDPOINTS);
    n->ep_rng[a].s = sim_rng_next(&n->r);
    n->ep_rng[b].s = sim_rng_next(&n->r);
    ci.random = sim_random;
    ci.random_ctx = &n->ep_rng[a];
    cr.random = sim_random;
    cr.random_ctx = &n->ep_rng[b];
    assert_int_equal(nk_session_new(&n->ep[a], &ci, n->clock.now), 0);
    assert_int_equal(nk_session_new(&n->ep[b], &cr, n->clock.now), 0);
    n->peer_of[a] = b;
    n->peer_of[b] = a;
    n->n += 2;
    return a;
}

/* Drains every endpoint's transmits into the network (with loss, duplication, jitter). */
static void net_flush(net *n)
{
    uint8_t buf[1500];
    nk_session_transmit tx;
    for (int i = 0; i < n->n; i++) {
        while (nk_session_poll_transmit(n->ep[i], n->clock.now, &tx, buf, sizeof(buf)) == 0) {
            if (n->tap_from == i && n->ntapped < 64) {
                packet *t = &n->tapped[n->ntapped++];
                t->path = tx.path;
                t->len = tx.len;
                memcpy(t->data, buf, tx.len);
            }
            if (n->drop_next_from[i] > 0) {
                n->drop_next_from[i]--;
                continue;
            }
            sim_queue_send(&n->q, n->clock.now,
                           &(sim_pkt){.dst = n->peer_of[i], .aux = (int)tx.path, .data = buf, .len = tx.len});
        }
    }
}

/* One step: moves time to the next event, delivers what is due, fires timers, flushes. */
static int net_step(net *n, int64_t limit)
{
    net_flush(n);
    sim_clock_offer(&n->clock, sim_queue_next(&n->q));
    for (int i = 0; i < n->n; i++)
        sim_clock_offer(&n->clock, nk_session_next_deadline(n->ep[i]));
    if (!sim_clock_advance(&n->clock, limit))
        return 0;
    const sim_pkt *p;
    while ((p = sim_queue_pop(&n->q, n->clock.now)) != NULL)
        nk_session_handle_datagram(n->ep[p->dst], n->clock.now, (nk_path_id)p->aux, p->data, p->len);
    for (int i = 0; i < n->n; i++)
        if (nk_session_next_deadline(n->ep[i]) <= n->clock.now)
            nk_session_handle_timeout(n->ep[i], n->clock.now);
    net_flush(n);
    return 1;
}

static int has_event(nk_session *s, int type, nk_session_event *out)
{
    nk_session_event ev;
    int found = 0;
    while (nk_session_poll_event(s, &ev) == 0) {
        if (ev.type == type && !found) {
            found = 1;
            if (out != NULL)
                *out = ev;
        }
    }
    return found;
}

/* Runs until both sessions of every pair are CONNECTED (or the time limit). */
static void run_until_connected(net *n, int64_t limit)
{
    for (;;) {
        int all = 1;
        for (int i = 0; i < n->n; i++)
            all &= nk_session_state(n->ep[i]) == NK_SESSION_CONNECTED;
        if (all)
            return;
        if (!net_step(n, limit))
            break;
    }
    fail_msg("not all sessions connected by %lld ms", (long long)limit);
}

static net *connected_pair(uint64_t seed, double loss, double dup, nk_session_config ci, nk_session_config cr)
{
    net *n = net_new(seed, loss, dup, 20, 0);
    int a = net_add_pair(n, ci, cr);
    assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
    run_until_connected(n, n->clock.now + 30000);
    return n;
}

/* ---- message streams ------------------------------------------------------------------------ */

typedef struct stream {
    uint32_t sent, received;
} stream;

static size_t make_msg(uint8_t *buf, uint32_t seq, size_t max)
{
    size_t len = 8 + (seq * 131u) % (max - 8);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seq * 7 + i);
    nk__store_u32(buf, seq);
    nk__store_u32(buf + 4, (uint32_t)len);
    return len;
}

static uint8_t big_a[NK_SESSION_MAX_MESSAGE], big_b[NK_SESSION_MAX_MESSAGE];

/* Stream messages: 8 .. 3000 bytes, so some take one datagram and some up to three. */
static size_t stream_max(const nk_session *s)
{
    size_t max = nk_session_max_message(s);
    return max < 3000 ? max : 3000;
}

static void pump_send(nk_session *s, stream *st, uint32_t total)
{
    uint8_t *buf = big_a;
    size_t max = stream_max(s);
    while (st->sent < total) {
        size_t len = make_msg(buf, st->sent, max);
        int rc = nk_session_send(s, buf, len);
        if (rc == NK_ERR_AGAIN)
            return;
        assert_int_equal(rc, 0);
        st->sent++;
    }
}

static void pump_recv(nk_session *s, stream *st)
{
    uint8_t *buf = big_a, *want = big_b;
    int len;
    size_t max = stream_max(s);
    while ((len = nk_session_recv(s, buf, NK_SESSION_MAX_MESSAGE)) >= 0) {
        size_t wlen = make_msg(want, st->received, max);
        assert_int_equal((size_t)len, wlen);
        assert_memory_equal(buf, want, wlen); /* in order, exactly once, intact */
        st->received++;
    }
    assert_int_equal(len, NK_ERR_AGAIN);
}

/* Streams total messages each way over every pair; returns when all arrived. */
static void run_streams(net *n, uint32_t total, int64_t limit)
{
    stream *st = calloc((size_t)n->n, sizeof(stream));
    assert_non_null(st);
    for (;;) {
        int done = 1;
        for (int i = 0; i < n->n; i++) {
            pump_send(n->ep[i], &st[i], total);
            pump_recv(n->ep[i], &st[i]);
            done &= st[i].received == total;
        }
        if (done)
            break;
        for (int i = 0; i < n->n; i++) {
            nk_session *e = n->ep[i], *o = n->ep[n->peer_of[i]];
            if (e->tx_base > o->rx_next)
                fail_msg("ep%d tx_base %llu > peer rx_next %llu at %lld", i, (unsigned long long)e->tx_base,
                         (unsigned long long)o->rx_next, (long long)n->clock.now);
        }
        if (!net_step(n, limit)) {
            for (int i = 0; i < n->n && i < 2; i++) {
                nk_session_stats_t x;
                nk_session_stats(n->ep[i], &x);
                fprintf(stderr, "ep%d: state %d sent %u recv %u tx %llu rx %llu retx %llu repl %llu auth %llu unexp %llu mal %llu srtt %lld rto %lld unacked %zu rekeys %llu\n", i,
                        nk_session_state(n->ep[i]), st[i].sent, st[i].received, (unsigned long long)x.tx_packets,
                        (unsigned long long)x.rx_packets, (unsigned long long)x.retransmits,
                        (unsigned long long)x.rx_replayed, (unsigned long long)x.rx_auth_failed,
                        (unsigned long long)x.rx_unexpected, (unsigned long long)x.rx_malformed, (long long)x.srtt_ms,
                        (long long)x.rto_ms, nk_session_unacked(n->ep[i]), (unsigned long long)x.rekeys);
                nk_session *e = n->ep[i];
                nk__txmsg *m = &e->tx[e->tx_base % e->window];
                fprintf(stderr, "  tx_base %llu tx_next %llu peer_limit %llu: acked %d xmits %u sent %lld due %lld; rx_read %llu rx_next %llu deadline %lld\n",
                        (unsigned long long)e->tx_base, (unsigned long long)e->tx_next, (unsigned long long)e->peer_limit,
                        m->acked, m->xmits, (long long)m->sent_ms, (long long)m->due_ms, (unsigned long long)e->rx_read,
                        (unsigned long long)e->rx_next, (long long)nk_session_next_deadline(e));
            }
            fail_msg("streams stalled at %lld ms (ep0 got %u of %u)", (long long)n->clock.now, st[0].received, total);
        }
        for (int i = 0; i < n->n; i++)
            if (nk_session_state(n->ep[i]) == NK_SESSION_CLOSED) {
                nk_session_event ev;
                while (nk_session_poll_event(n->ep[i], &ev) == 0)
                    if (ev.type == NK_SESSION_EV_CLOSED)
                        fail_msg("ep %d closed: %s at %lld", i, nk_strerror(ev.err), (long long)n->clock.now);
            }
    }
    /* nothing extra arrives later: exactly once */
    for (int k = 0; k < 200 && net_step(n, n->clock.now + 2000); k++)
        ;
    for (int i = 0; i < n->n; i++) {
        uint8_t buf[1500];
        assert_int_equal(nk_session_recv(n->ep[i], buf, sizeof(buf)), NK_ERR_AGAIN);
    }
    free(st);
}

/* ---- tests -------------------------------------------------------------------------------------- */

static void test_handshake_completes(void **state)
{
    (void)state;
    net *n = net_new(1, 0, 0, 20, 0);
    /* the responder does not know who will call: it learns the authenticated ID */
    int a = net_add_pair(n, base_config(&ids[0], &ids[1].id, 1), base_config(&ids[1], NULL, 0));
    nk_session *A = n->ep[a], *B = n->ep[a + 1];
    assert_null(nk_session_peer(B));
    n->tap_from = a;
    assert_int_equal(nk_session_connect(A, 7, n->clock.now), 0);
    assert_int_equal(nk_session_connect(A, 7, n->clock.now), NK_ERR_STATE);
    int64_t t0 = n->clock.now;
    run_until_connected(n, n->clock.now + 5000);
    /* 1 RTT for the initiator, 1.5 RTT for the responder (it waits for key confirmation) */
    assert_true(n->clock.now - t0 <= 60);
    nk_session_event ev;
    assert_true(has_event(A, NK_SESSION_EV_CONNECTED, &ev));
    assert_int_equal(ev.path, 7);
    assert_int_equal(ev.rtt_ms, 40);
    assert_true(has_event(B, NK_SESSION_EV_CONNECTED, &ev));
    assert_int_equal(ev.path, 7);
    assert_non_null(nk_session_peer(B));
    assert_true(nk_peer_id_equal(nk_session_peer(B), &ids[0].id));
    assert_true(nk_peer_id_equal(nk_session_peer(A), &ids[1].id));
    /* the INIT, replayed later from elsewhere, changes nothing */
    assert_int_equal(n->tapped[0].data[1], NK_SESSION_PKT_INIT);
    assert_true(nk_session_handle_datagram(B, n->clock.now, 66, n->tapped[0].data, n->tapped[0].len) < 0);
    assert_int_equal(nk_session_state(B), NK_SESSION_CONNECTED);
    assert_int_equal(nk_session_path(B), 7);
    n->tap_from = -1;
    /* one message each way */
    uint8_t buf[64];
    assert_int_equal(nk_session_send(A, (const uint8_t *)"hello", 5), 0);
    assert_int_equal(nk_session_send(B, (const uint8_t *)"world", 5), 0);
    for (int i = 0; i < 10; i++)
        net_step(n, n->clock.now + 1000);
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(nk_session_recv(A, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "world", 5);
    nk_session_stats_t st;
    nk_session_stats(B, &st);
    assert_int_equal(st.rx_auth_failed + st.rx_malformed + st.rx_replayed, 0);
    net_free(n);
}

/* Lost handshake messages are retransmitted. */
static void test_handshake_retransmission(void **state)
{
    (void)state;
    net *n = net_new(2, 0, 0, 20, 0);
    int a = net_add_pair(n, base_config(&ids[0], &ids[1].id, 1), base_config(&ids[1], &ids[0].id, 0));
    n->drop_next_from[a] = 2;     /* two INITs lost */
    n->drop_next_from[a + 1] = 1; /* the first RESPONSE lost */
    assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
    run_until_connected(n, n->clock.now + 10000);
    nk_session_stats_t st;
    nk_session_stats(n->ep[a], &st);
    assert_int_equal(st.handshake_retransmits, 3);
    /* 500 + 1000 + 2000 ms of backoff, then one RTT */
    assert_true(n->clock.now - 1000 >= 3500 && n->clock.now - 1000 <= 3600);
    nk_session_stats(n->ep[a + 1], &st);
    assert_int_equal(st.rx_replayed, 1); /* the retransmitted INIT after the lost RESPONSE */
    net_free(n);
}

static void run_until_closed(net *n, int ep, int64_t limit)
{
    while (nk_session_state(n->ep[ep]) != NK_SESSION_CLOSED)
        if (!net_step(n, limit))
            fail_msg("endpoint %d did not close by %lld", ep, (long long)limit);
}

/* The initiator names a peer ID that is not the responder's: no session. */
static size_t poll1(nk_session *s, int64_t now, uint8_t *buf, nk_path_id *path)
{
    nk_session_transmit tx;
    assert_int_equal(nk_session_poll_transmit(s, now, &tx, buf, 1500), 0);
    if (path != NULL)
        *path = tx.path;
    return tx.len;
}

/* A responder that accepts anyone, with a second caller's INIT interleaved: the session belongs to
   the caller who confirms its keys, and each INIT retransmission gets its own answer. */
static void test_interleaved_initiators(void **state)
{
    (void)state;
    nk_session *A, *B, *C;
    nk_session_config ca = base_config(&ids[0], &ids[1].id, 1), cb = base_config(&ids[1], NULL, 0),
                      cc = base_config(&ids[2], &ids[1].id, 1);
    int64_t now = 1000;
    assert_int_equal(nk_session_new(&A, &ca, now), 0);
    assert_int_equal(nk_session_new(&B, &cb, now), 0);
    assert_int_equal(nk_session_new(&C, &cc, now), 0);
    uint8_t init_a[1500], init_c[1500], resp_a[1500], resp_c[1500], buf[1500];
    assert_int_equal(nk_session_connect(A, 1, now), 0);
    assert_int_equal(nk_session_connect(C, 9, now), 0);
    size_t la = poll1(A, now, init_a, NULL), lc = poll1(C, now, init_c, NULL);
    assert_int_equal(nk_session_handle_datagram(B, now, 1, init_a, la), 0);
    nk_path_id p;
    size_t lra = poll1(B, now, resp_a, &p);
    assert_int_equal(p, 1);
    assert_int_equal(nk_session_handle_datagram(B, now, 9, init_c, lc), 0);
    size_t lrc = poll1(B, now, resp_c, &p);
    assert_int_equal(p, 9);
    /* A's INIT again (its RESPONSE was lost): B answers with A's RESPONSE, not C's */
    assert_int_equal(nk_session_handle_datagram(B, now, 1, init_a, la), NK_ERR_AGAIN);
    assert_int_equal(poll1(B, now, buf, &p), lra);
    assert_memory_equal(buf, resp_a, lra);
    assert_int_equal(p, 1);
    /* C completes its side first, and talks: B cannot read it (not confirmed, not current) */
    assert_int_equal(nk_session_handle_datagram(C, now, 9, resp_c, lrc), 0);
    assert_int_equal(nk_session_state(C), NK_SESSION_CONNECTED);
    /* A completes; its confirmation makes it B's peer */
    assert_int_equal(nk_session_handle_datagram(A, now, 1, resp_a, lra), 0);
    size_t l = poll1(A, now, buf, NULL);
    assert_int_equal(nk_session_handle_datagram(B, now, 1, buf, l), 0);
    assert_int_equal(nk_session_state(B), NK_SESSION_CONNECTED);
    assert_true(nk_peer_id_equal(nk_session_peer(B), &ids[0].id));
    assert_int_equal(nk_session_path(B), 1);
    l = poll1(C, now, buf, NULL);
    assert_true(nk_session_handle_datagram(B, now, 9, buf, l) < 0);
    assert_true(nk_peer_id_equal(nk_session_peer(B), &ids[0].id));
    /* B's answer goes to A under A's index and A reads it */
    l = poll1(B, now, buf, &p);
    assert_int_equal(p, 1);
    assert_int_equal(nk_session_handle_datagram(A, now, 1, buf, l), 0);
    nk_session_free(A);
    nk_session_free(B);
    nk_session_free(C);
}

static void test_wrong_peer_id_initiator(void **state)
{
    (void)state;
    net *n = net_new(3, 0, 0, 20, 0);
    nk_session_config ci = base_config(&ids[0], &ids[2].id, 1); /* expects C, talks to B */
    ci.handshake_timeout_ms = 3000;
    int a = net_add_pair(n, ci, base_config(&ids[1], NULL, 0));
    assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
    run_until_closed(n, a, n->clock.now + 10000);
    nk_session_event ev;
    assert_true(has_event(n->ep[a], NK_SESSION_EV_CLOSED, &ev));
    assert_int_equal(ev.err, NK_ERR_TIMEOUT);
    assert_int_not_equal(nk_session_state(n->ep[a + 1]), NK_SESSION_CONNECTED);
    nk_session_stats_t st;
    nk_session_stats(n->ep[a + 1], &st);
    assert_true(st.rx_auth_failed >= 1); /* sealed to C's key: B cannot read it */
    net_free(n);
}

/* The responder expects a different caller: the INIT is refused and counted. */
static void test_wrong_peer_id_responder(void **state)
{
    (void)state;
    net *n = net_new(4, 0, 0, 20, 0);
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    ci.handshake_timeout_ms = 3000;
    int a = net_add_pair(n, ci, base_config(&ids[1], &ids[2].id, 0));
    assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
    run_until_closed(n, a, n->clock.now + 10000);
    nk_session_stats_t st;
    nk_session_stats(n->ep[a + 1], &st);
    assert_true(st.rx_peer_mismatch >= 1);
    assert_int_equal(nk_session_state(n->ep[a + 1]), NK_SESSION_HANDSHAKE);
    net_free(n);
}

/* Captured packets replayed, modified or truncated are dropped and counted. */
static void test_bad_packets_rejected(void **state)
{
    (void)state;
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
    net *n = connected_pair(5, 0, 0, ci, cr);
    nk_session *A = n->ep[0], *B = n->ep[1];
    /* capture A's next packet and keep it from B: its counter is fresh to B */
    n->tap_from = 0;
    n->drop_next_from[0] = 1;
    assert_int_equal(nk_session_send(A, (const uint8_t *)"one", 3), 0);
    net_flush(n);
    assert_int_equal(n->ntapped, 1);
    n->tap_from = -1;
    packet cap = n->tapped[0];
    uint8_t buf[1500];

    nk_session_stats_t before, after;
    nk_session_stats(B, &before);
    /* every single-byte modification is rejected */
    for (size_t i = 0; i < cap.len; i++) {
        memcpy(buf, cap.data, cap.len);
        buf[i] ^= 0x20;
        assert_true(nk_session_handle_datagram(B, n->clock.now, cap.path, buf, cap.len) < 0);
    }
    /* truncated at every length */
    for (size_t len = 0; len < cap.len; len++)
        assert_true(nk_session_handle_datagram(B, n->clock.now, cap.path, cap.data, len) < 0);
    /* longer (trailing garbage) */
    memcpy(buf, cap.data, cap.len);
    buf[cap.len] = 0;
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, cap.path, buf, cap.len + 1), NK_ERR_AUTH);
    nk_session_stats(B, &after);
    assert_int_equal(after.rx_packets, before.rx_packets);
    assert_int_equal(after.rx_replayed, before.rx_replayed);
    /* the 16 header bytes: version/type/reserved/too-large counter are malformed, epoch and index
       unexpected, the other counter bytes and every ciphertext byte fail authentication */
    assert_int_equal(after.rx_auth_failed - before.rx_auth_failed, (cap.len - 16) + 7 + (cap.len - 32) + 1);
    assert_int_equal(after.rx_malformed - before.rx_malformed, 4 + 32);
    assert_int_equal(after.rx_unexpected - before.rx_unexpected, 5);
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), NK_ERR_AGAIN);

    /* none of that burnt the counter: the genuine packet is still accepted, once */
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, cap.path, cap.data, cap.len), 0);
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "one", 3);
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, cap.path, cap.data, cap.len), NK_ERR_AGAIN);
    nk_session_stats(B, &after);
    assert_int_equal(after.rx_replayed, before.rx_replayed + 1);
    /* A's retransmission of the same message (a new packet) is not delivered twice */
    for (int i = 0; i < 20; i++)
        net_step(n, n->clock.now + 5000);
    assert_int_equal(nk_session_unacked(A), 0);
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_int_equal(nk_session_send(A, (const uint8_t *)"two", 3), 0);
    for (int i = 0; i < 10; i++)
        net_step(n, n->clock.now + 1000);
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "two", 3);
    assert_int_equal(nk_session_state(B), NK_SESSION_CONNECTED);
    net_free(n);
}

/* 30% loss, reordering and duplication: every message arrives once, in order. */
static void test_lossy_network(void **state)
{
    (void)state;
    for (uint64_t seed = 10; seed < 13; seed++) {
        net *n = net_new(seed, 0.30, 0.10, 20, 60);
        nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
        nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
        ci.window = cr.window = 64;
        int a = net_add_pair(n, ci, cr);
        assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
        run_until_connected(n, n->clock.now + 60000);
        run_streams(n, 1500, n->clock.now + 600000);
        nk_session_stats_t st;
        nk_session_stats(n->ep[a], &st);
        assert_true(st.retransmits > 0);
        assert_true(st.rx_replayed > 0); /* duplicates were seen and dropped */
        assert_int_equal(st.messages_delivered, 1500);
        net_free(n);
    }
}

/* Rekeying every 40 packets (and every 2 s) in the middle of lossy streams loses nothing. */
static void test_rekey_mid_stream(void **state)
{
    (void)state;
    net *n = net_new(20, 0.10, 0.05, 20, 30);
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
    ci.rekey_after_packets = cr.rekey_after_packets = 40;
    ci.rekey_after_ms = cr.rekey_after_ms = 2000;
    int a = net_add_pair(n, ci, cr);
    assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
    run_until_connected(n, n->clock.now + 60000);
    run_streams(n, 3000, n->clock.now + 600000);
    nk_session_stats_t sa, sb;
    nk_session_stats(n->ep[a], &sa);
    nk_session_stats(n->ep[a + 1], &sb);
    assert_true(sa.rekeys >= 10);
    assert_true(sb.rekeys >= 10);
    assert_true(n->ep[a]->cur.epoch >= 10);
    assert_true(n->ep[a]->cur.epoch <= n->ep[a + 1]->cur.epoch + 1);
    net_free(n);
}

/* The responder's limits drive rekeys too: it asks, the initiator runs the handshake. */
static void test_rekey_requested_by_responder(void **state)
{
    (void)state;
    net *n = net_new(21, 0.10, 0.05, 20, 30);
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
    ci.rekey_after_packets = 1 << 20; /* the initiator alone would never rekey here */
    cr.rekey_after_packets = 30;
    int a = net_add_pair(n, ci, cr);
    assert_int_equal(nk_session_connect(n->ep[a], 1, n->clock.now), 0);
    run_until_connected(n, n->clock.now + 60000);
    run_streams(n, 1000, n->clock.now + 600000);
    nk_session_stats_t sa;
    nk_session_stats(n->ep[a], &sa);
    assert_true(sa.rekeys >= 5);
    assert_true(n->ep[a]->cur.epoch >= 5);
    assert_true(n->ep[a]->cur.epoch <= n->ep[a + 1]->cur.epoch + 1);
    net_free(n);
}

/* After a rekey, packets under the old keys are accepted for a grace period only. */
static void test_previous_keys_expire(void **state)
{
    (void)state;
    net *n = connected_pair(22, 0, 0, base_config(&ids[0], &ids[1].id, 1), base_config(&ids[1], &ids[0].id, 0));
    nk_session *A = n->ep[0], *B = n->ep[1];
    n->tap_from = 0;
    n->drop_next_from[0] = 2;
    assert_int_equal(nk_session_send(A, (const uint8_t *)"m1", 2), 0);
    net_flush(n);
    assert_int_equal(nk_session_send(A, (const uint8_t *)"m2", 2), 0);
    net_flush(n);
    assert_int_equal(n->ntapped, 2);
    n->tap_from = -1;
    assert_int_equal(nk_session_rekey(A, n->clock.now), 0);
    int64_t t0 = n->clock.now;
    while (B->cur.epoch != 1 && net_step(n, t0 + 1000))
        ;
    assert_true(n->clock.now - t0 < 200);
    assert_int_equal(A->cur.epoch, 1);
    assert_int_equal(B->cur.epoch, 1);
    assert_true(has_event(B, NK_SESSION_EV_REKEYED, NULL));
    /* within the grace period: the old packet is still good (and its message not delivered twice) */
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, 1, n->tapped[0].data, n->tapped[0].len), 0);
    uint8_t buf[16];
    int got = 0;
    while (nk_session_recv(B, buf, sizeof(buf)) == 2)
        got++;
    assert_true(got >= 1);
    /* later: no key for that epoch any more */
    int64_t until = n->clock.now + 11000;
    while (n->clock.now < until && net_step(n, until))
        ;
    n->clock.now = until; /* quiet link: nothing happened in between */
    while (nk_session_recv(B, buf, sizeof(buf)) == 2)
        got++;
    assert_int_equal(got, 2);
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, 1, n->tapped[1].data, n->tapped[1].len), NK_ERR_STATE);
    assert_false(B->prev.valid);
    net_free(n);
}

/* Nobody but the peer can move the session: spoofed, forged and replayed packets on another path. */
static void test_spoofed_probe_does_not_move_path(void **state)
{
    (void)state;
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
    ci.roam = cr.roam = 1;
    net *n = connected_pair(30, 0, 0, ci, cr);
    nk_session *A = n->ep[0], *B = n->ep[1];
    const nk_path_id evil = 99;
    assert_int_equal(nk_session_path(B), 1);

    /* a genuine probe from A on path 2, captured */
    n->tap_from = 0;
    uint64_t nonce;
    assert_int_equal(nk_session_probe_path(A, 2, n->clock.now, &nonce), 0);
    net_flush(n);
    assert_int_equal(n->ntapped, 1);
    packet probe = n->tapped[0];
    assert_int_equal(probe.path, 2);

    /* 1: the attacker replays it from its own address first */
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, evil, probe.data, probe.len), 0);
    /* it was authentic, so B answers on the path it came from... */
    uint8_t buf[1500];
    nk_session_transmit tx;
    assert_int_equal(nk_session_poll_transmit(B, n->clock.now, &tx, buf, sizeof(buf)), 0);
    assert_int_equal(tx.path, evil);
    /* ...but a probe never moves the active path */
    assert_int_equal(nk_session_path(B), 1);
    /* the real one, arriving later on path 2, is now a replay */
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, 2, probe.data, probe.len), NK_ERR_AGAIN);
    /* A gets the answer on the wrong path: no validation */
    assert_int_equal(nk_session_handle_datagram(A, n->clock.now, evil, buf, tx.len), 0);
    assert_false(has_event(A, NK_SESSION_EV_PATH_VALIDATED, NULL));

    /* 2: forged probes (a guessed key) and garbage from the attacker's address */
    uint8_t forged[64];
    memcpy(forged, probe.data, NK__HDR);
    forged[15] = 0xee; /* a fresh counter */
    rng r = {77};
    sim_random(&r, forged + NK__HDR, sizeof(forged) - NK__HDR);
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, evil, forged, NK__HDR + 9 + NK__TAGLEN), NK_ERR_AUTH);
    for (int i = 0; i < 100; i++) {
        sim_random(&r, buf, 200);
        nk_session_handle_datagram(B, n->clock.now, evil, buf, 1 + sim_rng_next(&r) % 200);
    }
    /* 3: an old genuine data packet, held back by the attacker and released from its address */
    n->tap_from = 0;
    n->ntapped = 0;
    n->drop_next_from[0] = 1; /* the attacker swallows it on the real path */
    assert_int_equal(nk_session_send(A, (const uint8_t *)"held", 4), 0);
    net_flush(n);
    assert_int_equal(n->ntapped, 1);
    packet held = n->tapped[0];
    n->tap_from = -1;
    for (int i = 0; i < 20; i++)
        net_step(n, n->clock.now + 5000); /* retransmitted and delivered on path 1 meanwhile */
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), 4);
    /* counter older than the newest: accepted into the window once, but no roam */
    assert_int_equal(nk_session_handle_datagram(B, n->clock.now, evil, held.data, held.len), 0);
    assert_int_equal(nk_session_path(B), 1);
    assert_false(has_event(B, NK_SESSION_EV_PATH_CHANGED, NULL));
    assert_int_equal(nk_session_recv(B, buf, sizeof(buf)), NK_ERR_AGAIN); /* and no double delivery */

    /* 4: the real probe on path 3 validates, and a real move is followed */
    assert_int_equal(nk_session_probe_path(A, 3, n->clock.now, &nonce), 0);
    for (int i = 0; i < 10; i++)
        net_step(n, n->clock.now + 1000);
    nk_session_event ev;
    assert_true(has_event(A, NK_SESSION_EV_PATH_VALIDATED, &ev));
    assert_int_equal(ev.path, 3);
    assert_int_equal(ev.nonce, nonce);
    assert_int_equal(ev.rtt_ms, 40);
    assert_int_equal(nk_session_path(B), 1);
    assert_int_equal(nk_session_set_path(A, 3), 0);
    assert_int_equal(nk_session_send(A, (const uint8_t *)"moved", 5), 0);
    for (int i = 0; i < 10; i++)
        net_step(n, n->clock.now + 1000);
    assert_true(has_event(B, NK_SESSION_EV_PATH_CHANGED, &ev));
    assert_int_equal(ev.path, 3);
    assert_int_equal(nk_session_path(B), 3);
    net_free(n);
}

/* Without roam the session never moves by itself, even for the peer's own packets. */
static void test_no_roam_by_default(void **state)
{
    (void)state;
    net *n = connected_pair(31, 0, 0, base_config(&ids[0], &ids[1].id, 1), base_config(&ids[1], &ids[0].id, 0));
    assert_int_equal(nk_session_set_path(n->ep[0], 5), 0);
    assert_int_equal(nk_session_send(n->ep[0], (const uint8_t *)"x", 1), 0);
    for (int i = 0; i < 10; i++)
        net_step(n, n->clock.now + 1000);
    assert_int_equal(nk_session_path(n->ep[1]), 1);
    net_free(n);
}

/* Messages larger than a datagram are fragmented and come back whole, once, in order. */
static void test_fragmentation(void **state)
{
    (void)state;
    net *n = connected_pair(70, 0, 0, base_config(&ids[0], &ids[1].id, 1), base_config(&ids[1], &ids[0].id, 0));
    nk_session *A = n->ep[0], *B = n->ep[1];
    size_t frag = 1200 - 72, max = nk_session_max_message(A);
    assert_int_equal(max, 16 * frag);
    static const size_t sizes[] = {1, 1127, 1128, 1129, 2256, 2257, 5000, 16 * 1128};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            big_a[i] = (uint8_t)(i * 31 + k);
        assert_int_equal(nk_session_send(A, big_a, sizes[k]), 0);
    }
    assert_int_equal(nk_session_unacked(A), 1 + 1 + 1 + 2 + 2 + 3 + 5 + 16);
    assert_int_equal(nk_session_send(A, big_a, max + 1), NK_ERR_INVAL);
    /* nothing is readable until a whole message is there */
    assert_int_equal(nk_session_recv(B, big_b, sizeof(big_b)), NK_ERR_AGAIN);
    for (int i = 0; i < 20; i++)
        net_step(n, n->clock.now + 1000);
    uint8_t small[100];
    assert_int_equal(nk_session_recv(B, small, sizeof(small)), 1);
    assert_int_equal(nk_session_recv(B, small, sizeof(small)), NK_ERR_NOBUFS); /* stays queued */
    for (size_t k = 1; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (size_t i = 0; i < sizes[k]; i++)
            big_a[i] = (uint8_t)(i * 31 + k);
        assert_int_equal(nk_session_recv(B, big_b, sizeof(big_b)), (int)sizes[k]);
        assert_memory_equal(big_b, big_a, sizes[k]);
    }
    assert_int_equal(nk_session_recv(B, big_b, sizeof(big_b)), NK_ERR_AGAIN);
    nk_session_stats_t st;
    nk_session_stats(B, &st);
    assert_int_equal(st.messages_delivered, 8);
    /* a message that needs more slots than are free waits: AGAIN, then WRITABLE */
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1), cr = base_config(&ids[1], &ids[0].id, 0);
    ci.window = cr.window = 8;
    net *m = connected_pair(71, 0, 0, ci, cr);
    assert_int_equal(nk_session_max_message(m->ep[0]), 4 * frag);
    assert_int_equal(nk_session_send(m->ep[0], big_a, 4 * frag), 0);
    assert_int_equal(nk_session_send(m->ep[0], big_a, 3 * frag), 0);
    assert_int_equal(nk_session_send(m->ep[0], big_a, 2 * frag), NK_ERR_AGAIN);
    assert_int_equal(nk_session_send(m->ep[0], big_a, frag), 0);
    for (int i = 0; i < 20; i++)
        net_step(m, m->clock.now + 1000);
    assert_true(has_event(m->ep[0], NK_SESSION_EV_WRITABLE, NULL));
    assert_int_equal(nk_session_recv(m->ep[1], big_b, sizeof(big_b)), (int)(4 * frag));
    net_free(m);
    net_free(n);
}

static void test_hundred_sessions(void **state)
{
    (void)state;
    net *n = net_new(40, 0.05, 0.02, 15, 20);
    for (int i = 0; i < 100; i++) {
        const nk_identity *me = &ids[i % 2], *other = &ids[(i + 1) % 2];
        int a = net_add_pair(n, base_config(me, &other->id, 1), base_config(other, NULL, 0));
        assert_int_equal(nk_session_connect(n->ep[a], (nk_path_id)i, n->clock.now), 0);
    }
    run_until_connected(n, n->clock.now + 60000);
    run_streams(n, 30, n->clock.now + 120000);
    /* every pair used its own keys: indices differ */
    for (int i = 2; i < n->n; i += 2)
        assert_int_not_equal(nk_session_local_index(n->ep[i]), nk_session_local_index(n->ep[0]));
    net_free(n);
}

static void test_backpressure(void **state)
{
    (void)state;
    net *n = net_new(50, 0, 0, 20, 0);
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
    ci.window = cr.window = 16;
    int a = net_add_pair(n, ci, cr);
    nk_session *A = n->ep[a], *B = n->ep[a + 1];
    uint8_t *big = big_a;
    memset(big, 1, 1500);
    assert_int_equal(nk_session_send(A, big, nk_session_max_message(A) + 1), NK_ERR_INVAL);
    assert_int_equal(nk_session_send(A, big, 0), NK_ERR_INVAL);
    for (int i = 0; i < 16; i++)
        assert_int_equal(nk_session_send(A, big, 100), 0); /* queued before the handshake */
    assert_int_equal(nk_session_send(A, big, 100), NK_ERR_AGAIN);
    assert_int_equal(nk_session_unacked(A), 16);
    assert_int_equal(nk_session_connect(A, 1, n->clock.now), 0);
    run_until_connected(n, n->clock.now + 5000);
    /* B does not read: its window fills, A stays blocked */
    for (int i = 0; i < 50; i++)
        net_step(n, n->clock.now + 1000);
    assert_int_equal(nk_session_unacked(A), 0);
    assert_true(has_event(A, NK_SESSION_EV_WRITABLE, NULL));
    for (int i = 0; i < 16; i++)
        assert_int_equal(nk_session_send(A, big, 100), 0);
    for (int i = 0; i < 50; i++)
        net_step(n, n->clock.now + 1000);
    assert_int_equal(nk_session_unacked(A), 16); /* B's window is full: nothing more accepted */
    assert_true(has_event(B, NK_SESSION_EV_READABLE, NULL));
    uint8_t small[10];
    assert_int_equal(nk_session_recv(B, small, sizeof(small)), NK_ERR_NOBUFS);
    int got = 0;
    while (nk_session_recv(B, big, 1500) == 100)
        got++;
    assert_int_equal(got, 16);
    /* reading opens the window; the rest follows */
    for (int i = 0; i < 50 && nk_session_unacked(A) > 0; i++)
        net_step(n, n->clock.now + 5000);
    assert_int_equal(nk_session_unacked(A), 0);
    while (nk_session_recv(B, big, 1500) == 100)
        got++;
    assert_int_equal(got, 32);
    /* a transmit buffer smaller than max_datagram is refused, and nothing is lost by it */
    nk_session_transmit tx;
    assert_int_equal(nk_session_send(A, big, 100), 0);
    assert_int_equal(nk_session_keepalive(A), 0);
    assert_int_equal(nk_session_poll_transmit(A, n->clock.now, &tx, big, 1199), NK_ERR_NOBUFS);
    for (int i = 0; i < 10; i++)
        net_step(n, n->clock.now + 1000);
    assert_int_equal(nk_session_recv(B, big, 1500), 100);
    net_free(n);
}

static void test_idle_timeout_and_close(void **state)
{
    (void)state;
    nk_session_config ci = base_config(&ids[0], &ids[1].id, 1);
    nk_session_config cr = base_config(&ids[1], &ids[0].id, 0);
    ci.idle_timeout_ms = cr.idle_timeout_ms = 5000;
    ci.keepalive_ms = cr.keepalive_ms = 1000;
    net *n = connected_pair(60, 0, 0, ci, cr);
    /* keepalives hold an idle session open */
    for (int i = 0; i < 200; i++)
        net_step(n, n->clock.now + 30000);
    assert_true(n->clock.now > 20000);
    assert_int_equal(nk_session_state(n->ep[0]), NK_SESSION_CONNECTED);
    assert_int_equal(nk_session_state(n->ep[1]), NK_SESSION_CONNECTED);
    /* the network dies: both sides time out */
    n->q.link.loss = 1.0;
    run_until_closed(n, 0, n->clock.now + 10000);
    run_until_closed(n, 1, n->clock.now + 10000);
    nk_session_event ev;
    assert_true(has_event(n->ep[0], NK_SESSION_EV_CLOSED, &ev));
    assert_int_equal(ev.err, NK_ERR_TIMEOUT);
    net_free(n);

    n = connected_pair(61, 0, 0, ci, cr);
    /* a caller that never reads events still gets the CLOSED one */
    for (int i = 0; i < 200; i++) {
        uint64_t nonce;
        assert_int_equal(nk_session_probe_path(n->ep[0], 1, n->clock.now, &nonce), 0);
        net_step(n, n->clock.now + 100);
    }
    assert_int_equal(nk_session_close(n->ep[0], n->clock.now), 0);
    assert_true(has_event(n->ep[0], NK_SESSION_EV_CLOSED, &ev));
    assert_int_equal(ev.err, 0);
    run_until_closed(n, 1, n->clock.now + 1000);
    assert_true(has_event(n->ep[1], NK_SESSION_EV_CLOSED, &ev));
    assert_int_equal(ev.err, NK_ERR_CLOSED);
    assert_int_equal(nk_session_send(n->ep[1], (const uint8_t *)"x", 1), NK_ERR_STATE);
    net_free(n);
}

/* Noise_IK_25519_ChaChaPoly_BLAKE2b known answers: the test vector of noise-c
   (tests/vector/noise-c-basic.txt), with prologue "Prologue123". */
static void hex(uint8_t *out, const char *h)
{
    for (size_t i = 0; h[2 * i] != '\0'; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void test_noise_ik_vector(void **state)
{
    (void)state;
    uint8_t init_s[32], init_e[32], resp_s[32], resp_e[32], init_pub[32], resp_pub[32];
    uint8_t payload1[16], payload2[15], expect1[96 + 16], expect2[32 + 31], body1[128], body2[64];
    uint8_t out[64], hh[64];
    hex(init_s, "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1");
    hex(init_e, "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a");
    hex(resp_s, "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893");
    hex(resp_e, "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b");
    hex(payload1, "4c756477696720766f6e204d69736573");
    hex(payload2, "4d757272617920526f746862617264");
    hex(expect1, "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
                 "ba83a447b38c83e327ad936929812f624884847b7831e95e197b2f797088efdd232fe541af156ec6d0657602902a8c3e"
                 "e64e470f4b6fcd9298ce0b56fe20f86e60d9d933ec6e103ffb09e6001d6abb64");
    hex(expect2, "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
                 "9f069b267a06b3de3ecb1043bcb09807c6cd101f3826192a65f11ef3fe4317");
    hex(hh, "00e51d2aac81a9b8ebe441d6af3e1c8efc0f030cc608332edcb42588ff6a0ce2"
            "6415ddc106e95277a5e6d54132f1e5245976b89caf96d262f1fe5a7f0c55c078");
    crypto_scalarmult_base(init_pub, init_s);
    crypto_scalarmult_base(resp_pub, resp_s);

    nk__handshake hi, hr;
    const uint8_t prologue[] = "Prologue123";
    nk__ik_init(&hi, prologue, 11, resp_pub);
    nk__ik_init(&hr, prologue, 11, resp_pub);
    assert_int_equal(nk__ik_write_init(&hi, init_s, init_pub, init_e, payload1, sizeof(payload1), body1), 0);
    assert_memory_equal(body1, expect1, sizeof(expect1));
    assert_int_equal(nk__ik_read_init(&hr, resp_s, body1, sizeof(expect1), out), 0);
    assert_memory_equal(out, payload1, sizeof(payload1));
    assert_memory_equal(hr.rs, init_pub, 32);
    assert_int_equal(nk__ik_write_resp(&hr, resp_e, payload2, sizeof(payload2), body2), 0);
    assert_memory_equal(body2, expect2, sizeof(expect2));
    assert_int_equal(nk__ik_read_resp(&hi, init_s, body2, sizeof(expect2), out), 0);
    assert_memory_equal(out, payload2, sizeof(payload2));
    assert_memory_equal(hi.sym.h, hh, 64);
    assert_memory_equal(hr.sym.h, hh, 64);

    /* Split, then the first transport message each way (nonce 0, empty AD) */
    uint8_t i_send[32], i_recv[32], r_send[32], r_recv[32], ct[64], expect[27];
    nk__sym_split(&hi.sym, i_send, i_recv);
    nk__sym_split(&hr.sym, r_recv, r_send);
    assert_memory_equal(i_send, r_recv, 32);
    assert_memory_equal(i_recv, r_send, 32);
    hex(expect, "cd54383060e7a28434cca27fb1cc524cfbabeb18181589df219d07");
    nk__aead_seal(i_send, 0, NULL, 0, (const uint8_t *)"F. A. Hayek", 11, ct);
    assert_memory_equal(ct, expect, 27);
    hex(expect, "a856d3bf0246bfc476c655009cd1ed677b8dcc5b349ae8ef2a05f2");
    nk__aead_seal(r_send, 0, NULL, 0, (const uint8_t *)"Carl Menger", 11, ct);
    assert_memory_equal(ct, expect, 27);
    /* a flipped bit in the INIT fails authentication */
    nk__ik_init(&hr, prologue, 11, resp_pub);
    body1[40] ^= 1;
    assert_int_equal(nk__ik_read_init(&hr, resp_s, body1, sizeof(expect1), out), NK_ERR_AUTH);
}

static void test_replay_window(void **state)
{
    (void)state;
    nk__replay r;
    nk__replay_init(&r);
    assert_int_equal(nk__replay_update(&r, 0), 0);
    assert_int_equal(nk__replay_update(&r, 0), -1);
    assert_int_equal(nk__replay_update(&r, 5), 0);
    assert_int_equal(nk__replay_update(&r, 3), 0);
    assert_int_equal(nk__replay_update(&r, 3), -1);
    assert_int_equal(nk__replay_update(&r, 5000), 0);
    assert_false(nk__replay_check(&r, 5));     /* too old now */
    assert_true(nk__replay_check(&r, 5000 - 1983)); /* the oldest still in the window */
    assert_false(nk__replay_check(&r, 5000 - 1984));
    assert_int_equal(nk__replay_update(&r, 4000), 0);
    assert_int_equal(nk__replay_update(&r, 4000), -1);
    /* a jump far ahead clears everything */
    assert_int_equal(nk__replay_update(&r, 1000000), 0);
    assert_true(nk__replay_check(&r, 1000000 - 1));
    assert_false(nk__replay_check(&r, 4000));
    /* every counter in a shuffled range is accepted exactly once */
    nk__replay_init(&r);
    rng g = {9};
    uint64_t seen = 0;
    for (int round = 0; round < 20000; round++) {
        uint64_t c = sim_rng_next(&g) % 3000 + (uint64_t)round / 4;
        int fresh = nk__replay_check(&r, c);
        int up = nk__replay_update(&r, c);
        assert_int_equal(fresh ? 0 : -1, up);
        seen += up == 0;
    }
    assert_true(seen > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noise_ik_vector),
        cmocka_unit_test(test_replay_window),
        cmocka_unit_test(test_handshake_completes),
        cmocka_unit_test(test_handshake_retransmission),
        cmocka_unit_test(test_wrong_peer_id_initiator),
        cmocka_unit_test(test_wrong_peer_id_responder),
        cmocka_unit_test(test_interleaved_initiators),
        cmocka_unit_test(test_bad_packets_rejected),
        cmocka_unit_test(test_lossy_network),
        cmocka_unit_test(test_rekey_mid_stream),
        cmocka_unit_test(test_rekey_requested_by_responder),
        cmocka_unit_test(test_previous_keys_expire),
        cmocka_unit_test(test_spoofed_probe_does_not_move_path),
        cmocka_unit_test(test_no_roam_by_default),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_hundred_sessions),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_idle_timeout_and_close),
    };
    return cmocka_run_group_tests(tests, setup_ids, NULL);
}
