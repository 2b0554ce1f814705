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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub_fuzz.h"
#include "natkit/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
            drain_forward(s, now);
        drain_events(s);
    }
    drain_forward(s, now);
    if (nk_hub_server_paused(s, a))
        abort(); /* an empty forward queue takes any waiting frame */
    while (nk_hub_server_poll_transmit(s, a, buf, sizeof(buf)) > 0)
        ;
    drain_events(s);
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
