/*
 * natkit: the UDP control exchange of the TCP upgrade (sans-I/O). See
 * include/natkit/tcp.h and docs/internals/tcp-upgrade.md.
 *
 * Message: 0xA7 || type (1) || id (u32) || body.
 *   ANNOUNCE 1: token (16) || addr (19: nk_addr_wire_put's family (0, 4 or 6) || port (u16) ||
 *               ip (16)); family 0 is "my UDP IP", the port is never 0
 *   ACK      2: the acknowledged type (1)
 *   RESULT   3: status (1): 0 connected, else the dialer's -error
 *   SIMOPEN  4: the body of ANNOUNCE; the address is the sender's own (predicted public)
 *               TCP endpoint, and both sides connect to each other at once (TCP
 *               simultaneous open): the announcer when the ACK arrives, the other
 *               side when the SIMOPEN does (plus the caller's half-RTT delay)
 * One reliable message is outstanding at a time (resent, RTO doubling to 2 s,
 * until its ACK or the timeout); ACKs answer every copy, duplicates make no event.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "natkit/tcp.h"
#include "random.h"
#include "ring.h"

#define MAGIC        0xA7
#define T_ANNOUNCE   1
#define T_ACK        2
#define T_RESULT     3
#define T_SIMOPEN    4
#define MAX_RTO_MS   2000
#define MAX_ACKS     8
#define MAX_EVENTS   8

typedef struct pending_ack {
    uint8_t type;
    uint32_t id;
} pending_ack;

struct nk_upgrade {
    nk_upgrade_config cfg;
    uint32_t next_id;
    /* the one reliable message in flight */
    uint8_t msg[NK_UPGRADE_MAX_MESSAGE];
    size_t msg_len;
    uint8_t msg_type;
    uint32_t msg_id;
    int64_t first_ms, next_ms, rto_ms;
    uint32_t xmits;
    /* acks to send */
    pending_ack acks[MAX_ACKS];
    unsigned nacks;
    /* what was received (duplicates make no second event) */
    uint32_t last_announce_id, last_result_id;
    uint8_t token[NK_TCP_TOKEN_LEN];
    nk_upgrade_event ev_slots[MAX_EVENTS];
    nk__ring events;         /* over ev_slots */
    nk_upgrade_stats_t stats;
};

static void push_event(nk_upgrade *u, const nk_upgrade_event *ev)
{
    (void)nk__ring_push(&u->events, ev); /* full: the oldest is kept; callers drain after every call */
}

static void simple_event(nk_upgrade *u, int type, int err)
{
    nk_upgrade_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.err = err;
    memcpy(ev.token, u->token, NK_TCP_TOKEN_LEN);
    push_event(u, &ev);
}

int nk_upgrade_new(nk_upgrade **out, const nk_upgrade_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->rto_ms < 0 || cfg->timeout_ms < 0)
        return NK_ERR_INVAL;
    nk_upgrade *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NK_ERR_NOMEM;
    u->cfg = *cfg;
    nk__ring_init(&u->events, u->ev_slots, sizeof(u->ev_slots[0]), MAX_EVENTS);
    if (u->cfg.rto_ms == 0)
        u->cfg.rto_ms = 250;
    if (u->cfg.timeout_ms == 0)
        u->cfg.timeout_ms = 15000;
    u->next_id = 1;
    *out = u;
    return 0;
}

void nk_upgrade_free(nk_upgrade *u)
{
    if (u == NULL)
        return;
    sodium_memzero(u, sizeof(*u));
    free(u);
}

static size_t put_header(uint8_t *p, uint8_t type, uint32_t id)
{
    p[0] = MAGIC;
    p[1] = type;
    p[2] = (uint8_t)(id >> 24);
    p[3] = (uint8_t)(id >> 16);
    p[4] = (uint8_t)(id >> 8);
    p[5] = (uint8_t)id;
    return 6;
}

static void start_reliable(nk_upgrade *u, int64_t now, uint8_t type, size_t len)
{
    u->msg_type = type;
    u->msg_len = len;
    u->first_ms = now;
    u->next_ms = now; /* at once */
    u->rto_ms = u->cfg.rto_ms;
    u->xmits = 0;
}

static int announce(nk_upgrade *u, int64_t now_ms, const nk_addr *tcp_addr, uint8_t type)
{
    if (u == NULL || tcp_addr == NULL || tcp_addr->port == 0)
        return NK_ERR_INVAL;
    if (!u->cfg.acceptor || u->msg_len > 0)
        return NK_ERR_STATE;
    if (tcp_addr->family != NK_AF_NONE && tcp_addr->family != NK_AF_INET && tcp_addr->family != NK_AF_INET6)
        return NK_ERR_INVAL;
    nk__random(u->cfg.random, u->cfg.random_ctx, u->token, NK_TCP_TOKEN_LEN);
    u->msg_id = u->next_id++;
    size_t n = put_header(u->msg, type, u->msg_id);
    memcpy(u->msg + n, u->token, NK_TCP_TOKEN_LEN);
    n += NK_TCP_TOKEN_LEN;
    nk_addr_wire_put(u->msg + n, tcp_addr);
    n += NK_ADDR_WIRE_SIZE;
    start_reliable(u, now_ms, type, n);
    return 0;
}

int nk_upgrade_announce(nk_upgrade *u, int64_t now_ms, const nk_addr *tcp_addr)
{
    return announce(u, now_ms, tcp_addr, T_ANNOUNCE);
}

int nk_upgrade_simopen(nk_upgrade *u, int64_t now_ms, const nk_addr *tcp_addr)
{
    return announce(u, now_ms, tcp_addr, T_SIMOPEN);
}

int nk_upgrade_report(nk_upgrade *u, int64_t now_ms, int err)
{
    if (u == NULL || err > 0)
        return NK_ERR_INVAL;
    if (u->cfg.acceptor || u->last_announce_id == 0 || u->msg_len > 0)
        return NK_ERR_STATE;
    u->msg_id = u->last_announce_id;
    size_t n = put_header(u->msg, T_RESULT, u->msg_id);
    u->msg[n++] = (uint8_t)(err < -255 ? 255 : -err);
    start_reliable(u, now_ms, T_RESULT, n);
    return 0;
}

static void queue_ack(nk_upgrade *u, uint8_t type, uint32_t id)
{
    for (unsigned i = 0; i < u->nacks; i++)
        if (u->acks[i].type == type && u->acks[i].id == id)
            return;
    if (u->nacks < MAX_ACKS)
        u->acks[u->nacks++] = (pending_ack){type, id};
}

static int parse_announce(const uint8_t **src, const uint8_t *end, nk_upgrade_event *ev)
{
    const uint8_t *token, *addr;
    memset(ev, 0, sizeof(*ev));
    if (nk__rd_bytes(src, end, NK_TCP_TOKEN_LEN, &token) != 0 ||
        nk__rd_bytes(src, end, NK_ADDR_WIRE_SIZE, &addr) != 0 || *src != end ||
        nk_addr_wire_get(&ev->addr, addr) != 0 || ev->addr.port == 0)
        return NK_ERR_MALFORMED; /* family 0 is fine ("my UDP IP"), port 0 is not */
    ev->type = NK_UPGRADE_EV_ANNOUNCED;
    memcpy(ev->token, token, NK_TCP_TOKEN_LEN);
    return 0;
}

static int on_announce(nk_upgrade *u, uint8_t type, uint32_t id, const uint8_t **src, const uint8_t *end)
{
    nk_upgrade_event ev;
    if (u->cfg.acceptor || parse_announce(src, end, &ev) != 0)
        return NK_ERR_MALFORMED;
    ev.simultaneous = type == T_SIMOPEN;
    queue_ack(u, type, id);
    if (id <= u->last_announce_id) {
        u->stats.rx_duplicates++;
        return NK_ERR_AGAIN;
    }
    u->last_announce_id = id;
    memcpy(u->token, ev.token, NK_TCP_TOKEN_LEN);
    push_event(u, &ev);
    return 0;
}

static int on_ack(nk_upgrade *u, uint32_t id, const uint8_t **src, const uint8_t *end)
{
    uint8_t type;
    if (nk__rd_u8(src, end, &type) != 0 || *src != end)
        return NK_ERR_MALFORMED;
    if (u->msg_len == 0 || type != u->msg_type || id != u->msg_id) {
        u->stats.rx_duplicates++;
        return NK_ERR_AGAIN;
    }
    u->msg_len = 0;
    if (type == T_ANNOUNCE || type == T_SIMOPEN)
        simple_event(u, NK_UPGRADE_EV_ACKED, 0);
    return 0;
}

static int on_result(nk_upgrade *u, uint32_t id, const uint8_t **src, const uint8_t *end)
{
    uint8_t status;
    if (!u->cfg.acceptor || nk__rd_u8(src, end, &status) != 0 || *src != end || id == 0 || id >= u->next_id)
        return NK_ERR_MALFORMED;
    queue_ack(u, T_RESULT, id);
    if (id <= u->last_result_id) {
        u->stats.rx_duplicates++;
        return NK_ERR_AGAIN;
    }
    u->last_result_id = id;
    if (u->msg_len > 0 && (u->msg_type == T_ANNOUNCE || u->msg_type == T_SIMOPEN) && u->msg_id == id) {
        u->msg_len = 0; /* a RESULT implies the ANNOUNCE arrived */
        simple_event(u, NK_UPGRADE_EV_ACKED, 0);
    }
    simple_event(u, NK_UPGRADE_EV_RESULT, -(int)status);
    return 0;
}

int nk_upgrade_handle_message(nk_upgrade *u, int64_t now_ms, const uint8_t *p, size_t n)
{
    const uint8_t *src = p, *end = p + n;
    uint8_t magic, type;
    uint32_t id;
    int rc;
    (void)now_ms;
    if (u == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (nk__rd_u8(&src, end, &magic) != 0 || magic != MAGIC || nk__rd_u8(&src, end, &type) != 0 ||
        nk__rd_u32(&src, end, &id) != 0 || id == 0) {
        rc = NK_ERR_MALFORMED;
        goto Exit;
    }
    switch (type) {
    case T_ANNOUNCE:
    case T_SIMOPEN:
        rc = on_announce(u, type, id, &src, end);
        break;
    case T_ACK:
        rc = on_ack(u, id, &src, end);
        break;
    case T_RESULT:
        rc = on_result(u, id, &src, end);
        break;
    default:
        rc = NK_ERR_MALFORMED;
        break;
    }
Exit:
    if (rc == NK_ERR_MALFORMED)
        u->stats.rx_malformed++;
    else
        u->stats.rx_messages++;
    return rc;
}

void nk_upgrade_handle_timeout(nk_upgrade *u, int64_t now_ms)
{
    if (u->msg_len > 0 && now_ms - u->first_ms >= u->cfg.timeout_ms) {
        u->msg_len = 0;
        simple_event(u, NK_UPGRADE_EV_FAILED, NK_ERR_TIMEOUT);
    }
}

int nk_upgrade_poll_message(nk_upgrade *u, int64_t now_ms, uint8_t *buf, size_t cap)
{
    if (u == NULL || buf == NULL)
        return NK_ERR_INVAL;
    if (cap < NK_UPGRADE_MAX_MESSAGE)
        return NK_ERR_NOBUFS;
    nk_upgrade_handle_timeout(u, now_ms);
    if (u->nacks > 0) {
        pending_ack a = u->acks[0];
        memmove(u->acks, u->acks + 1, (u->nacks - 1) * sizeof(u->acks[0]));
        u->nacks--;
        size_t n = put_header(buf, T_ACK, a.id);
        buf[n++] = a.type;
        u->stats.tx_messages++;
        return (int)n;
    }
    if (u->msg_len == 0 || now_ms < u->next_ms)
        return NK_ERR_AGAIN;
    if (u->xmits > 0) {
        u->stats.retransmits++;
        u->rto_ms = u->rto_ms * 2 > MAX_RTO_MS ? MAX_RTO_MS : u->rto_ms * 2;
    }
    u->xmits++;
    u->next_ms = now_ms + u->rto_ms;
    memcpy(buf, u->msg, u->msg_len);
    u->stats.tx_messages++;
    return (int)u->msg_len;
}

int64_t nk_upgrade_next_deadline(const nk_upgrade *u)
{
    if (u->nacks > 0)
        return 0;
    if (u->msg_len == 0)
        return INT64_MAX;
    int64_t giveup = u->first_ms + u->cfg.timeout_ms;
    return u->next_ms < giveup ? u->next_ms : giveup;
}

int nk_upgrade_poll_event(nk_upgrade *u, nk_upgrade_event *ev)
{
    return nk__ring_pop(&u->events, ev);
}

const uint8_t *nk_upgrade_token(const nk_upgrade *u)
{
    return u->token;
}

void nk_upgrade_stats(const nk_upgrade *u, nk_upgrade_stats_t *st)
{
    *st = u->stats;
}

int nk_upgrade_is_message(const uint8_t *p, size_t n)
{
    return n >= 6 && p[0] == MAGIC;
}
