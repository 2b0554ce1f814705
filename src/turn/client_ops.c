/*
 * natkit: TURN client requests and what their answers mean: building
 * Allocate/Refresh/CreatePermission/ChannelBind with long-term credentials,
 * the 401/438 rounds, and the success and failure of each op. See
 * turn_client.c for the API, input and timers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "client_internal.h"

/* ---- events ---- */

nk_turn_event *nk__turn_push_event(nk_turn_client *c, nk_turn_event_type type)
{
    nk_turn_event *ev = nk__ring_emplace(&c->events);
    if (ev == NULL) {
        c->dropped++;
        return NULL;
    }
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    return ev;
}

void nk__turn_push_error(nk_turn_client *c, uint16_t method, int status, const nk_addr *peer, const char *reason,
                       size_t reason_len)
{
    nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_ERROR);
    if (ev == NULL)
        return;
    ev->method = method;
    ev->status = status;
    if (peer != NULL)
        ev->peer = *peer;
    if (reason != NULL) {
        if (reason_len >= sizeof(ev->reason))
            reason_len = sizeof(ev->reason) - 1;
        memcpy(ev->reason, reason, reason_len);
        ev->reason[reason_len] = '\0';
    }
}

/* ---- building and starting requests ---- */

static void build_auth(nk_turn_client *c, nk_stun_builder *b)
{
    if (!c->have_auth)
        return;
    nk_stun_build_string(b, NK_STUN_ATTR_USERNAME, c->user);
    nk_stun_build_string(b, NK_STUN_ATTR_REALM, c->realm);
    nk_stun_build_string(b, NK_STUN_ATTR_NONCE, c->nonce);
    if (c->pwalgs_len > 0) {
        uint8_t alg[4] = {0, (uint8_t)c->pwalg, 0, 0};
        nk_stun_build_attr(b, NK_STUN_ATTR_PASSWORD_ALGORITHMS, c->pwalgs, c->pwalgs_len);
        nk_stun_build_attr(b, NK_STUN_ATTR_PASSWORD_ALGORITHM, alg, sizeof(alg));
    }
    if (c->pwalg == NK_STUN_PWALG_SHA256)
        nk_stun_build_integrity_sha256(b, c->key, c->key_len);
    else
        nk_stun_build_integrity(b, c->key, c->key_len);
}

/* The method-specific attributes of an op's next request. */
static void build_body(nk_turn_client *c, nk_stun_builder *b, enum op_kind kind, void *owner, uint16_t method,
                       uint32_t lifetime)
{
    if (c->software != NULL)
        nk_stun_build_string(b, NK_STUN_ATTR_SOFTWARE, c->software);
    if (kind == OP_ALLOC && method == NK_STUN_ALLOCATE) {
        nk_stun_build_u32(b, NK_STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)NK_TURN_TRANSPORT_UDP << 24);
        if (c->cfg.family == NK_AF_INET6)
            nk_stun_build_u32(b, NK_STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 0x02u << 24);
        if (c->cfg.lifetime_s > 0)
            nk_stun_build_u32(b, NK_STUN_ATTR_LIFETIME, c->cfg.lifetime_s);
    } else if (kind == OP_ALLOC) {
        nk_stun_build_u32(b, NK_STUN_ATTR_LIFETIME, lifetime);
    } else if (kind == OP_PERM) {
        nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, &((perm *)owner)->ip);
    } else {
        chan *ch = owner;
        nk_stun_build_u32(b, NK_STUN_ATTR_CHANNEL_NUMBER, (uint32_t)ch->number << 16);
        nk_stun_build_addr(b, NK_STUN_ATTR_XOR_PEER_ADDRESS, &ch->peer);
    }
}

static uint16_t request_method(const nk_turn_client *c, enum op_kind kind)
{
    if (kind == OP_PERM)
        return NK_STUN_CREATE_PERMISSION;
    if (kind == OP_CHAN)
        return NK_STUN_CHANNEL_BIND;
    return c->state == NK_TURN_ALLOCATING ? NK_STUN_ALLOCATE : NK_STUN_REFRESH;
}

/*
 * The RTO of an op's request: the configured one, except for the deallocation. Its sender is
 * about to exit and waits for the answer about a second, in which the RFC 8489 schedule (500 ms)
 * sends twice; so it starts from the RTT measured on the allocation's last answered request
 * (RFC 8489 6.2.1 lets a client cache its RTO per server; RFC 6298's first estimate is 3 RTT),
 * at least NK__TURN_RELEASE_MIN_RTO_MS, at most the configured RTO. A copy that arrives after the
 * allocation is gone is answered 437, which counts as released.
 */
static int64_t request_rto(const nk_turn_client *c, enum op_kind kind)
{
    int64_t rto = c->cfg.rto_ms > 0 ? c->cfg.rto_ms : NK_STUN_RTO_MS;
    if (kind != OP_ALLOC || c->state != NK_TURN_DEALLOCATING || c->alloc_rtt_ms < 0)
        return c->cfg.rto_ms;
    int64_t fast = c->alloc_rtt_ms * 3;
    if (fast < NK__TURN_RELEASE_MIN_RTO_MS)
        fast = NK__TURN_RELEASE_MIN_RTO_MS;
    return fast < rto ? fast : rto;
}

/* (Re)builds and starts the op's request with a fresh transaction ID. */
static int start_request(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner)
{
    op *o = owner_op(owner);
    uint16_t method = request_method(c, kind);
    uint32_t lifetime = c->state == NK_TURN_DEALLOCATING ? 0 : c->cfg.lifetime_s;
    if (method == NK_STUN_REFRESH && c->state != NK_TURN_DEALLOCATING && lifetime == 0)
        lifetime = c->lifetime_s > 0 ? c->lifetime_s : NK_TURN_DEFAULT_LIFETIME_S;
    uint8_t tid[NK_STUN_TID_SIZE], buf[NK__TURN_REQ_CAP];
    fill_random(c, tid, sizeof(tid));
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(method, NK_STUN_REQUEST), tid);
    build_body(c, &b, kind, owner, method, lifetime);
    build_auth(c, &b);
    int len = nk_stun_build_end(&b);
    if (len < 0)
        return len;
    if (o->txn == NULL && (o->txn = malloc(sizeof(*o->txn))) == NULL)
        return NK_ERR_NOMEM;
    int rc = nk_stun_txn_start(o->txn, now_ms, &c->cfg.server, c->cfg.transport, buf, (size_t)len,
                               request_rto(c, kind), c->cfg.rc, c->cfg.rm);
    if (rc != 0) {
        op_drop_txn(o);
        return rc;
    }
    o->method = method;
    o->sent_auth = (uint8_t)c->have_auth;
    snprintf(o->sent_nonce, sizeof(o->sent_nonce), "%s", c->have_auth ? c->nonce : "");
    return 0;
}

/* A fresh request for an op (not an auth retry). */
int nk__turn_begin_op(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner)
{
    owner_op(owner)->auth_retries = 0;
    return start_request(c, now_ms, kind, owner);
}

/* ---- credentials ---- */

/* Parses PASSWORD-ALGORITHMS and picks SHA-256 over MD5. 0 or NK_ERR_UNSUPPORTED/MALFORMED. */
static int pick_algorithm(const nk_stun_attr *a, int *alg)
{
    const uint8_t *src = a->value, *end = a->value + a->len;
    int have_md5 = 0, have_sha256 = 0;
    while (src < end) {
        uint16_t id, plen;
        const uint8_t *params;
        if (nk__rd_u16(&src, end, &id) != 0 || nk__rd_u16(&src, end, &plen) != 0 ||
            nk__rd_bytes(&src, end, ((size_t)plen + 3) & ~(size_t)3, &params) != 0)
            return NK_ERR_MALFORMED;
        have_md5 |= id == NK_STUN_PWALG_MD5;
        have_sha256 |= id == NK_STUN_PWALG_SHA256;
    }
    if (!have_md5 && !have_sha256)
        return NK_ERR_UNSUPPORTED;
    *alg = have_sha256 ? NK_STUN_PWALG_SHA256 : NK_STUN_PWALG_MD5;
    return 0;
}

/* Takes REALM/NONCE (and PASSWORD-ALGORITHMS) from a 401/438 and derives the key. */
static int take_challenge(nk_turn_client *c, const nk_stun_msg *m)
{
    char realm[sizeof(c->realm)], nonce[sizeof(c->nonce)];
    if (nk_stun_get_string(m, NK_STUN_ATTR_REALM, realm, sizeof(realm)) != 0 ||
        nk_stun_get_string(m, NK_STUN_ATTR_NONCE, nonce, sizeof(nonce)) != 0)
        return NK_ERR_MALFORMED;
    if (c->realm_cfg != NULL && strcmp(realm, c->realm_cfg) != 0)
        return NK_ERR_AUTH;
    int alg = NK_STUN_PWALG_MD5;
    const nk_stun_attr *algs = nk_stun_get(m, NK_STUN_ATTR_PASSWORD_ALGORITHMS);
    int feature = strncmp(nonce, NK__TURN_SECURITY_COOKIE, strlen(NK__TURN_SECURITY_COOKIE)) == 0;
    c->pwalgs_len = 0;
    if (algs != NULL && feature) {
        int rc = pick_algorithm(algs, &alg);
        if (rc != 0)
            return rc;
        if (algs->len > sizeof(c->pwalgs))
            return NK_ERR_MALFORMED;
        memcpy(c->pwalgs, algs->value, algs->len);
        c->pwalgs_len = algs->len;
    }
    int rc = nk_stun_long_term_key(alg, c->user, realm, c->pass, c->key, &c->key_len);
    if (rc != 0)
        return rc;
    memcpy(c->realm, realm, sizeof(realm));
    memcpy(c->nonce, nonce, sizeof(nonce));
    c->pwalg = alg;
    c->have_auth = 1;
    return 0;
}

/*
 * A 401 or 438: retry with (new) credentials when that can help. Returns 1
 * when a new request went out, 0 when the error stands.
 */
static int auth_retry(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner, const nk_stun_msg *m,
                      int code, int *status)
{
    op *o = owner_op(owner);
    if (o->auth_retries >= NK_TURN_AUTH_RETRIES)
        return 0;
    char nonce[sizeof(c->nonce)];
    if (code == 401 && o->sent_auth &&
        (nk_stun_get_string(m, NK_STUN_ATTR_NONCE, nonce, sizeof(nonce)) != 0 || strcmp(nonce, o->sent_nonce) == 0))
        return 0; /* our credentials were refused, not our nonce */
    int rc = take_challenge(c, m);
    if (rc != 0) {
        *status = rc;
        return 0;
    }
    o->auth_retries++;
    rc = start_request(c, now_ms, kind, owner);
    if (rc != 0) {
        *status = rc;
        return 0;
    }
    return 1;
}

/* ---- 300 Try Alternate (RFC 8489 section 10) ---- */

/* Forgets the old server's realm, nonce and key: the alternate is authenticated afresh. */
static void forget_server(nk_turn_client *c)
{
    c->have_auth = 0;
    c->pwalg = NK_STUN_PWALG_MD5;
    c->pwalgs_len = 0;
    sodium_memzero(c->key, sizeof(c->key));
    c->key_len = 0;
    memset(c->realm, 0, sizeof(c->realm));
    memset(c->nonce, 0, sizeof(c->nonce));
    if (c->stream != NULL)
        c->stream_reset = 1;
}

/*
 * A 300 to our Allocate: the Allocate goes to the ALTERNATE-SERVER of our server's family, as a
 * new request without credentials. NULL when it went out, else why the 300 stands.
 * The 300 need not be authenticated (coturn answers the first Allocate with it); the hops are
 * bounded and never lead back to a server already tried.
 */
static const char *follow_redirect(nk_turn_client *c, int64_t now_ms, const nk_stun_msg *m, int *status)
{
    nk_addr alt;
    size_t i = 0;
    for (; i < m->nattrs; i++)
        if (m->attrs[i].type == NK_STUN_ATTR_ALTERNATE_SERVER && nk_stun_attr_addr(m, &m->attrs[i], &alt) == 0 &&
            alt.family == c->cfg.server.family && alt.port != 0)
            break;
    if (i == m->nattrs)
        return "300 without an ALTERNATE-SERVER of our address family";
    if (c->ntried == NK_TURN_MAX_REDIRECTS)
        return "redirected too many times";
    int loop = nk_addr_equal(&alt, &c->cfg.server);
    for (size_t k = 0; k < c->ntried; k++)
        loop |= nk_addr_equal(&alt, &c->tried[k]);
    if (loop)
        return "redirected back to a server already tried";
    char domain[sizeof(c->alt_domain)];
    if (nk_stun_get_string(m, NK_STUN_ATTR_ALTERNATE_DOMAIN, domain, sizeof(domain)) != 0)
        domain[0] = '\0';
    c->tried[c->ntried++] = c->cfg.server;
    c->cfg.server = alt;
    memcpy(c->alt_domain, domain, sizeof(domain));
    forget_server(c);
    c->alloc.auth_retries = 0;
    int rc = start_request(c, now_ms, OP_ALLOC, &c->alloc);
    if (rc != 0) {
        *status = rc;
        return "cannot build the Allocate for the alternate server";
    }
    nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_REDIRECTED);
    if (ev != NULL)
        ev->peer = alt;
    return NULL;
}

/* ---- outcomes ---- */

static void kick_waiting(nk_turn_client *c, int64_t now_ms)
{
    for (size_t i = 0; i < c->nchans; i++) {
        chan *ch = &c->chans[i];
        if (ch->op.state == ST_NONE) {
            ch->op.state = ST_PENDING;
            if (nk__turn_begin_op(c, now_ms, OP_CHAN, ch) != 0)
                ch->op.state = ST_FAILED;
        }
    }
    for (size_t i = 0; i < c->nperms; i++) {
        perm *p = &c->perms[i];
        if (p->op.state == ST_NONE) {
            p->op.state = ST_PENDING;
            if (nk__turn_begin_op(c, now_ms, OP_PERM, p) != 0)
                p->op.state = ST_FAILED;
        }
    }
}

/* The allocation is gone: its permissions and channels go with it, silently. */
static void stop_peers(nk_turn_client *c)
{
    for (size_t i = 0; i < c->nperms; i++) {
        op_drop_txn(&c->perms[i].op);
        c->perms[i].op.state = ST_FAILED;
        c->perms[i].op.refresh_ms = c->perms[i].op.expires_ms = NK_DEADLINE_NONE;
    }
    for (size_t i = 0; i < c->nchans; i++) {
        op_drop_txn(&c->chans[i].op);
        c->chans[i].op.state = ST_FAILED;
        c->chans[i].op.refresh_ms = c->chans[i].op.expires_ms = NK_DEADLINE_NONE;
    }
}

static void schedule_alloc_refresh(nk_turn_client *c, int64_t now_ms, uint32_t lifetime_s)
{
    int64_t life = (int64_t)lifetime_s * 1000;
    int64_t margin = life >= 120000 ? 60000 : life / 2;
    c->lifetime_s = lifetime_s;
    c->alloc.expires_ms = now_ms + life;
    c->alloc.refresh_ms = now_ms + life - margin;
}

static void alloc_success(nk_turn_client *c, int64_t now_ms, const nk_stun_msg *m)
{
    uint32_t lifetime = NK_TURN_DEFAULT_LIFETIME_S;
    nk_stun_get_u32(m, NK_STUN_ATTR_LIFETIME, &lifetime);
    if (c->state == NK_TURN_DEALLOCATING) {
        c->state = NK_TURN_CLOSED;
        c->alloc.refresh_ms = c->alloc.expires_ms = NK_DEADLINE_NONE;
        nk__turn_push_event(c, NK_TURN_EV_CLOSED);
        return;
    }
    if (c->state == NK_TURN_ALLOCATING) {
        if (nk_stun_get_addr(m, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &c->relayed) != 0) {
            c->state = NK_TURN_FAILED;
            stop_peers(c);
            nk__turn_push_error(c, NK_STUN_ALLOCATE, NK_ERR_MALFORMED, NULL, "no XOR-RELAYED-ADDRESS", 22);
            return;
        }
        nk_stun_get_addr(m, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &c->mapped);
        c->state = NK_TURN_ALLOCATED;
        c->alloc.state = ST_ACTIVE;
        schedule_alloc_refresh(c, now_ms, lifetime);
        if (c->release_asked) { /* the owner is leaving: the allocation ends at once, unused */
            c->release_asked = 0;
            stop_peers(c);
            nk_turn_client_deallocate(c, now_ms);
            return;
        }
        nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_ALLOCATED);
        if (ev != NULL) {
            ev->relayed = c->relayed;
            ev->mapped = c->mapped;
            ev->lifetime_s = lifetime;
        }
        kick_waiting(c, now_ms);
        return;
    }
    schedule_alloc_refresh(c, now_ms, lifetime);
    nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_REFRESHED);
    if (ev != NULL)
        ev->lifetime_s = lifetime;
}

void nk__turn_close_allocation(nk_turn_client *c, int status)
{
    stop_peers(c);
    c->state = NK_TURN_CLOSED;
    c->alloc.state = ST_NONE;
    c->alloc.refresh_ms = c->alloc.expires_ms = NK_DEADLINE_NONE;
    op_drop_txn(&c->alloc);
    nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_CLOSED);
    if (ev != NULL)
        ev->status = status;
}

static void alloc_failure(nk_turn_client *c, int64_t now_ms, uint16_t method, int status, const char *reason,
                          size_t reason_len)
{
    if (c->state == NK_TURN_DEALLOCATING) {
        nk__turn_close_allocation(c, status == NK_ERR_STUN(437) ? 0 : status);
        return;
    }
    nk__turn_push_error(c, method, status, NULL, reason, reason_len);
    if (c->state == NK_TURN_ALLOCATING) {
        c->state = NK_TURN_FAILED;
        c->alloc.state = ST_FAILED;
        stop_peers(c);
        return;
    }
    if (status == NK_ERR_STUN(437)) { /* the server no longer has our allocation */
        nk__turn_close_allocation(c, status);
        return;
    }
    c->alloc.refresh_ms = min64(now_ms + NK__TURN_RETRY_MS, c->alloc.expires_ms);
}

/* Success or failure of a permission/channel request; ops share the logic. */
static void peer_op_done(nk_turn_client *c, int64_t now_ms, op *o, int status, int refresh_s, int lifetime_s)
{
    if (status == 0) {
        o->state = ST_ACTIVE;
        o->refresh_ms = now_ms + (int64_t)refresh_s * 1000;
        o->expires_ms = now_ms + (int64_t)lifetime_s * 1000;
    } else if (o->state == ST_ACTIVE && now_ms + NK__TURN_RETRY_MS < o->expires_ms) {
        o->refresh_ms = now_ms + NK__TURN_RETRY_MS;
    } else {
        o->state = ST_FAILED;
        o->refresh_ms = o->expires_ms = NK_DEADLINE_NONE;
    }
}

void nk__turn_perm_done(nk_turn_client *c, int64_t now_ms, perm *p, int status, const char *reason, size_t rlen)
{
    int first = p->op.state != ST_ACTIVE;
    peer_op_done(c, now_ms, &p->op, status, NK_TURN_PERMISSION_REFRESH_S, NK_TURN_PERMISSION_LIFETIME_S);
    if (status != 0) {
        nk__turn_push_error(c, NK_STUN_CREATE_PERMISSION, status, &p->ip, reason, rlen);
    } else if (first) {
        nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_PERMISSION);
        if (ev != NULL)
            ev->peer = p->ip;
    }
}

void nk__turn_chan_done(nk_turn_client *c, int64_t now_ms, chan *ch, int status, const char *reason, size_t rlen)
{
    int first = ch->op.state != ST_ACTIVE;
    peer_op_done(c, now_ms, &ch->op, status, NK_TURN_CHANNEL_REFRESH_S, NK_TURN_CHANNEL_LIFETIME_S);
    perm *p = find_perm(c, &ch->peer);
    if (status != 0) {
        if (p != NULL && p->op.state == ST_VIA_CHANNEL)
            p->op.state = ST_FAILED;
        nk__turn_push_error(c, NK_STUN_CHANNEL_BIND, status, &ch->peer, reason, rlen);
        return;
    }
    if (p != NULL && p->op.txn == NULL && p->op.state != ST_PENDING) /* ChannelBind installed it too */
        peer_op_done(c, now_ms, &p->op, 0, NK_TURN_PERMISSION_REFRESH_S, NK_TURN_PERMISSION_LIFETIME_S);
    if (first) {
        nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_CHANNEL);
        if (ev != NULL) {
            ev->peer = ch->peer;
            ev->channel = ch->number;
        }
    }
}

void nk__turn_op_done(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner, uint16_t method,
                    const nk_stun_msg *m, int status, const char *reason, size_t rlen)
{
    op_drop_txn(owner_op(owner));
    if (kind == OP_ALLOC) {
        if (status == 0)
            alloc_success(c, now_ms, m);
        else
            alloc_failure(c, now_ms, method, status, reason, rlen);
    } else if (kind == OP_PERM) {
        nk__turn_perm_done(c, now_ms, owner, status, reason, rlen);
    } else {
        nk__turn_chan_done(c, now_ms, owner, status, reason, rlen);
    }
}

/* ---- responses ---- */

/* Finds the op whose request has this transaction ID. */
static void *find_owner(nk_turn_client *c, const uint8_t *tid, enum op_kind *kind)
{
    if (c->alloc.txn != NULL && memcmp(c->alloc.txn->tid, tid, NK_STUN_TID_SIZE) == 0) {
        *kind = OP_ALLOC;
        return &c->alloc;
    }
    for (size_t i = 0; i < c->nperms; i++) {
        nk_stun_txn *t = c->perms[i].op.txn;
        if (t != NULL && memcmp(t->tid, tid, NK_STUN_TID_SIZE) == 0) {
            *kind = OP_PERM;
            return &c->perms[i];
        }
    }
    for (size_t i = 0; i < c->nchans; i++) {
        nk_stun_txn *t = c->chans[i].op.txn;
        if (t != NULL && memcmp(t->tid, tid, NK_STUN_TID_SIZE) == 0) {
            *kind = OP_CHAN;
            return &c->chans[i];
        }
    }
    return NULL;
}

int nk__turn_handle_response(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const nk_stun_msg *m)
{
    enum op_kind kind;
    void *owner = find_owner(c, m->tid, &kind);
    if (owner == NULL)
        return NK_ERR_NOT_FOUND;
    op *o = owner_op(owner);
    uint16_t cls = nk_stun_class(m->type);
    /* Success must prove it knows the key; errors (401/438 first of all) need not. */
    if (cls == NK_STUN_SUCCESS && o->sent_auth && nk_stun_check_integrity(m, c->key, c->key_len) != 0)
        return NK_ERR_INTEGRITY;
    int rc = nk_stun_txn_handle_response(o->txn, now_ms, from, m->raw, m->raw_len);
    if (rc != 0)
        return rc;
    uint16_t method = o->method;
    if (kind == OP_ALLOC)
        c->alloc_rtt_ms = o->txn->rtt_ms;
    if (cls == NK_STUN_SUCCESS) {
        nk__turn_op_done(c, now_ms, kind, owner, method, m, 0, NULL, 0);
        return 0;
    }
    int code = 0;
    const char *reason = NULL;
    size_t rlen = 0;
    if (nk_stun_get_error(m, &code, &reason, &rlen) != 0) {
        nk__turn_op_done(c, now_ms, kind, owner, method, m, NK_ERR_MALFORMED, "bad ERROR-CODE", 14);
        return 0;
    }
    int status = NK_ERR_STUN(code);
    if ((code == 401 || code == 438) && auth_retry(c, now_ms, kind, owner, m, code, &status))
        return 0;
    if (code == 300 && kind == OP_ALLOC && c->state == NK_TURN_ALLOCATING) {
        const char *why = follow_redirect(c, now_ms, m, &status);
        if (why == NULL)
            return 0;
        reason = why;
        rlen = strlen(why);
    }
    if (status == NK_ERR_AUTH) {
        reason = "the server's realm is not the expected one";
        rlen = strlen(reason);
    }
    nk__turn_op_done(c, now_ms, kind, owner, method, m, status, reason, rlen);
    return 0;
}
