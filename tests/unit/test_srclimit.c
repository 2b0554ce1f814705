/*
 * base/srclimit: token buckets per source (simulated time) and connection counts
 * per source, against reference models.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/addr.h"
#include "sim.h"
#include "srclimit.h"

static const uint8_t hkey[NK__SRCLIMIT_HASH_KEY] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static nk_addr v4(uint32_t ip, uint16_t port)
{
    nk_addr a = {.family = NK_AF_INET, .port = port};
    a.ip[0] = (uint8_t)(ip >> 24);
    a.ip[1] = (uint8_t)(ip >> 16);
    a.ip[2] = (uint8_t)(ip >> 8);
    a.ip[3] = (uint8_t)ip;
    return a;
}

/* The random tests' source (tests/sim): each seeds it with sim_seed, so NK_SIM_SEED reruns them
 * with other seeds. */
static sim_rng rng;
static uint32_t rnd(void)
{
    return (uint32_t)sim_rng_next(&rng);
}

/* ---- keys ---- */

static void test_src_key(void **state)
{
    (void)state;
    uint8_t a[NK__SRC_KEY_SIZE], b[NK__SRC_KEY_SIZE];
    nk_addr x, y;
    /* the port never matters */
    x = v4(0x7f000001, 1), y = v4(0x7f000001, 2);
    nk__src_key(&x, a), nk__src_key(&y, b);
    assert_memory_equal(a, b, sizeof(a));
    /* IPv6: the /64 is the source */
    assert_int_equal(nk_addr_parse(&x, "[2001:db8:1:2::1]:5"), 0);
    assert_int_equal(nk_addr_parse(&y, "[2001:db8:1:2:ffff::9]:6"), 0);
    nk__src_key(&x, a), nk__src_key(&y, b);
    assert_memory_equal(a, b, sizeof(a));
    assert_int_equal(nk_addr_parse(&y, "[2001:db8:1:3::1]:5"), 0);
    nk__src_key(&y, b);
    assert_memory_not_equal(a, b, sizeof(a));
    /* IPv4-mapped IPv6 is its IPv4 */
    assert_int_equal(nk_addr_parse(&x, "[::ffff:192.0.2.9]:1"), 0);
    y = v4(0xc0000209, 2);
    nk__src_key(&x, a), nk__src_key(&y, b);
    assert_memory_equal(a, b, sizeof(a));
}

/* ---- token buckets ---- */

static void test_rate_burst_and_refill(void **state)
{
    (void)state;
    nk__ratelimit *rl;
    assert_int_equal(nk__ratelimit_new(&rl, 100, 10, 64, hkey), 0);
    nk_addr a = v4(0x0a000001, 1000), b = v4(0x0a000002, 1000);
    int64_t t = 1000000;
    for (int i = 0; i < 10; i++)
        assert_int_equal(nk__ratelimit_take(rl, t, &a), 1);
    assert_int_equal(nk__ratelimit_take(rl, t, &a), 0);
    /* another source has its own bucket */
    assert_int_equal(nk__ratelimit_take(rl, t, &b), 1);
    /* 100/s: one token per 10 ms, not before */
    assert_int_equal(nk__ratelimit_take(rl, t + 9, &a), 0);
    assert_int_equal(nk__ratelimit_take(rl, t + 10, &a), 1);
    assert_int_equal(nk__ratelimit_take(rl, t + 10, &a), 0);
    /* a long pause refills to the burst, never beyond */
    t += 3600 * 1000;
    int got = 0;
    while (nk__ratelimit_take(rl, t, &a))
        got++;
    assert_int_equal(got, 10);
    /* time going backwards adds nothing */
    assert_int_equal(nk__ratelimit_take(rl, t - 5000, &a), 0);
    nk__ratelimit_free(rl);
}

static void test_rate_zero_is_off(void **state)
{
    (void)state;
    nk__ratelimit *rl = (void *)1;
    assert_int_equal(nk__ratelimit_new(&rl, 0, 0, 0, hkey), 0);
    assert_null(rl);
    nk_addr a = v4(1, 1);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(nk__ratelimit_take(rl, 0, &a), 1);
    assert_int_equal(nk__ratelimit_new(&rl, 10, 2000000, 0, hkey), NK_ERR_INVAL);
}

/* Over a long run with steady traffic, a source gets at most burst + rate * seconds answers. */
static void test_rate_long_run_bound(void **state)
{
    (void)state;
    nk__ratelimit *rl;
    assert_int_equal(nk__ratelimit_new(&rl, 300, 50, 0, hkey), 0);
    nk_addr a = v4(0xc6336401, 9);
    int64_t t0 = 5000;
    uint64_t got = 0;
    for (int64_t ms = 0; ms < 10000; ms++) /* 10 s, 20 requests per ms */
        for (int i = 0; i < 20; i++)
            got += (uint64_t)nk__ratelimit_take(rl, t0 + ms, &a);
    assert_true(got <= 50 + 300 * 10);
    assert_true(got >= 300 * 10 - 1);
    nk__ratelimit_free(rl);
}

/* A spoofed-source flood: the table never tracks more than its size, and a busy source
 * is at worst given a fresh bucket (looser), never refused below its rate. */
static void test_rate_spoofed_flood_bounded(void **state)
{
    (void)state;
    nk__ratelimit *rl;
    assert_int_equal(nk__ratelimit_new(&rl, 10, 10, 64, hkey), 0);
    nk_addr real = v4(0xcb007101, 4000);
    uint64_t real_ok = 0;
    sim_rng_seed(&rng, sim_seed(12345));
    for (int64_t ms = 0; ms < 2000; ms++) {
        for (int i = 0; i < 50; i++) {
            nk_addr spoof = v4(rnd(), (uint16_t)rnd());
            (void)nk__ratelimit_take(rl, ms, &spoof);
        }
        if (ms % 100 == 0) /* the real source asks 10 times a second: its rate */
            real_ok += (uint64_t)nk__ratelimit_take(rl, ms, &real);
        assert_true(nk__ratelimit_tracked(rl) <= 64);
    }
    assert_int_equal(real_ok, 20);
    assert_int_equal(nk__ratelimit_tracked(rl), 64);
    nk__ratelimit_free(rl);
}

/* Property: with at most 4 sources (one set's ways: nothing is ever evicted), the table
 * answers exactly as an unbounded reference model of the same buckets. */
static void test_rate_matches_model(void **state)
{
    (void)state;
    sim_rng_seed(&rng, sim_seed(12346));
    for (int round = 0; round < 20; round++) {
        uint32_t rate = 1 + rnd() % 1000, burst = 1 + rnd() % 100;
        nk__ratelimit *rl;
        assert_int_equal(nk__ratelimit_new(&rl, rate, burst, 4, hkey), 0);
        uint64_t tokens[4];
        int64_t last[4], now = (int64_t)(rnd() % 100000);
        int seen[4] = {0};
        for (int k = 0; k < 5000; k++) {
            now += rnd() % 7 == 0 ? (int64_t)(rnd() % 3000) : (int64_t)(rnd() % 3);
            uint32_t s = rnd() % 4;
            nk_addr a = v4(0x0a000000 + s, (uint16_t)rnd());
            if (!seen[s]) {
                seen[s] = 1;
                tokens[s] = (uint64_t)burst * 1000;
                last[s] = now;
            } else if (now > last[s]) {
                uint64_t add = (uint64_t)(now - last[s]) * rate;
                tokens[s] = tokens[s] + add > (uint64_t)burst * 1000 ? (uint64_t)burst * 1000 : tokens[s] + add;
                last[s] = now;
            }
            int want = tokens[s] >= 1000;
            if (want)
                tokens[s] -= 1000;
            assert_int_equal(nk__ratelimit_take(rl, now, &a), want);
        }
        nk__ratelimit_free(rl);
    }
}

/* ---- connections per source ---- */

static void test_conncount_limit(void **state)
{
    (void)state;
    nk__conncount *t;
    assert_int_equal(nk__conncount_new(&t, 100, 3, hkey), 0);
    nk_addr a = v4(0x7f000001, 1), b = v4(0x7f000002, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(nk__conncount_add(t, &a), 0);
    assert_int_equal(nk__conncount_add(t, &a), NK_ERR_LIMIT);
    assert_int_equal(nk__conncount_get(t, &a), 3);
    assert_int_equal(nk__conncount_add(t, &b), 0);
    nk__conncount_remove(t, &a);
    assert_int_equal(nk__conncount_add(t, &a), 0);
    assert_int_equal(nk__conncount_add(t, &a), NK_ERR_LIMIT);
    nk__conncount_free(t);
    /* limit 0: no table, no limit */
    assert_int_equal(nk__conncount_new(&t, 100, 0, hkey), 0);
    assert_null(t);
    assert_int_equal(nk__conncount_add(t, &a), 0);
}

/* Property: random adds and removes over many sources match a reference count per source,
 * and the table never holds more sources than its capacity. */
static void test_conncount_matches_model(void **state)
{
    (void)state;
    enum { SOURCES = 300, CAP = 256, LIMIT = 5 };
    nk__conncount *t;
    assert_int_equal(nk__conncount_new(&t, CAP, LIMIT, hkey), 0);
    uint32_t model[SOURCES] = {0}, total_sources = 0;
    sim_rng_seed(&rng, sim_seed(12347));
    for (int k = 0; k < 200000; k++) {
        uint32_t s = rnd() % SOURCES;
        nk_addr a = v4(0xc0a80000 + s * 7919, (uint16_t)rnd());
        if (rnd() % 2 == 0) {
            int want = model[s] >= LIMIT || (model[s] == 0 && total_sources >= CAP) ? NK_ERR_LIMIT : 0;
            assert_int_equal(nk__conncount_add(t, &a), want);
            if (want == 0 && model[s]++ == 0)
                total_sources++;
        } else if (model[s] > 0) {
            nk__conncount_remove(t, &a);
            if (--model[s] == 0)
                total_sources--;
        }
        if (k % 997 == 0)
            for (uint32_t i = 0; i < SOURCES; i++) {
                nk_addr b = v4(0xc0a80000 + i * 7919, 1);
                assert_int_equal(nk__conncount_get(t, &b), model[i]);
            }
    }
    nk__conncount_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_src_key),
        cmocka_unit_test(test_rate_burst_and_refill),
        cmocka_unit_test(test_rate_zero_is_off),
        cmocka_unit_test(test_rate_long_run_bound),
        cmocka_unit_test(test_rate_spoofed_flood_bounded),
        cmocka_unit_test(test_rate_matches_model),
        cmocka_unit_test(test_conncount_limit),
        cmocka_unit_test(test_conncount_matches_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
