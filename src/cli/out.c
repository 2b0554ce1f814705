/*
 * natkit CLI: what every command prints about itself: failures and warnings
 * (one shape, plain text or JSON with --json) and the servers' log lines (one
 * prefix, an RFC 3339 UTC timestamp). docs/json-events.md describes the JSON.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "natkit/common.h"

int cli_json;
const char *cli_server;

size_t cli_json_quote(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    char esc[8];
#define PUT(str, len)                                                                                                  \
    do {                                                                                                               \
        if (n + (len) < cap)                                                                                           \
            memcpy(out + n, (str), (len));                                                                             \
        n += (len);                                                                                                    \
    } while (0)
    if (s == NULL) {
        PUT("null", 4);
    } else {
        PUT("\"", 1);
        for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\') {
                esc[0] = '\\', esc[1] = (char)*p;
                PUT(esc, 2);
            } else if (*p < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                PUT(esc, 6);
            } else {
                PUT(p, 1);
            }
        }
        PUT("\"", 1);
    }
#undef PUT
    if (cap > 0)
        out[n < cap ? n : cap - 1] = '\0';
    return n;
}

void cli_json_str(FILE *out, const char *s)
{
    char buf[1024];
    size_t n = cli_json_quote(buf, sizeof(buf), s);
    if (n < sizeof(buf)) {
        fwrite(buf, 1, n, out);
        return;
    }
    char *big = malloc(n + 1);
    if (big == NULL) {
        fputs("null", out);
        return;
    }
    cli_json_quote(big, n + 1, s);
    fwrite(big, 1, n, out);
    free(big);
}

/* One failure or warning: text "natkit CMD: [warning: ]MSG[: strerror]" or one JSON object. */
static void report(const char *cmd, const char *kind, int exit_code, int sys_errno, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (sys_errno != 0) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(sys_errno));
    }
    if (!cli_json && cli_server != NULL) {
        cli_log(cli_server, "%s%s", strcmp(kind, "warning") == 0 ? "warning: " : "", msg);
        return;
    }
    if (!cli_json) {
        fprintf(stderr, "natkit %s: %s%s\n", cmd, strcmp(kind, "warning") == 0 ? "warning: " : "", msg);
        fflush(stderr);
        return;
    }
    fprintf(stderr, "{\"event\":\"%s\",\"command\":\"%s\",\"%s\":", kind, cmd, kind);
    cli_json_str(stderr, msg);
    fputs(",\"errno\":", stderr);
    cli_json_str(stderr, sys_errno != 0 ? strerrorname_np(sys_errno) : NULL);
    if (exit_code >= 0)
        fprintf(stderr, ",\"exit\":%d", exit_code);
    fputs("}\n", stderr);
    fflush(stderr);
}

int cli_fail(const char *cmd, int exit_code, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cmd, "error", exit_code, sys_errno, fmt, ap);
    va_end(ap);
    return exit_code;
}

void cli_warn(const char *cmd, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(cmd, "warning", -1, sys_errno, fmt, ap);
    va_end(ap);
}

int cli_fail_nk(const char *cmd, int exit_code, int rc, const char *doing)
{
    int e = 0;
    const char *what = nk_error_context(&e);
    if (what[0] != '\0')
        return cli_fail(cmd, exit_code, e, "cannot %s", what);
    return cli_fail(cmd, exit_code, 0, "cannot %s: %s", doing, nk_strerror(rc));
}

const char *cli_config_where; /* config.h */

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cli_json) {
        char msg[512];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        if (cli_config_where != NULL) /* a --config line: name it */
            cli_fail(cmd, CLI_EXIT_USAGE, 0, "%s: %s", cli_config_where, msg);
        else
            cli_fail(cmd, CLI_EXIT_USAGE, 0, "%s", msg);
    } else {
        fprintf(stderr, "natkit %s: ", cmd);
        if (cli_config_where != NULL) /* a --config line: name it */
            fprintf(stderr, "%s: ", cli_config_where);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\nTry 'natkit %s --help'.\n", cmd);
    }
    va_end(ap);
    return CLI_EXIT_USAGE;
}

void cli_log(const char *prog, const char *fmt, ...)
{
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ natkit-%s: ", (long)(tv.tv_usec / 1000), prog);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line); /* one call: lines from several threads do not mix */
    fflush(stderr);
}
