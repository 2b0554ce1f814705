/*
 * natkit internal: the one random fallback. Every core that takes an
 * nk_random_fn in its config draws its bytes here: the injected source when
 * there is one (tests inject a seeded one), else libsodium's randombytes_buf.
 */
#ifndef NK__RANDOM_H
#define NK__RANDOM_H

#include <stddef.h>

#include "natkit/common.h"

/* len random bytes into buf: fn(ctx, buf, len), or randombytes_buf when fn is NULL. */
void nk__random(nk_random_fn fn, void *ctx, void *buf, size_t len);

#endif
