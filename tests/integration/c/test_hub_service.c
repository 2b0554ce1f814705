/*
 * The hub's drivers on loopback: nk_hub_service (libuv, its own thread) and
 * two peers each on an nk_hub_link + nk_hub_client, driven the way an agent's
 * poll loop would. Every wait is bounded by a deadline; nothing sleeps.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "natkit/hub.h"

typedef struct tpeer {
    nk_identity id;
    nk_hub_client *c;
    nk_hub_link *link;
    int registered, messages, closed_code;
    uint8_t last[64];
    size_t last_len;
    nk_peer_id last_from;
} tpeer;

/* async: nk_hub_link_start (the connection completes in pump) instead of the blocking open. */
static void tpeer_open(tpeer *p, const nk_addr *hub, int async)
{
    memset(p, 0, sizeof(*p));
    p->closed_code = -1;
    assert_int_equal(nk_identity_generate(&p->id), 0);
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &p->id;
    cc.hub = *hub;
    assert_int_equal(nk_hub_client_new(&p->c, &cc), 0);
    nk_addr local;
    if (async) {
        assert_int_equal(nk_hub_link_start(&p->link, hub, 0, NULL, 2000), 0);
    } else {
        assert_int_equal(nk_hub_link_open(&p->link, hub, 0, NULL, 2000, &local), 0);
        assert_int_equal(local.family, NK_AF_INET);
        assert_true(nk_hub_link_is_open(p->link));
    }
    assert_int_equal(nk_hub_client_register(p->c, nk__now_ms()), 0);
}

static void tpeer_close(tpeer *p)
{
    nk_hub_link_free(p->link);
    nk_hub_client_free(p->c);
}

static void tpeer_step(tpeer *p)
{
    if (p->link == NULL)
        return;
    if (nk_hub_link_wait(p->link, p->c, 20) != 0) {
        nk_hub_link_free(p->link);
        p->link = NULL;
    }
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    while (nk_hub_client_poll_event(p->c, &ev, buf, sizeof(buf)) == 0) {
        if (ev.type == NK_HUB_EV_REGISTERED)
            p->registered = 1;
        else if (ev.type == NK_HUB_EV_CLOSED)
            p->closed_code = ev.code;
        else if (ev.type == NK_HUB_EV_MESSAGE && ev.len <= sizeof(p->last)) {
            p->messages++;
            memcpy(p->last, buf, ev.len);
            p->last_len = ev.len;
            p->last_from = ev.peer;
        }
    }
}

static int both(tpeer *a, tpeer *b, int (*cond)(tpeer *, tpeer *))
{
    int64_t deadline = nk__now_ms() + 10000;
    while (!cond(a, b) && nk__now_ms() < deadline) {
        tpeer_step(a);
        tpeer_step(b);
    }
    return cond(a, b);
}

static int registered(tpeer *a, tpeer *b) { return a->registered && b->registered; }
static int b_has_message(tpeer *a, tpeer *b) { return b->messages > 0; }
static int a_has_rtt(tpeer *a, tpeer *b) { return nk_hub_client_rtt(a->c) >= 0 && nk_hub_client_rtt(b->c) >= 0; }
static int b_closed(tpeer *a, tpeer *b) { return b->closed_code >= 0; }

static void test_service_with_links(void **state)
{
    nk_hub_service_options o;
    nk_hub_service_options_init(&o);
    assert_int_equal(nk_addr_parse(&o.listen, "127.0.0.1:0"), 0);
    nk_hub_service *svc;
    assert_int_equal(nk_hub_service_start(&svc, &o), 0);
    nk_addr hub;
    nk_hub_service_addrs(svc, &hub, NULL);
    assert_int_equal(hub.family, NK_AF_INET);
    assert_true(hub.port != 0);

    tpeer a, b;
    tpeer_open(&a, &hub, 0);
    tpeer_open(&b, &hub, 1);
    assert_true(both(&a, &b, registered));
    assert_true(nk_hub_link_is_open(b.link));
    assert_true(both(&a, &b, a_has_rtt));

    assert_int_equal(nk_hub_client_send(a.c, nk__now_ms(), NK_HUB_T_CANDIDATE, &b.id.id,
                                        (const uint8_t *)"host 10.0.0.1:5000", 18), 0);
    assert_true(both(&a, &b, b_has_message));
    assert_int_equal(b.last_len, 18);
    assert_memory_equal(b.last, "host 10.0.0.1:5000", 18);
    assert_true(nk_peer_id_equal(&b.last_from, &a.id.id));

    nk_hub_stats_t st;
    nk_hub_service_stats(svc, &st);
    assert_int_equal(st.registered, 2);
    assert_int_equal(st.routed, 1);
    assert_true(st.pings >= 2);

    /* the hub stops: peers hear why */
    nk_hub_service_free(svc);
    assert_true(both(&a, &b, b_closed));
    assert_int_equal(b.closed_code, NK_HUB_CLOSE_SHUTDOWN);
    tpeer_close(&a);
    tpeer_close(&b);
}

static void test_link_connect_refused(void **state)
{
    /* a port nobody listens on: a port the service had, after it stopped */
    nk_hub_service_options o;
    nk_hub_service_options_init(&o);
    assert_int_equal(nk_addr_parse(&o.listen, "127.0.0.1:0"), 0);
    nk_hub_service *svc;
    assert_int_equal(nk_hub_service_start(&svc, &o), 0);
    nk_addr hub;
    nk_hub_service_addrs(svc, &hub, NULL);
    nk_hub_service_free(svc);
    nk_hub_link *l;
    assert_int_equal(nk_hub_link_open(&l, &hub, 0, NULL, 2000, NULL), NK_ERR_SYSTEM);
    tpeer p;
    tpeer_open(&p, &hub, 1);
    int64_t deadline = nk__now_ms() + 5000;
    while (p.link != NULL && nk__now_ms() < deadline)
        tpeer_step(&p);
    assert_null(p.link); /* pump reported the failure */
    assert_int_equal(nk_hub_client_state(p.c), NK_HUB_CLIENT_CLOSED);
    tpeer_close(&p);
}

static int b_closed_or_a_registered(tpeer *a, tpeer *b) { return a->registered && b->closed_code >= 0; }

static void test_service_full(void **state)
{
    nk_hub_service_options o;
    nk_hub_service_options_init(&o);
    assert_int_equal(nk_addr_parse(&o.listen, "127.0.0.1:0"), 0);
    o.server.max_conns = 1;
    nk_hub_service *svc;
    assert_int_equal(nk_hub_service_start(&svc, &o), 0);
    nk_addr hub;
    nk_hub_service_addrs(svc, &hub, NULL);
    tpeer a, b;
    tpeer_open(&a, &hub, 0);
    assert_true(both(&a, &a, registered));
    tpeer_open(&b, &hub, 0);
    assert_true(both(&a, &b, b_closed_or_a_registered));
    assert_int_equal(b.closed_code, NK_HUB_CLOSE_FULL);
    nk_hub_stats_t st;
    nk_hub_service_stats(svc, &st);
    assert_int_equal(st.rejected_full, 1);
    tpeer_close(&a);
    tpeer_close(&b);
    nk_hub_service_free(svc);
}

static void test_service_bad_options(void **state)
{
    nk_hub_service_options o;
    nk_hub_service_options_init(&o);
    nk_hub_service *svc;
    assert_int_equal(nk_hub_service_start(&svc, &o), NK_ERR_INVAL); /* nothing to listen on */
    assert_int_equal(nk_addr_parse(&o.tls_listen, "127.0.0.1:0"), 0);
    assert_int_equal(nk_hub_service_start(&svc, &o), NK_ERR_INVAL); /* TLS without a certificate */
    o.cert_file = "/nonexistent/cert.pem";
    o.key_file = "/nonexistent/key.pem";
    /* a file that cannot be read: the system's error, and the context names the file */
    int e = 0;
    assert_int_equal(nk_hub_service_start(&svc, &o), NK_ERR_SYSTEM);
    assert_string_equal(nk_error_context(&e), "read certificate /nonexistent/cert.pem");
    assert_int_equal(e, ENOENT);
    /* an address in use: NK_ERR_SYSTEM, EADDRINUSE, the address named */
    nk_hub_service_options_init(&o);
    assert_int_equal(nk_addr_parse(&o.listen, "127.0.0.1:0"), 0);
    nk_hub_service *first;
    assert_int_equal(nk_hub_service_start(&first, &o), 0);
    nk_hub_service_addrs(first, &o.listen, NULL);
    char want[NK_ADDR_STRLEN + 8], text[NK_ADDR_STRLEN];
    snprintf(want, sizeof(want), "bind %s", nk_addr_format(&o.listen, text, sizeof(text)));
    assert_int_equal(nk_hub_service_start(&svc, &o), NK_ERR_SYSTEM);
    assert_string_equal(nk_error_context(&e), want);
    assert_int_equal(e, EADDRINUSE);
    nk_hub_service_free(first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_with_links),
        cmocka_unit_test(test_link_connect_refused),
        cmocka_unit_test(test_service_full),
        cmocka_unit_test(test_service_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
