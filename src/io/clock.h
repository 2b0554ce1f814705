/*
 * natkit internal, drivers only: the monotonic clock, and the wall clock where Unix time is
 * wanted. Protocol cores never include this; they take now_ms as an argument.
 */
#ifndef NK__CLOCK_H
#define NK__CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t nk__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t nk__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Unix time in milliseconds (CLOCK_REALTIME: it may jump; never for timers). */
static inline int64_t nk__unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
