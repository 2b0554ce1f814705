/*
 * natkit: one STUN client transaction (RFC 8489 section 6.2), sans-I/O.
 * Over UDP the request is sent at 0, RTO, 3 RTO, 7 RTO, ... (the interval
 * doubles, up to max_rto_ms when that is set), Rc sends in all, and the
 * transaction fails Rm * RTO after the last one. Over a stream it is sent
 * once and fails after Ti.
 */
#include <string.h>

#include "cursor.h"
#include "natkit/stun_client.h"

static int64_t interval_after_send(const nk_stun_txn *t)
{
    if (t->transport != NK_TRANSPORT_UDP)
        return NK_STUN_TI_MS;
    if (t->sends >= t->rc)
        return (int64_t)t->rm * t->rto_ms;
    int64_t next = (int64_t)t->rto_ms << (t->sends - 1 < 20 ? t->sends - 1 : 20);
    return t->max_rto_ms > 0 && next > t->max_rto_ms ? t->max_rto_ms : next;
}

int nk_stun_txn_start(nk_stun_txn *t, int64_t now_ms, const nk_addr *server, uint8_t transport,
                      const uint8_t *request, size_t len, int64_t rto_ms, int rc, int rm)
{
    if (len < NK_STUN_HEADER_SIZE || len > sizeof(t->request) || server == NULL || rto_ms < 0 || rc < 0 ||
        rm < 0)
        return NK_ERR_INVAL;
    memset(t, 0, sizeof(*t));
    t->server = *server;
    t->transport = transport;
    t->rto_ms = rto_ms > 0 ? rto_ms : NK_STUN_RTO_MS;
    t->rc = rc > 0 ? rc : NK_STUN_RC;
    t->rm = rm > 0 ? rm : NK_STUN_RM;
    memcpy(t->tid, request + 8, NK_STUN_TID_SIZE);
    memcpy(t->request, request, len);
    t->request_len = len;
    t->state = NK_STUN_TXN_RUNNING;
    t->pending_send = 1;
    t->started_ms = now_ms;
    t->deadline_ms = now_ms;
    return 0;
}

int nk_stun_txn_poll_transmit(nk_stun_txn *t, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    if (t->state != NK_STUN_TXN_RUNNING || !t->pending_send)
        return NK_ERR_AGAIN;
    if (cap < t->request_len)
        return NK_ERR_NOBUFS;
    memcpy(buf, t->request, t->request_len);
    memset(out, 0, sizeof(*out));
    out->to = t->server;
    out->transport = t->transport;
    out->len = t->request_len;
    t->pending_send = 0;
    t->sends++;
    t->last_send_ms = now_ms;
    t->deadline_ms = now_ms + interval_after_send(t);
    return 0;
}

void nk_stun_txn_handle_timeout(nk_stun_txn *t, int64_t now_ms)
{
    if (t->state != NK_STUN_TXN_RUNNING || t->pending_send || now_ms < t->deadline_ms)
        return;
    if (t->transport == NK_TRANSPORT_UDP && t->sends < t->rc) {
        t->pending_send = 1;
        t->deadline_ms = now_ms;
        return;
    }
    t->state = NK_STUN_TXN_TIMEOUT;
}

int nk_stun_txn_handle_response(nk_stun_txn *t, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t n)
{
    if (t->state != NK_STUN_TXN_RUNNING || n < NK_STUN_HEADER_SIZE)
        return NK_ERR_NOT_FOUND;
    if (memcmp(p + 8, t->tid, NK_STUN_TID_SIZE) != 0)
        return NK_ERR_NOT_FOUND; /* cheap reject before a full decode */
    nk_stun_msg m;
    int rc = nk_stun_decode(&m, p, n, 0);
    if (rc != 0)
        return rc;
    uint16_t cls = nk_stun_class(m.type);
    uint16_t method = nk_stun_method(m.type);
    if ((cls != NK_STUN_SUCCESS && cls != NK_STUN_ERROR) ||
        method != nk_stun_method(nk__load_u16(t->request)))
        return NK_ERR_NOT_FOUND;
    if (n > sizeof(t->response))
        return NK_ERR_MALFORMED;
    memcpy(t->response, p, n);
    t->response_len = n;
    t->response_from = *from;
    /* Karn: with one send the RTT is exact; after retransmissions measure from the last send. */
    t->rtt_ms = now_ms - (t->sends <= 1 ? t->started_ms : t->last_send_ms);
    t->state = NK_STUN_TXN_DONE;
    return 0;
}

int64_t nk_stun_txn_next_deadline(const nk_stun_txn *t)
{
    return t->state == NK_STUN_TXN_RUNNING ? t->deadline_ms : NK_DEADLINE_NONE;
}
