/*
 * The TCP upgrade's socket drivers on real loopback sockets and the real clock:
 * - nk_tcp_stream on a socketpair: 3 MB both ways through the seal, shutdown ends the
 *   peer's reads, a bare EOF is truncation;
 * - nk_tcp_simopen: two on loopback make one connection; one alone is refused until its
 *   window ends; bad configurations; a port a listener holds; stale revents ignored;
 * - nk_tcp_connect_result: in progress (a full accept queue), connected, refused;
 * - nk_conn_tcp: two nk_nodes on loopback UDP upgraded to a sealed TCP stream (backpressure,
 *   8 MB and 1 MB across, both ends finished, the stream taken as an fd);
 * - the node driver's UDP port holds the same TCP port for the upgrade.
 * The exporter keys, the control exchange and the sealed stream in memory, with a fake
 * clock: tests/unit/test_tcp_upgrade.c.
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
#include "loopback.h"

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

/* Steps both drivers until each has a connection or gives up (at most 3 s of wall time). */
static void simopen_run(nk_tcp_simopen *s[2], int rc[2], int fd[2])
{
    rc[0] = rc[1] = NK_ERR_AGAIN;
    fd[0] = fd[1] = -1;
    for (int guard = 0; guard < 1000 && (rc[0] == NK_ERR_AGAIN || rc[1] == NK_ERR_AGAIN); guard++) {
        struct pollfd p[2 * NK_TCP_SIMOPEN_FDS];
        int64_t now = nk_node_driver_now(), wait = 100;
        for (int i = 0; i < 2; i++) {
            nk_tcp_simopen_pollfds(s[i], &p[i * NK_TCP_SIMOPEN_FDS]);
            int64_t d = nk_tcp_simopen_next_deadline(s[i]) - now;
            if (rc[i] == NK_ERR_AGAIN && d < wait)
                wait = d < 0 ? 0 : d;
        }
        poll(p, 2 * NK_TCP_SIMOPEN_FDS, (int)wait);
        now = nk_node_driver_now();
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
    int64_t now = nk_node_driver_now();
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
    assert_int_equal(nk_tcp_simopen_step(s[0], nk_node_driver_now(), NULL, &fd[0]), NK_ERR_STATE); /* done */
    close(fd[0]);
    close(fd[1]);
    nk_tcp_simopen_free(s[0]);
    nk_tcp_simopen_free(s[1]);

    /* nobody at the other end: refused attempts until the window is over */
    nk_tcp_simopen_config cc = {.local = a, .remote = b, .start_ms = nk_node_driver_now(), .window_ms = 400, .retry_ms = 50};
    nk_tcp_simopen *lone;
    assert_int_equal(nk_tcp_simopen_new(&lone, &cc), 0);
    int r = NK_ERR_AGAIN, f = -1;
    for (int guard = 0; guard < 200 && r == NK_ERR_AGAIN; guard++) {
        struct pollfd p[NK_TCP_SIMOPEN_FDS];
        nk_tcp_simopen_pollfds(lone, p);
        int64_t wait = nk_tcp_simopen_next_deadline(lone) - nk_node_driver_now();
        poll(p, NK_TCP_SIMOPEN_FDS, wait < 0 ? 0 : (int)wait);
        r = nk_tcp_simopen_step(lone, nk_node_driver_now(), p, &f);
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
    int64_t now = nk_node_driver_now();
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
        assert_int_equal(nk_tcp_simopen_step(s, nk_node_driver_now(), p, &fd), NK_ERR_AGAIN);
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
    assert_int_equal(nk_node_new(&s->node, &cfg, nk_node_driver_now()), 0);
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
    int64_t now = nk_node_driver_now(), wait = 50;
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
    now = nk_node_driver_now();
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
    int64_t t0 = nk_node_driver_now();
    assert_int_equal(nk_node_connect_direct(s[0].node, t0, &s[1].id.id, &s[1].addr, &s[0].conn), 0);
    assert_int_equal(nk_node_connect_direct(s[1].node, t0, &s[0].id.id, &s[0].addr, &s[1].conn), 0);
    while ((!s[0].up || !s[1].up) && !s[0].failed && !s[1].failed && nk_node_driver_now() - t0 < 10000)
        ct_turn(s);
    assert_int_equal(s[0].up, 1);
    assert_int_equal(s[1].up, 1);
    assert_int_equal(nk_conn_tcp_state(s[1].ct), NK_CONN_TCP_UP);

    /* 8 MB one way, 1 MB the other; the answerer stops reading for a while: once its seal (32 KiB),
     * its socket's receive buffer (small: nothing read, nothing grows) and our send buffer are
     * full, our writes are refused */
    size_t len[2] = {8u << 20, 1u << 20}, off[2] = {0, 0};
    uint8_t *data[2];
    sim_rng r = {7};
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
    int64_t t1 = nk_node_driver_now();
    /* the answerer sends all it has first, the requester ends once its own went (the answerer then
     * ends its direction by itself) */
    while ((s[0].ngot < len[1] || s[1].ngot < len[0] || !s[0].peer_done || !s[1].peer_done) && !s[0].failed &&
           !s[1].failed && nk_node_driver_now() - t1 < 30000) {
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
        cmocka_unit_test(test_stream_socketpair),
        cmocka_unit_test(test_simopen_loopback),
        cmocka_unit_test(test_connect_result),
        cmocka_unit_test(test_simopen_stale_revents),
        cmocka_unit_test(test_conn_tcp_loopback),
        cmocka_unit_test(test_driver_holds_tcp_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
