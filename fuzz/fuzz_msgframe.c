/*
 * Fuzz target: the message framing of nk_conn (src/node/msgframe.c). The first
 * input byte picks the maximum message length (up to 64 KiB) and the chunk size;
 * the rest is a stream fed to one assembler in chunks, through both interfaces
 * (nk__msgrx_feed, and want/got as the node uses it). Both must yield the same
 * messages; every message must be exactly what its header said, inside the
 * input, and never longer than the maximum; a refused length must stop both.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/common.h"
#include "node/msgframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = (size_t)(data[0] & 0x0f) << 12 | (data[0] & 0x30); /* 0..61488 */
    size_t chunk = 1 + (data[0] >> 6) * 7;                          /* 1, 8, 15, 22 */
    data++;
    size--;
    nk__msgrx a, b;
    nk__msgrx_init(&a, max);
    nk__msgrx_init(&b, max);
    size_t off_a = 0, off_b = 0;
    int err_a = 0, err_b = 0;
    for (int guard = 0; guard < 1000000; guard++) {
        /* a: feed from a buffer, chunk bytes at a time */
        size_t len_a = 0, len_b = 0;
        const uint8_t *ma = NULL, *mb = NULL;
        while (!err_a && ma == NULL && off_a < size) {
            size_t n = size - off_a < chunk ? size - off_a : chunk;
            int rc = nk__msgrx_feed(&a, data + off_a, n);
            if (rc < 0) {
                err_a = rc;
                break;
            }
            if ((size_t)rc > n)
                abort();
            off_a += (size_t)rc;
            ma = nk__msgrx_message(&a, &len_a);
        }
        /* b: want/got, reading at most chunk bytes each time, as from a stream */
        while (!err_b && mb == NULL && off_b < size) {
            uint8_t *dst;
            size_t want = nk__msgrx_want(&b, &dst);
            if (want == 0 || dst == NULL)
                abort(); /* nothing waits, nothing failed: it must want bytes */
            size_t n = want < chunk ? want : chunk;
            if (n > size - off_b)
                n = size - off_b;
            memcpy(dst, data + off_b, n);
            off_b += n;
            int rc = nk__msgrx_got(&b, n);
            if (rc < 0) {
                err_b = rc;
                break;
            }
            mb = nk__msgrx_message(&b, &len_b);
        }
        if (err_a != err_b || (ma == NULL) != (mb == NULL) || (err_a == 0 && off_a != off_b))
            abort();
        if (ma == NULL)
            break;
        /* the message is the bytes right before the offset, after its 4-byte header */
        if (len_a != len_b || len_a > max || off_a < len_a + NK__MSGFRAME_HDR ||
            memcmp(ma, data + off_a - len_a, len_a) != 0 || memcmp(mb, ma, len_a) != 0)
            abort();
        const uint8_t *h = data + off_a - len_a - NK__MSGFRAME_HDR;
        uint32_t hl = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (hl != len_a)
            abort();
        uint8_t *dst;
        if (nk__msgrx_want(&a, &dst) != 0)
            abort(); /* a waiting message takes nothing more */
        nk__msgrx_next(&a);
        nk__msgrx_next(&b);
    }
    if (err_a != 0 && err_a != NK_ERR_MALFORMED)
        abort();
    nk__msgrx_free(&a);
    nk__msgrx_free(&b);
    return 0;
}
