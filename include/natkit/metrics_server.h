/*
 * natkit: nk_metrics_server, the HTTP endpoint Prometheus scrapes: GET /metrics
 * answered with the text exposition format (natkit/metrics.h), served by
 * libmicrohttpd from its own thread. See docs/internals/metrics.md.
 */
#ifndef NATKIT_METRICS_SERVER_H
#define NATKIT_METRICS_SERVER_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the server's own families into t. Called on the HTTP thread, once per scrape: it must
 * read its counters in a thread-safe way (the services' _stats getters are). */
typedef void (*nk_metrics_collect_fn)(void *ctx, nk_metrics_text *t);

typedef struct nk_metrics_server nk_metrics_server;

/*
 * Binds listen (IPv4 or IPv6; port 0 picks one, see nk_metrics_server_addr) and
 * serves GET (and HEAD) /metrics: collect's families, then natkit_build_info,
 * natkit_start_time_seconds and natkit_uptime_seconds. Other paths get 404,
 * other methods 405. Returns 0, NK_ERR_INVAL, NK_ERR_ADDRESS (cannot bind or
 * listen: errno tells), NK_ERR_SYSTEM (errno tells) or NK_ERR_NOMEM.
 */
NK_API int nk_metrics_server_start(nk_metrics_server **out, const nk_addr *listen, nk_metrics_collect_fn collect,
                                   void *ctx);
/* The bound address. */
NK_API void nk_metrics_server_addr(const nk_metrics_server *s, nk_addr *out);
/* Stops the HTTP thread, closes the socket, frees. NULL is fine. */
NK_API void nk_metrics_server_free(nk_metrics_server *s);

#ifdef __cplusplus
}
#endif
#endif
