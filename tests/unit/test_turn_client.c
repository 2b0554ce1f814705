/*
 * TURN client, in memory with simulated time, against the fake server of
 * turn_fake.h: the 401/438 dance, SHA-256 negotiation, refresh timers under
 * simulated hours, permissions and channels, Data/ChannelData delivery,
 * error mapping, loss and retransmission, stream framing cut at every byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/turn_client.h"
#include "turn_fake.h"
#include "sim.h"

#define MAX_EVENTS 256

typedef struct world {
    nk_turn_client *c;
    fake_turn s;
    nk_addr server;
    sim_clock clock;
    sim_rng rnd;
    int transport;
    int drop_next;          /* drop this many client->server messages */
    int drop_all;
    int drop_responses;     /* drop this many server->client messages */
    size_t chunk;           /* stream: feed the client this many bytes at a time (0: all) */
    nk_turn_event ev[MAX_EVENTS];
    uint8_t evdata[MAX_EVENTS][64];
    int nev;
    int sent;               /* messages the client put on the wire */
} world;

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static void collect(world *w)
{
    nk_turn_event ev;
    while (nk_turn_client_poll_event(w->c, &ev) == 0) {
        assert_true(w->nev < MAX_EVENTS);
        if (ev.type == NK_TURN_EV_DATA) {
            assert_true(ev.len <= sizeof(w->evdata[0]));
            memcpy(w->evdata[w->nev], ev.data, ev.len);
            ev.data = w->evdata[w->nev];
        }
        w->ev[w->nev++] = ev;
    }
}

/* Server -> client bytes, whole or in chunks for streams. */
static void deliver(world *w, const uint8_t *p, size_t n)
{
    if (w->drop_responses > 0) {
        w->drop_responses--;
        return;
    }
    if (w->transport == NK_TRANSPORT_UDP) {
        nk_turn_client_handle_input(w->c, w->clock.now, &w->server, p, n);
        collect(w);
        return;
    }
    size_t step = w->chunk ? w->chunk : n;
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        assert_int_equal(nk_turn_client_handle_input(w->c, w->clock.now, &w->server, p + off, k), 0);
        collect(w);
    }
}

/* Moves every pending message between client and server. */
static void pump(world *w)
{
    uint8_t buf[2048], resp[2048];
    nk_transmit tx;
    for (int guard = 0; guard < 100; guard++) {
        if (nk_turn_client_poll_transmit(w->c, w->clock.now, &tx, buf, sizeof(buf)) != 0)
            return;
        assert_true(nk_addr_equal(&tx.to, &w->server));
        assert_int_equal(tx.transport, w->transport);
        w->sent++;
        if (w->drop_all || w->drop_next > 0) {
            w->drop_next -= w->drop_next > 0;
            continue;
        }
        size_t n = fake_handle(&w->s, w->clock.now, buf, tx.len, w->transport != NK_TRANSPORT_UDP, resp, sizeof(resp));
        if (n > 0)
            deliver(w, resp, n);
    }
    fail_msg("pump did not settle");
}

/* Runs timers up to until, pumping after each. */
static void advance(world *w, int64_t until)
{
    for (int guard = 0; guard < 100000; guard++) {
        sim_clock_offer(&w->clock, nk_turn_client_next_deadline(w->c));
        if (!sim_clock_advance(&w->clock, until))
            break;
        nk_turn_client_handle_timeout(w->c, w->clock.now);
        pump(w);
        collect(w);
    }
    w->clock.now = until;
}

static void setup_world(world *w, int transport)
{
    memset(w, 0, sizeof(*w));
    fake_init(&w->s);
    w->server = addr("203.0.113.1:3478");
    w->transport = transport;
    sim_clock_init(&w->clock, 1000);
    nk_turn_client_config cfg = {
        .server = w->server,
        .transport = (uint8_t)transport,
        .username = "alice",
        .password = "s3cret",
        .software = "natkit-test",
        .random = sim_random,
        .random_ctx = &w->rnd,
    };
    assert_int_equal(nk_turn_client_new(&w->c, &cfg), 0);
}

static void teardown_world(world *w)
{
    nk_turn_client_free(w->c);
}

static const nk_turn_event *find_event(world *w, nk_turn_event_type type, int nth)
{
    for (int i = 0; i < w->nev; i++)
        if (w->ev[i].type == type && nth-- == 0)
            return &w->ev[i];
    return NULL;
}

static int count_events(world *w, nk_turn_event_type type)
{
    int k = 0;
    for (int i = 0; i < w->nev; i++)
        k += w->ev[i].type == type;
    return k;
}

static void allocate(world *w)
{
    assert_int_equal(nk_turn_client_allocate(w->c, w->clock.now), 0);
    pump(w);
    assert_int_equal(nk_turn_client_state(w->c), NK_TURN_ALLOCATED);
}

/* ---- the 401 / 438 dance ---- */

static void test_allocate_401_then_success(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    assert_int_equal(w.s.n401, 1);
    assert_int_equal(w.s.nallocate, 1);
    assert_int_equal(w.sent, 2);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ALLOCATED, 0);
    assert_non_null(ev);
    assert_true(nk_addr_equal(&ev->relayed, &w.s.relayed));
    assert_true(nk_addr_equal(&ev->mapped, &w.s.mapped));
    assert_int_equal(ev->lifetime_s, 600);
    nk_addr relayed;
    assert_int_equal(nk_turn_client_relayed(w.c, &relayed, NULL), 0);
    assert_true(nk_addr_equal(&relayed, &w.s.relayed));
    assert_int_equal(w.s.used_sha256, 0);
    teardown_world(&w);
}

static void test_stale_nonce_retry(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    fake_set_nonce(&w.s, "nonce-2");
    nk_addr peer = addr("192.0.2.99:7000");
    assert_int_equal(nk_turn_client_permit(w.c, w.clock.now, &peer), 0);
    pump(&w);
    assert_int_equal(w.s.n438, 1);
    assert_int_equal(w.s.nperm, 1);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_PERMISSION, 0);
    assert_non_null(ev);
    assert_true(nk_addr_equal_ip(&ev->peer, &peer));
    assert_null(find_event(&w, NK_TURN_EV_ERROR, 0));
    teardown_world(&w);
}

static void test_stale_nonce_forever_gives_up(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    /* A server whose nonce changes on every request: bounded retries, then an error. */
    nk_addr peer = addr("192.0.2.99:7000");
    assert_int_equal(nk_turn_client_permit(w.c, w.clock.now, &peer), 0);
    uint8_t buf[2048], resp[2048];
    nk_transmit tx;
    int rounds = 0;
    while (nk_turn_client_poll_transmit(w.c, w.clock.now, &tx, buf, sizeof(buf)) == 0 && rounds < 20) {
        char nonce[16];
        snprintf(nonce, sizeof(nonce), "n%d", ++rounds);
        fake_set_nonce(&w.s, nonce);
        size_t n = fake_handle(&w.s, w.clock.now, buf, tx.len, 0, resp, sizeof(resp));
        nk_turn_client_handle_input(w.c, w.clock.now, &w.server, resp, n);
        collect(&w);
    }
    assert_int_equal(rounds, 1 + NK_TURN_AUTH_RETRIES);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(438));
    assert_int_equal(ev->method, NK_STUN_CREATE_PERMISSION);
    teardown_world(&w);
}

static void test_sha256_when_offered(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.s.sha256 = 1;
    fake_set_nonce(&w.s, "x");
    allocate(&w);
    assert_int_equal(w.s.used_sha256, 1);
    teardown_world(&w);
}

static void test_wrong_password_fails_with_401(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.s.pass = "other";
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_FAILED);
    assert_int_equal(w.s.n401, 2); /* the challenge, then the refusal: no third try */
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(401));
    assert_int_equal(ev->method, NK_STUN_ALLOCATE);
    assert_string_equal(ev->reason, "Unauthenticated");
    teardown_world(&w);
}

/* ---- error mapping ---- */

static void test_error_codes_map(void **state)
{
    static const int codes[] = {403, 437, 440, 441, 442, 486, 508};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        world w;
        setup_world(&w, NK_TRANSPORT_UDP);
        w.s.fail_method = NK_STUN_ALLOCATE;
        w.s.fail_code = codes[i];
        assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
        pump(&w);
        assert_int_equal(nk_turn_client_state(w.c), NK_TURN_FAILED);
        const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ERROR, 0);
        assert_non_null(ev);
        assert_int_equal(ev->status, NK_ERR_STUN(codes[i]));
        assert_true(NK_ERR_IS_STUN(ev->status));
        assert_int_equal(NK_ERR_STUN_CODE(ev->status), codes[i]);
        assert_int_equal(nk_turn_client_next_deadline(w.c), NK_DEADLINE_NONE);
        teardown_world(&w);
    }
}

static void test_permission_refused_403(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    w.s.fail_method = NK_STUN_CREATE_PERMISSION;
    w.s.fail_code = 403;
    nk_addr peer = addr("10.0.0.1:9");
    assert_int_equal(nk_turn_client_permit(w.c, w.clock.now, &peer), 0);
    pump(&w);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(403));
    assert_true(nk_addr_equal_ip(&ev->peer, &peer));
    /* No permission: sending to it is refused locally. */
    uint8_t buf[256];
    nk_transmit tx;
    assert_int_equal(nk_turn_client_send(w.c, &peer, (const uint8_t *)"x", 1, &tx, buf, sizeof(buf)), NK_ERR_DENIED);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATED);
    teardown_world(&w);
}

static void test_bad_integrity_is_dropped(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.s.bad_integrity = 1;
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATING);
    assert_true(nk_turn_client_dropped(w.c) >= 1);
    w.s.bad_integrity = 0;
    advance(&w, w.clock.now + 600); /* the retransmission gets a good answer */
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATED);
    teardown_world(&w);
}

/* ---- loss and retransmission ---- */

static void test_retransmits_over_loss(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.drop_next = 2;
    int64_t t0 = w.clock.now;
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_next_deadline(w.c), t0 + 500);
    advance(&w, t0 + 499);
    assert_int_equal(w.sent, 1); /* first send only: the deadline is at 500 */
    advance(&w, t0 + 1500);
    /* sends at 0 and 500 lost, at 1500 answered with 401; then the authenticated request */
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATED);
    assert_int_equal(w.sent, 4);
    teardown_world(&w);
}

static void test_lost_responses_retransmit(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.drop_responses = 1;
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    pump(&w);
    advance(&w, w.clock.now + 2000);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATED);
    teardown_world(&w);
}

static void test_total_loss_times_out(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.drop_all = 1;
    int64_t t0 = w.clock.now;
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    pump(&w);
    advance(&w, t0 + 39499);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATING);
    advance(&w, t0 + 39500);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_FAILED);
    assert_int_equal(w.sent, NK_STUN_RC);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_TIMEOUT);
    teardown_world(&w);
}

/* ---- timers ---- */

static void test_refreshes_keep_everything_alive(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    nk_addr p1 = addr("192.0.2.50:1000"), p2 = addr("192.0.2.51:2000");
    uint16_t ch;
    assert_int_equal(nk_turn_client_permit(w.c, w.clock.now, &p1), 0);
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &p2, &ch), 0);
    assert_int_equal(ch, NK_TURN_CHANNEL_MIN);
    pump(&w);
    assert_non_null(find_event(&w, NK_TURN_EV_PERMISSION, 0));
    assert_non_null(find_event(&w, NK_TURN_EV_CHANNEL, 0));
    int64_t t0 = w.clock.now;
    /* Two simulated hours, with the nonce going stale every 7 minutes. */
    for (int step = 1; step <= 17; step++) {
        advance(&w, t0 + (int64_t)step * 420000);
        char nonce[16];
        snprintf(nonce, sizeof(nonce), "n%d", step);
        fake_set_nonce(&w.s, nonce);
    }
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATED);
    assert_int_equal(w.s.alloc_expired, 0);
    assert_int_equal(w.s.perm_expired, 0);
    assert_int_equal(w.s.chan_expired, 0);
    assert_true(w.s.nrefresh >= 7140 / 540);   /* every 540 s for a 600 s lifetime */
    assert_true(w.s.nperm >= 2 * 7140 / 240);  /* both IPs, every 240 s */
    assert_true(w.s.nchan >= 7140 / 480 + 1);
    assert_null(find_event(&w, NK_TURN_EV_ERROR, 0));
    assert_null(find_event(&w, NK_TURN_EV_CLOSED, 0));
    assert_true(count_events(&w, NK_TURN_EV_REFRESHED) >= 13);
    teardown_world(&w);
}

static void test_short_lifetime_refreshes_early(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.s.lifetime = 60;
    allocate(&w);
    int64_t t0 = w.clock.now;
    assert_true(nk_turn_client_next_deadline(w.c) < t0 + 60000);
    advance(&w, t0 + 600000);
    assert_int_equal(w.s.alloc_expired, 0);
    assert_true(w.s.nrefresh >= 19);
    teardown_world(&w);
}

static void test_failed_refresh_expires_allocation(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    int64_t t0 = w.clock.now;
    w.drop_all = 1;
    advance(&w, t0 + 600000);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_TIMEOUT);
    assert_non_null(find_event(&w, NK_TURN_EV_ERROR, 0)); /* the refresh that timed out */
    assert_int_equal(nk_turn_client_next_deadline(w.c), NK_DEADLINE_NONE);
    teardown_world(&w);
}

static void test_allocation_mismatch_on_refresh_closes(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    w.s.fail_method = NK_STUN_REFRESH;
    w.s.fail_code = 437;
    advance(&w, w.clock.now + 600000);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(437));
    teardown_world(&w);
}

static void test_deallocate(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), 0);
    pump(&w);
    assert_int_equal(w.s.deallocated, 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, 0);
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), NK_ERR_STATE);
    teardown_world(&w);
}

/* The deallocation is retransmitted at the RTO from the measured RTT (0 here: at least 50 ms),
 * not at the RFC's 500 ms: its sender exits within about a second. */
static void test_deallocate_retransmits_fast(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    int64_t start = w.clock.now;
    w.drop_next = 2; /* sent at 0 and 50 ms, lost; the third at 150 ms arrives */
    assert_int_equal(nk_turn_client_deallocate(w.c, start), 0);
    pump(&w);
    advance(&w, start + 149);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_DEALLOCATING);
    assert_int_equal(w.s.deallocated, 0);
    advance(&w, start + 150);
    assert_int_equal(w.s.deallocated, 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, 0);
    teardown_world(&w);
}

/* The answer to the deallocation is lost: the copy 50 ms later gets 437 (no such allocation
 * any more), which counts as deallocated. */
static void test_deallocate_answer_lost_then_437(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    int64_t start = w.clock.now;
    w.drop_responses = 1;
    assert_int_equal(nk_turn_client_deallocate(w.c, start), 0);
    pump(&w);
    assert_int_equal(w.s.deallocated, 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_DEALLOCATING);
    advance(&w, start + 50);
    assert_int_equal(w.s.n437, 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, 0);
    teardown_world(&w);
}

/* A nonce that went stale during a long run: the deallocation is answered 438 and sent again
 * with the new nonce. */
static void test_deallocate_stale_nonce(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    fake_set_nonce(&w.s, "nonce-2");
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), 0);
    pump(&w);
    assert_int_equal(w.s.n438, 1);
    assert_int_equal(w.s.deallocated, 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, 0);
    assert_null(find_event(&w, NK_TURN_EV_ERROR, 0));
    teardown_world(&w);
}

/* One client -> server message and the server's answer, if any. */
static void step_one(world *w)
{
    uint8_t buf[2048], resp[2048];
    nk_transmit tx;
    assert_int_equal(nk_turn_client_poll_transmit(w->c, w->clock.now, &tx, buf, sizeof(buf)), 0);
    w->sent++;
    size_t n = fake_handle(&w->s, w->clock.now, buf, tx.len, 0, resp, sizeof(resp));
    if (n > 0)
        deliver(w, resp, n);
}

/* Asked to deallocate while the authenticated Allocate is in flight (its owner exits at once):
 * the allocation the server makes is ended as soon as it is answered, unused (no ALLOCATED
 * event); before, deallocate said NK_ERR_STATE and the allocation stayed for its lifetime. */
static void test_deallocate_while_allocating(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    step_one(&w); /* the Allocate without credentials, answered 401 */
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), 0);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATING);
    pump(&w);
    assert_int_equal(w.s.nallocate, 1);
    assert_int_equal(w.s.deallocated, 1);
    assert_int_equal(w.sent, 3); /* Allocate, Allocate with credentials, Refresh lifetime 0 */
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    assert_null(find_event(&w, NK_TURN_EV_ALLOCATED, 0));
    assert_null(find_event(&w, NK_TURN_EV_ERROR, 0));
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, 0);
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), NK_ERR_STATE);
    teardown_world(&w);
}

/* The same with an authenticated Allocate that is refused: nothing to end, nothing more sent. And
 * before the server asked for credentials, the Allocate is abandoned at once: the server holds
 * nothing for a request without them. */
static void test_deallocate_while_allocating_refused_or_unauthenticated(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    w.s.fail_method = NK_STUN_ALLOCATE;
    w.s.fail_code = 486;
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    step_one(&w);
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), 0);
    pump(&w);
    advance(&w, w.clock.now + 10000);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_FAILED);
    assert_int_equal(w.s.deallocated, 0);
    assert_int_equal(w.sent, 2);
    assert_null(find_event(&w, NK_TURN_EV_ALLOCATED, 0));
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), NK_ERR_STATE);
    teardown_world(&w);

    setup_world(&w, NK_TRANSPORT_UDP);
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    assert_int_equal(nk_turn_client_deallocate(w.c, w.clock.now), 0);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    collect(&w);
    assert_non_null(find_event(&w, NK_TURN_EV_CLOSED, 0));
    pump(&w);
    advance(&w, w.clock.now + 60000);
    assert_int_equal(w.s.nallocate, 0);
    assert_int_equal(w.s.n401 + w.s.nallocate, w.sent); /* at most the first request, answered 401 */
    assert_true(w.sent <= 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_CLOSED);
    teardown_world(&w);
}

/* ---- data both ways ---- */

static void test_send_indication_then_channel_data(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    nk_addr peer = addr("192.0.2.77:4444");
    uint8_t buf[256];
    nk_transmit tx;
    /* Before the allocation: permission and channel wait for it. */
    assert_int_equal(nk_turn_client_send(w.c, &peer, (const uint8_t *)"a", 1, &tx, buf, sizeof(buf)), NK_ERR_STATE);
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    assert_int_equal(nk_turn_client_permit(w.c, w.clock.now, &peer), 0);
    w.drop_all = 1; /* lose the first Allocate: the permission waits for the retransmission */
    pump(&w);
    w.drop_all = 0;
    advance(&w, w.clock.now + 600);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_ALLOCATED);
    assert_non_null(find_event(&w, NK_TURN_EV_PERMISSION, 0));

    assert_int_equal(nk_turn_client_send(w.c, &peer, (const uint8_t *)"hello", 5, &tx, buf, sizeof(buf)), 0);
    assert_int_equal(fake_handle(&w.s, w.clock.now, buf, tx.len, 0, NULL, 0), 0);
    assert_int_equal(w.s.nsend, 1);
    assert_true(nk_addr_equal(&w.s.last_peer, &peer));
    assert_memory_equal(w.s.last_data, "hello", 5);

    uint16_t ch;
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &peer, &ch), 0);
    pump(&w);
    assert_non_null(find_event(&w, NK_TURN_EV_CHANNEL, 0));
    assert_int_equal(nk_turn_client_send(w.c, &peer, (const uint8_t *)"world", 5, &tx, buf, sizeof(buf)), 0);
    assert_int_equal(tx.len, 4 + 5); /* no padding over UDP */
    fake_handle(&w.s, w.clock.now, buf, tx.len, 0, NULL, 0);
    assert_int_equal(w.s.nchannel_data, 1);
    assert_int_equal(w.s.last_channel, ch);
    assert_memory_equal(w.s.last_data, "world", 5);
    teardown_world(&w);
}

static void test_receive_data_and_channel_data(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    nk_addr peer = addr("192.0.2.77:4444"), other = addr("192.0.2.78:1");
    uint16_t ch;
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &peer, &ch), 0);
    pump(&w);
    uint8_t msg[256];
    size_t n = fake_data_indication(&other, (const uint8_t *)"ind", 3, msg, sizeof(msg));
    deliver(&w, msg, n);
    int k = nk_turn_channel_data_write(msg, sizeof(msg), ch, (const uint8_t *)"chan!", 5, 0);
    deliver(&w, msg, (size_t)k);
    const nk_turn_event *e1 = find_event(&w, NK_TURN_EV_DATA, 0), *e2 = find_event(&w, NK_TURN_EV_DATA, 1);
    assert_non_null(e1);
    assert_non_null(e2);
    assert_true(nk_addr_equal(&e1->peer, &other));
    assert_int_equal(e1->channel, 0);
    assert_int_equal(e1->len, 3);
    assert_memory_equal(e1->data, "ind", 3);
    assert_true(nk_addr_equal(&e2->peer, &peer));
    assert_int_equal(e2->channel, ch);
    assert_memory_equal(e2->data, "chan!", 5);
    /* From elsewhere, or on an unknown channel: not delivered. */
    nk_addr stranger = addr("203.0.113.9:3478");
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &stranger, msg, (size_t)k), NK_ERR_NOT_FOUND);
    k = nk_turn_channel_data_write(msg, sizeof(msg), (uint16_t)(ch + 1), (const uint8_t *)"x", 1, 0);
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, msg, (size_t)k), NK_ERR_NOT_FOUND);
    collect(&w);
    assert_int_equal(count_events(&w, NK_TURN_EV_DATA), 2);
    teardown_world(&w);
}

static void test_several_peers(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    allocate(&w);
    uint16_t chs[5];
    for (int i = 0; i < 5; i++) {
        char text[32];
        snprintf(text, sizeof(text), "192.0.2.%d:%d", 100 + i, 5000 + i);
        nk_addr p = addr(text);
        assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &p, &chs[i]), 0);
        uint16_t again;
        assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &p, &again), 0);
        assert_int_equal(again, chs[i]);
    }
    pump(&w);
    assert_int_equal(count_events(&w, NK_TURN_EV_CHANNEL), 5);
    for (int i = 1; i < 5; i++)
        assert_int_not_equal(chs[i], chs[0]);
    teardown_world(&w);
}

static void test_explicit_permission_survives_channel_failure(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_UDP);
    nk_addr peer = addr("192.0.2.77:4444");
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    assert_int_equal(nk_turn_client_permit(w.c, w.clock.now, &peer), 0);
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &peer, NULL), 0);
    w.s.fail_method = NK_STUN_CHANNEL_BIND;
    w.s.fail_code = 508;
    pump(&w);
    assert_int_equal(w.s.nperm, 1); /* asked for on its own: its own CreatePermission */
    assert_non_null(find_event(&w, NK_TURN_EV_PERMISSION, 0));
    const nk_turn_event *ev = find_event(&w, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->method, NK_STUN_CHANNEL_BIND);
    assert_int_equal(ev->status, NK_ERR_STUN(508));
    uint8_t buf[256];
    nk_transmit tx;
    assert_int_equal(nk_turn_client_send(w.c, &peer, (const uint8_t *)"x", 1, &tx, buf, sizeof(buf)), 0);
    fake_handle(&w.s, w.clock.now, buf, tx.len, 0, NULL, 0);
    assert_int_equal(w.s.nsend, 1); /* a Send indication: the channel never came */
    /* A channel alone carries its permission: no CreatePermission, and a failed channel takes it along. */
    nk_addr other = addr("192.0.2.78:1");
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &other, NULL), 0);
    pump(&w);
    assert_int_equal(w.s.nperm, 1);
    assert_int_equal(nk_turn_client_send(w.c, &other, (const uint8_t *)"x", 1, &tx, buf, sizeof(buf)), NK_ERR_DENIED);
    teardown_world(&w);
}

/* ---- streams ---- */

static void run_stream(size_t chunk)
{
    world w;
    setup_world(&w, NK_TRANSPORT_TCP);
    w.chunk = chunk;
    allocate(&w);
    nk_addr peer = addr("192.0.2.77:4444");
    uint16_t ch;
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &peer, &ch), 0);
    pump(&w);
    assert_non_null(find_event(&w, NK_TURN_EV_CHANNEL, 0));
    /* ChannelData to the client, padded, back to back with a Data indication. */
    uint8_t msg[512];
    int k = nk_turn_channel_data_write(msg, sizeof(msg), ch, (const uint8_t *)"abcde", 5, 1);
    assert_int_equal(k, 12);
    size_t n = fake_data_indication(&peer, (const uint8_t *)"xyz", 3, msg + k, sizeof(msg) - (size_t)k);
    deliver(&w, msg, (size_t)k + n);
    const nk_turn_event *e1 = find_event(&w, NK_TURN_EV_DATA, 0), *e2 = find_event(&w, NK_TURN_EV_DATA, 1);
    assert_non_null(e1);
    assert_non_null(e2);
    assert_int_equal(e1->len, 5);
    assert_memory_equal(e1->data, "abcde", 5);
    assert_int_equal(e2->len, 3);
    assert_memory_equal(e2->data, "xyz", 3);
    /* Our ChannelData is padded too. */
    nk_transmit tx;
    assert_int_equal(nk_turn_client_send(w.c, &peer, (const uint8_t *)"hello", 5, &tx, msg, sizeof(msg)), 0);
    assert_int_equal(tx.len, 12);
    assert_int_equal(tx.transport, NK_TRANSPORT_TCP);
    teardown_world(&w);
}

static void test_stream_whole(void **state)
{
    run_stream(0);
}

static void test_stream_byte_by_byte(void **state)
{
    run_stream(1);
}

static void test_stream_odd_chunks(void **state)
{
    run_stream(7);
}

static void test_stream_no_retransmission(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_TCP);
    w.drop_all = 1;
    int64_t t0 = w.clock.now;
    assert_int_equal(nk_turn_client_allocate(w.c, w.clock.now), 0);
    pump(&w);
    advance(&w, t0 + 39500);
    assert_int_equal(w.sent, 1);
    assert_int_equal(nk_turn_client_state(w.c), NK_TURN_FAILED);
    teardown_world(&w);
}

static void test_stream_garbage_is_fatal(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_TCP);
    allocate(&w);
    const uint8_t junk[8] = {0xff, 1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, junk, sizeof(junk)), NK_ERR_MALFORMED);
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, junk, 1), NK_ERR_MALFORMED);
    teardown_world(&w);
}

/* Many small frames in one read: more than the event queue holds at once. */
static void test_stream_burst(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_TCP);
    allocate(&w);
    nk_addr peer = addr("192.0.2.77:4444");
    uint16_t ch;
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &peer, &ch), 0);
    pump(&w);
    static uint8_t burst[200 * 8];
    size_t off = 0;
    for (int i = 0; i < 200; i++) {
        uint8_t b = (uint8_t)i;
        off += (size_t)nk_turn_channel_data_write(burst + off, sizeof(burst) - off, ch, &b, 1, 1);
    }
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, burst, off), 0);
    nk_turn_event ev;
    int got = 0;
    while (nk_turn_client_poll_event(w.c, &ev) == 0) {
        assert_int_equal(ev.type, NK_TURN_EV_DATA);
        assert_int_equal(ev.data[0], (uint8_t)got);
        got++;
    }
    assert_int_equal(got, 200);
    assert_int_equal(nk_turn_client_dropped(w.c), 0);
    teardown_world(&w);
}

/* The largest ChannelData there is, in two reads of up to 64 KiB, then a read too big to buffer. */
static void test_stream_largest_frame(void **state)
{
    world w;
    setup_world(&w, NK_TRANSPORT_TCP);
    allocate(&w);
    nk_addr peer = addr("192.0.2.77:4444");
    uint16_t ch;
    assert_int_equal(nk_turn_client_bind_channel(w.c, w.clock.now, &peer, &ch), 0);
    pump(&w);
    static uint8_t data[65535], frame[65540 + 8], big[200000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    int k = nk_turn_channel_data_write(frame, sizeof(frame), ch, data, sizeof(data), 1);
    assert_int_equal(k, 65540);
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, frame, 40000), 0);
    nk_turn_event ev;
    assert_int_equal(nk_turn_client_poll_event(w.c, &ev), NK_ERR_AGAIN);
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, frame + 40000, (size_t)k - 40000), 0);
    assert_int_equal(nk_turn_client_poll_event(w.c, &ev), 0);
    assert_int_equal(ev.type, NK_TURN_EV_DATA);
    assert_int_equal(ev.len, sizeof(data));
    assert_memory_equal(ev.data, data, sizeof(data));
    assert_int_equal(nk_turn_client_handle_input(w.c, w.clock.now, &w.server, big, sizeof(big)), NK_ERR_NOBUFS);
    teardown_world(&w);
}

/* ---- REST credentials ---- */

static void test_rest_credentials(void **state)
{
    char user[64], pass[64];
    assert_int_equal(nk_turn_rest_credentials("northwind", 1700000000, "natkit", user, sizeof(user), pass,
                                              sizeof(pass)), 0);
    assert_string_equal(user, "1700000000:natkit");
    /* printf '1700000000:natkit' | openssl dgst -sha1 -hmac northwind -binary | base64 */
    assert_string_equal(pass, "+62sgd+xryfSgmRvgBunE/gh3PY=");
    assert_int_equal(nk_turn_rest_credentials("k", 1, "n", user, 3, pass, sizeof(pass)), NK_ERR_NOBUFS);
    assert_int_equal(nk_turn_rest_credentials("k", 1, "n", user, sizeof(user), pass, 10), NK_ERR_NOBUFS);
}

static void test_bad_arguments(void **state)
{
    nk_turn_client *c;
    nk_turn_client_config cfg = {0};
    assert_int_equal(nk_turn_client_new(&c, &cfg), NK_ERR_INVAL);
    cfg.server = addr("127.0.0.1:3478");
    cfg.username = "u";
    cfg.password = "p";
    cfg.transport = 9;
    assert_int_equal(nk_turn_client_new(&c, &cfg), NK_ERR_INVAL);
    cfg.transport = NK_TRANSPORT_UDP;
    assert_int_equal(nk_turn_client_new(&c, &cfg), 0);
    nk_addr none = {0};
    assert_int_equal(nk_turn_client_permit(c, 0, &none), NK_ERR_INVAL);
    assert_int_equal(nk_turn_client_deallocate(c, 0), NK_ERR_STATE);
    assert_int_equal(nk_turn_client_relayed(c, NULL, NULL), NK_ERR_STATE);
    assert_int_equal(nk_turn_client_allocate(c, 0), 0);
    assert_int_equal(nk_turn_client_allocate(c, 0), NK_ERR_STATE);
    nk_turn_client_free(c);
    nk_turn_client_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocate_401_then_success),
        cmocka_unit_test(test_stale_nonce_retry),
        cmocka_unit_test(test_stale_nonce_forever_gives_up),
        cmocka_unit_test(test_sha256_when_offered),
        cmocka_unit_test(test_wrong_password_fails_with_401),
        cmocka_unit_test(test_error_codes_map),
        cmocka_unit_test(test_permission_refused_403),
        cmocka_unit_test(test_bad_integrity_is_dropped),
        cmocka_unit_test(test_retransmits_over_loss),
        cmocka_unit_test(test_lost_responses_retransmit),
        cmocka_unit_test(test_total_loss_times_out),
        cmocka_unit_test(test_refreshes_keep_everything_alive),
        cmocka_unit_test(test_short_lifetime_refreshes_early),
        cmocka_unit_test(test_failed_refresh_expires_allocation),
        cmocka_unit_test(test_allocation_mismatch_on_refresh_closes),
        cmocka_unit_test(test_deallocate),
        cmocka_unit_test(test_deallocate_retransmits_fast),
        cmocka_unit_test(test_deallocate_answer_lost_then_437),
        cmocka_unit_test(test_deallocate_stale_nonce),
        cmocka_unit_test(test_deallocate_while_allocating),
        cmocka_unit_test(test_deallocate_while_allocating_refused_or_unauthenticated),
        cmocka_unit_test(test_send_indication_then_channel_data),
        cmocka_unit_test(test_receive_data_and_channel_data),
        cmocka_unit_test(test_several_peers),
        cmocka_unit_test(test_explicit_permission_survives_channel_failure),
        cmocka_unit_test(test_stream_whole),
        cmocka_unit_test(test_stream_byte_by_byte),
        cmocka_unit_test(test_stream_odd_chunks),
        cmocka_unit_test(test_stream_no_retransmission),
        cmocka_unit_test(test_stream_garbage_is_fatal),
        cmocka_unit_test(test_stream_burst),
        cmocka_unit_test(test_stream_largest_frame),
        cmocka_unit_test(test_rest_credentials),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
