/*
 * natkit: STUN server (RFC 8489 Binding, RFC 5780 NAT behaviour discovery,
 * RFC 3489 classic clients).
 *
 * Two layers:
 *
 *  - nk_stun_server: the sans-I/O request handler. It takes one received
 *    message with the address it arrived on and the address it came from,
 *    and writes at most one response into a caller buffer, saying where to
 *    send it and from which of the server's addresses. It keeps no per-client
 *    state, never reads a clock, never touches a socket; one handler can be
 *    shared read-only by any number of threads, each with its own counters.
 *
 *  - nk_stun_service, in natkit/stun_service.h: the driver. UDP and TCP
 *    sockets on every server address (1, or 4 in RFC 5780 mode), epoll,
 *    recvmmsg/sendmmsg batches, N threads with SO_REUSEPORT, clean stop. See
 *    docs/internals/stun-server.md.
 */
#ifndef NATKIT_STUN_SERVER_H
#define NATKIT_STUN_SERVER_H

#include "natkit/addr.h"
#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counters. The handler only touches the first six; the driver the rest. */
typedef struct nk_stun_server_stats_t {
    uint64_t requests;          /* Binding requests handled (answered or not) */
    uint64_t responses;         /* success responses produced (nk_stun_service: not those rate_limited) */
    uint64_t errors;            /* error responses produced (400, 420), the same */
    uint64_t dropped_malformed; /* STUN-looking but invalid: bad TLVs, FINGERPRINT, ... */
    uint64_t dropped_not_stun;  /* not STUN at all */
    uint64_t ignored;           /* valid STUN we never answer: indications, responses, other methods */
    /* driver */
    uint64_t send_failed;       /* responses the kernel would not take (UDP: dropped) */
    uint64_t tcp_accepted;
    uint64_t tcp_rejected;      /* over the connection limit: closed at once */
    uint64_t tcp_idle_closed;   /* closed after the idle timeout */
    /* limits per source (IPv4 address or IPv6 /64), docs/internals/stun-server.md */
    uint64_t tcp_rejected_per_ip; /* the source already held tcp_max_per_ip connections: closed at once */
    uint64_t tcp_first_timeout;   /* closed: no valid message within tcp_first_ms of the accept */
    uint64_t tcp_evicted;         /* table full: the oldest connection without a valid message closed */
    uint64_t rate_limited;        /* UDP answers not sent: the source was over udp_rate */
} nk_stun_server_stats_t;

/* dst += src, field by field (merging per-thread counters). */
NK_API void nk_stun_server_stats_add(nk_stun_server_stats_t *dst, const nk_stun_server_stats_t *src);

/* ---- the request handler --------------------------------------------------- */

typedef struct nk_stun_server nk_stun_server;

/*
 * primary: ip1:p1. alt_ip: NK_AF_NONE (or NULL) for a plain server, else the
 * second IP (same family as primary; its port is ignored) and the server runs
 * in RFC 5780 mode on ip1:p1, ip1:p2, ip2:p1, ip2:p2. alt_port: p2, 0 for p1 + 1.
 * Returns 0, NK_ERR_INVAL (bad or mixed-family addresses, alt_ip == primary
 * IP, wildcard primary with an alternate) or NK_ERR_NOMEM.
 */
NK_API int nk_stun_server_new(nk_stun_server **out, const nk_addr *primary, const nk_addr *alt_ip,
                              uint16_t alt_port);
NK_API void nk_stun_server_free(nk_stun_server *srv);

/* 1 in RFC 5780 mode. */
NK_API int nk_stun_server_rfc5780(const nk_stun_server *srv);
/*
 * The addresses this server serves: [0] = ip1:p1, and in RFC 5780 mode
 * [1] = ip1:p2, [2] = ip2:p1, [3] = ip2:p2. Returns how many (1 or 4).
 */
NK_API size_t nk_stun_server_addrs(const nk_stun_server *srv, nk_addr out[4]);

/*
 * The largest response the handler ever writes for a request of n bytes:
 * max(n, the largest Binding response). Responses are never longer, so the
 * server cannot be used to amplify traffic.
 */
NK_API size_t nk_stun_server_response_bound(size_t n);

/*
 * Handles one received message. local: the server address it arrived on (one
 * of nk_stun_server_addrs()); from: the client's address; transport:
 * NK_TRANSPORT_UDP or NK_TRANSPORT_TCP (one framed message). stats may be NULL.
 *
 * Returns 0 when a response was written: buf[0..out->len), to be sent to
 * out->to from out->from (one of nk_stun_server_addrs(); for TCP always
 * local, on the same connection). Otherwise nothing is to be sent and it
 * returns NK_ERR_NOT_STUN or NK_ERR_MALFORMED (dropped and counted),
 * NK_ERR_AGAIN (valid STUN that gets no answer: indications, responses,
 * methods other than Binding), NK_ERR_NOBUFS (cap too small: give
 * nk_stun_server_response_bound(n) bytes) or NK_ERR_INVAL.
 */
NK_API int nk_stun_server_handle(const nk_stun_server *srv, nk_stun_server_stats_t *stats,
                                 const nk_addr *local, const nk_addr *from, uint8_t transport,
                                 const uint8_t *p, size_t n, nk_transmit *out, uint8_t *buf,
                                 size_t cap);

#ifdef __cplusplus
}
#endif
#endif
