/*
 * natkit: the secure session. Sans-I/O: it takes datagrams and the time, and
 * hands back datagrams to send, events and its next deadline. It never reads
 * a clock, opens a socket or sleeps.
 *
 * Handshake: Noise_IK_25519_ChaChaPoly_BLAKE2b (the initiator knows the
 * responder's peer ID). Static keys are the X25519 forms of the identities, so
 * the handshake authenticates both peer IDs. Transport: ChaCha20-Poly1305 with
 * a 64-bit counter, a 2048-packet anti-replay window, rekeying by a fresh
 * handshake (after N packets or T ms) that loses no in-flight data, and
 * reliable ordered messages (sequence numbers, cumulative + selective acks,
 * RTO retransmission, bounded queues with backpressure) on top.
 *
 * Paths: every datagram in and out carries an opaque nk_path_id chosen by the
 * caller (the agent maps it to a socket/address pair, a TURN allocation or the
 * hub relay). Every datagram the session emits is sealed, so a relay (TURN or
 * the hub) that carries it cannot read or forge it: "sealing for the hub" is
 * just poll_transmit on the hub's path id. The session only changes its active
 * path on an authenticated packet (with roam set) or when told to
 * (nk_session_set_path), typically after an authenticated probe succeeded.
 * See docs/internals/session.md for the wire format and the timers.
 */
#ifndef NATKIT_SESSION_H
#define NATKIT_SESSION_H

#include "natkit/common.h"
#include "natkit/identity.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_SESSION_PROTOCOL "Noise_IK_25519_ChaChaPoly_BLAKE2b"
#define NK_SESSION_VERSION  1

typedef uint32_t nk_path_id;

typedef struct nk_session nk_session;

typedef struct nk_session_config {
    const nk_identity *identity;   /* required; only its X25519 form is kept (wiped at free) */
    const nk_peer_id *peer;        /* initiator: required. responder: NULL accepts any peer ID
                                      (read it with nk_session_peer once connected) */
    int initiator;                 /* 1: this side sends the first handshake message */
    nk_random_fn random;           /* ephemeral keys, indices, nonces; NULL: libsodium */
    void *random_ctx;
    int64_t handshake_timeout_ms;  /* give up the first handshake after this; 0: 15000 */
    int64_t handshake_rto_ms;      /* first handshake retransmission (doubles, max 4 s); 0: 500 */
    uint64_t rekey_after_packets;  /* packets sent under one key; 0: 1 << 24 */
    int64_t rekey_after_ms;        /* age of a key; 0: 120000 */
    int64_t keepalive_ms;          /* send a PING when nothing was sent this long; 0: 15000, < 0 off */
    int64_t idle_timeout_ms;       /* close when nothing authenticated arrived this long, or a message
                                      stays unacknowledged this long; 0: 60000 */
    uint32_t window;               /* messages: send queue and receive window (each); 0: 256 */
    size_t max_datagram;           /* largest datagram emitted; 0: 1200; >= 256 */
    int roam;                      /* 1: follow the path of the newest authenticated non-probe packet */
} nk_session_config;

/* States, in order. */
#define NK_SESSION_HANDSHAKE   1 /* handshake in progress (initiator) or awaited (responder) */
#define NK_SESSION_CONNECTED   2 /* keys confirmed; messages flow */
#define NK_SESSION_CLOSED      3 /* failed, timed out or closed; see the CLOSED event */

/* Events (nk_session_poll_event). Messages are read with nk_session_recv. */
#define NK_SESSION_EV_CONNECTED      1 /* handshake done, peer authenticated; path, rtt_ms */
#define NK_SESSION_EV_READABLE       2 /* nk_session_recv has at least one message */
#define NK_SESSION_EV_WRITABLE       3 /* after NK_ERR_AGAIN from send: space is back */
#define NK_SESSION_EV_PATH_VALIDATED 4 /* our probe on path was answered (authenticated); rtt_ms */
#define NK_SESSION_EV_PATH_CHANGED   5 /* active path moved (roam); path is the new one */
#define NK_SESSION_EV_REKEYED        6 /* a new key pair is in use; epoch */
#define NK_SESSION_EV_CLOSED         7 /* err: NK_ERR_TIMEOUT, NK_ERR_AUTH, NK_ERR_CLOSED (peer closed),
                                           0 (closed locally) */

typedef struct nk_session_event {
    int type;
    nk_path_id path;
    int err;
    int64_t rtt_ms;
    uint64_t nonce;                /* PATH_VALIDATED: the probe's nonce */
    uint32_t epoch;                /* REKEYED */
} nk_session_event;

typedef struct nk_session_transmit {
    nk_path_id path;               /* send on this path */
    size_t len;                    /* bytes in the caller's buffer */
} nk_session_transmit;

typedef struct nk_session_stats_t {
    uint64_t tx_packets, rx_packets;           /* datagrams out / authenticated datagrams in */
    uint64_t rx_malformed;                     /* too short, bad version/type, bad frames */
    uint64_t rx_auth_failed;                   /* AEAD or handshake authentication failed */
    uint64_t rx_replayed;                      /* duplicate or too old counter */
    uint64_t rx_unexpected;                    /* valid format but not for this state/epoch/index */
    uint64_t rx_peer_mismatch;                 /* handshake from a peer ID other than the expected one */
    uint64_t messages_sent, messages_delivered;
    uint64_t retransmits;                      /* message retransmissions */
    uint64_t handshake_retransmits;
    uint64_t rekeys;
    int64_t srtt_ms, rto_ms;
} nk_session_stats_t;

NK_API int nk_session_new(nk_session **out, const nk_session_config *cfg, int64_t now_ms);
NK_API void nk_session_free(nk_session *s);

/* Initiator: starts the handshake on path (NK_ERR_STATE for a responder or twice). */
NK_API int nk_session_connect(nk_session *s, nk_path_id path, int64_t now_ms);

/*
 * A datagram that arrived on path. 0: authenticated and accepted (the peer is
 * reachable on that path); < 0: dropped and counted (NK_ERR_MALFORMED,
 * NK_ERR_AUTH, NK_ERR_AGAIN for a replay, NK_ERR_STATE, NK_ERR_DENIED for a
 * handshake from another peer ID than the expected one, NK_ERR_CLOSED).
 * Afterwards drain poll_transmit, poll_event and recv.
 */
NK_API int nk_session_handle_datagram(nk_session *s, int64_t now_ms, nk_path_id path, const uint8_t *p,
                                      size_t n);
NK_API void nk_session_handle_timeout(nk_session *s, int64_t now_ms);
/* Fills buf (cap >= max_datagram, else NK_ERR_NOBUFS) with the next datagram to send; 0, or
 * NK_ERR_AGAIN when none (drain until then). */
NK_API int nk_session_poll_transmit(nk_session *s, int64_t now_ms, nk_session_transmit *tx, uint8_t *buf,
                                    size_t cap);
/* When handle_timeout must be called next (INT64_MAX: nothing pending). */
NK_API int64_t nk_session_next_deadline(const nk_session *s);
/* 0 and *ev, or NK_ERR_AGAIN. */
NK_API int nk_session_poll_event(nk_session *s, nk_session_event *ev);

/*
 * Queues one message (1..nk_session_max_message bytes) for reliable, ordered
 * delivery. May be called during the handshake. A message larger than one
 * datagram travels as up to 16 fragments (each takes a slot of the window;
 * peers should use the same window). NK_ERR_AGAIN when the send queue has no
 * room for it (a WRITABLE event follows), NK_ERR_INVAL when too large,
 * NK_ERR_STATE when closed.
 */
#define NK_SESSION_MAX_MESSAGE 65535
NK_API int nk_session_send(nk_session *s, const uint8_t *msg, size_t len);
/* The next whole message in order: its length, or NK_ERR_AGAIN; NK_ERR_NOBUFS if cap is too
 * small (the message stays queued). */
NK_API int nk_session_recv(nk_session *s, uint8_t *buf, size_t cap);
NK_API size_t nk_session_max_message(const nk_session *s);
/* Message fragments queued and not yet acknowledged by the peer (0: all delivered). */
NK_API size_t nk_session_unacked(const nk_session *s);

/* Sends an authenticated probe on path (the active one is not changed); a
 * PATH_VALIDATED event follows when the peer's authenticated answer arrives on
 * that same path. NK_ERR_STATE before CONNECTED. */
NK_API int nk_session_probe_path(nk_session *s, nk_path_id path, int64_t now_ms, uint64_t *nonce);
NK_API int nk_session_set_path(nk_session *s, nk_path_id path);
NK_API nk_path_id nk_session_path(const nk_session *s);

/* Keepalive hook: queue an ack-eliciting PING on the active path now. */
NK_API int nk_session_keepalive(nk_session *s);
/* Starts a rekey now (the initiator runs the handshake; a responder asks for one). */
NK_API int nk_session_rekey(nk_session *s, int64_t now_ms);
/* Tells the peer (one CLOSE packet, best effort) and closes. */
NK_API int nk_session_close(nk_session *s, int64_t now_ms);

/*
 * Derives len (16..64) bytes for another protocol (e.g. a sealed TCP stream)
 * from the secret of the session's first handshake: keyed BLAKE2b over the
 * label and context. Both sides get the same bytes; they are independent of
 * the UDP transport keys and do not change on rekeys. NK_ERR_STATE before
 * CONNECTED, NK_ERR_INVAL for a bad length or an empty label.
 */
NK_API int nk_session_export_key(const nk_session *s, const char *label, const uint8_t *context,
                                 size_t context_len, uint8_t *out, size_t len);
/* 1 if this side started the handshake (cfg.initiator). */
NK_API int nk_session_initiator(const nk_session *s);

NK_API int nk_session_state(const nk_session *s);
/* The authenticated peer ID (CONNECTED), or the expected one; NULL if not known yet. */
NK_API const nk_peer_id *nk_session_peer(const nk_session *s);
NK_API void nk_session_stats(const nk_session *s, nk_session_stats_t *st);

/*
 * Demultiplexing many sessions on one socket: every packet starts with
 * version, type and the receiver's index. An index of 0 means "a first
 * handshake message" (route it by address, or to a new responder session).
 */
NK_API uint32_t nk_session_local_index(const nk_session *s);
#define NK_SESSION_PKT_INIT     1
#define NK_SESSION_PKT_RESPONSE 2
#define NK_SESSION_PKT_DATA     3
NK_API int nk_session_peek(const uint8_t *p, size_t n, int *type, uint32_t *receiver_index);

#ifdef __cplusplus
}
#endif
#endif
