/*
 * Fuzz target: the sealed TCP stream's decoder. The first byte picks the mode
 * and the chunk size: raw bytes from the start of a stream, or a genuine
 * preamble and token record followed by the input (length fields, tags and
 * truncation after authentication). Reads drain as it goes; no input may
 * crash, and bytes only come out of an authenticated stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void feed_all(nk_tcpseal *rx, const uint8_t *p, size_t n, size_t chunk)
{
    uint8_t out[4096];
    size_t off = 0;
    for (int guard = 0; off < n && guard < 100000; guard++) {
        size_t c = n - off < chunk ? n - off : chunk;
        int rc = nk_tcpseal_feed(rx, p + off, c);
        if (rc < 0)
            return;
        off += (size_t)rc;
        int r = nk_tcpseal_read(rx, out, sizeof(out));
        if (r > 0 && !nk_tcpseal_authenticated(rx))
            abort();
        if (rc == 0 && r <= 0)
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t k1[32] = {1}, k2[32] = {2}, token[NK_TCP_TOKEN_LEN] = {3};
    if (size < 1)
        return 0;
    size_t chunk = 1 + (data[0] & 0x7f) * 37;
    nk_tcpseal *tx = NULL, *rx = NULL;
    if (nk_tcpseal_new_keys(&rx, k2, k1, token, 32 * 1024) != 0)
        return 0;
    if (data[0] & 0x80) {
        const uint8_t *p;
        if (nk_tcpseal_new_keys(&tx, k1, k2, token, 32 * 1024) == 0) {
            size_t n = nk_tcpseal_pending(tx, &p);
            feed_all(rx, p, n, n);
        }
    }
    feed_all(rx, data + 1, size - 1, chunk);
    nk_tcpseal_free(tx);
    nk_tcpseal_free(rx);
    return 0;
}
