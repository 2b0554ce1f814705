/*
 * natkit: the agent's connectivity checks. Paced probe rounds to every pair
 * still unproven, answers (with the address the probe came from), the
 * confirmation that completes the three-way handshake, peer-reflexive
 * discovery, and keepalives with consecutive-failure counting on every
 * valid pair.
 */
#include <string.h>

#include "internal.h"
#include "cursor.h"

static int64_t max64(int64_t x, int64_t y)
{
    return x > y ? x : y;
}

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

int nk__ag_send_on_pair(nk_agent *a, const nk__pair *pr, const uint8_t *p, size_t n)
{
    if (pr->base == NK__BASE_SOCKET)
        return nk__ag_queue_tx(a, &pr->remote, p, n);
    if (pr->base >= NK__BASE_EXTRA) /* birthday probing's socket that won */
        return nk__ag_queue_tx_from(a, nk__bd_socket(a, pr->base), &pr->remote, p, n);
    if (!a->turn_ready)
        return NK_ERR_STATE;
    uint8_t buf[NK__AG_TX_MAX];
    nk_transmit t;
    int rc = nk_turn_client_send(a->turn, &pr->remote, p, n, &t, buf, sizeof(buf));
    if (rc != 0)
        return rc;
    return nk__ag_queue_tx(a, &t.to, buf, t.len);
}

static void send_check(nk_agent *a, const nk__pair *pr, uint8_t type, uint8_t flags, const uint8_t *txid,
                       const nk_addr *observed)
{
    uint8_t buf[NK__AG_CHECK_SIZE];
    nk__check c;
    c.type = type;
    c.flags = flags | (pr->base == NK__BASE_RELAY ? NK__AG_F_VIA_RELAY : 0);
    memcpy(c.txid, txid, NK__AG_TXID_SIZE);
    c.observed = *observed;
    int n = nk__ag_check_write(a, &c, buf, sizeof(buf));
    if (n > 0)
        nk__ag_send_on_pair(a, pr, buf, (size_t)n);
}

void nk__ag_probe(nk_agent *a, int64_t now, nk__pair *pr, uint8_t flags)
{
    uint8_t txid[NK__AG_TXID_SIZE];
    if (pr->base == NK__BASE_RELAY && !a->turn_ready)
        return;
    pr->seq++;
    pr->sent_at[pr->seq % NK__AG_SEQS] = now;
    pr->last_sent = now;
    nk__store_u32(txid, pr->id);
    nk__store_u32(txid + 4, pr->seq);
    send_check(a, pr, NK__AG_PROBE, flags, txid, &pr->remote);
    a->stats.probes_sent++;
}

/* ---- checks in ---------------------------------------------------------------------------- */

static void remember_answered(nk__pair *pr, int64_t now, const uint8_t *txid)
{
    unsigned i = pr->nanswered++ % NK__AG_ANSWERED;
    memcpy(pr->answered[i], txid, NK__AG_TXID_SIZE);
    pr->answered_at[i] = now;
}

/* A confirm for one of our recent answers: when that answer went out, else INT64_MIN.
 * Each is taken once (a replay finds nothing). */
static int64_t take_answered(nk__pair *pr, const uint8_t *txid)
{
    static const uint8_t none[NK__AG_TXID_SIZE];
    unsigned n = pr->nanswered < NK__AG_ANSWERED ? pr->nanswered : NK__AG_ANSWERED;
    for (unsigned i = 0; i < n; i++)
        if (memcmp(pr->answered[i], txid, NK__AG_TXID_SIZE) == 0 && memcmp(txid, none, sizeof(none)) != 0) {
            memset(pr->answered[i], 0, NK__AG_TXID_SIZE);
            return pr->answered_at[i];
        }
    return INT64_MIN;
}

/* 1 when this probe is newer than any seen from the same peer pair (not a replay). */
static int fresh_probe(nk__pair *pr, const uint8_t *txid)
{
    uint32_t id = nk__load_u32(txid), seq = nk__load_u32(txid + 4);
    int slot = pr->rx_id[0] == id ? 0 : pr->rx_id[1] == id ? 1 : -1;
    if (slot < 0) {
        slot = pr->rx_seq[0] <= pr->rx_seq[1] ? 0 : 1;
        pr->rx_id[slot] = id;
        pr->rx_seq[slot] = 0;
    }
    if (seq <= pr->rx_seq[slot])
        return 0;
    pr->rx_seq[slot] = seq;
    return 1;
}

static void mark_alive(nk_agent *a, int64_t now, nk__pair *pr)
{
    pr->dead = 0;
    pr->fails = 0;
    pr->ka_wait = NK_DEADLINE_NONE;
    if (!pr->valid || pr->ka_next == NK_DEADLINE_NONE)
        pr->ka_next = now + a->keepalive_ms;
}

static uint8_t remote_type(const nk_agent *a, const nk_addr *addr)
{
    for (size_t i = 0; i < a->nremote; i++)
        if (nk_addr_equal(&a->remote[i].addr, addr))
            return a->remote[i].type;
    return NK__CAND_PRFLX;
}

static void on_probe(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const nk__check *c)
{
    nk__pair *pr = nk__ag_pair_find(a, base, from);
    if (pr == NULL) { /* peer-reflexive (or the peer's relay): an authentic probe from an address we did not know */
        uint8_t type = (c->flags & NK__AG_F_VIA_RELAY) ? NK__CAND_RELAY : NK__CAND_PRFLX;
        if (nk__ag_add_remote(a, now, from, type) == 1)
            nk__ag_checks_kick(a, now, 0, NK__AG_CHECK_WINDOW);
        if (base >= NK__BASE_EXTRA) /* on a birthday socket: a pair from it (the hit) */
            nk__ag_add_pair(a, base, from, remote_type(a, from));
        pr = nk__ag_pair_find(a, base, from);
        if (pr == NULL)
            return;
    }
    if (fresh_probe(pr, c->txid) && pr->valid && pr->ka_wait != NK_DEADLINE_NONE)
        mark_alive(a, now, pr); /* a new authentic probe over the pair: it lives */
    if (pr->observed.family == NK_AF_NONE)
        pr->observed = c->observed; /* until an answer of ours tells it: where the peer probes us */
    uint8_t flags = pr->confirmed ? 0 : NK__AG_F_WANT_CONFIRM;
    if (!a->controlling && a->selected == pr->id)
        flags |= NK__AG_F_NOMINATED;
    remember_answered(pr, now, c->txid);
    send_check(a, pr, NK__AG_ANSWER, flags, c->txid, from);
    a->stats.answers_sent++;
    /* Triggered check: probe back at once, unless a probe went out just now. */
    if ((!pr->valid || pr->dead) && (pr->seq == 0 || now - pr->last_sent >= a->check_ms / 2))
        nk__ag_probe(a, now, pr, 0);
}

/* The probe (pair id, seq) this answer echoes, if recent and unanswered: its send time, else INT64_MIN. */
static int64_t answered_probe(nk__pair *pr, const nk__check *c, uint32_t *seq)
{
    uint32_t id = nk__load_u32(c->txid);
    *seq = nk__load_u32(c->txid + 4);
    if (id != pr->id || *seq == 0 || *seq > pr->seq || pr->seq - *seq >= NK__AG_SEQS)
        return INT64_MIN;
    int64_t sent = pr->sent_at[*seq % NK__AG_SEQS];
    pr->sent_at[*seq % NK__AG_SEQS] = INT64_MIN; /* one answer per probe: replays find nothing */
    return sent;
}

static void on_answer(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const nk__check *c)
{
    uint32_t seq;
    nk__pair *pr = nk__ag_pair_find(a, base, from);
    int64_t sent = pr != NULL ? answered_probe(pr, c, &seq) : INT64_MIN;
    if (sent == INT64_MIN) {
        a->stats.rx_unexpected++;
        return;
    }
    int was_valid = pr->valid;
    pr->rtt_ms = now - sent;
    pr->observed = c->observed;
    if (base == NK__BASE_SOCKET && c->observed.family != NK_AF_NONE)
        nk__ag_add_local(a, &c->observed, NK__CAND_PRFLX); /* informational: never trickled */
    if (seq >= pr->ka_seq || !was_valid)
        mark_alive(a, now, pr);
    pr->valid = 1;
    if (!was_valid)
        nk__ag_on_valid(a, now, pr);
    if (pr->nominating && (c->flags & NK__AG_F_NOMINATED))
        pr->nominating = 0;
    if (!was_valid || pr->nominating || (c->flags & NK__AG_F_WANT_CONFIRM)) {
        send_check(a, pr, NK__AG_CONFIRM, pr->nominating ? NK__AG_F_NOMINATE : 0, c->txid, from);
        a->stats.confirms_sent++;
    }
}

static void on_confirm(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const nk__check *c)
{
    nk__pair *pr = nk__ag_pair_find(a, base, from);
    int64_t answered = pr != NULL ? take_answered(pr, c->txid) : INT64_MIN;
    if (answered == INT64_MIN) {
        a->stats.rx_unexpected++;
        return;
    }
    if (pr->rtt_ms < 0)
        pr->rtt_ms = now - answered; /* answer -> confirm is one round trip too */
    if (pr->observed.family == NK_AF_NONE)
        pr->observed = c->observed; /* where the peer sends to: our address as it sees it */
    pr->confirmed = 1;
    if (pr->valid && pr->ka_wait != NK_DEADLINE_NONE)
        mark_alive(a, now, pr);
    if (!pr->valid || pr->dead) {
        mark_alive(a, now, pr);
        pr->valid = 1;
        nk__ag_on_valid(a, now, pr);
    }
    if ((c->flags & NK__AG_F_NOMINATE) && !a->controlling) {
        a->nominated = pr->id;
        nk__ag_select(a, now, pr->id);
    }
}

static int rx_data(nk_agent *a, uint16_t base, const nk_addr *from, const uint8_t *p, size_t n)
{
    if (memcmp(p + 1, a->peer.key, NK_PEER_ID_SIZE) != 0)
        return NK_ERR_NOT_FOUND;
    nk__pair *pr = nk__ag_pair_find(a, base, from);
    if (pr == NULL) {
        a->stats.rx_unknown_source++;
        return NK_ERR_STATE;
    }
    if (n - NK__AG_HDR > NK_AGENT_MAX_DATA) {
        a->stats.rx_malformed++;
        return NK_ERR_MALFORMED;
    }
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_DATA, n - NK__AG_HDR);
    if (s == NULL)
        return NK_ERR_AGAIN;
    nk__ag_path_info(a, pr->id, &s->ev.path);
    s->ev.len = n - NK__AG_HDR;
    memcpy(s->data, p + NK__AG_HDR, s->ev.len);
    a->stats.data_received++;
    return 0;
}

int nk_agent_take_data(nk_agent *a, const nk_addr *from, const uint8_t *p, size_t n, nk_path_info *path,
                       const uint8_t **data, size_t *len)
{
    if (a == NULL || from == NULL || p == NULL || path == NULL || data == NULL || len == NULL)
        return NK_ERR_INVAL;
    if (a->state != NK__AG_RUNNING || n < NK__AG_HDR || p[0] != NK__AG_DATA || n - NK__AG_HDR > NK_AGENT_MAX_DATA ||
        nk__ring_count(&a->ev) > 0 || memcmp(p + 1, a->peer.key, NK_PEER_ID_SIZE) != 0)
        return NK_ERR_UNSUPPORTED;
    nk__pair *pr = nk__ag_pair_find(a, NK__BASE_SOCKET, from);
    if (pr == NULL)
        return NK_ERR_UNSUPPORTED; /* handle_datagram counts it */
    nk__ag_path_info(a, pr->id, path);
    *data = p + NK__AG_HDR;
    *len = n - NK__AG_HDR;
    a->stats.data_received++;
    return 0;
}

int nk__ag_rx_frame(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const uint8_t *p, size_t n)
{
    nk__check c;
    if (n < NK__AG_HDR || (p[0] != NK__AG_DATA && (p[0] < NK__AG_PROBE || p[0] > NK__AG_CONFIRM)))
        return NK_ERR_NOT_FOUND;
    if (p[0] == NK__AG_DATA)
        return rx_data(a, base, from, p, n);
    int rc = nk__ag_check_read(a, p, n, &c);
    if (rc == NK_ERR_AUTH)
        a->stats.rx_auth_failed++;
    else if (rc == NK_ERR_MALFORMED)
        a->stats.rx_malformed++;
    if (rc != 0)
        return rc;
    if (nk__bd_rx(a, now, base, from, &c))
        return 0; /* an answer to a birthday probe: the hit is handled there */
    switch (c.type) {
    case NK__AG_PROBE: on_probe(a, now, base, from, &c); break;
    case NK__AG_ANSWER: on_answer(a, now, base, from, &c); break;
    default: on_confirm(a, now, base, from, &c); break;
    }
    return 0;
}

/* ---- rounds ------------------------------------------------------------------------------------ */

static int needs_check(const nk_agent *a, const nk__pair *pr)
{
    if (pr->base == NK__BASE_RELAY && !a->turn_ready)
        return 0;
    return !pr->valid || pr->nominating;
}

/* Checks run (again): a round now, 20 ms pacing for pace_for, rounds for window. */
void nk__ag_checks_kick(nk_agent *a, int64_t now, int64_t pace_for, int64_t window)
{
    a->pace_until = max64(a->pace_until, now + max64(pace_for, NK__AG_PACE_ROUNDS * a->check_ms));
    a->check_until = max64(a->check_until, now + window);
    a->round_interval = a->check_ms;
    if (a->round_next == NK_DEADLINE_NONE || a->round_next > now + a->check_ms)
        a->round_next = now;
}

/*
 * One probe to every pair still checking, as far as the transmit queue has room
 * (a few slots stay free for answers); the next round goes on where this one stopped.
 */
static int run_round(nk_agent *a, int64_t now)
{
    int sent = 0;
    for (size_t k = 0; k < a->npairs; k++) {
        if (nk__ring_count(&a->tx) + 4 >= NK__AG_TXQ)
            break;
        nk__pair *pr = a->pairs[(a->round_cursor + k) % a->npairs];
        if (needs_check(a, pr)) {
            nk__ag_probe(a, now, pr, 0);
            sent = 1;
        }
    }
    a->round_cursor = a->npairs > 0 ? (a->round_cursor + 1) % a->npairs : 0;
    return sent;
}

void nk__ag_checks_timer(nk_agent *a, int64_t now)
{
    if (a->punch_at <= now) {
        a->punch_at = NK_DEADLINE_NONE;
        a->round_next = now;
    }
    if (a->round_next > now)
        return;
    if (now >= a->check_until || !run_round(a, now)) {
        a->round_next = NK_DEADLINE_NONE;
        return;
    }
    if (now >= a->pace_until)
        a->round_interval = min64(a->round_interval * 2, NK__AG_MAX_INTERVAL);
    a->round_next = now + a->round_interval;
}

/* ---- keepalives --------------------------------------------------------------------------------- */

static void keepalive_pair(nk_agent *a, int64_t now, nk__pair *pr)
{
    if (pr->ka_wait <= now) {
        pr->ka_wait = NK_DEADLINE_NONE;
        if (++pr->fails >= a->ka_failures) {
            nk__ag_on_dead(a, now, pr);
            return;
        }
        pr->ka_next = now; /* retry at once */
    }
    if (pr->ka_next <= now && pr->ka_wait == NK_DEADLINE_NONE) {
        nk__ag_probe(a, now, pr, NK__AG_F_KEEPALIVE);
        pr->ka_seq = pr->seq;
        pr->ka_wait = now + max64(NK__AG_KA_TIMEOUT, 3 * pr->rtt_ms);
        pr->ka_next = now + a->keepalive_ms;
    }
}

void nk__ag_keepalive_timer(nk_agent *a, int64_t now)
{
    for (size_t i = 0; i < a->npairs; i++)
        if (a->pairs[i]->valid && nk__ag_pair_usable(a, a->pairs[i]))
            keepalive_pair(a, now, a->pairs[i]);
}

int64_t nk__ag_checks_deadline(const nk_agent *a)
{
    int64_t d = min64(a->round_next, a->punch_at);
    for (size_t i = 0; i < a->npairs; i++) {
        const nk__pair *pr = a->pairs[i];
        if (!pr->valid || !nk__ag_pair_usable(a, pr))
            continue;
        d = min64(d, pr->ka_wait != NK_DEADLINE_NONE ? pr->ka_wait : pr->ka_next);
    }
    return d;
}
