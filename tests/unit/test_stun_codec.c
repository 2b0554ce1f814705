/* Unit tests for the STUN codec: RFC 5769 vectors, round trips, malformed input, builder limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/stun.h"

/* ---- helpers ---- */

/* Hex with spaces, as the RFCs print it, into out; returns the byte count. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (; *s != '\0'; s++) {
        int v;
        if (*s >= '0' && *s <= '9')
            v = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            v = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            v = *s - 'A' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            assert_true(n < cap);
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    assert_int_equal(hi, -1);
    return n;
}

/* A heap copy of exactly n bytes, so ASan sees any read past the end. */
static uint8_t *exact_copy(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n > 0 ? n : 1);
    assert_non_null(c);
    if (n > 0)
        memcpy(c, p, n);
    return c;
}

static void assert_string_attr(const nk_stun_msg *m, uint16_t type, const char *want)
{
    char buf[256];
    assert_int_equal(nk_stun_get_string(m, type, buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);
}

/* ---- RFC 5769 test vectors ---- */

static const char *const rfc5769_request =
    "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
    "00 24 00 04 6e 00 01 ff"
    "80 29 00 08 93 2f f9 b1 51 26 3b 36"
    "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
    "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
    "80 28 00 04 e5 7a 3b cf";

static const char *const rfc5769_ipv4 =
    "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 08 00 01 a1 47 e1 12 a6 43"
    "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
    "80 28 00 04 c0 7d 4c 96";

static const char *const rfc5769_ipv6 =
    "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
    "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
    "80 28 00 04 c8 fb 0b 4c";

static const char *const rfc5769_long_term =
    "00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
    "00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00"
    "00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41"
    "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
    "00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

static const char short_term_pass[] = "VOkJxbRl1RmTxUk/WvJxBt";
/* "マトリックス" in UTF-8, as RFC 5769 2.4 writes the user name. */
static const char lt_user[] = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
static const uint8_t vector_tid[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

static size_t load(const char *hex, uint8_t *buf, size_t cap)
{
    return unhex(hex, buf, cap);
}

static void test_rfc5769_request(void **state)
{
    (void)state;
    uint8_t p[256];
    size_t n = load(rfc5769_request, p, sizeof(p));
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, p, n, 0), 0);
    assert_int_equal(m.type, nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST));
    assert_int_equal(m.classic, 0);
    assert_memory_equal(m.tid, vector_tid, 12);
    assert_int_equal(m.nattrs, 6);
    assert_true(m.integrity == 4);
    assert_true(m.integrity_sha256 == -1);
    assert_true(m.fingerprint == 5);
    assert_string_attr(&m, NK_STUN_ATTR_SOFTWARE, "STUN test client");
    assert_string_attr(&m, NK_STUN_ATTR_USERNAME, "evtj:h6vY");
    uint32_t prio;
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_PRIORITY, &prio), 0);
    assert_int_equal(prio, 0x6e0001ff);
    uint64_t tb;
    assert_int_equal(nk_stun_get_u64(&m, NK_STUN_ATTR_ICE_CONTROLLED, &tb), 0);
    assert_true(tb == 0x932ff9b151263b36ull);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)short_term_pass, strlen(short_term_pass)), 0);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)"VOkJxbRl1RmTxUk/WvJxBu", 22),
                     NK_ERR_INTEGRITY);
    assert_int_equal(nk_stun_unknown_required(&m, NULL, 0), 0);
}

static void check_response(const char *hex, const char *want_addr)
{
    uint8_t p[256];
    size_t n = load(hex, p, sizeof(p));
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, p, n, 0), 0);
    assert_int_equal(m.type, nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS));
    assert_string_attr(&m, NK_STUN_ATTR_SOFTWARE, "test vector");
    nk_addr a;
    char text[NK_ADDR_STRLEN];
    assert_int_equal(nk_stun_get_addr(&m, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &a), 0);
    assert_string_equal(nk_addr_format(&a, text, sizeof(text)), want_addr);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)short_term_pass, strlen(short_term_pass)), 0);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)"x", 1), NK_ERR_INTEGRITY);
    assert_int_equal(nk_stun_get_addr(&m, NK_STUN_ATTR_MAPPED_ADDRESS, &a), NK_ERR_NOT_FOUND);
}

static void test_rfc5769_ipv4(void **state)
{
    (void)state;
    check_response(rfc5769_ipv4, "192.0.2.1:32853");
}

static void test_rfc5769_ipv6(void **state)
{
    (void)state;
    check_response(rfc5769_ipv6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

static void test_rfc5769_long_term(void **state)
{
    (void)state;
    uint8_t p[256], key[32];
    size_t n = load(rfc5769_long_term, p, sizeof(p)), key_len = 0;
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, p, n, 0), 0);
    assert_true(m.fingerprint == -1);
    assert_string_attr(&m, NK_STUN_ATTR_USERNAME, lt_user);
    assert_string_attr(&m, NK_STUN_ATTR_NONCE, "f//499k954d6OL34oL9FSTvy64sA");
    assert_string_attr(&m, NK_STUN_ATTR_REALM, "example.org");
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_MD5, lt_user, "example.org", "TheMatrIX", key, &key_len), 0);
    assert_int_equal(key_len, 16);
    assert_int_equal(nk_stun_check_integrity(&m, key, key_len), 0);
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_MD5, lt_user, "example.org", "thematrix", key, &key_len), 0);
    assert_int_equal(nk_stun_check_integrity(&m, key, key_len), NK_ERR_INTEGRITY);
}

/* The builder reproduces the vectors byte for byte (the 0x20 padding of 2.1-2.3 aside). */
static void test_rfc5769_rebuild_long_term(void **state)
{
    (void)state;
    uint8_t want[256], out[256], key[32];
    size_t n = load(rfc5769_long_term, want, sizeof(want)), key_len;
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_MD5, lt_user, "example.org", "TheMatrIX", key, &key_len), 0);
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, sizeof(out), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), want + 8);
    nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, lt_user);
    nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, "f//499k954d6OL34oL9FSTvy64sA");
    nk_stun_build_string(&b, NK_STUN_ATTR_REALM, "example.org");
    nk_stun_build_integrity(&b, key, key_len);
    assert_int_equal(nk_stun_build_end(&b), (int)n);
    assert_memory_equal(out, want, n);
}

static void test_rfc5769_rebuild_ipv6(void **state)
{
    (void)state;
    uint8_t want[256], out[256];
    size_t n = load(rfc5769_ipv6, want, sizeof(want));
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"), 0);
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, sizeof(out), nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS), vector_tid);
    /* The RFC pads SOFTWARE with a space; the builder pads with zeros, so write it raw. */
    nk_stun_build_attr(&b, NK_STUN_ATTR_SOFTWARE, "test vector ", 12);
    out[22] = 0x00, out[23] = 0x0b; /* and give it its real length back */
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &a);
    nk_stun_build_integrity(&b, (const uint8_t *)short_term_pass, strlen(short_term_pass));
    nk_stun_build_fingerprint(&b);
    assert_int_equal(nk_stun_build_end(&b), (int)n);
    assert_memory_equal(out, want, n);
}

/* Every proper prefix of every vector is rejected (never read past its end). */
static void test_truncation_every_byte(void **state)
{
    (void)state;
    const char *const vectors[] = {rfc5769_request, rfc5769_ipv4, rfc5769_ipv6, rfc5769_long_term};
    for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++) {
        uint8_t p[256];
        size_t n = load(vectors[v], p, sizeof(p));
        for (size_t k = 0; k < n; k++) {
            uint8_t *c = exact_copy(p, k);
            nk_stun_msg m;
            int err = nk_stun_decode(&m, c, k, 1);
            assert_true(err == NK_ERR_TRUNCATED);
            assert_false(nk_stun_is_message(c, k));
            free(c);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5769_request),
        cmocka_unit_test(test_rfc5769_ipv4),
        cmocka_unit_test(test_rfc5769_ipv6),
        cmocka_unit_test(test_rfc5769_long_term),
        cmocka_unit_test(test_rfc5769_rebuild_long_term),
        cmocka_unit_test(test_rfc5769_rebuild_ipv6),
        cmocka_unit_test(test_truncation_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
