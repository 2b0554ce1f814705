/*
 * natkit: ChannelData framing (RFC 8656 section 12.4). A 4-byte header
 * (channel number, length) and the application data; over streams the
 * message is padded to a multiple of 4 bytes, over datagrams it need not be.
 */
#include <string.h>

#include "cursor.h"
#include "natkit/turn.h"

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

int nk_turn_channel_data_parse(const uint8_t *p, size_t n, int stream, uint16_t *channel,
                               const uint8_t **data, size_t *data_len, size_t *frame_len)
{
    const uint8_t *src = p, *end = p + n;
    uint16_t ch, len;
    if (p == NULL && n != 0)
        return NK_ERR_INVAL;
    if (nk__rd_u16(&src, end, &ch) != 0 || nk__rd_u16(&src, end, &len) != 0)
        return stream ? NK_ERR_AGAIN : NK_ERR_TRUNCATED;
    if (ch < NK_TURN_CHANNEL_MIN || ch > NK_TURN_CHANNEL_MAX_RFC5766)
        return NK_ERR_MALFORMED;
    size_t need = stream ? pad4((size_t)len) : (size_t)len;
    if ((size_t)(end - src) < need)
        return stream ? NK_ERR_AGAIN : NK_ERR_TRUNCATED;
    *channel = ch;
    *data = src;
    *data_len = len;
    *frame_len = NK_TURN_CHANNELDATA_HEADER + need;
    return 0;
}

int nk_turn_channel_data_write(uint8_t *buf, size_t cap, uint16_t channel, const uint8_t *data,
                               size_t len, int stream)
{
    if (channel < NK_TURN_CHANNEL_MIN || channel > NK_TURN_CHANNEL_MAX_RFC5766 || len > 0xFFFF ||
        (data == NULL && len != 0))
        return NK_ERR_INVAL;
    size_t total = NK_TURN_CHANNELDATA_HEADER + (stream ? pad4(len) : len);
    if (buf == NULL || cap < total)
        return NK_ERR_NOBUFS;
    nk__store_u16(buf, channel);
    nk__store_u16(buf + 2, (uint16_t)len);
    if (len > 0 && data != buf + NK_TURN_CHANNELDATA_HEADER)
        memmove(buf + NK_TURN_CHANNELDATA_HEADER, data, len);
    memset(buf + NK_TURN_CHANNELDATA_HEADER + len, 0, total - NK_TURN_CHANNELDATA_HEADER - len);
    return (int)total;
}
