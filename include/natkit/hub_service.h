/*
 * natkit: nk_hub_service, a hub server on libuv (TCP, and TLS when tls_listen
 * is set) running an nk_hub_server in its own thread.
 */
#ifndef NATKIT_HUB_SERVICE_H
#define NATKIT_HUB_SERVICE_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/hub_server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A hub server on libuv: TCP, and TLS when tls_listen is set. */
typedef struct nk_hub_service_options {
    nk_addr listen;              /* TCP (family NK_AF_NONE: none) */
    nk_addr tls_listen;          /* TLS (family NK_AF_NONE: none); needs cert_file and key_file */
    const char *cert_file, *key_file;
    nk_hub_server_config server;
    int raise_nofile;            /* 1 (default): raise RLIMIT_NOFILE to its hard limit */
    /* One line per notable event (registrations, closes), from the loop thread; NULL: quiet. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /*
     * A cluster of hubs sharing one Redis (docs/internals/hub.md, "Cluster"): peers
     * registered at any of them reach each other. NULL: this hub alone. Redis being
     * away never stops the hub: it serves its own peers and retries with backoff.
     */
    const char *redis;           /* HOST:PORT (hiredis) */
    const char *redis_password;  /* AUTH with it (NULL: none) */
    int redis_db;                /* SELECT it (0: the default database) */
    int64_t redis_ttl_ms;        /* lifetime of this hub's directory entries (0: 15000), refreshed
                                    every third of it: a dead hub's peers are forgotten after it */
    /* The cluster's lines (Redis connected, unreachable, reconnected: once per change), from the
     * loop thread; NULL: through log. */
    void (*cluster_log)(void *ctx, const char *line);
} nk_hub_service_options;

typedef struct nk_hub_service nk_hub_service;

NK_API void nk_hub_service_options_init(nk_hub_service_options *o);
/*
 * Binds (errors come back here), then runs the loop in its own thread. Returns 0,
 * NK_ERR_SYSTEM (an address cannot be bound, a certificate or key file cannot be
 * read: errno tells), NK_ERR_INVAL (the certificate or key is not usable PEM),
 * NK_ERR_ADDRESS or NK_ERR_NOMEM; nk_error_context() names the address or file.
 */
NK_API int nk_hub_service_start(nk_hub_service **out, const nk_hub_service_options *o);
/* The bound addresses (port 0 in the options picks one). */
NK_API void nk_hub_service_addrs(const nk_hub_service *s, nk_addr *tcp, nk_addr *tls);
/* The hub's cluster instance ID (16 hex digits, random per start) into buf (cap >= 17):
 * 0, or NK_ERR_NOT_FOUND without options.redis. */
NK_API int nk_hub_service_cluster_id(const nk_hub_service *s, char *buf, size_t cap);
/* Thread-safe. */
NK_API void nk_hub_service_stats(nk_hub_service *s, nk_hub_stats_t *out);
/* The registered peers (nk_hub_server_peers), asked of the loop thread and waited for
 * (thread-safe, not during nk_hub_service_free): how many were filled into out (at most cap),
 * *total (may be NULL) how many there are; NK_ERR_TIMEOUT when the loop did not answer in 2 s. */
NK_API int nk_hub_service_peers(nk_hub_service *s, nk_hub_peer_info *out, size_t cap, size_t *total);
/* Asks the loop to stop (thread-safe), joins it, closes everything, frees. */
NK_API void nk_hub_service_free(nk_hub_service *s);

#ifdef __cplusplus
}
#endif
#endif
