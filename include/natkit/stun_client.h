/*
 * natkit: STUN client, sans-I/O.
 *
 * nk_stun_txn is one request to one server with RFC 8489 retransmission:
 * over UDP it is sent at 0, RTO, 3*RTO, ... (RTO 500 ms doubling, Rc = 7
 * sends) and fails Rm*RTO after the last send (39.5 s in all); over TCP it is
 * sent once and fails after Ti = 39.5 s. It is a plain struct the caller owns.
 *
 * nk_stun_client runs a Binding against a list of servers, failing over to
 * the next server when one does not answer within failover_ms while keeping
 * earlier transactions alive (a late answer from any server still wins).
 *
 * Neither reads a clock, opens a socket or sleeps: time is passed in, bytes
 * to send are polled out, and the next deadline tells the driver how long it
 * may wait.
 */
#ifndef NATKIT_STUN_CLIENT_H
#define NATKIT_STUN_CLIENT_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/stun.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_STUN_RTO_MS      500
#define NK_STUN_RC          7
#define NK_STUN_RM          16
#define NK_STUN_TI_MS       39500
#define NK_STUN_MAX_MESSAGE 1500 /* largest request or response a transaction keeps */

typedef enum nk_stun_txn_state {
    NK_STUN_TXN_IDLE = 0,
    NK_STUN_TXN_RUNNING,
    NK_STUN_TXN_DONE,     /* a response matched: see response/response_len */
    NK_STUN_TXN_TIMEOUT,  /* no response within the retransmission schedule */
} nk_stun_txn_state;

typedef struct nk_stun_txn {
    nk_stun_txn_state state;
    nk_addr server;
    uint8_t transport;            /* NK_TRANSPORT_UDP or NK_TRANSPORT_TCP */
    uint8_t tid[NK_STUN_TID_SIZE];
    int64_t rto_ms;
    int rc, rm;                   /* schedule (defaults when 0) */
    int sends;                    /* how many times the request went out */
    int pending_send;             /* a send is due now */
    int64_t started_ms;           /* first send */
    int64_t last_send_ms;
    int64_t deadline_ms;          /* next retransmission or the final timeout */
    int64_t rtt_ms;               /* from the send that was answered (Karn: first send only if sends == 1) */
    size_t request_len;
    uint8_t request[NK_STUN_MAX_MESSAGE];
    nk_addr response_from;        /* where the response came from (RFC 5780: maybe not server) */
    size_t response_len;
    uint8_t response[NK_STUN_MAX_MESSAGE];
    int64_t max_rto_ms;           /* > 0: the interval between sends stops doubling at this (set
                                     after nk_stun_txn_start; 0: the RFC's doubling) */
} nk_stun_txn;

/*
 * Starts a transaction for an encoded request (its transaction ID is read
 * from the bytes). rto_ms/rc/rm may be 0 for the RFC defaults.
 */
NK_API int nk_stun_txn_start(nk_stun_txn *t, int64_t now_ms, const nk_addr *server, uint8_t transport,
                             const uint8_t *request, size_t len, int64_t rto_ms, int rc, int rm);
/* Copies the request into buf when a (re)transmission is due: 0, or NK_ERR_AGAIN. */
NK_API int nk_stun_txn_poll_transmit(nk_stun_txn *t, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap);
NK_API void nk_stun_txn_handle_timeout(nk_stun_txn *t, int64_t now_ms);
/*
 * Offers a received message. 0: it was this transaction's response (the
 * state is now DONE); NK_ERR_NOT_FOUND: not ours (other ID, other method or
 * not a response); other negative: malformed. Matching is by transaction ID
 * and method, not by source address: RFC 5780 servers may answer from their
 * other address (response_from records it).
 */
NK_API int nk_stun_txn_handle_response(nk_stun_txn *t, int64_t now_ms, const nk_addr *from, const uint8_t *p,
                                       size_t n);
NK_API int64_t nk_stun_txn_next_deadline(const nk_stun_txn *t);

/* ---- Binding discovery over several servers ---- */

typedef struct nk_stun_client_config {
    const nk_addr *servers;       /* tried in order */
    size_t nservers;
    uint8_t transport;            /* NK_TRANSPORT_UDP (default) or NK_TRANSPORT_TCP */
    int64_t rto_ms;
    int rc, rm;                   /* 0: RFC defaults */
    int64_t failover_ms;          /* start the next server after this long without answer (0: 1500) */
    int64_t timeout_ms;           /* give up on everything after this long (0: 39500) */
    const char *software;         /* SOFTWARE attribute, or NULL */
    nk_random_fn random;          /* NULL: libsodium randombytes_buf */
    void *random_ctx;
    int64_t max_rto_ms;           /* > 0: each transaction's interval stops doubling at this, so a
                                     lossy path gets more sends before timeout_ms (give rc to match);
                                     0: the RFC's doubling */
} nk_stun_client_config;

typedef struct nk_stun_binding_result {
    int status;                   /* 0, NK_ERR_TIMEOUT, NK_ERR_STUN(code), NK_ERR_MALFORMED */
    nk_addr server;               /* the server that answered */
    nk_addr mapped;               /* XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from old servers) */
    nk_addr response_origin;      /* family NK_AF_NONE when absent */
    nk_addr other_address;        /* RFC 5780 OTHER-ADDRESS; NK_AF_NONE when absent */
    int64_t rtt_ms;
} nk_stun_binding_result;

typedef struct nk_stun_client nk_stun_client;

NK_API int nk_stun_client_new(nk_stun_client **out, const nk_stun_client_config *cfg);
NK_API void nk_stun_client_free(nk_stun_client *c);
NK_API int nk_stun_client_start(nk_stun_client *c, int64_t now_ms);
/* 0: consumed; NK_ERR_NOT_FOUND: not for this client. */
NK_API int nk_stun_client_handle_datagram(nk_stun_client *c, int64_t now_ms, const nk_addr *from,
                                          const uint8_t *p, size_t n);
NK_API void nk_stun_client_handle_timeout(nk_stun_client *c, int64_t now_ms);
NK_API int nk_stun_client_poll_transmit(nk_stun_client *c, int64_t now_ms, nk_transmit *out, uint8_t *buf,
                                        size_t cap);
NK_API int64_t nk_stun_client_next_deadline(const nk_stun_client *c);
/* 1 and *res filled when finished (answer or failure), else 0. */
NK_API int nk_stun_client_result(const nk_stun_client *c, nk_stun_binding_result *res);

/*
 * A ready-made blocking driver for the client above: opens one UDP socket
 * per address family the servers use (bound to bind_addr when given), runs
 * the client to its end and closes them. *local is the local address the
 * answer arrived on. Returns res->status.
 */
NK_API int nk_stun_discover(const nk_stun_client_config *cfg, const nk_addr *bind_addr, nk_addr *local,
                            nk_stun_binding_result *res);

/* Fills a Binding request into buf; returns its length or a negative error. */
NK_API int nk_stun_binding_request(uint8_t *buf, size_t cap, const uint8_t tid[NK_STUN_TID_SIZE],
                                   uint32_t change_flags, const char *software);
/* Reads mapped address, RESPONSE-ORIGIN and OTHER-ADDRESS out of a Binding success response. */
NK_API int nk_stun_binding_parse(const nk_stun_msg *m, nk_stun_binding_result *res);

#ifdef __cplusplus
}
#endif
#endif
