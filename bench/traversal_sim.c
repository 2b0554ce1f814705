/*
 * bench/traversal_sim: the share of peer pairs natkit connects directly, at internet scale, by
 * simulation (issue 14 item 5). Draws pairs of NAT behaviours from a distribution anchored on
 * published measurements (docs/internals/traversal.md says which and what is assumed), runs the
 * real agent core (include/natkit/agent.h) for both peers in the world tests/unit/test_agent.c
 * uses (tests/sim/agents.h: the clock, packet queue and NAT model of tests/sim, two STUN
 * servers, a TURN server and a hub that forwards signals), and prints the direct share next to
 * the published figures of Tailscale and libp2p. Simulated time: 10,000 pairs take seconds, and no root or network is needed.
 *
 *   traversal_sim [-n PAIRS] [--seed N]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents.h"

#define RUN_MS 8000 /* a pair's simulated time (the birthday attempt ends by ~5 s) */

typedef enum { T_PUBLIC, T_FULL, T_RESTRICTED, T_PORT, T_SYM_RANDOM, T_SYM_SEQ, T_BLOCKED, T_COUNT } nat_t;

static const char *const names[T_COUNT] = {"public", "full-cone", "restricted", "port-restr", "sym-random",
                                           "sym-seq", "udp-blocked"};

/* Shares (percent) of peers behind each behaviour: docs/internals/traversal.md. */
static const double share[T_COUNT] = {8, 12, 12, 32, 20, 10, 6};

/* The world's NAT of each behaviour; a symmetric one starts allocating at a random port. */
static const sim_site_type site_type[T_COUNT] = {SIM_SITE_PUBLIC,    SIM_SITE_FULL,      SIM_SITE_RESTRICTED,
                                                 SIM_SITE_PORT,      SIM_SITE_SYMMETRIC, SIM_SITE_SYMMETRIC,
                                                 SIM_SITE_BLOCKED};

typedef struct outcome {
    nk_path_kind path;   /* both sides' path (NONE when they disagree) */
    int64_t direct_ms;   /* when the initiator went direct (-1) */
    uint64_t probes;     /* birthday probes and openers, both sides */
} outcome;

/* Both peers on the loss-free internet of tests/sim/agents.h (40 ms RTT, both STUN servers, TURN,
 * the agents' default timers) until both are direct or RUN_MS have passed. */
static void run_pair(uint64_t seed, nat_t a, nat_t b, outcome *o)
{
    sim_agents_config cfg = {.type = {site_type[a], site_type[b]}, .use_turn = 1, .seed = seed,
                             .srv_seed = seed ^ 0x5eed, .host_seed = {seed * 2 + 1, seed * 2 + 2}};
    sim_agents *w = sim_agents_new(&cfg);
    if (w == NULL)
        abort();
    w->fixed_delay = 1;
    for (int i = 0; i < 2; i++) {
        nat_t t = i == 0 ? a : b;
        sim_nat *nat = &w->sites[i].nat;
        if (t == T_SYM_SEQ)
            nat->ports = NK_PORTS_SEQUENTIAL;
        if (t == T_SYM_RANDOM || t == T_SYM_SEQ)
            nat->next_port = (uint16_t)(20000 + sim_rng_below(&w->rng, 30000));
    }
    sim_agents_start(w, 0, 1);
    o->direct_ms = -1;
    int64_t end = w->clock.now + RUN_MS;
    for (int guard = 0; guard < 5000000 && sim_agents_step(w, end); guard++)
        if (w->hosts[1].ag != NULL && sim_agents_selected(w, 0) == NK_PATH_DIRECT &&
            sim_agents_selected(w, 1) == NK_PATH_DIRECT) {
            o->direct_ms = w->clock.now - 1000;
            break; /* it stays direct: the agent tests keep it */
        }
    nk_path_kind k0 = sim_agents_selected(w, 0), k1 = w->hosts[1].ag != NULL ? sim_agents_selected(w, 1) : NK_PATH_NONE;
    o->path = k0 == k1 ? k0 : NK_PATH_NONE;
    o->probes = 0;
    for (int i = 0; i < 2; i++) {
        nk_agent_stats_t st;
        nk_agent_stats(w->hosts[i].ag, &st);
        o->probes += st.birthday_probes;
    }
    sim_agents_free(w);
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
    if (pairs <= 0)
        return 2;
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
        run_pair(seed * 1000003u + (uint64_t)p, a, b, &o);
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
