/*
 * natkit: the TURN server's requests (RFC 8656 sections 7-11): Binding,
 * Allocate, Refresh, CreatePermission and ChannelBind, after the long-term
 * credential check (RFC 8489 9.2). Until a request is authenticated the only
 * answers are 401/438 with REALM and NONCE or a bare 400: an unauthenticated
 * sender can never make the server send more than that (no amplification).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "natkit/stun.h"
#include "server_internal.h"

#define FAMILY_IPV4 0x01
#define FAMILY_IPV6 0x02

static void begin(const nk__turn_req *r, nk_stun_builder *b, uint16_t cls)
{
    nk_stun_build_begin(b, r->out, r->cap, nk_stun_type(nk_stun_method(r->m->type), cls), r->m->tid);
}

static int finish(nk__turn_req *r, nk_stun_builder *b)
{
    if (r->authed)
        nk_stun_build_integrity(b, r->key, NK__TURN_KEY_MAX);
    if (r->m->fingerprint >= 0)
        nk_stun_build_fingerprint(b);
    int len = nk_stun_build_end(b);
    if (len < 0)
        return len;
    r->tx->to = *r->client;
    r->tx->from = *r->local;
    r->tx->transport = r->transport;
    r->tx->len = (size_t)len;
    return 1;
}

/* Counts an error answer to an Allocate by its code (nk_turn_server_stats_t.allocate_errors). */
static void count_error(const nk__turn_req *r, int code)
{
    static const int codes[] = NK_TURN_STATS_CODES;
    size_t i = 0;
    if (nk_stun_method(r->m->type) != NK_STUN_ALLOCATE)
        return;
    while (i < NK_TURN_STATS_NCODES && codes[i] != code)
        i++;
    r->s->stats.allocate_errors[i]++;
}

/* A bare error answer, not counted (authenticate's answers are counted once they may go out). */
static int bare_error(nk__turn_req *r, int code)
{
    nk_stun_builder b;
    begin(r, &b, NK_STUN_ERROR);
    nk_stun_build_error(&b, code, NULL);
    return finish(r, &b);
}

static int error(nk__turn_req *r, int code)
{
    count_error(r, code);
    return bare_error(r, code);
}

/* 401 or 438 with REALM and a fresh NONCE: the only answer an unauthenticated request gets
 * (not counted here either). */
static int challenge(nk__turn_req *r, int code)
{
    nk_stun_builder b;
    char nonce[NK__TURN_NONCE_LEN + 1];
    r->authed = 0;
    nk__turn_nonce_make(&r->s->auth, r->now, r->client, nonce);
    begin(r, &b, NK_STUN_ERROR);
    nk_stun_build_error(&b, code, NULL);
    nk_stun_build_string(&b, NK_STUN_ATTR_REALM, r->s->auth.realm);
    nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, nonce);
    return finish(r, &b);
}

#define EXTERNAL_KEYS 8

/* 0 with r->key set when one of the user's keys (own accounts and secret, then ops.user_keys)
 * checks the message's integrity; NK_ERR_AUTH otherwise. */
static int check_key(nk__turn_req *r)
{
    const nk_turn_server *s = r->s;
    uint8_t keys[EXTERNAL_KEYS][16];
    int ok = NK_ERR_AUTH;
    if (nk__turn_auth_key(&s->auth, r->now, r->user, r->key) == 0 &&
        nk_stun_check_integrity(r->m, r->key, NK__TURN_KEY_MAX) == 0)
        return 0;
    if (s->ops.user_keys == NULL)
        return NK_ERR_AUTH;
    int64_t unix_s = (r->now + s->auth.unix_offset_ms) / 1000;
    size_t n = s->ops.user_keys(s->ops.user_ctx, s->auth.realm, r->user, unix_s, keys, EXTERNAL_KEYS);
    for (size_t i = 0; i < n && i < EXTERNAL_KEYS && ok != 0; i++) {
        if (nk_stun_check_integrity(r->m, keys[i], NK__TURN_KEY_MAX) == 0) {
            memcpy(r->key, keys[i], NK__TURN_KEY_MAX);
            ok = 0;
        }
    }
    sodium_memzero(keys, sizeof(keys));
    return ok;
}

/*
 * 0 when authenticated (r->authed set); otherwise the answer to return, with *stat (the
 * counter) and *code (its ERROR-CODE) to count if it is sent.
 */
static int authenticate(nk__turn_req *r, uint64_t **stat, int *code)
{
    char realm[768], nonce[256];
    const nk_stun_msg *m = r->m;
    nk_turn_server_stats_t *st = &r->s->stats;
    if (m->integrity < 0 && m->integrity_sha256 < 0) {
        *stat = &st->unauthenticated, *code = 401;
        return challenge(r, 401);
    }
    if (nk_stun_get_string(m, NK_STUN_ATTR_USERNAME, r->user, sizeof(r->user)) != 0 ||
        nk_stun_get_string(m, NK_STUN_ATTR_REALM, realm, sizeof(realm)) != 0 ||
        nk_stun_get_string(m, NK_STUN_ATTR_NONCE, nonce, sizeof(nonce)) != 0) {
        *stat = &st->auth_failed, *code = 400;
        return bare_error(r, 400);
    }
    if (nk__turn_nonce_check(&r->s->auth, r->now, r->client, nonce) != 0) {
        *stat = &st->stale_nonce, *code = 438;
        return challenge(r, 438);
    }
    if (strcmp(realm, r->s->auth.realm) != 0 || check_key(r) != 0) {
        *stat = &st->auth_failed, *code = 401;
        return challenge(r, 401);
    }
    r->authed = 1;
    return 0;
}

static int binding(nk__turn_req *r)
{
    nk_stun_builder b;
    begin(r, &b, NK_STUN_SUCCESS);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, r->client);
    return finish(r, &b);
}

static int family_code(const nk_addr *a)
{
    return a->family == NK_AF_INET6 ? FAMILY_IPV6 : FAMILY_IPV4;
}

/* RFC 8656 7.2 / 7.3: min(requested, max) but not below the default; 0 stays 0 (Refresh). */
static uint32_t desired_lifetime(const nk__turn_req *r, int allow_zero)
{
    const nk_turn_server_config *c = &r->s->cfg;
    uint32_t v;
    if (nk_stun_get_u32(r->m, NK_STUN_ATTR_LIFETIME, &v) != 0)
        return c->default_lifetime_s;
    if (v == 0 && allow_zero)
        return 0;
    if (v > c->max_lifetime_s)
        v = c->max_lifetime_s;
    return v > c->default_lifetime_s ? v : c->default_lifetime_s;
}

static uint32_t remaining_s(const nk__turn_alloc *a, int64_t now)
{
    return a->expires > now ? (uint32_t)((a->expires - now + 999) / 1000) : 0;
}

/* ---- reservations (EVEN-PORT with R, RESERVATION-TOKEN) ---- */

/* Holds the port after an EVEN-PORT R=1 allocation; 1 with token set, or 0 (then no token is given). */
static int reserve_next(nk_turn_server *s, uint16_t port, int64_t now, uint8_t token[8])
{
    if (!nk__turn_table_port_free(&s->table, port))
        return 0;
    nk__turn_random(s, token, 8);
    return nk__resv_add(s->resv, port, now, token) == 0;
}

static int unknown_attributes(nk__turn_req *r, const uint16_t *types, size_t n)
{
    nk_stun_builder b;
    count_error(r, 420);
    begin(r, &b, NK_STUN_ERROR);
    nk_stun_build_error(&b, 420, NULL);
    nk_stun_build_unknown(&b, types, n);
    return finish(r, &b);
}

/* ---- Allocate ---- */

static int try_port(nk_turn_server *s, uint16_t port, nk_addr *relay)
{
    *relay = s->cfg.relay_ip;
    relay->port = port;
    return s->ops.relay_open(s->ops.ctx, relay);
}

/* For a reservation: can the port after relay be bound too? (opened and closed again at once) */
static int probe_next(nk_turn_server *s, const nk_addr *relay)
{
    nk_addr next = *relay;
    next.port++;
    int err = s->ops.relay_open(s->ops.ctx, &next);
    if (err == 0)
        s->ops.relay_close(s->ops.ctx, &next);
    return err == 0 ? 0 : NK_ERR_ADDRESS;
}

static int port_usable(nk_turn_server *s, uint32_t port, int64_t now)
{
    return port <= s->cfg.relay_port_max && nk__turn_table_port_free(&s->table, (uint16_t)port) &&
           !nk__resv_taken(s->resv, (uint16_t)port, now);
}

/*
 * Opens a relay port chosen at random in the range: even if asked, and with
 * the next port free too when it is to be reserved. 0 or an error.
 */
static int open_relay(nk__turn_req *r, int even, int reserve, nk_addr *relay)
{
    nk_turn_server *s = r->s;
    uint32_t range = (uint32_t)s->cfg.relay_port_max - s->cfg.relay_port_min + 1, start, tries = 0;
    nk__turn_random(s, &start, sizeof(start));
    for (uint32_t i = 0; i < range && tries < 32; i++) {
        uint16_t port = (uint16_t)(s->cfg.relay_port_min + (start + i) % range);
        if ((even && (port & 1)) || !port_usable(s, port, r->now) || (reserve && !port_usable(s, port + 1u, r->now)))
            continue;
        tries++;
        int err = try_port(s, port, relay);
        if (err == 0 && reserve && (err = probe_next(s, relay)) != 0)
            s->ops.relay_close(s->ops.ctx, relay);
        if (err != NK_ERR_ADDRESS)
            return err;
    }
    return NK_ERR_LIMIT;
}

static int allocate_success(nk__turn_req *r, const nk__turn_alloc *a, const uint8_t *token)
{
    nk_stun_builder b;
    begin(r, &b, NK_STUN_SUCCESS);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &a->relay);
    nk_stun_build_u32(&b, NK_STUN_ATTR_LIFETIME, remaining_s(a, r->now));
    if (token != NULL)
        nk_stun_build_attr(&b, NK_STUN_ATTR_RESERVATION_TOKEN, token, 8);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, r->client);
    return finish(r, &b);
}

/* Checks the Allocate's attributes; 0 or the error code to answer. */
static int allocate_check(nk__turn_req *r, int *even, int *reserve, const uint8_t **token)
{
    const nk_stun_attr *tr = nk_stun_get(r->m, NK_STUN_ATTR_REQUESTED_TRANSPORT);
    const nk_stun_attr *ep = nk_stun_get(r->m, NK_STUN_ATTR_EVEN_PORT);
    const nk_stun_attr *rt = nk_stun_get(r->m, NK_STUN_ATTR_RESERVATION_TOKEN);
    const nk_stun_attr *af = nk_stun_get(r->m, NK_STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
    if (tr == NULL || tr->len != 4 || (ep != NULL && ep->len != 1) || (rt != NULL && rt->len != 8) ||
        (af != NULL && af->len != 4) || (rt != NULL && (ep != NULL || af != NULL)))
        return 400;
    if (tr->value[0] != NK_TURN_TRANSPORT_UDP)
        return 442;
    if (af != NULL && af->value[0] != family_code(&r->s->cfg.relay_ip))
        return 440;
    *even = ep != NULL;
    *reserve = ep != NULL && (ep->value[0] & 0x80);
    *token = rt != NULL ? rt->value : NULL;
    return 0;
}

/* Counts the allocation against its user; 0 or 486/508. */
static int take_quota(nk__turn_req *r, nk__turn_user **owner)
{
    nk_turn_server *s = r->s;
    if (s->cfg.shared != NULL) {
        int rc = nk__turn_shared_take(s->cfg.shared, nk__turn_quota_name(&s->auth, r->user));
        s->stats.quota_user += rc == 486;
        s->stats.quota_total += rc == 508;
        return rc;
    }
    if (s->table.count >= s->cfg.max_allocations) {
        s->stats.quota_total++;
        return 508;
    }
    nk__turn_user *u = nk__turn_user_get(&s->table, nk__turn_quota_name(&s->auth, r->user), 1);
    if (u == NULL)
        return 508;
    if (s->cfg.max_allocations_per_user != 0 && u->count >= s->cfg.max_allocations_per_user) {
        s->stats.quota_user++;
        return 486;
    }
    u->count++;
    *owner = u;
    return 0;
}

/* The relay address: the reserved port for a token, else a fresh random one. */
static int choose_relay(nk__turn_req *r, const uint8_t *token, int even, int reserve, nk_addr *relay)
{
    if (token == NULL)
        return open_relay(r, even, reserve, relay);
    uint16_t port;
    if (nk__resv_redeem(r->s->resv, token, r->now, &port) != 0 || !nk__turn_table_port_free(&r->s->table, port))
        return NK_ERR_LIMIT;
    return try_port(r->s, port, relay);
}

static nk__turn_alloc *new_alloc(nk__turn_req *r, nk__turn_user *owner, uint32_t lifetime)
{
    nk__turn_alloc *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->username = strdup(r->user)) == NULL) {
        free(a);
        return NULL;
    }
    a->transport = r->transport;
    a->client = *r->client;
    a->local = *r->local;
    a->expires = r->now + (int64_t)lifetime * 1000;
    memcpy(a->tid, r->m->tid, NK_STUN_TID_SIZE);
    memcpy(a->key, r->key, NK__TURN_KEY_MAX);
    a->owner = owner;
    return a;
}

static int allocate(nk__turn_req *r)
{
    nk_turn_server *s = r->s;
    int even = 0, reserve = 0, code;
    const uint8_t *token = NULL;
    nk__turn_user *owner = NULL;
    nk__turn_alloc *a = nk__turn_table_find(&s->table, r->transport, r->client, r->local);
    if (a != NULL) /* a retransmission is answered again; anything else is a mismatch */
        return memcmp(a->tid, r->m->tid, NK_STUN_TID_SIZE) == 0 && strcmp(a->username, r->user) == 0
                   ? allocate_success(r, a, NULL)
                   : error(r, 437);
    /* DONT-FRAGMENT: the driver sets DF on the relay socket, or it is an attribute we cannot honour */
    static const uint16_t df_attr = NK_STUN_ATTR_DONT_FRAGMENT;
    int df = nk_stun_get(r->m, NK_STUN_ATTR_DONT_FRAGMENT) != NULL;
    if (df && s->ops.relay_dont_fragment == NULL)
        return unknown_attributes(r, &df_attr, 1);
    if ((code = allocate_check(r, &even, &reserve, &token)) != 0 || (code = take_quota(r, &owner)) != 0)
        return error(r, code);
    a = new_alloc(r, owner, desired_lifetime(r, 0));
    if (a == NULL || choose_relay(r, token, even, reserve, &a->relay) != 0) {
        nk__turn_release_quota(s, owner, r->user);
        nk__turn_alloc_free(a);
        return error(r, 508);
    }
    if ((df && s->ops.relay_dont_fragment(s->ops.ctx, &a->relay) != 0) || nk__turn_table_insert(&s->table, a) != 0) {
        s->ops.relay_close(s->ops.ctx, &a->relay);
        nk__turn_release_quota(s, owner, r->user);
        nk__turn_alloc_free(a);
        return error(r, 508);
    }
    s->stats.allocations++;
    s->stats.allocations_created++;
    uint8_t next_token[8];
    int reserved = reserve && reserve_next(s, (uint16_t)(a->relay.port + 1), r->now, next_token);
    return allocate_success(r, a, reserved ? next_token : NULL);
}

/* ---- requests on an existing allocation ---- */

/* The request's allocation, or NULL with *rc set to the 437/441 answer. */
static nk__turn_alloc *own_alloc(nk__turn_req *r, int *rc)
{
    nk__turn_alloc *a = nk__turn_table_find(&r->s->table, r->transport, r->client, r->local);
    if (a == NULL)
        *rc = error(r, 437);
    else if (strcmp(a->username, r->user) != 0)
        *rc = error(r, 441), a = NULL;
    return a;
}

static int refresh(nk__turn_req *r)
{
    int rc;
    nk_stun_builder b;
    nk__turn_alloc *a = own_alloc(r, &rc);
    if (a == NULL)
        return rc;
    const nk_stun_attr *af = nk_stun_get(r->m, NK_STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
    if (af != NULL && (af->len != 4 || af->value[0] != family_code(&a->relay)))
        return error(r, 443);
    uint32_t lifetime = desired_lifetime(r, 1);
    if (lifetime == 0)
        nk__turn_end_allocation(r->s, a);
    else
        nk__turn_table_set_expiry(&r->s->table, a, r->now + (int64_t)lifetime * 1000);
    begin(r, &b, NK_STUN_SUCCESS);
    nk_stun_build_u32(&b, NK_STUN_ATTR_LIFETIME, lifetime);
    return finish(r, &b);
}

/* Decodes and vets a peer: 0, or 400 (malformed), 403 (policy), 443 (family). */
static int vet_peer(nk__turn_req *r, const nk__turn_alloc *a, const nk_stun_attr *at, nk_addr *peer)
{
    if (nk_stun_attr_addr(r->m, at, peer) != 0)
        return 400;
    if (!nk__turn_policy_allows(&r->s->policy, peer)) {
        r->s->stats.peer_denied++;
        return 403;
    }
    return peer->family == a->relay.family ? 0 : 443;
}

static int create_permission(nk__turn_req *r)
{
    int rc;
    size_t npeers = 0;
    nk_addr peers[NK_STUN_MAX_ATTRS];
    nk_stun_builder b;
    nk__turn_alloc *a = own_alloc(r, &rc);
    if (a == NULL)
        return rc;
    for (size_t i = 0; i < r->m->nattrs; i++) { /* all or nothing: vet every peer first */
        if (r->m->attrs[i].type != NK_STUN_ATTR_XOR_PEER_ADDRESS)
            continue;
        if ((rc = vet_peer(r, a, &r->m->attrs[i], &peers[npeers])) != 0)
            return error(r, rc);
        npeers++;
    }
    if (npeers == 0)
        return error(r, 400);
    if (!nk__turn_perm_fit(a, peers, npeers, r->now, r->s->cfg.max_permissions))
        return error(r, 508); /* checked before any is installed: nothing changes */
    int64_t expires = r->now + (int64_t)NK_TURN_PERMISSION_LIFETIME_S * 1000;
    for (size_t i = 0; i < npeers; i++)
        if (nk__turn_perm_install(a, &peers[i], expires, r->now, r->s->cfg.max_permissions) != 0)
            return error(r, 508); /* out of memory only */
    r->s->stats.permissions_created++;
    begin(r, &b, NK_STUN_SUCCESS);
    return finish(r, &b);
}

static int channel_bind(nk__turn_req *r)
{
    int rc;
    nk_addr peer;
    nk_stun_builder b;
    nk__turn_alloc *a = own_alloc(r, &rc);
    if (a == NULL)
        return rc;
    const nk_stun_attr *cn = nk_stun_get(r->m, NK_STUN_ATTR_CHANNEL_NUMBER);
    const nk_stun_attr *pa = nk_stun_get(r->m, NK_STUN_ATTR_XOR_PEER_ADDRESS);
    uint16_t number = cn != NULL && cn->len == 4 ? (uint16_t)(cn->value[0] << 8 | cn->value[1]) : 0;
    if (number < NK_TURN_CHANNEL_MIN || number > NK_TURN_CHANNEL_MAX_RFC5766 || pa == NULL)
        return error(r, 400);
    if ((rc = vet_peer(r, a, pa, &peer)) != 0)
        return error(r, rc);
    int64_t ch_exp = r->now + (int64_t)NK_TURN_CHANNEL_LIFETIME_S * 1000;
    int64_t perm_exp = r->now + (int64_t)NK_TURN_PERMISSION_LIFETIME_S * 1000;
    rc = nk__turn_chan_install(a, number, &peer, ch_exp, r->now, r->s->cfg.max_channels);
    if (rc == NK_ERR_STATE)
        return error(r, 400);
    if (rc != 0 || nk__turn_perm_install(a, &peer, perm_exp, r->now, r->s->cfg.max_permissions) != 0)
        return error(r, 508);
    r->s->stats.channels_bound++;
    begin(r, &b, NK_STUN_SUCCESS);
    return finish(r, &b);
}

/*
 * An answer that needs no credentials, over UDP: only while the source is under its rate
 * (a spoofed source cannot turn the server into a stream of answers to its victim). Counted
 * only when it goes out: in *stat (if any) and, for an Allocate, as an error by code (if not 0);
 * one left unanswered is counted in rate_limited alone.
 */
static int unauth_answer(nk__turn_req *r, int rc, uint64_t *stat, int code)
{
    if (rc != 1)
        return rc;
    if (r->transport == NK_TRANSPORT_UDP && !nk__ratelimit_take(r->s->rate, r->now, r->client)) {
        r->s->stats.rate_limited++;
        return NK_ERR_LIMIT;
    }
    if (stat != NULL)
        (*stat)++;
    if (code != 0)
        count_error(r, code);
    return rc;
}

/* ---- Try Alternate ---- */

static int in_list(const nk_addr *v, size_t n, const nk_addr *a)
{
    for (size_t i = 0; i < n; i++)
        if (nk_addr_equal(&v[i], a))
            return 1;
    return 0;
}

/*
 * An Allocate while alternates are configured (coturn's behaviour): 300 with the next
 * ALTERNATE-SERVER of the client's family, round-robin, before authentication: the front needs
 * no credentials and the client authenticates once, at the server it ends up on. 1 with the
 * answer, or 0 when this server serves the request itself.
 */
static int try_alternate(nk__turn_req *r)
{
    nk_turn_server *s = r->s;
    int tls = r->transport == NK_TRANSPORT_TLS && s->cfg.n_tls_alternates > 0;
    const nk_addr *v = tls ? s->cfg.tls_alternates : s->cfg.alternates;
    size_t n = tls ? s->cfg.n_tls_alternates : s->cfg.n_alternates, *next = tls ? &s->tls_alt_next : &s->alt_next;
    if (n == 0 || in_list(v, n, r->local) || nk__turn_table_find(&s->table, r->transport, r->client, r->local) != NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const nk_addr *alt = &v[(*next)++ % n];
        if (alt->family != r->client->family)
            continue;
        nk_stun_builder b; /* counted in stats.redirected, not as an Allocate error */
        begin(r, &b, NK_STUN_ERROR);
        nk_stun_build_error(&b, 300, NULL);
        nk_stun_build_addr(&b, NK_STUN_ATTR_ALTERNATE_SERVER, alt);
        if (r->transport == NK_TRANSPORT_TLS && s->cfg.alternate_domain != NULL)
            nk_stun_build_string(&b, NK_STUN_ATTR_ALTERNATE_DOMAIN, s->cfg.alternate_domain);
        return finish(r, &b);
    }
    return 0;
}

int nk__turn_handle_request(nk__turn_req *r)
{
    uint16_t unknown[16];
    uint16_t method = nk_stun_method(r->m->type);
    if (method == NK_STUN_BINDING)
        return unauth_answer(r, binding(r), NULL, 0);
    if (method == NK_STUN_ALLOCATE) {
        int redirect = try_alternate(r);
        if (redirect != 0) /* counted in redirected, not as an Allocate error */
            return unauth_answer(r, redirect, &r->s->stats.redirected, 0);
    }
    uint64_t *stat = NULL;
    int code = 0;
    int rc = authenticate(r, &stat, &code);
    if (!r->authed)
        return unauth_answer(r, rc, stat, code);
    size_t n = nk_stun_unknown_required(r->m, unknown, 16);
    if (n > 0)
        return unknown_attributes(r, unknown, n < 16 ? n : 16);
    switch (method) {
    case NK_STUN_ALLOCATE: return allocate(r);
    case NK_STUN_REFRESH: return refresh(r);
    case NK_STUN_CREATE_PERMISSION: return create_permission(r);
    case NK_STUN_CHANNEL_BIND: return channel_bind(r);
    default: return error(r, 400);
    }
}
