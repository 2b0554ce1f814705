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
static uint8_t buf[1 << 16], enc[NK_HUB_CLUSTER_MSG_MAX];

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

/* Events as the driver sees them: claims confirmed at once, closes finished. */
static void drain(nk_hub_server *s)
{
    nk_hub_server_event ev;
    nk_hub_forward fw;
    uint8_t pay[NK_HUB_MAX_PAYLOAD];
    while (nk_hub_server_poll_event(s, &ev) == 0) {
        if (ev.type == NK_HUB_SEV_CLOSE)
            nk_hub_server_conn_closed(s, ev.conn);
        else if (ev.type == NK_HUB_SEV_REGISTERED)
            (void)nk_hub_server_confirm(s, ev.conn);
        else if (ev.type == NK_HUB_SEV_FORWARD)
            while (nk_hub_server_poll_forward(s, &fw, pay, sizeof(pay)) == 0)
                ;
    }
}

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
        drain(s);
    }
    nk_hub_stats_t st;
    nk_hub_server_stats(s, &st);
    if (st.peers > 2 || st.cluster_delivered > st.routed)
        abort();
    nk_hub_server_free(s);
    return 0;
}
