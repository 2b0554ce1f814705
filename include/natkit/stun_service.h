/*
 * natkit: nk_stun_service, the STUN server driver: UDP and TCP sockets on every
 * server address (1, or 4 in RFC 5780 mode), epoll, recvmmsg/sendmmsg batches, N
 * threads with SO_REUSEPORT, clean stop. Each thread runs the shared nk_stun_server
 * handler. See docs/internals/stun-server.md.
 */
#ifndef NATKIT_STUN_SERVICE_H
#define NATKIT_STUN_SERVICE_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/stun_server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_stun_service_options {
    nk_addr listen;        /* ip1:p1 (port 0 is an error) */
    nk_addr alt_ip;        /* NK_AF_NONE: plain server; else RFC 5780 mode */
    uint16_t alt_port;     /* 0: listen port + 1 */
    int threads;           /* worker threads, each with its own sockets (SO_REUSEPORT); 0: 1 */
    int tcp;               /* 1 (default): TCP on the same addresses */
    int tcp_max_conns;     /* per thread; 0: 1024 */
    int64_t tcp_idle_ms;   /* idle TCP connections are closed after this; 0: 30000 */
    int batch;             /* datagrams per recvmmsg/sendmmsg; 0: 32, at most 256 */
    /* Limits per source (an IPv4 address, or an IPv6 /64), per thread: */
    int tcp_max_per_ip;    /* TCP connections at once; 0: 64, < 0: no limit */
    int64_t tcp_first_ms;  /* a TCP connection without a valid STUN message by then is closed; 0: 5000 */
    int udp_rate;          /* UDP answers per second; 0: 500, < 0: no limit */
    int udp_burst;         /* ... with bursts up to this many; 0: 2 x udp_rate */
    int rate_entries;      /* sources the rate limiter tracks at once (fixed memory); 0: 4096 */
} nk_stun_service_options;

typedef struct nk_stun_service nk_stun_service;

NK_API void nk_stun_service_options_init(nk_stun_service_options *o);

/*
 * Binds every socket (errors come back here, not from the threads), then
 * starts the worker threads. Returns 0, NK_ERR_INVAL, NK_ERR_ADDRESS (cannot
 * bind: errno tells), NK_ERR_SYSTEM or NK_ERR_NOMEM; nk_error_context() names the
 * address that could not be bound.
 */
NK_API int nk_stun_service_start(nk_stun_service **out, const nk_stun_service_options *o);
/* Asks the threads to stop (async-signal-safe: one write to an eventfd). */
NK_API void nk_stun_service_request_stop(nk_stun_service *s);
/* Stops the threads and waits for them; sockets stay bound until free. */
NK_API void nk_stun_service_stop(nk_stun_service *s);
/* Stops (if not yet), closes every socket, frees. */
NK_API void nk_stun_service_free(nk_stun_service *s);
/* The addresses served (see nk_stun_server_addrs). */
NK_API size_t nk_stun_service_addrs(const nk_stun_service *s, nk_addr out[4]);
/* Sum of every thread's counters. Thread-safe: while the service runs, each thread's
 * counters as of its last batch (the metrics endpoint reads them); exact after
 * nk_stun_service_stop(). */
NK_API void nk_stun_service_stats(const nk_stun_service *s, nk_stun_server_stats_t *out);
/*
 * Blocks until a worker thread fails or until extra_fd (a signalfd, a pipe;
 * -1: none) becomes readable. Returns 0 when extra_fd fired, else the error
 * that stopped a thread.
 */
NK_API int nk_stun_service_wait(nk_stun_service *s, int extra_fd);

#ifdef __cplusplus
}
#endif
#endif
