/*
 * natkit CLI: TCP simultaneous open over an established connection (see
 * p2p_tcp.h). The work is the library's nk_conn_tcp (include/natkit/conn_tcp.h,
 * docs/internals/tcp-simopen.md); this file prints its events and gives the
 * stream's bytes to the caller (p2p_tcp_read).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/conn_tcp.h"
#include "cli.h"
#include "p2p_tcp.h"

struct p2p_tcp {
    p2p_tcp_config cfg;
    nk_conn_tcp *ct;
    char peer[NK_PEER_ID_STRLEN];
};

static void say(p2p_tcp *t, const char *state, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(p2p_tcp *t, const char *state, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (t->cfg.json) {
        fprintf(stderr, "{\"event\":\"tcp\",\"peer\":\"%s\",\"state\":\"%s\",\"detail\":", t->peer, state);
        cli_json_str(stderr, text);
        fputs("}\n", stderr);
    } else
        fprintf(stderr, "natkit %s: TCP with %.12s...: %s\n", t->cfg.cmd, t->peer, text);
    fflush(stderr);
}

static void print_up(p2p_tcp *t, const nk_conn_tcp_event *ev)
{
    char r[NK_ADDR_STRLEN];
    nk_addr_format(&ev->remote, r, sizeof(r));
    say(t, "up", "TCP stream is up (%s, port %u <-> %s, attempt %u, %lld ms; sealed with the session's keys)",
        ev->via_listener ? "the peer's SYN met our listener" : "our SYN got through", (unsigned)ev->port, r,
        ev->attempts, (long long)ev->ms);
}

static void print_event(p2p_tcp *t, const nk_conn_tcp_event *ev)
{
    switch (ev->type) {
    case NK_CONN_TCP_EV_WAITING:
        say(t, "waiting", "the path is %s, not direct: TCP waits for a direct path", nk_path_kind_name(ev->path));
        break;
    case NK_CONN_TCP_EV_ASKING:
        say(t, "asking", "asking for a TCP simultaneous open from port %u", (unsigned)ev->port);
        break;
    case NK_CONN_TCP_EV_CONNECTING:
        if (ev->await_path)
            say(t, "connecting", "the peer asks for a TCP simultaneous open: waiting for our side of the direct path");
        else
            say(t, "connecting", "the peer asks for a TCP simultaneous open: connecting in %lld ms",
                (long long)ev->delay_ms);
        break;
    case NK_CONN_TCP_EV_UP:
        print_up(t, ev);
        break;
    case NK_CONN_TCP_EV_FAILED:
        say(t, "failed", "simultaneous open failed (%s) after %u attempt%s: staying on the UDP path", ev->reason,
            ev->attempts, ev->attempts == 1 ? "" : "s");
        break;
    case NK_CONN_TCP_EV_PEER_DONE:
        say(t, "peer-done", "the peer ended its side of the stream");
        break;
    case NK_CONN_TCP_EV_STREAM_ERROR:
        say(t, "failed", "TCP stream failed: %s", nk_strerror(ev->err));
        break;
    }
}

static void print_events(p2p_tcp *t)
{
    nk_conn_tcp_event ev;
    while (nk_conn_tcp_poll_event(t->ct, &ev) == 0)
        print_event(t, &ev);
}

int p2p_tcp_new(p2p_tcp **out, const p2p_tcp_config *cfg)
{
    p2p_tcp *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NK_ERR_NOMEM;
    t->cfg = *cfg;
    nk_conn_tcp_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.conn = cfg->conn;
    cc.requester = cfg->requester;
    cc.udp_local = cfg->udp_local;
    cc.window_ms = cfg->window_ms > 0 ? cfg->window_ms : 0;
    cc.decline = cfg->decline;
    int rc = nk_conn_tcp_new(&t->ct, &cc);
    if (rc != 0) {
        free(t);
        return rc;
    }
    nk_peer_id_format(nk_conn_peer(cfg->conn), t->peer, sizeof(t->peer));
    *out = t;
    return 0;
}

void p2p_tcp_free(p2p_tcp *t)
{
    if (t == NULL)
        return;
    nk_conn_tcp_free(t->ct);
    free(t);
}

int p2p_tcp_state(const p2p_tcp *t)
{
    return nk_conn_tcp_state(t->ct);
}

void p2p_tcp_on_path(p2p_tcp *t, int64_t now)
{
    nk_conn_tcp_handle_path(t->ct, now);
    print_events(t);
}

int p2p_tcp_on_message(p2p_tcp *t, int64_t now, const uint8_t *p, size_t n)
{
    int taken = nk_conn_tcp_handle_message(t->ct, now, p, n);
    print_events(t);
    return taken;
}

void p2p_tcp_pollfds(p2p_tcp *t, struct pollfd pfd[P2P_TCP_FDS])
{
    nk_conn_tcp_pollfds(t->ct, pfd);
}

int64_t p2p_tcp_deadline(const p2p_tcp *t)
{
    return nk_conn_tcp_next_deadline(t->ct);
}

void p2p_tcp_service(p2p_tcp *t, int64_t now, const struct pollfd pfd[P2P_TCP_FDS])
{
    nk_conn_tcp_service(t->ct, now, pfd);
    print_events(t);
}

int p2p_tcp_write(p2p_tcp *t, const uint8_t *p, size_t n)
{
    int rc = nk_conn_tcp_write(t->ct, p, n);
    return rc == NK_ERR_AGAIN ? 0 : rc;
}

int p2p_tcp_read(p2p_tcp *t, uint8_t *buf, size_t cap)
{
    int rc = nk_conn_tcp_read(t->ct, buf, cap);
    print_events(t);
    return rc;
}

void p2p_tcp_shutdown(p2p_tcp *t)
{
    nk_conn_tcp_shutdown(t->ct);
}

int p2p_tcp_finished(const p2p_tcp *t)
{
    return nk_conn_tcp_finished(t->ct);
}
