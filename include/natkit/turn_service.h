/*
 * natkit: the TURN server's bundled driver (epoll, Linux).
 *
 * nk_turn_service is the only part of a TURN server that reads the clock or
 * touches sockets; the protocol work is done by the sans-I/O core
 * (nk_turn_server, natkit/turn_server.h). One service is one thread's share:
 *
 *  - a UDP and a TCP listener on the same address, and an optional TLS
 *    listener (certificate and key files in PEM);
 *  - one UDP socket per allocation, opened and closed when the core asks
 *    (the callbacks nk_turn_service_ops() fills in);
 *  - the client TCP/TLS connections and their framing; a connection that
 *    has sent no valid message 5 s after the accept, or has had no allocation
 *    for 30 s, is closed; at most 64 connections per source;
 *  - datagrams taken and sent in batches (recvmmsg/sendmmsg, UDP GSO where
 *    the kernel has it; NATKIT_NO_GSO in the environment turns GSO off).
 *
 * Several services (one per thread) can share the same addresses with
 * reuse_port; give their cores one nk_turn_shared for common quotas.
 * See docs/internals/turn-server.md.
 *
 * Use:
 *   nk_turn_service_options_init(&o); o.listen = ...;
 *   nk_turn_service_new(&svc, &o);
 *   nk_turn_service_ops(svc, &ops);
 *   nk_turn_server_new(&srv, &cfg, &ops);
 *   nk_turn_service_run(svc, srv, &stop);      (returns once stop is set)
 *   nk_turn_server_free(srv); nk_turn_service_free(svc);
 */
#ifndef NATKIT_TURN_SERVICE_H
#define NATKIT_TURN_SERVICE_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/turn_server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_turn_service_options {
    nk_addr listen;           /* UDP and TCP (port 0: any, see nk_turn_service_addrs) */
    nk_addr tls_listen;       /* TLS; family NK_AF_NONE: no TLS */
    const char *cert_file;    /* PEM certificate chain, needed with tls_listen */
    const char *key_file;     /* PEM private key, needed with tls_listen */
    unsigned max_connections; /* TCP + TLS clients at once; 0: 1024 */
    int reuse_port;           /* SO_REUSEPORT on the listeners (one service per thread) */
    /* TCP + TLS connections per source (an IPv4 address or an IPv6 /64), more are closed at
     * accept; 0: 64, < 0: no limit. When the table is full, the oldest connection that has
     * not yet sent a valid message is closed to make room. */
    int max_per_ip;
    int64_t first_ms;         /* a connection without a valid message by then is closed; 0: 5000 */
    int64_t alloc_timeout_ms; /* a connection without an allocation for this long is closed; 0: 30000
                                 (coturn's max-allocate-timeout) */
} nk_turn_service_options;

typedef struct nk_turn_service nk_turn_service;

/* Every field zero (no TLS), max_connections 1024, max_per_ip 64, first_ms 5000, alloc_timeout_ms 30000. */
NK_API void nk_turn_service_options_init(nk_turn_service_options *o);

/*
 * Opens the listeners (errors come back here, not from the loop). Returns 0,
 * NK_ERR_SYSTEM (errno tells, e.g. the address is in use), NK_ERR_ADDRESS,
 * NK_ERR_INVAL (the TLS certificate or key is not usable PEM) or NK_ERR_NOMEM;
 * a certificate or key file that cannot be read is NK_ERR_SYSTEM. In every case
 * nk_error_context() names the address or file (and keeps errno).
 */
NK_API int nk_turn_service_new(nk_turn_service **out, const nk_turn_service_options *o);

/* Fills ops with the callbacks to give nk_turn_server_new (they open and close
 * the relay sockets); set ops->random afterwards to inject a random source. */
NK_API void nk_turn_service_ops(nk_turn_service *s, nk_turn_server_ops *ops);

/*
 * Runs the loop in the calling thread, feeding srv (created with the ops
 * above), until *stop becomes non-zero (set it from a signal handler or
 * another thread; it is checked at least once a second). Returns 0, or
 * NK_ERR_SYSTEM if epoll fails (errno tells).
 */
NK_API int nk_turn_service_run(nk_turn_service *s, nk_turn_server *srv, volatile int *stop);

/* The bound listener addresses (port 0 in the options resolved); either pointer may be NULL. */
NK_API void nk_turn_service_addrs(const nk_turn_service *s, nk_addr *listen, nk_addr *tls_listen);

/* The stats of the server this service runs, as of its loop's last turn (zero before
 * nk_turn_service_run). Thread-safe: for a metrics endpoint on another thread. */
NK_API void nk_turn_service_stats(const nk_turn_service *s, nk_turn_server_stats_t *out);

/* Closes every socket and frees. Free the server first: it closes its relays
 * through the service. NULL is fine. */
NK_API void nk_turn_service_free(nk_turn_service *s);

#ifdef __cplusplus
}
#endif
#endif
