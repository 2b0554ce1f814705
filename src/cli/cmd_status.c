/* natkit status: ask running listen/connect/hub processes (their control sockets) what they hold. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "json.h"

int cmd_status_main(int argc, char **argv);

#define QUERY_MS 3000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit status [PID | PATH] [--json]\n\n"
            "Asks running `natkit listen`, `connect` and `hub` processes what they hold, the way\n"
            "`wg show` does: each opens a control socket (mode 0600) in this user's runtime\n"
            "directory ($XDG_RUNTIME_DIR/natkit/, /run/natkit for root, else /tmp/natkit-UID/),\n"
            "named COMMAND-PID.sock and removed when it exits (`--control PATH` puts it elsewhere).\n"
            "Without an argument every process found there is asked (sockets of processes that\n"
            "are gone are removed); with a PID, that process; with a PATH, that socket.\n\n"
            "listen/connect: own peer ID, UDP address, hub address and state (connected,\n"
            "registering, closed, none), and per connection: peer ID, state, path (direct, turn,\n"
            "hub) with the remote address, RTT, stream bytes sent and received, age, open streams.\n"
            "hub: the registered peers: ID, address, how long registered, relay frames and bytes\n"
            "through the hub each way, connection requests signalled (no keys, no secrets).\n\n"
            "  --json   one JSON object: the process's answer (with PID or PATH), else\n"
            "           {\"processes\":[...]}; unknown values are null\n\n"
            "exit status: 0 every process answered (or nothing runs), 1 the process named, or one\n"
            "of those found, did not answer (the others are still shown), 2 usage error\n");
}

/* ---- plain output ---- */

static const char *str_or(const json_node *n, const char *def)
{
    const char *t = json_text(n);
    return t != NULL ? t : def;
}

static void fmt_bytes(char *buf, size_t cap, const json_node *n)
{
    if (json_type_of(n) != JSON_NUMBER) {
        snprintf(buf, cap, "-");
        return;
    }
    double v = json_num(n, 0);
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%.0f B", v);
    else
        snprintf(buf, cap, "%.1f %s", v, unit[u]);
}

static void fmt_ms(char *buf, size_t cap, const json_node *n)
{
    if (json_type_of(n) != JSON_NUMBER) {
        snprintf(buf, cap, "-");
        return;
    }
    long long s = (long long)(json_num(n, 0) / 1000);
    if (s < 60)
        snprintf(buf, cap, "%llds", s);
    else if (s < 3600)
        snprintf(buf, cap, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(buf, cap, "%lldh%02lldm", s / 3600, s / 60 % 60);
}

static void print_p2p(const json_node *r)
{
    const json_node *hub = json_get(r, "hub");
    printf("  peer ID  %s\n", str_or(json_get(r, "id"), "-"));
    printf("  udp      %s\n", str_or(json_get(r, "udp"), "-"));
    printf("  hub      %s (%s", str_or(json_get(hub, "address"), "none"), str_or(json_get(hub, "state"), "-"));
    if (json_type_of(json_get(hub, "rtt_ms")) == JSON_NUMBER)
        printf(", rtt %s ms", json_text(json_get(hub, "rtt_ms")));
    printf(")\n");
    const json_node *conns = json_get(r, "connections");
    size_t n = 0;
    for (const json_node *c = json_first(conns); c != NULL; c = json_next(c))
        n++;
    printf("  connections: %zu\n", n);
    if (n == 0)
        return;
    printf("  %-52s  %-10s  %-6s  %-21s  %9s  %10s  %10s  %7s  %s\n", "PEER", "STATE", "PATH", "REMOTE", "RTT",
           "SENT", "RECEIVED", "AGE", "STREAMS");
    for (const json_node *c = json_first(conns); c != NULL; c = json_next(c)) {
        char rtt[32], sent[32], recv[32], age[32];
        const json_node *rn = json_get(c, "rtt_ms");
        if (json_type_of(rn) == JSON_NUMBER)
            snprintf(rtt, sizeof(rtt), "%.2f ms", json_num(rn, 0));
        else
            snprintf(rtt, sizeof(rtt), "-");
        fmt_bytes(sent, sizeof(sent), json_get(c, "sent"));
        fmt_bytes(recv, sizeof(recv), json_get(c, "received"));
        fmt_ms(age, sizeof(age), json_get(c, "age_ms"));
        printf("  %-52s  %-10s  %-6s  %-21s  %9s  %10s  %10s  %7s  %s\n", str_or(json_get(c, "peer"), "-"),
               str_or(json_get(c, "state"), "-"), str_or(json_get(c, "path"), "-"), str_or(json_get(c, "remote"), "-"),
               rtt, sent, recv, age, str_or(json_get(c, "streams"), "-"));
    }
}

static void print_hub(const json_node *r)
{
    printf("  listen   %s%s%s\n", str_or(json_get(r, "listen"), "-"),
           json_text(json_get(r, "tls_listen")) != NULL ? "  tls " : "", str_or(json_get(r, "tls_listen"), ""));
    printf("  registered peers: %s\n", str_or(json_get(r, "peers_registered"), "-"));
    const json_node *peers = json_get(r, "peers");
    if (json_first(peers) == NULL)
        return;
    printf("  %-52s  %-21s  %10s  %21s  %21s  %8s  %s\n", "PEER", "ADDRESS", "REGISTERED", "RELAYED FROM IT",
           "RELAYED TO IT", "CONNECTS", "PATHS direct/turn/hub");
    for (const json_node *p = json_first(peers); p != NULL; p = json_next(p)) {
        char age[32], sent[32], recv[32], s1[48], s2[48], paths[80];
        const json_node *pp = json_get(p, "paths");
        fmt_ms(age, sizeof(age), json_get(p, "registered_ms"));
        fmt_bytes(sent, sizeof(sent), json_get(p, "relay_bytes_sent"));
        fmt_bytes(recv, sizeof(recv), json_get(p, "relay_bytes_received"));
        snprintf(s1, sizeof(s1), "%s (%s fr)", sent, str_or(json_get(p, "relay_frames_sent"), "-"));
        snprintf(s2, sizeof(s2), "%s (%s fr)", recv, str_or(json_get(p, "relay_frames_received"), "-"));
        snprintf(paths, sizeof(paths), "%s/%s/%s", str_or(json_get(pp, "direct"), "-"),
                 str_or(json_get(pp, "turn"), "-"), str_or(json_get(pp, "hub"), "-"));
        printf("  %-52s  %-21s  %10s  %21s  %21s  %8s  %s\n", str_or(json_get(p, "peer"), "-"),
               str_or(json_get(p, "address"), "-"), age, s1, s2, str_or(json_get(p, "connects"), "-"), paths);
    }
}

static void print_plain(const json_node *r, const char *path)
{
    const char *cmd = str_or(json_get(r, "command"), "?");
    printf("%s  pid %s  %s\n", cmd, str_or(json_get(r, "pid"), "?"), path);
    if (json_get(r, "error") != NULL)
        printf("  error: %s\n", str_or(json_get(r, "error"), "?"));
    else if (strcmp(cmd, "hub") == 0)
        print_hub(r);
    else
        print_p2p(r);
}

/* ---- asking ---- */

typedef struct status_run {
    int json;
    int named;          /* one process was named (PID or PATH) */
    long want_pid;      /* > 0: only this one */
    int found, answered;
    int silent;         /* living processes that did not answer */
} status_run;

/* Asks one socket and prints its answer. 0, or -1 (said on stderr). */
static int ask(status_run *r, const char *path, long pid)
{
    char *text;
    size_t len;
    if (ctl_query(path, QUERY_MS, &text, &len) != 0) {
        int e = errno;
        if ((e == ECONNREFUSED || e == ENOENT) && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            if (e == ECONNREFUSED)
                unlink(path); /* its process is gone: a stale socket */
            if (!r->named)
                return 0;
        }
        if (e == ECONNREFUSED)
            cli_fail("status", CLI_EXIT_FAIL, 0, "%s: nobody answers (the process is gone)", path);
        else
            cli_fail("status", CLI_EXIT_FAIL, e, "%s", path);
        r->silent++;
        return -1;
    }
    json_doc *d = json_parse(text, len);
    if (d == NULL || json_type_of(json_root(d)) != JSON_OBJECT) {
        cli_fail("status", CLI_EXIT_FAIL, 0, "%s: the answer is not a JSON object", path);
        r->silent++;
        json_free(d);
        free(text);
        return -1;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    if (r->json)
        printf("%s%s", r->named ? "" : (r->answered > 0 ? "," : ""), text);
    else
        print_plain(json_root(d), path);
    r->answered++;
    json_free(d);
    free(text);
    return 0;
}

static void each(void *ctx, const char *path, long pid)
{
    status_run *r = ctx;
    if (r->want_pid > 0 && pid != r->want_pid)
        return;
    r->found++;
    if (ask(r, path, pid) == 0 && !r->json && !r->named)
        printf("\n");
}

static int all_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int cmd_status_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    status_run r = {0};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': r.json = 1; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: return cli_usage_error("status", "unknown option '%s'", argv[optind - 1]);
        }
    }
    const char *target = optind < argc ? argv[optind++] : NULL;
    if (optind < argc)
        return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
    long pid = -1;
    if (target != NULL && all_digits(target) && cli_parse_long(target, 1, 0x7fffffff, &pid) != 0)
        return cli_usage_error("status", "'%s': not a process ID", target);
    r.named = target != NULL;
    if (target != NULL && pid < 0) { /* a PATH */
        int rc = ask(&r, target, -1);
        if (rc == 0 && r.json)
            printf("\n");
        return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    char dir[256], why[512];
    r.want_pid = pid;
    int n = ctl_dir(dir, sizeof(dir), 0, why, sizeof(why)) == 0 ? 0 : -1;
    if (n != 0 && errno != ENOENT) {
        return cli_fail("status", CLI_EXIT_FAIL, 0, "%s", why);
    }
    if (r.json && !r.named)
        printf("{\"processes\":[");
    int list_errno = 0;
    if (n == 0 && (n = ctl_each(dir, each, &r)) < 0 && errno != ENOENT)
        list_errno = errno; /* a directory we cannot read is not "nothing runs" */
    if (r.json && !r.named)
        printf("]}\n");
    else if (r.json && r.answered > 0)
        printf("\n");
    if (list_errno != 0)
        return cli_fail("status", CLI_EXIT_FAIL, list_errno, "cannot list %s", dir);
    if (r.named && r.found == 0) {
        return cli_fail("status", CLI_EXIT_FAIL, 0, "no control socket of process %ld in %s", pid, dir);
    }
    if (r.named)
        return r.answered > 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (!r.json && r.answered == 0 && r.silent == 0)
        printf("no natkit process answers in %s\n", dir);
    return r.silent > 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK; /* each one that did not answer was named on stderr */
}
