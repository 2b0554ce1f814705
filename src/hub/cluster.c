/*
 * natkit hub: the cluster message codec (what one hub publishes to another
 * through Redis; docs/internals/hub.md, "Cluster"). Messages come from the
 * network like frames do: every length is checked before it is used.
 */
#include <string.h>

#include "cursor.h"
#include "internal.h"

static int kind_ok(uint8_t kind, uint8_t type, size_t len)
{
    switch (kind) {
    case NK_HUB_CM_FRAME: return nk_hub_type_is_routed(type) && len <= NK_HUB_MAX_PAYLOAD;
    case NK_HUB_CM_UNKNOWN: return nk_hub_type_is_routed(type) && len == 0;
    case NK_HUB_CM_MOVED: return type == 0 && len == 0;
    default: return 0;
    }
}

int nk_hub_cluster_msg_encode(uint8_t *buf, size_t cap, const nk_hub_cluster_msg *m)
{
    if (buf == NULL || m == NULL || !kind_ok(m->kind, m->type, m->len) || (m->len > 0 && m->payload == NULL))
        return NK_ERR_INVAL;
    nk__wr w;
    nk__wr_init(&w, buf, cap);
    nk__wr_u8(&w, NK_HUB_CLUSTER_VERSION);
    nk__wr_u8(&w, m->kind);
    nk__wr_bytes(&w, m->origin, NK_HUB_CLUSTER_ID_SIZE);
    nk__wr_u8(&w, m->type);
    nk__wr_bytes(&w, m->src.key, NK_PEER_ID_SIZE);
    nk__wr_bytes(&w, m->dst.key, NK_PEER_ID_SIZE);
    nk__wr_bytes(&w, m->payload, m->len);
    return w.err != 0 ? w.err : (int)w.len;
}

int nk_hub_cluster_msg_decode(const uint8_t *p, size_t n, nk_hub_cluster_msg *m)
{
    const uint8_t *src = p, *end = p + n, *origin, *s, *d;
    uint8_t version;
    if (p == NULL || m == NULL || n > NK_HUB_CLUSTER_MSG_MAX)
        return NK_ERR_MALFORMED;
    memset(m, 0, sizeof(*m));
    if (nk__rd_u8(&src, end, &version) != 0 || version != NK_HUB_CLUSTER_VERSION ||
        nk__rd_u8(&src, end, &m->kind) != 0 || nk__rd_bytes(&src, end, NK_HUB_CLUSTER_ID_SIZE, &origin) != 0 ||
        nk__rd_u8(&src, end, &m->type) != 0 || nk__rd_bytes(&src, end, NK_PEER_ID_SIZE, &s) != 0 ||
        nk__rd_bytes(&src, end, NK_PEER_ID_SIZE, &d) != 0)
        return NK_ERR_MALFORMED;
    m->len = (size_t)(end - src);
    if (!kind_ok(m->kind, m->type, m->len))
        return NK_ERR_MALFORMED;
    memcpy(m->origin, origin, NK_HUB_CLUSTER_ID_SIZE);
    memcpy(m->src.key, s, NK_PEER_ID_SIZE);
    memcpy(m->dst.key, d, NK_PEER_ID_SIZE);
    m->payload = m->len > 0 ? src : NULL;
    return 0;
}
