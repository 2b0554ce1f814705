/*
 * The CLI's byte pump (src/cli/fwd.c), its in-memory parts: the preamble parser on the bytes
 * the pump's stream starts with, and the "delivered" message's spellings. The pump itself
 * between a socket and a QUIC stream (two nk_node_drivers on loopback UDP, socketpairs) is
 * tests/integration/c/test_fwd_pump.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fwd.h"

static void test_preamble(void **state)
{
    (void)state;
    uint8_t acc[FWD_PREAMBLE_LEN], pre[FWD_PREAMBLE_LEN];
    size_t have = 0;
    int kind;
    fwd_preamble_put(pre, FWD_KIND_STDIO);
    assert_int_equal(fwd_preamble_feed(acc, &have, pre, 2, &kind), 2);
    assert_int_equal(kind, 0);
    const uint8_t rest[] = {'S', 's', 'x', 'y'};
    assert_int_equal(fwd_preamble_feed(acc, &have, rest, sizeof(rest), &kind), 2); /* not the data after it */
    assert_int_equal(kind, FWD_KIND_STDIO);
    have = 0;
    assert_int_equal(fwd_preamble_feed(acc, &have, (const uint8_t *)"GET /", 5, &kind), 1);
    assert_int_equal(kind, -1);
    have = 0;
    assert_int_equal(fwd_preamble_feed(acc, &have, (const uint8_t *)"NKSq", 4, &kind), 4);
    assert_int_equal(kind, -1);
}

static void test_delivered_message(void **state)
{
    (void)state;
    uint8_t m[FWD_DELIVERED_MAX];
    int64_t sid;
    size_t n = fwd_delivered_put(m, sizeof(m), 4);
    assert_int_equal(n, strlen("natkit-delivered:4"));
    assert_memory_equal(m, "natkit-delivered:4", n);
    assert_int_equal(fwd_delivered_parse(m, n, &sid), 1);
    assert_int_equal(sid, 4);
    n = fwd_delivered_put(m, sizeof(m), FWD_DELIVERED_TCP);
    assert_int_equal(fwd_delivered_parse(m, n, &sid), 1);
    assert_int_equal(sid, FWD_DELIVERED_TCP);
    n = fwd_delivered_put(m, sizeof(m), ((int64_t)1 << 62) - 1);
    assert_int_equal(fwd_delivered_parse(m, n, &sid), 1);
    assert_int_equal(sid, ((int64_t)1 << 62) - 1);
    static const char *bad[] = {"natkit-delivered:", "natkit-delivered:04", "natkit-delivered:4x",
                                "natkit-delivered:-4", "natkit-delivered:4611686018427387904",
                                "natkit-delivered:99999999999999999999", "natkit-delivered:TCP"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(fwd_delivered_parse((const uint8_t *)bad[i], strlen(bad[i]), &sid), -1);
    assert_int_equal(fwd_delivered_parse((const uint8_t *)"natkit-refused:x", 16, &sid), 0);
    assert_int_equal(fwd_delivered_put(m, 5, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preamble),
        cmocka_unit_test(test_delivered_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
