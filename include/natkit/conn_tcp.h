/*
 * natkit: upgrading an established connection (nk_conn) to a TCP stream by TCP
 * simultaneous open, see docs/internals/tcp-simopen.md.
 *
 * Once the connection is on a direct UDP path, the requesting side sends an nk_upgrade
 * SIMOPEN as a message on the connection; both sides then connect TCP from their UDP
 * socket's port to the address the other's UDP packets come from, at the same moment
 * (nk_tcp_simopen), and seal the stream with two keys from the connection's QUIC exporter
 * (nk_conn_export, label "natkit tcp", the upgrade token as context; nk_tcpseal_new_keys
 * on an nk_tcp_stream). When
 * no SYN gets through, the connection stays on its UDP path (a FAILED event says why).
 *
 * A driver like nk_tcp_stream: it owns the TCP sockets, never reads a clock or blocks.
 * The caller passes the time, polls the fds it gives, feeds it the connection's upgrade
 * messages, and drains its events (nothing is printed):
 *
 *     nk_conn_tcp_pollfds(t, pfd); poll(..., until nk_conn_tcp_next_deadline(t));
 *     nk_conn_tcp_service(t, now, pfd);
 *     while ((n = nk_conn_tcp_read(t, buf, cap)) > 0) use(buf, n);
 *     while (nk_conn_tcp_poll_event(t, &ev) == 0) ...;
 *
 * Data, once UP: nk_conn_tcp_write / nk_conn_tcp_read with backpressure (bounded seal
 * buffers: write returns NK_ERR_AGAIN when full; a reader that stops reading stops the
 * socket being read, and TCP's window pushes back on the peer). Or take the stream and
 * drive it yourself as a file descriptor: nk_conn_tcp_take_stream.
 */
#ifndef NATKIT_CONN_TCP_H
#define NATKIT_CONN_TCP_H

#include "natkit/node.h"
#include "natkit/tcp.h"

#include <poll.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_conn_tcp nk_conn_tcp;

typedef struct nk_conn_tcp_config {
    nk_conn *conn;           /* connected; must outlive the nk_conn_tcp */
    int requester;           /* 1: ask for the upgrade (nk_conn_tcp_handle_path); 0: answer one */
    nk_addr udp_local;       /* the node's UDP socket: TCP binds its port (IPv4 0.0.0.0:port is fine) */
    int64_t window_ms;       /* how long the attempts go on once started; 0: 5000 */
    size_t buf_cap;          /* the seal's buffers (nk_tcpseal_new_exported); 0: 256 KiB */
    int decline;             /* answerer: turn every request down at once (RESULT "unsupported": the
                              * requester's FAILED says "the peer does not take one"), for a side
                              * that keeps its data on the connection's streams */
} nk_conn_tcp_config;

/* States */
#define NK_CONN_TCP_IDLE   0 /* nothing asked yet */
#define NK_CONN_TCP_BUSY   1 /* asking, waiting for our direct path, or attempts running */
#define NK_CONN_TCP_UP     2 /* the sealed stream is up */
#define NK_CONN_TCP_FAILED 3 /* no stream (or it failed): the connection stays on UDP */

/* Events */
#define NK_CONN_TCP_EV_WAITING      1 /* requester: the path (path) is not direct; asks once it is */
#define NK_CONN_TCP_EV_ASKING       2 /* requester: SIMOPEN sent from port */
#define NK_CONN_TCP_EV_CONNECTING   3 /* answerer: the peer asked; attempts start in delay_ms, or
                                       * (await_path) once our side of the path is direct */
#define NK_CONN_TCP_EV_UP           4 /* stream up: via_listener, port <-> remote, attempts, ms since
                                       * asked (requester) or since the SIMOPEN (answerer) */
#define NK_CONN_TCP_EV_FAILED       5 /* no stream: reason (static text), attempts; stays on UDP */
#define NK_CONN_TCP_EV_PEER_DONE    6 /* the peer ended its direction (everything was read) */
#define NK_CONN_TCP_EV_STREAM_ERROR 7 /* the stream failed after it was up: err; state FAILED */

typedef struct nk_conn_tcp_event {
    int type;
    int err;
    const char *reason;      /* FAILED */
    nk_path_kind path;       /* WAITING */
    uint16_t port;           /* ASKING, UP: our TCP (= UDP) port */
    nk_addr remote;          /* UP: the peer's address */
    int await_path;          /* CONNECTING */
    int via_listener;        /* UP: the peer's SYN met our listener (else our attempt got through) */
    unsigned attempts;       /* UP, FAILED */
    int64_t delay_ms;        /* CONNECTING */
    int64_t ms;              /* UP */
} nk_conn_tcp_event;

#define NK_CONN_TCP_FDS 2

NK_API int nk_conn_tcp_new(nk_conn_tcp **out, const nk_conn_tcp_config *cfg);
/* Closes the sockets (and the stream, unless taken). */
NK_API void nk_conn_tcp_free(nk_conn_tcp *t);
NK_API int nk_conn_tcp_state(const nk_conn_tcp *t);

/* Requester: call when the connection is connected and whenever its path changes; asks for the
 * upgrade once the path is direct (WAITING otherwise). Nothing for the answerer. */
NK_API void nk_conn_tcp_handle_path(nk_conn_tcp *t, int64_t now_ms);
/* A message received on the connection: 1 if it was an upgrade control message (taken), else 0
 * (the caller's own message). */
NK_API int nk_conn_tcp_handle_message(nk_conn_tcp *t, int64_t now_ms, const uint8_t *p, size_t n);

/* The fds to poll (fd -1: none; it remembers what it handed out, see nk_tcp_simopen_pollfds) and
 * when to call service without an fd event (0: at once). */
NK_API void nk_conn_tcp_pollfds(nk_conn_tcp *t, struct pollfd pfd[NK_CONN_TCP_FDS]);
NK_API int64_t nk_conn_tcp_next_deadline(const nk_conn_tcp *t);
/* Does what is due: control messages (sent with nk_conn_send), attempts, moving stream bytes
 * between the socket and the seal. pfd: as pollfds filled them, with revents (NULL on a timeout). */
NK_API void nk_conn_tcp_service(nk_conn_tcp *t, int64_t now_ms, const struct pollfd pfd[NK_CONN_TCP_FDS]);
NK_API int nk_conn_tcp_poll_event(nk_conn_tcp *t, nk_conn_tcp_event *ev);

/* UP: plaintext in. Bytes taken (> 0), NK_ERR_AGAIN when the stream is full (backpressure: again
 * after the next service), NK_ERR_STATE when not up, taken, or our direction ended. */
NK_API int nk_conn_tcp_write(nk_conn_tcp *t, const uint8_t *p, size_t n);
/* UP: the peer's bytes. Bytes (> 0), NK_ERR_AGAIN (none yet), NK_ERR_CLOSED (the peer ended its
 * direction: PEER_DONE), NK_ERR_STATE (no stream). Reading makes room: it moves bytes the socket
 * already has, so read until NK_ERR_AGAIN. */
NK_API int nk_conn_tcp_read(nk_conn_tcp *t, uint8_t *buf, size_t cap);
/* Ends our direction (an end-of-stream record), now or as soon as there is room. The answerer
 * ends its own by itself when the peer ended its direction (the asking side decides). */
NK_API void nk_conn_tcp_shutdown(nk_conn_tcp *t);
/* 1 when there is no stream, or our direction ended and went to the kernel and the peer's ended. */
NK_API int nk_conn_tcp_finished(const nk_conn_tcp *t);
/* UP: hands the stream over (connected non-blocking fd + its seal, see nk_tcp_stream_*: poll
 * nk_tcp_stream_fd for nk_tcp_stream_events, then pump, read, write; read the socket only through
 * it, as it may hold bytes already). The caller frees it. The nk_conn_tcp keeps answering control
 * messages; its read/write/shutdown return NK_ERR_STATE. 0, or NK_ERR_STATE. */
NK_API int nk_conn_tcp_take_stream(nk_conn_tcp *t, nk_tcp_stream **out);

#ifdef __cplusplus
}
#endif
#endif
