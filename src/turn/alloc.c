/*
 * natkit: the TURN server's allocation table. Three indexes over the same
 * allocations: a hash table on the 5-tuple (SipHash with a random key, so
 * clients cannot flood one bucket), an array on the relay port (the relay
 * path's lookup is one load) and a binary min-heap on the expiry time (the
 * next deadline is its top). Quota records count allocations per user.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server_internal.h"

#define INITIAL_BUCKETS 64
#define USER_BUCKETS    256

static uint64_t tuple_hash(const nk__turn_table *t, uint8_t transport, const nk_addr *client,
                           const nk_addr *local)
{
    uint8_t k[1 + 2 * 19];
    uint8_t h[crypto_shorthash_BYTES];
    size_t n = 0;
    k[n++] = transport;
    const nk_addr *as[2] = {client, local};
    for (int i = 0; i < 2; i++) {
        k[n++] = as[i]->family;
        k[n++] = (uint8_t)(as[i]->port >> 8);
        k[n++] = (uint8_t)as[i]->port;
        size_t l = nk_addr_ip_len(as[i]);
        memcpy(k + n, as[i]->ip, l);
        n += l;
    }
    crypto_shorthash(h, k, n, t->hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return v;
}

static uint64_t name_hash(const nk__turn_table *t, const char *name)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, (const uint8_t *)name, strlen(name), t->hash_key);
    memcpy(&v, h, sizeof(v));
    return v;
}

int nk__turn_table_init(nk__turn_table *t, uint16_t port_min, uint16_t port_max, const uint8_t key[16])
{
    memset(t, 0, sizeof(*t));
    if (port_min == 0 || port_max < port_min)
        return NK_ERR_INVAL;
    memcpy(t->hash_key, key, 16);
    t->port_min = port_min;
    t->port_max = port_max;
    t->nbuckets = INITIAL_BUCKETS;
    t->nusers_buckets = USER_BUCKETS;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->by_port = calloc((size_t)(port_max - port_min) + 1, sizeof(*t->by_port));
    t->users = calloc(t->nusers_buckets, sizeof(*t->users));
    if (t->buckets == NULL || t->by_port == NULL || t->users == NULL) {
        nk__turn_table_free(t);
        return NK_ERR_NOMEM;
    }
    return 0;
}

void nk__turn_table_free(nk__turn_table *t)
{
    for (size_t i = 0; t->users != NULL && i < t->nusers_buckets; i++) {
        nk__turn_user *u = t->users[i];
        while (u != NULL) {
            nk__turn_user *next = u->next;
            free(u);
            u = next;
        }
    }
    free(t->buckets);
    free(t->by_port);
    free(t->heap);
    free(t->users);
    memset(t, 0, sizeof(*t));
}

nk__turn_alloc *nk__turn_table_find(const nk__turn_table *t, uint8_t transport, const nk_addr *client,
                                    const nk_addr *local)
{
    if (t->count == 0)
        return NULL;
    uint64_t h = tuple_hash(t, transport, client, local);
    for (nk__turn_alloc *a = t->buckets[h & (t->nbuckets - 1)]; a != NULL; a = a->hnext)
        if (a->hash == h && a->transport == transport && nk_addr_equal(&a->client, client) &&
            nk_addr_equal(&a->local, local))
            return a;
    return NULL;
}

nk__turn_alloc *nk__turn_table_by_port(const nk__turn_table *t, uint16_t port)
{
    if (port < t->port_min || port > t->port_max)
        return NULL;
    return t->by_port[port - t->port_min];
}

int nk__turn_table_port_free(const nk__turn_table *t, uint16_t port)
{
    return port >= t->port_min && port <= t->port_max && t->by_port[port - t->port_min] == NULL;
}

/* ---- the expiry heap ---- */

static void heap_set(nk__turn_table *t, size_t i, nk__turn_alloc *a)
{
    t->heap[i] = a;
    a->heap_idx = i;
}

static void heap_up(nk__turn_table *t, size_t i)
{
    nk__turn_alloc *a = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (t->heap[parent]->expires <= a->expires)
            break;
        heap_set(t, i, t->heap[parent]);
        i = parent;
    }
    heap_set(t, i, a);
}

static void heap_down(nk__turn_table *t, size_t i)
{
    nk__turn_alloc *a = t->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = a->expires;
        if (l < t->count && t->heap[l]->expires < best)
            m = l, best = t->heap[l]->expires;
        if (l + 1 < t->count && t->heap[l + 1]->expires < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(t, i, t->heap[m]);
        i = m;
    }
    heap_set(t, i, a);
}

static int grow(nk__turn_table *t)
{
    if (t->count < t->heap_cap && t->count < t->nbuckets)
        return 0;
    if (t->count >= t->heap_cap) {
        size_t cap = t->heap_cap ? t->heap_cap * 2 : 64;
        nk__turn_alloc **h = realloc(t->heap, cap * sizeof(*h));
        if (h == NULL)
            return NK_ERR_NOMEM;
        t->heap = h;
        t->heap_cap = cap;
    }
    if (t->count >= t->nbuckets) {
        size_t nb = t->nbuckets * 2;
        nk__turn_alloc **b = calloc(nb, sizeof(*b));
        if (b == NULL)
            return NK_ERR_NOMEM;
        for (size_t i = 0; i < t->nbuckets; i++) {
            for (nk__turn_alloc *a = t->buckets[i], *next; a != NULL; a = next) {
                next = a->hnext;
                a->hnext = b[a->hash & (nb - 1)];
                b[a->hash & (nb - 1)] = a;
            }
        }
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = nb;
    }
    return 0;
}

int nk__turn_table_insert(nk__turn_table *t, nk__turn_alloc *a)
{
    if (!nk__turn_table_port_free(t, a->relay.port))
        return NK_ERR_STATE;
    int err = grow(t);
    if (err != 0)
        return err;
    a->hash = tuple_hash(t, a->transport, &a->client, &a->local);
    size_t b = a->hash & (t->nbuckets - 1);
    a->hnext = t->buckets[b];
    t->buckets[b] = a;
    t->by_port[a->relay.port - t->port_min] = a;
    t->count++;
    heap_set(t, t->count - 1, a);
    heap_up(t, t->count - 1);
    return 0;
}

void nk__turn_table_remove(nk__turn_table *t, nk__turn_alloc *a)
{
    nk__turn_alloc **pp = &t->buckets[a->hash & (t->nbuckets - 1)];
    while (*pp != NULL && *pp != a)
        pp = &(*pp)->hnext;
    if (*pp == NULL)
        return;
    *pp = a->hnext;
    t->by_port[a->relay.port - t->port_min] = NULL;
    size_t i = a->heap_idx;
    t->count--;
    if (i != t->count) {
        nk__turn_alloc *moved = t->heap[t->count];
        heap_set(t, i, moved);
        heap_up(t, i);
        heap_down(t, moved->heap_idx);
    }
}

void nk__turn_table_set_expiry(nk__turn_table *t, nk__turn_alloc *a, int64_t expires)
{
    a->expires = expires;
    heap_up(t, a->heap_idx);
    heap_down(t, a->heap_idx);
}

nk__turn_alloc *nk__turn_table_earliest(const nk__turn_table *t)
{
    return t->count > 0 ? t->heap[0] : NULL;
}

/* ---- quota records ---- */

nk__turn_user *nk__turn_user_get(nk__turn_table *t, const char *name, int create)
{
    size_t b = name_hash(t, name) & (t->nusers_buckets - 1);
    for (nk__turn_user *u = t->users[b]; u != NULL; u = u->next)
        if (strcmp(u->name, name) == 0)
            return u;
    if (!create)
        return NULL;
    size_t len = strlen(name);
    nk__turn_user *u = malloc(sizeof(*u) + len + 1);
    if (u == NULL)
        return NULL;
    u->count = 0;
    memcpy(u->name, name, len + 1);
    u->next = t->users[b];
    t->users[b] = u;
    return u;
}

void nk__turn_user_release(nk__turn_table *t, nk__turn_user *u)
{
    if (u == NULL || --u->count > 0)
        return;
    nk__turn_user **pp = &t->users[name_hash(t, u->name) & (t->nusers_buckets - 1)];
    while (*pp != NULL && *pp != u)
        pp = &(*pp)->next;
    if (*pp != NULL)
        *pp = u->next;
    free(u);
}

void nk__turn_alloc_free(nk__turn_alloc *a)
{
    if (a == NULL)
        return;
    sodium_memzero(a->key, sizeof(a->key));
    free(a->username);
    free(a->perms);
    free(a->chans);
    free(a);
}

/* ---- permissions and channels ---- */

static int perm_is(const nk__turn_perm *p, const nk_addr *peer)
{
    return p->family == peer->family && memcmp(p->ip, peer->ip, nk_addr_ip_len(peer)) == 0;
}

int nk__turn_perm_ok(const nk__turn_alloc *a, const nk_addr *peer, int64_t now_ms)
{
    for (uint16_t i = 0; i < a->nperms; i++)
        if (perm_is(&a->perms[i], peer))
            return a->perms[i].expires > now_ms;
    return 0;
}

int nk__turn_perm_fit(const nk__turn_alloc *a, const nk_addr *peers, size_t n, int64_t now_ms, size_t max)
{
    size_t fresh = 0, room = a->nperms < max ? max - a->nperms : 0;
    for (uint16_t i = 0; i < a->nperms; i++)
        if (a->perms[i].expires <= now_ms)
            room++; /* an expired slot is reused, unless one of the peers refreshes it (counted below) */
    for (size_t k = 0; k < n; k++) {
        int known = 0;
        for (size_t j = 0; j < k && !known; j++)
            known = nk_addr_equal_ip(&peers[j], &peers[k]);
        for (uint16_t i = 0; i < a->nperms && !known; i++) {
            if (perm_is(&a->perms[i], &peers[k])) {
                known = 1;
                if (a->perms[i].expires <= now_ms)
                    room--; /* refreshed in place: no longer free for another peer */
            }
        }
        fresh += !known;
    }
    return fresh <= room;
}

int nk__turn_perm_install(nk__turn_alloc *a, const nk_addr *peer, int64_t expires, int64_t now_ms, size_t max)
{
    nk__turn_perm *free_slot = NULL;
    for (uint16_t i = 0; i < a->nperms; i++) {
        if (perm_is(&a->perms[i], peer)) {
            a->perms[i].expires = expires;
            return 0;
        }
        if (free_slot == NULL && a->perms[i].expires <= now_ms)
            free_slot = &a->perms[i];
    }
    if (free_slot == NULL) {
        if (a->nperms >= max)
            return NK_ERR_LIMIT;
        if (a->nperms == a->perms_cap) {
            uint16_t cap = a->perms_cap ? (uint16_t)(a->perms_cap * 2) : 2;
            nk__turn_perm *v = realloc(a->perms, cap * sizeof(*v));
            if (v == NULL)
                return NK_ERR_NOMEM;
            a->perms = v;
            a->perms_cap = cap;
        }
        free_slot = &a->perms[a->nperms++];
    }
    memset(free_slot, 0, sizeof(*free_slot));
    free_slot->family = peer->family;
    memcpy(free_slot->ip, peer->ip, nk_addr_ip_len(peer));
    free_slot->expires = expires;
    return 0;
}

nk__turn_chan *nk__turn_chan_by_number(nk__turn_alloc *a, uint16_t number, int64_t now_ms)
{
    for (uint16_t i = 0; i < a->nchans; i++)
        if (a->chans[i].number == number && a->chans[i].expires > now_ms)
            return &a->chans[i];
    return NULL;
}

nk__turn_chan *nk__turn_chan_by_peer(nk__turn_alloc *a, const nk_addr *peer, int64_t now_ms)
{
    for (uint16_t i = 0; i < a->nchans; i++)
        if (a->chans[i].expires > now_ms && nk_addr_equal(&a->chans[i].peer, peer))
            return &a->chans[i];
    return NULL;
}

/*
 * Binds or refreshes number <-> peer. NK_ERR_STATE when the number is bound
 * to another peer or the peer to another number (400), NK_ERR_LIMIT when full.
 */
int nk__turn_chan_install(nk__turn_alloc *a, uint16_t number, const nk_addr *peer, int64_t expires,
                          int64_t now_ms, size_t max)
{
    nk__turn_chan *by_num = nk__turn_chan_by_number(a, number, now_ms);
    nk__turn_chan *by_peer = nk__turn_chan_by_peer(a, peer, now_ms);
    if (by_num != by_peer)
        return NK_ERR_STATE;
    if (by_num != NULL) {
        by_num->expires = expires;
        return 0;
    }
    nk__turn_chan *slot = NULL;
    for (uint16_t i = 0; i < a->nchans && slot == NULL; i++)
        if (a->chans[i].expires <= now_ms)
            slot = &a->chans[i];
    if (slot == NULL) {
        if (a->nchans >= max)
            return NK_ERR_LIMIT;
        if (a->nchans == a->chans_cap) {
            uint16_t cap = a->chans_cap ? (uint16_t)(a->chans_cap * 2) : 1;
            nk__turn_chan *v = realloc(a->chans, cap * sizeof(*v));
            if (v == NULL)
                return NK_ERR_NOMEM;
            a->chans = v;
            a->chans_cap = cap;
        }
        slot = &a->chans[a->nchans++];
    }
    slot->number = number;
    slot->peer = *peer;
    slot->expires = expires;
    return 0;
}
