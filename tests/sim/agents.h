/*
 * Two connectivity agents (nk_agent) on the tests/sim clock, queue and NAT model: two sites with
 * a NAT of any behaviour (public, full cone, restricted, port-restricted, symmetric, UDP blocked;
 * both hosts may sit behind one NAT) and optionally an IPv6 stateful firewall, the real STUN
 * server handler (two servers) and the real TURN server core in memory, and a hub that forwards
 * the agents' signals with a delay. The world plays the driver: it opens the extra sockets of
 * birthday probing, owns the TURN allocation in shared mode, and records what each host saw
 * (paths, data, candidates). tests/unit/test_agent.c asserts on it; bench/traversal_sim.c runs
 * 10,000 pairs on it. In flight: a sim_pkt, tag a stage (the internet, a host, the hub), dst the
 * host, aux the hub message type (| SIM_AGENTS_HUB_MARK when its sender had a punchable candidate).
 */
#ifndef NK_TEST_SIM_AGENTS_H
#define NK_TEST_SIM_AGENTS_H

#include "natkit/agent.h"
#include "natkit/stun_server.h"
#include "natkit/turn_client.h"
#include "natkit/turn_server.h"
#include "sim.h"

#define SIM_AGENTS_INET_MS   20   /* one internet leg: 40 ms RTT between peers */
#define SIM_AGENTS_LAN_MS    1    /* between two hosts behind one NAT */
#define SIM_AGENTS_HUB_MS    40   /* peer -> hub -> peer (each side's hub RTT is 40 ms) */
#define SIM_AGENTS_MAXPATHEV 64   /* path events a host records */
#define SIM_AGENTS_PKT_MAX   1700 /* the largest datagram */
#define SIM_AGENTS_MAXEXTRA  1024 /* extra sockets for birthday probing */
#define SIM_AGENTS_HUB_MARK  0x100

/* A site's NAT (RFC 4787: cone NATs map endpoint-independently and preserve ports; a symmetric one
 * maps and filters per address and port, on random ports). */
typedef enum sim_site_type {
    SIM_SITE_PUBLIC,
    SIM_SITE_FULL,
    SIM_SITE_RESTRICTED,
    SIM_SITE_PORT,
    SIM_SITE_SYMMETRIC,
    SIM_SITE_BLOCKED,
    SIM_SITE_COUNT
} sim_site_type;

extern const char *const sim_site_names[SIM_SITE_COUNT]; /* "public", "full-cone", ... */

typedef struct sim_site {
    sim_site_type type;
    sim_nat nat;                 /* its NAT (SIM_SITE_PUBLIC: unused but for nat.pub) */
    int fw6_on;                  /* its IPv6 hosts sit behind fw6 (else IPv6 is open) */
    sim_nat fw6;                 /* the IPv6 stateful firewall (sim_nat.firewall) */
    unsigned loss;               /* % of IPv4 datagrams its NAT's outside link drops, each way (the lab's loss=) */
} sim_site;

typedef struct sim_agent_host {
    int site;
    nk_addr addr;                /* its IPv4 address (family NONE: IPv6-only) */
    nk_addr addr6;               /* its IPv6 address (family NONE: IPv4-only), the same socket */
    nk_identity id;
    nk_agent *ag;
    nk_turn_client *shared;      /* the driver's TURN allocation (shared mode) */
    sim_rng rnd;
    int64_t started;
    size_t npath;
    int64_t path_at[SIM_AGENTS_MAXPATHEV];
    nk_path_kind path_kind[SIM_AGENTS_MAXPATHEV];
    int punchable;               /* it has gathered a candidate reachable from outside */
    int relayed;                 /* it has gathered a relayed candidate */
    int64_t punch_sig_at;        /* when the first hub message carrying such a candidate of the peer
                                    arrived: from then on this host can punch (-1) */
    int failed;
    unsigned data_rx;            /* DATA events (each must come from sim_agents_send_data of the peer) */
    int64_t last_data_at;
    size_t last_probe_len;
    uint8_t last_probe[SIM_AGENTS_PKT_MAX]; /* the last PROBE it sent (for replay tests) */
    nk_addr last_probe_to;
    /* birthday probing: the extra sockets the "driver" opened for the agent */
    size_t nextra, extra_open, extra_asked;
    nk_addr extra[SIM_AGENTS_MAXEXTRA];
    uint8_t extra_closed[SIM_AGENTS_MAXEXTRA];
    uint64_t bd_probes_at_direct; /* the agent's birthday probes when its first direct path came */
    int64_t bd_opened_at;         /* when the driver opened the extra sockets (-1) */
} sim_agent_host;

typedef struct sim_agents {
    sim_clock clock;
    sim_rng rng;                 /* loss and symmetric NATs' ports */
    sim_queue net;               /* the internet: net.link (delay_ms: SIM_AGENTS_INET_MS) */
    sim_site sites[2];
    sim_agent_host hosts[2];
    nk_stun_server *stun[2];     /* at 198.51.100.1:3478 and 198.51.100.3:3478 */
    nk_addr stun_addr[2];
    int stun_down;               /* which of the two STUN servers does not answer (-1: none) */
    uint16_t stun0_alt_port;     /* also served: the first server's IP at this port (RFC 5780) */
    nk_turn_server *turn;        /* at 198.51.100.2:3478, user "u" password "p" (NULL: no TURN) */
    nk_addr turn_addr;
    int use_turn;
    /* set by the caller at any time (after sim_agents_new; 0 unless said) */
    int keepalive_ms, retry_ms;  /* the agents' keepalive_ms and direct_retry_ms (0: their defaults) */
    int drop_direct;             /* drop every packet between the two peers' addresses (not servers) */
    int hub_up;                  /* the hub forwards signals (1) */
    int presrflx;                /* give the agents their server-reflexive address up front */
    int shared_turn;             /* the "driver" owns the TURN client (cfg.turn_shared) */
    int fixed_delay;             /* every IPv4 datagram takes exactly net.link.delay_ms and draws nothing from
                                    rng (sim_queue_put, not sim_queue_send: no loss, no jitter) */
    sim_rng srv_rnd;             /* the TURN server's and the shared TURN clients' */
    int64_t inet6_ms;            /* one internet leg over IPv6 (0: as IPv4) */
    int v6_first;                /* the agents list their IPv6 host candidate first */
    void (*fail)(const char *what); /* what must not happen happened (must not return; NULL: abort) */
    uint8_t out[65536 + 64];
} sim_agents;

typedef struct sim_agents_config {
    sim_site_type type[2];       /* site 0's and site 1's NAT */
    int same_site;               /* both hosts behind site 0 (host 1 at 10.0.1.3 or 203.0.113.12) */
    int use_turn;                /* run the TURN server; the agents use it */
    uint64_t seed;               /* the world's rng */
    uint64_t srv_seed;           /* srv_rnd */
    uint64_t host_seed[2];       /* each agent's random source */
    void (*fail)(const char *what);
} sim_agents_config;

/* Clock at 1000 ms; sites at 203.0.113.1 and .2; host i at 10.0.(i + 1).2:5000 behind a NAT or
 * 203.0.113.(11 + i):5000 when public; identities from seeds of bytes 1 and 2; both STUN servers
 * answer, the hub is up. NULL when a server or identity could not be made. */
sim_agents *sim_agents_new(const sim_agents_config *cfg);
void sim_agents_free(sim_agents *w);
/* Host hi gets IPv6 address a6 on its socket behind its site's stateful firewall (inbound only as
 * answers: address-and-port-dependent filtering, no translation); v6only: no IPv4 address. */
void sim_agents_give_v6(sim_agents *w, int hi, const char *a6, int v6only);

/* Makes host hi's agent and starts it (the responder's is made when the first signal arrives). */
void sim_agents_start(sim_agents *w, int hi, int controlling);
/* Moves everything host hi's agent (and its shared TURN client) has to say into the world. */
void sim_agents_pump(sim_agents *w, int hi);
/* Host hi's socket sends tx (bytes d): over the LAN, through its NAT or firewall, or nowhere. */
void sim_agents_host_send(sim_agents *w, int hi, const nk_transmit *tx, const uint8_t *d);
/* One turn: advances the clock to the earliest deadline and delivers one packet or runs the timers
 * due. 0 when nothing is due by until (the clock stays). */
int sim_agents_step(sim_agents *w, int64_t until);
/* Turns until nothing is due by until; the clock is then at until. */
void sim_agents_run_until(sim_agents *w, int64_t until);
/* Host hi sends n messages of 200 bytes 'a' + hi. */
void sim_agents_send_data(sim_agents *w, int hi, int n);
nk_path_kind sim_agents_selected(const sim_agents *w, int hi);
/* When host hi first reached kind (-1: never). */
int64_t sim_agents_first_path(const sim_agents *w, int hi, nk_path_kind kind);

#endif
