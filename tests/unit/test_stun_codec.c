/* Unit tests for the STUN codec: RFC 5769 vectors, round trips, malformed input, builder limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "natkit/stun.h"
#include "stun/internal.h"

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


/* ---- RFC 8489 Appendix B.1 (with errata 6268): MESSAGE-INTEGRITY-SHA256 and USERHASH ---- */

static const char *const rfc8489_b1 =
    "00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
    "00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f 24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04"
    "00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39"
    "46 53 54 76 79 36 34 73 41 00 00 00"
    "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
    "00 1d 00 04 00 02 00 00"
    "00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24 13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65";

static void test_rfc8489_b1(void **state)
{
    (void)state;
    uint8_t p[256], uh[32], key[32];
    size_t n = load(rfc8489_b1, p, sizeof(p)), key_len;
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, p, n, 0), 0);
    assert_true(m.integrity == -1);
    assert_true(m.integrity_sha256 == 4);
    const nk_stun_attr *a = nk_stun_get(&m, NK_STUN_ATTR_USERHASH);
    assert_non_null(a);
    assert_int_equal(a->len, 32);
    assert_int_equal(nk_stun_userhash(lt_user, "example.org", uh), 0);
    assert_memory_equal(a->value, uh, 32);
    uint32_t alg;
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_PASSWORD_ALGORITHM, &alg), 0);
    assert_int_equal(alg >> 16, NK_STUN_PWALG_SHA256);
    assert_string_attr(&m, NK_STUN_ATTR_NONCE, "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA");
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_SHA256, lt_user, "example.org", "TheMatrIX", key, &key_len), 0);
    assert_int_equal(key_len, 32);
    assert_int_equal(nk_stun_check_integrity(&m, key, key_len), 0);
    key[0] ^= 1;
    assert_int_equal(nk_stun_check_integrity(&m, key, key_len), NK_ERR_INTEGRITY);
    key[0] ^= 1;

    /* And the builder writes it byte for byte. */
    uint8_t out[256], pwalg[4] = {0x00, 0x02, 0x00, 0x00};
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, sizeof(out), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), p + 8);
    nk_stun_build_attr(&b, NK_STUN_ATTR_USERHASH, uh, 32);
    nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA");
    nk_stun_build_string(&b, NK_STUN_ATTR_REALM, "example.org");
    nk_stun_build_attr(&b, NK_STUN_ATTR_PASSWORD_ALGORITHM, pwalg, sizeof(pwalg));
    nk_stun_build_integrity_sha256(&b, key, key_len);
    assert_int_equal(nk_stun_build_end(&b), (int)n);
    assert_memory_equal(out, p, n);
}

/* ---- round trips ---- */

static const uint8_t tid1[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static const uint16_t addr_types[] = {
    NK_STUN_ATTR_MAPPED_ADDRESS,   NK_STUN_ATTR_XOR_MAPPED_ADDRESS, NK_STUN_ATTR_XOR_PEER_ADDRESS,
    NK_STUN_ATTR_XOR_RELAYED_ADDRESS, NK_STUN_ATTR_ALTERNATE_SERVER, NK_STUN_ATTR_RESPONSE_ORIGIN,
    NK_STUN_ATTR_OTHER_ADDRESS,    NK_STUN_ATTR_CHANGED_ADDRESS,    NK_STUN_ATTR_SOURCE_ADDRESS,
};
#define N_ADDR_TYPES (sizeof(addr_types) / sizeof(addr_types[0]))

static void round_trip_addrs(const char *text)
{
    uint8_t buf[512];
    nk_addr a, got;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS), tid1);
    for (size_t i = 0; i < N_ADDR_TYPES; i++)
        nk_stun_build_addr(&b, addr_types[i], &a);
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    assert_int_equal(m.nattrs, N_ADDR_TYPES);
    for (size_t i = 0; i < N_ADDR_TYPES; i++) {
        assert_int_equal(nk_stun_get_addr(&m, addr_types[i], &got), 0);
        assert_true(nk_addr_equal(&a, &got));
        assert_int_equal(got.family, a.family);
        /* XOR types are stored XOR-ed, the others as they are. */
        const nk_stun_attr *at = nk_stun_get(&m, addr_types[i]);
        int xored = addr_types[i] == NK_STUN_ATTR_XOR_MAPPED_ADDRESS ||
                    addr_types[i] == NK_STUN_ATTR_XOR_PEER_ADDRESS ||
                    addr_types[i] == NK_STUN_ATTR_XOR_RELAYED_ADDRESS;
        uint16_t raw_port = (uint16_t)(at->value[2] << 8 | at->value[3]);
        assert_int_equal(raw_port, xored ? (a.port ^ 0x2112) : a.port);
        assert_int_equal(memcmp(at->value + 4, a.ip, nk_addr_ip_len(&a)) != 0, xored);
    }
}

static void test_round_trip_addresses(void **state)
{
    (void)state;
    round_trip_addrs("192.0.2.1:32853");
    round_trip_addrs("0.0.0.0:0");
    round_trip_addrs("255.255.255.255:65535");
    round_trip_addrs("[2001:db8::1]:3478");
    round_trip_addrs("[::]:1");
    round_trip_addrs("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

static void test_round_trip_scalars(void **state)
{
    (void)state;
    uint8_t buf[512];
    static const uint8_t port[4] = {0x12, 0x34, 0, 0};
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_ALLOCATE, NK_STUN_REQUEST), tid1);
    nk_stun_build_u32(&b, NK_STUN_ATTR_PRIORITY, 0x6e0001ffu);
    nk_stun_build_u32(&b, NK_STUN_ATTR_CHANGE_REQUEST, NK_STUN_CHANGE_IP | NK_STUN_CHANGE_PORT);
    nk_stun_build_u32(&b, NK_STUN_ATTR_LIFETIME, 600);
    nk_stun_build_u32(&b, NK_STUN_ATTR_REQUESTED_TRANSPORT, 17u << 24);
    nk_stun_build_u64(&b, NK_STUN_ATTR_ICE_CONTROLLING, 0x0123456789abcdefull);
    nk_stun_build_u64(&b, NK_STUN_ATTR_ICE_CONTROLLED, 0xfedcba9876543210ull);
    nk_stun_build_u64(&b, NK_STUN_ATTR_RESERVATION_TOKEN, 42);
    nk_stun_build_attr(&b, NK_STUN_ATTR_USE_CANDIDATE, NULL, 0);
    nk_stun_build_attr(&b, NK_STUN_ATTR_RESPONSE_PORT, port, sizeof(port));
    nk_stun_build_attr(&b, NK_STUN_ATTR_PADDING, "\x00\x00\x00\x00\x00", 5);
    nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, "alice:bob");
    nk_stun_build_string(&b, NK_STUN_ATTR_REALM, "example.org");
    nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, "n");
    nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, "");
    uint8_t algs[8] = {0, 2, 0, 0, 0, 1, 0, 0};
    nk_stun_build_attr(&b, NK_STUN_ATTR_PASSWORD_ALGORITHMS, algs, sizeof(algs));
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    assert_int_equal(n % 4, 0);
    assert_true(nk_stun_is_message(buf, (size_t)n));

    nk_stun_msg m;
    uint32_t v32;
    uint64_t v64;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    assert_int_equal(nk_stun_method(m.type), NK_STUN_ALLOCATE);
    assert_int_equal(nk_stun_class(m.type), NK_STUN_REQUEST);
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_PRIORITY, &v32), 0);
    assert_int_equal(v32, 0x6e0001ffu);
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_CHANGE_REQUEST, &v32), 0);
    assert_int_equal(v32, 6);
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_LIFETIME, &v32), 0);
    assert_int_equal(v32, 600);
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_REQUESTED_TRANSPORT, &v32), 0);
    assert_int_equal(v32, 17u << 24);
    assert_int_equal(nk_stun_get_u64(&m, NK_STUN_ATTR_ICE_CONTROLLING, &v64), 0);
    assert_true(v64 == 0x0123456789abcdefull);
    assert_int_equal(nk_stun_get_u64(&m, NK_STUN_ATTR_ICE_CONTROLLED, &v64), 0);
    assert_true(v64 == 0xfedcba9876543210ull);
    assert_int_equal(nk_stun_get_u64(&m, NK_STUN_ATTR_RESERVATION_TOKEN, &v64), 0);
    assert_true(v64 == 42);
    const nk_stun_attr *a = nk_stun_get(&m, NK_STUN_ATTR_USE_CANDIDATE);
    assert_non_null(a);
    assert_int_equal(a->len, 0);
    a = nk_stun_get(&m, NK_STUN_ATTR_RESPONSE_PORT);
    assert_non_null(a);
    assert_int_equal(a->len, 4);
    assert_int_equal(a->value[0] << 8 | a->value[1], 0x1234);
    a = nk_stun_get(&m, NK_STUN_ATTR_PADDING);
    assert_non_null(a);
    assert_int_equal(a->len, 5);
    a = nk_stun_get(&m, NK_STUN_ATTR_PASSWORD_ALGORITHMS);
    assert_non_null(a);
    assert_memory_equal(a->value, algs, 8);
    assert_string_attr(&m, NK_STUN_ATTR_USERNAME, "alice:bob");
    assert_string_attr(&m, NK_STUN_ATTR_REALM, "example.org");
    assert_string_attr(&m, NK_STUN_ATTR_NONCE, "n");
    assert_string_attr(&m, NK_STUN_ATTR_SOFTWARE, "");
    /* Wrong sizes are reported, not misread. */
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_ICE_CONTROLLING, &v32), NK_ERR_MALFORMED);
    assert_int_equal(nk_stun_get_u64(&m, NK_STUN_ATTR_PRIORITY, &v64), NK_ERR_MALFORMED);
    assert_int_equal(nk_stun_get_u32(&m, NK_STUN_ATTR_FINGERPRINT, &v32), NK_ERR_NOT_FOUND);
    nk_addr addr;
    assert_int_equal(nk_stun_get_addr(&m, NK_STUN_ATTR_USERNAME, &addr), NK_ERR_MALFORMED);
}

/* Padding is zeroed and lengths stay unpadded for every value length 0..8. */
static void test_padding(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 8; len++) {
        uint8_t buf[64], val[8];
        memset(buf, 0xaa, sizeof(buf));
        memset(val, 0x55, sizeof(val));
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_INDICATION), tid1);
        nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, val, len);
        int n = nk_stun_build_end(&b);
        assert_int_equal(n, 20 + 4 + (int)((len + 3) / 4 * 4));
        assert_int_equal(buf[2] << 8 | buf[3], n - 20);
        assert_int_equal(buf[22] << 8 | buf[23], (int)len);
        for (size_t i = 24 + len; i < (size_t)n; i++)
            assert_int_equal(buf[i], 0);
        nk_stun_msg m;
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
        assert_int_equal(m.attrs[0].len, len);
    }
}

static void test_error_code(void **state)
{
    (void)state;
    static const int codes[] = {300, 400, 401, 420, 438, 487, 500, 508, 699};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        uint8_t buf[256];
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR), tid1);
        nk_stun_build_error(&b, codes[i], i % 2 ? "custom reason" : NULL);
        int n = nk_stun_build_end(&b);
        assert_true(n > 0);
        assert_int_equal(buf[20 + 4 + 2], codes[i] / 100);
        assert_int_equal(buf[20 + 4 + 3], codes[i] % 100);
        nk_stun_msg m;
        int code;
        const char *reason;
        size_t rlen;
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
        assert_int_equal(nk_stun_get_error(&m, &code, &reason, &rlen), 0);
        assert_int_equal(code, codes[i]);
        const char *want = i % 2 ? "custom reason" : nk_stun_reason(codes[i]);
        assert_int_equal(rlen, strlen(want));
        assert_memory_equal(reason, want, rlen);
    }
    assert_string_equal(nk_stun_reason(401), "Unauthenticated");
    assert_string_equal(nk_stun_reason(420), "Unknown Attribute");
    assert_string_equal(nk_stun_reason(437), "Allocation Mismatch");
    assert_string_equal(nk_stun_reason(438), "Stale Nonce");
    assert_string_equal(nk_stun_reason(508), "Insufficient Capacity");
    assert_string_equal(nk_stun_reason(299), "");
    assert_string_equal(nk_strerror(NK_ERR_STUN(486)), "Allocation Quota Reached");
}

static void test_error_code_malformed(void **state)
{
    (void)state;
    /* class 2, class 7, number 100, value too short */
    static const uint8_t bad[][4] = {{0, 0, 2, 0}, {0, 0, 7, 0}, {0, 0, 4, 100}};
    for (size_t i = 0; i <= 3; i++) {
        uint8_t buf[64];
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR), tid1);
        nk_stun_build_attr(&b, NK_STUN_ATTR_ERROR_CODE, bad[i < 3 ? i : 0], i < 3 ? 4 : 3);
        int n = nk_stun_build_end(&b);
        nk_stun_msg m;
        int code;
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
        assert_int_equal(nk_stun_get_error(&m, &code, NULL, NULL), NK_ERR_MALFORMED);
    }
}

static void test_unknown_attributes(void **state)
{
    (void)state;
    uint8_t buf[256];
    uint16_t list[3] = {0x0030, 0x7fff, 0x0002};
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR), tid1);
    nk_stun_build_error(&b, 420, NULL);
    nk_stun_build_unknown(&b, list, 3);
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    const nk_stun_attr *a = nk_stun_get(&m, NK_STUN_ATTR_UNKNOWN_ATTRIBUTES);
    assert_non_null(a);
    assert_int_equal(a->len, 6);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(a->value[2 * i] << 8 | a->value[2 * i + 1], list[i]);
}

static void test_unknown_required_listed(void **state)
{
    (void)state;
    uint8_t buf[256];
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_u32(&b, 0x0030, 1);             /* unknown, required */
    nk_stun_build_u32(&b, 0x8fff, 1);             /* unknown, optional: fine */
    nk_stun_build_u32(&b, NK_STUN_ATTR_PRIORITY, 1); /* known */
    nk_stun_build_u32(&b, 0x7fff, 1);             /* unknown, required */
    nk_stun_build_u32(&b, 0x0030, 2);             /* repeated: listed once */
    int n = nk_stun_build_end(&b);
    nk_stun_msg m;
    uint16_t out[4] = {0};
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    assert_int_equal(nk_stun_unknown_required(&m, out, 4), 2);
    assert_int_equal(out[0], 0x0030);
    assert_int_equal(out[1], 0x7fff);
    memset(out, 0, sizeof(out));
    assert_int_equal(nk_stun_unknown_required(&m, out, 1), 2);
    assert_int_equal(out[0], 0x0030);
    assert_int_equal(out[1], 0);
    assert_int_equal(nk_stun_unknown_required(&m, NULL, 0), 2);
}

static void test_attr_known(void **state)
{
    (void)state;
    static const uint16_t known[] = {
        0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D,
        0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x001C, 0x001D,
        0x001E, 0x0020, 0x0022, 0x0024, 0x0025, 0x0026, 0x0027, 0x8000, 0x8001, 0x8002, 0x8003,
        0x8022, 0x8023, 0x8028, 0x8029, 0x802A, 0x802B, 0x802C,
    };
    size_t count = 0;
    for (uint32_t t = 0; t <= 0xffff; t++)
        count += nk_stun_attr_known((uint16_t)t) ? 1 : 0;
    assert_int_equal(count, sizeof(known) / sizeof(known[0]));
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        assert_true(nk_stun_attr_known(known[i]));
}

/* ---- integrity placement ---- */

/* Builds a request with SOFTWARE and MESSAGE-INTEGRITY, then appends attr raw (length fixed up). */
static size_t signed_plus(uint8_t *buf, size_t cap, const uint8_t *key, size_t key_len,
                          const uint8_t *extra, size_t extra_len)
{
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, "u");
    nk_stun_build_integrity(&b, key, key_len);
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    assert_true((size_t)n + extra_len <= cap);
    memcpy(buf + n, extra, extra_len);
    size_t total = (size_t)n + extra_len;
    buf[2] = (uint8_t)((total - 20) >> 8);
    buf[3] = (uint8_t)(total - 20);
    return total;
}

static void test_attrs_after_integrity_ignored(void **state)
{
    (void)state;
    static const uint8_t key[] = "secret";
    /* SOFTWARE "x" and an unknown comprehension-required 0x0030 after MESSAGE-INTEGRITY */
    static const uint8_t extra[] = {0x80, 0x22, 0x00, 0x01, 'x', 0, 0, 0, 0x00, 0x30, 0x00, 0x00};
    uint8_t buf[256];
    size_t n = signed_plus(buf, sizeof(buf), key, 6, extra, sizeof(extra));
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, n, 0), 0);
    assert_int_equal(m.nattrs, 2);
    assert_null(nk_stun_get(&m, NK_STUN_ATTR_SOFTWARE));
    assert_int_equal(nk_stun_unknown_required(&m, NULL, 0), 0);
    /* MESSAGE-INTEGRITY covers the message up to itself only, so it still verifies. */
    assert_int_equal(nk_stun_check_integrity(&m, key, 6), 0);
}

static void test_attr_after_fingerprint_malformed(void **state)
{
    (void)state;
    uint8_t buf[128];
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_fingerprint(&b);
    nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, "late");
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), NK_ERR_MALFORMED);
    /* Two FINGERPRINTs: the position is wrong whatever the CRCs. */
    nk_stun_builder b2;
    uint8_t buf2[128];
    nk_stun_build_begin(&b2, buf2, sizeof(buf2), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_fingerprint(&b2);
    nk_stun_build_fingerprint(&b2);
    n = nk_stun_build_end(&b2);
    assert_int_equal(nk_stun_decode(&m, buf2, (size_t)n, 0), NK_ERR_MALFORMED);
}

static void test_integrity_then_sha256(void **state)
{
    (void)state;
    static const uint8_t key[] = "k3y";
    for (int with_fp = 0; with_fp < 2; with_fp++) {
        uint8_t buf[256];
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
        nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, "user");
        nk_stun_build_integrity(&b, key, 3);
        nk_stun_build_integrity_sha256(&b, key, 3);
        if (with_fp)
            nk_stun_build_fingerprint(&b);
        int n = nk_stun_build_end(&b);
        assert_int_equal(n, 20 + 8 + 24 + 36 + (with_fp ? 8 : 0));
        nk_stun_msg m;
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
        assert_true(m.integrity == 1);
        assert_true(m.integrity_sha256 == 2);
        assert_true(m.fingerprint == (with_fp ? 3 : -1));
        assert_int_equal(nk_stun_check_integrity(&m, key, 3), 0);
        assert_int_equal(nk_stun_check_integrity(&m, key, 2), NK_ERR_INTEGRITY);
        /* Corrupt only the SHA-256 MAC (HMAC-SHA1 still matches): the SHA-256 one is checked. */
        buf[20 + 8 + 24 + 4] ^= 0x80;
        if (with_fp) {
            assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), NK_ERR_FINGERPRINT);
        } else {
            assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
            assert_int_equal(nk_stun_check_integrity(&m, key, 3), NK_ERR_INTEGRITY);
        }
    }
}

/* A MESSAGE-INTEGRITY-SHA256 truncated to 16..28 bytes verifies on its prefix. */
static void test_sha256_truncated(void **state)
{
    (void)state;
    static const uint8_t key[] = "truncate-me";
    for (unsigned len = 16; len <= 32; len += 4) {
        uint8_t buf[128], mac[32];
        unsigned mac_len = 0;
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
        nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, "abcd");
        int n = nk_stun_build_end(&b);
        size_t total = (size_t)n + 4 + len;
        buf[2] = (uint8_t)((total - 20) >> 8), buf[3] = (uint8_t)(total - 20);
        assert_non_null(HMAC(EVP_sha256(), key, (int)sizeof(key) - 1, buf, (size_t)n, mac, &mac_len));
        buf[n] = 0x00, buf[n + 1] = 0x1c, buf[n + 2] = 0, buf[n + 3] = (uint8_t)len;
        memcpy(buf + n + 4, mac, len);
        nk_stun_msg m;
        assert_int_equal(nk_stun_decode(&m, buf, total, 0), 0);
        assert_int_equal(nk_stun_check_integrity(&m, key, sizeof(key) - 1), 0);
        buf[n + 4 + len - 1] ^= 1;
        assert_int_equal(nk_stun_check_integrity(&m, key, sizeof(key) - 1), NK_ERR_INTEGRITY);
    }
}

static void test_integrity_bad_sizes(void **state)
{
    (void)state;
    static const size_t mi_lens[] = {0, 16, 19, 21, 32};
    static const size_t sha_lens[] = {0, 12, 18, 36, 40};
    uint8_t zeros[40] = {0};
    for (size_t i = 0; i < 5; i++) {
        for (int sha = 0; sha < 2; sha++) {
            uint8_t buf[128];
            nk_stun_builder b;
            nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
            nk_stun_build_attr(&b, sha ? NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 : NK_STUN_ATTR_MESSAGE_INTEGRITY,
                               zeros, sha ? sha_lens[i] : mi_lens[i]);
            int n = nk_stun_build_end(&b);
            nk_stun_msg m;
            assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), NK_ERR_MALFORMED);
        }
    }
}

static void test_integrity_not_found(void **state)
{
    (void)state;
    uint8_t p[256];
    size_t n = load(rfc5769_ipv4, p, sizeof(p));
    /* Cut the message to its first two attributes: no MESSAGE-INTEGRITY left. */
    size_t cut = 20 + 16 + 12;
    p[2] = 0, p[3] = (uint8_t)(cut - 20);
    nk_stun_msg m;
    assert_true(n > cut);
    assert_int_equal(nk_stun_decode(&m, p, cut, 0), 0);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)"x", 1), NK_ERR_NOT_FOUND);
}

/* ---- malformed input ---- */

static void test_bad_header(void **state)
{
    (void)state;
    uint8_t p[256], c[256];
    size_t n = load(rfc5769_ipv4, p, sizeof(p));
    nk_stun_msg m;

    memcpy(c, p, n);
    c[0] |= 0x80; /* top bits */
    assert_int_equal(nk_stun_decode(&m, c, n, 1), NK_ERR_NOT_STUN);
    memcpy(c, p, n);
    c[0] |= 0x40;
    assert_int_equal(nk_stun_decode(&m, c, n, 1), NK_ERR_NOT_STUN);

    memcpy(c, p, n);
    c[3] += 1; /* length not a multiple of 4 */
    assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_MALFORMED);
    memcpy(c, p, n);
    c[3] += 4; /* length past the datagram */
    assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_TRUNCATED);
    memcpy(c, p, n);
    c[3] -= 4; /* datagram longer than the message */
    assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_MALFORMED);

    memcpy(c, p, n);
    c[4] ^= 1; /* cookie */
    assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_NOT_STUN);
    assert_false(nk_stun_is_message(c, n));
    assert_true(nk_stun_is_message(p, n));
    assert_false(nk_stun_is_message(p, n - 4));
}

static void test_bad_attribute_length(void **state)
{
    (void)state;
    uint8_t p[256];
    size_t n = load(rfc5769_ipv4, p, sizeof(p));
    nk_stun_msg m;
    /* SOFTWARE (at 20) claims 0x0b bytes; make it run past the end, and into the next one. */
    p[22] = 0x01, p[23] = 0x00;
    assert_int_equal(nk_stun_decode(&m, p, n, 0), NK_ERR_MALFORMED);
    p[22] = 0x00, p[23] = 0x0d; /* 13 -> padded 16: the next attribute header is misread */
    assert_true(nk_stun_decode(&m, p, n, 0) < 0);
    /* A header with a 4-byte body holding half an attribute header. */
    uint8_t q[24] = {0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42};
    q[20] = 0x80, q[21] = 0x22, q[22] = 0x00, q[23] = 0x04;
    assert_int_equal(nk_stun_decode(&m, q, sizeof(q), 0), NK_ERR_MALFORMED);
}

static void test_bad_fingerprint(void **state)
{
    (void)state;
    uint8_t p[256], c[256];
    size_t n = load(rfc5769_request, p, sizeof(p));
    nk_stun_msg m;
    /* No bit flipped between the header and FINGERPRINT passes with a FINGERPRINT. */
    for (size_t i = 20; i < n - 8; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(c, p, n);
            c[i] ^= (uint8_t)(1 << bit);
            int err = nk_stun_decode(&m, c, n, 0);
            /* (or a length now swallows FINGERPRINT: then there is none to check) */
            assert_true(err == NK_ERR_FINGERPRINT || err == NK_ERR_MALFORMED || (err == 0 && m.fingerprint == -1));
        }
    }
    /* So does any bit of the header after the cookie, and any bit of the CRC itself. */
    for (size_t i = 8; i < 20; i++) {
        memcpy(c, p, n);
        c[i] ^= 0x10;
        assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_FINGERPRINT);
    }
    for (size_t i = n - 4; i < n; i++) {
        memcpy(c, p, n);
        c[i] ^= 0x01;
        assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_FINGERPRINT);
    }
    memcpy(c, p, n);
    c[n - 5] = 0x05; /* FINGERPRINT length 5 */
    assert_int_equal(nk_stun_decode(&m, c, n, 0), NK_ERR_MALFORMED);
}

static void test_classic(void **state)
{
    (void)state;
    /* RFC 3489 Binding Response: 128-bit tid, MAPPED-ADDRESS 10.0.0.1:4660 */
    uint8_t p[32] = {0x01, 0x01, 0x00, 0x0c, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                     0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 10, 0, 0, 1};
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, p, sizeof(p), 0), NK_ERR_NOT_STUN);
    assert_int_equal(nk_stun_decode(&m, p, sizeof(p), 1), 0);
    assert_int_equal(m.classic, 1);
    assert_memory_equal(m.tid, tid1, 12);
    nk_addr a;
    char text[NK_ADDR_STRLEN];
    assert_int_equal(nk_stun_get_addr(&m, NK_STUN_ATTR_MAPPED_ADDRESS, &a), 0);
    assert_string_equal(nk_addr_format(&a, text, sizeof(text)), "10.0.0.1:4660");
    size_t len;
    assert_int_equal(nk_stun_frame_length(p, sizeof(p), &len), NK_ERR_NOT_STUN);

    uint8_t q[256];
    size_t n = load(rfc5769_ipv4, q, sizeof(q));
    assert_int_equal(nk_stun_decode(&m, q, n, 1), 0);
    assert_int_equal(m.classic, 0);
}

static void test_bad_address(void **state)
{
    (void)state;
    static const uint8_t bad[][20] = {
        {0, 3, 0, 1, 1, 2, 3, 4},   /* family 3 */
        {0, 1, 0, 1, 1, 2, 3, 4},   /* IPv4 with 5 bytes (len below) */
        {0, 2, 0, 1, 1, 2, 3, 4},   /* IPv6 with 8 bytes */
        {0, 1, 0, 1},               /* no address */
    };
    static const size_t lens[] = {8, 9, 8, 4};
    for (size_t i = 0; i < 4; i++) {
        uint8_t buf[64];
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS), tid1);
        nk_stun_build_attr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, bad[i], lens[i]);
        int n = nk_stun_build_end(&b);
        nk_stun_msg m;
        nk_addr a;
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
        assert_int_equal(nk_stun_get_addr(&m, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &a), NK_ERR_MALFORMED);
    }
}

static void test_get_string_limits(void **state)
{
    (void)state;
    uint8_t buf[64];
    char out[8];
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, "1234567");
    nk_stun_build_attr(&b, NK_STUN_ATTR_REALM, "a\0b", 3);
    int n = nk_stun_build_end(&b);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    assert_int_equal(nk_stun_get_string(&m, NK_STUN_ATTR_USERNAME, out, 8), 0);
    assert_string_equal(out, "1234567");
    assert_int_equal(nk_stun_get_string(&m, NK_STUN_ATTR_USERNAME, out, 7), NK_ERR_NOBUFS);
    assert_int_equal(nk_stun_get_string(&m, NK_STUN_ATTR_REALM, out, 8), NK_ERR_MALFORMED);
    assert_int_equal(nk_stun_get_string(&m, NK_STUN_ATTR_NONCE, out, 8), NK_ERR_NOT_FOUND);
}

static void test_max_attrs(void **state)
{
    (void)state;
    for (size_t count = NK_STUN_MAX_ATTRS; count <= NK_STUN_MAX_ATTRS + 1; count++) {
        uint8_t buf[20 + 4 * (NK_STUN_MAX_ATTRS + 1)];
        nk_stun_builder b;
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
        for (size_t i = 0; i < count; i++)
            nk_stun_build_attr(&b, NK_STUN_ATTR_USE_CANDIDATE, NULL, 0);
        int n = nk_stun_build_end(&b);
        assert_int_equal(n, (int)(20 + 4 * count));
        nk_stun_msg m;
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), count == NK_STUN_MAX_ATTRS ? 0 : NK_ERR_MALFORMED);
    }
}

static void test_frame_length(void **state)
{
    (void)state;
    uint8_t p[256];
    size_t n = load(rfc5769_request, p, sizeof(p)), len = 0;
    for (size_t k = 0; k < 20; k++)
        assert_int_equal(nk_stun_frame_length(p, k, &len), NK_ERR_AGAIN);
    assert_int_equal(nk_stun_frame_length(p, 20, &len), 0);
    assert_int_equal(len, n);
    assert_int_equal(nk_stun_frame_length(p, n, &len), 0);
    assert_int_equal(len, n);
    uint8_t other[20] = {0x40, 0x00, 0x00, 0x04};  /* a ChannelData header */
    assert_int_equal(nk_stun_frame_length(other, 4, &len), NK_ERR_NOT_STUN);
    assert_int_equal(nk_stun_frame_length(p + 1, 20, &len), NK_ERR_NOT_STUN);
}

static void test_type_bits(void **state)
{
    (void)state;
    assert_int_equal(nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), 0x0001);
    assert_int_equal(nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS), 0x0101);
    assert_int_equal(nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR), 0x0111);
    assert_int_equal(nk_stun_type(NK_STUN_SEND, NK_STUN_INDICATION), 0x0016);
    assert_int_equal(nk_stun_type(NK_STUN_ALLOCATE, NK_STUN_ERROR), 0x0113);
    for (uint16_t method = 0; method < 0x1000; method++) {
        static const uint16_t classes[] = {NK_STUN_REQUEST, NK_STUN_INDICATION, NK_STUN_SUCCESS, NK_STUN_ERROR};
        for (size_t c = 0; c < 4; c++) {
            uint16_t t = nk_stun_type(method, classes[c]);
            assert_int_equal(t & 0xc000, 0);
            assert_int_equal(nk_stun_method(t), method);
            assert_int_equal(nk_stun_class(t), classes[c]);
        }
    }
}

static void test_keys(void **state)
{
    (void)state;
    uint8_t key[32];
    size_t key_len = 0;
    assert_int_equal(nk_stun_long_term_key(3, "u", "r", "p", key, &key_len), NK_ERR_UNSUPPORTED);
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_MD5, NULL, "r", "p", key, &key_len), NK_ERR_INVAL);
    /* MD5("u:r:p") and SHA-256("u:r:p") computed independently */
    uint8_t want[32];
    unsigned wl;
    assert_int_equal(EVP_Digest("u:r:p", 5, want, &wl, EVP_md5(), NULL), 1);
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_MD5, "u", "r", "p", key, &key_len), 0);
    assert_int_equal(key_len, 16);
    assert_memory_equal(key, want, 16);
    assert_int_equal(EVP_Digest("u:r:p", 5, want, &wl, EVP_sha256(), NULL), 1);
    assert_int_equal(nk_stun_long_term_key(NK_STUN_PWALG_SHA256, "u", "r", "p", key, &key_len), 0);
    assert_int_equal(key_len, 32);
    assert_memory_equal(key, want, 32);
    assert_int_equal(EVP_Digest("u:r", 3, want, &wl, EVP_sha256(), NULL), 1);
    assert_int_equal(nk_stun_userhash("u", "r", key), 0);
    assert_memory_equal(key, want, 32);
}

/* Empty keys are valid HMAC keys; a NULL key with a length is not. */
static void test_empty_key(void **state)
{
    (void)state;
    uint8_t buf[64];
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_integrity(&b, NULL, 0);
    int n = nk_stun_build_end(&b);
    assert_int_equal(n, 44);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    assert_int_equal(nk_stun_check_integrity(&m, NULL, 0), 0);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)"a", 1), NK_ERR_INTEGRITY);
    assert_int_equal(nk_stun_check_integrity(&m, NULL, 1), NK_ERR_INVAL);
    nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid1);
    nk_stun_build_integrity(&b, NULL, 4);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
}

/* ---- builder limits ---- */

/* Builds the same full-featured message into buf[cap]. */
static int build_full(uint8_t *buf, size_t cap)
{
    nk_addr v4, v6;
    uint16_t unknown[2] = {0x0030, 0x0031};
    assert_int_equal(nk_addr_parse(&v4, "198.51.100.7:3478"), 0);
    assert_int_equal(nk_addr_parse(&v6, "[2001:db8::7]:3479"), 0);
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR), tid1);
    nk_stun_build_error(&b, 420, NULL);
    nk_stun_build_unknown(&b, unknown, 2);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &v4);
    nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &v6);
    nk_stun_build_addr(&b, NK_STUN_ATTR_OTHER_ADDRESS, &v6);
    nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, "natkit");
    nk_stun_build_u32(&b, NK_STUN_ATTR_PRIORITY, 7);
    nk_stun_build_u64(&b, NK_STUN_ATTR_ICE_CONTROLLING, 9);
    nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, "abc", 3);
    nk_stun_build_integrity(&b, (const uint8_t *)"pw", 2);
    nk_stun_build_integrity_sha256(&b, (const uint8_t *)"pw", 2);
    nk_stun_build_fingerprint(&b);
    return nk_stun_build_end(&b);
}

static void test_builder_nobufs_every_capacity(void **state)
{
    (void)state;
    uint8_t full[512];
    int n = build_full(full, sizeof(full));
    assert_true(n > 0);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, full, (size_t)n, 0), 0);
    assert_int_equal(nk_stun_check_integrity(&m, (const uint8_t *)"pw", 2), 0);
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        uint8_t *buf = malloc(cap > 0 ? cap : 1); /* exact size: ASan catches overruns */
        assert_non_null(buf);
        int r = build_full(buf, cap);
        if (cap < (size_t)n) {
            assert_int_equal(r, NK_ERR_NOBUFS);
        } else {
            assert_int_equal(r, n);
            assert_memory_equal(buf, full, (size_t)n);
        }
        free(buf);
    }
}

static void test_builder_invalid(void **state)
{
    (void)state;
    uint8_t buf[128];
    nk_stun_builder b;
    nk_addr none = {0};
    nk_stun_build_begin(&b, buf, sizeof(buf), 1, tid1);
    nk_stun_build_error(&b, 299, NULL);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    nk_stun_build_begin(&b, buf, sizeof(buf), 1, tid1);
    nk_stun_build_error(&b, 700, NULL);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    nk_stun_build_begin(&b, buf, sizeof(buf), 1, tid1);
    nk_stun_build_addr(&b, NK_STUN_ATTR_MAPPED_ADDRESS, &none);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    nk_stun_build_begin(&b, buf, sizeof(buf), 1, tid1);
    nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, NULL);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    nk_stun_build_begin(&b, buf, sizeof(buf), 1, NULL);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    nk_stun_build_begin(&b, buf, sizeof(buf), 0xc001, tid1);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    /* The first error sticks: a later NOBUFS does not replace it. */
    nk_stun_build_begin(&b, buf, 24, 1, tid1);
    nk_stun_build_error(&b, 1, NULL);
    nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, "too long for the buffer");
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
}

/* A message body cannot pass 65535 bytes whatever the buffer. */
static void test_builder_max_length(void **state)
{
    (void)state;
    size_t cap = 70000;
    uint8_t *buf = malloc(cap), *val = calloc(1, 0xffff);
    assert_non_null(buf);
    assert_non_null(val);
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, cap, 1, tid1);
    nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, val, 0xfff8); /* 4 + 0xfff8 = 0xfffc */
    int n = nk_stun_build_end(&b);
    assert_int_equal(n, 20 + 0xfffc);
    nk_stun_msg m;
    assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
    nk_stun_build_attr(&b, NK_STUN_ATTR_USE_CANDIDATE, NULL, 0);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_NOBUFS);
    nk_stun_build_begin(&b, buf, cap, 1, tid1);
    nk_stun_build_attr(&b, NK_STUN_ATTR_DATA, val, 0x10000);
    assert_int_equal(nk_stun_build_end(&b), NK_ERR_INVAL);
    free(val);
    free(buf);
}

/* ---- CRC-32 ---- */

/* Bit-at-a-time reference, the textbook definition. */
static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(nk__crc32((const uint8_t *)"123456789", 9), 0xcbf43926u);
    assert_int_equal(nk__crc32(NULL, 0), 0);
    uint8_t buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    /* every length and every alignment, so both the 8-byte steps and the tail are covered */
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof(buf); n++)
            assert_int_equal(nk__crc32(buf + off, n), crc32_ref(buf + off, n));
}

/* Every attribute type the codec knows (and an unknown one) carries its value through unchanged. */
static void test_round_trip_every_type(void **state)
{
    (void)state;
    for (uint32_t t = 0; t <= 0xffff; t++) {
        uint16_t type = (uint16_t)t;
        if ((!nk_stun_attr_known(type) && type != 0x0030 && type != 0xc001) ||
            type == NK_STUN_ATTR_MESSAGE_INTEGRITY || type == NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 ||
            type == NK_STUN_ATTR_FINGERPRINT)
            continue;
        for (size_t len = 0; len <= 9; len += 3) {
            uint8_t buf[64], val[9];
            for (size_t i = 0; i < sizeof(val); i++)
                val[i] = (uint8_t)(type ^ (i * 37));
            nk_stun_builder b;
            nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_SEND, NK_STUN_INDICATION), tid1);
            nk_stun_build_attr(&b, type, val, len);
            nk_stun_build_fingerprint(&b);
            int n = nk_stun_build_end(&b);
            assert_int_equal(n, (int)(20 + 4 + (len + 3) / 4 * 4 + 8));
            nk_stun_msg m;
            assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
            const nk_stun_attr *a = nk_stun_get(&m, type);
            assert_non_null(a);
            assert_int_equal(a->len, len);
            if (len > 0)
                assert_memory_equal(a->value, val, len);
            assert_int_equal(nk_stun_unknown_required(&m, NULL, 0), type == 0x0030 ? 1 : 0);
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
        cmocka_unit_test(test_rfc8489_b1),
        cmocka_unit_test(test_round_trip_addresses),
        cmocka_unit_test(test_round_trip_scalars),
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_error_code),
        cmocka_unit_test(test_error_code_malformed),
        cmocka_unit_test(test_unknown_attributes),
        cmocka_unit_test(test_unknown_required_listed),
        cmocka_unit_test(test_attr_known),
        cmocka_unit_test(test_attrs_after_integrity_ignored),
        cmocka_unit_test(test_attr_after_fingerprint_malformed),
        cmocka_unit_test(test_integrity_then_sha256),
        cmocka_unit_test(test_sha256_truncated),
        cmocka_unit_test(test_integrity_bad_sizes),
        cmocka_unit_test(test_integrity_not_found),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_attribute_length),
        cmocka_unit_test(test_bad_fingerprint),
        cmocka_unit_test(test_classic),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_get_string_limits),
        cmocka_unit_test(test_max_attrs),
        cmocka_unit_test(test_frame_length),
        cmocka_unit_test(test_type_bits),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_builder_nobufs_every_capacity),
        cmocka_unit_test(test_builder_invalid),
        cmocka_unit_test(test_builder_max_length),
        cmocka_unit_test(test_crc32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
