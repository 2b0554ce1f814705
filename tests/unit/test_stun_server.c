/* Unit tests for the STUN server's request handler, in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/stun.h"
#include "natkit/stun_server.h"

static const uint8_t TID[NK_STUN_TID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static nk_addr ip(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse_ip(&a, text), 0);
    return a;
}

static void assert_addr(const nk_addr *got, const nk_addr *want)
{
    char g[NK_ADDR_STRLEN], w[NK_ADDR_STRLEN];
    if (!nk_addr_equal(got, want))
        fail_msg("address %s, want %s", nk_addr_format(got, g, sizeof(g)),
                 nk_addr_format(want, w, sizeof(w)));
}

/* A request under construction. */
typedef struct req {
    nk_stun_builder b;
    uint8_t buf[2048];
} req;

static void req_begin(req *r, uint16_t type)
{
    nk_stun_build_begin(&r->b, r->buf, sizeof(r->buf), type, TID);
}

static void req_binding(req *r)
{
    req_begin(r, nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST));
}

static size_t req_end(req *r)
{
    int n = nk_stun_build_end(&r->b);
    assert_true(n > 0);
    return (size_t)n;
}

static void req_change(req *r, uint32_t flags)
{
    nk_stun_build_u32(&r->b, NK_STUN_ATTR_CHANGE_REQUEST, flags);
}

static void req_response_port(req *r, uint16_t port)
{
    uint8_t v[4] = {(uint8_t)(port >> 8), (uint8_t)port, 0, 0};
    nk_stun_build_attr(&r->b, NK_STUN_ATTR_RESPONSE_PORT, v, 2);
}

/* The outcome of one handle() call, decoded. */
typedef struct result {
    int rc;
    nk_transmit tx;
    uint8_t buf[4096];
    nk_stun_msg msg;
} result;

static const nk_stun_server *g_srv;
static nk_stun_server_stats_t g_stats;

static void handle(result *res, const nk_addr *local, const nk_addr *from, uint8_t transport,
                   const uint8_t *p, size_t n)
{
    memset(res, 0, sizeof(*res));
    res->rc = nk_stun_server_handle(g_srv, &g_stats, local, from, transport, p, n, &res->tx, res->buf,
                                    sizeof(res->buf));
    if (res->rc != 0)
        return;
    /* Never more than the request or a Binding response needs. */
    assert_true(res->tx.len <= nk_stun_server_response_bound(n));
    assert_int_equal(res->tx.transport, transport);
    assert_int_equal(nk_stun_decode(&res->msg, res->buf, res->tx.len, 1), 0);
}

static void expect_success(const result *res)
{
    assert_int_equal(res->rc, 0);
    assert_int_equal(res->msg.type, nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS));
    assert_memory_equal(res->msg.tid, TID, sizeof(TID));
}

static void expect_error(const result *res, int code)
{
    int got;
    const char *reason;
    size_t rlen;
    assert_int_equal(res->rc, 0);
    assert_int_equal(res->msg.type, nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR));
    assert_int_equal(nk_stun_get_error(&res->msg, &got, &reason, &rlen), 0);
    assert_int_equal(got, code);
    assert_null(nk_stun_get(&res->msg, NK_STUN_ATTR_XOR_MAPPED_ADDRESS));
}

static void expect_unknown(const result *res, uint16_t type)
{
    expect_error(res, 420);
    const nk_stun_attr *u = nk_stun_get(&res->msg, NK_STUN_ATTR_UNKNOWN_ATTRIBUTES);
    assert_non_null(u);
    for (size_t i = 0; i + 1 < u->len; i += 2)
        if ((uint16_t)(u->value[i] << 8 | u->value[i + 1]) == type)
            return;
    fail_msg("UNKNOWN-ATTRIBUTES lacks 0x%04x", type);
}

static void expect_addr_attr(const result *res, uint16_t type, const nk_addr *want)
{
    nk_addr got;
    assert_int_equal(nk_stun_get_addr(&res->msg, type, &got), 0);
    assert_addr(&got, want);
}

/* ---- plain server (one address) ---- */

static nk_stun_server *plain_new(void)
{
    nk_addr p = addr("127.0.0.1:3478");
    nk_stun_server *srv;
    assert_int_equal(nk_stun_server_new(&srv, &p, NULL, 0), 0);
    assert_int_equal(nk_stun_server_rfc5780(srv), 0);
    g_srv = srv;
    memset(&g_stats, 0, sizeof(g_stats));
    return srv;
}

static void test_plain_binding(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    req r;
    req_binding(&r);
    size_t n = req_end(&r);
    result res;
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    expect_addr_attr(&res, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &from);
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_MAPPED_ADDRESS)); /* RFC 8489: XOR only */
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_RESPONSE_ORIGIN));
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_OTHER_ADDRESS));
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_SOFTWARE));
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_FINGERPRINT));
    assert_int_equal(res.tx.len, 32); /* header + XOR-MAPPED-ADDRESS: nothing more */
    assert_addr(&res.tx.to, &from);
    assert_addr(&res.tx.from, &local);
    assert_int_equal(g_stats.requests, 1);
    assert_int_equal(g_stats.responses, 1);
    nk_stun_server_free(srv);
}

static void test_fingerprint_echoed(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    req r;
    req_binding(&r);
    nk_stun_build_fingerprint(&r.b);
    size_t n = req_end(&r);
    result res;
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    assert_true(res.msg.fingerprint >= 0); /* decode verified its CRC */
    assert_int_equal(res.tx.len, 40);
    nk_stun_server_free(srv);
}

static void test_plain_rfc5780_attrs_are_unknown(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    uint8_t pad[8] = {0};
    req r;
    result res;

    req_binding(&r);
    req_change(&r, NK_STUN_CHANGE_IP);
    size_t n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_unknown(&res, NK_STUN_ATTR_CHANGE_REQUEST);
    assert_addr(&res.tx.from, &local);
    assert_addr(&res.tx.to, &from);

    req_binding(&r);
    req_change(&r, 0); /* even with no flags set: the server has no alternate */
    n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_unknown(&res, NK_STUN_ATTR_CHANGE_REQUEST);

    req_binding(&r);
    req_response_port(&r, 5000);
    n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_unknown(&res, NK_STUN_ATTR_RESPONSE_PORT);
    assert_addr(&res.tx.to, &from);

    req_binding(&r);
    nk_stun_build_attr(&r.b, NK_STUN_ATTR_PADDING, pad, sizeof(pad));
    n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_unknown(&res, NK_STUN_ATTR_PADDING);
    assert_int_equal(g_stats.errors, 4);
    assert_int_equal(g_stats.responses, 0);
    nk_stun_server_free(srv);
}

static void test_unknown_required_420(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    uint8_t v[4] = {0};
    req r;
    result res;

    req_binding(&r);
    nk_stun_build_attr(&r.b, 0x7777, v, 4);
    nk_stun_build_attr(&r.b, 0x7778, v, 1);
    nk_stun_build_fingerprint(&r.b);
    size_t n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_unknown(&res, 0x7777);
    expect_unknown(&res, 0x7778);
    assert_true(res.msg.fingerprint >= 0);

    /* RESPONSE-ADDRESS (RFC 3489 redirect) is never honoured. */
    nk_addr victim = addr("192.0.2.1:53");
    req_binding(&r);
    nk_stun_build_addr(&r.b, NK_STUN_ATTR_RESPONSE_ADDRESS, &victim);
    n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_unknown(&res, NK_STUN_ATTR_RESPONSE_ADDRESS);
    assert_addr(&res.tx.to, &from);

    /* Unknown comprehension-optional: ignored; ICE and auth attributes: ignored. */
    req_binding(&r);
    nk_stun_build_attr(&r.b, 0x8888, v, 4);
    nk_stun_build_u32(&r.b, NK_STUN_ATTR_PRIORITY, 12345);
    nk_stun_build_string(&r.b, NK_STUN_ATTR_USERNAME, "a:b");
    nk_stun_build_integrity(&r.b, (const uint8_t *)"pass", 4);
    n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    expect_addr_attr(&res, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &from);
    assert_int_equal(g_stats.errors, 2);
    assert_int_equal(g_stats.responses, 1);
    nk_stun_server_free(srv);
}

static void test_not_answered(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    req r;
    result res;
    const uint16_t types[] = {
        nk_stun_type(NK_STUN_BINDING, NK_STUN_INDICATION),
        nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS),
        nk_stun_type(NK_STUN_BINDING, NK_STUN_ERROR),
        nk_stun_type(NK_STUN_ALLOCATE, NK_STUN_REQUEST),
        nk_stun_type(0x0fff, NK_STUN_REQUEST),
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        req_begin(&r, types[i]);
        size_t n = req_end(&r);
        handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
        assert_int_equal(res.rc, NK_ERR_AGAIN);
    }
    assert_int_equal(g_stats.ignored, 5);
    assert_int_equal(g_stats.requests, 0);
    nk_stun_server_free(srv);
}

static void test_malformed_dropped(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    req r;
    result res;

    /* Not STUN: top bits set, or nothing at all. */
    const uint8_t rtp[24] = {0x80, 0x60, 0x12, 0x34};
    handle(&res, &local, &from, NK_TRANSPORT_UDP, rtp, sizeof(rtp));
    assert_int_equal(res.rc, NK_ERR_NOT_STUN);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, rtp, 1);
    assert_int_equal(res.rc, NK_ERR_NOT_STUN);
    assert_int_equal(g_stats.dropped_not_stun, 2);

    /* Malformed: short header, length beyond the datagram, trailing bytes,
     * an attribute overrunning the body, a bad FINGERPRINT. */
    req_binding(&r);
    nk_stun_build_fingerprint(&r.b);
    size_t n = req_end(&r);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, 10);
    assert_int_equal(res.rc, NK_ERR_MALFORMED);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n - 4);
    assert_int_equal(res.rc, NK_ERR_MALFORMED);
    uint8_t longer[64] = {0};
    memcpy(longer, r.buf, n);
    handle(&res, &local, &from, NK_TRANSPORT_UDP, longer, n + 4);
    assert_int_equal(res.rc, NK_ERR_MALFORMED);
    r.buf[n - 1] ^= 1;
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    assert_int_equal(res.rc, NK_ERR_MALFORMED);
    req_binding(&r);
    nk_stun_build_u32(&r.b, NK_STUN_ATTR_PRIORITY, 1);
    n = req_end(&r);
    r.buf[23] = 200; /* PRIORITY claims 200 bytes */
    handle(&res, &local, &from, NK_TRANSPORT_UDP, r.buf, n);
    assert_int_equal(res.rc, NK_ERR_MALFORMED);
    assert_int_equal(g_stats.dropped_malformed, 5);
    assert_int_equal(g_stats.requests + g_stats.responses + g_stats.errors, 0);

    /* Bad arguments and a buffer too small. */
    req_binding(&r);
    n = req_end(&r);
    nk_transmit tx;
    uint8_t small[24];
    assert_int_equal(nk_stun_server_handle(srv, NULL, &local, &from, NK_TRANSPORT_UDP, r.buf, n, &tx,
                                           small, sizeof(small)),
                     NK_ERR_NOBUFS);
    assert_int_equal(nk_stun_server_handle(srv, NULL, NULL, &from, NK_TRANSPORT_UDP, r.buf, n, &tx,
                                           small, sizeof(small)),
                     NK_ERR_INVAL);
    nk_stun_server_free(srv);
}

/* RFC 3489 client: no magic cookie, MAPPED-ADDRESS, full 128-bit transaction ID. */
static size_t classic_request(uint8_t *buf, int with_change, uint32_t flags)
{
    memset(buf, 0, 20);
    buf[1] = 0x01;
    for (int i = 4; i < 20; i++)
        buf[i] = (uint8_t)(0xa0 + i);
    size_t n = 20;
    if (with_change) {
        const uint8_t cr[8] = {0, 3, 0, 4, 0, 0, 0, (uint8_t)flags};
        memcpy(buf + n, cr, sizeof(cr));
        n += sizeof(cr);
    }
    buf[3] = (uint8_t)(n - 20);
    return n;
}

static void test_classic_plain(void **state)
{
    nk_stun_server *srv = plain_new();
    nk_addr local = addr("127.0.0.1:3478"), from = addr("10.1.2.3:40000");
    uint8_t q[64];
    size_t n = classic_request(q, 0, 0);
    result res;
    handle(&res, &local, &from, NK_TRANSPORT_UDP, q, n);
    assert_int_equal(res.rc, 0);
    assert_true(res.msg.classic);
    assert_int_equal(res.msg.type, nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS));
    assert_memory_equal(res.buf + 4, q + 4, 16);
    expect_addr_attr(&res, NK_STUN_ATTR_MAPPED_ADDRESS, &from);
    expect_addr_attr(&res, NK_STUN_ATTR_SOURCE_ADDRESS, &local);
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_XOR_MAPPED_ADDRESS));
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_CHANGED_ADDRESS));
    nk_stun_server_free(srv);
}

/* ---- RFC 5780 server: 2 IPs x 2 ports ---- */

static nk_addr g_addrs[4];

static nk_stun_server *rfc5780_new(const char *primary, const char *alt, uint16_t alt_port)
{
    nk_addr p = addr(primary), a = ip(alt);
    nk_stun_server *srv;
    assert_int_equal(nk_stun_server_new(&srv, &p, &a, alt_port), 0);
    assert_int_equal(nk_stun_server_rfc5780(srv), 1);
    assert_int_equal(nk_stun_server_addrs(srv, g_addrs), 4);
    g_srv = srv;
    memset(&g_stats, 0, sizeof(g_stats));
    return srv;
}

static void change_matrix(const char *client)
{
    nk_addr from = addr(client);
    for (int slot = 0; slot < 4; slot++) {
        for (uint32_t flags = 0; flags <= 6; flags += 2) {
            req r;
            req_binding(&r);
            req_change(&r, flags);
            nk_stun_build_fingerprint(&r.b);
            size_t n = req_end(&r);
            result res;
            handle(&res, &g_addrs[slot], &from, NK_TRANSPORT_UDP, r.buf, n);
            expect_success(&res);
            int want = slot ^ ((flags & NK_STUN_CHANGE_IP) ? 2 : 0) ^ ((flags & NK_STUN_CHANGE_PORT) ? 1 : 0);
            assert_addr(&res.tx.from, &g_addrs[want]);
            assert_addr(&res.tx.to, &from);
            expect_addr_attr(&res, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &from);
            expect_addr_attr(&res, NK_STUN_ATTR_MAPPED_ADDRESS, &from);
            expect_addr_attr(&res, NK_STUN_ATTR_RESPONSE_ORIGIN, &g_addrs[want]);
            expect_addr_attr(&res, NK_STUN_ATTR_OTHER_ADDRESS, &g_addrs[slot ^ 3]);
            assert_true(res.msg.fingerprint >= 0);
        }
    }
    assert_int_equal(g_stats.responses, 16);
}

static void test_rfc5780_addresses(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr want[4] = {addr("127.0.0.1:3478"), addr("127.0.0.1:3479"), addr("127.0.0.2:3478"),
                       addr("127.0.0.2:3479")};
    for (int i = 0; i < 4; i++)
        assert_addr(&g_addrs[i], &want[i]);
    nk_stun_server_free(srv);
    srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 5000);
    assert_int_equal(g_addrs[3].port, 5000);
    nk_stun_server_free(srv);
}

static void test_rfc5780_change_matrix_ipv4(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    change_matrix("198.51.100.7:61000");
    nk_stun_server_free(srv);
}

static void test_rfc5780_change_matrix_ipv6(void **state)
{
    nk_stun_server *srv = rfc5780_new("[2001:db8::1]:3478", "2001:db8::2", 3479);
    change_matrix("[2001:db8::99]:61000");
    nk_stun_server_free(srv);
}

static void test_rfc5780_no_change_request(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr from = addr("127.0.0.1:50000");
    req r;
    req_binding(&r);
    size_t n = req_end(&r);
    result res;
    handle(&res, &g_addrs[2], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    assert_addr(&res.tx.from, &g_addrs[2]);
    expect_addr_attr(&res, NK_STUN_ATTR_RESPONSE_ORIGIN, &g_addrs[2]);
    expect_addr_attr(&res, NK_STUN_ATTR_OTHER_ADDRESS, &g_addrs[1]);
    assert_int_equal(res.tx.len, 20 + 4 * 12);
    nk_stun_server_free(srv);
}

static void test_rfc5780_bad_change_request(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr from = addr("127.0.0.1:50000");
    uint8_t v[2] = {0, 6};
    req r;
    req_binding(&r);
    nk_stun_build_attr(&r.b, NK_STUN_ATTR_CHANGE_REQUEST, v, 2);
    size_t n = req_end(&r);
    result res;
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_error(&res, 400);
    assert_addr(&res.tx.from, &g_addrs[0]);
    nk_stun_server_free(srv);
}

static void test_rfc5780_tcp(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr from = addr("127.0.0.1:50000");
    req r;
    result res;

    /* Over TCP the answer goes back on the connection: changing is a 400. */
    req_binding(&r);
    req_change(&r, NK_STUN_CHANGE_PORT);
    size_t n = req_end(&r);
    handle(&res, &g_addrs[3], &from, NK_TRANSPORT_TCP, r.buf, n);
    expect_error(&res, 400);
    assert_addr(&res.tx.from, &g_addrs[3]);

    req_binding(&r);
    req_change(&r, 0);
    n = req_end(&r);
    handle(&res, &g_addrs[3], &from, NK_TRANSPORT_TCP, r.buf, n);
    expect_success(&res);
    assert_addr(&res.tx.from, &g_addrs[3]);
    expect_addr_attr(&res, NK_STUN_ATTR_RESPONSE_ORIGIN, &g_addrs[3]);
    expect_addr_attr(&res, NK_STUN_ATTR_OTHER_ADDRESS, &g_addrs[0]);

    req_binding(&r);
    req_response_port(&r, 9999);
    n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_TCP, r.buf, n);
    expect_error(&res, 400);
    assert_addr(&res.tx.to, &from);
    nk_stun_server_free(srv);
}

static void test_rfc5780_response_port(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr from = addr("127.0.0.1:50000");
    uint8_t pad[64] = {0};
    req r;
    result res;

    req_binding(&r);
    req_response_port(&r, 50001);
    req_change(&r, NK_STUN_CHANGE_IP | NK_STUN_CHANGE_PORT);
    size_t n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    nk_addr to = addr("127.0.0.1:50001");
    assert_addr(&res.tx.to, &to);
    assert_addr(&res.tx.from, &g_addrs[3]);
    expect_addr_attr(&res, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &from);

    /* Port 0, and RESPONSE-PORT with PADDING (RFC 5780 6.1): 400 to the source. */
    req_binding(&r);
    req_response_port(&r, 0);
    n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_error(&res, 400);
    assert_addr(&res.tx.to, &from);

    req_binding(&r);
    req_response_port(&r, 50001);
    nk_stun_build_attr(&r.b, NK_STUN_ATTR_PADDING, pad, sizeof(pad));
    n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_error(&res, 400);
    assert_addr(&res.tx.to, &from);
    nk_stun_server_free(srv);
}

static void test_rfc5780_padding(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr from = addr("127.0.0.1:50000");
    static uint8_t pad[1400];
    req r;
    result res;

    /* A padded request gets a response exactly as long, never longer. */
    req_binding(&r);
    nk_stun_build_attr(&r.b, NK_STUN_ATTR_PADDING, pad, sizeof(pad));
    nk_stun_build_fingerprint(&r.b);
    size_t n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    assert_int_equal(res.tx.len, n);
    const nk_stun_attr *p = nk_stun_get(&res.msg, NK_STUN_ATTR_PADDING);
    assert_non_null(p);
    assert_true(res.msg.fingerprint >= 0);

    /* A small PADDING: an empty PADDING comes back, within the Binding bound. */
    req_binding(&r);
    nk_stun_build_attr(&r.b, NK_STUN_ATTR_PADDING, pad, 0);
    n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_UDP, r.buf, n);
    expect_success(&res);
    p = nk_stun_get(&res.msg, NK_STUN_ATTR_PADDING);
    assert_non_null(p);
    assert_int_equal(p->len, 0);

    /* Over TCP PADDING is pointless: not echoed. */
    req_binding(&r);
    nk_stun_build_attr(&r.b, NK_STUN_ATTR_PADDING, pad, 200);
    n = req_end(&r);
    handle(&res, &g_addrs[0], &from, NK_TRANSPORT_TCP, r.buf, n);
    expect_success(&res);
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_PADDING));
    nk_stun_server_free(srv);
}

static void test_rfc5780_classic(void **state)
{
    nk_stun_server *srv = rfc5780_new("127.0.0.1:3478", "127.0.0.2", 0);
    nk_addr from = addr("127.0.0.1:50000");
    uint8_t q[64];
    size_t n = classic_request(q, 1, NK_STUN_CHANGE_IP);
    result res;
    handle(&res, &g_addrs[1], &from, NK_TRANSPORT_UDP, q, n);
    assert_int_equal(res.rc, 0);
    assert_true(res.msg.classic);
    assert_memory_equal(res.buf + 4, q + 4, 16);
    assert_addr(&res.tx.from, &g_addrs[3]);
    expect_addr_attr(&res, NK_STUN_ATTR_MAPPED_ADDRESS, &from);
    expect_addr_attr(&res, NK_STUN_ATTR_SOURCE_ADDRESS, &g_addrs[3]);
    expect_addr_attr(&res, NK_STUN_ATTR_CHANGED_ADDRESS, &g_addrs[2]);
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_XOR_MAPPED_ADDRESS));
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_RESPONSE_ORIGIN));
    assert_null(nk_stun_get(&res.msg, NK_STUN_ATTR_FINGERPRINT));
    nk_stun_server_free(srv);
}

static void test_new_rejects_bad_config(void **state)
{
    nk_stun_server *srv = NULL;
    nk_addr p4 = addr("127.0.0.1:3478"), any4 = addr("0.0.0.0:3478");
    nk_addr a4 = ip("127.0.0.2"), a6 = ip("::2"), none = {0};
    assert_int_equal(nk_stun_server_new(&srv, &p4, &a6, 0), NK_ERR_INVAL);
    assert_int_equal(nk_stun_server_new(&srv, &p4, &p4, 0), NK_ERR_INVAL);
    assert_int_equal(nk_stun_server_new(&srv, &any4, &a4, 0), NK_ERR_INVAL);
    assert_int_equal(nk_stun_server_new(&srv, &p4, &a4, 3478), NK_ERR_INVAL);
    assert_int_equal(nk_stun_server_new(&srv, &none, NULL, 0), NK_ERR_INVAL);
    assert_null(srv);
    /* A wildcard plain server is fine: it answers from wherever it got the request. */
    assert_int_equal(nk_stun_server_new(&srv, &any4, &none, 0), 0);
    nk_stun_server_free(srv);
}

static void test_stats_add(void **state)
{
    nk_stun_server_stats_t a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, b = a;
    nk_stun_server_stats_add(&a, &b);
    assert_int_equal(a.requests, 2);
    assert_int_equal(a.tcp_idle_closed, 20);
    assert_int_equal(a.tcp_rejected_per_ip, 22);
    assert_int_equal(a.tcp_first_timeout, 24);
    assert_int_equal(a.tcp_evicted, 26);
    assert_int_equal(a.rate_limited, 28);
    assert_int_equal(a.ignored, 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_binding),
        cmocka_unit_test(test_fingerprint_echoed),
        cmocka_unit_test(test_plain_rfc5780_attrs_are_unknown),
        cmocka_unit_test(test_unknown_required_420),
        cmocka_unit_test(test_not_answered),
        cmocka_unit_test(test_malformed_dropped),
        cmocka_unit_test(test_classic_plain),
        cmocka_unit_test(test_rfc5780_addresses),
        cmocka_unit_test(test_rfc5780_change_matrix_ipv4),
        cmocka_unit_test(test_rfc5780_change_matrix_ipv6),
        cmocka_unit_test(test_rfc5780_no_change_request),
        cmocka_unit_test(test_rfc5780_bad_change_request),
        cmocka_unit_test(test_rfc5780_tcp),
        cmocka_unit_test(test_rfc5780_response_port),
        cmocka_unit_test(test_rfc5780_padding),
        cmocka_unit_test(test_rfc5780_classic),
        cmocka_unit_test(test_new_rejects_bad_config),
        cmocka_unit_test(test_stats_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
