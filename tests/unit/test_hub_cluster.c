/*
 * The hub core as one hub of a cluster (nk_hub_server_config.cluster), in
 * memory with simulated time: two server cores, A and B, and a test
 * "directory" standing in for Redis (peer -> hub, kept from the cores'
 * REGISTERED / UNREGISTERED events). Frames the cores hand over for peers that
 * are not theirs go through the cluster message codec, as the Redis driver
 * sends them, and are delivered to the other core. Plus the codec itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/hub.h"
#include "hub_peer.h"
#include "sim.h"

#define NPEERS 4

typedef struct cpeer {
    nk_identity id;
    nk_hub_client *c;
    int hub;                 /* 0: A, 1: B */
    nk_hub_conn_id conn;
    int close_pending, close_code;
} cpeer;

typedef struct dir_entry {
    nk_peer_id peer;
    int hub;                 /* -1: none */
    nk_hub_conn_id conn;
} dir_entry;

typedef struct cworld {
    nk_hub_server *hub[2];
    cpeer peers[NPEERS];
    dir_entry dir[NPEERS * 2];
    size_t ndir;
    int auto_confirm;        /* confirm claims as soon as they are made (Redis answered) */
    nk_hub_conn_id unconfirmed[2];
    int64_t now;
    sim_rng rnd;
    uint64_t unregistered[2], forwarded;
    int hold_forward[2];     /* the driver takes nothing from that hub's forward queue (Redis slow) */
    uint64_t pauses[2], resumes[2];
} cworld;

static void world_init_wait(cworld *w, size_t forward_cap, int64_t forward_wait_ms)
{
    memset(w, 0, sizeof(*w));
    w->now = 1000;
    w->auto_confirm = 1;
    sim_rng_seed(&w->rnd, 7);
    for (int h = 0; h < 2; h++) {
        nk_hub_server_config cfg;
        nk_hub_server_config_init(&cfg);
        cfg.random = sim_random;
        cfg.random_ctx = &w->rnd;
        cfg.cluster = 1;
        cfg.forward_cap = forward_cap;
        cfg.forward_wait_ms = forward_wait_ms;
        assert_int_equal(nk_hub_server_new(&w->hub[h], &cfg), 0);
    }
}

static void world_init(cworld *w, size_t forward_cap)
{
    world_init_wait(w, forward_cap, 0);
}

static void world_free(cworld *w)
{
    for (int i = 0; i < NPEERS; i++)
        nk_hub_client_free(w->peers[i].c);
    nk_hub_server_free(w->hub[0]);
    nk_hub_server_free(w->hub[1]);
}

static dir_entry *dir_find(cworld *w, const nk_peer_id *p)
{
    for (size_t i = 0; i < w->ndir; i++)
        if (nk_peer_id_equal(&w->dir[i].peer, p))
            return &w->dir[i];
    return NULL;
}

/* What the Redis driver does with a claim: the newest wins; the older hub drops its own. */
static void dir_claim(cworld *w, int hub, const nk_peer_id *p, nk_hub_conn_id conn)
{
    dir_entry *e = dir_find(w, p);
    if (e == NULL) {
        e = &w->dir[w->ndir++];
        e->peer = *p;
    } else if (e->hub >= 0 && e->hub != hub) {
        assert_int_equal(nk_hub_server_drop_peer(w->hub[e->hub], p, NK_HUB_CLOSE_REPLACED), 0); /* MOVED */
    }
    e->hub = hub;
    e->conn = conn;
    if (w->auto_confirm)
        assert_int_equal(nk_hub_server_confirm(w->hub[hub], conn), 0);
    else
        w->unconfirmed[hub] = conn;
}

/* A frame through the cluster: encoded as the driver publishes it, decoded on the other side. */
static void route(cworld *w, int from, const nk_hub_forward *fw)
{
    uint8_t msg[NK_HUB_CLUSTER_MSG_MAX];
    nk_hub_cluster_msg m, in;
    memset(&m, 0, sizeof(m));
    m.kind = NK_HUB_CM_FRAME;
    m.origin[0] = (uint8_t)from;
    m.type = fw->type;
    m.src = fw->src;
    m.dst = fw->dst;
    m.payload = fw->payload;
    m.len = fw->len;
    int n = nk_hub_cluster_msg_encode(msg, sizeof(msg), &m);
    assert_true(n == (int)(NK_HUB_CLUSTER_HEADER + fw->len));
    assert_int_equal(nk_hub_cluster_msg_decode(msg, (size_t)n, &in), 0);
    dir_entry *e = dir_find(w, &in.dst);
    int rc = NK_ERR_NOT_FOUND;
    if (e != NULL && e->hub >= 0)
        rc = nk_hub_server_deliver(w->hub[e->hub], w->now, in.type, &in.src, &in.dst, in.payload, in.len);
    if (rc == NK_ERR_NOT_FOUND) /* no key, or the hub it names does not have it: UNKNOWN back */
        assert_int_equal(nk_hub_server_unknown_peer(w->hub[from], in.type, &in.src, &in.dst), 0);
}

static cpeer *peer_of_conn(cworld *w, int hub, nk_hub_conn_id conn)
{
    for (int i = 0; i < NPEERS; i++)
        if (w->peers[i].c != NULL && w->peers[i].hub == hub && w->peers[i].conn == conn)
            return &w->peers[i];
    return NULL;
}

static void hub_events(cworld *w, int h)
{
    nk_hub_server_event ev;
    nk_hub_forward fw;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    while (nk_hub_server_poll_event(w->hub[h], &ev) == 0) {
        if (ev.type == NK_HUB_SEV_CLOSE) {
            cpeer *p = peer_of_conn(w, h, ev.conn);
            assert_non_null(p);
            p->close_pending = 1;
            p->close_code = ev.code;
        } else if (ev.type == NK_HUB_SEV_REGISTERED) {
            dir_claim(w, h, &ev.peer, ev.conn);
        } else if (ev.type == NK_HUB_SEV_UNREGISTERED) {
            w->unregistered[h]++;
            dir_entry *e = dir_find(w, &ev.peer);
            if (e != NULL && e->hub == h && e->conn == ev.conn) /* compare-and-delete */
                e->hub = -1;
        } else if (ev.type == NK_HUB_SEV_PAUSE || ev.type == NK_HUB_SEV_RESUME) {
            assert_non_null(peer_of_conn(w, h, ev.conn));
            w->pauses[h] += ev.type == NK_HUB_SEV_PAUSE;
            w->resumes[h] += ev.type == NK_HUB_SEV_RESUME;
        } else if (ev.type == NK_HUB_SEV_FORWARD) {
            assert_int_equal(ev.conn, 0);
            while (!w->hold_forward[h] && nk_hub_server_poll_forward(w->hub[h], w->now, &fw, buf, sizeof(buf)) == 0) {
                w->forwarded++;
                route(w, h, &fw);
            }
        }
    }
}

static void pump(cworld *w)
{
    static uint8_t buf[65536];
    size_t moved;
    do {
        moved = 0;
        for (int h = 0; h < 2; h++)
            hub_events(w, h);
        for (int i = 0; i < NPEERS; i++) {
            cpeer *p = &w->peers[i];
            if (p->c == NULL || p->conn == 0)
                continue;
            nk_hub_server *s = w->hub[p->hub];
            int r;
            while ((r = nk_hub_server_poll_transmit(s, p->conn, buf, sizeof(buf))) > 0) {
                (void)nk_hub_client_handle_bytes(p->c, w->now, buf, (size_t)r);
                moved += (size_t)r;
            }
            if (p->close_pending) {
                nk_hub_server_conn_closed(s, p->conn);
                nk_hub_client_handle_closed(p->c, w->now);
                p->conn = 0;
                p->close_pending = 0;
                moved++;
                continue;
            }
            while (!nk_hub_server_paused(s, p->conn) && /* as the driver: a paused peer is not read */
                   (r = nk_hub_client_poll_transmit(p->c, w->now, buf, sizeof(buf))) > 0) {
                assert_int_equal(nk_hub_server_handle_bytes(s, w->now, p->conn, buf, (size_t)r), 0);
                moved += (size_t)r;
            }
        }
    } while (moved > 0);
}

static void connect_at(cworld *w, cpeer *p, int hub)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, hub == 0 ? "192.0.2.1:7000" : "192.0.2.2:7000"), 0);
    assert_int_equal(hub_peer_client(&p->c, &p->id, &a), 0);
    nk_addr remote;
    assert_int_equal(nk_addr_parse(&remote, "10.0.0.9:40000"), 0);
    p->hub = hub;
    p->close_code = -1;
    assert_int_equal(nk_hub_server_accept(w->hub[hub], w->now, &a, &remote, p, &p->conn), 0);
    assert_int_equal(nk_hub_client_register(p->c, w->now), 0);
}

/* The next client event that is not a PONG. */
static int next_event(cpeer *p, nk_hub_event *ev, uint8_t *buf, size_t cap)
{
    return hub_peer_next_event(p->c, ev, buf, cap);
}

static void expect(cpeer *p, nk_hub_event_type type, nk_hub_event *ev, uint8_t *buf, size_t cap)
{
    assert_int_equal(next_event(p, ev, buf, cap), 0);
    assert_int_equal(ev->type, type);
}

/* ---- tests ---- */

static void test_signalling_and_relay_across_hubs(void **state)
{
    cworld w;
    world_init(&w, 0);
    cpeer *x = &w.peers[0], *y = &w.peers[1];
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD], big[NK_HUB_MAX_PAYLOAD];
    connect_at(&w, x, 0);
    connect_at(&w, y, 1);
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    expect(y, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));

    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_CONNECT, &y->id.id, (const uint8_t *)"hello", 5), 0);
    sim_random(&w.rnd, big, sizeof(big));
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_RELAY, &y->id.id, big, sizeof(big)), 0);
    assert_int_equal(nk_hub_client_send(y->c, w.now, NK_HUB_T_CANDIDATE, &x->id.id, (const uint8_t *)"c", 1), 0);
    pump(&w);
    expect(y, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_true(nk_peer_id_equal(&ev.peer, &x->id.id)); /* tagged with the verified sender */
    assert_int_equal(ev.len, 5);
    assert_memory_equal(buf, "hello", 5);
    expect(y, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_RELAY);
    assert_int_equal(ev.len, sizeof(big));
    assert_memory_equal(buf, big, sizeof(big)); /* byte-identical, full size */
    expect(x, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_CANDIDATE);
    assert_true(nk_peer_id_equal(&ev.peer, &y->id.id));

    nk_hub_stats_t a, b;
    nk_hub_server_stats(w.hub[0], &a);
    nk_hub_server_stats(w.hub[1], &b);
    assert_int_equal(a.cluster_forwarded, 2);
    assert_int_equal(b.cluster_delivered, 2);
    assert_int_equal(b.relay_frames, 1);
    assert_int_equal(b.relay_bytes, sizeof(big));
    assert_int_equal(b.cluster_forwarded, 1);
    assert_int_equal(a.cluster_delivered, 1);
    assert_int_equal(a.unknown_peer + b.unknown_peer, 0);
    world_free(&w);
}

static void test_local_peers_stay_local(void **state)
{
    cworld w;
    world_init(&w, 0);
    cpeer *x = &w.peers[0], *y = &w.peers[1];
    nk_hub_event ev;
    uint8_t buf[64];
    connect_at(&w, x, 0);
    connect_at(&w, y, 0);
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, (const uint8_t *)"s", 1), 0);
    pump(&w);
    expect(y, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    expect(y, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_int_equal(w.forwarded, 0);
    world_free(&w);
}

static void test_registered_waits_for_the_directory(void **state)
{
    cworld w;
    world_init(&w, 0);
    w.auto_confirm = 0;
    cpeer *x = &w.peers[0];
    nk_hub_event ev;
    uint8_t buf[64];
    connect_at(&w, x, 0);
    pump(&w);
    assert_true(nk_hub_server_has_peer(w.hub[0], &x->id.id)); /* in the table: local frames reach it */
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_int_not_equal(nk_hub_client_state(x->c), NK_HUB_CLIENT_REGISTERED);
    assert_int_equal(nk_hub_server_confirm(w.hub[0], w.unconfirmed[0]), 0);
    assert_int_equal(nk_hub_server_confirm(w.hub[0], w.unconfirmed[0]), 0); /* once only */
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_int_equal(nk_hub_server_confirm(w.hub[0], 12345), NK_ERR_NOT_FOUND);
    world_free(&w);
}

static void test_unknown_peer_across_the_cluster(void **state)
{
    cworld w;
    world_init(&w, 0);
    cpeer *x = &w.peers[0];
    nk_identity ghost;
    nk_hub_event ev;
    uint8_t buf[64];
    assert_int_equal(nk_identity_generate(&ghost), 0);
    connect_at(&w, x, 0);
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_CONNECT, &ghost.id, (const uint8_t *)"?", 1), 0);
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_RELAY, &ghost.id, (const uint8_t *)"?", 1), 0);
    pump(&w);
    expect(x, NK_HUB_EV_UNKNOWN_PEER, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_true(nk_peer_id_equal(&ev.peer, &ghost.id));
    expect(x, NK_HUB_EV_UNKNOWN_PEER, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_RELAY);
    nk_hub_stats_t a;
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.unknown_peer, 2);
    assert_int_equal(a.cluster_forwarded, 2);
    /* the core's own checks */
    assert_int_equal(nk_hub_server_unknown_peer(w.hub[1], NK_HUB_T_CONNECT, &x->id.id, &ghost.id), NK_ERR_NOT_FOUND);
    assert_int_equal(nk_hub_server_deliver(w.hub[1], w.now, NK_HUB_T_CONNECT, &x->id.id, &ghost.id, NULL, 0),
                     NK_ERR_NOT_FOUND);
    assert_int_equal(nk_hub_server_deliver(w.hub[0], w.now, NK_HUB_T_PING, &ghost.id, &x->id.id, NULL, 0),
                     NK_ERR_INVAL);
    static uint8_t huge[NK_HUB_MAX_PAYLOAD + 1];
    assert_int_equal(nk_hub_server_deliver(w.hub[0], w.now, NK_HUB_T_RELAY, &ghost.id, &x->id.id, huge,
                                           sizeof(huge)),
                     NK_ERR_INVAL);
    world_free(&w);
}

/* The same ID at B after A: the newest wins, A drops its connection, the directory says B. */
static void test_newest_registration_wins_across_hubs(void **state)
{
    cworld w;
    world_init(&w, 0);
    cpeer *old = &w.peers[0], *neu = &w.peers[1], *z = &w.peers[2];
    nk_hub_event ev;
    uint8_t buf[64];
    connect_at(&w, old, 0);
    connect_at(&w, z, 0);
    pump(&w);
    neu->id = old->id;
    connect_at(&w, neu, 1);
    pump(&w);
    expect(old, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    expect(old, NK_HUB_EV_CLOSED, &ev, buf, sizeof(buf));
    assert_int_equal(ev.code, NK_HUB_CLOSE_REPLACED);
    expect(neu, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    assert_false(nk_hub_server_has_peer(w.hub[0], &old->id.id));
    assert_int_equal(dir_find(&w, &neu->id.id)->hub, 1); /* A's release did not delete B's entry */
    assert_true(w.unregistered[0] >= 1);
    /* z at A reaches the peer at B now */
    assert_int_equal(nk_hub_client_send(z->c, w.now, NK_HUB_T_CONNECT, &neu->id.id, (const uint8_t *)"z", 1), 0);
    pump(&w);
    expect(neu, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_true(nk_peer_id_equal(&ev.peer, &z->id.id));
    nk_hub_stats_t a;
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.replaced, 1);
    assert_int_equal(nk_hub_server_drop_peer(w.hub[0], &old->id.id, NK_HUB_CLOSE_REPLACED), NK_ERR_NOT_FOUND);
    world_free(&w);
}

/* A peer that goes away is released: UNREGISTERED, even when its connection is freed at once. */
static void test_unregistered_event(void **state)
{
    cworld w;
    world_init(&w, 0);
    cpeer *x = &w.peers[0];
    connect_at(&w, x, 1);
    pump(&w);
    assert_int_equal(dir_find(&w, &x->id.id)->hub, 1);
    nk_hub_server_conn_closed(w.hub[1], x->conn); /* the transport died: no CLOSE event first */
    x->conn = 0;
    nk_hub_server_event ev;
    assert_int_equal(nk_hub_server_poll_event(w.hub[1], &ev), 0);
    assert_int_equal(ev.type, NK_HUB_SEV_UNREGISTERED);
    assert_null(ev.user);
    assert_true(nk_peer_id_equal(&ev.peer, &x->id.id));
    world_free(&w);
}

/* The driver takes what waits in h's forward queue again (Redis answered). */
static void release_forward(cworld *w, int h)
{
    nk_hub_forward fw;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    w->hold_forward[h] = 0;
    while (nk_hub_server_poll_forward(w->hub[h], w->now, &fw, buf, sizeof(buf)) == 0) {
        w->forwarded++;
        route(w, h, &fw);
    }
    pump(w);
}

/* Frames wait for the driver within forward_cap: RELAY dropped above half; any other frame that does not
 * fit pauses its sender, which goes on as the driver makes room. */
static void test_forward_queue_is_bounded(void **state)
{
    cworld w;
    world_init(&w, 4096);
    cpeer *x = &w.peers[0];
    nk_identity far;
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD], pkt[1000] = {0};
    assert_int_equal(nk_identity_generate(&far), 0);
    connect_at(&w, x, 0);
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    for (int i = 0; i < 4; i++)
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_RELAY, &far.id, pkt, sizeof(pkt)), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &far.id, pkt, sizeof(pkt)), 0);
    /* hand the client's bytes to A without letting anyone drain the forward queue */
    static uint8_t out[65536];
    int n = nk_hub_client_poll_transmit(x->c, w.now, out, sizeof(out));
    assert_true(n > 0);
    assert_int_equal(nk_hub_server_handle_bytes(w.hub[0], w.now, x->conn, out, (size_t)n), 0);
    nk_hub_stats_t a;
    nk_hub_server_stats(w.hub[0], &a);
    /* 1067 bytes a record: 1 relay fits under 2048, then signals up to 4096 (2 more); the third waits */
    assert_int_equal(a.cluster_forwarded, 3);
    assert_int_equal(a.cluster_dropped, 3);
    assert_int_equal(a.relay_dropped, 3);
    assert_int_equal(a.unknown_peer, 0); /* nothing answered for a frame that was not even tried */
    assert_int_equal(a.cluster_paused, 1);
    assert_int_equal(a.frames_in, 1 + 4 + 2); /* REGISTER, the relays, the signals taken */
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    nk_hub_forward fw;
    assert_int_equal(nk_hub_server_poll_forward(w.hub[0], w.now, &fw, buf, 10), NK_ERR_NOBUFS);
    assert_int_equal(nk_hub_server_poll_forward(w.hub[0], w.now, &fw, buf, sizeof(buf)), 0);
    assert_int_equal(fw.type, NK_HUB_T_RELAY);
    assert_true(nk_peer_id_equal(&fw.src, &x->id.id));
    assert_true(nk_peer_id_equal(&fw.dst, &far.id));
    assert_int_equal(fw.len, sizeof(pkt));
    /* room for one: the third signal goes in, the fourth waits */
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(nk_hub_server_poll_forward(w.hub[0], w.now, &fw, buf, sizeof(buf)), 0);
        assert_int_equal(fw.type, NK_HUB_T_SIGNAL);
    }
    assert_int_equal(nk_hub_server_poll_forward(w.hub[0], w.now, &fw, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_false(nk_hub_server_paused(w.hub[0], x->conn));
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.cluster_forwarded, 5);
    assert_int_equal(a.cluster_paused, 2);
    assert_int_equal(a.frames_in, 1 + 4 + 4);
    assert_int_equal(a.unknown_peer, 0);
    world_free(&w);
}

/*
 * The forward queue towards the other hub is full (Redis slow): a CONNECT for a peer that is online
 * at B is not answered UNKNOWN_PEER; its sender is paused (not read) and goes on once there is room,
 * and the CONNECT arrives, after the sender's earlier frames. A second sender that comes while the
 * first waits waits behind it, even when its own frame would fit.
 */
static void test_full_forward_queue_pauses_the_sender(void **state)
{
    cworld w;
    world_init(&w, 4096);
    cpeer *x = &w.peers[0], *y = &w.peers[1], *z = &w.peers[2];
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD], pkt[1000];
    connect_at(&w, x, 0);
    connect_at(&w, z, 0);
    connect_at(&w, y, 1);
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    expect(y, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    expect(z, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));

    w.hold_forward[0] = 1;
    for (int i = 0; i < 4; i++) {
        memset(pkt, 'a' + i, sizeof(pkt));
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    }
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_CONNECT, &y->id.id, (const uint8_t *)"hello", 5), 0);
    pump(&w);
    /* three signals fit (3 x 1067 of 4096), the fourth and the CONNECT wait: x is paused, told nothing */
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    assert_int_equal(w.pauses[0], 1);
    assert_int_equal(nk_hub_client_send(z->c, w.now, NK_HUB_T_CONNECT, &y->id.id, (const uint8_t *)"z", 1), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], z->conn)); /* it would fit, but x came first */
    assert_int_equal(next_event(z, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    nk_hub_stats_t a;
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.unknown_peer, 0);
    assert_int_equal(a.cluster_dropped, 0);
    assert_int_equal(a.cluster_paused, 2);
    assert_int_equal(a.cluster_forwarded, 3);
    assert_int_equal(next_event(y, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    /* x stays registered and is not closed for silence while it is not read */
    w.now += 3000;
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));

    release_forward(&w, 0);
    assert_false(nk_hub_server_paused(w.hub[0], x->conn));
    assert_false(nk_hub_server_paused(w.hub[0], z->conn));
    assert_int_equal(w.resumes[0], 2);
    for (int i = 0; i < 4; i++) {
        expect(y, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
        assert_int_equal(ev.msg_type, NK_HUB_T_SIGNAL);
        assert_true(nk_peer_id_equal(&ev.peer, &x->id.id));
        assert_int_equal(ev.len, sizeof(pkt));
        assert_int_equal(buf[0], 'a' + i); /* in order */
    }
    expect(y, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_true(nk_peer_id_equal(&ev.peer, &x->id.id));
    assert_int_equal(ev.len, 5);
    assert_memory_equal(buf, "hello", 5);
    expect(y, NK_HUB_EV_MESSAGE, &ev, buf, sizeof(buf));
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_true(nk_peer_id_equal(&ev.peer, &z->id.id));
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN); /* never told UNKNOWN_PEER */
    assert_int_equal(next_event(z, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.unknown_peer, 0);
    assert_int_equal(a.cluster_forwarded, 6);
    assert_int_equal(a.cluster_expired, 0);
    /* x goes on as usual: a PING is read and answered again */
    assert_int_equal(nk_hub_client_ping(x->c, w.now), 0);
    pump(&w);
    assert_int_equal(nk_hub_client_poll_event(x->c, &ev, buf, sizeof(buf)), 0);
    assert_int_equal(ev.type, NK_HUB_EV_PONG);
    world_free(&w);
}

/*
 * Nothing drains the forward queue (Redis stalled): a paused sender is not held for ever. After
 * forward_wait_ms its waiting frame is answered UNKNOWN_PEER and it goes on (its next cross-hub
 * frame too, at once, until the driver takes a frame again); the input held for it is bounded like
 * its send queue.
 */
static void test_paused_sender_is_answered_in_time(void **state)
{
    cworld w;
    world_init(&w, 4096);
    cpeer *x = &w.peers[0], *y = &w.peers[1];
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD], pkt[1000] = {0};
    connect_at(&w, x, 0);
    connect_at(&w, y, 1);
    pump(&w);
    expect(x, NK_HUB_EV_REGISTERED, &ev, buf, sizeof(buf));
    w.hold_forward[0] = 1;
    for (int i = 0; i < 4; i++)
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_CONNECT, &y->id.id, (const uint8_t *)"c", 1), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    int64_t t0 = w.now;
    w.now = t0 + 14000; /* forward_wait_ms (15 s) not reached */
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    pump(&w);
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    w.now = t0 + 15000;
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    pump(&w);
    expect(x, NK_HUB_EV_UNKNOWN_PEER, &ev, buf, sizeof(buf)); /* the fourth signal */
    assert_int_equal(ev.msg_type, NK_HUB_T_SIGNAL);
    assert_true(nk_peer_id_equal(&ev.peer, &y->id.id));
    expect(x, NK_HUB_EV_UNKNOWN_PEER, &ev, buf, sizeof(buf)); /* the CONNECT: stalled, answered at once */
    assert_int_equal(ev.msg_type, NK_HUB_T_CONNECT);
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_false(nk_hub_server_paused(w.hub[0], x->conn));
    assert_int_equal(w.resumes[0], 1);
    nk_hub_stats_t a;
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.cluster_expired, 2);
    assert_int_equal(a.unknown_peer, 2);
    assert_int_equal(a.cluster_forwarded, 3);

    /* the driver takes a frame: no longer stalled. Paused again (one signal fits, the next does not);
     * bytes the driver gives anyway are kept up to queue_cap (256 KiB), then it is closed */
    nk_hub_forward fw;
    assert_int_equal(nk_hub_server_poll_forward(w.hub[0], w.now, &fw, buf, sizeof(buf)), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    assert_int_equal(w.pauses[0], 2);
    static uint8_t more[64 * 1024];
    for (int i = 0; i < 3; i++)
        assert_int_equal(nk_hub_server_handle_bytes(w.hub[0], w.now, x->conn, more, sizeof(more)), 0);
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.overflow_closed, 0);
    assert_int_equal(nk_hub_server_handle_bytes(w.hub[0], w.now, x->conn, more, sizeof(more)), 0);
    pump(&w);
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.overflow_closed, 1);
    assert_int_equal(x->close_code, NK_HUB_CLOSE_OVERFLOW);
    assert_int_equal(x->conn, 0);
    world_free(&w);
}

/* Every event x's client has now, in order: how many of each type, and the UNKNOWN_PEER types in order. */
typedef struct evcount {
    int n[16];
    uint8_t unknown[16];
    int nunknown;
} evcount;

static void drain_events(cpeer *p, evcount *e)
{
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    memset(e, 0, sizeof(*e));
    while (nk_hub_client_poll_event(p->c, &ev, buf, sizeof(buf)) == 0) {
        assert_true(ev.type < 16);
        e->n[ev.type]++;
        if (ev.type == NK_HUB_EV_UNKNOWN_PEER && e->nunknown < 16)
            e->unknown[e->nunknown++] = ev.msg_type;
    }
}

/*
 * Redis hangs without disconnecting: once one waiting frame has expired, forwarding is stalled. Every
 * paused sender is answered at once for every cross-hub frame it holds (not one frame per
 * forward_wait_ms), so its local frames and PINGs behind them go through; new cross-hub frames are
 * answered at once while it lasts. When the driver takes from the queue again, senders pause as usual.
 */
static void test_stalled_forwarding_answers_everyone_at_once(void **state)
{
    cworld w;
    world_init(&w, 4096);
    cpeer *x = &w.peers[0], *y = &w.peers[1], *z = &w.peers[2], *v = &w.peers[3];
    nk_hub_event ev;
    evcount e;
    uint8_t buf[NK_HUB_MAX_PAYLOAD], pkt[1000] = {0};
    connect_at(&w, x, 0);
    connect_at(&w, z, 0);
    connect_at(&w, v, 0);
    connect_at(&w, y, 1);
    pump(&w);
    drain_events(x, &e);
    drain_events(z, &e);
    drain_events(v, &e);
    w.hold_forward[0] = 1;
    for (int i = 0; i < 4; i++) /* three fit, the fourth waits */
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_CONNECT, &y->id.id, (const uint8_t *)"c", 1), 0);
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &z->id.id, (const uint8_t *)"l", 1), 0);
    }
    assert_int_equal(nk_hub_client_ping(x->c, w.now), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    int64_t t0 = w.now;
    w.now = t0 + 5000; /* a second sender stops behind x */
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    assert_int_equal(nk_hub_client_send(v->c, w.now, NK_HUB_T_CANDIDATE, &y->id.id, (const uint8_t *)"v", 1), 0);
    assert_int_equal(nk_hub_client_send(v->c, w.now, NK_HUB_T_SIGNAL, &z->id.id, (const uint8_t *)"w", 1), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], v->conn));
    drain_events(z, &e);
    assert_int_equal(e.n[NK_HUB_EV_MESSAGE], 0); /* the local frames wait behind the cross-hub ones */

    w.now = t0 + 15000; /* x's frame has waited forward_wait_ms: the cluster is stalled */
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    pump(&w);
    assert_false(nk_hub_server_paused(w.hub[0], x->conn));
    assert_false(nk_hub_server_paused(w.hub[0], v->conn)); /* 10 s early: no use waiting behind x */
    drain_events(x, &e);
    assert_int_equal(e.nunknown, 6); /* the fourth signal and the five CONNECTs, at once */
    assert_int_equal(e.unknown[0], NK_HUB_T_SIGNAL);
    for (int i = 1; i < 6; i++)
        assert_int_equal(e.unknown[i], NK_HUB_T_CONNECT);
    assert_int_equal(e.n[NK_HUB_EV_PONG], 1); /* its PING was read and answered */
    drain_events(v, &e);
    assert_int_equal(e.nunknown, 1);
    assert_int_equal(e.unknown[0], NK_HUB_T_CANDIDATE);
    drain_events(z, &e);
    assert_int_equal(e.n[NK_HUB_EV_MESSAGE], 6); /* x's five and v's one */
    nk_hub_stats_t a;
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.cluster_expired, 7);
    assert_int_equal(a.cluster_paused, 2);
    assert_int_equal(a.cluster_forwarded, 3);

    /* still stalled: a new cross-hub frame is answered at once, its sender not held */
    assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_CONNECT, &y->id.id, (const uint8_t *)"c", 1), 0);
    pump(&w);
    assert_false(nk_hub_server_paused(w.hub[0], x->conn));
    expect(x, NK_HUB_EV_UNKNOWN_PEER, &ev, buf, sizeof(buf));
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.cluster_expired, 8);
    assert_int_equal(a.cluster_paused, 2);

    /* the driver takes from the queue again: forwarding goes on, and a full queue pauses as before */
    release_forward(&w, 0);
    drain_events(y, &e);
    assert_int_equal(e.n[NK_HUB_EV_MESSAGE], 3); /* the three queued before the stall */
    w.hold_forward[0] = 1;
    for (int i = 0; i < 4; i++)
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    assert_int_equal(next_event(x, &ev, buf, sizeof(buf)), NK_ERR_AGAIN);
    release_forward(&w, 0);
    assert_false(nk_hub_server_paused(w.hub[0], x->conn));
    drain_events(y, &e);
    assert_int_equal(e.n[NK_HUB_EV_MESSAGE], 4);
    nk_hub_server_stats(w.hub[0], &a);
    assert_int_equal(a.cluster_expired, 8);
    assert_int_equal(a.cluster_paused, 3);
    world_free(&w);
}

/*
 * A long Redis TTL (the service used it as forward_wait_ms) must not hold a paused peer longer than
 * its hub client waits for a byte (45 s): forward_wait_ms is capped at 15 s, so the peer hears
 * UNKNOWN_PEER, stays connected and its PINGs are answered.
 */
static void test_paused_peer_outlives_a_long_ttl(void **state)
{
    cworld w;
    world_init_wait(&w, 4096, 60000);
    cpeer *x = &w.peers[0], *y = &w.peers[1];
    evcount e;
    uint8_t pkt[1000] = {0};
    connect_at(&w, x, 0);
    connect_at(&w, y, 1);
    pump(&w);
    drain_events(x, &e);
    w.hold_forward[0] = 1;
    for (int i = 0; i < 4; i++)
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    int64_t t0 = w.now, heard = -1;
    for (w.now = t0 + 1000; w.now <= t0 + 90000; w.now += 1000) {
        nk_hub_client_handle_timeout(x->c, w.now);
        nk_hub_server_handle_timeout(w.hub[0], w.now);
        pump(&w);
        drain_events(x, &e);
        assert_int_equal(e.n[NK_HUB_EV_CLOSED], 0);
        if (e.nunknown > 0 && heard < 0)
            heard = w.now - t0;
    }
    assert_int_equal(heard, 15000);
    assert_int_equal(nk_hub_client_state(x->c), NK_HUB_CLIENT_REGISTERED);
    world_free(&w);
}

/*
 * A sender that stops again inside nk_hub_server_poll_forward waits forward_wait_ms from then, not from
 * the last time the core was told the time.
 */
static void test_wait_counts_from_the_pause(void **state)
{
    cworld w;
    world_init(&w, 4096);
    cpeer *x = &w.peers[0], *y = &w.peers[1];
    nk_hub_forward fw;
    evcount e;
    uint8_t buf[NK_HUB_MAX_PAYLOAD], pkt[1000] = {0};
    connect_at(&w, x, 0);
    connect_at(&w, y, 1);
    pump(&w);
    drain_events(x, &e);
    w.hold_forward[0] = 1;
    for (int i = 0; i < 5; i++) /* three fit; the fourth and the fifth wait */
        assert_int_equal(nk_hub_client_send(x->c, w.now, NK_HUB_T_SIGNAL, &y->id.id, pkt, sizeof(pkt)), 0);
    pump(&w);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    int64_t t0 = w.now;
    w.now = t0 + 10000; /* the driver takes one frame: the fourth goes in, the fifth waits from now */
    assert_int_equal(nk_hub_server_poll_forward(w.hub[0], w.now, &fw, buf, sizeof(buf)), 0);
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    w.now = t0 + 15000;
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    pump(&w);
    drain_events(x, &e);
    assert_int_equal(e.nunknown, 0); /* 5 s of 15 */
    assert_true(nk_hub_server_paused(w.hub[0], x->conn));
    w.now = t0 + 25000;
    nk_hub_server_handle_timeout(w.hub[0], w.now);
    pump(&w);
    drain_events(x, &e);
    assert_int_equal(e.nunknown, 1);
    world_free(&w);
}

/* A hub alone (cluster 0) answers UNKNOWN_PEER itself and never forwards. */
static void test_alone_never_forwards(void **state)
{
    nk_hub_server *s;
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    assert_int_equal(nk_hub_server_new(&s, &cfg), 0);
    nk_hub_forward fw;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    assert_int_equal(nk_hub_server_poll_forward(s, 0, &fw, buf, sizeof(buf)), NK_ERR_AGAIN);
    nk_hub_server_free(s);
}

static void test_cluster_msg_codec(void **state)
{
    uint8_t buf[NK_HUB_CLUSTER_MSG_MAX + 8], pay[NK_HUB_MAX_PAYLOAD];
    nk_hub_cluster_msg m, d;
    memset(&m, 0, sizeof(m));
    memset(pay, 0x5a, sizeof(pay));
    m.kind = NK_HUB_CM_FRAME;
    memset(m.origin, 1, sizeof(m.origin));
    m.type = NK_HUB_T_RELAY;
    memset(m.src.key, 2, NK_PEER_ID_SIZE);
    memset(m.dst.key, 3, NK_PEER_ID_SIZE);
    m.payload = pay;
    m.len = sizeof(pay);
    int n = nk_hub_cluster_msg_encode(buf, sizeof(buf), &m);
    assert_int_equal(n, NK_HUB_CLUSTER_MSG_MAX);
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d.kind, NK_HUB_CM_FRAME);
    assert_int_equal(d.type, NK_HUB_T_RELAY);
    assert_memory_equal(d.origin, m.origin, sizeof(m.origin));
    assert_true(nk_peer_id_equal(&d.src, &m.src) && nk_peer_id_equal(&d.dst, &m.dst));
    assert_int_equal(d.len, sizeof(pay));
    assert_memory_equal(d.payload, pay, sizeof(pay));
    /* every truncation fails */
    for (int cut = 0; cut < NK_HUB_CLUSTER_HEADER; cut++)
        assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)cut, &d), NK_ERR_MALFORMED);
    /* one byte over the largest payload */
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n + 1, &d), NK_ERR_MALFORMED);
    /* wrong version, unknown kind, a type that is not routed */
    buf[0] = 2;
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n, &d), NK_ERR_MALFORMED);
    buf[0] = NK_HUB_CLUSTER_VERSION;
    buf[1] = 9;
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n, &d), NK_ERR_MALFORMED);
    buf[1] = NK_HUB_CM_FRAME;
    buf[10] = NK_HUB_T_PING;
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n, &d), NK_ERR_MALFORMED);
    /* MOVED and UNKNOWN carry no payload */
    m.kind = NK_HUB_CM_MOVED;
    assert_int_equal(nk_hub_cluster_msg_encode(buf, sizeof(buf), &m), NK_ERR_INVAL);
    m.type = 0;
    m.len = 0;
    n = nk_hub_cluster_msg_encode(buf, sizeof(buf), &m);
    assert_int_equal(n, NK_HUB_CLUSTER_HEADER);
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d.kind, NK_HUB_CM_MOVED);
    assert_null(d.payload);
    buf[n] = 0;
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n + 1, &d), NK_ERR_MALFORMED);
    m.kind = NK_HUB_CM_UNKNOWN;
    m.type = NK_HUB_T_CONNECT;
    n = nk_hub_cluster_msg_encode(buf, sizeof(buf), &m);
    assert_int_equal(nk_hub_cluster_msg_decode(buf, (size_t)n, &d), 0);
    assert_int_equal(d.type, NK_HUB_T_CONNECT);
    assert_int_equal(nk_hub_cluster_msg_encode(buf, 10, &m), NK_ERR_NOBUFS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signalling_and_relay_across_hubs),
        cmocka_unit_test(test_local_peers_stay_local),
        cmocka_unit_test(test_registered_waits_for_the_directory),
        cmocka_unit_test(test_unknown_peer_across_the_cluster),
        cmocka_unit_test(test_newest_registration_wins_across_hubs),
        cmocka_unit_test(test_unregistered_event),
        cmocka_unit_test(test_forward_queue_is_bounded),
        cmocka_unit_test(test_full_forward_queue_pauses_the_sender),
        cmocka_unit_test(test_paused_sender_is_answered_in_time),
        cmocka_unit_test(test_stalled_forwarding_answers_everyone_at_once),
        cmocka_unit_test(test_paused_peer_outlives_a_long_ttl),
        cmocka_unit_test(test_wait_counts_from_the_pause),
        cmocka_unit_test(test_alone_never_forwards),
        cmocka_unit_test(test_cluster_msg_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
