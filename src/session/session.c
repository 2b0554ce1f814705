/*
 * natkit: the secure session's state machine: handshake, keys, packets, paths,
 * timers. Wire format and design: docs/internals/session.md.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "internal.h"
#include "random.h"

#define HS_MAX_RTO_MS 4000
#define REKEY_REQ_REPEAT_MS 2000
#define PREV_KEY_GRACE_MS 10000

static void check_rekey(nk_session *s, int64_t now);

/* ---- helpers ------------------------------------------------------------------------------ */

void nk__session_random(nk_session *s, void *buf, size_t len)
{
    nk__random(s->cfg.random, s->cfg.random_ctx, buf, len);
}

static int event_queued(const nk_session *s, int type)
{
    for (size_t i = 0; i < nk__ring_count(&s->events); i++)
        if (((const nk_session_event *)nk__ring_at(&s->events, i))->type == type)
            return 1;
    return 0;
}

void nk__session_event(nk_session *s, int type, nk_path_id path, int err, int64_t rtt_ms)
{
    /* READABLE and WRITABLE are levels: one queued is enough. */
    if ((type == NK_SESSION_EV_READABLE || type == NK_SESSION_EV_WRITABLE) && event_queued(s, type))
        return;
    nk_session_event *ev = nk__ring_emplace(&s->events);
    /* Full: the caller is not reading events: drop, but never the last word (CLOSED takes the
       newest event's place). */
    if (ev == NULL && (type != NK_SESSION_EV_CLOSED || (ev = nk__ring_last(&s->events)) == NULL))
        return;
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->path = path;
    ev->err = err;
    ev->rtt_ms = rtt_ms;
    ev->epoch = s->cur.epoch;
}

static void wipe_keypair(nk__keypair *kp)
{
    sodium_memzero(kp, sizeof(*kp));
}

void nk__session_fail(nk_session *s, int err)
{
    if (s->state == NK_SESSION_CLOSED)
        return;
    s->state = NK_SESSION_CLOSED;
    s->hs_active = 0;
    s->hs_send_pending = 0;
    s->resp_pending = 0;
    nk__session_event(s, NK_SESSION_EV_CLOSED, s->path, err, 0);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    nk__store_u32(p, (uint32_t)(v >> 32));
    nk__store_u32(p + 4, (uint32_t)v);
}

static uint64_t load_u64(const uint8_t *p)
{
    return (uint64_t)nk__load_u32(p) << 32 | nk__load_u32(p + 4);
}

static void write_prefix(uint8_t *p, int type, uint32_t epoch, uint32_t receiver)
{
    p[0] = NK_SESSION_VERSION;
    p[1] = (uint8_t)type;
    p[2] = (uint8_t)epoch;
    p[3] = 0;
    nk__store_u32(p + 4, receiver);
}

int nk_session_peek(const uint8_t *p, size_t n, int *type, uint32_t *receiver_index)
{
    if (p == NULL || n < NK__PREFIX)
        return NK_ERR_TRUNCATED;
    if (p[0] != NK_SESSION_VERSION || p[1] < NK_SESSION_PKT_INIT || p[1] > NK_SESSION_PKT_DATA || p[3] != 0)
        return NK_ERR_MALFORMED;
    if (type != NULL)
        *type = p[1];
    if (receiver_index != NULL)
        *receiver_index = nk__load_u32(p + 4);
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static int apply_defaults(nk_session_config *c)
{
    if (c->handshake_timeout_ms <= 0)
        c->handshake_timeout_ms = 15000;
    if (c->handshake_rto_ms <= 0)
        c->handshake_rto_ms = 500;
    if (c->rekey_after_packets == 0 || c->rekey_after_packets > NK__REJECT_AFTER / 2)
        c->rekey_after_packets = (uint64_t)1 << 24;
    if (c->rekey_after_ms <= 0)
        c->rekey_after_ms = 120000;
    if (c->keepalive_ms == 0)
        c->keepalive_ms = 15000;
    if (c->idle_timeout_ms <= 0)
        c->idle_timeout_ms = 60000;
    if (c->window == 0)
        c->window = 256;
    if (c->max_datagram == 0)
        c->max_datagram = 1200;
    if (c->max_datagram < 256 || c->max_datagram > NK__MAX_PACKET || c->window > 65536)
        return NK_ERR_INVAL;
    return 0;
}

static uint32_t random_index(nk_session *s)
{
    uint32_t v = 0;
    while (v == 0) {
        uint8_t b[4];
        nk__session_random(s, b, sizeof(b));
        v = nk__load_u32(b);
    }
    return v;
}

int nk_session_new(nk_session **out, const nk_session_config *cfg, int64_t now_ms)
{
    if (out == NULL || cfg == NULL || cfg->identity == NULL || (cfg->initiator && cfg->peer == NULL))
        return NK_ERR_INVAL;
    if (sodium_init() < 0)
        return NK_ERR_SYSTEM;
    nk_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    nk__ring_init(&s->events, s->ev_slots, sizeof(s->ev_slots[0]), NK__MAX_EVENTS);
    s->cfg = *cfg;
    s->cfg.identity = NULL;
    s->cfg.peer = NULL;
    int rc = apply_defaults(&s->cfg);
    if (rc == 0)
        rc = nk_identity_x25519(cfg->identity, s->s_sk, s->s_pk);
    if (rc == 0 && cfg->peer != NULL) {
        s->peer = *cfg->peer;
        s->peer_known = 1;
        rc = nk_peer_id_x25519(&s->peer, s->rs);
    }
    if (rc != 0) {
        nk_session_free(s);
        return rc;
    }
    s->self = cfg->identity->id; /* only the public ID: the X25519 secret above is all we keep */
    s->window = s->cfg.window;
    s->state = NK_SESSION_HANDSHAKE;
    s->created_ms = now_ms;
    s->last_rx_ms = now_ms;
    s->last_tx_ms = now_ms;
    s->local_index = random_index(s);
    rc = nk__rel_init(s);
    if (rc != 0) {
        nk_session_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void nk_session_free(nk_session *s)
{
    if (s == NULL)
        return;
    nk__rel_free(s);
    sodium_memzero(s, sizeof(*s));
    free(s);
}

/* ---- handshake: initiator ----------------------------------------------------------------- */

static int start_handshake(nk_session *s, int64_t now, uint32_t epoch)
{
    uint8_t payload[NK__INIT_PAYLOAD], seed[32];
    memcpy(payload, s->self.key, 32);
    nk__store_u32(payload + 32, s->local_index);
    nk__store_u32(payload + 36, epoch);
    nk__session_random(s, seed, sizeof(seed));
    write_prefix(s->hs_msg, NK_SESSION_PKT_INIT, epoch, epoch == 0 ? 0 : s->remote_index);
    nk__ik_init(&s->hs, (const uint8_t *)NK__PROLOGUE, sizeof(NK__PROLOGUE) - 1, s->rs);
    int rc = nk__ik_write_init(&s->hs, s->s_sk, s->s_pk, seed, payload, sizeof(payload), s->hs_msg + NK__PREFIX);
    sodium_memzero(seed, sizeof(seed));
    if (rc != 0)
        return rc;
    s->hs_active = 1;
    s->hs_send_pending = 1;
    s->hs_retransmitted = 0;
    s->hs_epoch = epoch;
    s->hs_started_ms = now;
    /* A rekey knows the path's RTT; the first handshake starts from the configured RTO. */
    s->hs_rto_ms = epoch > 0 && s->have_rtt ? s->rto_ms : s->cfg.handshake_rto_ms;
    s->hs_next_ms = now + s->hs_rto_ms;
    s->rekey_requested = 0;
    return 0;
}

int nk_session_connect(nk_session *s, nk_path_id path, int64_t now_ms)
{
    if (s == NULL)
        return NK_ERR_INVAL;
    if (!s->cfg.initiator || s->state != NK_SESSION_HANDSHAKE || s->hs_active)
        return NK_ERR_STATE;
    s->path = path;
    return start_handshake(s, now_ms, 0);
}

static void install_keypair(nk_session *s, const nk__keypair *kp)
{
    wipe_keypair(&s->prev);
    if (s->cur.valid)
        s->prev = s->cur;
    s->cur = *kp;
    s->cur.valid = 1;
}

static int handle_response(nk_session *s, int64_t now, nk_path_id path, const uint8_t *p, size_t n)
{
    uint8_t payload[NK__RESP_PAYLOAD];
    if (n != NK__PREFIX + NK__RESP_BODY)
        return NK_ERR_MALFORMED;
    if (!s->hs_active || nk__load_u32(p + 4) != s->local_index || p[2] != (uint8_t)s->hs_epoch)
        return NK_ERR_STATE;
    nk__handshake hs = s->hs;
    int rc = nk__ik_read_resp(&hs, s->s_sk, p + NK__PREFIX, NK__RESP_BODY, payload);
    uint32_t sender = nk__load_u32(payload), epoch = nk__load_u32(payload + 4);
    if (rc == 0 && (epoch != s->hs_epoch || sender == 0))
        rc = NK_ERR_AUTH;
    if (rc == 0 && s->hs_epoch > 0 && sender != s->remote_index)
        rc = NK_ERR_AUTH;
    if (rc != 0) {
        sodium_memzero(&hs, sizeof(hs));
        return NK_ERR_AUTH;
    }
    nk__keypair kp;
    memset(&kp, 0, sizeof(kp));
    kp.epoch = s->hs_epoch;
    kp.created_ms = now;
    nk__sym_split(&hs.sym, kp.send_key, kp.recv_key);
    nk__sym_exporter(&hs.sym, kp.exporter);
    nk__replay_init(&kp.replay);
    install_keypair(s, &kp);
    sodium_memzero(&kp, sizeof(kp));
    sodium_memzero(&hs, sizeof(hs));
    sodium_memzero(&s->hs, sizeof(s->hs));
    s->remote_index = sender;
    s->hs_active = 0;
    s->hs_send_pending = 0;
    s->ping_pending = 1; /* confirms the keys to the responder at once, */
    s->confirm_wait = 1; /* and again until the responder is heard under them */
    s->confirm_rto_ms = s->cfg.handshake_rto_ms;
    s->confirm_next_ms = now + s->confirm_rto_ms;
    if (s->state == NK_SESSION_HANDSHAKE) {
        s->path = path;
        int64_t rtt = now - s->hs_sent_ms;
        if (!s->hs_retransmitted)
            nk__rel_rtt_sample(s, rtt);
        s->state = NK_SESSION_CONNECTED;
        s->last_rx_ms = now;
        memcpy(s->exporter, s->cur.exporter, sizeof(s->exporter));
        s->has_exporter = 1;
        nk__session_event(s, NK_SESSION_EV_CONNECTED, path, 0, rtt);
    } else {
        s->stats.rekeys++;
        nk__session_event(s, NK_SESSION_EV_REKEYED, path, 0, 0);
    }
    return 0;
}

/* ---- handshake: responder ----------------------------------------------------------------- */

static int accept_init_epoch(const nk_session *s, uint32_t epoch, uint32_t receiver)
{
    if (s->state == NK_SESSION_HANDSHAKE)
        return epoch == 0 && receiver == 0;
    return s->state == NK_SESSION_CONNECTED && epoch == s->cur.epoch + 1 && receiver == s->local_index;
}

static void add_pending(nk_session *s, const nk__keypair *kp)
{
    wipe_keypair(&s->next[1]);
    s->next[1] = s->next[0];
    s->next[0] = *kp;
    s->next[0].valid = 1;
}

/* Checks the initiator's payload: its Ed25519 ID must be the static key it proved. */
static int check_initiator(nk_session *s, const nk__handshake *hs, const uint8_t *payload, uint32_t epoch)
{
    nk_peer_id claimed;
    uint8_t x[32];
    memcpy(claimed.key, payload, 32);
    if (nk_peer_id_x25519(&claimed, x) != 0 || sodium_memcmp(x, hs->rs, 32) != 0)
        return NK_ERR_AUTH;
    if (nk__load_u32(payload + 36) != epoch || nk__load_u32(payload + 32) == 0)
        return NK_ERR_AUTH;
    if (s->state == NK_SESSION_CONNECTED && nk__load_u32(payload + 32) != s->remote_index)
        return NK_ERR_AUTH;
    if (s->peer_known && !nk_peer_id_equal(&claimed, &s->peer)) {
        s->stats.rx_peer_mismatch++;
        return NK_ERR_DENIED;
    }
    return 0;
}

static int respond(nk_session *s, int64_t now, nk_path_id path, nk__handshake *hs, uint32_t epoch,
                   const uint8_t init_hash[32], uint32_t initiator_index, const uint8_t *idkey)
{
    uint8_t payload[NK__RESP_PAYLOAD], seed[32];
    nk__store_u32(payload, s->local_index);
    nk__store_u32(payload + 4, epoch);
    nk__session_random(s, seed, sizeof(seed));
    nk__keypair kp;
    memset(&kp, 0, sizeof(kp));
    write_prefix(kp.resp, NK_SESSION_PKT_RESPONSE, epoch, initiator_index);
    int rc = nk__ik_write_resp(hs, seed, payload, sizeof(payload), kp.resp + NK__PREFIX);
    sodium_memzero(seed, sizeof(seed));
    if (rc != 0)
        return rc;
    memcpy(s->resp_msg, kp.resp, sizeof(s->resp_msg));
    memcpy(kp.peer.key, idkey, 32);
    memcpy(kp.rs, hs->rs, 32);
    kp.remote_index = initiator_index;
    kp.epoch = epoch;
    kp.created_ms = now;
    kp.path = path;
    memcpy(kp.init_hash, init_hash, 32);
    nk__sym_split(&hs->sym, kp.recv_key, kp.send_key);
    nk__sym_exporter(&hs->sym, kp.exporter);
    nk__replay_init(&kp.replay);
    add_pending(s, &kp);
    sodium_memzero(&kp, sizeof(kp));
    s->resp_pending = 1;
    s->resp_path = path;
    return 0;
}

static int handle_init(nk_session *s, int64_t now, nk_path_id path, const uint8_t *p, size_t n)
{
    uint8_t payload[NK__INIT_PAYLOAD], hash[32];
    if (n != NK__PREFIX + NK__INIT_BODY)
        return NK_ERR_MALFORMED;
    if (s->cfg.initiator)
        return NK_ERR_STATE;
    crypto_generichash(hash, sizeof(hash), p, n, NULL, 0);
    for (int i = 0; i < 2; i++) {
        if (s->next[i].valid && sodium_memcmp(hash, s->next[i].init_hash, 32) == 0) {
            memcpy(s->resp_msg, s->next[i].resp, sizeof(s->resp_msg)); /* a retransmitted INIT: */
            s->resp_pending = 1;                                         /* the same answer again */
            s->resp_path = path;
            s->stats.rx_replayed++;
            return NK_ERR_AGAIN;
        }
    }
    uint32_t epoch = p[2], receiver = nk__load_u32(p + 4);
    if (s->state == NK_SESSION_CONNECTED)
        epoch = s->cur.epoch + 1; /* the header carries its low 8 bits */
    if (!accept_init_epoch(s, epoch, receiver) || (epoch & 0xff) != p[2])
        return NK_ERR_STATE;
    nk__handshake hs;
    nk__ik_init(&hs, (const uint8_t *)NK__PROLOGUE, sizeof(NK__PROLOGUE) - 1, s->s_pk);
    int rc = nk__ik_read_init(&hs, s->s_sk, p + NK__PREFIX, NK__INIT_BODY, payload);
    if (rc == 0)
        rc = check_initiator(s, &hs, payload, epoch);
    if (rc == 0)
        rc = respond(s, now, path, &hs, epoch, hash, nk__load_u32(payload + 32), payload);
    sodium_memzero(&hs, sizeof(hs));
    sodium_memzero(payload, sizeof(payload));
    return rc == NK_ERR_DENIED ? NK_ERR_DENIED : rc != 0 ? NK_ERR_AUTH : 0;
}

/* The first authenticated data packet under a pending pair confirms it. */
static void confirm_pending(nk_session *s, int i, int64_t now)
{
    nk__keypair kp = s->next[i];
    wipe_keypair(&s->next[0]);
    wipe_keypair(&s->next[1]);
    install_keypair(s, &kp);
    sodium_memzero(&kp, sizeof(kp));
    s->resp_pending = 0;
    if (s->state == NK_SESSION_HANDSHAKE) {
        /* the initiator is the one whose pair was confirmed, not whoever sent the last INIT */
        s->state = NK_SESSION_CONNECTED;
        s->peer = s->cur.peer;
        s->peer_known = 1;
        memcpy(s->rs, s->cur.rs, 32);
        s->remote_index = s->cur.remote_index;
        s->path = s->cur.path;
        memcpy(s->exporter, s->cur.exporter, sizeof(s->exporter));
        s->has_exporter = 1;
        nk__session_event(s, NK_SESSION_EV_CONNECTED, s->path, 0, now - s->cur.created_ms);
    } else {
        s->stats.rekeys++;
        nk__session_event(s, NK_SESSION_EV_REKEYED, s->path, 0, 0);
    }
}

/* ---- data packets --------------------------------------------------------------------------- */

static nk__keypair *find_keypair(nk_session *s, int64_t now, uint8_t epoch, int *pending)
{
    *pending = -1;
    /* Old keys serve packets still in flight for a while after a rekey, then go. */
    if (s->prev.valid && now - s->cur.created_ms > PREV_KEY_GRACE_MS)
        wipe_keypair(&s->prev);
    if (s->cur.valid && (uint8_t)s->cur.epoch == epoch)
        return &s->cur;
    if (s->prev.valid && (uint8_t)s->prev.epoch == epoch)
        return &s->prev;
    return NULL;
}

static int open_with(nk__keypair *kp, uint64_t counter, const uint8_t *p, size_t n, uint8_t *pt)
{
    if (!kp->valid || !nk__replay_check(&kp->replay, counter))
        return NK_ERR_AGAIN;
    if (nk__aead_open(kp->recv_key, counter, p, NK__HDR, p + NK__HDR, n - NK__HDR, pt) != 0)
        return NK_ERR_AUTH;
    return 0;
}

static void maybe_roam(nk_session *s, const nk__keypair *kp, uint64_t counter, nk_path_id path, int probing)
{
    if (!s->cfg.roam || probing || kp != &s->cur || path == s->path || counter + 1 != kp->replay.top)
        return;
    s->path = path;
    nk__session_event(s, NK_SESSION_EV_PATH_CHANGED, path, 0, 0);
}

static int handle_data(nk_session *s, int64_t now, nk_path_id path, const uint8_t *p, size_t n)
{
    uint8_t pt[NK__MAX_PACKET];
    int pending;
    if (n < NK__HDR + NK__TAGLEN || n > NK__MAX_PACKET)
        return NK_ERR_MALFORMED;
    if (nk__load_u32(p + 4) != s->local_index)
        return NK_ERR_STATE;
    uint64_t counter = load_u64(p + 8);
    if (counter >= NK__REJECT_AFTER)
        return NK_ERR_MALFORMED;
    nk__keypair *kp = find_keypair(s, now, p[2], &pending);
    int rc = NK_ERR_STATE;
    if (kp != NULL)
        rc = open_with(kp, counter, p, n, pt);
    for (int i = 0; kp == NULL && i < 2; i++) {
        if (!s->next[i].valid || (uint8_t)s->next[i].epoch != p[2])
            continue;
        rc = open_with(&s->next[i], counter, p, n, pt);
        if (rc == 0) {
            nk__replay_update(&s->next[i].replay, counter);
            confirm_pending(s, i, now);
            kp = &s->cur;
            pending = i;
        }
    }
    if (rc != 0)
        return rc;
    if (pending < 0 && nk__replay_update(&kp->replay, counter) != 0)
        return NK_ERR_AGAIN;
    if (kp == &s->cur)
        s->confirm_wait = 0;
    s->last_rx_ms = now;
    s->stats.rx_packets++;
    int probing = 0;
    s->rx_rekey_req = 0;
    rc = nk__frames_handle(s, now, path, pt, n - NK__HDR - NK__TAGLEN, &probing);
    /* A request still in flight from before the last rekey must not start another one. */
    if (s->rx_rekey_req && kp == &s->cur && s->cfg.initiator && !s->hs_active)
        s->rekey_requested = 1;
    sodium_memzero(pt, n - NK__HDR - NK__TAGLEN);
    if (rc != 0)
        return rc;
    maybe_roam(s, kp, counter, path, probing);
    return 0;
}

static void count_drop(nk_session *s, int rc)
{
    switch (rc) {
    case NK_ERR_MALFORMED:
    case NK_ERR_TRUNCATED:
        s->stats.rx_malformed++;
        break;
    case NK_ERR_AUTH:
        s->stats.rx_auth_failed++;
        break;
    case NK_ERR_AGAIN:
        s->stats.rx_replayed++;
        break;
    case NK_ERR_DENIED:
        break; /* counted as rx_peer_mismatch */
    default:
        s->stats.rx_unexpected++;
        break;
    }
}

int nk_session_handle_datagram(nk_session *s, int64_t now_ms, nk_path_id path, const uint8_t *p, size_t n)
{
    int type;
    if (s == NULL || (p == NULL && n > 0))
        return NK_ERR_INVAL;
    if (s->state == NK_SESSION_CLOSED)
        return NK_ERR_CLOSED;
    int rc = nk_session_peek(p, n, &type, NULL);
    if (rc == 0 && type == NK_SESSION_PKT_INIT)
        rc = handle_init(s, now_ms, path, p, n);
    else if (rc == 0 && type == NK_SESSION_PKT_RESPONSE)
        rc = handle_response(s, now_ms, path, p, n);
    else if (rc == 0)
        rc = handle_data(s, now_ms, path, p, n);
    if (rc == NK_ERR_TRUNCATED)
        rc = NK_ERR_MALFORMED;
    if (rc != 0 && !(rc == NK_ERR_AGAIN && type == NK_SESSION_PKT_INIT))
        count_drop(s, rc);
    if (rc == 0)
        check_rekey(s, now_ms);
    return rc;
}

/* ---- output --------------------------------------------------------------------------------- */

static int emit_handshake(nk_session *s, int64_t now, nk_session_transmit *tx, uint8_t *buf, size_t cap)
{
    const uint8_t *msg = s->hs_send_pending ? s->hs_msg : s->resp_msg;
    size_t len = s->hs_send_pending ? sizeof(s->hs_msg) : sizeof(s->resp_msg);
    if (cap < len)
        return NK_ERR_NOBUFS;
    memcpy(buf, msg, len);
    tx->len = len;
    if (s->hs_send_pending) {
        tx->path = s->path;
        s->hs_send_pending = 0;
        s->hs_sent_ms = now;
    } else {
        tx->path = s->resp_path;
        s->resp_pending = 0;
    }
    return 0;
}

/* Seals frames (already in buf + NK__HDR) under the current key. */
static int seal(nk_session *s, int64_t now, uint8_t *buf, size_t frames_len, size_t *out_len)
{
    nk__keypair *kp = &s->cur;
    if (!kp->valid || kp->send_counter >= NK__REJECT_AFTER)
        return NK_ERR_STATE;
    write_prefix(buf, NK_SESSION_PKT_DATA, kp->epoch, s->remote_index);
    put_u64(buf + 8, kp->send_counter);
    nk__aead_seal(kp->send_key, kp->send_counter, buf, NK__HDR, buf + NK__HDR, frames_len, buf + NK__HDR);
    kp->send_counter++;
    *out_len = NK__HDR + frames_len + NK__TAGLEN;
    s->last_tx_ms = now;
    s->stats.tx_packets++;
    return 0;
}

static int emit_probe(nk_session *s, int64_t now, nk_session_transmit *tx, uint8_t *buf, size_t cap)
{
    for (int k = 0; k < 2 * NK__MAX_PROBES; k++) {
        nk__probe *pr = k < NK__MAX_PROBES ? &s->probes[k] : &s->probe_acks[k - NK__MAX_PROBES];
        if (!pr->used || !pr->send_pending)
            continue;
        if (cap < NK__HDR + 9 + NK__TAGLEN)
            return NK_ERR_NOBUFS;
        buf[NK__HDR] = k < NK__MAX_PROBES ? NK__FR_PROBE : NK__FR_PROBE_ACK;
        put_u64(buf + NK__HDR + 1, pr->nonce);
        int rc = seal(s, now, buf, 9, &tx->len);
        if (rc != 0)
            return rc;
        tx->path = pr->path;
        pr->send_pending = 0;
        pr->sent_ms = now;
        if (k >= NK__MAX_PROBES)
            pr->used = 0;
        return 0;
    }
    return NK_ERR_AGAIN;
}

int nk_session_poll_transmit(nk_session *s, int64_t now_ms, nk_session_transmit *tx, uint8_t *buf, size_t cap)
{
    if (s == NULL || tx == NULL || buf == NULL)
        return NK_ERR_INVAL;
    memset(tx, 0, sizeof(*tx));
    if (s->hs_send_pending || s->resp_pending)
        return emit_handshake(s, now_ms, tx, buf, cap);
    if (!s->cur.valid || (s->state == NK_SESSION_CLOSED && !s->close_pending))
        return NK_ERR_AGAIN;
    int rc = s->state == NK_SESSION_CLOSED ? NK_ERR_AGAIN : emit_probe(s, now_ms, tx, buf, cap);
    if (rc != NK_ERR_AGAIN)
        return rc;
    if (!nk__frames_pending(s, now_ms))
        return NK_ERR_AGAIN;
    if (cap < s->cfg.max_datagram)
        return NK_ERR_NOBUFS; /* a full-size fragment must fit, or it would never leave */
    size_t room = s->cfg.max_datagram;
    size_t flen = nk__frames_build(s, now_ms, buf + NK__HDR, room - NK__HDR - NK__TAGLEN);
    if (flen == 0)
        return NK_ERR_AGAIN;
    rc = seal(s, now_ms, buf, flen, &tx->len);
    if (rc != 0)
        return rc;
    tx->path = s->path;
    check_rekey(s, now_ms);
    return 0;
}

/* ---- timers ---------------------------------------------------------------------------------- */

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int rekey_due(const nk_session *s, int64_t now)
{
    return s->cur.send_counter >= s->cfg.rekey_after_packets || now - s->cur.created_ms >= s->cfg.rekey_after_ms;
}

int64_t nk_session_next_deadline(const nk_session *s)
{
    if (s == NULL || s->state == NK_SESSION_CLOSED)
        return INT64_MAX;
    if (s->state == NK_SESSION_HANDSHAKE && s->cfg.initiator && !s->hs_active)
        return INT64_MAX; /* nk_session_connect not called yet */
    int64_t d = INT64_MAX;
    if (s->hs_active)
        d = min64(d, s->hs_next_ms);
    if (s->confirm_wait)
        d = min64(d, s->confirm_next_ms);
    if (s->state == NK_SESSION_HANDSHAKE) {
        int64_t start = s->cfg.initiator ? s->hs_started_ms : s->created_ms;
        return min64(d, start + s->cfg.handshake_timeout_ms);
    }
    d = min64(d, s->last_rx_ms + s->cfg.idle_timeout_ms);
    if (s->cfg.keepalive_ms > 0)
        d = min64(d, s->last_tx_ms + s->cfg.keepalive_ms);
    if (s->cfg.initiator && !s->hs_active)
        d = min64(d, s->rekey_requested ? s->last_rx_ms : s->cur.created_ms + s->cfg.rekey_after_ms);
    if (!s->cfg.initiator)
        d = min64(d, s->rekey_req_sent_epoch != s->cur.epoch + 1 ? s->cur.created_ms + s->cfg.rekey_after_ms
                                                                  : s->rekey_req_sent_ms + REKEY_REQ_REPEAT_MS);
    return min64(d, nk__rel_deadline(s));
}

static void handshake_timer(nk_session *s, int64_t now)
{
    if (s->state == NK_SESSION_HANDSHAKE) {
        int64_t start = s->cfg.initiator ? s->hs_started_ms : s->created_ms;
        if (s->cfg.initiator && !s->hs_active)
            return; /* not connected yet */
        if (now >= start + s->cfg.handshake_timeout_ms) {
            nk__session_fail(s, NK_ERR_TIMEOUT);
            return;
        }
    }
    if (s->confirm_wait && now >= s->confirm_next_ms) {
        s->ping_pending = 1;
        s->stats.handshake_retransmits++;
        s->confirm_rto_ms = min64(s->confirm_rto_ms * 2, HS_MAX_RTO_MS);
        s->confirm_next_ms = now + s->confirm_rto_ms;
    }
    if (s->hs_active && now >= s->hs_next_ms) {
        s->hs_send_pending = 1;
        s->hs_retransmitted = 1;
        s->stats.handshake_retransmits++;
        s->hs_rto_ms = min64(s->hs_rto_ms * 2, HS_MAX_RTO_MS);
        s->hs_next_ms = now + s->hs_rto_ms;
    }
}

static void check_rekey(nk_session *s, int64_t now)
{
    if (s->state != NK_SESSION_CONNECTED)
        return;
    if (s->cfg.initiator) {
        if (!s->hs_active && (s->rekey_requested || rekey_due(s, now)))
            start_handshake(s, now, s->cur.epoch + 1);
        return;
    }
    /* Responder: ask, and ask again while the initiator has not rekeyed. */
    if (s->rekey_req_sent_epoch == s->cur.epoch + 1) {
        if (now - s->rekey_req_sent_ms >= REKEY_REQ_REPEAT_MS) {
            s->rekey_req_pending = 1;
            s->rekey_req_sent_ms = now;
        }
    } else if (rekey_due(s, now)) {
        s->rekey_req_pending = 1;
        s->rekey_req_sent_epoch = s->cur.epoch + 1;
        s->rekey_req_sent_ms = now;
    }
}

void nk_session_handle_timeout(nk_session *s, int64_t now_ms)
{
    if (s == NULL || s->state == NK_SESSION_CLOSED)
        return;
    handshake_timer(s, now_ms);
    if (s->state != NK_SESSION_CONNECTED)
        return;
    if (now_ms - s->last_rx_ms >= s->cfg.idle_timeout_ms) {
        nk__session_fail(s, NK_ERR_TIMEOUT);
        return;
    }
    if (s->cfg.keepalive_ms > 0 && now_ms - s->last_tx_ms >= s->cfg.keepalive_ms)
        s->ping_pending = 1;
    check_rekey(s, now_ms);
    nk__rel_timeout(s, now_ms);
}

/* ---- small verbs ------------------------------------------------------------------------------ */

int nk_session_poll_event(nk_session *s, nk_session_event *ev)
{
    if (s == NULL || ev == NULL)
        return NK_ERR_INVAL;
    return nk__ring_pop(&s->events, ev);
}

int nk_session_probe_path(nk_session *s, nk_path_id path, int64_t now_ms, uint64_t *nonce)
{
    if (s == NULL)
        return NK_ERR_INVAL;
    if (s->state != NK_SESSION_CONNECTED)
        return NK_ERR_STATE;
    int slot = 0;
    for (int i = 0; i < NK__MAX_PROBES; i++) {
        if (!s->probes[i].used) {
            slot = i;
            break;
        }
        if (s->probes[i].sent_ms < s->probes[slot].sent_ms)
            slot = i;
    }
    nk__probe *pr = &s->probes[slot];
    uint8_t b[8];
    nk__session_random(s, b, sizeof(b));
    pr->used = 1;
    pr->send_pending = 1;
    pr->path = path;
    pr->nonce = load_u64(b);
    pr->sent_ms = now_ms;
    if (nonce != NULL)
        *nonce = pr->nonce;
    return 0;
}

int nk_session_set_path(nk_session *s, nk_path_id path)
{
    if (s == NULL)
        return NK_ERR_INVAL;
    s->path = path;
    return 0;
}

nk_path_id nk_session_path(const nk_session *s)
{
    return s != NULL ? s->path : 0;
}

int nk_session_keepalive(nk_session *s)
{
    if (s == NULL)
        return NK_ERR_INVAL;
    if (s->state != NK_SESSION_CONNECTED)
        return NK_ERR_STATE;
    s->ping_pending = 1;
    return 0;
}

int nk_session_rekey(nk_session *s, int64_t now_ms)
{
    if (s == NULL)
        return NK_ERR_INVAL;
    if (s->state != NK_SESSION_CONNECTED)
        return NK_ERR_STATE;
    if (!s->cfg.initiator) {
        s->rekey_req_pending = 1;
        s->rekey_req_sent_epoch = s->cur.epoch + 1;
        s->rekey_req_sent_ms = now_ms;
        return 0;
    }
    return s->hs_active ? 0 : start_handshake(s, now_ms, s->cur.epoch + 1);
}

int nk_session_close(nk_session *s, int64_t now_ms)
{
    if (s == NULL)
        return NK_ERR_INVAL;
    if (s->state == NK_SESSION_CLOSED)
        return NK_ERR_STATE;
    int had_keys = s->state == NK_SESSION_CONNECTED;
    nk__session_fail(s, 0);
    s->close_pending = had_keys ? NK__CLOSE_COPIES : 0;
    (void)now_ms;
    return 0;
}

int nk_session_export_key(const nk_session *s, const char *label, const uint8_t *context, size_t context_len,
                          uint8_t *out, size_t len)
{
    if (s == NULL || label == NULL || out == NULL || (context == NULL && context_len > 0) || len < 16 || len > 64)
        return NK_ERR_INVAL;
    if (!s->has_exporter)
        return NK_ERR_STATE;
    size_t llen = strlen(label);
    if (llen == 0 || llen > 255)
        return NK_ERR_INVAL;
    uint8_t n = (uint8_t)llen;
    crypto_generichash_state g;
    crypto_generichash_init(&g, s->exporter, sizeof(s->exporter), len);
    crypto_generichash_update(&g, &n, 1); /* length-prefixed label: no label/context ambiguity */
    crypto_generichash_update(&g, (const uint8_t *)label, llen);
    crypto_generichash_update(&g, context, context_len);
    crypto_generichash_final(&g, out, len);
    sodium_memzero(&g, sizeof(g));
    return 0;
}

int nk_session_initiator(const nk_session *s)
{
    return s != NULL && s->cfg.initiator;
}

int nk_session_state(const nk_session *s)
{
    return s != NULL ? s->state : 0;
}

const nk_peer_id *nk_session_peer(const nk_session *s)
{
    if (s == NULL || !s->peer_known)
        return NULL;
    return &s->peer;
}

void nk_session_stats(const nk_session *s, nk_session_stats_t *st)
{
    if (s == NULL || st == NULL)
        return;
    *st = s->stats;
    st->srtt_ms = s->srtt_ms;
    st->rto_ms = s->rto_ms;
}

uint32_t nk_session_local_index(const nk_session *s)
{
    return s != NULL ? s->local_index : 0;
}
