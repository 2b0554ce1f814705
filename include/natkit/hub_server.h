/*
 * natkit: nk_hub_server, the sans-I/O hub server core. The driver tells it about
 * connections (accept, bytes, close) and the time; it hands back bytes per
 * connection, events and its next deadline. It never reads a clock, opens a
 * socket or sleeps; challenges come from one injected random source.
 */
#ifndef NATKIT_HUB_SERVER_H
#define NATKIT_HUB_SERVER_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/hub_frame.h"
#include "natkit/identity.h"
#include "natkit/common.h" /* nk_random_fn */

#ifdef __cplusplus
extern "C" {
#endif

/* Upper bounds (ms) of the connect-time buckets in nk_hub_stats_t.report_connect_ms. */
#define NK_HUB_CONNECT_BOUNDS_MS {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}
#define NK_HUB_CONNECT_NBOUNDS 9

/* The default of nk_hub_server_config.full_retry_ms: a refused peer is told to come back in 5 s. */
#define NK_HUB_FULL_RETRY_MS 5000

/* The most nk_hub_server_config.forward_wait_ms can be: a paused peer hears an answer well before a hub
 * client's silence timeout (nk_hub_client_config.timeout_ms, 45 s) declares the hub gone. */
#define NK_HUB_FORWARD_WAIT_MAX_MS 15000

typedef struct nk_hub_stats_t {
    uint64_t accepted, rejected_full; /* connections */
    uint64_t closed;                  /* connections gone, for any reason */
    uint64_t registered;              /* successful registrations */
    uint64_t replaced;                /* registrations that displaced an older connection */
    uint64_t auth_failed;             /* bad signatures, wrong ID, replayed proofs */
    uint64_t malformed;               /* connections closed for malformed/unexpected/oversized frames */
    uint64_t idle_closed;             /* idle or registration timeouts */
    uint64_t overflow_closed;         /* control queue over its cap */
    uint64_t frames_in, frames_out;
    uint64_t routed;                  /* routed frames delivered */
    uint64_t unknown_peer;            /* routed frames to an ID not registered */
    uint64_t relay_dropped;           /* relay frames dropped for a slow reader */
    uint64_t pings;
    uint64_t bytes_in, bytes_out;
    uint64_t peers;                   /* registered now (gauge) */
    uint64_t conns;                   /* open now (gauge) */
    uint64_t relay_frames;            /* RELAY frames delivered (also in routed) */
    uint64_t relay_bytes;             /* their payload bytes */
    /* from REPORT frames (nk_hub_report): how peers' connections settled */
    uint64_t reports;
    uint64_t report_path[4];          /* by nk_path_kind: [0] unknown, [1] direct, [2] TURN, [3] hub relay */
    uint64_t report_connect_ms[NK_HUB_CONNECT_NBOUNDS + 1]; /* connect_ms per bucket of NK_HUB_CONNECT_BOUNDS_MS
                                                                (not cumulative); the last: above them */
    uint64_t report_connect_ms_sum;
    uint64_t report_mapping[4];       /* by nk_nat_behaviour: [0] unknown */
    uint64_t report_filtering[4];
    /* cluster (nk_hub_server_config.cluster) */
    uint64_t cluster_forwarded;       /* routed frames for peers not here, handed to the driver */
    uint64_t cluster_delivered;       /* frames from other hubs delivered to a peer here */
    uint64_t cluster_dropped;         /* RELAY frames not forwarded (the forward queue was over half
                                         full), or frames not delivered (over our max_payload) */
    /* limits per source (an IPv4 address or an IPv6 /64), docs/internals/hub.md */
    uint64_t rejected_per_ip;         /* connections refused at accept: the source held max_per_ip */
    uint64_t evicted;                 /* unregistered connections closed to make room (table full) */
    uint64_t register_timeouts;       /* closed without a registration within register_ms (also in idle_closed) */
    /* frames read and dropped without closing the connection (also in frames_in) */
    uint64_t ignored_reports;         /* REPORTs from a connection not registered (not in reports) */
    uint64_t ignored_unknown;         /* frames of an extension type (>= 0x80) this hub does not know */
    /* cluster backpressure (docs/internals/hub.md, "Backpressure across hubs") */
    uint64_t cluster_paused;          /* frames that found the forward queue full: their sender was paused */
    uint64_t cluster_expired;         /* frames answered UNKNOWN_PEER because forwarding stalled: the
                                         waiting frame of a sender paused forward_wait_ms, and every
                                         other cross-hub control frame until the driver takes one again */
    uint64_t nomem_closed;            /* closed (code NK_HUB_CLOSE_OVERFLOW) because memory for the
                                         connection's send or receive queue could not be had */
} nk_hub_stats_t;

typedef struct nk_hub_server_config {
    int max_conns;        /* open connections (0: 4096) */
    int max_peers;        /* registered peers (0: max_conns) */
    int64_t idle_ms;      /* close after this long without a frame (0: 60000) */
    int64_t register_ms;  /* unregistered connections (no REGISTER, the first frame a peer
                             sends) closed after this (0: 5000) */
    int max_per_ip;       /* connections per source, an IPv4 address or an IPv6 /64 (0: no
                             limit; nk_hub_service_options_init sets 64) */
    size_t queue_cap;     /* per-connection send queue hard cap in bytes (0: 256 KiB) */
    size_t relay_cap;     /* relay frames are dropped while the queue is above this (0: queue_cap / 2) */
    size_t max_payload;   /* routed payload limit (0 or more than NK_HUB_MAX_PAYLOAD: NK_HUB_MAX_PAYLOAD) */
    int64_t sweep_ms;     /* timer granularity for timeouts (0: 1000) */
    int64_t full_retry_ms; /* told to peers refused because the hub is full (CLOSE(8)'s retry-after
                              trailer): come back in this long (0: NK_HUB_FULL_RETRY_MS) */
    /*
     * Addresses peers may dial that differ from the accepting socket's own
     * (a hub behind port forwarding): proofs bound to one of these are
     * accepted too. Copied; at most NK_HUB_MAX_ADVERTISED.
     */
    const nk_addr *advertised;
    size_t n_advertised;
    nk_random_fn random;  /* challenges; NULL: libsodium randombytes_buf */
    void *random_ctx;
    /*
     * 1: one hub of a cluster. A routed frame for an ID not registered here is
     * queued for the driver (NK_HUB_SEV_FORWARD, nk_hub_server_poll_forward)
     * instead of answered UNKNOWN_PEER; the driver sends it to the peer's hub
     * or answers with nk_hub_server_unknown_peer. A registration is answered
     * REGISTERED only when the driver confirms it (nk_hub_server_confirm), once
     * the shared directory has it.
     */
    int cluster;
    size_t forward_cap;   /* bytes of frames waiting to be forwarded (0: queue_cap; at least one frame of
                             max_payload). RELAY frames are dropped above half of it; any other frame
                             that does not fit pauses its sender (NK_HUB_SEV_PAUSE) until it does */
    int64_t forward_wait_ms; /* the first sender paused this long: forwarding is stalled, every paused
                                sender goes on with its cross-hub control frames answered UNKNOWN_PEER,
                                and so are new ones until nk_hub_server_poll_forward gives a frame again
                                (0: 15000; at most NK_HUB_FORWARD_WAIT_MAX_MS) */
} nk_hub_server_config;

typedef struct nk_hub_server nk_hub_server;
typedef uint64_t nk_hub_conn_id; /* 0 is never a valid connection */

typedef enum nk_hub_server_event_type {
    NK_HUB_SEV_SEND = 1,     /* conn has bytes to send: call nk_hub_server_poll_transmit for it */
    NK_HUB_SEV_CLOSE,        /* close conn: send what is queued (best effort), close the socket, then
                                call nk_hub_server_conn_closed */
    NK_HUB_SEV_REGISTERED,   /* conn registered as peer (for logs; a cluster claims the ID) */
    NK_HUB_SEV_UNREGISTERED, /* peer is no longer registered on conn (closed or replaced); conn may be
                                gone already (user NULL) */
    NK_HUB_SEV_FORWARD,      /* cluster: frames for other hubs are queued: drain
                                nk_hub_server_poll_forward (conn 0) */
    NK_HUB_SEV_PAUSE,        /* cluster: conn's next frame waits for room in the forward queue: stop
                                reading conn (bytes given anyway are kept, up to queue_cap) */
    NK_HUB_SEV_RESUME,       /* conn goes on: read it again */
} nk_hub_server_event_type;

typedef struct nk_hub_server_event {
    nk_hub_server_event_type type;
    nk_hub_conn_id conn;
    void *user;              /* the driver's pointer given to nk_hub_server_accept */
    int code;                /* CLOSE: NK_HUB_CLOSE_* */
    nk_peer_id peer;         /* REGISTERED, UNREGISTERED */
} nk_hub_server_event;

NK_API void nk_hub_server_config_init(nk_hub_server_config *cfg);
NK_API int nk_hub_server_new(nk_hub_server **out, const nk_hub_server_config *cfg);
NK_API void nk_hub_server_free(nk_hub_server *s);

/*
 * A new transport connection: local is the address it was accepted on (bound
 * into registration proofs), remote the peer's. Queues the CHALLENGE.
 * NK_ERR_LIMIT: over max_conns (close the socket; nothing is kept).
 * NK_ERR_LIMIT too when remote's source already holds max_per_ip connections
 * (counted in rejected_per_ip). When max_conns are open and one of them has
 * not registered yet, the oldest such is closed (CLOSE event, code
 * NK_HUB_CLOSE_REGISTER_TIMEOUT, counted in evicted) and the new one accepted.
 */
NK_API int nk_hub_server_accept(nk_hub_server *s, int64_t now_ms, const nk_addr *local, const nk_addr *remote,
                                void *user, nk_hub_conn_id *out);
/* Bytes received on conn. 0, or NK_ERR_NOT_FOUND for an unknown/closing conn (ignored). The core keeps
 * what it cannot take yet (a paused conn, nk_hub_server_paused): give no more until it resumes. */
NK_API int nk_hub_server_handle_bytes(nk_hub_server *s, int64_t now_ms, nk_hub_conn_id conn, const uint8_t *p,
                                      size_t n);
/* The transport is gone (peer closed, error, or after a CLOSE event): frees conn. */
NK_API void nk_hub_server_conn_closed(nk_hub_server *s, nk_hub_conn_id conn);
/* Closes conn from the driver's side (e.g. shutdown); a CLOSE event follows. */
NK_API void nk_hub_server_close(nk_hub_server *s, nk_hub_conn_id conn, int code);
/*
 * The whole CLOSE frame (header included) for a connection nk_hub_server_accept refused with
 * NK_ERR_LIMIT, which the core keeps nothing of: code NK_HUB_CLOSE_FULL, its reason and the
 * retry-after hint full_retry_ms. Writes it into buf for the driver to send best effort;
 * returns its length, NK_ERR_NOBUFS or NK_ERR_INVAL.
 */
NK_API int nk_hub_server_full_close(const nk_hub_server *s, uint8_t *buf, size_t cap);
NK_API void nk_hub_server_handle_timeout(nk_hub_server *s, int64_t now_ms);
NK_API int64_t nk_hub_server_next_deadline(const nk_hub_server *s);
/* 0 and *ev filled, or NK_ERR_AGAIN. */
NK_API int nk_hub_server_poll_event(nk_hub_server *s, nk_hub_server_event *ev);
/*
 * Moves up to cap queued bytes of conn into buf: returns how many (0: none
 * queued) or NK_ERR_NOT_FOUND. A driver whose socket is full stops pulling;
 * the queue then grows, and relay frames for conn are dropped while it is
 * above relay_cap.
 */
NK_API int nk_hub_server_poll_transmit(nk_hub_server *s, nk_hub_conn_id conn, uint8_t *buf, size_t cap);
/* Bytes queued for conn (0 for unknown conns). */
NK_API size_t nk_hub_server_pending(const nk_hub_server *s, nk_hub_conn_id conn);
NK_API void nk_hub_server_stats(const nk_hub_server *s, nk_hub_stats_t *out);
/* 1 when peer is registered (for tests and stats). */
NK_API int nk_hub_server_has_peer(const nk_hub_server *s, const nk_peer_id *peer);

/* One registered peer, as nk_hub_server_peers reports it (no secrets: no challenge, no proof). */
typedef struct nk_hub_peer_info {
    nk_peer_id peer;
    nk_addr addr;                       /* the peer's transport address, as the hub sees it */
    int64_t registered_for_ms;          /* how long it has been registered (at now_ms) */
    uint64_t relay_frames_sent, relay_bytes_sent;         /* relay frames from it delivered to
                                                             their peer, and their payload bytes */
    uint64_t relay_frames_received, relay_bytes_received; /* relay frames delivered to it */
    uint64_t connects;                  /* connection requests (CONNECT) from it that were delivered */
    uint64_t reported_paths[4];         /* connections it reported (REPORT) by the path they settled
                                           on, by nk_path_kind: [1] direct, [2] TURN, [3] hub relay */
} nk_hub_peer_info;
/* The registered peers: fills up to cap of them into out (in no particular order) and returns
 * how many there are (may be more than cap; out NULL: just the count). */
NK_API size_t nk_hub_server_peers(const nk_hub_server *s, int64_t now_ms, nk_hub_peer_info *out, size_t cap);

/* ---- cluster (config.cluster = 1; docs/internals/hub.md, "Cluster") ---- */

/* A routed frame for a peer that is not registered here. */
typedef struct nk_hub_forward {
    uint8_t type;               /* CONNECT, CANDIDATE, RELAY or SIGNAL */
    nk_peer_id src;             /* the sender's verified ID (registered here) */
    nk_peer_id dst;
    const uint8_t *payload;     /* in the caller's buf */
    size_t len;
} nk_hub_forward;

/* The next frame to forward, its payload copied into buf (cap >= NK_HUB_MAX_PAYLOAD):
 * 0, or NK_ERR_AGAIN when none is queued. The room it leaves lets paused senders go on: their
 * waiting frames are handled here (events follow, NK_HUB_SEV_RESUME among them); one that stops
 * again waits forward_wait_ms from now_ms. */
NK_API int nk_hub_server_poll_forward(nk_hub_server *s, int64_t now_ms, nk_hub_forward *out, uint8_t *buf,
                                      size_t cap);
/*
 * A routed frame from another hub: type from src (verified there) to dst.
 * 0 delivered (or a RELAY dropped for a slow reader), NK_ERR_NOT_FOUND when dst
 * is not registered here, NK_ERR_LIMIT for a payload over this hub's max_payload
 * (counted in cluster_dropped), NK_ERR_INVAL for a type that is not routed or a
 * payload over NK_HUB_MAX_PAYLOAD.
 */
NK_API int nk_hub_server_deliver(nk_hub_server *s, int64_t now_ms, uint8_t type, const nk_peer_id *src,
                                 const nk_peer_id *dst, const uint8_t *payload, size_t len);
/* A frame src sent (of type) could not reach dst anywhere: src, if registered here, gets
 * UNKNOWN_PEER. 0 or NK_ERR_NOT_FOUND (src is not here). */
NK_API int nk_hub_server_unknown_peer(nk_hub_server *s, uint8_t type, const nk_peer_id *src,
                                      const nk_peer_id *dst);
/* 1 while conn is paused (NK_HUB_SEV_PAUSE .. NK_HUB_SEV_RESUME): a driver feeding bytes from a buffer
 * (a TLS record) stops there. */
NK_API int nk_hub_server_paused(const nk_hub_server *s, nk_hub_conn_id conn);
/* Cluster: conn's registration (NK_HUB_SEV_REGISTERED) is in the shared directory, so any hub
 * can reach it: the peer now gets REGISTERED (held back until then). 0 or NK_ERR_NOT_FOUND. */
NK_API int nk_hub_server_confirm(nk_hub_server *s, nk_hub_conn_id conn);
/* Ends peer's registration here: its connection gets CLOSE(code) with code's reason (and a
 * CLOSE event with code). The cluster passes NK_HUB_CLOSE_REPLACED (it registered at another hub
 * since), the only code counted in `replaced`. 0, NK_ERR_NOT_FOUND, or NK_ERR_INVAL (code
 * outside 0..65535: the CLOSE carries a u16). */
NK_API int nk_hub_server_drop_peer(nk_hub_server *s, const nk_peer_id *peer, int code);

#ifdef __cplusplus
}
#endif
#endif
