/*
 * bench/traversal_sim: the share of peer pairs natkit connects directly, at internet scale, by
 * simulation (issue 14 item 5). Draws pairs of NAT behaviours from a distribution anchored on
 * published measurements (docs/internals/traversal.md says which and what is assumed), runs the
 * real agent core (include/natkit/agent.h) for both peers against the shared NAT model of
 * tests/sim (its clock, packet queue and NAT), with two STUN servers, a TURN server and a hub
 * that forwards signals, and prints the direct share next to the published figures of Tailscale
 * and libp2p. Simulated time: 10,000 pairs take seconds, and no root or network is needed.
 *
 *   traversal_sim [-n PAIRS] [--seed N]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "natkit/agent.h"
#include "natkit/hub.h"
#include "natkit/stun_server.h"
#include "natkit/turn_server.h"
#include "sim.h"

#define INET_MS  20   /* one way between any two internet hosts: 40 ms RTT */
#define HUB_MS   40   /* peer -> hub -> peer */
#define RUN_MS   8000 /* a pair's simulated time (the birthday attempt ends by ~5 s) */
#define PKT_MAX  1700
#define MAXEXTRA 256

typedef enum { T_PUBLIC, T_FULL, T_RESTRICTED, T_PORT, T_SYM_RANDOM, T_SYM_SEQ, T_BLOCKED, T_COUNT } nat_t;

static const char *const names[T_COUNT] = {"public", "full-cone", "restricted", "port-restr", "sym-random",
                                           "sym-seq", "udp-blocked"};

/* Shares (percent) of peers behind each behaviour: docs/internals/traversal.md. */
static const double share[T_COUNT] = {8, 12, 12, 32, 20, 10, 6};

typedef struct host {
    nat_t type;
    sim_nat nat;
    nk_addr addr;
    nk_identity id;
    nk_agent *ag;
    sim_rng rnd;
    size_t nextra;
    nk_addr extra[MAXEXTRA];
    uint8_t closed[MAXEXTRA];
} host;

typedef enum { ST_INTERNET, ST_HOST, ST_HUB } stage;

typedef struct world {
    sim_clock clock;
    sim_rng rng;
    sim_queue net;
    host h[2];
    nk_stun_server *stun[2];
    nk_addr stun_addr[2];
    nk_turn_server *turn;
    nk_addr turn_addr;
    sim_rng srv_rnd;
    uint8_t out[65536 + 64];
} world;

static void server_random(void *ctx, uint8_t *buf, size_t n)
{
    sim_random(&((world *)ctx)->srv_rnd, buf, n);
}

static int relay_open(void *ctx, const nk_addr *relay)
{
    (void)ctx;
    (void)relay;
    return 0;
}

static void relay_close(void *ctx, const nk_addr *relay)
{
    (void)ctx;
    (void)relay;
}

static void put(world *w, int64_t at, stage where, int dst, int aux, const nk_addr *from, const nk_addr *to,
                const uint8_t *d, size_t len)
{
    sim_pkt k = {.tag = where, .dst = dst, .aux = aux, .data = d, .len = len};
    if (from != NULL)
        k.from = *from;
    if (to != NULL)
        k.to = *to;
    sim_queue_put(&w->net, at, &k);
}

static int owns(const host *h, const nk_addr *a)
{
    if (nk_addr_equal(&h->addr, a))
        return 1;
    for (size_t i = 0; i < h->nextra; i++)
        if (!h->closed[i] && nk_addr_equal(&h->extra[i], a))
            return 1;
    return 0;
}

static void host_send(world *w, int hi, const nk_transmit *tx, const uint8_t *d)
{
    host *h = &w->h[hi];
    const nk_addr *src = tx->from.family != NK_AF_NONE ? &tx->from : &h->addr;
    if (!owns(h, src) || tx->to.ip[0] == 10)
        return;
    if (h->type == T_PUBLIC) {
        put(w, w->clock.now + INET_MS, ST_INTERNET, -1, 0, src, &tx->to, d, tx->len);
        return;
    }
    nk_addr s, dst;
    if (sim_nat_send(&h->nat, w->clock.now, src, &tx->to, &s, &dst) == SIM_NAT_OUT)
        put(w, w->clock.now + INET_MS, ST_INTERNET, -1, 0, &s, &dst, d, tx->len);
}

static void to_host(world *w, const sim_pkt *k)
{
    for (int i = 0; i < 2; i++) {
        host *h = &w->h[i];
        nk_addr internal;
        if (h->type == T_PUBLIC) {
            if (nk_addr_equal(&h->addr, &k->to))
                put(w, w->clock.now, ST_HOST, i, 0, &k->from, &k->to, k->data, k->len);
            continue;
        }
        if (!nk_addr_equal_ip(&h->nat.pub, &k->to))
            continue;
        if (sim_nat_receive(&h->nat, w->clock.now, &k->from, &k->to, &internal) && owns(h, &internal))
            put(w, w->clock.now, ST_HOST, i, 0, &k->from, &internal, k->data, k->len);
        return;
    }
}

static void internet(world *w, const sim_pkt *k)
{
    nk_transmit tx;
    for (int i = 0; i < 2; i++)
        if (nk_addr_equal(&k->to, &w->stun_addr[i])) {
            if (nk_stun_server_handle(w->stun[i], NULL, &k->to, &k->from, NK_TRANSPORT_UDP, k->data, k->len, &tx,
                                      w->out, sizeof(w->out)) == 0)
                put(w, w->clock.now + INET_MS, ST_INTERNET, -1, 0, &k->to, &tx.to, w->out, tx.len);
            return;
        }
    if (nk_addr_equal_ip(&k->to, &w->turn_addr)) {
        int rc = k->to.port == w->turn_addr.port
                     ? nk_turn_server_handle_client(w->turn, w->clock.now, NK_TRANSPORT_UDP, &k->from, &k->to, k->data,
                                                    k->len, &tx, w->out, sizeof(w->out))
                     : nk_turn_server_handle_relay(w->turn, w->clock.now, &k->to, &k->from, k->data, k->len, &tx,
                                                   w->out, sizeof(w->out));
        if (rc == 1)
            put(w, w->clock.now + INET_MS, ST_INTERNET, -1, 0, tx.from.family != NK_AF_NONE ? &tx.from : &k->to,
                &tx.to, w->out, tx.len);
        return;
    }
    to_host(w, k);
}

/* The driver's part of birthday probing: the extra sockets, opened and closed. */
static void on_event(world *w, int hi, const nk_agent_event *ev)
{
    host *h = &w->h[hi];
    if (ev->type == NK_AGENT_EV_OPEN_SOCKETS) {
        size_t n = ev->nsockets < MAXEXTRA ? ev->nsockets : MAXEXTRA;
        for (size_t i = 0; i < n; i++) {
            h->extra[i] = h->addr;
            h->extra[i].port = (uint16_t)(20000 + i);
        }
        h->nextra = n;
        nk_agent_add_sockets(h->ag, w->clock.now, h->extra, n);
    } else if (ev->type == NK_AGENT_EV_CLOSE_SOCKETS) {
        for (size_t i = 0; i < h->nextra; i++)
            if (!nk_addr_equal(&h->extra[i], &ev->keep))
                h->closed[i] = 1;
    }
}

static void pump(world *w, int hi)
{
    uint8_t buf[PKT_MAX];
    nk_transmit tx;
    nk_agent_event ev;
    uint8_t type;
    size_t len;
    nk_agent *ag = w->h[hi].ag;
    for (int moved = 1, guard = 0; moved && guard < 100000; guard++) {
        moved = 0;
        if (nk_agent_poll_event(ag, &ev) == 0) {
            on_event(w, hi, &ev);
            moved = 1;
        }
        if (nk_agent_poll_transmit(ag, w->clock.now, &tx, buf, sizeof(buf)) == 0) {
            host_send(w, hi, &tx, buf);
            moved = 1;
        }
        if (nk_agent_poll_signal(ag, &type, buf, sizeof(buf), &len) == 0) {
            put(w, w->clock.now + HUB_MS, ST_HUB, 1 - hi, type, NULL, NULL, buf, len);
            moved = 1;
        }
    }
}

static void start(world *w, int hi, int controlling)
{
    host *h = &w->h[hi];
    nk_turn_client_config tc = {.server = w->turn_addr, .transport = NK_TRANSPORT_UDP, .username = "u",
                                .password = "p"};
    nk_agent_config cfg = {.identity = &h->id, .peer = w->h[1 - hi].id.id, .controlling = controlling,
                           .host = &h->addr, .nhost = 1, .stun = w->stun_addr, .nstun = 2, .turn = &tc,
                           .random = sim_random, .random_ctx = &h->rnd};
    if (nk_agent_new(&h->ag, &cfg, w->clock.now) != 0)
        abort();
    nk_agent_set_hub_rtt(h->ag, HUB_MS);
    nk_agent_start(h->ag, w->clock.now);
    pump(w, hi);
}

static void deliver(world *w, const sim_pkt *k)
{
    host *h = k->dst >= 0 ? &w->h[k->dst] : NULL;
    switch ((stage)k->tag) {
    case ST_INTERNET: internet(w, k); return;
    case ST_HOST:
        if (h->ag != NULL)
            nk_agent_handle_datagram_on(h->ag, w->clock.now, &k->to, &k->from, k->data, k->len);
        break;
    case ST_HUB:
        if (h->ag == NULL)
            start(w, k->dst, 0);
        nk_agent_handle_signal(h->ag, w->clock.now, (uint8_t)k->aux, k->data, k->len);
        break;
    }
    pump(w, k->dst);
}

static nk_path_kind kind(const world *w, int i)
{
    nk_path_info p;
    nk_agent_selected(w->h[i].ag, &p);
    return p.kind;
}

static void site(world *w, int i, nat_t t)
{
    host *h = &w->h[i];
    char text[64];
    nk_addr pub;
    snprintf(text, sizeof(text), "203.0.113.%d:0", i + 1);
    nk_addr_parse(&pub, text);
    h->type = t;
    sim_nat_init(&h->nat, &pub, &w->rng);
    switch (t) {
    case T_RESTRICTED: h->nat.filtering = NK_NAT_ADDRESS_DEPENDENT; break;
    case T_PORT: h->nat.filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT; break;
    case T_SYM_RANDOM:
    case T_SYM_SEQ:
        h->nat.mapping = h->nat.filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
        h->nat.ports = t == T_SYM_SEQ ? NK_PORTS_SEQUENTIAL : NK_PORTS_RANDOM;
        h->nat.next_port = (uint16_t)(20000 + sim_rng_below(&w->rng, 30000));
        break;
    case T_BLOCKED: h->nat.blocked = 1; break;
    default: break;
    }
    snprintf(text, sizeof(text), t == T_PUBLIC ? "203.0.113.%d:5000" : "10.0.%d.2:5000", t == T_PUBLIC ? 11 + i : i + 1);
    nk_addr_parse(&h->addr, text);
}

typedef struct outcome {
    nk_path_kind path;   /* both sides' path (NONE when they disagree) */
    int64_t direct_ms;   /* when the initiator went direct (-1) */
    uint64_t probes;     /* birthday probes and openers, both sides */
} outcome;

static void run_pair(uint64_t seed, nat_t a, nat_t b, const nk_identity ids[2], outcome *o)
{
    world *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    sim_clock_init(&w->clock, 1000);
    sim_rng_seed(&w->rng, seed);
    sim_rng_seed(&w->srv_rnd, seed ^ 0x5eed);
    sim_queue_init(&w->net, &w->rng);
    nk_addr_parse(&w->stun_addr[0], "198.51.100.1:3478");
    nk_addr_parse(&w->stun_addr[1], "198.51.100.3:3478");
    nk_addr_parse(&w->turn_addr, "198.51.100.2:3478");
    for (int i = 0; i < 2; i++)
        nk_stun_server_new(&w->stun[i], &w->stun_addr[i], NULL, 0);
    nk_turn_server_config cfg;
    nk_turn_server_config_init(&cfg);
    cfg.realm = "natkit.test";
    cfg.relay_ip = w->turn_addr;
    nk_turn_server_ops ops = {.relay_open = relay_open, .relay_close = relay_close, .random = server_random, .ctx = w};
    if (nk_turn_server_new(&w->turn, &cfg, &ops) != 0 || nk_turn_server_add_user(w->turn, "u", "p") != 0)
        abort();
    site(w, 0, a);
    site(w, 1, b);
    for (int i = 0; i < 2; i++) {
        w->h[i].id = ids[i];
        sim_rng_seed(&w->h[i].rnd, seed * 2 + (uint64_t)i + 1);
    }
    start(w, 0, 1);
    o->direct_ms = -1;
    int64_t end = w->clock.now + RUN_MS;
    for (int guard = 0; guard < 5000000; guard++) {
        sim_clock_offer(&w->clock, sim_queue_next(&w->net));
        sim_clock_offer(&w->clock, nk_turn_server_next_deadline(w->turn));
        for (int i = 0; i < 2; i++)
            if (w->h[i].ag != NULL)
                sim_clock_offer(&w->clock, nk_agent_next_deadline(w->h[i].ag));
        if (!sim_clock_advance(&w->clock, end))
            break;
        const sim_pkt *k = sim_queue_pop(&w->net, w->clock.now);
        if (k != NULL) {
            deliver(w, k);
        } else {
            nk_turn_server_handle_timeout(w->turn, w->clock.now);
            for (int i = 0; i < 2; i++)
                if (w->h[i].ag != NULL && nk_agent_next_deadline(w->h[i].ag) <= w->clock.now) {
                    nk_agent_handle_timeout(w->h[i].ag, w->clock.now);
                    pump(w, i);
                }
        }
        if (w->h[1].ag != NULL && kind(w, 0) == NK_PATH_DIRECT && kind(w, 1) == NK_PATH_DIRECT) {
            o->direct_ms = w->clock.now - 1000;
            break; /* it stays direct: the agent tests keep it */
        }
    }
    nk_path_kind k0 = kind(w, 0), k1 = w->h[1].ag != NULL ? kind(w, 1) : NK_PATH_NONE;
    o->path = k0 == k1 ? k0 : NK_PATH_NONE;
    o->probes = 0;
    for (int i = 0; i < 2; i++) {
        nk_agent_stats_t st;
        nk_agent_stats(w->h[i].ag, &st);
        o->probes += st.birthday_probes;
        nk_agent_free(w->h[i].ag);
        sim_nat_free(&w->h[i].nat);
        nk_stun_server_free(w->stun[i]);
    }
    nk_turn_server_free(w->turn);
    sim_queue_free(&w->net);
    free(w);
}

static nat_t draw(sim_rng *r)
{
    double x = sim_rng_unit(r) * 100, acc = 0;
    for (int t = 0; t < T_COUNT; t++)
        if (x < (acc += share[t]))
            return (nat_t)t;
    return T_PORT;
}

int main(int argc, char **argv)
{
    long pairs = 10000;
    uint64_t seed = 14;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            pairs = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: traversal_sim [-n PAIRS] [--seed N]\n");
            return 2;
        }
    }
    if (pairs <= 0 || sodium_init() < 0)
        return 2;
    nk_identity ids[2];
    for (int i = 0; i < 2; i++) {
        uint8_t s[32];
        memset(s, i + 1, sizeof(s));
        crypto_sign_seed_keypair(ids[i].id.key, ids[i].secret, s);
    }
    sim_rng r;
    sim_rng_seed(&r, seed);
    long n[T_COUNT][T_COUNT] = {{0}}, direct[T_COUNT][T_COUNT] = {{0}}, by_path[4] = {0};
    long total_direct = 0, bd_pairs = 0, bd_direct = 0, possible = 0, possible_direct = 0;
    double direct_ms = 0;
    uint64_t probes = 0;
    for (long p = 0; p < pairs; p++) {
        nat_t a = draw(&r), b = draw(&r);
        outcome o;
        if (getenv("TRAV_ONLY") != NULL) { /* debugging: one pair of behaviours, each outcome printed */
            a = (nat_t)atoi(getenv("TRAV_ONLY"));
            b = (nat_t)atoi(strchr(getenv("TRAV_ONLY"), ',') + 1);
        }
        run_pair(seed * 1000003u + (uint64_t)p, a, b, ids, &o);
        if (getenv("TRAV_ONLY") != NULL)
            printf("pair %ld: %s %lld ms, %llu birthday packets\n", p, nk_path_kind_name(o.path),
                   (long long)o.direct_ms, (unsigned long long)o.probes);
        int lo = a < b ? a : b, hi = a < b ? b : a;
        n[lo][hi]++;
        by_path[o.path]++;
        /* A direct path exists in principle unless a side blocks UDP or both map per destination. */
        int sym_a = a == T_SYM_RANDOM || a == T_SYM_SEQ, sym_b = b == T_SYM_RANDOM || b == T_SYM_SEQ;
        if (a != T_BLOCKED && b != T_BLOCKED && !(sym_a && sym_b)) {
            possible++;
            possible_direct += o.path == NK_PATH_DIRECT;
        }
        if (o.path == NK_PATH_DIRECT) {
            direct[lo][hi]++;
            total_direct++;
            direct_ms += (double)o.direct_ms;
        }
        if (o.probes > 0) {
            bd_pairs++;
            bd_direct += o.path == NK_PATH_DIRECT;
            probes += o.probes;
        }
    }
    double s = (double)total_direct / (double)pairs;
    double ci = 1.96 * sqrt(s * (1 - s) / (double)pairs);
    printf("== traversal at internet scale, by simulation (bench/traversal_sim, tests/sim NAT model) ==\n");
    printf("peers' NAT behaviours (%%):");
    for (int t = 0; t < T_COUNT; t++)
        printf(" %s %.0f", names[t], share[t]);
    printf("\n  (Tribler's measured 64%% of peers open or cone, split over cone types by assumption; symmetric and\n"
           "  blocked the rest, a third of symmetric NATs sequential; docs/internals/traversal.md)\n");
    printf("pairs not always direct, by behaviours (direct/all):\n");
    for (int x = 0; x < T_COUNT; x++)
        for (int y = x; y < T_COUNT; y++)
            if (n[x][y] > 0 && direct[x][y] < n[x][y])
                printf("  %-11s <-> %-11s %5ld/%-5ld\n", names[x], names[y], direct[x][y], n[x][y]);
    printf("paths: direct %ld, turn %ld, hub %ld, split %ld\n", by_path[NK_PATH_DIRECT], by_path[NK_PATH_TURN],
           by_path[NK_PATH_HUB], by_path[NK_PATH_NONE]);
    printf("birthday probing ran in %ld pairs, direct in %ld; packets per attempt %.0f (mean)\n", bd_pairs, bd_direct,
           bd_pairs ? (double)probes / (double)bd_pairs : 0.0);
    printf("natkit direct: %.1f%% +- %.1f%% of %ld pairs (95%% CI), direct after %.0f ms (mean)\n", 100 * s, 100 * ci,
           pairs, total_direct ? direct_ms / (double)total_direct : 0.0);
    printf("               %.1f%% of the %ld pairs where a direct path exists in principle (no UDP-blocked side,\n"
           "               not both symmetric)\n",
           possible ? 100.0 * (double)possible_direct / (double)possible : 0.0, possible);
    printf("published:     Tailscale > 90%% direct (tailscale.com blog, \"NAT traversal, and how we're improving it\")\n");
    printf("               libp2p DCUtR hole punching 70%% +- 7.1%% (Trautwein et al., arXiv:2510.27500, 4.4 M attempts)\n");
    printf("ratio natkit / libp2p: %.2f\n", s / 0.70);
    return 0;
}
