/*
 * natkit turn-server: the TURN server (RFC 8656) on UDP, TCP and TLS.
 * Options come from the command line and from --config FILE (coturn-style
 * "key=value" lines with the same names); docs/turn-server.md maps them to
 * coturn's. The work is done by the sans-I/O core (nk_turn_server) and its
 * epoll driver (nk_turn_service), one of each per thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "config.h"
#include "natkit/turn_server.h"
#include "natkit/turn_service.h"
#include "natkit/udp.h"
#include "natkit/turn_userdb.h"

#define CMD "turn-server"
#define MAX_LIST 256
#define MAX_THREADS 64

typedef struct opts {
    nk_turn_server_config cfg;
    nk_turn_service_options dcfg;
    char *strings[4 * MAX_LIST]; /* every value kept, freed (and wiped) at the end */
    size_t nstrings;
    const char *users[MAX_LIST];
    size_t nusers;
    const char *allow[MAX_LIST], *deny[MAX_LIST];
    size_t nallow, ndeny;
    int have_listen;
    int file_failed; /* a --config file could not be read: exit 1, not 2 */
    unsigned threads;
    const char *listening_ip;     /* coturn's listening-ip / listening-port / tls-listening-port */
    uint16_t listening_port, tls_listening_port;
    nk_addr metrics;              /* --metrics (family NK_AF_NONE: none) */
    const char *userdb, *redis_userdb, *psql_userdb; /* coturn's user databases (--userdb FILE,
                                                      * --redis-userdb CONN, --psql-userdb CONN) */
    nk_addr alts[MAX_LIST], tls_alts[MAX_LIST]; /* --alternate-server, --tls-alternate-server */
    nk_turn_userdb *udb;
} opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit turn-server --listen IP:PORT --realm REALM (--user USER:PASS ... | --auth-secret SECRET |\n"
            "                          --userdb FILE | --redis-userdb CONNINFO | --psql-userdb CONNINFO)\n"
            "                          --relay-ip IP [--relay-ports MIN-MAX] [--tls-listen IP:PORT --cert FILE --key FILE]\n"
            "                          [--allow-peer CIDR]... [--deny-peer CIDR]... [--max-allocations N]\n"
            "                          [--max-allocations-per-user N] [--max-lifetime SECONDS] [--stale-nonce SECONDS]\n"
            "                          [--threads N] [--tcp-max-conns N] [--max-conns-per-ip N]\n"
            "                          [--first-message-timeout SECONDS]\n"
            "                          [--max-allocate-timeout SECONDS] [--udp-rate N] [--udp-burst N]\n"
            "                          [--alternate-server IP:PORT]... [--tls-alternate-server IP:PORT]...\n"
            "                          [--alternate-domain NAME]\n"
            "                          [--metrics IP:PORT] [--config FILE]\n\n"
            "A TURN relay (RFC 8656): UDP and TCP on --listen, TLS on --tls-listen; UDP relays on --relay-ip.\n"
            "Peers in private, loopback, link-local, multicast and reserved ranges are refused (403) unless\n"
            "--allow-peer opens them (IPv4-mapped, NAT64, 6to4 and Teredo forms count as their IPv4).\n"
            "Runs until SIGINT/SIGTERM, then exits 0.\n\n"
            "  --listen IP:PORT           UDP and TCP listening address (coturn: listening-ip + listening-port)\n"
            "  --realm REALM              long-term credential realm (coturn: realm)\n"
            "  --user USER:PASS           an account; repeatable (coturn: user)\n"
            "  --auth-secret SECRET       TURN REST credentials: username EXPIRY:USER, password\n"
            "                             base64(HMAC-SHA1(SECRET, username)) (coturn: static-auth-secret)\n"
            "  --userdb FILE              users and REST secrets of REALM in coturn's SQLite database (tables\n"
            "                             turnusers_lt, turn_secret; coturn: userdb); managed with `natkit turn-user`\n"
            "                             or coturn's turnadmin -b FILE; changes are seen within 1 s, no restart\n"
            "  --redis-userdb CONNINFO    the same in Redis, coturn's keys turn/realm/REALM/user/NAME/key and\n"
            "                             turn/realm/REALM/secret; CONNINFO as coturn's: \"ip=127.0.0.1 port=6379\n"
            "                             dbname=0 password=... connect_timeout=30\" (coturn: redis-userdb)\n"
            "  --psql-userdb CONNINFO     the same in PostgreSQL, coturn's tables (schema.sql); CONNINFO as libpq\n"
            "                             takes it: \"host=127.0.0.1 dbname=coturn user=coturn password=...\n"
            "                             connect_timeout=5\" or postgresql://... (coturn: psql-userdb)\n"
            "  --relay-ip IP              address of the relay sockets (coturn: relay-ip)\n"
            "  --relay-ports MIN-MAX      relay port range, default 49152-65535 (coturn: min-port, max-port)\n"
            "  --tls-listen IP:PORT       TLS listening address (coturn: tls-listening-port)\n"
            "  --cert FILE, --key FILE    TLS certificate chain and private key, PEM (coturn: cert, pkey)\n"
            "  --allow-peer CIDR          open a peer range; repeatable (coturn: allowed-peer-ip)\n"
            "  --deny-peer CIDR           close a peer range; wins over --allow-peer (coturn: denied-peer-ip)\n"
            "  --max-allocations N        allocations in all, default 10000; 508 beyond (coturn: total-quota)\n"
            "  --max-allocations-per-user N  default 100, 0 = no limit; 486 beyond (coturn: user-quota)\n"
            "  --max-lifetime SECONDS     longest allocation lifetime, default 3600 (coturn: max-allocate-lifetime)\n"
            "  --stale-nonce SECONDS      nonce lifetime, default 600; older nonces get 438 (coturn: stale-nonce)\n"
            "  --threads N                N event loops on SO_REUSEPORT sockets, quotas shared, default 1\n"
            "                             (coturn: relay-threads)\n"
            "  --tcp-max-conns N          TCP+TLS connections per thread, default 1024; when full, the oldest\n"
            "                             connection that has not yet sent a valid message is closed for the\n"
            "                             new one\n"
            "  --max-conns-per-ip N       TCP+TLS connections per source per thread, default 64, 0 = no limit;\n"
            "                             a source is an IPv4 address or an IPv6 /64; more are closed at accept\n"
            "  --first-message-timeout SECONDS  close a TCP/TLS connection that has sent no valid message\n"
            "                             by then, default 5\n"
            "  --max-allocate-timeout SECONDS  close a TCP/TLS connection without an allocation for this\n"
            "                             long, default 30 (coturn: max-allocate-timeout)\n"
            "  --udp-rate N               answers over UDP to requests without credentials (Binding, 401/438\n"
            "                             challenges, 400) per source per second, default 500, 0 = no limit;\n"
            "                             requests beyond it are dropped unanswered and counted\n"
            "  --udp-burst N              ... with bursts up to N, default 2 x --udp-rate\n"
            "  --alternate-server IP:PORT answer every Allocate with 300 Try Alternate and one of these\n"
            "                             servers (ALTERNATE-SERVER, round-robin among those of the client's\n"
            "                             address family), before authentication: a front that spreads the\n"
            "                             load over the servers behind it; repeatable (coturn: alternate-server)\n"
            "  --tls-alternate-server IP:PORT  the same for clients over TLS (coturn: tls-alternate-server);\n"
            "                             without it, TLS clients go to --alternate-server\n"
            "  --alternate-domain NAME    ALTERNATE-DOMAIN in 300s over TLS: the name in the alternates'\n"
            "                             certificates, when it is not this server's\n"
            "  --metrics IP:PORT          serve Prometheus metrics at http://IP:PORT/metrics ([::1]:9100 for\n"
            "                             IPv6; port 0: any, logged); docs/internals/metrics.md lists them\n"
            "  --config FILE              read options from FILE: one 'name=value' (or 'name value') per line,\n"
            "                             '#' comments (a line, or after a space); names as above or coturn's\n"
            "                             (coturn: -c), including listening-ip, listening-port and\n"
            "                             tls-listening-port; coturn's flags without a value; errors name\n"
            "                             FILE:LINE (examples: /usr/share/doc/natkit/examples)\n");
}

static const char *keep(opts *o, const char *v)
{
    if (o->nstrings == sizeof(o->strings) / sizeof(o->strings[0]))
        return NULL;
    char *s = strdup(v);
    if (s != NULL)
        o->strings[o->nstrings++] = s;
    return s;
}

static void release(opts *o)
{
    for (size_t i = 0; i < o->nstrings; i++) {
        sodium_memzero(o->strings[i], strlen(o->strings[i]));
        free(o->strings[i]);
    }
    cli_config_release();
}

static int set_addr(nk_addr *a, const char *v)
{
    return nk_addr_parse(a, v) == 0 ? 0 : -1;
}

static int set_u32(uint32_t *out, const char *v, long min, long max)
{
    long n;
    if (cli_parse_long(v, min, max, &n) != 0)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static int set_port(uint16_t *out, const char *v)
{
    long n;
    if (cli_parse_long(v, 1, 65535, &n) != 0)
        return -1;
    *out = (uint16_t)n;
    return 0;
}

static int set_ports(opts *o, const char *v)
{
    char lo[16];
    const char *dash = strchr(v, '-');
    if (dash == NULL || (size_t)(dash - v) >= sizeof(lo))
        return -1;
    memcpy(lo, v, (size_t)(dash - v));
    lo[dash - v] = '\0';
    return set_port(&o->cfg.relay_port_min, lo) != 0 || set_port(&o->cfg.relay_port_max, dash + 1) != 0 ||
                   o->cfg.relay_port_max < o->cfg.relay_port_min
               ? -1
               : 0;
}

static int add_list(opts *o, const char **list, size_t *n, const char *v)
{
    if (*n == MAX_LIST || (list[*n] = keep(o, v)) == NULL)
        return -1;
    (*n)++;
    return 0;
}

static int read_config(opts *o, const char *path);

/* apply() kept a copy: the password or secret goes off the command line seen in /proc. */
static void hide_secret(const char *name, const char *v)
{
    const char *secret = NULL;
    if (!strcmp(name, "user"))
        secret = strchr(v, ':');
    else if (!strcmp(name, "auth-secret") || !strcmp(name, "static-auth-secret") || !strcmp(name, "redis-userdb") ||
             !strcmp(name, "psql-userdb"))
        secret = v; /* a connection string may hold password=... */
    if (secret != NULL)
        sodium_memzero((char *)secret, strlen(secret));
}

/* The limits per source (docs/internals/turn-server.md); 0, or -1 for a bad value. */
static int apply_limit(opts *o, const char *name, const char *v)
{
    long n;
    if (!strcmp(name, "first-message-timeout") || !strcmp(name, "max-allocate-timeout")) {
        if (cli_parse_seconds(v, 1, 86400L * 1000, &n) != 0)
            return -1;
        *(name[0] == 'f' ? &o->dcfg.first_ms : &o->dcfg.alloc_timeout_ms) = n;
        return 0;
    }
    if (cli_parse_long(v, !strcmp(name, "udp-burst") ? 1 : 0, 1000000, &n) != 0)
        return -1;
    if (!strcmp(name, "max-conns-per-ip"))
        o->dcfg.max_per_ip = n == 0 ? -1 : (int)n;
    else if (!strcmp(name, "udp-rate"))
        o->cfg.unauth_rate = (uint32_t)n;
    else
        o->cfg.unauth_burst = (uint32_t)n;
    return 0;
}

/* Applies one option; 0, or -1 with a message printed. */
static int apply(opts *o, const char *name, const char *v)
{
    int bad = 0;
    if (!strcmp(name, "listen"))
        bad = set_addr(&o->dcfg.listen, v), o->have_listen = 1;
    else if (!strcmp(name, "realm"))
        bad = (o->cfg.realm = keep(o, v)) == NULL;
    else if (!strcmp(name, "user"))
        bad = strchr(v, ':') == NULL || add_list(o, o->users, &o->nusers, v) != 0;
    else if (!strcmp(name, "auth-secret") || !strcmp(name, "static-auth-secret"))
        bad = *v == '\0' || (o->cfg.auth_secret = keep(o, v)) == NULL;
    else if (!strcmp(name, "userdb"))
        bad = *v == '\0' || (o->userdb = keep(o, v)) == NULL;
    else if (!strcmp(name, "redis-userdb"))
        bad = *v == '\0' || (o->redis_userdb = keep(o, v)) == NULL;
    else if (!strcmp(name, "psql-userdb"))
        bad = *v == '\0' || (o->psql_userdb = keep(o, v)) == NULL;
    else if (!strcmp(name, "relay-ip"))
        bad = nk_addr_parse_ip(&o->cfg.relay_ip, v) != 0;
    else if (!strcmp(name, "relay-ports"))
        bad = set_ports(o, v);
    else if (!strcmp(name, "min-port"))
        bad = set_port(&o->cfg.relay_port_min, v);
    else if (!strcmp(name, "max-port"))
        bad = set_port(&o->cfg.relay_port_max, v);
    else if (!strcmp(name, "tls-listen"))
        bad = set_addr(&o->dcfg.tls_listen, v);
    else if (!strcmp(name, "cert"))
        bad = (o->dcfg.cert_file = keep(o, v)) == NULL;
    else if (!strcmp(name, "key") || !strcmp(name, "pkey"))
        bad = (o->dcfg.key_file = keep(o, v)) == NULL;
    else if (!strcmp(name, "allow-peer") || !strcmp(name, "allowed-peer-ip"))
        bad = add_list(o, o->allow, &o->nallow, v);
    else if (!strcmp(name, "deny-peer") || !strcmp(name, "denied-peer-ip"))
        bad = add_list(o, o->deny, &o->ndeny, v);
    else if (!strcmp(name, "max-allocations") || !strcmp(name, "total-quota"))
        bad = set_u32(&o->cfg.max_allocations, v, 1, 10000000);
    else if (!strcmp(name, "max-allocations-per-user") || !strcmp(name, "user-quota"))
        bad = set_u32(&o->cfg.max_allocations_per_user, v, 0, 10000000);
    else if (!strcmp(name, "max-lifetime") || !strcmp(name, "max-allocate-lifetime"))
        bad = set_u32(&o->cfg.max_lifetime_s, v, NK_TURN_DEFAULT_LIFETIME_S, 86400);
    else if (!strcmp(name, "threads") || !strcmp(name, "relay-threads")) {
        uint32_t t = 0;
        bad = set_u32(&t, v, 1, MAX_THREADS);
        o->threads = t;
    } else if (!strcmp(name, "metrics"))
        bad = nk_addr_parse(&o->metrics, v) != 0;
    else if (!strcmp(name, "stale-nonce"))
        bad = set_u32(&o->cfg.nonce_lifetime_s, v, 1, 86400);
    else if (!strcmp(name, "tcp-max-conns"))
        bad = set_u32(&o->dcfg.max_connections, v, 1, 1000000);
    else if (!strcmp(name, "max-conns-per-ip") || !strcmp(name, "first-message-timeout") ||
             !strcmp(name, "max-allocate-timeout") || !strcmp(name, "udp-rate") || !strcmp(name, "udp-burst"))
        bad = apply_limit(o, name, v);
    else if (!strcmp(name, "alternate-server"))
        bad = o->cfg.n_alternates == MAX_LIST || set_addr(&o->alts[o->cfg.n_alternates++], v) != 0 ||
              o->alts[o->cfg.n_alternates - 1].port == 0;
    else if (!strcmp(name, "tls-alternate-server"))
        bad = o->cfg.n_tls_alternates == MAX_LIST || set_addr(&o->tls_alts[o->cfg.n_tls_alternates++], v) != 0 ||
              o->tls_alts[o->cfg.n_tls_alternates - 1].port == 0;
    else if (!strcmp(name, "alternate-domain"))
        bad = *v == '\0' || strlen(v) > 255 || (o->cfg.alternate_domain = keep(o, v)) == NULL;
    else if (!strcmp(name, "config"))
        return read_config(o, v); /* its errors are named there */
    else if (!strcmp(name, "listening-ip"))
        bad = (o->listening_ip = keep(o, v)) == NULL;
    else if (!strcmp(name, "listening-port"))
        bad = set_port(&o->listening_port, v);
    else if (!strcmp(name, "tls-listening-port"))
        bad = set_port(&o->tls_listening_port, v);
    else {
        cli_usage_error(CMD, "unknown option '%s'", name);
        return -1;
    }
    if (bad && !o->file_failed)
        cli_usage_error(CMD, "bad value for --%s: '%s'", name,
                        !strcmp(name, "user") || strstr(name, "secret") != NULL || strstr(name, "-userdb") != NULL
                            ? "..."
                            : v);
    return bad ? -1 : 0;
}

/* Options that take no value in coturn's files; accepted and ignored (natkit always does them). */
static int is_noop_flag(const char *name)
{
    static const char *const flags[] = {"lt-cred-mech", "use-auth-secret", "fingerprint", "no-cli", "no-dtls",
                                        "no-multicast-peers", "no-loopback-peers", "verbose"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (!strcmp(name, flags[i]))
            return 1;
    return 0;
}

/* One line of a --config file (config.h): a name alone is one of coturn's flags. */
static int config_apply(void *ctx, const char *name, const char *v)
{
    if (v == NULL)
        return is_noop_flag(name) ? 0 : cli_usage_error(CMD, "option '%s' needs a value", name);
    return apply(ctx, name, v);
}

static int read_config(opts *o, const char *path)
{
    int rc = cli_config_read(CMD, path, config_apply, o);
    if (rc == CLI_EXIT_FAIL)
        o->file_failed = 1; /* the file could not be read: exit 1, not 2 */
    return rc == 0 ? 0 : -1;
}

static int parse_args(opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            cli_usage_error(CMD, "unexpected argument '%s'", a);
            return -1;
        }
        char name[64];
        const char *eq = strchr(a + 2, '='), *v;
        size_t n = eq != NULL ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof(name)) {
            cli_usage_error(CMD, "unknown option '%s'", a);
            return -1;
        }
        memcpy(name, a + 2, n);
        name[n] = '\0';
        if (eq != NULL)
            v = eq + 1;
        else if (is_noop_flag(name))
            continue;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            cli_usage_error(CMD, "option '--%s' needs a value", name);
            return -1;
        }
        if (apply(o, name, v) != 0)
            return -1;
        hide_secret(name, v);
    }
    return 0;
}

/* coturn's split form: listening-ip (default 0.0.0.0) with listening-port / tls-listening-port. */
static int coturn_listen(opts *o)
{
    nk_addr ip;
    if (o->listening_ip == NULL && o->listening_port == 0 && o->tls_listening_port == 0)
        return 0;
    if (nk_addr_parse_ip(&ip, o->listening_ip != NULL ? o->listening_ip : "0.0.0.0") != 0)
        return cli_usage_error(CMD, "bad listening-ip '%s'", o->listening_ip);
    if (!o->have_listen) {
        o->dcfg.listen = ip;
        o->dcfg.listen.port = o->listening_port != 0 ? o->listening_port : 3478;
        o->have_listen = 1;
    }
    if (o->tls_listening_port != 0 && o->dcfg.tls_listen.family == NK_AF_NONE) {
        o->dcfg.tls_listen = ip;
        o->dcfg.tls_listen.port = o->tls_listening_port;
    }
    return 0;
}

static int check_opts(opts *o)
{
    if (coturn_listen(o) != 0)
        return CLI_EXIT_USAGE;
    if (!o->have_listen)
        return cli_usage_error(CMD, "--listen IP:PORT is required");
    if (o->cfg.realm == NULL)
        return cli_usage_error(CMD, "--realm is required");
    if ((o->userdb != NULL) + (o->redis_userdb != NULL) + (o->psql_userdb != NULL) > 1)
        return cli_usage_error(CMD, "give one of --userdb, --redis-userdb and --psql-userdb, not several");
    /* a front that only redirects (--alternate-server) needs no accounts of its own */
    if (o->nusers == 0 && o->cfg.auth_secret == NULL && o->userdb == NULL && o->redis_userdb == NULL &&
        o->psql_userdb == NULL &&
        o->cfg.n_alternates + o->cfg.n_tls_alternates == 0)
        return cli_usage_error(CMD, "give --user USER:PASS, --auth-secret SECRET, --userdb FILE, "
                                    "--redis-userdb CONNINFO or --psql-userdb CONNINFO (or --alternate-server)");
    if (o->cfg.relay_ip.family == NK_AF_NONE)
        return cli_usage_error(CMD, "--relay-ip is required");
    if (o->dcfg.tls_listen.family != NK_AF_NONE && (o->dcfg.cert_file == NULL || o->dcfg.key_file == NULL))
        return cli_usage_error(CMD, "--tls-listen needs --cert and --key");
    if (o->cfg.relay_port_max < o->cfg.relay_port_min)
        return cli_usage_error(CMD, "empty relay port range");
    return 0;
}

static int setup_server(opts *o, nk_turn_server *s)
{
    for (size_t i = 0; i < o->nusers; i++) {
        char *u = (char *)o->users[i], *colon = strchr(u, ':');
        *colon = '\0';
        int err = nk_turn_server_add_user(s, u, colon + 1);
        *colon = ':';
        if (err != 0)
            return cli_usage_error(CMD, "bad --user '%s:...'", u);
    }
    for (size_t i = 0; i < o->nallow; i++)
        if (nk_turn_server_allow_peer(s, o->allow[i]) != 0)
            return cli_usage_error(CMD, "bad --allow-peer '%s'", o->allow[i]);
    for (size_t i = 0; i < o->ndeny; i++)
        if (nk_turn_server_deny_peer(s, o->deny[i]) != 0)
            return cli_usage_error(CMD, "bad --deny-peer '%s'", o->deny[i]);
    return 0;
}

static void log_start(const nk_turn_service *d, const opts *o)
{
    char l[NK_ADDR_STRLEN], t[NK_ADDR_STRLEN], r[NK_ADDR_STRLEN];
    nk_addr listen, tls;
    nk_turn_service_addrs(d, &listen, &tls);
    char db[600] = "";
    if (o->udb != NULL) {
        nk_turn_userdb_stats_t st;
        nk_turn_userdb_stats(o->udb, &st);
        snprintf(db, sizeof(db), ", %s%s (%llu users, %llu REST secrets, read in %llu ms)",
                 o->userdb != NULL ? "userdb " : o->redis_userdb != NULL ? "Redis userdb" : "PostgreSQL userdb",
                 o->userdb != NULL ? o->userdb : "",
                 (unsigned long long)st.users, (unsigned long long)st.secrets, (unsigned long long)st.last_load_ms);
    }
    cli_log(CMD, "listening on udp+tcp %s%s%s, relay %s ports %u-%u, realm %s, %s%s",
            nk_addr_format(&listen, l, sizeof(l)), tls.family != NK_AF_NONE ? ", tls " : "",
            tls.family != NK_AF_NONE ? nk_addr_format(&tls, t, sizeof(t)) : "",
            nk_addr_format_ip(&o->cfg.relay_ip, r, sizeof(r)), o->cfg.relay_port_min, o->cfg.relay_port_max,
            o->cfg.realm, o->cfg.auth_secret != NULL ? "REST credentials" : "long-term credentials", db);
    if (o->cfg.n_alternates + o->cfg.n_tls_alternates > 0) {
        char alts[1024] = "";
        size_t len = 0;
        for (size_t i = 0; i < o->cfg.n_alternates + o->cfg.n_tls_alternates && len < sizeof(alts) - 64; i++) {
            int tls_alt = i >= o->cfg.n_alternates;
            const nk_addr *a = tls_alt ? &o->tls_alts[i - o->cfg.n_alternates] : &o->alts[i];
            len += (size_t)snprintf(alts + len, sizeof(alts) - len, "%s%s%s", len > 0 ? ", " : "",
                                    tls_alt ? "tls " : "", nk_addr_format(a, l, sizeof(l)));
        }
        cli_log(CMD, "answering Allocates with 300 Try Alternate, round-robin: %s", alts);
    }
}

/* One thread's share: its own listeners (SO_REUSEPORT), core and relays. */
typedef struct worker {
    nk_turn_service *d;
    nk_turn_server *s;
    pthread_t thread;
    int started, err;
} worker;

/* Every thread's counters added up; from its service's published copy (thread-safe). */
static void sum_stats(const worker *w, unsigned n, nk_turn_server_stats_t *sum)
{
    nk_turn_server_stats_t st;
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < n; i++) {
        nk_turn_service_stats(w[i].d, &st);
        uint64_t *a = (uint64_t *)sum;
        const uint64_t *b = (const uint64_t *)&st;
        for (size_t k = 0; k < sizeof(st) / sizeof(uint64_t); k++)
            a[k] += b[k];
    }
}

typedef struct collect_ctx {
    const worker *w;
    unsigned n;
} collect_ctx;

static void collect(void *ctx, nk_metrics_text *t)
{
    const collect_ctx *c = ctx;
    nk_turn_server_stats_t sum;
    sum_stats(c->w, c->n, &sum);
    nk_metrics_write_turn(t, &sum);
}

/* After the loops ended: their last published counters are exact. */
static void log_stats(const worker *w, unsigned n)
{
    nk_turn_server_stats_t sum;
    sum_stats(w, n, &sum);
    cli_log(CMD,
            "stopped; allocations %llu (live %llu), requests %llu, malformed %llu, "
            "401 %llu+%llu, 438 %llu, 403 %llu, 486 %llu, 508 %llu, to peers %llu, to clients %llu, dropped %llu, "
            "redirected %llu, rate-limited %llu, tcp %llu accepted, %llu rejected, %llu rejected per source, "
            "%llu closed without a first message, %llu evicted",
            (unsigned long long)sum.allocations_created, (unsigned long long)sum.allocations,
            (unsigned long long)sum.requests, (unsigned long long)sum.malformed,
            (unsigned long long)sum.unauthenticated, (unsigned long long)sum.auth_failed,
            (unsigned long long)sum.stale_nonce, (unsigned long long)sum.peer_denied,
            (unsigned long long)sum.quota_user, (unsigned long long)sum.quota_total,
            (unsigned long long)sum.to_peer, (unsigned long long)sum.to_client, (unsigned long long)sum.dropped,
            (unsigned long long)sum.redirected, (unsigned long long)sum.rate_limited,
            (unsigned long long)sum.tcp_accepted,
            (unsigned long long)sum.tcp_rejected, (unsigned long long)sum.tcp_rejected_per_ip,
            (unsigned long long)sum.tcp_first_timeout, (unsigned long long)sum.tcp_evicted);
}

/* Opens worker i's listeners and core; 0 or an exit code. */
static int worker_open(opts *o, worker *w)
{
    nk_turn_server_ops ops;
    int err = nk_turn_service_new(&w->d, &o->dcfg);
    if (err != 0)
        return cli_fail_nk(CMD, CLI_EXIT_FAIL, err, "listen");
    /* the next workers bind the same (resolved) ports */
    nk_turn_service_addrs(w->d, &o->dcfg.listen, &o->dcfg.tls_listen);
    nk_turn_service_ops(w->d, &ops);
    if (o->udb != NULL) {
        ops.user_keys = nk_turn_userdb_keys;
        ops.user_ctx = o->udb;
    }
    if ((err = nk_turn_server_new(&w->s, &o->cfg, &ops)) != 0)
        return cli_usage_error(CMD, "the options do not make a TURN server: %s", nk_strerror(err));
    return setup_server(o, w->s) == 0 ? 0 : CLI_EXIT_USAGE;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->err = nk_turn_service_run(w->d, w->s, &cli_stop_requested);
    return NULL;
}

static void workers_close(worker *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        nk_turn_server_free(w[i].s);
        nk_turn_service_free(w[i].d);
    }
}

/* The relay address must be one of this host's: a UDP socket is bound to it once (else every
 * Allocate would fail with 508 later). 0, or exit 1 with the system's reason. */
static int check_relay_ip(const opts *o)
{
    nk_addr a = o->cfg.relay_ip;
    char ip[NK_ADDR_STRLEN];
    a.port = 0;
    int fd = nk_udp_open(&a, 0);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    int e = 0;
    nk_error_context(&e);
    return cli_fail(CMD, CLI_EXIT_FAIL, e, "--relay-ip %s cannot be used (not an address of this host?): cannot bind it",
                    nk_addr_format_ip(&o->cfg.relay_ip, ip, sizeof(ip)));
}

/* --userdb / --redis-userdb / --psql-userdb: read once now (a server starts with its users), then kept fresh. */
static int open_userdb(opts *o)
{
    nk_turn_userdb_options uo;
    char err[600];
    if (o->userdb == NULL && o->redis_userdb == NULL && o->psql_userdb == NULL)
        return 0;
    nk_turn_userdb_options_init(&uo);
    uo.sqlite_path = o->userdb;
    uo.redis = o->redis_userdb;
    uo.psql = o->psql_userdb;
    uo.realm = o->cfg.realm;
    int e = nk_turn_userdb_new(&o->udb, &uo, err, sizeof(err));
    if (e != 0) {
        return e == NK_ERR_INVAL ? cli_usage_error(CMD, "%s", err) : cli_fail(CMD, CLI_EXIT_FAIL, 0, "%s", err);
    }
    return 0;
}

static int run(opts *o)
{
    static worker w[MAX_THREADS];
    nk_turn_shared *shared = NULL;
    unsigned n = o->threads, opened = 0;
    int rc = 0;
    memset(w, 0, sizeof(w));
    if ((rc = check_relay_ip(o)) != 0)
        return rc;
    o->dcfg.reuse_port = n > 1;
    if ((rc = open_userdb(o)) != 0)
        return rc;
    if (n > 1) { /* one set of quotas and reservations for every thread's core */
        if (nk_turn_shared_new(&shared, o->cfg.max_allocations, o->cfg.max_allocations_per_user) != 0)
            return CLI_EXIT_FAIL;
        o->cfg.shared = shared;
    }
    for (; opened < n && rc == 0; opened++)
        rc = worker_open(o, &w[opened]);
    collect_ctx cc = {w, n};
    nk_metrics_server *metrics = NULL;
    if (rc == 0)
        rc = cli_metrics_start(CMD, &o->metrics, collect, &cc, &metrics);
    if (rc == 0) {
        cli_install_stop_signals();
        log_start(w[0].d, o);
        for (unsigned i = 1; i < n; i++)
            w[i].started = pthread_create(&w[i].thread, NULL, worker_main, &w[i]) == 0;
        worker_main(&w[0]);
        cli_stop_requested = 1; /* if the main loop failed, stop the others too */
        for (unsigned i = 1; i < n; i++)
            if (w[i].started)
                pthread_join(w[i].thread, NULL);
        for (unsigned i = 0; i < n; i++)
            if (w[i].err != 0 || (i > 0 && !w[i].started))
                rc = CLI_EXIT_FAIL;
        if (w[0].err != 0)
            cli_fail(CMD, CLI_EXIT_FAIL, errno, "the event loop failed: %s", nk_strerror(w[0].err));
        log_stats(w, n);
    }
    nk_metrics_server_free(metrics);
    workers_close(w, opened);
    nk_turn_shared_free(shared);
    nk_turn_userdb_free(o->udb);
    return rc;
}

int cmd_turn_server_main(int argc, char **argv);
int cmd_turn_server_main(int argc, char **argv)
{
    static opts o;
    cli_server = CMD; /* failures are log lines (usage errors are not) */
    memset(&o, 0, sizeof(o));
    o.threads = 1;
    nk_turn_server_config_init(&o.cfg);
    o.cfg.alternates = o.alts;
    o.cfg.tls_alternates = o.tls_alts;
    nk_turn_service_options_init(&o.dcfg);
    int rc = parse_args(&o, argc, argv);
    if (rc == 0)
        rc = check_opts(&o) == 0 ? run(&o) : CLI_EXIT_USAGE;
    else
        rc = rc > 0 ? CLI_EXIT_OK : o.file_failed ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
    release(&o);
    return rc;
}
