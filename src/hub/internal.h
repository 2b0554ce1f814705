/* natkit internal: pieces shared by the hub's server and client cores. */
#ifndef NK__HUB_INTERNAL_H
#define NK__HUB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/hub.h"

/* A byte FIFO on the heap: data lives in p[off .. off+len). 32-bit offsets (one per
 * connection twice: 24 bytes, not 32); a FIFO never holds more than UINT32_MAX bytes. */
typedef struct nk__hub_fifo {
    uint8_t *p;
    uint32_t off, len, alloc;
} nk__hub_fifo;

void nk__hub_fifo_free(nk__hub_fifo *f);
/* Appends n bytes; NK_ERR_NOMEM. Reserves and returns room for n bytes (NULL: no memory). */
uint8_t *nk__hub_fifo_reserve(nk__hub_fifo *f, size_t n);
int nk__hub_fifo_push(nk__hub_fifo *f, const void *p, size_t n);
/* Drops the first n bytes (n <= len). */
void nk__hub_fifo_consume(nk__hub_fifo *f, size_t n);
/* Copies up to cap bytes (at most INT32_MAX) from the front into buf and consumes them: how many. */
size_t nk__hub_fifo_take(nk__hub_fifo *f, uint8_t *buf, size_t cap);
static inline const uint8_t *nk__hub_fifo_data(const nk__hub_fifo *f) { return f->p + f->off; }

/* Appends one frame (header + body) to f: 0 or NK_ERR_NOMEM. */
int nk__hub_fifo_frame(nk__hub_fifo *f, uint8_t type, const void *a, size_t alen, const void *b, size_t blen);

/*
 * Splits a byte stream into frames: frames are taken straight from p, and
 * only a frame cut by the end of p is kept in rx (at most one frame). on_frame
 * is called for each complete frame and returns nonzero to stop: 1 after that
 * frame, NK__HUB_SPLIT_KEEP before it (the frame and the rest of p are then
 * kept in rx, which may hold more than one frame: call again only with an
 * empty rx). Returns 0, NK_ERR_LIMIT (a frame over max_body) or NK_ERR_NOMEM.
 */
#define NK__HUB_SPLIT_KEEP 2
typedef int (*nk__hub_frame_fn)(void *ctx, const nk_hub_frame *f);
int nk__hub_split(nk__hub_fifo *rx, size_t max_body, const uint8_t *p, size_t n, nk__hub_frame_fn on_frame,
                  void *ctx);

#endif
