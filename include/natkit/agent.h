/*
 * natkit: the connectivity agent, sans-I/O. One nk_agent finds and keeps a
 * path to one peer.
 *
 * It gathers candidates (host addresses given by the driver, server-reflexive
 * ones from several STUN servers with failover, a relayed one from TURN),
 * trickles them to the peer through the hub (sealed: the hub can neither read
 * nor forge them), pairs and prioritises them, runs paced probes with
 * simultaneous punching timed on the measured hub RTT, confirms a path with a
 * three-way handshake (probe, answer, confirm), nominates the best path and
 * keeps it alive. Preference: direct, then TURN relay, then hub relay. While
 * on a relay it keeps probing and moves to a direct path as soon as one
 * works; when the selected path dies it fails over without losing the
 * caller's session.
 *
 * Probes are authenticated (sealed with the two identities' static keys and a
 * fresh nonce), so a spoofed packet can never steer the agent to another
 * address. The agent carries opaque datagrams for the layer above (the QUIC
 * connection) on whatever path is selected; it does not encrypt them itself.
 *
 * It never reads a clock, opens a socket or sleeps. Outputs:
 *   - poll_transmit: UDP datagrams (to the peer, STUN and TURN servers), all
 *     from the one UDP socket whose port the host candidates carry;
 *   - poll_signal: messages for the hub to deliver to the peer;
 *   - poll_event: path changes, data for the upper layer, failure.
 * See docs/internals/agent.md for states, timers and the wire format.
 */
#ifndef NATKIT_AGENT_H
#define NATKIT_AGENT_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/identity.h"
#include "natkit/stun_client.h"
#include "natkit/turn_client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest upper-layer datagram nk_agent_send carries (QUIC emits <= 1200 by default). */
#define NK_AGENT_MAX_DATA 1400

typedef enum nk_path_kind {
    NK_PATH_NONE = 0,
    NK_PATH_DIRECT = 1,  /* host/server-reflexive/peer-reflexive pair: UDP straight to the peer */
    NK_PATH_TURN = 2,    /* through a TURN relay (ours or the peer's) */
    NK_PATH_HUB = 3,     /* sealed packets relayed by the hub */
} nk_path_kind;

NK_API const char *nk_path_kind_name(nk_path_kind k); /* "direct", "turn", "hub", "none" */

typedef struct nk_agent_config {
    const nk_identity *identity;   /* ours (copied, wiped at free) */
    nk_peer_id peer;               /* the peer's ID */
    int controlling;               /* 1: the side that asked for the connection; it nominates */
    const nk_addr *host;           /* host candidates: local IPs with the UDP socket's port */
    size_t nhost;
    const nk_addr *stun;           /* STUN servers for server-reflexive candidates (failover) */
    size_t nstun;
    const nk_turn_client_config *turn; /* NULL: no relayed candidate (UDP transport to the server) */
    int64_t check_interval_ms;     /* pacing of probes (0: 20) */
    int64_t keepalive_ms;          /* keepalive on the selected path (0: 25000; at most 25000) */
    int keepalive_failures;        /* consecutive unanswered keepalives that kill a path (0: 3) */
    int64_t direct_retry_ms;       /* while on a relay, re-probe direct pairs this often (0: 5000) */
    int64_t connect_timeout_ms;    /* no path at all after this: FAILED (0: 30000) */
    nk_random_fn random;           /* nonces and tags; NULL: libsodium */
    void *random_ctx;
    /* Added (zero keeps the defaults): */
    const nk_addr *srflx;          /* server-reflexive addresses the driver already knows for this
                                      socket (e.g. from an earlier STUN run): offered at once */
    size_t nsrflx;
    /*
     * Instead of turn: an allocation the driver owns and shares among its agents (one
     * per socket and TURN server; a second allocation from the same socket is refused).
     * The driver feeds it the server's datagrams, runs its timers, sends what it polls,
     * and hands each DATA event to the agent nk_agent_peek() names, through
     * nk_agent_handle_relayed(). The agent asks it for permissions and channels and sends
     * through it; it never frees or releases it. Ignored when turn is set.
     */
    nk_turn_client *turn_shared;
    /*
     * Birthday probing (docs/internals/agent.md, "Birthday probing"). Our NAT's behaviour when
     * the driver knows it (from `natkit nat-type`, nk_nat_probe): nat_mapping (nk_nat_behaviour),
     * nat_ports (nk_port_allocation) and nat_port_delta. 0: the agent learns the mapping from two
     * STUN answers (two servers, or one server's RFC 5780 OTHER-ADDRESS). birthday_sockets: the
     * extra sockets it asks for when it is the hard side (0: 256; < 0: never probe).
     */
    int nat_mapping, nat_ports, nat_port_delta;
    int birthday_sockets;
} nk_agent_config;

typedef struct nk_path_info {
    nk_path_kind kind;
    uint32_t id;                   /* stable for the agent's lifetime; 0: none */
    nk_addr local;                 /* DIRECT: our address the peer sees (host/srflx); TURN: relayed */
    nk_addr remote;                /* the peer's address we send to (TURN: the peer's address as relayed) */
    int64_t rtt_ms;                /* last measured probe round trip (-1 unknown) */
} nk_path_info;

typedef enum nk_agent_event_type {
    NK_AGENT_EV_CANDIDATE = 1,     /* a local candidate was gathered: path.kind/local (informational) */
    NK_AGENT_EV_PATH,              /* the selected path changed (the first one: connected); path, prev */
    NK_AGENT_EV_DATA,              /* an upper-layer datagram arrived on path.id: data[0..len) */
    NK_AGENT_EV_FAILED,            /* no path could be found or kept; err says why */
    NK_AGENT_EV_STUN_FAILED,       /* no STUN server gave a mapped address (err: NK_ERR_TIMEOUT or
                                      the server's NK_ERR_STUN(code)); path.remote: the server (the
                                      first one when none answered). The agent goes on without it */
    NK_AGENT_EV_OPEN_SOCKETS,      /* birthday probing: open nsockets extra UDP sockets (the main one's
                                      family and local IP, any port) and report them with
                                      nk_agent_add_sockets (fewer, or none, is fine) */
    NK_AGENT_EV_CLOSE_SOCKETS,     /* close the extra sockets, all but keep (family NONE: all). The kept
                                      one carries a path now: close it when the agent is freed */
} nk_agent_event_type;

typedef struct nk_agent_event {
    nk_agent_event_type type;
    nk_path_info path;
    nk_path_info prev;             /* PATH: the path before (kind NONE for the first) */
    int err;
    const uint8_t *data;           /* DATA: valid until the next call into the agent */
    size_t len;
    size_t nsockets;               /* OPEN_SOCKETS */
    nk_addr keep;                  /* CLOSE_SOCKETS */
} nk_agent_event;

typedef struct nk_agent nk_agent;

NK_API int nk_agent_new(nk_agent **out, const nk_agent_config *cfg, int64_t now_ms);
NK_API void nk_agent_free(nk_agent *a);
/*
 * Ends the agent: no more checks, events or signals; a TURN allocation is released
 * (Refresh with lifetime 0, sent once: drain poll_transmit before nk_agent_free). Without
 * it the server keeps the allocation for its lifetime, and a new agent allocating from
 * the same socket is refused (437) until then.
 */
NK_API void nk_agent_close(nk_agent *a, int64_t now_ms);
/* Starts gathering; the controlling side also emits its connection request. */
NK_API int nk_agent_start(nk_agent *a, int64_t now_ms);
/* The hub's measured RTT, for timing simultaneous punching (call whenever it changes). */
NK_API void nk_agent_set_hub_rtt(nk_agent *a, int64_t rtt_ms);

/* A UDP datagram from the agent's socket. 0: consumed; NK_ERR_NOT_FOUND: not for this agent;
 * other negative: meant for this agent but dropped (counted in nk_agent_stats). */
NK_API int nk_agent_handle_datagram(nk_agent *a, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t n);
/*
 * A UDP datagram that arrived on the socket bound to local: one of the extra sockets
 * (NK_AGENT_EV_OPEN_SOCKETS) or, when local is NULL or no extra socket, the main one.
 * Transmits for an extra socket carry its address in nk_transmit.from (family NONE: the
 * main socket).
 */
NK_API int nk_agent_handle_datagram_on(nk_agent *a, int64_t now_ms, const nk_addr *local, const nk_addr *from,
                                       const uint8_t *p, size_t n);
/* The extra sockets the driver opened for an OPEN_SOCKETS event (n = 0: none could be): 0, or
 * NK_ERR_STATE (not waiting for them), NK_ERR_LIMIT (more than it asked for); on an error the
 * caller keeps the sockets and closes them. */
NK_API int nk_agent_add_sockets(nk_agent *a, int64_t now_ms, const nk_addr *local, size_t n);
/* Data a shared TURN allocation (cfg.turn_shared) received from peer: 0, or as above. */
NK_API int nk_agent_handle_relayed(nk_agent *a, int64_t now_ms, const nk_addr *peer, const uint8_t *p, size_t n);
/* A message the hub delivered from the peer (NK_HUB_T_CONNECT/CANDIDATE/RELAY/SIGNAL). */
NK_API int nk_agent_handle_signal(nk_agent *a, int64_t now_ms, uint8_t type, const uint8_t *p, size_t n);
/*
 * A remote candidate known without signalling (manual setups: the peer's
 * public IP:PORT exchanged by hand). Probing starts at once. Call
 * nk_agent_set_hub_up(a, now, 0) before nk_agent_start when there is no hub.
 */
NK_API int nk_agent_add_remote_candidate(nk_agent *a, int64_t now_ms, const nk_addr *addr);
/* The hub connection is gone (the hub path dies) or back (1). Call with 1 on every
 * (re)registration: signals queued while the hub was away are sent again. */
NK_API void nk_agent_set_hub_up(nk_agent *a, int64_t now_ms, int up);
NK_API void nk_agent_handle_timeout(nk_agent *a, int64_t now_ms);
NK_API int64_t nk_agent_next_deadline(const nk_agent *a);

/* The data of a DATA frame from the peer, without queueing it as an event: when p (from the
 * agent's socket) is a valid DATA frame on a known pair and no event is waiting (order is kept),
 * returns 0 with *data and *len pointing into p and *path the pair it came on, as the DATA event would
 * have said; else NK_ERR_UNSUPPORTED and nothing happened (give it to nk_agent_handle_datagram). */
NK_API int nk_agent_take_data(nk_agent *a, const nk_addr *from, const uint8_t *p, size_t n, nk_path_info *path,
                              const uint8_t **data, size_t *len);
/* Next UDP datagram to send from the agent's socket: 0, or NK_ERR_AGAIN. */
NK_API int nk_agent_poll_transmit(nk_agent *a, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap);
/* Next message for the hub to deliver to the peer: 0 (*type, *len set), or NK_ERR_AGAIN. */
NK_API int nk_agent_poll_signal(nk_agent *a, uint8_t *type, uint8_t *buf, size_t cap, size_t *len);
NK_API int nk_agent_poll_event(nk_agent *a, nk_agent_event *ev);

/*
 * Sends an upper-layer datagram on path_id (0: the selected path). It goes
 * out through poll_transmit (direct, TURN) or poll_signal (hub).
 * NK_ERR_STATE before any path exists, NK_ERR_NOT_FOUND for an unknown path,
 * NK_ERR_INVAL above NK_AGENT_MAX_DATA, NK_ERR_AGAIN when the output queue is full
 * (drain poll_transmit/poll_signal).
 */
NK_API int nk_agent_send(nk_agent *a, int64_t now_ms, uint32_t path_id, const uint8_t *data, size_t len);
/*
 * The same without a copy, for a datagram written straight into the caller's transmit buffer:
 * when path_id (0: the selected path) leaves from the agent's socket (a direct pair, or one to
 * the peer's TURN relay) and nothing of the agent's own is queued, the agent writes its header
 * at buf, calls fill(ctx, buf + header, NK_AGENT_MAX_DATA) for the datagram (its length; 0 or
 * less: nothing to send) and completes out as poll_transmit would. 0: send out/buf;
 * NK_ERR_AGAIN: fill gave nothing; NK_ERR_UNSUPPORTED: this path or moment needs nk_agent_send
 * (our own TURN allocation, the hub, queued output); NK_ERR_NOBUFS: cap has no room for the
 * header + NK_AGENT_MAX_DATA; other errors as nk_agent_send.
 */
typedef int (*nk_agent_fill_fn)(void *ctx, uint8_t *buf, size_t cap);
NK_API int nk_agent_send_in_place(nk_agent *a, uint32_t path_id, nk_transmit *out, uint8_t *buf, size_t cap,
                                  nk_agent_fill_fn fill, void *ctx);
/* The selected path (kind NONE before there is one). */
NK_API void nk_agent_selected(const nk_agent *a, nk_path_info *out);

/* Counters: what was sent, and every input dropped (never a crash or stall). */
typedef struct nk_agent_stats_t {
    uint64_t probes_sent, answers_sent, confirms_sent;
    uint64_t data_sent, data_received;
    uint64_t rx_malformed;         /* agent frames or signals that do not parse */
    uint64_t rx_auth_failed;       /* frames or signals that fail authentication (spoofed, modified) */
    uint64_t rx_unexpected;        /* authentic but stale/unmatched (old answers, confirms for nothing) */
    uint64_t rx_unknown_source;    /* data from an address with no pair */
    uint64_t dropped_limit;        /* candidates/pairs over the limits, full queues */
    uint64_t path_changes;
    uint64_t birthday_attempts;    /* birthday probing started (either side) */
    uint64_t birthday_probes;      /* its packets: the easy side's probes, the hard side's openers */
    uint64_t birthday_hits;        /* attempts that found a working port pair */
    uint8_t nat_mapping, peer_nat_mapping; /* nk_nat_behaviour as learnt/signalled (0 unknown) */
    uint8_t nat_ports;             /* nk_port_allocation as learnt (0 unknown) */
} nk_agent_stats_t;
NK_API void nk_agent_stats(const nk_agent *a, nk_agent_stats_t *out);

/*
 * For drivers that share one socket among many agents: which peer sent this
 * datagram (agent probes and data carry the sender's ID in clear)?
 * 0, or NK_ERR_NOT_FOUND for datagrams that are not agent frames (STUN/TURN
 * responses: offer those to every agent).
 */
NK_API int nk_agent_peek(const uint8_t *p, size_t n, nk_peer_id *sender);

#ifdef __cplusplus
}
#endif
#endif
