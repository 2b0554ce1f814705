/*
 * The test world itself (tests/sim): the random source is seeded and
 * deterministic, the clock moves to the earliest deadline, the link loses,
 * duplicates, delays and reorders as configured, and the NAT admits and
 * blocks what RFC 4787 / RFC 5780 say each behaviour does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sim.h"

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static void test_rng(void **state)
{
    (void)state;
    sim_rng a, b, c;
    sim_rng_seed(&a, 7);
    sim_rng_seed(&b, 7);
    sim_rng_seed(&c, 8);
    uint8_t x[32], y[32], z[32];
    sim_random(&a, x, sizeof(x));
    sim_random_void(&b, y, sizeof(y));
    sim_random(&c, z, sizeof(z));
    assert_memory_equal(x, y, sizeof(x));
    assert_memory_not_equal(x, z, sizeof(x));
    unsigned hist[10] = {0};
    for (int i = 0; i < 10000; i++) {
        double u = sim_rng_unit(&a);
        assert_true(u >= 0 && u < 1);
        hist[sim_rng_below(&a, 10)]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(hist[i] > 900 && hist[i] < 1100);
}

static void test_clock(void **state)
{
    (void)state;
    sim_clock c;
    sim_clock_init(&c, 1000);
    sim_clock_offer(&c, SIM_NEVER);
    sim_clock_offer(&c, 1500);
    sim_clock_offer(&c, 1200);
    assert_int_equal(sim_clock_advance(&c, 5000), 1);
    assert_int_equal(c.now, 1200);
    sim_clock_offer(&c, 900); /* overdue: now does not go back */
    assert_int_equal(sim_clock_advance(&c, 5000), 1);
    assert_int_equal(c.now, 1200);
    assert_int_equal(sim_clock_advance(&c, 5000), 0); /* nothing offered */
    assert_int_equal(c.now, 1200);
    sim_clock_offer(&c, 9000);
    assert_int_equal(sim_clock_advance(&c, 6000), 0); /* nothing due by the limit */
    assert_int_equal(c.now, 1200);
}

static sim_pkt pkt_of(uint32_t *n)
{
    static nk_addr a, b;
    a = addr("192.0.2.1:1");
    b = addr("192.0.2.2:2");
    return (sim_pkt){.from = a, .to = b, .data = (const uint8_t *)n, .len = sizeof(*n)};
}

static void test_queue_order(void **state)
{
    (void)state;
    sim_rng r;
    sim_rng_seed(&r, 1);
    sim_queue q;
    sim_queue_init(&q, &r);
    uint32_t v;
    for (v = 0; v < 100; v++) {
        sim_pkt k = pkt_of(&v);
        k.tag = (int)v;
        sim_queue_put(&q, 1000 + (v % 10), &k); /* ten at each time, queued interleaved */
    }
    assert_int_equal(sim_queue_next(&q), 1000);
    assert_null(sim_queue_pop(&q, 999));
    int64_t last_at = 0;
    int last_tag = -1;
    for (int i = 0; i < 100; i++) {
        const sim_pkt *p = sim_queue_pop(&q, 2000);
        assert_non_null(p);
        uint32_t got;
        memcpy(&got, p->data, sizeof(got));
        assert_int_equal(got, (uint32_t)p->tag);
        assert_true(p->at >= last_at);
        if (p->at == last_at)
            assert_true(p->tag > last_tag); /* equal times: first queued first */
        last_at = p->at;
        last_tag = p->tag;
    }
    assert_null(sim_queue_pop(&q, 2000));
    assert_int_equal(sim_queue_next(&q), SIM_NEVER);
    sim_queue_free(&q);
}

/* Sends n numbered packets, 1 ms apart, and returns how many arrived. */
static unsigned run_link(sim_queue *q, unsigned n, unsigned *dups, unsigned *overtaken)
{
    unsigned got = 0, seen[1000] = {0};
    uint32_t highest = 0;
    *dups = *overtaken = 0;
    assert_true(n <= 1000);
    int64_t now = 0;
    for (uint32_t v = 0; v < n; v++, now++) {
        sim_pkt k = pkt_of(&v);
        sim_queue_send(q, now, &k);
    }
    const sim_pkt *p;
    while ((p = sim_queue_pop(q, SIM_NEVER - 1)) != NULL) {
        uint32_t v;
        memcpy(&v, p->data, sizeof(v));
        assert_true(p->at >= (int64_t)v + q->link.delay_ms);
        if (seen[v]++)
            (*dups)++;
        else
            got++;
        if (v < highest)
            (*overtaken)++;
        else
            highest = v;
    }
    return got;
}

static void test_link(void **state)
{
    (void)state;
    sim_rng r;
    sim_queue q;
    unsigned dups, overtaken;
    sim_rng_seed(&r, sim_seed(42));
    sim_queue_init(&q, &r);

    q.link = (sim_link){.delay_ms = 20};
    assert_int_equal(run_link(&q, 1000, &dups, &overtaken), 1000);
    assert_int_equal(dups + overtaken, 0);

    q.link = (sim_link){.delay_ms = 20, .loss = 0.2};
    unsigned got = run_link(&q, 1000, &dups, &overtaken);
    assert_true(got >= 740 && got <= 860); /* 800 expected */
    assert_int_equal(dups + overtaken, 0);

    q.link = (sim_link){.delay_ms = 20, .dup = 0.1};
    assert_int_equal(run_link(&q, 1000, &dups, &overtaken), 1000);
    assert_true(dups >= 70 && dups <= 130);

    q.link = (sim_link){.delay_ms = 20, .reorder = 0.1, .reorder_ms = 5};
    assert_int_equal(run_link(&q, 1000, &dups, &overtaken), 1000);
    assert_true(overtaken >= 70 && overtaken <= 130);
    assert_int_equal(dups, 0);

    q.link = (sim_link){.delay_ms = 20, .jitter_ms = 10};
    assert_int_equal(run_link(&q, 1000, &dups, &overtaken), 1000);
    assert_true(overtaken > 100);
    sim_queue_free(&q);
}

/* ---- the NAT ---- */

typedef struct nat_case {
    sim_rng r;
    sim_nat n;
    nk_addr host, s1, s1p, s2, pub;
} nat_case;

static void nat_setup(nat_case *c, nk_nat_behaviour map, nk_nat_behaviour filt, nk_port_allocation ports)
{
    sim_rng_seed(&c->r, 5);
    c->pub = addr("203.0.113.1:0");
    sim_nat_init(&c->n, &c->pub, &c->r);
    c->n.mapping = map;
    c->n.filtering = filt;
    c->n.ports = ports;
    c->host = addr("10.0.0.2:5000");
    c->s1 = addr("198.51.100.1:3478");
    c->s1p = addr("198.51.100.1:3479"); /* same IP, other port */
    c->s2 = addr("198.51.100.2:3478");  /* other IP */
}

static nk_addr out(nat_case *c, const nk_addr *to)
{
    nk_addr src, dst;
    assert_int_equal(sim_nat_send(&c->n, 0, &c->host, to, &src, &dst), SIM_NAT_OUT);
    assert_true(nk_addr_equal(&dst, to));
    assert_true(nk_addr_equal_ip(&src, &c->pub));
    return src;
}

static int in(nat_case *c, const nk_addr *from, const nk_addr *to)
{
    nk_addr internal;
    int ok = sim_nat_receive(&c->n, 0, from, to, &internal);
    if (ok)
        assert_true(nk_addr_equal(&internal, &c->host));
    return ok;
}

static void test_nat_mapping(void **state)
{
    (void)state;
    static const nk_nat_behaviour kinds[] = {NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_DEPENDENT,
                                             NK_NAT_ADDRESS_AND_PORT_DEPENDENT};
    for (int i = 0; i < 3; i++) {
        nat_case c;
        nat_setup(&c, kinds[i], NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING);
        nk_addr m1 = out(&c, &c.s1), m1p = out(&c, &c.s1p), m2 = out(&c, &c.s2);
        assert_int_equal(m1.port, 5000); /* preserving */
        /* RFC 4787 4.1: EIM reuses the mapping for every destination, ADM per destination IP,
         * APDM per destination IP and port. */
        assert_int_equal(nk_addr_equal(&m1, &m1p), kinds[i] != NK_NAT_ADDRESS_AND_PORT_DEPENDENT);
        assert_int_equal(nk_addr_equal(&m1, &m2), kinds[i] == NK_NAT_ENDPOINT_INDEPENDENT);
        assert_int_equal(c.n.nmapped, i == 0 ? 1 : i == 1 ? 2 : 3);
        /* the same destination again: the same mapping */
        nk_addr again = out(&c, &c.s2);
        assert_true(nk_addr_equal(&again, &m2));
        sim_nat_free(&c.n);
    }
}

static void test_nat_filtering(void **state)
{
    (void)state;
    static const nk_nat_behaviour kinds[] = {NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_DEPENDENT,
                                             NK_NAT_ADDRESS_AND_PORT_DEPENDENT};
    for (int i = 0; i < 3; i++) {
        nat_case c;
        nat_setup(&c, NK_NAT_ENDPOINT_INDEPENDENT, kinds[i], NK_PORTS_PRESERVING);
        nk_addr stranger = addr("192.0.2.99:999"), other_port = c.pub;
        other_port.port = 5001;
        assert_false(in(&c, &c.s1, &other_port)); /* nothing mapped yet */
        nk_addr m = out(&c, &c.s1);
        /* RFC 4787 5: EIF admits anyone, ADF every port of a contacted IP, APDF only the
         * contacted address and port. */
        assert_true(in(&c, &c.s1, &m));
        assert_int_equal(in(&c, &c.s1p, &m), kinds[i] != NK_NAT_ADDRESS_AND_PORT_DEPENDENT);
        assert_int_equal(in(&c, &c.s2, &m), kinds[i] == NK_NAT_ENDPOINT_INDEPENDENT);
        assert_int_equal(in(&c, &stranger, &m), kinds[i] == NK_NAT_ENDPOINT_INDEPENDENT);
        assert_false(in(&c, &c.s1, &other_port)); /* no mapping on that port */
        sim_nat_free(&c.n);
    }
}

/* The IPv6 stateful firewall: no translation, inbound only as answers to what an endpoint sent. */
static void test_firewall(void **state)
{
    (void)state;
    sim_rng r;
    sim_nat n;
    nk_addr none = addr("[::]:0"), host = addr("[2001:db8:1::2]:5000"), other = addr("[2001:db8:1::3]:5000");
    nk_addr peer = addr("[2001:db8:2::2]:6000"), peer_port = addr("[2001:db8:2::2]:6001"), src, dst, internal;
    sim_rng_seed(&r, 1);
    sim_nat_init(&n, &none, &r);
    n.firewall = 1;
    n.mapping = NK_NAT_ENDPOINT_INDEPENDENT;
    n.filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
    assert_false(sim_nat_receive(&n, 0, &peer, &host, &internal)); /* unsolicited: dropped */
    assert_int_equal(sim_nat_send(&n, 0, &host, &peer, &src, &dst), SIM_NAT_OUT);
    assert_true(nk_addr_equal(&src, &host)); /* the address goes out unchanged */
    assert_true(nk_addr_equal(&dst, &peer));
    assert_true(sim_nat_receive(&n, 0, &peer, &host, &internal)); /* the answer */
    assert_true(nk_addr_equal(&internal, &host));
    assert_false(sim_nat_receive(&n, 0, &peer_port, &host, &internal)); /* another port of the peer */
    assert_false(sim_nat_receive(&n, 0, &peer, &other, &internal));     /* another inside host */
    nk_addr host_p2 = host;
    host_p2.port = 5001;
    assert_false(sim_nat_receive(&n, 0, &peer, &host_p2, &internal));   /* another inside port */
    sim_nat_free(&n);
}

static void test_nat_ports(void **state)
{
    (void)state;
    nat_case c;
    /* sequential: +delta per new mapping */
    nat_setup(&c, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_SEQUENTIAL);
    c.n.delta = 2;
    assert_int_equal(out(&c, &c.s1).port, 40002);
    assert_int_equal(out(&c, &c.s1p).port, 40004);
    assert_int_equal(out(&c, &c.s2).port, 40006);
    sim_nat_free(&c.n);
    /* random: all different, in range, and the same for the same seed */
    uint16_t first[3];
    for (int run = 0; run < 2; run++) {
        nat_setup(&c, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_RANDOM);
        nk_addr dst[3] = {c.s1, c.s1p, c.s2};
        for (int i = 0; i < 3; i++) {
            uint16_t p = out(&c, &dst[i]).port;
            assert_true(p >= 20000 && p < 60000);
            if (run == 0)
                first[i] = p;
            else
                assert_int_equal(p, first[i]);
        }
        assert_true(first[0] != first[1] && first[1] != first[2] && first[0] != first[2]);
        sim_nat_free(&c.n);
    }
    /* preserving: a second host on the same local port gets the next one */
    nat_setup(&c, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING);
    nk_addr other = addr("10.0.0.3:5000"), src, dst;
    assert_int_equal(out(&c, &c.s1).port, 5000);
    assert_int_equal(sim_nat_send(&c.n, 0, &other, &c.s1, &src, &dst), SIM_NAT_OUT);
    assert_int_equal(src.port, 5001);
    sim_nat_free(&c.n);
}

static void test_nat_hairpin_and_blocked(void **state)
{
    (void)state;
    for (int hairpin = 0; hairpin < 2; hairpin++) {
        nat_case c;
        nat_setup(&c, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_PRESERVING);
        c.n.hairpin = hairpin;
        nk_addr m = out(&c, &c.s1);
        nk_addr peer = addr("10.0.0.3:6000"), src, dst;
        sim_verdict v = sim_nat_send(&c.n, 0, &peer, &m, &src, &dst);
        if (hairpin) {
            /* looped back inside, from the sender's public mapping, past the filter */
            assert_int_equal(v, SIM_NAT_HAIRPIN);
            assert_true(nk_addr_equal(&dst, &c.host));
            assert_true(nk_addr_equal_ip(&src, &c.pub));
            assert_int_equal(src.port, 6000);
        } else {
            assert_int_equal(v, SIM_NAT_DROP);
        }
        sim_nat_free(&c.n);
    }
    nat_case c;
    nat_setup(&c, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING);
    c.n.blocked = 1;
    nk_addr src, dst;
    assert_int_equal(sim_nat_send(&c.n, 0, &c.host, &c.s1, &src, &dst), SIM_NAT_DROP);
    sim_nat_free(&c.n);
}

static void test_nat_timeout_and_reboot(void **state)
{
    (void)state;
    nat_case c;
    nat_setup(&c, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING);
    c.n.lifetime_ms = 30000;
    nk_addr m = out(&c, &c.s1), internal, src, dst;
    /* inbound traffic keeps the mapping alive */
    assert_true(sim_nat_receive(&c.n, 20000, &c.s1, &m, &internal));
    assert_true(sim_nat_receive(&c.n, 50000, &c.s1, &m, &internal));
    assert_int_equal(sim_nat_count(&c.n, 80000), 1);
    /* idle longer than the lifetime: gone, and the next mapping gets another port */
    assert_false(sim_nat_receive(&c.n, 80001, &c.s1, &m, &internal));
    assert_int_equal(sim_nat_count(&c.n, 80001), 0);
    assert_int_equal(sim_nat_send(&c.n, 80001, &c.host, &c.s1, &src, &dst), SIM_NAT_OUT);
    assert_int_equal(src.port, 6000);
    assert_int_equal(c.n.nexpired, 1);
    /* a reboot forgets everything at once */
    sim_nat_reboot(&c.n);
    assert_int_equal(sim_nat_count(&c.n, 80001), 0);
    assert_false(sim_nat_receive(&c.n, 80001, &c.s1, &src, &internal));
    assert_int_equal(sim_nat_send(&c.n, 80002, &c.host, &c.s1, &src, &dst), SIM_NAT_OUT);
    assert_int_equal(src.port, 7000);
    sim_nat_free(&c.n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng),          cmocka_unit_test(test_clock),
        cmocka_unit_test(test_queue_order),  cmocka_unit_test(test_link),
        cmocka_unit_test(test_nat_mapping),  cmocka_unit_test(test_nat_filtering),
        cmocka_unit_test(test_nat_ports),    cmocka_unit_test(test_nat_hairpin_and_blocked),
        cmocka_unit_test(test_nat_timeout_and_reboot), cmocka_unit_test(test_firewall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
