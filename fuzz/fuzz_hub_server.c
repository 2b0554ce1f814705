/*
 * Fuzz target: the hub server core fed arbitrary bytes. Two peers register
 * properly (real client cores); then the input goes, in chunks whose size the
 * first byte picks, to one registered connection and to one fresh
 * (unregistered) connection, with time moving on. Events and output are
 * drained; queues must stay within their caps and the core must stay usable.
 * Each input runs twice: a hub alone, and one hub of a cluster whose driver
 * takes forwarded frames only every eighth step (a slow Redis: senders get
 * paused) and feeds a paused connection anyway every other step; once the
 * forward queue is drained, no connection may stay paused.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fixed_random(void *ctx, uint8_t *buf, size_t len)
{
    uint8_t *ctr = ctx;
    memset(buf, ++*ctr, len);
}

static nk_identity ids[2];

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

static uint8_t buf[1 << 16];

static void drain(nk_hub_server *s)
{
    nk_hub_server_event ev;
    while (nk_hub_server_poll_event(s, &ev) == 0)
        if (ev.type == NK_HUB_SEV_CLOSE)
            nk_hub_server_conn_closed(s, ev.conn);
        else if (ev.type == NK_HUB_SEV_REGISTERED)
            (void)nk_hub_server_confirm(s, ev.conn); /* cluster: the claim is in */
}

static void drain_forward(nk_hub_server *s)
{
    nk_hub_forward fw;
    static uint8_t pay[NK_HUB_MAX_PAYLOAD];
    while (nk_hub_server_poll_forward(s, &fw, pay, sizeof(pay)) == 0)
        ;
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
        drain(s);
    }
    if (nk_hub_client_state(c) != NK_HUB_CLIENT_REGISTERED)
        abort();
    nk_hub_client_free(c);
    return id;
}

static void run(const uint8_t *data, size_t size, int cluster)
{
    uint8_t ctr = 0;
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_conns = 8;
    cfg.queue_cap = 4096;
    cfg.relay_cap = 2048;
    cfg.random = fixed_random;
    cfg.random_ctx = &ctr;
    cfg.cluster = cluster;
    if (cluster) { /* a forward queue of three frames: it fills between two drains */
        cfg.max_payload = 256;
        cfg.forward_cap = 3 * (1 + 2 * 32 + 2 + 256);
    }
    nk_hub_server *s;
    if (nk_hub_server_new(&s, &cfg) != 0)
        abort();
    nk_addr hub;
    nk_addr_parse(&hub, "192.0.2.1:7000");
    nk_hub_conn_id a = register_peer(s, 0, &hub);
    nk_hub_conn_id b = register_peer(s, 1, &hub);
    nk_hub_conn_id fresh;
    if (nk_hub_server_accept(s, 0, &hub, &hub, NULL, &fresh) != 0)
        abort();
    size_t chunk = size > 0 ? (size_t)data[0] * 7 % 301 + 1 : 1;
    int64_t now = 0;
    for (size_t off = 0, step = 0; off < size; off += chunk, step++) {
        size_t n = size - off < chunk ? size - off : chunk;
        now += 100;
        if (!nk_hub_server_paused(s, a) || step % 2 == 0)
            (void)nk_hub_server_handle_bytes(s, now, a, data + off, n);
        (void)nk_hub_server_handle_bytes(s, now, fresh, data + off, n);
        nk_hub_server_handle_timeout(s, now);
        if (nk_hub_server_pending(s, b) > cfg.queue_cap + 256 || nk_hub_server_pending(s, a) > cfg.queue_cap + 256)
            abort();
        /* b reads slowly: a little every step */
        (void)nk_hub_server_poll_transmit(s, b, buf, 64);
        if (step % 8 == 7)
            drain_forward(s);
        drain(s);
    }
    drain_forward(s);
    if (nk_hub_server_paused(s, a))
        abort(); /* an empty forward queue takes any waiting frame */
    while (nk_hub_server_poll_transmit(s, a, buf, sizeof(buf)) > 0)
        ;
    drain(s);
    nk_hub_stats_t st;
    nk_hub_server_stats(s, &st);
    if (st.peers > 2 || st.conns > 3)
        abort();
    uint64_t paths = 0, buckets = 0, maps = 0, filters = 0;
    for (int i = 0; i < 4; i++)
        paths += st.report_path[i], maps += st.report_mapping[i], filters += st.report_filtering[i];
    for (int i = 0; i <= NK_HUB_CONNECT_NBOUNDS; i++)
        buckets += st.report_connect_ms[i];
    if (paths != st.reports || buckets != st.reports || maps != st.reports || filters != st.reports ||
        st.relay_frames > st.routed)
        abort(); /* every REPORT counted once in each breakdown */
    if (st.cluster_expired > st.cluster_paused || (!cluster && st.cluster_paused > 0))
        abort();
    nk_hub_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_ids();
    run(data, size, 0);
    run(data, size, 1);
    return 0;
}
