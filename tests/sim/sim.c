/*
 * The test world's random source (splitmix64) and virtual clock.
 */
#include <stdlib.h>

#include "sim.h"

uint64_t sim_seed(uint64_t dflt)
{
    const char *env = getenv("NK_SIM_SEED");
    return env != NULL && *env != '\0' ? strtoull(env, NULL, 0) : dflt;
}

void sim_rng_seed(sim_rng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t sim_rng_next(sim_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint32_t sim_rng_below(sim_rng *r, uint32_t n)
{
    return (uint32_t)(sim_rng_next(r) % n);
}

double sim_rng_unit(sim_rng *r)
{
    return (double)(sim_rng_next(r) >> 11) / (double)(1ull << 53);
}

void sim_random(void *ctx, uint8_t *buf, size_t len)
{
    sim_rng *r = ctx;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)sim_rng_next(r);
}

void sim_random_void(void *ctx, void *buf, size_t len)
{
    sim_random(ctx, buf, len);
}

void sim_clock_init(sim_clock *c, int64_t start)
{
    c->now = start;
    c->next = SIM_NEVER;
}

void sim_clock_offer(sim_clock *c, int64_t deadline)
{
    if (deadline < c->next)
        c->next = deadline;
}

int sim_clock_advance(sim_clock *c, int64_t limit)
{
    int64_t t = c->next;
    c->next = SIM_NEVER;
    if (t == SIM_NEVER || t > limit)
        return 0;
    if (t > c->now)
        c->now = t;
    return 1;
}
