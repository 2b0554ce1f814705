/*
 * natkit io: counters one thread keeps and another reads (the metrics endpoint).
 * The loop that owns a plain stats struct copies it, field by field, into an
 * array of atomics after each batch of work; readers load from that array. Each
 * counter is read whole (never torn) and at most one batch old; no lock is taken
 * on the loop's path. The structs copied are all uint64_t fields.
 */
#ifndef NK_IO_STATS_PUB_H
#define NK_IO_STATS_PUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define NK__STATS_WORDS(type) (sizeof(type) / sizeof(uint64_t))

static inline void nk__stats_publish(_Atomic uint64_t *dst, const void *src, size_t size)
{
    const uint64_t *s = src;
    for (size_t i = 0; i < size / sizeof(uint64_t); i++)
        atomic_store_explicit(&dst[i], s[i], memory_order_relaxed);
}

static inline void nk__stats_read(void *dst, const _Atomic uint64_t *src, size_t size)
{
    uint64_t *d = dst;
    for (size_t i = 0; i < size / sizeof(uint64_t); i++)
        d[i] = atomic_load_explicit((_Atomic uint64_t *)&src[i], memory_order_relaxed);
}

#endif
