/*
 * natkit internal: the QUIC core's shared state (src/quic/ only).
 * quic.c: the connection (ngtcp2 glue, timers, transmit, events);
 * stream.c: per-stream send/receive buffers; tls.c: GnuTLS session, raw
 * public key authentication and the exporter.
 */
#ifndef NK__QUIC_INTERNAL_H
#define NK__QUIC_INTERNAL_H

#define NK__QUIC_MIN_DATAGRAM 1200 /* QUIC's minimum; the size used until PMTUD finds more */

#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <gnutls/gnutls.h>

#include "natkit/quic.h"
#include "ring.h"

/* ---- byte buffers: a list of fixed chunks whose bytes never move (ngtcp2 keeps pointers into
 * sent data until it is acknowledged) ---------------------------------------------------------- */
#define NK__QCHUNK 16384

typedef struct nk__qchunk {
    struct nk__qchunk *next;
    size_t len;
    uint8_t data[NK__QCHUNK];
} nk__qchunk;

typedef struct nk__qbuf {
    nk__qchunk *head, *tail;
    uint64_t head_off; /* stream offset of head->data[0] */
    uint64_t end_off;  /* stream offset after the last byte */
    nk__qchunk *hint;  /* where the last nk__qbuf_vecs started (NULL: head), so that each packet */
    uint64_t hint_off; /* does not walk the whole send buffer; its stream offset */
} nk__qbuf;

/* ---- streams ---------------------------------------------------------------------------------- */
typedef struct nk__qstream {
    int64_t id;
    nk__qbuf tx;           /* [tx.head_off, tx.end_off): written, not yet acknowledged */
    uint64_t tx_sent;      /* handed to ngtcp2 up to here */
    uint64_t tx_acked;
    nk__qbuf rx;           /* [rx.head_off.., rx.end_off): received, not yet read */
    uint64_t rx_read;
    uint64_t tried;        /* packet number (ours) in which this stream was last offered */
    unsigned fin_wanted : 1, fin_sent : 1, fin_rcvd : 1, fin_read : 1, reset_rcvd : 1,
        local_reset : 1, closed : 1, blocked : 1, want_writable : 1, readable_signalled : 1;
} nk__qstream;

/* ---- the connection --------------------------------------------------------------------------- */
enum { NK__Q_IDLE, NK__Q_HANDSHAKE, NK__Q_CONNECTED, NK__Q_CLOSING, NK__Q_CLOSED };

typedef struct nk__qdgram {
    size_t len;
    uint8_t *data;
} nk__qdgram;

#define NK__QDGRAM_QUEUE 64

struct nk_quic {
    nk_quic_config cfg;
    nk_identity identity;
    nk_peer_id expected;
    int have_expected;
    nk_peer_id peer;
    int peer_verified;
    const char *auth_error;          /* set by the TLS verify callback when it refuses */

    int state;
    int64_t base_ms;
    ngtcp2_conn *conn;
    ngtcp2_crypto_conn_ref conn_ref;
    ngtcp2_mem mem;
    size_t mem_bytes;
    struct sockaddr_in6 addr_local, addr_remote;
    ngtcp2_path path;

    gnutls_session_t tls;            /* NULL once dropped after the handshake (tls.c) */
    gnutls_certificate_credentials_t cred;
    gnutls_keylog_func keylog_prev;  /* GnuTLS's own (SSLKEYLOGFILE), still called */
    uint8_t exp_secret[64];          /* the TLS 1.3 exporter master secret (keylog EXPORTER_SECRET) */
    size_t exp_len;
    int exp_mac;                     /* gnutls_mac_algorithm_t of the cipher suite's hash */
    int tls_drop_pending;            /* the handshake completed: drop the session after this call */

    nk__qstream **streams;
    size_t nstreams, cap_streams, rr;
    uint64_t pkt_epoch;
    size_t burst;                    /* bytes written since the last pacing update */
    int64_t pace_ms;                 /* the millisecond pace_bytes counts in */
    size_t pace_bytes;               /* bytes written in that millisecond */
    int pace_full;                   /* that millisecond's pacing budget is spent */
    ngtcp2_tstamp last_ts;           /* the latest time given to ngtcp2 (ts_of) */

    nk__ring events;                 /* of nk_quic_event; grows (never drops unless out of memory) */

    nk__ring dg_tx, dg_rx;           /* of nk__qdgram, NK__QDGRAM_QUEUE each; storage allocated at
                                      * the first datagram */

    uint8_t *close_pkt;
    size_t close_len;
    int close_pending;
    uint64_t close_rx;               /* datagrams received in the closing state (rate limit) */

    nk_quic_stats_t st;
};

/* counting allocator (mem_bytes) used for ngtcp2 and every natkit buffer */
void *nk__quic_alloc(nk_quic *q, size_t n);
void nk__quic_free(nk_quic *q, void *p);

/* stream.c */
size_t nk__qbuf_append(nk_quic *q, nk__qbuf *b, const uint8_t *p, size_t n);
size_t nk__qbuf_vecs(const nk__qbuf *b, uint64_t from, ngtcp2_vec *v, size_t max);
size_t nk__qbuf_copy(const nk__qbuf *b, uint64_t from, uint8_t *out, size_t n);
void nk__qbuf_drop(nk_quic *q, nk__qbuf *b, uint64_t upto);
void nk__qbuf_clear(nk_quic *q, nk__qbuf *b);
nk__qstream *nk__qstream_find(const nk_quic *q, int64_t id);
nk__qstream *nk__qstream_add(nk_quic *q, int64_t id);
void nk__qstream_maybe_free(nk_quic *q, nk__qstream *s);
void nk__qstream_free_all(nk_quic *q);

/* tls.c */
int nk__quic_tls_new(nk_quic *q);
void nk__quic_tls_free(nk_quic *q);
/* After the handshake: frees the GnuTLS session and credential (nothing in ngtcp2 needs them any
 * more: key updates use the secrets ngtcp2 keeps) when the exporter can be computed from the
 * exporter secret alone; else keeps them. */
void nk__quic_tls_drop(nk_quic *q);

/* quic.c */
void nk__quic_event(nk_quic *q, const nk_quic_event *ev);

#endif
