/*
 * natkit hub: the sans-I/O client core for one hub connection. Answers the
 * challenge with a signed proof, queues routed messages, pings for RTT and
 * keepalive, and turns what the hub sends into events. See
 * include/natkit/hub.h and docs/internals/hub.md.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "internal.h"

#define PING_SLOTS 8

struct nk_hub_client {
    nk_hub_client_config cfg;
    nk_identity ident;
    nk_hub_client_state_t state;
    int register_sent;
    int heard;                   /* a CHALLENGE (or CLOSE) came on this connection: it is a hub */
    int64_t started_ms;          /* nk_hub_client_register */
    uint8_t first[24];           /* the first bytes received (before heard): for the "not a hub" reason */
    size_t first_len;
    int close_code;
    nk__hub_fifo rx, tx, events; /* events: nk_hub_event records, each followed by its payload */
    int64_t last_rx_ms, next_ping_ms;
    uint64_t ping_seq;
    int64_t ping_sent[PING_SLOTS];
    int64_t srtt, last_rtt;
    size_t hub_max_payload;
    uint64_t events_dropped;
};

int nk_hub_client_new(nk_hub_client **out, const nk_hub_client_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->identity == NULL || sodium_init() < 0)
        return NK_ERR_INVAL;
    nk_hub_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NK_ERR_NOMEM;
    c->cfg = *cfg;
    c->ident = *cfg->identity;
    c->cfg.identity = NULL;
    if (c->cfg.ping_interval_ms <= 0)
        c->cfg.ping_interval_ms = 15000;
    if (c->cfg.timeout_ms <= 0)
        c->cfg.timeout_ms = 45000;
    if (c->cfg.event_cap == 0)
        c->cfg.event_cap = (size_t)256 * 1024;
    if (c->cfg.queue_cap == 0)
        c->cfg.queue_cap = (size_t)256 * 1024;
    if (c->cfg.challenge_ms <= 0)
        c->cfg.challenge_ms = 5000;
    c->srtt = c->last_rtt = -1;
    c->hub_max_payload = NK_HUB_MAX_PAYLOAD;
    *out = c;
    return 0;
}

void nk_hub_client_free(nk_hub_client *c)
{
    if (c == NULL)
        return;
    nk_identity_wipe(&c->ident);
    nk__hub_fifo_free(&c->rx);
    nk__hub_fifo_free(&c->tx);
    nk__hub_fifo_free(&c->events);
    free(c);
}

int nk_hub_client_register(nk_hub_client *c, int64_t now_ms)
{
    if (c == NULL)
        return NK_ERR_INVAL;
    nk__hub_fifo_consume(&c->rx, c->rx.len);
    nk__hub_fifo_consume(&c->tx, c->tx.len);
    c->state = NK_HUB_CLIENT_CHALLENGED;
    c->register_sent = 0;
    c->heard = 0;
    c->first_len = 0;
    c->started_ms = now_ms;
    c->close_code = 0;
    c->last_rx_ms = now_ms;
    c->next_ping_ms = now_ms + c->cfg.ping_interval_ms;
    for (int i = 0; i < PING_SLOTS; i++)
        c->ping_sent[i] = -1;
    return 0;
}

int nk_hub_client_set_hub(nk_hub_client *c, const nk_addr *hub)
{
    if (c == NULL || hub == NULL)
        return NK_ERR_INVAL;
    if (c->state == NK_HUB_CLIENT_CHALLENGED || c->state == NK_HUB_CLIENT_REGISTERED)
        return NK_ERR_STATE;
    c->cfg.hub = *hub;
    return 0;
}

/* ---- events ---- */

static void push_event(nk_hub_client *c, const nk_hub_event *ev, const uint8_t *data, size_t len, int droppable)
{
    size_t need = sizeof(*ev) + len;
    size_t cap = droppable ? c->cfg.event_cap : 2 * c->cfg.event_cap;
    if (c->events.len + need > cap) {
        c->events_dropped++;
        return;
    }
    nk_hub_event e = *ev;
    e.len = len;
    uint8_t *dst = nk__hub_fifo_reserve(&c->events, need);
    if (dst == NULL) {
        c->events_dropped++;
        return;
    }
    memcpy(dst, &e, sizeof(e));
    if (len > 0)
        memcpy(dst + sizeof(e), data, len);
}

static void new_event(nk_hub_event *ev, nk_hub_event_type type)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->retry_ms = -1;
}

int nk_hub_client_poll_event(nk_hub_client *c, nk_hub_event *ev, uint8_t *buf, size_t cap)
{
    if (c->events.len < sizeof(*ev))
        return NK_ERR_AGAIN;
    memcpy(ev, nk__hub_fifo_data(&c->events), sizeof(*ev));
    if (ev->len > cap)
        return NK_ERR_NOBUFS;
    if (ev->len > 0)
        memcpy(buf, nk__hub_fifo_data(&c->events) + sizeof(*ev), ev->len);
    nk__hub_fifo_consume(&c->events, sizeof(*ev) + ev->len);
    return 0;
}

/* ---- closing ---- */

static void set_closed_retry(nk_hub_client *c, int code, const char *reason, size_t reason_len, int64_t retry_ms)
{
    if (c->state == NK_HUB_CLIENT_CLOSED)
        return;
    c->state = NK_HUB_CLIENT_CLOSED;
    c->close_code = code;
    nk_hub_event ev;
    new_event(&ev, NK_HUB_EV_CLOSED);
    ev.code = code;
    ev.retry_ms = retry_ms;
    if (reason_len > NK_HUB_MAX_REASON)
        reason_len = NK_HUB_MAX_REASON;
    memcpy(ev.reason, reason, reason_len);
    ev.reason[reason_len] = '\0';
    push_event(c, &ev, NULL, 0, 0);
}

static void set_closed(nk_hub_client *c, int code, const char *reason, size_t reason_len)
{
    set_closed_retry(c, code, reason, reason_len, -1);
}

/* The other end is not a hub: nothing is sent to it (it would not understand). */
static void not_a_hub(nk_hub_client *c, const char *why)
{
    nk__hub_fifo_consume(&c->tx, c->tx.len);
    set_closed(c, NK_HUB_CLOSE_NOT_HUB, why, strlen(why));
}

/* "it sent "HTTP/1.1 400 Bad"": the first bytes, printable ASCII only. */
static void not_a_hub_bytes(nk_hub_client *c, const uint8_t *p, size_t n)
{
    char why[64];
    size_t lim = n < 24 ? n : 24;
    size_t k = (size_t)snprintf(why, sizeof(why), "it sent \"");
    for (size_t i = 0; i < lim && k < sizeof(why) - 3; i++)
        why[k++] = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' ? (char)p[i] : '.';
    why[k++] = '"';
    why[k] = '\0';
    not_a_hub(c, why);
}

/* We end the connection: tell the hub why (best effort), then CLOSED. */
static void close_local(nk_hub_client *c, int code)
{
    if (c->state == NK_HUB_CLIENT_CLOSED)
        return;
    uint8_t hdr[2];
    nk__store_u16(hdr, (uint16_t)code);
    const char *reason = nk_hub_close_reason(code);
    (void)nk__hub_fifo_frame(&c->tx, NK_HUB_T_CLOSE, hdr, 2, reason, strlen(reason));
    set_closed(c, code, reason, strlen(reason));
}

void nk_hub_client_close(nk_hub_client *c, int64_t now_ms)
{
    if (c != NULL && c->state != NK_HUB_CLIENT_IDLE)
        close_local(c, NK_HUB_CLOSE_NORMAL);
}

void nk_hub_client_handle_closed(nk_hub_client *c, int64_t now_ms)
{
    if (c->state == NK_HUB_CLIENT_CLOSED || c->state == NK_HUB_CLIENT_IDLE)
        return;
    if (!c->heard) {
        not_a_hub(c, "it closed the connection without a hub challenge");
        return;
    }
    const char *r = "connection to the hub lost";
    set_closed(c, NK_HUB_CLOSE_NORMAL, r, strlen(r));
    nk__hub_fifo_consume(&c->tx, c->tx.len);
}

/* ---- sending ---- */

static int queue_frame(nk_hub_client *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    if (c->tx.len + NK_HUB_HEADER_SIZE + alen + blen > c->cfg.queue_cap)
        return NK_ERR_LIMIT;
    return nk__hub_fifo_frame(&c->tx, type, a, alen, b, blen);
}

int nk_hub_client_send(nk_hub_client *c, int64_t now_ms, uint8_t type, const nk_peer_id *peer,
                       const uint8_t *payload, size_t len)
{
    if (c == NULL || peer == NULL || !nk_hub_type_is_routed(type) || len > c->hub_max_payload ||
        (len > 0 && payload == NULL))
        return NK_ERR_INVAL;
    if (c->state != NK_HUB_CLIENT_REGISTERED)
        return NK_ERR_STATE;
    return queue_frame(c, type, peer->key, NK_PEER_ID_SIZE, payload, len);
}

int nk_hub_client_report(nk_hub_client *c, int64_t now_ms, const nk_hub_report *r)
{
    uint8_t body[NK_HUB_REPORT_SIZE];
    if (c == NULL || r == NULL)
        return NK_ERR_INVAL;
    if (c->state != NK_HUB_CLIENT_REGISTERED)
        return NK_ERR_STATE;
    nk_hub_report_encode(body, r);
    return queue_frame(c, NK_HUB_T_REPORT, body, sizeof(body), NULL, 0);
}

int nk_hub_client_ping(nk_hub_client *c, int64_t now_ms)
{
    if (c == NULL)
        return NK_ERR_INVAL;
    if (c->state != NK_HUB_CLIENT_REGISTERED && c->state != NK_HUB_CLIENT_CHALLENGED)
        return NK_ERR_STATE;
    uint8_t token[8];
    uint64_t seq = ++c->ping_seq;
    nk__store_u32(token, (uint32_t)(seq >> 32));
    nk__store_u32(token + 4, (uint32_t)seq);
    int rc = queue_frame(c, NK_HUB_T_PING, token, sizeof(token), NULL, 0);
    if (rc == 0)
        c->ping_sent[seq % PING_SLOTS] = now_ms;
    c->next_ping_ms = now_ms + c->cfg.ping_interval_ms;
    return rc;
}

int nk_hub_client_poll_transmit(nk_hub_client *c, int64_t now_ms, uint8_t *buf, size_t cap)
{
    return (int)nk__hub_fifo_take(&c->tx, buf, cap);
}

/* ---- receiving ---- */

static void on_challenge(nk_hub_client *c, const nk_hub_frame *f)
{
    if (c->register_sent) {
        close_local(c, NK_HUB_CLOSE_PROTOCOL);
        return;
    }
    if (f->body[0] != NK_HUB_VERSION) {
        close_local(c, NK_HUB_CLOSE_VERSION);
        return;
    }
    uint8_t msg[NK_HUB_PROOF_MSG_SIZE];
    uint8_t body[1 + NK_PEER_ID_SIZE + NK_SIGNATURE_SIZE];
    int n = nk_hub_proof_message(msg, sizeof(msg), f->body + 1, &c->cfg.hub, &c->ident.id);
    body[0] = NK_HUB_VERSION;
    memcpy(body + 1, c->ident.id.key, NK_PEER_ID_SIZE);
    if (n < 0 || nk_identity_sign(&c->ident, msg, (size_t)n, body + 1 + NK_PEER_ID_SIZE) != 0) {
        close_local(c, NK_HUB_CLOSE_AUTH);
        return;
    }
    c->register_sent = 1;
    (void)nk__hub_fifo_frame(&c->tx, NK_HUB_T_REGISTER, body, sizeof(body), NULL, 0);
}

static void on_registered(nk_hub_client *c, const nk_hub_frame *f, int64_t now_ms)
{
    nk_hub_event ev;
    if (!c->register_sent || c->state != NK_HUB_CLIENT_CHALLENGED) {
        close_local(c, NK_HUB_CLOSE_PROTOCOL);
        return;
    }
    new_event(&ev, NK_HUB_EV_REGISTERED);
    (void)nk_addr_wire_get(&ev.addr, f->body); /* unset or unknown family: no address, still registered */
    size_t maxp = nk__load_u16(f->body + NK_ADDR_WIRE_SIZE);
    uint32_t idle = nk__load_u32(f->body + NK_ADDR_WIRE_SIZE + 2);
    c->hub_max_payload = maxp < NK_HUB_MAX_PAYLOAD ? maxp : NK_HUB_MAX_PAYLOAD;
    /* Ping often enough that the hub never sees us idle. */
    if (idle > 0 && (uint32_t)c->cfg.ping_interval_ms > idle / 3)
        c->cfg.ping_interval_ms = idle / 3 > 0 ? (int64_t)(idle / 3) : 1;
    c->state = NK_HUB_CLIENT_REGISTERED;
    c->next_ping_ms = now_ms; /* a first RTT sample right away */
    push_event(c, &ev, NULL, 0, 0);
}

static void on_pong(nk_hub_client *c, const nk_hub_frame *f, int64_t now_ms)
{
    uint64_t seq = (uint64_t)nk__load_u32(f->body) << 32 | nk__load_u32(f->body + 4);
    if (seq == 0 || seq > c->ping_seq || c->ping_seq - seq >= PING_SLOTS || c->ping_sent[seq % PING_SLOTS] < 0)
        return; /* not one of our recent pings */
    int64_t rtt = now_ms - c->ping_sent[seq % PING_SLOTS];
    c->ping_sent[seq % PING_SLOTS] = -1;
    if (rtt < 0)
        rtt = 0;
    c->last_rtt = rtt;
    c->srtt = c->srtt < 0 ? rtt : (7 * c->srtt + rtt) / 8;
    nk_hub_event ev;
    new_event(&ev, NK_HUB_EV_PONG);
    ev.rtt_ms = rtt;
    push_event(c, &ev, NULL, 0, 0);
}

static void on_routed(nk_hub_client *c, const nk_hub_frame *f)
{
    if (c->state != NK_HUB_CLIENT_REGISTERED) {
        close_local(c, NK_HUB_CLOSE_PROTOCOL);
        return;
    }
    nk_hub_event ev;
    new_event(&ev, NK_HUB_EV_MESSAGE);
    ev.msg_type = f->type;
    memcpy(ev.peer.key, f->body, NK_PEER_ID_SIZE);
    push_event(c, &ev, f->body + NK_PEER_ID_SIZE, f->len - NK_PEER_ID_SIZE, f->type == NK_HUB_T_RELAY);
}

static void on_unknown_peer(nk_hub_client *c, const nk_hub_frame *f)
{
    nk_hub_event ev;
    new_event(&ev, NK_HUB_EV_UNKNOWN_PEER);
    ev.msg_type = f->body[0];
    memcpy(ev.peer.key, f->body + 1, NK_PEER_ID_SIZE);
    push_event(c, &ev, NULL, 0, ev.msg_type == NK_HUB_T_RELAY);
}

typedef struct rx_ctx {
    nk_hub_client *c;
    int64_t now_ms;
    int bad_first; /* the first frame was not a hub's */
} rx_ctx;

static int on_frame(void *ctx, const nk_hub_frame *f)
{
    nk_hub_client *c = ((rx_ctx *)ctx)->c;
    int64_t now_ms = ((rx_ctx *)ctx)->now_ms;
    int rc = nk_hub_frame_check(f);
    if (!c->heard) { /* a hub speaks first, and with a CHALLENGE (or a CLOSE: full) */
        if (rc != 0 || (f->type != NK_HUB_T_CHALLENGE && f->type != NK_HUB_T_CLOSE)) {
            ((rx_ctx *)ctx)->bad_first = 1;
            return 1;
        }
        c->heard = 1;
    }
    if (rc == NK_ERR_NOT_FOUND && f->type >= 0x80)
        return 0;
    if (rc != 0) {
        close_local(c, NK_HUB_CLOSE_PROTOCOL);
        return 1;
    }
    switch (f->type) {
    case NK_HUB_T_CHALLENGE: on_challenge(c, f); break;
    case NK_HUB_T_REGISTERED: on_registered(c, f, now_ms); break;
    case NK_HUB_T_UNKNOWN_PEER: on_unknown_peer(c, f); break;
    case NK_HUB_T_PING: (void)queue_frame(c, NK_HUB_T_PONG, f->body, f->len, NULL, 0); break;
    case NK_HUB_T_PONG: on_pong(c, f, now_ms); break;
    case NK_HUB_T_REPORT: break; /* peer -> hub only: an extension, ignored like unknown ones */
    case NK_HUB_T_CLOSE: {
        nk_hub_close_info ci;
        if (nk_hub_close_decode(f->body, f->len, &ci) == 0)
            set_closed_retry(c, ci.code, ci.reason, strlen(ci.reason), ci.retry_ms);
        break;
    }
    default:
        if (nk_hub_type_is_routed(f->type))
            on_routed(c, f);
        else
            close_local(c, NK_HUB_CLOSE_PROTOCOL); /* REGISTER from a hub */
        break;
    }
    return c->state == NK_HUB_CLIENT_CLOSED;
}

int nk_hub_client_handle_bytes(nk_hub_client *c, int64_t now_ms, const uint8_t *p, size_t n)
{
    if (c->state == NK_HUB_CLIENT_CLOSED || c->state == NK_HUB_CLIENT_IDLE)
        return NK_ERR_CLOSED;
    c->last_rx_ms = now_ms;
    rx_ctx ctx = {c, now_ms, 0};
    for (size_t i = 0; !c->heard && i < n && c->first_len < sizeof(c->first); i++)
        c->first[c->first_len++] = p[i];
    int rc = nk__hub_split(&c->rx, NK_HUB_MAX_BODY, p, n, on_frame, &ctx);
    if (!c->heard && c->state != NK_HUB_CLIENT_CLOSED && (rc != 0 || ctx.bad_first))
        not_a_hub_bytes(c, c->first, c->first_len); /* its first bytes were no hub frame */
    else if (rc == NK_ERR_LIMIT)
        close_local(c, NK_HUB_CLOSE_TOO_LARGE);
    else if (rc != 0)
        close_local(c, NK_HUB_CLOSE_OVERFLOW);
    return c->state == NK_HUB_CLIENT_CLOSED ? NK_ERR_CLOSED : 0;
}

/* ---- time ---- */

void nk_hub_client_handle_timeout(nk_hub_client *c, int64_t now_ms)
{
    if (c->state != NK_HUB_CLIENT_CHALLENGED && c->state != NK_HUB_CLIENT_REGISTERED)
        return;
    if (!c->heard && now_ms - c->started_ms >= c->cfg.challenge_ms) {
        char why[64];
        snprintf(why, sizeof(why), "it sent no hub challenge within %.1f s", (double)c->cfg.challenge_ms / 1000.0);
        not_a_hub(c, why);
        return;
    }
    if (now_ms - c->last_rx_ms >= c->cfg.timeout_ms) {
        const char *r = "hub silent (timeout)";
        set_closed(c, NK_HUB_CLOSE_IDLE, r, strlen(r));
        return;
    }
    if (c->state == NK_HUB_CLIENT_REGISTERED && now_ms >= c->next_ping_ms)
        (void)nk_hub_client_ping(c, now_ms);
}

int64_t nk_hub_client_next_deadline(const nk_hub_client *c)
{
    if (c->state != NK_HUB_CLIENT_CHALLENGED && c->state != NK_HUB_CLIENT_REGISTERED)
        return NK_DEADLINE_NONE;
    int64_t d = c->last_rx_ms + c->cfg.timeout_ms;
    if (!c->heard && c->started_ms + c->cfg.challenge_ms < d)
        d = c->started_ms + c->cfg.challenge_ms;
    if (c->state == NK_HUB_CLIENT_REGISTERED && c->next_ping_ms < d)
        d = c->next_ping_ms;
    return d;
}

/* ---- getters ---- */

nk_hub_client_state_t nk_hub_client_state(const nk_hub_client *c) { return c->state; }
int64_t nk_hub_client_rtt(const nk_hub_client *c) { return c->srtt; }
int64_t nk_hub_client_last_rtt(const nk_hub_client *c) { return c->last_rtt; }
int nk_hub_client_close_code(const nk_hub_client *c) { return c->close_code; }
const nk_peer_id *nk_hub_client_id(const nk_hub_client *c) { return &c->ident.id; }
size_t nk_hub_client_pending(const nk_hub_client *c) { return c->tx.len; }
