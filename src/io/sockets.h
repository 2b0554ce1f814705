/*
 * natkit internal, drivers only: socket helpers shared by the services (src/io/sockets.c).
 */
#ifndef NK__SOCKETS_H
#define NK__SOCKETS_H

#include "natkit/addr.h"

/* A non-blocking, close-on-exec TCP socket listening on a (SO_REUSEADDR; SO_REUSEPORT when
 * reuse_port; IPV6_V6ONLY for IPv6), its bound address in *bound when bound is not NULL (port 0:
 * the one the kernel chose). The fd, or NK_ERR_ADDRESS (a not an IP address) / NK_ERR_SYSTEM with
 * errno set and the error context "bind TCP ADDR" for a failed bind or listen. */
int nk__listen_tcp(const nk_addr *a, int reuse_port, nk_addr *bound);

/* After a failed bind/listen on fd (errno set): the error context "WHAT ADDR", fd closed, errno
 * kept; returns NK_ERR_SYSTEM. */
int nk__bind_failed(int fd, const char *what, const nk_addr *a);

/* v4-mapped ::ffff:a.b.c.d -> a.b.c.d (what a dual-stack socket reports for an IPv4 peer); any
 * other address is left as it is. */
void nk__addr_unmap_v4(nk_addr *a);

#endif
