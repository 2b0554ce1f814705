/*
 * The TURN client against the real TURN server core, in one process with
 * simulated time: both are sans-I/O, so a few lines of routing connect them
 * (client <-> server <-> an echoing peer). Checks what only the pair can
 * show: the 401/438 dance against the server's own nonces, refreshes that
 * keep the server's allocation, permissions and channels alive for hours,
 * data both ways over ChannelData and Send/Data indications, TCP framing,
 * REST credentials, quotas, peer policy, deallocation, and a lossy link.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/turn_client.h"
#include "natkit/turn_server.h"
#include "sim.h"

#define MAX_CLIENTS 2
#define MAX_EVENTS  512

typedef struct net {
    nk_turn_server *srv;
    nk_turn_server *srv2;    /* at alt_addr, for 300 Try Alternate; NULL: none */
    nk_addr alt_addr;
    nk_turn_client *cli[MAX_CLIENTS];
    nk_addr server_addr, client_addr[MAX_CLIENTS], peer;
    uint8_t transport;
    sim_clock clock;
    sim_rng rnd;
    int relays_open;
    int loss_every;          /* drop every Nth message on the client <-> server link (0: none) */
    int loss_count;
    int peer_received;       /* datagrams that reached the echo peer */
    nk_turn_event ev[MAX_CLIENTS][MAX_EVENTS];
    int nev[MAX_CLIENTS];
    uint8_t out[65536 + 64];
} net;

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static void server_random(void *ctx, uint8_t *buf, size_t n)
{
    net *w = ctx;
    sim_random(&w->rnd, buf, n);
}

static int relay_open(void *ctx, const nk_addr *relay)
{
    ((net *)ctx)->relays_open++;
    return 0;
}

static void relay_close(void *ctx, const nk_addr *relay)
{
    ((net *)ctx)->relays_open--;
}

static int lost(net *w)
{
    return w->loss_every > 0 && ++w->loss_count % w->loss_every == 0;
}

static void collect(net *w, int i)
{
    nk_turn_event ev;
    while (nk_turn_client_poll_event(w->cli[i], &ev) == 0) {
        assert_true(w->nev[i] < MAX_EVENTS);
        if (ev.type == NK_TURN_EV_DATA) {
            /* The payload is only valid until the next input: keep its first bytes in reason. */
            size_t k = ev.len < sizeof(ev.reason) - 1 ? ev.len : sizeof(ev.reason) - 1;
            memcpy(ev.reason, ev.data, k);
            ev.reason[k] = '\0';
            ev.data = NULL;
        }
        w->ev[i][w->nev[i]++] = ev;
    }
}

static int client_of(net *w, const nk_addr *a)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (w->cli[i] != NULL && nk_addr_equal(a, &w->client_addr[i]))
            return i;
    return -1;
}

/* Routes one server transmit: to a client, or to the echo peer and back through the relay. */
static void route(net *w, nk_turn_server *srv, const nk_addr *srv_addr, const nk_transmit *tx, const uint8_t *p)
{
    nk_transmit back;
    uint8_t echo[2048];
    for (int hops = 0; hops < 4; hops++) {
        int i = client_of(w, &tx->to);
        if (i >= 0) {
            if (lost(w))
                return;
            nk_turn_client_handle_input(w->cli[i], w->clock.now, srv_addr, p, tx->len);
            collect(w, i);
            return;
        }
        assert_true(nk_addr_equal(&tx->to, &w->peer));
        w->peer_received++;
        /* The peer echoes to where it came from: the relayed address. */
        assert_true(tx->len <= sizeof(echo));
        memcpy(echo, p, tx->len);
        nk_addr relay = tx->from;
        if (nk_turn_server_handle_relay(srv, w->clock.now, &relay, &w->peer, echo, tx->len, &back, w->out,
                                        sizeof(w->out)) != 1)
            return;
        tx = &back;
        p = w->out;
    }
    fail_msg("routing loop");
}

/* A client's bytes to the server at to (the first one, or the alternate), and whatever comes of them. */
static void to_server(net *w, int i, const nk_addr *to, const uint8_t *p, size_t n)
{
    if (lost(w))
        return;
    nk_transmit tx;
    uint8_t copy[2048];
    assert_true(n <= sizeof(copy));
    memcpy(copy, p, n);
    nk_turn_server *srv = w->srv;
    if (w->srv2 != NULL && nk_addr_equal(to, &w->alt_addr))
        srv = w->srv2;
    else
        assert_true(nk_addr_equal(to, &w->server_addr));
    if (nk_turn_server_handle_client(srv, w->clock.now, w->transport, &w->client_addr[i], to, copy, n, &tx,
                                     w->out, sizeof(w->out)) == 1)
        route(w, srv, to, &tx, w->out);
}

static void pump(net *w)
{
    uint8_t buf[2048];
    nk_transmit tx;
    for (int guard = 0; guard < 1000; guard++) {
        int moved = 0;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (w->cli[i] == NULL || nk_turn_client_poll_transmit(w->cli[i], w->clock.now, &tx, buf, sizeof(buf)) != 0)
                continue;
            moved = 1;
            to_server(w, i, &tx.to, buf, tx.len);
        }
        if (!moved)
            return;
    }
    fail_msg("pump did not settle");
}

static void advance(net *w, int64_t until)
{
    for (int guard = 0; guard < 100000; guard++) {
        sim_clock_offer(&w->clock, nk_turn_server_next_deadline(w->srv));
        if (w->srv2 != NULL)
            sim_clock_offer(&w->clock, nk_turn_server_next_deadline(w->srv2));
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (w->cli[i] != NULL)
                sim_clock_offer(&w->clock, nk_turn_client_next_deadline(w->cli[i]));
        if (!sim_clock_advance(&w->clock, until))
            break;
        nk_turn_server_handle_timeout(w->srv, w->clock.now);
        if (w->srv2 != NULL)
            nk_turn_server_handle_timeout(w->srv2, w->clock.now);
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (w->cli[i] != NULL) {
                nk_turn_client_handle_timeout(w->cli[i], w->clock.now);
                collect(w, i);
            }
        pump(w);
    }
    w->clock.now = until;
}

static void add_client(net *w, int i, const char *user, const char *pass)
{
    nk_turn_client_config cfg = {
        .server = w->server_addr,
        .transport = w->transport,
        .username = user,
        .password = pass,
        .random = sim_random,
        .random_ctx = &w->rnd,
    };
    assert_int_equal(nk_turn_client_new(&w->cli[i], &cfg), 0);
}

static void setup_net(net *w, uint8_t transport, const nk_turn_server_config *override)
{
    memset(w, 0, sizeof(*w));
    w->transport = transport;
    w->server_addr = addr("192.0.2.1:3478");
    w->client_addr[0] = addr("198.51.100.10:40000");
    w->client_addr[1] = addr("198.51.100.11:40001");
    w->peer = addr("203.0.113.50:5000");
    sim_clock_init(&w->clock, 1000);
    nk_turn_server_config cfg;
    if (override != NULL) {
        cfg = *override;
    } else {
        nk_turn_server_config_init(&cfg);
        cfg.realm = "natkit.test";
    }
    cfg.relay_ip = addr("192.0.2.1:0");
    nk_turn_server_ops ops = {.relay_open = relay_open, .relay_close = relay_close, .random = server_random, .ctx = w};
    assert_int_equal(nk_turn_server_new(&w->srv, &cfg, &ops), 0);
    nk_turn_server_set_unix_time(w->srv, w->clock.now, 1700000000000LL);
    assert_int_equal(nk_turn_server_add_user(w->srv, "alice", "s3cret"), 0);
}

static void teardown_net(net *w)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        nk_turn_client_free(w->cli[i]);
    nk_turn_server_free(w->srv);
    nk_turn_server_free(w->srv2);
    assert_int_equal(w->relays_open, 0);
}

static const nk_turn_event *find(net *w, int i, nk_turn_event_type type, int nth)
{
    for (int k = 0; k < w->nev[i]; k++)
        if (w->ev[i][k].type == type && nth-- == 0)
            return &w->ev[i][k];
    return NULL;
}

static int count(net *w, int i, nk_turn_event_type type)
{
    int n = 0;
    for (int k = 0; k < w->nev[i]; k++)
        n += w->ev[i][k].type == type;
    return n;
}

static void send_to_peer(net *w, int i, const char *text)
{
    nk_transmit tx;
    uint8_t buf[2048];
    assert_int_equal(nk_turn_client_send(w->cli[i], &w->peer, (const uint8_t *)text, strlen(text), &tx, buf,
                                         sizeof(buf)), 0);
    to_server(w, i, &tx.to, buf, tx.len);
}

/* Allocation, channel and one echo through it. */
static uint16_t allocate_and_bind(net *w, int i)
{
    uint16_t ch;
    assert_int_equal(nk_turn_client_allocate(w->cli[i], w->clock.now), 0);
    assert_int_equal(nk_turn_client_bind_channel(w->cli[i], w->clock.now, &w->peer, &ch), 0);
    pump(w);
    assert_int_equal(nk_turn_client_state(w->cli[i]), NK_TURN_ALLOCATED);
    assert_non_null(find(w, i, NK_TURN_EV_CHANNEL, 0));
    return ch;
}

static void test_echo_through_channel_and_indications(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_UDP, NULL);
    nk_turn_server_allow_peer(w.srv, "203.0.113.0/24");
    add_client(&w, 0, "alice", "s3cret");
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    assert_int_equal(nk_turn_client_permit(w.cli[0], w.clock.now, &w.peer), 0);
    pump(&w);
    const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_ALLOCATED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->relayed.family, NK_AF_INET);
    assert_true(nk_addr_equal(&ev->mapped, &w.client_addr[0]));
    assert_int_equal(w.relays_open, 1);
    assert_non_null(find(&w, 0, NK_TURN_EV_PERMISSION, 0));

    send_to_peer(&w, 0, "by indication"); /* no channel yet: Send indication, Data indication back */
    ev = find(&w, 0, NK_TURN_EV_DATA, 0);
    assert_non_null(ev);
    assert_int_equal(ev->channel, 0);
    assert_string_equal(ev->reason, "by indication");
    assert_true(nk_addr_equal(&ev->peer, &w.peer));

    uint16_t ch;
    assert_int_equal(nk_turn_client_bind_channel(w.cli[0], w.clock.now, &w.peer, &ch), 0);
    pump(&w);
    assert_non_null(find(&w, 0, NK_TURN_EV_CHANNEL, 0));
    send_to_peer(&w, 0, "by channel");
    ev = find(&w, 0, NK_TURN_EV_DATA, 1);
    assert_non_null(ev);
    assert_int_equal(ev->channel, ch);
    assert_string_equal(ev->reason, "by channel");
    assert_int_equal(w.peer_received, 2);

    nk_turn_server_stats_t st;
    nk_turn_server_stats(w.srv, &st);
    assert_int_equal(st.unauthenticated, 1);
    assert_int_equal(st.auth_failed, 0);
    assert_int_equal(st.to_peer, 2);
    assert_int_equal(st.to_client, 2);
    assert_int_equal(nk_turn_client_dropped(w.cli[0]), 0);
    teardown_net(&w);
}

/* Three simulated hours: the server's nonces go stale, nothing of ours may expire. */
static void test_hours_of_refreshes(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_UDP, NULL);
    nk_turn_server_allow_peer(w.srv, "203.0.113.0/24");
    add_client(&w, 0, "alice", "s3cret");
    uint16_t ch = allocate_and_bind(&w, 0);
    nk_addr other = addr("203.0.113.51:6000");
    assert_int_equal(nk_turn_client_permit(w.cli[0], w.clock.now, &other), 0);
    pump(&w);
    int64_t t0 = w.clock.now;
    for (int minute = 1; minute <= 180; minute++) {
        advance(&w, t0 + (int64_t)minute * 60000);
        if (minute % 17 == 0) { /* data keeps flowing through the channel all along */
            char msg[32];
            snprintf(msg, sizeof(msg), "minute %d", minute);
            int before = count(&w, 0, NK_TURN_EV_DATA);
            send_to_peer(&w, 0, msg);
            assert_int_equal(count(&w, 0, NK_TURN_EV_DATA), before + 1);
            const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_DATA, before);
            assert_int_equal(ev->channel, ch);
            assert_string_equal(ev->reason, msg);
        }
    }
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED);
    assert_null(find(&w, 0, NK_TURN_EV_ERROR, 0));
    assert_null(find(&w, 0, NK_TURN_EV_CLOSED, 0));
    assert_true(count(&w, 0, NK_TURN_EV_REFRESHED) >= 180 / 9);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w.srv, &st);
    assert_int_equal(st.allocations, 1);
    assert_true(st.stale_nonce >= 1);   /* the server's 600 s nonces did go stale */
    assert_int_equal(st.auth_failed, 0);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(w.relays_open, 1);
    teardown_net(&w);
}

static void test_tcp_framing(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_TCP, NULL);
    nk_turn_server_allow_peer(w.srv, "203.0.113.0/24");
    add_client(&w, 0, "alice", "s3cret");
    uint16_t ch = allocate_and_bind(&w, 0);
    send_to_peer(&w, 0, "odd"); /* 3 bytes: ChannelData padded both ways */
    send_to_peer(&w, 0, "even");
    const nk_turn_event *e1 = find(&w, 0, NK_TURN_EV_DATA, 0), *e2 = find(&w, 0, NK_TURN_EV_DATA, 1);
    assert_non_null(e1);
    assert_non_null(e2);
    assert_string_equal(e1->reason, "odd");
    assert_int_equal(e1->len, 3);
    assert_int_equal(e1->channel, ch);
    assert_string_equal(e2->reason, "even");
    teardown_net(&w);
}

static void test_rest_credentials(void **state)
{
    net w;
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.auth_secret = "northwind";
    setup_net(&w, NK_TRANSPORT_UDP, &cfg);
    nk_turn_server_allow_peer(w.srv, "203.0.113.0/24");
    char user[64], pass[64];
    assert_int_equal(nk_turn_rest_credentials("northwind", 1700000000 + 3600, "natkit", user, sizeof(user), pass,
                                              sizeof(pass)), 0);
    add_client(&w, 0, user, pass);
    allocate_and_bind(&w, 0);
    /* Expired REST credentials are refused. */
    assert_int_equal(nk_turn_rest_credentials("northwind", 1700000000 - 60, "natkit", user, sizeof(user), pass,
                                              sizeof(pass)), 0);
    add_client(&w, 1, user, pass);
    assert_int_equal(nk_turn_client_allocate(w.cli[1], w.clock.now), 0);
    pump(&w);
    const nk_turn_event *ev = find(&w, 1, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(401));
    teardown_net(&w);
}

static void test_wrong_password(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_UDP, NULL);
    add_client(&w, 0, "alice", "wrong");
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_FAILED);
    const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(401));
    assert_int_equal(w.relays_open, 0);
    teardown_net(&w);
}

static void test_default_policy_refuses_private_peer(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_UDP, NULL);
    add_client(&w, 0, "alice", "s3cret");
    w.peer = addr("10.1.2.3:5000");
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    assert_int_equal(nk_turn_client_bind_channel(w.cli[0], w.clock.now, &w.peer, NULL), 0);
    pump(&w);
    const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(403));
    assert_int_equal(ev->method, NK_STUN_CHANNEL_BIND);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED); /* the allocation itself stands */
    teardown_net(&w);
}

static void test_user_quota(void **state)
{
    net w;
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.max_allocations_per_user = 1;
    setup_net(&w, NK_TRANSPORT_UDP, &cfg);
    add_client(&w, 0, "alice", "s3cret");
    add_client(&w, 1, "alice", "s3cret");
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_allocate(w.cli[1], w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED);
    const nk_turn_event *ev = find(&w, 1, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(486));
    teardown_net(&w);
}

static void test_deallocate_frees_the_relay(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_UDP, NULL);
    nk_turn_server_allow_peer(w.srv, "203.0.113.0/24");
    add_client(&w, 0, "alice", "s3cret");
    allocate_and_bind(&w, 0);
    assert_int_equal(w.relays_open, 1);
    assert_int_equal(nk_turn_client_deallocate(w.cli[0], w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_CLOSED);
    const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_CLOSED, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, 0);
    assert_int_equal(w.relays_open, 0);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w.srv, &st);
    assert_int_equal(st.allocations, 0);
    assert_int_equal(nk_turn_client_next_deadline(w.cli[0]), NK_DEADLINE_NONE);
    teardown_net(&w);
}

/* Every third message on the client link lost: retransmissions still get everything set up. */
static void test_lossy_link(void **state)
{
    net w;
    setup_net(&w, NK_TRANSPORT_UDP, NULL);
    nk_turn_server_allow_peer(w.srv, "203.0.113.0/24");
    add_client(&w, 0, "alice", "s3cret");
    w.loss_every = 3;
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    assert_int_equal(nk_turn_client_bind_channel(w.cli[0], w.clock.now, &w.peer, NULL), 0);
    pump(&w);
    advance(&w, w.clock.now + 20000);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED);
    assert_non_null(find(&w, 0, NK_TURN_EV_CHANNEL, 0));
    assert_null(find(&w, 0, NK_TURN_EV_ERROR, 0));
    /* And it stays alive for an hour on that link. */
    advance(&w, w.clock.now + 3600000);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w.srv, &st);
    assert_int_equal(st.allocations, 1);
    teardown_net(&w);
}

/* ---- 300 Try Alternate ---- */

/* A second server core at 192.0.2.2:3478 (w->alt_addr); alternates: where it redirects (may be NULL). */
static void add_alt_server(net *w, const nk_addr *alternates, size_t n)
{
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.relay_ip = addr("192.0.2.2:0");
    cfg.alternates = alternates;
    cfg.n_alternates = n;
    w->alt_addr = addr("192.0.2.2:3478");
    nk_turn_server_ops ops = {.relay_open = relay_open, .relay_close = relay_close, .random = server_random, .ctx = w};
    assert_int_equal(nk_turn_server_new(&w->srv2, &cfg, &ops), 0);
    assert_int_equal(nk_turn_server_add_user(w->srv2, "alice", "s3cret"), 0);
    assert_int_equal(nk_turn_server_allow_peer(w->srv2, "203.0.113.0/24"), 0);
}

/* A front redirecting to B: the client ends up allocated at B, authenticated there afresh, and keeps
 * its allocation at B for two hours of refreshes; data flows through B. */
static void redirect_followed(uint8_t transport)
{
    net w;
    nk_addr alt = addr("192.0.2.2:3478"), v6 = addr("[2001:db8::2]:3478"), got;
    nk_addr alts[2] = {v6, alt}; /* the IPv6 one is skipped for an IPv4 client */
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.alternates = alts;
    cfg.n_alternates = 2;
    setup_net(&w, transport, &cfg);
    add_alt_server(&w, NULL, 0);
    add_client(&w, 0, "alice", "s3cret");
    allocate_and_bind(&w, 0);
    const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_REDIRECTED, 0);
    assert_non_null(ev);
    assert_true(nk_addr_equal(&ev->peer, &alt));
    const char *domain = "unset";
    nk_turn_client_server(w.cli[0], &got, &domain);
    assert_true(nk_addr_equal(&got, &alt));
    assert_null(domain);
    nk_turn_server_stats_t front, back;
    nk_turn_server_stats(w.srv, &front);
    nk_turn_server_stats(w.srv2, &back);
    assert_int_equal(front.redirected, 1);
    assert_int_equal(front.allocations, 0);
    assert_int_equal(front.unauthenticated, 0); /* redirected before any credential check */
    assert_int_equal(back.allocations, 1);
    assert_int_equal(back.unauthenticated, 1); /* the client authenticated afresh at B */
    ev = find(&w, 0, NK_TURN_EV_ALLOCATED, 0);
    assert_non_null(ev);
    assert_int_equal(nk_addr_equal_ip(&ev->relayed, &w.alt_addr), 1);

    send_to_peer(&w, 0, "via B");
    assert_int_equal(count(&w, 0, NK_TURN_EV_DATA), 1);
    advance(&w, w.clock.now + 2 * 3600 * 1000); /* refreshes go to B and keep it */
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED);
    assert_int_equal(count(&w, 0, NK_TURN_EV_ERROR), 0);
    send_to_peer(&w, 0, "still via B");
    assert_int_equal(count(&w, 0, NK_TURN_EV_DATA), 2);
    nk_turn_server_stats(w.srv, &front);
    assert_int_equal(front.redirected, 1);
    assert_int_equal(count(&w, 0, NK_TURN_EV_REDIRECTED), 1);
    teardown_net(&w);
}

static void test_redirect_followed_udp(void **state)
{
    redirect_followed(NK_TRANSPORT_UDP);
}

static void test_redirect_followed_tcp(void **state)
{
    redirect_followed(NK_TRANSPORT_TCP);
}

/* Two servers redirecting to each other: one hop, then the client refuses to go back. */
static void test_redirect_loop_stops(void **state)
{
    net w;
    nk_addr alt = addr("192.0.2.2:3478"), front_addr = addr("192.0.2.1:3478");
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.alternates = &alt;
    cfg.n_alternates = 1;
    setup_net(&w, NK_TRANSPORT_UDP, &cfg);
    add_alt_server(&w, &front_addr, 1);
    add_client(&w, 0, "alice", "s3cret");
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_FAILED);
    const nk_turn_event *ev = find(&w, 0, NK_TURN_EV_ERROR, 0);
    assert_non_null(ev);
    assert_int_equal(ev->status, NK_ERR_STUN(300));
    assert_non_null(strstr(ev->reason, "already tried"));
    assert_int_equal(count(&w, 0, NK_TURN_EV_REDIRECTED), 1);
    teardown_net(&w);
}

/* A server that finds the address it was reached on in its list serves the request itself. */
static void test_redirect_not_to_itself(void **state)
{
    net w;
    nk_addr alts[2] = {addr("192.0.2.2:3478"), addr("192.0.2.1:3478")};
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.alternates = alts;
    cfg.n_alternates = 2;
    setup_net(&w, NK_TRANSPORT_UDP, &cfg);
    add_client(&w, 0, "alice", "s3cret");
    assert_int_equal(nk_turn_client_allocate(w.cli[0], w.clock.now), 0);
    pump(&w);
    assert_int_equal(nk_turn_client_state(w.cli[0]), NK_TURN_ALLOCATED);
    assert_int_equal(count(&w, 0, NK_TURN_EV_REDIRECTED), 0);
    teardown_net(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_through_channel_and_indications),
        cmocka_unit_test(test_hours_of_refreshes),
        cmocka_unit_test(test_tcp_framing),
        cmocka_unit_test(test_rest_credentials),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_default_policy_refuses_private_peer),
        cmocka_unit_test(test_user_quota),
        cmocka_unit_test(test_deallocate_frees_the_relay),
        cmocka_unit_test(test_lossy_link),
        cmocka_unit_test(test_redirect_followed_udp),
        cmocka_unit_test(test_redirect_followed_tcp),
        cmocka_unit_test(test_redirect_loop_stops),
        cmocka_unit_test(test_redirect_not_to_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
