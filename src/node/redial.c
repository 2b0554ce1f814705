/* natkit node: the hub reconnection schedule (redial.h). */
#include "redial.h"

void nk__redial_init(nk__redial *r, size_t nhubs)
{
    *r = (nk__redial){.base_ms = 500, .cap_ms = 30000, .stable_ms = 10000, .cur_ms = 500};
    r->n = nhubs < NK__REDIAL_MAX ? nhubs : NK__REDIAL_MAX;
}

int nk__redial_exhausted(const nk__redial *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (!r->bad[i])
            return 0;
    return 1;
}

int nk__redial_peek(const nk__redial *r)
{
    if (r->n == 0 || nk__redial_exhausted(r))
        return -1;
    size_t i = r->started ? (r->at + 1) % r->n : 0;
    while (r->bad[i])
        i = (i + 1) % r->n;
    return (int)i;
}

int nk__redial_pick(nk__redial *r)
{
    int i = nk__redial_peek(r);
    if (i >= 0) {
        r->at = (size_t)i;
        r->started = 1;
    }
    return i;
}

void nk__redial_answered(nk__redial *r)
{
    if (r->at < r->n)
        r->answered[r->at] = 1;
}

/* d +-25 %: rnd spread over [0.75 d, 1.25 d]. */
static int64_t jitter(int64_t d, uint32_t rnd)
{
    return d - d / 4 + (int64_t)((uint64_t)(d / 2) * rnd / UINT32_MAX);
}

int64_t nk__redial_done(nk__redial *r, nk__redial_outcome out, int64_t held_ms, int64_t hint_ms, uint32_t rnd)
{
    if (r->at < r->n) {
        if (out == NK__REDIAL_REFUSED || (out == NK__REDIAL_NOT_HUB && !r->answered[r->at]))
            r->bad[r->at] = 1;
    }
    if (held_ms >= r->stable_ms) { /* it worked for a while: a fresh start */
        r->cur_ms = r->base_ms;
        r->fails = 0;
    }
    int64_t d = jitter(r->cur_ms, rnd);
    r->fails++;
    r->cur_ms = r->cur_ms * 2 < r->cap_ms ? r->cur_ms * 2 : r->cap_ms;
    if (hint_ms >= 0) { /* the hub said when: that long, plus 0-25 % so a crowd does not come back at once */
        int64_t h = hint_ms < 3600000 ? hint_ms : 3600000;
        d = h + (int64_t)((uint64_t)(h / 4) * rnd / UINT32_MAX);
    }
    return d;
}
