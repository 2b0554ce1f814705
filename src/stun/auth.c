/*
 * natkit: STUN authentication and FINGERPRINT. HMAC-SHA1 / HMAC-SHA256
 * (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, RFC 8489 14.5/14.6), the
 * long-term key and USERHASH go through OpenSSL 3; FINGERPRINT is a CRC-32
 * (RFC 8489 14.7) computed with the table below.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "cursor.h"
#include "natkit/stun.h"
#include "internal.h"

/* ---- FINGERPRINT ---- */

/*
 * CRC-32, reflected polynomial 0xEDB88320 (the checksum of zlib and
 * ISO-HDLC), eight bytes per step ("slicing-by-8"): table[0] is the classic
 * byte table, table[k][i] the CRC of byte i followed by k zero bytes. Every
 * ICE and TURN message carries a FINGERPRINT, so this is on the hot path.
 */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_setup(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (uint32_t i = 0; i < 256; i++)
            crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xff];
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t nk__crc32(const uint8_t *p, size_t n)
{
    const uint32_t(*t)[256] = (const uint32_t(*)[256])crc_table;
    uint32_t c = 0xffffffffu;
    pthread_once(&crc_once, crc_setup);
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ load_le32(p), hi = load_le32(p + 4);
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
            t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    }
    for (; n > 0; p++, n--)
        c = t[0][(c ^ *p) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

int nk__stun_check_fingerprint(const uint8_t *msg, size_t off, const uint8_t *value)
{
    uint32_t want = nk__crc32(msg, off) ^ NK__STUN_FINGERPRINT_XOR;
    return nk__load_u32(value) == want ? 0 : NK_ERR_FINGERPRINT;
}

void nk_stun_build_fingerprint(nk_stun_builder *b)
{
    uint8_t *p = nk__stun_build_reserve(b, NK_STUN_ATTR_FINGERPRINT, 4);
    if (p != NULL)
        nk__store_u32(p, nk__crc32(b->buf, b->len - 8) ^ NK__STUN_FINGERPRINT_XOR);
}

/* ---- HMAC ---- */

static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

/*
 * HMAC over a STUN header (given separately, because its length field is
 * adjusted) followed by body. Writes the full MAC (20 or 32 bytes) to out.
 */
static int stun_hmac(const char *digest, const uint8_t *key, size_t key_len,
                     const uint8_t hdr[NK_STUN_HEADER_SIZE], const uint8_t *body, size_t body_len,
                     uint8_t out[32])
{
    static const uint8_t empty_key[1];
    size_t out_len = 0;
    int ok = 0;
    pthread_once(&hmac_once, hmac_fetch);
    EVP_MAC_CTX *ctx = hmac_alg != NULL ? EVP_MAC_CTX_new(hmac_alg) : NULL;
    if (ctx == NULL)
        return NK_ERR_NOMEM;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
        OSSL_PARAM_construct_end(),
    };
    ok = EVP_MAC_init(ctx, key_len > 0 ? key : empty_key, key_len, params) &&
         EVP_MAC_update(ctx, hdr, NK_STUN_HEADER_SIZE) && EVP_MAC_update(ctx, body, body_len) &&
         EVP_MAC_final(ctx, out, &out_len, 32);
    EVP_MAC_CTX_free(ctx);
    return ok ? 0 : NK_ERR_NOMEM;
}

/* Appends an integrity attribute of mac_len bytes computed with digest. */
static void build_integrity(nk_stun_builder *b, uint16_t type, const char *digest, size_t mac_len,
                            const uint8_t *key, size_t key_len)
{
    uint8_t mac[32];
    if (b != NULL && b->err == 0 && key == NULL && key_len > 0)
        b->err = NK_ERR_INVAL;
    uint8_t *p = nk__stun_build_reserve(b, type, mac_len);
    if (p == NULL)
        return;
    /* The header length already ends at this attribute, as RFC 8489 14.5 wants. */
    size_t covered = (size_t)(p - 4 - b->buf);
    int err = stun_hmac(digest, key, key_len, b->buf, b->buf + NK_STUN_HEADER_SIZE,
                        covered - NK_STUN_HEADER_SIZE, mac);
    if (err != 0) {
        b->err = err;
        return;
    }
    memcpy(p, mac, mac_len);
    OPENSSL_cleanse(mac, sizeof(mac));
}

void nk_stun_build_integrity(nk_stun_builder *b, const uint8_t *key, size_t key_len)
{
    build_integrity(b, NK_STUN_ATTR_MESSAGE_INTEGRITY, OSSL_DIGEST_NAME_SHA1, 20, key, key_len);
}

void nk_stun_build_integrity_sha256(nk_stun_builder *b, const uint8_t *key, size_t key_len)
{
    build_integrity(b, NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256, OSSL_DIGEST_NAME_SHA2_256, 32, key,
                    key_len);
}

/* Checks the integrity attribute at index idx of m. */
static int check_one(const nk_stun_msg *m, int idx, const char *digest, const uint8_t *key,
                     size_t key_len)
{
    const nk_stun_attr *a = &m->attrs[idx];
    size_t off = (size_t)(a->value - 4 - m->raw);
    uint8_t hdr[NK_STUN_HEADER_SIZE], mac[32];
    memcpy(hdr, m->raw, NK_STUN_HEADER_SIZE);
    nk__store_u16(hdr + 2, (uint16_t)(off - NK_STUN_HEADER_SIZE + 4 + a->len));
    int err = stun_hmac(digest, key, key_len, hdr, m->raw + NK_STUN_HEADER_SIZE,
                        off - NK_STUN_HEADER_SIZE, mac);
    if (err == 0 && CRYPTO_memcmp(mac, a->value, a->len) != 0)
        err = NK_ERR_INTEGRITY;
    OPENSSL_cleanse(mac, sizeof(mac));
    return err;
}

int nk_stun_check_integrity(const nk_stun_msg *m, const uint8_t *key, size_t key_len)
{
    if (m == NULL || m->raw == NULL || (key == NULL && key_len > 0))
        return NK_ERR_INVAL;
    if (m->integrity_sha256 >= 0)
        return check_one(m, m->integrity_sha256, OSSL_DIGEST_NAME_SHA2_256, key, key_len);
    if (m->integrity >= 0)
        return check_one(m, m->integrity, OSSL_DIGEST_NAME_SHA1, key, key_len);
    return NK_ERR_NOT_FOUND;
}

/* ---- keys ---- */

/* Digest of the strings parts[0..n) joined with ':'. */
static int digest_joined(const EVP_MD *md, const char *const *parts, size_t n, uint8_t out[32],
                         size_t *out_len)
{
    unsigned len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return NK_ERR_NOMEM;
    int ok = EVP_DigestInit_ex(ctx, md, NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = (i == 0 || EVP_DigestUpdate(ctx, ":", 1)) && EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    ok = ok && EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return NK_ERR_NOMEM;
    if (out_len != NULL)
        *out_len = len;
    return 0;
}

int nk_stun_long_term_key(int pwalg, const char *user, const char *realm, const char *pass,
                          uint8_t key[32], size_t *key_len)
{
    if (user == NULL || realm == NULL || pass == NULL || key == NULL || key_len == NULL)
        return NK_ERR_INVAL;
    const EVP_MD *md = pwalg == NK_STUN_PWALG_MD5 ? EVP_md5() : pwalg == NK_STUN_PWALG_SHA256 ? EVP_sha256() : NULL;
    if (md == NULL)
        return NK_ERR_UNSUPPORTED;
    const char *parts[] = {user, realm, pass};
    return digest_joined(md, parts, 3, key, key_len);
}

int nk_stun_userhash(const char *user, const char *realm, uint8_t out[32])
{
    if (user == NULL || realm == NULL || out == NULL)
        return NK_ERR_INVAL;
    const char *parts[] = {user, realm};
    return digest_joined(EVP_sha256(), parts, 2, out, NULL);
}
