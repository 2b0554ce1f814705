/*
 * natkit: peer identity (Ed25519 key pair, base32 peer IDs, key files).
 *
 * Key file format (docs/internals/identity.md):
 *     natkit-key-v1\n
 *     <standard base64 of the 32-byte Ed25519 seed>\n
 * Nothing else; the public key and the peer ID are derived from the seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "natkit/identity.h"

#define KEY_MAGIC      "natkit-key-v1\n"
#define SEED_SIZE      32
#define SEED_B64_LEN   44 /* 32 bytes, standard base64 with padding */
#define KEY_FILE_MAX   256

static const char b32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

static int sodium_ready(void)
{
    return sodium_init() < 0 ? NK_ERR_SYSTEM : 0;
}

static int identity_from_seed(nk_identity *out, const uint8_t seed[SEED_SIZE])
{
    if (crypto_sign_seed_keypair(out->id.key, out->secret, seed) != 0)
        return NK_ERR_SYSTEM;
    return 0;
}

int nk_identity_generate(nk_identity *out)
{
    if (out == NULL)
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    if (crypto_sign_keypair(out->id.key, out->secret) != 0)
        return NK_ERR_SYSTEM;
    return 0;
}

void nk_identity_wipe(nk_identity *id)
{
    if (id != NULL)
        sodium_memzero(id, sizeof(*id));
}

/* ---- peer ID text form ------------------------------------------------------ */

char *nk_peer_id_format(const nk_peer_id *peer, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return buf;
    if (peer == NULL || cap < NK_PEER_ID_STRLEN) {
        buf[0] = '\0';
        return buf;
    }
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < NK_PEER_ID_SIZE; i++) {
        acc = (acc << 8) | peer->key[i];
        bits += 8;
        while (bits >= 5) {
            buf[o++] = b32_alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        buf[o++] = b32_alphabet[(acc << (5 - bits)) & 31];
    buf[o] = '\0';
    return buf;
}

static int b32_value(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

/* Decodes exactly 52 characters into 32 bytes; the 4 unused low bits must be 0. */
static int b32_decode_id(uint8_t out[NK_PEER_ID_SIZE], const char *text)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < NK_PEER_ID_STRLEN - 1; i++) {
        int v = b32_value(text[i]);
        if (v < 0)
            return NK_ERR_INVAL;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            out[o++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    if (o != NK_PEER_ID_SIZE || (acc & ((1u << bits) - 1)) != 0)
        return NK_ERR_INVAL; /* non-canonical: the same key has one spelling */
    return 0;
}

int nk_peer_id_parse(nk_peer_id *out, const char *text)
{
    nk_peer_id tmp;
    if (out == NULL || text == NULL)
        return NK_ERR_INVAL;
    if (strnlen(text, NK_PEER_ID_STRLEN) != NK_PEER_ID_STRLEN - 1)
        return NK_ERR_INVAL;
    if (b32_decode_id(tmp.key, text) != 0)
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    /* Rejects non-canonical encodings, points off the curve and small-order points. */
    if (crypto_core_ed25519_is_valid_point(tmp.key) != 1)
        return NK_ERR_INVAL;
    *out = tmp;
    return 0;
}

int nk_peer_id_equal(const nk_peer_id *a, const nk_peer_id *b)
{
    if (a == NULL || b == NULL)
        return 0;
    return sodium_memcmp(a->key, b->key, NK_PEER_ID_SIZE) == 0;
}

/* ---- signatures and X25519 forms -------------------------------------------- */

int nk_identity_sign(const nk_identity *id, const uint8_t *msg, size_t len, uint8_t sig[NK_SIGNATURE_SIZE])
{
    if (id == NULL || sig == NULL || (msg == NULL && len > 0))
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    if (crypto_sign_detached(sig, NULL, msg, len, id->secret) != 0)
        return NK_ERR_SYSTEM;
    return 0;
}

int nk_peer_id_verify(const nk_peer_id *peer, const uint8_t *msg, size_t len, const uint8_t sig[NK_SIGNATURE_SIZE])
{
    if (peer == NULL || sig == NULL || (msg == NULL && len > 0))
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    if (crypto_sign_verify_detached(sig, msg, len, peer->key) != 0)
        return NK_ERR_AUTH;
    return 0;
}

int nk_identity_x25519(const nk_identity *id, uint8_t secret[32], uint8_t pub[32])
{
    if (id == NULL || secret == NULL || pub == NULL)
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    if (crypto_sign_ed25519_sk_to_curve25519(secret, id->secret) != 0)
        return NK_ERR_INVAL;
    if (crypto_sign_ed25519_pk_to_curve25519(pub, id->id.key) != 0) {
        sodium_memzero(secret, 32);
        return NK_ERR_INVAL;
    }
    return 0;
}

int nk_peer_id_x25519(const nk_peer_id *peer, uint8_t pub[32])
{
    if (peer == NULL || pub == NULL)
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    if (crypto_sign_ed25519_pk_to_curve25519(pub, peer->key) != 0)
        return NK_ERR_INVAL;
    return 0;
}

/* ---- key files ---------------------------------------------------------------- */

int nk_identity_default_path(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;
    if (buf == NULL || cap == 0)
        return NK_ERR_INVAL;
    /* XDG Base Directory: a relative XDG_CONFIG_HOME is invalid and ignored. */
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/natkit/key", xdg);
    else if (home != NULL && home[0] != '\0')
        n = snprintf(buf, cap, "%s/.config/natkit/key", home);
    else
        return NK_ERR_NOT_FOUND;
    if (n < 0 || (size_t)n >= cap)
        return NK_ERR_NOBUFS;
    return 0;
}

/* mkdir -p for the parent of path; directories it creates are 0700. */
static int make_parent_dirs(const char *path)
{
    char dir[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof(dir))
        return NK_ERR_INVAL;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return NK_ERR_SYSTEM;
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return NK_ERR_SYSTEM;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return NK_ERR_SYSTEM;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Formats the key file text into buf (KEY_FILE_MAX); returns its length or < 0. */
static int format_key_file(const nk_identity *id, char *buf)
{
    uint8_t seed[SEED_SIZE];
    char b64[SEED_B64_LEN + 1];
    if (crypto_sign_ed25519_sk_to_seed(seed, id->secret) != 0)
        return NK_ERR_SYSTEM;
    sodium_bin2base64(b64, sizeof(b64), seed, sizeof(seed), sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(buf, KEY_FILE_MAX, "%s%s\n", KEY_MAGIC, b64);
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(b64, sizeof(b64));
    return n;
}

/* Writes the text into a fresh 0600 temporary file beside path; fills tmp. */
static int write_temp(const char *path, const char *text, size_t len, char *tmp, size_t tmpcap)
{
    int n = snprintf(tmp, tmpcap, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= tmpcap)
        return NK_ERR_INVAL;
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0)
        return NK_ERR_SYSTEM;
    int rc = fchmod(fd, 0600) == 0 ? write_all(fd, text, len) : NK_ERR_SYSTEM;
    if (rc == 0 && fsync(fd) != 0)
        rc = NK_ERR_SYSTEM;
    if (close(fd) != 0 && rc == 0)
        rc = NK_ERR_SYSTEM;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int nk_identity_save_ex(const nk_identity *id, const char *path, int flags)
{
    char text[KEY_FILE_MAX], tmp[PATH_MAX];
    if (id == NULL || path == NULL || path[0] == '\0')
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    int rc = make_parent_dirs(path);
    if (rc != 0)
        return rc;
    int len = format_key_file(id, text);
    if (len < 0 || len >= KEY_FILE_MAX)
        return NK_ERR_SYSTEM;
    rc = write_temp(path, text, (size_t)len, tmp, sizeof(tmp));
    sodium_memzero(text, sizeof(text));
    if (rc != 0)
        return rc;
    if (flags & NK_IDENTITY_NO_OVERWRITE) {
        /* link() fails with EEXIST atomically: never replaces an existing key. */
        if (link(tmp, path) != 0)
            rc = errno == EEXIST ? NK_ERR_DENIED : NK_ERR_SYSTEM;
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return NK_ERR_SYSTEM;
    }
    return 0;
}

int nk_identity_save(const nk_identity *id, const char *path)
{
    return nk_identity_save_ex(id, path, 0);
}

static int read_small_file(const char *path, char *buf, size_t cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? NK_ERR_NOT_FOUND : NK_ERR_SYSTEM;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return NK_ERR_SYSTEM;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            close(fd);
            return NK_ERR_MALFORMED; /* far larger than any key file */
        }
    }
    close(fd);
    *len = n;
    return 0;
}

/* Parses the exact key file text; 0 or NK_ERR_MALFORMED. */
int nk__identity_parse_key_file(nk_identity *out, const char *text, size_t len)
{
    const size_t magic_len = sizeof(KEY_MAGIC) - 1;
    uint8_t seed[SEED_SIZE];
    size_t seed_len = 0;
    const char *b64_end = NULL;
    if (len != magic_len + SEED_B64_LEN + 1 || memcmp(text, KEY_MAGIC, magic_len) != 0 || text[len - 1] != '\n')
        return NK_ERR_MALFORMED;
    if (sodium_base642bin(seed, sizeof(seed), text + magic_len, SEED_B64_LEN, NULL, &seed_len, &b64_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        seed_len != SEED_SIZE || b64_end != text + magic_len + SEED_B64_LEN) {
        sodium_memzero(seed, sizeof(seed));
        return NK_ERR_MALFORMED;
    }
    int rc = identity_from_seed(out, seed);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

int nk_identity_load(nk_identity *out, const char *path)
{
    char text[KEY_FILE_MAX];
    size_t len = 0;
    if (out == NULL || path == NULL)
        return NK_ERR_INVAL;
    if (sodium_ready() != 0)
        return NK_ERR_SYSTEM;
    int rc = read_small_file(path, text, sizeof(text), &len);
    if (rc == 0)
        rc = nk__identity_parse_key_file(out, text, len);
    sodium_memzero(text, sizeof(text));
    if (rc != 0)
        sodium_memzero(out, sizeof(*out));
    return rc;
}
