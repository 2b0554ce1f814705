/*
 * natkit: nk_tcp_simopen, the attempts of a TCP simultaneous open, as a driver
 * (see docs/internals/tcp-simopen.md).
 */
#ifndef NATKIT_TCP_SIMOPEN_H
#define NATKIT_TCP_SIMOPEN_H

#include "natkit/addr.h"
#include "natkit/common.h"

#include <poll.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The attempts of a TCP simultaneous open, as a driver: connects from local (the UDP socket's
 * address, so the NAT's mapping keeps its port) to remote (the peer's UDP mapping, the direct
 * path's remote) at start_ms, again retry_ms after each refusal, until window_ms has passed;
 * a listener on the same port takes the peer's SYN when it finds no attempt of ours (hosts
 * without NAT, or between attempts; connections from other IPs are closed). Both sides start
 * at about the same moment (nk_upgrade_simopen carries the request over the session). Poll
 * the fds it gives (fd -1: none), then call step: 0 and *fd_out (connected, non-blocking, now
 * yours: hand it to nk_tcp_stream_new with an nk_tcpseal), NK_ERR_AGAIN (call again at
 * nk_tcp_simopen_next_deadline or on an fd event), NK_ERR_TIMEOUT (no SYN got through).
 * new: 0, NK_ERR_INVAL, NK_ERR_NOMEM, or NK_ERR_ADDRESS when local's port is taken for TCP (a
 * socket of another program, listening or connected from that port, holds it): no attempt could
 * bind there, so there is none.
 */
typedef struct nk_tcp_simopen nk_tcp_simopen;

typedef struct nk_tcp_simopen_config {
    nk_addr local;           /* bind address; port: our UDP socket's */
    nk_addr remote;          /* the peer's UDP mapping */
    int64_t start_ms;        /* the first attempt */
    int64_t window_ms;       /* 0: 5000 */
    int64_t retry_ms;        /* after a refusal; 0: 100 */
} nk_tcp_simopen_config;

typedef struct nk_tcp_simopen_stats_t {
    uint32_t attempts, refused, strangers; /* strangers: connections from other IPs, closed */
    int via_listener;                      /* 1: the peer's SYN met our listener */
    int64_t up_ms;                         /* from start_ms to connected */
} nk_tcp_simopen_stats_t;

#define NK_TCP_SIMOPEN_FDS 2

NK_API int nk_tcp_simopen_new(nk_tcp_simopen **out, const nk_tcp_simopen_config *cfg);
NK_API void nk_tcp_simopen_free(nk_tcp_simopen *s);
/* The fds to poll. It remembers what it handed out: step takes revents only for these sockets and
 * only once, so a pollfd array filled for an earlier or another object is ignored. */
NK_API void nk_tcp_simopen_pollfds(nk_tcp_simopen *s, struct pollfd pfd[NK_TCP_SIMOPEN_FDS]);
NK_API int64_t nk_tcp_simopen_next_deadline(const nk_tcp_simopen *s);
/* pfd: as the last pollfds filled them, with revents (NULL on a timeout). */
NK_API int nk_tcp_simopen_step(nk_tcp_simopen *s, int64_t now_ms, const struct pollfd pfd[NK_TCP_SIMOPEN_FDS],
                               int *fd_out);
NK_API void nk_tcp_simopen_stats(const nk_tcp_simopen *s, nk_tcp_simopen_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
