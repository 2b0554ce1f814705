/*
 * natkit CLI: the loop behind `natkit listen` and `natkit connect`.
 *
 * connect opens one QUIC stream on its connection and copies stdin to it and
 * it to stdout, as raw bytes with backpressure both ways (fwd.h); with --local
 * it accepts local TCP connections instead and carries each on a stream of
 * its own. listen serves every connected peer's stream: its stdin goes to every
 * peer (read when each of them took the previous read: the slowest sets the
 * pace), what peers send goes to its stdout; with --forward it connects each
 * stream to HOST:PORT instead. Status goes to stderr (one JSON object per line
 * with --json). docs/internals/cli-p2p.md has the whole story.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "fwd.h"
#include "natkit/node_driver.h"
#include "natkit/quic.h"
#include "natkit/tcp.h"
#include "p2p.h"
#include "p2p_tcp.h"

#define MAX_PEERS       1024
#define MAX_FWD         1000 /* forwarded TCP connections at once (a descriptor each; the usual
                              * limit of a process is 1024) */
#define MAX_TCP_STREAMS 8   /* listen: TCP upgrades at once (two poll slots each) */
#define MAX_PENDING     64  /* streams whose preamble has not arrived yet */
#define STDOUT_READS    64  /* listen: stream reads per turn into stdout */
#define RETRY_MS        250 /* connect: between asks for a peer not registered at the hub yet */
#define RELEASE_WAIT_MS 1000 /* at exit: for the TURN server to confirm the release (release_turn) */
#define CLOSE_STOPPED   0x4e4b10 /* our CONNECTION_CLOSE code when we stop before our peers are
                                  * done (its phrase says why: "stopped", "stopped: ...") */

enum { CHAN_NONE, CHAN_QUIC, CHAN_TCP };

/* A connected peer (listen: its stdin/stdout stream; both: its TCP upgrade). */
typedef struct peer_slot {
    nk_conn *conn;
    p2p_tcp *tcp;
    int chan;            /* listen stdio: what carries its bytes */
    int64_t sid;         /* CHAN_QUIC: the stream */
    size_t bc_off;       /* how much of the broadcast chunk it took */
    int readable, peer_fin, fin_sent;
    int tell;            /* its FIN was read with every byte before it on stdout: "delivered" due */
} peer_slot;

/* A stream whose preamble is still arriving. */
typedef struct pending_stream {
    nk_conn *conn;
    int64_t sid;
    uint8_t acc[FWD_PREAMBLE_LEN];
    size_t have;
} pending_stream;

/* One forwarded TCP connection (connect --local, listen --forward). */
typedef struct fwd_conn {
    nk_conn *conn;
    int fd;
    int connecting;      /* listen: connect() to the target still running */
    fwd_pump pump;
    char from[NK_ADDR_STRLEN];
    int pi;              /* its index in this turn's poll set (-1: not polled) */
} fwd_conn;

typedef struct run_state {
    p2p_opts *o;
    nk_node_driver *d;
    nk_conn *conn;            /* connect: our one connection */
    int connected;            /* connect: connected at least once */
    int failed;               /* connect: gave up; exit 1 */
    int peer_gone;
    int refused;              /* connect: the listener refused us */
    char refused_why[128];
    const char *gone_reason;
    int64_t retry_at;         /* connect: the peer was not at the hub yet; ask again then (0: no) */
    char waiting_for[96];     /* connect: why the last attempt failed before it connected ("": none) */
    nk_addr udp_local;
    peer_slot peers[MAX_PEERS];
    size_t npeers;
    pending_stream pend[MAX_PENDING];
    size_t npend;
    fwd_conn **fwd;           /* grown as connections come (MAX_FWD at most) */
    size_t nfwd, fwd_cap;
    struct pollfd *pf;        /* poll_once's set, grown to fit */
    unsigned pf_cap;
    int lfd;                  /* connect --local: the listening socket */
    /* connect (stdin/stdout) */
    fwd_pump io;
    int io_ready;             /* the pump has its stream */
    int tcp_decided;          /* connect --tcp: the carrier is chosen */
    int said_peer_end;        /* connect: "stream-end" printed */
    int64_t io_start;         /* connect: when the stream (or TCP stream) started */
    /* listen (stdin/stdout) */
    uint8_t bc[FWD_BUF];      /* the last read of stdin, going to every peer */
    size_t bc_len;
    int stdin_eof;
    int stdin_tty;            /* listen: stdin is a terminal (read only while we are its foreground) */
    uint8_t out[FWD_BUF];     /* bytes for stdout not written yet */
    size_t out_off, out_len;
    size_t rr;                /* round robin over peers reading into stdout */
    int stdout_kind;          /* FWD_OUT_*: how stdout is written without blocking */
    int stdout_failed;        /* listen: writing stdout failed: it stops (exit 1) */
    int stdin_failed;         /* listen: reading stdin failed: it stops (exit 1) */
    int hub_registered;       /* registered at a hub now */
    int hub_ever;             /* registered at a hub once */
    int hub_failed;           /* no hub is a natkit hub, or one refused us for good: exit 1 */
    char hub_said[160];       /* the last hub-reconnecting reason printed (text lines: one per change) */
    ctl_server *ctl;          /* the control socket for `natkit status` (NULL: none) */
} run_state;

static const char *fmt_addr(const nk_addr *a, char *buf)
{
    buf[0] = '\0';
    if (a->family != NK_AF_NONE)
        nk_addr_format(a, buf, NK_ADDR_STRLEN);
    return buf;
}

static void print_simple(run_state *st, const char *event, const char *key, const char *value, const char *text)
{
    if (st->o->json) {
        fprintf(stderr, "{\"event\":\"%s\",\"%s\":", event, key);
        cli_json_str(stderr, value);
        fputs("}\n", stderr);
    } else
        fprintf(stderr, "natkit %s: %s\n", st->o->cmd, text);
    fflush(stderr);
}

/* ---- peers ---- */

static peer_slot *find_peer(run_state *st, const nk_conn *c)
{
    for (size_t i = 0; i < st->npeers; i++)
        if (st->peers[i].conn == c)
            return &st->peers[i];
    return NULL;
}

static size_t tcp_count(const run_state *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->npeers; i++)
        n += st->peers[i].tcp != NULL;
    return n;
}

static peer_slot *add_peer(run_state *st, nk_conn *c)
{
    peer_slot *ps = find_peer(st, c);
    if (ps == NULL && st->npeers < MAX_PEERS) {
        ps = &st->peers[st->npeers++];
        memset(ps, 0, sizeof(*ps));
        ps->conn = c;
        ps->sid = -1;
        ps->bc_off = st->bc_len; /* it gets what stdin gives from now on */
    }
    return ps;
}

/* The peer's TCP upgrade, made on first use (NULL when out of slots). */
static p2p_tcp *peer_tcp(run_state *st, nk_conn *c)
{
    peer_slot *ps = add_peer(st, c);
    if (ps == NULL)
        return NULL;
    /* (a declining one, listen --forward, holds no socket: no limit) */
    if (ps->tcp == NULL && (st->o->have_forward || tcp_count(st) < MAX_TCP_STREAMS)) {
        p2p_tcp_config tc;
        memset(&tc, 0, sizeof(tc));
        tc.conn = c;
        tc.requester = st->o->tcp && c == st->conn;
        tc.udp_local = st->udp_local;
        tc.cmd = st->o->cmd;
        tc.json = st->o->json;
        tc.decline = st->o->have_forward; /* its streams are many: no TCP stream (said at once) */
        if (p2p_tcp_new(&ps->tcp, &tc) != 0)
            ps->tcp = NULL;
    }
    return ps->tcp;
}

static void close_fwd(run_state *st, size_t i);

static void forget_peer(run_state *st, const nk_conn *c)
{
    for (size_t i = 0; i < st->nfwd;)
        if (st->fwd[i]->conn == c)
            close_fwd(st, i);
        else
            i++;
    for (size_t i = 0; i < st->npend;)
        if (st->pend[i].conn == c)
            st->pend[i] = st->pend[--st->npend];
        else
            i++;
    peer_slot *ps = find_peer(st, c);
    if (ps == NULL)
        return;
    p2p_tcp_free(ps->tcp);
    *ps = st->peers[--st->npeers];
}

static int allowed(const run_state *st, const nk_peer_id *peer)
{
    if (!st->o->have_allow)
        return 1;
    for (size_t i = 0; i < st->o->nallow; i++)
        if (memcmp(&st->o->allow[i], peer, sizeof(*peer)) == 0)
            return 1;
    return 0;
}

/* ---- events ---- */

static void print_path_event(run_state *st, const char *what, const nk_node_event *ev)
{
    char id[NK_PEER_ID_STRLEN], l[NK_ADDR_STRLEN], r[NK_ADDR_STRLEN];
    nk_peer_id_format(&ev->peer, id, sizeof(id));
    fmt_addr(&ev->path.local, l);
    fmt_addr(&ev->path.remote, r);
    if (st->o->json) { /* unknown values are null */
        fprintf(stderr, "{\"event\":\"%s\",\"peer\":\"%s\",\"path\":\"%s\",\"local\":", what, id,
                nk_path_kind_name(ev->path.kind));
        cli_json_str(stderr, l[0] != '\0' ? l : NULL);
        fputs(",\"remote\":", stderr);
        cli_json_str(stderr, r[0] != '\0' ? r : NULL);
        if (ev->rtt_ms >= 0)
            fprintf(stderr, ",\"rtt_ms\":%lld", (long long)ev->rtt_ms);
        else
            fputs(",\"rtt_ms\":null", stderr);
        if (ev->type == NK_NODE_EV_CONNECTED)
            fprintf(stderr, ",\"connect_ms\":%lld", (long long)ev->connect_ms);
        else
            fprintf(stderr, ",\"from\":\"%s\"", nk_path_kind_name(ev->prev.kind));
        if (ev->conn != NULL) { /* the checks this connection has sent so far (the lab matrix reports them) */
            nk_conn_stats_t cs;
            nk_conn_stats(ev->conn, &cs);
            fprintf(stderr, ",\"probes\":%llu,\"birthday_probes\":%llu", (unsigned long long)cs.probes_sent,
                    (unsigned long long)cs.birthday_probes);
        }
        fprintf(stderr, "}\n");
        return;
    }
    if (ev->type == NK_NODE_EV_CONNECTED)
        fprintf(stderr, "natkit %s: connected to %s via %s, %s <-> %s (rtt %lld ms, %lld ms to connect)\n",
                st->o->cmd, id, nk_path_kind_name(ev->path.kind), l, r, (long long)ev->rtt_ms,
                (long long)ev->connect_ms);
    else
        fprintf(stderr, "natkit %s: path to %s changed from %s to %s, %s <-> %s (rtt %lld ms)\n", st->o->cmd, id,
                nk_path_kind_name(ev->prev.kind), nk_path_kind_name(ev->path.kind), l, r, (long long)ev->rtt_ms);
}

/* connect: the listener is not registered at the hub (yet: both may have been started at once,
 * as in the README's tour); asked again every RETRY_MS until --timeout. */
static int wait_for_peer(run_state *st, const nk_node_event *ev, const char *id, const char *why)
{
    if (ev->conn == NULL || ev->conn != st->conn || st->connected || ev->err != NK_ERR_NOT_FOUND)
        return 0;
    if (st->waiting_for[0] == '\0') {
        if (st->o->json) {
            fprintf(stderr, "{\"event\":\"waiting\",\"peer\":\"%s\",\"reason\":", id);
            cli_json_str(stderr, why);
            fputs("}\n", stderr);
        } else
            fprintf(stderr, "natkit %s: %s: %s; asking again until it is (--timeout %ld s)\n", st->o->cmd, id, why,
                    st->o->connect_timeout_ms / 1000);
    }
    snprintf(st->waiting_for, sizeof(st->waiting_for), "%s", why);
    st->retry_at = nk_node_driver_now() + RETRY_MS;
    return 1;
}

static void on_disconnected(run_state *st, const nk_node_event *ev)
{
    char id[NK_PEER_ID_STRLEN];
    nk_peer_id_format(&ev->peer, id, sizeof(id));
    const char *why = ev->reason != NULL ? ev->reason : "unknown";
    static const char closed[] = "peer closed the connection";
    if (wait_for_peer(st, ev, id, why))
        return;
    if (st->o->json) {
        fprintf(stderr, "{\"event\":\"disconnected\",\"peer\":\"%s\",\"reason\":", id);
        cli_json_str(stderr, ev->reason);
        fputs("}\n", stderr);
    } else if (ev->err == NK_ERR_CLOSED && strncmp(why, closed, sizeof(closed) - 1) == 0)
        fprintf(stderr, "natkit %s: peer %s closed the connection%s\n", st->o->cmd, id, why + sizeof(closed) - 1);
    else
        fprintf(stderr, "natkit %s: disconnected from %s: %s\n", st->o->cmd, id, why);
    if (ev->conn != NULL && ev->conn == st->conn) {
        st->peer_gone = 1;
        st->gone_reason = why;
        if (!st->connected)
            st->failed = 1;
    }
    if (ev->conn != NULL) {
        if (ev->conn != st->conn) {
            forget_peer(st, ev->conn);
            nk_conn_close(ev->conn, nk_node_driver_now());
        }
    }
}

/* A refused peer is told why (a message), then the connection closes. */
static void refuse(run_state *st, nk_conn *c, const char *why)
{
    char id[NK_PEER_ID_STRLEN], msg[128];
    nk_peer_id_format(nk_conn_peer(c), id, sizeof(id));
    if (st->o->json) {
        fprintf(stderr, "{\"event\":\"refused\",\"peer\":\"%s\",\"reason\":", id);
        cli_json_str(stderr, why);
        fputs("}\n", stderr);
    } else
        fprintf(stderr, "natkit %s: refused %s: %s\n", st->o->cmd, id, why);
    int n = snprintf(msg, sizeof(msg), "%s%s", FWD_REFUSE_PREFIX, why);
    nk_conn_send(c, nk_node_driver_now(), (const uint8_t *)msg, (size_t)n);
    forget_peer(st, c);
    nk_conn_close(c, nk_node_driver_now());
}

static fwd_conn *find_fwd(run_state *st, const nk_conn *c, int64_t sid);

/* The peer wrote every byte of one of our streams to its output: that pump may finish. (listen's
 * stdin/stdout slots wait for nothing: a "delivered" for them is not needed.) */
static void on_delivered(run_state *st, nk_conn *c, int64_t sid)
{
    if (c == st->conn && st->io_ready &&
        (st->io.tcp != NULL ? sid == FWD_DELIVERED_TCP : sid == st->io.sid)) {
        fwd_pump_on_delivered(&st->io);
        return;
    }
    fwd_conn *f = sid >= 0 ? find_fwd(st, c, sid) : NULL;
    if (f != NULL)
        fwd_pump_on_delivered(&f->pump);
}

static void on_messages(run_state *st, nk_conn *c)
{
    uint8_t buf[4096];
    int n;
    while ((n = nk_conn_recv(c, buf, sizeof(buf))) != NK_ERR_AGAIN) {
        if (n == NK_ERR_NOBUFS) { /* nobody sends long messages to us: drop it */
            uint8_t *big = malloc(NK_CONN_MAX_MESSAGE);
            if (big == NULL)
                break;
            n = nk_conn_recv(c, big, NK_CONN_MAX_MESSAGE);
            free(big);
            continue;
        }
        if (n < 0)
            break;
        if (nk_upgrade_is_message(buf, (size_t)n)) {
            /* listen --forward declines a TCP upgrade (p2p_tcp_config.decline): the asker is told
             * at once and falls back to its QUIC stream */
            p2p_tcp *t = peer_tcp(st, c);
            if (t != NULL)
                p2p_tcp_on_message(t, nk_node_driver_now(), buf, (size_t)n);
            continue;
        }
        int64_t dsid;
        int dk = fwd_delivered_parse(buf, (size_t)n, &dsid);
        if (dk != 0) {
            if (dk > 0)
                on_delivered(st, c, dsid);
            continue;
        }
        size_t pl = strlen(FWD_REFUSE_PREFIX);
        if (c == st->conn && (size_t)n > pl && memcmp(buf, FWD_REFUSE_PREFIX, pl) == 0) {
            char why[128];
            size_t wl = (size_t)n - pl < sizeof(why) - 1 ? (size_t)n - pl : sizeof(why) - 1;
            for (size_t i = 0; i < wl; i++)
                why[i] = buf[pl + i] >= 0x20 && buf[pl + i] < 0x7f ? (char)buf[pl + i] : '?'; /* the peer's text */
            why[wl] = '\0';
            if (!st->refused) {
                if (st->o->json) {
                    fputs("{\"event\":\"refused\",\"reason\":", stderr);
                    cli_json_str(stderr, why);
                    fputs("}\n", stderr);
                }
                snprintf(st->refused_why, sizeof(st->refused_why), "%s", why); /* said when it exits */
            }
            st->refused = 1;
        }
        /* anything else: not ours (the CLI sends no other messages) */
    }
}

/* connect: the stream (or the TCP stream) of stdin/stdout, once there is a carrier. */
static void connect_start_io(run_state *st)
{
    if (st->io_ready || st->o->have_local || st->conn == NULL || !nk_conn_is_connected(st->conn))
        return;
    if (!nk_conn_is_client(st->conn))
        return; /* connect --peer on both sides: the QUIC client opens the stream, we take it */
    if (st->o->tcp && !st->tcp_decided) {
        peer_slot *ps = find_peer(st, st->conn);
        p2p_tcp *t = ps != NULL ? ps->tcp : NULL;
        if (t == NULL || p2p_tcp_state(t) == P2P_TCP_BUSY)
            return; /* stdin waits while the TCP stream is being made */
        st->tcp_decided = 1;
        if (p2p_tcp_state(t) == P2P_TCP_UP) {
            fwd_pump_set_tcp(&st->io, st->conn, t);
            st->io_ready = 1;
            st->io_start = nk_node_driver_now();
            return;
        }
        /* IDLE (the path is not direct) or FAILED: the QUIC stream carries the bytes */
    }
    int64_t sid;
    if (nk_conn_stream_open(st->conn, &sid) != 0)
        return; /* again on the next turn */
    uint8_t pre[FWD_PREAMBLE_LEN];
    fwd_preamble_put(pre, FWD_KIND_STDIO);
    nk_conn_stream_write(st->conn, sid, pre, sizeof(pre));
    fwd_pump_set_stream(&st->io, st->conn, sid);
    st->io_ready = 1;
    st->io_start = nk_node_driver_now();
}

static void on_connected(run_state *st, const nk_node_event *ev)
{
    if (ev->conn == NULL)
        return;
    if (ev->conn != st->conn && !allowed(st, &ev->peer)) {
        print_path_event(st, "connected", ev);
        refuse(st, ev->conn, "not allowed");
        return;
    }
    st->connected |= ev->conn == st->conn;
    add_peer(st, ev->conn);
    print_path_event(st, "connected", ev);
    if (st->o->tcp && ev->conn == st->conn) {
        p2p_tcp *t = peer_tcp(st, ev->conn);
        if (t != NULL && ev->path.kind == NK_PATH_DIRECT) {
            p2p_tcp_on_path(t, nk_node_driver_now());
        } else if (t != NULL) {
            char id[NK_PEER_ID_STRLEN];
            nk_peer_id_format(&ev->peer, id, sizeof(id));
            if (st->o->json)
                fprintf(stderr, "{\"event\":\"tcp\",\"peer\":\"%s\",\"state\":\"skipped\",\"detail\":\"the path is %s, not direct: the data goes over the QUIC stream\"}\n",
                        id, nk_path_kind_name(ev->path.kind));
            else
                fprintf(stderr, "natkit %s: TCP with %.12s...: the path is %s, not direct: the data goes over the QUIC stream\n",
                        st->o->cmd, id, nk_path_kind_name(ev->path.kind));
        }
    }
    connect_start_io(st);
}

static fwd_conn *find_fwd(run_state *st, const nk_conn *c, int64_t sid)
{
    for (size_t i = 0; i < st->nfwd; i++)
        if (st->fwd[i]->conn == c && st->fwd[i]->pump.sid == sid)
            return st->fwd[i];
    return NULL;
}

static void on_stream_opened(run_state *st, const nk_node_event *ev)
{
    int ours = ev->conn == st->conn && !st->io_ready && !st->o->have_local && !nk_conn_is_client(st->conn);
    if ((ev->conn == st->conn && !ours) || find_peer(st, ev->conn) == NULL) {
        /* connect takes no streams (but the one of a connect --peer on the other side) */
        nk_conn_stream_reset(ev->conn, ev->stream_id, ev->conn == st->conn ? FWD_ERR_NO_FORWARD : FWD_ERR_BUSY);
        return;
    }
    if (st->npend == MAX_PENDING) {
        nk_conn_stream_reset(ev->conn, ev->stream_id, FWD_ERR_BUSY);
        return;
    }
    pending_stream *p = &st->pend[st->npend++];
    memset(p, 0, sizeof(*p));
    p->conn = ev->conn;
    p->sid = ev->stream_id;
}

static void start_forward(run_state *st, nk_conn *c, int64_t sid);

/* A pending stream's preamble: read it, then hand the stream to its user. */
static void feed_preamble(run_state *st, size_t i)
{
    pending_stream *p = &st->pend[i];
    uint8_t buf[FWD_PREAMBLE_LEN];
    int kind = 0;
    while (kind == 0) {
        int n = nk_conn_stream_read(p->conn, p->sid, buf, FWD_PREAMBLE_LEN - p->have);
        if (n == NK_ERR_AGAIN)
            return;
        if (n <= 0) { /* FIN or reset before the preamble */
            kind = -1;
            break;
        }
        fwd_preamble_feed(p->acc, &p->have, buf, (size_t)n, &kind);
    }
    nk_conn *c = p->conn;
    int64_t sid = p->sid;
    st->pend[i] = st->pend[--st->npend];
    peer_slot *ps = find_peer(st, c);
    if (kind < 0 || ps == NULL) {
        nk_conn_stream_reset(c, sid, FWD_ERR_PREAMBLE);
        return;
    }
    if (c == st->conn) { /* connect --peer, the QUIC server: the client's stdin/stdout stream */
        if (kind != FWD_KIND_STDIO || st->io_ready) {
            nk_conn_stream_reset(c, sid, kind != FWD_KIND_STDIO ? FWD_ERR_NO_FORWARD : FWD_ERR_NOT_STDIO);
            return;
        }
        fwd_pump_set_stream(&st->io, c, sid);
        fwd_pump_on_readable(&st->io);
        st->io_ready = 1;
        st->io_start = nk_node_driver_now();
        return;
    }
    if (st->o->have_forward) {
        start_forward(st, c, sid); /* any stream, 's' (netcat-like) or 'f' */
        return;
    }
    if (kind == FWD_KIND_FORWARD) {
        nk_conn_stream_reset(c, sid, FWD_ERR_NO_FORWARD);
        return;
    }
    if (ps->chan != CHAN_NONE) {
        nk_conn_stream_reset(c, sid, FWD_ERR_NOT_STDIO);
        return;
    }
    ps->chan = CHAN_QUIC;
    ps->sid = sid;
    ps->readable = 1;
    ps->bc_off = st->bc_len;
}

static void on_stream_event(run_state *st, const nk_node_event *ev)
{
    nk_conn *c = ev->conn;
    if (c == NULL)
        return;
    if (ev->type == NK_NODE_EV_STREAM_OPENED) {
        on_stream_opened(st, ev);
        return;
    }
    for (size_t i = 0; i < st->npend; i++) {
        if (st->pend[i].conn == c && st->pend[i].sid == ev->stream_id) {
            if (ev->type == NK_NODE_EV_STREAM_READABLE || ev->type == NK_NODE_EV_STREAM_RESET ||
                ev->type == NK_NODE_EV_STREAM_FINISHED)
                feed_preamble(st, i);
            return;
        }
    }
    fwd_pump *pump = NULL;
    if (c == st->conn && st->io_ready && st->io.sid == ev->stream_id)
        pump = &st->io;
    else {
        fwd_conn *f = find_fwd(st, c, ev->stream_id);
        pump = f != NULL ? &f->pump : NULL;
    }
    if (pump != NULL) {
        if (ev->type == NK_NODE_EV_STREAM_READABLE)
            fwd_pump_on_readable(pump);
        else if (ev->type == NK_NODE_EV_STREAM_RESET)
            fwd_pump_on_reset(pump, ev->app_error);
        return;
    }
    peer_slot *ps = find_peer(st, c);
    if (ps != NULL && ps->chan == CHAN_QUIC && ps->sid == ev->stream_id) {
        if (ev->type == NK_NODE_EV_STREAM_READABLE)
            ps->readable = 1;
        else if (ev->type == NK_NODE_EV_STREAM_RESET) {
            ps->peer_fin = ps->fin_sent = 1; /* nothing more either way */
            ps->chan = CHAN_NONE;
        }
    }
}

/* The hub's state changes: registered, hub-closed (and hub-lost when we were registered),
 * hub-reconnecting (each attempt in JSON; as text the first three and then when the reason
 * changes), hub-failed (exit 1). */
static void on_hub_event(run_state *st, const nk_node_event *ev)
{
    char hub[NK_ADDR_STRLEN], sees[NK_ADDR_STRLEN];
    const char *why = ev->reason != NULL ? ev->reason : "";
    fmt_addr(&ev->hub, hub);
    switch (ev->type) {
    case NK_NODE_EV_REGISTERED:
        fmt_addr(&ev->addr, sees);
        st->hub_registered = st->hub_ever = 1;
        st->hub_said[0] = '\0';
        if (st->o->json)
            fprintf(stderr, "{\"event\":\"registered\",\"hub_sees\":\"%s\",\"hub\":\"%s\"}\n", sees, hub);
        else
            fprintf(stderr, "natkit %s: registered at the hub %s (which sees our TCP connection from %s)\n",
                    st->o->cmd, hub, sees);
        break;
    case NK_NODE_EV_HUB_CLOSED:
        if (st->o->json) {
            for (int lost = 0; lost <= st->hub_registered; lost++) {
                fprintf(stderr, "{\"event\":\"%s\",\"reason\":", lost ? "hub-lost" : "hub-closed");
                cli_json_str(stderr, ev->reason);
                fprintf(stderr, ",\"hub\":\"%s\"}\n", hub);
            }
        } else if (st->hub_registered) {
            fprintf(stderr, "natkit %s: lost the hub %s: %s (reconnecting; connections carry on)\n", st->o->cmd,
                    hub, why);
        } else {
            fprintf(stderr, "natkit %s: hub connection closed: %s\n", st->o->cmd, why);
        }
        st->hub_registered = 0;
        break;
    case NK_NODE_EV_HUB_RETRY:
        if (st->conn != NULL && !st->hub_ever && !st->connected && ev->err == NK_ERR_SYSTEM &&
            ev->attempt >= (st->o->drv.node.nhubs > 1 ? st->o->drv.node.nhubs : 1)) {
            /* connect: every hub refused or could not be reached on the first try; a listener
             * waits for one, but a one-shot connect says so at once */
            st->hub_failed = 1;
            if (ev->sys_errno != 0)
                cli_fail(st->o->cmd, CLI_EXIT_FAIL, ev->sys_errno, "cannot connect to hub %s", hub);
            else
                cli_fail(st->o->cmd, CLI_EXIT_FAIL, 0, "cannot connect to hub %s (%s)", hub, why);
            break;
        }
        if (st->o->json) {
            fprintf(stderr, "{\"event\":\"hub-reconnecting\",\"hub\":\"%s\",\"delay_ms\":%lld,\"attempt\":%u,\"reason\":",
                    hub, (long long)ev->retry_ms, ev->attempt);
            cli_json_str(stderr, ev->reason);
            fputs("}\n", stderr);
        } else if (ev->attempt <= 3 || strcmp(st->hub_said, why) != 0) {
            fprintf(stderr, "natkit %s: warning: no hub (%s); trying %s in %.1f s%s\n", st->o->cmd, why, hub,
                    (double)ev->retry_ms / 1000.0, ev->attempt == 3 ? " (further attempts are not shown)" : "");
        }
        snprintf(st->hub_said, sizeof(st->hub_said), "%s", why);
        break;
    default: /* HUB_FAILED */
        st->hub_failed = 1;
        if (st->o->json) {
            fprintf(stderr, "{\"event\":\"hub-failed\",\"hub\":\"%s\",\"reason\":", hub);
            cli_json_str(stderr, ev->reason);
            fputs("}\n", stderr);
        }
        if (strstr(why, "replaced") != NULL)
            cli_fail(st->o->cmd, CLI_EXIT_FAIL, 0, "the hub %s dropped us: %s (another process with this key?)", hub, why);
        else
            cli_fail(st->o->cmd, CLI_EXIT_FAIL, 0, "%s is not a natkit hub: %s", hub, why);
        break;
    }
}

static void on_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    run_state *st = ctx;
    char buf[NK_PEER_ID_STRLEN > NK_ADDR_STRLEN ? NK_PEER_ID_STRLEN : NK_ADDR_STRLEN];
    char line[256];
    (void)d;
    switch (ev->type) {
    case NK_NODE_EV_REGISTERED:
    case NK_NODE_EV_HUB_CLOSED:
    case NK_NODE_EV_HUB_RETRY:
    case NK_NODE_EV_HUB_FAILED:
        on_hub_event(st, ev);
        break;
    case NK_NODE_EV_INCOMING:
        if (ev->conn != NULL)
            add_peer(st, ev->conn); /* known from now on: closed at exit even before CONNECTED */
        nk_peer_id_format(&ev->peer, buf, sizeof(buf));
        snprintf(line, sizeof(line), "%s is connecting", buf);
        print_simple(st, "incoming", "peer", buf, line);
        break;
    case NK_NODE_EV_CONNECTED:
        on_connected(st, ev);
        break;
    case NK_NODE_EV_PATH_CHANGED:
        print_path_event(st, "path-changed", ev);
        break;
    case NK_NODE_EV_READABLE:
        if (ev->conn != NULL)
            on_messages(st, ev->conn);
        break;
    case NK_NODE_EV_DISCONNECTED:
        on_disconnected(st, ev);
        break;
    case NK_NODE_EV_STREAM_OPENED:
    case NK_NODE_EV_STREAM_READABLE:
    case NK_NODE_EV_STREAM_RESET:
    case NK_NODE_EV_STREAM_FINISHED:
        on_stream_event(st, ev);
        break;
    case NK_NODE_EV_WARNING: /* a wrong --stun/--turn/--pass: said, not fatal (fewer paths) */
        nk_addr_format(&ev->addr, buf, sizeof(buf));
        cli_warn(st->o->cmd, 0, "%s (server %s: %s)", ev->reason != NULL ? ev->reason : "a server did not work", buf,
                 nk_strerror(ev->err));
        break;
    case NK_NODE_EV_WRITABLE:
    case NK_NODE_EV_STREAM_WRITABLE: /* writes are retried every turn */
    default:
        break;
    }
    fflush(stderr);
}

/* ---- forwarded TCP connections ---- */

static void print_fwd(run_state *st, const char *event, const fwd_conn *f, const char *detail)
{
    if (st->o->json) {
        fprintf(stderr, "{\"event\":\"%s\",\"stream\":%lld,\"from\":\"%s\",\"up\":%llu,\"down\":%llu,\"detail\":",
                event, (long long)f->pump.sid, f->from, (unsigned long long)f->pump.bytes_up,
                (unsigned long long)f->pump.bytes_down);
        cli_json_str(stderr, detail);
        fputs("}\n", stderr);
    } else
        fprintf(stderr, "natkit %s: stream %lld (%s): %s\n", st->o->cmd, (long long)f->pump.sid, f->from, detail);
    fflush(stderr);
}

static void close_fwd(run_state *st, size_t i)
{
    fwd_conn *f = st->fwd[i];
    if (!fwd_pump_done(&f->pump))
        fwd_pump_abort(&f->pump, FWD_ERR_RESET, "the connection to the peer ended");
    char detail[256];
    if (f->pump.failed && f->pump.sys_errno != 0)
        snprintf(detail, sizeof(detail), "reset: %s: %s", f->pump.why, strerror(f->pump.sys_errno));
    else if (f->pump.failed)
        snprintf(detail, sizeof(detail), "reset: %s", f->pump.why);
    else
        snprintf(detail, sizeof(detail), "closed (%llu bytes out, %llu in)", (unsigned long long)f->pump.bytes_up,
                 (unsigned long long)f->pump.bytes_down);
    print_fwd(st, "stream-closed", f, detail);
    if (f->fd >= 0)
        close(f->fd);
    fwd_pump_free(&f->pump);
    free(f);
    st->fwd[i] = st->fwd[--st->nfwd];
}

static fwd_conn *new_fwd(run_state *st, nk_conn *c, int fd)
{
    if (st->nfwd == st->fwd_cap) {
        size_t cap = st->fwd_cap != 0 ? st->fwd_cap * 2 : 16;
        fwd_conn **g = realloc(st->fwd, cap * sizeof(*g));
        if (g == NULL)
            return NULL;
        st->fwd = g;
        st->fwd_cap = cap;
    }
    fwd_conn *f = calloc(1, sizeof(*f));
    if (f == NULL || fwd_pump_init(&f->pump, fd, fd, 1) != 0) {
        free(f);
        return NULL;
    }
    f->conn = c;
    f->fd = fd;
    f->pi = -1;
    st->fwd[st->nfwd++] = f;
    return f;
}

/* listen --forward: a new stream gets its own TCP connection to the target. */
static void start_forward(run_state *st, nk_conn *c, int64_t sid)
{
    char target[NK_ADDR_STRLEN];
    nk_addr_format(&st->o->forward, target, sizeof(target));
    if (st->nfwd == MAX_FWD) {
        nk_conn_stream_reset(c, sid, FWD_ERR_BUSY);
        cli_warn(st->o->cmd, 0, "%d forwarded connections at once already: stream %lld refused", MAX_FWD, (long long)sid);
        return;
    }
    struct sockaddr_storage ss;
    unsigned sl = sizeof(ss);
    nk_addr_to_sockaddr(&st->o->forward, (struct sockaddr *)&ss, &sl);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS)) {
        cli_warn(st->o->cmd, errno, "cannot reach %s", target);
        if (fd >= 0)
            close(fd);
        nk_conn_stream_reset(c, sid, FWD_ERR_CONNECT);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fwd_conn *f = new_fwd(st, c, fd);
    if (f == NULL) {
        close(fd);
        nk_conn_stream_reset(c, sid, FWD_ERR_BUSY);
        return;
    }
    f->connecting = 1;
    char id[NK_PEER_ID_STRLEN];
    nk_peer_id_format(nk_conn_peer(c), id, sizeof(id));
    snprintf(f->from, sizeof(f->from), "%.12s...", id);
    fwd_pump_set_stream(&f->pump, c, sid);
    fwd_pump_on_readable(&f->pump);
    char detail[128];
    snprintf(detail, sizeof(detail), "forwarding to %s", target);
    print_fwd(st, "stream-open", f, detail);
}

/* listen --forward: the target's connect() finished (POLLOUT). */
static void forward_connected(run_state *st, fwd_conn *f)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err == 0) {
        f->connecting = 0;
        return;
    }
    char target[NK_ADDR_STRLEN];
    nk_addr_format(&st->o->forward, target, sizeof(target));
    cli_warn(st->o->cmd, err, "cannot reach %s", target);
    f->connecting = 0;
    fwd_pump_abort(&f->pump, FWD_ERR_CONNECT, fwd_err_text(FWD_ERR_CONNECT));
    errno = err;
    f->pump.sys_errno = err;
}

/* connect --local: a local TCP connection gets its own stream. */
static void accept_local(run_state *st)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(st->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int64_t sid;
    int rc = nk_conn_stream_open(st->conn, &sid);
    fwd_conn *f = rc == 0 ? new_fwd(st, st->conn, fd) : NULL;
    nk_addr from;
    char fromtext[NK_ADDR_STRLEN] = "?";
    if (nk_addr_from_sockaddr(&from, (struct sockaddr *)&ss) == 0)
        nk_addr_format(&from, fromtext, sizeof(fromtext));
    if (f == NULL) {
        cli_warn(st->o->cmd, 0, "local connection from %s closed: %s", fromtext,
                rc == NK_ERR_AGAIN ? "the peer's limit of streams is reached" : nk_strerror(rc != 0 ? rc : NK_ERR_NOMEM));
        if (rc == 0)
            nk_conn_stream_reset(st->conn, sid, FWD_ERR_BUSY);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    snprintf(f->from, sizeof(f->from), "%s", fromtext);
    uint8_t pre[FWD_PREAMBLE_LEN];
    fwd_preamble_put(pre, FWD_KIND_FORWARD);
    nk_conn_stream_write(st->conn, sid, pre, sizeof(pre));
    fwd_pump_set_stream(&f->pump, st->conn, sid);
    print_fwd(st, "stream-open", f, "a local connection, carried to the peer");
}

/* ---- listen: stdin to every peer, every peer to stdout ---- */

static int slot_active(const peer_slot *ps)
{
    return ps->chan != CHAN_NONE;
}

/* Upgrades that came up since: their bytes go over TCP from now on (a connect --tcp peer
 * decides the carrier before it sends anything). */
static void adopt_tcp(run_state *st)
{
    for (size_t i = 0; i < st->npeers; i++) {
        peer_slot *ps = &st->peers[i];
        if (ps->chan == CHAN_NONE && ps->tcp != NULL && p2p_tcp_state(ps->tcp) == P2P_TCP_UP && !ps->fin_sent) {
            ps->chan = CHAN_TCP;
            ps->bc_off = st->bc_len;
        }
    }
}

/* Its stdin/stdout stream: the TCP stream once adopted, else its QUIC stream. */
static p2p_tcp *slot_tcp(const peer_slot *ps)
{
    return ps->chan == CHAN_TCP ? ps->tcp : NULL;
}

static int slot_write(peer_slot *ps, const uint8_t *p, size_t n)
{
    return fwd_stream_write(ps->conn, ps->sid, slot_tcp(ps), p, n);
}

static int slot_read(peer_slot *ps, uint8_t *p, size_t cap)
{
    return fwd_stream_read(ps->conn, ps->sid, slot_tcp(ps), p, cap);
}

static void slot_shutdown(peer_slot *ps)
{
    if (ps->fin_sent)
        return;
    ps->fin_sent = 1;
    if (ps->chan != CHAN_NONE)
        fwd_stream_shutdown(ps->conn, ps->sid, slot_tcp(ps));
}

static int flush_stdout(run_state *st)
{
    while (st->out_len > 0 && !st->stdout_failed) {
        ssize_t n = fwd_write_out(STDOUT_FILENO, st->stdout_kind, st->out + st->out_off, st->out_len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            /* no peer is read any more (nor its FIN, so none gets ours): the loop stops, and each
             * peer sees its connection close before the end of its transfer (its connect exits 1) */
            cli_fail(st->o->cmd, CLI_EXIT_FAIL, errno, "writing stdout failed; stopping");
            st->stdout_failed = 1;
            return 0;
        }
        st->out_off += (size_t)n;
        st->out_len -= (size_t)n;
    }
    return !st->stdout_failed;
}

/* What the peers sent goes to stdout; a peer's stream is read only while stdout keeps up. */
static void listen_to_stdout(run_state *st)
{
    for (int reads = 0; reads < STDOUT_READS && flush_stdout(st) && st->npeers > 0; reads++) {
        peer_slot *ps = NULL;
        for (size_t k = 0; k < st->npeers; k++) {
            peer_slot *q = &st->peers[(st->rr + k) % st->npeers];
            if (slot_active(q) && !q->peer_fin && (q->readable || q->chan == CHAN_TCP)) {
                ps = q;
                st->rr = (st->rr + k) % st->npeers;
                break;
            }
        }
        if (ps == NULL)
            return;
        int n = slot_read(ps, st->out, sizeof(st->out));
        if (n == NK_ERR_AGAIN) {
            ps->readable = 0;
            if (ps->chan == CHAN_TCP)
                st->rr++;
            continue;
        }
        if (n <= 0) {
            ps->peer_fin = 1; /* its FIN (or reset): ours follows once it has what stdin gave */
            ps->tell = n == 0; /* a FIN, and stdout has every byte before it (out was empty) */
            continue;
        }
        st->out_off = 0;
        st->out_len = (size_t)n;
    }
}

/* A terminal on stdin whose foreground is another process group: started with & in an
 * interactive shell. Reading it would stop us (SIGTTIN), so it waits until `fg`. */
static int stdin_in_background(const run_state *st)
{
    if (!st->stdin_tty)
        return 0;
    pid_t fg = tcgetpgrp(STDIN_FILENO);
    return fg != -1 && fg != getpgrp();
}

/* stdin to every peer: read again once each has taken the last read. */
static int listen_wants_stdin(const run_state *st)
{
    if (st->stdin_eof || stdin_in_background(st))
        return 0;
    size_t active = 0;
    for (size_t i = 0; i < st->npeers; i++) {
        const peer_slot *ps = &st->peers[i];
        if (!slot_active(ps) || ps->fin_sent)
            continue;
        if (ps->bc_off < st->bc_len)
            return 0;
        active++;
    }
    return active > 0;
}

static void listen_push(run_state *st)
{
    for (size_t i = 0; i < st->npeers; i++) {
        peer_slot *ps = &st->peers[i];
        if (!slot_active(ps) || ps->fin_sent)
            continue;
        if (ps->bc_off < st->bc_len) {
            int k = slot_write(ps, st->bc + ps->bc_off, st->bc_len - ps->bc_off);
            if (k < 0)
                ps->bc_off = st->bc_len, ps->fin_sent = 1; /* its stream is gone */
            else
                ps->bc_off += (size_t)k;
        }
        if (ps->bc_off == st->bc_len && (st->stdin_eof || ps->peer_fin))
            slot_shutdown(ps);
    }
}

/* Peers whose stream ended with everything on stdout are told so ("delivered", fwd.h): their
 * connect exits 0 on it. Again on the next turn while the message channel is full. */
static void listen_tell_delivered(run_state *st)
{
    uint8_t msg[FWD_DELIVERED_MAX];
    for (size_t i = 0; i < st->npeers; i++) {
        peer_slot *ps = &st->peers[i];
        if (!ps->tell)
            continue;
        size_t n = fwd_delivered_put(msg, sizeof(msg), ps->chan == CHAN_TCP ? FWD_DELIVERED_TCP : ps->sid);
        if (nk_conn_send(ps->conn, nk_node_driver_now(), msg, n) != NK_ERR_AGAIN)
            ps->tell = 0;
    }
}

static void listen_read_stdin(run_state *st)
{
    ssize_t n = read(STDIN_FILENO, st->bc, sizeof(st->bc));
    if (n < 0 && (errno == EINTR || errno == EAGAIN || (errno == EIO && st->stdin_tty)))
        return; /* EIO: the terminal's background now (SIGTTIN is ignored): again once in front */
    if (n < 0) { /* not an end: the peers must not take it for one */
        cli_fail(st->o->cmd, CLI_EXIT_FAIL, errno, "reading stdin failed");
        st->stdin_failed = 1;
        return;
    }
    if (n == 0) {
        st->stdin_eof = 1;
        return;
    }
    st->bc_len = (size_t)n;
    for (size_t i = 0; i < st->npeers; i++)
        st->peers[i].bc_off = 0;
}

/* ---- the loop ---- */

static void announce_id(run_state *st, const nk_identity *id, const nk_addr *local)
{
    char idtext[NK_PEER_ID_STRLEN], l[NK_ADDR_STRLEN];
    nk_peer_id_format(&id->id, idtext, sizeof(idtext));
    nk_addr_format(local, l, sizeof(l));
    if (st->o->json)
        fprintf(stderr, "{\"event\":\"started\",\"id\":\"%s\",\"local\":\"%s\"}\n", idtext, l);
    else
        fprintf(stderr, "natkit %s: my peer ID is %s (UDP %s)\n", st->o->cmd, idtext, l);
    fflush(stderr);
}

/* connect --local: the listening socket (errors name the address and the system's reason). */
static int open_local(run_state *st)
{
    char text[NK_ADDR_STRLEN];
    nk_addr_format(&st->o->local, text, sizeof(text));
    struct sockaddr_storage ss;
    unsigned sl = sizeof(ss);
    nk_addr_to_sockaddr(&st->o->local, (struct sockaddr *)&ss, &sl);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, SOMAXCONN) != 0) {
        cli_fail(st->o->cmd, CLI_EXIT_FAIL, errno, "cannot listen on TCP %s", text);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    st->lfd = fd;
    if (st->o->json)
        fprintf(stderr, "{\"event\":\"local\",\"listen\":\"%s\"}\n", text);
    else
        fprintf(stderr, "natkit %s: local connections to TCP %s go to the peer, each on a stream of its own\n",
                st->o->cmd, text);
    return 0;
}

typedef struct poll_set {
    struct pollfd *pf;
    unsigned n, cap;
} poll_set;

/* The set for this turn: stdin, stdout, the --local socket, every forwarded socket and the TCP
 * streams' descriptors (st->pf, grown to fit). */
static int ps_init(run_state *st, poll_set *s)
{
    unsigned want = 3 + (unsigned)st->nfwd + MAX_TCP_STREAMS * P2P_TCP_FDS + CTL_FDS;
    if (want > st->pf_cap) {
        struct pollfd *p = realloc(st->pf, want * sizeof(*p));
        if (p == NULL)
            return NK_ERR_NOMEM;
        st->pf = p;
        st->pf_cap = want;
    }
    *s = (poll_set){.pf = st->pf, .n = 0, .cap = st->pf_cap};
    return 0;
}

static int ps_add(poll_set *s, int fd, short events)
{
    if (s->n == s->cap)
        return -1;
    s->pf[s->n] = (struct pollfd){.fd = events != 0 ? fd : -1, .events = events};
    return (int)s->n++;
}

/* One turn of the loop: the node, stdin/stdout, the forwarded sockets and the TCP streams,
 * each served when it is due. */
static int poll_once(run_state *st)
{
    poll_set s;
    int64_t now = nk_node_driver_now(), wait = 200;
    int is_listen = st->conn == NULL;
    int i_in = -1, i_out = -1, i_lfd = -1;
    int i_tcp[MAX_TCP_STREAMS];
    const nk_conn *tcp_of[MAX_TCP_STREAMS];
    unsigned ntcp = 0;
    int rc = ps_init(st, &s);
    if (rc != 0)
        return rc;

    if (!is_listen && st->io_ready) {
        short ie, oe;
        fwd_pump_wants(&st->io, &ie, &oe);
        i_in = ps_add(&s, STDIN_FILENO, ie);
        i_out = ps_add(&s, STDOUT_FILENO, oe);
    } else if (is_listen && !st->o->have_forward) {
        i_in = ps_add(&s, STDIN_FILENO, listen_wants_stdin(st) ? POLLIN : 0);
        i_out = ps_add(&s, STDOUT_FILENO, st->out_len > 0 ? POLLOUT : 0);
    }
    if (st->lfd >= 0)
        i_lfd = ps_add(&s, st->lfd, st->connected && !st->peer_gone && st->nfwd < MAX_FWD ? POLLIN : 0);
    for (size_t k = 0; k < st->nfwd; k++) {
        fwd_conn *f = st->fwd[k];
        short ie, oe;
        fwd_pump_wants(&f->pump, &ie, &oe);
        if (f->connecting)
            ie = POLLOUT;
        f->pi = ps_add(&s, f->fd, (short)(ie | oe));
    }
    for (size_t k = 0; k < st->npeers && ntcp < MAX_TCP_STREAMS; k++) {
        peer_slot *ps = &st->peers[k];
        if (ps->tcp == NULL || st->o->have_forward || s.n + P2P_TCP_FDS > s.cap)
            continue;
        i_tcp[ntcp] = (int)s.n;
        tcp_of[ntcp++] = ps->conn;
        p2p_tcp_pollfds(ps->tcp, &s.pf[s.n]);
        s.n += P2P_TCP_FDS;
        int64_t due = p2p_tcp_deadline(ps->tcp) - now;
        if (due < wait)
            wait = due < 0 ? 0 : due;
    }
    /* bytes waiting on our side of a stream that is readable: no sleeping */
    if (!is_listen && st->io_ready && !st->io.failed && st->io.readable && st->io.down_len == 0 && !st->io.peer_fin)
        wait = 0;
    for (size_t k = 0; k < st->nfwd; k++)
        if (st->fwd[k]->pump.readable && st->fwd[k]->pump.down_len == 0 && !st->fwd[k]->pump.peer_fin &&
            !st->fwd[k]->pump.failed && !st->fwd[k]->connecting)
            wait = 0;
    if (is_listen && st->out_len == 0)
        for (size_t k = 0; k < st->npeers; k++)
            if (st->peers[k].chan == CHAN_QUIC && !st->peers[k].peer_fin && st->peers[k].readable)
                wait = 0;

    unsigned i_ctl = s.n, n_ctl = ctl_pollfds(st->ctl, &s.pf[s.n], s.cap - s.n);
    s.n += n_ctl;
    int ready = nk_node_driver_poll_fds(st->d, wait, s.pf, s.n);
    if (ready < 0)
        return ready;
    ctl_service(st->ctl, &s.pf[i_ctl], n_ctl);
    now = nk_node_driver_now();
    for (unsigned k = 0; k < ntcp; k++) {
        peer_slot *ps = find_peer(st, tcp_of[k]); /* a peer that left during the poll is gone */
        if (ps != NULL && ps->tcp != NULL)
            p2p_tcp_service(ps->tcp, now, &s.pf[i_tcp[k]]);
    }
    for (size_t k = 0; st->o->have_forward && k < st->npeers; k++)
        if (st->peers[k].tcp != NULL)
            p2p_tcp_service(st->peers[k].tcp, now, NULL); /* declining: its answers go out, no socket */
    connect_start_io(st);
    if (!is_listen && st->io_ready) {
        fwd_pump_run(&st->io, i_in >= 0 ? s.pf[i_in].revents : 0, i_out >= 0 ? s.pf[i_out].revents : 0);
        if (st->io.out_shut && !st->said_peer_end) {
            st->said_peer_end = 1;
            if (st->o->json)
                fprintf(stderr, "{\"event\":\"stream-end\",\"received\":%llu}\n", (unsigned long long)st->io.bytes_down);
            else
                fprintf(stderr, "natkit %s: the peer ended its side of the stream (%llu bytes received)\n", st->o->cmd,
                        (unsigned long long)st->io.bytes_down);
            fflush(stderr);
        }
    }
    if (is_listen && !st->o->have_forward) {
        adopt_tcp(st);
        listen_push(st);
        if (i_in >= 0 && (s.pf[i_in].revents & (POLLIN | POLLHUP | POLLERR)) && listen_wants_stdin(st)) {
            listen_read_stdin(st);
            listen_push(st);
        }
        listen_to_stdout(st);
        listen_tell_delivered(st);
        listen_push(st); /* FINs of peers whose FIN came just now */
    }
    for (size_t k = 0; k < st->nfwd;) {
        fwd_conn *f = st->fwd[k]; /* (made or closed during the poll: pi is -1 or it is gone) */
        short rev = f->pi >= 0 ? s.pf[f->pi].revents : 0;
        f->pi = -1;
        if (f->connecting && rev != 0)
            forward_connected(st, f);
        if (!f->connecting)
            fwd_pump_run(&f->pump, rev, rev);
        if (fwd_pump_done(&f->pump)) {
            close_fwd(st, k); /* the last one moves to k */
            continue;
        }
        k++;
    }
    if (i_lfd >= 0 && (s.pf[i_lfd].revents & POLLIN))
        accept_local(st);
    return 0;
}

/* The TURN allocation ends with us (after the closes: their copies may go through the relay).
 * Waits up to RELEASE_WAIT_MS for the server's answer, so lost Refreshes are sent again and a
 * nonce that went stale during a long run is renewed (438) and the release tried again. */
static void release_turn(nk_node_driver *d, nk_node *node)
{
    int64_t until = nk_node_driver_now() + RELEASE_WAIT_MS;
    if (nk_node_release_turn(node, nk_node_driver_now()) != 0)
        return;
    while (!nk_node_turn_released(node) && nk_node_driver_now() < until)
        nk_node_driver_poll(d, 20, -1);
}

int p2p_run(p2p_opts *o)
{
    nk_identity id;
    run_state *st;
    nk_node_driver *d;

    if (cli_load_key(o->cmd, o->key_file, &id) != 0)
        return CLI_EXIT_FAIL;
    if (o->have_peer && memcmp(&o->peer, &id.id, sizeof(o->peer)) == 0) {
        char idtext[NK_PEER_ID_STRLEN];
        nk_peer_id_format(&o->peer, idtext, sizeof(idtext));
        nk_identity_wipe(&id);
        return cli_usage_error(o->cmd, "%s is this host's own peer ID (from %s); a peer cannot connect to itself: "
                               "give the ID of another peer", idtext,
                               o->key_file != NULL ? o->key_file : "the default key");
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        nk_identity_wipe(&id);
        return CLI_EXIT_FAIL;
    }
    st->o = o;
    st->lfd = -1;
    if (fwd_pump_init(&st->io, STDIN_FILENO, STDOUT_FILENO, 0) != 0) {
        nk_identity_wipe(&id);
        free(st);
        return CLI_EXIT_FAIL;
    }
    o->drv.node.identity = &id;
    o->drv.on_event = on_event;
    o->drv.ctx = st;
    cli_install_stop_signals();
    int rc = o->have_local ? open_local(st) : 0;
    if (rc == 0 && (rc = nk_node_driver_open(&d, &o->drv)) != 0)
        cli_fail_nk(o->cmd, CLI_EXIT_FAIL, rc, "start");
    if (rc != 0) {
        nk_identity_wipe(&id);
        o->drv.node.identity = NULL;
        if (st->lfd >= 0)
            close(st->lfd);
        fwd_pump_free(&st->io);
        free(st);
        return CLI_EXIT_FAIL;
    }
    st->d = d;
    nk_addr local;
    nk_node_driver_local(d, &local);
    st->udp_local = local;
    int ctl_fatal; /* the control socket is there before the line that says we started */
    if ((st->ctl = p2p_ctl_open(o, d, &ctl_fatal)) == NULL && ctl_fatal) {
        nk_identity_wipe(&id);
        o->drv.node.identity = NULL;
        nk_node_driver_free(d);
        fwd_pump_free(&st->io);
        free(st);
        return CLI_EXIT_FAIL;
    }
    announce_id(st, &id, &local);
    nk_identity_wipe(&id); /* the node keeps its own copy */
    o->drv.node.identity = NULL;
    st->stdout_kind = fwd_out_kind(STDOUT_FILENO);
    if (!o->have_peer && !o->have_forward && isatty(STDIN_FILENO)) {
        st->stdin_tty = 1;
        signal(SIGTTIN, SIG_IGN); /* a read in the background fails (EIO) instead of stopping us */
    }
    st->io.out_kind = st->stdout_kind;

    nk_node *node = nk_node_driver_node(d);
    int64_t start = nk_node_driver_now();
    if (o->have_peer && (rc = o->have_addr ? nk_node_connect_direct(node, start, &o->peer, &o->addr, &st->conn)
                                           : nk_node_connect(node, start, &o->peer, &st->conn)) != 0) {
        cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "cannot connect: %s", nk_strerror(rc));
        ctl_close(st->ctl);
        nk_node_driver_free(d);
        fwd_pump_free(&st->io);
        free(st);
        return CLI_EXIT_FAIL;
    }
    int status = CLI_EXIT_OK, finished = 0;
    while (!cli_stop_requested) {
        if ((rc = poll_once(st)) < 0) {
            cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "the event loop failed: %s", nk_strerror(rc));
            status = CLI_EXIT_FAIL;
            break;
        }
        if (st->stdout_failed || st->stdin_failed || (st->hub_failed && (st->conn == NULL || !st->connected))) {
            status = CLI_EXIT_FAIL; /* no hub will ever answer: nobody can reach us (connect: nor them) */
            break;
        }
        int64_t now = nk_node_driver_now();
        if (st->conn == NULL)
            continue; /* listen: runs until stopped (or its stdout fails) */
        if (st->refused) {
            status = cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "refused by the listener: %s", st->refused_why);
            break;
        }
        if (st->retry_at != 0 && now >= st->retry_at && now - start <= o->connect_timeout_ms) {
            nk_conn_close(st->conn, now); /* over (DISCONNECTED): a new ask through the hub */
            st->retry_at = 0;
            forget_peer(st, st->conn);
            if ((rc = nk_node_connect(node, now, &o->peer, &st->conn)) != 0) {
                st->conn = NULL;
                status = cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "cannot connect: %s", nk_strerror(rc));
                break;
            }
        }
        if (st->failed || (!st->connected && now - start > o->connect_timeout_ms)) {
            if (!st->failed && st->waiting_for[0] != '\0')
                cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "could not connect within %ld s: %s", o->connect_timeout_ms / 1000,
                         st->waiting_for);
            else if (!st->failed)
                cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "could not connect within %ld s", o->connect_timeout_ms / 1000);
            else
                cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "could not connect: %s",
                         st->gone_reason != NULL ? st->gone_reason : "unknown");
            status = CLI_EXIT_FAIL;
            break;
        }
        if (!o->have_local && st->io_ready && fwd_pump_done(&st->io)) {
            if (st->io.failed) {
                cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "the stream failed: %s", st->io.why);
                status = CLI_EXIT_FAIL;
                break;
            }
            long long ms = (long long)(now - st->io_start);
            if (o->json)
                fprintf(stderr, "{\"event\":\"done\",\"sent\":%llu,\"received\":%llu,\"ms\":%lld}\n",
                        (unsigned long long)st->io.bytes_up, (unsigned long long)st->io.bytes_down, ms);
            else
                fprintf(stderr, "natkit %s: done: %llu bytes sent and on the peer's output, %llu received, in %lld ms\n", o->cmd,
                        (unsigned long long)st->io.bytes_up, (unsigned long long)st->io.bytes_down, ms);
            finished = 1;
            break;
        }
        if (st->peer_gone) {
            /* before everything both ways was delivered (or, with --local, at all) */
            if (!o->have_local)
                cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "lost the peer before the transfer ended (%s): %zu bytes sent were not acknowledged, %s, %s",
                        st->gone_reason != NULL ? st->gone_reason : "unknown",
                        st->io_ready ? fwd_pump_unacked(&st->io) : 0,
                        st->io.delivered ? "the peer had confirmed that our bytes reached its output"
                                         : "the peer had not confirmed that our bytes reached its output",
                        st->io.peer_fin ? "its end of the stream had arrived" : "its end of the stream had not arrived");
            else
                cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "lost the peer: %s",
                        st->gone_reason != NULL ? st->gone_reason : "unknown");
            status = CLI_EXIT_FAIL;
            break;
        }
    }
    if (cli_stop_requested && status == CLI_EXIT_OK && !finished && st->conn != NULL && !o->have_local) {
        /* connect (stdin/stdout) stopped before the peer had everything: not a success */
        cli_fail(o->cmd, CLI_EXIT_FAIL, 0, "stopped by a signal before the transfer ended: %s",
                !st->io_ready ? "no stream yet"
                : st->io.delivered ? "the peer had not ended its side"
                                   : "the peer had not confirmed that our bytes reached its output");
        status = CLI_EXIT_FAIL;
    }
    ctl_close(st->ctl); /* the socket file goes first: status no longer finds a process that is ending */
    st->ctl = NULL;
    /* why we stop, for the peers (their DISCONNECTED says "peer closed the connection: WHY") */
    const char *why = cli_stop_requested ? "stopped"
                      : st->stdout_failed ? "stopped: writing stdout failed"
                      : st->stdin_failed ? "stopped: reading stdin failed"
                      : status != CLI_EXIT_OK ? "stopped: failed" : NULL;
    uint64_t code = why != NULL ? CLOSE_STOPPED : 0;
    while (st->nfwd > 0)
        close_fwd(st, 0);
    for (size_t i = 0; i < st->npeers; i++) { /* listen: every peer is told (DISCONNECTED there) */
        p2p_tcp_free(st->peers[i].tcp);
        if (st->peers[i].conn != st->conn)
            nk_conn_close_ex(st->peers[i].conn, nk_node_driver_now(), code, why);
    }
    st->npeers = 0;
    if (st->conn != NULL)
        nk_conn_close_ex(st->conn, nk_node_driver_now(), code, why);
    /* the closes go out (each waits up to 3 s for what was sent to be acknowledged) */
    int64_t until = nk_node_driver_now() + 3500;
    do
        nk_node_driver_poll(d, 20, -1);
    while (nk_node_conn_count(node) > 0 && nk_node_driver_now() < until);
    release_turn(d, node);
    nk_node_driver_free(d);
    if (st->lfd >= 0)
        close(st->lfd);
    fwd_pump_free(&st->io);
    free(st->fwd);
    free(st->pf);
    free(st);
    return status;
}

/* ---- options ---- */

/* One more HOST:PORT into list (room for max); with both, a name of both families adds both. */
static int parse_addr_list(const char *cmd, const char *flag, const char *text, nk_addr *list, size_t *n,
                           size_t max, int both, uint16_t default_port)
{
    nk_addr got[2];
    if (*n >= max)
        return cli_usage_error(cmd, "at most %zu %s", max, flag);
    int k = both ? nk_addr_resolve_families(got, text, default_port) : nk_addr_resolve(got, text, default_port);
    if (k < 0)
        return cli_usage_error(cmd, "%s '%s': not a HOST:PORT that resolves", flag, text);
    if (!both)
        k = 1;
    for (int i = 0; i < k && *n < max; i++)
        list[(*n)++] = got[i];
    return 0;
}

static int add_allow(p2p_opts *o, const nk_peer_id *id)
{
    nk_peer_id *n = realloc(o->allow, (o->nallow + 1) * sizeof(*n));
    if (n == NULL)
        return -1;
    o->allow = n;
    o->allow[o->nallow++] = *id;
    o->have_allow = 1;
    return 0;
}

/* --allow-file: one peer ID a line; blank lines and '#' comments are skipped. */
static int load_allow_file(p2p_opts *o, const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return cli_fail(o->cmd, CLI_EXIT_FAIL, errno, "cannot read --allow-file '%s'", file);
    char line[512];
    int lineno = 0, rc = 0;
    o->have_allow = 1; /* an empty file allows nobody */
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *p = line, *end;
        while (*p == ' ' || *p == '\t')
            p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
            *--end = '\0';
        if (*p == '\0')
            continue;
        nk_peer_id id;
        if (nk_peer_id_parse(&id, p) != 0)
            rc = cli_usage_error(o->cmd, "--allow-file %s line %d: '%.60s' is not a peer ID (52 base32 characters)",
                                 file, lineno, p);
        else if (add_allow(o, &id) != 0)
            rc = cli_usage_error(o->cmd, "--allow-file %s: out of memory", file);
    }
    fclose(f);
    return rc;
}

void p2p_opts_free(p2p_opts *o)
{
    memset(o->turn_pass, 0, sizeof(o->turn_pass)); /* (the node has its own copy) */
    free(o->allow);
    o->allow = NULL;
    o->nallow = 0;
}

int p2p_parse(p2p_opts *o, int argc, char **argv, int want_peer, void (*usage)(FILE *out), int *exit_now)
{
    static const struct option opts[] = {
        {"hub", required_argument, NULL, 'H'},  {"stun", required_argument, NULL, 's'},
        {"turn", required_argument, NULL, 't'}, {"user", required_argument, NULL, 'u'},
        {"pass", required_argument, NULL, 'p'}, {"key", required_argument, NULL, 'k'},
        {"bind", required_argument, NULL, 'b'}, {"json", no_argument, NULL, 'j'},
        {"hub-tls", no_argument, NULL, 'T'},    {"hub-ca", required_argument, NULL, 'C'},
        {"keepalive", required_argument, NULL, 'K'}, {"timeout", required_argument, NULL, 'w'},
        {"peer", required_argument, NULL, 'P'}, {"tcp", no_argument, NULL, 'c'},
        {"local", required_argument, NULL, 'L'}, {"forward", required_argument, NULL, 'F'},
        {"allow", required_argument, NULL, 'A'}, {"allow-file", required_argument, NULL, 'f'},
        {"cc", required_argument, NULL, 'Z'},   {"help", no_argument, NULL, 'h'},
        {"control", required_argument, NULL, 'X'},
        {"pass-file", required_argument, NULL, 'W'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = o->cmd;
    long ms;
    int ch, rc;
    size_t nturn = 0;

    *exit_now = 0;
    o->connect_timeout_ms = 30000;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "H:s:t:u:p:k:b:jTC:K:w:P:L:F:A:f:Z:X:W:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'H': /* repeatable: tried in turn (node.md, "Hub reconnection") */
            if (o->drv.node.nhubs >= NK_NODE_MAX_HUBS)
                return *exit_now = 1, cli_usage_error(cmd, "--hub '%s': at most %d hubs", optarg, NK_NODE_MAX_HUBS);
            if (nk_addr_resolve(&o->drv.node.hubs[o->drv.node.nhubs], optarg, 0) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "--hub '%s': not a HOST:PORT that resolves", optarg);
            o->drv.node.hub = o->drv.node.hubs[0];
            o->drv.node.nhubs++;
            break;
        case 's':
            if ((rc = parse_addr_list(cmd, "--stun", optarg, o->drv.node.stun, &o->drv.node.nstun, NK_NODE_MAX_ADDRS, 1, 3478)) != 0)
                return *exit_now = 1, rc;
            break;
        case 't':
            if ((rc = parse_addr_list(cmd, "--turn", optarg, &o->drv.node.turn, &nturn, 1, 0, 3478)) != 0 || nturn > 1)
                return *exit_now = 1, rc != 0 ? rc : cli_usage_error(cmd, "one --turn server at most");
            break;
        case 'u':
            o->drv.node.turn_user = optarg;
            break;
        case 'p':
        case 'W':
            if (o->have_pass)
                return *exit_now = 1, cli_usage_error(cmd, "one of --pass and --pass-file");
            o->have_pass = 1;
            if ((rc = ch == 'p' ? cli_pass_arg(cmd, optarg, o->turn_pass, sizeof(o->turn_pass))
                                : cli_secret_file(cmd, "--pass-file", optarg, o->turn_pass, sizeof(o->turn_pass))) != 0)
                return *exit_now = 1, rc;
            break;
        case 'k':
            o->key_file = optarg;
            break;
        case 'b':
            if (nk_addr_parse(&o->drv.bind, optarg) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "--bind '%s': want IP:PORT", optarg);
            break;
        case 'j':
            o->json = 1;
            break;
        case 'T':
            o->drv.hub_tls = 1;
            break;
        case 'C':
            o->drv.hub_ca_file = optarg;
            break;
        case 'K':
            if (cli_parse_seconds(optarg, 1000, 25000, &ms) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "--keepalive '%s': want seconds between 1 and 25", optarg);
            o->drv.node.keepalive_ms = ms;
            break;
        case 'Z':
            if (strcmp(optarg, "cubic") == 0)
                o->drv.node.cc = NK_QUIC_CC_CUBIC;
            else if (strcmp(optarg, "bbr") == 0)
                o->drv.node.cc = NK_QUIC_CC_BBR;
            else if (strcmp(optarg, "reno") == 0)
                o->drv.node.cc = NK_QUIC_CC_RENO;
            else
                return *exit_now = 1, cli_usage_error(cmd, "--cc '%s': want cubic, bbr or reno", optarg);
            break;
        case 'w':
            if (cli_parse_seconds(optarg, 1000, 3600 * 1000, &o->connect_timeout_ms) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "--timeout '%s': want seconds between 1 and 3600", optarg);
            break;
        case 'P':
            if (!want_peer)
                return *exit_now = 1, cli_usage_error(cmd, "--peer is for natkit connect");
            if (nk_addr_resolve(&o->addr, optarg, 0) != 0 || o->addr.port == 0)
                return *exit_now = 1, cli_usage_error(cmd, "--peer '%s': want the peer's public IP:PORT", optarg);
            o->have_addr = 1;
            break;
        case 'c':
            if (!want_peer)
                return *exit_now = 1, cli_usage_error(cmd, "--tcp is for natkit connect (listen answers by itself)");
            o->tcp = 1;
            break;
        case 'L':
            if (!want_peer)
                return *exit_now = 1, cli_usage_error(cmd, "--local is for natkit connect (listen has --forward)");
            if (nk_addr_parse(&o->local, optarg) != 0 || o->local.port == 0)
                return *exit_now = 1, cli_usage_error(cmd, "--local '%s': want the local IP:PORT to listen on (e.g. 127.0.0.1:8080)", optarg);
            o->have_local = 1;
            break;
        case 'F':
            if (want_peer)
                return *exit_now = 1, cli_usage_error(cmd, "--forward is for natkit listen (connect has --local)");
            if (nk_addr_resolve(&o->forward, optarg, 0) != 0 || o->forward.port == 0)
                return *exit_now = 1, cli_usage_error(cmd, "--forward '%s': want the HOST:PORT of a TCP service that resolves", optarg);
            o->have_forward = 1;
            break;
        case 'A': {
            nk_peer_id pid;
            if (want_peer)
                return *exit_now = 1, cli_usage_error(cmd, "--allow is for natkit listen");
            if (nk_peer_id_parse(&pid, optarg) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "--allow '%s': not a peer ID (52 base32 characters)", optarg);
            if (add_allow(o, &pid) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "out of memory");
            break;
        }
        case 'f':
            if (want_peer)
                return *exit_now = 1, cli_usage_error(cmd, "--allow-file is for natkit listen");
            if ((rc = load_allow_file(o, optarg)) != 0)
                return *exit_now = 1, rc;
            break;
        case 'X':
            o->control = optarg;
            break;
        case 'h':
            usage(stdout);
            *exit_now = 1;
            return CLI_EXIT_OK;
        default:
            return *exit_now = 1, cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (want_peer) {
        if (optind >= argc)
            return *exit_now = 1, cli_usage_error(cmd, "which peer? (natkit connect PEER_ID --hub HOST:PORT)");
        if (nk_peer_id_parse(&o->peer, argv[optind]) != 0)
            return *exit_now = 1, cli_usage_error(cmd, "'%s' is not a peer ID (52 base32 characters)", argv[optind]);
        o->have_peer = 1;
        optind++;
    }
    if (optind < argc)
        return *exit_now = 1, cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (o->drv.node.hub.family == NK_AF_NONE && !o->have_addr)
        return *exit_now = 1, cli_usage_error(cmd, want_peer ? "no hub given (--hub HOST:PORT, or --peer IP:PORT without a hub)"
                                                                : "no hub given (--hub HOST:PORT)");
    if (o->drv.node.hub.family != NK_AF_NONE && o->have_addr)
        return *exit_now = 1, cli_usage_error(cmd, "--peer (no hub) and --hub do not go together");
    if (o->have_forward && !o->have_allow)
        return *exit_now = 1, cli_usage_error(cmd, "--forward needs --allow PEER_ID or --allow-file FILE (who may use it)");
    if (o->have_local && o->tcp)
        return *exit_now = 1, cli_usage_error(cmd, "--local and --tcp do not go together");
    if (nturn > 0 && cli_pass_env(cmd, o->turn_pass, sizeof(o->turn_pass)) != 0)
        return *exit_now = 1, CLI_EXIT_USAGE;
    if (o->turn_pass[0] != '\0')
        o->drv.node.turn_pass = o->turn_pass;
    if (nturn > 0 && (o->drv.node.turn_user == NULL || o->drv.node.turn_pass == NULL))
        return *exit_now = 1, cli_usage_error(cmd, "--turn needs --user and a password (--pass-file FILE, $%s or --pass P)",
                                              CLI_PASS_ENV);
    return 0;
}
