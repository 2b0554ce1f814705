/*
 * natkit QUIC core: the connection. ngtcp2 does the transport (loss
 * recovery, congestion control, flow control, pacing); this file gives it the
 * time, the datagrams and a fixed virtual path, keeps the application's
 * stream bytes (stream.c) and turns ngtcp2's callbacks into natkit events.
 * Time: ngtcp2 counts nanoseconds from a private origin, so now_ms maps to
 * (now_ms - base_ms + 1000) ms; the 1 s offset keeps 0 and UINT64_MAX free.
 */
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "internal.h"
#include "random.h"

#define ORIGIN_NS NGTCP2_SECONDS
#define QBUF_VECS 2 /* chunk vectors offered per packet: a packet (<= 1400 bytes) never spans more
                     * than two 16 KiB chunks; offering 16 (256 KiB) cost ~3% of the sender */
/* The max_ack_delay we advertise (ngtcp2's default is 25 ms). ngtcp2 delays an ACK by at most
 * min(this, srtt/8), and our driver's timers have millisecond resolution, so 2 ms is what we can
 * keep. The peer adds it to every probe timeout: with 25 ms, each tail loss at the lab's sub-ms
 * RTTs stalled the sender for 25+ ms (CUBIC at 5% loss: 34 -> 96 MB/s). */
#define MAX_ACK_DELAY_MS 2

/* ---- allocation: every byte ngtcp2 or natkit's buffers hold is counted ---------------------- */
typedef union {
    size_t n;
    max_align_t align;
} mem_hdr;

void *nk__quic_alloc(nk_quic *q, size_t n)
{
    mem_hdr *h = malloc(sizeof(*h) + n);
    if (h == NULL)
        return NULL;
    h->n = n;
    q->mem_bytes += n;
    return h + 1;
}

void nk__quic_free(nk_quic *q, void *p)
{
    if (p == NULL)
        return;
    mem_hdr *h = (mem_hdr *)p - 1;
    q->mem_bytes -= h->n;
    free(h);
}

static void *mem_malloc(size_t n, void *ud)
{
    return nk__quic_alloc(ud, n);
}

static void mem_free(void *p, void *ud)
{
    nk__quic_free(ud, p);
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        return NULL;
    void *p = nk__quic_alloc(ud, nmemb * size);
    if (p != NULL)
        memset(p, 0, nmemb * size);
    return p;
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    if (p == NULL)
        return nk__quic_alloc(ud, n);
    mem_hdr *h = (mem_hdr *)p - 1;
    void *np = nk__quic_alloc(ud, n);
    if (np == NULL)
        return NULL;
    memcpy(np, p, h->n < n ? h->n : n);
    nk__quic_free(ud, p);
    return np;
}

/* ---- time and randomness -------------------------------------------------------------------- */
/* ngtcp2's time for now_ms; with cfg.now_us (the caller's finer clock, when it is within now_ms)
 * the microseconds too, so that RTT samples and pacing at sub-millisecond RTTs are not all 0 or
 * 1 ms. Never goes back (a call with an older now_ms gets the latest time given). */
static ngtcp2_tstamp ts_of(const nk_quic *q, int64_t now_ms)
{
    nk_quic *m = (nk_quic *)q; /* last_ts only */
    int64_t d = now_ms - q->base_ms;
    if (d < 0)
        d = 0;
    ngtcp2_tstamp t = (ngtcp2_tstamp)d * NGTCP2_MILLISECONDS + ORIGIN_NS;
    if (q->cfg.now_us != NULL) {
        int64_t us = *q->cfg.now_us;
        if (us >= 0 && us / 1000 == now_ms && now_ms >= q->base_ms)
            t = (ngtcp2_tstamp)(us - q->base_ms * 1000) * NGTCP2_MICROSECONDS + ORIGIN_NS;
    }
    if (t < q->last_ts)
        t = q->last_ts;
    m->last_ts = t;
    return t;
}

static void fill_random(const nk_quic *q, uint8_t *p, size_t n)
{
    nk__random(q->cfg.random, q->cfg.random_ctx, p, n);
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    fill_random(ctx->native_handle, dest, len);
}

static int cb_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
    nk_quic *q = ud;
    fill_random(q, cid->data, cidlen);
    cid->datalen = cidlen;
    fill_random(q, token, NGTCP2_STATELESS_RESET_TOKENLEN);
    return 0;
}

static int cb_path_challenge(ngtcp2_conn *conn, uint8_t *data, void *ud)
{
    fill_random(ud, data, NGTCP2_PATH_CHALLENGE_DATALEN);
    return 0;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    nk_quic *q = ref->user_data;
    return q->conn;
}

/* ---- events --------------------------------------------------------------------------------- */
void nk__quic_event(nk_quic *q, const nk_quic_event *ev)
{
    if (nk__ring_full(&q->events)) {
        size_t cap = q->events.cap ? q->events.cap * 2 : 8;
        nk_quic_event *n = nk__quic_alloc(q, cap * sizeof(*n));
        if (n == NULL)
            return; /* out of memory: the event is lost, the state it reports is still readable */
        nk__quic_free(q, nk__ring_move(&q->events, n, cap));
    }
    nk__ring_push(&q->events, ev);
}

static void stream_event(nk_quic *q, int type, int64_t id, uint64_t app_error)
{
    nk_quic_event ev = {.type = type, .stream_id = id, .app_error = app_error};
    nk__quic_event(q, &ev);
}

static void closed_event(nk_quic *q, int err, uint64_t app_error, const char *reason)
{
    nk_quic_event ev = {.type = NK_QUIC_EV_CLOSED, .stream_id = -1, .err = err, .app_error = app_error};
    snprintf(ev.reason, sizeof(ev.reason), "%s", reason != NULL ? reason : "");
    nk__quic_event(q, &ev);
}

/* ---- ngtcp2 callbacks ----------------------------------------------------------------------- */
static int cb_handshake_completed(ngtcp2_conn *conn, void *ud)
{
    nk_quic *q = ud;
    if (!q->peer_verified) {
        q->auth_error = "peer not authenticated";
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    q->state = NK__Q_CONNECTED;
    q->tls_drop_pending = 1; /* the TLS session goes once this packet is processed */
    nk_quic_event ev = {.type = NK_QUIC_EV_CONNECTED, .stream_id = -1, .peer = q->peer};
    nk__quic_event(q, &ev);
    return 0;
}

/* CRYPTO data for GnuTLS. After the handshake the session may be gone (tls.c): the only TLS
 * message allowed then is a NewSessionTicket (1-RTT), which natkit would not use anyway. */
static int cb_recv_crypto_data(ngtcp2_conn *conn, ngtcp2_crypto_level level, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud)
{
    nk_quic *q = ud;
    if (q->tls == NULL)
        return level == NGTCP2_CRYPTO_LEVEL_APPLICATION ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
    return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data, len, ud);
}

static int cb_stream_open(ngtcp2_conn *conn, int64_t id, void *ud)
{
    nk_quic *q = ud;
    if (!ngtcp2_is_bidi_stream(id)) {
        ngtcp2_conn_shutdown_stream_read(conn, id, 0); /* natkit uses bidirectional streams only */
        return 0;
    }
    if (nk__qstream_add(q, id) == NULL)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    stream_event(q, NK_QUIC_EV_STREAM_OPENED, id, 0);
    return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset,
                               const uint8_t *data, size_t len, void *ud, void *sud)
{
    nk_quic *q = ud;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return 0; /* a unidirectional stream we refused, or one already reset */
    if (offset != s->rx.end_off)
        return NGTCP2_ERR_CALLBACK_FAILURE; /* ngtcp2 delivers in order; anything else is a bug */
    if (len > 0 && nk__qbuf_append(q, &s->rx, data, len) != len)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
        s->fin_rcvd = 1;
    if (!s->readable_signalled && (len > 0 || s->fin_rcvd)) {
        s->readable_signalled = 1;
        stream_event(q, NK_QUIC_EV_STREAM_READABLE, id, 0);
    }
    return 0;
}

static void check_writable(nk_quic *q, nk__qstream *s)
{
    if (s->want_writable && s->tx.end_off - s->tx_acked < q->cfg.stream_send_buffer) {
        s->want_writable = 0;
        stream_event(q, NK_QUIC_EV_STREAM_WRITABLE, s->id, 0);
    }
}

static int cb_acked_stream_data(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t len, void *ud,
                                void *sud)
{
    nk_quic *q = ud;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return 0;
    if (offset + len > s->tx_acked)
        s->tx_acked = offset + len;
    nk__qbuf_drop(q, &s->tx, s->tx_acked);
    check_writable(q, s);
    return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t app_error, void *ud,
                           void *sud)
{
    nk_quic *q = ud;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return 0;
    if (!ngtcp2_conn_is_local_stream(conn, id))
        ngtcp2_conn_extend_max_streams_bidi(conn, 1); /* the peer may open another one */
    s->closed = 1;
    nk__qbuf_clear(q, &s->tx); /* ngtcp2 no longer refers to it */
    s->tx_acked = s->tx_sent = s->tx.end_off;
    nk__qstream_maybe_free(q, s);
    return 0;
}

static int cb_stream_reset(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t app_error, void *ud,
                           void *sud)
{
    nk_quic *q = ud;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL || s->reset_rcvd)
        return 0;
    s->reset_rcvd = 1;
    nk__qbuf_clear(q, &s->rx);
    stream_event(q, NK_QUIC_EV_STREAM_RESET, id, app_error);
    return 0;
}

static int cb_stop_sending(ngtcp2_conn *conn, int64_t id, uint64_t app_error, void *ud, void *sud)
{
    nk_quic *q = ud;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return 0;
    ngtcp2_conn_shutdown_stream_write(conn, id, app_error);
    s->fin_wanted = s->fin_sent = 1; /* nothing more leaves this side */
    if (!s->reset_rcvd)
        stream_event(q, NK_QUIC_EV_STREAM_RESET, id, app_error);
    return 0;
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t id, uint64_t max_data, void *ud, void *sud)
{
    nk__qstream *s = nk__qstream_find(ud, id);
    if (s != NULL)
        s->blocked = 0;
    return 0;
}

/* The datagram ring's storage, allocated on first use (most connections never send one). */
static int dgram_ring(nk_quic *q, nk__ring *ring)
{
    if (ring->slots == NULL) {
        nk__qdgram *storage = nk__quic_alloc(q, NK__QDGRAM_QUEUE * sizeof(*storage));
        if (storage == NULL)
            return NK_ERR_NOMEM;
        nk__ring_init(ring, storage, sizeof(*storage), NK__QDGRAM_QUEUE);
    }
    return 0;
}

/* Frees the datagrams still queued in ring and its storage. */
static void dgram_ring_free(nk_quic *q, nk__ring *ring)
{
    nk__qdgram d;
    while (nk__ring_pop(ring, &d) == 0)
        nk__quic_free(q, d.data);
    nk__quic_free(q, ring->slots);
}

static int cb_recv_datagram(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t len, void *ud)
{
    nk_quic *q = ud;
    if (dgram_ring(q, &q->dg_rx) != 0 || nk__ring_full(&q->dg_rx))
        return 0; /* unreliable: the newest is dropped when the application does not keep up */
    uint8_t *copy = nk__quic_alloc(q, len > 0 ? len : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, len);
    nk__qdgram d = {.len = len, .data = copy};
    nk__ring_push(&q->dg_rx, &d);
    nk_quic_event ev = {.type = NK_QUIC_EV_DATAGRAM, .stream_id = -1};
    nk__quic_event(q, &ev);
    return 0;
}

static int cb_lost_datagram(ngtcp2_conn *conn, uint64_t dgram_id, void *ud)
{
    nk_quic *q = ud;
    q->st.lost_datagrams++;
    return 0;
}

static const ngtcp2_callbacks callbacks = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = cb_recv_crypto_data,
    .handshake_completed = cb_handshake_completed,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = cb_recv_stream_data,
    .acked_stream_data_offset = cb_acked_stream_data,
    .stream_open = cb_stream_open,
    .stream_close = cb_stream_close,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .rand = cb_rand,
    .get_new_connection_id = cb_new_cid,
    .update_key = ngtcp2_crypto_update_key_cb,
    .stream_reset = cb_stream_reset,
    .extend_max_stream_data = cb_extend_max_stream_data,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .recv_datagram = cb_recv_datagram,
    .lost_datagram = cb_lost_datagram,
    .get_path_challenge_data = cb_path_challenge,
    .stream_stop_sending = cb_stop_sending,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- creation --------------------------------------------------------------------------------- */
static void config_defaults(nk_quic_config *c)
{
    if (c->stream_window == 0)
        c->stream_window = 256 * 1024;
    if (c->max_stream_window == 0)
        c->max_stream_window = 6 * 1024 * 1024;
    if (c->conn_window == 0)
        c->conn_window = 1024 * 1024;
    if (c->max_conn_window == 0)
        c->max_conn_window = 16 * 1024 * 1024;
    if (c->max_streams == 0)
        c->max_streams = 100;
    if (c->stream_send_buffer == 0)
        c->stream_send_buffer = 1024 * 1024;
    if (c->idle_timeout_ms == 0)
        c->idle_timeout_ms = 30000;
    if (c->handshake_timeout_ms == 0)
        c->handshake_timeout_ms = 10000;
    if (c->keepalive_ms == 0)
        c->keepalive_ms = 10000;
    if (c->max_datagram == 0)
        c->max_datagram = NK__QUIC_MIN_DATAGRAM;
}

static void set_path(nk_quic *q)
{
    /* The virtual path: [::1]:1 is the client, [::1]:2 the server. */
    struct sockaddr_in6 *a = &q->addr_local, *b = &q->addr_remote;
    a->sin6_family = b->sin6_family = AF_INET6;
    a->sin6_addr.s6_addr[15] = b->sin6_addr.s6_addr[15] = 1;
    a->sin6_port = htons(q->cfg.role == NK_QUIC_SERVER ? 2 : 1);
    b->sin6_port = htons(q->cfg.role == NK_QUIC_SERVER ? 1 : 2);
    q->path.local.addr = (ngtcp2_sockaddr *)a;
    q->path.local.addrlen = sizeof(*a);
    q->path.remote.addr = (ngtcp2_sockaddr *)b;
    q->path.remote.addrlen = sizeof(*b);
}

static void settings_for(const nk_quic *q, ngtcp2_settings *s, ngtcp2_transport_params *p, int64_t now_ms)
{
    ngtcp2_settings_default(s);
    s->initial_ts = ts_of(q, now_ms);
    s->cc_algo = q->cfg.cc == NK_QUIC_CC_BBR    ? NGTCP2_CC_ALGO_BBR
                 : q->cfg.cc == NK_QUIC_CC_RENO ? NGTCP2_CC_ALGO_RENO
                                                : NGTCP2_CC_ALGO_CUBIC;
    s->max_tx_udp_payload_size = q->cfg.max_datagram;
    if (q->cfg.max_datagram > NK__QUIC_MIN_DATAGRAM) {
        /* 1200 until ngtcp2's path MTU discovery has seen a larger probe acknowledged, then up to
         * max_datagram (ngtcp2 0.12 probes 1406, 1342, 1232 and 1444 bytes: 1342 with 1400) */
        s->no_tx_udp_payload_size_shaping = 0;
        s->no_pmtud = 0;
    } else {
        s->no_tx_udp_payload_size_shaping = 1;
        s->no_pmtud = 1; /* the caller's path decides the size; relays add their own headers */
    }
    s->max_window = q->cfg.max_conn_window;
    s->max_stream_window = q->cfg.max_stream_window;
    s->ack_thresh = 10; /* an ACK every 10 packets (2 by default): at sub-ms RTTs the receiver
                         * otherwise spends a good part of its CPU on ACKs; out-of-order
                         * packets are still acknowledged at once */
    s->handshake_timeout = (ngtcp2_duration)q->cfg.handshake_timeout_ms * NGTCP2_MILLISECONDS;
    if (q->cfg.initial_rtt_ms > 0)
        s->initial_rtt = (ngtcp2_duration)q->cfg.initial_rtt_ms * NGTCP2_MILLISECONDS;
    s->rand_ctx.native_handle = (void *)q;
    ngtcp2_transport_params_default(p);
    p->initial_max_stream_data_bidi_local = q->cfg.stream_window;
    p->initial_max_stream_data_bidi_remote = q->cfg.stream_window;
    p->initial_max_data = q->cfg.conn_window;
    p->initial_max_streams_bidi = q->cfg.max_streams;
    p->initial_max_streams_uni = 0;
    p->max_idle_timeout = (ngtcp2_duration)q->cfg.idle_timeout_ms * NGTCP2_MILLISECONDS;
    p->max_ack_delay = MAX_ACK_DELAY_MS * NGTCP2_MILLISECONDS;
    p->max_datagram_frame_size = 65535;
    p->active_connection_id_limit = 2;
}

static int conn_new(nk_quic *q, const ngtcp2_cid *dcid, const ngtcp2_cid *scid, const ngtcp2_cid *odcid,
                    int64_t now_ms)
{
    ngtcp2_settings s;
    ngtcp2_transport_params p;
    settings_for(q, &s, &p, now_ms);
    int rv;
    if (q->cfg.role == NK_QUIC_SERVER) {
        p.original_dcid = *odcid;
        rv = ngtcp2_conn_server_new(&q->conn, dcid, scid, &q->path, NGTCP2_PROTO_VER_V1, &callbacks, &s, &p,
                                    &q->mem, q);
    } else {
        rv = ngtcp2_conn_client_new(&q->conn, dcid, scid, &q->path, NGTCP2_PROTO_VER_V1, &callbacks, &s, &p,
                                    &q->mem, q);
    }
    if (rv != 0)
        return NK_ERR_NOMEM;
    ngtcp2_conn_set_tls_native_handle(q->conn, q->tls);
    if (q->cfg.keepalive_ms > 0)
        ngtcp2_conn_set_keep_alive_timeout(q->conn, (ngtcp2_duration)q->cfg.keepalive_ms * NGTCP2_MILLISECONDS);
    q->state = NK__Q_HANDSHAKE;
    return 0;
}

int nk_quic_new(nk_quic **out, const nk_quic_config *cfg, int64_t now_ms)
{
    if (out == NULL || cfg == NULL || cfg->identity == NULL ||
        (cfg->role != NK_QUIC_CLIENT && cfg->role != NK_QUIC_SERVER) ||
        (cfg->role == NK_QUIC_CLIENT && cfg->peer == NULL) || (cfg->max_datagram != 0 && cfg->max_datagram < 1200))
        return NK_ERR_INVAL;
    if (sodium_init() < 0)
        return NK_ERR_SYSTEM;
    nk_quic *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NK_ERR_NOMEM;
    q->cfg = *cfg;
    config_defaults(&q->cfg);
    nk__ring_init(&q->events, NULL, sizeof(nk_quic_event), 0); /* storage at the first event */
    q->identity = *cfg->identity;
    q->cfg.identity = &q->identity;
    if (cfg->peer != NULL) {
        q->expected = *cfg->peer;
        q->have_expected = 1;
    }
    q->cfg.peer = NULL;
    q->base_ms = now_ms;
    q->mem = (ngtcp2_mem){q, mem_malloc, mem_free, mem_calloc, mem_realloc};
    q->conn_ref.get_conn = get_conn;
    q->conn_ref.user_data = q;
    set_path(q);
    int err = nk__quic_tls_new(q);
    if (err == 0 && cfg->role == NK_QUIC_CLIENT) {
        ngtcp2_cid dcid, scid;
        dcid.datalen = NGTCP2_MIN_INITIAL_DCIDLEN;
        fill_random(q, dcid.data, dcid.datalen);
        scid.datalen = 8;
        fill_random(q, scid.data, scid.datalen);
        err = conn_new(q, &dcid, &scid, NULL, now_ms);
    }
    if (err < 0) {
        nk_quic_free(q);
        return err;
    }
    *out = q;
    return 0;
}

void nk_quic_free(nk_quic *q)
{
    if (q == NULL)
        return;
    nk__qstream_free_all(q);
    if (q->conn != NULL)
        ngtcp2_conn_del(q->conn);
    nk__quic_tls_free(q);
    dgram_ring_free(q, &q->dg_tx);
    dgram_ring_free(q, &q->dg_rx);
    nk__quic_free(q, q->events.slots);
    nk__quic_free(q, q->close_pkt);
    sodium_memzero(&q->identity, sizeof(q->identity));
    sodium_memzero(q->exp_secret, sizeof(q->exp_secret));
    free(q);
}

/* ---- closing ---------------------------------------------------------------------------------- */
/* Writes the CONNECTION_CLOSE carrying ccerr (sent by the next poll_transmit, and again while
 * the peer keeps sending, rate-limited: see nk_quic_handle_datagram) and reports CLOSED. */
static void enter_closing(nk_quic *q, const ngtcp2_connection_close_error *ccerr, int64_t now_ms, int err,
                          uint64_t app_error, const char *reason)
{
    if (q->state == NK__Q_CLOSING || q->state == NK__Q_CLOSED)
        return;
    q->state = NK__Q_CLOSED;
    if (ccerr != NULL && q->conn != NULL && !ngtcp2_conn_is_in_closing_period(q->conn) &&
        !ngtcp2_conn_is_in_draining_period(q->conn)) {
        q->close_pkt = nk__quic_alloc(q, q->cfg.max_datagram);
        if (q->close_pkt != NULL) {
            ngtcp2_ssize n = ngtcp2_conn_write_connection_close(q->conn, NULL, NULL, q->close_pkt,
                                                                q->cfg.max_datagram, ccerr, ts_of(q, now_ms));
            if (n > 0) {
                q->close_len = (size_t)n;
                q->close_pending = 1;
                q->state = NK__Q_CLOSING;
            }
        }
    }
    closed_event(q, err, app_error, reason);
}

/* The peer closed (we are draining): report its error. */
static void peer_closed(nk_quic *q)
{
    ngtcp2_connection_close_error cc;
    ngtcp2_conn_get_connection_close_error(q->conn, &cc);
    char reason[64];
    int err = NK_ERR_CLOSED;
    uint64_t app = 0;
    if (cc.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION) {
        app = cc.error_code;
        snprintf(reason, sizeof(reason), "peer closed: %.*s", (int)(cc.reasonlen < 40 ? cc.reasonlen : 40),
                 cc.reason != NULL ? (const char *)cc.reason : "");
    } else if (cc.error_code >= NGTCP2_CRYPTO_ERROR && cc.error_code < NGTCP2_CRYPTO_ERROR + 0x100) {
        err = NK_ERR_AUTH;
        snprintf(reason, sizeof(reason), "peer refused the handshake (TLS alert %u)",
                 (unsigned)(cc.error_code - NGTCP2_CRYPTO_ERROR));
    } else if (cc.error_code == NGTCP2_APPLICATION_ERROR) {
        /* an application close sent before the handshake was confirmed (RFC 9000 10.2.3) */
        snprintf(reason, sizeof(reason), "peer closed");
    } else if (cc.error_code != NGTCP2_NO_ERROR) {
        err = NK_ERR_MALFORMED;
        snprintf(reason, sizeof(reason), "peer closed with transport error 0x%llx",
                 (unsigned long long)cc.error_code);
    } else {
        snprintf(reason, sizeof(reason), "peer closed");
    }
    q->state = NK__Q_CLOSED;
    closed_event(q, err, app, reason);
}

/* A fatal error from ngtcp2 (read, write or timer). */
static void fatal(nk_quic *q, int rv, int64_t now_ms)
{
    ngtcp2_connection_close_error cc;
    ngtcp2_connection_close_error_default(&cc);
    if (rv == NGTCP2_ERR_DRAINING) {
        peer_closed(q);
        return;
    }
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        q->state = NK__Q_CLOSED; /* silently, as RFC 9000 10.1 says */
        closed_event(q, NK_ERR_TIMEOUT, 0, rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
        return;
    }
    if (rv == NGTCP2_ERR_DROP_CONN) {
        q->state = NK__Q_CLOSED;
        closed_event(q, NK_ERR_CLOSED, 0, "connection dropped");
        return;
    }
    if (rv == NGTCP2_ERR_CRYPTO || (rv == NGTCP2_ERR_CALLBACK_FAILURE && q->auth_error != NULL)) {
        if (q->conn != NULL && ngtcp2_conn_get_tls_alert(q->conn) != 0)
            ngtcp2_connection_close_error_set_transport_error_tls_alert(&cc, ngtcp2_conn_get_tls_alert(q->conn),
                                                                        NULL, 0);
        else
            ngtcp2_connection_close_error_set_transport_error_liberr(&cc, rv, NULL, 0);
        const char *reason = q->auth_error != NULL ? q->auth_error : "TLS handshake failed";
        enter_closing(q, &cc, now_ms, NK_ERR_AUTH, 0, reason);
        return;
    }
    ngtcp2_connection_close_error_set_transport_error_liberr(&cc, rv, NULL, 0);
    char reason[64];
    snprintf(reason, sizeof(reason), "transport error: %s", ngtcp2_strerror(rv));
    enter_closing(q, &cc, now_ms, NK_ERR_MALFORMED, 0, reason);
}

/* ---- input ------------------------------------------------------------------------------------ */
static int server_accept(nk_quic *q, const uint8_t *p, size_t n, int64_t now_ms)
{
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, p, n) != 0)
        return NK_ERR_MALFORMED;
    ngtcp2_cid scid;
    scid.datalen = 8;
    fill_random(q, scid.data, scid.datalen);
    return conn_new(q, &hd.scid, &scid, &hd.dcid, now_ms);
}

int nk_quic_handle_datagram(nk_quic *q, int64_t now_ms, const uint8_t *p, size_t n)
{
    if (q == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (n == 0)
        return NK_ERR_MALFORMED;
    if (q->state == NK__Q_CLOSING) {
        /* The peer has not seen our CONNECTION_CLOSE yet, or this is its own close (ngtcp2 reads
         * nothing in the closing state, so the two look alike). RFC 9000 10.2.1: answer, but at
         * an exponentially falling rate: the 1st, 2nd, 4th, 8th, ... datagram. Two sides that
         * closed at once so stop answering each other's close after a few rounds. */
        q->close_rx++;
        if ((q->close_rx & (q->close_rx - 1)) == 0)
            q->close_pending = 1;
        return NK_ERR_CLOSED;
    }
    if (q->state == NK__Q_CLOSED)
        return NK_ERR_CLOSED;
    int fresh = q->conn == NULL;
    if (fresh) {
        int err = server_accept(q, p, n, now_ms);
        if (err < 0)
            return err;
    }
    q->st.rx_packets++;
    q->st.rx_bytes += n;
    ngtcp2_pkt_info pi = {0};
    int rv = ngtcp2_conn_read_pkt(q->conn, &q->path, &pi, p, n, ts_of(q, now_ms));
    if (q->tls_drop_pending && q->state == NK__Q_CONNECTED)
        nk__quic_tls_drop(q); /* GnuTLS is off the stack now */
    if (rv == 0)
        return 0;
    if (rv == NGTCP2_ERR_DISCARD_PKT || rv == NGTCP2_ERR_INVALID_ARGUMENT)
        return NK_ERR_MALFORMED; /* dropped; the connection goes on */
    if (fresh) {
        /* a server's first datagram that did not start a connection: forget it, with a fresh
         * TLS session for the next one */
        ngtcp2_conn_del(q->conn);
        q->conn = NULL;
        q->state = NK__Q_IDLE;
        q->auth_error = NULL;
        nk__quic_tls_free(q);
        int err = nk__quic_tls_new(q);
        if (err < 0) {
            q->state = NK__Q_CLOSED;
            closed_event(q, err, 0, "out of memory");
        }
        return NK_ERR_MALFORMED;
    }
    fatal(q, rv, now_ms);
    return rv == NGTCP2_ERR_CRYPTO || q->auth_error != NULL ? NK_ERR_AUTH : NK_ERR_CLOSED;
}

void nk_quic_handle_timeout(nk_quic *q, int64_t now_ms)
{
    if (q == NULL || q->conn == NULL || (q->state != NK__Q_HANDSHAKE && q->state != NK__Q_CONNECTED))
        return;
    ngtcp2_tstamp ts = ts_of(q, now_ms);
    if (ngtcp2_conn_get_expiry(q->conn) > ts)
        return;
    int rv = ngtcp2_conn_handle_expiry(q->conn, ts);
    if (rv != 0)
        fatal(q, rv, now_ms);
}

int64_t nk_quic_next_deadline(const nk_quic *q)
{
    if (q == NULL || q->conn == NULL || (q->state != NK__Q_HANDSHAKE && q->state != NK__Q_CONNECTED))
        return NK_DEADLINE_NONE;
    ngtcp2_tstamp e = ngtcp2_conn_get_expiry(q->conn);
    if (e == UINT64_MAX)
        return NK_DEADLINE_NONE;
    int64_t d = e < ORIGIN_NS ? q->base_ms
                              : q->base_ms + (int64_t)((e - ORIGIN_NS + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS);
    if (q->pace_full && d <= q->pace_ms)
        d = q->pace_ms + 1; /* this millisecond's budget is spent: nothing to send before the next */
    return d;
}

/* ---- output ----------------------------------------------------------------------------------- */
static int stream_sendable(const nk_quic *q, const nk__qstream *s)
{
    if (s->blocked || s->tried == q->pkt_epoch || s->local_reset || s->closed)
        return 0;
    return s->tx_sent < s->tx.end_off || (s->fin_wanted && !s->fin_sent);
}

static nk__qstream *next_sendable(nk_quic *q)
{
    for (size_t i = 0; i < q->nstreams; i++) {
        size_t k = (q->rr + i) % q->nstreams;
        if (stream_sendable(q, q->streams[k])) {
            q->rr = (k + 1) % q->nstreams;
            return q->streams[k];
        }
    }
    return NULL;
}

static int pop_datagram_into(nk_quic *q, uint8_t *buf, size_t cap, ngtcp2_tstamp ts, ngtcp2_ssize *nwrite)
{
    nk__qdgram *d = nk__ring_peek(&q->dg_tx);
    ngtcp2_vec v = {d->data, d->len};
    int accepted = 0;
    ngtcp2_pkt_info pi;
    *nwrite = ngtcp2_conn_writev_datagram(q->conn, NULL, &pi, buf, cap, &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE,
                                          0, &v, 1, ts);
    if (accepted || *nwrite == NGTCP2_ERR_INVALID_ARGUMENT || *nwrite == NGTCP2_ERR_INVALID_STATE) {
        nk__quic_free(q, d->data);
        nk__ring_pop(&q->dg_tx, NULL);
        if (*nwrite == NGTCP2_ERR_INVALID_ARGUMENT || *nwrite == NGTCP2_ERR_INVALID_STATE) {
            q->st.lost_datagrams++;
            return 1; /* dropped; try the next thing */
        }
    }
    return 0;
}

/* One packet; 0 when nothing can leave now. */
static ngtcp2_ssize write_packet(nk_quic *q, uint8_t *buf, size_t cap, ngtcp2_tstamp ts)
{
    q->pkt_epoch++;
    for (;;) {
        ngtcp2_ssize nwrite;
        if (nk__ring_count(&q->dg_tx) > 0 && q->state == NK__Q_CONNECTED) {
            if (pop_datagram_into(q, buf, cap, ts, &nwrite) || nwrite == NGTCP2_ERR_WRITE_MORE)
                continue;
            return nwrite; /* a full packet, 0 (congestion limited) or a fatal error */
        }
        nk__qstream *s = q->state == NK__Q_CONNECTED ? next_sendable(q) : NULL;
        ngtcp2_vec v[QBUF_VECS];
        size_t nv = 0;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        int64_t id = -1;
        if (s != NULL) {
            s->tried = q->pkt_epoch;
            id = s->id;
            nv = nk__qbuf_vecs(&s->tx, s->tx_sent, v, QBUF_VECS);
            size_t total = 0;
            for (size_t i = 0; i < nv; i++)
                total += v[i].len;
            if (s->fin_wanted && s->tx_sent + total == s->tx.end_off)
                flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize datalen = -1;
        ngtcp2_pkt_info pi;
        nwrite = ngtcp2_conn_writev_stream(q->conn, NULL, &pi, buf, cap, &datalen, flags, id, v, nv, ts);
        if (s != NULL && datalen >= 0) {
            s->tx_sent += (uint64_t)datalen;
            q->st.stream_bytes_sent += (uint64_t)datalen;
            if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->tx_sent == s->tx.end_off)
                s->fin_sent = 1;
        }
        switch (nwrite) {
        case NGTCP2_ERR_WRITE_MORE:
            continue;
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
            s->blocked = 1;
            continue;
        case NGTCP2_ERR_STREAM_SHUT_WR:
        case NGTCP2_ERR_STREAM_NOT_FOUND:
            s->local_reset = 1; /* nothing more can leave on it */
            continue;
        default:
            return nwrite;
        }
    }
}

int nk_quic_poll_transmit(nk_quic *q, int64_t now_ms, uint8_t *buf, size_t cap)
{
    if (q == NULL || buf == NULL)
        return NK_ERR_INVAL;
    if (cap < q->cfg.max_datagram)
        return NK_ERR_NOBUFS;
    if (q->close_pending) {
        q->close_pending = 0;
        memcpy(buf, q->close_pkt, q->close_len);
        q->st.tx_packets++;
        q->st.tx_bytes += q->close_len;
        return (int)q->close_len;
    }
    if (q->conn == NULL || (q->state != NK__Q_HANDSHAKE && q->state != NK__Q_CONNECTED))
        return NK_ERR_AGAIN;
    ngtcp2_tstamp ts = ts_of(q, now_ms);
    size_t quantum = ngtcp2_conn_get_send_quantum(q->conn);
    /* Pacing on a millisecond clock: ngtcp2 spaces send quanta by its pacing rate, but now_ms
     * moves in whole milliseconds, so a spacing below 1 ms would become 1 ms (one quantum per
     * millisecond: ~60 MB/s). Within one millisecond we write what the pacing rate allows for a
     * millisecond (at least one quantum), telling ngtcp2 after each quantum; then we wait for
     * the next millisecond (next_deadline). */
    if (now_ms != q->pace_ms) {
        q->pace_ms = now_ms;
        q->pace_bytes = 0;
        q->pace_full = 0;
    }
    if (q->burst >= quantum) {
        q->burst = 0;
        ngtcp2_conn_update_pkt_tx_time(q->conn, ts);
    }
    if (q->pace_bytes >= quantum) { /* below one quantum the rate does not matter */
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(q->conn, &cs);
        double per_ms = cs.pacing_rate * (double)NGTCP2_MILLISECONDS; /* pacing_rate: bytes per ns */
        if (per_ms <= 0 && cs.smoothed_rtt > 0) /* CUBIC and Reno set none: ngtcp2 paces at cwnd/srtt */
            per_ms = (double)cs.cwnd * (double)NGTCP2_MILLISECONDS / (double)cs.smoothed_rtt;
        if ((double)q->pace_bytes >= per_ms) {
            q->pace_full = 1;
            return NK_ERR_AGAIN;
        }
    }
    ngtcp2_ssize n = write_packet(q, buf, q->cfg.max_datagram, ts);
    if (n < 0) {
        fatal(q, (int)n, now_ms);
        return q->close_pending ? nk_quic_poll_transmit(q, now_ms, buf, cap) : NK_ERR_AGAIN;
    }
    if (n == 0) {
        q->burst = 0;
        ngtcp2_conn_update_pkt_tx_time(q->conn, ts);
        return NK_ERR_AGAIN;
    }
    q->burst += (size_t)n;
    q->pace_bytes += (size_t)n;
    q->st.tx_packets++;
    q->st.tx_bytes += (uint64_t)n;
    return (int)n;
}

int nk_quic_poll_event(nk_quic *q, nk_quic_event *ev)
{
    if (q == NULL || ev == NULL)
        return NK_ERR_INVAL;
    if (nk__ring_pop(&q->events, ev) != 0)
        return NK_ERR_AGAIN;
    return 0;
}

int nk_quic_connected(const nk_quic *q, nk_peer_id *peer)
{
    if (q == NULL || q->state != NK__Q_CONNECTED)
        return 0;
    if (peer != NULL)
        *peer = q->peer;
    return 1;
}

/* ---- streams ---------------------------------------------------------------------------------- */
int nk_quic_stream_open(nk_quic *q, int64_t *id)
{
    if (q == NULL || id == NULL)
        return NK_ERR_INVAL;
    if (q->state != NK__Q_CONNECTED)
        return NK_ERR_STATE;
    int64_t sid;
    int rv = ngtcp2_conn_open_bidi_stream(q->conn, &sid, NULL);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED)
        return NK_ERR_AGAIN;
    if (rv != 0)
        return NK_ERR_NOMEM;
    if (nk__qstream_add(q, sid) == NULL) {
        ngtcp2_conn_shutdown_stream(q->conn, sid, 0);
        return NK_ERR_NOMEM;
    }
    *id = sid;
    return 0;
}

int nk_quic_stream_write(nk_quic *q, int64_t id, const uint8_t *p, size_t n)
{
    if (q == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (q->state != NK__Q_CONNECTED)
        return NK_ERR_STATE;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return NK_ERR_NOT_FOUND;
    if (s->fin_wanted || s->local_reset || s->closed)
        return NK_ERR_STATE;
    size_t used = (size_t)(s->tx.end_off - s->tx_acked);
    size_t room = used < q->cfg.stream_send_buffer ? q->cfg.stream_send_buffer - used : 0;
    if (n > INT32_MAX)
        n = INT32_MAX;
    size_t k = n < room ? n : room;
    if (k > 0)
        k = nk__qbuf_append(q, &s->tx, p, k);
    if (k < n)
        s->want_writable = 1;
    if (k == 0 && n > 0)
        return NK_ERR_AGAIN;
    return (int)k;
}

int nk_quic_stream_shutdown(nk_quic *q, int64_t id)
{
    if (q == NULL)
        return NK_ERR_INVAL;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return NK_ERR_NOT_FOUND;
    if (s->local_reset)
        return NK_ERR_STATE;
    s->fin_wanted = 1;
    return 0;
}

int nk_quic_stream_read(nk_quic *q, int64_t id, uint8_t *buf, size_t cap)
{
    if (q == NULL || (buf == NULL && cap > 0))
        return NK_ERR_INVAL;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return NK_ERR_NOT_FOUND;
    if (s->reset_rcvd)
        return NK_ERR_CLOSED;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    size_t avail = (size_t)(s->rx.end_off - s->rx_read);
    if (avail == 0) {
        if (s->fin_rcvd) {
            if (!s->fin_read) {
                s->fin_read = 1;
                stream_event(q, NK_QUIC_EV_STREAM_FINISHED, id, 0);
            }
            nk__qstream_maybe_free(q, s); /* s may be gone now */
            return 0;
        }
        s->readable_signalled = 0;
        return NK_ERR_AGAIN;
    }
    size_t k = nk__qbuf_copy(&s->rx, s->rx_read, buf, avail < cap ? avail : cap);
    s->rx_read += k;
    nk__qbuf_drop(q, &s->rx, s->rx_read);
    q->st.stream_bytes_read += k;
    if (q->conn != NULL && (q->state == NK__Q_CONNECTED)) {
        ngtcp2_conn_extend_max_stream_offset(q->conn, id, k);
        ngtcp2_conn_extend_max_offset(q->conn, k);
    }
    return (int)k;
}

int nk_quic_stream_reset(nk_quic *q, int64_t id, uint64_t code)
{
    if (q == NULL)
        return NK_ERR_INVAL;
    nk__qstream *s = nk__qstream_find(q, id);
    if (s == NULL)
        return NK_ERR_NOT_FOUND;
    if (q->conn != NULL && q->state == NK__Q_CONNECTED)
        ngtcp2_conn_shutdown_stream(q->conn, id, code);
    s->local_reset = 1;
    nk__qbuf_clear(q, &s->rx);
    nk__qstream_maybe_free(q, s);
    return 0;
}

size_t nk_quic_stream_unacked(const nk_quic *q, int64_t id)
{
    const nk__qstream *s = q != NULL ? nk__qstream_find(q, id) : NULL;
    return s != NULL ? (size_t)(s->tx.end_off - s->tx_acked) : 0;
}

/* ---- datagrams -------------------------------------------------------------------------------- */
size_t nk_quic_datagram_max(const nk_quic *q)
{
    if (q == NULL || q->conn == NULL || q->state != NK__Q_CONNECTED)
        return 0;
    const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(q->conn);
    if (rp == NULL || rp->max_datagram_frame_size == 0)
        return 0;
    /* short header (1 + a CID of up to 20 + 4-byte packet number), AEAD tag 16, DATAGRAM frame type + length 3 */
    size_t room = NK__QUIC_MIN_DATAGRAM - (1 + 20 + 4 + 16 + 3); /* what fits before and after PMTUD */
    if (rp->max_datagram_frame_size - 3 < room)
        room = (size_t)rp->max_datagram_frame_size - 3;
    return room;
}

int nk_quic_datagram_send(nk_quic *q, const uint8_t *p, size_t n)
{
    if (q == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (q->state != NK__Q_CONNECTED)
        return NK_ERR_STATE;
    if (n > nk_quic_datagram_max(q))
        return NK_ERR_LIMIT;
    if (dgram_ring(q, &q->dg_tx) != 0)
        return NK_ERR_NOMEM;
    if (nk__ring_full(&q->dg_tx))
        return NK_ERR_AGAIN;
    uint8_t *copy = nk__quic_alloc(q, n > 0 ? n : 1);
    if (copy == NULL)
        return NK_ERR_NOMEM;
    if (n > 0)
        memcpy(copy, p, n);
    nk__qdgram d = {.len = n, .data = copy};
    nk__ring_push(&q->dg_tx, &d);
    return 0;
}

int nk_quic_datagram_read(nk_quic *q, uint8_t *buf, size_t cap)
{
    if (q == NULL || (buf == NULL && cap > 0))
        return NK_ERR_INVAL;
    nk__qdgram *d = nk__ring_peek(&q->dg_rx);
    if (d == NULL)
        return NK_ERR_AGAIN;
    if (d->len > cap)
        return NK_ERR_NOBUFS;
    size_t n = d->len;
    memcpy(buf, d->data, n);
    nk__quic_free(q, d->data);
    nk__ring_pop(&q->dg_rx, NULL);
    return (int)n;
}

/* ---- close and stats -------------------------------------------------------------------------- */
int nk_quic_close(nk_quic *q, int64_t now_ms, uint64_t app_error)
{
    return nk_quic_close_ex(q, now_ms, app_error, NULL);
}

int nk_quic_close_ex(nk_quic *q, int64_t now_ms, uint64_t app_error, const char *reason)
{
    if (q == NULL)
        return NK_ERR_INVAL;
    if (q->state == NK__Q_CLOSING || q->state == NK__Q_CLOSED)
        return NK_ERR_STATE;
    if (q->conn == NULL) {
        q->state = NK__Q_CLOSED;
        closed_event(q, 0, app_error, "closed locally");
        return 0;
    }
    ngtcp2_connection_close_error cc;
    ngtcp2_connection_close_error_default(&cc);
    size_t rlen = reason != NULL ? strnlen(reason, NK_QUIC_CLOSE_REASON_MAX) : 0;
    ngtcp2_connection_close_error_set_application_error(&cc, app_error, (const uint8_t *)reason, rlen);
    enter_closing(q, &cc, now_ms, 0, app_error, "closed locally");
    return 0;
}

void nk_quic_stats(const nk_quic *q, nk_quic_stats_t *st)
{
    if (q == NULL || st == NULL)
        return;
    *st = q->st;
    st->mem_bytes = q->mem_bytes;
    if (q->conn != NULL) {
        ngtcp2_conn_stat cs;
        ngtcp2_conn_get_conn_stat(q->conn, &cs);
        st->pto_count = cs.pto_count;
        st->srtt_us = cs.first_rtt_sample_ts == UINT64_MAX ? 0 : (int64_t)(cs.smoothed_rtt / 1000);
        st->min_rtt_us = cs.first_rtt_sample_ts == UINT64_MAX ? 0 : (int64_t)(cs.min_rtt / 1000);
        st->cwnd = cs.cwnd;
        st->bytes_in_flight = cs.bytes_in_flight;
    }
}
