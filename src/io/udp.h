/*
 * natkit internal, drivers only: small UDP socket helpers over nk_addr.
 */
#ifndef NK__UDP_H
#define NK__UDP_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/addr.h"

/* A non-blocking UDP socket bound to addr (port 0: any), with packet-info
 * reception enabled so receivers learn which local address was hit.
 * Returns the fd or a negative NK_ERR_*. */
int nk__udp_open(const nk_addr *bind_addr, int reuse_port);

/* The socket's bound address. */
int nk__udp_local(int fd, nk_addr *out);

/* sendto() with an nk_addr; 0 or NK_ERR_SYSTEM. */
int nk__udp_send(int fd, const nk_addr *to, const uint8_t *p, size_t n);

/*
 * recvmsg() that also reports the local address the datagram was sent to
 * (IP from IP_PKTINFO/IPV6_PKTINFO, port from the socket; may be NULL).
 * Returns the length, NK_ERR_AGAIN when nothing is queued, NK_ERR_SYSTEM.
 */
int nk__udp_recv(int fd, uint8_t *buf, size_t cap, nk_addr *from, nk_addr *local);

#endif
