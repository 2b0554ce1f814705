/*
 * natkit: TCP socket helpers for a simultaneous open (nk_tcp_simopen uses them;
 * so can a caller with its own attempt loop).
 */
#ifndef NATKIT_TCP_CONNECT_H
#define NATKIT_TCP_CONNECT_H

#include "natkit/addr.h"
#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A non-blocking TCP connect to remote from local (a fixed port: normally the one of our UDP
 * socket, so a port-preserving NAT gives it the same public port as the UDP mapping). The
 * socket has SO_REUSEADDR and SO_REUSEPORT: call again for each attempt (the peer's NAT may
 * refuse the first SYNs until its own SYN went out). 0 and *fd_out; NK_ERR_ADDRESS (port taken),
 * NK_ERR_SYSTEM. Poll the fd for POLLOUT, then nk_tcp_connect_result. */
NK_API int nk_tcp_connect_from(const nk_addr *local, const nk_addr *remote, int *fd_out);
/* A non-blocking listener on the same local port (SO_REUSEPORT, next to the attempts): where the
 * peer's SYN lands when our own attempt was already refused, and on hosts without NAT. Accept
 * only from the expected peer; the sealed stream's first record authenticates it anyway. */
NK_API int nk_tcp_listen_from(const nk_addr *local, int *fd_out);
/* 0 connected (the handshake completed: TCP state established or later), NK_ERR_AGAIN still
 * connecting (SYN sent or received; safe to call before POLLOUT), NK_ERR_CLOSED refused or reset
 * (also when that error was read before), NK_ERR_TIMEOUT, NK_ERR_INVAL (not a connecting TCP
 * socket), NK_ERR_SYSTEM. Takes the socket's pending error (SO_ERROR). */
NK_API int nk_tcp_connect_result(int fd);

#ifdef __cplusplus
}
#endif
#endif
