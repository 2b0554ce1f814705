/*
 * natkit: state shared by several TURN server cores serving one relay port
 * range (one per thread with `turn-server --threads N`): the allocation
 * quotas (a total and per-user counts) and the EVEN-PORT reservations, under
 * one mutex. A core without it counts and reserves alone.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server_internal.h"

#define QUOTA_BUCKETS 1024

typedef struct quota_user {
    struct quota_user *next;
    uint32_t count;
    char name[];
} quota_user;

struct nk_turn_shared {
    pthread_mutex_t lock;
    uint32_t max_total, max_per_user, total;
    uint8_t key[crypto_shorthash_KEYBYTES];
    quota_user *users[QUOTA_BUCKETS];
    nk__turn_resv_table resv;
};

int nk_turn_shared_new(nk_turn_shared **out, uint32_t max_total, uint32_t max_per_user)
{
    if (out == NULL || sodium_init() < 0)
        return NK_ERR_INVAL;
    nk_turn_shared *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NK_ERR_NOMEM;
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        free(q);
        return NK_ERR_SYSTEM;
    }
    q->resv.lock = &q->lock;
    q->max_total = max_total;
    q->max_per_user = max_per_user;
    randombytes_buf(q->key, sizeof(q->key));
    *out = q;
    return 0;
}

void nk_turn_shared_free(nk_turn_shared *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < QUOTA_BUCKETS; i++) {
        for (quota_user *u = q->users[i], *next; u != NULL; u = next) {
            next = u->next;
            free(u);
        }
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static quota_user **slot(nk_turn_shared *q, const char *name)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint32_t b;
    crypto_shorthash(h, (const uint8_t *)name, strlen(name), q->key);
    memcpy(&b, h, sizeof(b));
    quota_user **pp = &q->users[b % QUOTA_BUCKETS];
    while (*pp != NULL && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

int nk__turn_shared_take(nk_turn_shared *q, const char *name)
{
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    quota_user **pp = slot(q, name);
    if (q->total >= q->max_total)
        rc = 508;
    else if (*pp != NULL && q->max_per_user != 0 && (*pp)->count >= q->max_per_user)
        rc = 486;
    else if (*pp == NULL) {
        size_t len = strlen(name);
        quota_user *u = malloc(sizeof(*u) + len + 1);
        if (u == NULL)
            rc = 508;
        else {
            u->next = NULL;
            u->count = 0;
            memcpy(u->name, name, len + 1);
            *pp = u;
        }
    }
    if (rc == 0) {
        (*pp)->count++;
        q->total++;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

void nk__turn_shared_release(nk_turn_shared *q, const char *name)
{
    pthread_mutex_lock(&q->lock);
    quota_user **pp = slot(q, name);
    if (*pp != NULL) {
        q->total--;
        if (--(*pp)->count == 0) {
            quota_user *u = *pp;
            *pp = u->next;
            free(u);
        }
    }
    pthread_mutex_unlock(&q->lock);
}

nk__turn_resv_table *nk__turn_shared_resv(nk_turn_shared *q)
{
    return &q->resv;
}
