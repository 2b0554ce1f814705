/*
 * natkit CLI: the loop behind `natkit listen` and `natkit connect`. Lines
 * typed on stdin go to the connected peer(s) as messages; messages from
 * peers are printed on stdout, one per line; status goes to stderr (one JSON
 * object per line with --json).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "natkit/node.h"
#include "p2p.h"

#define LINE_MAX_BYTES 1100
#define DRAIN_TIMEOUT_MS 10000

typedef struct run_state {
    nk_p2p_opts *o;
    nk_conn *conn;            /* connect: our one connection */
    int connected;            /* connect: connected at least once */
    int failed;               /* connect: gave up; exit 1 */
    int peer_gone;
    size_t nconnected;        /* listen: how many peers are connected */
    char inbuf[LINE_MAX_BYTES + 1];
    size_t inlen;
    int stdin_open;
} run_state;

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
        if (nk_conn_is_connected(ev->conn) || st->nconnected > 0)
            st->nconnected -= st->nconnected > 0;
        if (ev->conn != st->conn)
            nk_conn_close(ev->conn, nk_node_driver_now());
    }
}

static void print_messages(nk_conn *c)
{
    uint8_t buf[65536];
    int n;
    while ((n = nk_conn_recv(c, buf, sizeof(buf))) >= 0) {
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
        print_path_event(st, "connected", ev);
        break;
    case NK_NODE_EV_PATH_CHANGED:
        print_path_event(st, "path-changed", ev);
        break;
    case NK_NODE_EV_READABLE:
        if (ev->conn != NULL)
            print_messages(ev->conn);
        break;
    case NK_NODE_EV_DISCONNECTED:
        on_disconnected(st, ev);
        break;
    }
    fflush(stderr);
}

/* Sends one typed line to the peer (connect) or to every connected peer (listen). */
static void send_line(run_state *st, nk_node *node, const char *line, size_t len)
{
    (void)node;
    if (len == 0)
        return;
    if (st->conn != NULL) {
        if (nk_conn_send(st->conn, nk_node_driver_now(), (const uint8_t *)line, len) != 0)
            fprintf(stderr, "natkit %s: send queue full, line dropped\n", st->o->cmd);
        return;
    }
    nk_node_broadcast(node, nk_node_driver_now(), (const uint8_t *)line, len);
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
    char *start = st->inbuf, *nl;
    while ((nl = memchr(start, '\n', st->inlen - (size_t)(start - st->inbuf))) != NULL) {
        send_line(st, node, start, (size_t)(nl - start));
        start = nl + 1;
    }
    size_t rest = st->inlen - (size_t)(start - st->inbuf);
    if (rest == LINE_MAX_BYTES) { /* a line longer than a message: send it in pieces */
        send_line(st, node, start, rest);
        rest = 0;
    }
    memmove(st->inbuf, start, rest);
    st->inlen = rest;
}

static int load_key(nk_p2p_opts *o, nk_identity *id)
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

/* connect: stdin closed and everything sent was acknowledged (or the wait ran out). */
static int drained(run_state *st, int64_t since)
{
    return st->conn == NULL || nk_conn_unacked(st->conn) == 0 ||
           nk_node_driver_now() - since > DRAIN_TIMEOUT_MS;
}

int nk_p2p_run(nk_p2p_opts *o)
{
    nk_identity id;
    run_state st;
    nk_node_driver *d;

    if (load_key(o, &id) != 0)
        return NK_EXIT_FAIL;
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
        return NK_EXIT_FAIL;
    }
    nk_addr local;
    nk_node_driver_local(d, &local);
    announce_id(&st, &id, &local);
    nk_identity_wipe(&id); /* the node keeps its own copy */
    o->drv.node.identity = NULL;
    nk_cli_install_stop_signals();

    nk_node *node = nk_node_driver_node(d);
    int64_t start = nk_node_driver_now(), eof_at = -1;
    if (o->have_peer && (rc = o->have_addr ? nk_node_connect_direct(node, start, &o->peer, &o->addr, &st.conn)
                                           : nk_node_connect(node, start, &o->peer, &st.conn)) != 0) {
        fprintf(stderr, "natkit %s: cannot connect: %s\n", o->cmd, nk_strerror(rc));
        nk_node_driver_free(d);
        return NK_EXIT_FAIL;
    }
    int status = NK_EXIT_OK;
    while (!nk_cli_stop_requested) {
        int ready = nk_node_driver_poll(d, 200, st.stdin_open && (st.conn == NULL || st.connected) ? STDIN_FILENO : -1);
        if (ready < 0)
            break;
        if (ready == 1)
            read_stdin(&st, node);
        int64_t now = nk_node_driver_now();
        if (st.conn == NULL)
            continue; /* listen: runs until stopped */
        if (st.failed || (!st.connected && now - start > o->connect_timeout_ms)) {
            if (!st.failed)
                fprintf(stderr, "natkit %s: could not connect within %ld s\n", o->cmd, o->connect_timeout_ms / 1000);
            status = NK_EXIT_FAIL;
            break;
        }
        if (st.peer_gone)
            break;
        if (!st.stdin_open && st.connected) {
            if (eof_at < 0)
                eof_at = now;
            if (drained(&st, eof_at))
                break;
        }
    }
    if (st.conn != NULL && !st.peer_gone)
        nk_conn_close(st.conn, nk_node_driver_now());
    nk_node_driver_poll(d, 0, -1); /* the close goes out */
    nk_node_driver_free(d);
    return status;
}

/* ---- options ---- */

static int parse_addr_list(const char *cmd, const char *flag, const char *text, nk_addr *list, size_t *n,
                           uint16_t default_port)
{
    if (*n == NK_NODE_MAX_ADDRS)
        return nk_cli_usage_error(cmd, "at most %d %s", NK_NODE_MAX_ADDRS, flag);
    if (nk_addr_resolve(&list[*n], text, default_port) != 0)
        return nk_cli_usage_error(cmd, "%s '%s': not a HOST:PORT that resolves", flag, text);
    (*n)++;
    return 0;
}

int nk_p2p_parse(nk_p2p_opts *o, int argc, char **argv, int want_peer, void (*usage)(FILE *out), int *exit_now)
{
    static const struct option opts[] = {
        {"hub", required_argument, NULL, 'H'},  {"stun", required_argument, NULL, 's'},
        {"turn", required_argument, NULL, 't'}, {"user", required_argument, NULL, 'u'},
        {"pass", required_argument, NULL, 'p'}, {"key", required_argument, NULL, 'k'},
        {"bind", required_argument, NULL, 'b'}, {"json", no_argument, NULL, 'j'},
        {"hub-tls", no_argument, NULL, 'T'},    {"hub-ca", required_argument, NULL, 'C'},
        {"keepalive", required_argument, NULL, 'K'}, {"timeout", required_argument, NULL, 'w'},
        {"peer", required_argument, NULL, 'P'},
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
                return *exit_now = 1, nk_cli_usage_error(cmd, "--hub '%s': not a HOST:PORT that resolves", optarg);
            break;
        case 's':
            if ((rc = parse_addr_list(cmd, "--stun", optarg, o->drv.node.stun, &o->drv.node.nstun, 3478)) != 0)
                return *exit_now = 1, rc;
            break;
        case 't':
            if ((rc = parse_addr_list(cmd, "--turn", optarg, &o->drv.node.turn, &nturn, 3478)) != 0 || nturn > 1)
                return *exit_now = 1, rc != 0 ? rc : nk_cli_usage_error(cmd, "one --turn server at most");
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
                return *exit_now = 1, nk_cli_usage_error(cmd, "--bind '%s': want IP:PORT", optarg);
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
            if (nk_cli_parse_seconds(optarg, 1000, 25000, &ms) != 0)
                return *exit_now = 1, nk_cli_usage_error(cmd, "--keepalive '%s': want seconds between 1 and 25", optarg);
            o->drv.node.keepalive_ms = (int)ms;
            break;
        case 'w':
            if (nk_cli_parse_seconds(optarg, 1000, 3600 * 1000, &o->connect_timeout_ms) != 0)
                return *exit_now = 1, nk_cli_usage_error(cmd, "--timeout '%s': want seconds between 1 and 3600", optarg);
            break;
        case 'P':
            if (!want_peer)
                return *exit_now = 1, nk_cli_usage_error(cmd, "--peer is for natkit connect");
            if (nk_addr_resolve(&o->addr, optarg, 0) != 0 || o->addr.port == 0)
                return *exit_now = 1, nk_cli_usage_error(cmd, "--peer '%s': want the peer's public IP:PORT", optarg);
            o->have_addr = 1;
            break;
        case 'h':
            usage(stdout);
            *exit_now = 1;
            return NK_EXIT_OK;
        default:
            return *exit_now = 1, nk_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (want_peer) {
        if (optind >= argc)
            return *exit_now = 1, nk_cli_usage_error(cmd, "which peer? (natkit connect PEER_ID --hub HOST:PORT)");
        if (nk_peer_id_parse(&o->peer, argv[optind]) != 0)
            return *exit_now = 1, nk_cli_usage_error(cmd, "'%s' is not a peer ID (52 base32 characters)", argv[optind]);
        o->have_peer = 1;
        optind++;
    }
    if (optind < argc)
        return *exit_now = 1, nk_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (o->drv.node.hub.family == NK_AF_NONE && !o->have_addr)
        return *exit_now = 1, nk_cli_usage_error(cmd, want_peer ? "no hub given (--hub HOST:PORT, or --peer IP:PORT without a hub)"
                                                                : "no hub given (--hub HOST:PORT)");
    if (o->drv.node.hub.family != NK_AF_NONE && o->have_addr)
        return *exit_now = 1, nk_cli_usage_error(cmd, "--peer (no hub) and --hub do not go together");
    if (nturn > 0 && (o->drv.node.turn_user == NULL || o->drv.node.turn_pass == NULL))
        return *exit_now = 1, nk_cli_usage_error(cmd, "--turn needs --user and --pass");
    return 0;
}
