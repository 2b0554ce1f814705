/*
 * natkit internal: message framing on a QUIC stream (src/node/ only; tests and
 * fuzz/fuzz_msgframe.c reach it white-box as "node/msgframe.h").
 *
 * A message is a 4-byte big-endian length and that many bytes. The sender writes
 * nk__msgframe_header() then the body; the receiver is nk__msgrx, a sans-I/O
 * assembler that takes stream bytes and yields whole messages, one at a time:
 *
 *   for (;;) {
 *       uint8_t *dst; size_t want = nk__msgrx_want(&r, &dst);   // where the next bytes go
 *       n = read(stream, dst, want);                             // at most want
 *       rc = nk__msgrx_got(&r, n);                               // 1: a message is ready
 *       if (rc == 1) { use nk__msgrx_message(&r, &len); nk__msgrx_next(&r); }
 *   }
 *
 * It never reads past the end of the current message (so the stream's flow control
 * holds back the rest), allocates a body only after its length was checked against
 * the maximum, and refuses a longer one for good (NK_ERR_MALFORMED).
 */
#ifndef NK__NODE_MSGFRAME_H
#define NK__NODE_MSGFRAME_H

#include <stddef.h>
#include <stdint.h>

#define NK__MSGFRAME_HDR 4

typedef struct nk__msgrx {
    size_t max;        /* largest body accepted */
    uint8_t hdr[NK__MSGFRAME_HDR];
    size_t hdr_have;
    uint8_t *body;     /* len bytes, allocated when the header is complete (NULL for len 0) */
    size_t len, have;
    int ready;         /* a whole message is waiting (nk__msgrx_next drops it) */
    int failed;        /* a length over max was seen: the stream is unusable */
} nk__msgrx;

/* Writes the 4-byte header of a len-byte message. */
void nk__msgframe_header(uint8_t out[NK__MSGFRAME_HDR], uint32_t len);

void nk__msgrx_init(nk__msgrx *r, size_t max);
void nk__msgrx_free(nk__msgrx *r);
/* Where the next stream bytes go and how many at most (0: a message is ready or the
 * assembler failed: nothing more may be read now). */
size_t nk__msgrx_want(nk__msgrx *r, uint8_t **dst);
/* n (<= the last want) bytes were written at dst: 1 a message is ready, 0 more needed,
 * NK_ERR_MALFORMED (length over max), NK_ERR_NOMEM (both for good: the stream is out of
 * step), NK_ERR_INVAL (n larger than wanted). */
int nk__msgrx_got(nk__msgrx *r, size_t n);
/* Copies from p (a buffer, for tests and fuzzing): bytes taken (it stops after a whole
 * message) or a negative error as nk__msgrx_got. */
int nk__msgrx_feed(nk__msgrx *r, const uint8_t *p, size_t n);
/* The waiting message (NULL when none; *len its length). */
const uint8_t *nk__msgrx_message(const nk__msgrx *r, size_t *len);
/* Drops the waiting message; the next header follows. */
void nk__msgrx_next(nk__msgrx *r);

#endif
