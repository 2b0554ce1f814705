/*
 * natkit: nk_node_driver, the bundled driver of an nk_node: one UDP socket and a
 * hub link in a poll loop; events go to a callback.
 */
#ifndef NATKIT_NODE_DRIVER_H
#define NATKIT_NODE_DRIVER_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/node.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_node_driver nk_node_driver;

typedef struct nk_node_driver_options {
    nk_node_config node;                 /* host is filled by the driver when nhost == 0 */
    nk_addr bind;                        /* UDP socket address (family NONE: 0.0.0.0, any port) */
    int hub_tls;                         /* 1: TLS to the hub */
    const char *hub_ca_file;
    void (*on_event)(void *ctx, nk_node_driver *d, const nk_node_event *ev);
    void *ctx;
} nk_node_driver_options;

/*
 * Binds the UDP socket, gathers host addresses, connects and registers at the hub.
 * On failure nk_error_context() names the step and its system error ("bind
 * 0.0.0.0:4000" EADDRINUSE, "connect to hub 10.0.0.1:7000" ECONNREFUSED/ETIMEDOUT).
 */
NK_API int nk_node_driver_open(nk_node_driver **out, const nk_node_driver_options *o);
NK_API nk_node *nk_node_driver_node(nk_node_driver *d);
/* The UDP socket's local address. */
NK_API void nk_node_driver_local(const nk_node_driver *d, nk_addr *out);
/*
 * Runs the node for up to timeout_ms (events go to on_event). extra_fd >= 0
 * is polled too: returns 1 when it became readable, 0 on timeout, < 0 on error.
 */
NK_API int nk_node_driver_poll(nk_node_driver *d, int64_t timeout_ms, int extra_fd);
/* The same with any number of the caller's fds (events in, revents out; fd < 0 is skipped; the
 * driver's own array grows to fit them): returns how many of them have revents, 0 on timeout,
 * < 0 on error (NK_ERR_NOMEM when the array cannot grow). */
struct pollfd;
NK_API int nk_node_driver_poll_fds(nk_node_driver *d, int64_t timeout_ms, struct pollfd *fds, unsigned nfds);
NK_API int64_t nk_node_driver_now(void);
NK_API void nk_node_driver_free(nk_node_driver *d);

#ifdef __cplusplus
}
#endif
#endif
