/*
 * natkit: the connectivity agent's API: creation, the queues it hands its
 * output through, input dispatch and deadlines. The work is in
 * agent_candidates.c, agent_probe.c and agent_path.c.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "random.h"

#define DEFAULT_CHECK_MS     20
#define DEFAULT_KEEPALIVE_MS 25000
#define DEFAULT_KA_FAILURES  3
#define DEFAULT_RETRY_MS     5000
#define DEFAULT_TIMEOUT_MS   30000

const char *nk_path_kind_name(nk_path_kind k)
{
    switch (k) {
    case NK_PATH_DIRECT: return "direct";
    case NK_PATH_TURN: return "turn";
    case NK_PATH_HUB: return "hub";
    default: return "none";
    }
}

void nk__ag_random(nk_agent *a, uint8_t *buf, size_t n)
{
    nk__random(a->random, a->random_ctx, buf, n);
}

/* ---- queues ------------------------------------------------------------------------ */

/* Appends an entry of size bytes to ring r: the new entry, or NULL (full or out of memory:
 * dropped and counted). */
static void *queue_entry(nk_agent *a, nk__ring *r, size_t size)
{
    void **slot = nk__ring_full(r) ? NULL : nk__ring_emplace(r);
    void *e = slot != NULL ? malloc(size) : NULL;
    if (e == NULL) {
        if (slot != NULL)
            r->count--; /* give the slot back */
        a->stats.dropped_limit++;
        return NULL;
    }
    *slot = e;
    return e;
}

/* The oldest entry of r, or NULL. */
static void *queue_peek(const nk__ring *r)
{
    void **slot = nk__ring_peek(r);
    return slot != NULL ? *slot : NULL;
}

/* Takes the oldest entry off r (the caller frees it). */
static void *queue_take(nk__ring *r)
{
    void *e = queue_peek(r);
    (void)nk__ring_pop(r, NULL);
    return e;
}

static void queue_clear(nk__ring *r)
{
    while (nk__ring_count(r) > 0)
        free(queue_take(r));
}

int nk__ag_queue_tx(nk_agent *a, const nk_addr *to, const uint8_t *p, size_t n)
{
    return nk__ag_queue_tx_from(a, NULL, to, p, n);
}

/* from: an extra socket's address (NULL: the main socket). */
int nk__ag_queue_tx_from(nk_agent *a, const nk_addr *from, const nk_addr *to, const uint8_t *p, size_t n)
{
    if (n > NK__AG_TX_MAX) {
        a->stats.dropped_limit++;
        return NK_ERR_AGAIN;
    }
    nk__txslot *s = queue_entry(a, &a->tx, sizeof(*s) + n);
    if (s == NULL)
        return NK_ERR_AGAIN;
    s->to = *to;
    if (from != NULL)
        s->from = *from;
    else
        memset(&s->from, 0, sizeof(s->from));
    s->len = n;
    memcpy(s->data, p, n);
    return 0;
}

int nk__ag_queue_signal(nk_agent *a, uint8_t type, const uint8_t *p, size_t n)
{
    if (n > NK_HUB_MAX_PAYLOAD) {
        a->stats.dropped_limit++;
        return NK_ERR_AGAIN;
    }
    nk__sigslot *s = queue_entry(a, &a->sig, sizeof(*s) + n);
    if (s == NULL)
        return NK_ERR_AGAIN;
    s->type = type;
    s->len = n;
    memcpy(s->data, p, n);
    return 0;
}

/* A zeroed event entry of type with room for datalen bytes of data, or NULL (full: dropped and
 * counted). */
nk__evslot *nk__ag_queue_event(nk_agent *a, nk_agent_event_type type, size_t datalen)
{
    /* Data never takes the last slots: a PATH or FAILED event is never lost to a data burst. */
    if ((type == NK_AGENT_EV_DATA && nk__ring_count(&a->ev) >= NK__AG_EVQ - 4) || datalen > NK_AGENT_MAX_DATA) {
        a->stats.dropped_limit++;
        return NULL;
    }
    nk__evslot *s = queue_entry(a, &a->ev, sizeof(*s) + datalen);
    if (s == NULL)
        return NULL;
    memset(&s->ev, 0, sizeof(s->ev));
    s->ev.type = type;
    return s;
}

/* ---- life cycle ---------------------------------------------------------------------- */

static int64_t pick(int64_t v, int64_t def)
{
    return v > 0 ? v : def;
}

static int copy_config(nk_agent *a, const nk_agent_config *cfg)
{
    a->identity = *cfg->identity;
    a->peer = cfg->peer;
    a->controlling = cfg->controlling != 0;
    a->check_ms = pick(cfg->check_interval_ms, DEFAULT_CHECK_MS);
    a->keepalive_ms = pick(cfg->keepalive_ms, DEFAULT_KEEPALIVE_MS);
    if (a->keepalive_ms > DEFAULT_KEEPALIVE_MS)
        a->keepalive_ms = DEFAULT_KEEPALIVE_MS;
    a->ka_failures = (int)pick(cfg->keepalive_failures, DEFAULT_KA_FAILURES);
    a->retry_ms = pick(cfg->direct_retry_ms, DEFAULT_RETRY_MS);
    a->timeout_ms = pick(cfg->connect_timeout_ms, DEFAULT_TIMEOUT_MS);
    a->random = cfg->random;
    a->random_ctx = cfg->random_ctx;
    return nk__ag_derive_keys(a);
}

static int make_helpers(nk_agent *a, const nk_agent_config *cfg)
{
    a->nstun = cfg->nstun < NK__AG_MAX_STUN ? cfg->nstun : NK__AG_MAX_STUN;
    if (a->nstun > 0)
        memcpy(a->stun_servers, cfg->stun, a->nstun * sizeof(nk_addr));
    if (cfg->turn != NULL) {
        nk_turn_client_config tc = *cfg->turn;
        if (tc.random == NULL) {
            tc.random = cfg->random;
            tc.random_ctx = cfg->random_ctx;
        }
        a->turn_server = tc.server;
        a->turn_family = tc.family == NK_AF_INET6 ? NK_AF_INET6 : NK_AF_INET;
        a->turn_owned = 1;
        return nk_turn_client_new(&a->turn, &tc);
    }
    a->turn = cfg->turn_shared;
    a->turn_family = NK_AF_INET; /* until the shared allocation says otherwise */
    return 0;
}

int nk_agent_new(nk_agent **out, const nk_agent_config *cfg, int64_t now_ms)
{
    if (out == NULL || cfg == NULL || cfg->identity == NULL || (cfg->nhost > 0 && cfg->host == NULL) ||
        (cfg->nstun > 0 && cfg->stun == NULL) || (cfg->nsrflx > 0 && cfg->srflx == NULL))
        return NK_ERR_INVAL;
    if (sodium_init() < 0)
        return NK_ERR_SYSTEM;
    nk_agent *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NK_ERR_NOMEM;
    nk__ring_init(&a->tx, a->tx_slots, sizeof(a->tx_slots[0]), NK__AG_TXQ);
    nk__ring_init(&a->sig, a->sig_slots, sizeof(a->sig_slots[0]), NK__AG_SIGQ);
    nk__ring_init(&a->ev, a->ev_slots, sizeof(a->ev_slots[0]), NK__AG_EVQ);
    a->ev_out = NULL;
    a->started_ms = now_ms;
    a->none_since = now_ms;
    a->hub_rtt = a->peer_hub_rtt = -1;
    a->hub_up = 1;
    a->next_pair_id = NK__AG_HUB_PATH + 1;
    a->round_next = a->punch_at = a->retry_next = a->connect_next = a->turn_hold_until = NK_DEADLINE_NONE;
    a->shared_poll = NK_DEADLINE_NONE;
    nk__bd_init(a, cfg);
    int rc = copy_config(a, cfg);
    if (rc == 0)
        rc = make_helpers(a, cfg);
    for (size_t i = 0; rc == 0 && i < cfg->nhost; i++)
        nk__ag_add_local(a, &cfg->host[i], NK__CAND_HOST);
    for (size_t i = 0; rc == 0 && i < cfg->nsrflx; i++)
        nk__ag_add_local(a, &cfg->srflx[i], NK__CAND_SRFLX);
    if (rc != 0) {
        nk_agent_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void nk_agent_free(nk_agent *a)
{
    if (a == NULL)
        return;
    nk_stun_client_free(a->stun);
    nk_stun_client_free(a->stun6);
    nk__bd_free(a);
    if (a->turn_owned)
        nk_turn_client_free(a->turn);
    sodium_memzero(a->key, sizeof(a->key));
    nk_identity_wipe(&a->identity);
    queue_clear(&a->tx);
    queue_clear(&a->sig);
    queue_clear(&a->ev);
    free(a->ev_out);
    for (size_t i = 0; i < a->npairs; i++)
        free(a->pairs[i]);
    free(a);
}

void nk_agent_close(nk_agent *a, int64_t now_ms)
{
    if (a == NULL || a->state == NK__AG_CLOSED)
        return;
    a->state = NK__AG_CLOSED;
    queue_clear(&a->tx);
    queue_clear(&a->sig);
    queue_clear(&a->ev);
    if (a->stun != NULL) {
        nk_stun_client_free(a->stun);
        a->stun = NULL;
    }
    nk_stun_client_free(a->stun2);
    a->stun2 = NULL;
    nk_stun_client_free(a->stun6);
    a->stun6 = NULL;
    if (a->turn_owned && nk_turn_client_state(a->turn) == NK_TURN_ALLOCATED)
        nk_turn_client_deallocate(a->turn, now_ms);
}

int nk_agent_start(nk_agent *a, int64_t now_ms)
{
    if (a == NULL)
        return NK_ERR_INVAL;
    if (a->state != NK__AG_IDLE)
        return NK_ERR_STATE;
    a->state = NK__AG_RUNNING;
    a->started_ms = a->none_since = now_ms;
    return nk__ag_gather_start(a, now_ms);
}

void nk_agent_set_hub_rtt(nk_agent *a, int64_t rtt_ms)
{
    if (a != NULL && rtt_ms >= 0)
        a->hub_rtt = rtt_ms;
}

/*
 * The hub (re)connected: signals sent while it was away are lost, so the
 * initiator's request goes out again at once (a node may start a connection
 * before its registration completes), and the responder's candidates too.
 */
static void hub_back(nk_agent *a, int64_t now)
{
    if (a->controlling && !a->got_remote && a->connect_tries > 0) {
        nk__ag_send_candidates(a, now, NK_HUB_T_CONNECT);
        a->connect_next = now + NK__AG_CONNECT_RTX;
    } else if (!a->controlling && a->trickle) {
        nk__ag_send_candidates(a, now, NK_HUB_T_CANDIDATE);
    }
    nk__ag_hub_available(a, now);
}

void nk_agent_set_hub_up(nk_agent *a, int64_t now_ms, int up)
{
    if (a == NULL)
        return;
    int was = a->hub_up;
    a->hub_up = up != 0;
    if (a->state != NK__AG_RUNNING)
        return;
    if (!a->hub_up && was && a->selected == NK__AG_HUB_PATH)
        nk__ag_reselect(a, now_ms);
    else if (a->hub_up)
        hub_back(a, now_ms);
}

void nk_agent_stats(const nk_agent *a, nk_agent_stats_t *out)
{
    if (a == NULL || out == NULL)
        return;
    *out = a->stats;
    out->nat_mapping = a->nat_self.mapping;
    out->nat_ports = a->nat_self.ports;
    out->peer_nat_mapping = a->nat_peer.mapping;
}

/* ---- input ------------------------------------------------------------------------------ */

int nk_agent_handle_datagram(nk_agent *a, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t n)
{
    return nk_agent_handle_datagram_on(a, now_ms, NULL, from, p, n);
}

int nk_agent_handle_datagram_on(nk_agent *a, int64_t now_ms, const nk_addr *local, const nk_addr *from,
                                const uint8_t *p, size_t n)
{
    if (a == NULL || from == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (a->state != NK__AG_RUNNING)
        return NK_ERR_NOT_FOUND;
    int base = nk__bd_base_of(a, local);
    if (base < 0)
        return NK_ERR_NOT_FOUND; /* a birthday socket closed since */
    if (n > 0 && p[0] >= 0x80)
        return nk__ag_rx_frame(a, now_ms, (uint16_t)base, from, p, n);
    if (base != NK__BASE_SOCKET)
        return NK_ERR_NOT_FOUND; /* STUN and TURN live on the main socket */
    if (nk__bd_stun_input(a, now_ms, from, p, n) == 0)
        return 0;
    if (a->stun != NULL && nk_stun_client_handle_datagram(a->stun, now_ms, from, p, n) == 0) {
        nk__ag_stun_poll(a, now_ms);
        return 0;
    }
    if (a->stun6 != NULL && nk_stun_client_handle_datagram(a->stun6, now_ms, from, p, n) == 0) {
        nk__ag_stun6_poll(a, now_ms);
        return 0;
    }
    if (a->turn_owned && nk_addr_equal(from, &a->turn_server) &&
        nk_turn_client_handle_input(a->turn, now_ms, from, p, n) == 0) {
        nk__ag_turn_pump(a, now_ms);
        return 0;
    }
    return NK_ERR_NOT_FOUND;
}

int nk_agent_handle_relayed(nk_agent *a, int64_t now_ms, const nk_addr *peer, const uint8_t *p, size_t n)
{
    if (a == NULL || peer == NULL || (p == NULL && n > 0) || a->turn == NULL || a->turn_owned)
        return NK_ERR_INVAL;
    if (a->state != NK__AG_RUNNING)
        return NK_ERR_NOT_FOUND;
    nk__ag_turn_shared_check(a, now_ms);
    return nk__ag_rx_frame(a, now_ms, NK__BASE_RELAY, peer, p, n);
}

int nk_agent_handle_signal(nk_agent *a, int64_t now_ms, uint8_t type, const uint8_t *p, size_t n)
{
    if (a == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (a->state != NK__AG_RUNNING)
        return NK_ERR_STATE;
    return nk__ag_on_signal(a, now_ms, type, p, n);
}

void nk_agent_handle_timeout(nk_agent *a, int64_t now_ms)
{
    if (a == NULL || a->state != NK__AG_RUNNING)
        return;
    if (a->stun != NULL) {
        nk_stun_client_handle_timeout(a->stun, now_ms);
        nk__ag_stun_poll(a, now_ms);
    }
    if (a->stun6 != NULL && !a->stun6_done) {
        nk_stun_client_handle_timeout(a->stun6, now_ms);
        nk__ag_stun6_poll(a, now_ms);
    }
    if (a->turn_owned) {
        nk_turn_client_handle_timeout(a->turn, now_ms);
        nk__ag_turn_pump(a, now_ms);
    } else {
        nk__ag_turn_shared_check(a, now_ms);
    }
    nk__ag_path_timer(a, now_ms);
    nk__bd_timer(a, now_ms);
    nk__ag_keepalive_timer(a, now_ms);
    nk__ag_checks_timer(a, now_ms); /* last: serves the rounds the others asked for */
}

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

int64_t nk_agent_next_deadline(const nk_agent *a)
{
    if (a == NULL || a->state != NK__AG_RUNNING)
        return NK_DEADLINE_NONE;
    int64_t d = min64(nk__ag_checks_deadline(a), min64(nk__ag_path_deadline(a), nk__bd_deadline(a)));
    if (a->stun != NULL && !a->stun_done)
        d = min64(d, nk_stun_client_next_deadline(a->stun));
    if (a->stun6 != NULL && !a->stun6_done)
        d = min64(d, nk_stun_client_next_deadline(a->stun6));
    if (a->turn_owned)
        d = min64(d, nk_turn_client_next_deadline(a->turn));
    else
        d = min64(d, a->shared_poll);
    return d;
}

/* ---- output ------------------------------------------------------------------------------ */

int nk_agent_poll_transmit(nk_agent *a, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    if (a == NULL || out == NULL || buf == NULL)
        return NK_ERR_INVAL;
    nk__txslot *s = queue_peek(&a->tx);
    if (s != NULL) {
        if (s->len > cap)
            return NK_ERR_NOBUFS;
        memset(out, 0, sizeof(*out));
        out->to = s->to;
        out->from = s->from;
        out->transport = NK_TRANSPORT_UDP;
        out->len = s->len;
        memcpy(buf, s->data, s->len);
        free(queue_take(&a->tx));
        return 0;
    }
    if (nk__bd_poll_transmit(a, now_ms, out, buf, cap) == 0)
        return 0;
    if (a->stun != NULL && nk_stun_client_poll_transmit(a->stun, now_ms, out, buf, cap) == 0)
        return 0;
    if (a->stun2 != NULL && nk_stun_client_poll_transmit(a->stun2, now_ms, out, buf, cap) == 0)
        return 0;
    if (a->stun6 != NULL && nk_stun_client_poll_transmit(a->stun6, now_ms, out, buf, cap) == 0)
        return 0;
    if (a->turn_owned && nk_turn_client_poll_transmit(a->turn, now_ms, out, buf, cap) == 0)
        return 0;
    return NK_ERR_AGAIN;
}

int nk_agent_poll_signal(nk_agent *a, uint8_t *type, uint8_t *buf, size_t cap, size_t *len)
{
    if (a == NULL || type == NULL || buf == NULL || len == NULL)
        return NK_ERR_INVAL;
    nk__sigslot *s = queue_peek(&a->sig);
    if (s == NULL)
        return NK_ERR_AGAIN;
    if (s->len > cap)
        return NK_ERR_NOBUFS;
    *type = s->type;
    *len = s->len;
    memcpy(buf, s->data, s->len);
    free(queue_take(&a->sig));
    return 0;
}

int nk_agent_poll_event(nk_agent *a, nk_agent_event *ev)
{
    if (a == NULL || ev == NULL)
        return NK_ERR_INVAL;
    nk__evslot *s = queue_peek(&a->ev);
    if (s == NULL)
        return NK_ERR_AGAIN;
    *ev = s->ev;
    if (ev->type == NK_AGENT_EV_DATA)
        ev->data = s->data; /* valid until the next poll_event (the entry is kept until then) */
    free(a->ev_out);
    a->ev_out = queue_take(&a->ev);
    return 0;
}

/* ---- data ------------------------------------------------------------------------------------ */

static int send_hub(nk_agent *a, const uint8_t *data, size_t len)
{
    if (!a->hub_up || !a->peer_heard)
        return NK_ERR_STATE;
    int rc = nk__ag_queue_signal(a, NK_HUB_T_RELAY, data, len);
    if (rc == 0)
        a->stats.data_sent++;
    return rc;
}

int nk_agent_send(nk_agent *a, int64_t now_ms, uint32_t path_id, const uint8_t *data, size_t len)
{
    uint8_t buf[NK__AG_HDR + NK_AGENT_MAX_DATA];
    if (a == NULL || (data == NULL && len > 0) || len > NK_AGENT_MAX_DATA)
        return NK_ERR_INVAL;
    if (a->state != NK__AG_RUNNING)
        return NK_ERR_STATE;
    if (path_id == 0)
        path_id = a->selected;
    if (path_id == 0)
        return NK_ERR_STATE;
    if (path_id == NK__AG_HUB_PATH)
        return send_hub(a, data, len);
    nk__pair *pr = nk__ag_pair_by_id(a, path_id);
    if (pr == NULL)
        return NK_ERR_NOT_FOUND;
    int h = nk__ag_data_header(a, buf, sizeof(buf));
    memcpy(buf + h, data, len);
    int rc = nk__ag_send_on_pair(a, pr, buf, (size_t)h + len);
    if (rc == 0)
        a->stats.data_sent++;
    return rc;
}

int nk_agent_send_in_place(nk_agent *a, uint32_t path_id, nk_transmit *out, uint8_t *buf, size_t cap,
                           nk_agent_fill_fn fill, void *ctx)
{
    if (a == NULL || out == NULL || buf == NULL || fill == NULL)
        return NK_ERR_INVAL;
    if (a->state != NK__AG_RUNNING)
        return NK_ERR_STATE;
    if (path_id == 0)
        path_id = a->selected;
    if (path_id == 0)
        return NK_ERR_STATE;
    if (path_id == NK__AG_HUB_PATH || nk__ring_count(&a->tx) > 0)
        return NK_ERR_UNSUPPORTED;
    nk__pair *pr = nk__ag_pair_by_id(a, path_id);
    if (pr == NULL)
        return NK_ERR_NOT_FOUND;
    if (pr->base != NK__BASE_SOCKET)
        return NK_ERR_UNSUPPORTED; /* TURN wraps it in its own header */
    int h = nk__ag_data_header(a, buf, cap);
    if (h < 0 || cap - (size_t)h < NK_AGENT_MAX_DATA)
        return NK_ERR_NOBUFS;
    int n = fill(ctx, buf + h, NK_AGENT_MAX_DATA);
    if (n <= 0)
        return NK_ERR_AGAIN;
    memset(out, 0, sizeof(*out));
    out->to = pr->remote;
    out->transport = NK_TRANSPORT_UDP;
    out->len = (size_t)h + (size_t)n;
    a->stats.data_sent++;
    return 0;
}

void nk_agent_selected(const nk_agent *a, nk_path_info *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    out->rtt_ms = -1;
    if (a != NULL)
        nk__ag_path_info(a, a->selected, out);
}

int nk_agent_peek(const uint8_t *p, size_t n, nk_peer_id *sender)
{
    if (p == NULL || n < NK__AG_HDR || p[0] < 0x80 ||
        (p[0] != NK__AG_DATA && (p[0] < NK__AG_PROBE || p[0] > NK__AG_CONFIRM)))
        return NK_ERR_NOT_FOUND;
    if (sender != NULL)
        memcpy(sender->key, p + 1, NK_PEER_ID_SIZE);
    return 0;
}
