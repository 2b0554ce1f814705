/* natkit nat-type: RFC 5780 NAT behaviour discovery (driver for nk_nat_probe). */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "natkit/clock.h"
#include "natkit/nat_probe.h"
#include "natkit/udp.h"

#define DEFAULT_TEST_TIMEOUT_MS 2750 /* 11 RTO of 250 ms: sends at 0, 1, 3, 7 RTO, gives up at 11 */
#define MAX_SOCKETS 32

int cmd_nat_type_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit nat-type --stun HOST:PORT [--json] [--lifetime] [--lifetime-max SECONDS]\n"
            "                       [--timeout SECONDS]\n\n"
            "Discovers how the NAT between this host and an RFC 5780 STUN server behaves\n"
            "(RFC 4787 terms): mapping and filtering behaviour (endpoint-independent,\n"
            "address-dependent, address-and-port-dependent), hairpinning, the port allocation\n"
            "pattern (preserving, sequential, random), the classic RFC 3489 label (open,\n"
            "full-cone, restricted-cone, port-restricted-cone, symmetric, udp-blocked) and,\n"
            "with --lifetime, how long an idle UDP binding survives.\n"
            "The server needs an alternate address (natkit stun-server --alt-ip, or coturn\n"
            "with two addresses); without one, the tests that need it are named, not guessed.\n\n"
            "  --stun HOST:PORT        the STUN server (port defaults to 3478)\n"
            "  --json                  print one JSON object:\n"
            "                          {\"mapped\":\"IP:PORT\",\"mapping\":M,\"filtering\":F,\n"
            "                           \"hairpinning\":true|false|null,\"port_allocation\":P,\"classic\":C,...}\n"
            "                          (a failure: {\"event\":\"error\",...} on stderr; docs/json-events.md)\n"
            "  --lifetime              also estimate the binding lifetime (idle waits up to\n"
            "                          --lifetime-max, default 60 s; needs RESPONSE-PORT)\n"
            "  --lifetime-max SECONDS  longest idle wait tried (1..600)\n"
            "  --timeout SECONDS       how long one test waits for an answer (default 2.75;\n"
            "                          requests are resent at 0, 1/11, 3/11 and 7/11 of it)\n\n"
            "exit status: 0 done, 1 no answer from the server (UDP blocked?) or refused, 2 usage\n");
}

/* ---- output ------------------------------------------------------------------ */

static void json_string_or_null(const char *key, const char *value, int comma)
{
    if (value != NULL)
        printf("\"%s\":\"%s\"%s", key, value, comma ? "," : "");
    else
        printf("\"%s\":null%s", key, comma ? "," : "");
}

static void print_untested_json(const nk_nat_report *r)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        {NK_NAT_TEST_MAPPING, "mapping"},     {NK_NAT_TEST_FILTERING, "filtering"},
        {NK_NAT_TEST_HAIRPIN, "hairpinning"}, {NK_NAT_TEST_PORTS, "port_allocation"},
        {NK_NAT_TEST_LIFETIME, "lifetime"},
    };
    int first = 1;
    printf(",\"untested\":[");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (r->untested & names[i].bit) {
            printf("%s\"%s\"", first ? "" : ",", names[i].name);
            first = 0;
        }
    }
    printf("],\"note\":\"");
    for (const char *c = r->note; *c; c++)
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if ((unsigned char)*c >= 0x20)
            putchar(*c);
    printf("\"");
}

static void print_json(const nk_nat_report *r, int lifetime)
{
    char pub[NK_ADDR_STRLEN], loc[NK_ADDR_STRLEN];
    int ok = r->status == 0;
    printf("{");
    json_string_or_null("mapped", ok ? nk_addr_format(&r->public_addr, pub, sizeof(pub)) : NULL, 1);
    json_string_or_null("mapping", nk_nat_behaviour_name(r->mapping), 1);
    json_string_or_null("filtering", nk_nat_behaviour_name(r->filtering), 1);
    printf("\"hairpinning\":%s,", r->hairpinning < 0 ? "null" : r->hairpinning ? "true" : "false");
    json_string_or_null("port_allocation", nk_port_allocation_name(r->port_allocation), 1);
    json_string_or_null("classic", nk_nat_classic_name(r->classic), 0);
    if (r->port_allocation == NK_PORTS_SEQUENTIAL)
        printf(",\"port_delta\":%d", r->port_delta);
    printf(",\"local\":\"%s\"", nk_addr_format(&r->local, loc, sizeof(loc)));
    if (lifetime) {
        if (r->lifetime_min_s >= 0)
            printf(",\"lifetime_s\":%d", r->lifetime_min_s);
        else
            printf(",\"lifetime_s\":null");
        if (r->lifetime_max_s >= 0)
            printf(",\"lifetime_max_s\":%d", r->lifetime_max_s);
        else
            printf(",\"lifetime_max_s\":null");
    }
    if (r->untested != 0)
        print_untested_json(r);
    printf("}\n");
}

static const char *or_untested(const char *s)
{
    return s != NULL ? s : "(not tested)";
}

static void print_text(const nk_nat_report *r, const nk_addr *server, int lifetime)
{
    char buf[NK_ADDR_STRLEN];
    printf("server:          %s", nk_addr_format(server, buf, sizeof(buf)));
    if (r->other_address.family != NK_AF_NONE)
        printf(" (alternate %s)", nk_addr_format(&r->other_address, buf, sizeof(buf)));
    printf("\nlocal:           %s\n", nk_addr_format(&r->local, buf, sizeof(buf)));
    if (r->status != 0) {
        printf("classic:         %s\n", or_untested(nk_nat_classic_name(r->classic)));
        return;
    }
    printf("mapped:          %s%s\n", nk_addr_format(&r->public_addr, buf, sizeof(buf)),
           r->behind_nat ? "" : " (= local: no NAT)");
    printf("mapping:         %s\n", or_untested(nk_nat_behaviour_name(r->mapping)));
    printf("filtering:       %s\n", or_untested(nk_nat_behaviour_name(r->filtering)));
    printf("hairpinning:     %s\n", r->hairpinning < 0 ? (r->behind_nat ? "(not tested)" : "n/a (no NAT)")
                                    : r->hairpinning ? "yes" : "no");
    printf("port allocation: %s", or_untested(nk_port_allocation_name(r->port_allocation)));
    if (r->port_allocation == NK_PORTS_SEQUENTIAL)
        printf(" (delta %+d)", r->port_delta);
    printf("\n");
    if (lifetime) {
        if (r->lifetime_min_s < 0)
            printf("binding lifetime: (not tested)\n");
        else if (r->lifetime_max_s < 0)
            printf("binding lifetime: at least %d s\n", r->lifetime_min_s);
        else
            printf("binding lifetime: between %d and %d s\n", r->lifetime_min_s, r->lifetime_max_s);
    }
    printf("classic:         %s\n", or_untested(nk_nat_classic_name(r->classic)));
    if (r->untested != 0)
        printf("not tested:      %s\n", r->note);
}

/* ---- the driver ----------------------------------------------------------------- */

typedef struct sockets {
    size_t n;
    int fd[MAX_SOCKETS];
    nk_addr local[MAX_SOCKETS];
} sockets;

static void close_all(sockets *s)
{
    for (size_t i = 0; i < s->n; i++)
        close(s->fd[i]);
    s->n = 0;
}

/* The local IP the kernel would use toward the server (a connected UDP socket, nothing sent). */
static int route_source(const nk_addr *server, nk_addr *out)
{
    struct sockaddr_storage ss;
    unsigned len;
    socklen_t slen = sizeof(ss);
    nk_addr_to_sockaddr(server, (struct sockaddr *)&ss, &len);
    int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
    if (fd < 0)
        return NK_ERR_SYSTEM;
    int rc = connect(fd, (struct sockaddr *)&ss, len) == 0 && getsockname(fd, (struct sockaddr *)&ss, &slen) == 0
                 ? nk_addr_from_sockaddr(out, (struct sockaddr *)&ss)
                 : NK_ERR_SYSTEM;
    close(fd);
    out->port = 0;
    return rc;
}

static int open_all(sockets *s, size_t n, const nk_addr *server)
{
    nk_addr ip;
    int rc = route_source(server, &ip);
    s->n = 0;
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int fd = nk_udp_open(&ip, 0);
        if (fd < 0) {
            close_all(s);
            return fd;
        }
        s->fd[s->n] = fd;
        if ((rc = nk_udp_local(fd, &s->local[s->n++])) != 0) {
            close_all(s);
            return rc;
        }
    }
    return 0;
}

static void flush(nk_nat_probe *p, const sockets *s)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    while (nk_nat_probe_poll_transmit(p, nk_now_ms(), &tx, buf, sizeof(buf)) == 0)
        for (size_t i = 0; i < s->n; i++)
            if (nk_addr_equal(&s->local[i], &tx.from))
                nk_udp_send(s->fd[i], &tx.to, buf, tx.len); /* a failed send is a lost datagram */
}

static void receive(nk_nat_probe *p, const sockets *s, const struct pollfd *pfd)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    for (size_t i = 0; i < s->n; i++) {
        if (!(pfd[i].revents & POLLIN))
            continue;
        for (int budget = 64; budget > 0; budget--) {
            nk_addr from;
            int n = nk_udp_recv(s->fd[i], buf, sizeof(buf), &from, NULL);
            if (n < 0)
                break;
            nk_nat_probe_handle_datagram(p, nk_now_ms(), &s->local[i], &from, buf, (size_t)n);
        }
    }
}

static int run(nk_nat_probe *p, const sockets *s, nk_nat_report *r)
{
    struct pollfd pfd[MAX_SOCKETS];
    for (size_t i = 0; i < s->n; i++)
        pfd[i] = (struct pollfd){.fd = s->fd[i], .events = POLLIN};
    while (!nk_nat_probe_result(p, r)) {
        if (cli_stop_requested)
            return NK_ERR_CLOSED;
        flush(p, s);
        int64_t wait = nk_nat_probe_next_deadline(p) - nk_now_ms();
        if (wait < 0)
            wait = 0;
        if (wait > 1000)
            wait = 1000;
        if (poll(pfd, s->n, (int)wait) > 0)
            receive(p, s, pfd);
        nk_nat_probe_handle_timeout(p, nk_now_ms());
    }
    return 0;
}

static int probe(const nk_nat_probe_config *cfg, nk_nat_report *r)
{
    nk_nat_probe *p;
    sockets s;
    int rc = nk_nat_probe_new(&p, cfg);
    if (rc != 0)
        return rc;
    size_t n = nk_nat_probe_socket_count(p);
    if (n > MAX_SOCKETS || (rc = open_all(&s, n, &cfg->server)) != 0) {
        nk_nat_probe_free(p);
        return rc != 0 ? rc : NK_ERR_LIMIT;
    }
    rc = nk_nat_probe_start(p, nk_now_ms(), s.local, s.n);
    if (rc == 0)
        rc = run(p, &s, r);
    close_all(&s);
    nk_nat_probe_free(p);
    return rc;
}

int cmd_nat_type_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"stun", required_argument, NULL, 's'},    {"json", no_argument, NULL, 'j'},
        {"lifetime", no_argument, NULL, 'l'},      {"lifetime-max", required_argument, NULL, 'm'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    nk_nat_probe_config cfg;
    const char *stun = NULL;
    long test_ms = DEFAULT_TEST_TIMEOUT_MS, life_ms = 0;
    int json = 0, ch;

    memset(&cfg, 0, sizeof(cfg));
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 's': stun = optarg; break;
        case 'j': json = 1; break;
        case 'l': cfg.lifetime = 1; break;
        case 'm':
            if (cli_parse_seconds(optarg, 1000, 600000, &life_ms) != 0)
                return cli_usage_error("nat-type", "--lifetime-max wants seconds in 1..600, not '%s'", optarg);
            break;
        case 't':
            if (cli_parse_seconds(optarg, 110, 60000, &test_ms) != 0)
                return cli_usage_error("nat-type", "--timeout wants seconds in 0.11..60, not '%s'", optarg);
            break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: return cli_usage_error("nat-type", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("nat-type", "unexpected argument '%s'", argv[optind]);
    if (stun == NULL)
        return cli_usage_error("nat-type", "--stun HOST:PORT is required");
    if (nk_addr_resolve(&cfg.server, stun, 3478) != 0)
        return cli_usage_error("nat-type", "cannot resolve '%s'", stun);
    cfg.rto_ms = test_ms / 11;
    cfg.lifetime_max_ms = life_ms;
    cfg.software = "natkit nat-type";

    cli_install_stop_signals();
    nk_nat_report r;
    memset(&r, 0, sizeof(r));
    int rc = probe(&cfg, &r);
    if (rc != 0)
        return cli_fail_nk("nat-type", CLI_EXIT_FAIL, rc, "probe");
    if (json)
        print_json(&r, cfg.lifetime);
    else
        print_text(&r, &cfg.server, cfg.lifetime);
    if (r.status == NK_ERR_TIMEOUT)
        return cli_fail("nat-type", CLI_EXIT_FAIL, 0, "no answer from %s: UDP is blocked or no STUN server runs there",
                        stun);
    if (r.status != 0)
        return cli_fail("nat-type", CLI_EXIT_FAIL, 0, "%s refused: %s", stun, nk_strerror(r.status));
    return CLI_EXIT_OK;
}
