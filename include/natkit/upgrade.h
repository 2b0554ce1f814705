/*
 * natkit: nk_upgrade, sans-I/O, the control exchange of upgrading an established
 * QUIC connection to a TCP stream (see natkit/tcp.h, docs/internals/tcp-upgrade.md),
 * carried as messages of the connection (or any authenticated carrier). The acceptor
 * ANNOUNCEs a TCP address with a fresh random token, resent (RTO doubling) until the
 * dialer ACKs it; the dialer reports the outcome with a RESULT, resent until ACKed.
 * Bytes and time in, bytes and a deadline out; no clock, socket or sleep.
 */
#ifndef NATKIT_UPGRADE_H
#define NATKIT_UPGRADE_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/common.h" /* nk_random_fn */

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

#ifdef __cplusplus
}
#endif
#endif
