/*
 * natkit: Noise_IK_25519_ChaChaPoly_BLAKE2b, following the Noise Protocol
 * Framework (revision 34) with libsodium primitives only: X25519
 * (crypto_scalarmult), ChaCha20-Poly1305 IETF (crypto_aead_chacha20poly1305_ietf),
 * BLAKE2b-512 (crypto_generichash), and the spec's HMAC and HKDF built on it.
 */
#include <sodium.h>
#include <string.h>

#include "internal.h"

#define BLOCKLEN 128 /* BLAKE2b block size, for HMAC */

static void hash2(uint8_t out[NK__HASHLEN], const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, NK__HASHLEN);
    crypto_generichash_update(&st, a, alen);
    crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, NK__HASHLEN);
    sodium_memzero(&st, sizeof(st));
}

/* HMAC-BLAKE2b (RFC 2104 over HASH with BLOCKLEN 128), as Noise section 4.3 defines it. */
static void hmac(uint8_t out[NK__HASHLEN], const uint8_t key[NK__HASHLEN], const uint8_t *a, size_t alen,
                 const uint8_t *b, size_t blen)
{
    uint8_t pad[BLOCKLEN], inner[NK__HASHLEN];
    crypto_generichash_state st;
    memset(pad, 0x36, sizeof(pad));
    for (size_t i = 0; i < NK__HASHLEN; i++)
        pad[i] ^= key[i];
    crypto_generichash_init(&st, NULL, 0, NK__HASHLEN);
    crypto_generichash_update(&st, pad, BLOCKLEN);
    crypto_generichash_update(&st, a, alen);
    if (blen > 0)
        crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, inner, NK__HASHLEN);
    for (size_t i = 0; i < BLOCKLEN; i++)
        pad[i] ^= 0x36 ^ 0x5c;
    hash2(out, pad, BLOCKLEN, inner, NK__HASHLEN);
    sodium_memzero(pad, sizeof(pad));
    sodium_memzero(inner, sizeof(inner));
    sodium_memzero(&st, sizeof(st));
}

void nk__hkdf2(const uint8_t ck[NK__HASHLEN], const uint8_t *ikm, size_t ikm_len, uint8_t out1[NK__HASHLEN],
               uint8_t out2[NK__HASHLEN])
{
    uint8_t temp[NK__HASHLEN];
    const uint8_t one = 1, two = 2;
    hmac(temp, ck, ikm, ikm_len, NULL, 0);
    hmac(out1, temp, &one, 1, NULL, 0);
    hmac(out2, temp, out1, NK__HASHLEN, &two, 1);
    sodium_memzero(temp, sizeof(temp));
}

static void nonce_of(uint8_t nonce[12], uint64_t n)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

void nk__aead_seal(const uint8_t key[NK__KEYLEN], uint64_t counter, const uint8_t *ad, size_t adlen,
                   const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    nonce_of(nonce, counter);
    crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, pt, len, ad, adlen, NULL, nonce, key);
}

int nk__aead_open(const uint8_t key[NK__KEYLEN], uint64_t counter, const uint8_t *ad, size_t adlen,
                  const uint8_t *ct, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    if (len < NK__TAGLEN)
        return NK_ERR_AUTH;
    nonce_of(nonce, counter);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct, len, ad, adlen, nonce, key) != 0)
        return NK_ERR_AUTH;
    return 0;
}

void nk__sym_init(nk__symmetric *st, const char *protocol_name)
{
    size_t len = strlen(protocol_name);
    memset(st, 0, sizeof(*st));
    if (len <= NK__HASHLEN)
        memcpy(st->h, protocol_name, len);
    else
        crypto_generichash(st->h, NK__HASHLEN, (const uint8_t *)protocol_name, len, NULL, 0);
    memcpy(st->ck, st->h, NK__HASHLEN);
}

void nk__sym_mix_hash(nk__symmetric *st, const uint8_t *data, size_t len)
{
    uint8_t h[NK__HASHLEN];
    hash2(h, st->h, NK__HASHLEN, data, len);
    memcpy(st->h, h, NK__HASHLEN);
}

static void mix_key(nk__symmetric *st, const uint8_t *ikm, size_t len)
{
    uint8_t ck[NK__HASHLEN], k[NK__HASHLEN];
    nk__hkdf2(st->ck, ikm, len, ck, k);
    memcpy(st->ck, ck, NK__HASHLEN);
    memcpy(st->k, k, NK__KEYLEN); /* HASHLEN 64: truncated to 32 */
    st->n = 0;
    st->has_key = 1;
    sodium_memzero(ck, sizeof(ck));
    sodium_memzero(k, sizeof(k));
}

int nk__sym_mix_dh(nk__symmetric *st, const uint8_t sk[NK__DHLEN], const uint8_t pk[NK__DHLEN])
{
    uint8_t shared[NK__DHLEN];
    /* libsodium refuses (returns -1) when the result is all zero: a small-order public key. */
    if (crypto_scalarmult(shared, sk, pk) != 0) {
        sodium_memzero(shared, sizeof(shared));
        return NK_ERR_AUTH;
    }
    mix_key(st, shared, sizeof(shared));
    sodium_memzero(shared, sizeof(shared));
    return 0;
}

void nk__sym_encrypt_and_hash(nk__symmetric *st, const uint8_t *pt, size_t len, uint8_t *out)
{
    size_t outlen = len;
    if (st->has_key) {
        nk__aead_seal(st->k, st->n++, st->h, NK__HASHLEN, pt, len, out);
        outlen += NK__TAGLEN;
    } else if (len > 0) {
        memmove(out, pt, len);
    }
    nk__sym_mix_hash(st, out, outlen);
}

int nk__sym_decrypt_and_hash(nk__symmetric *st, const uint8_t *ct, size_t len, uint8_t *out)
{
    if (!st->has_key) {
        memmove(out, ct, len);
        nk__sym_mix_hash(st, ct, len);
        return 0;
    }
    if (nk__aead_open(st->k, st->n, st->h, NK__HASHLEN, ct, len, out) != 0)
        return NK_ERR_AUTH;
    st->n++;
    nk__sym_mix_hash(st, ct, len);
    return 0;
}

void nk__sym_split(const nk__symmetric *st, uint8_t k1[NK__KEYLEN], uint8_t k2[NK__KEYLEN])
{
    uint8_t t1[NK__HASHLEN], t2[NK__HASHLEN];
    nk__hkdf2(st->ck, NULL, 0, t1, t2);
    memcpy(k1, t1, NK__KEYLEN);
    memcpy(k2, t2, NK__KEYLEN);
    sodium_memzero(t1, sizeof(t1));
    sodium_memzero(t2, sizeof(t2));
}

void nk__sym_exporter(const nk__symmetric *st, uint8_t out[32])
{
    static const char label[] = "natkit-session-exporter-v1";
    crypto_generichash_state g;
    crypto_generichash_init(&g, st->ck, NK__HASHLEN, 32);
    crypto_generichash_update(&g, (const uint8_t *)label, sizeof(label) - 1);
    crypto_generichash_update(&g, st->h, NK__HASHLEN);
    crypto_generichash_final(&g, out, 32);
    sodium_memzero(&g, sizeof(g));
}

/* ---- IK ---------------------------------------------------------------------------- */

/* Initialize(IK) for both roles: protocol name, prologue, pre-message "<- s". */
void nk__ik_init(nk__handshake *hs, const uint8_t *prologue, size_t prologue_len,
                 const uint8_t responder_static[32])
{
    memset(hs, 0, sizeof(*hs));
    nk__sym_init(&hs->sym, NK_SESSION_PROTOCOL);
    nk__sym_mix_hash(&hs->sym, prologue, prologue_len);
    nk__sym_mix_hash(&hs->sym, responder_static, 32);
    memcpy(hs->rs, responder_static, 32); /* the initiator's remote static; a responder overwrites it */
}

static void make_ephemeral(nk__handshake *hs, const uint8_t seed[32])
{
    /* The injected randomness is the X25519 secret itself (clamped by crypto_scalarmult). */
    memcpy(hs->e_sk, seed, 32);
    crypto_scalarmult_base(hs->e_pk, hs->e_sk);
}

int nk__ik_write_init(nk__handshake *hs, const uint8_t s_sk[32], const uint8_t s_pk[32], const uint8_t e_seed[32],
                      const uint8_t *payload, size_t plen, uint8_t *body)
{
    make_ephemeral(hs, e_seed);
    memcpy(body, hs->e_pk, 32); /* e */
    nk__sym_mix_hash(&hs->sym, hs->e_pk, 32);
    if (nk__sym_mix_dh(&hs->sym, hs->e_sk, hs->rs) != 0) /* es */
        return NK_ERR_AUTH;
    nk__sym_encrypt_and_hash(&hs->sym, s_pk, 32, body + 32); /* s */
    if (nk__sym_mix_dh(&hs->sym, s_sk, hs->rs) != 0)         /* ss */
        return NK_ERR_AUTH;
    nk__sym_encrypt_and_hash(&hs->sym, payload, plen, body + 32 + 48);
    return 0;
}

int nk__ik_read_init(nk__handshake *hs, const uint8_t s_sk[32], const uint8_t *body, size_t blen, uint8_t *payload)
{
    if (blen < 32 + 48 + NK__TAGLEN)
        return NK_ERR_AUTH;
    memcpy(hs->re, body, 32); /* e */
    nk__sym_mix_hash(&hs->sym, hs->re, 32);
    if (nk__sym_mix_dh(&hs->sym, s_sk, hs->re) != 0) /* es */
        return NK_ERR_AUTH;
    if (nk__sym_decrypt_and_hash(&hs->sym, body + 32, 48, hs->rs) != 0) /* s */
        return NK_ERR_AUTH;
    if (nk__sym_mix_dh(&hs->sym, s_sk, hs->rs) != 0) /* ss */
        return NK_ERR_AUTH;
    return nk__sym_decrypt_and_hash(&hs->sym, body + 80, blen - 80, payload);
}

int nk__ik_write_resp(nk__handshake *hs, const uint8_t e_seed[32], const uint8_t *payload, size_t plen,
                      uint8_t *body)
{
    make_ephemeral(hs, e_seed);
    memcpy(body, hs->e_pk, 32); /* e */
    nk__sym_mix_hash(&hs->sym, hs->e_pk, 32);
    if (nk__sym_mix_dh(&hs->sym, hs->e_sk, hs->re) != 0) /* ee */
        return NK_ERR_AUTH;
    if (nk__sym_mix_dh(&hs->sym, hs->e_sk, hs->rs) != 0) /* se */
        return NK_ERR_AUTH;
    nk__sym_encrypt_and_hash(&hs->sym, payload, plen, body + 32);
    return 0;
}

int nk__ik_read_resp(nk__handshake *hs, const uint8_t s_sk[32], const uint8_t *body, size_t blen, uint8_t *payload)
{
    if (blen < 32 + NK__TAGLEN)
        return NK_ERR_AUTH;
    memcpy(hs->re, body, 32); /* e */
    nk__sym_mix_hash(&hs->sym, hs->re, 32);
    if (nk__sym_mix_dh(&hs->sym, hs->e_sk, hs->re) != 0) /* ee */
        return NK_ERR_AUTH;
    if (nk__sym_mix_dh(&hs->sym, s_sk, hs->re) != 0) /* se */
        return NK_ERR_AUTH;
    return nk__sym_decrypt_and_hash(&hs->sym, body + 32, blen - 32, payload);
}
