/*
 * natkit: the clock natkit's drivers read. Protocol cores never read a clock:
 * every core function that needs the time takes it as now_ms, any monotonic
 * milliseconds; a program driving a core itself can pass nk_now_ms().
 */
#ifndef NATKIT_CLOCK_H
#define NATKIT_CLOCK_H

#include <stdint.h>

#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic milliseconds (CLOCK_MONOTONIC: not wall time, never goes back;
 * the origin is arbitrary, so only differences mean something). */
NK_API int64_t nk_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
