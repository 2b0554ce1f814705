/*
 * natkit: small UDP socket helpers over nk_addr, for programs that run their
 * own loop around a sans-I/O core (and for natkit's own drivers). Plain
 * non-blocking sockets: poll them with whatever loop you use; close them
 * with close(2).
 */
#ifndef NATKIT_UDP_H
#define NATKIT_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/addr.h"
#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A non-blocking, close-on-exec UDP socket bound to bind_addr (port 0: any;
 * IPv6 sockets are IPv6-only), with packet-info reception enabled so that
 * nk_udp_recv learns which local address was hit. reuse_port: SO_REUSEPORT.
 * Returns the fd, NK_ERR_ADDRESS (bind_addr unset) or NK_ERR_SYSTEM (errno tells).
 */
NK_API int nk_udp_open(const nk_addr *bind_addr, int reuse_port);

/* The socket's bound address (port 0 at open resolved). 0 or NK_ERR_SYSTEM. */
NK_API int nk_udp_local(int fd, nk_addr *out);

/* Sends one datagram of n bytes to to. 0, NK_ERR_AGAIN (the socket buffer is
 * full: the datagram was not sent), NK_ERR_ADDRESS or NK_ERR_SYSTEM. */
NK_API int nk_udp_send(int fd, const nk_addr *to, const uint8_t *p, size_t n);

/*
 * Receives one datagram into buf (cap bytes; a longer datagram is truncated)
 * with its source address in from and, if local is not NULL, the local
 * address it was sent to (IP from IP_PKTINFO/IPV6_PKTINFO, port from the
 * socket). Returns the length, NK_ERR_AGAIN when nothing is queued,
 * NK_ERR_ADDRESS (a source that is not IPv4/IPv6) or NK_ERR_SYSTEM.
 */
NK_API int nk_udp_recv(int fd, uint8_t *buf, size_t cap, nk_addr *from, nk_addr *local);

#ifdef __cplusplus
}
#endif
#endif
