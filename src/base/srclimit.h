/*
 * natkit internal: limits per source address, for the servers (STUN, TURN, hub).
 *
 * A *source* is an IPv4 address, or an IPv6 /64 prefix (one subscriber usually
 * holds a whole /64, so counting single IPv6 addresses would limit nothing);
 * an IPv4-mapped IPv6 address is its IPv4 address.
 *
 *  - nk__ratelimit: a token bucket per source in a fixed table (4-way
 *    set-associative, least recently used way replaced), so a flood from
 *    spoofed sources costs no memory: it only pushes other sources out, and a
 *    source pushed out comes back with a full bucket (the limit can only get
 *    looser under such a flood, never lock a real client out).
 *  - nk__conncount: how many connections each source holds, with a cap; a
 *    table sized for the connection limit, so it never grows either.
 *
 * Both are sans-I/O: the time is an argument, the hash key is given (draw it
 * with nk__random). See docs/internals/stun-server.md ("Limits per source").
 */
#ifndef NK__SRCLIMIT_H
#define NK__SRCLIMIT_H

#include <stdint.h>

#include "natkit/addr.h"

#define NK__SRC_KEY_SIZE      9 /* family byte + 4 (IPv4) or 8 (IPv6 /64) bytes, zero padded */
#define NK__SRCLIMIT_HASH_KEY 16

/* The source an address counts against. */
void nk__src_key(const nk_addr *a, uint8_t key[NK__SRC_KEY_SIZE]);

/* ---- token buckets ---- */

typedef struct nk__ratelimit nk__ratelimit;

/*
 * rate: tokens per second per source (0: every take succeeds, no table);
 * burst: bucket size (0: rate; at most 1000000); entries: sources tracked at
 * once (0: 4096; rounded up to a power of two, at least 4). NK_ERR_INVAL or
 * NK_ERR_NOMEM. *out is NULL when rate is 0 (nk__ratelimit_take(NULL, ...) is 1).
 */
int nk__ratelimit_new(nk__ratelimit **out, uint32_t rate, uint32_t burst, uint32_t entries,
                      const uint8_t hash_key[NK__SRCLIMIT_HASH_KEY]);
void nk__ratelimit_free(nk__ratelimit *rl);
/* Takes one token from src's bucket: 1 when there was one, 0 when src is over its rate. */
int nk__ratelimit_take(nk__ratelimit *rl, int64_t now_ms, const nk_addr *src);
/* Sources in the table (for tests). */
uint32_t nk__ratelimit_tracked(const nk__ratelimit *rl);

/* ---- connections per source ---- */

typedef struct nk__conncount nk__conncount;

/*
 * cap: the most connections that will ever be counted at once (the server's
 * connection limit); limit: connections per source (0: no limit, no table:
 * *out is NULL and every add succeeds).
 */
int nk__conncount_new(nk__conncount **out, uint32_t cap, uint32_t limit, const uint8_t hash_key[NK__SRCLIMIT_HASH_KEY]);
void nk__conncount_free(nk__conncount *t);
/* Counts one more connection from src: 0, or NK_ERR_LIMIT (src holds `limit`
 * already, or cap sources are counted) and nothing is counted. */
int nk__conncount_add(nk__conncount *t, const nk_addr *src);
/* One connection from src ended (each successful add gets exactly one remove). */
void nk__conncount_remove(nk__conncount *t, const nk_addr *src);
/* Connections counted for src. */
uint32_t nk__conncount_get(const nk__conncount *t, const nk_addr *src);

#endif
