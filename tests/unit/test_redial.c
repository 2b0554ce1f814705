/*
 * Hub reconnection on a simulated clock: the schedule alone (src/node/redial.c: backoff doubling
 * to its cap with +-25 % jitter, the reset after a registration that held, a hub's retry-after
 * hint, hubs tried in turn, hubs that are not hubs left out), then a node against two in-memory
 * hub server cores: a refused dial moves to the second hub after the backoff, a lost
 * registration comes back, a full hub's hint is waited out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/hub.h"
#include "natkit/node.h"
#include "node/redial.h"
#include "sim.h"

#define MID (UINT32_MAX / 2) /* the jitter's middle: the plain backoff */

static void test_backoff_doubles_to_cap(void **state)
{
    (void)state;
    nk__redial r;
    nk__redial_init(&r, 1);
    int64_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(nk__redial_pick(&r), 0);
        int64_t d = nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, MID);
        assert_in_range(d, want[i] - 1, want[i]);
        assert_int_equal(r.fails, i + 1);
    }
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    nk__redial r;
    nk__redial_init(&r, 1);
    assert_int_equal(nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, 0), 375);
    nk__redial_init(&r, 1);
    assert_int_equal(nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, UINT32_MAX), 625);
    /* a seeded spread stays within +-25 % and is not constant */
    sim_rng rng;
    sim_rng_seed(&rng, 13);
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 1000; i++) {
        nk__redial_init(&r, 1);
        for (int k = 0; k < 8; k++)
            (void)nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, MID); /* at the cap */
        int64_t d = nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, (uint32_t)sim_rng_next(&rng));
        assert_in_range(d, 22500, 37500);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi - lo > 10000);
}

static void test_reset_after_stable_registration(void **state)
{
    (void)state;
    nk__redial r;
    nk__redial_init(&r, 1);
    for (int i = 0; i < 5; i++)
        (void)nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, MID);
    /* registered, but only briefly: the backoff goes on */
    assert_in_range(nk__redial_done(&r, NK__REDIAL_LOST, 2000, -1, MID), 15999, 16000);
    /* held for longer than stable_ms: a fresh start */
    assert_in_range(nk__redial_done(&r, NK__REDIAL_LOST, 10000, -1, MID), 499, 500);
    assert_int_equal(r.fails, 1);
    assert_in_range(nk__redial_done(&r, NK__REDIAL_LOST, -1, -1, MID), 999, 1000);
}

static void test_hint_waited_in_full(void **state)
{
    (void)state;
    nk__redial r;
    nk__redial_init(&r, 1);
    assert_int_equal(nk__redial_done(&r, NK__REDIAL_LOST, -1, 5000, 0), 5000);
    assert_int_equal(nk__redial_done(&r, NK__REDIAL_LOST, -1, 5000, UINT32_MAX), 6250);
    assert_int_equal(nk__redial_done(&r, NK__REDIAL_LOST, -1, 0, MID), 0);
    /* an absurd hint is capped at an hour */
    assert_in_range(nk__redial_done(&r, NK__REDIAL_LOST, -1, (int64_t)UINT32_MAX, 0), 3600000, 3600000);
}

static void test_hubs_in_turn_and_left_out(void **state)
{
    (void)state;
    nk__redial r;
    nk__redial_init(&r, 3);
    assert_int_equal(nk__redial_peek(&r), 0);
    assert_int_equal(nk__redial_pick(&r), 0);
    assert_int_equal(nk__redial_pick(&r), 1);
    assert_int_equal(nk__redial_pick(&r), 2);
    assert_int_equal(nk__redial_pick(&r), 0);
    /* hub 0 never answered like a hub: left out */
    (void)nk__redial_done(&r, NK__REDIAL_NOT_HUB, -1, -1, MID);
    assert_int_equal(nk__redial_pick(&r), 1);
    /* hub 1 answered once: a later "not a hub" (its port reused?) keeps it in */
    nk__redial_answered(&r);
    (void)nk__redial_done(&r, NK__REDIAL_NOT_HUB, -1, -1, MID);
    assert_int_equal(nk__redial_pick(&r), 2);
    /* hub 2 refuses us for good */
    (void)nk__redial_done(&r, NK__REDIAL_REFUSED, -1, -1, MID);
    assert_false(nk__redial_exhausted(&r));
    assert_int_equal(nk__redial_pick(&r), 1);
    assert_int_equal(nk__redial_pick(&r), 1);
    (void)nk__redial_done(&r, NK__REDIAL_REFUSED, -1, -1, MID);
    assert_true(nk__redial_exhausted(&r));
    assert_int_equal(nk__redial_pick(&r), -1);
}

/* ---- a node against hub server cores ---- */

typedef struct hubsim {
    nk_hub_server *srv;
    nk_addr addr;
    nk_hub_conn_id conn;
} hubsim;

typedef struct nodesim {
    nk_node *node;
    nk_identity id;
    int64_t now;
    nk_node_event ev[64];
    size_t nev;
} nodesim;

static void drain_events(nodesim *w)
{
    nk_node_event ev;
    while (nk_node_poll_event(w->node, &ev) == 0)
        if (w->nev < 64)
            w->ev[w->nev++] = ev;
}

static const nk_node_event *last_of(nodesim *w, nk_node_event_type t)
{
    for (size_t i = w->nev; i > 0; i--)
        if (w->ev[i - 1].type == t)
            return &w->ev[i - 1];
    return NULL;
}

/* Moves hub bytes both ways until nothing moves. */
static void shuttle(nodesim *w, hubsim *h)
{
    uint8_t buf[8192];
    for (int moved = 1; moved;) {
        moved = 0;
        nk_hub_client *hc = nk_node_hub_client(w->node);
        int n;
        while ((n = nk_hub_client_poll_transmit(hc, w->now, buf, sizeof(buf))) > 0) {
            nk_hub_server_handle_bytes(h->srv, w->now, h->conn, buf, (size_t)n);
            moved = 1;
        }
        nk_hub_server_event sev;
        int closed = 0;
        while (nk_hub_server_poll_event(h->srv, &sev) == 0)
            closed |= sev.type == NK_HUB_SEV_CLOSE && sev.conn == h->conn;
        while ((n = nk_hub_server_poll_transmit(h->srv, h->conn, buf, sizeof(buf))) > 0) {
            nk_hub_client_handle_bytes(hc, w->now, buf, (size_t)n);
            moved = 1;
        }
        if (closed) { /* the driver: flushed the CLOSE, then the socket goes */
            nk_hub_server_conn_closed(h->srv, h->conn);
            nk_hub_client_handle_closed(hc, w->now);
            h->conn = 0;
        }
        nk_node_handle_hub(w->node, w->now);
        drain_events(w);
    }
}

/* Advances the clock to the node's next deadline (at most to until), handling timers. */
static void run_until(nodesim *w, hubsim *h, int64_t until)
{
    while (w->now < until) {
        int64_t d = nk_node_next_deadline(w->node);
        if (h != NULL && h->conn != 0 && nk_hub_server_next_deadline(h->srv) < d)
            d = nk_hub_server_next_deadline(h->srv);
        w->now = d < until ? (d > w->now ? d : w->now + 1) : until;
        if (h != NULL && h->conn != 0) {
            nk_hub_server_handle_timeout(h->srv, w->now);
            shuttle(w, h);
        }
        nk_node_handle_timeout(w->node, w->now);
        if (h != NULL && h->conn != 0)
            shuttle(w, h);
        drain_events(w);
    }
}

static void hub_init(hubsim *h, const char *addr, int max_peers)
{
    nk_hub_server_config hc;
    nk_hub_server_config_init(&hc);
    hc.max_peers = max_peers;
    assert_int_equal(nk_hub_server_new(&h->srv, &hc), 0);
    nk_addr_parse(&h->addr, addr);
    h->conn = 0;
}

/* The driver's dial, connected to h at once. */
static void dial_to(nodesim *w, hubsim *h)
{
    nk_addr to;
    assert_int_equal(nk_node_hub_dial(w->node, w->now, &to), 0);
    assert_true(nk_addr_equal(&to, &h->addr));
    nk_addr from;
    nk_addr_parse(&from, "198.51.100.9:40000");
    assert_int_equal(nk_hub_server_accept(h->srv, w->now, &h->addr, &from, NULL, &h->conn), 0);
    nk_node_hub_connected(w->node, w->now);
    shuttle(w, h);
}

static void node_init(nodesim *w, sim_rng *rng, hubsim *hubs, size_t n)
{
    memset(w, 0, sizeof(*w));
    w->now = 1000;
    assert_int_equal(nk_identity_generate(&w->id), 0);
    nk_node_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.identity = &w->id;
    for (size_t i = 0; i < n; i++)
        cfg.hubs[i] = hubs[i].addr;
    cfg.nhubs = n;
    nk_addr_parse(&cfg.host[0], "198.51.100.9:4000");
    cfg.nhost = 1;
    cfg.random = sim_random;
    cfg.random_ctx = rng;
    assert_int_equal(nk_node_new(&w->node, &cfg, w->now), 0);
}

static void test_node_redials(void **state)
{
    (void)state;
    sim_rng rng;
    sim_rng_seed(&rng, 7);
    hubsim hubs[2];
    hub_init(&hubs[0], "203.0.113.1:7000", 0);
    hub_init(&hubs[1], "203.0.113.2:7000", 0);
    nodesim w;
    node_init(&w, &rng, hubs, 2);
    nk_addr at;
    assert_int_equal(nk_node_hub_status(w.node, &at), NK_NODE_HUB_RECONNECTING);
    assert_true(nk_addr_equal(&at, &hubs[0].addr));

    /* hub A refuses the connection: the next attempt goes to B after 375-625 ms */
    assert_int_equal(nk_node_hub_dial(w.node, w.now, &at), 0);
    assert_true(nk_addr_equal(&at, &hubs[0].addr));
    assert_int_equal(nk_node_hub_dial(w.node, w.now, &at), NK_ERR_STATE); /* one at a time */
    nk_node_hub_dial_failed(w.node, w.now, "Connection refused", 111);
    drain_events(&w);
    const nk_node_event *ev = last_of(&w, NK_NODE_EV_HUB_RETRY);
    assert_non_null(ev);
    assert_null(last_of(&w, NK_NODE_EV_HUB_CLOSED)); /* it never was a hub connection */
    assert_true(nk_addr_equal(&ev->hub, &hubs[1].addr));
    assert_in_range(ev->retry_ms, 375, 625);
    assert_int_equal(ev->attempt, 1);
    assert_string_equal(ev->reason, "cannot connect: Connection refused");
    int64_t due = w.now + ev->retry_ms;
    assert_int_equal(nk_node_next_deadline(w.node), due);
    assert_int_equal(nk_node_hub_status(w.node, NULL), NK_NODE_HUB_RECONNECTING);
    run_until(&w, NULL, due - 1);
    assert_int_equal(nk_node_hub_dial(w.node, w.now, &at), NK_ERR_AGAIN);
    run_until(&w, NULL, due);

    /* B answers: registered there */
    dial_to(&w, &hubs[1]);
    ev = last_of(&w, NK_NODE_EV_REGISTERED);
    assert_non_null(ev);
    assert_true(nk_addr_equal(&ev->hub, &hubs[1].addr));
    assert_int_equal(nk_node_hub_status(w.node, &at), NK_NODE_HUB_REGISTERED);

    /* it holds 20 s (pings keep it), then B shuts down: lost, and the backoff starts over (at A) */
    run_until(&w, &hubs[1], w.now + 20000);
    assert_int_equal(nk_node_hub_status(w.node, NULL), NK_NODE_HUB_REGISTERED);
    w.nev = 0;
    nk_hub_server_close(hubs[1].srv, hubs[1].conn, NK_HUB_CLOSE_SHUTDOWN);
    shuttle(&w, &hubs[1]);
    ev = last_of(&w, NK_NODE_EV_HUB_CLOSED);
    assert_non_null(ev);
    assert_string_equal(ev->reason, "hub shutting down");
    ev = last_of(&w, NK_NODE_EV_HUB_RETRY);
    assert_non_null(ev);
    assert_true(nk_addr_equal(&ev->hub, &hubs[0].addr));
    assert_in_range(ev->retry_ms, 375, 625);
    assert_int_equal(ev->attempt, 1);
    run_until(&w, NULL, w.now + ev->retry_ms);
    dial_to(&w, &hubs[0]);
    assert_int_equal(nk_node_hub_status(w.node, &at), NK_NODE_HUB_REGISTERED);
    assert_true(nk_addr_equal(&at, &hubs[0].addr));

    nk_node_free(w.node);
    nk_hub_server_free(hubs[0].srv);
    nk_hub_server_free(hubs[1].srv);
}

static void test_node_full_hub_hint(void **state)
{
    (void)state;
    sim_rng rng;
    sim_rng_seed(&rng, 9);
    hubsim hub;
    hub_init(&hub, "203.0.113.1:7000", 1);
    nodesim first, w;
    node_init(&first, &rng, &hub, 1);
    dial_to(&first, &hub);
    assert_int_equal(nk_node_hub_status(first.node, NULL), NK_NODE_HUB_REGISTERED);
    hubsim hub2 = hub; /* the same server, a second connection */
    node_init(&w, &rng, &hub2, 1);
    dial_to(&w, &hub2);
    const nk_node_event *ev = last_of(&w, NK_NODE_EV_HUB_CLOSED);
    assert_non_null(ev);
    assert_string_equal(ev->reason, "hub full");
    ev = last_of(&w, NK_NODE_EV_HUB_RETRY);
    assert_non_null(ev);
    assert_in_range(ev->retry_ms, 5000, 6250); /* the hub's hint (full_retry_ms 5000), + 0-25 % */
    assert_int_equal(nk_node_next_deadline(w.node), w.now + ev->retry_ms);
    /* the first leaves; after the hint the second registers */
    nk_node_free(first.node);
    nk_hub_server_conn_closed(hub.srv, hub.conn);
    run_until(&w, NULL, w.now + ev->retry_ms);
    dial_to(&w, &hub2);
    assert_int_equal(nk_node_hub_status(w.node, NULL), NK_NODE_HUB_REGISTERED);
    nk_node_free(w.node);
    nk_hub_server_free(hub.srv);
}

static void test_close_trailer(void **state)
{
    (void)state;
    uint8_t body[2 + NK_HUB_MAX_REASON];
    nk_hub_close_info ci;
    int n = nk_hub_close_encode(body, sizeof(body), NK_HUB_CLOSE_FULL, "hub full", 5000);
    assert_int_equal(n, 2 + 8 + 5);
    assert_int_equal(nk_hub_close_decode(body, (size_t)n, &ci), 0);
    assert_int_equal(ci.code, NK_HUB_CLOSE_FULL);
    assert_string_equal(ci.reason, "hub full");
    assert_int_equal(ci.retry_ms, 5000);
    /* what an old receiver sees: a valid CLOSE whose reason, as a C string, is the phrase */
    nk_hub_frame f = {.type = NK_HUB_T_CLOSE, .body = body, .len = (size_t)n};
    assert_int_equal(nk_hub_frame_check(&f), 0);
    assert_string_equal((const char *)body + 2, "hub full");
    /* without a trailer, and with a cut one */
    n = nk_hub_close_encode(body, sizeof(body), NK_HUB_CLOSE_SHUTDOWN, "hub shutting down", -1);
    assert_int_equal(nk_hub_close_decode(body, (size_t)n, &ci), 0);
    assert_int_equal(ci.retry_ms, -1);
    n = nk_hub_close_encode(body, sizeof(body), NK_HUB_CLOSE_FULL, "hub full", 7);
    assert_int_equal(nk_hub_close_decode(body, (size_t)n - 1, &ci), 0);
    assert_int_equal(ci.retry_ms, -1);
    /* a long reason is cut so that the trailer still fits in 130 bytes */
    char longr[200];
    memset(longr, 'x', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = '\0';
    n = nk_hub_close_encode(body, sizeof(body), 1, longr, 9);
    assert_int_equal(n, 2 + NK_HUB_MAX_REASON);
    assert_int_equal(nk_hub_close_decode(body, (size_t)n, &ci), 0);
    assert_int_equal(ci.retry_ms, 9);
    assert_int_equal(nk_hub_close_decode(body, 1, &ci), NK_ERR_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_to_cap),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_reset_after_stable_registration),
        cmocka_unit_test(test_hint_waited_in_full),
        cmocka_unit_test(test_hubs_in_turn_and_left_out),
        cmocka_unit_test(test_close_trailer),
        cmocka_unit_test(test_node_redials),
        cmocka_unit_test(test_node_full_hub_hint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
