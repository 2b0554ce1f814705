/*
 * The TCP upgrade: keys from the QUIC exporter, the control exchange over a lossy
 * carrier, the sealed stream (10 MB both ways with bounded buffers, forged
 * peers refused) and the socket driver on a socketpair. All in memory, with a
 * fake clock.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <sodium.h>

#include "natkit/conn_tcp.h"
#include "natkit/node.h"
#include "natkit/node_driver.h"
#include "natkit/quic.h"
#include "natkit/tcp.h"
#include "sim.h"

typedef sim_rng rng; /* tests/sim's seeded source */

static nk_identity ida, idb, idc;

static int setup_ids(void **state)
{
    (void)state;
    return nk_identity_generate(&ida) || nk_identity_generate(&idb) || nk_identity_generate(&idc);
}

/* A QUIC connection (client ic expecting is, server is) carried to CONNECTED over a lossless
 * in-memory path; seed makes each pair's connection unique. */
typedef struct quic_pair {
    nk_quic *q[2]; /* 0: client, 1: server */
    rng r[2];
} quic_pair;

static void quic_pair_connect(quic_pair *p, const nk_identity *ic, const nk_identity *is, uint64_t seed)
{
    int64_t now = 1000;
    sim_rng_seed(&p->r[0], seed * 2 + 1);
    sim_rng_seed(&p->r[1], seed * 2 + 2);
    nk_quic_config cc = {.role = NK_QUIC_CLIENT, .identity = ic, .peer = &is->id, .random = sim_random,
                         .random_ctx = &p->r[0]};
    nk_quic_config sc = {.role = NK_QUIC_SERVER, .identity = is, .random = sim_random, .random_ctx = &p->r[1]};
    assert_int_equal(nk_quic_new(&p->q[0], &cc, now), 0);
    assert_int_equal(nk_quic_new(&p->q[1], &sc, now), 0);
    uint8_t buf[1500];
    for (int round = 0; round < 50; round++, now += 5) {
        int moved = 0, n;
        for (int i = 0; i < 2; i++)
            while ((n = nk_quic_poll_transmit(p->q[i], now, buf, sizeof(buf))) > 0)
                nk_quic_handle_datagram(p->q[1 - i], now, buf, (size_t)n), moved = 1;
        if (!moved && nk_quic_connected(p->q[0], NULL) && nk_quic_connected(p->q[1], NULL))
            break;
    }
    assert_true(nk_quic_connected(p->q[0], NULL));
    assert_true(nk_quic_connected(p->q[1], NULL));
}

static void quic_pair_free(quic_pair *p)
{
    nk_quic_free(p->q[0]);
    nk_quic_free(p->q[1]);
}

/* A seal as the upgrade makes it: the connection's exporter and the token (side 0: the client). */
static void seal_from(quic_pair *p, int side, const uint8_t token[NK_TCP_TOKEN_LEN], size_t buf_cap,
                      nk_tcpseal **out)
{
    uint8_t k[NK_TCPSEAL_EXPORT_LEN];
    assert_int_equal(nk_quic_export(p->q[side], NK_TCPSEAL_EXPORT_LABEL, token, NK_TCP_TOKEN_LEN, k, sizeof(k)), 0);
    assert_int_equal(nk_tcpseal_new_exported(out, k, side == 0, token, buf_cap), 0);
    sodium_memzero(k, sizeof(k));
}

/* Moves a's pending ciphertext into b: what b's feed returned. */
static int hand_over(nk_tcpseal *a, nk_tcpseal *b)
{
    const uint8_t *p;
    size_t n = nk_tcpseal_pending(a, &p);
    int rc = nk_tcpseal_feed(b, p, n);
    if (rc > 0)
        nk_tcpseal_consume(a, (size_t)rc);
    return rc;
}

/* The exporter input of the seal: both ends of a connection get the same bytes for a token,
 * another token or another connection other bytes; the roles split them into matching keys. */
static void test_export_key(void **state)
{
    (void)state;
    uint8_t token[NK_TCP_TOKEN_LEN] = {1}, other[NK_TCP_TOKEN_LEN] = {2};
    uint8_t ka[NK_TCPSEAL_EXPORT_LEN], kb[NK_TCPSEAL_EXPORT_LEN], kc[NK_TCPSEAL_EXPORT_LEN];
    const size_t tl = NK_TCP_TOKEN_LEN;
    nk_quic_config c = {.role = NK_QUIC_CLIENT, .identity = &ida, .peer = &idb.id};
    nk_quic *fresh;
    assert_int_equal(nk_quic_new(&fresh, &c, 0), 0);
    assert_int_equal(nk_quic_export(fresh, NK_TCPSEAL_EXPORT_LABEL, token, tl, ka, sizeof(ka)), NK_ERR_STATE);
    nk_quic_free(fresh);

    quic_pair p, p2;
    quic_pair_connect(&p, &ida, &idb, 1);
    assert_int_equal(nk_quic_export(p.q[0], NK_TCPSEAL_EXPORT_LABEL, token, tl, ka, sizeof(ka)), 0);
    assert_int_equal(nk_quic_export(p.q[1], NK_TCPSEAL_EXPORT_LABEL, token, tl, kb, sizeof(kb)), 0);
    assert_memory_equal(ka, kb, sizeof(ka));
    assert_memory_not_equal(ka, ka + 32, 32); /* one key per direction */
    assert_int_equal(nk_quic_export(p.q[1], NK_TCPSEAL_EXPORT_LABEL, other, tl, kc, sizeof(kc)), 0);
    assert_memory_not_equal(ka, kc, sizeof(ka));
    assert_int_equal(nk_quic_export(p.q[1], "natkit tcq", token, tl, kc, sizeof(kc)), 0);
    assert_memory_not_equal(ka, kc, sizeof(ka));
    quic_pair_connect(&p2, &ida, &idb, 2); /* the same peers again: another connection */
    assert_int_equal(nk_quic_export(p2.q[0], NK_TCPSEAL_EXPORT_LABEL, token, tl, kc, sizeof(kc)), 0);
    assert_memory_not_equal(ka, kc, sizeof(ka));

    /* the client's seal and the server's talk; two seals of the same role do not */
    nk_tcpseal *sc, *ss, *sc2, *none;
    assert_int_equal(nk_tcpseal_new_exported(&sc, ka, 1, token, 0), 0);
    assert_int_equal(nk_tcpseal_new_exported(&ss, kb, 0, token, 0), 0);
    assert_int_equal(nk_tcpseal_new_exported(&sc2, kb, 1, token, 0), 0);
    assert_int_equal(nk_tcpseal_new_exported(NULL, ka, 1, token, 0), NK_ERR_INVAL);
    assert_int_equal(nk_tcpseal_new_exported(&none, NULL, 1, token, 0), NK_ERR_INVAL);
    assert_int_equal(hand_over(sc, sc2), NK_ERR_AUTH);
    assert_true(hand_over(sc, ss) > 0);
    assert_true(hand_over(ss, sc) > 0);
    assert_true(nk_tcpseal_authenticated(sc) && nk_tcpseal_authenticated(ss));
    nk_tcpseal_free(sc);
    nk_tcpseal_free(ss);
    nk_tcpseal_free(sc2);
    quic_pair_free(&p);
    quic_pair_free(&p2);
}

/* ---- the control exchange over a lossy carrier ---- */

typedef struct ctl_run {
    int announced, acked, result, failed;
    int result_err;
    nk_upgrade_event ann;
} ctl_run;

static void drain_events(nk_upgrade *u, ctl_run *r)
{
    nk_upgrade_event ev;
    while (nk_upgrade_poll_event(u, &ev) == 0) {
        if (ev.type == NK_UPGRADE_EV_ANNOUNCED)
            r->announced++, r->ann = ev;
        else if (ev.type == NK_UPGRADE_EV_ACKED)
            r->acked++;
        else if (ev.type == NK_UPGRADE_EV_RESULT)
            r->result++, r->result_err = ev.err;
        else if (ev.type == NK_UPGRADE_EV_FAILED)
            r->failed++;
    }
}

/* Moves messages both ways for up to limit_ms of fake time; drop_pct of them lost, and the first
 * drop_first messages of the acceptor lost whatever. */
static int64_t ctl_pump(nk_upgrade *acc, nk_upgrade *dia, ctl_run *ra, ctl_run *rd, int64_t now, int64_t limit_ms,
                        rng *r, unsigned drop_pct, int *drop_first, int report)
{
    uint8_t buf[NK_UPGRADE_MAX_MESSAGE];
    int64_t end = now + limit_ms;
    while (now < end) {
        int n;
        while ((n = nk_upgrade_poll_message(acc, now, buf, sizeof(buf))) > 0) {
            if (*drop_first > 0) {
                (*drop_first)--;
                continue;
            }
            if (sim_rng_next(r) % 100 < drop_pct)
                continue;
            nk_upgrade_handle_message(dia, now, buf, (size_t)n);
        }
        drain_events(dia, rd);
        if (report && rd->announced == 1 && report == 1) {
            assert_int_equal(nk_upgrade_report(dia, now, 0), 0);
            report = 2;
        }
        while ((n = nk_upgrade_poll_message(dia, now, buf, sizeof(buf))) > 0) {
            if (sim_rng_next(r) % 100 < drop_pct)
                continue;
            nk_upgrade_handle_message(acc, now, buf, (size_t)n);
        }
        drain_events(acc, ra);
        int64_t d1 = nk_upgrade_next_deadline(acc), d2 = nk_upgrade_next_deadline(dia);
        int64_t next = d1 < d2 ? d1 : d2;
        if (next == INT64_MAX)
            break;
        now = next > now ? next : now + 1;
        nk_upgrade_handle_timeout(acc, now);
        nk_upgrade_handle_timeout(dia, now);
    }
    return now;
}

static void test_upgrade_lossy(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        rng r = {seed}, tok = {seed * 7};
        nk_upgrade_config ca = {.acceptor = 1, .random = sim_random, .random_ctx = &tok}, cd = {0};
        nk_upgrade *acc, *dia;
        assert_int_equal(nk_upgrade_new(&acc, &ca), 0);
        assert_int_equal(nk_upgrade_new(&dia, &cd), 0);
        nk_addr a;
        assert_int_equal(nk_addr_parse(&a, "192.0.2.50:40000"), 0);
        assert_int_equal(nk_upgrade_announce(dia, 0, &a), NK_ERR_STATE);
        assert_int_equal(nk_upgrade_announce(acc, 0, &a), 0);
        assert_int_equal(nk_upgrade_announce(acc, 0, &a), NK_ERR_STATE);
        ctl_run ra = {0}, rd = {0};
        int drop_first = 3; /* the first three copies of the announcement are lost */
        ctl_pump(acc, dia, &ra, &rd, 0, 15000, &r, 30, &drop_first, 1);
        assert_int_equal(rd.announced, 1);
        assert_true(nk_addr_equal(&rd.ann.addr, &a));
        assert_memory_equal(rd.ann.token, nk_upgrade_token(acc), NK_TCP_TOKEN_LEN);
        assert_int_equal(ra.acked, 1);
        assert_int_equal(ra.result, 1);
        assert_int_equal(ra.result_err, 0);
        assert_int_equal(ra.failed + rd.failed, 0);
        nk_upgrade_stats_t st;
        nk_upgrade_stats(acc, &st);
        assert_true(st.retransmits >= 3);
        nk_upgrade_free(acc);
        nk_upgrade_free(dia);
    }
}

/* SIMOPEN: the same reliability as ANNOUNCE, marked simultaneous; plain ANNOUNCEs are not. */
static void test_upgrade_simopen(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 30; seed++) {
        rng r = {seed}, tok = {seed * 11};
        nk_upgrade_config ca = {.acceptor = 1, .random = sim_random, .random_ctx = &tok}, cd = {0};
        nk_upgrade *req, *ans;
        assert_int_equal(nk_upgrade_new(&req, &ca), 0);
        assert_int_equal(nk_upgrade_new(&ans, &cd), 0);
        nk_addr mine = {.family = NK_AF_NONE, .port = 40001};
        assert_int_equal(nk_upgrade_simopen(ans, 0, &mine), NK_ERR_STATE); /* the answerer does not ask */
        nk_addr zero = {.family = NK_AF_NONE, .port = 0};
        assert_int_equal(nk_upgrade_simopen(req, 0, &zero), NK_ERR_INVAL);
        assert_int_equal(nk_upgrade_simopen(req, 0, &mine), 0);
        ctl_run ra = {0}, rd = {0};
        int drop_first = 2;
        ctl_pump(req, ans, &ra, &rd, 0, 15000, &r, 30, &drop_first, 1);
        assert_int_equal(rd.announced, 1);
        assert_int_equal(rd.ann.simultaneous, 1);
        assert_int_equal(rd.ann.addr.family, NK_AF_NONE);
        assert_int_equal(rd.ann.addr.port, 40001);
        assert_memory_equal(rd.ann.token, nk_upgrade_token(req), NK_TCP_TOKEN_LEN);
        assert_int_equal(ra.acked, 1);
        assert_int_equal(ra.result, 1);
        assert_int_equal(ra.result_err, 0);
        assert_int_equal(ra.failed + rd.failed, 0);
        /* a SIMOPEN sent to the asking side is not for it */
        uint8_t buf[NK_UPGRADE_MAX_MESSAGE];
        nk_upgrade *other;
        nk_upgrade_config co = {.acceptor = 1};
        assert_int_equal(nk_upgrade_new(&other, &co), 0);
        assert_int_equal(nk_upgrade_simopen(other, 0, &mine), 0);
        int n = nk_upgrade_poll_message(other, 0, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(nk_upgrade_handle_message(req, 0, buf, (size_t)n), NK_ERR_MALFORMED);
        nk_upgrade_free(other);
        nk_upgrade_free(req);
        nk_upgrade_free(ans);
    }
    /* an ANNOUNCE is not simultaneous */
    nk_upgrade_config ca = {.acceptor = 1}, cd = {0};
    nk_upgrade *acc, *dia;
    assert_int_equal(nk_upgrade_new(&acc, &ca), 0);
    assert_int_equal(nk_upgrade_new(&dia, &cd), 0);
    nk_addr a = {.family = NK_AF_NONE, .port = 5000};
    assert_int_equal(nk_upgrade_announce(acc, 0, &a), 0);
    ctl_run ra = {0}, rd = {0};
    rng r = {3};
    int drop_first = 0;
    ctl_pump(acc, dia, &ra, &rd, 0, 5000, &r, 0, &drop_first, 1);
    assert_int_equal(rd.announced, 1);
    assert_int_equal(rd.ann.simultaneous, 0);
    nk_upgrade_free(acc);
    nk_upgrade_free(dia);
}

/* ANNOUNCE on the wire: 0xA7 | type | id u32 | token[16] | the address in nk_addr_wire_put's 19 bytes. */
static void test_upgrade_announce_bytes(void **state)
{
    (void)state;
    rng tok = {5};
    nk_upgrade_config ca = {.acceptor = 1, .random = sim_random, .random_ctx = &tok}, cd = {0};
    nk_upgrade *acc, *dia;
    assert_int_equal(nk_upgrade_new(&acc, &ca), 0);
    assert_int_equal(nk_upgrade_new(&dia, &cd), 0);
    nk_addr a = {.family = NK_AF_INET, .port = 4000, .ip = {192, 0, 2, 1}};
    assert_int_equal(nk_upgrade_announce(acc, 0, &a), 0);
    uint8_t buf[NK_UPGRADE_MAX_MESSAGE], head[] = {0xA7, 1, 0, 0, 0, 1};
    uint8_t addr[] = {4, 0x0f, 0xa0, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    int n = nk_upgrade_poll_message(acc, 0, buf, sizeof(buf));
    assert_int_equal(n, 6 + NK_TCP_TOKEN_LEN + NK_ADDR_WIRE_SIZE);
    assert_memory_equal(buf, head, sizeof(head));
    assert_memory_equal(buf + 6, nk_upgrade_token(acc), NK_TCP_TOKEN_LEN);
    assert_memory_equal(buf + 6 + NK_TCP_TOKEN_LEN, addr, sizeof(addr));
    assert_int_equal(nk_upgrade_handle_message(dia, 0, buf, (size_t)n), 0);
    nk_upgrade_event ev;
    assert_int_equal(nk_upgrade_poll_event(dia, &ev), 0);
    assert_int_equal(ev.type, NK_UPGRADE_EV_ANNOUNCED);
    assert_true(nk_addr_equal(&ev.addr, &a));
    /* an unknown family, a port 0 or a short address is malformed */
    uint8_t bad[NK_UPGRADE_MAX_MESSAGE];
    const size_t at = 6 + NK_TCP_TOKEN_LEN;
    memcpy(bad, buf, (size_t)n);
    bad[5] = 2; /* a new id, so no duplicate */
    bad[at] = 5;
    assert_int_equal(nk_upgrade_handle_message(dia, 0, bad, (size_t)n), NK_ERR_MALFORMED);
    bad[at] = 4;
    bad[at + 1] = bad[at + 2] = 0;
    assert_int_equal(nk_upgrade_handle_message(dia, 0, bad, (size_t)n), NK_ERR_MALFORMED);
    assert_int_equal(nk_upgrade_handle_message(dia, 0, buf, (size_t)n - 12), NK_ERR_MALFORMED);
    nk_upgrade_free(acc);
    nk_upgrade_free(dia);
}

static void test_upgrade_timeout_and_malformed(void **state)
{
    (void)state;
    nk_upgrade_config ca = {.acceptor = 1, .timeout_ms = 3000}, cd = {0};
    nk_upgrade *acc, *dia;
    assert_int_equal(nk_upgrade_new(&acc, &ca), 0);
    assert_int_equal(nk_upgrade_new(&dia, &cd), 0);
    nk_addr a = {.family = NK_AF_NONE, .port = 5000};
    assert_int_equal(nk_upgrade_announce(acc, 0, &a), 0);
    ctl_run ra = {0}, rd = {0};
    rng r = {9};
    int drop_first = 1000; /* everything lost */
    int64_t end = ctl_pump(acc, dia, &ra, &rd, 0, 10000, &r, 0, &drop_first, 0);
    assert_int_equal(ra.failed, 1);
    assert_true(end >= 3000 && end < 3100);
    assert_int_equal(rd.announced, 0);
    /* malformed input is dropped and counted */
    const uint8_t bad[][8] = {{0xA7, 1, 0, 0, 0, 1, 0, 0}, {0xA7, 9, 0, 0, 0, 1, 0, 0}, {0x00, 1, 0, 0, 0, 1, 0, 0}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(nk_upgrade_handle_message(dia, 0, bad[i], sizeof(bad[i])), NK_ERR_MALFORMED);
    assert_int_equal(nk_upgrade_handle_message(dia, 0, bad[0], 3), NK_ERR_MALFORMED);
    /* a RESULT for an announcement never made */
    const uint8_t res[] = {0xA7, 3, 0, 0, 0, 9, 0};
    assert_int_equal(nk_upgrade_handle_message(acc, 0, res, sizeof(res)), NK_ERR_MALFORMED);
    nk_upgrade_stats_t st;
    nk_upgrade_stats(dia, &st);
    assert_int_equal(st.rx_malformed, 4);
    nk_upgrade_free(acc);
    nk_upgrade_free(dia);
}

/* ---- the sealed stream ---- */

/* Moves up to max ciphertext bytes from one seal to the other (a "socket" of limited capacity). */
static size_t wire(nk_tcpseal *from, nk_tcpseal *to, size_t max)
{
    const uint8_t *p;
    size_t n = nk_tcpseal_pending(from, &p);
    if (n > max)
        n = max;
    if (n == 0)
        return 0;
    int rc = nk_tcpseal_feed(to, p, n);
    assert_true(rc >= 0);
    nk_tcpseal_consume(from, (size_t)rc);
    return (size_t)rc;
}

typedef struct flow {
    uint8_t *data;
    size_t len, sent, recvd;
    crypto_generichash_state hin;
    int shut, closed;
} flow;

static void flow_step(nk_tcpseal *tx, nk_tcpseal *rx, flow *f, rng *r, uint8_t *tmp)
{
    if (f->sent < f->len) {
        size_t c = 1 + sim_rng_next(r) % 70000;
        if (c > f->len - f->sent)
            c = f->len - f->sent;
        int rc = nk_tcpseal_write(tx, f->data + f->sent, c);
        assert_true(rc > 0 || rc == NK_ERR_AGAIN);
        if (rc > 0)
            f->sent += (size_t)rc;
    } else if (!f->shut && nk_tcpseal_shutdown(tx) == 0) {
        f->shut = 1;
    }
    wire(tx, rx, 1 + sim_rng_next(r) % 100000);
    if (sim_rng_next(r) % 3 != 0) { /* a reader that sometimes falls behind */
        int n = nk_tcpseal_read(rx, tmp, 1 + sim_rng_next(r) % 90000);
        if (n > 0) {
            crypto_generichash_update(&f->hin, tmp, (size_t)n);
            f->recvd += (size_t)n;
        } else if (n == NK_ERR_CLOSED) {
            f->closed = 1;
        } else {
            assert_int_equal(n, NK_ERR_AGAIN);
        }
    }
}

static void test_seal_10mb_both_ways(void **state)
{
    (void)state;
    quic_pair qp;
    quic_pair_connect(&qp, &ida, &idb, 3);
    uint8_t token[NK_TCP_TOKEN_LEN];
    randombytes_buf(token, sizeof(token));
    nk_tcpseal *sa, *sb;
    seal_from(&qp, 0, token, 64 * 1024, &sa);
    seal_from(&qp, 1, token, 64 * 1024, &sb);
    flow fab = {0}, fba = {0};
    fab.len = fba.len = 10 * 1024 * 1024;
    fab.data = malloc(fab.len);
    fba.data = malloc(fba.len);
    uint8_t *tmp = malloc(90000);
    assert_non_null(fab.data);
    assert_non_null(fba.data);
    randombytes_buf(fab.data, fab.len);
    randombytes_buf(fba.data, fba.len);
    crypto_generichash_init(&fab.hin, NULL, 0, 32);
    crypto_generichash_init(&fba.hin, NULL, 0, 32);
    rng r = {42};
    int again = 0;
    for (long i = 0; i < 2000000 && !(fab.closed && fba.closed); i++) {
        flow_step(sa, sb, &fab, &r, tmp);
        flow_step(sb, sa, &fba, &r, tmp);
        again += nk_tcpseal_write(sa, tmp, 0) == 0; /* harmless */
    }
    assert_true(fab.closed && fba.closed);
    assert_int_equal(fab.recvd, fab.len);
    assert_int_equal(fba.recvd, fba.len);
    uint8_t h1[32], h2[32];
    crypto_generichash(h1, 32, fab.data, fab.len, NULL, 0);
    crypto_generichash_final(&fab.hin, h2, 32);
    assert_memory_equal(h1, h2, 32);
    crypto_generichash(h1, 32, fba.data, fba.len, NULL, 0);
    crypto_generichash_final(&fba.hin, h2, 32);
    assert_memory_equal(h1, h2, 32);
    assert_true(nk_tcpseal_authenticated(sa) && nk_tcpseal_authenticated(sb));
    assert_int_equal(nk_tcpseal_write(sa, tmp, 1), NK_ERR_STATE); /* after shutdown */
    nk_tcpseal_stats_t st;
    nk_tcpseal_stats(sb, &st);
    assert_int_equal(st.bytes_in, fab.len);
    assert_int_equal(st.auth_failed + st.malformed, 0);
    (void)again;
    free(tmp);
    free(fab.data);
    free(fba.data);
    nk_tcpseal_free(sa);
    nk_tcpseal_free(sb);
    quic_pair_free(&qp);
}

static void test_seal_backpressure(void **state)
{
    (void)state;
    uint8_t k1[32] = {1}, k2[32] = {2}, token[NK_TCP_TOKEN_LEN] = {3};
    nk_tcpseal *sa, *sb;
    assert_int_equal(nk_tcpseal_new_keys(&sa, k1, k2, token, 32 * 1024), 0);
    assert_int_equal(nk_tcpseal_new_keys(&sb, k2, k1, token, 32 * 1024), 0);
    static uint8_t big[200000];
    int taken = 0, rc;
    while ((rc = nk_tcpseal_write(sa, big, sizeof(big))) > 0)
        taken += rc;
    assert_int_equal(rc, NK_ERR_AGAIN);
    assert_true(taken > 0 && taken < 32 * 1024);
    /* the receiver takes nothing more once its plaintext buffer is full and nobody reads */
    size_t moved = 0, m;
    for (int i = 0; i < 1000; i++) {
        while ((m = wire(sa, sb, 100000)) > 0)
            moved += m;
        if (nk_tcpseal_write(sa, big, sizeof(big)) < 0)
            break;
    }
    const uint8_t *p;
    assert_true(nk_tcpseal_pending(sa, &p) > 0);
    assert_int_equal(nk_tcpseal_feed_room(sb), 0);
    nk_tcpseal_free(sa);
    nk_tcpseal_free(sb);
}

/* A TCP peer without the connection's keys (another QUIC connection, or a replay of another upgrade)
 * is refused. */
static void test_seal_forged_peer(void **state)
{
    (void)state;
    quic_pair ab, cd;
    quic_pair_connect(&ab, &ida, &idb, 4);
    quic_pair_connect(&cd, &idc, &idb, 5); /* the attacker's own connection to b's identity */
    uint8_t token[NK_TCP_TOKEN_LEN], other[NK_TCP_TOKEN_LEN];
    randombytes_buf(token, sizeof(token));
    randombytes_buf(other, sizeof(other));
    nk_tcpseal *sb, *forged;
    const uint8_t *p;
    size_t n;

    /* keys from another connection, same token */
    seal_from(&ab, 1, token, 0, &sb);
    seal_from(&cd, 0, token, 0, &forged);
    n = nk_tcpseal_pending(forged, &p);
    assert_int_equal(nk_tcpseal_feed(sb, p, n), NK_ERR_AUTH);
    assert_false(nk_tcpseal_authenticated(sb));
    uint8_t tmp[64];
    assert_int_equal(nk_tcpseal_read(sb, tmp, sizeof(tmp)), NK_ERR_AUTH);
    nk_tcpseal_stats_t st;
    nk_tcpseal_stats(sb, &st);
    assert_int_equal(st.auth_failed, 1);
    nk_tcpseal_free(sb);
    nk_tcpseal_free(forged);

    /* the right connection, another upgrade's token (a replayed connection) */
    seal_from(&ab, 1, token, 0, &sb);
    seal_from(&ab, 0, other, 0, &forged);
    n = nk_tcpseal_pending(forged, &p);
    assert_int_equal(nk_tcpseal_feed(sb, p, n), NK_ERR_AUTH);
    nk_tcpseal_free(sb);
    nk_tcpseal_free(forged);

    /* not natkit at all, and a flipped bit in a data record */
    seal_from(&ab, 1, token, 0, &sb);
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(nk_tcpseal_feed(sb, (const uint8_t *)http, strlen(http)), NK_ERR_MALFORMED);
    nk_tcpseal_free(sb);
    seal_from(&ab, 1, token, 0, &sb);
    nk_tcpseal *sa;
    seal_from(&ab, 0, token, 0, &sa);
    assert_int_equal(nk_tcpseal_write(sa, (const uint8_t *)"hello", 5), 5);
    n = nk_tcpseal_pending(sa, &p);
    uint8_t copy[256];
    assert_true(n <= sizeof(copy));
    memcpy(copy, p, n);
    copy[n - 3] ^= 1;
    assert_int_equal(nk_tcpseal_feed(sb, copy, n), NK_ERR_AUTH);
    assert_true(nk_tcpseal_authenticated(sb)); /* the token record was fine; the data was not */
    assert_int_equal(nk_tcpseal_feed(sb, copy, 1), NK_ERR_AUTH); /* sticky */
    nk_tcpseal_free(sa);
    nk_tcpseal_free(sb);
    quic_pair_free(&ab);
    quic_pair_free(&cd);
}

/* The driver on a socketpair: both ways, shutdown ends the peer's reads, a bare EOF is truncation. */
static void test_stream_socketpair(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t k1[32] = {1}, k2[32] = {2}, token[NK_TCP_TOKEN_LEN] = {3};
    nk_tcpseal *sa, *sb;
    assert_int_equal(nk_tcpseal_new_keys(&sa, k1, k2, token, 0), 0);
    assert_int_equal(nk_tcpseal_new_keys(&sb, k2, k1, token, 0), 0);
    nk_tcp_stream *a, *b;
    assert_int_equal(nk_tcp_stream_new(&a, sv[0], sa), 0);
    assert_int_equal(nk_tcp_stream_new(&b, sv[1], sb), 0);
    size_t total = 3 * 1024 * 1024, sent = 0, got = 0;
    uint8_t *data = malloc(total), buf[65536];
    assert_non_null(data);
    randombytes_buf(data, total);
    uint8_t h1[32], h2[32];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    int closed = 0, shut = 0;
    for (int i = 0; i < 100000 && !closed; i++) {
        if (sent < total) {
            int rc = nk_tcp_stream_write(a, data + sent, total - sent);
            assert_true(rc > 0 || rc == NK_ERR_AGAIN);
            if (rc > 0)
                sent += (size_t)rc;
        } else if (!shut) {
            shut = nk_tcp_stream_shutdown(a) == 0;
        }
        struct pollfd pf[2] = {{nk_tcp_stream_fd(a), nk_tcp_stream_events(a), 0},
                               {nk_tcp_stream_fd(b), nk_tcp_stream_events(b), 0}};
        assert_true(poll(pf, 2, 1000) >= 0);
        assert_int_equal(nk_tcp_stream_pump(a), 0);
        int prc = nk_tcp_stream_pump(b);
        assert_true(prc == 0);
        int n;
        while ((n = nk_tcp_stream_read(b, buf, sizeof(buf))) > 0) {
            crypto_generichash_update(&hs, buf, (size_t)n);
            got += (size_t)n;
        }
        if (n == NK_ERR_CLOSED)
            closed = 1;
        else
            assert_int_equal(n, NK_ERR_AGAIN);
    }
    assert_true(closed);
    assert_int_equal(got, total);
    crypto_generichash(h1, 32, data, total, NULL, 0);
    crypto_generichash_final(&hs, h2, 32);
    assert_memory_equal(h1, h2, 32);
    assert_true(nk_tcp_stream_flushed(a));
    /* b -> a: a few bytes and a bare close (no end-of-stream record): truncated */
    assert_int_equal(nk_tcp_stream_write(b, (const uint8_t *)"x", 1), 1);
    shutdown(nk_tcp_stream_fd(b), SHUT_WR);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        struct pollfd pf = {nk_tcp_stream_fd(a), POLLIN, 0};
        poll(&pf, 1, 1000);
        rc = nk_tcp_stream_pump(a);
        if (rc == 0 && nk_tcp_stream_read(a, buf, sizeof(buf)) == 1)
            continue;
    }
    assert_int_equal(rc, NK_ERR_TRUNCATED);
    free(data);
    nk_tcp_stream_free(a);
    nk_tcp_stream_free(b);
}

/* ---- simultaneous open on loopback (real sockets, bounded by the window) ---- */

/* A loopback port free for UDP and for TCP (the driver binds TCP to the UDP socket's port): *fd its
 * UDP socket, *hold a TCP socket bound to it (SO_REUSEADDR and SO_REUSEPORT, never listening, as the
 * driver's own sockets) for as long as the port is in use. A UDP socket's port alone is not enough:
 * its number can be the source port of another process's TCP connection (connect() takes even
 * ports of the same range), and then no TCP socket binds there. The TCP side is picked first
 * (bind to port 0 skips such ports) and held: connect() never takes a port a bound socket holds. */
static int udp_port(nk_addr *a, int *fd, int *hold)
{
    int one = 1;
    for (int tries = 0; tries < 100; tries++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sin);
        *hold = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(*hold >= 0);
        assert_int_equal(setsockopt(*hold, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
        assert_int_equal(setsockopt(*hold, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
        assert_int_equal(bind(*hold, (struct sockaddr *)&sin, sizeof(sin)), 0);
        assert_int_equal(getsockname(*hold, (struct sockaddr *)&sin, &len), 0);
        *fd = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(*fd >= 0);
        if (bind(*fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
            return nk_addr_from_sockaddr(a, (struct sockaddr *)&sin);
        assert_int_equal(errno, EADDRINUSE); /* taken for UDP: another port */
        close(*fd);
        close(*hold);
    }
    return -1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Steps both drivers until each has a connection or gives up (at most 3 s of wall time). */
static void simopen_run(nk_tcp_simopen *s[2], int rc[2], int fd[2])
{
    rc[0] = rc[1] = NK_ERR_AGAIN;
    fd[0] = fd[1] = -1;
    for (int guard = 0; guard < 1000 && (rc[0] == NK_ERR_AGAIN || rc[1] == NK_ERR_AGAIN); guard++) {
        struct pollfd p[2 * NK_TCP_SIMOPEN_FDS];
        int64_t now = mono_ms(), wait = 100;
        for (int i = 0; i < 2; i++) {
            nk_tcp_simopen_pollfds(s[i], &p[i * NK_TCP_SIMOPEN_FDS]);
            int64_t d = nk_tcp_simopen_next_deadline(s[i]) - now;
            if (rc[i] == NK_ERR_AGAIN && d < wait)
                wait = d < 0 ? 0 : d;
        }
        poll(p, 2 * NK_TCP_SIMOPEN_FDS, (int)wait);
        now = mono_ms();
        for (int i = 0; i < 2; i++)
            if (rc[i] == NK_ERR_AGAIN)
                rc[i] = nk_tcp_simopen_step(s[i], now, &p[i * NK_TCP_SIMOPEN_FDS], &fd[i]);
    }
}

static void test_simopen_loopback(void **state)
{
    (void)state;
    nk_addr a, b;
    int ua, ub, ha, hb;
    assert_int_equal(udp_port(&a, &ua, &ha), 0);
    assert_int_equal(udp_port(&b, &ub, &hb), 0);
    int64_t now = mono_ms();
    nk_tcp_simopen_config ca = {.local = a, .remote = b, .start_ms = now, .window_ms = 3000};
    nk_tcp_simopen_config cb = {.local = b, .remote = a, .start_ms = now, .window_ms = 3000};
    nk_tcp_simopen *s[2];
    assert_int_equal(nk_tcp_simopen_new(&s[0], &ca), 0);
    assert_int_equal(nk_tcp_simopen_new(&s[1], &cb), 0);
    int rc[2], fd[2];
    simopen_run(s, rc, fd);
    assert_int_equal(rc[0], 0);
    assert_int_equal(rc[1], 0);
    /* one connection: what one end writes, the other reads */
    assert_int_equal(send(fd[0], "ping", 4, 0), 4);
    struct pollfd pr = {.fd = fd[1], .events = POLLIN};
    assert_int_equal(poll(&pr, 1, 2000), 1);
    char buf[8];
    assert_int_equal(recv(fd[1], buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "ping", 4);
    nk_tcp_simopen_stats_t st;
    nk_tcp_simopen_stats(s[0], &st);
    assert_true(st.attempts >= 1);
    assert_int_equal(nk_tcp_simopen_step(s[0], mono_ms(), NULL, &fd[0]), NK_ERR_STATE); /* done */
    close(fd[0]);
    close(fd[1]);
    nk_tcp_simopen_free(s[0]);
    nk_tcp_simopen_free(s[1]);

    /* nobody at the other end: refused attempts until the window is over */
    nk_tcp_simopen_config cc = {.local = a, .remote = b, .start_ms = mono_ms(), .window_ms = 400, .retry_ms = 50};
    nk_tcp_simopen *lone;
    assert_int_equal(nk_tcp_simopen_new(&lone, &cc), 0);
    int r = NK_ERR_AGAIN, f = -1;
    for (int guard = 0; guard < 200 && r == NK_ERR_AGAIN; guard++) {
        struct pollfd p[NK_TCP_SIMOPEN_FDS];
        nk_tcp_simopen_pollfds(lone, p);
        int64_t wait = nk_tcp_simopen_next_deadline(lone) - mono_ms();
        poll(p, NK_TCP_SIMOPEN_FDS, wait < 0 ? 0 : (int)wait);
        r = nk_tcp_simopen_step(lone, mono_ms(), p, &f);
    }
    assert_int_equal(r, NK_ERR_TIMEOUT);
    nk_tcp_simopen_stats(lone, &st);
    assert_true(st.attempts >= 2);
    assert_true(st.refused >= 1);
    nk_tcp_simopen_free(lone);
    /* bad configurations */
    nk_tcp_simopen_config bad = {.local = a, .remote = b};
    bad.remote.port = 0;
    assert_int_equal(nk_tcp_simopen_new(&lone, &bad), NK_ERR_INVAL);
    /* a local port another socket holds for TCP (a listener without SO_REUSEPORT): no attempt can
     * bind there, said at once instead of a window of failed attempts */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    int taken = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(taken >= 0);
    assert_int_equal(bind(taken, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(taken, 1), 0);
    assert_int_equal(getsockname(taken, (struct sockaddr *)&sin, &sl), 0);
    nk_tcp_simopen_config busy = {.local = a, .remote = b};
    busy.local.port = ntohs(sin.sin_port);
    lone = NULL;
    assert_int_equal(nk_tcp_simopen_new(&lone, &busy), NK_ERR_ADDRESS);
    assert_null(lone);
    close(taken);
    close(ua);
    close(ha);
    close(ub);
    close(hb);
}

/* ---- nk_tcp_connect_result: in progress, connected, refused ---- */

static int tcp_socket_to(const struct sockaddr_in *to)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    int rc = connect(fd, (const struct sockaddr *)to, sizeof(*to));
    assert_true(rc == 0 || errno == EINPROGRESS);
    return fd;
}

/* A connect that stays in progress, on loopback and deterministically: the listener's accept queue
 * (backlog 0) already holds one connection nobody accepts, so the kernel drops the next SYN (and its
 * retransmissions) and that socket stays in SYN_SENT, with SO_ERROR 0 all along. */
static void test_connect_result(void **state)
{
    (void)state;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);

    int first = tcp_socket_to(&sin);
    struct pollfd pf = {.fd = first, .events = POLLOUT};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    assert_int_equal(nk_tcp_connect_result(first), 0);
    struct pollfd pl = {.fd = lfd, .events = POLLIN}; /* it sits in the accept queue: the queue is full */
    assert_int_equal(poll(&pl, 1, 5000), 1);

    int waiting = tcp_socket_to(&sin);
    pf = (struct pollfd){.fd = waiting, .events = POLLOUT};
    assert_int_equal(poll(&pf, 1, 0), 0); /* not writable: the handshake has not completed */
    int err = -1;
    len = sizeof(err);
    assert_int_equal(getsockopt(waiting, SOL_SOCKET, SO_ERROR, &err, &len), 0);
    assert_int_equal(err, 0); /* which is why SO_ERROR alone cannot tell */
    assert_int_equal(nk_tcp_connect_result(waiting), NK_ERR_AGAIN);
    assert_int_equal(nk_tcp_connect_result(waiting), NK_ERR_AGAIN);

    /* refused: a port nobody listens on (the listener's, once closed) */
    close(waiting);
    close(first);
    close(lfd);
    int refused = tcp_socket_to(&sin);
    pf = (struct pollfd){.fd = refused, .events = POLLOUT};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    assert_int_equal(nk_tcp_connect_result(refused), NK_ERR_CLOSED);
    assert_int_equal(nk_tcp_connect_result(refused), NK_ERR_CLOSED); /* its error was taken: still refused */
    close(refused);
    assert_int_equal(nk_tcp_connect_result(-1), NK_ERR_INVAL);
}

/* Revents from a poll made before the object was replaced (same fd numbers reused) are ignored. */
static void test_simopen_stale_revents(void **state)
{
    (void)state;
    nk_addr a, b;
    int ua, ub, ha, hb, fd = -1;
    assert_int_equal(udp_port(&a, &ua, &ha), 0);
    assert_int_equal(udp_port(&b, &ub, &hb), 0);
    int64_t now = mono_ms();
    nk_tcp_simopen_config c = {.local = a, .remote = b, .start_ms = now, .window_ms = 60000};
    nk_tcp_simopen *s;
    assert_int_equal(nk_tcp_simopen_new(&s, &c), 0);
    assert_int_equal(nk_tcp_simopen_step(s, now, NULL, &fd), NK_ERR_AGAIN); /* the first attempt */
    struct pollfd p[NK_TCP_SIMOPEN_FDS];
    nk_tcp_simopen_pollfds(s, p);
    assert_true(p[0].fd >= 0);
    assert_true(p[1].fd >= 0);
    /* a replacement made after that poll (as a callback run by the poll may do): its listener and
     * attempt take the lowest free fd numbers, which are the ones just closed */
    nk_tcp_simopen_free(s);
    assert_int_equal(nk_tcp_simopen_new(&s, &c), 0);
    assert_int_equal(nk_tcp_simopen_step(s, now, NULL, &fd), NK_ERR_AGAIN);
    /* the old results: the attempt (to a port with no listener: refused at once on loopback)
     * "finished" and the listener "has a connection" */
    p[0].revents = POLLOUT | POLLERR;
    p[1].revents = POLLIN;
    nk_tcp_simopen_stats_t st;
    assert_int_equal(nk_tcp_simopen_step(s, now, p, &fd), NK_ERR_AGAIN);
    nk_tcp_simopen_stats(s, &st);
    assert_int_equal(st.refused, 0); /* not taken: this object never handed those out */
    /* its own poll is taken: the refusal shows */
    for (int guard = 0; guard < 100 && st.refused == 0; guard++) {
        nk_tcp_simopen_pollfds(s, p);
        poll(p, NK_TCP_SIMOPEN_FDS, 100);
        assert_int_equal(nk_tcp_simopen_step(s, mono_ms(), p, &fd), NK_ERR_AGAIN);
        nk_tcp_simopen_stats(s, &st);
    }
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.strangers, 0);
    nk_tcp_simopen_free(s);
    close(ua);
    close(ha);
    close(ub);
    close(hb);
}

/* ---- nk_conn_tcp: two nodes on loopback UDP, upgraded to a sealed TCP stream ---- */

typedef struct ct_side {
    int udp, tcp_hold; /* udp_port's */
    nk_addr addr;
    nk_identity id;
    nk_node *node;
    nk_conn *conn;
    nk_conn_tcp *ct;
    int requester, connected, up, failed, peer_done;
    uint8_t *got;
    size_t ngot, cap_got;
    int reading;              /* 0: the reader stalls (backpressure) */
    int write_again;          /* a write said NK_ERR_AGAIN */
} ct_side;

static void ct_side_open(ct_side *s, int requester)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(udp_port(&s->addr, &s->udp, &s->tcp_hold), 0);
    assert_int_equal(nk_identity_generate(&s->id), 0);
    nk_node_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.identity = &s->id;
    cfg.host[0] = s->addr;
    cfg.nhost = 1;
    assert_int_equal(nk_node_new(&s->node, &cfg, mono_ms()), 0);
    s->requester = requester;
    s->reading = 1;
}

static void ct_side_close(ct_side *s)
{
    nk_conn_tcp_free(s->ct);
    nk_node_free(s->node);
    nk_identity_wipe(&s->id);
    close(s->udp);
    close(s->tcp_hold);
    free(s->got);
}

static void ct_on_node_event(ct_side *s, const nk_node_event *ev, int64_t now)
{
    uint8_t buf[2048];
    int n;
    if (ev->type == NK_NODE_EV_CONNECTED) {
        s->connected = 1;
        nk_conn_tcp_config cc = {.conn = ev->conn, .requester = s->requester, .udp_local = s->addr,
                                 .buf_cap = 32768};
        assert_int_equal(nk_conn_tcp_new(&s->ct, &cc), 0);
        nk_conn_tcp_handle_path(s->ct, now);
    } else if (ev->type == NK_NODE_EV_READABLE) {
        while ((n = nk_conn_recv(ev->conn, buf, sizeof(buf))) >= 0)
            assert_int_equal(s->ct != NULL && nk_conn_tcp_handle_message(s->ct, now, buf, (size_t)n), 1);
    }
}

static void ct_pump_node(ct_side *s, int64_t now)
{
    uint8_t buf[2048];
    nk_transmit tx;
    nk_node_event ev;
    struct sockaddr_storage ss;
    socklen_t sl;
    ssize_t r;
    while ((sl = sizeof(ss), r = recvfrom(s->udp, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&ss, &sl)) > 0) {
        nk_addr from;
        nk_addr_from_sockaddr(&from, (struct sockaddr *)&ss);
        nk_node_handle_datagram(s->node, now, &from, buf, (size_t)r);
    }
    if (nk_node_next_deadline(s->node) <= now)
        nk_node_handle_timeout(s->node, now);
    while (nk_node_poll_transmit(s->node, now, &tx, buf, sizeof(buf)) == 0) {
        unsigned tl;
        nk_addr_to_sockaddr(&tx.to, (struct sockaddr *)&ss, &tl);
        sendto(s->udp, buf, tx.len, 0, (struct sockaddr *)&ss, tl);
    }
    while (nk_node_poll_event(s->node, &ev) == 0)
        ct_on_node_event(s, &ev, now);
}

static void ct_events(ct_side *s)
{
    nk_conn_tcp_event ev;
    while (nk_conn_tcp_poll_event(s->ct, &ev) == 0) {
        if (ev.type == NK_CONN_TCP_EV_UP) {
            s->up = 1;
            assert_true(ev.attempts >= 1 || ev.via_listener);
            assert_int_equal(ev.port, s->addr.port);
        }
        s->failed |= ev.type == NK_CONN_TCP_EV_FAILED || ev.type == NK_CONN_TCP_EV_STREAM_ERROR;
        s->peer_done |= ev.type == NK_CONN_TCP_EV_PEER_DONE;
    }
}

static void ct_read(ct_side *s)
{
    int n;
    if (!s->reading || nk_conn_tcp_state(s->ct) != NK_CONN_TCP_UP)
        return;
    for (;;) {
        if (s->ngot == s->cap_got) {
            s->cap_got = s->cap_got ? 2 * s->cap_got : 65536;
            s->got = realloc(s->got, s->cap_got);
            assert_non_null(s->got);
        }
        if ((n = nk_conn_tcp_read(s->ct, s->got + s->ngot, s->cap_got - s->ngot)) <= 0)
            break;
        s->ngot += (size_t)n;
    }
    assert_true(n == NK_ERR_AGAIN || n == NK_ERR_CLOSED);
}

/* Writes what the stream takes of data[*off..len). */
static void ct_write(ct_side *s, const uint8_t *data, size_t len, size_t *off)
{
    int n;
    while (*off < len && (n = nk_conn_tcp_write(s->ct, data + *off, len - *off)) != NK_ERR_AGAIN) {
        assert_true(n > 0);
        *off += (size_t)n;
    }
    s->write_again |= *off < len;
}

/* One turn: poll both UDP sockets and both upgrades' fds (at most 50 ms), then serve everything. */
static void ct_turn(ct_side s[2])
{
    struct pollfd p[2 + 2 * NK_CONN_TCP_FDS];
    int64_t now = mono_ms(), wait = 50;
    for (int i = 0; i < 2; i++) {
        p[i] = (struct pollfd){.fd = s[i].udp, .events = POLLIN};
        int64_t d = nk_node_next_deadline(s[i].node) - now;
        if (s[i].ct != NULL) {
            nk_conn_tcp_pollfds(s[i].ct, &p[2 + i * NK_CONN_TCP_FDS]);
            int64_t dt = nk_conn_tcp_next_deadline(s[i].ct) - now;
            d = dt < d ? dt : d;
        } else {
            p[2 + i * NK_CONN_TCP_FDS] = p[3 + i * NK_CONN_TCP_FDS] = (struct pollfd){.fd = -1};
        }
        if (d < wait)
            wait = d < 0 ? 0 : d;
    }
    poll(p, 2 + 2 * NK_CONN_TCP_FDS, (int)wait);
    now = mono_ms();
    for (int i = 0; i < 2; i++) {
        ct_pump_node(&s[i], now);
        if (s[i].ct == NULL)
            continue;
        nk_conn_tcp_service(s[i].ct, now, &p[2 + i * NK_CONN_TCP_FDS]);
        ct_read(&s[i]);
        ct_events(&s[i]);
        ct_pump_node(&s[i], now); /* control messages out */
    }
}

static void test_conn_tcp_loopback(void **state)
{
    (void)state;
    ct_side s[2];
    ct_side_open(&s[0], 1);
    ct_side_open(&s[1], 0);
    int64_t t0 = mono_ms();
    assert_int_equal(nk_node_connect_direct(s[0].node, t0, &s[1].id.id, &s[1].addr, &s[0].conn), 0);
    assert_int_equal(nk_node_connect_direct(s[1].node, t0, &s[0].id.id, &s[0].addr, &s[1].conn), 0);
    while ((!s[0].up || !s[1].up) && !s[0].failed && !s[1].failed && mono_ms() - t0 < 10000)
        ct_turn(s);
    assert_int_equal(s[0].up, 1);
    assert_int_equal(s[1].up, 1);
    assert_int_equal(nk_conn_tcp_state(s[1].ct), NK_CONN_TCP_UP);

    /* 8 MB one way, 1 MB the other; the answerer stops reading for a while: once its seal (32 KiB),
     * its socket's receive buffer (small: nothing read, nothing grows) and our send buffer are
     * full, our writes are refused */
    size_t len[2] = {8u << 20, 1u << 20}, off[2] = {0, 0};
    uint8_t *data[2];
    rng r = {7};
    for (int i = 0; i < 2; i++) {
        data[i] = malloc(len[i]);
        assert_non_null(data[i]);
        sim_random(&r, data[i], len[i]);
    }
    s[1].reading = 0;
    int stalled = 0;
    for (int guard = 0; guard < 2000 && stalled < 5; guard++) {
        s[0].write_again = 0;
        ct_write(&s[0], data[0], len[0], &off[0]);
        ct_turn(s);
        stalled = s[0].write_again ? stalled + 1 : 0;
    }
    assert_int_equal(stalled, 5); /* backpressure: the writer stays refused while the reader stalls */
    assert_true(off[0] < len[0]);
    s[1].reading = 1;
    int64_t t1 = mono_ms();
    /* the answerer sends all it has first, the requester ends once its own went (the answerer then
     * ends its direction by itself) */
    while ((s[0].ngot < len[1] || s[1].ngot < len[0] || !s[0].peer_done || !s[1].peer_done) && !s[0].failed &&
           !s[1].failed && mono_ms() - t1 < 30000) {
        if (!s[1].peer_done)
            ct_write(&s[1], data[1], len[1], &off[1]);
        ct_write(&s[0], data[0], len[0], &off[0]);
        if (off[0] == len[0] && s[0].ngot == len[1])
            nk_conn_tcp_shutdown(s[0].ct);
        ct_turn(s);
    }
    assert_int_equal(s[0].failed, 0);
    assert_int_equal(s[1].failed, 0);
    assert_int_equal(s[1].ngot, len[0]);
    assert_memory_equal(s[1].got, data[0], len[0]);
    assert_int_equal(s[0].ngot, len[1]);
    assert_memory_equal(s[0].got, data[1], len[1]);
    assert_int_equal(s[0].peer_done, 1);
    assert_int_equal(s[1].peer_done, 1);
    for (int guard = 0; guard < 100 && !(nk_conn_tcp_finished(s[0].ct) && nk_conn_tcp_finished(s[1].ct)); guard++)
        ct_turn(s);
    assert_int_equal(nk_conn_tcp_finished(s[0].ct), 1);
    assert_int_equal(nk_conn_tcp_finished(s[1].ct), 1);
    assert_int_equal(nk_conn_tcp_write(s[0].ct, data[0], 1), NK_ERR_STATE); /* our direction ended */

    /* the stream can be taken as a file descriptor */
    nk_tcp_stream *ts;
    assert_int_equal(nk_conn_tcp_take_stream(s[1].ct, &ts), 0);
    assert_true(nk_tcp_stream_fd(ts) >= 0);
    assert_int_equal(nk_conn_tcp_take_stream(s[1].ct, &ts), NK_ERR_STATE);
    assert_int_equal(nk_conn_tcp_read(s[1].ct, data[0], 1), NK_ERR_STATE);
    nk_tcp_stream_free(ts);
    free(data[0]);
    free(data[1]);
    ct_side_close(&s[0]);
    ct_side_close(&s[1]);
}

/* The node driver's UDP port (bound to port 0) is free for the TCP upgrade and held for it: a
 * plain TCP bind there (as connect() picking a source port would) is refused, the upgrade's
 * sockets (SO_REUSEADDR and SO_REUSEPORT) bind and listen. For a [::]:0 (both families) socket
 * and an IPv4 one. */
static void test_driver_holds_tcp_port(void **state)
{
    (void)state;
    const char *binds[] = {"[::]:0", "127.0.0.1:0"};
    for (size_t i = 0; i < 2; i++) {
        nk_identity id;
        assert_int_equal(nk_identity_generate(&id), 0);
        nk_node_driver_options o;
        memset(&o, 0, sizeof(o));
        o.node.identity = &id;
        assert_int_equal(nk_addr_parse(&o.bind, binds[i]), 0);
        nk_node_driver *d;
        assert_int_equal(nk_node_driver_open(&d, &o), 0);
        nk_addr local;
        nk_node_driver_local(d, &local);
        assert_true(local.port != 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons(local.port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int plain = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(plain >= 0);
        assert_int_equal(bind(plain, (struct sockaddr *)&sin, sizeof(sin)), -1);
        assert_int_equal(errno, EADDRINUSE);
        close(plain);
        nk_addr v4 = {.family = NK_AF_INET, .port = local.port, .ip = {127, 0, 0, 1}};
        int lfd;
        assert_int_equal(nk_tcp_listen_from(&v4, &lfd), 0);
        close(lfd);
        nk_node_driver_free(d);
        nk_identity_wipe(&id);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_key),
        cmocka_unit_test(test_upgrade_lossy),
        cmocka_unit_test(test_upgrade_simopen),
        cmocka_unit_test(test_upgrade_announce_bytes),
        cmocka_unit_test(test_upgrade_timeout_and_malformed),
        cmocka_unit_test(test_seal_10mb_both_ways),
        cmocka_unit_test(test_seal_backpressure),
        cmocka_unit_test(test_seal_forged_peer),
        cmocka_unit_test(test_stream_socketpair),
        cmocka_unit_test(test_simopen_loopback),
        cmocka_unit_test(test_connect_result),
        cmocka_unit_test(test_simopen_stale_revents),
        cmocka_unit_test(test_conn_tcp_loopback),
        cmocka_unit_test(test_driver_holds_tcp_port),
    };
    return cmocka_run_group_tests(tests, setup_ids, NULL);
}
