/*
 * natkit: the sealed TCP byte stream (sans-I/O). See include/natkit/tcp.h and
 * docs/internals/tcp-upgrade.md.
 *
 * Each direction: "NKT1" || secretstream header (24) || records. A record is
 * u16 ciphertext length (big endian, also the record's additional data) ||
 * crypto_secretstream_xchacha20poly1305 ciphertext. The first record holds the
 * token (tag PUSH), data records are tag MESSAGE, the last one is an empty
 * FINAL. Anything else is refused, and the error sticks.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/tcp.h"

#define MAGIC      "NKT1"
#define MAGIC_LEN  4
#define HDR_LEN    crypto_secretstream_xchacha20poly1305_HEADERBYTES /* 24 */
#define ABYTES     crypto_secretstream_xchacha20poly1305_ABYTES      /* 17 */
#define PREAMBLE   (MAGIC_LEN + HDR_LEN)
#define MAX_CT     (NK_TCPSEAL_RECORD + ABYTES)
#define RAW_CAP    (2 + MAX_CT)
#define MIN_BUF    (32 * 1024)
#define DEF_BUF    (256 * 1024)

enum { RX_PREAMBLE, RX_HELLO, RX_DATA, RX_DONE };

struct nk_tcpseal {
    crypto_secretstream_xchacha20poly1305_state tx, rx;
    uint8_t key_rx[32];
    uint8_t token[NK_TCP_TOKEN_LEN];
    int rx_state, tx_done, err;
    uint8_t *out;                 /* ciphertext for the socket: [out_off, out_off + out_len) */
    size_t out_off, out_len, cap;
    uint8_t *in;                  /* plaintext for the reader */
    size_t in_off, in_len;
    uint8_t raw[RAW_CAP];         /* the unit being received (preamble or record) */
    size_t raw_len;
    nk_tcpseal_stats_t stats;
};

/* Room at the end of a buffer after moving its contents to the front when that helps. */
static size_t tail_room(uint8_t *buf, size_t *off, size_t len, size_t cap, size_t want)
{
    if (cap - *off - len < want && *off > 0) {
        memmove(buf, buf + *off, len);
        *off = 0;
    }
    return cap - *off - len;
}

static int seal_record(nk_tcpseal *t, const uint8_t *p, size_t n, unsigned char tag)
{
    size_t need = 2 + n + ABYTES;
    if (tail_room(t->out, &t->out_off, t->out_len, t->cap, need) < need)
        return NK_ERR_AGAIN;
    uint8_t *rec = t->out + t->out_off + t->out_len;
    size_t ctlen = n + ABYTES;
    rec[0] = (uint8_t)(ctlen >> 8);
    rec[1] = (uint8_t)ctlen;
    crypto_secretstream_xchacha20poly1305_push(&t->tx, rec + 2, NULL, p, n, rec, 2, tag);
    t->out_len += need;
    t->stats.records_out++;
    return 0;
}

int nk_tcpseal_new_keys(nk_tcpseal **out, const uint8_t key_tx[32], const uint8_t key_rx[32],
                        const uint8_t token[NK_TCP_TOKEN_LEN], size_t buf_cap)
{
    if (out == NULL || key_tx == NULL || key_rx == NULL || token == NULL)
        return NK_ERR_INVAL;
    *out = NULL;
    if (buf_cap == 0)
        buf_cap = DEF_BUF;
    if (buf_cap < MIN_BUF)
        return NK_ERR_INVAL;
    nk_tcpseal *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NK_ERR_NOMEM;
    t->out = malloc(buf_cap);
    t->in = malloc(buf_cap);
    if (t->out == NULL || t->in == NULL) {
        nk_tcpseal_free(t);
        return NK_ERR_NOMEM;
    }
    t->cap = buf_cap;
    memcpy(t->key_rx, key_rx, 32);
    memcpy(t->token, token, NK_TCP_TOKEN_LEN);
    memcpy(t->out, MAGIC, MAGIC_LEN);
    crypto_secretstream_xchacha20poly1305_init_push(&t->tx, t->out + MAGIC_LEN, key_tx);
    t->out_len = PREAMBLE;
    seal_record(t, token, NK_TCP_TOKEN_LEN, crypto_secretstream_xchacha20poly1305_TAG_PUSH);
    *out = t;
    return 0;
}

int nk_tcpseal_new_exported(nk_tcpseal **out, const uint8_t exported[NK_TCPSEAL_EXPORT_LEN], int client,
                            const uint8_t token[NK_TCP_TOKEN_LEN], size_t buf_cap)
{
    if (exported == NULL)
        return NK_ERR_INVAL;
    /* exported[0..32): client -> server, exported[32..64): server -> client */
    const uint8_t *c2s = exported, *s2c = exported + 32;
    return nk_tcpseal_new_keys(out, client ? c2s : s2c, client ? s2c : c2s, token, buf_cap);
}

void nk_tcpseal_free(nk_tcpseal *t)
{
    if (t == NULL)
        return;
    free(t->out);
    if (t->in != NULL)
        sodium_memzero(t->in, t->cap);
    free(t->in);
    sodium_memzero(t, sizeof(*t));
    free(t);
}

int nk_tcpseal_write(nk_tcpseal *t, const uint8_t *p, size_t n)
{
    if (t == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (t->tx_done || t->err != 0)
        return NK_ERR_STATE;
    size_t taken = 0;
    while (taken < n) {
        size_t room = tail_room(t->out, &t->out_off, t->out_len, t->cap, 2 + NK_TCPSEAL_RECORD + ABYTES);
        if (room <= 2 + ABYTES)
            break;
        size_t c = n - taken;
        if (c > NK_TCPSEAL_RECORD)
            c = NK_TCPSEAL_RECORD;
        if (c > room - 2 - ABYTES)
            c = room - 2 - ABYTES;
        seal_record(t, p + taken, c, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
        taken += c;
    }
    t->stats.bytes_out += taken;
    if (taken == 0 && n > 0)
        return NK_ERR_AGAIN;
    return taken > (size_t)INT32_MAX ? INT32_MAX : (int)taken;
}

int nk_tcpseal_shutdown(nk_tcpseal *t)
{
    if (t == NULL)
        return NK_ERR_INVAL;
    if (t->tx_done)
        return 0;
    if (t->err != 0)
        return NK_ERR_STATE;
    int rc = seal_record(t, NULL, 0, crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    if (rc == 0)
        t->tx_done = 1;
    return rc;
}

size_t nk_tcpseal_pending(const nk_tcpseal *t, const uint8_t **p)
{
    *p = t->out + t->out_off;
    return t->out_len;
}

void nk_tcpseal_consume(nk_tcpseal *t, size_t n)
{
    if (n > t->out_len)
        n = t->out_len;
    t->out_off += n;
    t->out_len -= n;
    if (t->out_len == 0)
        t->out_off = 0;
}

static int fail(nk_tcpseal *t, int err)
{
    t->err = err;
    if (err == NK_ERR_AUTH)
        t->stats.auth_failed++;
    else
        t->stats.malformed++;
    return err;
}

static int rx_preamble(nk_tcpseal *t)
{
    if (memcmp(t->raw, MAGIC, MAGIC_LEN) != 0)
        return fail(t, NK_ERR_MALFORMED);
    if (crypto_secretstream_xchacha20poly1305_init_pull(&t->rx, t->raw + MAGIC_LEN, t->key_rx) != 0)
        return fail(t, NK_ERR_AUTH);
    sodium_memzero(t->key_rx, sizeof(t->key_rx));
    t->rx_state = RX_HELLO;
    return 0;
}

/* A whole record is in raw and its plaintext fits in the reader's buffer. */
static int rx_record(nk_tcpseal *t, size_t ctlen)
{
    unsigned char tag;
    unsigned long long plen;
    uint8_t *dst = t->in + t->in_off + t->in_len;
    if (crypto_secretstream_xchacha20poly1305_pull(&t->rx, dst, &plen, &tag, t->raw + 2, ctlen, t->raw, 2) != 0)
        return fail(t, NK_ERR_AUTH);
    t->stats.records_in++;
    if (t->rx_state == RX_HELLO) {
        int ok = tag == crypto_secretstream_xchacha20poly1305_TAG_PUSH && plen == NK_TCP_TOKEN_LEN &&
                 sodium_memcmp(dst, t->token, NK_TCP_TOKEN_LEN) == 0;
        sodium_memzero(dst, (size_t)plen);
        if (!ok)
            return fail(t, NK_ERR_AUTH);
        t->rx_state = RX_DATA;
        return 0;
    }
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        if (plen != 0)
            return fail(t, NK_ERR_MALFORMED);
        t->rx_state = RX_DONE;
        return 0;
    }
    if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        return fail(t, NK_ERR_MALFORMED);
    t->in_len += (size_t)plen;
    t->stats.bytes_in += plen;
    return 0;
}

/* How many more bytes the unit in raw needs (0: complete). */
static size_t rx_need(const nk_tcpseal *t)
{
    if (t->rx_state == RX_PREAMBLE)
        return PREAMBLE - t->raw_len;
    if (t->raw_len < 2)
        return 2 - t->raw_len;
    size_t ctlen = (size_t)t->raw[0] << 8 | t->raw[1];
    return 2 + ctlen - t->raw_len;
}

int nk_tcpseal_feed(nk_tcpseal *t, const uint8_t *p, size_t n)
{
    if (t == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (t->err != 0)
        return t->err;
    size_t used = 0;
    while (used < n || (t->rx_state != RX_DONE && t->raw_len > 0 && rx_need(t) == 0)) {
        if (t->rx_state == RX_DONE)
            return fail(t, NK_ERR_MALFORMED); /* bytes after the end of the stream */
        size_t need = rx_need(t);
        if (need > 0) {
            size_t c = n - used < need ? n - used : need;
            memcpy(t->raw + t->raw_len, p + used, c);
            t->raw_len += c;
            used += c;
            if (t->rx_state == RX_PREAMBLE && t->raw_len >= MAGIC_LEN && memcmp(t->raw, MAGIC, MAGIC_LEN) != 0)
                return fail(t, NK_ERR_MALFORMED); /* not natkit: refuse at once */
            if (c < need)
                break;
        }
        if (t->rx_state == RX_PREAMBLE) {
            if (rx_preamble(t) != 0)
                return t->err;
            t->raw_len = 0;
            continue;
        }
        if (t->raw_len == 2) {
            size_t ctlen = (size_t)t->raw[0] << 8 | t->raw[1];
            if (ctlen < ABYTES || ctlen > MAX_CT)
                return fail(t, NK_ERR_MALFORMED);
            continue;
        }
        size_t ctlen = t->raw_len - 2;
        if (tail_room(t->in, &t->in_off, t->in_len, t->cap, ctlen - ABYTES) < ctlen - ABYTES)
            break; /* the reader must make room first; the record waits in raw */
        if (rx_record(t, ctlen) != 0)
            return t->err;
        t->raw_len = 0;
    }
    return used > (size_t)INT32_MAX ? INT32_MAX : (int)used;
}

size_t nk_tcpseal_feed_room(const nk_tcpseal *t)
{
    if (t->err != 0 || t->rx_state == RX_DONE)
        return 0;
    size_t free_in = t->cap - t->in_len;
    if (t->raw_len > 2 && rx_need(t) == 0)
        return 0; /* a whole record waits for room */
    return free_in < NK_TCPSEAL_RECORD ? 0 : free_in;
}

int nk_tcpseal_read(nk_tcpseal *t, uint8_t *buf, size_t cap)
{
    if (t == NULL || buf == NULL)
        return NK_ERR_INVAL;
    if (t->in_len == 0) {
        if (t->err != 0)
            return t->err;
        return t->rx_state == RX_DONE ? NK_ERR_CLOSED : NK_ERR_AGAIN;
    }
    size_t n = t->in_len < cap ? t->in_len : cap;
    if (n > (size_t)INT32_MAX)
        n = INT32_MAX;
    memcpy(buf, t->in + t->in_off, n);
    t->in_off += n;
    t->in_len -= n;
    if (t->in_len == 0)
        t->in_off = 0;
    /* a record that waited for room may fit now */
    if (t->err == 0 && t->rx_state != RX_DONE && t->raw_len > 2 && rx_need(t) == 0)
        nk_tcpseal_feed(t, NULL, 0);
    return (int)n;
}

int nk_tcpseal_authenticated(const nk_tcpseal *t)
{
    return t != NULL && (t->rx_state == RX_DATA || t->rx_state == RX_DONE);
}

int nk_tcpseal_error(const nk_tcpseal *t)
{
    return t == NULL ? NK_ERR_INVAL : t->err;
}

void nk_tcpseal_stats(const nk_tcpseal *t, nk_tcpseal_stats_t *st)
{
    *st = t->stats;
}
