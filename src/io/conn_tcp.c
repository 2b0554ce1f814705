/*
 * natkit: TCP simultaneous open over an established connection (see
 * include/natkit/conn_tcp.h and docs/internals/tcp-simopen.md).
 *
 *   requester  on a direct path: SIMOPEN (nk_upgrade, resent until ACKed)
 *   answerer   SIMOPEN: ACK, connects at once + half the path RTT
 *   requester  ACK: connects at once
 *   both       nk_tcp_simopen: connect from the UDP socket's port to the
 *              address the peer's UDP packets come from, again after a refusal,
 *              for window_ms; then seal the stream with keys from the connection's
 *              QUIC exporter (nk_conn_export)
 *   answerer   RESULT (0, or why not), resent until ACKed
 *
 * A driver: it owns the TCP sockets, takes the time as an argument, and reports
 * through events; it never prints, reads a clock or blocks.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natkit/conn_tcp.h"
#include "ring.h"

#define DEFAULT_WINDOW_MS 5000
#define MAX_EVENTS        16

struct nk_conn_tcp {
    nk_conn_tcp_config cfg;
    nk_upgrade *u;
    int state;
    nk_tcp_simopen *so;      /* the attempts, once started */
    int await_path;          /* asked while our side has not chosen the direct path yet */
    int64_t await_until;
    nk_addr remote;
    nk_addr local;           /* the TCP side of the UDP socket toward remote (its family) */
    int64_t started_ms;
    nk_tcp_stream *ts;       /* NULL before UP, and once handed to the caller (take_stream) */
    uint8_t token[NK_TCP_TOKEN_LEN];
    int want_shut, shut, peer_done, reported;
    nk_conn_tcp_event ev_slots[MAX_EVENTS];
    nk__ring events;         /* over ev_slots */
};

static void emit(nk_conn_tcp *t, const nk_conn_tcp_event *ev)
{
    /* Full: the new event is dropped. The caller drains after every call; a full queue means it does not. */
    (void)nk__ring_push(&t->events, ev);
}

int nk_conn_tcp_poll_event(nk_conn_tcp *t, nk_conn_tcp_event *ev)
{
    if (t == NULL || ev == NULL)
        return NK_ERR_AGAIN;
    return nk__ring_pop(&t->events, ev);
}

int nk_conn_tcp_new(nk_conn_tcp **out, const nk_conn_tcp_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->conn == NULL || cfg->udp_local.port == 0 || cfg->window_ms < 0)
        return NK_ERR_INVAL;
    nk_conn_tcp *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NK_ERR_NOMEM;
    t->cfg = *cfg;
    nk__ring_init(&t->events, t->ev_slots, sizeof(t->ev_slots[0]), MAX_EVENTS);
    if (t->cfg.window_ms == 0)
        t->cfg.window_ms = DEFAULT_WINDOW_MS;
    nk_upgrade_config uc;
    memset(&uc, 0, sizeof(uc));
    uc.acceptor = cfg->requester; /* the side that announces */
    int rc = nk_upgrade_new(&t->u, &uc);
    if (rc != 0) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void nk_conn_tcp_free(nk_conn_tcp *t)
{
    if (t == NULL)
        return;
    nk_tcp_simopen_free(t->so);
    nk_tcp_stream_free(t->ts);
    nk_upgrade_free(t->u);
    free(t);
}

int nk_conn_tcp_state(const nk_conn_tcp *t)
{
    return t->state;
}

static void stop_attempts(nk_conn_tcp *t)
{
    nk_tcp_simopen_free(t->so);
    t->so = NULL;
    t->await_path = 0;
}

static unsigned attempts(const nk_conn_tcp *t)
{
    nk_tcp_simopen_stats_t st = {0};
    if (t->so != NULL)
        nk_tcp_simopen_stats(t->so, &st);
    return st.attempts;
}

static void fail(nk_conn_tcp *t, int64_t now, const char *why)
{
    if (t->state == NK_CONN_TCP_FAILED || t->state == NK_CONN_TCP_UP)
        return;
    nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_FAILED, .reason = why, .attempts = attempts(t)};
    stop_attempts(t);
    t->state = NK_CONN_TCP_FAILED;
    emit(t, &ev);
    if (!t->cfg.requester && !t->reported) {
        nk_upgrade_report(t->u, now, NK_ERR_TIMEOUT);
        t->reported = 1;
    }
}

/* Where the peer's UDP packets come from: its NAT's mapping, which a port-preserving NAT gives
 * its TCP port too. NULL, or the reason there is none. */
static const char *target(nk_conn_tcp *t)
{
    nk_path_info pi;
    nk_conn_path(t->cfg.conn, &pi);
    if (pi.kind != NK_PATH_DIRECT)
        return "no direct UDP path";
    static const uint8_t any[16];
    t->local = t->cfg.udp_local;
    if (pi.remote.family == NK_AF_INET && t->local.family == NK_AF_INET6 && memcmp(t->local.ip, any, 16) == 0) {
        memset(&t->local, 0, sizeof(t->local)); /* a dual-stack [::]:P socket: its IPv4 side, 0.0.0.0:P */
        t->local.family = NK_AF_INET;
        t->local.port = t->cfg.udp_local.port;
    }
    if (pi.remote.family != t->local.family)
        return "the path's address family differs from the socket's";
    t->remote = pi.remote;
    return NULL;
}

void nk_conn_tcp_handle_path(nk_conn_tcp *t, int64_t now)
{
    if (!t->cfg.requester || t->state != NK_CONN_TCP_IDLE)
        return;
    nk_path_info pi;
    nk_conn_path(t->cfg.conn, &pi);
    if (pi.kind != NK_PATH_DIRECT) {
        nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_WAITING, .path = pi.kind};
        emit(t, &ev);
        return;
    }
    nk_addr mine = {.family = NK_AF_NONE, .port = t->cfg.udp_local.port};
    if (nk_upgrade_simopen(t->u, now, &mine) != 0)
        return;
    memcpy(t->token, nk_upgrade_token(t->u), NK_TCP_TOKEN_LEN);
    t->state = NK_CONN_TCP_BUSY;
    t->started_ms = now;
    nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_ASKING, .port = mine.port};
    emit(t, &ev);
}

static void start(nk_conn_tcp *t, int64_t now, int64_t delay)
{
    const char *why = target(t);
    if (why != NULL) {
        fail(t, now, why);
        return;
    }
    nk_tcp_simopen_config sc;
    memset(&sc, 0, sizeof(sc));
    sc.local = t->local;
    sc.remote = t->remote;
    sc.start_ms = now + delay;
    sc.window_ms = t->cfg.window_ms;
    int rc = nk_tcp_simopen_new(&t->so, &sc);
    if (rc == NK_ERR_ADDRESS)
        fail(t, now, "the UDP socket's port is taken for TCP on this host");
    else if (rc != 0)
        fail(t, now, "no sockets");
}

static void on_announced(nk_conn_tcp *t, int64_t now, const nk_upgrade_event *uev)
{
    if (!uev->simultaneous || t->state == NK_CONN_TCP_UP || t->cfg.decline) {
        /* one stream per connection; no listener here; or not wanted at all (decline) */
        nk_upgrade_report(t->u, now, NK_ERR_UNSUPPORTED);
        return;
    }
    memcpy(t->token, uev->token, NK_TCP_TOKEN_LEN);
    stop_attempts(t);
    t->state = NK_CONN_TCP_BUSY;
    t->started_ms = now;
    t->reported = 0;
    nk_path_info pi;
    nk_conn_path(t->cfg.conn, &pi);
    nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_CONNECTING};
    if (pi.kind != NK_PATH_DIRECT) {
        /* the asking side chose the direct path; ours follows within a round trip or so */
        t->await_path = 1;
        t->await_until = now + t->cfg.window_ms;
        ev.await_path = 1;
        emit(t, &ev);
        return;
    }
    ev.delay_ms = pi.rtt_ms > 0 ? pi.rtt_ms / 2 : 0; /* the ACK's way back: both SYNs leave together */
    emit(t, &ev);
    start(t, now, ev.delay_ms);
}

static void check_path(nk_conn_tcp *t, int64_t now)
{
    nk_path_info pi;
    if (!t->await_path)
        return;
    nk_conn_path(t->cfg.conn, &pi);
    if (pi.kind == NK_PATH_DIRECT) {
        t->await_path = 0;
        start(t, now, 0);
    } else if (now >= t->await_until) {
        t->await_path = 0;
        fail(t, now, "no direct UDP path");
    }
}

static void process_events(nk_conn_tcp *t, int64_t now)
{
    nk_upgrade_event ev;
    while (nk_upgrade_poll_event(t->u, &ev) == 0) {
        switch (ev.type) {
        case NK_UPGRADE_EV_ANNOUNCED:
            on_announced(t, now, &ev);
            break;
        case NK_UPGRADE_EV_ACKED:
            if (t->state == NK_CONN_TCP_BUSY && t->so == NULL)
                start(t, now, 0);
            break;
        case NK_UPGRADE_EV_RESULT:
            if (ev.err != 0)
                fail(t, now, ev.err == NK_ERR_UNSUPPORTED ? "the peer does not take one" : "the peer could not connect");
            break;
        case NK_UPGRADE_EV_FAILED:
            if (t->state == NK_CONN_TCP_BUSY)
                fail(t, now, "no answer over UDP");
            break;
        }
    }
}

int nk_conn_tcp_handle_message(nk_conn_tcp *t, int64_t now, const uint8_t *p, size_t n)
{
    if (!nk_upgrade_is_message(p, n))
        return 0;
    nk_upgrade_handle_message(t->u, now, p, n); /* malformed and duplicates are counted there */
    process_events(t, now);
    return 1;
}

void nk_conn_tcp_pollfds(nk_conn_tcp *t, struct pollfd pfd[NK_CONN_TCP_FDS])
{
    for (int i = 0; i < NK_CONN_TCP_FDS; i++)
        pfd[i] = (struct pollfd){.fd = -1, .events = 0, .revents = 0};
    if (t->so != NULL) {
        nk_tcp_simopen_pollfds(t->so, pfd);
    } else if (t->ts != NULL) {
        pfd[0].fd = nk_tcp_stream_fd(t->ts);
        pfd[0].events = nk_tcp_stream_events(t->ts);
    }
}

int64_t nk_conn_tcp_next_deadline(const nk_conn_tcp *t)
{
    int64_t d = nk_upgrade_next_deadline(t->u);
    if (t->await_path && t->await_until < d)
        d = t->await_until;
    if (t->so != NULL && nk_tcp_simopen_next_deadline(t->so) < d)
        d = nk_tcp_simopen_next_deadline(t->so);
    if (t->ts != NULL && nk_tcp_stream_ready(t->ts))
        d = 0;
    return d;
}

/* fd: the connected socket (our attempt, or what the listener accepted). */
static void stream_up(nk_conn_tcp *t, int64_t now, int fd)
{
    nk_tcpseal *seal;
    nk_tcp_simopen_stats_t st;
    nk_tcp_simopen_stats(t->so, &st);
    uint8_t keys[NK_TCPSEAL_EXPORT_LEN];
    int rc = nk_conn_export(t->cfg.conn, NK_TCPSEAL_EXPORT_LABEL, t->token, NK_TCP_TOKEN_LEN, keys, sizeof(keys));
    if (rc == 0)
        rc = nk_tcpseal_new_exported(&seal, keys, nk_conn_is_client(t->cfg.conn), t->token, t->cfg.buf_cap);
    sodium_memzero(keys, sizeof(keys));
    if (rc != 0) {
        close(fd);
        fail(t, now, "no connection keys");
        return;
    }
    if (nk_tcp_stream_new(&t->ts, fd, seal) != 0) {
        nk_tcpseal_free(seal);
        close(fd);
        fail(t, now, "out of memory");
        return;
    }
    stop_attempts(t);
    t->state = NK_CONN_TCP_UP;
    nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_UP, .via_listener = st.via_listener,
                            .port = t->cfg.udp_local.port, .remote = t->remote, .attempts = st.attempts,
                            .ms = now - t->started_ms};
    emit(t, &ev);
    if (!t->cfg.requester && !t->reported) {
        nk_upgrade_report(t->u, now, 0);
        t->reported = 1;
    }
}

static void stream_failed(nk_conn_tcp *t, int err)
{
    nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_STREAM_ERROR, .err = err};
    emit(t, &ev);
    nk_tcp_stream_free(t->ts);
    t->ts = NULL;
    t->peer_done = 1;
    t->state = NK_CONN_TCP_FAILED;
}

static void try_shutdown(nk_conn_tcp *t)
{
    if (t->ts != NULL && t->want_shut && !t->shut && nk_tcp_stream_shutdown(t->ts) == 0)
        t->shut = 1; /* else no room yet: again on the next call */
}

static void send_control(nk_conn_tcp *t, int64_t now)
{
    uint8_t msg[NK_UPGRADE_MAX_MESSAGE];
    int n;
    nk_upgrade_handle_timeout(t->u, now);
    process_events(t, now);
    while ((n = nk_upgrade_poll_message(t->u, now, msg, sizeof(msg))) > 0)
        if (nk_conn_send(t->cfg.conn, now, msg, (size_t)n) != 0)
            break; /* no room for the message now: resent on the next timer */
}

void nk_conn_tcp_service(nk_conn_tcp *t, int64_t now, const struct pollfd pfd[NK_CONN_TCP_FDS])
{
    check_path(t, now);
    if (t->so != NULL) {
        int fd, rc = nk_tcp_simopen_step(t->so, now, pfd, &fd);
        if (rc == 0)
            stream_up(t, now, fd);
        else if (rc == NK_ERR_TIMEOUT)
            fail(t, now, "no SYN got through in time");
    }
    if (t->ts != NULL) {
        int rc = nk_tcp_stream_pump(t->ts);
        if (rc != 0)
            stream_failed(t, rc);
    }
    try_shutdown(t);
    send_control(t, now);
}

int nk_conn_tcp_write(nk_conn_tcp *t, const uint8_t *p, size_t n)
{
    if (t->ts == NULL || t->want_shut)
        return NK_ERR_STATE;
    return nk_tcp_stream_write(t->ts, p, n);
}

static void peer_finished(nk_conn_tcp *t)
{
    if (t->peer_done)
        return;
    t->peer_done = 1;
    nk_conn_tcp_event ev = {.type = NK_CONN_TCP_EV_PEER_DONE};
    emit(t, &ev);
    if (!t->cfg.requester)
        t->want_shut = 1; /* the answerer: the asking side decides when the stream ends */
    try_shutdown(t);
}

int nk_conn_tcp_read(nk_conn_tcp *t, uint8_t *buf, size_t cap)
{
    if (t->ts == NULL)
        return NK_ERR_STATE;
    int rc = nk_tcp_stream_read(t->ts, buf, cap);
    if (rc == NK_ERR_AGAIN) {
        /* the seal is empty: reading made room, so what the driver or the kernel holds may fit now */
        int prc = nk_tcp_stream_pump(t->ts);
        rc = prc != 0 ? prc : nk_tcp_stream_read(t->ts, buf, cap);
    }
    if (rc == NK_ERR_CLOSED)
        peer_finished(t);
    else if (rc < 0 && rc != NK_ERR_AGAIN)
        stream_failed(t, rc);
    return rc;
}

void nk_conn_tcp_shutdown(nk_conn_tcp *t)
{
    t->want_shut = 1;
    try_shutdown(t);
}

int nk_conn_tcp_finished(const nk_conn_tcp *t)
{
    if (t->ts == NULL)
        return 1;
    return t->shut && t->peer_done && nk_tcp_stream_flushed(t->ts);
}

int nk_conn_tcp_take_stream(nk_conn_tcp *t, nk_tcp_stream **out)
{
    if (t == NULL || out == NULL || t->ts == NULL)
        return NK_ERR_STATE;
    *out = t->ts;
    t->ts = NULL;
    return 0;
}
