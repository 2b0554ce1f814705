/*
 * A world of nk_nodes and one real hub server core on the tests/sim clock and
 * queue: every node's UDP datagrams (one-way delay, optional loss and blocking)
 * and hub bytes both ways. test_node.c and test_conn_quic.c build on it; the
 * test's own world embeds a sim_nodes and watches through the hooks.
 * In flight: a sim_pkt, tag 0: UDP to node dst; 1: hub bytes to node dst;
 * 2: hub bytes to the hub from node dst.
 */
#ifndef NK_TEST_SIM_NODES_H
#define NK_TEST_SIM_NODES_H

#include "natkit/hub_server.h"
#include "natkit/node.h"
#include "sim.h"

#define SIM_NODES_MAX      128
#define SIM_NODES_DELAY_MS 20 /* one way when udp_delay_ms / hub_delay_ms are 0: 40 ms RTT */

typedef struct sim_nodes {
    sim_clock clock;
    sim_queue queue; /* FIFO per arrival time: streams stay in order */
    int n;
    nk_identity ids[SIM_NODES_MAX];
    nk_node *nodes[SIM_NODES_MAX];
    nk_addr addrs[SIM_NODES_MAX];
    nk_hub_conn_id hubconn[SIM_NODES_MAX];
    nk_hub_server *hub;
    nk_addr hub_addr;
    /* the network, set by the test at any time */
    int udp_blocked;                /* drop every UDP datagram */
    int udp_delay_ms, hub_delay_ms; /* one way (0: SIM_NODES_DELAY_MS) */
    double udp_loss;                /* > 0: UDP goes over queue.link with this loss (needs the rng) */
    uint64_t udp_rx, hub_rx;        /* UDP datagrams / hub reads delivered to nodes */
    /* the test's hooks (ctx: its own world); any may be NULL */
    void *ctx;
    void (*on_event)(void *ctx, int i, const nk_node_event *ev);
    int (*admit)(void *ctx, int from, int to); /* 0: drop this UDP datagram from node from to node to */
    void (*on_turn)(void *ctx);                /* once per loop turn, after the flush */
} sim_nodes;

/* Clock at 1000 ms, an empty queue (rng: its link randomness, NULL if udp_loss stays 0), a hub server
 * at 203.0.113.1:7000. Returns 0 or the hub server's error. */
int sim_nodes_init(sim_nodes *w, sim_rng *rng);
/* Node w->n at 198.51.100.(1 + n % 200):(4000 + n) with a new identity: fills cfg's identity, hub and
 * host, creates the node and connects it to the hub. Returns 0 or an error. */
int sim_nodes_add(sim_nodes *w, nk_node_config *cfg);
/* Runs every party until the clock reaches until (2,000,000 turns at most). */
void sim_nodes_run_until(sim_nodes *w, int64_t until);
void sim_nodes_free(sim_nodes *w);

#endif
