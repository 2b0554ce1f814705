/*
 * Fuzz target: hub cluster messages (nk_hub_cluster_msg_decode), which a hub
 * reads from Redis: untrusted like any frame. The input is a sequence of
 * messages, each len u16 | bytes. Each decoded message must encode back to
 * the same bytes, and is then handed to a cluster core with two registered
 * peers the way the Redis driver does (FRAME -> deliver, UNKNOWN ->
 * unknown_peer, MOVED -> drop_peer). A dst (or src) whose first byte is odd is
 * replaced by one of the registered IDs, so deliveries happen. The peers'
 * queues must stay within their caps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub_fuzz.h"
#include "natkit/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t enc[NK_HUB_CLUSTER_MSG_MAX];

static void pick(nk_peer_id *p)
{
    if (p->key[0] & 1)
        *p = ids[p->key[1] & 1].id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_ids();
    uint8_t ctr = 0;
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_conns = 4;
    cfg.queue_cap = 8192;
    cfg.cluster = 1;
    cfg.random = fixed_random;
    cfg.random_ctx = &ctr;
    nk_hub_server *s;
    if (nk_hub_server_new(&s, &cfg) != 0)
        abort();
    nk_addr hub;
    nk_addr_parse(&hub, "192.0.2.1:7000");
    nk_hub_conn_id conn[2] = {register_peer(s, 0, &hub), register_peer(s, 1, &hub)};
    int64_t now = 0;
    size_t off = 0;
    while (off + 2 <= size) {
        size_t n = (size_t)data[off] << 8 | data[off + 1];
        off += 2;
        if (n > size - off)
            n = size - off;
        nk_hub_cluster_msg m;
        int rc = nk_hub_cluster_msg_decode(data + off, n, &m);
        if (rc == 0) {
            int e = nk_hub_cluster_msg_encode(enc, sizeof(enc), &m);
            if (e != (int)n || memcmp(enc, data + off, n) != 0)
                abort(); /* what decodes encodes back to the same bytes */
            pick(&m.src);
            pick(&m.dst);
            now += 10;
            if (m.kind == NK_HUB_CM_FRAME)
                (void)nk_hub_server_deliver(s, now, m.type, &m.src, &m.dst, m.payload, m.len);
            else if (m.kind == NK_HUB_CM_UNKNOWN)
                (void)nk_hub_server_unknown_peer(s, m.type, &m.src, &m.dst);
            else
                (void)nk_hub_server_drop_peer(s, &m.dst, NK_HUB_CLOSE_REPLACED);
        } else if (rc != NK_ERR_MALFORMED) {
            abort();
        }
        off += n;
        for (int i = 0; i < 2; i++) {
            if (nk_hub_server_pending(s, conn[i]) > cfg.queue_cap + 256)
                abort();
            (void)nk_hub_server_poll_transmit(s, conn[i], buf, 512); /* slow readers */
        }
        drain(s, now);
    }
    nk_hub_stats_t st;
    nk_hub_server_stats(s, &st);
    if (st.peers > 2 || st.cluster_delivered > st.routed)
        abort();
    nk_hub_server_free(s);
    return 0;
}
