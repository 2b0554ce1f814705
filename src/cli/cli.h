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

/* Prints "natkit CMD: MESSAGE" (with "FILE:LINE: " before MESSAGE while a --config line is
 * applied, config.h) and a pointer to --help on stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

#endif
