/*
 * natkit: the session's anti-replay window (RFC 6479 style, as WireGuard): a
 * ring of 2048 bits over a 64-bit counter. Counters more than 1984 below the
 * highest accepted one are too old; everything in the window is accepted once.
 */
#include <string.h>

#include "internal.h"

#define WINDOW (NK__REPLAY_BITS - 64) /* one word is the sliding slack */

void nk__replay_init(nk__replay *r)
{
    memset(r, 0, sizeof(*r));
}

int nk__replay_check(const nk__replay *r, uint64_t counter)
{
    if (counter >= r->top)
        return 1;
    if (r->top - counter > WINDOW)
        return 0;
    uint64_t word = r->bitmap[(counter / 64) % NK__REPLAY_WORDS];
    return (word & ((uint64_t)1 << (counter % 64))) == 0;
}

static void slide(nk__replay *r, uint64_t counter)
{
    uint64_t old_block = r->top == 0 ? 0 : (r->top - 1) / 64;
    uint64_t diff = counter / 64 - old_block;
    if (diff > NK__REPLAY_WORDS)
        diff = NK__REPLAY_WORDS;
    for (uint64_t i = 1; i <= diff; i++)
        r->bitmap[(old_block + i) % NK__REPLAY_WORDS] = 0;
    r->top = counter + 1;
}

int nk__replay_update(nk__replay *r, uint64_t counter)
{
    if (counter == UINT64_MAX)
        return -1;
    if (counter >= r->top)
        slide(r, counter);
    else if (r->top - counter > WINDOW)
        return -1;
    uint64_t *word = &r->bitmap[(counter / 64) % NK__REPLAY_WORDS];
    uint64_t bit = (uint64_t)1 << (counter % 64);
    if (*word & bit)
        return -1;
    *word |= bit;
    return 0;
}
