/*
 * The test world: one virtual clock, one seeded random source, one packet
 * queue (delay, jitter, loss, duplication, reordering) and one RFC 5780 NAT
 * model, shared by every unit test (STYLE.md section 11, after quicly's
 * t/test.h). Nothing here reads a real clock or touches a socket; the same
 * seed gives the same run. tests/sim/README.md shows how a test uses it.
 */
#ifndef NK_TEST_SIM_H
#define NK_TEST_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/addr.h"
#include "natkit/nat_probe.h" /* nk_nat_behaviour, nk_port_allocation */

#define SIM_NEVER INT64_MAX /* no deadline (the value of NK_DEADLINE_NONE) */

/* ---- the random source: splitmix64, one per world (or per endpoint) ---------------- */

typedef struct sim_rng {
    uint64_t s;
} sim_rng;

/* The seed a test asked for, or $NK_SIM_SEED when set (to rerun a randomized test with other seeds). */
uint64_t sim_seed(uint64_t dflt);
void sim_rng_seed(sim_rng *r, uint64_t seed);
uint64_t sim_rng_next(sim_rng *r);
uint32_t sim_rng_below(sim_rng *r, uint32_t n); /* uniform enough in [0, n) for n > 0 */
double sim_rng_unit(sim_rng *r);                /* [0, 1) */
/* An nk_random_fn (ctx: a sim_rng): inject it into the cores' configs. */
void sim_random(void *ctx, uint8_t *buf, size_t len);
/* The same with a void buffer (the TURN server's ops.random). */
void sim_random_void(void *ctx, void *buf, size_t len);

/* ---- the virtual clock ---------------------------------------------------------------- */

typedef struct sim_clock {
    int64_t now;
    int64_t next; /* the earliest deadline offered since the last advance */
} sim_clock;

void sim_clock_init(sim_clock *c, int64_t start);
/* Offers a deadline (a core's next_deadline, the queue's next delivery); SIM_NEVER is ignored. */
void sim_clock_offer(sim_clock *c, int64_t deadline);
/* Moves now to the earliest offered deadline (never backwards) and forgets the offers.
 * Returns 1, or 0 when nothing was offered at or before limit (now stays). */
int sim_clock_advance(sim_clock *c, int64_t limit);

/* ---- the packet queue ------------------------------------------------------------------- */

/* One datagram in flight. tag, dst and aux are the test's own (a stage, a host, a type). */
typedef struct sim_pkt {
    int64_t at;  /* delivery time */
    uint64_t seq;
    nk_addr from, to;
    int tag, dst, aux;
    size_t len;
    const uint8_t *data;
} sim_pkt;

/* What the link does to every sim_queue_send: each packet is lost with probability loss,
 * otherwise sent twice with probability dup; each copy takes delay_ms plus [0, jitter_ms),
 * and with probability reorder is held back reorder_ms more (later packets overtake it). */
typedef struct sim_link {
    int64_t delay_ms, jitter_ms;
    double loss, dup, reorder;
    int64_t reorder_ms;
} sim_link;

typedef struct sim_queue {
    sim_link link;
    sim_rng *rng;
    sim_pkt *heap;   /* a min-heap on (at, seq): equal times keep their order */
    size_t n, cap;
    uint64_t seq;
    sim_pkt cur;     /* the last popped packet: valid until the next pop */
    uint64_t nsent, nlost, ndup, nreordered, ndelivered;
} sim_queue;

void sim_queue_init(sim_queue *q, sim_rng *rng); /* a perfect link; rng may be NULL if only put is used */
void sim_queue_free(sim_queue *q);
/* Queues a copy of k (k->data: k->len bytes) for delivery at `at`, exactly once. */
void sim_queue_put(sim_queue *q, int64_t at, const sim_pkt *k);
/* Sends k at now over the link. Returns the copies queued (0: lost, 1, or 2: duplicated). */
int sim_queue_send(sim_queue *q, int64_t now, const sim_pkt *k);
/* When the earliest packet is due (SIM_NEVER: none queued). */
int64_t sim_queue_next(const sim_queue *q);
/* The earliest packet due at or before now (equal times: first queued first), or NULL. */
const sim_pkt *sim_queue_pop(sim_queue *q, int64_t now);

/* ---- the NAT (RFC 4787 / RFC 5780 behaviours) ----------------------------------------------- */

typedef struct sim_mapping {
    int used;
    nk_addr internal;  /* the host's address */
    nk_addr remote;    /* the first destination (keys address(-and-port)-dependent mappings) */
    uint16_t ext;      /* the public port */
    int64_t last;      /* last packet either way (idle mappings expire) */
    size_t npeers, cappeers;
    nk_addr *peers;    /* every destination (what the filter admits), as a conntrack table keeps
                          one entry per destination: no limit (birthday probing sends to 1,000) */
} sim_mapping;

typedef struct sim_nat {
    /* behaviour: set after sim_nat_init (an endpoint-independent, port-preserving NAT) */
    nk_nat_behaviour mapping;   /* which destinations share a mapping */
    nk_nat_behaviour filtering; /* which outside senders a mapping admits */
    nk_port_allocation ports;   /* preserving (the local port, +1000 after each expiry or reboot),
                                   sequential (+delta from 40000) or random (20000..59999) */
    int delta;                  /* sequential step (0: 1) */
    int hairpin;                /* loop packets to its own public address back inside */
    int blocked;                /* drop every outbound UDP packet */
    int64_t lifetime_ms;        /* idle mapping lifetime (0: forever) */
    int firewall;               /* no translation: a stateful firewall (the IPv6 kind). Addresses
                                   pass unchanged, one "mapping" per inside host address and port;
                                   `filtering` says which outside senders it admits (inbound is
                                   dropped unless it answers what that endpoint sent: set it to
                                   address-and-port-dependent); `pub` is unused */
    nk_addr pub;                /* the public IP (port ignored) */
    sim_rng *rng;               /* random port allocation */
    /* state */
    uint16_t next_port;
    unsigned epoch;             /* mappings expired and reboots so far */
    sim_mapping *maps;
    size_t nmaps, cap;
    unsigned nmapped, nexpired, nfiltered;
} sim_nat;

typedef enum sim_verdict {
    SIM_NAT_DROP = 0, /* blocked, hairpinning off, or no live mapping for a hairpinned packet */
    SIM_NAT_OUT,      /* send src -> dst on the outside */
    SIM_NAT_HAIRPIN,  /* deliver src -> dst inside (dst: the internal host the packet loops to) */
} sim_verdict;

void sim_nat_init(sim_nat *n, const nk_addr *pub, sim_rng *rng);
void sim_nat_free(sim_nat *n);
/* internal sends to remote at now: maps it (creating or refreshing the mapping). */
sim_verdict sim_nat_send(sim_nat *n, int64_t now, const nk_addr *internal, const nk_addr *remote, nk_addr *src,
                         nk_addr *dst);
/* A packet from the outside reaches the public address to. Returns 1 and the internal host it
 * goes to, or 0 when no live mapping has that port or the filter refuses the sender. */
int sim_nat_receive(sim_nat *n, int64_t now, const nk_addr *from, const nk_addr *to, nk_addr *internal);
/* The NAT reboots: every mapping is forgotten; new ones get other ports. */
void sim_nat_reboot(sim_nat *n);
/* Live mappings now. */
size_t sim_nat_count(const sim_nat *n, int64_t now);

#endif
