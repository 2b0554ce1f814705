/* Fuzz target: the control-stream framing of `natkit accept` / `natkit dial` (src/cli/direct_ctl.c).
 * The input is a stream as it arrives, cut at a point taken from its first byte: every frame taken
 * must lie inside the input, be re-encoded to the same bytes, and the rest must be incomplete
 * (0) or malformed; feeding the stream in two pieces must give the same frames. */
#include <stdlib.h>
#include <string.h>

#include "direct_ctl.h"
#include "natkit/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t frames(const uint8_t *p, size_t n, size_t *ends, size_t max, int *last)
{
    const uint8_t *m;
    size_t ml, off = 0, k = 0;
    uint8_t re[CTL_MAX + 2];
    int r;
    while ((r = ctl_frame_next(p + off, n - off, &m, &ml)) > 0) {
        if ((size_t)r != ml + 2 || off + (size_t)r > n || m != p + off + 2 || ml == 0 || ml > CTL_MAX)
            abort();
        if (ctl_frame_put(re, sizeof(re), m, ml) != r || memcmp(re, p + off, (size_t)r) != 0)
            abort();
        off += (size_t)r;
        if (k < max)
            ends[k] = off;
        k++;
    }
    if (r != 0 && r != NK_ERR_MALFORMED)
        abort();
    *last = r;
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t ends[512], k, i;
    int last;
    if (size == 0)
        return 0;
    k = frames(data, size, ends, 512, &last);
    /* a prefix holds exactly the frames that end inside it */
    size_t cut = data[0] % size;
    size_t ends2[512];
    int last2;
    size_t k2 = frames(data, cut, ends2, 512, &last2);
    for (i = 0; i < k2 && i < 512; i++)
        if (i >= k || ends2[i] != ends[i])
            abort();
    if (k2 > k)
        abort();
    for (i = 0; i < k && i < 512; i++)
        if (ends[i] <= cut && i >= k2)
            abort();
    return 0;
}
