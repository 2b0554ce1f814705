/*
 * natkit: message framing on a stream — a u32 big-endian length, then the
 * body. See msgframe.h.
 */
#include <stdlib.h>
#include <string.h>

#include "natkit/common.h"
#include "cursor.h"
#include "msgframe.h"

void nk__msgframe_header(uint8_t out[NK__MSGFRAME_HDR], uint32_t len)
{
    nk__store_u32(out, len);
}

void nk__msgrx_init(nk__msgrx *r, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->max = max;
}

void nk__msgrx_free(nk__msgrx *r)
{
    free(r->body);
    r->body = NULL;
    r->len = r->have = r->hdr_have = 0;
    r->ready = 0;
}

size_t nk__msgrx_want(nk__msgrx *r, uint8_t **dst)
{
    *dst = NULL;
    if (r->ready || r->failed)
        return 0;
    if (r->hdr_have < NK__MSGFRAME_HDR) {
        *dst = r->hdr + r->hdr_have;
        return NK__MSGFRAME_HDR - r->hdr_have;
    }
    *dst = r->body + r->have;
    return r->len - r->have;
}

int nk__msgrx_got(nk__msgrx *r, size_t n)
{
    if (r->failed)
        return NK_ERR_MALFORMED; /* also after NK_ERR_NOMEM: the stream is out of step */
    if (r->ready)
        return n == 0 ? 1 : NK_ERR_INVAL;
    if (r->hdr_have < NK__MSGFRAME_HDR) {
        if (n > NK__MSGFRAME_HDR - r->hdr_have)
            return NK_ERR_INVAL;
        r->hdr_have += n;
        if (r->hdr_have < NK__MSGFRAME_HDR)
            return 0;
        uint32_t len = nk__load_u32(r->hdr);
        if (len > r->max) {
            r->failed = 1;
            return NK_ERR_MALFORMED;
        }
        r->len = len;
        r->have = 0;
        if (len > 0) {
            r->body = malloc(len);
            if (r->body == NULL) {
                r->failed = 1;
                return NK_ERR_NOMEM;
            }
        }
    } else {
        if (n > r->len - r->have)
            return NK_ERR_INVAL;
        r->have += n;
    }
    if (r->have < r->len)
        return 0;
    r->ready = 1;
    return 1;
}

int nk__msgrx_feed(nk__msgrx *r, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        uint8_t *dst;
        size_t want = nk__msgrx_want(r, &dst);
        if (want == 0)
            break;
        size_t k = n - off < want ? n - off : want;
        memcpy(dst, p + off, k);
        int rc = nk__msgrx_got(r, k);
        off += k;
        if (rc < 0)
            return rc;
        if (rc == 1)
            break;
    }
    return (int)off;
}

const uint8_t *nk__msgrx_message(const nk__msgrx *r, size_t *len)
{
    if (!r->ready) {
        *len = 0;
        return NULL;
    }
    *len = r->len;
    static const uint8_t empty[1];
    return r->body != NULL ? r->body : empty;
}

void nk__msgrx_next(nk__msgrx *r)
{
    if (!r->ready)
        return;
    free(r->body);
    r->body = NULL;
    r->len = r->have = r->hdr_have = 0;
    r->ready = 0;
}
