/*
 * TURN server core, in memory with simulated time: the allocation life
 * cycle, the data paths, and the security properties (403 for every denied
 * range and mapped form, 401 for bad integrity, 438 for stale nonces,
 * 486/508 quotas, the size of what an unauthenticated sender gets back,
 * malformed input counted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "natkit/stun.h"
#include "natkit/turn_server.h"
#include "sim.h"

/* ---- a fake driver ---- */

typedef struct fake {
    int opened, closed, busy_ports, df_calls;
    nk_addr last_open, last_close, last_df;
    sim_rng rnd;
} fake;

static int f_open(void *ctx, const nk_addr *relay)
{
    fake *f = ctx;
    if (f->busy_ports > 0) {
        f->busy_ports--;
        return NK_ERR_ADDRESS;
    }
    f->opened++;
    f->last_open = *relay;
    return 0;
}

static void f_close(void *ctx, const nk_addr *relay)
{
    fake *f = ctx;
    f->closed++;
    f->last_close = *relay;
}

static int f_dont_fragment(void *ctx, const nk_addr *relay)
{
    fake *f = ctx;
    f->df_calls++;
    f->last_df = *relay;
    return 0;
}

static int driver_sets_df; /* world_new gives the core a relay_dont_fragment op */
static size_t (*ext_user_keys)(void *, const char *, const char *, int64_t, uint8_t (*)[16], size_t); /* ops.user_keys */

static void f_random(void *ctx, uint8_t *buf, size_t n)
{
    sim_random(&((fake *)ctx)->rnd, buf, n); /* ctx is the driver fake all ops share */
}

/* ---- the test world ---- */

typedef struct world {
    fake f;
    nk_turn_server *s;
    int64_t now;
    nk_addr local;
    uint8_t out[70000];
    nk_transmit tx;
    nk_stun_msg resp;
    int rc;
} world;

typedef struct client {
    nk_addr addr;
    uint8_t transport;
    const char *user, *pass;
    char nonce[128];
    uint8_t key[32];
    uint8_t tid[12];
    uint32_t tidn;
} client;

static nk_addr A(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static world *world_new(void (*tune)(nk_turn_server_config *c))
{
    static world w;
    memset(&w, 0, sizeof(w));
    nk_turn_server_config c;
    nk_turn_server_config_init(&c);
    c.realm = "example.org";
    c.relay_ip = A("192.0.2.1:0");
    c.relay_port_min = 50000;
    c.relay_port_max = 50099;
    if (tune != NULL)
        tune(&c);
    nk_turn_server_ops ops = {.relay_open = f_open, .relay_close = f_close, .random = f_random, .ctx = &w.f};
    if (driver_sets_df)
        ops.relay_dont_fragment = f_dont_fragment;
    ops.user_keys = ext_user_keys;
    ops.user_ctx = &w;
    sim_rng_seed(&w.f.rnd, 42);
    assert_int_equal(nk_turn_server_new(&w.s, &c, &ops), 0);
    assert_int_equal(nk_turn_server_add_user(w.s, "alice", "wonderland"), 0);
    assert_int_equal(nk_turn_server_add_user(w.s, "bob", "builder"), 0);
    nk_turn_server_set_unix_time(w.s, 0, 1700000000000LL);
    w.local = A("198.51.100.1:3478");
    return &w;
}

static void world_free(world *w)
{
    nk_turn_server_free(w->s);
}

static client mk_client(const char *addr, const char *user, const char *pass)
{
    client c;
    memset(&c, 0, sizeof(c));
    c.addr = A(addr);
    c.user = user;
    c.pass = pass;
    size_t kl;
    nk_stun_long_term_key(NK_STUN_PWALG_MD5, user, "example.org", pass, c.key, &kl);
    return c;
}

typedef void (*attrs_fn)(nk_stun_builder *b, const void *arg);

/* Builds a request into buf; returns its length. */
static size_t build_req(client *c, uint16_t method, uint16_t cls, attrs_fn fn, const void *arg, int auth,
                        uint8_t *buf, size_t cap)
{
    nk_stun_builder b;
    c->tidn++;
    memset(c->tid, 0, 12);
    memcpy(c->tid, &c->tidn, sizeof(c->tidn));
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(method, cls), c->tid);
    if (fn != NULL)
        fn(&b, arg);
    if (auth) {
        nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, c->user);
        nk_stun_build_string(&b, NK_STUN_ATTR_REALM, "example.org");
        nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, c->nonce);
        nk_stun_build_integrity(&b, c->key, 16);
    }
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    return (size_t)n;
}

/* Feeds bytes from a client; returns 0 for success, the error code, or -1 for no answer. */
static int feed(world *w, client *c, const uint8_t *p, size_t n)
{
    w->rc = nk_turn_server_handle_client(w->s, w->now, c->transport, &c->addr, &w->local, p, n, &w->tx, w->out,
                                         sizeof(w->out));
    if (w->rc != 1 || !nk_addr_equal(&w->tx.to, &c->addr))
        return -1; /* nothing, or relayed data toward a peer */
    if (nk_stun_decode(&w->resp, w->out, w->tx.len, 0) != 0)
        return -2;
    assert_true(nk_addr_equal(&w->tx.to, &c->addr));
    assert_true(nk_addr_equal(&w->tx.from, &w->local));
    if (nk_stun_class(w->resp.type) == NK_STUN_SUCCESS)
        return 0;
    int code;
    const char *reason;
    size_t rl;
    assert_int_equal(nk_stun_get_error(&w->resp, &code, &reason, &rl), 0);
    char nonce[128];
    if (nk_stun_get_string(&w->resp, NK_STUN_ATTR_NONCE, nonce, sizeof(nonce)) == 0)
        strcpy(c->nonce, nonce);
    return code;
}

static int request(world *w, client *c, uint16_t method, attrs_fn fn, const void *arg, int auth)
{
    uint8_t buf[2048];
    size_t n = build_req(c, method, NK_STUN_REQUEST, fn, arg, auth, buf, sizeof(buf));
    return feed(w, c, buf, n);
}

static void a_udp(nk_stun_builder *b, const void *arg)
{
    uint8_t v[4] = {NK_TURN_TRANSPORT_UDP, 0, 0, 0};
    nk_stun_build_attr(b, NK_STUN_ATTR_REQUESTED_TRANSPORT, v, 4);
}

static void a_peer(nk_stun_builder *b, const void *arg)
{
    nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, (const nk_addr *)arg);
}

typedef struct chan_arg {
    uint16_t number;
    nk_addr peer;
} chan_arg;

static void a_chan(nk_stun_builder *b, const void *arg)
{
    const chan_arg *ca = arg;
    nk_stun_build_u32(b, NK_STUN_ATTR_CHANNEL_NUMBER, (uint32_t)ca->number << 16);
    nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, &ca->peer);
}

static void a_lifetime(nk_stun_builder *b, const void *arg)
{
    nk_stun_build_u32(b, NK_STUN_ATTR_LIFETIME, *(const uint32_t *)arg);
}

/* 401 challenge, then an authenticated Allocate; returns the relayed address. */
static nk_addr allocate(world *w, client *c)
{
    assert_int_equal(request(w, c, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, c, NK_STUN_ALLOCATE, a_udp, NULL, 1), 0);
    assert_int_equal(nk_stun_check_integrity(&w->resp, c->key, 16), 0);
    nk_addr relay;
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay), 0);
    return relay;
}

/* ---- tests ---- */

static size_t challenge_len(void)
{
    return NK_STUN_HEADER_SIZE + 8 + ((strlen(nk_stun_reason(401)) + 3) & ~(size_t)3) + 4 + 12 + 4 + 32;
}

static void test_challenge_is_small(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    uint16_t methods[] = {NK_STUN_ALLOCATE, NK_STUN_REFRESH, NK_STUN_CREATE_PERMISSION, NK_STUN_CHANNEL_BIND, 0x00b};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        uint8_t buf[1024];
        nk_stun_builder b;
        /* a big unauthenticated request still gets only the 401 */
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(methods[i], NK_STUN_REQUEST), c.tid);
        char soft[600];
        memset(soft, 'x', sizeof(soft) - 1);
        soft[sizeof(soft) - 1] = 0;
        nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, soft);
        int n = nk_stun_build_end(&b);
        assert_int_equal(feed(w, &c, buf, (size_t)n), 401);
        /* header + ERROR-CODE 401 + REALM "example.org" + NONCE, whatever was sent */
        assert_int_equal(w->tx.len, challenge_len());
        assert_int_equal(w->resp.nattrs, 3); /* ERROR-CODE, REALM, NONCE */
        assert_non_null(nk_stun_get(&w->resp, NK_STUN_ATTR_REALM));
        assert_non_null(nk_stun_get(&w->resp, NK_STUN_ATTR_NONCE));
    }
    /* the smallest possible request: the answer is bounded the same way */
    uint8_t tiny[20];
    nk_stun_builder b;
    nk_stun_build_begin(&b, tiny, sizeof(tiny), nk_stun_type(NK_STUN_ALLOCATE, NK_STUN_REQUEST), c.tid);
    assert_int_equal(feed(w, &c, tiny, (size_t)nk_stun_build_end(&b)), 401);
    assert_int_equal(w->tx.len, challenge_len());
    assert_true(challenge_len() <= 100);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.unauthenticated, 6);
    assert_int_equal(st.allocations, 0);
    world_free(w);
}

static void test_allocate_and_retransmit(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    nk_addr relay = allocate(w, &c);
    assert_true(relay.port >= 50000 && relay.port <= 50099);
    assert_true(nk_addr_equal(&relay, &w->f.last_open));
    uint32_t lt;
    assert_int_equal(nk_stun_get_u32(&w->resp, NK_STUN_ATTR_LIFETIME, &lt), 0);
    assert_int_equal(lt, 600);
    nk_addr mapped;
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped), 0);
    assert_true(nk_addr_equal(&mapped, &c.addr));
    /* the same transaction again: same answer; a new one: 437 */
    uint8_t buf[512];
    c.tidn--;
    size_t n = build_req(&c, NK_STUN_ALLOCATE, NK_STUN_REQUEST, a_udp, NULL, 1, buf, sizeof(buf));
    assert_int_equal(feed(w, &c, buf, n), 0);
    assert_int_equal(w->f.opened, 1);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 1), 437);
    /* another user on the same allocation: 441 */
    client eve = mk_client("203.0.113.5:40000", "bob", "builder");
    strcpy(eve.nonce, c.nonce);
    nk_addr peer = A("198.51.100.7:9000");
    assert_int_equal(request(w, &eve, NK_STUN_CREATE_PERMISSION, a_peer, &peer, 1), 441);
    /* Allocate without REQUESTED-TRANSPORT: 400; Refresh without allocation: 437 */
    client c2 = mk_client("203.0.113.6:40000", "alice", "wonderland");
    strcpy(c2.nonce, c.nonce);
    assert_int_equal(request(w, &c2, NK_STUN_ALLOCATE, NULL, NULL, 1), 438); /* nonces are per client IP */
    assert_int_equal(request(w, &c2, NK_STUN_ALLOCATE, NULL, NULL, 1), 400);
    assert_int_equal(request(w, &c2, NK_STUN_REFRESH, NULL, NULL, 1), 437);
    /* Binding is answered without credentials */
    assert_int_equal(request(w, &c2, NK_STUN_BINDING, NULL, NULL, 0), 0);
    world_free(w);
}

static void test_bad_integrity(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "not-the-password");
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    assert_null(nk_stun_get(&w->resp, NK_STUN_ATTR_MESSAGE_INTEGRITY));
    client u = mk_client("203.0.113.5:40000", "mallory", "x");
    strcpy(u.nonce, c.nonce);
    assert_int_equal(request(w, &u, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    /* a right key but a flipped bit in the message */
    client ok = mk_client("203.0.113.5:40000", "alice", "wonderland");
    strcpy(ok.nonce, c.nonce);
    uint8_t buf[512];
    size_t n = build_req(&ok, NK_STUN_ALLOCATE, NK_STUN_REQUEST, a_udp, NULL, 1, buf, sizeof(buf));
    buf[24] ^= 1; /* inside REQUESTED-TRANSPORT */
    assert_int_equal(feed(w, &ok, buf, n), 401);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.auth_failed, 3);
    assert_int_equal(w->f.opened, 0);
    world_free(w);
}

static void test_stale_and_forged_nonce(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    w->now += 601 * 1000;
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 1), 438);
    assert_non_null(nk_stun_get(&w->resp, NK_STUN_ATTR_REALM));
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 1), 0); /* the fresh nonce works */
    /* a forged nonce and a nonce issued to another address are stale too */
    client d = mk_client("203.0.113.9:40000", "alice", "wonderland");
    strcpy(d.nonce, "00000000aaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(request(w, &d, NK_STUN_ALLOCATE, a_udp, NULL, 1), 438);
    strcpy(d.nonce, c.nonce);
    assert_int_equal(request(w, &d, NK_STUN_ALLOCATE, a_udp, NULL, 1), 438);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.stale_nonce, 3);
    world_free(w);
}

static void quota_tune(nk_turn_server_config *c)
{
    c->max_allocations = 3;
    c->max_allocations_per_user = 2;
}

static void test_quotas(void **state)
{
    world *w = world_new(quota_tune);
    char addr[64];
    for (int i = 0; i < 3; i++) {
        snprintf(addr, sizeof(addr), "203.0.113.5:%d", 40000 + i);
        client c = mk_client(addr, "alice", "wonderland");
        assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
        assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 1), i < 2 ? 0 : 486);
        assert_non_null(nk_stun_get(&w->resp, NK_STUN_ATTR_MESSAGE_INTEGRITY));
    }
    client b1 = mk_client("203.0.113.7:1", "bob", "builder");
    assert_int_equal(request(w, &b1, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &b1, NK_STUN_ALLOCATE, a_udp, NULL, 1), 0);
    client b2 = mk_client("203.0.113.7:2", "bob", "builder");
    assert_int_equal(request(w, &b2, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &b2, NK_STUN_ALLOCATE, a_udp, NULL, 1), 508);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.quota_user, 1);
    assert_int_equal(st.quota_total, 1);
    assert_int_equal(st.allocations, 3);
    /* freeing one makes room again */
    uint32_t zero = 0;
    assert_int_equal(request(w, &b1, NK_STUN_REFRESH, a_lifetime, &zero, 1), 0);
    assert_int_equal(request(w, &b2, NK_STUN_ALLOCATE, a_udp, NULL, 1), 0);
    world_free(w);
}

static const char *const denied_peers[] = {
    "127.0.0.1:9",           "127.255.255.254:9",    "0.0.0.0:9",          "0.1.2.3:9",
    "10.1.2.3:9",            "100.64.0.1:9",         "100.127.255.254:9",  "169.254.169.254:80",
    "169.254.1.1:9",         "172.16.5.4:9",         "172.31.255.255:9",   "192.168.1.1:9",
    "224.0.0.1:9",           "239.255.255.250:1900", "255.255.255.255:9",  "240.0.0.1:9",
    "[::]:9",                "[::1]:9",              "[fc00::1]:9",        "[fd12:3456::1]:9",
    "[fe80::1]:9",           "[febf::1]:9",          "[ff02::1]:9",        "[fec0::1]:9",
    /* IPv4-mapped, -compatible and -translated */
    "[::ffff:127.0.0.1]:9",  "[::ffff:10.0.0.1]:9",  "[::ffff:169.254.169.254]:9", "[::127.0.0.1]:9",
    "[::ffff:0:192.168.0.1]:9",
    /* NAT64 (well-known and local-use prefixes) */
    "[64:ff9b::7f00:1]:9",   "[64:ff9b::a9fe:a9fe]:9", "[64:ff9b::c0a8:101]:9", "[64:ff9b:1::a00:1]:9",
    "[64:ff9b:1:7f00:0:100:808:808]:9", /* 127.0.0.1 in a /48 local-use prefix; a /96 reading says 8.8.8.8 */
    /* 6to4 */
    "[2002:7f00:1::1]:9",    "[2002:c0a8:101::1]:9", "[2002:a9fe:a9fe::]:9",
    /* Teredo: client 127.0.0.1 obfuscated; server 10.0.0.1 */
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]:9", "[2001:0:a00:1:8000:63bf:3fff:fdd2]:9",
};

static void test_denied_peers_403(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    allocate(w, &c);
    for (size_t i = 0; i < sizeof(denied_peers) / sizeof(denied_peers[0]); i++) {
        nk_addr peer = A(denied_peers[i]);
        assert_false(nk_turn_server_peer_allowed(w->s, &peer));
        if (request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &peer, 1) != 403)
            fail_msg("CreatePermission to %s not refused with 403", denied_peers[i]);
        chan_arg ca = {0x4000, peer};
        if (request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &ca, 1) != 403)
            fail_msg("ChannelBind to %s not refused with 403", denied_peers[i]);
    }
    /* public addresses pass the policy (IPv6 ones then fail on family: 443) */
    nk_addr pub = A("8.8.8.8:53");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &pub, 1), 0);
    nk_addr pub6 = A("[2001:4860:4860::8888]:53");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &pub6, 1), 443);
    nk_addr teredo_pub = A("[2001:0:4136:e378:8000:63bf:f7f7:f7f7]:9"); /* client 8.8.8.8 */
    assert_true(nk_turn_server_peer_allowed(w->s, &teredo_pub));
    /* one denied peer among allowed ones: nothing installed */
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.peer_denied, 2 * (sizeof(denied_peers) / sizeof(denied_peers[0])));
    world_free(w);
}

static void a_two_peers(nk_stun_builder *b, const void *arg)
{
    const nk_addr *p = arg;
    nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, &p[0]);
    nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, &p[1]);
}

static void two_perms_tune(nk_turn_server_config *c)
{
    c->max_permissions = 2;
}

/* A CreatePermission that would pass the per-allocation limit installs none of its peers. */
static void test_permission_limit_all_or_nothing(void **state)
{
    world *w = world_new(two_perms_tune);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    allocate(w, &c);
    nk_addr p1 = A("198.51.100.1:9"), p2 = A("198.51.100.2:9"), p3 = A("198.51.100.3:9");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &p1, 1), 0);
    nk_addr p23[2] = {p2, p3};
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_two_peers, p23, 1), 508);
    /* p2 was not installed by the refused request: p3 still fits, and then the table is full */
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &p3, 1), 0);
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &p2, 1), 508);
    /* refreshing what is there needs no room; the same new peer twice needs one slot */
    nk_addr p13[2] = {p1, p3};
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_two_peers, p13, 1), 0);
    nk_addr p22[2] = {p2, p2};
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_two_peers, p22, 1), 508);
    world_free(w);
}

static void test_allow_and_deny_peer(void **state)
{
    world *w = world_new(NULL);
    assert_int_equal(nk_turn_server_allow_peer(w->s, "127.0.0.0/8"), 0);
    assert_int_equal(nk_turn_server_deny_peer(w->s, "8.8.8.0/24"), 0);
    assert_int_equal(nk_turn_server_allow_peer(w->s, "not-a-cidr"), NK_ERR_ADDRESS);
    assert_int_equal(nk_turn_server_allow_peer(w->s, "10.0.0.0/33"), NK_ERR_ADDRESS);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    allocate(w, &c);
    nk_addr lo = A("127.0.0.1:9");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &lo, 1), 0);
    nk_addr lo_mapped = A("[::ffff:127.0.0.1]:9");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &lo_mapped, 1), 443);
    nk_addr ten = A("10.0.0.1:9");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &ten, 1), 403);
    nk_addr g = A("8.8.8.8:53");
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &g, 1), 403);
    world_free(w);
}

static void test_channel_relay(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    nk_addr relay = allocate(w, &c);
    nk_addr peer = A("198.51.100.7:9000");
    chan_arg ca = {0x4001, peer};
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &ca, 1), 0);
    /* client -> peer */
    uint8_t cd[] = {0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
    assert_int_equal(feed(w, &c, cd, sizeof(cd)), -1);
    assert_int_equal(w->rc, 1);
    assert_int_equal(w->tx.len, 5);
    assert_memory_equal(w->out, "hello", 5);
    assert_true(nk_addr_equal(&w->tx.to, &peer));
    assert_true(nk_addr_equal(&w->tx.from, &relay));
    /* peer -> client as ChannelData */
    int rc = nk_turn_server_handle_relay(w->s, w->now, &relay, &peer, (const uint8_t *)"world!", 6, &w->tx, w->out,
                                         sizeof(w->out));
    assert_int_equal(rc, 1);
    assert_int_equal(w->tx.len, 10);
    assert_int_equal(w->out[0], 0x40);
    assert_int_equal(w->out[1], 0x01);
    assert_true(nk_addr_equal(&w->tx.to, &c.addr));
    assert_true(nk_addr_equal(&w->tx.from, &w->local));
    /* another peer (no permission) and an unbound channel: dropped */
    nk_addr other = A("198.51.100.8:9000");
    assert_true(nk_turn_server_handle_relay(w->s, w->now, &relay, &other, cd, 4, &w->tx, w->out, sizeof(w->out)) < 0);
    uint8_t cd2[] = {0x40, 0x02, 0x00, 0x00};
    assert_int_equal(feed(w, &c, cd2, sizeof(cd2)), -1);
    assert_true(w->rc < 0);
    /* the channel number bound to another peer, or the peer to another number: 400 */
    chan_arg clash = {0x4001, other};
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &clash, 1), 400);
    chan_arg clash2 = {0x4002, peer};
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &clash2, 1), 400);
    chan_arg bad = {0x3fff, peer};
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &bad, 1), 400);
    chan_arg bad2 = {0x8000, peer};
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &bad2, 1), 400);
    /* the permission lapses after 300 s unless refreshed; the channel lasts 600 s */
    w->now += 301 * 1000;
    assert_int_equal(feed(w, &c, cd, sizeof(cd)), -1);
    assert_true(w->rc < 0);
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &ca, 1), 0); /* refresh both */
    assert_int_equal(feed(w, &c, cd, sizeof(cd)), -1);
    assert_int_equal(w->rc, 1);
    world_free(w);
}

static void test_tcp_channel_data_is_padded(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    c.transport = NK_TRANSPORT_TCP;
    nk_addr relay = allocate(w, &c);
    assert_int_equal(w->tx.transport, NK_TRANSPORT_TCP);
    nk_addr peer = A("198.51.100.7:9000");
    chan_arg ca = {0x4000, peer};
    assert_int_equal(request(w, &c, NK_STUN_CHANNEL_BIND, a_chan, &ca, 1), 0);
    int rc = nk_turn_server_handle_relay(w->s, w->now, &relay, &peer, (const uint8_t *)"abcde", 5, &w->tx, w->out,
                                         sizeof(w->out));
    assert_int_equal(rc, 1);
    assert_int_equal(w->tx.len, 12);
    assert_int_equal(w->tx.transport, NK_TRANSPORT_TCP);
    /* an unpadded frame over TCP is incomplete: dropped as malformed */
    uint8_t cd[] = {0x40, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(feed(w, &c, cd, sizeof(cd)), -1);
    assert_true(w->rc < 0);
    /* the TCP connection closing ends the allocation */
    assert_true(nk_turn_server_has_allocation(w->s, NK_TRANSPORT_TCP, &c.addr, &w->local));
    assert_false(nk_turn_server_has_allocation(w->s, NK_TRANSPORT_UDP, &c.addr, &w->local));
    nk_turn_server_client_closed(w->s, w->now, NK_TRANSPORT_TCP, &c.addr, &w->local);
    assert_int_equal(w->f.closed, 1);
    assert_false(nk_turn_server_has_allocation(w->s, NK_TRANSPORT_TCP, &c.addr, &w->local));
    world_free(w);
}

static void a_send(nk_stun_builder *b, const void *arg)
{
    nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, (const nk_addr *)arg);
    nk_stun_build_attr(b, NK_STUN_ATTR_DATA, "ping", 4);
}

static void test_send_and_data_indications(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    nk_addr relay = allocate(w, &c);
    nk_addr peer = A("198.51.100.7:9000");
    uint8_t buf[256];
    size_t n = build_req(&c, NK_STUN_SEND, NK_STUN_INDICATION, a_send, &peer, 0, buf, sizeof(buf));
    assert_int_equal(feed(w, &c, buf, n), -1); /* no permission yet: dropped */
    assert_true(w->rc < 0);
    assert_int_equal(request(w, &c, NK_STUN_CREATE_PERMISSION, a_peer, &peer, 1), 0);
    assert_int_equal(feed(w, &c, buf, n), -1);
    assert_int_equal(w->rc, 1);
    assert_int_equal(w->tx.len, 4);
    assert_memory_equal(w->out, "ping", 4);
    assert_true(nk_addr_equal(&w->tx.from, &relay));
    int rc = nk_turn_server_handle_relay(w->s, w->now, &relay, &peer, (const uint8_t *)"pong", 4, &w->tx, w->out,
                                         sizeof(w->out));
    assert_int_equal(rc, 1);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, w->out, w->tx.len, 0), 0);
    assert_int_equal(m.type, nk_stun_type(NK_STUN_DATA, NK_STUN_INDICATION));
    nk_addr got;
    assert_int_equal(nk_stun_get_addr(&m, NK_STUN_ATTR_XOR_PEER_ADDRESS, &got), 0);
    assert_true(nk_addr_equal(&got, &peer));
    const nk_stun_attr *d = nk_stun_get(&m, NK_STUN_ATTR_DATA);
    assert_non_null(d);
    assert_int_equal(d->len, 4);
    assert_memory_equal(d->value, "pong", 4);
    world_free(w);
}

static void test_lifetimes_and_timers(void **state)
{
    world *w = world_new(NULL);
    assert_int_equal(nk_turn_server_next_deadline(w->s), INT64_MAX);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    nk_addr relay = allocate(w, &c);
    assert_int_equal(nk_turn_server_next_deadline(w->s), 600000);
    nk_turn_server_handle_timeout(w->s, 599999);
    assert_int_equal(w->f.closed, 0);
    /* Refresh: asked 1200 s, granted; asked 99999 s, capped at 3600 s; asked 10 s, the default */
    uint32_t lt = 1200;
    assert_int_equal(request(w, &c, NK_STUN_REFRESH, a_lifetime, &lt, 1), 0);
    assert_int_equal(nk_turn_server_next_deadline(w->s), 1200000);
    lt = 99999;
    assert_int_equal(request(w, &c, NK_STUN_REFRESH, a_lifetime, &lt, 1), 0);
    uint32_t got;
    assert_int_equal(nk_stun_get_u32(&w->resp, NK_STUN_ATTR_LIFETIME, &got), 0);
    assert_int_equal(got, 3600);
    lt = 10;
    assert_int_equal(request(w, &c, NK_STUN_REFRESH, a_lifetime, &lt, 1), 0);
    assert_int_equal(nk_stun_get_u32(&w->resp, NK_STUN_ATTR_LIFETIME, &got), 0);
    assert_int_equal(got, 600);
    /* a second allocation expiring earlier comes first in the deadline */
    w->now = 100000;
    client d = mk_client("203.0.113.6:40000", "bob", "builder");
    allocate(w, &d);
    assert_int_equal(nk_turn_server_next_deadline(w->s), 600000);
    w->now = 600000;
    nk_turn_server_handle_timeout(w->s, w->now);
    assert_int_equal(w->f.closed, 1);
    assert_int_equal(nk_turn_server_next_deadline(w->s), 700000);
    nk_turn_server_handle_timeout(w->s, 700000);
    assert_int_equal(w->f.closed, 2);
    assert_true(nk_addr_equal(&w->f.last_close, &relay) || w->f.closed == 2);
    assert_int_equal(nk_turn_server_next_deadline(w->s), INT64_MAX);
    world_free(w);
}

static void test_malformed_counted(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3};
    const uint8_t reserved_channel[] = {0x80, 0x00, 0x00, 0x00};
    const uint8_t short_channel[] = {0x40, 0x00, 0x00, 0x09, 1, 2};
    uint8_t truncated[64];
    size_t n = build_req(&c, NK_STUN_ALLOCATE, NK_STUN_REQUEST, a_udp, NULL, 0, truncated, sizeof(truncated));
    const struct { const uint8_t *p; size_t n; } cases[] = {
        {junk, sizeof(junk)}, {reserved_channel, 4}, {short_channel, sizeof(short_channel)}, {truncated, n - 3},
        {truncated, 0}, {truncated, 19},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(feed(w, &c, cases[i].p, cases[i].n), -1);
        assert_true(w->rc < 0);
    }
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.malformed, 6);
    /* a response or an unknown indication is ignored, not answered */
    n = build_req(&c, NK_STUN_ALLOCATE, NK_STUN_SUCCESS, a_udp, NULL, 0, truncated, sizeof(truncated));
    assert_int_equal(feed(w, &c, truncated, n), -1);
    world_free(w);
}

static void a_unknown(nk_stun_builder *b, const void *arg)
{
    a_udp(b, arg);
    nk_stun_build_u32(b, 0x7777, 1);
}

static void test_unknown_attribute_420(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_unknown, NULL, 0), 401);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_unknown, NULL, 1), 420);
    assert_non_null(nk_stun_get(&w->resp, NK_STUN_ATTR_UNKNOWN_ATTRIBUTES));
    world_free(w);
}

static void a_df(nk_stun_builder *b, const void *arg)
{
    a_udp(b, arg);
    nk_stun_build_attr(b, NK_STUN_ATTR_DONT_FRAGMENT, NULL, 0);
}

/* DONT-FRAGMENT: honoured through the driver, or refused with 420 when the driver cannot set DF. */
static void test_dont_fragment(void **state)
{
    driver_sets_df = 0;
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_df, NULL, 0), 401);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_df, NULL, 1), 420);
    const nk_stun_attr *u = nk_stun_get(&w->resp, NK_STUN_ATTR_UNKNOWN_ATTRIBUTES);
    assert_non_null(u);
    assert_int_equal(u->len, 2);
    assert_int_equal(u->value[0] << 8 | u->value[1], NK_STUN_ATTR_DONT_FRAGMENT);
    assert_int_equal(w->f.opened, 0);
    world_free(w);

    driver_sets_df = 1;
    w = world_new(NULL);
    c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_df, NULL, 0), 401);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_df, NULL, 1), 0);
    nk_addr relay;
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay), 0);
    assert_int_equal(w->f.df_calls, 1);
    assert_true(nk_addr_equal(&w->f.last_df, &relay));
    /* without the attribute the driver is not asked */
    client d = mk_client("203.0.113.6:40000", "bob", "builder");
    allocate(w, &d);
    assert_int_equal(w->f.df_calls, 1);
    world_free(w);
    driver_sets_df = 0;
}

static void a_family(nk_stun_builder *b, const void *arg)
{
    uint8_t fam[4] = {*(const uint8_t *)arg, 0, 0, 0};
    a_udp(b, NULL);
    nk_stun_build_attr(b, NK_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, fam, 4);
}

/* REQUESTED-ADDRESS-FAMILY: IPv4 on an IPv4 relay allocates, IPv6 gets 440, an unknown family 440. */
static void test_requested_address_family(void **state)
{
    world *w = world_new(NULL);
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    uint8_t v6 = 0x02, bogus = 0x07, v4 = 0x01;
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_family, &v6, 0), 401);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_family, &v6, 1), 440);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_family, &bogus, 1), 440);
    assert_int_equal(w->f.opened, 0);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_family, &v4, 1), 0);
    world_free(w);
}

static void rest_tune(nk_turn_server_config *c)
{
    c->auth_secret = "s3cret";
}

static void rest_user(char *user, size_t cap, char *pass, long long expiry, const char *name)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    snprintf(user, cap, "%lld:%s", expiry, name);
    HMAC(EVP_sha1(), "s3cret", 6, (const uint8_t *)user, strlen(user), mac, &len);
    EVP_EncodeBlock((unsigned char *)pass, mac, (int)len);
}

static void test_rest_credentials(void **state)
{
    world *w = world_new(rest_tune);
    char user[64], pass[64], old[64], oldpass[64];
    rest_user(user, sizeof(user), pass, 1700000000LL + 3600, "carol");
    rest_user(old, sizeof(old), oldpass, 1700000000LL - 1, "carol");
    client c = mk_client("203.0.113.5:40000", user, pass);
    allocate(w, &c);
    client e = mk_client("203.0.113.6:40000", old, oldpass);
    assert_int_equal(request(w, &e, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &e, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    client f = mk_client("203.0.113.7:40000", user, "wrong");
    strcpy(f.nonce, e.nonce);
    f.addr = e.addr;
    assert_int_equal(request(w, &f, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    /* expiries the client chose to overflow a multiplication: refused, the server lives on */
    const char *huge[] = {"99999999999999999999:x", "9223372036854775807:x", "9223372036854775:x"};
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        client h = mk_client("203.0.113.9:40000", huge[i], "whatever");
        strcpy(h.nonce, e.nonce);
        h.addr = e.addr;
        assert_int_equal(request(w, &h, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    }
    /* static accounts still work beside the secret */
    client a = mk_client("203.0.113.8:40000", "alice", "wonderland");
    allocate(w, &a);
    world_free(w);
}

/* ops.user_keys as a user database would answer: dora (a stale candidate first, then her key),
 * REST names under the secret "ext"; nobody else. Counts the calls and keeps the last unix_s. */
static int ext_calls, ext_deleted;
static int64_t ext_unix_s;
static size_t ext_keys(void *ctx, const char *realm, const char *user, int64_t unix_s, uint8_t (*keys)[16],
                       size_t max)
{
    size_t kl, n = 0;
    uint8_t k[32];
    ext_calls++;
    ext_unix_s = unix_s;
    assert_string_equal(realm, "example.org");
    assert_true(max >= 2);
    if (strcmp(user, "dora") == 0 && !ext_deleted) {
        memset(keys[n++], 0x5a, 16);
        nk_stun_long_term_key(NK_STUN_PWALG_MD5, "dora", realm, "explorer", k, &kl);
        memcpy(keys[n++], k, 16);
    } else if (nk_turn_rest_key("ext", 3, realm, user, unix_s, keys[n]) == 0)
        n++;
    return n;
}

static void test_external_user_keys(void **state)
{
    ext_user_keys = ext_keys;
    ext_calls = ext_deleted = 0;
    world *w = world_new(NULL);
    ext_user_keys = NULL;
    client d = mk_client("203.0.113.5:40000", "dora", "explorer");
    allocate(w, &d);
    assert_true(ext_calls > 0);
    assert_int_equal(ext_unix_s, 1700000000LL);
    /* the core's own accounts are asked first and need no call */
    int calls = ext_calls;
    client a = mk_client("203.0.113.8:40000", "alice", "wonderland");
    allocate(w, &a);
    assert_int_equal(ext_calls, calls);
    /* wrong password, unknown user: 401 */
    client x = mk_client("203.0.113.6:40000", "dora", "map");
    assert_int_equal(request(w, &x, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &x, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    client u = mk_client("203.0.113.6:40000", "nobody", "map");
    strcpy(u.nonce, x.nonce);
    assert_int_equal(request(w, &u, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
    /* REST names through the callback (nk_turn_rest_key); an expired one is refused */
    char user[64], pass[64];
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    for (int expired = 0; expired < 2; expired++) {
        snprintf(user, sizeof(user), "%lld:erin", 1700000000LL + (expired ? -1 : 60));
        HMAC(EVP_sha1(), "ext", 3, (const uint8_t *)user, strlen(user), mac, &len);
        EVP_EncodeBlock((unsigned char *)pass, mac, (int)len);
        client r = mk_client(expired ? "203.0.113.10:40000" : "203.0.113.9:40000", user, pass);
        if (!expired)
            allocate(w, &r);
        else {
            assert_int_equal(request(w, &r, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
            assert_int_equal(request(w, &r, NK_STUN_ALLOCATE, a_udp, NULL, 1), 401);
        }
    }
    /* deleted from the database: refused on its next request (a Refresh), not at expiry */
    ext_deleted = 1;
    assert_int_equal(request(w, &d, NK_STUN_REFRESH, NULL, NULL, 1), 401);
    world_free(w);
}

static void a_even(nk_stun_builder *b, const void *arg)
{
    uint8_t r = 0x80;
    a_udp(b, arg);
    nk_stun_build_attr(b, NK_STUN_ATTR_EVEN_PORT, &r, 1);
}

static void a_token(nk_stun_builder *b, const void *arg)
{
    a_udp(b, arg);
    nk_stun_build_attr(b, NK_STUN_ATTR_RESERVATION_TOKEN, arg, 8);
}

static void test_even_port_and_reservation(void **state)
{
    world *w = world_new(NULL);
    w->f.busy_ports = 3; /* the driver finds the first ports taken: the core tries others */
    client c = mk_client("203.0.113.5:40000", "alice", "wonderland");
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_even, NULL, 0), 401);
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_even, NULL, 1), 0);
    nk_addr relay;
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay), 0);
    assert_int_equal(relay.port % 2, 0);
    const nk_stun_attr *tok = nk_stun_get(&w->resp, NK_STUN_ATTR_RESERVATION_TOKEN);
    assert_non_null(tok);
    uint8_t token[8];
    memcpy(token, tok->value, 8);
    client d = mk_client("203.0.113.6:40000", "alice", "wonderland");
    strcpy(d.nonce, c.nonce);
    d.addr = A("203.0.113.5:40001");
    assert_int_equal(request(w, &d, NK_STUN_ALLOCATE, a_token, token, 1), 0);
    nk_addr relay2;
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay2), 0);
    assert_int_equal(relay2.port, relay.port + 1);
    /* a token is good once */
    client e = mk_client("203.0.113.5:40002", "alice", "wonderland");
    assert_int_equal(request(w, &e, NK_STUN_ALLOCATE, a_token, token, 0), 401);
    assert_int_equal(request(w, &e, NK_STUN_ALLOCATE, a_token, token, 1), 508);
    world_free(w);
}

static void test_many_allocations(void **state)
{
    world *w = world_new(NULL);
    char addr[64];
    client cs[100];
    for (int i = 0; i < 100; i++) {
        snprintf(addr, sizeof(addr), "203.0.113.%d:%d", 1 + i % 200, 1000 + i);
        cs[i] = mk_client(addr, i % 2 ? "alice" : "bob", i % 2 ? "wonderland" : "builder");
        allocate(w, &cs[i]);
    }
    /* the port range (100 ports) is full: 508 */
    client x = mk_client("203.0.113.250:1", "bob", "builder");
    assert_int_equal(request(w, &x, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &x, NK_STUN_ALLOCATE, a_udp, NULL, 1), 508);
    /* delete every other, in a scattered order, and check the heap still orders */
    for (int i = 0; i < 100; i += 2) {
        uint32_t zero = 0;
        assert_int_equal(request(w, &cs[(i * 37) % 100], NK_STUN_REFRESH, a_lifetime, &zero, 1) >= 0, 1);
    }
    nk_turn_server_handle_timeout(w->s, w->now + 600000);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.allocations, 0);
    assert_int_equal(w->f.closed, 100);
    world_free(w);
}

static nk_turn_shared *shared;

static void shared_tune(nk_turn_server_config *c)
{
    c->shared = shared;
}

static void test_shared_quota(void **state)
{
    assert_int_equal(nk_turn_shared_new(&shared, 3, 2), 0);
    world *w = world_new(shared_tune);
    /* a second server (another thread's) sharing the quota, answering through the same world */
    nk_turn_server *first = w->s, *second;
    nk_turn_server_config c;
    nk_turn_server_config_init(&c);
    c.realm = "example.org";
    c.relay_ip = A("192.0.2.2:0");
    c.shared = shared;
    nk_turn_server_ops ops = {.relay_open = f_open, .relay_close = f_close, .random = f_random, .ctx = &w->f};
    assert_int_equal(nk_turn_server_new(&second, &c, &ops), 0);
    assert_int_equal(nk_turn_server_add_user(second, "alice", "wonderland"), 0);
    assert_int_equal(nk_turn_server_add_user(second, "bob", "builder"), 0);
    client a1 = mk_client("203.0.113.5:1", "alice", "wonderland");
    client a2 = mk_client("203.0.113.5:2", "alice", "wonderland");
    client a3 = mk_client("203.0.113.5:3", "alice", "wonderland");
    client b1 = mk_client("203.0.113.6:1", "bob", "builder");
    client b2 = mk_client("203.0.113.6:2", "bob", "builder");
    allocate(w, &a1);
    w->s = second;
    allocate(w, &a2);
    assert_int_equal(request(w, &a3, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &a3, NK_STUN_ALLOCATE, a_udp, NULL, 1), 486); /* alice has 2, one per server */
    allocate(w, &b1);
    w->s = first;
    assert_int_equal(request(w, &b2, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &b2, NK_STUN_ALLOCATE, a_udp, NULL, 1), 508); /* 3 in all */
    uint32_t zero = 0;
    assert_int_equal(request(w, &a1, NK_STUN_REFRESH, a_lifetime, &zero, 1), 0);
    assert_int_equal(request(w, &b2, NK_STUN_ALLOCATE, a_udp, NULL, 1), 0); /* room again */
    nk_turn_server_free(second);
    world_free(w);
    nk_turn_shared_free(shared);
    shared = NULL;
}

static void test_shared_reservation(void **state)
{
    assert_int_equal(nk_turn_shared_new(&shared, 100, 0), 0);
    world *w = world_new(shared_tune);
    nk_turn_server *first = w->s, *second;
    nk_turn_server_config c;
    nk_turn_server_config_init(&c);
    c.realm = "example.org";
    c.relay_ip = A("192.0.2.1:0");
    c.relay_port_min = 50000;
    c.relay_port_max = 50099;
    c.shared = shared;
    nk_turn_server_ops ops = {.relay_open = f_open, .relay_close = f_close, .random = f_random, .ctx = &w->f};
    assert_int_equal(nk_turn_server_new(&second, &c, &ops), 0);
    assert_int_equal(nk_turn_server_add_user(second, "alice", "wonderland"), 0);
    /* the RTP allocation on one core reserves the next port; the RTCP one, on the other core, redeems it */
    client rtp = mk_client("203.0.113.5:40000", "alice", "wonderland");
    assert_int_equal(request(w, &rtp, NK_STUN_ALLOCATE, a_even, NULL, 0), 401);
    assert_int_equal(request(w, &rtp, NK_STUN_ALLOCATE, a_even, NULL, 1), 0);
    nk_addr relay, relay2;
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay), 0);
    const nk_stun_attr *tok = nk_stun_get(&w->resp, NK_STUN_ATTR_RESERVATION_TOKEN);
    assert_non_null(tok);
    uint8_t token[8];
    memcpy(token, tok->value, 8);
    w->s = second;
    client rtcp = mk_client("203.0.113.5:40001", "alice", "wonderland");
    assert_int_equal(request(w, &rtcp, NK_STUN_ALLOCATE, a_token, token, 0), 401);
    assert_int_equal(request(w, &rtcp, NK_STUN_ALLOCATE, a_token, token, 1), 0);
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &relay2), 0);
    assert_int_equal(relay2.port, relay.port + 1);
    nk_turn_server_free(second);
    w->s = first;
    world_free(w);
    nk_turn_shared_free(shared);
    shared = NULL;
}

/* ---- answers without credentials, per source (unauth_rate) ---- */

static void tune_rate(nk_turn_server_config *c)
{
    c->unauth_rate = 10;
    c->unauth_burst = 5;
}

/*
 * Over UDP, a source gets at most burst answers at once and rate per second after that,
 * whatever it asks without credentials (Allocate: 401; Binding); the rest is dropped
 * unanswered and counted. Another source is not affected, nor are authenticated requests,
 * nor TCP.
 */
static void test_unauth_rate_limit(void **state)
{
    (void)state;
    world *w = world_new(tune_rate);
    w->now = 1000;
    client a = mk_client("203.0.113.5:4000", "alice", "wonderland");
    client a2 = mk_client("203.0.113.5:4001", "alice", "wonderland"); /* same source, another port */
    client b = mk_client("203.0.113.6:4000", "bob", "builder");
    for (int i = 0; i < 5; i++)
        assert_int_equal(request(w, i % 2 ? &a2 : &a, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    assert_int_equal(request(w, &a, NK_STUN_ALLOCATE, a_udp, NULL, 0), -1);
    assert_true(w->rc < 0);
    assert_int_equal(request(w, &a2, NK_STUN_BINDING, NULL, NULL, 0), -1);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.rate_limited, 2);
    /* another source has its own bucket */
    assert_int_equal(request(w, &b, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    /* an authenticated request is never limited (a nonce from the first answers) */
    assert_int_equal(request(w, &a, NK_STUN_ALLOCATE, a_udp, NULL, 1), 0);
    /* 10 per second: one more answer after 100 ms */
    w->now += 99;
    assert_int_equal(request(w, &a2, NK_STUN_BINDING, NULL, NULL, 0), -1);
    w->now += 1;
    assert_int_equal(request(w, &a2, NK_STUN_BINDING, NULL, NULL, 0), 0);
    /* TCP is not limited (its source address is proven by the handshake) */
    client t = mk_client("203.0.113.5:5000", "alice", "wonderland");
    t.transport = NK_TRANSPORT_TCP;
    for (int i = 0; i < 20; i++)
        assert_int_equal(request(w, &t, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.rate_limited, 3);
    world_free(w);
}

/* MESSAGE-INTEGRITY without USERNAME, REALM or NONCE: a bare 400. */
static void a_integrity_only(nk_stun_builder *b, const void *arg)
{
    nk_stun_build_integrity(b, ((const client *)arg)->key, 16);
}

/* Sends each of the four unauthenticated answers: 401 challenge, 401 bad key, 438, 400. */
static void four_unauth(world *w, client *c, client *bad, int want401, int want438, int want400)
{
    assert_int_equal(request(w, c, NK_STUN_ALLOCATE, a_udp, NULL, 0), want401);
    assert_int_equal(request(w, bad, NK_STUN_ALLOCATE, a_udp, NULL, 1), want401);
    strcpy(c->nonce, "00000000000000000000000000000000");
    assert_int_equal(request(w, c, NK_STUN_ALLOCATE, a_udp, NULL, 1), want438);
    assert_int_equal(request(w, c, NK_STUN_ALLOCATE, a_integrity_only, c, 0), want400);
}

/*
 * An unauthenticated answer is counted (its counter, and the Allocate's error code) only when it
 * goes out; one the rate limit keeps back is counted in rate_limited alone.
 */
static void test_unauth_counted_when_sent(void **state)
{
    (void)state;
    world *w = world_new(tune_rate); /* burst 5 */
    w->now = 1000;
    client c = mk_client("203.0.113.5:4000", "alice", "wonderland");
    client bad = mk_client("203.0.113.5:4001", "alice", "not the password");
    assert_int_equal(request(w, &bad, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401); /* bad's nonce */
    four_unauth(w, &c, &bad, 401, 438, 400);
    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.unauthenticated, 2);
    assert_int_equal(st.auth_failed, 2);
    assert_int_equal(st.stale_nonce, 1);
    assert_int_equal(st.allocate_errors[0], 1); /* 400 */
    assert_int_equal(st.allocate_errors[1], 3); /* 401 */
    assert_int_equal(st.allocate_errors[5], 1); /* 438 */
    assert_int_equal(st.rate_limited, 0);
    four_unauth(w, &c, &bad, -1, -1, -1); /* the bucket is empty: nothing goes out */
    nk_turn_server_stats_t after;
    nk_turn_server_stats(w->s, &after);
    assert_int_equal(after.rate_limited, 4);
    assert_int_equal(after.unauthenticated, 2);
    assert_int_equal(after.auth_failed, 2);
    assert_int_equal(after.stale_nonce, 1);
    assert_int_equal(after.allocate_errors[1], 3);
    after.rate_limited = st.rate_limited;
    after.requests = st.requests;
    assert_memory_equal(&after, &st, sizeof(st)); /* nothing else moved */
    world_free(w);
}

static void tune_no_rate(nk_turn_server_config *c)
{
    c->unauth_rate = 0;
}

static void test_unauth_rate_off(void **state)
{
    (void)state;
    world *w = world_new(tune_no_rate);
    client a = mk_client("203.0.113.5:4000", "alice", "wonderland");
    for (int i = 0; i < 3000; i++)
        assert_int_equal(request(w, &a, NK_STUN_ALLOCATE, a_udp, NULL, 0), 401);
    world_free(w);
}

/* ---- 300 Try Alternate ---- */

static nk_addr alt_list[3], tls_alt_list[1];

static void alternates_tune(nk_turn_server_config *c)
{
    alt_list[0] = A("192.0.2.10:3478");
    alt_list[1] = A("[2001:db8::10]:3478");
    alt_list[2] = A("192.0.2.11:3478");
    tls_alt_list[0] = A("192.0.2.12:5349");
    c->alternates = alt_list;
    c->n_alternates = 3;
    c->tls_alternates = tls_alt_list;
    c->n_tls_alternates = 1;
    c->alternate_domain = "turn2.example.org";
    c->unauth_rate = 2;
    c->unauth_burst = 3;
}

/* Every Allocate without credentials check: 300, round-robin over the client's family, small, no
 * MESSAGE-INTEGRITY; TLS gets its own list and the ALTERNATE-DOMAIN; other methods are not redirected;
 * over UDP the 300s count against the unauthenticated answer rate. */
static void test_try_alternate(void **state)
{
    world *w = world_new(alternates_tune);
    client c = mk_client("203.0.113.5:4000", "alice", "wonderland");
    nk_addr got;
    char domain[64];
    const char *want[3] = {"192.0.2.10:3478", "192.0.2.11:3478", "192.0.2.10:3478"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 0), 300);
        assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_ALTERNATE_SERVER, &got), 0);
        nk_addr expect = A(want[i]);
        assert_true(nk_addr_equal(&got, &expect));
        assert_int_equal(w->resp.integrity, -1);
        assert_null(nk_stun_get(&w->resp, NK_STUN_ATTR_ALTERNATE_DOMAIN)); /* not over UDP */
        assert_true(w->tx.len <= 56); /* smaller than the 401 challenge */
    }
    /* the fourth unauthenticated answer within the same millisecond is over the burst of 3 */
    assert_int_equal(request(w, &c, NK_STUN_ALLOCATE, a_udp, NULL, 0), -1);
    assert_int_equal(w->rc, NK_ERR_LIMIT);
    w->now += 10000;
    /* Refresh is not redirected: it needs credentials (and an allocation) */
    assert_int_equal(request(w, &c, NK_STUN_REFRESH, NULL, NULL, 0), 401);

    client v6 = mk_client("[2001:db8::5]:4000", "alice", "wonderland");
    assert_int_equal(request(w, &v6, NK_STUN_ALLOCATE, a_udp, NULL, 0), 300);
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_ALTERNATE_SERVER, &got), 0);
    nk_addr expect6 = A("[2001:db8::10]:3478");
    assert_true(nk_addr_equal(&got, &expect6));

    client t = mk_client("203.0.113.6:4000", "alice", "wonderland");
    t.transport = NK_TRANSPORT_TLS;
    assert_int_equal(request(w, &t, NK_STUN_ALLOCATE, a_udp, NULL, 0), 300);
    assert_int_equal(nk_stun_get_addr(&w->resp, NK_STUN_ATTR_ALTERNATE_SERVER, &got), 0);
    assert_true(nk_addr_equal(&got, &tls_alt_list[0]));
    assert_int_equal(nk_stun_get_string(&w->resp, NK_STUN_ATTR_ALTERNATE_DOMAIN, domain, sizeof(domain)), 0);
    assert_string_equal(domain, "turn2.example.org");

    nk_turn_server_stats_t st;
    nk_turn_server_stats(w->s, &st);
    assert_int_equal(st.redirected, 5);
    assert_int_equal(st.allocations, 0);
    assert_int_equal(st.rate_limited, 1);
    for (int i = 0; i <= NK_TURN_STATS_NCODES; i++) /* a 300 is no Allocate error (the 401 was a Refresh's) */
        assert_int_equal(st.allocate_errors[i], 0);
    world_free(w);
}

/* A server reached on an address its list holds serves (no loop); IPv4 clients with only IPv6
 * alternates are served too. */
static nk_addr self_list[2];
static void self_tune(nk_turn_server_config *c)
{
    self_list[0] = A("198.51.100.1:3478"); /* w->local */
    self_list[1] = A("192.0.2.10:3478");
    c->alternates = self_list;
    c->n_alternates = 2;
}

static void v6_only_tune(nk_turn_server_config *c)
{
    self_list[0] = A("[2001:db8::10]:3478");
    c->alternates = self_list;
    c->n_alternates = 1;
}

static void test_try_alternate_serves_itself(void **state)
{
    world *w = world_new(self_tune);
    client c = mk_client("203.0.113.5:4000", "alice", "wonderland");
    allocate(w, &c);
    world_free(w);
    w = world_new(v6_only_tune);
    c = mk_client("203.0.113.5:4000", "alice", "wonderland");
    allocate(w, &c);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_try_alternate),
        cmocka_unit_test(test_try_alternate_serves_itself),
        cmocka_unit_test(test_challenge_is_small),
        cmocka_unit_test(test_allocate_and_retransmit),
        cmocka_unit_test(test_bad_integrity),
        cmocka_unit_test(test_stale_and_forged_nonce),
        cmocka_unit_test(test_quotas),
        cmocka_unit_test(test_denied_peers_403),
        cmocka_unit_test(test_allow_and_deny_peer),
        cmocka_unit_test(test_permission_limit_all_or_nothing),
        cmocka_unit_test(test_dont_fragment),
        cmocka_unit_test(test_requested_address_family),
        cmocka_unit_test(test_channel_relay),
        cmocka_unit_test(test_tcp_channel_data_is_padded),
        cmocka_unit_test(test_send_and_data_indications),
        cmocka_unit_test(test_lifetimes_and_timers),
        cmocka_unit_test(test_malformed_counted),
        cmocka_unit_test(test_unknown_attribute_420),
        cmocka_unit_test(test_rest_credentials),
        cmocka_unit_test(test_external_user_keys),
        cmocka_unit_test(test_even_port_and_reservation),
        cmocka_unit_test(test_many_allocations),
        cmocka_unit_test(test_shared_quota),
        cmocka_unit_test(test_shared_reservation),
        cmocka_unit_test(test_unauth_rate_limit),
        cmocka_unit_test(test_unauth_rate_off),
        cmocka_unit_test(test_unauth_counted_when_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
