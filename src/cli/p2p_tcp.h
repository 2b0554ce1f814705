/*
 * natkit CLI: the TCP data plane of `natkit connect --tcp` / `natkit listen`.
 *
 * Once a connection is on a direct UDP path, the side that asked (connect
 * --tcp) sends an nk_upgrade SIMOPEN over the session; both sides then
 * connect TCP to the address the other's UDP packets come from, from the
 * local port of their own UDP socket (TCP simultaneous open: nobody listens,
 * each NAT lets the other's SYN in because its own SYN went out). The stream
 * is sealed with keys from the session (nk_tcpseal). When it cannot be made,
 * the connection stays on its UDP path and says so. The library does the work
 * (nk_conn_tcp, include/natkit/conn_tcp.h); this module prints its events (same
 * wording as before, text or --json); the caller moves the stream's bytes
 * (p2p_tcp_read/_write, through the pump of fwd.h).
 */
#ifndef CLI_P2P_TCP_H
#define CLI_P2P_TCP_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "natkit/conn_tcp.h"
#include "natkit/node.h"

typedef struct p2p_tcp p2p_tcp;

typedef struct p2p_tcp_config {
    nk_conn *conn;
    int requester;         /* 1: connect --tcp asks; 0: listen answers */
    nk_addr udp_local;     /* the node's UDP socket: TCP binds the same port */
    const char *cmd;       /* for messages */
    int json;
    int64_t window_ms;     /* how long to keep trying once started (0: 5000) */
    int decline;           /* listen --forward: answer every request "no" at once */
} p2p_tcp_config;

/* Upgrade states the caller cares about. */
#define P2P_TCP_IDLE    NK_CONN_TCP_IDLE   /* nothing asked yet */
#define P2P_TCP_BUSY    NK_CONN_TCP_BUSY   /* asking or connecting */
#define P2P_TCP_UP      NK_CONN_TCP_UP     /* the sealed stream carries the data */
#define P2P_TCP_FAILED  NK_CONN_TCP_FAILED /* stays on UDP (said on stderr) */

int p2p_tcp_new(p2p_tcp **out, const p2p_tcp_config *cfg);
void p2p_tcp_free(p2p_tcp *t);
int p2p_tcp_state(const p2p_tcp *t);

/* Requester: the connection is (now) on a path; asks for the upgrade if it is direct. */
void p2p_tcp_on_path(p2p_tcp *t, int64_t now);
/* A message from the peer: 1 if it was an upgrade control message (handled), else 0. */
int p2p_tcp_on_message(p2p_tcp *t, int64_t now, const uint8_t *p, size_t n);

/* The fds to poll (fd -1: none) and when to call p2p_tcp_service without an fd event. */
#define P2P_TCP_FDS NK_CONN_TCP_FDS
void p2p_tcp_pollfds(p2p_tcp *t, struct pollfd pfd[P2P_TCP_FDS]);
int64_t p2p_tcp_deadline(const p2p_tcp *t);
/* Does whatever is due: control messages, connect attempts, moving stream bytes between the
 * socket and the seal. pfd: as p2p_tcp_pollfds filled them, with revents (0 on a timeout). */
void p2p_tcp_service(p2p_tcp *t, int64_t now, const struct pollfd pfd[P2P_TCP_FDS]);

/* Stream up: bytes taken (>= 0; 0 when the stream is full: backpressure). */
int p2p_tcp_write(p2p_tcp *t, const uint8_t *p, size_t n);
/* Stream up: the peer's bytes (> 0), NK_ERR_AGAIN (none now), NK_ERR_CLOSED (the peer ended its
 * direction), NK_ERR_STATE (no stream). */
int p2p_tcp_read(p2p_tcp *t, uint8_t *buf, size_t cap);
/* Ends our direction of the stream (at end of stdin). */
void p2p_tcp_shutdown(p2p_tcp *t);
/* Our direction ended and went out, and the peer ended its own (or the stream failed). */
int p2p_tcp_finished(const p2p_tcp *t);

#endif
