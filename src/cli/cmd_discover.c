/* natkit discover: this host's public (mapped) address, from STUN servers. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "natkit/stun_client.h"

#define MAX_SERVERS 16
#define DEFAULT_TIMEOUT_MS 5000

int cmd_discover_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit discover --stun HOST:PORT [--stun HOST:PORT]... [--timeout SECONDS]\n"
            "                       [--bind IP:PORT] [--json]\n\n"
            "Sends a STUN Binding request and prints the local address, the mapped (public)\n"
            "address the server saw, the server that answered and the round-trip time.\n"
            "Servers are tried in order; when one does not answer within 1.5 s the next one\n"
            "is tried too (earlier ones may still answer).\n\n"
            "  --stun HOST:PORT   a STUN server (repeatable, up to %d; port defaults to 3478)\n"
            "  --timeout SECONDS  give up after this long (default %d)\n"
            "  --bind IP:PORT     local address to send from (default: any, ephemeral port)\n"
            "  --json             print one JSON object:\n"
            "                     {\"local\":\"IP:PORT\",\"mapped\":\"IP:PORT\",\"server\":\"IP:PORT\",\"rtt_ms\":N}\n"
            "                     (a failure: {\"event\":\"error\",...} on stderr; docs/json-events.md)\n\n"
            "exit status: 0 found, 1 no server answered (or all refused), 2 usage error\n",
            MAX_SERVERS, DEFAULT_TIMEOUT_MS / 1000);
}

static void print_result(const nk_addr *local, const nk_stun_binding_result *r, int json)
{
    char l[NK_ADDR_STRLEN], m[NK_ADDR_STRLEN], s[NK_ADDR_STRLEN];
    nk_addr_format(local, l, sizeof(l));
    nk_addr_format(&r->mapped, m, sizeof(m));
    nk_addr_format(&r->server, s, sizeof(s));
    if (json) {
        printf("{\"local\":\"%s\",\"mapped\":\"%s\",\"server\":\"%s\",\"rtt_ms\":%lld}\n", l, m, s,
               (long long)r->rtt_ms);
        return;
    }
    printf("local:   %s\nmapped:  %s\nserver:  %s\nrtt:     %lld ms\n", l, m, s, (long long)r->rtt_ms);
    if (nk_addr_equal(local, &r->mapped))
        printf("         (mapped == local: no NAT between this host and the server)\n");
}

int cmd_discover_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"stun", required_argument, NULL, 's'}, {"timeout", required_argument, NULL, 't'},
        {"bind", required_argument, NULL, 'b'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    nk_addr servers[MAX_SERVERS], bind_addr;
    size_t nservers = 0;
    long timeout_ms = DEFAULT_TIMEOUT_MS;
    int json = 0, have_bind = 0, ch;

    memset(&bind_addr, 0, sizeof(bind_addr));
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+s:t:b:jh", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            if (nservers == MAX_SERVERS)
                return cli_usage_error("discover", "at most %d --stun servers", MAX_SERVERS);
            if (nk_addr_resolve(&servers[nservers], optarg, 3478) != 0)
                return cli_usage_error("discover", "--stun '%s': not a HOST:PORT that resolves", optarg);
            nservers++;
            break;
        case 't':
            if (cli_parse_seconds(optarg, 100, 3600 * 1000, &timeout_ms) != 0)
                return cli_usage_error("discover", "--timeout '%s': want seconds between 0.1 and 3600", optarg);
            break;
        case 'b':
            if (nk_addr_parse(&bind_addr, optarg) != 0)
                return cli_usage_error("discover", "--bind '%s': want IP:PORT", optarg);
            have_bind = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_usage_error("discover", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("discover", "unexpected argument '%s'", argv[optind]);
    if (nservers == 0)
        return cli_usage_error("discover", "no STUN server given (use --stun HOST:PORT)");

    nk_stun_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.servers = servers;
    cfg.nservers = nservers;
    cfg.timeout_ms = timeout_ms;

    nk_addr local;
    nk_stun_binding_result res;
    int rc = nk_stun_discover(&cfg, have_bind ? &bind_addr : NULL, &local, &res);
    if (rc != 0) {
        int e = 0;
        const char *what = nk_error_context(&e);
        if (what[0] != '\0' && rc == NK_ERR_SYSTEM)
            return cli_fail("discover", CLI_EXIT_FAIL, e, "cannot %s", what);
        char s[NK_ADDR_STRLEN], tried[MAX_SERVERS * (NK_ADDR_STRLEN + 1)];
        size_t len = 0;
        tried[0] = '\0';
        for (size_t i = 0; i < nservers; i++)
            len += (size_t)snprintf(tried + len, sizeof(tried) - len, " %s", nk_addr_format(&servers[i], s, sizeof(s)));
        return cli_fail("discover", CLI_EXIT_FAIL, 0, "no answer: %s (tried%s; waited up to %.1f s)",
                        rc == NK_ERR_TIMEOUT ? "timed out" : nk_strerror(rc), tried, (double)timeout_ms / 1000.0);
    }
    print_result(&local, &res, json);
    return CLI_EXIT_OK;
}
