/*
 * natkit: TURN (RFC 8656) pieces shared by the TURN client and server.
 * ChannelData framing is a parser, so it lives here with a fuzz target.
 */
#ifndef NATKIT_TURN_H
#define NATKIT_TURN_H

#include "natkit/addr.h"
#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_TURN_CHANNEL_MIN        0x4000
#define NK_TURN_CHANNEL_MAX        0x4FFF
/* RFC 5766 allowed 0x4000-0x7FFF and coturn's clients still pick numbers up
 * there; the ChannelData parser and writer accept that range, and a server
 * may bind it for interoperability. New clients use MIN..MAX. */
#define NK_TURN_CHANNEL_MAX_RFC5766 0x7FFF
#define NK_TURN_CHANNELDATA_HEADER 4
#define NK_TURN_TRANSPORT_UDP      17   /* REQUESTED-TRANSPORT protocol number */

#define NK_TURN_DEFAULT_LIFETIME_S   600
#define NK_TURN_PERMISSION_LIFETIME_S 300
#define NK_TURN_CHANNEL_LIFETIME_S   600

/* True when the first byte says ChannelData (0b01 in the top two bits). */
static inline int nk_turn_is_channel_data(const uint8_t *p, size_t n)
{
    return n >= 1 && (p[0] & 0xC0) == 0x40;
}

/*
 * Parses one ChannelData message. For datagrams (stream = 0) the length
 * field must fit in n; for streams (stream = 1) *frame_len includes the
 * padding to a multiple of 4 and NK_ERR_AGAIN says more bytes are needed.
 * Channel numbers 0x4000..0x7FFF (NK_TURN_CHANNEL_MAX_RFC5766) parse.
 * Returns 0, NK_ERR_AGAIN, NK_ERR_MALFORMED or NK_ERR_TRUNCATED.
 */
NK_API int nk_turn_channel_data_parse(const uint8_t *p, size_t n, int stream, uint16_t *channel,
                                      const uint8_t **data, size_t *data_len, size_t *frame_len);

/* Writes a ChannelData header + data (+ padding when stream); returns its length or NK_ERR_NOBUFS. */
NK_API int nk_turn_channel_data_write(uint8_t *buf, size_t cap, uint16_t channel, const uint8_t *data,
                                      size_t len, int stream);

#ifdef __cplusplus
}
#endif
#endif
