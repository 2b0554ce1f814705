/*
 * natkit hub: the sans-I/O server core. Per-connection state (challenge,
 * receive buffer, bounded send queue), the registration table (peer ID ->
 * connection, SipHash buckets) and routing. The driver feeds bytes and time
 * and pulls bytes and events; see include/natkit/hub.h and
 * docs/internals/hub.md.
 */
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"
#include "internal.h"
#include "random.h"
#include "srclimit.h"

enum { C_CHALLENGED = 1, C_REGISTERED, C_CLOSING };

/* A connection RELAY_BUSY relay frames went to since the last sweep keeps its send buffer when
 * the driver drains it, until the next sweep: a busy relay path allocates once per sweep_ms,
 * not once per write; a peer that got a packet or two keeps nothing. */
#define RELAY_BUSY 8

#define FWD_HEAD (1 + 2 * NK_PEER_ID_SIZE + 2) /* a forward record: type | src | dst | len u16 | payload */

/* What a registered peer did, for nk_hub_server_peers: allocated at its first routed frame or
 * REPORT, so an idle peer keeps none of it. */
typedef struct conn_counts {
    uint64_t relay_frames_sent, relay_bytes_sent;         /* its relay frames delivered */
    uint64_t relay_frames_received, relay_bytes_received; /* relay frames to it */
    uint64_t connects;                                    /* its CONNECT frames delivered */
    uint64_t reported_paths[4];                           /* its REPORTs, by nk_path_kind */
} conn_counts;

/* A place in one of the server's lists of connections (conn_list); which list it belongs to
 * depends on the state, so the links live in the union below. */
typedef struct conn_link {
    struct conn *prev, *next;
} conn_link;

typedef struct conn_list {
    struct conn *head, *tail;
} conn_list;

/*
 * One connection. What only a connection waiting for its REGISTER needs (challenge, the local
 * address its proof is bound to, its place in the unregistered list) and what only a registered
 * one needs (its ID, the paused list) share one union: ~190 bytes, not ~340. Its send buffer is
 * freed when the driver drains it (a busy relay path's: at the next sweep), its receive buffer whenever no
 * partial frame is left.
 */
typedef struct conn {
    nk_hub_conn_id id;
    void *user;
    struct conn *hnext; /* registration bucket chain */
    conn_counts *counts; /* NULL until it did something worth counting */
    uint8_t state;
    uint8_t send_pending; /* a SEND event is queued and not yet polled */
    uint8_t confirmed;    /* REGISTERED sent (cluster: once the driver confirmed the claim) */
    uint8_t paused;       /* cluster: its next frame waits for room in the forward queue */
    uint8_t relayed;      /* RELAY frames queued to it since the last sweep (up to RELAY_BUSY) */
    uint8_t close_told;   /* CLOSING: its CLOSE event was polled */
    uint16_t close_code;  /* CLOSING: the code of its CLOSE */
    nk_addr remote;
    int64_t last_rx_ms;
    union {
        struct { /* C_CHALLENGED (and CLOSING from it) */
            uint8_t challenge[NK_HUB_CHALLENGE_SIZE];
            nk_addr local;
            int64_t accepted_ms;
            conn_link unreg; /* the unregistered list (oldest first) */
        } a;
        struct { /* C_REGISTERED (and CLOSING from it) */
            nk_peer_id peer;
            int64_t registered_ms;
            conn_link paused;  /* the paused list (first paused first) while paused */
            int64_t paused_ms; /* when its waiting frame was stopped */
            uint32_t wait_rec; /* the forward record that frame needs (<= FWD_HEAD + 64 KiB) */
        } r;
    } u;
    nk__hub_fifo rx, tx; /* rx: one partial frame; while paused, the waiting frame and all input after it */
} conn;

struct nk_hub_server {
    nk_hub_server_config cfg;
    nk_addr advertised[NK_HUB_MAX_ADVERTISED];
    size_t max_body;
    conn **slots;         /* nslots = 2 x max_conns: closing connections keep theirs until
                             the driver frees them, so an eviction has a place at once */
    uint32_t nslots;
    uint32_t *gens;
    uint32_t *free_slots;
    uint32_t nfree;
    conn **buckets;
    size_t nbuckets;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    nk__hub_fifo events; /* nk_hub_server_event records */
    nk__hub_fifo fwd;    /* cluster: frames for other hubs (type | src | dst | len u16 | payload) */
    nk_hub_stats_t stats;
    int64_t next_sweep;
    int events_lost;      /* an event could not be queued (no memory): poll_event makes the SEND and
                             CLOSE events again from the connections' state */
    conn_list unreg;               /* accepted, not registered, not closing: oldest first */
    nk__conncount *per_ip;         /* connections per source; NULL: no limit */
    conn_list paused;              /* cluster: senders waiting for room in fwd, in the order they stopped */
    conn *admitted;                /* the paused connection being taken up again: its frames go first */
    int fwd_stalled;               /* a waiting frame expired and the driver has taken nothing since:
                                      cross-hub control frames are answered at once, nobody is paused */
    int64_t now_ms;                /* the latest time the driver gave */
};

void nk_hub_server_config_init(nk_hub_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
}

static void resolve_config(nk_hub_server_config *c)
{
    if (c->max_conns <= 0)
        c->max_conns = 4096;
    if (c->max_peers <= 0 || c->max_peers > c->max_conns)
        c->max_peers = c->max_conns;
    if (c->idle_ms <= 0)
        c->idle_ms = 60000;
    if (c->register_ms <= 0)
        c->register_ms = 5000;
    if (c->full_retry_ms <= 0)
        c->full_retry_ms = NK_HUB_FULL_RETRY_MS;
    if (c->max_per_ip < 0)
        c->max_per_ip = 0;
    if (c->queue_cap == 0)
        c->queue_cap = (size_t)256 * 1024;
    if (c->relay_cap == 0 || c->relay_cap > c->queue_cap)
        c->relay_cap = c->queue_cap / 2;
    if (c->forward_cap == 0)
        c->forward_cap = c->queue_cap;
    if (c->forward_wait_ms <= 0 || c->forward_wait_ms > NK_HUB_FORWARD_WAIT_MAX_MS)
        c->forward_wait_ms = c->forward_wait_ms <= 0 ? 15000 : NK_HUB_FORWARD_WAIT_MAX_MS;
    if (c->max_payload == 0 || c->max_payload > NK_HUB_MAX_PAYLOAD)
        c->max_payload = NK_HUB_MAX_PAYLOAD;
    if (c->forward_cap < FWD_HEAD + c->max_payload)
        c->forward_cap = FWD_HEAD + c->max_payload; /* any frame fits an empty queue: a waiting sender goes on */
    if (c->sweep_ms <= 0)
        c->sweep_ms = 1000;
}

int nk_hub_server_new(nk_hub_server **out, const nk_hub_server_config *cfg)
{
    if (out == NULL || sodium_init() < 0)
        return NK_ERR_INVAL;
    nk_hub_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    if (cfg != NULL)
        s->cfg = *cfg;
    resolve_config(&s->cfg);
    if (s->cfg.n_advertised > NK_HUB_MAX_ADVERTISED || (s->cfg.n_advertised > 0 && s->cfg.advertised == NULL)) {
        free(s);
        return NK_ERR_INVAL;
    }
    for (size_t i = 0; i < s->cfg.n_advertised; i++)
        s->advertised[i] = s->cfg.advertised[i];
    s->cfg.advertised = NULL;
    s->max_body = NK_PEER_ID_SIZE + s->cfg.max_payload;
    size_t n = (size_t)s->cfg.max_conns * 2;
    s->nslots = (uint32_t)n;
    s->nbuckets = 16;
    while (s->nbuckets < (size_t)s->cfg.max_peers)
        s->nbuckets *= 2;
    s->slots = calloc(n, sizeof(*s->slots));
    s->gens = calloc(n, sizeof(*s->gens));
    s->free_slots = calloc(n, sizeof(*s->free_slots));
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (s->slots == NULL || s->gens == NULL || s->free_slots == NULL || s->buckets == NULL) {
        nk_hub_server_free(s);
        return NK_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        s->free_slots[i] = (uint32_t)(n - 1 - i);
    s->nfree = (uint32_t)n;
    nk__random(s->cfg.random, s->cfg.random_ctx, s->hkey, sizeof(s->hkey));
    uint8_t ipkey[NK__SRCLIMIT_HASH_KEY];
    nk__random(s->cfg.random, s->cfg.random_ctx, ipkey, sizeof(ipkey));
    if (nk__conncount_new(&s->per_ip, s->nslots, (uint32_t)s->cfg.max_per_ip, ipkey) != 0) {
        nk_hub_server_free(s);
        return NK_ERR_NOMEM;
    }
    s->next_sweep = INT64_MIN;
    *out = s;
    return 0;
}

static void conn_free(conn *c)
{
    free(c->counts);
    nk__hub_fifo_free(&c->rx);
    nk__hub_fifo_free(&c->tx);
    free(c);
}

void nk_hub_server_free(nk_hub_server *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; s->slots != NULL && i < s->nslots; i++)
        if (s->slots[i] != NULL)
            conn_free(s->slots[i]);
    nk__conncount_free(s->per_ip);
    free(s->slots);
    free(s->gens);
    free(s->free_slots);
    free(s->buckets);
    nk__hub_fifo_free(&s->events);
    nk__hub_fifo_free(&s->fwd);
    free(s);
}

/* ---- tables ---- */

static conn *conn_get(const nk_hub_server *s, nk_hub_conn_id id)
{
    uint32_t slot = (uint32_t)(id & 0xffffffffu);
    if (slot == 0 || slot > s->nslots)
        return NULL;
    conn *c = s->slots[slot - 1];
    return c != NULL && c->id == id ? c : NULL;
}

static conn **bucket_of(const nk_hub_server *s, const nk_peer_id *peer)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, peer->key, NK_PEER_ID_SIZE, s->hkey);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return &s->buckets[v & (s->nbuckets - 1)];
}

static conn *peer_lookup(const nk_hub_server *s, const nk_peer_id *peer)
{
    for (conn *c = *bucket_of(s, peer); c != NULL; c = c->hnext)
        if (memcmp(c->u.r.peer.key, peer->key, NK_PEER_ID_SIZE) == 0)
            return c;
    return NULL;
}

static void peer_insert(nk_hub_server *s, conn *c)
{
    conn **b = bucket_of(s, &c->u.r.peer);
    c->hnext = *b;
    *b = c;
    s->stats.peers++;
}

static void peer_remove(nk_hub_server *s, conn *c)
{
    for (conn **pp = bucket_of(s, &c->u.r.peer); *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            c->hnext = NULL;
            s->stats.peers--;
            return;
        }
    }
}

/* c's counters, made at the first thing to count (NULL without memory: that is not counted). */
static conn_counts *counts_of(conn *c)
{
    if (c->counts == NULL)
        c->counts = calloc(1, sizeof(*c->counts));
    return c->counts;
}

int nk_hub_server_has_peer(const nk_hub_server *s, const nk_peer_id *peer)
{
    return peer_lookup(s, peer) != NULL;
}

/* ---- events and queues ---- */

static void push_event(nk_hub_server *s, nk_hub_server_event_type type, const conn *c, int code)
{
    nk_hub_server_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.conn = c != NULL ? c->id : 0;
    ev.code = code;
    if (type == NK_HUB_SEV_REGISTERED || type == NK_HUB_SEV_UNREGISTERED)
        ev.peer = c->u.r.peer;
    /* Without memory for it, the SEND and CLOSE events are made again from the connections'
     * state once the queue is empty (nk_hub_server_poll_event): a connection is never left
     * with bytes nobody sends or a close nobody carries out. */
    if (nk__hub_fifo_push(&s->events, &ev, sizeof(ev)) != 0)
        s->events_lost = 1;
}

static void mark_send(nk_hub_server *s, conn *c)
{
    if (!c->send_pending) {
        c->send_pending = 1;
        push_event(s, NK_HUB_SEV_SEND, c, 0);
    }
}

static void conn_close(nk_hub_server *s, conn *c, int code);

/* A registered connection leaves the table; a cluster driver releases the ID. */
static void peer_gone(nk_hub_server *s, conn *c)
{
    peer_remove(s, c);
    push_event(s, NK_HUB_SEV_UNREGISTERED, c, 0);
}

/* Control frames are never dropped: a peer that lets them pile up is closed. */
static void send_control(nk_hub_server *s, conn *c, uint8_t type, const void *a, size_t alen, const void *b,
                         size_t blen)
{
    if (c->state == C_CLOSING)
        return;
    if (c->tx.len + NK_HUB_HEADER_SIZE + alen + blen > s->cfg.queue_cap) {
        s->stats.overflow_closed++;
        conn_close(s, c, NK_HUB_CLOSE_OVERFLOW);
        return;
    }
    if (nk__hub_fifo_frame(&c->tx, type, a, alen, b, blen) != 0) {
        s->stats.nomem_closed++;
        conn_close(s, c, NK_HUB_CLOSE_OVERFLOW);
        return;
    }
    s->stats.frames_out++;
    mark_send(s, c);
}

/* Relay frames give way: dropped while the queue is above relay_cap. */
static int send_relay(nk_hub_server *s, conn *c, uint8_t type, const void *a, size_t alen, const void *b,
                      size_t blen)
{
    if (c->tx.len + NK_HUB_HEADER_SIZE + alen + blen > s->cfg.relay_cap ||
        nk__hub_fifo_frame(&c->tx, type, a, alen, b, blen) != 0) {
        s->stats.relay_dropped++;
        return NK_ERR_LIMIT;
    }
    s->stats.frames_out++;
    c->relayed += c->relayed < RELAY_BUSY;
    mark_send(s, c);
    return 0;
}

/* ---- lists of connections (unregistered, paused): doubly linked through a conn_link at off ---- */

#define UNREG_LINK offsetof(conn, u.a.unreg)
#define PAUSED_LINK offsetof(conn, u.r.paused)

static conn_link *link_of(conn *c, size_t off)
{
    return (conn_link *)((char *)c + off);
}

static void list_push(conn_list *l, conn *c, size_t off)
{
    conn_link *k = link_of(c, off);
    k->prev = l->tail;
    k->next = NULL;
    if (l->tail != NULL)
        link_of(l->tail, off)->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_unlink(conn_list *l, conn *c, size_t off)
{
    conn_link *k = link_of(c, off);
    if (k->prev != NULL)
        link_of(k->prev, off)->next = k->next;
    else
        l->head = k->next;
    if (k->next != NULL)
        link_of(k->next, off)->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
}

/* Leaves the unregistered list (it registered or is closing); once per connection. */
static void unreg_unlink(nk_hub_server *s, conn *c)
{
    if (c->state == C_CHALLENGED)
        list_unlink(&s->unreg, c, UNREG_LINK);
}

/* The CLOSE body for code: its reason, and for a full hub when to come back (the trailer; a
 * client retries then, with jitter). Its length or an error. */
static int close_body(const nk_hub_server *s, int code, uint8_t body[2 + NK_HUB_MAX_REASON])
{
    return nk_hub_close_encode(body, 2 + NK_HUB_MAX_REASON, code, nk_hub_close_reason(code),
                               code == NK_HUB_CLOSE_FULL ? s->cfg.full_retry_ms : -1);
}

int nk_hub_server_full_close(const nk_hub_server *s, uint8_t *buf, size_t cap)
{
    uint8_t body[2 + NK_HUB_MAX_REASON];
    if (s == NULL || buf == NULL)
        return NK_ERR_INVAL;
    int n = close_body(s, NK_HUB_CLOSE_FULL, body);
    return n > 0 ? nk_hub_frame_write(buf, cap, NK_HUB_T_CLOSE, body, (size_t)n) : n;
}

static void paused_unlink(nk_hub_server *s, conn *c);

static void conn_close(nk_hub_server *s, conn *c, int code)
{
    if (c->state == C_CLOSING)
        return;
    unreg_unlink(s, c);
    paused_unlink(s, c); /* what it still had to say goes with it */
    if (c->state == C_REGISTERED)
        peer_gone(s, c);
    uint8_t body[2 + NK_HUB_MAX_REASON];
    int n = close_body(s, code, body);
    /* Past the cap on purpose: the reason is the last thing this peer gets. */
    if (n > 0 && nk__hub_fifo_frame(&c->tx, NK_HUB_T_CLOSE, body, (size_t)n, NULL, 0) == 0)
        s->stats.frames_out++;
    c->state = C_CLOSING;
    c->close_code = (uint16_t)code;
    push_event(s, NK_HUB_SEV_CLOSE, c, code);
}

static void close_malformed(nk_hub_server *s, conn *c, int code)
{
    s->stats.malformed++;
    conn_close(s, c, code);
}

/* ---- connections ---- */

int nk_hub_server_accept(nk_hub_server *s, int64_t now_ms, const nk_addr *local, const nk_addr *remote, void *user,
                         nk_hub_conn_id *out)
{
    if (s == NULL || local == NULL || remote == NULL || out == NULL)
        return NK_ERR_INVAL;
    if (nk__conncount_add(s->per_ip, remote) != 0) {
        s->stats.rejected_per_ip++;
        return NK_ERR_LIMIT;
    }
    /* Full: the connection that has waited longest without registering makes room. */
    if (s->stats.conns >= (uint64_t)s->cfg.max_conns && s->unreg.head != NULL && s->nfree > 0) {
        s->stats.evicted++;
        conn_close(s, s->unreg.head, NK_HUB_CLOSE_REGISTER_TIMEOUT);
    } else if (s->stats.conns >= (uint64_t)s->cfg.max_conns || s->nfree == 0) {
        nk__conncount_remove(s->per_ip, remote);
        s->stats.rejected_full++;
        return NK_ERR_LIMIT;
    }
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        nk__conncount_remove(s->per_ip, remote);
        return NK_ERR_NOMEM;
    }
    uint32_t slot = s->free_slots[--s->nfree];
    s->gens[slot]++;
    c->id = (uint64_t)s->gens[slot] << 32 | (slot + 1);
    c->user = user;
    c->state = C_CHALLENGED;
    c->u.a.local = *local;
    c->remote = *remote;
    c->u.a.accepted_ms = c->last_rx_ms = s->now_ms = now_ms;
    nk__random(s->cfg.random, s->cfg.random_ctx, c->u.a.challenge, sizeof(c->u.a.challenge));
    s->slots[slot] = c;
    list_push(&s->unreg, c, UNREG_LINK);
    s->stats.accepted++;
    s->stats.conns++;
    uint8_t v = NK_HUB_VERSION;
    send_control(s, c, NK_HUB_T_CHALLENGE, &v, 1, c->u.a.challenge, sizeof(c->u.a.challenge));
    *out = c->id;
    return 0;
}

void nk_hub_server_conn_closed(nk_hub_server *s, nk_hub_conn_id id)
{
    conn *c = conn_get(s, id);
    if (c == NULL)
        return;
    unreg_unlink(s, c);
    paused_unlink(s, c);
    if (c->state == C_REGISTERED)
        peer_gone(s, c);
    nk__conncount_remove(s->per_ip, &c->remote);
    uint32_t slot = (uint32_t)(id & 0xffffffffu) - 1;
    s->slots[slot] = NULL;
    s->free_slots[s->nfree++] = slot;
    s->stats.closed++;
    s->stats.conns--;
    conn_free(c);
}

void nk_hub_server_close(nk_hub_server *s, nk_hub_conn_id id, int code)
{
    conn *c = conn_get(s, id);
    if (c != NULL)
        conn_close(s, c, code);
}

/* ---- frames ---- */

/* The proof must be bound to this connection's challenge and to an address of this hub. */
static int proof_ok(const nk_hub_server *s, const conn *c, const nk_peer_id *id, const uint8_t *sig)
{
    uint8_t msg[NK_HUB_PROOF_MSG_SIZE];
    for (size_t i = 0; i <= s->cfg.n_advertised; i++) {
        const nk_addr *hub = i == 0 ? &c->u.a.local : &s->advertised[i - 1];
        int n = nk_hub_proof_message(msg, sizeof(msg), c->u.a.challenge, hub, id);
        if (n > 0 && nk_peer_id_verify(id, msg, (size_t)n, sig) == 0)
            return 1;
    }
    return 0;
}

static void send_registered(nk_hub_server *s, conn *c)
{
    uint8_t body[NK_ADDR_WIRE_SIZE + 6];
    nk_addr_wire_put(body, &c->remote);
    nk__store_u16(body + NK_ADDR_WIRE_SIZE, (uint16_t)s->cfg.max_payload);
    nk__store_u32(body + NK_ADDR_WIRE_SIZE + 2, (uint32_t)s->cfg.idle_ms);
    c->confirmed = 1;
    send_control(s, c, NK_HUB_T_REGISTERED, body, sizeof(body), NULL, 0);
}

static void on_register(nk_hub_server *s, conn *c, const nk_hub_frame *f)
{
    if (f->body[0] != NK_HUB_VERSION) {
        close_malformed(s, c, NK_HUB_CLOSE_VERSION);
        return;
    }
    nk_peer_id id;
    memcpy(id.key, f->body + 1, NK_PEER_ID_SIZE);
    const uint8_t *sig = f->body + 1 + NK_PEER_ID_SIZE;
    if (!proof_ok(s, c, &id, sig)) {
        s->stats.auth_failed++;
        conn_close(s, c, NK_HUB_CLOSE_AUTH);
        return;
    }
    sodium_memzero(c->u.a.challenge, sizeof(c->u.a.challenge)); /* one proof per challenge */
    conn *old = peer_lookup(s, &id);
    if (old == NULL && s->stats.peers >= (uint64_t)s->cfg.max_peers) {
        s->stats.rejected_full++;
        conn_close(s, c, NK_HUB_CLOSE_FULL);
        return;
    }
    if (old != NULL) {
        s->stats.replaced++;
        conn_close(s, old, NK_HUB_CLOSE_REPLACED);
    }
    unreg_unlink(s, c); /* before its list links give way to the registered fields */
    sodium_memzero(&c->u, sizeof(c->u));
    c->u.r.peer = id;
    c->state = C_REGISTERED;
    c->u.r.registered_ms = c->last_rx_ms;
    peer_insert(s, c);
    s->stats.registered++;
    if (!s->cfg.cluster) /* a cluster's peer hears it once the directory has it */
        send_registered(s, c);
    push_event(s, NK_HUB_SEV_REGISTERED, c, 0);
}

/* src's frame for dst could not be delivered: src hears UNKNOWN_PEER (as a relay frame for RELAY). */
static void answer_unknown(nk_hub_server *s, conn *src, uint8_t type, const nk_peer_id *dst)
{
    s->stats.unknown_peer++;
    if (type == NK_HUB_T_RELAY)
        (void)send_relay(s, src, NK_HUB_T_UNKNOWN_PEER, &type, 1, dst->key, NK_PEER_ID_SIZE);
    else
        send_control(s, src, NK_HUB_T_UNKNOWN_PEER, &type, 1, dst->key, NK_PEER_ID_SIZE);
}

/* A routed frame from src_key to d, a peer here: 1 when it went into d's queue (a RELAY frame is
 * dropped when that queue is over its relay share; the QUIC inside retransmits), counted. */
static int deliver_to(nk_hub_server *s, conn *d, uint8_t type, const uint8_t *src_key, const uint8_t *payload,
                      size_t len)
{
    if (type == NK_HUB_T_RELAY) {
        if (send_relay(s, d, type, src_key, NK_PEER_ID_SIZE, payload, len) != 0)
            return 0;
        s->stats.relay_frames++;
        s->stats.relay_bytes += len;
        conn_counts *k = counts_of(d);
        if (k != NULL) {
            k->relay_frames_received++;
            k->relay_bytes_received += len;
        }
    } else {
        send_control(s, d, type, src_key, NK_PEER_ID_SIZE, payload, len);
    }
    s->stats.routed++;
    return 1;
}

/* ---- cluster backpressure: senders wait for room in the forward queue ---- */

static void paused_unlink(nk_hub_server *s, conn *c)
{
    if (!c->paused)
        return;
    list_unlink(&s->paused, c, PAUSED_LINK);
    c->paused = 0;
}

/* c's frame needs rec bytes of the forward queue and there is no room: c stops (its input waits in rx, the
 * driver stops reading it) until there is, or until forward_wait_ms. */
static void pause_conn(nk_hub_server *s, conn *c, size_t rec)
{
    c->paused = 1;
    c->u.r.paused_ms = s->now_ms;
    c->u.r.wait_rec = (uint32_t)rec;
    list_push(&s->paused, c, PAUSED_LINK);
    s->stats.cluster_paused++;
    push_event(s, NK_HUB_SEV_PAUSE, c, 0);
}

/* Room for rec more bytes, and no earlier sender waiting (or c is the one taken up again). */
static int forward_room(const nk_hub_server *s, const conn *c, size_t rec)
{
    return s->fwd.len + rec <= s->cfg.forward_cap && (s->paused.head == NULL || s->admitted == c);
}

/*
 * Cluster: a frame for a peer that is not here waits for the driver, within forward_cap. A RELAY
 * frame is a datagram: above half of the queue it is dropped (counted), as UDP would. Any other
 * frame is never dropped: without room its sender is paused (pause_conn); while forwarding is
 * stalled it is answered UNKNOWN_PEER at once instead, as with Redis away (counted in cluster_expired).
 */
static void forward(nk_hub_server *s, conn *c, uint8_t type, const nk_peer_id *dst, const uint8_t *payload,
                    size_t len)
{
    size_t rec = FWD_HEAD + len;
    uint8_t *p = NULL;
    if (type == NK_HUB_T_RELAY) {
        if (s->fwd.len + rec <= s->cfg.forward_cap / 2)
            p = nk__hub_fifo_reserve(&s->fwd, rec);
    } else if (s->fwd_stalled && s->fwd.len > 0) { /* (an empty queue cannot be stuck: queued, the
                                                       driver's taking it ends the stall) */
        s->stats.cluster_expired++;
        answer_unknown(s, c, type, dst);
        return;
    } else if (!forward_room(s, c, rec)) {
        pause_conn(s, c, rec);
        return;
    } else {
        p = nk__hub_fifo_reserve(&s->fwd, rec);
    }
    if (p == NULL) { /* a RELAY frame over its share, or no memory */
        s->stats.cluster_dropped++;
        if (type == NK_HUB_T_RELAY)
            s->stats.relay_dropped++;
        else
            answer_unknown(s, c, type, dst);
        return;
    }
    p[0] = type;
    memcpy(p + 1, c->u.r.peer.key, NK_PEER_ID_SIZE);
    memcpy(p + 1 + NK_PEER_ID_SIZE, dst->key, NK_PEER_ID_SIZE);
    nk__store_u16(p + 1 + 2 * NK_PEER_ID_SIZE, (uint16_t)len);
    if (len > 0)
        memcpy(p + FWD_HEAD, payload, len);
    s->stats.cluster_forwarded++;
    if (s->fwd.len == rec) /* was empty: one event per batch */
        push_event(s, NK_HUB_SEV_FORWARD, NULL, 0);
}

static void on_routed(nk_hub_server *s, conn *c, const nk_hub_frame *f)
{
    if (c->state != C_REGISTERED) {
        close_malformed(s, c, NK_HUB_CLOSE_NOT_REGISTERED);
        return;
    }
    if (f->len - NK_PEER_ID_SIZE > s->cfg.max_payload) {
        close_malformed(s, c, NK_HUB_CLOSE_TOO_LARGE);
        return;
    }
    nk_peer_id dst;
    memcpy(dst.key, f->body, NK_PEER_ID_SIZE);
    const uint8_t *payload = f->body + NK_PEER_ID_SIZE;
    size_t len = f->len - NK_PEER_ID_SIZE;
    conn *d = peer_lookup(s, &dst);
    if (d == NULL && s->cfg.cluster) {
        forward(s, c, f->type, &dst, payload, len);
        return;
    }
    if (d == NULL) {
        answer_unknown(s, c, f->type, &dst);
        return;
    }
    if (!deliver_to(s, d, f->type, c->u.r.peer.key, payload, len))
        return;
    conn_counts *k = f->type == NK_HUB_T_RELAY || f->type == NK_HUB_T_CONNECT ? counts_of(c) : NULL;
    if (k != NULL && f->type == NK_HUB_T_RELAY) {
        k->relay_frames_sent++;
        k->relay_bytes_sent += len;
    } else if (k != NULL) {
        k->connects++;
    }
}

/* A REPORT: counted for the metrics, from registered peers only (others are ignored, and
 * counted as such; the connection stays). */
static void on_report(nk_hub_server *s, conn *c, const nk_hub_frame *f)
{
    static const uint32_t bounds[] = NK_HUB_CONNECT_BOUNDS_MS;
    nk_hub_report r;
    size_t i = 0;
    if (c->state != C_REGISTERED || nk_hub_report_decode(f->body, f->len, &r) != 0) {
        s->stats.ignored_reports++;
        return;
    }
    while (i < NK_HUB_CONNECT_NBOUNDS && r.connect_ms > bounds[i])
        i++;
    s->stats.reports++;
    s->stats.report_path[r.path]++;
    conn_counts *k = counts_of(c);
    if (k != NULL)
        k->reported_paths[r.path]++;
    s->stats.report_connect_ms[i]++;
    s->stats.report_connect_ms_sum += r.connect_ms;
    s->stats.report_mapping[r.mapping]++;
    s->stats.report_filtering[r.filtering]++;
}

static void on_frame(nk_hub_server *s, conn *c, const nk_hub_frame *f)
{
    s->stats.frames_in++;
    int rc = nk_hub_frame_check(f);
    if (rc == NK_ERR_NOT_FOUND && f->type >= 0x80) {
        s->stats.ignored_unknown++; /* an extension we do not know */
        return;
    }
    if (rc != 0) {
        close_malformed(s, c, NK_HUB_CLOSE_PROTOCOL);
        return;
    }
    switch (f->type) {
    case NK_HUB_T_REGISTER:
        if (c->state != C_CHALLENGED)
            close_malformed(s, c, NK_HUB_CLOSE_PROTOCOL);
        else
            on_register(s, c, f);
        return;
    case NK_HUB_T_PING:
        s->stats.pings++;
        send_control(s, c, NK_HUB_T_PONG, f->body, f->len, NULL, 0);
        return;
    case NK_HUB_T_PONG:
        return;
    case NK_HUB_T_CLOSE:
        conn_close(s, c, NK_HUB_CLOSE_NORMAL);
        return;
    case NK_HUB_T_REPORT:
        on_report(s, c, f);
        return;
    default:
        if (nk_hub_type_is_routed(f->type))
            on_routed(s, c, f);
        else
            close_malformed(s, c, NK_HUB_CLOSE_PROTOCOL); /* hub-to-peer types */
        return;
    }
}

typedef struct frame_ctx {
    nk_hub_server *s;
    conn *c;
} frame_ctx;

static int on_frame_cb(void *ctx, const nk_hub_frame *f)
{
    frame_ctx *fc = ctx;
    on_frame(fc->s, fc->c, f);
    if (fc->c->paused) { /* the frame waits (counted when it is taken) */
        fc->s->stats.frames_in--;
        return NK__HUB_SPLIT_KEEP;
    }
    return fc->c->state == C_CLOSING;
}

/* Splits input into frames; what follows a frame that must wait stays in rx. */
static void conn_input(nk_hub_server *s, conn *c, const uint8_t *p, size_t n)
{
    frame_ctx fc = {s, c};
    int rc = nk__hub_split(&c->rx, s->max_body, p, n, on_frame_cb, &fc);
    if (c->rx.len == 0 && c->rx.p != NULL)
        nk__hub_fifo_free(&c->rx); /* a partial frame was completed: nothing to keep */
    if (rc == NK_ERR_LIMIT) {
        close_malformed(s, c, NK_HUB_CLOSE_TOO_LARGE);
    } else if (rc != 0) { /* NK_ERR_NOMEM: the rest of a frame could not be kept */
        s->stats.nomem_closed++;
        conn_close(s, c, NK_HUB_CLOSE_OVERFLOW);
    }
}

/* A paused connection goes on with the input it holds (it may stop again); the driver reads it again. */
static void run_held(nk_hub_server *s, conn *c)
{
    nk__hub_fifo held = c->rx;
    memset(&c->rx, 0, sizeof(c->rx));
    paused_unlink(s, c);
    c->last_rx_ms = s->now_ms; /* it was silent because we did not listen */
    if (held.len > 0)
        conn_input(s, c, nk__hub_fifo_data(&held), held.len);
    nk__hub_fifo_free(&held);
    if (!c->paused && c->state != C_CLOSING)
        push_event(s, NK_HUB_SEV_RESUME, c, 0);
}

/* Room in the forward queue: the senders that waited go on, first paused first. */
static void resume_paused(nk_hub_server *s)
{
    conn *c;
    while ((c = s->paused.head) != NULL && s->fwd.len + c->u.r.wait_rec <= s->cfg.forward_cap) {
        s->admitted = c; /* its waiting frame fits: it goes in ahead of the others still waiting */
        run_held(s, c);
        s->admitted = NULL;
    }
}

/*
 * The first sender paused forward_wait_ms ago: the cluster took nothing for that long (Redis stalled
 * without going away). Forwarding is stalled until the driver takes a frame again: every paused sender
 * goes on now, each cross-hub control frame it holds (its waiting one first) answered UNKNOWN_PEER
 * (forward), so its local frames and PINGs behind them are not held one forward_wait_ms per frame.
 */
static void expire_paused(nk_hub_server *s, int64_t now_ms)
{
    conn *c = s->paused.head;
    if (c == NULL || now_ms - c->u.r.paused_ms < s->cfg.forward_wait_ms)
        return;
    s->fwd_stalled = 1;
    while ((c = s->paused.head) != NULL)
        run_held(s, c); /* unlinks it; it cannot stop again while stalled */
}

int nk_hub_server_handle_bytes(nk_hub_server *s, int64_t now_ms, nk_hub_conn_id id, const uint8_t *p, size_t n)
{
    conn *c = conn_get(s, id);
    if (c == NULL || c->state == C_CLOSING)
        return NK_ERR_NOT_FOUND;
    s->now_ms = now_ms;
    c->last_rx_ms = now_ms;
    s->stats.bytes_in += n;
    if (c->paused) { /* the driver should have stopped reading; kept, in order */
        if (nk__hub_fifo_push(&c->rx, p, n) != 0) {
            s->stats.nomem_closed++;
            conn_close(s, c, NK_HUB_CLOSE_OVERFLOW);
        }
    } else {
        conn_input(s, c, p, n);
    }
    if (c->paused && c->rx.len > s->cfg.queue_cap) { /* input held for it is bounded like its send queue */
        s->stats.overflow_closed++;
        conn_close(s, c, NK_HUB_CLOSE_OVERFLOW);
    }
    return 0;
}

/* ---- time ---- */

static void sweep_conn(nk_hub_server *s, conn *c, int64_t now_ms)
{
    if (c->tx.len == 0)
        nk__hub_fifo_free(&c->tx); /* drained, kept while it relayed: given back now */
    c->relayed = 0;
    if (c->state == C_CHALLENGED && now_ms - c->u.a.accepted_ms >= s->cfg.register_ms) {
        s->stats.idle_closed++;
        s->stats.register_timeouts++;
        conn_close(s, c, NK_HUB_CLOSE_REGISTER_TIMEOUT);
    } else if (c->state == C_REGISTERED && !c->paused && now_ms - c->last_rx_ms >= s->cfg.idle_ms) {
        s->stats.idle_closed++;
        conn_close(s, c, NK_HUB_CLOSE_IDLE);
    }
}

void nk_hub_server_handle_timeout(nk_hub_server *s, int64_t now_ms)
{
    s->now_ms = now_ms;
    if (now_ms < s->next_sweep)
        return;
    for (uint32_t i = 0; i < s->nslots; i++)
        if (s->slots[i] != NULL)
            sweep_conn(s, s->slots[i], now_ms);
    expire_paused(s, now_ms);
    resume_paused(s);
    s->next_sweep = now_ms + s->cfg.sweep_ms;
}

int64_t nk_hub_server_next_deadline(const nk_hub_server *s)
{
    return s->next_sweep == INT64_MIN ? 0 : s->next_sweep;
}

/* ---- output ---- */

/* After events were lost: a CLOSE for every closing connection whose CLOSE was not polled, a SEND
 * for every one whose SEND was not (with the queue empty, none of those is still queued). */
static void remake_events(nk_hub_server *s)
{
    s->events_lost = 0;
    for (uint32_t i = 0; i < s->nslots && !s->events_lost; i++) {
        conn *c = s->slots[i];
        if (c == NULL)
            continue;
        if (c->state == C_CLOSING && !c->close_told)
            push_event(s, NK_HUB_SEV_CLOSE, c, c->close_code);
        else if (c->state != C_CLOSING && c->send_pending)
            push_event(s, NK_HUB_SEV_SEND, c, 0);
    }
}

int nk_hub_server_poll_event(nk_hub_server *s, nk_hub_server_event *ev)
{
    if (s->events.len < sizeof(*ev) && s->events_lost)
        remake_events(s);
    while (s->events.len >= sizeof(*ev)) {
        memcpy(ev, nk__hub_fifo_data(&s->events), sizeof(*ev));
        nk__hub_fifo_consume(&s->events, sizeof(*ev));
        conn *c = conn_get(s, ev->conn);
        if (c == NULL && (ev->type == NK_HUB_SEV_FORWARD || ev->type == NK_HUB_SEV_UNREGISTERED)) {
            ev->user = NULL; /* not about a live connection */
            return 0;
        }
        if (c == NULL)
            continue; /* closed since */
        if (ev->type == NK_HUB_SEV_SEND)
            c->send_pending = 0;
        if (ev->type == NK_HUB_SEV_CLOSE)
            c->close_told = 1;
        ev->user = c->user;
        return 0;
    }
    return NK_ERR_AGAIN;
}

int nk_hub_server_poll_transmit(nk_hub_server *s, nk_hub_conn_id id, uint8_t *buf, size_t cap)
{
    conn *c = conn_get(s, id);
    if (c == NULL)
        return NK_ERR_NOT_FOUND;
    size_t n = nk__hub_fifo_take(&c->tx, buf, cap);
    if (c->tx.len == 0 && c->relayed < RELAY_BUSY)
        nk__hub_fifo_free(&c->tx); /* an idle connection keeps no send buffer */
    s->stats.bytes_out += n;
    return (int)n;
}

size_t nk_hub_server_pending(const nk_hub_server *s, nk_hub_conn_id id)
{
    const conn *c = conn_get(s, id);
    return c != NULL ? c->tx.len : 0;
}

void nk_hub_server_stats(const nk_hub_server *s, nk_hub_stats_t *out)
{
    *out = s->stats;
}

size_t nk_hub_server_peers(const nk_hub_server *s, int64_t now_ms, nk_hub_peer_info *out, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; s != NULL && i < s->nslots; i++) {
        const conn *c = s->slots[i];
        if (c == NULL || c->state != C_REGISTERED)
            continue;
        if (out != NULL && n < cap) {
            nk_hub_peer_info *p = &out[n];
            memset(p, 0, sizeof(*p));
            p->peer = c->u.r.peer;
            p->addr = c->remote;
            p->registered_for_ms = now_ms - c->u.r.registered_ms;
            const conn_counts *k = c->counts;
            if (k != NULL) {
                p->relay_frames_sent = k->relay_frames_sent;
                p->relay_bytes_sent = k->relay_bytes_sent;
                p->relay_frames_received = k->relay_frames_received;
                p->relay_bytes_received = k->relay_bytes_received;
                p->connects = k->connects;
                memcpy(p->reported_paths, k->reported_paths, sizeof(p->reported_paths));
            }
        }
        n++;
    }
    return n;
}

/* ---- cluster ---- */

int nk_hub_server_poll_forward(nk_hub_server *s, int64_t now_ms, nk_hub_forward *out, uint8_t *buf, size_t cap)
{
    const size_t head = FWD_HEAD;
    if (s == NULL || out == NULL || s->fwd.len < head)
        return NK_ERR_AGAIN;
    s->now_ms = now_ms; /* a sender that stops again in resume_paused waits from now */
    const uint8_t *p = nk__hub_fifo_data(&s->fwd);
    size_t len = (size_t)p[head - 2] << 8 | p[head - 1];
    if (cap < len)
        return NK_ERR_NOBUFS;
    out->type = p[0];
    memcpy(out->src.key, p + 1, NK_PEER_ID_SIZE);
    memcpy(out->dst.key, p + 1 + NK_PEER_ID_SIZE, NK_PEER_ID_SIZE);
    if (len > 0)
        memcpy(buf, p + head, len);
    out->payload = buf;
    out->len = len;
    nk__hub_fifo_consume(&s->fwd, head + len);
    s->fwd_stalled = 0; /* the cluster moves again: senders wait for room as usual */
    resume_paused(s);
    return 0;
}

int nk_hub_server_deliver(nk_hub_server *s, int64_t now_ms, uint8_t type, const nk_peer_id *src,
                          const nk_peer_id *dst, const uint8_t *payload, size_t len)
{
    if (s == NULL || src == NULL || dst == NULL || !nk_hub_type_is_routed(type) || (len > 0 && payload == NULL) ||
        len > NK_HUB_MAX_PAYLOAD)
        return NK_ERR_INVAL;
    s->now_ms = now_ms;
    if (len > s->cfg.max_payload) { /* another hub takes more than we do: dropped, counted (the driver answers) */
        s->stats.cluster_dropped++;
        return NK_ERR_LIMIT;
    }
    conn *d = peer_lookup(s, dst);
    if (d == NULL)
        return NK_ERR_NOT_FOUND;
    s->stats.cluster_delivered += (uint64_t)deliver_to(s, d, type, src->key, payload, len);
    return 0;
}

int nk_hub_server_unknown_peer(nk_hub_server *s, uint8_t type, const nk_peer_id *src, const nk_peer_id *dst)
{
    if (s == NULL || src == NULL || dst == NULL)
        return NK_ERR_INVAL;
    conn *c = peer_lookup(s, src);
    if (c == NULL)
        return NK_ERR_NOT_FOUND;
    answer_unknown(s, c, type, dst);
    return 0;
}

int nk_hub_server_drop_peer(nk_hub_server *s, const nk_peer_id *peer, int code)
{
    if (s == NULL || peer == NULL || code < 0 || code > UINT16_MAX)
        return NK_ERR_INVAL;
    conn *c = peer_lookup(s, peer);
    if (c == NULL)
        return NK_ERR_NOT_FOUND;
    s->stats.replaced += code == NK_HUB_CLOSE_REPLACED; /* another code: closed, reason other */
    conn_close(s, c, code);
    return 0;
}

int nk_hub_server_paused(const nk_hub_server *s, nk_hub_conn_id id)
{
    const conn *c = s != NULL ? conn_get(s, id) : NULL;
    return c != NULL && c->paused;
}

int nk_hub_server_confirm(nk_hub_server *s, nk_hub_conn_id id)
{
    conn *c = s != NULL ? conn_get(s, id) : NULL;
    if (c == NULL || c->state != C_REGISTERED)
        return NK_ERR_NOT_FOUND;
    if (!c->confirmed)
        send_registered(s, c);
    return 0;
}
