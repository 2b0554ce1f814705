/* natkit CLI: the state behind `accept` / `dial`, shared by direct.c (UDP, QUIC, loop),
 * direct_tcp.c (listener, candidates, connect, upgrade events) and direct_data.c (the data phase). */
#ifndef CLI_DIRECT_INTERNAL_H
#define CLI_DIRECT_INTERNAL_H

#include <stdint.h>

#include "direct.h"
#include "direct_hello.h"
#include "fwd.h"
#include "natkit/quic.h"
#include "natkit/tcp.h"

#define HELLO_RTO_MS      250
#define TCP_CONNECT_MS    10000 /* dial: connect + the acceptor's token record */
#define CAND_AUTH_MS      5000  /* accept: a TCP candidate must authenticate within this */
#define ANNOUNCE_WAIT_MS  10000 /* dial: no announcement this long after CONNECTED: UDP */
#define MAX_CAND          4
#define MAX_HALF          4     /* accept: handshakes in progress, one per source address */
#define KEEPALIVE_MS      5000  /* QUIC PING when idle: holds the NATs' UDP mappings */
#define IDLE_TIMEOUT_MS   60000
#define SERVER_INITIAL_RTT_MS 100 /* accept: QUIC's RTT before a sample (its flight resent after 300 ms) */
#define LINGER_QUIET_MS   1000  /* UDP data done: answer the peer's datagrams with the close until */
#define LINGER_MAX_MS     5000  /* ... it has been quiet this long, this long at most */
#define CTL_BUF           4096  /* control bytes waiting for the stream / not yet parsed */

/* Streams: each side opens its own; the peer's are told apart by their sequence number
 * (stream ID >> 2): 0 the control stream (opened at CONNECTED), 1 the data stream (opened when
 * the data goes over UDP: stdin bytes, FIN at the end of stdin). Only the opener sends on a
 * stream; the other side ends its direction at once (an empty FIN). */
#define STREAM_CTL 0
#define STREAM_DAT 1

/* Control messages of the CLI besides nk_upgrade's (0xA7 ..., see nk_upgrade_is_message). */
#define MSG_UDP  'U' /* 'U': we carry the data over UDP (no TCP): follow */

typedef struct cand {
    nk_tcp_stream *ts;
    nk_addr from;
    int64_t deadline;             /* refused when not authenticated by then */
} cand;

typedef struct half {             /* accept: a QUIC server not yet authenticated */
    nk_quic *q;
    nk_addr from;
    int64_t born;
} half;

typedef struct dstate {
    direct_opts *o;
    nk_identity id;
    int udp;
    nk_addr peer_addr;            /* where the peer's UDP packets come from / go to */
    int have_peer_addr;
    hello_msg hello;              /* dial: what we send */
    int64_t hello_next_ms;
    int64_t hello_rtt_ms;         /* dial: the REPLY came this long after our last HELLO */
    int have_reply;
    nk_addr last_hello_from;      /* accept: the last HELLO whose mapping was printed */
    half halves[MAX_HALF];        /* accept: until one authenticates */
    uint64_t dropped;             /* datagrams dropped: not from the peer, or not authenticated */
    nk_quic *q;                   /* the connection with the peer (dial: client; accept: promoted half) */
    int session_up;
    int64_t session_up_ms;
    int64_t ctl_tx, ctl_rx;       /* our control stream, the peer's (-1: none yet) */
    int64_t dat_tx, dat_rx;       /* our data stream, the peer's (UDP data phase) */
    uint8_t ctl_out[CTL_BUF];     /* framed control messages not yet taken by the stream */
    size_t ctl_out_len;
    uint8_t ctl_in[CTL_BUF];      /* the peer's control bytes not yet parsed */
    size_t ctl_in_len;
    nk_upgrade *u;
    int annc_said;                /* accept: the send count of the announcement was printed */
    int lfd;                      /* accept: TCP listener */
    cand cands[MAX_CAND];
    int cfd;                      /* dial: TCP connecting */
    int64_t cfd_deadline;
    int announced;                /* dial: an announcement was acted on (or declined) */
    nk_addr tcp_target;
    uint8_t token[NK_TCP_TOKEN_LEN];
    nk_tcp_stream *ts;            /* dial: ours (authenticated or not yet); accept: the winner */
    int tcp_up, udp_fallback;
    int64_t data_ms;              /* when the data phase started */
    fwd_pump io;                  /* stdin -> the carrier -> the peer; the peer -> stdout (fwd.h) */
    fwd_carrier carrier;          /* TCP (nk_tcp_stream) or UDP (our data stream, the peer's) */
    int io_ready;                 /* the pump has its carrier */
    int peer_done;                /* the peer's end arrived and all before it is on stdout */
    int closed;                   /* the session closed after our FIN; the pump drains what is left */
    char closed_why[160];         /* how it closed (said if the run fails) */
    int said_waiting;             /* "waiting for the peer to confirm" was printed */
    int rx_again;                 /* the carrier's last read said "nothing now" */
    int carrier_err;              /* why the carrier failed (NK_ERR_*) */
    int tcp_shut;                 /* TCP: our end-of-stream record is sealed */
    int64_t start_ms;
    int done, status;
} dstate;

void direct_say(dstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void direct_fail(dstate *st, int status);
void direct_flush_quic(dstate *st, int64_t now);
int direct_ctl_send(dstate *st, const uint8_t *msg, size_t n);
int direct_ctl_acked(const dstate *st);

/* direct_tcp.c */
void direct_start_announce(dstate *st, int64_t now);
void direct_accept_one(dstate *st, int64_t now);
void direct_check_cands(dstate *st, int64_t now);
void direct_close_tcp_setup(dstate *st);
void direct_dial_progress(dstate *st, int64_t now);
void direct_on_upgrade_event(dstate *st, const nk_upgrade_event *ev, int64_t now);
int64_t direct_tcp_deadline(const dstate *st, int64_t d);

/* direct_data.c */
void direct_go_udp(dstate *st, int64_t now);
void direct_on_message(dstate *st, const uint8_t *p, size_t n, int64_t now);
void direct_on_closed(dstate *st, const nk_quic_event *ev, int64_t now);
int direct_io_init(dstate *st);
void direct_io_wants(const dstate *st, short *in_events, short *out_events);
int direct_io_busy(const dstate *st);
void direct_drive_data(dstate *st, short in_revents, short out_revents, int64_t now);
int direct_stop_status(dstate *st);

#endif
