/*
 * RFC 5780 NAT behaviour probe, in memory, in the test world of tests/sim:
 * its NAT (mapping, filtering, port allocation, hairpinning, binding
 * lifetime), its lossy link and clock, and a small RFC 5780 server here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/nat_probe.h"
#include "natkit/stun.h"
#include "sim.h"

#define ONE_WAY_MS 20

/* ---- the world ------------------------------------------------------------------ */

typedef enum { TO_SERVER, TO_NAT, TO_HOST } stage;

typedef struct sim {
    sim_clock clock;
    sim_rng rng;              /* transaction IDs, random ports, loss */
    sim_queue net;            /* the outside link: ONE_WAY_MS each way, net.link.loss */
    sim_nat nat;
    int behind_nat;           /* 0: a public host (no NAT) */
    int drop_first;           /* drop the first copy of each request and of each response */
    size_t nseen;
    uint8_t seen[512][13];    /* direction + transaction ID already let through once */
    int rfc5780;              /* server has an alternate address */
    int response_port;        /* server honours RESPONSE-PORT */
    nk_addr primary, alt;     /* 192.0.2.100:3478 and 192.0.2.101:3479 */
    nk_addr pub;              /* the NAT's public IP (port 0) */
    nk_addr host;             /* the host's IP (port 0) */
    nk_nat_probe *p;
    nk_nat_report rep;
    size_t sent;              /* datagrams the probe sent */
} sim;

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static nk_addr with_port(nk_addr a, uint16_t port)
{
    a.port = port;
    return a;
}

/* drop_first: the first copy of each request (and of each response) is lost. */
static int first_copy_lost(sim *s, const uint8_t *d, int inbound)
{
    if (!s->drop_first)
        return 0;
    uint8_t key[13];
    key[0] = (uint8_t)inbound;
    memcpy(key + 1, d + 8, 12);
    for (size_t i = 0; i < s->nseen; i++)
        if (memcmp(s->seen[i], key, sizeof(key)) == 0)
            return 0;
    assert_true(s->nseen < 512);
    memcpy(s->seen[s->nseen++], key, sizeof(key));
    return 1;
}

/* Over the outside link (delay and loss), or handed on at once (inside the NAT). */
static void send_out(sim *s, stage where, const nk_addr *from, const nk_addr *to, const uint8_t *d, size_t len)
{
    sim_queue_send(&s->net, s->clock.now, &(sim_pkt){.tag = where, .from = *from, .to = *to, .data = d, .len = len});
}

static void hand_in(sim *s, const nk_addr *from, const nk_addr *to, const uint8_t *d, size_t len)
{
    sim_queue_put(&s->net, s->clock.now, &(sim_pkt){.tag = TO_HOST, .from = *from, .to = *to, .data = d, .len = len});
}

/* The host sends: through the NAT (or straight out when there is none). */
static void host_send(sim *s, const nk_transmit *tx, const uint8_t *d)
{
    nk_addr src = tx->from, dst = tx->to;
    s->sent++;
    if (s->behind_nat) {
        sim_verdict v = sim_nat_send(&s->nat, s->clock.now, &tx->from, &tx->to, &src, &dst);
        if (v == SIM_NAT_HAIRPIN)
            hand_in(s, &src, &dst, d, tx->len);
        if (v != SIM_NAT_OUT)
            return;
    }
    if (!first_copy_lost(s, d, 0))
        send_out(s, TO_SERVER, &src, &dst, d, tx->len);
}

/* A datagram from outside reaches the NAT's public address. */
static void nat_inbound(sim *s, const sim_pkt *k)
{
    nk_addr internal;
    if (sim_nat_receive(&s->nat, s->clock.now, &k->from, &k->to, &internal))
        hand_in(s, &k->from, &internal, k->data, k->len);
}

/* ---- the server ---------------------------------------------------------------- */

static void server_answer(sim *s, const sim_pkt *k, const nk_stun_msg *m, const nk_addr *origin, uint16_t port,
                          int code)
{
    uint8_t out[512];
    nk_stun_builder b;
    nk_stun_build_begin(&b, out, sizeof(out),
                        nk_stun_type(NK_STUN_BINDING, code ? NK_STUN_ERROR : NK_STUN_SUCCESS), m->tid);
    if (code) {
        nk_stun_build_error(&b, code, NULL);
    } else {
        nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &k->from);
        nk_stun_build_addr(&b, NK_STUN_ATTR_RESPONSE_ORIGIN, origin);
        if (s->rfc5780)
            nk_stun_build_addr(&b, NK_STUN_ATTR_OTHER_ADDRESS, &s->alt);
    }
    nk_stun_build_fingerprint(&b);
    int n = nk_stun_build_end(&b);
    assert_true(n > 0);
    nk_addr to = with_port(k->from, port);
    if (!first_copy_lost(s, out, 1))
        send_out(s, TO_NAT, origin, &to, out, (size_t)n);
}

static void server_receive(sim *s, const sim_pkt *k)
{
    nk_stun_msg m;
    int served = nk_addr_equal(&k->to, &s->primary) ||
                 (s->rfc5780 && (nk_addr_equal_ip(&k->to, &s->primary) || nk_addr_equal_ip(&k->to, &s->alt)) &&
                  (k->to.port == s->primary.port || k->to.port == s->alt.port));
    if (!served || nk_stun_decode(&m, k->data, k->len, 0) != 0 ||
        m.type != nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST))
        return;
    nk_addr origin = k->to;
    uint16_t port = k->from.port;
    uint32_t flags = 0;
    if (nk_stun_get_u32(&m, NK_STUN_ATTR_CHANGE_REQUEST, &flags) == 0) {
        if (!s->rfc5780)
            return server_answer(s, k, &m, &origin, port, 420);
        if (flags & NK_STUN_CHANGE_IP)
            memcpy(origin.ip, nk_addr_equal_ip(&origin, &s->primary) ? s->alt.ip : s->primary.ip, 4);
        if (flags & NK_STUN_CHANGE_PORT)
            origin.port = origin.port == s->primary.port ? s->alt.port : s->primary.port;
    }
    const nk_stun_attr *rp = nk_stun_get(&m, NK_STUN_ATTR_RESPONSE_PORT);
    if (rp != NULL) {
        if (!s->response_port)
            return server_answer(s, k, &m, &origin, port, 420);
        port = (uint16_t)((rp->value[0] << 8) | rp->value[1]);
    }
    server_answer(s, k, &m, &origin, port, 0);
}


/* ---- driving the probe ------------------------------------------------------- */

static void sim_init(sim *s, int behind_nat)
{
    memset(s, 0, sizeof(*s));
    sim_clock_init(&s->clock, 0);
    sim_rng_seed(&s->rng, sim_seed(12345));
    sim_queue_init(&s->net, &s->rng);
    s->net.link.delay_ms = ONE_WAY_MS;
    s->behind_nat = behind_nat;
    s->rfc5780 = 1;
    s->response_port = 1;
    s->primary = addr("192.0.2.100:3478");
    s->alt = addr("192.0.2.101:3479");
    s->pub = addr(behind_nat ? "192.0.2.1:0" : "192.0.2.50:0");
    s->host = addr(behind_nat ? "10.0.0.2:0" : "192.0.2.50:0");
    sim_nat_init(&s->nat, &s->pub, &s->rng);
}

static void sim_free(sim *s)
{
    nk_nat_probe_free(s->p);
    sim_queue_free(&s->net);
    sim_nat_free(&s->nat);
}

static void start_probe(sim *s, nk_nat_probe_config *cfg)
{
    cfg->server = s->primary;
    cfg->random = sim_random;
    cfg->random_ctx = &s->rng;
    assert_int_equal(nk_nat_probe_new(&s->p, cfg), 0);
    size_t n = nk_nat_probe_socket_count(s->p);
    nk_addr locals[32];
    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++)
        locals[i] = with_port(s->host, (uint16_t)(5000 + 2 * i)); /* gaps: preserving != sequential */
    assert_int_equal(nk_nat_probe_start(s->p, s->clock.now, locals, n), 0);
}

static void flush(sim *s)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    while (nk_nat_probe_poll_transmit(s->p, s->clock.now, &tx, buf, sizeof(buf)) == 0) {
        assert_true(nk_addr_equal_ip(&tx.from, &s->host));
        host_send(s, &tx, buf);
    }
}

static void deliver_due(sim *s)
{
    const sim_pkt *k;
    while ((k = sim_queue_pop(&s->net, s->clock.now)) != NULL) {
        if (k->tag == TO_SERVER)
            server_receive(s, k);
        else if (k->tag == TO_NAT && s->behind_nat)
            nat_inbound(s, k);
        else {
            nk_nat_probe_handle_datagram(s->p, s->clock.now, &k->to, &k->from, k->data, k->len);
            flush(s);
        }
    }
}

/* Runs the probe to its end (bounded by limit_ms of simulated time). */
static void run(sim *s, int64_t limit_ms)
{
    flush(s);
    for (int steps = 0; !nk_nat_probe_result(s->p, &s->rep); steps++) {
        assert_true(steps < 100000);
        sim_clock_offer(&s->clock, nk_nat_probe_next_deadline(s->p));
        sim_clock_offer(&s->clock, sim_queue_next(&s->net));
        assert_true(sim_clock_advance(&s->clock, limit_ms)); /* something is due, and by limit_ms */
        deliver_due(s);
        nk_nat_probe_handle_timeout(s->p, s->clock.now);
        flush(s);
    }
}

static void set_nat(sim *s, nk_nat_behaviour map, nk_nat_behaviour filt, nk_port_allocation alloc, int hairpin)
{
    s->nat.mapping = map;
    s->nat.filtering = filt;
    s->nat.ports = alloc;
    s->nat.hairpin = hairpin;
}

static void probe_nat(sim *s, nk_nat_behaviour map, nk_nat_behaviour filt, nk_port_allocation alloc, int hairpin)
{
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sim_init(s, 1);
    set_nat(s, map, filt, alloc, hairpin);
    start_probe(s, &cfg);
    run(s, 60000);
}

static void expect(const sim *s, nk_nat_behaviour map, nk_nat_behaviour filt, nk_port_allocation alloc,
                   int hairpin, nk_nat_classic classic)
{
    const nk_nat_report *r = &s->rep;
    if (r->note[0] != '\0')
        print_message("note: %s\n", r->note);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->mapping, map);
    assert_int_equal(r->filtering, filt);
    assert_int_equal(r->port_allocation, alloc);
    assert_int_equal(r->hairpinning, hairpin);
    assert_int_equal(r->classic, classic);
    assert_int_equal(r->untested, 0);
    assert_string_equal(r->note, "");
}

/* ---- tests --------------------------------------------------------------------- */

static void test_full_cone(void **state)
{
    (void)state;
    sim s;
    probe_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING, 1);
    expect(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING, 1,
           NK_CLASSIC_FULL_CONE);
    assert_int_equal(s.rep.behind_nat, 1);
    char buf[NK_ADDR_STRLEN];
    assert_string_equal(nk_addr_format(&s.rep.public_addr, buf, sizeof(buf)), "192.0.2.1:5000");
    /* Nothing is lost, so the probe ends one lost test (11 RTO) after its phase 2 began. */
    assert_true(s.clock.now <= 2 * 2 * ONE_WAY_MS + 11 * 250);
    sim_free(&s);
}

static void test_restricted_cone(void **state)
{
    (void)state;
    sim s;
    probe_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_DEPENDENT, NK_PORTS_PRESERVING, 0);
    expect(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_DEPENDENT, NK_PORTS_PRESERVING, 0,
           NK_CLASSIC_RESTRICTED_CONE);
    sim_free(&s);
}

static void test_port_restricted_cone(void **state)
{
    (void)state;
    sim s;
    probe_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_PRESERVING, 1);
    expect(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_PRESERVING, 1,
           NK_CLASSIC_PORT_RESTRICTED_CONE);
    sim_free(&s);
}

static void test_symmetric_random(void **state)
{
    (void)state;
    sim s;
    probe_nat(&s, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_RANDOM, 0);
    expect(&s, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_RANDOM, 0,
           NK_CLASSIC_SYMMETRIC);
    sim_free(&s);
}

static void test_address_dependent_sequential(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sim_init(&s, 1);
    set_nat(&s, NK_NAT_ADDRESS_DEPENDENT, NK_NAT_ADDRESS_DEPENDENT, NK_PORTS_SEQUENTIAL, 1);
    s.nat.delta = 2;
    start_probe(&s, &cfg);
    run(&s, 60000);
    expect(&s, NK_NAT_ADDRESS_DEPENDENT, NK_NAT_ADDRESS_DEPENDENT, NK_PORTS_SEQUENTIAL, 1, NK_CLASSIC_SYMMETRIC);
    assert_int_equal(s.rep.port_delta, 2);
    assert_int_equal(s.rep.nsamples, 6);
    assert_int_equal(s.rep.sample_public[0], 40002);
    assert_int_equal(s.rep.sample_public[5], 40012);
    sim_free(&s);
}

static void test_open_internet(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sim_init(&s, 0);
    start_probe(&s, &cfg);
    run(&s, 60000);
    assert_int_equal(s.rep.status, 0);
    assert_int_equal(s.rep.behind_nat, 0);
    assert_int_equal(s.rep.classic, NK_CLASSIC_OPEN);
    assert_int_equal(s.rep.mapping, NK_NAT_ENDPOINT_INDEPENDENT);
    assert_int_equal(s.rep.filtering, NK_NAT_ENDPOINT_INDEPENDENT);
    assert_int_equal(s.rep.hairpinning, -1);
    assert_int_equal(s.rep.port_allocation, NK_PORTS_PRESERVING);
    sim_free(&s);
}

static void test_udp_blocked(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sim_init(&s, 1);
    s.nat.blocked = 1;
    start_probe(&s, &cfg);
    run(&s, 60000);
    assert_int_equal(s.rep.status, NK_ERR_TIMEOUT);
    assert_int_equal(s.rep.classic, NK_CLASSIC_UDP_BLOCKED);
    assert_int_equal(s.rep.hairpinning, -1);
    assert_true(s.rep.untested & NK_NAT_TEST_MAPPING);
    /* Sent at 0, 250, 750, 1750; given up at 2750. */
    assert_int_equal(s.clock.now, 2750);
    assert_int_equal(s.sent, 6 * 4);
    sim_free(&s);
}

/* A plain RFC 5389 server: no OTHER-ADDRESS, so mapping and filtering are not guessed. */
static void test_server_without_alternate(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sim_init(&s, 1);
    s.rfc5780 = 0;
    set_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_PRESERVING, 1);
    start_probe(&s, &cfg);
    run(&s, 60000);
    assert_int_equal(s.rep.status, 0);
    assert_int_equal(s.rep.mapping, NK_NAT_UNKNOWN);
    assert_int_equal(s.rep.filtering, NK_NAT_UNKNOWN);
    assert_int_equal(s.rep.classic, NK_CLASSIC_UNKNOWN);
    assert_int_equal(s.rep.untested, NK_NAT_TEST_MAPPING | NK_NAT_TEST_FILTERING);
    assert_non_null(strstr(s.rep.note, "OTHER-ADDRESS"));
    /* what needs no alternate address still ran */
    assert_int_equal(s.rep.hairpinning, 1);
    assert_int_equal(s.rep.port_allocation, NK_PORTS_PRESERVING);
    sim_free(&s);
}

/*
 * The first copy of every request and of every response is lost: each test
 * needs its third send, and still gives the exact answer.
 */
static void test_loss_first_copies(void **state)
{
    (void)state;
    static const nk_nat_behaviour filt[] = {NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_DEPENDENT,
                                            NK_NAT_ADDRESS_AND_PORT_DEPENDENT};
    static const nk_nat_classic classic[] = {NK_CLASSIC_FULL_CONE, NK_CLASSIC_RESTRICTED_CONE,
                                             NK_CLASSIC_PORT_RESTRICTED_CONE};
    for (size_t i = 0; i < 3; i++) {
        sim s;
        nk_nat_probe_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        sim_init(&s, 1);
        set_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, filt[i], NK_PORTS_PRESERVING, 0);
        s.drop_first = 1;
        start_probe(&s, &cfg);
        run(&s, 60000);
        expect(&s, NK_NAT_ENDPOINT_INDEPENDENT, filt[i], NK_PORTS_PRESERVING, 0, classic[i]);
        assert_true(s.clock.now >= 750 + 2 * ONE_WAY_MS);
        sim_free(&s);
    }
}

/* 15% random loss (seeded) behind a symmetric NAT with sequential ports. */
static void test_random_loss_symmetric(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sim_init(&s, 1);
    set_nat(&s, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_RANDOM, 0);
    s.net.link.loss = 0.15;
    start_probe(&s, &cfg);
    run(&s, 60000);
    expect(&s, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_RANDOM, 0,
           NK_CLASSIC_SYMMETRIC);
    sim_free(&s);
}

/* Bindings live 7 s: trials after 1, 2, 3 and 5 s idle succeed, 8, 12 and 20 s fail. */
static void test_lifetime(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.lifetime = 1;
    cfg.lifetime_max_ms = 20000;
    sim_init(&s, 1);
    set_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_PRESERVING, 0);
    s.nat.lifetime_ms = 7000;
    start_probe(&s, &cfg);
    assert_int_equal(nk_nat_probe_socket_count(s.p), 6 + 7 + 1);
    run(&s, 60000);
    expect(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ADDRESS_AND_PORT_DEPENDENT, NK_PORTS_PRESERVING, 0,
           NK_CLASSIC_PORT_RESTRICTED_CONE);
    assert_int_equal(s.rep.lifetime_min_s, 5);
    assert_int_equal(s.rep.lifetime_max_s, 8);
    /* bounded: the longest wait plus one failed trial */
    assert_true(s.clock.now <= 20000 + 2 * ONE_WAY_MS + 11 * 250 + 100);
    sim_free(&s);
}

static void test_lifetime_without_response_port(void **state)
{
    (void)state;
    sim s;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.lifetime = 1;
    cfg.lifetime_max_ms = 3000;
    sim_init(&s, 1);
    s.response_port = 0;
    set_nat(&s, NK_NAT_ENDPOINT_INDEPENDENT, NK_NAT_ENDPOINT_INDEPENDENT, NK_PORTS_PRESERVING, 0);
    start_probe(&s, &cfg);
    run(&s, 60000);
    assert_int_equal(s.rep.status, 0);
    assert_int_equal(s.rep.classic, NK_CLASSIC_FULL_CONE);
    assert_int_equal(s.rep.untested, NK_NAT_TEST_LIFETIME);
    assert_non_null(strstr(s.rep.note, "RESPONSE-PORT"));
    assert_int_equal(s.rep.lifetime_min_s, -1);
    sim_free(&s);
}

static void test_transmits_name_their_socket(void **state)
{
    (void)state;
    nk_nat_probe *p;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.server = addr("192.0.2.100:3478");
    sim_rng rng = {0};
    cfg.random = sim_random;
    cfg.random_ctx = &rng;
    assert_int_equal(nk_nat_probe_new(&p, &cfg), 0);
    nk_addr locals[6];
    for (size_t i = 0; i < 6; i++)
        locals[i] = addr("10.0.0.2:0"), locals[i].port = (uint16_t)(7000 + i);
    assert_int_equal(nk_nat_probe_start(p, 0, locals, 5), NK_ERR_INVAL);
    assert_int_equal(nk_nat_probe_start(p, 0, locals, 6), 0);
    assert_int_equal(nk_nat_probe_start(p, 0, locals, 6), NK_ERR_STATE);
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(nk_nat_probe_poll_transmit(p, 0, &tx, buf, sizeof(buf)), 0);
        assert_true(nk_addr_equal(&tx.from, &locals[i]));
        assert_true(nk_addr_equal(&tx.to, &cfg.server));
    }
    assert_int_equal(nk_nat_probe_poll_transmit(p, 0, &tx, buf, sizeof(buf)), NK_ERR_AGAIN);
    assert_int_equal(nk_nat_probe_next_deadline(p), 250);
    /* junk and strangers are not ours */
    assert_int_equal(nk_nat_probe_handle_datagram(p, 1, &locals[0], &cfg.server, buf, 3), NK_ERR_NOT_FOUND);
    nk_nat_report r;
    assert_int_equal(nk_nat_probe_result(p, &r), 0);
    nk_nat_probe_free(p);
}

static void test_bad_config_and_names(void **state)
{
    (void)state;
    nk_nat_probe *p;
    nk_nat_probe_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(nk_nat_probe_new(&p, &cfg), NK_ERR_INVAL);
    cfg.server = addr("192.0.2.100:3478");
    cfg.port_samples = 2;
    assert_int_equal(nk_nat_probe_new(&p, &cfg), NK_ERR_INVAL);
    cfg.port_samples = 0;
    cfg.lifetime_max_ms = 10 * 60 * 1000 + 1;
    assert_int_equal(nk_nat_probe_new(&p, &cfg), NK_ERR_INVAL);
    assert_string_equal(nk_nat_classic_name(NK_CLASSIC_PORT_RESTRICTED_CONE), "port-restricted-cone");
    assert_string_equal(nk_nat_behaviour_name(NK_NAT_ADDRESS_AND_PORT_DEPENDENT), "address-and-port-dependent");
    assert_string_equal(nk_port_allocation_name(NK_PORTS_SEQUENTIAL), "sequential");
    assert_null(nk_nat_classic_name(NK_CLASSIC_UNKNOWN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_cone),
        cmocka_unit_test(test_restricted_cone),
        cmocka_unit_test(test_port_restricted_cone),
        cmocka_unit_test(test_symmetric_random),
        cmocka_unit_test(test_address_dependent_sequential),
        cmocka_unit_test(test_open_internet),
        cmocka_unit_test(test_udp_blocked),
        cmocka_unit_test(test_server_without_alternate),
        cmocka_unit_test(test_loss_first_copies),
        cmocka_unit_test(test_random_loss_symmetric),
        cmocka_unit_test(test_lifetime),
        cmocka_unit_test(test_lifetime_without_response_port),
        cmocka_unit_test(test_transmits_name_their_socket),
        cmocka_unit_test(test_bad_config_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
