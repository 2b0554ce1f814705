/*
 * natkit CLI, `accept` / `dial`: the TCP side of the upgrade.
 *
 *   accept  listener (--tcp-port or any) announced with nk_upgrade; every accepted
 *           connection is a candidate with its own nk_tcpseal and CAND_AUTH_MS to
 *           authenticate; when the slots are full the oldest candidate makes room; the
 *           first that authenticates is the stream; listener and the rest are closed then,
 *           and on a fall back to UDP
 *   dial    one non-blocking connect to the announced address, TCP_CONNECT_MS for it and
 *           the acceptor's token record; RESULT reports the outcome (NK_ERR_DENIED: we
 *           run --udp-only)
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "direct_internal.h"

#define say direct_say

/* A seal keyed from the QUIC connection's exporter and the announcement's token (the dialer is
 * the QUIC client). */
static int new_seal(dstate *st, nk_tcpseal **out)
{
    uint8_t k[NK_TCPSEAL_EXPORT_LEN];
    int rc = nk_quic_export(st->q, NK_TCPSEAL_EXPORT_LABEL, st->token, NK_TCP_TOKEN_LEN, k, sizeof(k));
    if (rc == 0)
        rc = nk_tcpseal_new_exported(out, k, !st->o->acceptor, st->token, 0);
    sodium_memzero(k, sizeof(k));
    return rc;
}

/* ---- the acceptor's side ---- */

static int open_listener(dstate *st, uint16_t *port)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(st->o->tcp_port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

void direct_start_announce(dstate *st, int64_t now)
{
    uint16_t port;
    st->lfd = open_listener(st, &port);
    if (st->lfd < 0) {
        say(st, "cannot listen on TCP: %s; staying on UDP", strerror(errno));
        direct_go_udp(st, now);
        return;
    }
    nk_addr a = st->o->advertise;
    a.port = port;
    nk_upgrade_announce(st->u, now, &a);
    memcpy(st->token, nk_upgrade_token(st->u), NK_TCP_TOKEN_LEN);
    say(st, "TCP listening on port %u; announcing it over UDP", port);
}

static void drop_cand(dstate *st, cand *c, const char *why)
{
    char f[NK_ADDR_STRLEN];
    if (why != NULL)
        say(st, "refused a TCP connection from %s: %s", nk_addr_format(&c->from, f, sizeof(f)), why);
    nk_tcp_stream_free(c->ts);
    c->ts = NULL;
}

/* A free slot, else the oldest candidate's (it has had the longest to authenticate). */
static cand *cand_slot(dstate *st)
{
    cand *oldest = NULL;
    for (int i = 0; i < MAX_CAND; i++) {
        if (st->cands[i].ts == NULL)
            return &st->cands[i];
        if (oldest == NULL || st->cands[i].deadline < oldest->deadline)
            oldest = &st->cands[i];
    }
    drop_cand(st, oldest, "not authenticated, and the slots are full (a newer connection takes its place)");
    return oldest;
}

void direct_accept_one(dstate *st, int64_t now)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    nk_tcpseal *t;
    int fd = accept4(st->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (new_seal(st, &t) != 0) {
        close(fd);
        return;
    }
    cand *c = cand_slot(st);
    if (nk_tcp_stream_new(&c->ts, fd, t) != 0) {
        nk_tcpseal_free(t);
        close(fd);
        return;
    }
    nk_addr_from_sockaddr(&c->from, (struct sockaddr *)&ss);
    c->deadline = now + CAND_AUTH_MS;
}

/* The dialer had the announcement: its ACK, its RESULT or its authenticated TCP connection says so,
 * whichever comes first (over a lossy path the stream can be up, and even done, before the ACK). */
static void say_announcement_arrived(dstate *st)
{
    nk_upgrade_stats_t us;
    if (st->annc_said)
        return;
    st->annc_said = 1;
    nk_upgrade_stats(st->u, &us);
    unsigned long long n = (unsigned long long)us.retransmits + 1;
    say(st, "the dialer has the announcement after %llu send%s", n, n == 1 ? "" : "s");
}

static void tcp_is_up(dstate *st, const nk_addr *remote, int64_t now)
{
    char r[NK_ADDR_STRLEN];
    nk_addr_format(remote, r, sizeof(r));
    st->tcp_up = 1;
    st->data_ms = now;
    say(st, "TCP stream with %s is up (sealed with keys from the QUIC session; peer authenticated)", r);
}

/* Listener and candidates (accept) or the connect in progress (dial): closed once the stream is
 * chosen or the data goes over UDP. */
void direct_close_tcp_setup(dstate *st)
{
    for (int i = 0; i < MAX_CAND; i++)
        drop_cand(st, &st->cands[i], NULL);
    if (st->lfd >= 0)
        close(st->lfd);
    st->lfd = -1;
    if (st->cfd >= 0)
        close(st->cfd);
    st->cfd = -1;
    if (!st->tcp_up) {
        nk_tcp_stream_free(st->ts);
        st->ts = NULL;
    }
}

/* The first candidate that authenticates wins. */
void direct_check_cands(dstate *st, int64_t now)
{
    for (int i = 0; i < MAX_CAND && !st->tcp_up; i++) {
        cand *c = &st->cands[i];
        if (c->ts == NULL)
            continue;
        int rc = nk_tcp_stream_pump(c->ts);
        if (rc != 0) {
            drop_cand(st, c, nk_strerror(rc));
        } else if (nk_tcpseal_authenticated(nk_tcp_stream_seal(c->ts))) {
            st->ts = c->ts;
            c->ts = NULL;
            say_announcement_arrived(st);
            tcp_is_up(st, &c->from, now);
            direct_close_tcp_setup(st);
        } else if (now >= c->deadline) {
            drop_cand(st, c, "not authenticated within 5 s");
        }
    }
}

/* ---- the dialer's side ---- */

static void dial_failed(dstate *st, int err, int64_t now)
{
    say(st, "TCP to the announced port failed (%s): staying on the UDP session", nk_strerror(err));
    nk_upgrade_report(st->u, now, err);
    direct_go_udp(st, now);
}

static void on_announced(dstate *st, const nk_upgrade_event *ev, int64_t now)
{
    struct sockaddr_storage ss;
    unsigned sl;
    char t[NK_ADDR_STRLEN];
    if (st->announced)
        return;
    st->announced = 1;
    if (st->udp_fallback) { /* --udp-only, or we stopped waiting: say so, the acceptor follows */
        say(st, "the acceptor announced TCP; declining: %s",
            st->o->no_tcp ? "--udp-only" : "the data already goes over the UDP session");
        nk_upgrade_report(st->u, now, NK_ERR_DENIED);
        return;
    }
    st->tcp_target = ev->addr;
    if (ev->addr.family == NK_AF_NONE) {
        st->tcp_target = st->peer_addr;
        st->tcp_target.port = ev->addr.port;
    }
    memcpy(st->token, ev->token, NK_TCP_TOKEN_LEN);
    say(st, "the acceptor announced TCP %s; connecting", nk_addr_format(&st->tcp_target, t, sizeof(t)));
    if (nk_addr_to_sockaddr(&st->tcp_target, (struct sockaddr *)&ss, &sl) != 0) {
        dial_failed(st, NK_ERR_ADDRESS, now);
        return;
    }
    st->cfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (st->cfd < 0 || (connect(st->cfd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS)) {
        dial_failed(st, NK_ERR_SYSTEM, now);
        return;
    }
    st->cfd_deadline = now + TCP_CONNECT_MS;
}

/* The connect finished: wrap the socket in a stream (0), or fail (< 0). */
static int dial_connected(dstate *st)
{
    int err = 0;
    socklen_t el = sizeof(err);
    nk_tcpseal *t;
    getsockopt(st->cfd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0 || new_seal(st, &t) != 0)
        return NK_ERR_SYSTEM;
    if (nk_tcp_stream_new(&st->ts, st->cfd, t) != 0) {
        nk_tcpseal_free(t);
        return NK_ERR_SYSTEM;
    }
    st->cfd = -1;
    return 0;
}

void direct_dial_progress(dstate *st, int64_t now)
{
    if (st->cfd >= 0) {
        struct pollfd pf = {st->cfd, POLLOUT, 0};
        if (poll(&pf, 1, 0) == 1 && dial_connected(st) != 0) {
            dial_failed(st, NK_ERR_SYSTEM, now);
            return;
        }
    }
    if (st->cfd >= 0 && now > st->cfd_deadline) {
        dial_failed(st, NK_ERR_TIMEOUT, now);
        return;
    }
    if (st->ts == NULL || st->tcp_up)
        return;
    int rc = nk_tcp_stream_pump(st->ts);
    if (rc != 0)
        dial_failed(st, rc, now);
    else if (nk_tcpseal_authenticated(nk_tcp_stream_seal(st->ts))) {
        tcp_is_up(st, &st->tcp_target, now);
        nk_upgrade_report(st->u, now, 0);
    } else if (now > st->cfd_deadline)
        dial_failed(st, NK_ERR_TIMEOUT, now);
}

/* ---- upgrade events ---- */

static void on_result(dstate *st, int err, int64_t now)
{
    say_announcement_arrived(st);
    if (err == 0)
        return;
    if (err == NK_ERR_DENIED)
        say(st, "the dialer declined TCP (it runs --udp-only or stopped waiting)%s",
            st->udp_fallback ? "" : ": staying on the UDP session");
    else
        say(st, "the dialer could not connect over TCP (%s)%s", nk_strerror(err),
            st->udp_fallback ? "" : ": staying on the UDP session");
    if (!st->tcp_up)
        direct_go_udp(st, now);
}

void direct_on_upgrade_event(dstate *st, const nk_upgrade_event *ev, int64_t now)
{
    switch (ev->type) {
    case NK_UPGRADE_EV_ANNOUNCED:
        on_announced(st, ev, now);
        break;
    case NK_UPGRADE_EV_ACKED:
        say_announcement_arrived(st);
        break;
    case NK_UPGRADE_EV_RESULT:
        on_result(st, ev->err, now);
        break;
    case NK_UPGRADE_EV_FAILED:
        if (!st->tcp_up && !st->udp_fallback) {
            say(st, "the TCP announcement was never acknowledged: staying on the UDP session");
            direct_go_udp(st, now);
        }
        break;
    }
}

/* The earliest TCP timer (candidates, connect), no later than d. */
int64_t direct_tcp_deadline(const dstate *st, int64_t d)
{
    for (int i = 0; i < MAX_CAND; i++)
        if (st->cands[i].ts != NULL && st->cands[i].deadline < d)
            d = st->cands[i].deadline;
    if ((st->cfd >= 0 || (st->ts != NULL && !st->tcp_up)) && st->cfd_deadline < d)
        d = st->cfd_deadline;
    return d;
}
