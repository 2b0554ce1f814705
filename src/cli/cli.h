/* natkit CLI: one file per subcommand, listed once in commands.c. */
#ifndef NK_CLI_H
#define NK_CLI_H

#include <stdio.h>

typedef struct nk_cli_cmd {
    const char *name;
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} nk_cli_cmd;

extern const nk_cli_cmd nk_cli_commands[];

/* Exit codes shared by every command. */
#define NK_EXIT_OK    0
#define NK_EXIT_FAIL  1 /* the job could not be done (no server answered, ...) */
#define NK_EXIT_USAGE 2 /* bad flag, bad value, bad config */

/* Prints "natkit CMD: MESSAGE" and a pointer to --help on stderr; returns 2. */
int nk_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a decimal number in [min, max]; 0 or -1. */
int nk_cli_parse_long(const char *text, long min, long max, long *out);
/* Parses seconds as a decimal ("2", "0.5") into milliseconds in [min_ms, max_ms]. */
int nk_cli_parse_seconds(const char *text, long min_ms, long max_ms, long *out_ms);

/* Blocks SIGINT/SIGTERM handling into a flag that drivers poll. */
void nk_cli_install_stop_signals(void);
extern volatile int nk_cli_stop_requested;

#endif
