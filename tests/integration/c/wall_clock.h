/* The real monotonic clock in milliseconds, for the cmocka programs of tests/integration/c
 * (real sockets, wall-clock deadlines). Unit tests never include it: they run on tests/sim's
 * clock. */
#ifndef NK_TEST_WALL_CLOCK_H
#define NK_TEST_WALL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
