/* natkit hub: run a hub (peer registration by ID, signalling and relay between peers). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "hub_status.h"
#include "config.h"
#include "natkit/hub.h"

int cmd_hub_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit hub --listen IP:PORT [--tls-listen IP:PORT --cert FILE --key FILE]\n"
            "                  [--max-peers N] [--max-conns N] [--max-conns-per-ip N] [--idle SECONDS]\n"
            "                  [--first-message-timeout SECONDS] [--advertise IP:PORT]...\n"
            "                  [--metrics IP:PORT] [--quiet] [--control PATH] [--config FILE]\n"
            "                  [--redis HOST:PORT [--redis-password-file FILE] [--redis-db N]\n"
            "                   [--redis-ttl SECONDS]]\n\n"
            "Runs a hub: peers keep a TCP (or TLS) connection, register under their peer ID by\n"
            "signing a challenge, and exchange connection requests, candidates and sealed relay\n"
            "packets by ID. Logs one line 'hub listening on ...' once it serves; runs until\n"
            "SIGINT/SIGTERM, then prints its counters and exits 0. Every log line on stderr\n"
            "starts with an RFC 3339 UTC time and 'natkit-hub:'.\n\n"
            "  --listen IP:PORT      TCP address (port 0: any free port, printed)\n"
            "  --tls-listen IP:PORT  TLS address (needs --cert and --key, PEM)\n"
            "  --max-peers N         registered peers (default: --max-conns)\n"
            "  --max-conns N         open connections (default 4096); when full, the oldest connection\n"
            "                        that has not registered yet is closed for the new one\n"
            "  --max-conns-per-ip N  connections per source (default 64; 0: no limit); a source is an\n"
            "                        IPv4 address or an IPv6 /64; more are closed at accept\n"
            "  --idle SECONDS        close peers silent for this long (default 60)\n"
            "  --first-message-timeout SECONDS\n"
            "                        close a connection that has not registered (its first frame)\n"
            "                        by then (default 5)\n"
            "  --advertise IP:PORT   an address peers dial that is not this host's own (port\n"
            "                        forwarding); registration proofs bound to it are accepted\n"
            "                        (repeatable, up to %d)\n"
            "  --metrics IP:PORT     serve Prometheus metrics at http://IP:PORT/metrics ([::1]:9100\n"
            "                        for IPv6; port 0: any, logged): peers, signalling, relay, and\n"
            "                        the path, connect time and NAT behaviour peers report;\n"
            "                        docs/internals/metrics.md lists them\n"
            "  --quiet               no per-peer log lines\n"
            "  --control PATH        the control socket `natkit status` asks (default: the runtime\n"
            "                        directory, $XDG_RUNTIME_DIR/natkit/hub-PID.sock); it lists the\n"
            "                        registered peers, their addresses and relay use (no secrets)\n"

            "  --redis HOST:PORT     join a cluster of hubs sharing this Redis: a peer registered at\n"
            "                        any of them reaches peers at the others (signalling and relay\n"
            "                        are forwarded); Redis away: local peers only, retried\n"
            "  --redis-password-file FILE  AUTH with the first line of FILE\n"
            "  --redis-db N          SELECT this database (default 0)\n"
            "  --redis-ttl SECONDS   lifetime of this hub's entries in the shared directory,\n"
            "                        refreshed every third of it (default 15): how long the\n"
            "                        peers of a hub that died stay listed\n"
            "  --config FILE         read options from FILE: one 'name=value', 'name value' or\n"
            "                        'name' (a flag) per line, names as above (coturn's\n"
            "                        listening-ip, listening-port and pkey too); '#' comments;\n"
            "                        later options override earlier ones; errors name FILE:LINE\n\n"
            "exit status: 0 stopped by a signal, 1 could not start, 2 usage error\n",
            NK_HUB_MAX_ADVERTISED);
}

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    cli_log("hub", "%s", line);
}

static void print_stats(const nk_hub_stats_t *st)
{
    char line[1024];
    hub_stats_line(line, sizeof(line), st);
    cli_log("hub", "stats %s", line);
}

static nk_addr advertised[NK_HUB_MAX_ADVERTISED];
static nk_addr metrics_addr; /* family NK_AF_NONE: no --metrics */

static void collect(void *ctx, nk_metrics_text *t)
{
    nk_hub_stats_t st;
    nk_hub_service_stats(ctx, &st);
    nk_metrics_write_hub(t, &st);
}

static const char *control_path; /* --control PATH */
static const char *redis_password_file;
static char redis_password[512];

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, 'l'}, {"tls-listen", required_argument, NULL, 't'},
    {"cert", required_argument, NULL, 'c'},   {"key", required_argument, NULL, 'k'},
    {"max-peers", required_argument, NULL, 'p'}, {"max-conns", required_argument, NULL, 'm'},
    {"idle", required_argument, NULL, 'i'},   {"quiet", no_argument, NULL, 'q'},
    {"advertise", required_argument, NULL, 'a'}, {"config", required_argument, NULL, 'C'},
    {"metrics", required_argument, NULL, 'M'}, {"control", required_argument, NULL, 'x'},
    {"redis", required_argument, NULL, 'R'},  {"redis-password-file", required_argument, NULL, 'P'},
    {"redis-db", required_argument, NULL, 'D'}, {"redis-ttl", required_argument, NULL, 'T'},
    {"max-conns-per-ip", required_argument, NULL, 'I'}, {"first-message-timeout", required_argument, NULL, 'F'},
    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
};

/* coturn's names in a --config file (listening-ip/-port: config.h). */
static const char *const config_aliases[] = {"pkey", "key", NULL};

static int config_one(void *ctx, int ch, const char *arg);

/* One option; 0, -1 after --help, or CLI_EXIT_USAGE (message printed). */
static int parse_one(nk_hub_service_options *o, int ch, const char *arg)
{
    long v;
    switch (ch) {
    case 'l':
        if (nk_addr_parse(&o->listen, arg) != 0)
            return cli_usage_error("hub", "--listen '%s': want IP:PORT", arg);
        break;
    case 't':
        if (nk_addr_parse(&o->tls_listen, arg) != 0)
            return cli_usage_error("hub", "--tls-listen '%s': want IP:PORT", arg);
        break;
    case 'c': o->cert_file = arg; break;
    case 'k': o->key_file = arg; break;
    case 'p':
        if (cli_parse_long(arg, 1, 1000000, &v) != 0)
            return cli_usage_error("hub", "--max-peers '%s': want 1..1000000", arg);
        o->server.max_peers = (int)v;
        break;
    case 'm':
        if (cli_parse_long(arg, 1, 1000000, &v) != 0)
            return cli_usage_error("hub", "--max-conns '%s': want 1..1000000", arg);
        o->server.max_conns = (int)v;
        break;
    case 'i':
        if (cli_parse_seconds(arg, 1000, 86400 * 1000, &v) != 0)
            return cli_usage_error("hub", "--idle '%s': want seconds between 1 and 86400", arg);
        o->server.idle_ms = v;
        break;
    case 'I':
        if (cli_parse_long(arg, 0, 1000000, &v) != 0)
            return cli_usage_error("hub", "--max-conns-per-ip '%s': want 0..1000000 (0: no limit)", arg);
        o->server.max_per_ip = (int)v;
        break;
    case 'F':
        if (cli_parse_seconds(arg, 1, 86400 * 1000, &v) != 0)
            return cli_usage_error("hub", "--first-message-timeout '%s': want seconds between 0.001 and 86400", arg);
        o->server.register_ms = v;
        break;
    case 'a':
        if (o->server.n_advertised == NK_HUB_MAX_ADVERTISED)
            return cli_usage_error("hub", "at most %d --advertise addresses", NK_HUB_MAX_ADVERTISED);
        if (nk_addr_parse(&advertised[o->server.n_advertised], arg) != 0)
            return cli_usage_error("hub", "--advertise '%s': want IP:PORT", arg);
        o->server.advertised = advertised;
        o->server.n_advertised++;
        break;
    case 'q': o->log = NULL; break;
    case 'M':
        if (cli_parse_metrics("hub", arg, &metrics_addr) != 0)
            return CLI_EXIT_USAGE;
        break;
    case 'x': control_path = arg; break;
    case 'R': {
        const char *colon = strrchr(arg, ':');
        /* an IPv6 host goes in brackets, as everywhere in natkit (the library refuses ::1:6379) */
        int bare_v6 = colon != NULL && memchr(arg, ':', (size_t)(colon - arg)) != NULL &&
                      !(arg[0] == '[' && colon[-1] == ']');
        if (colon == NULL || colon == arg || bare_v6 || cli_parse_long(colon + 1, 1, 65535, &v) != 0)
            return cli_usage_error("hub", "--redis '%s': want HOST:PORT ([IPv6]:PORT)", arg);
        o->redis = arg;
        break;
    }
    case 'P': redis_password_file = arg; break;
    case 'D':
        if (cli_parse_long(arg, 0, 1000000, &v) != 0)
            return cli_usage_error("hub", "--redis-db '%s': want a database number", arg);
        o->redis_db = (int)v;
        break;
    case 'T':
        if (cli_parse_seconds(arg, 1000, 3600 * 1000, &v) != 0)
            return cli_usage_error("hub", "--redis-ttl '%s': want seconds between 1 and 3600", arg);
        o->redis_ttl_ms = v;
        break;
    case 'C': return cli_config_getopt("hub", arg, long_opts, config_aliases, config_one, o);
    case 'h': usage(stdout); return -1;
    default: return CLI_EXIT_USAGE;
    }
    return 0;
}

static int config_one(void *ctx, int ch, const char *arg)
{
    return parse_one(ctx, ch, arg);
}

static int parse_args(int argc, char **argv, nk_hub_service_options *o)
{
    int ch, rc;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+l:t:c:k:p:m:i:a:x:qh", long_opts, NULL)) != -1) {
        if (ch == '?' || ch == ':')
            return cli_usage_error("hub", "unknown option '%s'", argv[optind - 1]);
        if ((rc = parse_one(o, ch, optarg)) != 0)
            return rc;
    }
    if (optind < argc)
        return cli_usage_error("hub", "unexpected argument '%s'", argv[optind]);
    if (o->listen.family == NK_AF_NONE && o->tls_listen.family == NK_AF_NONE)
        return cli_usage_error("hub", "--listen IP:PORT (or --tls-listen) is required");
    if (o->tls_listen.family != NK_AF_NONE && (o->cert_file == NULL || o->key_file == NULL))
        return cli_usage_error("hub", "--tls-listen needs --cert and --key");
    if (o->redis == NULL && (redis_password_file != NULL || o->redis_db != 0 || o->redis_ttl_ms != 0))
        return cli_usage_error("hub", "--redis-password-file, --redis-db and --redis-ttl need --redis");
    if (o->server.max_conns > 0 && o->server.max_peers > o->server.max_conns)
        o->server.max_conns = o->server.max_peers;
    if (o->server.max_conns == 0 && o->server.max_peers > 4096)
        o->server.max_conns = o->server.max_peers;
    return 0;
}

int cmd_hub_main(int argc, char **argv)
{
    nk_hub_service_options o;
    nk_hub_service_options_init(&o);
    o.log = log_line;
    o.cluster_log = log_line; /* Redis coming and going is logged even with --quiet */
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        cli_config_release();
        return rc < 0 ? CLI_EXIT_OK : rc;
    }

    if (redis_password_file != NULL) { /* the first line; read before the hub serves */
        if ((rc = cli_secret_file("hub", "--redis-password-file", redis_password_file, redis_password,
                                  sizeof(redis_password))) != 0) {
            cli_config_release();
            return rc;
        }
        o.redis_password = redis_password;
    }

    /* The loop thread inherits a mask without SIGINT/SIGTERM; this thread waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    nk_hub_service *svc;
    cli_server = "hub";
    rc = nk_hub_service_start(&svc, &o);
    if (rc != 0) {
        rc = cli_fail_nk("hub", CLI_EXIT_FAIL, rc, "start");
        cli_config_release();
        return rc;
    }
    int ctl_fatal; /* the control socket is there before the line that says we serve */
    ctl_server *ctl = hub_ctl_open(svc, control_path, &ctl_fatal);
    nk_metrics_server *metrics = NULL;
    if ((ctl == NULL && ctl_fatal) ||
        cli_metrics_start("hub", &metrics_addr, collect, svc, &metrics) != 0) {
        ctl_close(ctl);
        nk_hub_service_free(svc);
        cli_config_release();
        return CLI_EXIT_FAIL;
    }
    nk_addr tcp, tls;
    char a[NK_ADDR_STRLEN], b[NK_ADDR_STRLEN];
    nk_hub_service_addrs(svc, &tcp, &tls);
    cli_log("hub", "listening on%s%s%s%s (max peers %d)", tcp.family ? " tcp " : "",
            tcp.family ? nk_addr_format(&tcp, a, sizeof(a)) : "", tls.family ? " tls " : "",
            tls.family ? nk_addr_format(&tls, b, sizeof(b)) : "",
            o.server.max_peers > 0 ? o.server.max_peers : (o.server.max_conns > 0 ? o.server.max_conns : 4096));
    char cid[32];
    if (nk_hub_service_cluster_id(svc, cid, sizeof(cid)) == 0)
        cli_log("hub", "cluster member %s through redis %s", cid, o.redis);
    int sig = hub_ctl_wait(ctl, &stop);
    ctl_close(ctl);
    nk_metrics_server_free(metrics);
    nk_hub_stats_t st;
    nk_hub_service_stats(svc, &st);
    nk_hub_service_free(svc);
    print_stats(&st);
    cli_config_release();
    cli_log("hub", "stopped (signal %d)", sig);
    return CLI_EXIT_OK;
}
