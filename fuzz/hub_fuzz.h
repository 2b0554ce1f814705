/*
 * What the hub fuzz targets (fuzz_hub_server.c, fuzz_hub_cluster.c) share: fixed identities, a
 * counting random source, draining the server's events the way a driver does, and registering
 * a peer with a real client core. Included by each target (static: one copy per binary).
 */
#ifndef NK_FUZZ_HUB_FUZZ_H
#define NK_FUZZ_HUB_FUZZ_H

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/hub.h"

static void fixed_random(void *ctx, uint8_t *buf, size_t len)
{
    uint8_t *ctr = ctx;
    memset(buf, ++*ctr, len);
}

static nk_identity ids[2];
static uint8_t buf[1 << 16];

static void make_ids(void)
{
    static int done;
    if (done)
        return;
    if (sodium_init() < 0)
        abort();
    for (int i = 0; i < 2; i++) {
        uint8_t seed[32] = {(uint8_t)(i + 1)};
        crypto_sign_seed_keypair(ids[i].id.key, ids[i].secret, seed);
    }
    done = 1;
}

/* Events as the driver sees them: closes finished; in a cluster, claims confirmed at once (a
 * no-op for a lone hub's peers, confirmed already). Forwarded frames stay queued. */
static inline void drain_events(nk_hub_server *s)
{
    nk_hub_server_event ev;
    while (nk_hub_server_poll_event(s, &ev) == 0) {
        if (ev.type == NK_HUB_SEV_CLOSE)
            nk_hub_server_conn_closed(s, ev.conn);
        else if (ev.type == NK_HUB_SEV_REGISTERED)
            (void)nk_hub_server_confirm(s, ev.conn);
    }
}

/* The forward queue taken (as Redis would); how many frames. */
static inline int drain_forward(nk_hub_server *s, int64_t now_ms)
{
    nk_hub_forward fw;
    static uint8_t pay[NK_HUB_MAX_PAYLOAD];
    int n = 0;
    while (nk_hub_server_poll_forward(s, now_ms, &fw, pay, sizeof(pay)) == 0)
        n++;
    return n;
}

/* Both, until neither has more (taking forwards can resume paused senders: more events). */
static inline void drain(nk_hub_server *s, int64_t now_ms)
{
    do
        drain_events(s);
    while (drain_forward(s, now_ms) > 0);
}

/* Registers ids[i] on a new connection, with a client core doing the proof. */
static nk_hub_conn_id register_peer(nk_hub_server *s, int i, const nk_addr *hub)
{
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &ids[i];
    cc.hub = *hub;
    nk_hub_client *c;
    nk_hub_conn_id id;
    if (nk_hub_client_new(&c, &cc) != 0 || nk_hub_server_accept(s, 0, hub, hub, NULL, &id) != 0)
        abort();
    nk_hub_client_register(c, 0);
    for (int round = 0; round < 3; round++) {
        int n = nk_hub_server_poll_transmit(s, id, buf, sizeof(buf));
        if (n > 0)
            nk_hub_client_handle_bytes(c, 0, buf, (size_t)n);
        n = nk_hub_client_poll_transmit(c, 0, buf, sizeof(buf));
        if (n > 0)
            nk_hub_server_handle_bytes(s, 0, id, buf, (size_t)n);
        drain(s, 0);
    }
    if (nk_hub_client_state(c) != NK_HUB_CLIENT_REGISTERED)
        abort();
    nk_hub_client_free(c);
    return id;
}

#endif
