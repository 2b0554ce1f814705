/* natkit CLI: the accept/dial first exchange (see direct_hello.h). */
#include <string.h>

#include "direct_hello.h"

/*
 * magic (1) | kind 'H' or 'R' (1) | nonce (8) | REPLY only: peer ID (32) |
 * address (NK_ADDR_WIRE_SIZE: family, port, ip[16]) | HELLO only: zeros up to
 * HELLO_LEN.
 */
#define HEAD_LEN 10
_Static_assert(HELLO_LEN >= HEAD_LEN + NK_ADDR_WIRE_SIZE, "HELLO holds its address");
_Static_assert(HELLO_REPLY_LEN == HEAD_LEN + NK_PEER_ID_SIZE + NK_ADDR_WIRE_SIZE, "REPLY layout");

/* The address at p (left bytes remain): IPv4 or IPv6, never unset. */
static int get_addr(nk_addr *a, const uint8_t *p, size_t left)
{
    if (left < NK_ADDR_WIRE_SIZE || nk_addr_wire_get(a, p) != 0 || a->family == NK_AF_NONE)
        return NK_ERR_MALFORMED;
    return 0;
}

int hello_encode(const hello_msg *h, uint8_t *buf, size_t cap)
{
    size_t need = h->reply ? HELLO_REPLY_LEN : HELLO_LEN, at = HEAD_LEN;
    if (nk_addr_ip_len(&h->addr) == 0)
        return NK_ERR_INVAL;
    if (cap < need)
        return NK_ERR_NOBUFS;
    memset(buf, 0, need);
    buf[0] = HELLO_MAGIC;
    buf[1] = h->reply ? 'R' : 'H';
    memcpy(buf + 2, h->nonce, 8);
    if (h->reply) {
        memcpy(buf + at, h->id.key, NK_PEER_ID_SIZE);
        at += NK_PEER_ID_SIZE;
    }
    nk_addr_wire_put(buf + at, &h->addr);
    return (int)need;
}

int hello_decode(hello_msg *h, const uint8_t *p, size_t n)
{
    size_t at = HEAD_LEN;
    memset(h, 0, sizeof(*h));
    if (n < HEAD_LEN || p[0] != HELLO_MAGIC)
        return NK_ERR_MALFORMED;
    memcpy(h->nonce, p + 2, 8);
    if (p[1] == 'H') {
        if (n != HELLO_LEN) /* the padding keeps the answer smaller than the question */
            return NK_ERR_MALFORMED;
    } else if (p[1] == 'R' && n == HELLO_REPLY_LEN) {
        h->reply = 1;
        memcpy(h->id.key, p + at, NK_PEER_ID_SIZE);
        at += NK_PEER_ID_SIZE;
    } else {
        return NK_ERR_MALFORMED;
    }
    return get_addr(&h->addr, p + at, n - at);
}

int hello_is(const uint8_t *p, size_t n)
{
    /* A QUIC packet can start with 0xA8 too (a long header whose fixed bit ngtcp2 greased, RFC
     * 9287), but then the version follows: its first byte is 0, never 'H' or 'R'. */
    return n >= 2 && p[0] == HELLO_MAGIC && (p[1] == 'H' || p[1] == 'R');
}
