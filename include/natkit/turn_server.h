/*
 * natkit: TURN server core (RFC 8656), sans-I/O.
 *
 * The core owns the allocation table, permissions, channels, credentials,
 * nonces, quotas and timers. It never reads a clock, opens a socket or
 * sleeps: the driver hands it each received packet with the current time
 * (any monotonic milliseconds) and gets back at most one datagram to send,
 * written into the driver's buffer, with nk_transmit saying where it goes:
 *
 *   to        the client (responses, Data indications, ChannelData) or the
 *             peer (relayed data);
 *   from      the local address of the socket to send from: the listening
 *             address the request came in on, or an allocation's relayed
 *             address (open by the driver, see relay_open below);
 *   transport NK_TRANSPORT_UDP / TCP / TLS toward the client; toward a peer
 *             always UDP.
 *
 * Relay sockets: when an Allocate succeeds the core picks a relay port with
 * the injected CSPRNG and calls ops.relay_open(ctx, &relayed_address). The
 * driver binds a UDP socket there and answers 0, NK_ERR_ADDRESS if the port
 * is taken (the core tries another port), or another error (the Allocate is
 * answered 508). When an allocation ends (expiry, Refresh with lifetime 0,
 * TCP client closed, server freed) the core calls ops.relay_close(). These
 * are the only calls out of the core, and they happen synchronously inside
 * nk_turn_server_handle_client / handle_timeout / client_closed / free.
 *
 * Timers: nk_turn_server_next_deadline() says when handle_timeout must be
 * called next (allocation expiry); permissions and channels expire lazily
 * (checked on use). The core never needs a timer to send anything.
 */
#ifndef NATKIT_TURN_SERVER_H
#define NATKIT_TURN_SERVER_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/common.h" /* nk_random_fn */
#include "natkit/turn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_turn_server nk_turn_server;

/*
 * State shared by several servers serving one relay port range, e.g. one per
 * thread (thread-safe): the allocation quotas and the EVEN-PORT reservations.
 * A server given one in its config counts against its quotas instead of its
 * own max_allocations / max_allocations_per_user.
 */
typedef struct nk_turn_shared nk_turn_shared;
NK_API int nk_turn_shared_new(nk_turn_shared **out, uint32_t max_total, uint32_t max_per_user);
/* Free after every server using it. */
NK_API void nk_turn_shared_free(nk_turn_shared *q);

typedef struct nk_turn_server_ops {
    /* Open a UDP socket bound to relay (IP and port); see above. Required. */
    int (*relay_open)(void *ctx, const nk_addr *relay);
    /* Close the relay socket opened for relay. Required. */
    void (*relay_close)(void *ctx, const nk_addr *relay);
    /* An Allocate carried DONT-FRAGMENT: every datagram this relay sends must have DF set (and
     * one too large for the path is dropped, not fragmented). 0 or an error (the allocation is
     * then refused with 508). NULL: the core answers such an Allocate with 420 and
     * UNKNOWN-ATTRIBUTES, as RFC 8656 asks of a server that cannot set DF. */
    int (*relay_dont_fragment)(void *ctx, const nk_addr *relay);
    /* n bytes from a CSPRNG, called with ctx. NULL: libsodium's randombytes_buf. */
    nk_random_fn random;
    void *ctx;
    /* Credentials kept outside the core, e.g. the cache of a user database (nk_turn_userdb_keys,
     * include/natkit/turn_userdb.h). Called, with user_ctx, for a request whose USERNAME the core's
     * own accounts (nk_turn_server_add_user) and auth_secret do not authenticate: write up to max
     * candidate 16-byte MD5 long-term keys for user in realm (its account's key, and one per TURN
     * REST secret when the name is a REST name not expired at unix_s; nk_turn_rest_key) and return
     * how many; the core accepts the request when one of them checks MESSAGE-INTEGRITY. It runs
     * inside handle_client, on the packet loop: it must answer from memory, never wait on I/O.
     * NULL: none. */
    size_t (*user_keys)(void *user_ctx, const char *realm, const char *user, int64_t unix_s,
                        uint8_t (*keys)[16], size_t max);
    void *user_ctx;
} nk_turn_server_ops;

/*
 * The TURN REST long-term key (coturn's use-auth-secret scheme) of username in realm for one
 * shared secret: MD5(username:realm:base64(HMAC-SHA1(secret, username))). The username must start
 * with its expiry (Unix seconds, "expiry" or "expiry:user"); 0, or NK_ERR_AUTH when it does not or
 * when that expiry is before unix_s.
 */
NK_API int nk_turn_rest_key(const char *secret, size_t secret_len, const char *realm, const char *username,
                            int64_t unix_s, uint8_t key[16]);

typedef struct nk_turn_server_config {
    const char *realm;            /* required */
    const char *auth_secret;      /* TURN REST shared secret; NULL: --user accounts only */
    nk_addr relay_ip;             /* relayed addresses use this IP (port ignored) */
    uint16_t relay_port_min;      /* default 49152 */
    uint16_t relay_port_max;      /* default 65535 */
    uint32_t default_lifetime_s;  /* default 600 */
    uint32_t max_lifetime_s;      /* default 3600 */
    uint32_t nonce_lifetime_s;    /* default 600; older nonces get 438 */
    uint32_t max_allocations;     /* total; default 10000 (508 beyond) */
    uint32_t max_allocations_per_user; /* default 100 (486 beyond); 0: no per-user limit */
    uint32_t max_permissions;     /* per allocation; default 64 (508 beyond) */
    uint32_t max_channels;        /* per allocation; default 64 (508 beyond) */
    nk_turn_shared *shared;       /* NULL: this server is alone with its port range */
    /* Answers given over UDP without authentication (Binding, 401/438 challenges, 400s)
     * per source (IPv4 address or IPv6 /64) and second; beyond, requests are dropped
     * unanswered (rate_limited). Default 500, burst 2 x rate; 0: no limit. */
    uint32_t unauth_rate;
    uint32_t unauth_burst;        /* 0: 2 x unauth_rate */
    uint32_t rate_entries;        /* sources tracked at once (fixed memory); 0: 4096 */
    /* Try Alternate (RFC 8489 section 10, RFC 8656 7.2; coturn's alternate-server): while this
     * list is not empty, every Allocate from a client without an allocation is answered, before
     * authentication, with 300 and one ALTERNATE-SERVER of the client's address family, taken
     * round-robin from the list (a front that spreads clients over the relays behind it). No
     * redirect when the list has no address of that family, or when it holds the address the
     * request came in on (a server that finds itself in the list serves: no loop). Copied. */
    const nk_addr *alternates;
    size_t n_alternates;
    /* The same for clients over TLS (coturn's tls-alternate-server); empty: alternates serve them. */
    const nk_addr *tls_alternates;
    size_t n_tls_alternates;
    /* ALTERNATE-DOMAIN in 300 answers over TLS: the name the alternates' certificates carry, when
     * it is not this server's (RFC 8489 section 14.16). NULL: none. Copied. */
    const char *alternate_domain;
} nk_turn_server_config;

/* Fills c with the defaults above (realm NULL, relay_ip unset). */
NK_API void nk_turn_server_config_init(nk_turn_server_config *c);

/* Creates a server; the config strings are copied. 0, NK_ERR_INVAL or NK_ERR_NOMEM. */
NK_API int nk_turn_server_new(nk_turn_server **out, const nk_turn_server_config *cfg,
                              const nk_turn_server_ops *ops);
/* Ends every allocation (relay_close for each) and frees the server. */
NK_API void nk_turn_server_free(nk_turn_server *s);

/* A long-term credential account. Only the derived key is kept. */
NK_API int nk_turn_server_add_user(nk_turn_server *s, const char *user, const char *pass);
/*
 * Peer policy. By default loopback, 0.0.0.0/8, RFC 1918, 100.64.0.0/10,
 * link-local, multicast, 240.0.0.0/4 (incl. broadcast), ::, ::1, fc00::/7,
 * fe80::/10, fec0::/10 and ff00::/8 are refused (403). IPv6 forms that carry
 * an IPv4 address (IPv4-mapped/-compatible/-translated, NAT64 64:ff9b::/96
 * and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32) are checked as that
 * IPv4 too. allow_peer opens a CIDR ("127.0.0.0/8", "::1"); deny_peer closes
 * one, and wins over allow. 0 or NK_ERR_ADDRESS / NK_ERR_NOMEM.
 */
NK_API int nk_turn_server_allow_peer(nk_turn_server *s, const char *cidr);
NK_API int nk_turn_server_deny_peer(nk_turn_server *s, const char *cidr);
/* 1 if a peer address passes the policy, else 0. */
NK_API int nk_turn_server_peer_allowed(const nk_turn_server *s, const nk_addr *peer);

/*
 * Tells the core the wall-clock time (Unix ms) at monotonic time now_ms, for
 * TURN REST usernames, which carry a Unix expiry. Call at start and now and
 * then (the core keeps the offset).
 */
NK_API void nk_turn_server_set_unix_time(nk_turn_server *s, int64_t now_ms, int64_t unix_ms);

/*
 * A packet from a client: a STUN message or a ChannelData message (over
 * TCP/TLS exactly one frame, padding included; the driver frames with
 * nk_stun_frame_length and nk_turn_channel_data_parse). client is the
 * client's address, local the address it was received on.
 * Returns 1 with *tx and out[0..tx->len) set when there is something to
 * send, 0 when not, or a negative code when the packet was dropped (counted
 * in the stats). out should hold at least 65536 + 36 bytes for relaying.
 */
NK_API int nk_turn_server_handle_client(nk_turn_server *s, int64_t now_ms, uint8_t transport,
                                        const nk_addr *client, const nk_addr *local,
                                        const uint8_t *p, size_t n, nk_transmit *tx, uint8_t *out,
                                        size_t cap);
/* A datagram from a peer received on the relay socket bound to relay. Same returns. */
NK_API int nk_turn_server_handle_relay(nk_turn_server *s, int64_t now_ms, const nk_addr *relay,
                                       const nk_addr *peer, const uint8_t *p, size_t n,
                                       nk_transmit *tx, uint8_t *out, size_t cap);
/* 1 if this client (5-tuple) has an allocation, else 0 (drivers close idle connections without one). */
NK_API int nk_turn_server_has_allocation(const nk_turn_server *s, uint8_t transport, const nk_addr *client,
                                         const nk_addr *local);
/* A TCP/TLS client connection ended: its allocation (if any) goes. */
NK_API void nk_turn_server_client_closed(nk_turn_server *s, int64_t now_ms, uint8_t transport,
                                         const nk_addr *client, const nk_addr *local);
/* A driver dropped what it could not hand over: a datagram larger than its buffer, or a TCP/TLS
 * stream that frames as neither STUN nor ChannelData. Counted like the core's own drops: as
 * malformed when it came from a client, as dropped when it came from a peer on a relay. */
NK_API void nk_turn_server_count_dropped(nk_turn_server *s, int from_peer);
/* Expires what is due at now_ms. */
NK_API void nk_turn_server_handle_timeout(nk_turn_server *s, int64_t now_ms);
/* When handle_timeout is next needed; INT64_MAX when nothing is pending. */
NK_API int64_t nk_turn_server_next_deadline(const nk_turn_server *s);

/* The error codes nk_turn_server_stats_t.allocate_errors counts one by one, in its order. */
#define NK_TURN_STATS_CODES {400, 401, 403, 420, 437, 438, 440, 441, 442, 486, 508}
#define NK_TURN_STATS_NCODES 11

typedef struct nk_turn_server_stats_t {
    uint64_t allocations;          /* live now */
    uint64_t allocations_created;  /* since start */
    uint64_t requests;             /* STUN requests handled */
    uint64_t malformed;            /* undecodable packets dropped */
    uint64_t unauthenticated;      /* 401 without credentials (the challenge) */
    uint64_t auth_failed;          /* 401 with bad credentials or integrity */
    uint64_t stale_nonce;          /* 438 */
    uint64_t peer_denied;          /* 403 */
    uint64_t quota_user;           /* 486 */
    uint64_t quota_total;          /* 508 for the allocation limit */
    uint64_t to_peer;              /* datagrams relayed client -> peer */
    uint64_t to_client;            /* datagrams relayed peer -> client */
    uint64_t dropped;              /* relay data without allocation/permission/channel */
    uint64_t bytes_to_peer;        /* payload bytes relayed client -> peer */
    uint64_t bytes_to_client;      /* payload bytes relayed peer -> client */
    uint64_t permissions_created;  /* successful CreatePermission requests (refreshes too) */
    uint64_t channels_bound;       /* successful ChannelBind requests (refreshes too) */
    /* Allocate error responses by code, in NK_TURN_STATS_CODES order; the last: any other code.
     * 401 is also the normal first answer (the challenge) to an Allocate without credentials. */
    uint64_t allocate_errors[NK_TURN_STATS_NCODES + 1];
    /* UDP requests left unanswered: the source was over unauth_rate. Counted here only: the
     * counters of unauthenticated answers above (and redirected) count answers that went out. */
    uint64_t rate_limited;
    /* driver (nk_turn_service): TCP/TLS connections */
    uint64_t tcp_accepted;
    uint64_t tcp_rejected;         /* the connection table was full of established connections */
    uint64_t tcp_rejected_per_ip;  /* the source already held max_per_ip connections */
    uint64_t tcp_first_timeout;    /* closed: no valid message within first_ms of the accept */
    uint64_t tcp_evicted;          /* table full: the oldest connection without a valid message closed */
    uint64_t redirected;           /* Allocates answered 300 Try Alternate (alternates configured) */
} nk_turn_server_stats_t;

NK_API void nk_turn_server_stats(const nk_turn_server *s, nk_turn_server_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif
