/*
 * natkit: the hub wire protocol. The frame codec (nk_hub_frame_*), bounds-checked,
 * used by both the server and the client core, and the registration proof message.
 * See docs/internals/hub.md for every body.
 */
#ifndef NATKIT_HUB_FRAME_H
#define NATKIT_HUB_FRAME_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/identity.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire protocol ----------------------------------------------------------
 * A stream of frames: type u8 | flags u8 (0; ignored) | length u16 | body.
 * Integers are big-endian. See docs/internals/hub.md for every body.
 */
#define NK_HUB_VERSION         1
#define NK_HUB_HEADER_SIZE     4
#define NK_HUB_CHALLENGE_SIZE  32
#define NK_HUB_MAX_PAYLOAD     2048 /* largest candidate/request/relay payload */
#define NK_HUB_MAX_BODY        (NK_PEER_ID_SIZE + NK_HUB_MAX_PAYLOAD)
#define NK_HUB_MAX_FRAME       (NK_HUB_HEADER_SIZE + NK_HUB_MAX_BODY)
#define NK_HUB_MAX_REASON      128
#define NK_HUB_MAX_ADVERTISED  8
#define NK_HUB_CONTEXT         "natkit-hub-register-v1" /* first bytes of the signed message */

enum {
    /* hub -> peer */
    NK_HUB_T_CHALLENGE = 0x01,  /* version u8 | challenge[32] */
    NK_HUB_T_REGISTERED = 0x03, /* observed address (family u8, port u16, ip[16]) | max_payload u16 | idle_ms u32 */
    NK_HUB_T_UNKNOWN_PEER = 0x04, /* type u8 (of the frame not delivered) | peer id[32] */
    /* peer -> hub */
    NK_HUB_T_REGISTER = 0x02,   /* version u8 | peer id[32] | signature[64] */
    /* routed: peer -> hub: dst id[32] | payload;  hub -> peer: src id[32] | payload */
    NK_HUB_T_CONNECT = 0x10,    /* a connection request */
    NK_HUB_T_CANDIDATE = 0x11,  /* candidates (opaque to the hub) */
    NK_HUB_T_RELAY = 0x12,      /* a sealed relay packet (dropped first under backpressure) */
    NK_HUB_T_SIGNAL = 0x13,     /* any other signalling (opaque) */
    /* both ways */
    NK_HUB_T_PING = 0x20,       /* token[8]; answered with PONG carrying the same token */
    NK_HUB_T_PONG = 0x21,
    NK_HUB_T_CLOSE = 0x7f,      /* code u16 | reason (UTF-8) [| 0x00 | retry_after_ms u32]: <= 130 bytes in
                                   all (nk_hub_close_encode/_decode); then the sender closes */
    /* 0x80..0xff: extensions; receivers ignore types they do not know in this range */
    NK_HUB_T_REPORT = 0x80,     /* peer -> hub: how a connection settled (nk_hub_report); hubs that
                                   do not know it ignore it */
};

/*
 * The REPORT body: path u8 (nk_path_kind: 1 direct, 2 TURN, 3 hub relay; 0 unknown) |
 * connect_ms u32 (from the connection's start to its first path) | mapping u8 |
 * filtering u8 (nk_nat_behaviour of the sender's NAT: 0 unknown, 1 endpoint-independent,
 * 2 address-dependent, 3 address-and-port-dependent). Longer bodies (up to
 * NK_HUB_REPORT_MAX) are accepted and the extra bytes ignored: room for later fields.
 * For the hub's metrics only: it carries no peer ID and is never routed.
 */
#define NK_HUB_REPORT_SIZE 7
#define NK_HUB_REPORT_MAX  64
typedef struct nk_hub_report {
    uint8_t path;
    uint32_t connect_ms;
    uint8_t mapping, filtering;
} nk_hub_report;
/* Writes the 7-byte body; returns NK_HUB_REPORT_SIZE. Out-of-range values are sent as 0 (unknown). */
NK_API int nk_hub_report_encode(uint8_t body[NK_HUB_REPORT_SIZE], const nk_hub_report *r);
/* 0, or NK_ERR_MALFORMED (shorter than 7 or longer than NK_HUB_REPORT_MAX bytes). Unknown
 * path/behaviour values come back as 0. */
NK_API int nk_hub_report_decode(const uint8_t *body, size_t n, nk_hub_report *r);

/* Close codes (CLOSE frames, NK_HUB_EV_CLOSED). */
enum {
    NK_HUB_CLOSE_NORMAL = 0,
    NK_HUB_CLOSE_PROTOCOL = 1,        /* malformed or unexpected frame */
    NK_HUB_CLOSE_TOO_LARGE = 2,       /* frame over the size limit */
    NK_HUB_CLOSE_VERSION = 3,         /* unsupported protocol version */
    NK_HUB_CLOSE_AUTH = 4,            /* registration proof did not verify */
    NK_HUB_CLOSE_REPLACED = 5,        /* the same ID registered on another connection */
    NK_HUB_CLOSE_IDLE = 6,            /* nothing received within the idle timeout */
    NK_HUB_CLOSE_REGISTER_TIMEOUT = 7,/* no registration in time */
    NK_HUB_CLOSE_FULL = 8,            /* hub at its peer limit */
    NK_HUB_CLOSE_OVERFLOW = 9,        /* the peer does not read: control queue over its cap */
    NK_HUB_CLOSE_SHUTDOWN = 10,       /* hub stopping */
    NK_HUB_CLOSE_NOT_REGISTERED = 11, /* routed frame before registration */
    NK_HUB_CLOSE_NOT_HUB = 12,        /* client side only, never sent: the other end did not answer
                                         like a natkit hub (no CHALLENGE in time, garbage, EOF) */
};
NK_API const char *nk_hub_close_reason(int code);

/*
 * The CLOSE body: code u16 | reason, optionally followed by a trailer 0x00 | retry_after_ms u32
 * (the sender's hint of when to come back, e.g. from a full hub; more trailer bytes may follow
 * and are ignored). The whole body stays within 2 + NK_HUB_MAX_REASON bytes, so receivers that
 * predate the trailer accept it and show the reason up to the NUL.
 */
typedef struct nk_hub_close_info {
    int code;
    char reason[NK_HUB_MAX_REASON + 1]; /* NUL-terminated, without the trailer */
    int64_t retry_ms;                   /* the hint; -1: none */
} nk_hub_close_info;
/* Writes the body into buf (cap >= 2 + NK_HUB_MAX_REASON is always enough; the reason is cut to
 * fit); retry_ms < 0: no trailer. Returns the body length. */
NK_API int nk_hub_close_encode(uint8_t *buf, size_t cap, int code, const char *reason, int64_t retry_ms);
/* 0, or NK_ERR_MALFORMED (shorter than 2 or longer than 2 + NK_HUB_MAX_REASON bytes). */
NK_API int nk_hub_close_decode(const uint8_t *body, size_t n, nk_hub_close_info *out);

/* A decoded frame: body points into the input. */
typedef struct nk_hub_frame {
    uint8_t type;
    uint8_t flags;
    const uint8_t *body;
    size_t len;
} nk_hub_frame;

/*
 * Parses the frame at the start of p[0..n). Returns the frame's total size
 * (> 0), 0 when more bytes are needed, or NK_ERR_LIMIT when its body is over
 * max_body. Framing only: bodies are checked by nk_hub_frame_check.
 */
NK_API int nk_hub_frame_parse(const uint8_t *p, size_t n, size_t max_body, nk_hub_frame *f);
/* 0 when the body of a known type has the right shape, else NK_ERR_MALFORMED; NK_ERR_NOT_FOUND for unknown types. */
NK_API int nk_hub_frame_check(const nk_hub_frame *f);
/* Writes header + body; returns the frame size or NK_ERR_NOBUFS/NK_ERR_INVAL. */
NK_API int nk_hub_frame_write(uint8_t *buf, size_t cap, uint8_t type, const uint8_t *body, size_t len);
/* Writes a routed frame: id (dst or src) | payload. */
NK_API int nk_hub_frame_write_routed(uint8_t *buf, size_t cap, uint8_t type, const nk_peer_id *id,
                                     const uint8_t *payload, size_t len);
/* 1 for CONNECT, CANDIDATE, RELAY, SIGNAL. */
NK_API int nk_hub_type_is_routed(uint8_t type);

/*
 * The message a peer signs to register: NK_HUB_CONTEXT | 0x00 | version u8 |
 * challenge[32] | hub address (family u8, port u16, ip[16]) | peer id[32].
 * hub is the address the peer connected to and the hub accepted on, so a
 * proof made for one hub connection is worthless on any other connection or
 * hub. Returns the length written (cap >= NK_HUB_PROOF_MSG_SIZE).
 */
#define NK_HUB_PROOF_MSG_SIZE (sizeof(NK_HUB_CONTEXT) + 1 + NK_HUB_CHALLENGE_SIZE + 19 + NK_PEER_ID_SIZE)
NK_API int nk_hub_proof_message(uint8_t *buf, size_t cap, const uint8_t challenge[NK_HUB_CHALLENGE_SIZE],
                                const nk_addr *hub, const nk_peer_id *id);

/*
 * Hub cluster messages (docs/internals/hub.md, "Cluster"): what one hub
 * publishes to another through Redis. Untrusted input like any frame: decode
 * checks every length. Wire: version u8 (1) | kind u8 | origin hub id[8] |
 * type u8 | src peer id[32] | dst peer id[32] | payload (FRAME only, at most
 * NK_HUB_MAX_PAYLOAD bytes; the other kinds have none).
 */
#define NK_HUB_CLUSTER_VERSION  1
#define NK_HUB_CLUSTER_ID_SIZE  8
#define NK_HUB_CLUSTER_HEADER   (2 + NK_HUB_CLUSTER_ID_SIZE + 1 + 2 * NK_PEER_ID_SIZE)
#define NK_HUB_CLUSTER_MSG_MAX  (NK_HUB_CLUSTER_HEADER + NK_HUB_MAX_PAYLOAD)

typedef enum nk_hub_cluster_kind {
    NK_HUB_CM_FRAME = 1,   /* a routed frame (type) from src, for dst registered at the receiving hub */
    NK_HUB_CM_UNKNOWN = 2, /* dst is not registered at the sending hub: tell src (at the receiver) */
    NK_HUB_CM_MOVED = 3,   /* dst registered at the sending hub, newer than the receiver's registration */
} nk_hub_cluster_kind;

typedef struct nk_hub_cluster_msg {
    uint8_t kind;                             /* nk_hub_cluster_kind */
    uint8_t origin[NK_HUB_CLUSTER_ID_SIZE];   /* the sending hub's instance ID */
    uint8_t type;                             /* FRAME, UNKNOWN: the routed frame type; MOVED: 0 */
    nk_peer_id src, dst;                      /* MOVED: src all zero, dst the peer */
    const uint8_t *payload;                   /* FRAME: points into the decoded input */
    size_t len;
} nk_hub_cluster_msg;

/* Writes m; returns its size or NK_ERR_NOBUFS / NK_ERR_INVAL (bad kind, routed type or length). */
NK_API int nk_hub_cluster_msg_encode(uint8_t *buf, size_t cap, const nk_hub_cluster_msg *m);
/* 0, or NK_ERR_MALFORMED (wrong version, kind, type or size). */
NK_API int nk_hub_cluster_msg_decode(const uint8_t *p, size_t n, nk_hub_cluster_msg *m);

#ifdef __cplusplus
}
#endif
#endif
