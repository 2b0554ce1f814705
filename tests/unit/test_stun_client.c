/* STUN client transaction and multi-server Binding, in memory with simulated time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/stun_client.h"
#include "sim.h"

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

/* A Binding success (or error when code != 0) for the request in req. */
static size_t make_response(uint8_t *out, size_t cap, const uint8_t *req, const nk_addr *mapped, int code)
{
    nk_stun_builder b;
    uint16_t cls = code != 0 ? NK_STUN_ERROR : NK_STUN_SUCCESS;
    nk_stun_build_begin(&b, out, cap, nk_stun_type(NK_STUN_BINDING, cls), req + 8);
    if (code != 0)
        nk_stun_build_error(&b, code, NULL);
    else
        nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, mapped);
    nk_stun_build_fingerprint(&b);
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    return (size_t)n;
}

static size_t make_request(uint8_t *out, size_t cap, uint8_t seed)
{
    uint8_t tid[NK_STUN_TID_SIZE];
    memset(tid, seed, sizeof(tid));
    int n = nk_stun_binding_request(out, cap, tid, 0, NULL);
    assert_true(n > 0);
    return (size_t)n;
}

/* RFC 8489 6.2.1: sends at 0, 500, 1500, 3500, 7500, 15500, 31500; fail at 39500. */
static void test_udp_schedule(void **state)
{
    (void)state;
    static const int64_t expect[] = {0, 500, 1500, 3500, 7500, 15500, 31500};
    nk_stun_txn t;
    uint8_t req[128], buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    nk_addr srv = addr("192.0.2.1:3478");
    size_t n = make_request(req, sizeof(req), 1);

    assert_int_equal(nk_stun_txn_start(&t, 0, &srv, NK_TRANSPORT_UDP, req, n, 0, 0, 0), 0);
    int64_t now = 0;
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        now = nk_stun_txn_next_deadline(&t);
        nk_stun_txn_handle_timeout(&t, now);
        assert_int_equal(now, expect[i]);
        assert_int_equal(nk_stun_txn_poll_transmit(&t, now, &tx, buf, sizeof(buf)), 0);
        assert_int_equal(tx.len, n);
        assert_memory_equal(buf, req, n);
        assert_true(nk_addr_equal(&tx.to, &srv));
        assert_int_equal(nk_stun_txn_poll_transmit(&t, now, &tx, buf, sizeof(buf)), NK_ERR_AGAIN);
    }
    assert_int_equal(nk_stun_txn_next_deadline(&t), 39500);
    nk_stun_txn_handle_timeout(&t, 39499);
    assert_int_equal(t.state, NK_STUN_TXN_RUNNING);
    nk_stun_txn_handle_timeout(&t, 39500);
    assert_int_equal(t.state, NK_STUN_TXN_TIMEOUT);
    assert_int_equal(t.sends, 7);
    assert_int_equal(nk_stun_txn_next_deadline(&t), NK_DEADLINE_NONE);
}

/* With max_rto_ms (the agent's gathering: RTO 250, capped at 500, 10 sends): sends at 0, 250, 750,
 * then every 500 ms; the last waits Rm x RTO. */
static void test_udp_schedule_capped(void **state)
{
    (void)state;
    static const int64_t expect[] = {0, 250, 750, 1250, 1750, 2250, 2750, 3250, 3750, 4250};
    nk_stun_txn t;
    uint8_t req[128], buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    nk_addr srv = addr("192.0.2.1:3478");
    size_t n = make_request(req, sizeof(req), 1);
    assert_int_equal(nk_stun_txn_start(&t, 0, &srv, NK_TRANSPORT_UDP, req, n, 250, 10, 0), 0);
    t.max_rto_ms = 500;
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        int64_t now = nk_stun_txn_next_deadline(&t);
        nk_stun_txn_handle_timeout(&t, now);
        assert_int_equal(now, expect[i]);
        assert_int_equal(nk_stun_txn_poll_transmit(&t, now, &tx, buf, sizeof(buf)), 0);
    }
    assert_int_equal(nk_stun_txn_next_deadline(&t), 4250 + 16 * 250);
    nk_stun_txn_handle_timeout(&t, 4250 + 16 * 250);
    assert_int_equal(t.state, NK_STUN_TXN_TIMEOUT);
    assert_int_equal(t.sends, 10);

    /* through the client's config: the same schedule for each server's transaction */
    nk_stun_client *c;
    nk_stun_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.servers = &srv;
    cfg.nservers = 1;
    cfg.rto_ms = 250;
    cfg.rc = 10;
    cfg.max_rto_ms = 500;
    assert_int_equal(nk_stun_client_new(&c, &cfg), 0);
    assert_int_equal(nk_stun_client_start(c, 0), 0);
    int sent = 0;
    for (int64_t now = 0; now <= 4250; now = nk_stun_client_next_deadline(c)) {
        nk_stun_client_handle_timeout(c, now);
        while (nk_stun_client_poll_transmit(c, now, &tx, buf, sizeof(buf)) == 0) {
            assert_int_equal(now, expect[sent]);
            sent++;
        }
    }
    assert_int_equal(sent, 10);
    nk_stun_client_free(c);
}

static void test_tcp_sends_once(void **state)
{
    (void)state;
    nk_stun_txn t;
    uint8_t req[128], buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    nk_addr srv = addr("192.0.2.1:3478");
    size_t n = make_request(req, sizeof(req), 2);

    assert_int_equal(nk_stun_txn_start(&t, 1000, &srv, NK_TRANSPORT_TCP, req, n, 0, 0, 0), 0);
    assert_int_equal(nk_stun_txn_poll_transmit(&t, 1000, &tx, buf, sizeof(buf)), 0);
    assert_int_equal(tx.transport, NK_TRANSPORT_TCP);
    assert_int_equal(nk_stun_txn_next_deadline(&t), 1000 + NK_STUN_TI_MS);
    nk_stun_txn_handle_timeout(&t, 1000 + NK_STUN_TI_MS - 1);
    assert_int_equal(nk_stun_txn_poll_transmit(&t, 5000, &tx, buf, sizeof(buf)), NK_ERR_AGAIN);
    nk_stun_txn_handle_timeout(&t, 1000 + NK_STUN_TI_MS);
    assert_int_equal(t.state, NK_STUN_TXN_TIMEOUT);
    assert_int_equal(t.sends, 1);
}

static void test_response_matching(void **state)
{
    (void)state;
    nk_stun_txn t;
    uint8_t req[128], other[128], resp[256], buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    nk_addr srv = addr("192.0.2.1:3478"), mapped = addr("203.0.113.9:4242");
    size_t n = make_request(req, sizeof(req), 3);
    size_t on = make_request(other, sizeof(other), 4);

    assert_int_equal(nk_stun_txn_start(&t, 0, &srv, NK_TRANSPORT_UDP, req, n, 0, 0, 0), 0);
    assert_int_equal(nk_stun_txn_poll_transmit(&t, 0, &tx, buf, sizeof(buf)), 0);

    /* Another transaction's response, the request itself, garbage: not ours. */
    size_t rn = make_response(resp, sizeof(resp), other, &mapped, 0);
    assert_int_equal(nk_stun_txn_handle_response(&t, 10, &srv, resp, rn), NK_ERR_NOT_FOUND);
    assert_int_equal(nk_stun_txn_handle_response(&t, 10, &srv, req, n), NK_ERR_NOT_FOUND);
    assert_int_equal(nk_stun_txn_handle_response(&t, 10, &srv, (const uint8_t *)"hello", 5), NK_ERR_NOT_FOUND);
    (void)on;

    /* A truncated copy of the right response is malformed, not a match. */
    rn = make_response(resp, sizeof(resp), req, &mapped, 0);
    assert_true(nk_stun_txn_handle_response(&t, 10, &srv, resp, rn - 4) < 0);
    assert_int_equal(t.state, NK_STUN_TXN_RUNNING);

    nk_addr alt = addr("192.0.2.2:3479"); /* RFC 5780: may come from the other address */
    assert_int_equal(nk_stun_txn_handle_response(&t, 42, &alt, resp, rn), 0);
    assert_int_equal(t.state, NK_STUN_TXN_DONE);
    assert_int_equal(t.rtt_ms, 42);
    assert_true(nk_addr_equal(&t.response_from, &alt));
    /* A duplicate after completion is ignored. */
    assert_int_equal(nk_stun_txn_handle_response(&t, 50, &srv, resp, rn), NK_ERR_NOT_FOUND);
}

static void test_rtt_after_loss(void **state)
{
    (void)state;
    nk_stun_txn t;
    uint8_t req[128], resp[256], buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    nk_addr srv = addr("192.0.2.1:3478"), mapped = addr("203.0.113.9:4242");
    size_t n = make_request(req, sizeof(req), 5);

    assert_int_equal(nk_stun_txn_start(&t, 0, &srv, NK_TRANSPORT_UDP, req, n, 100, 3, 2), 0);
    for (int i = 0; i < 3; i++) { /* the first two sends are lost */
        int64_t now = nk_stun_txn_next_deadline(&t);
        nk_stun_txn_handle_timeout(&t, now);
        assert_int_equal(nk_stun_txn_poll_transmit(&t, now, &tx, buf, sizeof(buf)), 0);
    }
    assert_int_equal(t.last_send_ms, 300); /* 0, 100, 300 with RTO 100 */
    size_t rn = make_response(resp, sizeof(resp), req, &mapped, 0);
    assert_int_equal(nk_stun_txn_handle_response(&t, 330, &srv, resp, rn), 0);
    assert_int_equal(t.rtt_ms, 30);
}

/* Drives a client: delivers to "answering" servers (index bitmask) after delay. */
typedef struct {
    nk_stun_client *c;
    sim_clock clock;
    unsigned answering;
    int error_code;  /* answering servers answer with this error when != 0 */
    nk_addr servers[3];
    nk_addr mapped;
    int sends_to[3];
} sim;

static void sim_run(sim *s, int64_t until)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE], resp[256];
    nk_stun_binding_result r;
    nk_transmit tx;
    for (int steps = 0; steps < 1000 && !nk_stun_client_result(s->c, &r); steps++) {
        while (nk_stun_client_poll_transmit(s->c, s->clock.now, &tx, buf, sizeof(buf)) == 0) {
            for (int i = 0; i < 3; i++) {
                if (!nk_addr_equal(&tx.to, &s->servers[i]))
                    continue;
                s->sends_to[i]++;
                if (s->answering & (1u << i)) {
                    size_t rn = make_response(resp, sizeof(resp), buf, &s->mapped, s->error_code);
                    assert_int_equal(nk_stun_client_handle_datagram(s->c, s->clock.now + 20, &tx.to, resp, rn), 0);
                }
            }
        }
        sim_clock_offer(&s->clock, nk_stun_client_next_deadline(s->c));
        if (!sim_clock_advance(&s->clock, until))
            break;
        nk_stun_client_handle_timeout(s->c, s->clock.now);
    }
}

static void sim_init(sim *s, nk_stun_client_config *cfg, sim_rng *seed)
{
    memset(s, 0, sizeof(*s));
    sim_clock_init(&s->clock, 0);
    s->servers[0] = addr("192.0.2.1:3478");
    s->servers[1] = addr("192.0.2.2:3478");
    s->servers[2] = addr("[2001:db8::3]:3478");
    s->mapped = addr("203.0.113.7:50000");
    memset(cfg, 0, sizeof(*cfg));
    cfg->servers = s->servers;
    cfg->nservers = 3;
    cfg->random = sim_random;
    cfg->random_ctx = seed;
    cfg->timeout_ms = 10000;
    assert_int_equal(nk_stun_client_new(&s->c, cfg), 0);
    assert_int_equal(nk_stun_client_start(s->c, 0), 0);
}

static void test_client_first_answers(void **state)
{
    (void)state;
    sim s;
    nk_stun_client_config cfg;
    nk_stun_binding_result r;
    sim_rng seed = {0};
    sim_init(&s, &cfg, &seed);
    s.answering = 1;
    sim_run(&s, 100000);
    assert_int_equal(nk_stun_client_result(s.c, &r), 1);
    assert_int_equal(r.status, 0);
    assert_true(nk_addr_equal(&r.server, &s.servers[0]));
    assert_true(nk_addr_equal(&r.mapped, &s.mapped));
    assert_int_equal(r.rtt_ms, 20);
    assert_int_equal(s.sends_to[1], 0);
    nk_stun_client_free(s.c);
}

static void test_client_failover(void **state)
{
    (void)state;
    sim s;
    nk_stun_client_config cfg;
    nk_stun_binding_result r;
    sim_rng seed = {0};
    sim_init(&s, &cfg, &seed);
    s.answering = 4; /* only the IPv6 server */
    sim_run(&s, 100000);
    assert_int_equal(nk_stun_client_result(s.c, &r), 1);
    assert_int_equal(r.status, 0);
    assert_true(nk_addr_equal(&r.server, &s.servers[2]));
    assert_int_equal(s.clock.now, 3000); /* two failovers of 1500 ms each */
    assert_true(s.sends_to[0] >= 3 && s.sends_to[1] >= 1);
    nk_stun_client_free(s.c);
}

static void test_client_error_moves_on(void **state)
{
    (void)state;
    sim s;
    nk_stun_client_config cfg;
    nk_stun_binding_result r;
    sim_rng seed = {0};
    sim_init(&s, &cfg, &seed);
    s.answering = 7;
    s.error_code = 500;
    sim_run(&s, 100000);
    assert_int_equal(nk_stun_client_result(s.c, &r), 1);
    assert_int_equal(r.status, NK_ERR_STUN(500));
    assert_int_equal(s.clock.now, 0); /* every server refused at once: no waiting */
    assert_int_equal(s.sends_to[0] + s.sends_to[1] + s.sends_to[2], 3);
    nk_stun_client_free(s.c);
}

static void test_client_timeout(void **state)
{
    (void)state;
    sim s;
    nk_stun_client_config cfg;
    nk_stun_binding_result r;
    sim_rng seed = {0};
    sim_init(&s, &cfg, &seed);
    sim_run(&s, 100000);
    assert_int_equal(nk_stun_client_result(s.c, &r), 1);
    assert_int_equal(r.status, NK_ERR_TIMEOUT);
    assert_int_equal(s.clock.now, 10000);
    nk_stun_client_free(s.c);
}

/* RFC 8489: an answer with an unknown comprehension-required attribute fails; optional ones are skipped. */
static void test_parse_unknown_required(void **state)
{
    (void)state;
    uint8_t buf[256], tid[NK_STUN_TID_SIZE] = {1};
    nk_addr mapped = addr("203.0.113.7:50000");
    nk_stun_builder b;
    nk_stun_msg m;
    nk_stun_binding_result r;
    for (int required = 0; required <= 1; required++) {
        nk_stun_build_begin(&b, buf, sizeof(buf), nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS), tid);
        nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped);
        nk_stun_build_u32(&b, required ? 0x0077 : 0x8077, 1);
        int n = nk_stun_build_end(&b);
        assert_true(n > 0);
        assert_int_equal(nk_stun_decode(&m, buf, (size_t)n, 0), 0);
        assert_int_equal(nk_stun_binding_parse(&m, &r), required ? NK_ERR_MALFORMED : 0);
    }
}

static void test_client_bad_config(void **state)
{
    (void)state;
    nk_stun_client *c;
    nk_stun_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(nk_stun_client_new(&c, &cfg), NK_ERR_INVAL);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_schedule),
        cmocka_unit_test(test_udp_schedule_capped),        cmocka_unit_test(test_tcp_sends_once),
        cmocka_unit_test(test_response_matching),   cmocka_unit_test(test_rtt_after_loss),
        cmocka_unit_test(test_client_first_answers), cmocka_unit_test(test_client_failover),
        cmocka_unit_test(test_client_error_moves_on), cmocka_unit_test(test_client_timeout),
        cmocka_unit_test(test_parse_unknown_required), cmocka_unit_test(test_client_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
