/*
 * natkit CLI: the byte pump of `natkit connect` / `natkit listen` — one
 * (file descriptor(s), stream) pair copied both ways with backpressure.
 *
 *   in_fd  --read--> up buffer  --write--> stream (QUIC stream of an nk_conn, or the
 *                                          sealed TCP stream of connect --tcp)
 *   out_fd <--write-- down buffer <--read-- stream
 *
 * Backpressure both ways: in_fd is read only when the up buffer is empty (the stream
 * took everything read before); the stream is read only when the down buffer is empty
 * (out_fd took everything), so a slow reader of out_fd stops the sender through QUIC's
 * flow control. End of in_fd -> FIN on the stream; the peer's FIN -> shutdown(SHUT_WR)
 * on a socket (half-close). Errors: a socket error resets the stream (FWD_ERR_RESET),
 * a reset of the stream closes the socket with an RST.
 *
 * Streams opened by the connector start with a 4-byte preamble (fwd_preamble_*): "NKS"
 * and a kind ('s' stdin/stdout, 'f' a forwarded TCP connection). QUIC shows a stream to
 * the peer only once a frame of it arrives; the preamble makes a stream visible at once
 * (a forwarded service may speak first) and tells the listener what the connector wants.
 */
#ifndef CLI_FWD_H
#define CLI_FWD_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "natkit/node.h"
#include "p2p_tcp.h"

#define FWD_BUF 65536

/* Application error codes of stream resets (QUIC RESET_STREAM / STOP_SENDING). */
#define FWD_ERR_RESET       0x4e4b01 /* the TCP connection on the other side failed or was reset */
#define FWD_ERR_NO_FORWARD  0x4e4b02 /* the listener has no --forward */
#define FWD_ERR_CONNECT     0x4e4b03 /* the listener could not reach its --forward target */
#define FWD_ERR_PREAMBLE    0x4e4b04 /* the stream did not start with a preamble */
#define FWD_ERR_BUSY        0x4e4b05 /* too many streams at once */
#define FWD_ERR_NOT_STDIO   0x4e4b06 /* a second stdin/stdout stream from one peer */

/* Why a reset came: text for a code above (or "unknown reason"). */
const char *fwd_err_text(uint64_t code);

#define FWD_PREAMBLE_LEN   4
#define FWD_KIND_STDIO     's'
#define FWD_KIND_FORWARD   'f'
void fwd_preamble_put(uint8_t out[FWD_PREAMBLE_LEN], int kind);
/* Feeds bytes of a stream's start into acc (*have bytes so far). Returns how many of p it
 * took (0..n); *kind is set once the preamble is complete (0 before; -1: not a preamble). */
size_t fwd_preamble_feed(uint8_t acc[FWD_PREAMBLE_LEN], size_t *have, const uint8_t *p, size_t n, int *kind);

/* The message (nk_conn_send) a listener sends before it closes a connection it refuses. */
#define FWD_REFUSE_PREFIX "natkit-refused:"

/* The message (nk_conn_send; accept/dial: a framed message on their control stream) the
 * receiving side of a stream sends once it has read the stream's FIN and written every byte
 * before it to its output (stdout, or the forwarded TCP socket, then half-closed):
 * "natkit-delivered:" and the QUIC stream ID in decimal (no sign, no leading zero), or
 * "natkit-delivered:tcp" for the sealed TCP stream of connect --tcp or accept/dial. The sender of
 * the stream is done only then: QUIC's acknowledgement (or TCP's) says the bytes reached the
 * peer's process, not its output. */
#define FWD_DELIVERED_PREFIX "natkit-delivered:"
#define FWD_DELIVERED_TCP    ((int64_t)-1)  /* the stream ID that stands for "tcp" */
#define FWD_DELIVERED_MAX    40             /* the longest such message */
/* Writes the message for sid (>= 0, or FWD_DELIVERED_TCP) into out: its length (0: cap too small). */
size_t fwd_delivered_put(uint8_t *out, size_t cap, int64_t sid);
/* 1: a delivered message (*sid set), 0: another message (not this prefix), -1: this prefix but
 * malformed (the message is ignored). */
int fwd_delivered_parse(const uint8_t *m, size_t n, int64_t *sid);

/* How out_fd is written without blocking the loop, and without setting O_NONBLOCK on a
 * descriptor we share (stdout may be the same pipe as stderr, or the terminal's): */
#define FWD_OUT_PLAIN 0 /* write(): our own non-blocking socket, or a file or terminal */
#define FWD_OUT_PIPE  1 /* a pipe: poll() for POLLOUT, then write at most PIPE_BUF (never blocks) */
#define FWD_OUT_SOCK  2 /* a socket we did not make: send(MSG_DONTWAIT) */
/* The kind for stdout (or any fd): FWD_OUT_PIPE for a FIFO, FWD_OUT_SOCK for a socket, else PLAIN. */
int fwd_out_kind(int fd);
/* Writes without blocking as kind says: bytes written, or -1 (errno; EAGAIN: wait for POLLOUT). */
ssize_t fwd_write_out(int fd, int kind, const uint8_t *p, size_t n);

/* One stream operation on the sealed TCP stream t when not NULL, else on QUIC stream sid of c
 * (the pump's and listen's stdin/stdout streams alike). write: bytes taken (0: no room now) or
 * < 0 (gone); read: bytes, 0 at the FIN, NK_ERR_AGAIN, or < 0 (reset). */
int fwd_stream_write(nk_conn *c, int64_t sid, p2p_tcp *t, const uint8_t *b, size_t n);
int fwd_stream_read(nk_conn *c, int64_t sid, p2p_tcp *t, uint8_t *b, size_t cap);
void fwd_stream_shutdown(nk_conn *c, int64_t sid, p2p_tcp *t);

/* A carrier of the caller's own (accept/dial: raw nk_quic streams, an nk_tcp_stream): the
 * pump's stream operations, meaning what fwd_stream_* mean; unacked: bytes of ours the peer does
 * not have yet; tell: the peer's bytes and end are on our output, send the peer its "delivered"
 * (fwd_delivered_put) on the owner's message channel: 0 (sent, or the channel is gone), or
 * NK_ERR_AGAIN (no room now: asked again on the next run). Such a pump reads its carrier on every
 * run (there are no READABLE events); the owner hands it the peer's "delivered" for our bytes
 * (fwd_pump_on_delivered), as for a stream. */
typedef struct fwd_carrier {
    int (*write)(void *ctx, const uint8_t *b, size_t n);
    int (*read)(void *ctx, uint8_t *b, size_t cap);
    void (*shutdown)(void *ctx);
    size_t (*unacked)(void *ctx);
    int (*tell)(void *ctx);
    void *ctx;
} fwd_carrier;

typedef struct fwd_pump {
    int in_fd, out_fd;          /* -1: none; a socket when sock */
    int sock;                   /* 1: in_fd == out_fd is a TCP socket (half-close, RST) */
    int out_kind;               /* FWD_OUT_*: how out_fd is written (PLAIN unless set) */
    nk_conn *conn;              /* the QUIC stream sid of conn ... */
    int64_t sid;
    p2p_tcp *tcp;               /* ... or, when not NULL, the sealed TCP stream (connect --tcp) */
    const fwd_carrier *carrier; /* ... or, when not NULL, the caller's carrier (accept/dial) */
    uint8_t *up, *down;         /* FWD_BUF each */
    size_t up_off, up_len, down_off, down_len;
    int in_eof;                 /* in_fd ended (or failed): the FIN is (to be) sent */
    int fin_sent;
    int readable;               /* the stream may have bytes (STREAM_READABLE seen) */
    int peer_fin;               /* the peer's FIN was read */
    int out_shut;               /* out_fd was half-closed after the peer's FIN */
    int told;                   /* our "delivered" for the peer's bytes went out (after out_shut) */
    int delivered;              /* the peer said our bytes and FIN reached its output */
    int failed;                 /* reset either way: nothing more moves */
    const char *why;            /* failed: what happened (static text) */
    int sys_errno;              /* failed by a socket error: errno */
    uint64_t bytes_up, bytes_down;
} fwd_pump;

/* in_fd/out_fd as above; the buffers are allocated (0, or NK_ERR_NOMEM). */
int fwd_pump_init(fwd_pump *p, int in_fd, int out_fd, int sock);
void fwd_pump_free(fwd_pump *p);  /* frees the buffers; does not close fds or the stream */
void fwd_pump_set_stream(fwd_pump *p, nk_conn *c, int64_t sid);
/* The sealed TCP stream t of connection c (c carries the "delivered" messages). */
void fwd_pump_set_tcp(fwd_pump *p, nk_conn *c, p2p_tcp *t);
void fwd_pump_set_carrier(fwd_pump *p, const fwd_carrier *k);
/* What to poll: events for in_fd and out_fd (0: nothing now). */
void fwd_pump_wants(const fwd_pump *p, short *in_events, short *out_events);
/* Moves what can move now; revents of in_fd and out_fd as polled (0 when not). */
void fwd_pump_run(fwd_pump *p, short in_revents, short out_revents);
/* Stream events of its stream: STREAM_READABLE, STREAM_RESET (app_error). */
void fwd_pump_on_readable(fwd_pump *p);
void fwd_pump_on_reset(fwd_pump *p, uint64_t code);
/* The peer's "delivered" for this pump's stream arrived. */
void fwd_pump_on_delivered(fwd_pump *p);
/* Resets the stream (and RSTs a socket) with code. */
void fwd_pump_abort(fwd_pump *p, uint64_t code, const char *why);
/* Both directions ended (or it failed): our FIN went out, was acknowledged, and the peer said
 * that every byte of ours reached its output; the peer's FIN was read, its bytes written out,
 * and our "delivered" for them went out. */
int fwd_pump_done(const fwd_pump *p);
/* Bytes of ours the peer has not acknowledged yet. */
size_t fwd_pump_unacked(const fwd_pump *p);

#endif
