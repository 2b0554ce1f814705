/*
 * natkit turn-check: allocate on a TURN server, bind a channel to an echo
 * peer, send N packets through the relay and report loss and RTT. The
 * protocol is the library's nk_turn_client; sockets and TLS are turn_io.c;
 * this file is flags, the event loop and the report.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cli.h"
#include "natkit/clock.h"
#include "natkit/turn_client.h"
#include "turn_io.h"

#define DEFAULT_COUNT       10
#define DEFAULT_INTERVAL_MS 20
#define DEFAULT_SIZE        100
#define DEFAULT_TIMEOUT_MS  5000
#define MIN_SIZE            12 /* run tag + sequence number */
#define MAX_SIZE            16384
#define REST_VALIDITY_S     3600
#define IO_BUF              65536

int cmd_turn_check_main(int argc, char **argv);

typedef struct options {
    const char *turn;
    char host[256];           /* --turn without the port, for TLS name checks */
    nk_addr server, peer, bind;
    uint8_t transport;
    const char *user, *secret, *realm, *ca_file;
    char pass[256], secret_buf[256];
    long count, interval_ms, size, timeout_ms;
    int json, insecure;
} options;

typedef struct check {
    const options *o;
    nk_turn_client *c;
    turn_io *io;
    nk_addr server;           /* the server talked to: --turn, or where a 300 Try Alternate sent us */
    nk_addr redirected_by;    /* the first server, when redirected (family NK_AF_NONE: not) */
    int allocated, bound, closed, fatal;
    char msg[512];
    nk_addr relayed, mapped;
    uint16_t channel;
    uint8_t tag[8];           /* this run's mark in every payload: stray echoes are ignored */
    int64_t *sent_us;
    uint8_t *got;
    double *rtt_ms;
    long sent, received;
    uint8_t buf[IO_BUF];
} check;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit turn-check --turn HOST:PORT [--transport udp|tcp|tls] [--bind IP]\n"
            "                         (--user U [--pass-file FILE | --pass P] | --auth-secret S) [--realm R]\n"
            "                         --peer IP:PORT [--count N] [--interval MS] [--size BYTES]\n"
            "                         [--timeout SECONDS] [--ca FILE | --insecure] [--json]\n\n"
            "Allocates a relayed address on a TURN server (RFC 8656), permits the peer, binds a\n"
            "channel to it and sends N packets through the relay to the peer, which must echo\n"
            "them (coturn's turnutils_peer does). Prints the relayed address, the loss and the\n"
            "round-trip time (p50/p99), then releases the allocation. A server that answers 300 Try\n"
            "Alternate (coturn's and natkit's --alternate-server) is followed, up to 3 times; the report\n"
            "says which server redirected.\n\n"
            "  --turn HOST:PORT     the TURN server (port defaults to 3478, 5349 with tls)\n"
            "  --transport T        udp (default), tcp or tls to the server\n"
            "  --bind IP            send from this local IP (default: the kernel's choice)\n"
            "  --user U             long-term credentials: user name, and its password from\n"
            "  --pass-file FILE     the first line of FILE, or\n"
            "                       $NATKIT_TURN_PASS (the environment), or\n"
            "  --pass P             the command line (wiped once read, but `ps` can show it\n"
            "                       until then: prefer the other two)\n"
            "  --auth-secret S      TURN REST credentials (coturn --static-auth-secret): user\n"
            "                       'EXPIRY:natkit' (or EXPIRY:U with --user), valid for 1 h,\n"
            "                       password base64(HMAC-SHA1(S, user))\n"
            "  --realm R            expect this realm (default: take the server's)\n"
            "  --peer IP:PORT       the echo peer, as the TURN server reaches it\n"
            "  --count N            packets to send (default %d)\n"
            "  --interval MS        between packets (default %d)\n"
            "  --size BYTES         payload size, %d..%d (default %d)\n"
            "  --timeout SECONDS    for each step, and for the last echo (default %d)\n"
            "  --ca FILE            tls: trust the CA certificates in FILE (PEM)\n"
            "  --insecure           tls: do not verify the server's certificate\n"
            "  --json               print one JSON object:\n"
            "                       {\"relayed\":\"IP:PORT\",\"sent\":N,\"received\":N,\"rtt_p50_ms\":X,\"rtt_p99_ms\":Y}\n"
            "                       (after a 300 Try Alternate also \"server\" and \"redirected_by\")\n"
            "                       (a failure: {\"event\":\"error\",...} on stderr; docs/json-events.md)\n\n"
            "exit status: 0 echoes came back, 1 refused / no answer / nothing echoed, 2 usage error\n",
            DEFAULT_COUNT, DEFAULT_INTERVAL_MS, MIN_SIZE, MAX_SIZE, DEFAULT_SIZE, DEFAULT_TIMEOUT_MS / 1000);
}

/* ---- flags ---- */

static int split_host(const char *text, char *host, size_t cap)
{
    const char *start = text, *end;
    if (text[0] == '[') {
        start = text + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(text, ':');
        if (end != NULL && strchr(text, ':') != end)
            end = NULL; /* a bare IPv6 address: no port */
        if (end == NULL)
            end = text + strlen(text);
    }
    if (end == NULL || (size_t)(end - start) >= cap || end == start)
        return -1;
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    return 0;
}

static int parse_transport(const char *text, uint8_t *out)
{
    if (strcmp(text, "udp") == 0)
        *out = NK_TRANSPORT_UDP;
    else if (strcmp(text, "tcp") == 0)
        *out = NK_TRANSPORT_TCP;
    else if (strcmp(text, "tls") == 0)
        *out = NK_TRANSPORT_TLS;
    else
        return -1;
    return 0;
}

/* Copies a password or secret into dst and wipes it off the command line as seen in /proc. */
static int take_secret(char *dst, size_t cap, char *arg)
{
    size_t n = strlen(arg);
    if (n >= cap)
        return -1;
    memcpy(dst, arg, n + 1);
    sodium_memzero(arg, n);
    return 0;
}

static int check_options(options *o)
{
    const char *cmd = "turn-check";
    if (o->turn == NULL)
        return cli_usage_error(cmd, "--turn HOST:PORT is required");
    if (o->peer.family == NK_AF_NONE)
        return cli_usage_error(cmd, "--peer IP:PORT is required");
    if (o->secret != NULL && o->pass[0] != '\0')
        return cli_usage_error(cmd, "--auth-secret and --pass exclude each other");
    if (o->secret == NULL && cli_pass_env(cmd, o->pass, sizeof(o->pass)) != 0)
        return CLI_EXIT_USAGE;
    if (o->secret == NULL && (o->user == NULL || o->pass[0] == '\0'))
        return cli_usage_error(cmd, "credentials needed: --user U and a password (--pass-file FILE, $%s or --pass P), "
                                    "or --auth-secret S", CLI_PASS_ENV);
    if (split_host(o->turn, o->host, sizeof(o->host)) != 0)
        return cli_usage_error(cmd, "--turn '%s': want HOST:PORT", o->turn);
    uint16_t port = o->transport == NK_TRANSPORT_TLS ? 5349 : 3478;
    if (nk_addr_resolve(&o->server, o->turn, port) != 0)
        return cli_usage_error(cmd, "--turn '%s': not a HOST:PORT that resolves", o->turn);
    return 0;
}

static int parse_options(options *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"turn", required_argument, NULL, 'T'},     {"transport", required_argument, NULL, 'x'},
        {"user", required_argument, NULL, 'u'},     {"pass", required_argument, NULL, 'p'},
        {"auth-secret", required_argument, NULL, 'S'}, {"realm", required_argument, NULL, 'r'},
        {"peer", required_argument, NULL, 'P'},     {"count", required_argument, NULL, 'n'},
        {"interval", required_argument, NULL, 'i'}, {"size", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 't'},  {"ca", required_argument, NULL, 'C'},
        {"insecure", no_argument, NULL, 'k'},       {"json", no_argument, NULL, 'j'},
        {"bind", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},           {"pass-file", required_argument, NULL, 'W'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "turn-check";
    int ch;
    opterr = 0;
    int npass = 0;
    while ((ch = getopt_long(argc, argv, "+T:x:u:p:S:r:P:n:i:s:t:C:b:kjW:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'T': o->turn = optarg; break;
        case 'u': o->user = optarg; break;
        case 'S':
            if (take_secret(o->secret_buf, sizeof(o->secret_buf), optarg) != 0)
                return cli_usage_error(cmd, "--auth-secret: too long");
            o->secret = o->secret_buf;
            break;
        case 'r': o->realm = optarg; break;
        case 'C': o->ca_file = optarg; break;
        case 'k': o->insecure = 1; break;
        case 'j': o->json = 1; break;
        case 'h': usage(stdout); return -1;
        case 'x':
            if (parse_transport(optarg, &o->transport) != 0)
                return cli_usage_error(cmd, "--transport '%s': want udp, tcp or tls", optarg);
            break;
        case 'p':
            if (npass++ > 0)
                return cli_usage_error(cmd, "one of --pass and --pass-file");
            if (take_secret(o->pass, sizeof(o->pass), optarg) != 0)
                return cli_usage_error(cmd, "--pass: too long");
            break;
        case 'W': {
            int rc;
            if (npass++ > 0)
                return cli_usage_error(cmd, "one of --pass and --pass-file");
            if ((rc = cli_secret_file(cmd, "--pass-file", optarg, o->pass, sizeof(o->pass))) != 0)
                return rc;
            break;
        }
        case 'b':
            if (nk_addr_parse_ip(&o->bind, optarg) != 0)
                return cli_usage_error(cmd, "--bind '%s': want a numeric IP", optarg);
            break;
        case 'P':
            if (nk_addr_parse(&o->peer, optarg) != 0)
                return cli_usage_error(cmd, "--peer '%s': want IP:PORT", optarg);
            break;
        case 'n':
            if (cli_parse_long(optarg, 1, 1000000, &o->count) != 0)
                return cli_usage_error(cmd, "--count '%s': want 1..1000000", optarg);
            break;
        case 'i':
            if (cli_parse_long(optarg, 0, 60000, &o->interval_ms) != 0)
                return cli_usage_error(cmd, "--interval '%s': want 0..60000 ms", optarg);
            break;
        case 's':
            if (cli_parse_long(optarg, MIN_SIZE, MAX_SIZE, &o->size) != 0)
                return cli_usage_error(cmd, "--size '%s': want %d..%d bytes", optarg, MIN_SIZE, MAX_SIZE);
            break;
        case 't':
            if (cli_parse_seconds(optarg, 100, 3600L * 1000, &o->timeout_ms) != 0)
                return cli_usage_error(cmd, "--timeout '%s': want seconds between 0.1 and 3600", optarg);
            break;
        default:
            return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return check_options(o);
}

/* ---- events ---- */

static const char *method_name(uint16_t method)
{
    switch (method) {
    case NK_STUN_ALLOCATE: return "Allocate";
    case NK_STUN_REFRESH: return "Refresh";
    case NK_STUN_CREATE_PERMISSION: return "CreatePermission";
    case NK_STUN_CHANNEL_BIND: return "ChannelBind";
    }
    return "request";
}

static const char *transport_name(uint8_t t)
{
    return t == NK_TRANSPORT_TLS ? "tls" : t == NK_TRANSPORT_TCP ? "tcp" : "udp";
}

static void describe_error(check *k, const nk_turn_event *ev)
{
    char srv[NK_ADDR_STRLEN];
    nk_addr_format(&k->server, srv, sizeof(srv));
    const char *m = method_name(ev->method);
    if (ev->status == NK_ERR_TIMEOUT)
        snprintf(k->msg, sizeof(k->msg), "no response to %s from TURN server %s over %s", m, srv,
                 transport_name(k->o->transport));
    else if (NK_ERR_IS_STUN(ev->status))
        snprintf(k->msg, sizeof(k->msg), "TURN server %s refused %s: %d %s", srv, m, NK_ERR_STUN_CODE(ev->status),
                 ev->reason[0] != '\0' ? ev->reason : nk_stun_reason(NK_ERR_STUN_CODE(ev->status)));
    else
        snprintf(k->msg, sizeof(k->msg), "%s with TURN server %s failed: %s%s%s", m, srv, nk_strerror(ev->status),
                 ev->reason[0] != '\0' ? ": " : "", ev->reason);
}

/* Monotonic microseconds, for the round-trip times (nk_now_ms is too coarse). */
static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_data(check *k, const nk_turn_event *ev)
{
    if (ev->len < MIN_SIZE || memcmp(ev->data, k->tag, sizeof(k->tag)) != 0 || !nk_addr_equal(&ev->peer, &k->o->peer))
        return;
    uint32_t seq = (uint32_t)ev->data[8] << 24 | (uint32_t)ev->data[9] << 16 | (uint32_t)ev->data[10] << 8 |
                   ev->data[11];
    if (seq >= (uint32_t)k->sent || k->got[seq])
        return;
    k->got[seq] = 1;
    k->rtt_ms[k->received++] = (double)(now_us() - k->sent_us[seq]) / 1000.0;
}

static int open_io(check *k, const options *o, const nk_addr *server, const char *tls_name);

/* 300 Try Alternate: the client sends its Allocate to ev->peer now; a stream goes there first. */
static void on_redirect(check *k, const nk_turn_event *ev)
{
    char from[NK_ADDR_STRLEN], to[NK_ADDR_STRLEN];
    const char *domain = NULL;
    nk_turn_client_server(k->c, NULL, &domain);
    if (k->redirected_by.family == NK_AF_NONE)
        k->redirected_by = k->server;
    if (!k->o->json)
        cli_log("turn-check", "redirected by %s to %s%s%s (300 Try Alternate)",
                nk_addr_format(&k->server, from, sizeof(from)), nk_addr_format(&ev->peer, to, sizeof(to)),
                domain != NULL ? ", certificate name " : "", domain != NULL ? domain : "");
    k->server = ev->peer;
    turn_io_close(k->io); /* a new socket (UDP too: it is connected to the server) */
    k->io = NULL;
    if (open_io(k, k->o, &k->server, domain != NULL ? domain : k->o->host) != 0)
        k->fatal = 1;
}

static void on_event(check *k, const nk_turn_event *ev)
{
    switch (ev->type) {
    case NK_TURN_EV_ALLOCATED:
        k->allocated = 1;
        k->relayed = ev->relayed;
        k->mapped = ev->mapped;
        break;
    case NK_TURN_EV_CHANNEL:
        k->bound = 1;
        break;
    case NK_TURN_EV_DATA:
        on_data(k, ev);
        break;
    case NK_TURN_EV_CLOSED:
        k->closed = 1;
        break;
    case NK_TURN_EV_REDIRECTED:
        on_redirect(k, ev);
        break;
    case NK_TURN_EV_ERROR:
        describe_error(k, ev);
        if (!k->bound || ev->method == NK_STUN_ALLOCATE)
            k->fatal = 1;
        else
            cli_warn("turn-check", 0, "%s", k->msg);
        break;
    default:
        break;
    }
}

/* ---- the loop ---- */

static int flush_transmits(check *k)
{
    nk_transmit tx;
    static uint8_t out[2048];
    while (nk_turn_client_poll_transmit(k->c, nk_now_ms(), &tx, out, sizeof(out)) == 0) {
        if (turn_io_send(k->io, out, tx.len) != 0) {
            snprintf(k->msg, sizeof(k->msg), "sending to the TURN server failed (connection closed?)");
            k->fatal = 1;
            return -1;
        }
    }
    return 0;
}

static void drain_events(check *k)
{
    nk_turn_event ev;
    while (nk_turn_client_poll_event(k->c, &ev) == 0)
        on_event(k, &ev);
}

/* Hands one read (datagram or stream chunk) to the client; 0, or -1 when the connection is done for. */
static int take_input(check *k, int n)
{
    if (n == NK_ERR_AGAIN)
        return 0;
    if (n < 0) {
        snprintf(k->msg, sizeof(k->msg), "the TURN server closed the connection");
        k->fatal = 1;
        return -1;
    }
    if (nk_turn_client_handle_input(k->c, nk_now_ms(), &k->server, k->buf, (size_t)n) == NK_ERR_MALFORMED &&
        k->o->transport != NK_TRANSPORT_UDP) {
        snprintf(k->msg, sizeof(k->msg), "the TURN server sent bytes that do not frame as STUN or ChannelData");
        k->fatal = 1;
        return -1;
    }
    drain_events(k);
    return k->io != NULL ? 0 : -1; /* a redirect that could not connect */
}

/*
 * One round: wait for input (at most until wait_until or the client's
 * deadline), take everything that is queued, run timers, send.
 */
static void step(check *k, int64_t wait_until)
{
    int64_t now = nk_now_ms(), d = nk_turn_client_next_deadline(k->c);
    int64_t until = d < wait_until ? d : wait_until;
    int wait = until > now ? (int)(until - now > 1000 ? 1000 : until - now) : 0;
    int n = turn_io_recv(k->io, k->buf, sizeof(k->buf), wait);
    for (int reads = 0; reads < 64 && n != NK_ERR_AGAIN; reads++) {
        if (take_input(k, n) != 0)
            return;
        n = turn_io_recv(k->io, k->buf, sizeof(k->buf), 0);
    }
    now = nk_now_ms();
    if (nk_turn_client_next_deadline(k->c) <= now) {
        nk_turn_client_handle_timeout(k->c, now);
        drain_events(k);
    }
    flush_transmits(k);
}

static int setup_allocation(check *k)
{
    int64_t deadline = nk_now_ms() + k->o->timeout_ms;
    if (nk_turn_client_allocate(k->c, nk_now_ms()) != 0 || nk_turn_client_permit(k->c, nk_now_ms(), &k->o->peer) != 0 ||
        nk_turn_client_bind_channel(k->c, nk_now_ms(), &k->o->peer, &k->channel) != 0)
        return -1;
    flush_transmits(k);
    while (!k->fatal && !k->bound && !cli_stop_requested) {
        if (nk_now_ms() >= deadline) {
            char srv[NK_ADDR_STRLEN];
            snprintf(k->msg, sizeof(k->msg), "TURN server %s did not %s within %ld ms",
                     nk_addr_format(&k->server, srv, sizeof(srv)),
                     k->allocated ? "bind the channel" : "grant an allocation", k->o->timeout_ms);
            return -1;
        }
        step(k, deadline);
    }
    return k->bound ? 0 : -1;
}

static void send_one(check *k)
{
    uint8_t payload[MAX_SIZE];
    nk_transmit tx;
    uint32_t seq = (uint32_t)k->sent;
    memset(payload, 0, (size_t)k->o->size);
    memcpy(payload, k->tag, sizeof(k->tag));
    payload[8] = (uint8_t)(seq >> 24);
    payload[9] = (uint8_t)(seq >> 16);
    payload[10] = (uint8_t)(seq >> 8);
    payload[11] = (uint8_t)seq;
    for (long i = MIN_SIZE; i < k->o->size; i++)
        payload[i] = (uint8_t)i;
    int rc = nk_turn_client_send(k->c, &k->o->peer, payload, (size_t)k->o->size, &tx, k->buf, sizeof(k->buf));
    if (rc != 0) {
        /* the allocation ended (refresh refused, expired) or the peer's permission failed */
        if (k->msg[0] == '\0' || k->closed)
            snprintf(k->msg, sizeof(k->msg), "cannot send to the peer through the relay after %ld packets: %s%s",
                     k->sent, k->closed ? "the allocation is gone: " : "", nk_strerror(rc));
        k->fatal = 1;
        return;
    }
    k->sent_us[seq] = now_us();
    k->sent++;
    if (turn_io_send(k->io, k->buf, tx.len) != 0) {
        snprintf(k->msg, sizeof(k->msg), "sending to the TURN server failed (connection closed?)");
        k->fatal = 1;
    }
}

static void run_echoes(check *k)
{
    int64_t start = nk_now_ms();
    while (!k->fatal && !cli_stop_requested && k->sent < k->o->count) {
        int64_t due = start + (int64_t)k->sent * k->o->interval_ms;
        if (nk_now_ms() >= due) {
            send_one(k);
            step(k, 0); /* take echoes already queued, even when sending back to back */
        } else {
            step(k, due);
        }
    }
    int64_t deadline = nk_now_ms() + k->o->timeout_ms;
    while (!k->fatal && !cli_stop_requested && k->received < k->sent && nk_now_ms() < deadline)
        step(k, deadline);
}

static void release(check *k)
{
    if (nk_turn_client_deallocate(k->c, nk_now_ms()) != 0)
        return;
    flush_transmits(k);
    int64_t deadline = nk_now_ms() + 1000;
    int was_fatal = k->fatal;
    while (!k->closed && !k->fatal && nk_now_ms() < deadline)
        step(k, deadline);
    k->fatal = was_fatal;
}

/* ---- report ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *v, long n, double q)
{
    long rank = (long)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return v[rank > n ? n - 1 : rank - 1];
}

static void report(check *k)
{
    char relayed[NK_ADDR_STRLEN], mapped[NK_ADDR_STRLEN], peer[NK_ADDR_STRLEN], srv[NK_ADDR_STRLEN];
    nk_addr_format(&k->relayed, relayed, sizeof(relayed));
    qsort(k->rtt_ms, (size_t)k->received, sizeof(double), cmp_double);
    double p50 = k->received > 0 ? percentile(k->rtt_ms, k->received, 0.50) : 0;
    double p99 = k->received > 0 ? percentile(k->rtt_ms, k->received, 0.99) : 0;
    if (k->o->json) {
        printf("{\"relayed\":\"%s\",", relayed);
        if (k->redirected_by.family != NK_AF_NONE)
            printf("\"server\":\"%s\",\"redirected_by\":\"%s\",", nk_addr_format(&k->server, srv, sizeof(srv)),
                   nk_addr_format(&k->redirected_by, peer, sizeof(peer)));
        printf("\"sent\":%ld,\"received\":%ld,", k->sent, k->received);
        if (k->received > 0)
            printf("\"rtt_p50_ms\":%.3f,\"rtt_p99_ms\":%.3f}\n", p50, p99);
        else
            printf("\"rtt_p50_ms\":null,\"rtt_p99_ms\":null}\n");
        return;
    }
    double loss = k->sent > 0 ? 100.0 * (double)(k->sent - k->received) / (double)k->sent : 0;
    printf("relayed:  %s (mapped %s, via %s over %s)\n", relayed, nk_addr_format(&k->mapped, mapped, sizeof(mapped)),
           nk_addr_format(&k->server, srv, sizeof(srv)), transport_name(k->o->transport));
    if (k->redirected_by.family != NK_AF_NONE)
        printf("redirect: %s answered 300 Try Alternate\n", nk_addr_format(&k->redirected_by, srv, sizeof(srv)));
    printf("peer:     %s on channel 0x%04x\n", nk_addr_format(&k->o->peer, peer, sizeof(peer)), k->channel);
    printf("sent:     %ld packets of %ld bytes\nreceived: %ld (%.1f%% loss)\n", k->sent, k->o->size, k->received,
           loss);
    if (k->received > 0)
        printf("rtt:      p50 %.3f ms, p99 %.3f ms\n", p50, p99);
}

/* ---- main ---- */

static int make_client(check *k, options *o, char *rest_user, size_t ucap, char *rest_pass, size_t pcap)
{
    const char *user = o->user, *pass = o->pass;
    if (o->secret != NULL) {
        int64_t expiry = (int64_t)time(NULL) + REST_VALIDITY_S;
        if (nk_turn_rest_credentials(o->secret, expiry, o->user != NULL ? o->user : "natkit", rest_user, ucap,
                                     rest_pass, pcap) != 0)
            return -1;
        user = rest_user;
        pass = rest_pass;
    }
    nk_turn_client_config cfg = {
        .server = o->server,
        .transport = o->transport,
        .username = user,
        .password = pass,
        .realm = o->realm,
        .software = "natkit turn-check",
        .family = o->peer.family,
    };
    return nk_turn_client_new(&k->c, &cfg);
}

static int open_io(check *k, const options *o, const nk_addr *server, const char *tls_name)
{
    turn_io_config io = {
        .server = *server,
        .transport = o->transport,
        .tls_name = tls_name,
        .tls_ca_file = o->ca_file,
        .tls_insecure = o->insecure,
        .timeout_ms = (int)o->timeout_ms,
        .bind = o->bind,
    };
    char err[256], srv[NK_ADDR_STRLEN];
    if (turn_io_open(&k->io, &io, err, sizeof(err)) == 0)
        return 0;
    snprintf(k->msg, sizeof(k->msg), "cannot reach TURN server %s over %s: %s",
             nk_addr_format(server, srv, sizeof(srv)), transport_name(o->transport), err);
    return -1;
}

static int run_check(check *k, options *o)
{
    char rest_user[320], rest_pass[64];
    k->o = o;
    k->server = o->server;
    randombytes_buf(k->tag, sizeof(k->tag));
    k->sent_us = calloc((size_t)o->count, sizeof(*k->sent_us));
    k->got = calloc((size_t)o->count, 1);
    k->rtt_ms = calloc((size_t)o->count, sizeof(*k->rtt_ms));
    int rc = CLI_EXIT_FAIL;
    if (k->sent_us == NULL || k->got == NULL || k->rtt_ms == NULL ||
        make_client(k, o, rest_user, sizeof(rest_user), rest_pass, sizeof(rest_pass)) != 0) {
        snprintf(k->msg, sizeof(k->msg), "out of memory or bad credentials");
        goto Exit;
    }
    if (open_io(k, o, &o->server, o->host) != 0 || setup_allocation(k) != 0)
        goto Exit;
    run_echoes(k);
    if (!k->fatal || k->sent > 0)
        report(k);
    release(k);
    if (!k->fatal && k->received == 0)
        snprintf(k->msg, sizeof(k->msg), "no echo came back from the peer (is it an echo server, and may the "
                                         "TURN server relay to it?)");
    rc = k->received > 0 && !k->fatal ? CLI_EXIT_OK : CLI_EXIT_FAIL;
Exit:
    sodium_memzero(rest_pass, sizeof(rest_pass));
    turn_io_close(k->io);
    nk_turn_client_free(k->c);
    free(k->sent_us);
    free(k->got);
    free(k->rtt_ms);
    return rc;
}

int cmd_turn_check_main(int argc, char **argv)
{
    static options o;
    memset(&o, 0, sizeof(o));
    o.count = DEFAULT_COUNT;
    o.interval_ms = DEFAULT_INTERVAL_MS;
    o.size = DEFAULT_SIZE;
    o.timeout_ms = DEFAULT_TIMEOUT_MS;
    int rc = parse_options(&o, argc, argv);
    if (rc != 0) {
        sodium_memzero(o.pass, sizeof(o.pass));
        sodium_memzero(o.secret_buf, sizeof(o.secret_buf));
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    if (sodium_init() < 0) {
        return cli_fail("turn-check", CLI_EXIT_FAIL, 0, "libsodium failed to initialise");
    }
    cli_install_stop_signals();
    check *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return CLI_EXIT_FAIL;
    rc = run_check(k, &o);
    sodium_memzero(o.pass, sizeof(o.pass));
    sodium_memzero(o.secret_buf, sizeof(o.secret_buf));
    if (rc != CLI_EXIT_OK)
        cli_fail("turn-check", rc, 0, "%s", k->msg[0] != '\0' ? k->msg : "failed");
    free(k);
    return rc;
}
