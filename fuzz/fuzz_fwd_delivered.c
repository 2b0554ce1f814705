/* Fuzz target: the CLI's "delivered" message (src/cli/fwd.c, fwd_delivered_parse). Whatever it
 * accepts must be exactly what fwd_delivered_put writes for the stream ID it returns (one
 * spelling per ID), and a stream ID it returns is a QUIC one (< 2^62) or FWD_DELIVERED_TCP. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fwd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t sid = -2;
    int rc = fwd_delivered_parse(data, size, &sid);
    if (rc < -1 || rc > 1)
        abort();
    if (rc != 1)
        return 0;
    if (sid != FWD_DELIVERED_TCP && (sid < 0 || sid >= (int64_t)1 << 62))
        abort();
    uint8_t out[FWD_DELIVERED_MAX];
    size_t n = fwd_delivered_put(out, sizeof(out), sid);
    if (n != size || memcmp(out, data, size) != 0)
        abort();
    return 0;
}
