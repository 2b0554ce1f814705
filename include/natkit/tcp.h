/*
 * natkit: upgrading an established secure session to a TCP stream.
 *
 * Three pieces, see docs/internals/tcp-upgrade.md:
 *
 *  - nk_upgrade, sans-I/O: the control exchange carried as messages of the
 *    session (or any authenticated carrier). The acceptor ANNOUNCEs a TCP
 *    address with a fresh random token, resent (RTO doubling) until the dialer
 *    ACKs it; the dialer reports the outcome with a RESULT, resent until ACKed.
 *    Bytes and time in, bytes and a deadline out; no clock, socket or sleep.
 *
 *  - nk_tcpseal, sans-I/O: the sealed byte stream. Keys come from the session
 *    (nk_session_export_key, label "natkit tcp", context = the token), one per
 *    direction; framing is crypto_secretstream_xchacha20poly1305 records with a
 *    2-byte length. Each side opens with a magic, its secretstream header and
 *    a first record holding the token: a TCP peer that does not hold the
 *    session's keys (or replays another upgrade) fails that record and is
 *    refused. Bounded buffers: write takes what fits (NK_ERR_AGAIN when none),
 *    feed takes what can be decrypted into room for the reader.
 *
 *  - nk_tcp_stream, a thin driver: an nk_tcpseal on a non-blocking socket
 *    (file-descriptor style: poll nk_tcp_stream_fd for nk_tcp_stream_events,
 *    then nk_tcp_stream_pump; read/write like a non-blocking socket).
 *
 * Plus the socket helpers and nk_tcp_simopen for TCP simultaneous open (below). To upgrade
 * an established nk_conn (two peers behind NATs) in one piece, see natkit/conn_tcp.h.
 */
#ifndef NATKIT_TCP_H
#define NATKIT_TCP_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/session.h"

#include <poll.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NK_TCP_TOKEN_LEN 16

/* ---- the control exchange --------------------------------------------------------- */

typedef struct nk_upgrade nk_upgrade;

typedef struct nk_upgrade_config {
    int acceptor;            /* 1: this side listens and announces; 0: dialer */
    int64_t rto_ms;          /* first retransmission of ANNOUNCE/RESULT (doubles, max 2 s); 0: 250 */
    int64_t timeout_ms;      /* give up on an unacknowledged message after this; 0: 15000 */
    nk_random_fn random;     /* the token; NULL: libsodium */
    void *random_ctx;
} nk_upgrade_config;

#define NK_UPGRADE_EV_ANNOUNCED 1 /* dialer: connect to addr (family NONE: the peer's UDP IP) with token;
                                   * simultaneous: the peer connects to us at the same time (see
                                   * nk_upgrade_simopen): connect from our own predicted port now */
#define NK_UPGRADE_EV_ACKED     2 /* acceptor: the dialer has the announcement */
#define NK_UPGRADE_EV_RESULT    3 /* acceptor: the dialer's outcome; err 0 (TCP up) or < 0 */
#define NK_UPGRADE_EV_FAILED    4 /* a message stayed unacknowledged: err NK_ERR_TIMEOUT */

typedef struct nk_upgrade_event {
    int type;
    int err;
    int simultaneous;        /* ANNOUNCED: a TCP simultaneous open (no listener on either side) */
    nk_addr addr;
    uint8_t token[NK_TCP_TOKEN_LEN];
} nk_upgrade_event;

typedef struct nk_upgrade_stats_t {
    uint64_t tx_messages, retransmits, rx_messages, rx_malformed, rx_duplicates;
} nk_upgrade_stats_t;

#define NK_UPGRADE_MAX_MESSAGE 48

NK_API int nk_upgrade_new(nk_upgrade **out, const nk_upgrade_config *cfg);
NK_API void nk_upgrade_free(nk_upgrade *u);
/* Acceptor: announce the TCP address (port required; family NONE: "my UDP IP"). The token
 * is drawn now (nk_upgrade_token). NK_ERR_STATE for a dialer or while one is outstanding. */
NK_API int nk_upgrade_announce(nk_upgrade *u, int64_t now_ms, const nk_addr *tcp_addr);
/* Acceptor role, both sides behind NAT: ask for a TCP simultaneous open. tcp_addr is our own
 * TCP endpoint as the peer should reach it (family NONE: "my UDP IP"), normally the port our UDP
 * mapping has, connected from the same local port. The peer's ANNOUNCED event has simultaneous
 * set; it connects to us at once while we connect to it when NK_UPGRADE_EV_ACKED arrives. The
 * outcome comes back as NK_UPGRADE_EV_RESULT like for an announcement. */
NK_API int nk_upgrade_simopen(nk_upgrade *u, int64_t now_ms, const nk_addr *tcp_addr);
/* Dialer: report the outcome of the connection for the last announcement (0 or < 0). */
NK_API int nk_upgrade_report(nk_upgrade *u, int64_t now_ms, int err);
/* A control message from the peer. 0; NK_ERR_MALFORMED (counted, dropped); NK_ERR_AGAIN for a
 * duplicate (answered again, no new event). */
NK_API int nk_upgrade_handle_message(nk_upgrade *u, int64_t now_ms, const uint8_t *p, size_t n);
NK_API void nk_upgrade_handle_timeout(nk_upgrade *u, int64_t now_ms);
/* The next control message to send (cap >= NK_UPGRADE_MAX_MESSAGE): its length, or NK_ERR_AGAIN. */
NK_API int nk_upgrade_poll_message(nk_upgrade *u, int64_t now_ms, uint8_t *buf, size_t cap);
NK_API int64_t nk_upgrade_next_deadline(const nk_upgrade *u);
NK_API int nk_upgrade_poll_event(nk_upgrade *u, nk_upgrade_event *ev);
/* The token of the current announcement (acceptor) or the last one received (dialer). */
NK_API const uint8_t *nk_upgrade_token(const nk_upgrade *u);
NK_API void nk_upgrade_stats(const nk_upgrade *u, nk_upgrade_stats_t *st);
/* 1 if p looks like an upgrade control message (its first byte), for demultiplexing. */
NK_API int nk_upgrade_is_message(const uint8_t *p, size_t n);

/* ---- the sealed stream ------------------------------------------------------------ */

typedef struct nk_tcpseal nk_tcpseal;

#define NK_TCPSEAL_RECORD 16384 /* largest plaintext per record */

typedef struct nk_tcpseal_stats_t {
    uint64_t bytes_in, bytes_out;     /* plaintext */
    uint64_t records_in, records_out;
    uint64_t auth_failed, malformed;  /* a stream that fails stops there (sticky error) */
} nk_tcpseal_stats_t;

/* Keys from an established session (both sides call it with the same token; the
 * session's role decides which key sends). buf_cap bounds both buffers (ciphertext
 * out, plaintext in); 0: 256 KiB, at least 32 KiB. */
NK_API int nk_tcpseal_new(nk_tcpseal **out, const nk_session *s, const uint8_t token[NK_TCP_TOKEN_LEN],
                          size_t buf_cap);
/* The same with explicit keys (tests, fuzzing). */
NK_API int nk_tcpseal_new_keys(nk_tcpseal **out, const uint8_t key_tx[32], const uint8_t key_rx[32],
                               const uint8_t token[NK_TCP_TOKEN_LEN], size_t buf_cap);
NK_API void nk_tcpseal_free(nk_tcpseal *t);

/* Plaintext in: how many bytes were taken (> 0), NK_ERR_AGAIN when the output buffer is
 * full, NK_ERR_STATE after shutdown or an error. */
NK_API int nk_tcpseal_write(nk_tcpseal *t, const uint8_t *p, size_t n);
/* Ends our direction (an authenticated end-of-stream record). NK_ERR_AGAIN: no room yet. */
NK_API int nk_tcpseal_shutdown(nk_tcpseal *t);
/* Ciphertext to put on the socket, and how much of it was sent. */
NK_API size_t nk_tcpseal_pending(const nk_tcpseal *t, const uint8_t **p);
NK_API void nk_tcpseal_consume(nk_tcpseal *t, size_t n);
/* Ciphertext from the socket: bytes taken (0: no room, read later), or NK_ERR_AUTH /
 * NK_ERR_MALFORMED (the stream is dead; close the connection). */
NK_API int nk_tcpseal_feed(nk_tcpseal *t, const uint8_t *p, size_t n);
/* Bytes the feed would take now (0: the reader must read first). */
NK_API size_t nk_tcpseal_feed_room(const nk_tcpseal *t);
/* Plaintext out: bytes, NK_ERR_AGAIN (nothing yet), NK_ERR_CLOSED (the peer ended its direction
 * and everything was read), or the stream's error. */
NK_API int nk_tcpseal_read(nk_tcpseal *t, uint8_t *buf, size_t cap);
/* 1 once the peer's first record (the token) authenticated. */
NK_API int nk_tcpseal_authenticated(const nk_tcpseal *t);
/* 0, or the sticky error. */
NK_API int nk_tcpseal_error(const nk_tcpseal *t);
NK_API void nk_tcpseal_stats(const nk_tcpseal *t, nk_tcpseal_stats_t *st);

/* ---- the socket driver ------------------------------------------------------------ */

typedef struct nk_tcp_stream nk_tcp_stream;

/* Takes fd (connected TCP, made non-blocking) and t; both are freed with the stream. */
NK_API int nk_tcp_stream_new(nk_tcp_stream **out, int fd, nk_tcpseal *t);
NK_API void nk_tcp_stream_free(nk_tcp_stream *ts);
NK_API int nk_tcp_stream_fd(const nk_tcp_stream *ts);
/* POLLIN/POLLOUT bits to wait for. */
NK_API short nk_tcp_stream_events(const nk_tcp_stream *ts);
/* 1 when pump would make progress without waiting for the socket (bytes read earlier now fit in
 * the seal, after the reader made room): poll with a zero timeout. */
NK_API int nk_tcp_stream_ready(const nk_tcp_stream *ts);
/* Moves bytes between the socket and the seal, as far as both take. 0, or NK_ERR_AUTH /
 * NK_ERR_MALFORMED (refused), NK_ERR_TRUNCATED (the connection ended without an end-of-stream
 * record), NK_ERR_SYSTEM. */
NK_API int nk_tcp_stream_pump(nk_tcp_stream *ts);
NK_API int nk_tcp_stream_write(nk_tcp_stream *ts, const uint8_t *p, size_t n);
NK_API int nk_tcp_stream_read(nk_tcp_stream *ts, uint8_t *buf, size_t cap);
NK_API int nk_tcp_stream_shutdown(nk_tcp_stream *ts);
/* 1 when our direction ended and every byte of it went to the kernel. */
NK_API int nk_tcp_stream_flushed(const nk_tcp_stream *ts);
NK_API nk_tcpseal *nk_tcp_stream_seal(nk_tcp_stream *ts);

/* ---- simultaneous open --------------------------------------------------------------- */

/* A non-blocking TCP connect to remote from local (a fixed port: normally the one of our UDP
 * socket, so a port-preserving NAT gives it the same public port as the UDP mapping). The
 * socket has SO_REUSEADDR and SO_REUSEPORT: call again for each attempt (the peer's NAT may
 * refuse the first SYNs until its own SYN went out). 0 and *fd_out; NK_ERR_ADDRESS (port taken),
 * NK_ERR_SYSTEM. Poll the fd for POLLOUT, then nk_tcp_connect_result. */
NK_API int nk_tcp_connect_from(const nk_addr *local, const nk_addr *remote, int *fd_out);
/* A non-blocking listener on the same local port (SO_REUSEPORT, next to the attempts): where the
 * peer's SYN lands when our own attempt was already refused, and on hosts without NAT. Accept
 * only from the expected peer; the sealed stream's first record authenticates it anyway. */
NK_API int nk_tcp_listen_from(const nk_addr *local, int *fd_out);
/* 0 connected (the handshake completed: TCP state established or later), NK_ERR_AGAIN still
 * connecting (SYN sent or received; safe to call before POLLOUT), NK_ERR_CLOSED refused or reset
 * (also when that error was read before), NK_ERR_TIMEOUT, NK_ERR_INVAL (not a connecting TCP
 * socket), NK_ERR_SYSTEM. Takes the socket's pending error (SO_ERROR). */
NK_API int nk_tcp_connect_result(int fd);

/*
 * The attempts of a TCP simultaneous open, as a driver: connects from local (the UDP socket's
 * address, so the NAT's mapping keeps its port) to remote (the peer's UDP mapping, the direct
 * path's remote) at start_ms, again retry_ms after each refusal, until window_ms has passed;
 * a listener on the same port takes the peer's SYN when it finds no attempt of ours (hosts
 * without NAT, or between attempts; connections from other IPs are closed). Both sides start
 * at about the same moment (nk_upgrade_simopen carries the request over the session). Poll
 * the fds it gives (fd -1: none), then call step: 0 and *fd_out (connected, non-blocking, now
 * yours: hand it to nk_tcp_stream_new with an nk_tcpseal), NK_ERR_AGAIN (call again at
 * nk_tcp_simopen_next_deadline or on an fd event), NK_ERR_TIMEOUT (no SYN got through).
 */
typedef struct nk_tcp_simopen nk_tcp_simopen;

typedef struct nk_tcp_simopen_config {
    nk_addr local;           /* bind address; port: our UDP socket's */
    nk_addr remote;          /* the peer's UDP mapping */
    int64_t start_ms;        /* the first attempt */
    int64_t window_ms;       /* 0: 5000 */
    int64_t retry_ms;        /* after a refusal; 0: 100 */
} nk_tcp_simopen_config;

typedef struct nk_tcp_simopen_stats_t {
    uint32_t attempts, refused, strangers; /* strangers: connections from other IPs, closed */
    int via_listener;                      /* 1: the peer's SYN met our listener */
    int64_t up_ms;                         /* from start_ms to connected */
} nk_tcp_simopen_stats_t;

#define NK_TCP_SIMOPEN_FDS 2

NK_API int nk_tcp_simopen_new(nk_tcp_simopen **out, const nk_tcp_simopen_config *cfg);
NK_API void nk_tcp_simopen_free(nk_tcp_simopen *s);
/* The fds to poll. It remembers what it handed out: step takes revents only for these sockets and
 * only once, so a pollfd array filled for an earlier or another object is ignored. */
NK_API void nk_tcp_simopen_pollfds(nk_tcp_simopen *s, struct pollfd pfd[NK_TCP_SIMOPEN_FDS]);
NK_API int64_t nk_tcp_simopen_next_deadline(const nk_tcp_simopen *s);
/* pfd: as the last pollfds filled them, with revents (NULL on a timeout). */
NK_API int nk_tcp_simopen_step(nk_tcp_simopen *s, int64_t now_ms, const struct pollfd pfd[NK_TCP_SIMOPEN_FDS],
                               int *fd_out);
NK_API void nk_tcp_simopen_stats(const nk_tcp_simopen *s, nk_tcp_simopen_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
