/*
 * natkit: peer-to-peer connections by peer ID.
 *
 * An nk_node is this host's end: one identity, one UDP socket (whose
 * addresses are the host candidates), one hub connection, and any number of
 * connections to other peers. Each connection (nk_conn) is a connectivity
 * agent (include/natkit/agent.h: finds and keeps the best path — direct,
 * TURN or hub) under a QUIC connection (include/natkit/quic.h: TLS 1.3 with
 * both peers' Ed25519 IDs, streams with congestion and flow control,
 * unreliable datagrams). The node glues them: QUIC's datagrams ride the
 * agent's selected path, so a path change moves a live connection without
 * losing a byte; an incoming connection request creates a connection.
 *
 * What a connection carries:
 * - streams (nk_conn_stream_*): ordered byte streams with backpressure,
 *   half-close and reset, opened by either side;
 * - messages (nk_conn_send / nk_conn_recv): reliable, ordered, whole; each
 *   side sends its messages on its first stream (the client's is stream 0,
 *   the server's stream 1), framed as a u32 big-endian length and the bytes;
 * - datagrams (nk_conn_datagram_*): unreliable, unordered (RFC 9221).
 *
 * Sans-I/O like every natkit core: datagrams, hub bytes and the time go in;
 * datagrams, hub bytes, events and the next deadline come out. The bundled
 * driver (nk_node_driver, natkit/node_driver.h) runs it on a UDP socket and a
 * hub link, and reports events through a callback.
 */
#ifndef NATKIT_NODE_H
#define NATKIT_NODE_H

#include "natkit/addr.h"
#include "natkit/agent.h"
#include "natkit/common.h"
#include "natkit/hub_client.h"
#include "natkit/identity.h"
#include "natkit/turn_client.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_NODE_MAX_ADDRS 16
#define NK_NODE_MAX_HUBS  8
#define NK_CONN_MAX_MESSAGE (1024 * 1024) /* largest message nk_conn_send takes */

typedef struct nk_node_config {
    const nk_identity *identity;         /* required (copied) */
    nk_addr hub;                         /* the hub (family NONE: no hub; manual connections only) */
    nk_addr hubs[NK_NODE_MAX_HUBS];      /* several hubs, tried in turn on each (re)connection attempt
                                            (nhubs 0: hub alone); hub is then ignored */
    size_t nhubs;
    nk_addr host[NK_NODE_MAX_ADDRS];     /* host candidates: local IPs with the UDP socket's port */
    size_t nhost;
    nk_addr stun[NK_NODE_MAX_ADDRS];     /* STUN servers (failover in order) */
    size_t nstun;
    nk_addr turn;                        /* TURN server (family NONE: none) */
    const char *turn_user, *turn_pass;   /* long-term credentials for it (copied) */
    int accept;                          /* 1: accept incoming connection requests */
    size_t max_conns;                    /* 0: 128 */
    int64_t keepalive_ms;                /* agent keepalive on the selected path (0: agent default) */
    int64_t settle_ms;                   /* how long a new connection waits for a direct or TURN path
                                            before it reports "connected" on the hub relay (0: 4000) */
    nk_random_fn random;                 /* NULL: libsodium */
    void *random_ctx;
    int cc;                              /* congestion control of every connection: NK_QUIC_CC_*
                                            (natkit/quic.h; 0: CUBIC, NK_QUIC_CC_BBR, NK_QUIC_CC_RENO) */
    int nat_mapping, nat_filtering;      /* this host's NAT behaviour if known (nk_nat_behaviour,
                                            natkit/nat_probe.h; 0: unknown): told to the hub with the
                                            path and connect time of each connection (a REPORT frame); a
                                            known nat_mapping also spares the agent learning it */
    int birthday_sockets;                /* birthday probing (agent.md): extra sockets a connection asks
                                            for when its NAT is the hard side (0: 256; < 0: never). A
                                            driver that opens none just leaves the connection relayed */
} nk_node_config;

typedef struct nk_node nk_node;
typedef struct nk_conn nk_conn;

typedef enum nk_node_event_type {
    NK_NODE_EV_REGISTERED = 1,  /* registered at the hub; addr: how the hub sees us */
    NK_NODE_EV_HUB_CLOSED,      /* the hub connection is over; err/reason */
    NK_NODE_EV_INCOMING,        /* a peer asked to connect; conn created (accept mode) */
    NK_NODE_EV_CONNECTED,       /* conn: QUIC up on path; rtt_ms, connect_ms */
    NK_NODE_EV_PATH_CHANGED,    /* conn: path moved (prev -> path) */
    NK_NODE_EV_READABLE,        /* conn: nk_conn_recv has a message (drain it until NK_ERR_AGAIN;
                                   the next READABLE comes after that) */
    NK_NODE_EV_DISCONNECTED,    /* conn: over (err, reason; app_error: the peer's code when it closed,
                                   err NK_ERR_CLOSED); free it with nk_conn_close or node free */
    NK_NODE_EV_WRITABLE,        /* conn: nk_conn_send said NK_ERR_AGAIN before and has room now */
    NK_NODE_EV_STREAM_OPENED,   /* conn: the peer opened stream_id */
    NK_NODE_EV_STREAM_READABLE, /* conn: nk_conn_stream_read(stream_id) has bytes or the FIN (read
                                   until NK_ERR_AGAIN; the next event comes after that) */
    NK_NODE_EV_STREAM_WRITABLE, /* conn: stream_id has room again after a short write */
    NK_NODE_EV_STREAM_FINISHED, /* conn: the peer's FIN on stream_id was read */
    NK_NODE_EV_STREAM_RESET,    /* conn: the peer reset stream_id or asked us to stop (app_error) */
    NK_NODE_EV_DATAGRAM,        /* conn: nk_conn_datagram_read has datagrams (read until NK_ERR_AGAIN) */
    NK_NODE_EV_WARNING,         /* a STUN or TURN server did not work; the node goes on without it
                                   (fewer paths). addr: the server; err: NK_ERR_TIMEOUT (no answer),
                                   NK_ERR_STUN(401) (credentials refused), ...; reason: what it means.
                                   Once per server kind (STUN, TURN) */
    NK_NODE_EV_HUB_RETRY,       /* no hub now (an attempt failed or the connection ended: reason):
                                   the next attempt goes to hub in retry_ms; attempt: how many in a row;
                                   err: NK_ERR_SYSTEM when the transport could not be opened at all
                                   (sys_errno: the system's reason, if any), else NK_ERR_CLOSED */
    NK_NODE_EV_HUB_FAILED,      /* given up on the hubs for good (reason): none answered like a natkit
                                   hub (hub: the last one tried), or one refused us for good */
    NK_NODE_EV_OPEN_SOCKETS,    /* for the driver (birthday probing): conn wants nsockets more UDP
                                   sockets (the main one's family and IP, any port); open them and
                                   report them with nk_conn_add_sockets. Their datagrams go in with
                                   nk_node_handle_datagram_on; a transmit whose from is set leaves
                                   from the extra socket bound there */
    NK_NODE_EV_CLOSE_SOCKET,    /* for the driver: close the extra socket bound to addr (conn may be
                                   NULL: the connection is gone) */
} nk_node_event_type;

typedef struct nk_node_event {
    nk_node_event_type type;
    nk_conn *conn;
    nk_peer_id peer;
    nk_path_info path, prev;
    nk_addr addr;
    int64_t rtt_ms;
    int64_t connect_ms;         /* CONNECTED: since the connection was created */
    int err;
    const char *reason;         /* text, valid until the connection is closed (nk_conn_close) or the
                                   node freed; DISCONNECTED by a peer that gave a reason phrase
                                   (nk_conn_close_ex): "peer closed the connection: PHRASE" */
    nk_addr hub;                /* REGISTERED, HUB_CLOSED, HUB_RETRY, HUB_FAILED: which hub */
    int64_t retry_ms;           /* HUB_RETRY: the next attempt in this long */
    int sys_errno;              /* HUB_RETRY: errno of the failed dial (ECONNREFUSED, ...), else 0 */
    unsigned attempt;           /* HUB_RETRY: attempts without a registration so far (1, 2, ...) */
    int64_t stream_id;          /* STREAM_* events (else -1) */
    uint64_t app_error;         /* STREAM_RESET, DISCONNECTED: the peer's code */
    size_t nsockets;            /* OPEN_SOCKETS */
} nk_node_event;

NK_API int nk_node_new(nk_node **out, const nk_node_config *cfg, int64_t now_ms);
NK_API void nk_node_free(nk_node *n);
/* Ends the node's TURN allocation before it goes: a Refresh with lifetime 0 comes out of the
 * next nk_node_poll_transmit. Keep driving the node (datagrams in, timeouts, transmits out) until
 * nk_node_turn_released says 1, or about a second has passed, then free it: the TURN client
 * retransmits the Refresh (RTO from the RTT it measured, at least 50 ms) and retries it after a
 * 438 (the nonce went stale while the process ran). Without it the server keeps the allocation
 * for its lifetime (10 min) and counts it against the user's quota. nk_node_driver_free sends it
 * once without waiting when nobody did. An Allocate still in flight is ended as soon as it
 * succeeds. 0, or NK_ERR_STATE when there is no allocation to end (none asked for, failed,
 * already ended). */
NK_API int nk_node_release_turn(nk_node *n, int64_t now_ms);
/* 0 while the release nk_node_release_turn started is under way; 1 once it is over (the server
 * confirmed it, refused it for good, or the TURN client's retransmissions ran out), and when
 * there is nothing to release (no TURN server, not allocated, not asked to release). */
NK_API int nk_node_turn_released(const nk_node *n);

/* The hub client core, for the transport driver (nk_hub_link_pump). NULL without a hub. */
NK_API nk_hub_client *nk_node_hub_client(nk_node *n);
/* Call after the hub transport moved bytes (or connected: starts registration). */
NK_API void nk_node_handle_hub(nk_node *n, int64_t now_ms);

/*
 * Hub reconnection. The node keeps a schedule: after any loss (close, error, idle timeout, a
 * refusal such as "hub full") it waits (backoff 0.5 s doubling to 30 s, +-25 %; a full hub's
 * retry-after hint), then asks its driver to dial the next hub of the list. The driver polls
 * nk_node_hub_dial every turn (no hub transport open): 0 gives the hub to open a transport to now;
 * once it is open, nk_node_hub_connected starts registration (then feed the transport's bytes to
 * nk_node_hub_client and call nk_node_handle_hub as usual); one that cannot be opened is reported
 * with nk_node_hub_dial_failed. A driver that opened the transport by itself may still just call
 * nk_node_handle_hub (it registers a client that is idle). Connections carry on meanwhile; the hub relay comes back with the hub.
 */
typedef enum nk_node_hub_state {
    NK_NODE_HUB_NONE = 0,       /* no hub configured */
    NK_NODE_HUB_CONNECTING,     /* a transport is being opened, or registration runs */
    NK_NODE_HUB_REGISTERED,
    NK_NODE_HUB_RECONNECTING,   /* no hub now: waiting to dial the next (or dialing is due) */
    NK_NODE_HUB_FAILED,         /* given up (NK_NODE_EV_HUB_FAILED) */
} nk_node_hub_state;
/* The state, and (hub non-NULL) the hub it is registered at / dialing / dials next. */
NK_API nk_node_hub_state nk_node_hub_status(const nk_node *n, nk_addr *hub);
/* 0 and *hub: open a transport to it now. NK_ERR_AGAIN: not now (nk_node_next_deadline wakes the
 * driver in time); NK_ERR_STATE: no hub, one is open already, or given up. */
NK_API int nk_node_hub_dial(nk_node *n, int64_t now_ms, nk_addr *hub);
/* The transport nk_node_hub_dial asked for is open (TCP connected, TLS done): registration starts. */
NK_API void nk_node_hub_connected(nk_node *n, int64_t now_ms);
/* The transport nk_node_hub_dial asked for could not be opened (why: e.g. "Connection refused";
 * sys_errno: the system's error number when there is one, else 0; HUB_RETRY carries it). */
NK_API void nk_node_hub_dial_failed(nk_node *n, int64_t now_ms, const char *why, int sys_errno);

/* Starts a connection to peer through the hub (NK_ERR_STATE without one). */
NK_API int nk_node_connect(nk_node *n, int64_t now_ms, const nk_peer_id *peer, nk_conn **out);

/*
 * Connects to peer at a known address, without a hub (both sides call this
 * with each other's public IP:PORT, started within a few seconds). The
 * lower peer ID starts the handshake, so both sides can run the same thing.
 */
NK_API int nk_node_connect_direct(nk_node *n, int64_t now_ms, const nk_peer_id *peer, const nk_addr *addr,
                                  nk_conn **out);

/* A datagram from the node's UDP socket. 0: consumed; NK_ERR_NOT_FOUND: nobody's. */
NK_API int nk_node_handle_datagram(nk_node *n, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t len);
/* The same for a datagram that arrived on an extra socket (NK_NODE_EV_OPEN_SOCKETS) bound to local. */
NK_API int nk_node_handle_datagram_on(nk_node *n, int64_t now_ms, const nk_addr *local, const nk_addr *from,
                                      const uint8_t *p, size_t len);
/* The extra sockets the driver opened for NK_NODE_EV_OPEN_SOCKETS (n = 0: none). On an error the
 * driver closes them itself; else each is closed when a NK_NODE_EV_CLOSE_SOCKET names it. */
NK_API int nk_conn_add_sockets(nk_conn *c, int64_t now_ms, const nk_addr *local, size_t n);
NK_API void nk_node_handle_timeout(nk_node *n, int64_t now_ms);
NK_API int64_t nk_node_next_deadline(const nk_node *n);
/* Optional: the current time in microseconds on the same clock as now_ms, given before the calls
 * that take now_ms (a driver with a fine clock). QUIC then measures sub-millisecond RTTs and
 * paces by them; without it, times are whole milliseconds. */
NK_API void nk_node_set_now_us(nk_node *n, int64_t now_us);
NK_API int nk_node_poll_transmit(nk_node *n, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap);
NK_API int nk_node_poll_event(nk_node *n, nk_node_event *ev);
NK_API size_t nk_node_conn_count(const nk_node *n);
/* This node's own peer ID. */
NK_API const nk_peer_id *nk_node_id(const nk_node *n);
/* Walks the node's connections: prev NULL gives the first, then each call the next one, NULL
 * after the last. Connections the user closed (nk_conn_close) are skipped. Do not create or
 * free connections during a walk (call no other nk_node/nk_conn function but getters). */
NK_API nk_conn *nk_node_conn_next(nk_node *n, const nk_conn *prev);

typedef struct nk_node_stats_t {
    size_t conns;               /* connections, those closed by the user and still finishing included */
    size_t events_queued;       /* events waiting for nk_node_poll_event */
    uint64_t events_dropped;    /* events lost because the queue could not grow (out of memory, or
                                   4 Mi events not polled): 0 unless something is badly wrong */
} nk_node_stats_t;
NK_API void nk_node_stats(const nk_node *n, nk_node_stats_t *st);

/*
 * Messages. nk_conn_send queues one whole message (len <= NK_CONN_MAX_MESSAGE) for
 * reliable, ordered delivery: 0, or NK_ERR_AGAIN when there is no room now (nothing was
 * taken; a NK_NODE_EV_WRITABLE event follows when there is), NK_ERR_LIMIT when too long,
 * NK_ERR_CLOSED once the connection is over. It never drops a message it took. Before
 * QUIC is up, up to 256 KiB of messages wait in the connection.
 */
NK_API int nk_conn_send(nk_conn *c, int64_t now_ms, const uint8_t *msg, size_t len);
/* Sends msg to every connected peer; returns to how many it was queued. */
NK_API int nk_node_broadcast(nk_node *n, int64_t now_ms, const uint8_t *msg, size_t len);
/* Bytes of messages sent (nk_conn_send) and not yet acknowledged by the peer, framing included:
 * 0 when the peer has everything. */
NK_API size_t nk_conn_unacked(const nk_conn *c);
/* The next whole message: its length, NK_ERR_AGAIN when none is complete yet, NK_ERR_NOBUFS when
 * cap is smaller than it (it stays; NK_CONN_MAX_MESSAGE always fits). */
NK_API int nk_conn_recv(nk_conn *c, uint8_t *buf, size_t cap);
NK_API const nk_peer_id *nk_conn_peer(const nk_conn *c);
NK_API void nk_conn_path(const nk_conn *c, nk_path_info *out);
NK_API int nk_conn_is_connected(const nk_conn *c);
/* 1 when this end is the QUIC client (nk_node_connect; the lower peer ID with
 * nk_node_connect_direct), 0 when it is the server. */
NK_API int nk_conn_is_client(const nk_conn *c);

/*
 * Streams: bidirectional byte streams, any number, either side may open them (user
 * streams are numbered after the two message streams: the client's 4, 8, ..., the
 * server's 5, 9, ...). Stream IDs of the message streams are refused (NK_ERR_INVAL).
 */
/* Opens a stream: 0 and *id; NK_ERR_STATE before QUIC is up, NK_ERR_AGAIN when the peer's
 * limit of concurrent streams is reached (it grows as streams close: retry later). */
NK_API int nk_conn_stream_open(nk_conn *c, int64_t *id);
/* Copies up to n bytes into the stream: how many it took (0..n; fewer than n: a
 * NK_NODE_EV_STREAM_WRITABLE event follows when there is room), NK_ERR_AGAIN when none fit,
 * NK_ERR_STATE after shutdown or reset, NK_ERR_NOT_FOUND. Never drops what it took. */
NK_API int nk_conn_stream_write(nk_conn *c, int64_t id, const uint8_t *p, size_t n);
/* Bytes read (> 0), 0 at the peer's FIN, NK_ERR_AGAIN when nothing is there yet (a
 * STREAM_READABLE event follows), NK_ERR_CLOSED after the peer reset it, NK_ERR_NOT_FOUND. */
NK_API int nk_conn_stream_read(nk_conn *c, int64_t id, uint8_t *buf, size_t cap);
/* Ends our direction: FIN after the bytes written. */
NK_API int nk_conn_stream_shutdown(nk_conn *c, int64_t id);
/* Abandons the stream both ways (RESET_STREAM and STOP_SENDING with code). */
NK_API int nk_conn_stream_reset(nk_conn *c, int64_t id, uint64_t code);
/* Bytes written to the stream and not yet acknowledged by the peer. */
NK_API size_t nk_conn_stream_unacked(const nk_conn *c, int64_t id);

/*
 * Unreliable datagrams (QUIC DATAGRAM, RFC 9221): may be lost, never retransmitted.
 * send: 0, NK_ERR_LIMIT above nk_conn_datagram_max, NK_ERR_AGAIN when the queue is full,
 * NK_ERR_STATE before QUIC is up. read: the length, NK_ERR_AGAIN, NK_ERR_NOBUFS (it stays).
 * max: the largest datagram payload now (0 before QUIC is up).
 */
NK_API int nk_conn_datagram_send(nk_conn *c, const uint8_t *p, size_t n);
NK_API int nk_conn_datagram_read(nk_conn *c, uint8_t *buf, size_t cap);
NK_API size_t nk_conn_datagram_max(const nk_conn *c);

/* TLS exporter of the connection's QUIC handshake (RFC 8446 7.5): both ends get the same len
 * bytes for label and context, different for every connection. NK_ERR_STATE before QUIC is up. */
NK_API int nk_conn_export(nk_conn *c, const char *label, const uint8_t *ctx, size_t ctx_len, uint8_t *out,
                          size_t len);

typedef struct nk_conn_stats_t {
    uint32_t tx_path_id;        /* the agent path id the last QUIC datagram went out on (0: none yet) */
    uint64_t tx_datagrams;      /* QUIC datagrams handed to the agent */
    uint64_t rx_datagrams;      /* QUIC datagrams from the agent */
    uint64_t tx_dropped;        /* QUIC datagrams the agent refused (no path yet): QUIC resends */
    int64_t srtt_us;            /* QUIC's smoothed RTT (0: no sample yet) */
    uint64_t cwnd, bytes_in_flight;
    size_t quic_mem_bytes;      /* heap the QUIC connection holds: ngtcp2 and natkit's stream buffers
                                   (GnuTLS's session not included; nk_quic_stats_t.mem_bytes) */
    uint64_t tx_bytes, rx_bytes;        /* QUIC's UDP payload bytes out / in, on every path (headers,
                                           acknowledgements and resends included) */
    uint64_t stream_bytes_sent;         /* stream bytes sent, each counted once (message streams included) */
    uint64_t stream_bytes_read;         /* stream bytes the application read (message streams included) */
    size_t streams;                     /* user streams open now (the two message streams not counted) */
    int64_t age_ms;                     /* since the connection was created, at the node's latest time */
    uint64_t probes_sent;               /* the agent's connectivity checks sent (PROBEs: checks, triggered
                                           checks and keepalives; nk_agent_stats_t.probes_sent) */
    uint64_t birthday_probes;           /* birthday probing's packets (the easy side's probes, the hard
                                           side's openers; nk_agent_stats_t.birthday_probes) */
} nk_conn_stats_t;
NK_API void nk_conn_stats(const nk_conn *c, nk_conn_stats_t *st);

/* Closes the connection and frees it: bytes already sent are given time to be acknowledged
 * (up to 3 s), then the QUIC CONNECTION_CLOSE goes out (the peer sees DISCONNECTED). No event
 * about c comes after this call. */
NK_API void nk_conn_close(nk_conn *c, int64_t now_ms);
/* The same, telling the peer why: its CONNECTION_CLOSE carries app_error (an application code; 1 is
 * the node's own, for a broken message framing) and reason (a short phrase, at most
 * NK_QUIC_CLOSE_REASON_MAX = 40 bytes, or NULL), which the peer's DISCONNECTED reports (app_error,
 * and reason "peer closed the connection: REASON"). */
NK_API void nk_conn_close_ex(nk_conn *c, int64_t now_ms, uint64_t app_error, const char *reason);

#ifdef __cplusplus
}
#endif
#endif
