/*
 * natkit: TURN client (RFC 8656), sans-I/O. See include/natkit/turn_client.h
 * and docs/internals/turn-client.md.
 *
 * This file: the API, input (datagrams, stream framing, data from peers),
 * timers and output. turn_client_ops.c: requests and their outcomes.
 *
 * Every request (Allocate, Refresh, CreatePermission, ChannelBind) belongs to
 * an "op": the allocation's, or one permission's, or one channel's. An op
 * owns at most one nk_stun_txn at a time and its refresh/expiry times; the
 * same code drives all three kinds, and only the attributes of the request
 * and what a success means differ.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "client_internal.h"

static char *dup_str(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

static void ip_only(nk_addr *out, const nk_addr *a)
{
    *out = *a;
    out->port = 0;
}

static chan *find_chan_by_peer(nk_turn_client *c, const nk_addr *peer)
{
    for (size_t i = 0; i < c->nchans; i++)
        if (nk_addr_equal(&c->chans[i].peer, peer))
            return &c->chans[i];
    return NULL;
}

/* ---- lifecycle ---- */

int nk_turn_client_new(nk_turn_client **out, const nk_turn_client_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->username == NULL || cfg->password == NULL ||
        cfg->server.family == NK_AF_NONE || cfg->transport > NK_TRANSPORT_TLS)
        return NK_ERR_INVAL;
    if (cfg->family != NK_AF_NONE && cfg->family != NK_AF_INET && cfg->family != NK_AF_INET6)
        return NK_ERR_INVAL;
    if (sodium_init() < 0)
        return NK_ERR_SYSTEM;
    nk_turn_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NK_ERR_NOMEM;
    nk__ring_init(&c->events, c->ev_slots, sizeof(c->ev_slots[0]), NK__TURN_EVENT_CAP);
    c->cfg = *cfg;
    c->alloc_rtt_ms = -1;
    c->user = dup_str(cfg->username);
    c->pass = dup_str(cfg->password);
    c->realm_cfg = dup_str(cfg->realm);
    c->software = dup_str(cfg->software);
    c->perms = calloc(NK_TURN_MAX_PEERS, sizeof(*c->perms));
    c->chans = calloc(NK_TURN_MAX_PEERS, sizeof(*c->chans));
    if (cfg->transport != NK_TRANSPORT_UDP)
        c->stream = malloc(NK__TURN_STREAM_CAP);
    if (c->user == NULL || c->pass == NULL || (cfg->realm != NULL && c->realm_cfg == NULL) ||
        (cfg->software != NULL && c->software == NULL) || c->perms == NULL || c->chans == NULL ||
        (cfg->transport != NK_TRANSPORT_UDP && c->stream == NULL)) {
        nk_turn_client_free(c);
        return NK_ERR_NOMEM;
    }
    c->cfg.username = c->user;
    c->cfg.password = c->pass;
    c->cfg.realm = c->realm_cfg;
    c->cfg.software = c->software;
    c->pwalg = NK_STUN_PWALG_MD5;
    c->next_channel = NK_TURN_CHANNEL_MIN;
    c->alloc.refresh_ms = c->alloc.expires_ms = NK_DEADLINE_NONE;
    *out = c;
    return 0;
}

void nk_turn_client_free(nk_turn_client *c)
{
    if (c == NULL)
        return;
    op_drop_txn(&c->alloc);
    for (size_t i = 0; i < c->nperms; i++)
        op_drop_txn(&c->perms[i].op);
    for (size_t i = 0; i < c->nchans; i++)
        op_drop_txn(&c->chans[i].op);
    free_secret(c->user);
    free_secret(c->pass);
    free(c->realm_cfg);
    free(c->software);
    free(c->perms);
    free(c->chans);
    free(c->stream);
    sodium_memzero(c->key, sizeof(c->key));
    free(c);
}

/* ---- public requests ---- */

int nk_turn_client_allocate(nk_turn_client *c, int64_t now_ms)
{
    if (c->state != NK_TURN_IDLE)
        return NK_ERR_STATE;
    c->now_ms = now_ms;
    c->state = NK_TURN_ALLOCATING;
    c->alloc.state = ST_PENDING;
    int rc = nk__turn_begin_op(c, now_ms, OP_ALLOC, &c->alloc);
    if (rc != 0)
        c->state = NK_TURN_FAILED;
    return rc;
}

static int usable_state(const nk_turn_client *c)
{
    return c->state == NK_TURN_IDLE || c->state == NK_TURN_ALLOCATING || c->state == NK_TURN_ALLOCATED;
}

/* Finds or adds the permission entry for peer's IP (state ST_NONE when new). */
static int get_perm(nk_turn_client *c, const nk_addr *peer, perm **out)
{
    perm *p = find_perm(c, peer);
    if (p == NULL) {
        if (c->nperms == NK_TURN_MAX_PEERS)
            return NK_ERR_LIMIT;
        p = &c->perms[c->nperms++];
        memset(p, 0, sizeof(*p));
        ip_only(&p->ip, peer);
        p->op.refresh_ms = p->op.expires_ms = NK_DEADLINE_NONE;
    }
    *out = p;
    return 0;
}

int nk_turn_client_permit(nk_turn_client *c, int64_t now_ms, const nk_addr *peer)
{
    if (peer == NULL || peer->family == NK_AF_NONE)
        return NK_ERR_INVAL;
    if (!usable_state(c))
        return NK_ERR_STATE;
    c->now_ms = now_ms;
    perm *p;
    int rc = get_perm(c, peer, &p);
    if (rc != 0)
        return rc;
    if (p->op.state == ST_PENDING || p->op.state == ST_ACTIVE || p->op.state == ST_VIA_CHANNEL)
        return 0;
    p->op.state = ST_NONE;
    if (c->state != NK_TURN_ALLOCATED)
        return 0; /* sent when the allocation succeeds */
    p->op.state = ST_PENDING;
    return nk__turn_begin_op(c, now_ms, OP_PERM, p);
}

int nk_turn_client_bind_channel(nk_turn_client *c, int64_t now_ms, const nk_addr *peer, uint16_t *channel)
{
    if (peer == NULL || peer->family == NK_AF_NONE)
        return NK_ERR_INVAL;
    if (!usable_state(c))
        return NK_ERR_STATE;
    c->now_ms = now_ms;
    chan *ch = find_chan_by_peer(c, peer);
    if (ch != NULL && ch->op.state != ST_FAILED) {
        if (channel != NULL)
            *channel = ch->number;
        return 0;
    }
    if (ch == NULL && (c->nchans == NK_TURN_MAX_PEERS || c->next_channel > NK_TURN_CHANNEL_MAX))
        return NK_ERR_LIMIT;
    /* The ChannelBind installs the permission too, unless one was asked for on its own. */
    size_t nperms = c->nperms;
    perm *p;
    int rc = get_perm(c, peer, &p);
    if (rc != 0)
        return rc;
    if (c->nperms != nperms || p->op.state == ST_FAILED)
        p->op.state = ST_VIA_CHANNEL;
    if (ch == NULL) {
        ch = &c->chans[c->nchans++];
        memset(ch, 0, sizeof(*ch));
        ch->peer = *peer;
        ch->number = c->next_channel++;
        ch->op.refresh_ms = ch->op.expires_ms = NK_DEADLINE_NONE;
    }
    if (channel != NULL)
        *channel = ch->number;
    ch->op.state = ST_NONE;
    if (c->state != NK_TURN_ALLOCATED)
        return 0;
    ch->op.state = ST_PENDING;
    return nk__turn_begin_op(c, now_ms, OP_CHAN, ch);
}

int nk_turn_client_deallocate(nk_turn_client *c, int64_t now_ms)
{
    if (c->state == NK_TURN_ALLOCATING && !c->have_auth) { /* nothing sent with credentials, so the */
        nk__turn_close_allocation(c, 0);                   /* server holds nothing: abandoned */
        return 0;
    }
    if (c->state == NK_TURN_ALLOCATING) { /* the allocation may be made: ended as soon as it is */
        c->release_asked = 1;
        return 0;
    }
    if (c->state != NK_TURN_ALLOCATED)
        return NK_ERR_STATE;
    c->now_ms = now_ms;
    c->state = NK_TURN_DEALLOCATING;
    return nk__turn_begin_op(c, now_ms, OP_ALLOC, &c->alloc);
}

/* ---- sending data ---- */

static int wrap_send_indication(nk_turn_client *c, const nk_addr *peer, const uint8_t *data, size_t len,
                                uint8_t *buf, size_t cap)
{
    uint8_t tid[NK_STUN_TID_SIZE];
    fill_random(c, tid, sizeof(tid));
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(NK_STUN_SEND, NK_STUN_INDICATION), tid);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_PEER_ADDRESS, peer);
    nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, data, len);
    return nk_stun_build_end(&b);
}

int nk_turn_client_send(nk_turn_client *c, const nk_addr *peer, const uint8_t *data, size_t len,
                        nk_transmit *out, uint8_t *buf, size_t cap)
{
    if (peer == NULL || out == NULL || buf == NULL || (data == NULL && len > 0) || len > 0xFFFF)
        return NK_ERR_INVAL;
    if (c->state != NK_TURN_ALLOCATED)
        return NK_ERR_STATE;
    int n;
    chan *ch = find_chan_by_peer(c, peer);
    if (ch != NULL && ch->op.state == ST_ACTIVE) {
        n = nk_turn_channel_data_write(buf, cap, ch->number, data, len, is_stream(c));
    } else {
        perm *p = find_perm(c, peer);
        if (p == NULL || p->op.state == ST_FAILED || p->op.state == ST_NONE)
            return NK_ERR_DENIED;
        n = wrap_send_indication(c, peer, data, len, buf, cap);
    }
    if (n < 0)
        return n;
    memset(out, 0, sizeof(*out));
    out->to = c->cfg.server;
    out->transport = c->cfg.transport;
    out->len = (size_t)n;
    return 0;
}

/* ---- input ---- */

static void deliver(nk_turn_client *c, const nk_addr *peer, uint16_t channel, const uint8_t *data, size_t len)
{
    nk_turn_event *ev = nk__turn_push_event(c, NK_TURN_EV_DATA);
    if (ev == NULL)
        return;
    ev->peer = *peer;
    ev->channel = channel;
    ev->data = data;
    ev->len = len;
}

static int have_allocation(const nk_turn_client *c)
{
    return c->state == NK_TURN_ALLOCATED || c->state == NK_TURN_DEALLOCATING;
}

static int handle_data_indication(nk_turn_client *c, const nk_stun_msg *m)
{
    nk_addr peer;
    const nk_stun_attr *data = nk_stun_get(m, NK_STUN_ATTR_DATA);
    if (!have_allocation(c) || data == NULL || nk_stun_get_addr(m, NK_STUN_ATTR_XOR_PEER_ADDRESS, &peer) != 0)
        return NK_ERR_NOT_FOUND;
    deliver(c, &peer, 0, data->value, data->len);
    return 0;
}

static int handle_stun(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t n)
{
    nk_stun_msg m;
    int rc = nk_stun_decode(&m, p, n, 0);
    if (rc != 0)
        return rc;
    uint16_t cls = nk_stun_class(m.type);
    if (cls == NK_STUN_INDICATION && nk_stun_method(m.type) == NK_STUN_DATA)
        return handle_data_indication(c, &m);
    if (cls == NK_STUN_SUCCESS || cls == NK_STUN_ERROR)
        return nk__turn_handle_response(c, now_ms, from, &m);
    return NK_ERR_NOT_FOUND;
}

static int handle_channel_data(nk_turn_client *c, const uint8_t *data, size_t len, uint16_t number)
{
    chan *ch = find_chan_by_number(c, number);
    if (ch == NULL || ch->op.state == ST_FAILED || !have_allocation(c))
        return NK_ERR_NOT_FOUND;
    deliver(c, &ch->peer, number, data, len);
    return 0;
}

static int handle_datagram(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t n)
{
    if (from != NULL && !nk_addr_equal(from, &c->cfg.server))
        return NK_ERR_NOT_FOUND;
    if (nk_turn_is_channel_data(p, n)) {
        uint16_t number;
        const uint8_t *data;
        size_t len, frame;
        int rc = nk_turn_channel_data_parse(p, n, 0, &number, &data, &len, &frame);
        return rc != 0 ? rc : handle_channel_data(c, data, len, number);
    }
    return handle_stun(c, now_ms, from != NULL ? from : &c->cfg.server, p, n);
}

/*
 * Frames and handles complete messages in the stream buffer while the event
 * queue has room. Returns 0, or NK_ERR_MALFORMED when the stream is broken.
 */
static int process_stream(nk_turn_client *c, int64_t now_ms)
{
    while (!c->stream_broken && nk__ring_count(&c->events) + 4 <= NK__TURN_EVENT_CAP) {
        const uint8_t *p = c->stream + c->stream_off;
        size_t n = c->stream_len - c->stream_off, frame;
        int rc;
        if (n == 0)
            break;
        if (nk_turn_is_channel_data(p, n)) {
            uint16_t number;
            const uint8_t *data;
            size_t len;
            rc = nk_turn_channel_data_parse(p, n, 1, &number, &data, &len, &frame);
            if (rc == NK_ERR_AGAIN)
                break;
            if (rc == 0 && handle_channel_data(c, data, len, number) != 0)
                c->dropped++;
        } else {
            rc = nk_stun_frame_length(p, n, &frame);
            if (rc == NK_ERR_AGAIN || (rc == 0 && frame > n))
                break;
            if (rc == 0 && handle_stun(c, now_ms, &c->cfg.server, p, frame) != 0)
                c->dropped++;
        }
        if (rc != 0) {
            c->stream_broken = 1;
            return NK_ERR_MALFORMED;
        }
        if (c->stream_reset) { /* redirected: the rest belongs to the old connection */
            c->stream_reset = 0;
            c->stream_off = c->stream_len = 0;
            break;
        }
        c->stream_off += frame;
    }
    return c->stream_broken ? NK_ERR_MALFORMED : 0;
}

static int handle_stream(nk_turn_client *c, int64_t now_ms, const uint8_t *p, size_t n)
{
    if (c->stream_broken)
        return NK_ERR_MALFORMED;
    if (c->stream_off > 0) { /* events handed out earlier pointed here; they are stale by now */
        memmove(c->stream, c->stream + c->stream_off, c->stream_len - c->stream_off);
        c->stream_len -= c->stream_off;
        c->stream_off = 0;
    }
    if (n > NK__TURN_STREAM_CAP - c->stream_len)
        return NK_ERR_NOBUFS;
    if (n > 0)
        memcpy(c->stream + c->stream_len, p, n);
    c->stream_len += n;
    return process_stream(c, now_ms);
}

int nk_turn_client_handle_input(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const uint8_t *p,
                                size_t n)
{
    if (p == NULL && n > 0)
        return NK_ERR_INVAL;
    c->now_ms = now_ms;
    if (is_stream(c))
        return handle_stream(c, now_ms, p, n);
    int rc = handle_datagram(c, now_ms, from, p, n);
    if (rc != 0) {
        c->dropped++;
        return rc == NK_ERR_NOT_FOUND ? rc : (rc == NK_ERR_INTEGRITY ? rc : NK_ERR_MALFORMED);
    }
    return 0;
}

/* ---- timers ---- */

/* Advances the op's transaction; a timeout fails the op. */
static void op_tick(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner)
{
    op *o = owner_op(owner);
    if (o->txn == NULL)
        return;
    nk_stun_txn_handle_timeout(o->txn, now_ms);
    if (o->txn->state == NK_STUN_TXN_TIMEOUT)
        nk__turn_op_done(c, now_ms, kind, owner, o->method, NULL, NK_ERR_TIMEOUT, "no response", 11);
}

/* Starts a due refresh, or expires the op. */
static void op_refresh(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner)
{
    op *o = owner_op(owner);
    if (o->state != ST_ACTIVE)
        return;
    if (now_ms >= o->expires_ms) { /* even with a refresh in flight: the server forgot it by now */
        op_drop_txn(o);
        if (kind == OP_ALLOC)
            nk__turn_close_allocation(c, NK_ERR_TIMEOUT);
        else if (kind == OP_PERM)
            nk__turn_perm_done(c, now_ms, owner, NK_ERR_TIMEOUT, "expired", 7);
        else
            nk__turn_chan_done(c, now_ms, owner, NK_ERR_TIMEOUT, "expired", 7);
        return;
    }
    if (o->txn == NULL && now_ms >= o->refresh_ms && nk__turn_begin_op(c, now_ms, kind, owner) != 0)
        o->refresh_ms = now_ms + NK__TURN_RETRY_MS;
}

void nk_turn_client_handle_timeout(nk_turn_client *c, int64_t now_ms)
{
    c->now_ms = now_ms;
    op_tick(c, now_ms, OP_ALLOC, &c->alloc);
    for (size_t i = 0; i < c->nperms; i++)
        op_tick(c, now_ms, OP_PERM, &c->perms[i]);
    for (size_t i = 0; i < c->nchans; i++)
        op_tick(c, now_ms, OP_CHAN, &c->chans[i]);
    if (c->state != NK_TURN_ALLOCATED)
        return;
    op_refresh(c, now_ms, OP_ALLOC, &c->alloc);
    for (size_t i = 0; i < c->nperms && c->state == NK_TURN_ALLOCATED; i++)
        op_refresh(c, now_ms, OP_PERM, &c->perms[i]);
    for (size_t i = 0; i < c->nchans && c->state == NK_TURN_ALLOCATED; i++)
        op_refresh(c, now_ms, OP_CHAN, &c->chans[i]);
}

static int64_t op_deadline(const op *o)
{
    int64_t d = o->txn != NULL ? nk_stun_txn_next_deadline(o->txn) : NK_DEADLINE_NONE;
    if (o->state == ST_ACTIVE)
        d = min64(d, o->txn != NULL ? o->expires_ms : min64(o->refresh_ms, o->expires_ms));
    return d;
}

int64_t nk_turn_client_next_deadline(const nk_turn_client *c)
{
    int64_t d = op_deadline(&c->alloc);
    if (c->state != NK_TURN_ALLOCATED && c->state != NK_TURN_DEALLOCATING && c->state != NK_TURN_ALLOCATING)
        return d;
    for (size_t i = 0; i < c->nperms; i++)
        d = min64(d, op_deadline(&c->perms[i].op));
    for (size_t i = 0; i < c->nchans; i++)
        d = min64(d, op_deadline(&c->chans[i].op));
    return d;
}

/* ---- output ---- */

int nk_turn_client_poll_transmit(nk_turn_client *c, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    c->now_ms = now_ms;
    if (c->alloc.txn != NULL && nk_stun_txn_poll_transmit(c->alloc.txn, now_ms, out, buf, cap) == 0)
        return 0;
    for (size_t i = 0; i < c->nchans; i++) {
        nk_stun_txn *t = c->chans[i].op.txn;
        if (t != NULL && nk_stun_txn_poll_transmit(t, now_ms, out, buf, cap) == 0)
            return 0;
    }
    for (size_t i = 0; i < c->nperms; i++) {
        nk_stun_txn *t = c->perms[i].op.txn;
        if (t != NULL && nk_stun_txn_poll_transmit(t, now_ms, out, buf, cap) == 0)
            return 0;
    }
    return NK_ERR_AGAIN;
}

int nk_turn_client_poll_event(nk_turn_client *c, nk_turn_event *ev)
{
    if (nk__ring_count(&c->events) == 0 && c->stream != NULL)
        process_stream(c, c->now_ms); /* frames left over when the queue was full */
    return nk__ring_pop(&c->events, ev);
}

nk_turn_state nk_turn_client_state(const nk_turn_client *c)
{
    return c->state;
}

int nk_turn_client_relayed(const nk_turn_client *c, nk_addr *relayed, nk_addr *mapped)
{
    if (c->state != NK_TURN_ALLOCATED && c->state != NK_TURN_DEALLOCATING)
        return NK_ERR_STATE;
    if (relayed != NULL)
        *relayed = c->relayed;
    if (mapped != NULL)
        *mapped = c->mapped;
    return 0;
}

void nk_turn_client_server(const nk_turn_client *c, nk_addr *server, const char **domain)
{
    if (server != NULL)
        *server = c->cfg.server;
    if (domain != NULL)
        *domain = c->alt_domain[0] != '\0' ? c->alt_domain : NULL;
}

uint64_t nk_turn_client_dropped(const nk_turn_client *c)
{
    return c->dropped;
}

/* ---- TURN REST credentials ---- */

int nk_turn_rest_credentials(const char *secret, int64_t expiry_unix, const char *name, char *user,
                             size_t user_cap, char *pass, size_t pass_cap)
{
    if (secret == NULL || user == NULL || pass == NULL || expiry_unix < 0)
        return NK_ERR_INVAL;
    int n = name != NULL && name[0] != '\0' ? snprintf(user, user_cap, "%lld:%s", (long long)expiry_unix, name)
                                            : snprintf(user, user_cap, "%lld", (long long)expiry_unix);
    if (n < 0 || (size_t)n >= user_cap)
        return NK_ERR_NOBUFS;
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (HMAC(EVP_sha1(), secret, (int)strlen(secret), (const uint8_t *)user, (size_t)n, mac, &mac_len) == NULL)
        return NK_ERR_SYSTEM;
    if (pass_cap < sodium_base64_ENCODED_LEN(mac_len, sodium_base64_VARIANT_ORIGINAL))
        return NK_ERR_NOBUFS;
    sodium_bin2base64(pass, pass_cap, mac, mac_len, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(mac, sizeof(mac));
    return 0;
}
