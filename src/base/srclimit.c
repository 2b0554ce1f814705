/* natkit internal: token buckets and connection counts per source address (srclimit.h). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "srclimit.h"

#define WAYS        4
#define MILLI       1000u /* tokens are kept in thousandths */
#define MAX_BURST   1000000u
#define MAX_ENTRIES (1u << 24)

void nk__src_key(const nk_addr *a, uint8_t key[NK__SRC_KEY_SIZE])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(key, 0, NK__SRC_KEY_SIZE);
    if (a->family == NK_AF_INET6 && memcmp(a->ip, mapped, sizeof(mapped)) == 0) {
        key[0] = NK_AF_INET;
        memcpy(key + 1, a->ip + 12, 4);
    } else if (a->family == NK_AF_INET6) {
        key[0] = NK_AF_INET6;
        memcpy(key + 1, a->ip, 8); /* the /64 */
    } else if (a->family == NK_AF_INET) {
        key[0] = NK_AF_INET;
        memcpy(key + 1, a->ip, 4);
    }
}

static uint64_t key_hash(const uint8_t hkey[crypto_shorthash_KEYBYTES], const uint8_t key[NK__SRC_KEY_SIZE])
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, key, NK__SRC_KEY_SIZE, hkey);
    memcpy(&v, h, sizeof(v));
    return v;
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---- token buckets ---- */

typedef struct bucket {
    uint8_t key[NK__SRC_KEY_SIZE];
    uint8_t used;
    uint32_t tokens; /* thousandths */
    int64_t last_ms; /* last refill, and the LRU age */
} bucket;

struct nk__ratelimit {
    uint64_t rate;  /* thousandths of a token per ms == tokens per second */
    uint64_t full;  /* burst in thousandths */
    uint32_t nsets; /* power of two */
    uint32_t tracked;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    bucket b[];
};

int nk__ratelimit_new(nk__ratelimit **out, uint32_t rate, uint32_t burst, uint32_t entries,
                      const uint8_t hash_key[NK__SRCLIMIT_HASH_KEY])
{
    if (out == NULL || burst > MAX_BURST || rate > MAX_BURST || entries > MAX_ENTRIES || hash_key == NULL)
        return NK_ERR_INVAL;
    *out = NULL;
    if (rate == 0)
        return 0;
    if (burst == 0)
        burst = rate;
    if (entries == 0)
        entries = 4096;
    uint32_t n = pow2_at_least(entries < WAYS ? WAYS : entries);
    nk__ratelimit *rl = calloc(1, sizeof(*rl) + (size_t)n * sizeof(bucket));
    if (rl == NULL)
        return NK_ERR_NOMEM;
    rl->rate = rate;
    rl->full = (uint64_t)burst * MILLI;
    rl->nsets = n / WAYS;
    memcpy(rl->hkey, hash_key, sizeof(rl->hkey));
    *out = rl;
    return 0;
}

void nk__ratelimit_free(nk__ratelimit *rl)
{
    free(rl);
}

/* src's bucket, refilled to now; a new source gets a way of its set (free, or the least recently used). */
static bucket *bucket_for(nk__ratelimit *rl, int64_t now_ms, const uint8_t key[NK__SRC_KEY_SIZE])
{
    bucket *set = &rl->b[(key_hash(rl->hkey, key) & (rl->nsets - 1)) * WAYS], *victim = &set[0];
    for (int i = 0; i < WAYS; i++) {
        bucket *b = &set[i];
        if (b->used && memcmp(b->key, key, NK__SRC_KEY_SIZE) == 0) {
            int64_t dt = now_ms - b->last_ms;
            if (dt > 0) {
                uint64_t add = (uint64_t)dt >= rl->full ? rl->full : (uint64_t)dt * rl->rate;
                b->tokens = (uint32_t)(b->tokens + add >= rl->full ? rl->full : b->tokens + add);
                b->last_ms = now_ms;
            }
            return b;
        }
        if (!b->used ? victim->used : (victim->used && b->last_ms < victim->last_ms))
            victim = b;
    }
    if (!victim->used)
        rl->tracked++;
    memcpy(victim->key, key, NK__SRC_KEY_SIZE);
    victim->used = 1;
    victim->tokens = (uint32_t)rl->full;
    victim->last_ms = now_ms;
    return victim;
}

int nk__ratelimit_take(nk__ratelimit *rl, int64_t now_ms, const nk_addr *src)
{
    if (rl == NULL)
        return 1;
    uint8_t key[NK__SRC_KEY_SIZE];
    nk__src_key(src, key);
    bucket *b = bucket_for(rl, now_ms, key);
    if (b->tokens < MILLI)
        return 0;
    b->tokens -= MILLI;
    return 1;
}

uint32_t nk__ratelimit_tracked(const nk__ratelimit *rl)
{
    return rl != NULL ? rl->tracked : 0;
}

/* ---- connections per source: open addressing, linear probing, backward-shift delete ---- */

typedef struct slot {
    uint8_t key[NK__SRC_KEY_SIZE];
    uint32_t count; /* 0: free */
} slot;

struct nk__conncount {
    uint32_t limit, cap, used, mask;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    slot s[];
};

int nk__conncount_new(nk__conncount **out, uint32_t cap, uint32_t limit, const uint8_t hash_key[NK__SRCLIMIT_HASH_KEY])
{
    if (out == NULL || cap > MAX_ENTRIES || hash_key == NULL)
        return NK_ERR_INVAL;
    *out = NULL;
    if (limit == 0)
        return 0;
    uint32_t n = pow2_at_least(cap < 8 ? 16 : cap * 2); /* load factor at most 1/2 */
    nk__conncount *t = calloc(1, sizeof(*t) + (size_t)n * sizeof(slot));
    if (t == NULL)
        return NK_ERR_NOMEM;
    t->limit = limit;
    t->cap = cap < 8 ? 8 : cap;
    t->mask = n - 1;
    memcpy(t->hkey, hash_key, sizeof(t->hkey));
    *out = t;
    return 0;
}

void nk__conncount_free(nk__conncount *t)
{
    free(t);
}

/* The slot holding key, or the free slot where it would go. */
static uint32_t find(const nk__conncount *t, const uint8_t key[NK__SRC_KEY_SIZE])
{
    uint32_t i = (uint32_t)key_hash(t->hkey, key) & t->mask;
    while (t->s[i].count != 0 && memcmp(t->s[i].key, key, NK__SRC_KEY_SIZE) != 0)
        i = (i + 1) & t->mask;
    return i;
}

int nk__conncount_add(nk__conncount *t, const nk_addr *src)
{
    if (t == NULL)
        return 0;
    uint8_t key[NK__SRC_KEY_SIZE];
    nk__src_key(src, key);
    slot *s = &t->s[find(t, key)];
    if (s->count >= t->limit || (s->count == 0 && t->used >= t->cap))
        return NK_ERR_LIMIT;
    if (s->count == 0) {
        memcpy(s->key, key, NK__SRC_KEY_SIZE);
        t->used++;
    }
    s->count++;
    return 0;
}

void nk__conncount_remove(nk__conncount *t, const nk_addr *src)
{
    if (t == NULL)
        return;
    uint8_t key[NK__SRC_KEY_SIZE];
    nk__src_key(src, key);
    uint32_t i = find(t, key);
    if (t->s[i].count == 0 || --t->s[i].count > 0)
        return;
    t->used--;
    /* Backward shift: pull later members of the probe run into the hole. */
    for (uint32_t j = (i + 1) & t->mask; t->s[j].count != 0; j = (j + 1) & t->mask) {
        uint32_t home = (uint32_t)key_hash(t->hkey, t->s[j].key) & t->mask;
        /* j may move to i when its home is not in (i, j] (cyclically) */
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->s[i] = t->s[j];
            t->s[j].count = 0;
            i = j;
        }
    }
}

uint32_t nk__conncount_get(const nk__conncount *t, const nk_addr *src)
{
    if (t == NULL)
        return 0;
    uint8_t key[NK__SRC_KEY_SIZE];
    nk__src_key(src, key);
    return t->s[find(t, key)].count;
}
