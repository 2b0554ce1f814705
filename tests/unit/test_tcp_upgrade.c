/*
 * The TCP upgrade: keys from the QUIC exporter, the control exchange over a lossy
 * carrier, the sealed stream (10 MB both ways with bounded buffers, forged
 * peers refused). All in memory, with a fake clock. The socket drivers (nk_tcp_stream
 * on a socketpair, nk_tcp_simopen, nk_tcp_connect_result, nk_conn_tcp, the node driver's
 * held TCP port) on real loopback sockets: tests/integration/c/test_tcp_upgrade_loopback.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

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
    };
    return cmocka_run_group_tests(tests, setup_ids, NULL);
}
