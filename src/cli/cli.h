/* natkit CLI: one file per subcommand, listed once in commands.c. */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>

#include "natkit/identity.h"
#include "natkit/metrics_server.h"

typedef struct cli_cmd {
    const char *name;
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} cli_cmd;

extern const cli_cmd cli_commands[];

/*
 * Exit codes shared by every command (README "Exit status"): 2 when the command
 * line is malformed as written, 1 when the system, the network or a peer refuses
 * what it asks (a file that cannot be read, an address that cannot be bound, a
 * server that does not answer).
 */
#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1 /* the job could not be done (no server answered, a file unreadable, ...) */
#define CLI_EXIT_USAGE 2 /* bad flag, bad value, bad config line, missing or conflicting flags */

/* 1 when --json is on the command line (main sets it): failures, warnings and usage errors are
 * JSON objects on stderr then, nothing else (docs/json-events.md). */
extern int cli_json;

/* Prints "natkit CMD: MESSAGE" and a pointer to --help on stderr (with --json:
 * {"event":"error",...,"exit":2}); returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A failure: "natkit CMD: MESSAGE[: strerror(sys_errno)]", or with --json
 * {"event":"error","command":CMD,"error":"MESSAGE...","errno":"ENAME"|null,"exit":N}; returns exit_code. */
int cli_fail(const char *cmd, int exit_code, int sys_errno, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A library call failed with rc: "cannot " + nk_error_context() and its errno when the library
 * recorded one, else "cannot DOING: nk_strerror(rc)"; returns exit_code. */
int cli_fail_nk(const char *cmd, int exit_code, int rc, const char *doing);
/* "natkit CMD: warning: MESSAGE[: strerror]", or {"event":"warning","command":CMD,"warning":...,"errno":...}. */
void cli_warn(const char *cmd, int sys_errno, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* s as a JSON string (escaped), or null when s is NULL. */
void cli_json_str(FILE *out, const char *s);

/* Set by the servers (stun-server, turn-server, hub) when they start: their failures and
 * warnings are log lines (cli_log) then. */
extern const char *cli_server;
/* A server log line on stderr: "2026-12-06T23:59:01.123Z natkit-PROG: MESSAGE" (RFC 3339, UTC). */
void cli_log(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a decimal number in [min, max]; 0 or -1. */
int cli_parse_long(const char *text, long min, long max, long *out);
/* Parses seconds as a decimal ("2", "0.5") into milliseconds in [min_ms, max_ms]. */
int cli_parse_seconds(const char *text, long min_ms, long max_ms, long *out_ms);

/* The identity of connect/listen/accept/dial: --key FILE, else the default key, made when
 * missing. 0, or -1 (the reason printed as "natkit CMD: ..."). */
int cli_load_key(const char *cmd, const char *file, nk_identity *id);

/* Blocks SIGINT/SIGTERM handling into a flag that drivers poll. */
void cli_install_stop_signals(void);
extern volatile int cli_stop_requested;

/* --metrics IP:PORT: 0, or CLI_EXIT_USAGE with the message printed. */
int cli_parse_metrics(const char *cmd, const char *text, nk_addr *out);
/* Serves GET /metrics on addr (nothing when its family is NK_AF_NONE: *out stays NULL) and logs
 * "natkit CMD: metrics on http://ADDR/metrics". 0, or CLI_EXIT_FAIL with "natkit CMD: cannot serve
 * metrics on ADDR: <system error>" printed. Free with nk_metrics_server_free. */
int cli_metrics_start(const char *cmd, const nk_addr *addr, nk_metrics_collect_fn collect, void *ctx,
                      nk_metrics_server **out);

#endif
