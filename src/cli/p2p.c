/*
 * natkit CLI: the loop behind `natkit listen` and `natkit connect`. Lines
 * typed on stdin go to the connected peer(s) as messages; messages from
 * peers are printed on stdout, one per line; status goes to stderr (one JSON
 * object per line with --json).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "natkit/node_driver.h"
#include "natkit/tcp.h"
#include "p2p.h"
#include "p2p_tcp.h"

#define LINE_MAX_BYTES 1100
#define DRAIN_TIMEOUT_MS 10000
#define MAX_PEERS        1024
#define MAX_TCP_STREAMS  16 /* poll slots; more peers stay on UDP */
#define RAW_CHUNK        65536

/* A connected peer and its TCP upgrade (NULL until one is asked for). */
typedef struct peer_slot {
    nk_conn *conn;
    p2p_tcp *tcp;
} peer_slot;

typedef struct run_state {
    p2p_opts *o;
    nk_conn *conn;            /* connect: our one connection */
    int connected;            /* connect: connected at least once */
    int failed;               /* connect: gave up; exit 1 */
    int peer_gone;
    size_t nconnected;        /* listen: how many peers are connected */
    char inbuf[LINE_MAX_BYTES + 1];
    size_t inlen;
    char held[LINE_MAX_BYTES];  /* connect: a line the connection had no room for yet */
    size_t held_len;
    int holding;              /* 1: held waits (stdin is not read meanwhile) */
    int stdin_open;
    nk_addr udp_local;
    peer_slot peers[MAX_PEERS];
    size_t npeers;
    uint8_t raw[RAW_CHUNK];   /* connect --tcp: stdin bytes not yet taken by the stream */
    size_t raw_off, raw_len;
} run_state;

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
        ps->conn = c;
        ps->tcp = NULL;
    }
    return ps;
}

/* The peer's TCP upgrade, made on first use (NULL when out of slots). */
static p2p_tcp *peer_tcp(run_state *st, nk_conn *c)
{
    peer_slot *ps = add_peer(st, c);
    if (ps == NULL)
        return NULL;
    if (ps->tcp == NULL && tcp_count(st) < MAX_TCP_STREAMS) {
        p2p_tcp_config tc;
        memset(&tc, 0, sizeof(tc));
        tc.conn = c;
        tc.requester = st->o->tcp && c == st->conn;
        tc.udp_local = st->udp_local;
        tc.cmd = st->o->cmd;
        tc.json = st->o->json;
        if (p2p_tcp_new(&ps->tcp, &tc) != 0)
            ps->tcp = NULL;
    }
    return ps->tcp;
}

static void forget_peer(run_state *st, const nk_conn *c)
{
    peer_slot *ps = find_peer(st, c);
    if (ps == NULL)
        return;
    p2p_tcp_free(ps->tcp);
    *ps = st->peers[--st->npeers];
}

static int tcp_up(run_state *st, const nk_conn *c)
{
    peer_slot *ps = find_peer(st, c);
    return ps != NULL && ps->tcp != NULL && p2p_tcp_state(ps->tcp) == P2P_TCP_UP;
}

static const char *fmt_addr(const nk_addr *a, char *buf)
{
    buf[0] = '\0';
    if (a->family != NK_AF_NONE)
        nk_addr_format(a, buf, NK_ADDR_STRLEN);
    return buf;
}

static void print_path_event(run_state *st, const char *what, const nk_node_event *ev)
{
    char id[NK_PEER_ID_STRLEN], l[NK_ADDR_STRLEN], r[NK_ADDR_STRLEN];
    nk_peer_id_format(&ev->peer, id, sizeof(id));
    fmt_addr(&ev->path.local, l);
    fmt_addr(&ev->path.remote, r);
    if (st->o->json) {
        fprintf(stderr, "{\"event\":\"%s\",\"peer\":\"%s\",\"path\":\"%s\",\"local\":\"%s\",\"remote\":\"%s\",\"rtt_ms\":%lld",
                what, id, nk_path_kind_name(ev->path.kind), l, r, (long long)ev->rtt_ms);
        if (ev->type == NK_NODE_EV_CONNECTED)
            fprintf(stderr, ",\"connect_ms\":%lld", (long long)ev->connect_ms);
        else
            fprintf(stderr, ",\"from\":\"%s\"", nk_path_kind_name(ev->prev.kind));
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

static void print_simple(run_state *st, const char *event, const char *key, const char *value, const char *text)
{
    if (st->o->json)
        fprintf(stderr, "{\"event\":\"%s\",\"%s\":\"%s\"}\n", event, key, value);
    else
        fprintf(stderr, "natkit %s: %s\n", st->o->cmd, text);
}

static void on_disconnected(run_state *st, const nk_node_event *ev)
{
    char id[NK_PEER_ID_STRLEN];
    nk_peer_id_format(&ev->peer, id, sizeof(id));
    if (st->o->json)
        fprintf(stderr, "{\"event\":\"disconnected\",\"peer\":\"%s\",\"reason\":\"%s\"}\n", id,
                ev->reason != NULL ? ev->reason : "unknown");
    else
        fprintf(stderr, "natkit %s: disconnected from %s: %s\n", st->o->cmd, id,
                ev->reason != NULL ? ev->reason : "unknown");
    if (ev->conn != NULL && ev->conn == st->conn) {
        st->peer_gone = 1;
        if (!st->connected)
            st->failed = 1;
    }
    if (ev->conn != NULL) {
        forget_peer(st, ev->conn);
        if (nk_conn_is_connected(ev->conn) || st->nconnected > 0)
            st->nconnected -= st->nconnected > 0;
        if (ev->conn != st->conn)
            nk_conn_close(ev->conn, nk_node_driver_now());
    }
}

static void print_messages(run_state *st, nk_conn *c)
{
    uint8_t buf[65536];
    int n;
    while ((n = nk_conn_recv(c, buf, sizeof(buf))) >= 0) {
        if (nk_upgrade_is_message(buf, (size_t)n)) {
            p2p_tcp *t = peer_tcp(st, c);
            if (t != NULL)
                p2p_tcp_on_message(t, nk_node_driver_now(), buf, (size_t)n);
            continue; /* TCP upgrade control, not a line */
        }
        fwrite(buf, 1, (size_t)n, stdout);
        fputc('\n', stdout);
    }
    fflush(stdout);
}

static void on_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    run_state *st = ctx;
    char buf[NK_PEER_ID_STRLEN > NK_ADDR_STRLEN ? NK_PEER_ID_STRLEN : NK_ADDR_STRLEN];
    char line[256];
    (void)d;
    switch (ev->type) {
    case NK_NODE_EV_REGISTERED:
        nk_addr_format(&ev->addr, buf, sizeof(buf));
        snprintf(line, sizeof(line), "registered at the hub (which sees our TCP connection from %s)", buf);
        print_simple(st, "registered", "hub_sees", buf, line);
        break;
    case NK_NODE_EV_HUB_CLOSED:
        snprintf(line, sizeof(line), "hub connection closed: %s", ev->reason != NULL ? ev->reason : "");
        print_simple(st, "hub-closed", "reason", ev->reason != NULL ? ev->reason : "", line);
        break;
    case NK_NODE_EV_INCOMING:
        nk_peer_id_format(&ev->peer, buf, sizeof(buf));
        snprintf(line, sizeof(line), "%s is connecting", buf);
        print_simple(st, "incoming", "peer", buf, line);
        break;
    case NK_NODE_EV_CONNECTED:
        st->connected = 1;
        st->nconnected++;
        if (ev->conn != NULL)
            add_peer(st, ev->conn);
        print_path_event(st, "connected", ev);
        if (st->o->tcp && ev->conn != NULL && ev->conn == st->conn && peer_tcp(st, ev->conn) != NULL)
            p2p_tcp_on_path(peer_tcp(st, ev->conn), nk_node_driver_now());
        break;
    case NK_NODE_EV_PATH_CHANGED:
        print_path_event(st, "path-changed", ev);
        if (st->o->tcp && ev->conn != NULL && ev->conn == st->conn && peer_tcp(st, ev->conn) != NULL)
            p2p_tcp_on_path(peer_tcp(st, ev->conn), nk_node_driver_now());
        break;
    case NK_NODE_EV_READABLE:
        if (ev->conn != NULL)
            print_messages(st, ev->conn);
        break;
    case NK_NODE_EV_DISCONNECTED:
        on_disconnected(st, ev);
        break;
    case NK_NODE_EV_WRITABLE: /* a held line is retried by the loop */
    default:
        break;
    }
    fflush(stderr);
}

/* One line to one peer: over its TCP stream when it has one (with the newline), else as a message. */
static void send_line_to(run_state *st, nk_conn *c, const char *line, size_t len)
{
    if (tcp_up(st, c)) {
        p2p_tcp *t = find_peer(st, c)->tcp;
        if (p2p_tcp_write(t, (const uint8_t *)line, len) != (int)len || p2p_tcp_write(t, (const uint8_t *)"\n", 1) != 1)
            fprintf(stderr, "natkit %s: TCP send buffer full, line cut\n", st->o->cmd);
        return;
    }
    int rc = nk_conn_send(c, nk_node_driver_now(), (const uint8_t *)line, len);
    if (rc == NK_ERR_AGAIN && c == st->conn) { /* connect: wait for room (WRITABLE), never drop */
        memcpy(st->held, line, len);
        st->held_len = len;
        st->holding = 1;
    } else if (rc != 0) {
        fprintf(stderr, "natkit %s: %s, line dropped\n", st->o->cmd, nk_strerror(rc));
    }
}

/* Sends one typed line to the peer (connect) or to every connected peer (listen). */
static void send_line(run_state *st, nk_node *node, const char *line, size_t len)
{
    if (len == 0)
        return;
    if (st->conn != NULL) {
        send_line_to(st, st->conn, line, len);
        return;
    }
    if (st->npeers < st->nconnected) { /* more peers than slots: no TCP streams for the rest */
        nk_node_broadcast(node, nk_node_driver_now(), (const uint8_t *)line, len);
        return;
    }
    for (size_t i = 0; i < st->npeers; i++)
        if (nk_conn_is_connected(st->peers[i].conn))
            send_line_to(st, st->peers[i].conn, line, len);
}

/* Sends the whole lines read so far, until one has to be held. */
static void send_lines(run_state *st, nk_node *node)
{
    char *start = st->inbuf, *nl;
    while (!st->holding && (nl = memchr(start, '\n', st->inlen - (size_t)(start - st->inbuf))) != NULL) {
        send_line(st, node, start, (size_t)(nl - start));
        start = nl + 1;
    }
    size_t rest = st->inlen - (size_t)(start - st->inbuf);
    if (!st->holding && rest == LINE_MAX_BYTES) { /* a line longer than the buffer: send it in pieces */
        send_line(st, node, start, rest);
        rest = 0;
    }
    memmove(st->inbuf, start, rest);
    st->inlen = rest;
}

static void read_stdin(run_state *st, nk_node *node)
{
    ssize_t n = read(STDIN_FILENO, st->inbuf + st->inlen, LINE_MAX_BYTES - st->inlen);
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            st->stdin_open = 0;
        return;
    }
    st->inlen += (size_t)n;
    send_lines(st, node);
}

/* connect: the held line goes as soon as the connection has room, then the lines behind it. */
static void retry_held(run_state *st, nk_node *node)
{
    if (!st->holding || st->conn == NULL)
        return;
    if (st->peer_gone) {
        st->holding = 0;
        return;
    }
    if (nk_conn_send(st->conn, nk_node_driver_now(), (const uint8_t *)st->held, st->held_len) != 0)
        return;
    st->holding = 0;
    send_lines(st, node);
}

static int load_key(p2p_opts *o, nk_identity *id)
{
    char path[PATH_MAX];
    const char *file = o->key_file;
    if (file == NULL) {
        if (nk_identity_default_path(path, sizeof(path)) != 0) {
            fprintf(stderr, "natkit %s: no default key path (set HOME or use --key)\n", o->cmd);
            return -1;
        }
        file = path;
        if (access(file, F_OK) != 0) {
            if (nk_identity_generate(id) != 0 || nk_identity_save(id, file) != 0) {
                fprintf(stderr, "natkit %s: could not create a key at %s\n", o->cmd, file);
                return -1;
            }
            fprintf(stderr, "natkit %s: made a new identity key at %s\n", o->cmd, file);
            return 0;
        }
    }
    int rc = nk_identity_load(id, file);
    if (rc != 0) {
        fprintf(stderr, "natkit %s: cannot load key %s: %s\n", o->cmd, file, nk_strerror(rc));
        return -1;
    }
    return 0;
}

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

/* connect: stdin closed and everything sent was acknowledged (or the wait ran out); over TCP,
 * both directions of the stream ended. */
static int drained(run_state *st, int64_t since)
{
    if (st->conn == NULL || nk_node_driver_now() - since > DRAIN_TIMEOUT_MS)
        return 1;
    if (tcp_up(st, st->conn)) {
        p2p_tcp *t = find_peer(st, st->conn)->tcp;
        p2p_tcp_shutdown(t);
        if (!p2p_tcp_finished(t))
            return 0;
    }
    return nk_conn_unacked(st->conn) == 0;
}

/* connect --tcp: stdin waits while the TCP stream is being made, and while the stream has not
 * taken what was read. */
static int stdin_held(const run_state *st)
{
    if (st->conn == NULL || !st->o->tcp)
        return 0;
    const peer_slot *ps = find_peer((run_state *)st, st->conn);
    if (ps == NULL || ps->tcp == NULL)
        return 0;
    return p2p_tcp_state(ps->tcp) == P2P_TCP_BUSY || st->raw_len > 0;
}

/* connect over TCP: stdin is a byte stream (no lines, no size limit). */
static void read_raw(run_state *st)
{
    if (st->inlen > 0) { /* a partial line read before the stream was up goes first */
        memcpy(st->raw, st->inbuf, st->inlen);
        st->raw_off = 0;
        st->raw_len = st->inlen;
        st->inlen = 0;
        return;
    }
    ssize_t n = read(STDIN_FILENO, st->raw, sizeof(st->raw));
    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN))
            st->stdin_open = 0;
        return;
    }
    st->raw_off = 0;
    st->raw_len = (size_t)n;
}

static void push_raw(run_state *st)
{
    if (st->raw_len == 0 || !tcp_up(st, st->conn))
        return;
    int n = p2p_tcp_write(find_peer(st, st->conn)->tcp, st->raw + st->raw_off, st->raw_len);
    if (n < 0) {
        fprintf(stderr, "natkit %s: TCP stream: %s; %zu bytes of stdin lost\n", st->o->cmd, nk_strerror(n),
                st->raw_len);
        st->raw_len = 0;
        return;
    }
    st->raw_off += (size_t)n;
    st->raw_len -= (size_t)n;
}

/* One turn of the loop: the node, stdin and every TCP stream, each served when it is due. */
static int poll_once(run_state *st, nk_node_driver *d)
{
    struct pollfd pf[1 + P2P_TCP_FDS * MAX_TCP_STREAMS];
    const nk_conn *owner[1 + MAX_TCP_STREAMS];
    unsigned nf = 0;
    int64_t now = nk_node_driver_now(), wait = 200;
    retry_held(st, nk_node_driver_node(d));
    int want_stdin = st->stdin_open && (st->conn == NULL || st->connected) && !stdin_held(st) && !st->holding;
    pf[nf] = (struct pollfd){.fd = want_stdin ? STDIN_FILENO : -1, .events = POLLIN};
    owner[nf++] = NULL;
    unsigned no = 1;
    for (size_t i = 0; i < st->npeers && no < 1 + MAX_TCP_STREAMS; i++) {
        if (st->peers[i].tcp == NULL)
            continue;
        p2p_tcp_pollfds(st->peers[i].tcp, &pf[nf]);
        nf += P2P_TCP_FDS;
        owner[no++] = st->peers[i].conn;
        int64_t due = p2p_tcp_deadline(st->peers[i].tcp) - now;
        if (due < wait)
            wait = due < 0 ? 0 : due;
    }
    int ready = nk_node_driver_poll_fds(d, (int)wait, pf, nf);
    if (ready < 0)
        return ready;
    now = nk_node_driver_now();
    for (unsigned i = 1; i < no; i++) {
        peer_slot *ps = find_peer(st, owner[i]); /* a peer that left during the poll is gone */
        if (ps != NULL && ps->tcp != NULL)
            p2p_tcp_service(ps->tcp, now, &pf[1 + (i - 1) * P2P_TCP_FDS]);
    }
    if (pf[0].revents & (POLLIN | POLLHUP)) {
        if (st->conn != NULL && tcp_up(st, st->conn))
            read_raw(st);
        else
            read_stdin(st, nk_node_driver_node(d));
    }
    push_raw(st);
    return 0;
}

int p2p_run(p2p_opts *o)
{
    nk_identity id;
    run_state st;
    nk_node_driver *d;

    if (load_key(o, &id) != 0)
        return CLI_EXIT_FAIL;
    memset(&st, 0, sizeof(st));
    st.o = o;
    st.stdin_open = 1;
    o->drv.node.identity = &id;
    o->drv.on_event = on_event;
    o->drv.ctx = &st;
    int rc = nk_node_driver_open(&d, &o->drv);
    if (rc != 0) {
        nk_identity_wipe(&id);
        fprintf(stderr, "natkit %s: cannot start: %s\n", o->cmd, nk_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    nk_addr local;
    nk_node_driver_local(d, &local);
    st.udp_local = local;
    announce_id(&st, &id, &local);
    nk_identity_wipe(&id); /* the node keeps its own copy */
    o->drv.node.identity = NULL;
    cli_install_stop_signals();

    nk_node *node = nk_node_driver_node(d);
    int64_t start = nk_node_driver_now(), eof_at = -1;
    if (o->have_peer && (rc = o->have_addr ? nk_node_connect_direct(node, start, &o->peer, &o->addr, &st.conn)
                                           : nk_node_connect(node, start, &o->peer, &st.conn)) != 0) {
        fprintf(stderr, "natkit %s: cannot connect: %s\n", o->cmd, nk_strerror(rc));
        nk_node_driver_free(d);
        return CLI_EXIT_FAIL;
    }
    int status = CLI_EXIT_OK;
    while (!cli_stop_requested) {
        if (poll_once(&st, d) < 0)
            break;
        int64_t now = nk_node_driver_now();
        if (st.conn == NULL)
            continue; /* listen: runs until stopped */
        if (st.failed || (!st.connected && now - start > o->connect_timeout_ms)) {
            if (!st.failed)
                fprintf(stderr, "natkit %s: could not connect within %ld s\n", o->cmd, o->connect_timeout_ms / 1000);
            status = CLI_EXIT_FAIL;
            break;
        }
        if (st.peer_gone)
            break;
        if (!st.stdin_open && st.raw_len == 0 && st.connected && !stdin_held(&st) && !st.holding) {
            if (eof_at < 0)
                eof_at = now;
            if (drained(&st, eof_at))
                break;
        }
    }
    if (st.conn != NULL && !st.peer_gone)
        nk_conn_close(st.conn, nk_node_driver_now());
    nk_node_driver_poll(d, 0, -1); /* the close goes out */
    while (st.npeers > 0)
        forget_peer(&st, st.peers[0].conn);
    nk_node_driver_free(d);
    return status;
}

/* ---- options ---- */

static int parse_addr_list(const char *cmd, const char *flag, const char *text, nk_addr *list, size_t *n,
                           uint16_t default_port)
{
    if (*n == NK_NODE_MAX_ADDRS)
        return cli_usage_error(cmd, "at most %d %s", NK_NODE_MAX_ADDRS, flag);
    if (nk_addr_resolve(&list[*n], text, default_port) != 0)
        return cli_usage_error(cmd, "%s '%s': not a HOST:PORT that resolves", flag, text);
    (*n)++;
    return 0;
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
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *cmd = o->cmd;
    long ms;
    int ch, rc;
    size_t nturn = 0;

    *exit_now = 0;
    o->connect_timeout_ms = 30000;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "H:s:t:u:p:k:b:jTC:K:w:P:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'H':
            if (nk_addr_resolve(&o->drv.node.hub, optarg, 0) != 0)
                return *exit_now = 1, cli_usage_error(cmd, "--hub '%s': not a HOST:PORT that resolves", optarg);
            break;
        case 's':
            if ((rc = parse_addr_list(cmd, "--stun", optarg, o->drv.node.stun, &o->drv.node.nstun, 3478)) != 0)
                return *exit_now = 1, rc;
            break;
        case 't':
            if ((rc = parse_addr_list(cmd, "--turn", optarg, &o->drv.node.turn, &nturn, 3478)) != 0 || nturn > 1)
                return *exit_now = 1, rc != 0 ? rc : cli_usage_error(cmd, "one --turn server at most");
            break;
        case 'u':
            o->drv.node.turn_user = optarg;
            break;
        case 'p':
            o->drv.node.turn_pass = optarg;
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
    if (nturn > 0 && (o->drv.node.turn_user == NULL || o->drv.node.turn_pass == NULL))
        return *exit_now = 1, cli_usage_error(cmd, "--turn needs --user and --pass");
    return 0;
}
