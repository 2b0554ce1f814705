/*
 * natkit: a QUIC connection between two natkit peers (RFC 9000 on ngtcp2,
 * TLS 1.3 on GnuTLS). Sans-I/O: it takes datagrams and the time, and hands
 * back datagrams to send, events and its next deadline. It never reads a
 * clock, opens a socket or sleeps.
 *
 * The QUIC path is one fixed virtual pair of addresses: the caller carries the
 * datagrams over whatever real path it chose (direct UDP, TURN, the hub), so
 * no call takes an address.
 *
 * Authentication: both peers present their Ed25519 identity as a TLS raw
 * public key (RFC 7250); the handshake's CertificateVerify proves each side
 * holds the secret key. A client names the peer ID it expects and refuses any
 * other; a server may name one too, else it accepts any authenticated client
 * and reports its ID. ALPN "natkit/1". See docs/internals/quic.md.
 */
#ifndef NATKIT_QUIC_H
#define NATKIT_QUIC_H

#include "natkit/common.h"
#include "natkit/identity.h"


#ifdef __cplusplus
extern "C" {
#endif

#define NK_QUIC_ALPN "natkit/1"

typedef struct nk_quic nk_quic;

#define NK_QUIC_CLIENT 0
#define NK_QUIC_SERVER 1

#define NK_QUIC_CC_CUBIC 0 /* default */
#define NK_QUIC_CC_BBR   1
#define NK_QUIC_CC_RENO  2

typedef struct nk_quic_config {
    int role;                        /* NK_QUIC_CLIENT or NK_QUIC_SERVER */
    const nk_identity *identity;     /* required; copied (wiped at free) */
    const nk_peer_id *peer;          /* client: required. server: NULL accepts any authenticated
                                        client (its ID comes with the CONNECTED event) */
    nk_random_fn random;             /* connection IDs, tokens; NULL: libsodium */
    void *random_ctx;
    int cc;                          /* NK_QUIC_CC_*; 0: CUBIC */
    uint64_t stream_window;          /* initial per-stream receive window; 0: 256 KiB */
    uint64_t max_stream_window;      /* auto-tuned up to; 0: 6 MiB */
    uint64_t conn_window;            /* initial connection receive window; 0: 1 MiB */
    uint64_t max_conn_window;        /* auto-tuned up to; 0: 16 MiB */
    uint64_t max_streams;            /* concurrent peer-opened bidirectional streams; 0: 100 */
    size_t stream_send_buffer;       /* bytes a stream buffers before write pushes back; 0: 1 MiB */
    int64_t idle_timeout_ms;         /* 0: 30000 */
    int64_t handshake_timeout_ms;    /* 0: 10000 */
    int64_t keepalive_ms;            /* PING when idle this long; 0: 10000, < 0: off */
    size_t max_datagram;             /* UDP payload we send; 0: 1200 (>= 1200) */
    int64_t initial_rtt_ms;          /* RTT assumed before the first sample (sets the handshake's
                                        first retransmission, 3x this); 0: 333 (RFC 9002) */
    /* Optional finer clock: where the caller keeps the current time in microseconds (the same
     * clock as now_ms, updated before its calls). When *now_us lies within the now_ms of a call,
     * QUIC uses it: RTT samples and pacing at sub-millisecond RTTs need it. NULL: ms only. */
    const int64_t *now_us;
} nk_quic_config;

/* Events (nk_quic_poll_event). */
#define NK_QUIC_EV_CONNECTED         1 /* handshake done, peer proved its ID: peer */
#define NK_QUIC_EV_STREAM_OPENED     2 /* the peer opened stream_id */
#define NK_QUIC_EV_STREAM_READABLE   3 /* nk_quic_stream_read has bytes (or the FIN) */
#define NK_QUIC_EV_STREAM_WRITABLE   4 /* after a short write: room again */
#define NK_QUIC_EV_STREAM_FINISHED   5 /* the peer's FIN was read (read returned 0) */
#define NK_QUIC_EV_STREAM_RESET      6 /* the peer reset its side or asked us to stop: app_error */
#define NK_QUIC_EV_DATAGRAM          7 /* nk_quic_datagram_read has a datagram */
#define NK_QUIC_EV_CLOSED            8 /* err, app_error, reason */

typedef struct nk_quic_event {
    int type;
    int64_t stream_id;
    nk_peer_id peer;                 /* CONNECTED */
    int err;                         /* CLOSED: 0 closed locally, NK_ERR_CLOSED (peer closed),
                                        NK_ERR_AUTH (peer ID mismatch, TLS failure), NK_ERR_TIMEOUT
                                        (idle or handshake timeout), NK_ERR_MALFORMED (protocol
                                        violation) */
    uint64_t app_error;              /* CLOSED by the application, STREAM_RESET */
    char reason[64];                 /* CLOSED: short English reason, NUL-terminated */
} nk_quic_event;

typedef struct nk_quic_stats_t {
    uint64_t tx_bytes, rx_bytes;     /* UDP payload bytes out / in */
    uint64_t tx_packets, rx_packets; /* datagrams out / in */
    uint64_t stream_bytes_sent;      /* stream bytes handed to packets (incl. nothing resent) */
    uint64_t stream_bytes_read;      /* stream bytes the application read */
    uint64_t lost_datagrams;         /* unreliable datagrams declared lost */
    uint64_t pto_count;              /* consecutive probe timeouts now */
    int64_t srtt_us, min_rtt_us;     /* smoothed / minimum RTT (0: no sample yet) */
    uint64_t cwnd, bytes_in_flight;
    size_t mem_bytes;                /* live heap bytes of ngtcp2 and natkit's buffers (not GnuTLS) */
} nk_quic_stats_t;

NK_API int nk_quic_new(nk_quic **out, const nk_quic_config *cfg, int64_t now_ms);
NK_API void nk_quic_free(nk_quic *q);

/* A datagram from the peer. 0, or < 0 when dropped or fatal (the CLOSED event says which). */
NK_API int nk_quic_handle_datagram(nk_quic *q, int64_t now_ms, const uint8_t *p, size_t n);
NK_API void nk_quic_handle_timeout(nk_quic *q, int64_t now_ms);
/* When handle_timeout must be called next (NK_DEADLINE_NONE: nothing pending). Also the time
 * paced data may leave: after poll_transmit returned NK_ERR_AGAIN with data still queued. */
NK_API int64_t nk_quic_next_deadline(const nk_quic *q);
/* Fills buf (cap >= max_datagram, else NK_ERR_NOBUFS) with the next datagram: its length, or
 * NK_ERR_AGAIN when nothing may leave now (drain until then). Coalesces all streams, respects
 * flow control, congestion control and pacing. */
NK_API int nk_quic_poll_transmit(nk_quic *q, int64_t now_ms, uint8_t *buf, size_t cap);
/* 0 and *ev, or NK_ERR_AGAIN. */
NK_API int nk_quic_poll_event(nk_quic *q, nk_quic_event *ev);
/* 1 once CONNECTED (until closed); the authenticated peer in *peer when not NULL. */
NK_API int nk_quic_connected(const nk_quic *q, nk_peer_id *peer);

/* Opens a bidirectional stream: 0 and *id; NK_ERR_STATE before CONNECTED, NK_ERR_AGAIN when
 * the peer's stream limit is reached (it grows as streams close). */
NK_API int nk_quic_stream_open(nk_quic *q, int64_t *id);
/* Copies up to n bytes into the stream's send buffer: how many (0..n; less than n: a WRITABLE
 * event follows when there is room), NK_ERR_AGAIN when none fit, NK_ERR_NOT_FOUND, NK_ERR_STATE
 * after shutdown/reset. Never drops accepted bytes. */
NK_API int nk_quic_stream_write(nk_quic *q, int64_t id, const uint8_t *p, size_t n);
/* Sends FIN after the buffered bytes. */
NK_API int nk_quic_stream_shutdown(nk_quic *q, int64_t id);
/* Bytes read (> 0), 0 at the peer's FIN, NK_ERR_AGAIN when nothing yet, NK_ERR_CLOSED after a
 * reset by the peer, NK_ERR_NOT_FOUND (also once a stream finished both ways and its FIN was
 * read: it is forgotten). Reading opens the flow-control window again. */
NK_API int nk_quic_stream_read(nk_quic *q, int64_t id, uint8_t *buf, size_t cap);
/* Abandons both directions of the stream (RESET_STREAM + STOP_SENDING with code). */
NK_API int nk_quic_stream_reset(nk_quic *q, int64_t id, uint64_t code);
/* Bytes written and not yet acknowledged by the peer. */
NK_API size_t nk_quic_stream_unacked(const nk_quic *q, int64_t id);
/* Streams open now (either side's, not yet forgotten) whose ID is at least min_id. */
NK_API size_t nk_quic_stream_count(const nk_quic *q, int64_t min_id);

/* Unreliable datagrams (RFC 9221). send: 0, NK_ERR_LIMIT if larger than nk_quic_datagram_max,
 * NK_ERR_AGAIN if the queue is full, NK_ERR_STATE before CONNECTED. read: length, NK_ERR_AGAIN,
 * NK_ERR_NOBUFS (the datagram stays queued). */
NK_API int nk_quic_datagram_send(nk_quic *q, const uint8_t *p, size_t n);
NK_API int nk_quic_datagram_read(nk_quic *q, uint8_t *buf, size_t cap);
NK_API size_t nk_quic_datagram_max(const nk_quic *q);

/* TLS exporter (RFC 8446 7.5, RFC 5705): same bytes on both ends of one connection. */
NK_API int nk_quic_export(nk_quic *q, const char *label, const uint8_t *context, size_t context_len,
                          uint8_t *out, size_t len);

/* Graceful close: a CONNECTION_CLOSE with app_error goes out on the next poll_transmit; a CLOSED
 * event (err 0) follows. While closing, the close goes again in answer to the peer's 1st, 2nd,
 * 4th, 8th, ... datagram (RFC 9000 10.2.1); after the peer's close (draining) nothing is sent. */
NK_API int nk_quic_close(nk_quic *q, int64_t now_ms, uint64_t app_error);
/* The same with a reason phrase in the CONNECTION_CLOSE (at most NK_QUIC_CLOSE_REASON_MAX bytes
 * of it; NULL: none). The peer's CLOSED event says "peer closed: PHRASE" (its first 40 bytes). */
#define NK_QUIC_CLOSE_REASON_MAX 40
NK_API int nk_quic_close_ex(nk_quic *q, int64_t now_ms, uint64_t app_error, const char *reason);
NK_API void nk_quic_stats(const nk_quic *q, nk_quic_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif
