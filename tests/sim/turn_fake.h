/*
 * A tiny in-memory TURN server for the TURN client's unit tests and fuzz
 * target: long-term credentials (401, 438, optional SHA-256), Allocate,
 * Refresh, CreatePermission, ChannelBind, Send indications and ChannelData,
 * with bookkeeping of when things would have expired on a real server.
 * Not a TURN server: no relay, one allocation, no policy.
 */
#ifndef NK_TEST_TURN_FAKE_H
#define NK_TEST_TURN_FAKE_H

#include <stdio.h>
#include <string.h>

#include "natkit/stun.h"
#include "natkit/turn.h"

#define FAKE_MAX 8

typedef struct fake_turn {
    const char *realm, *user, *pass;
    char nonce[64];
    int sha256;              /* offer PASSWORD-ALGORITHMS (MD5, SHA-256) */
    uint16_t fail_method;    /* answer this method ... */
    int fail_code;           /* ... with this error (0: never) */
    int bad_integrity;       /* corrupt the integrity of success responses */
    uint32_t lifetime;       /* granted (0: 600) */
    nk_addr relayed, mapped;
    /* what was seen */
    int n401, n438, nallocate, nrefresh, nperm, nchan, nsend, nchannel_data;
    int used_sha256;
    int64_t alloc_until;     /* allocation expiry on this server */
    int alloc_expired;       /* a Refresh came after expiry */
    int perm_expired, chan_expired;
    nk_addr perm_ip[FAKE_MAX];
    int64_t perm_until[FAKE_MAX];
    int nperms;
    uint16_t chan_num[FAKE_MAX];
    int64_t chan_until[FAKE_MAX];
    int nchans;
    int deallocated;         /* a Refresh with LIFETIME 0 ended the allocation; requests other than
                                Allocate get 437 from then on, as from a real server */
    int n437;
    nk_addr last_peer;
    uint16_t last_channel;
    uint8_t last_data[2048];
    size_t last_len;
} fake_turn;

static inline void fake_init(fake_turn *s)
{
    memset(s, 0, sizeof(*s));
    s->realm = "natkit.test";
    s->user = "alice";
    s->pass = "s3cret";
    snprintf(s->nonce, sizeof(s->nonce), "nonce-1");
    nk_addr_parse(&s->relayed, "192.0.2.10:50000");
    nk_addr_parse(&s->mapped, "198.51.100.7:40000");
}

static inline void fake_set_nonce(fake_turn *s, const char *nonce)
{
    if (s->sha256)
        snprintf(s->nonce, sizeof(s->nonce), "obMatJos2AAAB%s", nonce);
    else
        snprintf(s->nonce, sizeof(s->nonce), "%s", nonce);
}

static inline size_t fake_finish(nk_stun_builder *b, const uint8_t *key, size_t key_len, int sha256, int corrupt)
{
    if (key != NULL && sha256)
        nk_stun_build_integrity_sha256(b, key, key_len);
    else if (key != NULL)
        nk_stun_build_integrity(b, key, key_len);
    int n = nk_stun_build_end(b);
    if (n <= 0)
        return 0;
    if (corrupt)
        b->buf[n - 1] ^= 0x01;
    return (size_t)n;
}

static inline size_t fake_error(fake_turn *s, const nk_stun_msg *m, int code, uint8_t *out, size_t cap)
{
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, cap, nk_stun_type(nk_stun_method(m->type), NK_STUN_ERROR), m->tid);
    nk_stun_build_error(&b, code, NULL);
    if (code == 401 || code == 438) {
        nk_stun_build_string(&b, NK_STUN_ATTR_REALM, s->realm);
        nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, s->nonce);
        if (s->sha256) {
            const uint8_t algs[8] = {0, 2, 0, 0, 0, 1, 0, 0};
            nk_stun_build_attr(&b, NK_STUN_ATTR_PASSWORD_ALGORITHMS, algs, sizeof(algs));
        }
    }
    return fake_finish(&b, NULL, 0, 0, 0);
}

/* Checks credentials; 0 and the key, or the error code to answer with. */
static inline int fake_auth(fake_turn *s, const nk_stun_msg *m, uint8_t key[32], size_t *key_len, int *sha256)
{
    char user[128], realm[128], nonce[128];
    if (m->integrity < 0 && m->integrity_sha256 < 0)
        return 401;
    if (nk_stun_get_string(m, NK_STUN_ATTR_USERNAME, user, sizeof(user)) != 0 ||
        nk_stun_get_string(m, NK_STUN_ATTR_REALM, realm, sizeof(realm)) != 0 ||
        nk_stun_get_string(m, NK_STUN_ATTR_NONCE, nonce, sizeof(nonce)) != 0)
        return 400;
    if (strcmp(user, s->user) != 0 || strcmp(realm, s->realm) != 0)
        return 401;
    if (strcmp(nonce, s->nonce) != 0)
        return 438;
    *sha256 = 0;
    const nk_stun_attr *alg = nk_stun_get(m, NK_STUN_ATTR_PASSWORD_ALGORITHM);
    if (alg != NULL && alg->len == 4 && alg->value[1] == NK_STUN_PWALG_SHA256)
        *sha256 = 1;
    if (nk_stun_long_term_key(*sha256 ? NK_STUN_PWALG_SHA256 : NK_STUN_PWALG_MD5, s->user, s->realm, s->pass, key,
                              key_len) != 0)
        return 500;
    if (*sha256 && m->integrity_sha256 < 0)
        return 400;
    if (nk_stun_check_integrity(m, key, *key_len) != 0)
        return 401;
    s->used_sha256 |= *sha256;
    return 0;
}

static inline int fake_find_perm(fake_turn *s, const nk_addr *peer)
{
    for (int i = 0; i < s->nperms; i++)
        if (nk_addr_equal_ip(&s->perm_ip[i], peer))
            return i;
    if (s->nperms == FAKE_MAX)
        return -1;
    s->perm_ip[s->nperms] = *peer;
    s->perm_until[s->nperms] = INT64_MAX;
    return s->nperms++;
}

static inline void fake_touch_perm(fake_turn *s, int64_t now, const nk_addr *peer)
{
    int i = fake_find_perm(s, peer);
    if (i < 0)
        return;
    if (s->perm_until[i] != INT64_MAX && now >= s->perm_until[i])
        s->perm_expired++;
    s->perm_until[i] = now + NK_TURN_PERMISSION_LIFETIME_S * 1000;
}

static inline void fake_touch_chan(fake_turn *s, int64_t now, uint16_t number)
{
    int i;
    for (i = 0; i < s->nchans && s->chan_num[i] != number; i++)
        ;
    if (i == FAKE_MAX)
        return;
    if (i == s->nchans) {
        s->chan_num[s->nchans++] = number;
    } else if (now >= s->chan_until[i]) {
        s->chan_expired++;
    }
    s->chan_until[i] = now + NK_TURN_CHANNEL_LIFETIME_S * 1000;
}

/* Method-specific work of an authenticated request; adds attributes to b. */
static inline void fake_method(fake_turn *s, int64_t now, const nk_stun_msg *m, nk_stun_builder *b)
{
    uint32_t lifetime = s->lifetime ? s->lifetime : 600, req;
    nk_addr peer;
    switch (nk_stun_method(m->type)) {
    case NK_STUN_ALLOCATE:
        s->nallocate++;
        s->deallocated = 0;
        s->alloc_until = now + (int64_t)lifetime * 1000;
        nk_stun_build_addr(b, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &s->relayed);
        nk_stun_build_addr(b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &s->mapped);
        nk_stun_build_u32(b, NK_STUN_ATTR_LIFETIME, lifetime);
        break;
    case NK_STUN_REFRESH:
        s->nrefresh++;
        if (now >= s->alloc_until)
            s->alloc_expired++;
        if (nk_stun_get_u32(m, NK_STUN_ATTR_LIFETIME, &req) == 0 && req == 0) {
            s->deallocated = 1;
            lifetime = 0;
        }
        s->alloc_until = now + (int64_t)lifetime * 1000;
        nk_stun_build_u32(b, NK_STUN_ATTR_LIFETIME, lifetime);
        break;
    case NK_STUN_CREATE_PERMISSION:
        s->nperm++;
        if (nk_stun_get_addr(m, NK_STUN_ATTR_XOR_PEER_ADDRESS, &peer) == 0)
            fake_touch_perm(s, now, &peer);
        break;
    case NK_STUN_CHANNEL_BIND:
        s->nchan++;
        if (nk_stun_get_addr(m, NK_STUN_ATTR_XOR_PEER_ADDRESS, &peer) == 0 &&
            nk_stun_get_u32(m, NK_STUN_ATTR_CHANNEL_NUMBER, &req) == 0) {
            fake_touch_perm(s, now, &peer);
            fake_touch_chan(s, now, (uint16_t)(req >> 16));
        }
        break;
    }
}

static inline void fake_indication(fake_turn *s, const nk_stun_msg *m)
{
    const nk_stun_attr *d = nk_stun_get(m, NK_STUN_ATTR_DATA);
    if (nk_stun_method(m->type) != NK_STUN_SEND || d == NULL ||
        nk_stun_get_addr(m, NK_STUN_ATTR_XOR_PEER_ADDRESS, &s->last_peer) != 0 || d->len > sizeof(s->last_data))
        return;
    s->nsend++;
    s->last_channel = 0;
    memcpy(s->last_data, d->value, d->len);
    s->last_len = d->len;
}

/*
 * One message from the client (a datagram, or one whole stream frame).
 * Returns the response length in out, 0 when there is none.
 */
static inline size_t fake_handle(fake_turn *s, int64_t now, const uint8_t *p, size_t n, int stream, uint8_t *out,
                          size_t cap)
{
    if (nk_turn_is_channel_data(p, n)) {
        uint16_t ch;
        const uint8_t *data;
        size_t len, frame;
        if (nk_turn_channel_data_parse(p, n, stream, &ch, &data, &len, &frame) == 0 && len <= sizeof(s->last_data)) {
            s->nchannel_data++;
            s->last_channel = ch;
            memcpy(s->last_data, data, len);
            s->last_len = len;
        }
        return 0;
    }
    nk_stun_msg m;
    if (nk_stun_decode(&m, p, n, 0) != 0)
        return 0;
    if (nk_stun_class(m.type) == NK_STUN_INDICATION) {
        fake_indication(s, &m);
        return 0;
    }
    if (nk_stun_class(m.type) != NK_STUN_REQUEST)
        return 0;
    uint8_t key[32];
    size_t key_len = 0;
    int sha256 = 0, code = fake_auth(s, &m, key, &key_len, &sha256);
    if (code == 0 && s->fail_code != 0 && nk_stun_method(m.type) == s->fail_method)
        code = s->fail_code;
    if (code == 0 && s->deallocated && nk_stun_method(m.type) != NK_STUN_ALLOCATE)
        code = 437; /* Allocation Mismatch: no allocation any more */
    if (code != 0) {
        s->n401 += code == 401;
        s->n438 += code == 438;
        s->n437 += code == 437;
        return fake_error(s, &m, code, out, cap);
    }
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, cap, nk_stun_type(nk_stun_method(m.type), NK_STUN_SUCCESS), m.tid);
    fake_method(s, now, &m, &b);
    return fake_finish(&b, key, key_len, sha256, s->bad_integrity);
}

/* A Data indication from peer, as the server would send it. */
static inline size_t fake_data_indication(const nk_addr *peer, const uint8_t *data, size_t len, uint8_t *out, size_t cap)
{
    static const uint8_t tid[NK_STUN_TID_SIZE] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, cap, nk_stun_type(NK_STUN_DATA, NK_STUN_INDICATION), tid);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_PEER_ADDRESS, peer);
    nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, data, len);
    int n = nk_stun_build_end(&b);
    return n > 0 ? (size_t)n : 0;
}

#endif
