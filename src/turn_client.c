/*
 * natkit: TURN client (RFC 8656), sans-I/O. See include/natkit/turn_client.h
 * and docs/internals/turn-client.md.
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

#include "cursor.h"
#include "natkit/stun.h"
#include "natkit/turn_client.h"

#define EVENT_CAP     64
#define STREAM_CAP    (131072 + 64)   /* two largest frames */
#define RETRY_MS      5000             /* a failed refresh is tried again after this */
#define REQ_CAP       1200             /* largest request we build */
#define SECURITY_COOKIE "obMatJos2"   /* RFC 8489 section 9.2: nonce prefix for feature bits */

enum op_kind { OP_ALLOC, OP_PERM, OP_CHAN };

enum op_state {
    ST_NONE = 0,      /* not requested yet (permissions wait for the allocation) */
    ST_VIA_CHANNEL,   /* permission installed by its channel's ChannelBind: wait for it */
    ST_PENDING,       /* first request in flight */
    ST_ACTIVE,        /* installed; refreshed at refresh_ms, gone at expires_ms */
    ST_FAILED,
};

typedef struct op {
    nk_stun_txn *txn;      /* request in flight, or NULL */
    uint16_t method;       /* of the request in flight */
    uint8_t state;         /* enum op_state */
    uint8_t auth_retries;  /* 401/438 rounds for the request in flight */
    uint8_t sent_auth;     /* the request in flight carried credentials */
    char sent_nonce[128];  /* ... with this nonce */
    int64_t refresh_ms;
    int64_t expires_ms;
} op;

typedef struct perm {
    op op;
    nk_addr ip;            /* port 0 */
} perm;

typedef struct chan {
    op op;
    nk_addr peer;
    uint16_t number;
} chan;

struct nk_turn_client {
    nk_turn_client_config cfg;
    char *user, *pass, *realm_cfg, *software;
    nk_turn_state state;
    int64_t now_ms;              /* of the last call that passed a time */

    /* long-term credentials, once the server said realm and nonce */
    int have_auth;
    char realm[128];
    char nonce[128];
    int pwalg;                   /* NK_STUN_PWALG_MD5 or _SHA256 */
    uint8_t pwalgs[64];          /* PASSWORD-ALGORITHMS as offered, echoed back */
    size_t pwalgs_len;
    uint8_t key[32];
    size_t key_len;

    op alloc;
    uint32_t lifetime_s;
    nk_addr relayed, mapped;

    perm *perms;
    size_t nperms;
    chan *chans;
    size_t nchans;
    uint16_t next_channel;

    nk_turn_event events[EVENT_CAP];
    size_t ev_head, ev_count;

    uint8_t *stream;             /* TCP/TLS reassembly */
    size_t stream_off, stream_len;
    int stream_broken;

    uint64_t dropped;
};

/* ---- small helpers ---- */

static int is_stream(const nk_turn_client *c)
{
    return c->cfg.transport != NK_TRANSPORT_UDP;
}

static void fill_random(nk_turn_client *c, uint8_t *buf, size_t len)
{
    if (c->cfg.random != NULL)
        c->cfg.random(c->cfg.random_ctx, buf, len);
    else
        randombytes_buf(buf, len);
}

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

static nk_turn_event *push_event(nk_turn_client *c, nk_turn_event_type type)
{
    if (c->ev_count == EVENT_CAP) {
        c->dropped++;
        return NULL;
    }
    nk_turn_event *ev = &c->events[(c->ev_head + c->ev_count) % EVENT_CAP];
    c->ev_count++;
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    return ev;
}

static void push_error(nk_turn_client *c, uint16_t method, int status, const nk_addr *peer, const char *reason,
                       size_t reason_len)
{
    nk_turn_event *ev = push_event(c, NK_TURN_EV_ERROR);
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

static void ip_only(nk_addr *out, const nk_addr *a)
{
    *out = *a;
    out->port = 0;
}

static perm *find_perm(nk_turn_client *c, const nk_addr *peer)
{
    for (size_t i = 0; i < c->nperms; i++)
        if (nk_addr_equal_ip(&c->perms[i].ip, peer))
            return &c->perms[i];
    return NULL;
}

static chan *find_chan_by_peer(nk_turn_client *c, const nk_addr *peer)
{
    for (size_t i = 0; i < c->nchans; i++)
        if (nk_addr_equal(&c->chans[i].peer, peer))
            return &c->chans[i];
    return NULL;
}

static chan *find_chan_by_number(nk_turn_client *c, uint16_t number)
{
    for (size_t i = 0; i < c->nchans; i++)
        if (c->chans[i].number == number)
            return &c->chans[i];
    return NULL;
}

static void op_drop_txn(op *o)
{
    free(o->txn);
    o->txn = NULL;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
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
    c->cfg = *cfg;
    c->user = dup_str(cfg->username);
    c->pass = dup_str(cfg->password);
    c->realm_cfg = dup_str(cfg->realm);
    c->software = dup_str(cfg->software);
    c->perms = calloc(NK_TURN_MAX_PEERS, sizeof(*c->perms));
    c->chans = calloc(NK_TURN_MAX_PEERS, sizeof(*c->chans));
    if (cfg->transport != NK_TRANSPORT_UDP)
        c->stream = malloc(STREAM_CAP);
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

static op *owner_op(void *owner)
{
    return (op *)owner; /* op is the first member of perm and chan; &c->alloc for the allocation */
}

/* (Re)builds and starts the op's request with a fresh transaction ID. */
static int start_request(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner)
{
    op *o = owner_op(owner);
    uint16_t method = request_method(c, kind);
    uint32_t lifetime = c->state == NK_TURN_DEALLOCATING ? 0 : c->cfg.lifetime_s;
    if (method == NK_STUN_REFRESH && c->state != NK_TURN_DEALLOCATING && lifetime == 0)
        lifetime = c->lifetime_s > 0 ? c->lifetime_s : NK_TURN_DEFAULT_LIFETIME_S;
    uint8_t tid[NK_STUN_TID_SIZE], buf[REQ_CAP];
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
                               c->cfg.rto_ms, c->cfg.rc, c->cfg.rm);
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
static int begin_op(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner)
{
    owner_op(owner)->auth_retries = 0;
    return start_request(c, now_ms, kind, owner);
}

/* ---- public requests ---- */

int nk_turn_client_allocate(nk_turn_client *c, int64_t now_ms)
{
    if (c->state != NK_TURN_IDLE)
        return NK_ERR_STATE;
    c->now_ms = now_ms;
    c->state = NK_TURN_ALLOCATING;
    c->alloc.state = ST_PENDING;
    int rc = begin_op(c, now_ms, OP_ALLOC, &c->alloc);
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
    return begin_op(c, now_ms, OP_PERM, p);
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
    if (ch == NULL) {
        if (c->nchans == NK_TURN_MAX_PEERS || c->next_channel > NK_TURN_CHANNEL_MAX)
            return NK_ERR_LIMIT;
        perm *p;
        int rc = get_perm(c, peer, &p);
        if (rc != 0)
            return rc;
        if (p->op.state == ST_NONE || p->op.state == ST_FAILED)
            p->op.state = ST_VIA_CHANNEL;
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
    return begin_op(c, now_ms, OP_CHAN, ch);
}

int nk_turn_client_deallocate(nk_turn_client *c, int64_t now_ms)
{
    if (c->state != NK_TURN_ALLOCATED)
        return NK_ERR_STATE;
    c->now_ms = now_ms;
    c->state = NK_TURN_DEALLOCATING;
    return begin_op(c, now_ms, OP_ALLOC, &c->alloc);
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

/* ---- responses ---- */

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
    int feature = strncmp(nonce, SECURITY_COOKIE, strlen(SECURITY_COOKIE)) == 0;
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

static void kick_waiting(nk_turn_client *c, int64_t now_ms)
{
    for (size_t i = 0; i < c->nchans; i++) {
        chan *ch = &c->chans[i];
        if (ch->op.state == ST_NONE) {
            ch->op.state = ST_PENDING;
            if (begin_op(c, now_ms, OP_CHAN, ch) != 0)
                ch->op.state = ST_FAILED;
        }
    }
    for (size_t i = 0; i < c->nperms; i++) {
        perm *p = &c->perms[i];
        if (p->op.state == ST_NONE) {
            p->op.state = ST_PENDING;
            if (begin_op(c, now_ms, OP_PERM, p) != 0)
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
        push_event(c, NK_TURN_EV_CLOSED);
        return;
    }
    if (c->state == NK_TURN_ALLOCATING) {
        if (nk_stun_get_addr(m, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &c->relayed) != 0) {
            c->state = NK_TURN_FAILED;
            stop_peers(c);
            push_error(c, NK_STUN_ALLOCATE, NK_ERR_MALFORMED, NULL, "no XOR-RELAYED-ADDRESS", 22);
            return;
        }
        nk_stun_get_addr(m, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &c->mapped);
        c->state = NK_TURN_ALLOCATED;
        c->alloc.state = ST_ACTIVE;
        schedule_alloc_refresh(c, now_ms, lifetime);
        nk_turn_event *ev = push_event(c, NK_TURN_EV_ALLOCATED);
        if (ev != NULL) {
            ev->relayed = c->relayed;
            ev->mapped = c->mapped;
            ev->lifetime_s = lifetime;
        }
        kick_waiting(c, now_ms);
        return;
    }
    schedule_alloc_refresh(c, now_ms, lifetime);
    nk_turn_event *ev = push_event(c, NK_TURN_EV_REFRESHED);
    if (ev != NULL)
        ev->lifetime_s = lifetime;
}

static void close_allocation(nk_turn_client *c, int status)
{
    stop_peers(c);
    c->state = NK_TURN_CLOSED;
    c->alloc.state = ST_NONE;
    c->alloc.refresh_ms = c->alloc.expires_ms = NK_DEADLINE_NONE;
    op_drop_txn(&c->alloc);
    nk_turn_event *ev = push_event(c, NK_TURN_EV_CLOSED);
    if (ev != NULL)
        ev->status = status;
}

static void alloc_failure(nk_turn_client *c, int64_t now_ms, uint16_t method, int status, const char *reason,
                          size_t reason_len)
{
    if (c->state == NK_TURN_DEALLOCATING) {
        close_allocation(c, status == NK_ERR_STUN(437) ? 0 : status);
        return;
    }
    push_error(c, method, status, NULL, reason, reason_len);
    if (c->state == NK_TURN_ALLOCATING) {
        c->state = NK_TURN_FAILED;
        c->alloc.state = ST_FAILED;
        stop_peers(c);
        return;
    }
    if (status == NK_ERR_STUN(437)) { /* the server no longer has our allocation */
        close_allocation(c, status);
        return;
    }
    c->alloc.refresh_ms = min64(now_ms + RETRY_MS, c->alloc.expires_ms);
}

/* Success or failure of a permission/channel request; ops share the logic. */
static void peer_op_done(nk_turn_client *c, int64_t now_ms, op *o, int status, int refresh_s, int lifetime_s)
{
    if (status == 0) {
        o->state = ST_ACTIVE;
        o->refresh_ms = now_ms + (int64_t)refresh_s * 1000;
        o->expires_ms = now_ms + (int64_t)lifetime_s * 1000;
    } else if (o->state == ST_ACTIVE && now_ms + RETRY_MS < o->expires_ms) {
        o->refresh_ms = now_ms + RETRY_MS;
    } else {
        o->state = ST_FAILED;
        o->refresh_ms = o->expires_ms = NK_DEADLINE_NONE;
    }
}

static void perm_done(nk_turn_client *c, int64_t now_ms, perm *p, int status, const char *reason, size_t rlen)
{
    int first = p->op.state != ST_ACTIVE;
    peer_op_done(c, now_ms, &p->op, status, NK_TURN_PERMISSION_REFRESH_S, NK_TURN_PERMISSION_LIFETIME_S);
    if (status != 0) {
        push_error(c, NK_STUN_CREATE_PERMISSION, status, &p->ip, reason, rlen);
    } else if (first) {
        nk_turn_event *ev = push_event(c, NK_TURN_EV_PERMISSION);
        if (ev != NULL)
            ev->peer = p->ip;
    }
}

static void chan_done(nk_turn_client *c, int64_t now_ms, chan *ch, int status, const char *reason, size_t rlen)
{
    int first = ch->op.state != ST_ACTIVE;
    peer_op_done(c, now_ms, &ch->op, status, NK_TURN_CHANNEL_REFRESH_S, NK_TURN_CHANNEL_LIFETIME_S);
    perm *p = find_perm(c, &ch->peer);
    if (status != 0) {
        if (p != NULL && p->op.state == ST_VIA_CHANNEL)
            p->op.state = ST_FAILED;
        push_error(c, NK_STUN_CHANNEL_BIND, status, &ch->peer, reason, rlen);
        return;
    }
    if (p != NULL && p->op.txn == NULL && p->op.state != ST_PENDING) /* ChannelBind installed it too */
        peer_op_done(c, now_ms, &p->op, 0, NK_TURN_PERMISSION_REFRESH_S, NK_TURN_PERMISSION_LIFETIME_S);
    if (first) {
        nk_turn_event *ev = push_event(c, NK_TURN_EV_CHANNEL);
        if (ev != NULL) {
            ev->peer = ch->peer;
            ev->channel = ch->number;
        }
    }
}

static void op_done(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner, uint16_t method,
                    const nk_stun_msg *m, int status, const char *reason, size_t rlen)
{
    op_drop_txn(owner_op(owner));
    if (kind == OP_ALLOC) {
        if (status == 0)
            alloc_success(c, now_ms, m);
        else
            alloc_failure(c, now_ms, method, status, reason, rlen);
    } else if (kind == OP_PERM) {
        perm_done(c, now_ms, owner, status, reason, rlen);
    } else {
        chan_done(c, now_ms, owner, status, reason, rlen);
    }
}

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

static int handle_response(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const nk_stun_msg *m)
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
    if (cls == NK_STUN_SUCCESS) {
        op_done(c, now_ms, kind, owner, method, m, 0, NULL, 0);
        return 0;
    }
    int code = 0;
    const char *reason = NULL;
    size_t rlen = 0;
    if (nk_stun_get_error(m, &code, &reason, &rlen) != 0) {
        op_done(c, now_ms, kind, owner, method, m, NK_ERR_MALFORMED, "bad ERROR-CODE", 14);
        return 0;
    }
    int status = NK_ERR_STUN(code);
    if ((code == 401 || code == 438) && auth_retry(c, now_ms, kind, owner, m, code, &status))
        return 0;
    if (status == NK_ERR_AUTH) {
        reason = "the server's realm is not the expected one";
        rlen = strlen(reason);
    }
    op_done(c, now_ms, kind, owner, method, m, status, reason, rlen);
    return 0;
}

static void deliver(nk_turn_client *c, const nk_addr *peer, uint16_t channel, const uint8_t *data, size_t len)
{
    nk_turn_event *ev = push_event(c, NK_TURN_EV_DATA);
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
        return handle_response(c, now_ms, from, &m);
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
    while (!c->stream_broken && c->ev_count + 4 <= EVENT_CAP) {
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
    if (n > STREAM_CAP - c->stream_len)
        return NK_ERR_NOBUFS;
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
        op_done(c, now_ms, kind, owner, o->method, NULL, NK_ERR_TIMEOUT, "no response", 11);
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
            close_allocation(c, NK_ERR_TIMEOUT);
        else if (kind == OP_PERM)
            perm_done(c, now_ms, owner, NK_ERR_TIMEOUT, "expired", 7);
        else
            chan_done(c, now_ms, owner, NK_ERR_TIMEOUT, "expired", 7);
        return;
    }
    if (o->txn == NULL && now_ms >= o->refresh_ms && begin_op(c, now_ms, kind, owner) != 0)
        o->refresh_ms = now_ms + RETRY_MS;
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
    if (c->ev_count == 0 && c->stream != NULL)
        process_stream(c, c->now_ms); /* frames left over when the queue was full */
    if (c->ev_count == 0)
        return NK_ERR_AGAIN;
    *ev = c->events[c->ev_head];
    c->ev_head = (c->ev_head + 1) % EVENT_CAP;
    c->ev_count--;
    return 0;
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
