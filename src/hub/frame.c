/* natkit hub: frame codec, proof message and the byte FIFO both cores use. */
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "internal.h"

int nk_hub_type_is_routed(uint8_t type)
{
    return type >= NK_HUB_T_CONNECT && type <= NK_HUB_T_SIGNAL;
}

int nk_hub_frame_parse(const uint8_t *p, size_t n, size_t max_body, nk_hub_frame *f)
{
    const uint8_t *src = p, *end = p + n;
    uint8_t type, flags;
    uint16_t len;
    const uint8_t *body;
    if (nk__rd_u8(&src, end, &type) != 0 || nk__rd_u8(&src, end, &flags) != 0 || nk__rd_u16(&src, end, &len) != 0)
        return 0;
    if (len > max_body)
        return NK_ERR_LIMIT;
    if (nk__rd_bytes(&src, end, len, &body) != 0)
        return 0;
    f->type = type;
    f->flags = flags;
    f->body = body;
    f->len = len;
    return NK_HUB_HEADER_SIZE + len;
}

int nk_hub_frame_check(const nk_hub_frame *f)
{
    size_t n = f->len;
    switch (f->type) {
    case NK_HUB_T_CHALLENGE: return n >= 1 + NK_HUB_CHALLENGE_SIZE ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_REGISTER: return n == 1 + NK_PEER_ID_SIZE + NK_SIGNATURE_SIZE ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_REGISTERED: return n >= NK_ADDR_WIRE_SIZE + 2 + 4 ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_UNKNOWN_PEER: return n == 1 + NK_PEER_ID_SIZE ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_CONNECT:
    case NK_HUB_T_CANDIDATE:
    case NK_HUB_T_RELAY:
    case NK_HUB_T_SIGNAL: return n >= NK_PEER_ID_SIZE && n <= NK_HUB_MAX_BODY ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_PING:
    case NK_HUB_T_PONG: return n == 8 ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_CLOSE: return n >= 2 && n <= 2 + NK_HUB_MAX_REASON ? 0 : NK_ERR_MALFORMED;
    case NK_HUB_T_REPORT: return n >= NK_HUB_REPORT_SIZE && n <= NK_HUB_REPORT_MAX ? 0 : NK_ERR_MALFORMED;
    default: return NK_ERR_NOT_FOUND;
    }
}

int nk_hub_report_encode(uint8_t body[NK_HUB_REPORT_SIZE], const nk_hub_report *r)
{
    body[0] = r->path <= 3 ? r->path : 0;
    nk__store_u32(body + 1, r->connect_ms);
    body[5] = r->mapping <= 3 ? r->mapping : 0;
    body[6] = r->filtering <= 3 ? r->filtering : 0;
    return NK_HUB_REPORT_SIZE;
}

int nk_hub_report_decode(const uint8_t *body, size_t n, nk_hub_report *r)
{
    const uint8_t *src = body, *end = body + n;
    if (n < NK_HUB_REPORT_SIZE || n > NK_HUB_REPORT_MAX || nk__rd_u8(&src, end, &r->path) != 0 ||
        nk__rd_u32(&src, end, &r->connect_ms) != 0 || nk__rd_u8(&src, end, &r->mapping) != 0 ||
        nk__rd_u8(&src, end, &r->filtering) != 0)
        return NK_ERR_MALFORMED;
    if (r->path > 3)
        r->path = 0;
    if (r->mapping > 3)
        r->mapping = 0;
    if (r->filtering > 3)
        r->filtering = 0;
    return 0;
}

int nk_hub_frame_write(uint8_t *buf, size_t cap, uint8_t type, const uint8_t *body, size_t len)
{
    if (len > UINT16_MAX || (len > 0 && body == NULL))
        return NK_ERR_INVAL;
    nk__wr w;
    nk__wr_init(&w, buf, cap);
    nk__wr_u8(&w, type);
    nk__wr_u8(&w, 0);
    nk__wr_u16(&w, (uint16_t)len);
    nk__wr_bytes(&w, body, len);
    return w.err != 0 ? w.err : (int)w.len;
}

int nk_hub_frame_write_routed(uint8_t *buf, size_t cap, uint8_t type, const nk_peer_id *id, const uint8_t *payload,
                              size_t len)
{
    if (!nk_hub_type_is_routed(type) || id == NULL || len > NK_HUB_MAX_PAYLOAD || (len > 0 && payload == NULL))
        return NK_ERR_INVAL;
    nk__wr w;
    nk__wr_init(&w, buf, cap);
    nk__wr_u8(&w, type);
    nk__wr_u8(&w, 0);
    nk__wr_u16(&w, (uint16_t)(NK_PEER_ID_SIZE + len));
    nk__wr_bytes(&w, id->key, NK_PEER_ID_SIZE);
    nk__wr_bytes(&w, payload, len);
    return w.err != 0 ? w.err : (int)w.len;
}

int nk_hub_proof_message(uint8_t *buf, size_t cap, const uint8_t challenge[NK_HUB_CHALLENGE_SIZE], const nk_addr *hub,
                         const nk_peer_id *id)
{
    if (buf == NULL || challenge == NULL || hub == NULL || id == NULL)
        return NK_ERR_INVAL;
    uint8_t a[NK_ADDR_WIRE_SIZE];
    nk_addr_wire_put(a, hub); /* only ip[0..3] is written for IPv4 */
    nk__wr w;
    nk__wr_init(&w, buf, cap);
    nk__wr_bytes(&w, NK_HUB_CONTEXT, sizeof(NK_HUB_CONTEXT)); /* includes the NUL separator */
    nk__wr_u8(&w, NK_HUB_VERSION);
    nk__wr_bytes(&w, challenge, NK_HUB_CHALLENGE_SIZE);
    nk__wr_bytes(&w, a, sizeof(a));
    nk__wr_bytes(&w, id->key, NK_PEER_ID_SIZE);
    return w.err != 0 ? w.err : (int)w.len;
}

const char *nk_hub_close_reason(int code)
{
    switch (code) {
    case NK_HUB_CLOSE_NORMAL: return "closed";
    case NK_HUB_CLOSE_PROTOCOL: return "protocol error";
    case NK_HUB_CLOSE_TOO_LARGE: return "frame too large";
    case NK_HUB_CLOSE_VERSION: return "unsupported protocol version";
    case NK_HUB_CLOSE_AUTH: return "registration proof rejected";
    case NK_HUB_CLOSE_REPLACED: return "replaced by a newer registration";
    case NK_HUB_CLOSE_IDLE: return "idle timeout";
    case NK_HUB_CLOSE_REGISTER_TIMEOUT: return "no registration in time";
    case NK_HUB_CLOSE_FULL: return "hub full";
    case NK_HUB_CLOSE_OVERFLOW: return "send queue overflow (peer not reading)";
    case NK_HUB_CLOSE_SHUTDOWN: return "hub shutting down";
    case NK_HUB_CLOSE_NOT_REGISTERED: return "not registered";
    case NK_HUB_CLOSE_NOT_HUB: return "not a natkit hub";
    default: return "unknown close code";
    }
}

/* ---- byte FIFO ---- */

void nk__hub_fifo_free(nk__hub_fifo *f)
{
    free(f->p);
    memset(f, 0, sizeof(*f));
}

uint8_t *nk__hub_fifo_reserve(nk__hub_fifo *f, size_t n)
{
    if (f->len == 0)
        f->off = 0;
    if (f->alloc - f->off - f->len < n && f->off > 0) {
        memmove(f->p, f->p + f->off, f->len);
        f->off = 0;
    }
    if (n > UINT32_MAX - f->len)
        return NULL;
    if (f->alloc - f->len < n) {
        size_t want = f->alloc > 0 ? f->alloc : 256;
        while (want - f->len < n)
            want *= 2;
        if (want > UINT32_MAX)
            want = UINT32_MAX;
        uint8_t *p = realloc(f->p, want);
        if (p == NULL)
            return NULL;
        f->p = p;
        f->alloc = (uint32_t)want;
    }
    uint8_t *dst = f->p + f->off + f->len;
    f->len += (uint32_t)n;
    return dst;
}

int nk__hub_fifo_push(nk__hub_fifo *f, const void *p, size_t n)
{
    uint8_t *dst = nk__hub_fifo_reserve(f, n);
    if (dst == NULL)
        return NK_ERR_NOMEM;
    if (n > 0)
        memcpy(dst, p, n);
    return 0;
}

void nk__hub_fifo_consume(nk__hub_fifo *f, size_t n)
{
    if (n >= f->len) {
        f->off = f->len = 0;
        /* Give big buffers back once drained, so 1000 idle peers stay small. */
        if (f->alloc > 16384) {
            free(f->p);
            f->p = NULL;
            f->alloc = 0;
        }
        return;
    }
    f->off += (uint32_t)n;
    f->len -= (uint32_t)n;
}

size_t nk__hub_fifo_take(nk__hub_fifo *f, uint8_t *buf, size_t cap)
{
    size_t n = f->len < cap ? f->len : cap;
    if (n > INT32_MAX)
        n = INT32_MAX;
    if (n > 0)
        memcpy(buf, nk__hub_fifo_data(f), n);
    nk__hub_fifo_consume(f, n);
    return n;
}

int nk__hub_fifo_frame(nk__hub_fifo *f, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    size_t len = alen + blen;
    if (len > UINT16_MAX)
        return NK_ERR_INVAL;
    uint8_t *dst = nk__hub_fifo_reserve(f, NK_HUB_HEADER_SIZE + len);
    if (dst == NULL)
        return NK_ERR_NOMEM;
    dst[0] = type;
    dst[1] = 0;
    nk__store_u16(dst + 2, (uint16_t)len);
    if (alen > 0)
        memcpy(dst + 4, a, alen);
    if (blen > 0)
        memcpy(dst + 4 + alen, b, blen);
    return 0;
}

/* When rx holds a partial frame, just enough input is appended to finish it. */
int nk__hub_split(nk__hub_fifo *rx, size_t max_body, const uint8_t *p, size_t n, nk__hub_frame_fn on_frame,
                  void *ctx)
{
    size_t frame_cap = NK_HUB_HEADER_SIZE + max_body;
    while (n > 0) {
        nk_hub_frame f;
        size_t old = rx->len;
        const uint8_t *src = p;
        size_t avail = n;
        if (old > 0) {
            size_t take = n < frame_cap - old ? n : frame_cap - old;
            if (nk__hub_fifo_push(rx, p, take) != 0)
                return NK_ERR_NOMEM;
            src = nk__hub_fifo_data(rx);
            avail = rx->len;
        }
        int r = nk_hub_frame_parse(src, avail, max_body, &f);
        if (r < 0)
            return NK_ERR_LIMIT;
        if (r == 0) /* incomplete: with old > 0 every input byte is in rx already */
            return old == 0 ? nk__hub_fifo_push(rx, p, n) : 0;
        int stop = on_frame(ctx, &f);
        if (stop == NK__HUB_SPLIT_KEEP) { /* this frame and all after it wait in rx */
            rx->len = old;
            return nk__hub_fifo_push(rx, p, n);
        }
        size_t used = (size_t)r - old; /* bytes of p in this frame */
        nk__hub_fifo_consume(rx, rx->len);
        p += used;
        n -= used;
        if (stop)
            return 0;
    }
    return 0;
}

int nk_hub_close_encode(uint8_t *buf, size_t cap, int code, const char *reason, int64_t retry_ms)
{
    size_t trailer = retry_ms >= 0 ? 5 : 0;
    size_t rl = reason != NULL ? strnlen(reason, NK_HUB_MAX_REASON) : 0;
    if (cap > 2 + NK_HUB_MAX_REASON)
        cap = 2 + NK_HUB_MAX_REASON;
    if (cap < 2 + trailer)
        return NK_ERR_NOBUFS;
    if (rl > cap - 2 - trailer)
        rl = cap - 2 - trailer;
    nk__wr w;
    nk__wr_init(&w, buf, cap);
    nk__wr_u16(&w, (uint16_t)code);
    nk__wr_bytes(&w, reason, rl);
    if (trailer > 0) {
        nk__wr_u8(&w, 0);
        nk__wr_u32(&w, retry_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)retry_ms);
    }
    return w.err != 0 ? w.err : (int)w.len;
}

int nk_hub_close_decode(const uint8_t *body, size_t n, nk_hub_close_info *out)
{
    const uint8_t *src = body, *end = body + n;
    uint16_t code;
    uint32_t retry;
    if (n > 2 + NK_HUB_MAX_REASON || nk__rd_u16(&src, end, &code) != 0)
        return NK_ERR_MALFORMED;
    out->code = code;
    out->retry_ms = -1;
    const uint8_t *nul = memchr(src, 0, (size_t)(end - src));
    size_t rl = (size_t)((nul != NULL ? nul : end) - src);
    memcpy(out->reason, src, rl); /* rl <= NK_HUB_MAX_REASON: n was checked */
    out->reason[rl] = '\0';
    if (nul != NULL) {
        src = nul + 1;
        if (nk__rd_u32(&src, end, &retry) == 0)
            out->retry_ms = retry; /* bytes after it: later fields, ignored */
    }
    return 0;
}
