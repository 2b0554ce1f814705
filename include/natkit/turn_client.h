/*
 * natkit: TURN client (RFC 8656), sans-I/O.
 *
 * One nk_turn_client is one allocation on one TURN server over one transport
 * (UDP, or a TCP/TLS stream that the driver owns). It runs the long-term
 * credential dance (401 -> REALM/NONCE -> retry; 438 -> new nonce -> retry;
 * SHA-256 when the server offers it in PASSWORD-ALGORITHMS), refreshes the
 * allocation before it expires, keeps permissions (every 240 s) and channel
 * bindings (every 480 s) alive, wraps data for peers (ChannelData when a
 * channel is bound, else a Send indication) and unwraps data from peers
 * (Data indications and ChannelData) into events.
 *
 * It never reads a clock, opens a socket or sleeps. The driver:
 *   - passes every datagram (UDP) or every chunk of stream bytes (TCP/TLS,
 *     after TLS decryption) from the server to nk_turn_client_handle_input();
 *   - calls nk_turn_client_handle_timeout() when nk_turn_client_next_deadline()
 *     has passed;
 *   - after either, drains nk_turn_client_poll_transmit() (bytes for the
 *     server) and nk_turn_client_poll_event() until NK_ERR_AGAIN.
 * Requests are retransmitted with nk_stun_txn (RFC 8489 schedule over UDP, one
 * send over streams). A client is driven by one thread at a time.
 */
#ifndef NATKIT_TURN_CLIENT_H
#define NATKIT_TURN_CLIENT_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/stun_client.h"
#include "natkit/turn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_TURN_PERMISSION_REFRESH_S 240 /* < 300 s permission lifetime */
#define NK_TURN_CHANNEL_REFRESH_S    480 /* < 600 s channel lifetime */
#define NK_TURN_MAX_PEERS            256 /* permissions (and channels) per client */
#define NK_TURN_AUTH_RETRIES         3   /* 401/438 retries in a row before giving up */
#define NK_TURN_MAX_REDIRECTS        3   /* 300 Try Alternate answers followed for one Allocate */

typedef struct nk_turn_client_config {
    nk_addr server;              /* the TURN server's address */
    uint8_t transport;           /* NK_TRANSPORT_UDP, _TCP or _TLS (TLS: the driver encrypts) */
    const char *username;        /* long-term credentials (copied) */
    const char *password;
    const char *realm;           /* NULL: take the server's; else a 401 with another realm fails */
    const char *software;        /* SOFTWARE attribute, or NULL */
    uint32_t lifetime_s;         /* requested allocation lifetime (0: server default) */
    uint8_t family;              /* relayed address family: NK_AF_INET (default) or NK_AF_INET6 */
    int64_t rto_ms;              /* request retransmission: 0 for the RFC defaults */
    int rc, rm;
    nk_random_fn random;         /* transaction IDs; NULL: libsodium randombytes_buf */
    void *random_ctx;
} nk_turn_client_config;

typedef enum nk_turn_state {
    NK_TURN_IDLE = 0,
    NK_TURN_ALLOCATING,          /* Allocate in flight (including the 401/438 rounds) */
    NK_TURN_ALLOCATED,           /* relayed address valid; refreshes run in the background */
    NK_TURN_DEALLOCATING,        /* Refresh with LIFETIME 0 in flight */
    NK_TURN_CLOSED,              /* deallocated, or expired */
    NK_TURN_FAILED,              /* Allocate refused or timed out; see the ERROR event */
} nk_turn_state;

typedef enum nk_turn_event_type {
    NK_TURN_EV_ALLOCATED = 1,    /* relayed, mapped, lifetime_s */
    NK_TURN_EV_REFRESHED,        /* lifetime_s: the allocation was refreshed */
    NK_TURN_EV_PERMISSION,       /* peer: a permission was installed (first success only) */
    NK_TURN_EV_CHANNEL,          /* peer, channel: a channel binding was confirmed (first success only) */
    NK_TURN_EV_DATA,             /* peer, data/len, channel (0: came in a Data indication) */
    NK_TURN_EV_ERROR,            /* status, code/reason, method (which request), peer (for peer requests) */
    NK_TURN_EV_CLOSED,           /* status 0: deallocated; NK_ERR_TIMEOUT: expired without refresh */
    NK_TURN_EV_REDIRECTED,       /* peer: the Allocate was answered 300 Try Alternate and goes to this
                                    server now (nk_turn_client_server: it and its ALTERNATE-DOMAIN).
                                    A TCP/TLS driver connects there before it sends anything more. */
} nk_turn_event_type;

typedef struct nk_turn_event {
    nk_turn_event_type type;
    int status;                  /* 0 or a negative NK_ERR_* (NK_ERR_STUN(code) for error responses) */
    uint16_t method;             /* ERROR: NK_STUN_ALLOCATE, _REFRESH, _CREATE_PERMISSION, _CHANNEL_BIND */
    uint16_t channel;
    uint32_t lifetime_s;
    nk_addr peer;
    nk_addr relayed;
    nk_addr mapped;
    /*
     * DATA: the payload. It points into the bytes given to the last
     * nk_turn_client_handle_input() call (or the client's stream buffer) and
     * is valid until the next handle_input call or until the caller reuses
     * that buffer: poll events right after each handle_input.
     */
    const uint8_t *data;
    size_t len;
    char reason[128];            /* ERROR: the server's reason phrase (NUL-terminated, may be empty) */
} nk_turn_event;

typedef struct nk_turn_client nk_turn_client;

NK_API int nk_turn_client_new(nk_turn_client **out, const nk_turn_client_config *cfg);
/* Wipes the credentials and frees everything. NULL is fine. */
NK_API void nk_turn_client_free(nk_turn_client *c);

/* Starts the Allocate. NK_ERR_STATE unless IDLE. */
NK_API int nk_turn_client_allocate(nk_turn_client *c, int64_t now_ms);
/*
 * Installs (and keeps refreshing) a permission for peer's IP. May be called
 * while ALLOCATING: the request goes out once the allocation exists. Calling
 * it again for an IP that already has one is a no-op.
 * 0, NK_ERR_STATE (closed/failed), NK_ERR_LIMIT, NK_ERR_INVAL.
 */
NK_API int nk_turn_client_permit(nk_turn_client *c, int64_t now_ms, const nk_addr *peer);
/*
 * Binds a channel to peer (IP and port) and keeps it (and the permission for
 * its IP) refreshed. *channel (may be NULL) gets the number. A second call
 * for the same peer returns the same channel.
 */
NK_API int nk_turn_client_bind_channel(nk_turn_client *c, int64_t now_ms, const nk_addr *peer, uint16_t *channel);
/*
 * Wraps data for peer into buf: ChannelData when a channel to peer is
 * confirmed, else a Send indication (needs a permission for peer's IP,
 * requested or installed). out is set for the server; send buf[0..out->len)
 * right away. NK_ERR_STATE (not allocated), NK_ERR_DENIED (no permission),
 * NK_ERR_NOBUFS, NK_ERR_INVAL (more than 65535 bytes).
 */
NK_API int nk_turn_client_send(nk_turn_client *c, const nk_addr *peer, const uint8_t *data, size_t len,
                               nk_transmit *out, uint8_t *buf, size_t cap);
/* Refresh with LIFETIME 0; the CLOSED event follows. While ALLOCATING: before the server asked
 * for credentials the Allocate is abandoned (CLOSED at once: without them the server holds
 * nothing); after, the Refresh is sent as soon as the Allocate succeeds (no ALLOCATED event; a
 * failed Allocate leaves nothing to end). 0, or NK_ERR_STATE unless ALLOCATED or ALLOCATING. */
NK_API int nk_turn_client_deallocate(nk_turn_client *c, int64_t now_ms);

/*
 * Bytes from the server: one datagram (UDP) or the next chunk of the stream
 * (TCP/TLS; at most 64 KiB per call, events drained in between). from is
 * checked against the server address for UDP. Returns 0; NK_ERR_NOT_FOUND
 * for a datagram that is not for this client (other source, unknown
 * transaction, non-TURN); NK_ERR_MALFORMED for a stream that cannot be
 * framed (the driver should close it); NK_ERR_NOBUFS if the stream buffer
 * is full.
 */
NK_API int nk_turn_client_handle_input(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const uint8_t *p,
                                       size_t n);
NK_API void nk_turn_client_handle_timeout(nk_turn_client *c, int64_t now_ms);
/* Next request (or retransmission) for the server: 0, or NK_ERR_AGAIN. */
NK_API int nk_turn_client_poll_transmit(nk_turn_client *c, int64_t now_ms, nk_transmit *out, uint8_t *buf,
                                        size_t cap);
/* When handle_timeout must be called next (NK_DEADLINE_NONE: never). */
NK_API int64_t nk_turn_client_next_deadline(const nk_turn_client *c);
/* Next event: 0, or NK_ERR_AGAIN. */
NK_API int nk_turn_client_poll_event(nk_turn_client *c, nk_turn_event *ev);

NK_API nk_turn_state nk_turn_client_state(const nk_turn_client *c);
/* The relayed (and server-reflexive) address once ALLOCATED; NK_ERR_STATE before. */
NK_API int nk_turn_client_relayed(const nk_turn_client *c, nk_addr *relayed, nk_addr *mapped);
/*
 * The server the client talks to: cfg.server, or where a 300 Try Alternate sent the Allocate
 * (RFC 8489 section 10: the same transport, the same credentials, authenticated afresh there;
 * at most NK_TURN_MAX_REDIRECTS hops, never back to a server already tried). *domain (may be
 * NULL) gets the ALTERNATE-DOMAIN of the last redirect, the name a TLS driver must verify, or
 * NULL when there was none (keep the original name).
 */
NK_API void nk_turn_client_server(const nk_turn_client *c, nk_addr *server, const char **domain);
/* Datagrams and stream frames dropped as malformed, unmatched or failing integrity. */
NK_API uint64_t nk_turn_client_dropped(const nk_turn_client *c);

/*
 * TURN REST ephemeral credentials (draft-uberti-behave-turn-rest, coturn's
 * --use-auth-secret): user = "EXPIRY:name" (EXPIRY in Unix seconds),
 * pass = base64(HMAC-SHA1(secret, user)). 0, NK_ERR_NOBUFS or NK_ERR_INVAL.
 */
NK_API int nk_turn_rest_credentials(const char *secret, int64_t expiry_unix, const char *name, char *user,
                                    size_t user_cap, char *pass, size_t pass_cap);

#ifdef __cplusplus
}
#endif
#endif
