/* natkit internal: pieces of the secure session (session*.c). */
#ifndef NK__SESSION_INTERNAL_H
#define NK__SESSION_INTERNAL_H

#include <stdint.h>

#include "natkit/session.h"
#include "ring.h"

#define NK__HASHLEN 64 /* BLAKE2b */
#define NK__KEYLEN  32
#define NK__DHLEN   32
#define NK__TAGLEN  16

/* ---- Noise symmetric state (session_noise.c) ---------------------------------- */

typedef struct nk__symmetric {
    uint8_t ck[NK__HASHLEN];
    uint8_t h[NK__HASHLEN];
    uint8_t k[NK__KEYLEN];
    uint64_t n;
    int has_key;
} nk__symmetric;

void nk__sym_init(nk__symmetric *st, const char *protocol_name);
void nk__sym_mix_hash(nk__symmetric *st, const uint8_t *data, size_t len);
/* MixKey with a DH result; NK_ERR_AUTH when the DH output is all zero. */
int nk__sym_mix_dh(nk__symmetric *st, const uint8_t sk[NK__DHLEN], const uint8_t pk[NK__DHLEN]);
/* out gets len + 16 bytes (or len without a key). */
void nk__sym_encrypt_and_hash(nk__symmetric *st, const uint8_t *pt, size_t len, uint8_t *out);
/* ct is len bytes (tag included); out gets len - 16. 0 or NK_ERR_AUTH. */
int nk__sym_decrypt_and_hash(nk__symmetric *st, const uint8_t *ct, size_t len, uint8_t *out);
/* Split: k1 (initiator -> responder), k2 (responder -> initiator). */
void nk__sym_split(const nk__symmetric *st, uint8_t k1[NK__KEYLEN], uint8_t k2[NK__KEYLEN]);
/* The exporter secret of a finished handshake: BLAKE2b keyed with ck over a label and h
 * (both sides get the same 32 bytes; never a transport key). */
void nk__sym_exporter(const nk__symmetric *st, uint8_t out[32]);
void nk__hkdf2(const uint8_t ck[NK__HASHLEN], const uint8_t *ikm, size_t ikm_len, uint8_t out1[NK__HASHLEN],
               uint8_t out2[NK__HASHLEN]);

/* Transport AEAD: ChaCha20-Poly1305 IETF, nonce = 32 zero bits || LE64(counter). */
void nk__aead_seal(const uint8_t key[NK__KEYLEN], uint64_t counter, const uint8_t *ad, size_t adlen,
                   const uint8_t *pt, size_t len, uint8_t *out);
int nk__aead_open(const uint8_t key[NK__KEYLEN], uint64_t counter, const uint8_t *ad, size_t adlen,
                  const uint8_t *ct, size_t len, uint8_t *out);

/* ---- IK handshake messages (session_noise.c) ----------------------------------- */

#define NK__INIT_PAYLOAD 40  /* initiator peer ID (32) || sender index (4) || epoch (4) */
#define NK__RESP_PAYLOAD 8   /* sender index (4) || epoch (4) */
#define NK__INIT_BODY    (NK__DHLEN + NK__DHLEN + NK__TAGLEN + NK__INIT_PAYLOAD + NK__TAGLEN) /* 136 */
#define NK__RESP_BODY    (NK__DHLEN + NK__RESP_PAYLOAD + NK__TAGLEN)                          /* 56 */

typedef struct nk__handshake {
    nk__symmetric sym;
    uint8_t e_sk[NK__DHLEN], e_pk[NK__DHLEN];
    uint8_t re[NK__DHLEN];   /* remote ephemeral */
    uint8_t rs[NK__DHLEN];   /* remote static (X25519) */
} nk__handshake;

#define NK__PROLOGUE "natkit-session-v1"

/* Initialize(IK) with the prologue and the responder's static key (both roles). */
void nk__ik_init(nk__handshake *hs, const uint8_t *prologue, size_t prologue_len,
                 const uint8_t responder_static[32]);
/* Initiator: writes "e, es, s, ss" + payload: 32 + 48 + plen + 16 bytes. */
int nk__ik_write_init(nk__handshake *hs, const uint8_t s_sk[32], const uint8_t s_pk[32], const uint8_t e_seed[32],
                      const uint8_t *payload, size_t plen, uint8_t *body);
/* Responder: reads blen bytes; fills hs->rs and blen - 96 bytes of payload. 0 or NK_ERR_AUTH. */
int nk__ik_read_init(nk__handshake *hs, const uint8_t s_sk[32], const uint8_t *body, size_t blen, uint8_t *payload);
/* Responder: writes "e, ee, se" + payload: 32 + plen + 16 bytes. */
int nk__ik_write_resp(nk__handshake *hs, const uint8_t e_seed[32], const uint8_t *payload, size_t plen,
                      uint8_t *body);
/* Initiator: reads blen bytes; blen - 48 bytes of payload. 0 or NK_ERR_AUTH. */
int nk__ik_read_resp(nk__handshake *hs, const uint8_t s_sk[32], const uint8_t *body, size_t blen, uint8_t *payload);

/* ---- anti-replay window (session_replay.c) ---------------------------------------- */

#define NK__REPLAY_BITS 2048
#define NK__REPLAY_WORDS (NK__REPLAY_BITS / 64)

typedef struct nk__replay {
    uint64_t top;                       /* highest counter accepted + 1 (0: none yet) */
    uint64_t bitmap[NK__REPLAY_WORDS];  /* ring of bits, word index (counter / 64) % WORDS */
} nk__replay;

void nk__replay_init(nk__replay *r);
/* 1 if counter may be new (not seen, not too old), without recording it. */
int nk__replay_check(const nk__replay *r, uint64_t counter);
/* Records counter (call after authentication); 0, or -1 if it was a replay. */
int nk__replay_update(nk__replay *r, uint64_t counter);


/* ---- the session (session.c, session_frames.c) -------------------------------------- */

#define NK__HDR        16    /* version, type, epoch, reserved, receiver index, counter */
#define NK__PREFIX     8     /* version, type, epoch, reserved, receiver index */
#define NK__MAX_PACKET 4096
#define NK__REJECT_AFTER ((uint64_t)1 << 60)
#define NK__MAX_EVENTS 64
#define NK__MAX_PROBES 8
#define NK__ACK_FRAME  25
#define NK__MSG_OVERHEAD 11  /* type, seq (8), length (2) */
#define NK__CTRL_ROOM    4   /* PING, REKEY_REQ and spare one-byte frames */

/* Frame types inside a data packet's plaintext. */
#define NK__FR_PADDING   0x00
#define NK__FR_PING      0x01
#define NK__FR_ACK       0x02
#define NK__FR_MSG       0x03
#define NK__FR_PROBE     0x04
#define NK__FR_PROBE_ACK 0x05
#define NK__FR_REKEY_REQ 0x06
#define NK__FR_CLOSE     0x07
#define NK__FR_MSG_MORE  0x08 /* a MSG fragment; the message goes on in the next seq */
#define NK__MAX_FRAGS    16
/* CLOSE is never acknowledged (the sender is gone): it goes out in this many packets, so that
 * one lost datagram does not leave the peer to find out by its idle timeout (30% loss: 2.7%). */
#define NK__CLOSE_COPIES 3

typedef struct nk__keypair {
    int valid;
    uint32_t epoch;
    uint8_t send_key[NK__KEYLEN], recv_key[NK__KEYLEN];
    uint8_t exporter[32];           /* nk__sym_exporter of the handshake that made the pair */
    uint64_t send_counter;
    nk__replay replay;
    int64_t created_ms;
    /* responder's pending pairs: what the INIT that made them said, and the answer */
    uint8_t init_hash[32];          /* BLAKE2b of that INIT (a retransmission is recognised) */
    nk_path_id path;                /* where it came from */
    nk_peer_id peer;                /* the initiator it authenticated */
    uint8_t rs[32];
    uint32_t remote_index;
    uint8_t resp[NK__PREFIX + NK__RESP_BODY];
} nk__keypair;

typedef struct nk__txmsg {
    uint8_t *data;
    uint16_t len;
    uint8_t acked, more;
    uint32_t xmits;                 /* 0: not sent yet */
    int64_t sent_ms, first_sent_ms, due_ms;
} nk__txmsg;

typedef struct nk__rxmsg {
    uint8_t *data;
    uint16_t len;
    uint8_t present, more;
} nk__rxmsg;

typedef struct nk__probe {
    int used, send_pending;
    nk_path_id path;
    uint64_t nonce;
    int64_t sent_ms;
} nk__probe;

struct nk_session {
    nk_session_config cfg;
    nk_peer_id self;
    uint8_t s_sk[32], s_pk[32];
    nk_peer_id peer;
    int peer_known;
    uint8_t rs[32];
    uint8_t exporter[32];           /* of the first handshake (nk_session_export_key); rekeys keep it */
    int has_exporter;
    int state;
    uint32_t local_index, remote_index;
    nk_path_id path;
    int64_t created_ms;

    /* initiator's handshake in progress */
    nk__handshake hs;
    int hs_active, hs_send_pending, hs_retransmitted;
    uint32_t hs_epoch;
    uint8_t hs_msg[NK__PREFIX + NK__INIT_BODY];
    int64_t hs_started_ms, hs_sent_ms, hs_next_ms, hs_rto_ms;
    int rekey_requested;            /* initiator: the peer asked */
    int rx_rekey_req;               /* the packet being parsed carried REKEY_REQ */
    int confirm_wait;               /* initiator: new keys not yet used by the responder */
    int64_t confirm_next_ms, confirm_rto_ms;
    /* responder: the last response, resent for a retransmitted INIT */
    uint8_t resp_msg[NK__PREFIX + NK__RESP_BODY];
    int resp_pending;
    nk_path_id resp_path;
    uint32_t rekey_req_sent_epoch;  /* responder: asked for a rekey of this epoch (+1) */
    int64_t rekey_req_sent_ms;

    nk__keypair cur, prev, next[2]; /* next: responder's unconfirmed pairs, newest first */

    /* reliability */
    uint32_t window;
    nk__txmsg *tx;
    uint64_t tx_base, tx_next, peer_limit;
    nk__rxmsg *rx;
    uint64_t rx_read, rx_next, adv_limit;
    int ack_pending, ping_pending, rekey_req_pending, want_writable;
    int close_pending;       /* CLOSE packets still to send */
    int64_t srtt_ms, rttvar_ms, rto_ms;
    int have_rtt;
    int64_t last_tx_ms, last_rx_ms;

    nk__probe probes[NK__MAX_PROBES];
    nk__probe probe_acks[NK__MAX_PROBES];

    nk_session_event ev_slots[NK__MAX_EVENTS];
    nk__ring events;              /* over ev_slots */
    nk_session_stats_t stats;
};

void nk__session_event(nk_session *s, int type, nk_path_id path, int err, int64_t rtt_ms);
void nk__session_random(nk_session *s, void *buf, size_t len);
void nk__session_fail(nk_session *s, int err);

/* session_frames.c: reliability and frames */
int nk__rel_init(nk_session *s);
void nk__rel_free(nk_session *s);
/* Parses the frames of an authenticated packet. *probing: only probe frames. */
int nk__frames_handle(nk_session *s, int64_t now, nk_path_id path, const uint8_t *p, size_t n, int *probing);
/* Writes the frames of the next data packet on the active path; returns their length (0: none). */
size_t nk__frames_build(nk_session *s, int64_t now, uint8_t *out, size_t cap);
int nk__frames_pending(const nk_session *s, int64_t now);
int64_t nk__rel_deadline(const nk_session *s);
void nk__rel_timeout(nk_session *s, int64_t now);
void nk__rel_rtt_sample(nk_session *s, int64_t rtt);

#endif
