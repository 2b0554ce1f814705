/* natkit stun-server: run the STUN server (RFC 5780 with --alt-ip) until SIGINT/SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "natkit/stun_service.h"

#define CMD "stun-server"

int cmd_stun_server_main(int argc, char **argv);

static void print_help(void)
{
    printf("usage: natkit stun-server [--listen IP:PORT] [--alt-ip IP] [--alt-port PORT]\n"
           "                          [--threads N] [--no-tcp] [--batch N]\n"
           "                          [--tcp-idle SECONDS] [--tcp-max-conns N] [--max-conns-per-ip N]\n"
           "                          [--first-message-timeout SECONDS] [--udp-rate N] [--udp-burst N]\n"
           "                          [--metrics IP:PORT] [--config FILE]\n\n"
           "Answers STUN Binding requests over UDP and TCP (RFC 8489; RFC 3489 clients get\n"
           "MAPPED-ADDRESS). With --alt-ip it runs in RFC 5780 mode on 2 IPs x 2 ports\n"
           "(IP:PORT, IP:ALTPORT, ALTIP:PORT, ALTIP:ALTPORT) and honours CHANGE-REQUEST,\n"
           "RESPONSE-PORT and PADDING. Logs one line with every address it serves, runs\n"
           "until SIGINT/SIGTERM, then prints its counters and exits 0.\n\n"
           "  --listen IP:PORT     primary address (default 0.0.0.0:3478)\n"
           "  --alt-ip IP          second IP: RFC 5780 mode (needs a non-wildcard --listen)\n"
           "  --alt-port PORT      second port in RFC 5780 mode (default PORT + 1)\n"
           "  --threads N          worker threads, each with its own sockets (default 1)\n"
           "  --no-tcp             UDP only\n"
           "  --batch N            datagrams per recvmmsg/sendmmsg, 1..256 (default 32)\n"
           "  --tcp-idle SECONDS   close idle TCP connections after this (default 30)\n"
           "  --tcp-max-conns N    TCP connections per thread (default 1024); when full, the oldest\n"
           "                       connection that has not yet sent a valid request is closed for\n"
           "                       a new one\n"
           "  --max-conns-per-ip N TCP connections per source per thread (default 64; 0: no limit);\n"
           "                       a source is an IPv4 address or an IPv6 /64 prefix; more are\n"
           "                       closed at accept\n"
           "  --first-message-timeout SECONDS\n"
           "                       close a TCP connection that has sent no valid request by then\n"
           "                       (default 5)\n"
           "  --udp-rate N         UDP answers per second per source per thread (default 500; 0: no\n"
           "                       limit); requests beyond it are dropped unanswered and counted\n"
           "  --udp-burst N        ... with bursts up to N answers (default 2 x --udp-rate)\n"
           "  --metrics IP:PORT    serve Prometheus metrics at http://IP:PORT/metrics (IPv6:\n"
           "                       [::1]:9100; port 0: any, logged); docs/internals/metrics.md\n"
           "                       lists them. A port that cannot be bound: exit 1 at start\n"
           "  --config FILE        read options from FILE: one 'name=value', 'name value' or 'name'\n"
           "                       (a flag) per line, names as above or coturn's (listening-ip,\n"
           "                       listening-port, alt-listening-port, relay-threads); '#' comments;\n"
           "                       later options override earlier ones; errors name FILE:LINE\n");
}

enum { OPT_LISTEN = 1, OPT_ALT_IP, OPT_ALT_PORT, OPT_THREADS, OPT_NO_TCP, OPT_BATCH, OPT_TCP_IDLE,
       OPT_TCP_MAX, OPT_METRICS, OPT_CONFIG, OPT_HELP, OPT_PER_IP, OPT_FIRST, OPT_UDP_RATE, OPT_UDP_BURST };

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"alt-ip", required_argument, NULL, OPT_ALT_IP},
    {"alt-port", required_argument, NULL, OPT_ALT_PORT},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"no-tcp", no_argument, NULL, OPT_NO_TCP},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"tcp-idle", required_argument, NULL, OPT_TCP_IDLE},
    {"tcp-max-conns", required_argument, NULL, OPT_TCP_MAX},
    {"max-conns-per-ip", required_argument, NULL, OPT_PER_IP},
    {"first-message-timeout", required_argument, NULL, OPT_FIRST},
    {"udp-rate", required_argument, NULL, OPT_UDP_RATE},
    {"udp-burst", required_argument, NULL, OPT_UDP_BURST},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static nk_addr metrics_addr; /* family NK_AF_NONE: no --metrics */

/* coturn's names in a --config file (listening-ip/-port: config.h). */
static const char *const config_aliases[] = {"alt-listening-port", "alt-port", "relay-threads", "threads", NULL};

static int parse_one(int opt, const char *arg, nk_stun_service_options *o);

static int config_one(void *ctx, int opt, const char *arg)
{
    return parse_one(opt, arg, ctx);
}

/* One option; 0, -1 for --help, or CLI_EXIT_USAGE / CLI_EXIT_FAIL (message printed). */
static int parse_one(int opt, const char *arg, nk_stun_service_options *o)
{
    long v;
    switch (opt) {
    case OPT_LISTEN:
        if (nk_addr_parse(&o->listen, arg) != 0 || o->listen.port == 0)
            return cli_usage_error(CMD, "--listen wants a numeric IP:PORT with a non-zero port, not '%s'", arg);
        return 0;
    case OPT_ALT_IP:
        if (nk_addr_parse_ip(&o->alt_ip, arg) != 0)
            return cli_usage_error(CMD, "--alt-ip wants a numeric IP, not '%s'", arg);
        return 0;
    case OPT_ALT_PORT:
        if (cli_parse_long(arg, 1, 65535, &v) != 0)
            return cli_usage_error(CMD, "--alt-port wants a port 1..65535, not '%s'", arg);
        o->alt_port = (uint16_t)v;
        return 0;
    case OPT_THREADS:
        if (cli_parse_long(arg, 1, 256, &v) != 0)
            return cli_usage_error(CMD, "--threads wants 1..256, not '%s'", arg);
        o->threads = (int)v;
        return 0;
    case OPT_NO_TCP:
        o->tcp = 0;
        return 0;
    case OPT_BATCH:
        if (cli_parse_long(arg, 1, 256, &v) != 0)
            return cli_usage_error(CMD, "--batch wants 1..256, not '%s'", arg);
        o->batch = (int)v;
        return 0;
    case OPT_TCP_IDLE:
        if (cli_parse_seconds(arg, 1, 86400000, &v) != 0)
            return cli_usage_error(CMD, "--tcp-idle wants seconds (0.001..86400), not '%s'", arg);
        o->tcp_idle_ms = v;
        return 0;
    case OPT_TCP_MAX:
        if (cli_parse_long(arg, 1, 1000000, &v) != 0)
            return cli_usage_error(CMD, "--tcp-max-conns wants 1..1000000, not '%s'", arg);
        o->tcp_max_conns = (int)v;
        return 0;
    case OPT_PER_IP:
        if (cli_parse_long(arg, 0, 1000000, &v) != 0)
            return cli_usage_error(CMD, "--max-conns-per-ip wants 0..1000000 (0: no limit), not '%s'", arg);
        o->tcp_max_per_ip = v == 0 ? -1 : (int)v;
        return 0;
    case OPT_FIRST:
        if (cli_parse_seconds(arg, 1, 86400000, &v) != 0)
            return cli_usage_error(CMD, "--first-message-timeout wants seconds (0.001..86400), not '%s'", arg);
        o->tcp_first_ms = v;
        return 0;
    case OPT_UDP_RATE:
        if (cli_parse_long(arg, 0, 1000000, &v) != 0)
            return cli_usage_error(CMD, "--udp-rate wants 0..1000000 (0: no limit), not '%s'", arg);
        o->udp_rate = v == 0 ? -1 : (int)v;
        return 0;
    case OPT_UDP_BURST:
        if (cli_parse_long(arg, 1, 1000000, &v) != 0)
            return cli_usage_error(CMD, "--udp-burst wants 1..1000000, not '%s'", arg);
        o->udp_burst = (int)v;
        return 0;
    case OPT_METRICS:
        return cli_parse_metrics(CMD, arg, &metrics_addr);
    case OPT_CONFIG:
        return cli_config_getopt(CMD, arg, long_opts, config_aliases, config_one, o);
    case OPT_HELP:
        print_help();
        return -1;
    }
    return CLI_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, nk_stun_service_options *o)
{
    nk_stun_service_options_init(o);
    nk_addr_parse(&o->listen, "0.0.0.0:3478");
    memset(&metrics_addr, 0, sizeof(metrics_addr));
    optind = 1;
    opterr = 0;
    for (;;) {
        int opt = getopt_long(argc, argv, "+h", long_opts, NULL);
        if (opt == -1)
            break;
        if (opt == 'h')
            opt = OPT_HELP;
        if (opt == '?' || opt == ':')
            return cli_usage_error(CMD, "unknown option or missing value: '%s'", argv[optind - 1]);
        int r = parse_one(opt, optarg, o);
        if (r != 0)
            return r;
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (o->alt_ip.family != NK_AF_NONE) {
        static const uint8_t any[16];
        if (memcmp(o->listen.ip, any, nk_addr_ip_len(&o->listen)) == 0)
            return cli_usage_error(CMD, "--alt-ip needs a specific --listen IP, not a wildcard");
        if (o->alt_ip.family != o->listen.family || nk_addr_equal_ip(&o->alt_ip, &o->listen))
            return cli_usage_error(CMD, "--alt-ip must be another IP of the same family as --listen");
        uint16_t p2 = o->alt_port != 0 ? o->alt_port : (uint16_t)(o->listen.port + 1);
        if (p2 == o->listen.port || p2 == 0)
            return cli_usage_error(CMD, "--alt-port must differ from the --listen port");
    } else if (o->alt_port != 0) {
        return cli_usage_error(CMD, "--alt-port needs --alt-ip");
    }
    return 0;
}

static void log_start(nk_stun_service *svc, const nk_stun_service_options *o)
{
    nk_addr addrs[4];
    char text[NK_ADDR_STRLEN], list[4 * (NK_ADDR_STRLEN + 2)];
    size_t n = nk_stun_service_addrs(svc, addrs), len = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i == 0 ? "" : ", ",
                                nk_addr_format(&addrs[i], text, sizeof(text)));
    cli_log(CMD, "listening on %s %s%s, %d thread%s", o->tcp ? "udp+tcp" : "udp", list, n == 4 ? " (RFC 5780)" : "",
            o->threads, o->threads == 1 ? "" : "s");
}

static void collect(void *ctx, nk_metrics_text *t)
{
    nk_stun_server_stats_t st;
    nk_stun_service_stats(ctx, &st);
    nk_metrics_write_stun(t, &st);
}

static void log_stats(nk_stun_service *svc)
{
    nk_stun_server_stats_t st;
    nk_stun_service_stats(svc, &st);
    cli_log(CMD,
            "stopped: %llu requests, %llu responses, %llu error responses, "
            "%llu malformed dropped, %llu non-STUN dropped, %llu ignored, %llu send failures, "
            "tcp %llu accepted, %llu rejected, %llu idle-closed, %llu rejected per source, "
            "%llu closed without a first message, %llu evicted, udp %llu rate-limited",
            (unsigned long long)st.requests, (unsigned long long)st.responses,
            (unsigned long long)st.errors, (unsigned long long)st.dropped_malformed,
            (unsigned long long)st.dropped_not_stun, (unsigned long long)st.ignored,
            (unsigned long long)st.send_failed, (unsigned long long)st.tcp_accepted,
            (unsigned long long)st.tcp_rejected, (unsigned long long)st.tcp_idle_closed,
            (unsigned long long)st.tcp_rejected_per_ip, (unsigned long long)st.tcp_first_timeout,
            (unsigned long long)st.tcp_evicted, (unsigned long long)st.rate_limited);
}

int cmd_stun_server_main(int argc, char **argv)
{
    nk_stun_service_options o;
    int r = parse_args(argc, argv, &o);
    cli_config_release(); /* the options keep no pointer into a --config file */
    if (r != 0)
        return r == -1 ? CLI_EXIT_OK : r;

    /* SIGINT/SIGTERM arrive on a signalfd; the worker threads never see them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
    cli_server = CMD;
    if (sfd < 0)
        return cli_fail(CMD, CLI_EXIT_FAIL, errno, "cannot make a signalfd");

    nk_stun_service *svc;
    int err = nk_stun_service_start(&svc, &o);
    if (err != 0) {
        cli_fail_nk(CMD, CLI_EXIT_FAIL, err, "start");
        close(sfd);
        return CLI_EXIT_FAIL;
    }
    nk_metrics_server *metrics;
    if (cli_metrics_start(CMD, &metrics_addr, collect, svc, &metrics) != 0) {
        nk_stun_service_free(svc);
        close(sfd);
        return CLI_EXIT_FAIL;
    }
    log_start(svc, &o);
    err = nk_stun_service_wait(svc, sfd);
    nk_metrics_server_free(metrics);
    nk_stun_service_stop(svc);
    log_stats(svc);
    nk_stun_service_free(svc);
    close(sfd);
    if (err != 0)
        return cli_fail(CMD, CLI_EXIT_FAIL, 0, "a worker failed: %s", nk_strerror(err));
    return CLI_EXIT_OK;
}
