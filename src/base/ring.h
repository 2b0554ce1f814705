/*
 * natkit internal: the one fixed-capacity ring (FIFO) of fixed-size elements,
 * over storage the owner gives (usually an array in its own struct). Every
 * core's event queue, and the agent's datagram and signal queues, are one.
 * The ring never overwrites: push and emplace refuse when full, and the owner
 * decides what a full ring means (drop and count, keep the oldest, make room).
 * The storage must not move while the ring is used, except through nk__ring_move (how the
 * node's and the QUIC core's growing event queues grow).
 */
#ifndef NK__RING_H
#define NK__RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "natkit/common.h"

typedef struct nk__ring {
    uint8_t *slots;
    size_t elem_size, cap;
    size_t head, count; /* the oldest element is slots[head]; count elements follow it */
} nk__ring;

static inline void nk__ring_init(nk__ring *r, void *storage, size_t elem_size, size_t cap)
{
    r->slots = storage;
    r->elem_size = elem_size;
    r->cap = cap;
    r->head = r->count = 0;
}

static inline size_t nk__ring_count(const nk__ring *r)
{
    return r->count;
}

static inline int nk__ring_full(const nk__ring *r)
{
    return r->count == r->cap;
}

/* Drops every element. */
static inline void nk__ring_clear(nk__ring *r)
{
    r->head = r->count = 0;
}

/* The i-th element from the oldest (0: the next pop), or NULL when i >= count. */
static inline void *nk__ring_at(const nk__ring *r, size_t i)
{
    if (i >= r->count)
        return NULL;
    return r->slots + (r->head + i) % r->cap * r->elem_size;
}

/* The oldest element (what pop takes next), or NULL when empty. */
static inline void *nk__ring_peek(const nk__ring *r)
{
    return nk__ring_at(r, 0);
}

/* The newest element (what push added last), or NULL when empty. */
static inline void *nk__ring_last(const nk__ring *r)
{
    return r->count == 0 ? NULL : nk__ring_at(r, r->count - 1);
}

/* Moves the ring onto new storage of cap >= count elements (a growing queue), oldest first; returns
 * the old storage for the owner to free. */
static inline void *nk__ring_move(nk__ring *r, void *storage, size_t cap)
{
    uint8_t *old = r->slots, *dst = storage;
    for (size_t i = 0; i < r->count; i++)
        memcpy(dst + i * r->elem_size, nk__ring_at(r, i), r->elem_size);
    r->slots = storage;
    r->cap = cap;
    r->head = 0;
    return old;
}

/* Appends one element and returns its slot, uninitialized, for the caller to fill; NULL when full. */
static inline void *nk__ring_emplace(nk__ring *r)
{
    if (r->count == r->cap)
        return NULL;
    r->count++;
    return nk__ring_last(r);
}

/* Appends a copy of elem: 0, or NK_ERR_LIMIT when full (the ring is unchanged). */
static inline int nk__ring_push(nk__ring *r, const void *elem)
{
    void *slot = nk__ring_emplace(r);
    if (slot == NULL)
        return NK_ERR_LIMIT;
    memcpy(slot, elem, r->elem_size);
    return 0;
}

/* Removes the oldest element, copying it to out unless out is NULL: 0, or NK_ERR_AGAIN when empty. */
static inline int nk__ring_pop(nk__ring *r, void *out)
{
    if (r->count == 0)
        return NK_ERR_AGAIN;
    if (out != NULL)
        memcpy(out, r->slots + r->head * r->elem_size, r->elem_size);
    r->head = (r->head + 1) % r->cap;
    r->count--;
    return 0;
}

#endif
