/*
 * natkit internal: bounds-checked reading and writing of network bytes.
 * Readers take (const uint8_t **src, const uint8_t *end) in the picotls way:
 * every length is checked before use, and a failing read leaves *src alone.
 */
#ifndef NK__CURSOR_H
#define NK__CURSOR_H

#include <stdint.h>
#include <string.h>

#include "natkit/common.h"

static inline int nk__rd_u8(const uint8_t **src, const uint8_t *end, uint8_t *v)
{
    if (end - *src < 1)
        return NK_ERR_TRUNCATED;
    *v = (*src)[0];
    *src += 1;
    return 0;
}

static inline int nk__rd_u16(const uint8_t **src, const uint8_t *end, uint16_t *v)
{
    if (end - *src < 2)
        return NK_ERR_TRUNCATED;
    *v = (uint16_t)((*src)[0] << 8 | (*src)[1]);
    *src += 2;
    return 0;
}

static inline int nk__rd_u32(const uint8_t **src, const uint8_t *end, uint32_t *v)
{
    if (end - *src < 4)
        return NK_ERR_TRUNCATED;
    *v = (uint32_t)(*src)[0] << 24 | (uint32_t)(*src)[1] << 16 | (uint32_t)(*src)[2] << 8 | (*src)[3];
    *src += 4;
    return 0;
}

/* Hands out a view of the next n bytes. */
static inline int nk__rd_bytes(const uint8_t **src, const uint8_t *end, size_t n, const uint8_t **out)
{
    if ((size_t)(end - *src) < n)
        return NK_ERR_TRUNCATED;
    *out = *src;
    *src += n;
    return 0;
}

static inline uint16_t nk__load_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t nk__load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void nk__store_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void nk__store_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * A writer over a caller buffer with a sticky error: after the first
 * overflow every write is a no-op and err stays NK_ERR_NOBUFS.
 */
typedef struct nk__wr {
    uint8_t *base;
    size_t cap;
    size_t len;
    int err;
} nk__wr;

static inline void nk__wr_init(nk__wr *w, uint8_t *base, size_t cap)
{
    w->base = base;
    w->cap = cap;
    w->len = 0;
    w->err = 0;
}

/* Reserves n bytes and returns where to write them, or NULL (sticky error). */
static inline uint8_t *nk__wr_reserve(nk__wr *w, size_t n)
{
    if (w->err != 0)
        return NULL;
    if (w->cap - w->len < n) {
        w->err = NK_ERR_NOBUFS;
        return NULL;
    }
    uint8_t *p = w->base + w->len;
    w->len += n;
    return p;
}

static inline void nk__wr_u8(nk__wr *w, uint8_t v)
{
    uint8_t *p = nk__wr_reserve(w, 1);
    if (p != NULL)
        p[0] = v;
}

static inline void nk__wr_u16(nk__wr *w, uint16_t v)
{
    uint8_t *p = nk__wr_reserve(w, 2);
    if (p != NULL)
        nk__store_u16(p, v);
}

static inline void nk__wr_u32(nk__wr *w, uint32_t v)
{
    uint8_t *p = nk__wr_reserve(w, 4);
    if (p != NULL)
        nk__store_u32(p, v);
}

static inline void nk__wr_bytes(nk__wr *w, const void *v, size_t n)
{
    uint8_t *p = nk__wr_reserve(w, n);
    if (p != NULL && n > 0)
        memcpy(p, v, n);
}

#endif
