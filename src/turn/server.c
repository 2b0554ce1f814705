/*
 * natkit: the TURN server core's entry points: creation, the two packet
 * doors (client side and relay side), the relay data paths and the timers.
 * Requests are answered in turn_methods.c. See include/natkit/turn_server.h
 * for the contract with the driver and docs/internals/turn-server.md.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "natkit/stun.h"
#include "server_internal.h"
#include "random.h"

void nk_turn_server_config_init(nk_turn_server_config *c)
{
    memset(c, 0, sizeof(*c));
    c->relay_port_min = 49152;
    c->relay_port_max = 65535;
    c->default_lifetime_s = NK_TURN_DEFAULT_LIFETIME_S;
    c->max_lifetime_s = 3600;
    c->nonce_lifetime_s = 600;
    c->max_allocations = 10000;
    c->max_allocations_per_user = 100;
    c->max_permissions = 64;
    c->max_channels = 64;
    c->unauth_rate = 500;
}

void nk__turn_random(const nk_turn_server *s, void *buf, size_t n)
{
    nk__random(s->ops.random, s->ops.ctx, buf, n); /* the driver's source, called with ops.ctx */
}

static int check_config(const nk_turn_server_config *c, const nk_turn_server_ops *ops)
{
    if (c == NULL || ops == NULL || ops->relay_open == NULL || ops->relay_close == NULL)
        return NK_ERR_INVAL;
    if (c->realm == NULL || c->realm[0] == '\0' || strlen(c->realm) > 763)
        return NK_ERR_INVAL;
    if (c->relay_ip.family != NK_AF_INET && c->relay_ip.family != NK_AF_INET6)
        return NK_ERR_INVAL;
    if (c->relay_port_min == 0 || c->relay_port_max < c->relay_port_min || c->default_lifetime_s == 0 ||
        c->max_lifetime_s < c->default_lifetime_s || c->nonce_lifetime_s == 0)
        return NK_ERR_INVAL;
    if ((c->n_alternates > 0 && c->alternates == NULL) || (c->n_tls_alternates > 0 && c->tls_alternates == NULL) ||
        (c->alternate_domain != NULL && strlen(c->alternate_domain) > 255))
        return NK_ERR_INVAL;
    return 0;
}

static nk_addr *copy_addrs(const nk_addr *v, size_t n, int *err)
{
    nk_addr *out = n > 0 ? malloc(n * sizeof(*out)) : NULL;
    if (n > 0 && out == NULL)
        *err = NK_ERR_NOMEM;
    else if (n > 0)
        memcpy(out, v, n * sizeof(*out));
    return out;
}

/* The Try Alternate lists and domain are the server's own copies. */
static int init_alternates(nk_turn_server *s, const nk_turn_server_config *cfg)
{
    int err = 0;
    s->alternates = copy_addrs(cfg->alternates, cfg->n_alternates, &err);
    s->tls_alternates = copy_addrs(cfg->tls_alternates, cfg->n_tls_alternates, &err);
    s->cfg.alternates = s->alternates;
    s->cfg.tls_alternates = s->tls_alternates;
    s->cfg.alternate_domain = NULL;
    if (err == 0 && cfg->alternate_domain != NULL && (s->cfg.alternate_domain = strdup(cfg->alternate_domain)) == NULL)
        err = NK_ERR_NOMEM;
    return err;
}

static int init_auth(nk_turn_server *s, const nk_turn_server_config *cfg)
{
    nk__turn_auth *a = &s->auth;
    a->realm = strdup(cfg->realm);
    if (a->realm == NULL)
        return NK_ERR_NOMEM;
    if (cfg->auth_secret != NULL) {
        a->secret_len = strlen(cfg->auth_secret);
        a->secret = malloc(a->secret_len + 1);
        if (a->secret == NULL)
            return NK_ERR_NOMEM;
        memcpy(a->secret, cfg->auth_secret, a->secret_len + 1);
    }
    a->nonce_lifetime_s = cfg->nonce_lifetime_s;
    a->external = s->ops.user_keys != NULL;
    nk__turn_random(s, a->nonce_key, sizeof(a->nonce_key));
    return 0;
}

int nk_turn_server_new(nk_turn_server **out, const nk_turn_server_config *cfg, const nk_turn_server_ops *ops)
{
    uint8_t hash_key[16];
    if (out == NULL)
        return NK_ERR_INVAL;
    *out = NULL;
    int err = check_config(cfg, ops);
    if (err != 0)
        return err;
    if (ops->random == NULL && sodium_init() < 0)
        return NK_ERR_SYSTEM;
    nk_turn_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    s->cfg = *cfg;
    s->ops = *ops;
    s->cfg.realm = NULL;
    s->cfg.auth_secret = NULL;
    nk__turn_random(s, hash_key, sizeof(hash_key));
    err = init_auth(s, cfg);
    if (err == 0)
        err = init_alternates(s, cfg);
    if (err == 0)
        err = nk__turn_policy_init(&s->policy);
    if (err == 0)
        err = nk__turn_table_init(&s->table, cfg->relay_port_min, cfg->relay_port_max, hash_key);
    if (err == 0) {
        nk__turn_random(s, hash_key, sizeof(hash_key));
        uint32_t burst = cfg->unauth_burst != 0 ? cfg->unauth_burst : 2 * cfg->unauth_rate;
        err = nk__ratelimit_new(&s->rate, cfg->unauth_rate, burst, cfg->rate_entries, hash_key);
    }
    if (err != 0) {
        nk_turn_server_free(s);
        return err;
    }
    s->cfg.realm = s->auth.realm;
    s->resv = cfg->shared != NULL ? nk__turn_shared_resv(cfg->shared) : &s->own_resv;
    *out = s;
    return 0;
}

void nk__turn_release_quota(nk_turn_server *s, nk__turn_user *owner, const char *username)
{
    if (s->cfg.shared != NULL)
        nk__turn_shared_release(s->cfg.shared, nk__turn_quota_name(&s->auth, username));
    else
        nk__turn_user_release(&s->table, owner);
}

void nk__turn_end_allocation(nk_turn_server *s, nk__turn_alloc *a)
{
    nk__turn_table_remove(&s->table, a);
    s->ops.relay_close(s->ops.ctx, &a->relay);
    nk__turn_release_quota(s, a->owner, a->username);
    s->stats.allocations--;
    nk__turn_alloc_free(a);
}

void nk_turn_server_free(nk_turn_server *s)
{
    if (s == NULL)
        return;
    nk__turn_alloc *a;
    while (s->table.heap != NULL && (a = nk__turn_table_earliest(&s->table)) != NULL)
        nk__turn_end_allocation(s, a);
    nk__turn_table_free(&s->table);
    nk__turn_policy_free(&s->policy);
    nk__turn_auth_free(&s->auth);
    nk__ratelimit_free(s->rate);
    free(s->alternates);
    free(s->tls_alternates);
    free((char *)s->cfg.alternate_domain);
    free(s);
}

int nk_turn_server_add_user(nk_turn_server *s, const char *user, const char *pass)
{
    return s == NULL ? NK_ERR_INVAL : nk__turn_auth_add_account(&s->auth, user, pass);
}

int nk_turn_server_allow_peer(nk_turn_server *s, const char *cidr)
{
    return s == NULL || cidr == NULL ? NK_ERR_INVAL : nk__cidr_list_add(&s->policy.allow, cidr);
}

int nk_turn_server_deny_peer(nk_turn_server *s, const char *cidr)
{
    return s == NULL || cidr == NULL ? NK_ERR_INVAL : nk__cidr_list_add(&s->policy.deny, cidr);
}

int nk_turn_server_peer_allowed(const nk_turn_server *s, const nk_addr *peer)
{
    return s != NULL && peer != NULL && nk__turn_policy_allows(&s->policy, peer);
}

void nk_turn_server_set_unix_time(nk_turn_server *s, int64_t now_ms, int64_t unix_ms)
{
    if (s != NULL)
        s->auth.unix_offset_ms = unix_ms - now_ms;
}

void nk_turn_server_stats(const nk_turn_server *s, nk_turn_server_stats_t *st)
{
    if (s != NULL && st != NULL)
        *st = s->stats;
}

/* ---- data paths ---- */

static int drop(nk_turn_server *s)
{
    s->stats.dropped++;
    return NK_ERR_NOT_FOUND;
}

static int to_peer(nk_turn_server *s, const nk__turn_alloc *a, const nk_addr *peer, const uint8_t *d,
                   size_t len, nk_transmit *tx, uint8_t *out, size_t cap)
{
    if (len > cap)
        return NK_ERR_NOBUFS;
    memcpy(out, d, len);
    tx->to = *peer;
    tx->from = a->relay;
    tx->transport = NK_TRANSPORT_UDP;
    tx->len = len;
    s->stats.to_peer++;
    s->stats.bytes_to_peer += len;
    return 1;
}

static int client_channel_data(nk_turn_server *s, int64_t now, uint8_t transport, const nk_addr *client,
                               const nk_addr *local, const uint8_t *p, size_t n, nk_transmit *tx,
                               uint8_t *out, size_t cap)
{
    uint16_t number;
    const uint8_t *d;
    size_t len, frame;
    if (nk_turn_channel_data_parse(p, n, transport != NK_TRANSPORT_UDP, &number, &d, &len, &frame) != 0) {
        s->stats.malformed++;
        return NK_ERR_MALFORMED;
    }
    nk__turn_alloc *a = nk__turn_table_find(&s->table, transport, client, local);
    nk__turn_chan *c = a != NULL ? nk__turn_chan_by_number(a, number, now) : NULL;
    if (c == NULL || !nk__turn_perm_ok(a, &c->peer, now))
        return drop(s);
    return to_peer(s, a, &c->peer, d, len, tx, out, cap);
}

int nk__turn_handle_send(nk_turn_server *s, int64_t now, uint8_t transport, const nk_addr *client,
                         const nk_addr *local, const nk_stun_msg *m, nk_transmit *tx, uint8_t *out, size_t cap)
{
    nk_addr peer;
    const nk_stun_attr *data = nk_stun_get(m, NK_STUN_ATTR_DATA);
    if (data == NULL || nk_stun_get_addr(m, NK_STUN_ATTR_XOR_PEER_ADDRESS, &peer) != 0) {
        s->stats.malformed++;
        return NK_ERR_MALFORMED;
    }
    nk__turn_alloc *a = nk__turn_table_find(&s->table, transport, client, local);
    if (a == NULL || !nk__turn_perm_ok(a, &peer, now))
        return drop(s);
    return to_peer(s, a, &peer, data->value, data->len, tx, out, cap);
}

int nk_turn_server_handle_client(nk_turn_server *s, int64_t now_ms, uint8_t transport, const nk_addr *client,
                                 const nk_addr *local, const uint8_t *p, size_t n, nk_transmit *tx,
                                 uint8_t *out, size_t cap)
{
    nk_stun_msg m;
    if (s == NULL || client == NULL || local == NULL || (p == NULL && n > 0) || tx == NULL || out == NULL)
        return NK_ERR_INVAL;
    if (nk_turn_is_channel_data(p, n))
        return client_channel_data(s, now_ms, transport, client, local, p, n, tx, out, cap);
    if (nk_stun_decode(&m, p, n, 0) != 0) {
        s->stats.malformed++;
        return NK_ERR_MALFORMED;
    }
    uint16_t cls = nk_stun_class(m.type);
    if (cls == NK_STUN_REQUEST) {
        nk__turn_req r = {.s = s, .now = now_ms, .transport = transport, .client = client,
                          .local = local, .m = &m, .tx = tx, .out = out, .cap = cap};
        s->stats.requests++;
        int rc = nk__turn_handle_request(&r);
        sodium_memzero(r.key, sizeof(r.key));
        return rc;
    }
    if (cls == NK_STUN_INDICATION && nk_stun_method(m.type) == NK_STUN_SEND)
        return nk__turn_handle_send(s, now_ms, transport, client, local, &m, tx, out, cap);
    return drop(s);
}

static int data_indication(nk_turn_server *s, const nk_addr *peer, const uint8_t *p, size_t n, uint8_t *out,
                           size_t cap)
{
    nk_stun_builder b;
    uint8_t tid[NK_STUN_TID_SIZE];
    nk__turn_random(s, tid, sizeof(tid));
    nk_stun_build_begin(&b, out, cap, nk_stun_type(NK_STUN_DATA, NK_STUN_INDICATION), tid);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_PEER_ADDRESS, peer);
    nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, p, n);
    return nk_stun_build_end(&b);
}

int nk_turn_server_handle_relay(nk_turn_server *s, int64_t now_ms, const nk_addr *relay, const nk_addr *peer,
                                const uint8_t *p, size_t n, nk_transmit *tx, uint8_t *out, size_t cap)
{
    if (s == NULL || relay == NULL || peer == NULL || (p == NULL && n > 0) || tx == NULL || out == NULL)
        return NK_ERR_INVAL;
    nk__turn_alloc *a = nk__turn_table_by_port(&s->table, relay->port);
    if (a == NULL || !nk__turn_perm_ok(a, peer, now_ms))
        return drop(s);
    nk__turn_chan *c = nk__turn_chan_by_peer(a, peer, now_ms);
    int len = c != NULL ? nk_turn_channel_data_write(out, cap, c->number, p, n, a->transport != NK_TRANSPORT_UDP)
                        : data_indication(s, peer, p, n, out, cap);
    if (len < 0)
        return drop(s);
    tx->to = a->client;
    tx->from = a->local;
    tx->transport = a->transport;
    tx->len = (size_t)len;
    s->stats.to_client++;
    s->stats.bytes_to_client += n;
    return 1;
}

int nk_turn_server_has_allocation(const nk_turn_server *s, uint8_t transport, const nk_addr *client,
                                  const nk_addr *local)
{
    return s != NULL && nk__turn_table_find(&s->table, transport, client, local) != NULL;
}

void nk_turn_server_client_closed(nk_turn_server *s, int64_t now_ms, uint8_t transport, const nk_addr *client,
                                  const nk_addr *local)
{
    nk__turn_alloc *a = s != NULL ? nk__turn_table_find(&s->table, transport, client, local) : NULL;
    if (a != NULL)
        nk__turn_end_allocation(s, a);
}

void nk_turn_server_count_dropped(nk_turn_server *s, int from_peer)
{
    if (from_peer)
        s->stats.dropped++;
    else
        s->stats.malformed++;
}

void nk_turn_server_handle_timeout(nk_turn_server *s, int64_t now_ms)
{
    nk__turn_alloc *a;
    while (s != NULL && (a = nk__turn_table_earliest(&s->table)) != NULL && a->expires <= now_ms)
        nk__turn_end_allocation(s, a);
}

int64_t nk_turn_server_next_deadline(const nk_turn_server *s)
{
    const nk__turn_alloc *a = s != NULL ? nk__turn_table_earliest(&s->table) : NULL;
    return a != NULL ? a->expires : INT64_MAX;
}
