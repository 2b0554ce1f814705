/*
 * Unit tests for the hub: frame codec, server core and client core, in
 * memory with simulated time. Clients and the server are wired together by
 * pump(), which moves bytes both ways until nothing moves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/agent.h" /* nk_path_kind */
#include "natkit/hub.h"
#include "hub_peer.h"
#include "sim.h"

#define MAXP 1500

/* realloc, as the library's code calls it here (linked with -Wl,--wrap=realloc): after the next
 * pass_reallocs calls, the next fail_reallocs calls fail as an exhausted heap would. */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static int pass_reallocs, fail_reallocs;
void *__wrap_realloc(void *p, size_t n)
{
    if (pass_reallocs > 0) {
        pass_reallocs--;
        return __real_realloc(p, n);
    }
    if (fail_reallocs > 0) {
        fail_reallocs--;
        return NULL;
    }
    return __real_realloc(p, n);
}

typedef struct peer {
    nk_identity id;
    nk_hub_client *c;
    nk_hub_conn_id conn;
    int close_pending;
    int server_close_code;  /* -1: none */
    nk_addr local;          /* the hub address as the server sees this connection */
    nk_addr remote;
} peer;

typedef struct world {
    nk_hub_server *srv;
    int64_t now;
    peer *peers;
    size_t n;
    sim_rng rnd; /* challenges */
} world;

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static void world_init(world *w, size_t n, const nk_hub_server_config *cfg_in)
{
    memset(w, 0, sizeof(*w));
    w->now = 1000;
    sim_rng_seed(&w->rnd, 42);
    nk_hub_server_config cfg;
    if (cfg_in != NULL)
        cfg = *cfg_in;
    else
        nk_hub_server_config_init(&cfg);
    cfg.random = sim_random;
    cfg.random_ctx = &w->rnd;
    assert_int_equal(nk_hub_server_new(&w->srv, &cfg), 0);
    w->peers = calloc(n, sizeof(*w->peers));
    assert_non_null(w->peers);
    w->n = n;
}

static void world_free(world *w)
{
    for (size_t i = 0; i < w->n; i++)
        nk_hub_client_free(w->peers[i].c);
    free(w->peers);
    nk_hub_server_free(w->srv);
}

/* A client with its own identity, its hub address as hub_addr, connected on a
 * transport that the server sees arriving on local. */
static void peer_connect_as(world *w, peer *p, const char *hub_addr, const char *local)
{
    nk_addr hub = addr(hub_addr);
    assert_int_equal(hub_peer_client(&p->c, &p->id, &hub), 0);
    p->local = addr(local);
    p->remote = addr("10.0.0.7:40000");
    p->server_close_code = -1;
    p->close_pending = 0;
    assert_int_equal(nk_hub_server_accept(w->srv, w->now, &p->local, &p->remote, p, &p->conn), 0);
    assert_int_equal(nk_hub_client_register(p->c, w->now), 0);
}

static void peer_connect(world *w, peer *p)
{
    peer_connect_as(w, p, "192.0.2.1:7000", "192.0.2.1:7000");
}

static void server_events(world *w)
{
    nk_hub_server_event ev;
    while (nk_hub_server_poll_event(w->srv, &ev) == 0) {
        peer *p = ev.user;
        if (ev.type == NK_HUB_SEV_CLOSE) {
            p->close_pending = 1;
            p->server_close_code = ev.code;
        }
    }
}

/* Moves bytes until nothing moves; returns how many bytes moved. */
static size_t pump(world *w)
{
    static uint8_t buf[65536];
    size_t total = 0, moved;
    do {
        moved = 0;
        server_events(w);
        for (size_t i = 0; i < w->n; i++) {
            peer *p = &w->peers[i];
            if (p->conn == 0)
                continue;
            int r;
            while ((r = nk_hub_server_poll_transmit(w->srv, p->conn, buf, sizeof(buf))) > 0) {
                if (p->c != NULL) /* raw connections: the test reads nothing */
                    (void)nk_hub_client_handle_bytes(p->c, w->now, buf, (size_t)r);
                moved += (size_t)r;
            }
            if (p->close_pending) {
                nk_hub_server_conn_closed(w->srv, p->conn);
                if (p->c != NULL)
                    nk_hub_client_handle_closed(p->c, w->now);
                p->conn = 0;
                p->close_pending = 0;
                continue;
            }
            while (p->c != NULL && (r = nk_hub_client_poll_transmit(p->c, w->now, buf, sizeof(buf))) > 0) {
                assert_int_equal(nk_hub_server_handle_bytes(w->srv, w->now, p->conn, buf, (size_t)r), 0);
                moved += (size_t)r;
            }
        }
        total += moved;
    } while (moved > 0);
    server_events(w);
    return total;
}

/* The next event of p that is not a PONG. */
static int next_event(peer *p, nk_hub_event *ev, uint8_t *buf, size_t cap)
{
    return hub_peer_next_event(p->c, ev, buf, cap);
}

static void expect_registered(peer *p)
{
    nk_hub_event ev;
    uint8_t buf[16];
    assert_int_equal(next_event(p, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_REGISTERED);
    assert_true(nk_addr_equal(&ev.addr, &p->remote));
    assert_int_equal(nk_hub_client_state(p->c), NK_HUB_CLIENT_REGISTERED);
}

/* ---- codec ---- */

static void test_frame_codec(void **state)
{
    uint8_t buf[64];
    nk_hub_frame f;
    nk_peer_id id;
    memset(id.key, 7, sizeof(id.key));
    int n = nk_hub_frame_write_routed(buf, sizeof(buf), NK_HUB_T_CANDIDATE, &id, (const uint8_t *)"abc", 3);
    assert_int_equal(n, 4 + 32 + 3);
    for (int cut = 0; cut < n; cut++)
        assert_int_equal(nk_hub_frame_parse(buf, (size_t)cut, NK_HUB_MAX_BODY, &f), 0);
    assert_int_equal(nk_hub_frame_parse(buf, (size_t)n, NK_HUB_MAX_BODY, &f), n);
    assert_int_equal(f.type, NK_HUB_T_CANDIDATE);
    assert_int_equal(f.len, 35);
    assert_int_equal(nk_hub_frame_check(&f), 0);
    assert_memory_equal(f.body + 32, "abc", 3);
    /* over the limit */
    assert_int_equal(nk_hub_frame_parse(buf, (size_t)n, 34, &f), NK_ERR_LIMIT);
    /* too small buffer */
    assert_int_equal(nk_hub_frame_write_routed(buf, 10, NK_HUB_T_CANDIDATE, &id, NULL, 0), NK_ERR_NOBUFS);
    assert_int_equal(nk_hub_frame_write_routed(buf, sizeof(buf), NK_HUB_T_PING, &id, NULL, 0), NK_ERR_INVAL);
    /* shapes */
    uint8_t ping[8] = {0};
    n = nk_hub_frame_write(buf, sizeof(buf), NK_HUB_T_PING, ping, 7);
    assert_int_equal(nk_hub_frame_parse(buf, (size_t)n, NK_HUB_MAX_BODY, &f), n);
    assert_int_equal(nk_hub_frame_check(&f), NK_ERR_MALFORMED);
    n = nk_hub_frame_write(buf, sizeof(buf), 0x55, ping, 8);
    assert_int_equal(nk_hub_frame_parse(buf, (size_t)n, NK_HUB_MAX_BODY, &f), n);
    assert_int_equal(nk_hub_frame_check(&f), NK_ERR_NOT_FOUND);
}

static void test_proof_message_binds_everything(void **state)
{
    uint8_t ch[32] = {1}, m1[NK_HUB_PROOF_MSG_SIZE], m2[NK_HUB_PROOF_MSG_SIZE];
    nk_peer_id id = {{0}};
    nk_addr h1 = addr("192.0.2.1:7000"), h2 = addr("192.0.2.1:7001");
    int n1 = nk_hub_proof_message(m1, sizeof(m1), ch, &h1, &id);
    assert_int_equal(n1, (int)NK_HUB_PROOF_MSG_SIZE);
    assert_memory_equal(m1, NK_HUB_CONTEXT, sizeof(NK_HUB_CONTEXT));
    assert_int_equal(nk_hub_proof_message(m2, sizeof(m2), ch, &h2, &id), n1);
    assert_memory_not_equal(m1, m2, (size_t)n1);
    ch[5] = 1;
    assert_int_equal(nk_hub_proof_message(m2, sizeof(m2), ch, &h1, &id), n1);
    assert_memory_not_equal(m1, m2, (size_t)n1);
    assert_int_equal(nk_hub_proof_message(m2, 10, ch, &h1, &id), NK_ERR_NOBUFS);
}

/* ---- registration ---- */

static void test_register_and_route(void **state)
{
    world w;
    world_init(&w, 3, NULL);
    peer *a = &w.peers[0], *b = &w.peers[1];
    peer_connect(&w, a);
    peer_connect(&w, b);
    pump(&w);
    expect_registered(a);
    expect_registered(b);
    assert_true(nk_hub_server_has_peer(w.srv, &a->id.id));
    assert_true(nk_hub_server_has_peer(w.srv, &b->id.id));

    assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CANDIDATE, &b->id.id, (const uint8_t *)"cand", 4), 0);
    assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CONNECT, &b->id.id, NULL, 0), 0);
    assert_int_equal(nk_hub_client_send(b->c, w.now, NK_HUB_T_RELAY, &a->id.id, (const uint8_t *)"sealed", 6), 0);
    pump(&w);
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_MESSAGE);
    assert_int_equal(ev.msg_type, NK_HUB_T_CANDIDATE);
    assert_true(nk_peer_id_equal(&ev.peer, &a->id.id));
    assert_int_equal(ev.len, 4);
    assert_memory_equal(buf, "cand", 4);
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_int_equal(ev.len, 0);
    assert_int_equal(next_event(a, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_MESSAGE);
    assert_int_equal(ev.msg_type, NK_HUB_T_RELAY);
    assert_true(nk_peer_id_equal(&ev.peer, &b->id.id));
    assert_memory_equal(buf, "sealed", 6);
    /* a too-small event buffer keeps the event */
    assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_SIGNAL, &b->id.id, (const uint8_t *)"xyz", 3), 0);
    pump(&w);
    assert_int_equal(next_event(b, &ev, buf, 2), NK_ERR_NOBUFS);
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.msg_type, NK_HUB_T_SIGNAL);
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);

    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.registered, 2);
    assert_int_equal(st.peers, 2);
    assert_int_equal(st.routed, 4);
    assert_int_equal(st.auth_failed, 0);

    /* per-peer counters (natkit status): a sent a CONNECT, b relayed 6 bytes to a */
    nk_hub_peer_info info[4];
    assert_int_equal(nk_hub_server_peers(w.srv, w.now, NULL, 0), 2);
    assert_int_equal(nk_hub_server_peers(w.srv, w.now, info, 1), 2); /* more than fit */
    assert_int_equal(nk_hub_server_peers(w.srv, w.now, info, 4), 2);
    const nk_hub_peer_info *ia = nk_peer_id_equal(&info[0].peer, &a->id.id) ? &info[0] : &info[1];
    const nk_hub_peer_info *ib = ia == &info[0] ? &info[1] : &info[0];
    assert_true(nk_peer_id_equal(&ib->peer, &b->id.id));
    assert_int_equal(ia->connects, 1);
    assert_int_equal(ib->connects, 0);
    assert_int_equal(ib->relay_frames_sent, 1);
    assert_int_equal(ib->relay_bytes_sent, 6);
    assert_int_equal(ia->relay_frames_received, 1);
    assert_int_equal(ia->relay_bytes_received, 6);
    assert_int_equal(ia->relay_frames_sent, 0);
    assert_true(ia->registered_for_ms >= 0);
    assert_int_equal(ia->addr.family, NK_AF_INET);
    assert_true(nk_addr_equal(&ia->addr, &a->remote));
    /* the registered time is counted at the now asked about */
    int64_t was = ia->registered_for_ms;
    assert_int_equal(nk_hub_server_peers(w.srv, w.now + 2500, info, 4), 2);
    ia = nk_peer_id_equal(&info[0].peer, &a->id.id) ? &info[0] : &info[1];
    assert_int_equal(ia->registered_for_ms, was + 2500);
    world_free(&w);
}

/* REPORT (0x80, an extension): counted from registered peers by path, connect time and NAT
 * behaviour; out-of-range values as unknown; ignored before registration; relay frames and bytes. */
static void test_report_counted(void **state)
{
    world w;
    world_init(&w, 3, NULL);
    peer *a = &w.peers[0], *b = &w.peers[1], *c = &w.peers[2];
    peer_connect(&w, a);
    peer_connect(&w, b);
    pump(&w);
    expect_registered(a);
    expect_registered(b);
    nk_hub_report ra = {.path = NK_PATH_DIRECT, .connect_ms = 120, .mapping = 1, .filtering = 3};
    nk_hub_report rb = {.path = NK_PATH_HUB, .connect_ms = 40000, .mapping = 0, .filtering = 0};
    assert_int_equal(nk_hub_client_report(a->c, w.now, &ra), 0);
    assert_int_equal(nk_hub_client_report(b->c, w.now, &rb), 0);
    assert_int_equal(nk_hub_client_send(b->c, w.now, NK_HUB_T_RELAY, &a->id.id, (const uint8_t *)"sealed", 6), 0);
    pump(&w);
    /* a raw connection, not registered: its REPORT is ignored and it stays open */
    uint8_t raw[32];
    uint8_t body[NK_HUB_REPORT_SIZE];
    nk_addr local = addr("192.0.2.1:7000"), remote = addr("10.0.0.9:1");
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &local, &remote, c, &c->conn), 0);
    c->server_close_code = -1;
    nk_hub_report rc = {.path = NK_PATH_TURN, .connect_ms = 1};
    nk_hub_report_encode(body, &rc);
    int n = nk_hub_frame_write(raw, sizeof(raw), NK_HUB_T_REPORT, body, sizeof(body));
    assert_int_equal(n, NK_HUB_HEADER_SIZE + NK_HUB_REPORT_SIZE);
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, c->conn, raw, (size_t)n), 0);
    pump(&w);
    assert_int_equal(c->server_close_code, -1);

    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.reports, 2);
    assert_int_equal(st.report_path[NK_PATH_DIRECT], 1);
    assert_int_equal(st.report_path[NK_PATH_HUB], 1);
    assert_int_equal(st.report_path[NK_PATH_TURN], 0);
    assert_int_equal(st.report_connect_ms[2], 1);                      /* 100 < 120 <= 250 */
    assert_int_equal(st.report_connect_ms[NK_HUB_CONNECT_NBOUNDS], 1); /* above 30 s */
    assert_int_equal(st.report_connect_ms_sum, 40120);
    assert_int_equal(st.report_mapping[1], 1);
    assert_int_equal(st.report_mapping[0], 1);
    assert_int_equal(st.report_filtering[3], 1);
    assert_int_equal(st.relay_frames, 1);
    assert_int_equal(st.relay_bytes, 6);
    assert_int_equal(st.malformed, 0);
    assert_int_equal(st.ignored_reports, 1); /* the raw connection's */
    assert_int_equal(st.ignored_unknown, 0);

    /* decoding: out-of-range values read as unknown, longer bodies accepted, shorter refused */
    uint8_t odd[10] = {9, 0, 0, 1, 0, 7, 2, 0xee, 0xee, 0xee};
    nk_hub_report r;
    assert_int_equal(nk_hub_report_decode(odd, sizeof(odd), &r), 0);
    assert_int_equal(r.path, 0);
    assert_int_equal(r.connect_ms, 256);
    assert_int_equal(r.mapping, 0);
    assert_int_equal(r.filtering, 2);
    assert_int_equal(nk_hub_report_decode(odd, 6, &r), NK_ERR_MALFORMED);
    /* a client refuses to report before it is registered */
    nk_hub_client *fresh;
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &a->id;
    cc.hub = local;
    assert_int_equal(nk_hub_client_new(&fresh, &cc), 0);
    assert_int_equal(nk_hub_client_report(fresh, w.now, &ra), NK_ERR_STATE);
    nk_hub_client_free(fresh);
    world_free(&w);
}

static void test_unknown_peer(void **state)
{
    world w;
    world_init(&w, 2, NULL);
    peer *a = &w.peers[0];
    peer_connect(&w, a);
    pump(&w);
    expect_registered(a);
    nk_identity ghost;
    assert_int_equal(nk_identity_generate(&ghost), 0);
    assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CONNECT, &ghost.id, (const uint8_t *)"hi", 2), 0);
    pump(&w);
    nk_hub_event ev;
    uint8_t buf[64];
    assert_int_equal(next_event(a, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_UNKNOWN_PEER);
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_true(nk_peer_id_equal(&ev.peer, &ghost.id));
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.unknown_peer, 1);
    /* sending before registration is refused by the client core */
    peer *b = &w.peers[1];
    peer_connect(&w, b);
    assert_int_equal(nk_hub_client_send(b->c, w.now, NK_HUB_T_CONNECT, &a->id.id, NULL, 0), NK_ERR_STATE);
    world_free(&w);
}

/* Writes a REGISTER frame for claimed_id signed with signer over challenge/hub. */
static size_t forge_register(uint8_t *out, const nk_identity *signer, const nk_peer_id *claimed,
                             const uint8_t *challenge, const nk_addr *hub)
{
    uint8_t msg[NK_HUB_PROOF_MSG_SIZE], body[1 + 32 + 64];
    int n = nk_hub_proof_message(msg, sizeof(msg), challenge, hub, claimed);
    assert_true(n > 0);
    body[0] = NK_HUB_VERSION;
    memcpy(body + 1, claimed->key, 32);
    assert_int_equal(nk_identity_sign(signer, msg, (size_t)n, body + 33), 0);
    n = nk_hub_frame_write(out, 256, NK_HUB_T_REGISTER, body, sizeof(body));
    assert_true(n > 0);
    return (size_t)n;
}

/* Accepts a raw connection and returns its challenge. */
static nk_hub_conn_id raw_accept(world *w, peer *p, uint8_t challenge[32])
{
    p->local = addr("192.0.2.1:7000");
    p->remote = addr("10.0.0.9:5555");
    p->server_close_code = -1;
    assert_int_equal(nk_hub_server_accept(w->srv, w->now, &p->local, &p->remote, p, &p->conn), 0);
    uint8_t buf[128];
    int n = nk_hub_server_poll_transmit(w->srv, p->conn, buf, sizeof(buf));
    assert_int_equal(n, 4 + 1 + 32);
    assert_int_equal(buf[0], NK_HUB_T_CHALLENGE);
    assert_int_equal(buf[4], NK_HUB_VERSION);
    memcpy(challenge, buf + 5, 32);
    return p->conn;
}

/* A raw connection accepted, its events left queued (nothing polled, nothing read). */
static void raw_accept_queued(world *w, peer *p)
{
    p->local = addr("192.0.2.1:7000");
    p->remote = addr("10.0.0.9:5556");
    p->server_close_code = -1;
    assert_int_equal(nk_hub_server_accept(w->srv, w->now, &p->local, &p->remote, p, &p->conn), 0);
}

/* Feeds bytes on a raw connection and returns the server's close code (-1: open). */
static int raw_feed(world *w, peer *p, const uint8_t *b, size_t n)
{
    assert_int_equal(nk_hub_server_handle_bytes(w->srv, w->now, p->conn, b, n), 0);
    server_events(w);
    return p->server_close_code;
}

static void test_wrong_signature_rejected(void **state)
{
    world w;
    world_init(&w, 2, NULL);
    peer *victim = &w.peers[0], *att = &w.peers[1];
    peer_connect(&w, victim);
    pump(&w);
    expect_registered(victim);
    nk_identity attacker;
    assert_int_equal(nk_identity_generate(&attacker), 0);
    uint8_t ch[32], frame[256];
    raw_accept(&w, att, ch);
    nk_addr hub = addr("192.0.2.1:7000");
    /* claims the victim's ID, signed with the attacker's key */
    size_t n = forge_register(frame, &attacker, &victim->id.id, ch, &hub);
    assert_int_equal(raw_feed(&w, att, frame, n), NK_HUB_CLOSE_AUTH);
    /* the victim is still registered on its own connection */
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.auth_failed, 1);
    assert_int_equal(st.peers, 1);
    assert_int_equal(victim->server_close_code, -1);
    /* a flipped bit in a correct signature fails too */
    nk_hub_server_conn_closed(w.srv, att->conn);
    raw_accept(&w, att, ch);
    n = forge_register(frame, &attacker, &attacker.id, ch, &hub);
    frame[n - 1] ^= 1;
    assert_int_equal(raw_feed(&w, att, frame, n), NK_HUB_CLOSE_AUTH);
    world_free(&w);
}

static void test_replayed_proof_rejected(void **state)
{
    world w;
    world_init(&w, 3, NULL);
    peer *a = &w.peers[0], *r = &w.peers[1];
    uint8_t ch_a[32], ch_r[32], frame[256];
    nk_identity ida;
    assert_int_equal(nk_identity_generate(&ida), 0);
    nk_addr hub = addr("192.0.2.1:7000");
    raw_accept(&w, a, ch_a);
    size_t n = forge_register(frame, &ida, &ida.id, ch_a, &hub);
    /* the same proof on another connection (another challenge) */
    raw_accept(&w, r, ch_r);
    assert_memory_not_equal(ch_a, ch_r, 32);
    assert_int_equal(raw_feed(&w, r, frame, n), NK_HUB_CLOSE_AUTH);
    /* on its own connection it works, once */
    assert_int_equal(raw_feed(&w, a, frame, n), -1);
    assert_true(nk_hub_server_has_peer(w.srv, &ida.id));
    assert_int_equal(raw_feed(&w, a, frame, n), NK_HUB_CLOSE_PROTOCOL);
    assert_false(nk_hub_server_has_peer(w.srv, &ida.id));
    /* a proof made for another hub address is worthless here */
    peer *o = &w.peers[2];
    nk_addr other = addr("198.51.100.1:7000");
    raw_accept(&w, o, ch_r);
    n = forge_register(frame, &ida, &ida.id, ch_r, &other);
    assert_int_equal(raw_feed(&w, o, frame, n), NK_HUB_CLOSE_AUTH);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.auth_failed, 2);
    world_free(&w);
}

static void test_client_bound_to_wrong_hub_address(void **state)
{
    world w;
    world_init(&w, 1, NULL);
    peer *a = &w.peers[0];
    peer_connect_as(&w, a, "192.0.2.99:7000", "192.0.2.1:7000");
    pump(&w);
    assert_int_equal(a->conn, 0); /* closed */
    assert_int_equal(nk_hub_client_state(a->c), NK_HUB_CLIENT_CLOSED);
    assert_int_equal(nk_hub_client_close_code(a->c), NK_HUB_CLOSE_AUTH);
    nk_hub_event ev;
    uint8_t buf[8];
    assert_int_equal(next_event(a, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_CLOSED);
    assert_int_equal(ev.code, NK_HUB_CLOSE_AUTH);
    assert_string_equal(ev.reason, nk_hub_close_reason(NK_HUB_CLOSE_AUTH));
    world_free(&w);
}

static void test_advertised_address(void **state)
{
    /* a hub at 10.0.0.1:7000 behind port forwarding from 198.51.100.1:7000 */
    nk_addr adv[1] = {addr("198.51.100.1:7000")};
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.advertised = adv;
    cfg.n_advertised = 1;
    world w;
    world_init(&w, 3, &cfg);
    peer_connect_as(&w, &w.peers[0], "198.51.100.1:7000", "10.0.0.1:7000"); /* dialled the public address */
    peer_connect_as(&w, &w.peers[1], "10.0.0.1:7000", "10.0.0.1:7000");     /* dialled the local one */
    peer_connect_as(&w, &w.peers[2], "203.0.113.5:7000", "10.0.0.1:7000");  /* a proof for another hub */
    pump(&w);
    assert_int_equal(nk_hub_client_state(w.peers[0].c), NK_HUB_CLIENT_REGISTERED);
    assert_int_equal(nk_hub_client_state(w.peers[1].c), NK_HUB_CLIENT_REGISTERED);
    assert_int_equal(nk_hub_client_close_code(w.peers[2].c), NK_HUB_CLOSE_AUTH);
    world_free(&w);
    cfg.n_advertised = NK_HUB_MAX_ADVERTISED + 1;
    nk_hub_server *s;
    assert_int_equal(nk_hub_server_new(&s, &cfg), NK_ERR_INVAL);
}

static void test_second_registration_replaces(void **state)
{
    world w;
    world_init(&w, 3, NULL);
    peer *a1 = &w.peers[0], *a2 = &w.peers[1], *b = &w.peers[2];
    peer_connect(&w, a1);
    a2->id = a1->id; /* the same identity on a second connection */
    peer_connect(&w, a2);
    peer_connect(&w, b);
    /* register a1 first */
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    pump(&w);
    assert_int_equal(a1->server_close_code, NK_HUB_CLOSE_REPLACED);
    assert_int_equal(nk_hub_client_close_code(a1->c), NK_HUB_CLOSE_REPLACED);
    assert_int_equal(nk_hub_client_state(a2->c), NK_HUB_CLIENT_REGISTERED);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.peers, 2);
    /* messages go to the new connection */
    assert_int_equal(nk_hub_client_send(b->c, w.now, NK_HUB_T_CONNECT, &a1->id.id, (const uint8_t *)"x", 1), 0);
    pump(&w);
    nk_hub_event ev;
    expect_registered(a2);
    assert_int_equal(next_event(a2, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_MESSAGE);
    /* a1 saw REGISTERED and then CLOSED(REPLACED) */
    assert_int_equal(next_event(a1, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_REGISTERED);
    assert_int_equal(next_event(a1, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_CLOSED);
    assert_int_equal(ev.code, NK_HUB_CLOSE_REPLACED);
    /* closing the old connection's transport later does not unregister the new one */
    assert_true(nk_hub_server_has_peer(w.srv, &a1->id.id));
    world_free(&w);
}

/* ---- bad input ---- */

static void test_oversized_frame_closes(void **state)
{
    world w;
    world_init(&w, 3, NULL);
    peer *a = &w.peers[0], *b = &w.peers[1];
    peer_connect(&w, a);
    peer_connect(&w, b);
    pump(&w);
    expect_registered(a);
    uint8_t hdr[4] = {NK_HUB_T_RELAY, 0, 0xff, 0xff};
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, hdr, 4), 0);
    pump(&w);
    assert_int_equal(a->server_close_code, NK_HUB_CLOSE_TOO_LARGE);
    assert_int_equal(nk_hub_client_close_code(a->c), NK_HUB_CLOSE_TOO_LARGE);
    assert_false(nk_hub_server_has_peer(w.srv, &a->id.id));
    /* a frame within the u16 but over the configured payload limit */
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_payload = 100;
    world w2;
    world_init(&w2, 2, &cfg);
    peer_connect(&w2, &w2.peers[0]);
    peer_connect(&w2, &w2.peers[1]);
    pump(&w2);
    uint8_t big[200] = {0};
    /* the client learnt the hub's limit */
    assert_int_equal(nk_hub_client_send(w2.peers[0].c, w2.now, NK_HUB_T_RELAY, &w2.peers[1].id.id, big, 101),
                     NK_ERR_INVAL);
    uint8_t frame[300];
    int n = nk_hub_frame_write_routed(frame, sizeof(frame), NK_HUB_T_RELAY, &w2.peers[1].id.id, big, 101);
    assert_int_equal(raw_feed(&w2, &w2.peers[0], frame, (size_t)n), NK_HUB_CLOSE_TOO_LARGE);
    nk_hub_stats_t st;
    nk_hub_server_stats(w2.srv, &st);
    assert_int_equal(st.malformed, 1);
    world_free(&w2);
    /* b is untouched */
    assert_int_equal(b->server_close_code, -1);
    world_free(&w);
}

static void test_malformed_and_unexpected_frames(void **state)
{
    world w;
    world_init(&w, 6, NULL);
    uint8_t ch[32];
    /* wrong body size for a known type */
    raw_accept(&w, &w.peers[0], ch);
    uint8_t bad_ping[4 + 3] = {NK_HUB_T_PING, 0, 0, 3, 1, 2, 3};
    assert_int_equal(raw_feed(&w, &w.peers[0], bad_ping, sizeof(bad_ping)), NK_HUB_CLOSE_PROTOCOL);
    /* unknown type below 0x80 */
    raw_accept(&w, &w.peers[1], ch);
    uint8_t unk[4] = {0x42, 0, 0, 0};
    assert_int_equal(raw_feed(&w, &w.peers[1], unk, 4), NK_HUB_CLOSE_PROTOCOL);
    /* extension types are ignored; ping works before registration */
    raw_accept(&w, &w.peers[2], ch);
    uint8_t ext_ping[4 + 2 + 4 + 8] = {0x90, 0, 0, 2, 9, 9, NK_HUB_T_PING, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(raw_feed(&w, &w.peers[2], ext_ping, sizeof(ext_ping)), -1);
    uint8_t out[64];
    assert_int_equal(nk_hub_server_poll_transmit(w.srv, w.peers[2].conn, out, sizeof(out)), 12);
    assert_int_equal(out[0], NK_HUB_T_PONG);
    assert_memory_equal(out + 4, ext_ping + 10, 8);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.ignored_unknown, 1); /* the 0x90 frame: ignored, and counted */
    /* routed before registration */
    raw_accept(&w, &w.peers[3], ch);
    nk_peer_id id = {{1}};
    int n = nk_hub_frame_write_routed(out, sizeof(out), NK_HUB_T_CONNECT, &id, NULL, 0);
    assert_int_equal(raw_feed(&w, &w.peers[3], out, (size_t)n), NK_HUB_CLOSE_NOT_REGISTERED);
    /* hub-only frame types from a peer */
    raw_accept(&w, &w.peers[4], ch);
    uint8_t chal[4 + 33] = {NK_HUB_T_CHALLENGE, 0, 0, 33};
    assert_int_equal(raw_feed(&w, &w.peers[4], chal, sizeof(chal)), NK_HUB_CLOSE_PROTOCOL);
    /* wrong version */
    raw_accept(&w, &w.peers[5], ch);
    uint8_t reg[4 + 97] = {NK_HUB_T_REGISTER, 0, 0, 97, 9};
    assert_int_equal(raw_feed(&w, &w.peers[5], reg, sizeof(reg)), NK_HUB_CLOSE_VERSION);
    /* bytes for a closing connection are ignored */
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, w.peers[5].conn, reg, 4), NK_ERR_NOT_FOUND);
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.malformed, 5);
    assert_int_equal(st.ignored_unknown, 1);
    world_free(&w);
}

static void test_byte_by_byte(void **state)
{
    world w;
    world_init(&w, 2, NULL);
    peer *a = &w.peers[0], *b = &w.peers[1];
    peer_connect(&w, a);
    peer_connect(&w, b);
    pump(&w);
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)i;
    assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CANDIDATE, &b->id.id, payload, sizeof(payload)), 0);
    assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CANDIDATE, &b->id.id, payload, 10), 0);
    uint8_t buf[1024];
    int n = nk_hub_client_poll_transmit(a->c, w.now, buf, sizeof(buf));
    assert_true(n > 300);
    for (int i = 0; i < n; i++)
        assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, buf + i, 1), 0);
    /* and to the client byte by byte */
    uint8_t out[1024];
    n = nk_hub_server_poll_transmit(w.srv, b->conn, out, sizeof(out));
    for (int i = 0; i < n; i++)
        assert_int_equal(nk_hub_client_handle_bytes(b->c, w.now, out + i, 1), 0);
    nk_hub_event ev;
    expect_registered(b);
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.len, 300);
    assert_memory_equal(buf, payload, 300);
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.len, 10);
    world_free(&w);
}

/* ---- timers, ping, backpressure ---- */

static void test_ping_rtt(void **state)
{
    world w;
    world_init(&w, 1, NULL);
    peer *a = &w.peers[0];
    peer_connect(&w, a);
    pump(&w);
    expect_registered(a);
    assert_int_equal(nk_hub_client_rtt(a->c), -1);
    /* the first ping is due right after registration */
    assert_int_equal(nk_hub_client_next_deadline(a->c), w.now);
    nk_hub_client_handle_timeout(a->c, w.now);
    uint8_t buf[64];
    int n = nk_hub_client_poll_transmit(a->c, w.now, buf, sizeof(buf));
    assert_int_equal(n, 12);
    w.now += 40;
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, buf, (size_t)n), 0);
    n = nk_hub_server_poll_transmit(w.srv, a->conn, buf, sizeof(buf));
    w.now += 40;
    assert_int_equal(nk_hub_client_handle_bytes(a->c, w.now, buf, (size_t)n), 0);
    nk_hub_event ev;
    assert_int_equal(nk_hub_client_poll_event(a->c, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_PONG);
    assert_int_equal(ev.rtt_ms, 80);
    assert_int_equal(nk_hub_client_rtt(a->c), 80);
    /* an explicit ping */
    assert_int_equal(nk_hub_client_ping(a->c, w.now), 0);
    pump(&w);
    w.now += 20; /* pump is instantaneous: rtt 0 */
    assert_int_equal(nk_hub_client_last_rtt(a->c), 0);
    assert_int_equal(nk_hub_client_rtt(a->c), 70);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.pings, 2);
    world_free(&w);
}

static void test_idle_and_register_timeouts(void **state)
{
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.idle_ms = 30000;
    cfg.register_ms = 5000;
    world w;
    world_init(&w, 3, &cfg);
    peer *a = &w.peers[0], *b = &w.peers[1], *silent = &w.peers[2];
    peer_connect(&w, a);
    peer_connect(&w, b);
    uint8_t ch[32];
    raw_accept(&w, silent, ch);
    pump(&w);
    /* the client pings every idle/3 = 10 s: a stays, b's pings are lost */
    for (int step = 0; step < 70; step++) {
        w.now += 1000;
        nk_hub_server_handle_timeout(w.srv, w.now);
        nk_hub_client_handle_timeout(a->c, w.now);
        uint8_t sink[256];
        while (nk_hub_client_poll_transmit(b->c, w.now, sink, sizeof(sink)) > 0)
            ; /* b's output never reaches the hub */
        pump(&w);
        assert_true(nk_hub_server_next_deadline(w.srv) > w.now);
        if (step == 5)
            assert_int_equal(silent->server_close_code, NK_HUB_CLOSE_REGISTER_TIMEOUT);
    }
    assert_int_equal(a->server_close_code, -1);
    assert_int_equal(b->server_close_code, NK_HUB_CLOSE_IDLE);
    assert_int_equal(nk_hub_client_close_code(b->c), NK_HUB_CLOSE_IDLE);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.idle_closed, 2);
    assert_int_equal(st.register_timeouts, 1);
    assert_int_equal(st.peers, 1);
    world_free(&w);
}

static void test_client_hub_silent(void **state)
{
    nk_identity id;
    assert_int_equal(nk_identity_generate(&id), 0);
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &id;
    cc.hub = addr("192.0.2.1:7000");
    cc.timeout_ms = 5000;
    nk_hub_client *c;
    assert_int_equal(nk_hub_client_new(&c, &cc), 0);
    assert_int_equal(nk_hub_client_state(c), NK_HUB_CLIENT_IDLE);
    assert_int_equal(nk_hub_client_next_deadline(c), NK_DEADLINE_NONE);
    /* nothing at all from the other end: not a hub, after challenge_ms (5 s), nothing sent to it */
    nk_hub_client_register(c, 0);
    assert_int_equal(nk_hub_client_next_deadline(c), 5000);
    nk_hub_client_handle_timeout(c, 4999);
    assert_int_equal(nk_hub_client_state(c), NK_HUB_CLIENT_CHALLENGED);
    nk_hub_client_handle_timeout(c, 5000);
    assert_int_equal(nk_hub_client_state(c), NK_HUB_CLIENT_CLOSED);
    assert_int_equal(nk_hub_client_close_code(c), NK_HUB_CLOSE_NOT_HUB);
    uint8_t out[256];
    assert_int_equal(nk_hub_client_poll_transmit(c, 5000, out, sizeof(out)), 0);
    /* a hub that challenged and then went silent: IDLE after timeout_ms */
    uint8_t chal[4 + 1 + NK_HUB_CHALLENGE_SIZE] = {NK_HUB_T_CHALLENGE, 0, 0, 1 + NK_HUB_CHALLENGE_SIZE, NK_HUB_VERSION};
    nk_hub_client_register(c, 6000);
    assert_int_equal(nk_hub_client_handle_bytes(c, 6000, chal, sizeof(chal)), 0);
    nk_hub_client_handle_timeout(c, 10999);
    assert_int_equal(nk_hub_client_state(c), NK_HUB_CLIENT_CHALLENGED);
    nk_hub_client_handle_timeout(c, 11000);
    assert_int_equal(nk_hub_client_state(c), NK_HUB_CLIENT_CLOSED);
    assert_int_equal(nk_hub_client_close_code(c), NK_HUB_CLOSE_IDLE);
    /* garbage before any challenge: not a hub, nothing sent */
    nk_hub_client_register(c, 12000);
    uint8_t junk[8] = {0x33, 0, 0, 0};
    assert_int_equal(nk_hub_client_handle_bytes(c, 12000, junk, 4), NK_ERR_CLOSED);
    assert_int_equal(nk_hub_client_close_code(c), NK_HUB_CLOSE_NOT_HUB);
    assert_int_equal(nk_hub_client_poll_transmit(c, 12000, out, sizeof(out)), 0);
    /* garbage from a hub (after its challenge) closes with PROTOCOL and a CLOSE frame for it */
    nk_hub_client_register(c, 13000);
    assert_int_equal(nk_hub_client_handle_bytes(c, 13000, chal, sizeof(chal)), 0);
    assert_int_equal(nk_hub_client_handle_bytes(c, 13000, junk, 4), NK_ERR_CLOSED);
    assert_int_equal(nk_hub_client_close_code(c), NK_HUB_CLOSE_PROTOCOL);
    int n = nk_hub_client_poll_transmit(c, 13000, out, sizeof(out));
    size_t reg = NK_HUB_HEADER_SIZE + 1 + NK_PEER_ID_SIZE + NK_SIGNATURE_SIZE; /* our REGISTER first */
    assert_true((size_t)n > reg + 6);
    assert_int_equal(out[0], NK_HUB_T_REGISTER);
    assert_int_equal(out[reg], NK_HUB_T_CLOSE);
    nk_hub_client_free(c);
}

static void test_slow_reader_drops_relay_not_control(void **state)
{
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.queue_cap = 64 * 1024;
    cfg.relay_cap = 16 * 1024;
    world w;
    world_init(&w, 2, &cfg);
    peer *a = &w.peers[0], *b = &w.peers[1];
    peer_connect(&w, a);
    peer_connect(&w, b);
    pump(&w);
    uint8_t pkt[1000] = {0}, buf[65536];
    /* a sends 100 relay packets; b reads nothing */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_RELAY, &b->id.id, pkt, sizeof(pkt)), 0);
        int n = nk_hub_client_poll_transmit(a->c, w.now, buf, sizeof(buf));
        assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, buf, (size_t)n), 0);
    }
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_true(nk_hub_server_pending(w.srv, b->conn) <= cfg.relay_cap);
    assert_true(st.relay_dropped >= 80);
    assert_int_equal(st.routed + st.relay_dropped, 100);
    /* control still gets through above relay_cap... */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CANDIDATE, &b->id.id, pkt, sizeof(pkt)), 0);
        int n = nk_hub_client_poll_transmit(a->c, w.now, buf, sizeof(buf));
        assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, buf, (size_t)n), 0);
    }
    server_events(&w);
    assert_int_equal(b->server_close_code, -1);
    assert_true(nk_hub_server_pending(w.srv, b->conn) > cfg.relay_cap);
    /* ...until the hard cap: then the reader is closed, not the queue grown */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(nk_hub_client_send(a->c, w.now, NK_HUB_T_CANDIDATE, &b->id.id, pkt, sizeof(pkt)), 0);
        int n = nk_hub_client_poll_transmit(a->c, w.now, buf, sizeof(buf));
        assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, buf, (size_t)n), 0);
    }
    server_events(&w);
    assert_int_equal(b->server_close_code, NK_HUB_CLOSE_OVERFLOW);
    assert_true(nk_hub_server_pending(w.srv, b->conn) <= cfg.queue_cap + 256);
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.overflow_closed, 1);
    /* a meanwhile learns b is gone */
    pump(&w);
    assert_int_equal(a->server_close_code, -1);
    world_free(&w);
}

static void test_limits(void **state)
{
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_conns = 3;
    cfg.max_peers = 2;
    world w;
    world_init(&w, 4, &cfg);
    for (int i = 0; i < 3; i++)
        peer_connect(&w, &w.peers[i]);
    pump(&w);
    int full = 0;
    for (int i = 0; i < 3; i++)
        full += w.peers[i].server_close_code == NK_HUB_CLOSE_FULL;
    assert_int_equal(full, 1);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.peers, 2);
    assert_int_equal(st.conns, 2);
    assert_int_equal(st.rejected_full, 1);
    /* the slot is free again */
    peer_connect(&w, &w.peers[3]);
    world_free(&w);

    /* Every connection registered: a new one is refused. */
    cfg.max_conns = 2;
    cfg.max_peers = 2;
    world_init(&w, 2, &cfg);
    for (int i = 0; i < 2; i++)
        peer_connect(&w, &w.peers[i]);
    pump(&w);
    expect_registered(&w.peers[0]);
    expect_registered(&w.peers[1]);
    nk_hub_conn_id id;
    nk_addr l = addr("192.0.2.1:7000");
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &l, NULL, &id), NK_ERR_LIMIT);
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.rejected_full, 1);
    assert_int_equal(st.evicted, 0);
    world_free(&w);
}

/* The CLOSE a driver sends for a refused accept comes from the core: code 8, "hub full", and
 * full_retry_ms (default NK_HUB_FULL_RETRY_MS) as the retry-after trailer; hub.md's bytes. */
static void test_full_close_frame(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x7f, 0x00, 0x00, 0x0f, 0x00, 0x08, 'h', 'u', 'b', ' ', 'f',
                                   'u',  'l',  'l',  0x00, 0x00, 0x00, 0x13, 0x88};
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    nk_hub_server *s;
    uint8_t buf[NK_HUB_HEADER_SIZE + 2 + NK_HUB_MAX_REASON];
    assert_int_equal(nk_hub_server_new(&s, &cfg), 0);
    assert_int_equal(nk_hub_server_full_close(s, buf, sizeof(buf)), sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(nk_hub_server_full_close(s, buf, 4), NK_ERR_NOBUFS);
    nk_hub_server_free(s);

    cfg.full_retry_ms = 1234;
    assert_int_equal(nk_hub_server_new(&s, &cfg), 0);
    int n = nk_hub_server_full_close(s, buf, sizeof(buf));
    nk_hub_frame f;
    nk_hub_close_info ci;
    assert_int_equal(nk_hub_frame_parse(buf, (size_t)n, NK_HUB_MAX_BODY, &f), n);
    assert_int_equal(f.type, NK_HUB_T_CLOSE);
    assert_int_equal(nk_hub_close_decode(f.body, f.len, &ci), 0);
    assert_int_equal(ci.code, NK_HUB_CLOSE_FULL);
    assert_string_equal(ci.reason, nk_hub_close_reason(NK_HUB_CLOSE_FULL));
    assert_int_equal(ci.retry_ms, 1234);
    nk_hub_server_free(s);
}

/* nk_hub_server_drop_peer closes with the code it is given: the CLOSE event and the CLOSE the
 * peer reads carry it, and only NK_HUB_CLOSE_REPLACED counts as a replaced registration. */
static void test_drop_peer_code(void **state)
{
    (void)state;
    world w;
    world_init(&w, 2, NULL);
    peer *a = &w.peers[0], *b = &w.peers[1];
    nk_hub_event ev;
    uint8_t buf[64];
    nk_hub_stats_t st;
    peer_connect(&w, a);
    peer_connect(&w, b);
    pump(&w);
    expect_registered(a);
    expect_registered(b);
    assert_int_equal(nk_hub_server_drop_peer(w.srv, &a->id.id, NK_HUB_CLOSE_SHUTDOWN), 0);
    pump(&w);
    assert_int_equal(a->server_close_code, NK_HUB_CLOSE_SHUTDOWN);
    assert_int_equal(next_event(a, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_CLOSED);
    assert_int_equal(ev.code, NK_HUB_CLOSE_SHUTDOWN);
    assert_string_equal(ev.reason, nk_hub_close_reason(NK_HUB_CLOSE_SHUTDOWN));
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.replaced, 0);
    assert_int_equal(st.peers, 1);
    assert_int_equal(nk_hub_server_drop_peer(w.srv, &b->id.id, NK_HUB_CLOSE_REPLACED), 0);
    pump(&w);
    assert_int_equal(next_event(b, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.code, NK_HUB_CLOSE_REPLACED);
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.peers, 0);
    /* a code the CLOSE cannot carry (u16) is refused, and so is an ID not here */
    assert_int_equal(nk_hub_server_drop_peer(w.srv, &a->id.id, 0x10000), NK_ERR_INVAL);
    assert_int_equal(nk_hub_server_drop_peer(w.srv, &a->id.id, NK_HUB_CLOSE_REPLACED), NK_ERR_NOT_FOUND);
    world_free(&w);
}

/* A queue that cannot grow for want of memory closes its connection with code OVERFLOW, counted
 * in nomem_closed (not overflow_closed, and not "other"): the receive queue (the start of a frame
 * kept for the next read) and the send queue (the PONG for a PING). */
static void test_out_of_memory_closes_counted(void **state)
{
    (void)state;
    world w;
    world_init(&w, 3, NULL);
    peer *a = &w.peers[0], *b = &w.peers[1], *c = &w.peers[2];
    nk_hub_stats_t st;
    uint8_t buf[256];
    for (size_t i = 0; i < 3; i++)
        peer_connect(&w, &w.peers[i]);
    pump(&w);
    for (size_t i = 0; i < 3; i++)
        expect_registered(&w.peers[i]);

    const uint8_t part[3] = {NK_HUB_T_PING, 0, 0}; /* a header cut short: kept for the next read */
    fail_reallocs = 1;
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, part, sizeof(part)), 0);
    assert_int_equal(fail_reallocs, 0); /* the receive queue asked for memory, and got none */
    server_events(&w);
    assert_int_equal(a->server_close_code, NK_HUB_CLOSE_OVERFLOW);
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.nomem_closed, 1);
    assert_int_equal(st.overflow_closed, 0);

    assert_int_equal(nk_hub_client_ping(b->c, w.now), 0);
    int n = nk_hub_client_poll_transmit(b->c, w.now, buf, sizeof(buf));
    assert_true(n > 0);
    fail_reallocs = 1;
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, b->conn, buf, (size_t)n), 0);
    assert_int_equal(fail_reallocs, 0); /* the send queue (the PONG) asked, and got none */
    server_events(&w);
    assert_int_equal(b->server_close_code, NK_HUB_CLOSE_OVERFLOW);
    pump(&w);
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.nomem_closed, 2);
    assert_int_equal(st.overflow_closed, 0);
    assert_int_equal(st.malformed, 0);
    assert_int_equal(st.peers, 1);
    /* each was told why (the CLOSE found memory), and the third goes on */
    assert_int_equal(nk_hub_client_close_code(b->c), NK_HUB_CLOSE_OVERFLOW);
    assert_int_equal(nk_hub_client_state(c->c), NK_HUB_CLIENT_REGISTERED);
    world_free(&w);
}

/* An event the server could not queue (no memory for the event queue) is made again from the
 * connection's state once the queue is empty: the SEND that carries a new connection's CHALLENGE,
 * and the CLOSE of a connection closed while the queue could not grow. Without that, the one
 * waited for ever for its challenge and the other was never closed by the driver. */
static void test_lost_events_made_again(void **state)
{
    (void)state;
    world w;
    world_init(&w, 8, NULL);
    nk_hub_server_event ev;
    uint8_t buf[128];

    /* the CHALLENGE is queued (first realloc), its SEND event is not (second) */
    peer *a = &w.peers[0];
    a->local = addr("192.0.2.1:7000");
    a->remote = addr("10.0.0.9:5555");
    a->server_close_code = -1;
    pass_reallocs = 1;
    fail_reallocs = 1;
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &a->local, &a->remote, a, &a->conn), 0);
    assert_int_equal(fail_reallocs, 0);
    assert_int_equal(nk_hub_server_poll_event(w.srv, &ev), 0);
    assert_int_equal(ev.type, NK_HUB_SEV_SEND);
    assert_int_equal(ev.conn, a->conn);
    assert_ptr_equal(ev.user, a);
    assert_int_equal(nk_hub_server_poll_event(w.srv, &ev), NK_ERR_AGAIN);
    int n = nk_hub_server_poll_transmit(w.srv, a->conn, buf, sizeof(buf));
    assert_int_equal(n, 4 + 1 + 32);
    assert_int_equal(buf[0], NK_HUB_T_CHALLENGE);

    /* fill the event queue's buffer (256 bytes: it is empty now) with other connections' SENDs, then
     * close a: its CLOSE event does not fit, and no memory comes */
    size_t fill = 256 / sizeof(nk_hub_server_event);
    assert_true(fill + 1 < w.n);
    for (size_t i = 1; i <= fill; i++)
        raw_accept_queued(&w, &w.peers[i]);
    const uint8_t early[4] = {NK_HUB_T_SIGNAL, 0, 0, 0}; /* a SIGNAL without its peer ID: closed */
    fail_reallocs = 100;
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, early, sizeof(early)), 0);
    fail_reallocs = 0;
    size_t sends = 0, closes = 0;
    while (nk_hub_server_poll_event(w.srv, &ev) == 0) {
        if (ev.type == NK_HUB_SEV_SEND)
            sends++;
        if (ev.type == NK_HUB_SEV_CLOSE) {
            assert_int_equal(ev.conn, a->conn);
            assert_int_equal(ev.code, NK_HUB_CLOSE_PROTOCOL);
            closes++;
        }
    }
    assert_int_equal(sends, fill);
    assert_int_equal(closes, 1); /* made again once, and only once */
    assert_int_equal(nk_hub_server_poll_event(w.srv, &ev), NK_ERR_AGAIN);
    nk_hub_server_conn_closed(w.srv, a->conn);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.conns, fill);
    world_free(&w);
}

/* Full, with a connection that has not registered: the oldest such makes room for a new one. */
static void test_full_evicts_unregistered(void **state)
{
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_conns = 3;
    world w;
    world_init(&w, 5, &cfg);
    peer *a = &w.peers[0], *x = &w.peers[1], *y = &w.peers[2], *b = &w.peers[3], *c = &w.peers[4];
    uint8_t ch[32];
    peer_connect(&w, a);
    pump(&w);
    expect_registered(a);
    raw_accept(&w, x, ch);
    w.now += 10;
    raw_accept(&w, y, ch);
    /* full: x, the older idle one, goes; b is taken at once */
    peer_connect(&w, b);
    server_events(&w);
    assert_int_equal(x->server_close_code, NK_HUB_CLOSE_REGISTER_TIMEOUT);
    assert_int_equal(y->server_close_code, -1);
    pump(&w);
    expect_registered(b);
    /* then y; a and b are registered and stay */
    peer_connect(&w, c);
    pump(&w);
    assert_int_equal(y->server_close_code, NK_HUB_CLOSE_REGISTER_TIMEOUT);
    expect_registered(c);
    assert_int_equal(a->server_close_code, -1);
    assert_int_equal(b->server_close_code, -1);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.evicted, 2);
    assert_int_equal(st.peers, 3);
    assert_int_equal(st.conns, 3);
    assert_int_equal(st.rejected_full, 0);
    world_free(&w);
}

/* max_per_ip connections per source (IPv4 address, IPv6 /64); a closed one frees its place. */
static void test_per_ip_limit(void **state)
{
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_per_ip = 2;
    world w;
    world_init(&w, 1, &cfg);
    nk_addr l = addr("192.0.2.1:7000"), r1 = addr("10.0.0.7:1"), r2 = addr("10.0.0.7:2"), r3 = addr("10.0.0.8:3");
    nk_addr v6a = addr("[2001:db8:0:1::1]:1"), v6b = addr("[2001:db8:0:1::2]:1"), v6c = addr("[2001:db8:0:1::3]:1");
    nk_hub_conn_id id1, id2, id;
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &r1, NULL, &id1), 0);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &r2, NULL, &id2), 0);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &r2, NULL, &id), NK_ERR_LIMIT);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &r3, NULL, &id), 0);
    nk_hub_server_conn_closed(w.srv, id1);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &r1, NULL, &id), 0);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &v6a, NULL, &id), 0);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &v6b, NULL, &id), 0);
    assert_int_equal(nk_hub_server_accept(w.srv, w.now, &l, &v6c, NULL, &id), NK_ERR_LIMIT);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.rejected_per_ip, 2);
    assert_int_equal(st.rejected_full, 0);
    assert_int_equal(st.conns, 5);
    world_free(&w);
}

/* ---- scale ---- */

/* The heap in use: ASan's allocated bytes (exact), else glibc's (chunk headers included; its
 * per-thread cache keeps up to 7 freed chunks per size counted as in use). */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_HUB_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_HUB_ASAN 1
#endif
#ifdef TEST_HUB_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_now(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t heap_now(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

/* Idle connections keep no send buffer once the driver took their bytes (the core gave them
 * back only above 16 KiB: 256 B per idle peer, 2 KiB after a relay packet). A peer relay frames
 * keep going to keeps its buffer until the next sweep. */
static void test_drained_send_buffers_given_back(void **state)
{
    (void)state;
    enum { REG = 40, RAW = 200 };
    world w;
    world_init(&w, 1 + REG + RAW, NULL);
    peer *a = &w.peers[0];
    for (size_t i = 0; i <= REG; i++)
        peer_connect(&w, &w.peers[i]);
    pump(&w);
    for (size_t i = 0; i <= REG; i++)
        expect_registered(&w.peers[i]);

    size_t h0 = heap_now();
    for (size_t i = 0; i < RAW; i++) {
        uint8_t challenge[32];
        raw_accept(&w, &w.peers[1 + REG + i], challenge); /* takes the CHALLENGE */
        server_events(&w);
    }
    size_t per_conn = (heap_now() - h0) / RAW;
    assert_true(per_conn < 256); /* its record (~200 B), no 256-byte send buffer */

    /* a relays one packet to each registered peer, the driver takes each at once */
    uint8_t pkt[1200], frame[1300], buf[65536];
    memset(pkt, 7, sizeof(pkt));
    size_t h1 = heap_now();
    for (size_t i = 1; i <= REG; i++) {
        int flen = nk_hub_frame_write_routed(frame, sizeof(frame), NK_HUB_T_RELAY, &w.peers[i].id.id, pkt,
                                             sizeof(pkt));
        assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, frame, (size_t)flen), 0);
        server_events(&w);
        assert_int_equal(nk_hub_server_poll_transmit(w.srv, w.peers[i].conn, buf, sizeof(buf)), flen);
    }
    /* each its counters (72 B), no 2 KiB send buffer; 2 KiB of slack for the allocator */
    assert_true(heap_now() - h1 < REG * 256 + 2048);

    /* a flood to b (kept between writes, given back at the sweep): every frame arrives whole */
    peer *b = &w.peers[1];
    int flen = nk_hub_frame_write_routed(frame, sizeof(frame), NK_HUB_T_RELAY, &b->id.id, pkt, sizeof(pkt));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, frame, (size_t)flen), 0);
        server_events(&w);
        assert_int_equal(nk_hub_server_poll_transmit(w.srv, b->conn, buf, sizeof(buf)), flen);
        assert_memory_equal(buf + NK_HUB_HEADER_SIZE, a->id.id.key, NK_PEER_ID_SIZE);
    }
    w.now += 1000;
    nk_hub_server_handle_timeout(w.srv, w.now);
    server_events(&w);
    assert_int_equal(a->server_close_code, -1);
    assert_int_equal(b->server_close_code, -1);
    assert_true(heap_now() < h1 + REG * 256 + 2048);
    assert_int_equal(nk_hub_server_handle_bytes(w.srv, w.now, a->conn, frame, (size_t)flen), 0);
    server_events(&w);
    assert_int_equal(nk_hub_server_poll_transmit(w.srv, b->conn, buf, sizeof(buf)), flen);
    nk_hub_peer_info info[1 + REG];
    assert_int_equal(nk_hub_server_peers(w.srv, w.now, info, 1 + REG), 1 + REG);
    for (size_t i = 0; i <= REG; i++) {
        if (!nk_peer_id_equal(&info[i].peer, &b->id.id))
            continue;
        assert_int_equal(info[i].relay_frames_received, 12);
        assert_int_equal(info[i].relay_bytes_received, 12 * sizeof(pkt));
    }
    world_free(&w);
}

static void test_1500_peers(void **state)
{
    world w;
    world_init(&w, MAXP, NULL);
    for (size_t i = 0; i < w.n; i++)
        peer_connect(&w, &w.peers[i]);
    pump(&w);
    nk_hub_stats_t st;
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.peers, MAXP);
    assert_int_equal(st.registered, MAXP);
    /* everyone sends a candidate to the next peer */
    for (size_t i = 0; i < w.n; i++) {
        uint8_t msg[8];
        memcpy(msg, &i, sizeof(i) < 8 ? sizeof(i) : 8);
        peer *to = &w.peers[(i + 1) % w.n];
        assert_int_equal(nk_hub_client_send(w.peers[i].c, w.now, NK_HUB_T_CANDIDATE, &to->id.id, msg, 8), 0);
    }
    pump(&w);
    for (size_t i = 0; i < w.n; i++) {
        peer *p = &w.peers[i];
        peer *from = &w.peers[(i + w.n - 1) % w.n];
        nk_hub_event ev;
        uint8_t buf[64];
        expect_registered(p);
        assert_int_equal(next_event(p, &ev, buf, sizeof(buf)), 0);
        assert_int_equal(ev.type, NK_HUB_EV_MESSAGE);
        assert_true(nk_peer_id_equal(&ev.peer, &from->id.id));
        size_t j = (i + w.n - 1) % w.n;
        assert_memory_equal(buf, &j, sizeof(j) < 8 ? sizeof(j) : 8);
    }
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.routed, MAXP);
    /* half of them leave; the table follows */
    for (size_t i = 0; i < w.n; i += 2) {
        nk_hub_server_conn_closed(w.srv, w.peers[i].conn);
        w.peers[i].conn = 0;
    }
    nk_hub_server_stats(w.srv, &st);
    assert_int_equal(st.peers, MAXP / 2);
    for (size_t i = 0; i < w.n; i++)
        assert_int_equal(nk_hub_server_has_peer(w.srv, &w.peers[i].id.id), i % 2 == 1);
    world_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_codec),
        cmocka_unit_test(test_proof_message_binds_everything),
        cmocka_unit_test(test_register_and_route),
        cmocka_unit_test(test_unknown_peer),
        cmocka_unit_test(test_report_counted),
        cmocka_unit_test(test_wrong_signature_rejected),
        cmocka_unit_test(test_replayed_proof_rejected),
        cmocka_unit_test(test_client_bound_to_wrong_hub_address),
        cmocka_unit_test(test_advertised_address),
        cmocka_unit_test(test_second_registration_replaces),
        cmocka_unit_test(test_oversized_frame_closes),
        cmocka_unit_test(test_malformed_and_unexpected_frames),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_ping_rtt),
        cmocka_unit_test(test_idle_and_register_timeouts),
        cmocka_unit_test(test_client_hub_silent),
        cmocka_unit_test(test_slow_reader_drops_relay_not_control),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_full_evicts_unregistered),
        cmocka_unit_test(test_full_close_frame),
        cmocka_unit_test(test_drop_peer_code),
        cmocka_unit_test(test_out_of_memory_closes_counted),
        cmocka_unit_test(test_lost_events_made_again),
        cmocka_unit_test(test_per_ip_limit),
        cmocka_unit_test(test_drained_send_buffers_given_back),
        cmocka_unit_test(test_1500_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
