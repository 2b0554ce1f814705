/*
 * natkit: the hub. Peers keep one TCP (or TLS) connection to a hub, register
 * under their peer ID by signing a hub challenge, and then exchange signalling
 * (connection requests, candidates) and, as the last resort, sealed relay
 * packets with other registered peers by ID. The hub tags everything it
 * delivers with the sender's verified ID; it never reads the payloads.
 *
 * Three layers (docs/internals/hub.md has the wire protocol):
 *
 *  - the frame codec (nk_hub_frame_*): bounds-checked, used by both cores;
 *  - nk_hub_server: the sans-I/O server core. The driver tells it about
 *    connections (accept, bytes, close) and the time; it hands back bytes
 *    per connection, events and its next deadline;
 *  - nk_hub_client: the sans-I/O client core for one hub connection;
 *  - drivers: nk_hub_service (libuv server, TCP and TLS) and nk_hub_link (a
 *    non-blocking TCP/TLS connection feeding a client core from any poll loop).
 *
 * No core reads a clock, opens a socket or sleeps; challenges come from one
 * injected random source (libsodium by default).
 */
#ifndef NATKIT_HUB_H
#define NATKIT_HUB_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/identity.h"
#include "natkit/stun_client.h" /* nk_random_fn, NK_DEADLINE_NONE */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire protocol ----------------------------------------------------------
 * A stream of frames: type u8 | flags u8 (0; ignored) | length u16 | body.
 * Integers are big-endian. See docs/internals/hub.md for every body.
 */
#define NK_HUB_VERSION         1
#define NK_HUB_HEADER_SIZE     4
#define NK_HUB_CHALLENGE_SIZE  32
#define NK_HUB_MAX_PAYLOAD     2048 /* largest candidate/request/relay payload */
#define NK_HUB_MAX_BODY        (NK_PEER_ID_SIZE + NK_HUB_MAX_PAYLOAD)
#define NK_HUB_MAX_FRAME       (NK_HUB_HEADER_SIZE + NK_HUB_MAX_BODY)
#define NK_HUB_MAX_REASON      128
#define NK_HUB_MAX_ADVERTISED  8
#define NK_HUB_CONTEXT         "natkit-hub-register-v1" /* first bytes of the signed message */

enum {
    /* hub -> peer */
    NK_HUB_T_CHALLENGE = 0x01,  /* version u8 | challenge[32] */
    NK_HUB_T_REGISTERED = 0x03, /* observed address (family u8, port u16, ip[16]) | max_payload u16 | idle_ms u32 */
    NK_HUB_T_UNKNOWN_PEER = 0x04, /* type u8 (of the frame not delivered) | peer id[32] */
    /* peer -> hub */
    NK_HUB_T_REGISTER = 0x02,   /* version u8 | peer id[32] | signature[64] */
    /* routed: peer -> hub: dst id[32] | payload;  hub -> peer: src id[32] | payload */
    NK_HUB_T_CONNECT = 0x10,    /* a connection request */
    NK_HUB_T_CANDIDATE = 0x11,  /* candidates (opaque to the hub) */
    NK_HUB_T_RELAY = 0x12,      /* a sealed relay packet (dropped first under backpressure) */
    NK_HUB_T_SIGNAL = 0x13,     /* any other signalling (opaque) */
    /* both ways */
    NK_HUB_T_PING = 0x20,       /* token[8]; answered with PONG carrying the same token */
    NK_HUB_T_PONG = 0x21,
    NK_HUB_T_CLOSE = 0x7f,      /* code u16 | reason (UTF-8, <= 128 bytes); then the sender closes */
    /* 0x80..0xff: extensions; receivers ignore types they do not know in this range */
};

/* Close codes (CLOSE frames, NK_HUB_EV_CLOSED). */
enum {
    NK_HUB_CLOSE_NORMAL = 0,
    NK_HUB_CLOSE_PROTOCOL = 1,        /* malformed or unexpected frame */
    NK_HUB_CLOSE_TOO_LARGE = 2,       /* frame over the size limit */
    NK_HUB_CLOSE_VERSION = 3,         /* unsupported protocol version */
    NK_HUB_CLOSE_AUTH = 4,            /* registration proof did not verify */
    NK_HUB_CLOSE_REPLACED = 5,        /* the same ID registered on another connection */
    NK_HUB_CLOSE_IDLE = 6,            /* nothing received within the idle timeout */
    NK_HUB_CLOSE_REGISTER_TIMEOUT = 7,/* no registration in time */
    NK_HUB_CLOSE_FULL = 8,            /* hub at its peer limit */
    NK_HUB_CLOSE_OVERFLOW = 9,        /* the peer does not read: control queue over its cap */
    NK_HUB_CLOSE_SHUTDOWN = 10,       /* hub stopping */
    NK_HUB_CLOSE_NOT_REGISTERED = 11, /* routed frame before registration */
};
NK_API const char *nk_hub_close_reason(int code);

/* A decoded frame: body points into the input. */
typedef struct nk_hub_frame {
    uint8_t type;
    uint8_t flags;
    const uint8_t *body;
    size_t len;
} nk_hub_frame;

/*
 * Parses the frame at the start of p[0..n). Returns the frame's total size
 * (> 0), 0 when more bytes are needed, or NK_ERR_LIMIT when its body is over
 * max_body. Framing only: bodies are checked by nk_hub_frame_check.
 */
NK_API int nk_hub_frame_parse(const uint8_t *p, size_t n, size_t max_body, nk_hub_frame *f);
/* 0 when the body of a known type has the right shape, else NK_ERR_MALFORMED; NK_ERR_NOT_FOUND for unknown types. */
NK_API int nk_hub_frame_check(const nk_hub_frame *f);
/* Writes header + body; returns the frame size or NK_ERR_NOBUFS/NK_ERR_INVAL. */
NK_API int nk_hub_frame_write(uint8_t *buf, size_t cap, uint8_t type, const uint8_t *body, size_t len);
/* Writes a routed frame: id (dst or src) | payload. */
NK_API int nk_hub_frame_write_routed(uint8_t *buf, size_t cap, uint8_t type, const nk_peer_id *id,
                                     const uint8_t *payload, size_t len);
/* 1 for CONNECT, CANDIDATE, RELAY, SIGNAL. */
NK_API int nk_hub_type_is_routed(uint8_t type);

/*
 * The message a peer signs to register: NK_HUB_CONTEXT | 0x00 | version u8 |
 * challenge[32] | hub address (family u8, port u16, ip[16]) | peer id[32].
 * hub is the address the peer connected to and the hub accepted on, so a
 * proof made for one hub connection is worthless on any other connection or
 * hub. Returns the length written (cap >= NK_HUB_PROOF_MSG_SIZE).
 */
#define NK_HUB_PROOF_MSG_SIZE (sizeof(NK_HUB_CONTEXT) + 1 + NK_HUB_CHALLENGE_SIZE + 19 + NK_PEER_ID_SIZE)
NK_API int nk_hub_proof_message(uint8_t *buf, size_t cap, const uint8_t challenge[NK_HUB_CHALLENGE_SIZE],
                                const nk_addr *hub, const nk_peer_id *id);

/* ---- server core -------------------------------------------------------------- */

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
} nk_hub_stats_t;

typedef struct nk_hub_server_config {
    int max_conns;        /* open connections (0: 4096) */
    int max_peers;        /* registered peers (0: max_conns) */
    int64_t idle_ms;      /* close after this long without a frame (0: 60000) */
    int64_t register_ms;  /* unregistered connections closed after this (0: 10000) */
    size_t queue_cap;     /* per-connection send queue hard cap in bytes (0: 256 KiB) */
    size_t relay_cap;     /* relay frames are dropped while the queue is above this (0: queue_cap / 2) */
    size_t max_payload;   /* routed payload limit (0 or more than NK_HUB_MAX_PAYLOAD: NK_HUB_MAX_PAYLOAD) */
    int64_t sweep_ms;     /* timer granularity for timeouts (0: 1000) */
    /*
     * Addresses peers may dial that differ from the accepting socket's own
     * (a hub behind port forwarding): proofs bound to one of these are
     * accepted too. Copied; at most NK_HUB_MAX_ADVERTISED.
     */
    const nk_addr *advertised;
    size_t n_advertised;
    nk_random_fn random;  /* challenges; NULL: libsodium randombytes_buf */
    void *random_ctx;
} nk_hub_server_config;

typedef struct nk_hub_server nk_hub_server;
typedef uint64_t nk_hub_conn_id; /* 0 is never a valid connection */

typedef enum nk_hub_server_event_type {
    NK_HUB_SEV_SEND = 1,     /* conn has bytes to send: call nk_hub_server_poll_transmit for it */
    NK_HUB_SEV_CLOSE,        /* close conn: send what is queued (best effort), close the socket, then
                                call nk_hub_server_conn_closed */
    NK_HUB_SEV_REGISTERED,   /* conn registered as peer (for logs) */
} nk_hub_server_event_type;

typedef struct nk_hub_server_event {
    nk_hub_server_event_type type;
    nk_hub_conn_id conn;
    void *user;              /* the driver's pointer given to nk_hub_server_accept */
    int code;                /* CLOSE: NK_HUB_CLOSE_* */
    nk_peer_id peer;         /* REGISTERED */
} nk_hub_server_event;

NK_API void nk_hub_server_config_init(nk_hub_server_config *cfg);
NK_API int nk_hub_server_new(nk_hub_server **out, const nk_hub_server_config *cfg);
NK_API void nk_hub_server_free(nk_hub_server *s);

/*
 * A new transport connection: local is the address it was accepted on (bound
 * into registration proofs), remote the peer's. Queues the CHALLENGE.
 * NK_ERR_LIMIT: over max_conns (close the socket; nothing is kept).
 */
NK_API int nk_hub_server_accept(nk_hub_server *s, int64_t now_ms, const nk_addr *local, const nk_addr *remote,
                                void *user, nk_hub_conn_id *out);
/* Bytes received on conn. 0, or NK_ERR_NOT_FOUND for an unknown/closing conn (ignored). */
NK_API int nk_hub_server_handle_bytes(nk_hub_server *s, int64_t now_ms, nk_hub_conn_id conn, const uint8_t *p,
                                      size_t n);
/* The transport is gone (peer closed, error, or after a CLOSE event): frees conn. */
NK_API void nk_hub_server_conn_closed(nk_hub_server *s, nk_hub_conn_id conn);
/* Closes conn from the driver's side (e.g. shutdown); a CLOSE event follows. */
NK_API void nk_hub_server_close(nk_hub_server *s, nk_hub_conn_id conn, int code);
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
NK_API size_t nk_hub_server_queued(const nk_hub_server *s, nk_hub_conn_id conn);
NK_API void nk_hub_server_stats(const nk_hub_server *s, nk_hub_stats_t *out);
/* 1 when peer is registered (for tests and stats). */
NK_API int nk_hub_server_has_peer(const nk_hub_server *s, const nk_peer_id *peer);

/* ---- client core ---------------------------------------------------------------- */

typedef struct nk_hub_client_config {
    const nk_identity *identity; /* copied (and wiped on free) */
    nk_addr hub;                 /* the address the transport connected to (bound into the proof) */
    int64_t ping_interval_ms;    /* hub ping (keepalive + RTT) interval (0: 15000) */
    int64_t timeout_ms;          /* closed when the hub sends nothing for this long (0: 45000) */
    size_t event_cap;            /* bytes of undelivered events kept (0: 256 KiB); relay dropped beyond */
    size_t queue_cap;            /* bytes queued for the hub (0: 256 KiB); sends fail with NK_ERR_LIMIT */
} nk_hub_client_config;

typedef enum nk_hub_client_state_t {
    NK_HUB_CLIENT_IDLE = 0,      /* before nk_hub_client_register */
    NK_HUB_CLIENT_CHALLENGED,    /* waiting for the challenge, then for REGISTERED */
    NK_HUB_CLIENT_REGISTERED,
    NK_HUB_CLIENT_CLOSED,        /* see nk_hub_client_close_code */
} nk_hub_client_state_t;

typedef enum nk_hub_event_type {
    NK_HUB_EV_REGISTERED = 1, /* addr: how the hub sees us */
    NK_HUB_EV_MESSAGE,        /* msg_type (NK_HUB_T_CONNECT/CANDIDATE/RELAY/SIGNAL) from peer: data[0..len) */
    NK_HUB_EV_UNKNOWN_PEER,   /* peer is not registered; msg_type: what we sent */
    NK_HUB_EV_PONG,           /* rtt_ms: this ping's round trip */
    NK_HUB_EV_CLOSED,         /* code (NK_HUB_CLOSE_*), reason: hub connection over; close the transport */
} nk_hub_event_type;

typedef struct nk_hub_event {
    nk_hub_event_type type;
    uint8_t msg_type;
    nk_peer_id peer;
    nk_addr addr;
    int64_t rtt_ms;
    int code;
    char reason[NK_HUB_MAX_REASON + 1];
    size_t len;                  /* MESSAGE: payload bytes copied into the caller's buffer */
} nk_hub_event;

typedef struct nk_hub_client nk_hub_client;

NK_API int nk_hub_client_new(nk_hub_client **out, const nk_hub_client_config *cfg);
NK_API void nk_hub_client_free(nk_hub_client *c);
/* The transport is connected: wait for the challenge and register. Also restarts after CLOSED. */
NK_API int nk_hub_client_register(nk_hub_client *c, int64_t now_ms);
/* Bytes from the hub. 0, or NK_ERR_CLOSED once the connection is over (an event says why). */
NK_API int nk_hub_client_handle_bytes(nk_hub_client *c, int64_t now_ms, const uint8_t *p, size_t n);
/* The transport failed or closed under us. */
NK_API void nk_hub_client_handle_closed(nk_hub_client *c, int64_t now_ms);
NK_API void nk_hub_client_handle_timeout(nk_hub_client *c, int64_t now_ms);
NK_API int64_t nk_hub_client_next_deadline(const nk_hub_client *c);
/* Moves up to cap bytes to write to the hub into buf; returns how many (0: nothing). */
NK_API int nk_hub_client_poll_transmit(nk_hub_client *c, int64_t now_ms, uint8_t *buf, size_t cap);
/* Bytes queued for the hub and not yet taken by poll_transmit. */
NK_API size_t nk_hub_client_pending(const nk_hub_client *c);
/*
 * 0 and *ev filled (a MESSAGE's payload in buf[0..ev->len)), NK_ERR_AGAIN, or
 * NK_ERR_NOBUFS when cap is below the payload (give NK_HUB_MAX_PAYLOAD).
 */
NK_API int nk_hub_client_poll_event(nk_hub_client *c, nk_hub_event *ev, uint8_t *buf, size_t cap);
/*
 * Sends a routed message (type NK_HUB_T_CONNECT/CANDIDATE/RELAY/SIGNAL) to
 * peer. 0, NK_ERR_STATE (not registered), NK_ERR_INVAL (type, size) or
 * NK_ERR_LIMIT (queue full; relay: dropped).
 */
NK_API int nk_hub_client_send(nk_hub_client *c, int64_t now_ms, uint8_t type, const nk_peer_id *peer,
                              const uint8_t *payload, size_t len);
/* Sends a ping now (a PONG event gives its RTT). Pings also go out every ping_interval_ms. */
NK_API int nk_hub_client_ping(nk_hub_client *c, int64_t now_ms);
/* Sends CLOSE(NORMAL); the state is CLOSED once it is flushed (poll_transmit). */
NK_API void nk_hub_client_close(nk_hub_client *c, int64_t now_ms);
NK_API nk_hub_client_state_t nk_hub_client_state(const nk_hub_client *c);
/* Smoothed hub RTT in ms (RFC 6298 style), the last sample, or -1 before the first PONG. */
NK_API int64_t nk_hub_client_rtt(const nk_hub_client *c);
NK_API int64_t nk_hub_client_last_rtt(const nk_hub_client *c);
NK_API int nk_hub_client_close_code(const nk_hub_client *c);
NK_API const nk_peer_id *nk_hub_client_id(const nk_hub_client *c);

/* ---- drivers ------------------------------------------------------------------------ */

/* A hub server on libuv: TCP, and TLS when tls_listen is set. */
typedef struct nk_hub_service_options {
    nk_addr listen;              /* TCP (family NK_AF_NONE: none) */
    nk_addr tls_listen;          /* TLS (family NK_AF_NONE: none); needs cert_file and key_file */
    const char *cert_file, *key_file;
    nk_hub_server_config server;
    int raise_nofile;            /* 1 (default): raise RLIMIT_NOFILE to its hard limit */
    /* One line per notable event (registrations, closes), from the loop thread; NULL: quiet. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
} nk_hub_service_options;

typedef struct nk_hub_service nk_hub_service;

NK_API void nk_hub_service_options_init(nk_hub_service_options *o);
/* Binds (errors come back here), then runs the loop in its own thread. */
NK_API int nk_hub_service_start(nk_hub_service **out, const nk_hub_service_options *o);
/* The bound addresses (port 0 in the options picks one). */
NK_API void nk_hub_service_addrs(const nk_hub_service *s, nk_addr *tcp, nk_addr *tls);
/* Thread-safe. */
NK_API void nk_hub_service_stats(nk_hub_service *s, nk_hub_stats_t *out);
/* Asks the loop to stop (thread-safe), joins it, closes everything, frees. */
NK_API void nk_hub_service_free(nk_hub_service *s);

/*
 * A client-side connection to a hub (TCP or TLS) that moves bytes between a
 * non-blocking socket and an nk_hub_client. Fits any poll loop: wait on
 * nk_hub_link_fd() for POLLIN (and POLLOUT when nk_hub_link_wants_write()),
 * then call nk_hub_link_pump().
 */
typedef struct nk_hub_link nk_hub_link;

/*
 * Connects (blocking, up to timeout_ms) to hub; tls: 1 for TLS. ca_file:
 * verify the hub's certificate against it (NULL with TLS: no verification;
 * the registration proof is still bound to the hub address). *local gets
 * the local address (may be NULL).
 */
NK_API int nk_hub_link_open(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int64_t timeout_ms,
                            nk_addr *local);
/*
 * The same without blocking: the connection (and TLS handshake) completes
 * inside nk_hub_link_pump; until then wants_write/fd drive the poller, and
 * pump fails with NK_ERR_CLOSED when it fails or is not done in timeout_ms.
 */
NK_API int nk_hub_link_start(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int64_t timeout_ms);
/* 1 once connected (and the TLS handshake done). */
NK_API int nk_hub_link_is_open(const nk_hub_link *l);
/* The local address of the connection. */
NK_API int nk_hub_link_local(const nk_hub_link *l, nk_addr *local);
NK_API int nk_hub_link_fd(const nk_hub_link *l);
NK_API int nk_hub_link_wants_write(const nk_hub_link *l, const nk_hub_client *c);
/* Reads what is there into c, writes what c has. 0, or NK_ERR_CLOSED when the connection is over. */
NK_API int nk_hub_link_pump(nk_hub_link *l, nk_hub_client *c, int64_t now_ms);
/* poll() on the link for up to timeout_ms (bounded by c's deadline), then pump and handle timeouts. */
NK_API int nk_hub_link_wait(nk_hub_link *l, nk_hub_client *c, int64_t timeout_ms);
NK_API void nk_hub_link_free(nk_hub_link *l);

#ifdef __cplusplus
}
#endif
#endif
