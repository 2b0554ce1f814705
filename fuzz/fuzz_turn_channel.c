/*
 * Fuzz target: ChannelData framing, as a datagram and as a stream of frames
 * (the way a TCP/TLS driver walks its receive buffer), and a write/parse
 * round trip of whatever was parsed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/turn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(uint16_t ch, const uint8_t *d, size_t len, int stream)
{
    uint8_t *buf = malloc(len + 8);
    if (buf == NULL)
        return;
    int n = nk_turn_channel_data_write(buf, len + 8, ch, d, len, stream);
    if (n > 0) {
        uint16_t ch2;
        const uint8_t *d2;
        size_t l2, f2;
        if (nk_turn_channel_data_parse(buf, (size_t)n, stream, &ch2, &d2, &l2, &f2) != 0 || ch2 != ch ||
            l2 != len || f2 != (size_t)n || memcmp(d2, d, len) != 0)
            abort();
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t ch;
    const uint8_t *d;
    size_t len, frame;
    if (nk_turn_channel_data_parse(data, size, 0, &ch, &d, &len, &frame) == 0) {
        if (d + len > data + size || frame > size)
            abort();
        roundtrip(ch, d, len, 0);
    }
    size_t off = 0;
    while (off < size) {
        int rc = nk_turn_channel_data_parse(data + off, size - off, 1, &ch, &d, &len, &frame);
        if (rc != 0)
            break;
        if (frame == 0 || frame > size - off || (frame & 3) != 0)
            abort();
        roundtrip(ch, d, len, 1);
        off += frame;
    }
    return 0;
}
