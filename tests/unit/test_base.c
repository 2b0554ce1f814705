/*
 * base/: the one 19-byte address wire form (nk_addr_wire_put/get), the random
 * fallback (nk__random) and the fixed-capacity ring (nk__ring) every module
 * uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "natkit/addr.h"
#include "random.h"
#include "ring.h"

/* ---- address wire form ---- */

static void test_wire_v4(void **state)
{
    (void)state;
    nk_addr a = {.family = NK_AF_INET, .port = 0x1234, .ip = {192, 0, 2, 7}}, b;
    const uint8_t want[NK_ADDR_WIRE_SIZE] = {4, 0x12, 0x34, 192, 0, 2, 7};
    uint8_t out[NK_ADDR_WIRE_SIZE];
    memset(out, 0xee, sizeof(out));
    nk_addr_wire_put(out, &a);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(nk_addr_wire_get(&b, out), 0);
    assert_true(nk_addr_equal(&a, &b));
    assert_int_equal(b.port, 0x1234);
    /* only ip[0..3] is written for IPv4, whatever the rest of ip holds */
    a.ip[4] = a.ip[15] = 0xff;
    nk_addr_wire_put(out, &a);
    assert_memory_equal(out, want, sizeof(want));
}

static void test_wire_v6(void **state)
{
    (void)state;
    nk_addr a = {.family = NK_AF_INET6, .port = 443}, b;
    for (int i = 0; i < 16; i++)
        a.ip[i] = (uint8_t)(0x20 + i);
    uint8_t out[NK_ADDR_WIRE_SIZE];
    nk_addr_wire_put(out, &a);
    assert_int_equal(out[0], 6);
    assert_int_equal(out[1], 0x01);
    assert_int_equal(out[2], 0xbb);
    assert_memory_equal(out + 3, a.ip, 16);
    assert_int_equal(nk_addr_wire_get(&b, out), 0);
    assert_int_equal(b.family, NK_AF_INET6);
    assert_int_equal(b.port, 443);
    assert_memory_equal(b.ip, a.ip, 16);
}

static void test_wire_unset(void **state)
{
    (void)state;
    const uint8_t zeros[NK_ADDR_WIRE_SIZE] = {0};
    uint8_t out[NK_ADDR_WIRE_SIZE];
    nk_addr b;
    memset(out, 0xee, sizeof(out));
    nk_addr_wire_put(out, NULL);
    assert_memory_equal(out, zeros, sizeof(zeros));
    nk_addr none = {0};
    nk_addr_wire_put(out, &none);
    assert_memory_equal(out, zeros, sizeof(zeros));
    memset(&b, 0xee, sizeof(b));
    assert_int_equal(nk_addr_wire_get(&b, out), 0);
    assert_int_equal(b.family, NK_AF_NONE);
    assert_int_equal(b.port, 0);
    /* an unset address keeps its port ("my UDP IP, this port"); its IP bytes are zero and ignored */
    nk_addr port_only = {.family = NK_AF_NONE, .port = 5000, .ip = {1, 2, 3, 4}};
    nk_addr_wire_put(out, &port_only);
    const uint8_t want[NK_ADDR_WIRE_SIZE] = {0, 0x13, 0x88};
    assert_memory_equal(out, want, sizeof(want));
    out[3] = 9;
    assert_int_equal(nk_addr_wire_get(&b, out), 0);
    assert_int_equal(b.family, NK_AF_NONE);
    assert_int_equal(b.port, 5000);
    assert_int_equal(b.ip[0], 0);
    /* an nk_addr of an unknown family is written as unset, all zeros */
    nk_addr odd = {.family = 5, .port = 1, .ip = {1}};
    nk_addr_wire_put(out, &odd);
    assert_memory_equal(out, zeros, sizeof(zeros));
}

static void test_wire_unknown_family(void **state)
{
    (void)state;
    uint8_t in[NK_ADDR_WIRE_SIZE] = {0, 0x00, 0x50, 10, 0, 0, 1};
    nk_addr b;
    const uint8_t bad[] = {1, 2, 3, 5, 10, 41, 0x80, 0xff};
    for (size_t i = 0; i < sizeof(bad); i++) {
        in[0] = bad[i];
        memset(&b, 0xee, sizeof(b));
        assert_int_equal(nk_addr_wire_get(&b, in), NK_ERR_MALFORMED);
        assert_int_equal(b.family, NK_AF_NONE); /* never half-filled */
        assert_int_equal(b.port, 0);
    }
}

static void test_wire_v4_tail_ignored(void **state)
{
    (void)state;
    uint8_t in[NK_ADDR_WIRE_SIZE];
    memset(in, 0xab, sizeof(in));
    in[0] = 4;
    in[1] = 0;
    in[2] = 80;
    memcpy(in + 3, (const uint8_t[]){10, 1, 2, 3}, 4);
    nk_addr b, want = {.family = NK_AF_INET, .port = 80, .ip = {10, 1, 2, 3}};
    assert_int_equal(nk_addr_wire_get(&b, in), 0);
    assert_true(nk_addr_equal(&b, &want));
    const uint8_t zeros[12] = {0};
    assert_memory_equal(b.ip + 4, zeros, sizeof(zeros));
}

/* ---- random fallback ---- */

typedef struct counter {
    uint8_t next;
    size_t calls, bytes;
} counter;

static void count_fill(void *ctx, uint8_t *buf, size_t len)
{
    counter *c = ctx;
    c->calls++;
    c->bytes += len;
    for (size_t i = 0; i < len; i++)
        buf[i] = c->next++;
}

static void test_random_injected(void **state)
{
    (void)state;
    counter c = {.next = 7};
    uint8_t buf[5] = {0};
    nk__random(count_fill, &c, buf, sizeof(buf));
    const uint8_t want[] = {7, 8, 9, 10, 11};
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.bytes, 5);
    nk__random(count_fill, &c, buf, 0);
    assert_int_equal(c.calls, 2);
    assert_int_equal(c.bytes, 5);
}

static void test_random_fallback(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    uint8_t a[32], b[32];
    const uint8_t zeros[32] = {0};
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    nk__random(NULL, NULL, a, sizeof(a));
    nk__random(NULL, (void *)1, b, sizeof(b)); /* ctx is not used without fn */
    /* 256 random bits: all zero, or twice the same, only if the fallback did nothing */
    assert_memory_not_equal(a, zeros, sizeof(a));
    assert_memory_not_equal(b, zeros, sizeof(b));
    assert_memory_not_equal(a, b, sizeof(a));
}

/* ---- ring ---- */

typedef struct elem {
    uint32_t v;
    char tag[3];
} elem;

static void test_ring_empty(void **state)
{
    (void)state;
    elem slots[4];
    nk__ring r;
    nk__ring_init(&r, slots, sizeof(slots[0]), 4);
    elem e = {.v = 99};
    assert_int_equal(nk__ring_count(&r), 0);
    assert_false(nk__ring_full(&r));
    assert_null(nk__ring_peek(&r));
    assert_null(nk__ring_last(&r));
    assert_null(nk__ring_at(&r, 0));
    assert_int_equal(nk__ring_pop(&r, &e), NK_ERR_AGAIN);
    assert_int_equal(e.v, 99); /* untouched */
    assert_int_equal(nk__ring_pop(&r, NULL), NK_ERR_AGAIN);
}

static void test_ring_full(void **state)
{
    (void)state;
    elem slots[3];
    nk__ring r;
    nk__ring_init(&r, slots, sizeof(slots[0]), 3);
    for (uint32_t i = 0; i < 3; i++) {
        elem e = {.v = i, .tag = "ab"};
        assert_int_equal(nk__ring_push(&r, &e), 0);
    }
    assert_true(nk__ring_full(&r));
    elem extra = {.v = 100};
    assert_int_equal(nk__ring_push(&r, &extra), NK_ERR_LIMIT);
    assert_null(nk__ring_emplace(&r));
    /* a refused push changes nothing: the three are still there, oldest first */
    assert_int_equal(nk__ring_count(&r), 3);
    assert_int_equal(((elem *)nk__ring_peek(&r))->v, 0);
    assert_int_equal(((elem *)nk__ring_last(&r))->v, 2);
    assert_null(nk__ring_at(&r, 3));
    elem e;
    assert_int_equal(nk__ring_pop(&r, &e), 0);
    assert_int_equal(e.v, 0);
    assert_string_equal(e.tag, "ab");
    assert_false(nk__ring_full(&r));
    assert_int_equal(nk__ring_push(&r, &extra), 0);
    assert_int_equal(((elem *)nk__ring_last(&r))->v, 100);
    nk__ring_clear(&r);
    assert_int_equal(nk__ring_count(&r), 0);
    assert_null(nk__ring_peek(&r));
}

/* Many laps around a small ring, with the fill level varying: FIFO order and at() hold across the wrap. */
static void test_ring_wrap_order(void **state)
{
    (void)state;
    elem slots[5];
    nk__ring r;
    nk__ring_init(&r, slots, sizeof(slots[0]), 5);
    uint32_t pushed = 0, popped = 0;
    for (int round = 0; round < 200; round++) {
        size_t want_push = (size_t)(round % 4) + 1, want_pop = (size_t)((round * 7) % 5);
        for (size_t i = 0; i < want_push; i++) {
            elem *e = nk__ring_emplace(&r);
            if (e == NULL) {
                assert_int_equal(nk__ring_count(&r), 5);
                break;
            }
            e->v = pushed++;
        }
        for (size_t i = 0; i < nk__ring_count(&r); i++)
            assert_int_equal(((elem *)nk__ring_at(&r, i))->v, popped + i);
        for (size_t i = 0; i < want_pop; i++) {
            elem e;
            if (nk__ring_pop(&r, &e) != 0) {
                assert_int_equal(nk__ring_count(&r), 0);
                break;
            }
            assert_int_equal(e.v, popped++);
        }
        assert_int_equal(nk__ring_count(&r), pushed - popped);
    }
    assert_true(pushed > 100); /* it went around many times */
    elem e;
    while (nk__ring_pop(&r, &e) == 0)
        assert_int_equal(e.v, popped++);
    assert_int_equal(popped, pushed);
}

/* A growing queue: a wrapped ring moved onto bigger storage keeps its order (oldest first, at head 0),
 * and from storage-less (cap 0) it starts empty. */
static void test_ring_move(void **state)
{
    (void)state;
    elem small[3], big[6];
    nk__ring r;
    nk__ring_init(&r, NULL, sizeof(elem), 0);
    assert_true(nk__ring_full(&r));
    assert_null(nk__ring_move(&r, small, 3));
    for (uint32_t v = 0; v < 3; v++)
        assert_int_equal(nk__ring_push(&r, &(elem){.v = v}), 0);
    elem e;
    assert_int_equal(nk__ring_pop(&r, &e), 0);
    assert_int_equal(nk__ring_push(&r, &(elem){.v = 3}), 0); /* wrapped: 1 2 | 3 */
    assert_ptr_equal(nk__ring_move(&r, big, 6), small);
    assert_int_equal(nk__ring_count(&r), 3);
    assert_false(nk__ring_full(&r));
    assert_int_equal(nk__ring_push(&r, &(elem){.v = 4}), 0);
    for (uint32_t v = 1; v <= 4; v++) {
        assert_int_equal(nk__ring_pop(&r, &e), 0);
        assert_int_equal(e.v, v);
    }
    assert_int_equal(nk__ring_pop(&r, &e), NK_ERR_AGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_v4),
        cmocka_unit_test(test_wire_v6),
        cmocka_unit_test(test_wire_unset),
        cmocka_unit_test(test_wire_unknown_family),
        cmocka_unit_test(test_wire_v4_tail_ignored),
        cmocka_unit_test(test_random_injected),
        cmocka_unit_test(test_random_fallback),
        cmocka_unit_test(test_ring_empty),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_ring_wrap_order),
        cmocka_unit_test(test_ring_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
