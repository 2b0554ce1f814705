/*
 * natkit hub: the cluster driver (src/io/hub_cluster.c). Joins an
 * nk_hub_server (config.cluster = 1) to other hubs through one Redis: a shared
 * peer directory and one pub/sub channel per hub. Runs in the hub service's
 * loop thread, on hiredis's libuv adapter. docs/internals/hub.md, "Cluster".
 */
#ifndef NK__IO_HUB_CLUSTER_H
#define NK__IO_HUB_CLUSTER_H

#include <uv.h>

#include "natkit/hub_server.h"

typedef struct nk__hub_cluster nk__hub_cluster;

typedef struct nk__hub_cluster_config {
    const char *redis;    /* HOST:PORT ([v6]:PORT) */
    const char *password; /* AUTH (NULL: none) */
    int db;               /* SELECT (0: default) */
    int64_t ttl_ms;       /* directory entries' lifetime; refreshed every ttl_ms / 3 */
    int64_t answer_ms;    /* requests outstanding and no answer from Redis for this long: it is
                             declared away (both connections dropped, retried); 0: 15000,
                             at least 3000 */
    nk_addr announce;     /* this hub's address, written to natkit:hub:<id> */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    void (*process)(void *ctx); /* called after the cluster gave the core input */
    void *process_ctx;
} nk__hub_cluster_config;

/* Checks cfg->redis (NK_ERR_ADDRESS) and starts connecting (failures are retried, not returned). */
int nk__hub_cluster_new(nk__hub_cluster **out, uv_loop_t *loop, nk_hub_server *core,
                        const nk__hub_cluster_config *cfg);
/* A core event (REGISTERED, UNREGISTERED, FORWARD; others are ignored). Never calls process. */
void nk__hub_cluster_event(nk__hub_cluster *c, const nk_hub_server_event *ev);
/* Releases this hub's directory entries and disconnects; its handles close as the loop runs on
 * (1 s at most when Redis does not answer). */
void nk__hub_cluster_stop(nk__hub_cluster *c);
/* 1 for the handles the cluster closes itself (the service's close walk skips them). */
int nk__hub_cluster_owns(const nk__hub_cluster *c, const uv_handle_t *h);
/* After the loop has ended. */
void nk__hub_cluster_free(nk__hub_cluster *c);
/* The instance ID, 16 hex digits. */
const char *nk__hub_cluster_id(const nk__hub_cluster *c);

#endif
