/*
 * natkit node: the hub reconnection schedule (sans-I/O). Which hub to dial next, and how long
 * to wait before: exponential backoff with jitter, the hub's own retry-after hint, hubs that
 * are not hubs left out. The node owns one; docs/internals/node.md ("Hub reconnection").
 */
#ifndef NK__NODE_REDIAL_H
#define NK__NODE_REDIAL_H

#include <stddef.h>
#include <stdint.h>

#define NK__REDIAL_MAX 8 /* hubs (NK_NODE_MAX_HUBS) */

typedef struct nk__redial {
    int64_t base_ms;   /* first delay (500) */
    int64_t cap_ms;    /* the backoff's ceiling (30000) */
    int64_t stable_ms; /* a registration that held this long starts the backoff over (10000) */
    int64_t cur_ms;    /* the next backoff, before jitter */
    unsigned fails;    /* attempts in a row that did not end in a stable registration */
    size_t n;          /* hubs */
    size_t at;         /* the hub of the current (or last) attempt */
    int started;       /* an attempt was picked */
    uint8_t answered[NK__REDIAL_MAX]; /* it answered like a hub once (a challenge or a CLOSE) */
    uint8_t bad[NK__REDIAL_MAX];      /* left out: never answered like a hub, or refused us for good */
} nk__redial;

typedef enum nk__redial_outcome {
    NK__REDIAL_LOST = 0,   /* unreachable, closed, timed out, refused for now: try again */
    NK__REDIAL_NOT_HUB,    /* it did not answer like a hub: left out if it never did */
    NK__REDIAL_REFUSED,    /* a hub that refuses us for good (version, proof): left out */
} nk__redial_outcome;

void nk__redial_init(nk__redial *r, size_t nhubs);
/* The hub for the attempt starting now: the one after the last attempt's, skipping bad ones
 * (the first call: hub 0). -1 when every hub is bad. */
int nk__redial_pick(nk__redial *r);
/* The hub the next pick would give (without picking); -1 when every hub is bad. */
int nk__redial_peek(const nk__redial *r);
/* The hub of the current attempt answered like a hub. */
void nk__redial_answered(nk__redial *r);
/*
 * The current attempt is over (a failed dial, or a connection that ended): how long to wait
 * before the next one. held_ms: how long it was registered (-1: it never was); hint_ms: the
 * hub's retry-after (-1: none); rnd: a random 32-bit value (jitter). A hint is waited in full
 * plus 0-25 %; otherwise the backoff (base, doubling to cap) +-25 %.
 */
int64_t nk__redial_done(nk__redial *r, nk__redial_outcome out, int64_t held_ms, int64_t hint_ms, uint32_t rnd);
/* 1 when no hub is left to try (every one bad). */
int nk__redial_exhausted(const nk__redial *r);

#endif
