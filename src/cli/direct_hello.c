/* natkit: the accept/dial first exchange (see direct_hello.h). */
#include <string.h>

#include "cursor.h"
#include "direct_hello.h"

/* magic, kind, nonce (8), then kind-specific; addresses as family (1), port (u16), ip (16) */
static size_t put_addr(uint8_t *p, const nk_addr *a)
{
    p[0] = a->family;
    p[1] = (uint8_t)(a->port >> 8);
    p[2] = (uint8_t)a->port;
    memset(p + 3, 0, 16);
    memcpy(p + 3, a->ip, nk_addr_ip_len(a));
    return 19;
}

static int get_addr(const uint8_t **src, const uint8_t *end, nk_addr *a)
{
    const uint8_t *ip;
    uint8_t fam;
    uint16_t port;
    if (nk__rd_u8(src, end, &fam) != 0 || nk__rd_u16(src, end, &port) != 0 || nk__rd_bytes(src, end, 16, &ip) != 0)
        return NK_ERR_MALFORMED;
    if (fam != NK_AF_INET && fam != NK_AF_INET6)
        return NK_ERR_MALFORMED;
    memset(a, 0, sizeof(*a));
    a->family = fam;
    a->port = port;
    memcpy(a->ip, ip, fam == NK_AF_INET ? 4 : 16);
    return 0;
}

int nk__hello_encode(const nk__hello *h, uint8_t *buf, size_t cap)
{
    size_t need = h->reply ? NK__REPLY_LEN : NK__HELLO_LEN;
    if (nk_addr_ip_len(&h->addr) == 0)
        return NK_ERR_INVAL;
    if (cap < need)
        return NK_ERR_NOBUFS;
    memset(buf, 0, need);
    buf[0] = NK__HELLO_MAGIC;
    buf[1] = h->reply ? 'R' : 'H';
    memcpy(buf + 2, h->nonce, 8);
    size_t n = 10;
    if (h->reply) {
        memcpy(buf + n, h->id.key, NK_PEER_ID_SIZE);
        n += NK_PEER_ID_SIZE;
    }
    put_addr(buf + n, &h->addr);
    return (int)need;
}

int nk__hello_decode(nk__hello *h, const uint8_t *p, size_t n)
{
    const uint8_t *src = p, *end = p + n, *nonce, *id;
    uint8_t magic, kind;
    memset(h, 0, sizeof(*h));
    if (nk__rd_u8(&src, end, &magic) != 0 || magic != NK__HELLO_MAGIC || nk__rd_u8(&src, end, &kind) != 0 ||
        nk__rd_bytes(&src, end, 8, &nonce) != 0)
        return NK_ERR_MALFORMED;
    memcpy(h->nonce, nonce, 8);
    if (kind == 'H') {
        if (n != NK__HELLO_LEN) /* the padding keeps the answer smaller than the question */
            return NK_ERR_MALFORMED;
        return get_addr(&src, end, &h->addr);
    }
    if (kind != 'R' || n != NK__REPLY_LEN || nk__rd_bytes(&src, end, NK_PEER_ID_SIZE, &id) != 0)
        return NK_ERR_MALFORMED;
    h->reply = 1;
    memcpy(h->id.key, id, NK_PEER_ID_SIZE);
    return get_addr(&src, end, &h->addr);
}

int nk__hello_is(const uint8_t *p, size_t n)
{
    return n >= 2 && p[0] == NK__HELLO_MAGIC;
}
