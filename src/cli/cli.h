/* natkit CLI: one file per subcommand, listed once in commands.c. */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>

#include "natkit/identity.h"

typedef struct cli_cmd {
    const char *name;
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} cli_cmd;

extern const cli_cmd cli_commands[];

/* Exit codes shared by every command. */
#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1 /* the job could not be done (no server answered, ...) */
#define CLI_EXIT_USAGE 2 /* bad flag, bad value, bad config */

/* Prints "natkit CMD: MESSAGE" and a pointer to --help on stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a decimal number in [min, max]; 0 or -1. */
int cli_parse_long(const char *text, long min, long max, long *out);
/* Parses seconds as a decimal ("2", "0.5") into milliseconds in [min_ms, max_ms]. */
int cli_parse_seconds(const char *text, long min_ms, long max_ms, long *out_ms);

/* The identity of connect/listen/accept/dial (and keygen --show): --key FILE, else the default
 * key, made when missing. A key file with any group or other permission bits is refused (ssh
 * does the same), naming its mode and `chmod 600`. 0, or -1 (the reason printed as
 * "natkit CMD: ..."). */
int cli_load_key(const char *cmd, const char *file, nk_identity *id);

/* TURN passwords, kept out of `ps`: --pass-file FILE (its first line), $NATKIT_TURN_PASS, or
 * --pass P (copied, then wiped from the command line; ps may show it before that). The first
 * two return 0, or the usage exit status (2) after printing why; dst must hold cap bytes. */
#define CLI_PASS_ENV "NATKIT_TURN_PASS"
int cli_pass_arg(const char *cmd, char *arg, char *dst, size_t cap);
int cli_pass_file(const char *cmd, const char *file, char *dst, size_t cap);
/* $NATKIT_TURN_PASS into dst when dst is still empty: 1 when taken, 0 when not. */
int cli_pass_env(char *dst, size_t cap);

/* Blocks SIGINT/SIGTERM handling into a flag that drivers poll. */
void cli_install_stop_signals(void);
extern volatile int cli_stop_requested;

#endif
