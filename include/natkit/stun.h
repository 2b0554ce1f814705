/*
 * natkit: STUN message codec (RFC 8489, RFC 5389 compatible; RFC 5780, RFC 8656
 * and RFC 8445 attributes). Pure functions over caller-owned buffers: nothing
 * here allocates, reads a clock or touches a socket.
 *
 * Decoding: nk_stun_decode() validates the header and every attribute's TLV
 * bounds and indexes the attributes into an nk_stun_msg that points into the
 * caller's packet (keep the packet alive while using the message). Attributes
 * after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT,
 * and after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, are not indexed
 * (RFC 8489 sections 14.5, 14.6); anything after FINGERPRINT is malformed.
 *
 * Encoding: an nk_stun_builder writes into a caller buffer with a sticky
 * error, so a sequence of nk_stun_build_*() calls needs one check at the end.
 */
#ifndef NATKIT_STUN_H
#define NATKIT_STUN_H

#include "natkit/addr.h"
#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_STUN_MAGIC_COOKIE 0x2112A442u
#define NK_STUN_HEADER_SIZE  20
#define NK_STUN_TID_SIZE     12
#define NK_STUN_MAX_ATTRS    48   /* more attributes than this: NK_ERR_MALFORMED */

/* Methods (12 bits). */
#define NK_STUN_BINDING           0x001
#define NK_STUN_ALLOCATE          0x003
#define NK_STUN_REFRESH           0x004
#define NK_STUN_SEND              0x006
#define NK_STUN_DATA              0x007
#define NK_STUN_CREATE_PERMISSION 0x008
#define NK_STUN_CHANNEL_BIND      0x009

/* Classes, already in their bit positions. */
#define NK_STUN_REQUEST    0x0000
#define NK_STUN_INDICATION 0x0010
#define NK_STUN_SUCCESS    0x0100
#define NK_STUN_ERROR      0x0110

static inline uint16_t nk_stun_type(uint16_t method, uint16_t cls)
{
    return (uint16_t)(((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | cls);
}
static inline uint16_t nk_stun_method(uint16_t type)
{
    return (uint16_t)(((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f));
}
static inline uint16_t nk_stun_class(uint16_t type)
{
    return (uint16_t)(type & 0x0110);
}

/* Attributes: comprehension-required (0x0000-0x7fff). */
#define NK_STUN_ATTR_MAPPED_ADDRESS           0x0001
#define NK_STUN_ATTR_RESPONSE_ADDRESS         0x0002 /* RFC 3489, obsolete */
#define NK_STUN_ATTR_CHANGE_REQUEST           0x0003
#define NK_STUN_ATTR_SOURCE_ADDRESS           0x0004 /* RFC 3489, obsolete */
#define NK_STUN_ATTR_CHANGED_ADDRESS          0x0005 /* RFC 3489, obsolete */
#define NK_STUN_ATTR_USERNAME                 0x0006
#define NK_STUN_ATTR_MESSAGE_INTEGRITY        0x0008
#define NK_STUN_ATTR_ERROR_CODE               0x0009
#define NK_STUN_ATTR_UNKNOWN_ATTRIBUTES       0x000A
#define NK_STUN_ATTR_CHANNEL_NUMBER           0x000C
#define NK_STUN_ATTR_LIFETIME                 0x000D
#define NK_STUN_ATTR_XOR_PEER_ADDRESS         0x0012
#define NK_STUN_ATTR_DATA                     0x0013
#define NK_STUN_ATTR_REALM                    0x0014
#define NK_STUN_ATTR_NONCE                    0x0015
#define NK_STUN_ATTR_XOR_RELAYED_ADDRESS      0x0016
#define NK_STUN_ATTR_REQUESTED_ADDRESS_FAMILY 0x0017
#define NK_STUN_ATTR_EVEN_PORT                0x0018
#define NK_STUN_ATTR_REQUESTED_TRANSPORT      0x0019
#define NK_STUN_ATTR_DONT_FRAGMENT            0x001A
#define NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 0x001C
#define NK_STUN_ATTR_PASSWORD_ALGORITHM       0x001D
#define NK_STUN_ATTR_USERHASH                 0x001E
#define NK_STUN_ATTR_XOR_MAPPED_ADDRESS       0x0020
#define NK_STUN_ATTR_RESERVATION_TOKEN        0x0022
#define NK_STUN_ATTR_PRIORITY                 0x0024
#define NK_STUN_ATTR_USE_CANDIDATE            0x0025
#define NK_STUN_ATTR_PADDING                  0x0026
#define NK_STUN_ATTR_RESPONSE_PORT            0x0027
/* Attributes: comprehension-optional (0x8000-0xffff). */
#define NK_STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY 0x8000
#define NK_STUN_ATTR_ADDRESS_ERROR_CODE       0x8001
#define NK_STUN_ATTR_PASSWORD_ALGORITHMS      0x8002
#define NK_STUN_ATTR_ALTERNATE_DOMAIN         0x8003
#define NK_STUN_ATTR_SOFTWARE                 0x8022
#define NK_STUN_ATTR_ALTERNATE_SERVER         0x8023
#define NK_STUN_ATTR_FINGERPRINT              0x8028
#define NK_STUN_ATTR_ICE_CONTROLLED           0x8029
#define NK_STUN_ATTR_ICE_CONTROLLING          0x802A
#define NK_STUN_ATTR_RESPONSE_ORIGIN          0x802B
#define NK_STUN_ATTR_OTHER_ADDRESS            0x802C

/* CHANGE-REQUEST flags (RFC 5780). */
#define NK_STUN_CHANGE_IP   0x04
#define NK_STUN_CHANGE_PORT 0x02

/* PASSWORD-ALGORITHM values (RFC 8489 section 18.5). */
#define NK_STUN_PWALG_MD5    0x0001
#define NK_STUN_PWALG_SHA256 0x0002

/* One attribute as found in a packet; value points into the packet. */
typedef struct nk_stun_attr {
    uint16_t type;
    uint16_t len;            /* unpadded value length */
    const uint8_t *value;
} nk_stun_attr;

/* A decoded message: a view into the caller's packet. */
typedef struct nk_stun_msg {
    uint16_t type;           /* method + class, see nk_stun_method()/nk_stun_class() */
    uint8_t tid[NK_STUN_TID_SIZE];
    uint8_t classic;         /* 1: no magic cookie (RFC 3489 client); tid is bytes 8..19 */
    const uint8_t *raw;      /* the packet */
    size_t raw_len;          /* 20 + body length */
    size_t nattrs;
    nk_stun_attr attrs[NK_STUN_MAX_ATTRS];
    int16_t integrity;       /* index in attrs of MESSAGE-INTEGRITY, or -1 */
    int16_t integrity_sha256;/* index of MESSAGE-INTEGRITY-SHA256, or -1 */
    int16_t fingerprint;     /* index of FINGERPRINT, or -1 (its CRC is checked by decode) */
} nk_stun_msg;

/*
 * Fast check: does p look like a STUN message (top two bits zero, length a
 * multiple of 4 and consistent with n, magic cookie)? For demultiplexing a
 * socket shared with other protocols. Does not validate attributes.
 */
NK_API int nk_stun_is_message(const uint8_t *p, size_t n);

/*
 * For stream transports: if p starts a STUN message, sets *msg_len to its
 * full length and returns 0; NK_ERR_AGAIN if fewer than 20 bytes are present;
 * NK_ERR_NOT_STUN if the header is not STUN.
 */
NK_API int nk_stun_frame_length(const uint8_t *p, size_t n, size_t *msg_len);

/*
 * Decodes and validates one message of exactly n bytes. Returns 0,
 * NK_ERR_NOT_STUN, NK_ERR_TRUNCATED, NK_ERR_MALFORMED or NK_ERR_FINGERPRINT.
 * With allow_classic, messages without the magic cookie (RFC 3489) are accepted.
 */
NK_API int nk_stun_decode(nk_stun_msg *m, const uint8_t *p, size_t n, int allow_classic);

/* First attribute of this type, or NULL. */
NK_API const nk_stun_attr *nk_stun_get(const nk_stun_msg *m, uint16_t type);

/*
 * Decodes an address attribute. XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS and
 * XOR-RELAYED-ADDRESS are un-XORed with the cookie and transaction ID; the
 * other address types (MAPPED-ADDRESS, ALTERNATE-SERVER, RESPONSE-ORIGIN,
 * OTHER-ADDRESS, CHANGED-ADDRESS, SOURCE-ADDRESS) are read as they are.
 * nk_stun_attr_addr decodes one given attribute (for repeated ones).
 */
NK_API int nk_stun_get_addr(const nk_stun_msg *m, uint16_t type, nk_addr *out);
NK_API int nk_stun_attr_addr(const nk_stun_msg *m, const nk_stun_attr *a, nk_addr *out);

NK_API int nk_stun_get_u32(const nk_stun_msg *m, uint16_t type, uint32_t *out);
NK_API int nk_stun_get_u64(const nk_stun_msg *m, uint16_t type, uint64_t *out);
/* ERROR-CODE: code 300..699 and the reason phrase (not NUL-terminated). */
NK_API int nk_stun_get_error(const nk_stun_msg *m, int *code, const char **reason, size_t *reason_len);
/* Copies a string attribute (USERNAME, REALM, NONCE, SOFTWARE) NUL-terminated. */
NK_API int nk_stun_get_string(const nk_stun_msg *m, uint16_t type, char *buf, size_t cap);

/* True if the codec understands this attribute type. */
NK_API int nk_stun_attr_known(uint16_t type);
/*
 * Writes up to cap comprehension-required attribute types that the codec does
 * not understand into out; returns how many there are (0: none).
 */
NK_API size_t nk_stun_unknown_required(const nk_stun_msg *m, uint16_t *out, size_t cap);

/*
 * Checks message integrity with key: MESSAGE-INTEGRITY-SHA256 when present,
 * else MESSAGE-INTEGRITY (HMAC-SHA1). Returns 0, NK_ERR_NOT_FOUND (no
 * integrity attribute) or NK_ERR_INTEGRITY.
 */
NK_API int nk_stun_check_integrity(const nk_stun_msg *m, const uint8_t *key, size_t key_len);

/*
 * Keys. Short-term: the password itself (ASCII passwords; no SASLprep of
 * non-ASCII). Long-term: MD5 or SHA-256 of "user:realm:pass" into key[32],
 * *key_len set to 16 or 32. USERHASH: SHA-256 of "user:realm".
 */
NK_API int nk_stun_long_term_key(int pwalg, const char *user, const char *realm, const char *pass,
                                 uint8_t key[32], size_t *key_len);
NK_API int nk_stun_userhash(const char *user, const char *realm, uint8_t out[32]);

/* ---- encoding ---- */

typedef struct nk_stun_builder {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;                 /* first error, sticky */
} nk_stun_builder;

/* Starts a message of this type and transaction ID in buf. */
NK_API void nk_stun_build_begin(nk_stun_builder *b, uint8_t *buf, size_t cap, uint16_t type,
                                const uint8_t tid[NK_STUN_TID_SIZE]);
/* Raw attribute; the value is padded to 4 bytes with zeros. */
NK_API void nk_stun_build_attr(nk_stun_builder *b, uint16_t type, const void *value, size_t len);
NK_API void nk_stun_build_u32(nk_stun_builder *b, uint16_t type, uint32_t v);
NK_API void nk_stun_build_u64(nk_stun_builder *b, uint16_t type, uint64_t v);
NK_API void nk_stun_build_string(nk_stun_builder *b, uint16_t type, const char *s);
/* Address attribute; XOR-ed for the XOR-* types (see nk_stun_get_addr). */
NK_API void nk_stun_build_addr(nk_stun_builder *b, uint16_t type, const nk_addr *a);
/* ERROR-CODE with code 300..699; reason NULL: the standard phrase. */
NK_API void nk_stun_build_error(nk_stun_builder *b, int code, const char *reason);
NK_API void nk_stun_build_unknown(nk_stun_builder *b, const uint16_t *types, size_t n);
/* MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes) / MESSAGE-INTEGRITY-SHA256 (32 bytes). */
NK_API void nk_stun_build_integrity(nk_stun_builder *b, const uint8_t *key, size_t key_len);
NK_API void nk_stun_build_integrity_sha256(nk_stun_builder *b, const uint8_t *key, size_t key_len);
NK_API void nk_stun_build_fingerprint(nk_stun_builder *b);
/* Returns the message length (> 0) or the first error (NK_ERR_NOBUFS, NK_ERR_INVAL). */
NK_API int nk_stun_build_end(nk_stun_builder *b);

/* The standard reason phrase for a STUN/TURN error code ("" if unknown). */
NK_API const char *nk_stun_reason(int code);

#ifdef __cplusplus
}
#endif
#endif
