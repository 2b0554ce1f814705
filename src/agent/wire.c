/*
 * natkit: the agent's wire formats (docs/internals/agent.md).
 *
 * Key: crypto_box_beforenm over the two identities' X25519 forms (the same
 * key on both sides); frames and signals are sealed with
 * crypto_box_easy_afternm (XSalsa20-Poly1305) under a fresh random nonce.
 * The sealed plaintext starts with the frame type and a direction byte (1
 * from the peer with the lower ID, 2 from the other), so a frame reflected
 * back to its sender, or with its clear type changed, is rejected.
 *
 * UDP check frame:  type u8 (0x81..0x83) | sender id[32] | nonce[24] |
 *                   box(type u8 | dir u8 | flags u8 | txid[8] | observed addr[19])
 * UDP data frame:   0x90 | sender id[32] | opaque upper-layer bytes
 * Hub signal:       version u8 | nonce[24] |
 *                   box(hub type u8 | dir u8 | flags u8 | sub u8 | hub rtt u16 | n u8 |
 *                       n * (type u8 | addr[19]))
 * addr: nk_addr_wire_put's form, family u8 (0, 4, 6) | port u16 | ip[16]; a candidate's
 *       is never unset, a check's observed address may be
 */
#include <string.h>

#include "internal.h"
#include "cursor.h"

int nk__ag_derive_keys(nk_agent *a)
{
    uint8_t sk[32], pk[32], peer_pk[32];
    int rc = nk_identity_x25519(&a->identity, sk, pk);
    if (rc == 0)
        rc = nk_peer_id_x25519(&a->peer, peer_pk);
    if (rc == 0) {
        int cmp = memcmp(a->identity.id.key, a->peer.key, NK_PEER_ID_SIZE);
        a->dir = cmp < 0 ? 1 : 2;
        rc = cmp == 0 || crypto_box_beforenm(a->key, peer_pk, sk) != 0 ? NK_ERR_INVAL : 0;
    }
    sodium_memzero(sk, sizeof(sk));
    return rc;
}

/* The direction byte the peer puts in what it seals. */
static uint8_t peer_dir(const nk_agent *a)
{
    return (uint8_t)(3 - a->dir);
}

/* nonce | box(pt) into out (cap >= n + NK__AG_SEAL_OVER). */
static void seal(nk_agent *a, uint8_t *out, const uint8_t *pt, size_t n)
{
    nk__ag_random(a, out, crypto_box_NONCEBYTES);
    crypto_box_easy_afternm(out + crypto_box_NONCEBYTES, pt, n, out, a->key);
}

static int unseal(const nk_agent *a, uint8_t *pt, size_t cap, const uint8_t *in, size_t n, size_t *ptlen)
{
    if (n < NK__AG_SEAL_OVER || n - NK__AG_SEAL_OVER > cap)
        return NK_ERR_MALFORMED;
    *ptlen = n - NK__AG_SEAL_OVER;
    if (crypto_box_open_easy_afternm(pt, in + crypto_box_NONCEBYTES, n - crypto_box_NONCEBYTES, in, a->key) != 0)
        return NK_ERR_AUTH;
    return 0;
}

int nk__ag_check_write(nk_agent *a, const nk__check *c, uint8_t *buf, size_t cap)
{
    uint8_t pt[NK__AG_CHECK_PT];
    if (cap < NK__AG_CHECK_SIZE)
        return NK_ERR_NOBUFS;
    pt[0] = c->type;
    pt[1] = a->dir;
    pt[2] = c->flags;
    memcpy(pt + 3, c->txid, NK__AG_TXID_SIZE);
    nk_addr_wire_put(pt + 3 + NK__AG_TXID_SIZE, &c->observed);
    buf[0] = c->type;
    memcpy(buf + 1, a->identity.id.key, NK_PEER_ID_SIZE);
    seal(a, buf + NK__AG_HDR, pt, sizeof(pt));
    return NK__AG_CHECK_SIZE;
}

/* 0; NK_ERR_NOT_FOUND (another sender); NK_ERR_MALFORMED; NK_ERR_AUTH. */
int nk__ag_check_read(const nk_agent *a, const uint8_t *p, size_t n, nk__check *c)
{
    uint8_t pt[NK__AG_CHECK_PT];
    size_t len;
    if (n < NK__AG_HDR)
        return NK_ERR_MALFORMED;
    if (memcmp(p + 1, a->peer.key, NK_PEER_ID_SIZE) != 0)
        return NK_ERR_NOT_FOUND;
    if (n != NK__AG_CHECK_SIZE)
        return NK_ERR_MALFORMED;
    int rc = unseal(a, pt, sizeof(pt), p + NK__AG_HDR, n - NK__AG_HDR, &len);
    if (rc != 0)
        return rc;
    if (pt[1] != peer_dir(a))
        return NK_ERR_AUTH; /* our own frame, reflected */
    if (pt[0] != p[0] || nk_addr_wire_get(&c->observed, pt + 3 + NK__AG_TXID_SIZE) != 0)
        return NK_ERR_MALFORMED;
    c->type = pt[0];
    c->flags = pt[2];
    memcpy(c->txid, pt + 3, NK__AG_TXID_SIZE);
    return 0;
}

int nk__ag_data_header(const nk_agent *a, uint8_t *buf, size_t cap)
{
    if (cap < NK__AG_HDR)
        return NK_ERR_NOBUFS;
    buf[0] = NK__AG_DATA;
    memcpy(buf + 1, a->identity.id.key, NK_PEER_ID_SIZE);
    return NK__AG_HDR;
}

int nk__ag_signal_write(nk_agent *a, const nk__sigmsg *m, uint8_t *buf, size_t cap)
{
    uint8_t pt[7 + NK__AG_MAX_LOCAL * (1 + NK_ADDR_WIRE_SIZE)];
    nk__wr w;
    if (m->ncand > NK__AG_MAX_LOCAL)
        return NK_ERR_INVAL;
    nk__wr_init(&w, pt, sizeof(pt));
    nk__wr_u8(&w, m->kind);
    nk__wr_u8(&w, a->dir);
    nk__wr_u8(&w, m->flags);
    nk__wr_u8(&w, m->sub);
    nk__wr_u16(&w, m->hub_rtt < 0 || m->hub_rtt > 0xfffe ? 0xffff : (uint16_t)m->hub_rtt);
    nk__wr_u8(&w, (uint8_t)m->ncand);
    for (size_t i = 0; i < m->ncand; i++) {
        nk__wr_u8(&w, m->cand[i].type);
        uint8_t *p = nk__wr_reserve(&w, NK_ADDR_WIRE_SIZE);
        if (p != NULL)
            nk_addr_wire_put(p, &m->cand[i].addr);
    }
    if (w.err != 0)
        return w.err;
    if (cap < 1 + NK__AG_SEAL_OVER + w.len)
        return NK_ERR_NOBUFS;
    buf[0] = NK__AG_VERSION;
    seal(a, buf + 1, pt, w.len);
    return (int)(1 + NK__AG_SEAL_OVER + w.len);
}

static int read_cands(const uint8_t **src, const uint8_t *end, nk__sigmsg *m)
{
    uint8_t n;
    if (nk__rd_u8(src, end, &n) != 0 || n > NK__AG_MAX_REMOTE)
        return NK_ERR_MALFORMED;
    for (m->ncand = 0; m->ncand < n; m->ncand++) {
        const uint8_t *addr;
        nk__cand *c = &m->cand[m->ncand];
        if (nk__rd_u8(src, end, &c->type) != 0 || c->type > NK__CAND_RELAY ||
            nk__rd_bytes(src, end, NK_ADDR_WIRE_SIZE, &addr) != 0 || nk_addr_wire_get(&c->addr, addr) != 0 ||
            c->addr.family == NK_AF_NONE)
            return NK_ERR_MALFORMED;
    }
    return *src == end ? 0 : NK_ERR_MALFORMED;
}

int nk__ag_signal_read(const nk_agent *a, uint8_t type, const uint8_t *p, size_t n, nk__sigmsg *m)
{
    uint8_t pt[NK_HUB_MAX_PAYLOAD];
    size_t len;
    uint16_t rtt;
    memset(m, 0, sizeof(*m));
    if (n < 1 || p[0] != NK__AG_VERSION)
        return NK_ERR_MALFORMED;
    int rc = unseal(a, pt, sizeof(pt), p + 1, n - 1, &len);
    if (rc != 0)
        return rc;
    const uint8_t *src = pt, *end = pt + len;
    uint8_t dir;
    if (nk__rd_u8(&src, end, &m->kind) != 0 || nk__rd_u8(&src, end, &dir) != 0)
        return NK_ERR_MALFORMED;
    if (dir != peer_dir(a))
        return NK_ERR_AUTH; /* our own signal, reflected */
    if (m->kind != type || nk__rd_u8(&src, end, &m->flags) != 0 || nk__rd_u8(&src, end, &m->sub) != 0 ||
        nk__rd_u16(&src, end, &rtt) != 0)
        return NK_ERR_MALFORMED;
    m->hub_rtt = rtt == 0xffff ? -1 : rtt;
    return read_cands(&src, end, m);
}
