/*
 * natkit internal: the connectivity agent's state, shared by agent.c (API,
 * queues, deadlines), agent_wire.c (sealed frames and signals),
 * agent_candidates.c (gathering, trickling, pairing), agent_probe.c (checks,
 * answers, confirmations, keepalives) and agent_path.c (selection,
 * nomination, failover). See docs/internals/agent.md.
 */
#ifndef NK__AGENT_INTERNAL_H
#define NK__AGENT_INTERNAL_H

#include <sodium.h>

#include "natkit/agent.h"
#include "natkit/hub.h"
#include "natkit/nat_probe.h"
#include "ring.h"

#define NK__AG_MAX_LOCAL   12
#define NK__AG_MAX_STUN    8
#define NK__AG_REGATHER_MS 10000 /* at most one STUN re-run per this long */
#define NK__AG_MAX_REMOTE  16
#define NK__AG_MAX_PAIRS   40
#define NK__AG_TXQ         32
#define NK__AG_SIGQ        8
#define NK__AG_EVQ         16
#define NK__AG_TX_MAX      (NK_AGENT_MAX_DATA + 128)
#define NK__AG_SEQS        8      /* recent probe sends remembered per pair (RTT, replay window) */
#define NK__AG_ANSWERED    4      /* recent answered transaction IDs per pair (confirm matching) */
#define NK__AG_HUB_PATH    1u     /* path id of the hub relay; pairs get 2, 3, ... */

/* Timers (ms). */
#define NK__AG_PACE_ROUNDS   10   /* rounds at check_interval before backing off */
#define NK__AG_MAX_INTERVAL  500  /* backoff cap between rounds */
#define NK__AG_CHECK_WINDOW  10000 /* a round of checks runs this long after new pairs appear */
#define NK__AG_RETRY_WINDOW  2000 /* a direct re-probe burst on a relay runs this long */
#define NK__AG_KA_TIMEOUT    1000 /* an unanswered keepalive counts as failed after this */
#define NK__AG_CONNECT_RTX   1000 /* CONNECT resent (doubling) until the peer's candidates arrive */
#define NK__AG_CONNECT_TRIES 5
#define NK__AG_TURN_HOLD     300  /* at least; 2 x the hub path's RTT when longer */

/* Wire (docs/internals/agent.md). */
#define NK__AG_PROBE   0x81
#define NK__AG_ANSWER  0x82
#define NK__AG_CONFIRM 0x83
#define NK__AG_DATA    0x90
#define NK__AG_VERSION 1

#define NK__AG_F_NOMINATE     0x01 /* CONFIRM: use this path */
#define NK__AG_F_KEEPALIVE    0x02 /* PROBE: a keepalive on a valid path */
#define NK__AG_F_WANT_CONFIRM 0x04 /* ANSWER: the answerer has not seen a confirm on this path yet */
#define NK__AG_F_NOMINATED    0x08 /* ANSWER: the answerer (controlled) uses this path */
#define NK__AG_F_VIA_RELAY    0x10 /* any check: sent through the sender's TURN allocation, so its
                                      source address is a relay, never a peer-reflexive one */

#define NK__AG_TXID_SIZE   8
#define NK__AG_CHECK_PT    (3 + NK__AG_TXID_SIZE + NK_ADDR_WIRE_SIZE)
#define NK__AG_SEAL_OVER   (crypto_box_NONCEBYTES + crypto_box_MACBYTES)
#define NK__AG_HDR         (1 + NK_PEER_ID_SIZE)
#define NK__AG_CHECK_SIZE  (NK__AG_HDR + NK__AG_SEAL_OVER + NK__AG_CHECK_PT)

/* Signal kinds (inside the sealed hub payload; the first byte repeats the hub type). */
#define NK__AG_SIG_NOMINATE_HUB 1
#define NK__AG_SIG_NAT          2 /* flags: mapping | ports << 4; cands: our STUN mappings, oldest first */
#define NK__AG_SIG_BIRTHDAY     3 /* hard side ready; cands: its public IP with the first predicted
                                     ports (port 0: no prediction) */

/* Birthday probing (birthday.c, docs/internals/agent.md "Birthday probing"). */
#define NK__BD_SOCKETS     256   /* extra sockets the hard side asks for */
#define NK__BD_MAX_SOCKETS 1024
#define NK__BD_PROBES      2048  /* the easy side's budget: probes per attempt */
#define NK__BD_INTERVAL_MS 2     /* its pace: 500 probes/s (2048 in 4.1 s) */
#define NK__BD_WINDOW_MS   4200  /* an attempt ends this long after the hard side opened */
#define NK__BD_LINGER_MS   800   /* the hard side keeps its spare sockets this much longer */
#define NK__BD_WAIT_MS     500   /* normal checks first, this long after the peer's candidates */
#define NK__BD_GIVE_UP_MS  15000 /* no attempt starts later than this after the agent started */
#define NK__BD_PREDICT     384   /* sequential NAT: ports probed around the prediction first */
#define NK__BD_SEQ_MAX     16    /* a delta up to this between two mappings: sequential */
#define NK__BD_ID          0xffffffffu /* the txid pair id of birthday probes (pairs count from 2) */
#define NK__BASE_EXTRA     2     /* pair base of extra socket i: NK__BASE_EXTRA + i */
#define NK__AG_SIG_END_OF_CANDIDATES 0x01 /* candidate flags */

enum { NK__CAND_HOST = 0, NK__CAND_SRFLX = 1, NK__CAND_PRFLX = 2, NK__CAND_RELAY = 3 };
enum { NK__BASE_SOCKET = 0, NK__BASE_RELAY = 1 };
enum { NK__AG_IDLE = 0, NK__AG_RUNNING, NK__AG_FAILED, NK__AG_CLOSED };

typedef struct nk__cand {
    nk_addr addr;
    uint8_t type;
} nk__cand;

typedef struct nk__pair {
    uint32_t id;
    uint16_t base;                /* NK__BASE_SOCKET, NK__BASE_RELAY (our TURN allocation), or
                                     NK__BASE_EXTRA + i (birthday probing's extra socket i) */
    uint8_t rtype;                /* the remote candidate's type */
    nk_addr remote;
    nk_addr observed;             /* our address as the peer saw it (from its answers) */
    uint8_t valid;                /* works both ways: our probe was answered, or the peer confirmed our answer */
    uint8_t confirmed;            /* the peer confirmed one of our answers */
    uint8_t dead;                 /* keepalives failed: back to checking */
    uint8_t nominating;           /* controlling: the next answer gets a CONFIRM with NOMINATE */
    uint8_t channel;              /* a TURN channel was requested for it */
    uint32_t seq;                 /* last probe sequence number sent */
    int64_t last_sent;            /* when it went out */
    int64_t sent_at[NK__AG_SEQS]; /* send time of seq - i (index seq % NK__AG_SEQS) */
    uint8_t answered[NK__AG_ANSWERED][NK__AG_TXID_SIZE];
    int64_t answered_at[NK__AG_ANSWERED]; /* when each answer went out (RTT from its CONFIRM) */
    unsigned nanswered;
    uint32_t rx_id[2], rx_seq[2]; /* the newest probe seen from the peer's pairs (replays are no sign of life) */
    int64_t rtt_ms;
    int64_t ka_next;              /* valid: next keepalive probe */
    int64_t ka_wait;              /* valid: when the outstanding keepalive counts as failed (NONE) */
    uint32_t ka_seq;              /* the outstanding keepalive's sequence number */
    int fails;                    /* consecutive unanswered keepalives */
} nk__pair;

/* A decoded PROBE/ANSWER/CONFIRM. */
typedef struct nk__check {
    uint8_t type, flags;
    uint8_t txid[NK__AG_TXID_SIZE];
    nk_addr observed;
} nk__check;

/* A decoded signal (CONNECT/CANDIDATE/SIGNAL). */
typedef struct nk__sigmsg {
    uint8_t kind;                 /* the hub type it was sealed for */
    uint8_t flags;
    uint8_t sub;                  /* SIGNAL: NK__AG_SIG_* */
    int64_t hub_rtt;              /* the sender's hub RTT (-1 unknown) */
    size_t ncand;
    nk__cand cand[NK__AG_MAX_REMOTE];
} nk__sigmsg;

/* Queue entries are allocated one at a time, sized to what they carry, and freed when taken:
 * an idle agent holds no queue memory (the rings hold pointers). */
typedef struct nk__txslot {
    nk_addr to;
    nk_addr from;   /* an extra socket's address; family NONE: the main socket */
    size_t len;
    uint8_t data[]; /* len bytes (<= NK__AG_TX_MAX) */
} nk__txslot;

typedef struct nk__sigslot {
    uint8_t type;
    size_t len;
    uint8_t data[]; /* len bytes (<= NK_HUB_MAX_PAYLOAD) */
} nk__sigslot;

typedef struct nk__evslot {
    nk_agent_event ev;
    uint8_t data[]; /* DATA events: room for the datalen given to nk__ag_queue_event */
} nk__evslot;

/* A NAT's behaviour as far as birthday probing needs it. */
typedef struct nk__natinfo {
    uint8_t mapping;              /* nk_nat_behaviour (0 unknown) */
    uint8_t ports;                /* nk_port_allocation (0 unknown) */
    int delta;                    /* NK_PORTS_SEQUENTIAL */
    nk_addr last;                 /* the newest mapping seen (the public IP, and the port a
                                     sequential NAT counts from) */
    nk_addr prev;                 /* the one before (family NONE: none) */
} nk__natinfo;

enum { NK__BD_IDLE = 0, NK__BD_WAIT_SOCKETS, NK__BD_OPENING, NK__BD_READY, NK__BD_PROBING, NK__BD_DONE };
enum { NK__BD_NONE = 0, NK__BD_HARD, NK__BD_EASY };

typedef struct nk__birthday {
    int state, role;
    int64_t check_at;             /* next look at whether an attempt should start */
    int64_t next_at;              /* the next paced packet */
    int64_t end_at;               /* probing stops / spare sockets close */
    nk_addr target;               /* hard: the easy side's mapping; easy: the hard side's public IP */
    nk_addr *socks;               /* hard: the extra sockets */
    size_t nsocks, sent;          /* hard: openers sent so far */
    size_t want;                  /* sockets to ask for */
    uint16_t pred;                /* easy: first predicted port (0: none) */
    int pdelta;
    unsigned probes;              /* easy: sent in this attempt */
    uint8_t *tried;               /* easy: 65536-bit map of probed ports */
    uint32_t rng;                 /* easy: random port state */
    int keep;                     /* hard: index of the socket that won (-1) */
    int opener_taken;             /* easy: an opener got through our NAT (it filters by address only) */
} nk__birthday;

struct nk_agent {
    int state;
    nk_identity identity;
    nk_peer_id peer;
    int controlling;
    uint8_t key[crypto_box_BEFORENMBYTES]; /* crypto_box_beforenm(peer's X25519, ours) */
    uint8_t dir;                  /* our direction byte: 1 when our peer ID is the lower one, else 2 */
    int64_t check_ms, keepalive_ms, retry_ms, timeout_ms;
    int ka_failures;
    nk_random_fn random;
    void *random_ctx;

    int64_t started_ms;
    int64_t none_since;           /* no path at all since (for connect_timeout); NONE while one exists */
    int64_t hub_rtt, peer_hub_rtt;
    int hub_up;
    int peer_heard;               /* an authenticated signal from the peer arrived: the hub path works */
    int got_remote;               /* the peer's candidates arrived */
    int64_t connect_next;         /* controlling: CONNECT retransmission (NONE when done) */
    int connect_tries;

    nk__cand local[NK__AG_MAX_LOCAL];
    size_t nlocal;
    int trickle;                  /* our candidates went out once: new ones are trickled at once */

    nk_stun_client *stun;
    int stun_done;
    nk_addr stun_servers[NK__AG_MAX_STUN]; /* kept to gather again after a direct path died */
    size_t nstun;
    int64_t gathered_ms;          /* last STUN run started */
    nk_stun_client *stun6;        /* dual stack: the IPv6 servers' run beside stun's IPv4 one */
    int stun6_done;
    nk_turn_client *turn;
    int turn_owned;               /* 0: cfg.turn_shared (the driver's) */
    int64_t shared_poll;          /* shared allocation still coming: look again then */
    nk_addr turn_server;
    uint8_t turn_family;          /* the relayed address family */
    int turn_ready;

    nk__cand remote[NK__AG_MAX_REMOTE];
    size_t nremote;
    nk__pair *pairs[NK__AG_MAX_PAIRS]; /* each allocated when the pair appears (they never move) */
    size_t npairs;
    uint32_t next_pair_id;
    uint32_t selected;            /* 0 none, NK__AG_HUB_PATH, or a pair id */
    uint32_t nominated;           /* controlled: the path the controlling side nominated last */

    int64_t round_next;           /* next probe round (NONE: no checks running) */
    int64_t round_interval;
    size_t round_cursor;          /* where the next round starts (a full queue cuts a round short) */
    int64_t pace_until;           /* rounds stay at check_ms until then */
    int64_t check_until;          /* rounds stop then */
    int64_t punch_at;             /* responder: a round when the initiator is expected to start */
    int64_t retry_next;           /* on a relay: next direct re-probe burst */
    int64_t turn_hold_until;      /* controlling, first connection: a valid TURN pair waits until
                                     then while direct pairs are still being checked */

    /* Rings of pointers to heap entries; full: the new entry is dropped and counted
     * (dropped_limit), as when its allocation fails. */
    nk__ring tx, sig, ev;
    nk__txslot *tx_slots[NK__AG_TXQ];
    nk__sigslot *sig_slots[NK__AG_SIGQ];
    nk__evslot *ev_slots[NK__AG_EVQ];
    nk__evslot *ev_out;           /* the event last handed out (its DATA is still the caller's) */

    nk_agent_stats_t stats;

    /* birthday probing: our NAT and the peer's, the second STUN run that tells our mapping */
    nk__natinfo nat_self, nat_peer;
    int nat_config;               /* ours came from the config (not learnt) */
    int nat_sent;                 /* our NAT info went out with our candidates */
    nk_stun_client *stun2;
    int stun2_done;
    uint16_t host_port;           /* the main socket's port (preserving NATs) */
    nk__birthday bd;
};

/* agent.c: queues */
int nk__ag_queue_tx(nk_agent *a, const nk_addr *to, const uint8_t *p, size_t n);
int nk__ag_queue_tx_from(nk_agent *a, const nk_addr *from, const nk_addr *to, const uint8_t *p, size_t n);
int nk__ag_queue_signal(nk_agent *a, uint8_t type, const uint8_t *p, size_t n);
nk__evslot *nk__ag_queue_event(nk_agent *a, nk_agent_event_type type, size_t datalen);
void nk__ag_random(nk_agent *a, uint8_t *buf, size_t n);

/* agent_wire.c */
int nk__ag_derive_keys(nk_agent *a);
int nk__ag_check_write(nk_agent *a, const nk__check *c, uint8_t *buf, size_t cap);
int nk__ag_check_read(const nk_agent *a, const uint8_t *p, size_t n, nk__check *c);
int nk__ag_data_header(const nk_agent *a, uint8_t *buf, size_t cap);
int nk__ag_signal_write(nk_agent *a, const nk__sigmsg *m, uint8_t *buf, size_t cap);
int nk__ag_signal_read(const nk_agent *a, uint8_t type, const uint8_t *p, size_t n, nk__sigmsg *m);

/* agent_candidates.c */
int nk__ag_gather_start(nk_agent *a, int64_t now);
int nk__ag_stun_begin(nk_agent *a, int64_t now);
int nk__ag_stun_run(nk_agent *a, int64_t now, nk_stun_client **c, const nk_addr *servers, size_t n,
                    int64_t timeout_ms);
void nk__ag_regather(nk_agent *a, int64_t now);
int nk__ag_add_local(nk_agent *a, const nk_addr *addr, uint8_t type);
int nk__ag_add_remote(nk_agent *a, int64_t now, const nk_addr *addr, uint8_t type);
void nk__ag_stun_poll(nk_agent *a, int64_t now);
void nk__ag_stun6_poll(nk_agent *a, int64_t now);
void nk__ag_turn_pump(nk_agent *a, int64_t now);
void nk__ag_turn_shared_check(nk_agent *a, int64_t now);
void nk__ag_send_candidates(nk_agent *a, int64_t now, uint8_t type);
int nk__ag_on_signal(nk_agent *a, int64_t now, uint8_t type, const uint8_t *p, size_t n);
nk__pair *nk__ag_pair_find(nk_agent *a, uint16_t base, const nk_addr *remote);
nk__pair *nk__ag_pair_by_id(nk_agent *a, uint32_t id);

/* birthday.c */
void nk__bd_init(nk_agent *a, const nk_agent_config *cfg);
void nk__bd_free(nk_agent *a);
void nk__bd_stun_first(nk_agent *a, int64_t now, const nk_stun_binding_result *res);
int nk__bd_stun_input(nk_agent *a, int64_t now, const nk_addr *from, const uint8_t *p, size_t n);
void nk__bd_send_nat(nk_agent *a);
void nk__bd_on_signal(nk_agent *a, int64_t now, const nk__sigmsg *m);
int nk__bd_rx(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const nk__check *c);
int nk__bd_base_of(const nk_agent *a, const nk_addr *local);
const nk_addr *nk__bd_socket(const nk_agent *a, uint16_t base);
void nk__bd_on_valid(nk_agent *a, int64_t now, const nk__pair *pr);
void nk__bd_timer(nk_agent *a, int64_t now);
int64_t nk__bd_deadline(const nk_agent *a);
int nk__bd_poll_transmit(nk_agent *a, int64_t now, nk_transmit *out, uint8_t *buf, size_t cap);
nk__pair *nk__ag_add_pair(nk_agent *a, uint16_t base, const nk_addr *remote, uint8_t rtype);

/* agent_probe.c */
int nk__ag_rx_frame(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const uint8_t *p, size_t n);
int nk__ag_send_on_pair(nk_agent *a, const nk__pair *pr, const uint8_t *p, size_t n);
void nk__ag_probe(nk_agent *a, int64_t now, nk__pair *pr, uint8_t flags);
void nk__ag_checks_kick(nk_agent *a, int64_t now, int64_t pace_for, int64_t window);
void nk__ag_checks_timer(nk_agent *a, int64_t now);
void nk__ag_keepalive_timer(nk_agent *a, int64_t now);
int64_t nk__ag_checks_deadline(const nk_agent *a);

/* agent_path.c */
nk_path_kind nk__ag_pair_kind(const nk__pair *pr);
int nk__ag_pair_usable(const nk_agent *a, const nk__pair *pr);
void nk__ag_path_info(const nk_agent *a, uint32_t id, nk_path_info *out);
void nk__ag_select(nk_agent *a, int64_t now, uint32_t id);
void nk__ag_reselect(nk_agent *a, int64_t now);
void nk__ag_on_valid(nk_agent *a, int64_t now, nk__pair *pr);
void nk__ag_on_dead(nk_agent *a, int64_t now, nk__pair *pr);
void nk__ag_hub_available(nk_agent *a, int64_t now);
void nk__ag_path_timer(nk_agent *a, int64_t now);
int64_t nk__ag_path_deadline(const nk_agent *a);

#endif
