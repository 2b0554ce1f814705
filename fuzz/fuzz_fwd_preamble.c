/* Fuzz target: the CLI's stream preamble (src/cli/fwd.c), fed in the chunks the first byte
 * chooses; whatever the split, the result must be the one of feeding it whole, no byte past the
 * preamble may be taken, and a valid preamble must be what fwd_preamble_put writes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fwd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int feed(const uint8_t *p, size_t n, unsigned split, size_t *used)
{
    uint8_t acc[FWD_PREAMBLE_LEN];
    size_t have = 0, off = 0;
    int kind = 0;
    while (kind == 0 && off < n) {
        size_t chunk = split == 0 ? n - off : 1 + (off * 7 + split) % split;
        if (chunk > n - off)
            chunk = n - off;
        size_t k = fwd_preamble_feed(acc, &have, p + off, chunk, &kind);
        if (k > chunk || have > FWD_PREAMBLE_LEN)
            abort();
        off += k;
        if (kind == 0 && k != chunk)
            abort(); /* it takes everything until it has decided */
    }
    *used = off;
    return kind;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned split = data[0] % 6;
    const uint8_t *p = data + 1;
    size_t n = size - 1, used_whole, used_split;
    int whole = feed(p, n, 0, &used_whole);
    int parts = feed(p, n, split, &used_split);
    if (whole != parts || used_whole != used_split)
        abort();
    if (whole > 0) {
        uint8_t ref[FWD_PREAMBLE_LEN];
        fwd_preamble_put(ref, whole);
        if (used_whole != FWD_PREAMBLE_LEN || memcmp(ref, p, FWD_PREAMBLE_LEN) != 0)
            abort();
    }
    if (whole < 0 && used_whole > FWD_PREAMBLE_LEN)
        abort();
    return 0;
}
