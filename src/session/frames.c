/*
 * natkit: the session's reliable, ordered messages and its frames. Messages
 * carry 64-bit sequence numbers; ACK frames carry the cumulative point (the
 * next expected sequence), the receiver's window limit and a 64-bit map of
 * what arrived after it. Retransmission uses an RFC 6298 RTO per message,
 * doubled per retransmission, plus SACK-based early retransmission.
 */
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "internal.h"

#define MIN_RTO_MS 100
#define MAX_RTO_MS 8000
#define INITIAL_RTO_MS 500

static void put_u64(uint8_t *p, uint64_t v)
{
    nk__store_u32(p, (uint32_t)(v >> 32));
    nk__store_u32(p + 4, (uint32_t)v);
}

static int rd_u64(const uint8_t **src, const uint8_t *end, uint64_t *v)
{
    uint32_t hi = 0, lo = 0;
    if (end - *src < 8)
        return NK_ERR_TRUNCATED;
    nk__rd_u32(src, end, &hi);
    nk__rd_u32(src, end, &lo);
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

int nk__rel_init(nk_session *s)
{
    s->tx = calloc(s->window, sizeof(*s->tx));
    s->rx = calloc(s->window, sizeof(*s->rx));
    if (s->tx == NULL || s->rx == NULL)
        return NK_ERR_NOMEM;
    s->peer_limit = s->window;
    s->adv_limit = s->window;
    s->rto_ms = INITIAL_RTO_MS;
    return 0;
}

void nk__rel_free(nk_session *s)
{
    for (uint32_t i = 0; s->tx != NULL && i < s->window; i++)
        free(s->tx[i].data);
    for (uint32_t i = 0; s->rx != NULL && i < s->window; i++)
        free(s->rx[i].data);
    free(s->tx);
    free(s->rx);
    s->tx = NULL;
    s->rx = NULL;
}

void nk__rel_rtt_sample(nk_session *s, int64_t rtt)
{
    if (rtt < 0)
        rtt = 0;
    if (!s->have_rtt) {
        s->srtt_ms = rtt;
        s->rttvar_ms = rtt / 2;
        s->have_rtt = 1;
    } else {
        int64_t d = s->srtt_ms > rtt ? s->srtt_ms - rtt : rtt - s->srtt_ms;
        s->rttvar_ms = (3 * s->rttvar_ms + d) / 4;
        s->srtt_ms = (7 * s->srtt_ms + rtt) / 8;
    }
    s->rto_ms = s->srtt_ms + (4 * s->rttvar_ms > 10 ? 4 * s->rttvar_ms : 10);
    if (s->rto_ms < MIN_RTO_MS)
        s->rto_ms = MIN_RTO_MS;
    if (s->rto_ms > MAX_RTO_MS)
        s->rto_ms = MAX_RTO_MS;
}

static int64_t backoff(const nk_session *s, uint32_t xmits)
{
    int64_t rto = s->rto_ms;
    for (uint32_t i = 1; i < xmits && rto < MAX_RTO_MS; i++)
        rto *= 2;
    return rto < MAX_RTO_MS ? rto : MAX_RTO_MS;
}

/* ---- the public message API --------------------------------------------------------- */

/* One fragment fills a datagram with its header, tag, an ACK frame and the one-byte control
 * frames (PING, REKEY_REQ): a due fragment always fits in the next packet. */
static size_t frag_size(const nk_session *s)
{
    return s->cfg.max_datagram - NK__HDR - NK__TAGLEN - NK__ACK_FRAME - NK__CTRL_ROOM - NK__MSG_OVERHEAD;
}

/* A message may take up to half the window (peers should use the same window), at most 16 fragments. */
static size_t max_frags(const nk_session *s)
{
    size_t half = s->window / 2 > 0 ? s->window / 2 : 1;
    return half < NK__MAX_FRAGS ? half : NK__MAX_FRAGS;
}

size_t nk_session_max_message(const nk_session *s)
{
    size_t max = frag_size(s) * max_frags(s);
    return max < NK_SESSION_MAX_MESSAGE ? max : NK_SESSION_MAX_MESSAGE;
}

size_t nk_session_unacked(const nk_session *s)
{
    return (size_t)(s->tx_next - s->tx_base);
}

static int queue_fragment(nk_session *s, const uint8_t *p, size_t len, int more)
{
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return NK_ERR_NOMEM;
    memcpy(copy, p, len);
    nk__txmsg *m = &s->tx[s->tx_next % s->window];
    memset(m, 0, sizeof(*m));
    m->data = copy;
    m->len = (uint16_t)len;
    m->more = (uint8_t)more;
    s->tx_next++;
    return 0;
}

int nk_session_send(nk_session *s, const uint8_t *msg, size_t len)
{
    if (s == NULL || msg == NULL || len == 0 || len > nk_session_max_message(s))
        return NK_ERR_INVAL;
    if (s->state == NK_SESSION_CLOSED)
        return NK_ERR_STATE;
    size_t frag = frag_size(s), nfrag = (len + frag - 1) / frag;
    if (s->window - (s->tx_next - s->tx_base) < nfrag) {
        s->want_writable = 1;
        return NK_ERR_AGAIN;
    }
    for (size_t off = 0; off < len; off += frag) {
        size_t n = len - off < frag ? len - off : frag;
        if (queue_fragment(s, msg + off, n, off + n < len) != 0) {
            /* out of memory half-way: take back what was queued, nothing was sent yet */
            while (off > 0) {
                s->tx_next--;
                free(s->tx[s->tx_next % s->window].data);
                memset(&s->tx[s->tx_next % s->window], 0, sizeof(nk__txmsg));
                off -= frag;
            }
            return NK_ERR_NOMEM;
        }
    }
    s->stats.messages_sent++;
    return 0;
}

/* The seq of the last fragment of the first complete message in order, or 0 if none. */
static uint64_t complete_end(const nk_session *s)
{
    for (uint64_t q = s->rx_read; q < s->rx_next; q++)
        if (!s->rx[q % s->window].more)
            return q + 1;
    return 0;
}

int nk_session_recv(nk_session *s, uint8_t *buf, size_t cap)
{
    if (s == NULL || (buf == NULL && cap > 0))
        return NK_ERR_INVAL;
    uint64_t end = complete_end(s);
    if (end == 0)
        return NK_ERR_AGAIN;
    size_t total = 0;
    for (uint64_t q = s->rx_read; q < end; q++)
        total += s->rx[q % s->window].len;
    if (total > cap)
        return NK_ERR_NOBUFS;
    size_t off = 0;
    for (; s->rx_read < end; s->rx_read++) {
        nk__rxmsg *m = &s->rx[s->rx_read % s->window];
        memcpy(buf + off, m->data, m->len);
        off += m->len;
        free(m->data);
        memset(m, 0, sizeof(*m));
    }
    s->stats.messages_delivered++;
    /* Window update: tell the peer once half the advertised room is used up. */
    if (s->adv_limit - s->rx_next <= s->window / 2)
        s->ack_pending = 1;
    return (int)total;
}

/* ---- receiving frames ------------------------------------------------------------------ */

static void on_msg(nk_session *s, uint64_t seq, const uint8_t *data, uint16_t len, int more)
{
    s->ack_pending = 1;
    if (seq < s->rx_next || seq >= s->rx_read + s->window)
        return; /* duplicate, or beyond the window we advertised: re-acked, not stored */
    nk__rxmsg *m = &s->rx[seq % s->window];
    if (m->present)
        return;
    m->data = malloc(len > 0 ? len : 1);
    if (m->data == NULL)
        return; /* not stored, so not acknowledged: the peer retransmits */
    memcpy(m->data, data, len);
    m->len = len;
    m->more = (uint8_t)more;
    m->present = 1;
    int readable = complete_end(s) != 0;
    while (s->rx_next < s->rx_read + s->window && s->rx[s->rx_next % s->window].present)
        s->rx_next++;
    if (!readable && complete_end(s) != 0)
        nk__session_event(s, NK_SESSION_EV_READABLE, s->path, 0, 0);
}

static void mark_acked(nk_session *s, uint64_t seq, int64_t now, int64_t *sample, uint64_t *largest)
{
    nk__txmsg *m = &s->tx[seq % s->window];
    if (m->acked || m->xmits == 0)
        return;
    m->acked = 1;
    if (m->xmits == 1) /* Karn: only unambiguous samples */
        *sample = now - m->sent_ms;
    if (seq + 1 > *largest)
        *largest = seq + 1;
}

/* Messages below the largest acknowledged one, sent long enough ago, are taken as lost. */
static void early_retransmit(nk_session *s, int64_t now, uint64_t largest)
{
    int64_t thresh = s->have_rtt ? s->srtt_ms + s->srtt_ms / 8 + 1 : s->rto_ms;
    for (uint64_t q = s->tx_base; q + 1 < largest; q++) {
        nk__txmsg *m = &s->tx[q % s->window];
        if (!m->acked && m->xmits > 0 && now - m->sent_ms >= thresh && m->due_ms > now)
            m->due_ms = now;
    }
}

static void on_ack(nk_session *s, int64_t now, uint64_t cum, uint64_t limit, uint64_t map)
{
    int64_t sample = -1;
    uint64_t largest = 0;
    if (cum > s->tx_next)
        cum = s->tx_next; /* cannot ack what was never sent */
    for (uint64_t q = s->tx_base; q < cum; q++)
        mark_acked(s, q, now, &sample, &largest);
    for (int i = 0; i < 64 && cum + 1 + (uint64_t)i < s->tx_next; i++) {
        uint64_t q = cum + 1 + (uint64_t)i;
        /* an old, reordered ACK may name seqs whose ring slots were reused */
        if (q >= s->tx_base && (map & ((uint64_t)1 << i)))
            mark_acked(s, q, now, &sample, &largest);
    }
    if (sample >= 0)
        nk__rel_rtt_sample(s, sample);
    if (limit > s->peer_limit)
        s->peer_limit = limit;
    if (largest > 0)
        early_retransmit(s, now, largest);
    while (s->tx_base < s->tx_next && s->tx[s->tx_base % s->window].acked) {
        nk__txmsg *m = &s->tx[s->tx_base % s->window];
        free(m->data);
        memset(m, 0, sizeof(*m));
        s->tx_base++;
    }
    if (s->want_writable && s->tx_next - s->tx_base < s->window) {
        s->want_writable = 0;
        nk__session_event(s, NK_SESSION_EV_WRITABLE, s->path, 0, 0);
    }
}

static void on_probe(nk_session *s, nk_path_id path, uint64_t nonce)
{
    /* Answer on the path the probe came in on; keep the newest few. */
    int slot = 0;
    for (int i = 0; i < NK__MAX_PROBES; i++) {
        if (!s->probe_acks[i].used) {
            slot = i;
            break;
        }
        if (s->probe_acks[i].sent_ms < s->probe_acks[slot].sent_ms)
            slot = i;
    }
    nk__probe *a = &s->probe_acks[slot];
    a->used = 1;
    a->send_pending = 1;
    a->path = path;
    a->nonce = nonce;
    a->sent_ms = s->last_rx_ms;
}

static void on_probe_ack(nk_session *s, int64_t now, nk_path_id path, uint64_t nonce)
{
    for (int i = 0; i < NK__MAX_PROBES; i++) {
        nk__probe *p = &s->probes[i];
        if (!p->used || p->send_pending || p->nonce != nonce || p->path != path)
            continue;
        p->used = 0;
        nk__session_event(s, NK_SESSION_EV_PATH_VALIDATED, path, 0, now - p->sent_ms);
        nk_session_event *ev = nk__ring_last(&s->events); /* the newest: the one just queued */
        if (ev != NULL)
            ev->nonce = nonce;
        return;
    }
}

int nk__frames_handle(nk_session *s, int64_t now, nk_path_id path, const uint8_t *p, size_t n, int *probing)
{
    const uint8_t *src = p, *end = p + n;
    *probing = 1;
    while (src < end) {
        uint8_t type = *src++;
        uint64_t a, b, c;
        uint16_t len;
        const uint8_t *data;
        if (type != NK__FR_PROBE && type != NK__FR_PROBE_ACK && type != NK__FR_PADDING)
            *probing = 0;
        switch (type) {
        case NK__FR_PADDING:
            break;
        case NK__FR_PING:
            s->ack_pending = 1;
            break;
        case NK__FR_ACK:
            if (rd_u64(&src, end, &a) || rd_u64(&src, end, &b) || rd_u64(&src, end, &c))
                return NK_ERR_MALFORMED;
            on_ack(s, now, a, b, c);
            break;
        case NK__FR_MSG:
        case NK__FR_MSG_MORE:
            if (rd_u64(&src, end, &a) || nk__rd_u16(&src, end, &len) || nk__rd_bytes(&src, end, len, &data))
                return NK_ERR_MALFORMED;
            on_msg(s, a, data, len, type == NK__FR_MSG_MORE);
            break;
        case NK__FR_PROBE:
        case NK__FR_PROBE_ACK:
            if (rd_u64(&src, end, &a))
                return NK_ERR_MALFORMED;
            if (type == NK__FR_PROBE)
                on_probe(s, path, a);
            else
                on_probe_ack(s, now, path, a);
            break;
        case NK__FR_REKEY_REQ:
            s->rx_rekey_req = 1; /* acted on by the caller: only under the current keys */
            break;
        case NK__FR_CLOSE:
            nk__session_fail(s, NK_ERR_CLOSED);
            return 0;
        default:
            return NK_ERR_MALFORMED;
        }
    }
    return 0;
}

/* ---- sending frames --------------------------------------------------------------------- */

static void write_ack(nk_session *s, nk__wr *w)
{
    uint64_t map = 0;
    uint64_t limit = s->rx_read + s->window;
    for (int i = 0; i < 64; i++) {
        uint64_t q = s->rx_next + 1 + (uint64_t)i;
        if (q < limit && s->rx[q % s->window].present)
            map |= (uint64_t)1 << i;
    }
    uint8_t *p = nk__wr_reserve(w, NK__ACK_FRAME);
    if (p == NULL)
        return;
    p[0] = NK__FR_ACK;
    put_u64(p + 1, s->rx_next);
    put_u64(p + 9, limit);
    put_u64(p + 17, map);
    s->adv_limit = limit;
    s->ack_pending = 0;
}

static int write_msg(nk_session *s, nk__wr *w, uint64_t seq, int64_t now)
{
    nk__txmsg *m = &s->tx[seq % s->window];
    if (w->cap - w->len < NK__MSG_OVERHEAD + (size_t)m->len)
        return 0;
    uint8_t *p = nk__wr_reserve(w, NK__MSG_OVERHEAD + (size_t)m->len);
    p[0] = m->more ? NK__FR_MSG_MORE : NK__FR_MSG;
    put_u64(p + 1, seq);
    nk__store_u16(p + 9, m->len);
    memcpy(p + 11, m->data, m->len);
    if (m->xmits == 0)
        m->first_sent_ms = now;
    else
        s->stats.retransmits++;
    m->xmits++;
    m->sent_ms = now;
    m->due_ms = now + backoff(s, m->xmits);
    return 1;
}

static int msg_due(const nk_session *s, uint64_t q, int64_t now)
{
    const nk__txmsg *m = &s->tx[q % s->window];
    if (m->acked)
        return 0;
    if (m->xmits == 0)
        return q < s->peer_limit;
    return m->due_ms <= now;
}

int nk__frames_pending(const nk_session *s, int64_t now)
{
    if (s->ack_pending || s->ping_pending || s->rekey_req_pending || s->close_pending)
        return 1;
    if (s->state != NK_SESSION_CONNECTED)
        return 0;
    for (uint64_t q = s->tx_base; q < s->tx_next; q++)
        if (msg_due(s, q, now))
            return 1;
    return 0;
}

size_t nk__frames_build(nk_session *s, int64_t now, uint8_t *out, size_t cap)
{
    nk__wr w;
    nk__wr_init(&w, out, cap);
    if (s->close_pending) {
        nk__wr_u8(&w, NK__FR_CLOSE);
        s->close_pending--;
        return w.len;
    }
    if (s->ack_pending || s->state == NK_SESSION_CONNECTED)
        write_ack(s, &w); /* piggybacked on everything: cheap and loss-tolerant */
    if (s->ping_pending) {
        nk__wr_u8(&w, NK__FR_PING);
        s->ping_pending = 0;
    }
    /* Once asked, every packet asks again until the epoch moves (loss-proof, 1 byte). */
    if (s->rekey_req_pending || (s->rekey_req_sent_epoch == s->cur.epoch + 1 && !s->cfg.initiator)) {
        nk__wr_u8(&w, NK__FR_REKEY_REQ);
        s->rekey_req_pending = 0;
    }
    if (s->state == NK_SESSION_CONNECTED) {
        for (uint64_t q = s->tx_base; q < s->tx_next; q++)
            if (msg_due(s, q, now) && !write_msg(s, &w, q, now))
                break;
    }
    if (w.err != 0)
        return 0;
    return w.len;
}

/* ---- timers -------------------------------------------------------------------------------- */

int64_t nk__rel_deadline(const nk_session *s)
{
    int64_t d = INT64_MAX;
    if (s->state != NK_SESSION_CONNECTED)
        return d;
    for (uint64_t q = s->tx_base; q < s->tx_next; q++) {
        const nk__txmsg *m = &s->tx[q % s->window];
        if (!m->acked && m->xmits > 0 && m->due_ms < d)
            d = m->due_ms;
        if (!m->acked && m->xmits > 0 && m->first_sent_ms + s->cfg.idle_timeout_ms < d)
            d = m->first_sent_ms + s->cfg.idle_timeout_ms;
    }
    /* Blocked by the peer's window with nothing in flight: probe it with a PING. */
    if (s->tx_base < s->tx_next && s->tx[s->tx_base % s->window].xmits == 0 && s->tx_base >= s->peer_limit &&
        s->last_tx_ms + s->rto_ms < d)
        d = s->last_tx_ms + s->rto_ms;
    return d;
}

void nk__rel_timeout(nk_session *s, int64_t now)
{
    if (s->state != NK_SESSION_CONNECTED)
        return;
    for (uint64_t q = s->tx_base; q < s->tx_next; q++) {
        const nk__txmsg *m = &s->tx[q % s->window];
        if (!m->acked && m->xmits > 0 && now - m->first_sent_ms >= s->cfg.idle_timeout_ms) {
            nk__session_fail(s, NK_ERR_TIMEOUT);
            return;
        }
    }
    if (s->tx_base < s->tx_next && s->tx[s->tx_base % s->window].xmits == 0 && s->tx_base >= s->peer_limit &&
        now >= s->last_tx_ms + s->rto_ms)
        s->ping_pending = 1;
}
