/*
 * natkit CLI: TCP simultaneous open over an established connection (see
 * p2p_tcp.h and docs/internals/tcp-upgrade.md).
 *
 *   requester  on a direct path: SIMOPEN (nk_upgrade, resent until ACKed)
 *   answerer   SIMOPEN: ACK, connects at once + half the path RTT
 *   requester  ACK: connects at once
 *   both       nk_tcp_simopen: connect from the UDP socket's port to the
 *              address the peer's UDP packets come from, again after a refusal
 *              (a NAT that answers a SYN it has no mapping for with a reset),
 *              for window_ms; then seal the stream with the session's keys
 *   answerer   RESULT (0, or why not), resent until ACKed
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "natkit/tcp.h"
#include "p2p_tcp.h"

#define DEFAULT_WINDOW_MS 5000

struct nk_p2p_tcp {
    nk_p2p_tcp_config cfg;
    nk_upgrade *u;
    int state;
    nk_tcp_simopen *so;      /* the attempts, once started */
    int await_path;          /* asked while our side has not chosen the direct path yet */
    int64_t await_until;
    nk_addr remote;
    int64_t started_ms;
    nk_tcp_stream *ts;
    uint8_t token[NK_TCP_TOKEN_LEN];
    int want_shut, shut, peer_done, reported;
    char peer[NK_PEER_ID_STRLEN];
};

static void say(nk_p2p_tcp *t, const char *state, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (t->cfg.json)
        fprintf(stderr, "{\"event\":\"tcp\",\"peer\":\"%s\",\"state\":\"%s\",\"detail\":\"%s\"}\n", t->peer, state,
                text);
    else
        fprintf(stderr, "natkit %s: TCP with %.12s...: %s\n", t->cfg.cmd, t->peer, text);
    fflush(stderr);
}

int nk_p2p_tcp_new(nk_p2p_tcp **out, const nk_p2p_tcp_config *cfg)
{
    nk_p2p_tcp *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NK_ERR_NOMEM;
    t->cfg = *cfg;
    if (t->cfg.window_ms <= 0)
        t->cfg.window_ms = DEFAULT_WINDOW_MS;
    nk_upgrade_config uc;
    memset(&uc, 0, sizeof(uc));
    uc.acceptor = cfg->requester; /* the side that announces */
    int rc = nk_upgrade_new(&t->u, &uc);
    if (rc != 0) {
        free(t);
        return rc;
    }
    nk_peer_id_format(nk_conn_peer(cfg->conn), t->peer, sizeof(t->peer));
    *out = t;
    return 0;
}

void nk_p2p_tcp_free(nk_p2p_tcp *t)
{
    if (t == NULL)
        return;
    nk_tcp_simopen_free(t->so);
    nk_tcp_stream_free(t->ts);
    nk_upgrade_free(t->u);
    free(t);
}

int nk_p2p_tcp_state(const nk_p2p_tcp *t)
{
    return t->state;
}

static void stop_attempts(nk_p2p_tcp *t)
{
    nk_tcp_simopen_free(t->so);
    t->so = NULL;
    t->await_path = 0;
}

static unsigned attempts(const nk_p2p_tcp *t)
{
    nk_tcp_simopen_stats st = {0};
    if (t->so != NULL)
        nk_tcp_simopen_get_stats(t->so, &st);
    return st.attempts;
}

static void fail(nk_p2p_tcp *t, int64_t now, const char *why)
{
    if (t->state == NK_P2P_TCP_FAILED || t->state == NK_P2P_TCP_UP)
        return;
    unsigned n = attempts(t);
    stop_attempts(t);
    t->state = NK_P2P_TCP_FAILED;
    say(t, "failed", "simultaneous open failed (%s) after %u attempt%s: staying on the UDP path", why, n,
        n == 1 ? "" : "s");
    if (!t->cfg.requester && !t->reported) {
        nk_upgrade_report(t->u, now, NK_ERR_TIMEOUT);
        t->reported = 1;
    }
}

/* Where the peer's UDP packets come from: its NAT's mapping, which a port-preserving NAT gives
 * its TCP port too. 0, or the reason there is none. */
static const char *target(nk_p2p_tcp *t)
{
    nk_path_info pi;
    nk_conn_path(t->cfg.conn, &pi);
    if (pi.kind != NK_PATH_DIRECT)
        return "no direct UDP path";
    if (pi.remote.family != t->cfg.udp_local.family)
        return "the path's address family differs from the socket's";
    t->remote = pi.remote;
    return NULL;
}

void nk_p2p_tcp_on_path(nk_p2p_tcp *t, int64_t now)
{
    if (!t->cfg.requester || t->state != NK_P2P_TCP_IDLE)
        return;
    nk_path_info pi;
    nk_conn_path(t->cfg.conn, &pi);
    if (pi.kind != NK_PATH_DIRECT) {
        say(t, "waiting", "the path is %s, not direct: TCP waits for a direct path", nk_path_kind_name(pi.kind));
        return;
    }
    nk_addr mine = {.family = NK_AF_NONE, .port = t->cfg.udp_local.port};
    if (nk_upgrade_simopen(t->u, now, &mine) != 0)
        return;
    memcpy(t->token, nk_upgrade_token(t->u), NK_TCP_TOKEN_LEN);
    t->state = NK_P2P_TCP_BUSY;
    t->started_ms = now;
    say(t, "asking", "asking for a TCP simultaneous open from port %u", (unsigned)mine.port);
}

static void start(nk_p2p_tcp *t, int64_t now, int64_t delay)
{
    const char *why = target(t);
    if (why != NULL) {
        fail(t, now, why);
        return;
    }
    nk_tcp_simopen_config sc;
    memset(&sc, 0, sizeof(sc));
    sc.local = t->cfg.udp_local;
    sc.remote = t->remote;
    sc.start_ms = now + delay;
    sc.window_ms = t->cfg.window_ms;
    if (nk_tcp_simopen_new(&t->so, &sc) != 0)
        fail(t, now, "no sockets");
}

static void on_announced(nk_p2p_tcp *t, int64_t now, const nk_upgrade_event *ev)
{
    if (!ev->simultaneous || t->state == NK_P2P_TCP_UP) {
        nk_upgrade_report(t->u, now, NK_ERR_UNSUPPORTED); /* one stream per connection; no listener here */
        return;
    }
    memcpy(t->token, ev->token, NK_TCP_TOKEN_LEN);
    stop_attempts(t);
    t->state = NK_P2P_TCP_BUSY;
    t->started_ms = now;
    t->reported = 0;
    nk_path_info pi;
    nk_conn_path(t->cfg.conn, &pi);
    if (pi.kind != NK_PATH_DIRECT) {
        /* the asking side chose the direct path; ours follows within a round trip or so */
        t->await_path = 1;
        t->await_until = now + t->cfg.window_ms;
        say(t, "connecting", "the peer asks for a TCP simultaneous open: waiting for our side of the direct path");
        return;
    }
    int64_t delay = pi.rtt_ms > 0 ? pi.rtt_ms / 2 : 0; /* the ACK's way back: both SYNs leave together */
    say(t, "connecting", "the peer asks for a TCP simultaneous open: connecting in %lld ms", (long long)delay);
    start(t, now, delay);
}

static void check_path(nk_p2p_tcp *t, int64_t now)
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

static void process_events(nk_p2p_tcp *t, int64_t now)
{
    nk_upgrade_event ev;
    while (nk_upgrade_poll_event(t->u, &ev) == 0) {
        switch (ev.type) {
        case NK_UPGRADE_EV_ANNOUNCED:
            on_announced(t, now, &ev);
            break;
        case NK_UPGRADE_EV_ACKED:
            if (t->state == NK_P2P_TCP_BUSY && t->so == NULL)
                start(t, now, 0);
            break;
        case NK_UPGRADE_EV_RESULT:
            if (ev.err != 0)
                fail(t, now, ev.err == NK_ERR_UNSUPPORTED ? "the peer does not take one" : "the peer could not connect");
            break;
        case NK_UPGRADE_EV_FAILED:
            if (t->state == NK_P2P_TCP_BUSY)
                fail(t, now, "no answer over UDP");
            break;
        }
    }
}

int nk_p2p_tcp_on_message(nk_p2p_tcp *t, int64_t now, const uint8_t *p, size_t n)
{
    if (!nk_upgrade_is_message(p, n))
        return 0;
    nk_upgrade_handle_message(t->u, now, p, n); /* malformed and duplicates are counted there */
    process_events(t, now);
    return 1;
}

void nk_p2p_tcp_pollfds(const nk_p2p_tcp *t, struct pollfd pfd[NK_P2P_TCP_FDS])
{
    for (int i = 0; i < NK_P2P_TCP_FDS; i++)
        pfd[i] = (struct pollfd){.fd = -1, .events = 0, .revents = 0};
    if (t->so != NULL) {
        nk_tcp_simopen_pollfds(t->so, pfd);
    } else if (t->ts != NULL) {
        pfd[0].fd = nk_tcp_stream_fd(t->ts);
        pfd[0].events = nk_tcp_stream_events(t->ts);
    }
}

int64_t nk_p2p_tcp_deadline(const nk_p2p_tcp *t)
{
    int64_t d = nk_upgrade_next_deadline(t->u);
    if (t->await_path && t->await_until < d)
        d = t->await_until;
    if (t->so != NULL && nk_tcp_simopen_deadline(t->so) < d)
        d = nk_tcp_simopen_deadline(t->so);
    if (t->ts != NULL && nk_tcp_stream_ready(t->ts))
        d = 0;
    return d;
}

/* fd: the connected socket (our attempt, or what the listener accepted). */
static void stream_up(nk_p2p_tcp *t, int64_t now, int fd)
{
    nk_tcpseal *seal;
    nk_tcp_simopen_stats st;
    nk_tcp_simopen_get_stats(t->so, &st);
    if (nk_tcpseal_new(&seal, nk_conn_session(t->cfg.conn), t->token, 0) != 0) {
        close(fd);
        fail(t, now, "no session keys");
        return;
    }
    if (nk_tcp_stream_new(&t->ts, fd, seal) != 0) {
        nk_tcpseal_free(seal);
        close(fd);
        fail(t, now, "out of memory");
        return;
    }
    stop_attempts(t);
    t->state = NK_P2P_TCP_UP;
    char r[NK_ADDR_STRLEN];
    nk_addr_format(&t->remote, r, sizeof(r));
    say(t, "up", "TCP stream is up (%s, port %u <-> %s, attempt %u, %lld ms; sealed with the session's keys)",
        st.via_listener ? "the peer's SYN met our listener" : "our SYN got through", (unsigned)t->cfg.udp_local.port,
        r, st.attempts, (long long)(now - t->started_ms));
    if (!t->cfg.requester && !t->reported) {
        nk_upgrade_report(t->u, now, 0);
        t->reported = 1;
    }
}

static void pump_stream(nk_p2p_tcp *t, int64_t now)
{
    uint8_t buf[65536];
    int rc = 0, n, moved = 1;
    for (int round = 0; round < 32 && moved && rc == 0; round++) {
        moved = 0;
        rc = nk_tcp_stream_pump(t->ts);
        while (rc == 0 && (n = nk_tcp_stream_read(t->ts, buf, sizeof(buf))) > 0) {
            fwrite(buf, 1, (size_t)n, stdout);
            moved = 1;
        }
    }
    fflush(stdout);
    if (rc == 0)
        rc = nk_tcp_stream_read(t->ts, buf, sizeof(buf));
    if (rc == NK_ERR_CLOSED) {
        if (!t->peer_done) {
            t->peer_done = 1;
            say(t, "peer-done", "the peer ended its side of the stream");
            if (!t->cfg.requester)
                t->want_shut = 1; /* listen: the asking side decides when the stream ends */
        }
    } else if (rc != NK_ERR_AGAIN && rc != 0) {
        say(t, "failed", "TCP stream failed: %s", nk_strerror(rc));
        nk_tcp_stream_free(t->ts);
        t->ts = NULL;
        t->peer_done = 1;
        t->state = NK_P2P_TCP_FAILED;
    }
    (void)now;
}

static void send_control(nk_p2p_tcp *t, int64_t now)
{
    uint8_t msg[NK_UPGRADE_MAX_MESSAGE];
    int n;
    nk_upgrade_handle_timeout(t->u, now);
    process_events(t, now);
    while ((n = nk_upgrade_poll_message(t->u, now, msg, sizeof(msg))) > 0)
        if (nk_conn_send(t->cfg.conn, now, msg, (size_t)n) != 0)
            break; /* the session's queue is full: resent on the next timer */
}

void nk_p2p_tcp_service(nk_p2p_tcp *t, int64_t now, const struct pollfd pfd[NK_P2P_TCP_FDS])
{
    check_path(t, now);
    if (t->so != NULL) {
        int fd, rc = nk_tcp_simopen_step(t->so, now, pfd, &fd);
        if (rc == 0)
            stream_up(t, now, fd);
        else if (rc == NK_ERR_TIMEOUT)
            fail(t, now, "no SYN got through in time");
    }
    if (t->ts != NULL)
        pump_stream(t, now);
    if (t->ts != NULL && t->want_shut && !t->shut && nk_tcp_stream_shutdown(t->ts) == 0)
        t->shut = 1; /* else no room yet: again on the next call */
    send_control(t, now);
}

int nk_p2p_tcp_write(nk_p2p_tcp *t, const uint8_t *p, size_t n)
{
    if (t->ts == NULL || t->want_shut)
        return NK_ERR_STATE;
    int rc = nk_tcp_stream_write(t->ts, p, n);
    return rc == NK_ERR_AGAIN ? 0 : rc;
}

void nk_p2p_tcp_shutdown(nk_p2p_tcp *t)
{
    t->want_shut = 1;
    if (t->ts != NULL && !t->shut && nk_tcp_stream_shutdown(t->ts) == 0)
        t->shut = 1;
}

int nk_p2p_tcp_finished(const nk_p2p_tcp *t)
{
    if (t->ts == NULL)
        return 1;
    return t->shut && t->peer_done && nk_tcp_stream_flushed(t->ts);
}
