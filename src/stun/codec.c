/*
 * natkit: STUN message codec (RFC 8489). Decoding indexes the attributes of a
 * caller's packet through bounds-checked cursors; encoding writes into a
 * caller's buffer with a sticky error. See docs/internals/stun-codec.md.
 */
#include <string.h>

#include "cursor.h"
#include "natkit/stun.h"
#include "internal.h"

#define ADDR_FAMILY_IPV4 0x01
#define ADDR_FAMILY_IPV6 0x02
#define MAX_BODY_LEN     0xfffcu /* largest multiple of 4 the 16-bit length holds */

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

/* ---- framing ---- */

static int has_cookie(const uint8_t *p)
{
    return nk__load_u32(p + 4) == NK_STUN_MAGIC_COOKIE;
}

int nk_stun_is_message(const uint8_t *p, size_t n)
{
    if (p == NULL || n < NK_STUN_HEADER_SIZE || (p[0] & 0xc0) != 0)
        return 0;
    size_t body = nk__load_u16(p + 2);
    return body % 4 == 0 && body + NK_STUN_HEADER_SIZE == n && has_cookie(p);
}

int nk_stun_frame_length(const uint8_t *p, size_t n, size_t *msg_len)
{
    if (p == NULL || msg_len == NULL)
        return NK_ERR_INVAL;
    if (n >= 1 && (p[0] & 0xc0) != 0)
        return NK_ERR_NOT_STUN;
    if (n < NK_STUN_HEADER_SIZE)
        return NK_ERR_AGAIN;
    size_t body = nk__load_u16(p + 2);
    if (body % 4 != 0 || !has_cookie(p))
        return NK_ERR_NOT_STUN;
    *msg_len = NK_STUN_HEADER_SIZE + body;
    return 0;
}

/* ---- decoding ---- */

static int decode_header(nk_stun_msg *m, const uint8_t *p, size_t n, int allow_classic)
{
    if (n >= 1 && (p[0] & 0xc0) != 0)
        return NK_ERR_NOT_STUN;
    if (n < NK_STUN_HEADER_SIZE)
        return NK_ERR_TRUNCATED;
    if (!has_cookie(p)) {
        if (!allow_classic)
            return NK_ERR_NOT_STUN;
        m->classic = 1;
    }
    size_t body = nk__load_u16(p + 2);
    if (body % 4 != 0)
        return NK_ERR_MALFORMED;
    if (NK_STUN_HEADER_SIZE + body > n)
        return NK_ERR_TRUNCATED;
    if (NK_STUN_HEADER_SIZE + body < n)
        return NK_ERR_MALFORMED;
    m->type = nk__load_u16(p);
    memcpy(m->tid, p + 8, NK_STUN_TID_SIZE);
    return 0;
}

/* Checks the length of the attributes the codec gives a fixed size. */
static int check_attr_len(uint16_t type, size_t len)
{
    switch (type) {
    case NK_STUN_ATTR_MESSAGE_INTEGRITY:
        return len == 20 ? 0 : NK_ERR_MALFORMED;
    case NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
        return len >= 16 && len <= 32 && len % 4 == 0 ? 0 : NK_ERR_MALFORMED;
    case NK_STUN_ATTR_FINGERPRINT:
        return len == 4 ? 0 : NK_ERR_MALFORMED;
    }
    return 0;
}

/*
 * Whether an attribute is indexed given what precedes it (RFC 8489 14.5,
 * 14.6): after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
 * FINGERPRINT count; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT.
 */
static int attr_counts(const nk_stun_msg *m, uint16_t type)
{
    if (type == NK_STUN_ATTR_FINGERPRINT)
        return 1;
    if (m->integrity_sha256 >= 0)
        return 0;
    if (m->integrity >= 0)
        return type == NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256;
    return 1;
}

static int index_attr(nk_stun_msg *m, uint16_t type, uint16_t len, const uint8_t *value, size_t off)
{
    if (!attr_counts(m, type))
        return 0;
    int err = check_attr_len(type, len);
    if (err != 0)
        return err;
    if (m->nattrs == NK_STUN_MAX_ATTRS)
        return NK_ERR_MALFORMED;
    int16_t idx = (int16_t)m->nattrs;
    m->attrs[m->nattrs++] = (nk_stun_attr){.type = type, .len = len, .value = value};
    if (type == NK_STUN_ATTR_MESSAGE_INTEGRITY)
        m->integrity = idx;
    else if (type == NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256)
        m->integrity_sha256 = idx;
    else if (type == NK_STUN_ATTR_FINGERPRINT) {
        m->fingerprint = idx;
        return nk__stun_check_fingerprint(m->raw, off, value);
    }
    return 0;
}

static int decode_attrs(nk_stun_msg *m)
{
    const uint8_t *src = m->raw + NK_STUN_HEADER_SIZE, *end = m->raw + m->raw_len;
    while (src != end) {
        size_t off = (size_t)(src - m->raw);
        uint16_t type, len;
        const uint8_t *value, *pad;
        if (nk__rd_u16(&src, end, &type) != 0 || nk__rd_u16(&src, end, &len) != 0 ||
            nk__rd_bytes(&src, end, len, &value) != 0 || nk__rd_bytes(&src, end, pad4(len) - len, &pad) != 0)
            return NK_ERR_MALFORMED;
        if (type == NK_STUN_ATTR_FINGERPRINT && src != end)
            return NK_ERR_MALFORMED; /* FINGERPRINT must be last */
        int err = index_attr(m, type, len, value, off);
        if (err != 0)
            return err;
    }
    return 0;
}

int nk_stun_decode(nk_stun_msg *m, const uint8_t *p, size_t n, int allow_classic)
{
    if (m == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    memset(m, 0, offsetof(nk_stun_msg, attrs));
    m->integrity = m->integrity_sha256 = m->fingerprint = -1;
    int err = decode_header(m, p, n, allow_classic);
    if (err != 0)
        return err;
    m->raw = p;
    m->raw_len = n;
    return decode_attrs(m);
}

/* ---- getters ---- */

const nk_stun_attr *nk_stun_get(const nk_stun_msg *m, uint16_t type)
{
    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < m->nattrs; i++)
        if (m->attrs[i].type == type)
            return &m->attrs[i];
    return NULL;
}

static int is_xor_type(uint16_t type)
{
    return type == NK_STUN_ATTR_XOR_MAPPED_ADDRESS || type == NK_STUN_ATTR_XOR_PEER_ADDRESS ||
           type == NK_STUN_ATTR_XOR_RELAYED_ADDRESS;
}

/* The 16 bytes addresses are XOR-ed with: the cookie, then the transaction ID. */
static void xor_pad(uint8_t out[16], const uint8_t tid[NK_STUN_TID_SIZE])
{
    nk__store_u32(out, NK_STUN_MAGIC_COOKIE);
    memcpy(out + 4, tid, NK_STUN_TID_SIZE);
}

static void xor_addr(nk_addr *a, const uint8_t tid[NK_STUN_TID_SIZE])
{
    uint8_t pad[16];
    xor_pad(pad, tid);
    a->port ^= (uint16_t)(NK_STUN_MAGIC_COOKIE >> 16);
    for (size_t i = 0; i < nk_addr_ip_len(a); i++)
        a->ip[i] ^= pad[i];
}

int nk_stun_attr_addr(const nk_stun_msg *m, const nk_stun_attr *a, nk_addr *out)
{
    if (m == NULL || a == NULL || out == NULL)
        return NK_ERR_INVAL;
    const uint8_t *src = a->value, *end = a->value + a->len, *ip;
    uint8_t reserved, family;
    uint16_t port;
    if (nk__rd_u8(&src, end, &reserved) != 0 || nk__rd_u8(&src, end, &family) != 0 ||
        nk__rd_u16(&src, end, &port) != 0)
        return NK_ERR_MALFORMED;
    size_t iplen = family == ADDR_FAMILY_IPV4 ? 4 : family == ADDR_FAMILY_IPV6 ? 16 : 0;
    if (iplen == 0 || (size_t)(end - src) != iplen || nk__rd_bytes(&src, end, iplen, &ip) != 0)
        return NK_ERR_MALFORMED;
    memset(out, 0, sizeof(*out));
    out->family = iplen == 4 ? NK_AF_INET : NK_AF_INET6;
    out->port = port;
    memcpy(out->ip, ip, iplen);
    if (is_xor_type(a->type))
        xor_addr(out, m->tid);
    return 0;
}

int nk_stun_get_addr(const nk_stun_msg *m, uint16_t type, nk_addr *out)
{
    const nk_stun_attr *a = nk_stun_get(m, type);
    if (a == NULL)
        return m == NULL || out == NULL ? NK_ERR_INVAL : NK_ERR_NOT_FOUND;
    return nk_stun_attr_addr(m, a, out);
}

/* The attribute of this type with exactly len bytes of value. */
static int get_fixed(const nk_stun_msg *m, uint16_t type, size_t len, const uint8_t **value)
{
    if (m == NULL)
        return NK_ERR_INVAL;
    const nk_stun_attr *a = nk_stun_get(m, type);
    if (a == NULL)
        return NK_ERR_NOT_FOUND;
    if (a->len != len)
        return NK_ERR_MALFORMED;
    *value = a->value;
    return 0;
}

int nk_stun_get_u32(const nk_stun_msg *m, uint16_t type, uint32_t *out)
{
    const uint8_t *v;
    if (out == NULL)
        return NK_ERR_INVAL;
    int err = get_fixed(m, type, 4, &v);
    if (err == 0)
        *out = nk__load_u32(v);
    return err;
}

int nk_stun_get_u64(const nk_stun_msg *m, uint16_t type, uint64_t *out)
{
    const uint8_t *v;
    if (out == NULL)
        return NK_ERR_INVAL;
    int err = get_fixed(m, type, 8, &v);
    if (err == 0)
        *out = (uint64_t)nk__load_u32(v) << 32 | nk__load_u32(v + 4);
    return err;
}

int nk_stun_get_error(const nk_stun_msg *m, int *code, const char **reason, size_t *reason_len)
{
    if (m == NULL || code == NULL)
        return NK_ERR_INVAL;
    const nk_stun_attr *a = nk_stun_get(m, NK_STUN_ATTR_ERROR_CODE);
    if (a == NULL)
        return NK_ERR_NOT_FOUND;
    if (a->len < 4)
        return NK_ERR_MALFORMED;
    int cls = a->value[2] & 0x07, number = a->value[3];
    if (cls < 3 || cls > 6 || number > 99)
        return NK_ERR_MALFORMED;
    *code = cls * 100 + number;
    if (reason != NULL)
        *reason = (const char *)a->value + 4;
    if (reason_len != NULL)
        *reason_len = a->len - 4u;
    return 0;
}

int nk_stun_get_string(const nk_stun_msg *m, uint16_t type, char *buf, size_t cap)
{
    if (m == NULL || buf == NULL)
        return NK_ERR_INVAL;
    const nk_stun_attr *a = nk_stun_get(m, type);
    if (a == NULL)
        return NK_ERR_NOT_FOUND;
    if (memchr(a->value, '\0', a->len) != NULL)
        return NK_ERR_MALFORMED; /* would silently shorten the string */
    if (cap < (size_t)a->len + 1)
        return NK_ERR_NOBUFS;
    memcpy(buf, a->value, a->len);
    buf[a->len] = '\0';
    return 0;
}

int nk_stun_attr_known(uint16_t type)
{
    switch (type) {
    case NK_STUN_ATTR_MAPPED_ADDRESS:
    case NK_STUN_ATTR_RESPONSE_ADDRESS:
    case NK_STUN_ATTR_CHANGE_REQUEST:
    case NK_STUN_ATTR_SOURCE_ADDRESS:
    case NK_STUN_ATTR_CHANGED_ADDRESS:
    case NK_STUN_ATTR_USERNAME:
    case NK_STUN_ATTR_MESSAGE_INTEGRITY:
    case NK_STUN_ATTR_ERROR_CODE:
    case NK_STUN_ATTR_UNKNOWN_ATTRIBUTES:
    case NK_STUN_ATTR_CHANNEL_NUMBER:
    case NK_STUN_ATTR_LIFETIME:
    case NK_STUN_ATTR_XOR_PEER_ADDRESS:
    case NK_STUN_ATTR_DATA:
    case NK_STUN_ATTR_REALM:
    case NK_STUN_ATTR_NONCE:
    case NK_STUN_ATTR_XOR_RELAYED_ADDRESS:
    case NK_STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
    case NK_STUN_ATTR_EVEN_PORT:
    case NK_STUN_ATTR_REQUESTED_TRANSPORT:
    case NK_STUN_ATTR_DONT_FRAGMENT:
    case NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
    case NK_STUN_ATTR_PASSWORD_ALGORITHM:
    case NK_STUN_ATTR_USERHASH:
    case NK_STUN_ATTR_XOR_MAPPED_ADDRESS:
    case NK_STUN_ATTR_RESERVATION_TOKEN:
    case NK_STUN_ATTR_PRIORITY:
    case NK_STUN_ATTR_USE_CANDIDATE:
    case NK_STUN_ATTR_PADDING:
    case NK_STUN_ATTR_RESPONSE_PORT:
    case NK_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
    case NK_STUN_ATTR_ADDRESS_ERROR_CODE:
    case NK_STUN_ATTR_PASSWORD_ALGORITHMS:
    case NK_STUN_ATTR_ALTERNATE_DOMAIN:
    case NK_STUN_ATTR_SOFTWARE:
    case NK_STUN_ATTR_ALTERNATE_SERVER:
    case NK_STUN_ATTR_FINGERPRINT:
    case NK_STUN_ATTR_ICE_CONTROLLED:
    case NK_STUN_ATTR_ICE_CONTROLLING:
    case NK_STUN_ATTR_RESPONSE_ORIGIN:
    case NK_STUN_ATTR_OTHER_ADDRESS:
        return 1;
    }
    return 0;
}

static int seen_before(const nk_stun_msg *m, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (m->attrs[j].type == m->attrs[i].type)
            return 1;
    return 0;
}

size_t nk_stun_unknown_required(const nk_stun_msg *m, uint16_t *out, size_t cap)
{
    size_t count = 0;
    if (m == NULL)
        return 0;
    for (size_t i = 0; i < m->nattrs; i++) {
        uint16_t type = m->attrs[i].type;
        if (type >= 0x8000 || nk_stun_attr_known(type) || seen_before(m, i))
            continue;
        if (out != NULL && count < cap)
            out[count] = type;
        count++;
    }
    return count;
}

/* ---- encoding ---- */

static void build_fail(nk_stun_builder *b, int err)
{
    if (b->err == 0)
        b->err = err;
}

void nk_stun_build_begin(nk_stun_builder *b, uint8_t *buf, size_t cap, uint16_t type,
                         const uint8_t tid[NK_STUN_TID_SIZE])
{
    if (b == NULL)
        return;
    *b = (nk_stun_builder){.buf = buf, .cap = cap, .len = 0, .err = 0};
    if (buf == NULL || tid == NULL || (type & 0xc000) != 0) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    if (cap < NK_STUN_HEADER_SIZE) {
        build_fail(b, NK_ERR_NOBUFS);
        return;
    }
    nk__store_u16(buf, type);
    nk__store_u16(buf + 2, 0);
    nk__store_u32(buf + 4, NK_STUN_MAGIC_COOKIE);
    memcpy(buf + 8, tid, NK_STUN_TID_SIZE);
    b->len = NK_STUN_HEADER_SIZE;
}

uint8_t *nk__stun_build_reserve(nk_stun_builder *b, uint16_t type, size_t len)
{
    if (b == NULL || b->err != 0)
        return NULL;
    if (len > 0xffff) {
        build_fail(b, NK_ERR_INVAL);
        return NULL;
    }
    size_t total = 4 + pad4(len);
    if (b->len - NK_STUN_HEADER_SIZE + total > MAX_BODY_LEN || b->cap - b->len < total) {
        build_fail(b, NK_ERR_NOBUFS);
        return NULL;
    }
    uint8_t *p = b->buf + b->len;
    nk__store_u16(p, type);
    nk__store_u16(p + 2, (uint16_t)len);
    memset(p + 4 + len, 0, pad4(len) - len);
    b->len += total;
    nk__store_u16(b->buf + 2, (uint16_t)(b->len - NK_STUN_HEADER_SIZE));
    return p + 4;
}

void nk_stun_build_attr(nk_stun_builder *b, uint16_t type, const void *value, size_t len)
{
    if (b != NULL && value == NULL && len > 0) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    uint8_t *p = nk__stun_build_reserve(b, type, len);
    if (p != NULL && len > 0)
        memcpy(p, value, len);
}

void nk_stun_build_u32(nk_stun_builder *b, uint16_t type, uint32_t v)
{
    uint8_t *p = nk__stun_build_reserve(b, type, 4);
    if (p != NULL)
        nk__store_u32(p, v);
}

void nk_stun_build_u64(nk_stun_builder *b, uint16_t type, uint64_t v)
{
    uint8_t *p = nk__stun_build_reserve(b, type, 8);
    if (p != NULL) {
        nk__store_u32(p, (uint32_t)(v >> 32));
        nk__store_u32(p + 4, (uint32_t)v);
    }
}

void nk_stun_build_string(nk_stun_builder *b, uint16_t type, const char *s)
{
    if (b != NULL && s == NULL) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    nk_stun_build_attr(b, type, s, s != NULL ? strlen(s) : 0);
}

void nk_stun_build_addr(nk_stun_builder *b, uint16_t type, const nk_addr *a)
{
    if (b == NULL)
        return;
    size_t iplen = a != NULL ? nk_addr_ip_len(a) : 0;
    if (iplen == 0) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    uint8_t *p = nk__stun_build_reserve(b, type, 4 + iplen);
    if (p == NULL)
        return;
    nk_addr x = *a;
    if (is_xor_type(type))
        xor_addr(&x, b->buf + 8);
    p[0] = 0;
    p[1] = iplen == 4 ? ADDR_FAMILY_IPV4 : ADDR_FAMILY_IPV6;
    nk__store_u16(p + 2, x.port);
    memcpy(p + 4, x.ip, iplen);
}

#define MAX_REASON_LEN 763 /* RFC 8489 14.8: fewer than 128 characters, at most 763 bytes */

void nk_stun_build_error(nk_stun_builder *b, int code, const char *reason)
{
    if (b == NULL)
        return;
    if (code < 300 || code > 699) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    if (reason == NULL)
        reason = nk_stun_reason(code);
    size_t rlen = strlen(reason);
    if (rlen > MAX_REASON_LEN) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    uint8_t *p = nk__stun_build_reserve(b, NK_STUN_ATTR_ERROR_CODE, 4 + rlen);
    if (p == NULL)
        return;
    p[0] = p[1] = 0;
    p[2] = (uint8_t)(code / 100);
    p[3] = (uint8_t)(code % 100);
    memcpy(p + 4, reason, rlen);
}

void nk_stun_build_unknown(nk_stun_builder *b, const uint16_t *types, size_t n)
{
    if (b != NULL && ((types == NULL && n > 0) || n > 0xffff / 2)) {
        build_fail(b, NK_ERR_INVAL);
        return;
    }
    uint8_t *p = nk__stun_build_reserve(b, NK_STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * n);
    if (p == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        nk__store_u16(p + 2 * i, types[i]);
}

int nk_stun_build_end(nk_stun_builder *b)
{
    if (b == NULL)
        return NK_ERR_INVAL;
    if (b->err != 0)
        return b->err;
    return (int)b->len;
}
