/* natkit internal: pieces shared by the STUN codec files (stun_codec.c, stun_auth.c). */
#ifndef NK__STUN_INTERNAL_H
#define NK__STUN_INTERNAL_H

#include "natkit/stun.h"

#define NK__STUN_FINGERPRINT_XOR 0x5354554eu

/* CRC-32 (ISO-HDLC, as zlib's crc32) of n bytes. */
uint32_t nk__crc32(const uint8_t *p, size_t n);

/*
 * Appends the TLV header of an attribute of value length len to the builder,
 * zeroes its padding, updates the header length and returns where to write
 * the value (NULL on a sticky error).
 */
uint8_t *nk__stun_build_reserve(nk_stun_builder *b, uint16_t type, size_t len);

/*
 * Verifies the FINGERPRINT attribute that starts at offset off of the
 * message (the CRC covers everything before it). 0 or NK_ERR_FINGERPRINT.
 */
int nk__stun_check_fingerprint(const uint8_t *msg, size_t off, const uint8_t *value);

#endif
