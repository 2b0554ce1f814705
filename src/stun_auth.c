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
#include "stun_internal.h"

/* ---- FINGERPRINT ---- */

/* CRC-32, reflected polynomial 0xEDB88320 (the checksum of zlib and ISO-HDLC). */
static const uint32_t crc_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f,
    0xe963a535, 0x9e6495a3, 0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
    0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91, 0x1db71064, 0x6ab020f2,
    0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9,
    0xfa0f3d63, 0x8d080df5, 0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
    0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b, 0x35b5a8fa, 0x42b2986c,
    0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423,
    0xcfba9599, 0xb8bda50f, 0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
    0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d, 0x76dc4190, 0x01db7106,
    0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d,
    0x91646c97, 0xe6635c01, 0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
    0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457, 0x65b0d9c6, 0x12b7e950,
    0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7,
    0xa4d1c46d, 0xd3d6f4fb, 0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
    0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9, 0x5005713c, 0x270241aa,
    0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81,
    0xb7bd5c3b, 0xc0ba6cad, 0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
    0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683, 0xe3630b12, 0x94643b84,
    0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb,
    0x196c3671, 0x6e6b06e7, 0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
    0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5, 0xd6d6a3e8, 0xa1d1937e,
    0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55,
    0x316e8eef, 0x4669be79, 0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
    0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f, 0xc5ba3bbe, 0xb2bd0b28,
    0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f,
    0x72076785, 0x05005713, 0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
    0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21, 0x86d3d2d4, 0xf1d4e242,
    0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69,
    0x616bffd3, 0x166ccf45, 0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
    0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db, 0xaed16a4a, 0xd9d65adc,
    0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693,
    0x54de5729, 0x23d967bf, 0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
    0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

uint32_t nk__crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
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
