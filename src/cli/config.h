/*
 * natkit CLI: the servers' --config FILE (turn-server, stun-server, hub).
 *
 * One option a line, coturn's turnserver.conf style:
 *     name=value      name value      name          (a flag: no value)
 * A leading "--" (or "-") on the name is allowed; blank lines and lines starting with '#'
 * are skipped, and " #" (a '#' after a space or tab) starts a comment at the end of a line.
 * A value in double quotes keeps its spaces and #s. Lines are at most 1023 characters (no NUL).
 * Files may name other files with "config FILE" (nested up to 4 deep).
 *
 * While a line is applied, cli_config_where names it ("FILE:LINE"), and cli_usage_error
 * puts it in front of its message, so every error names the file and the line.
 */
#ifndef CLI_CONFIG_H
#define CLI_CONFIG_H

#include <getopt.h>
#include <stdio.h>

/* Applies one option (value NULL for a name without a value): 0, or non-zero after
 * printing the reason (cli_usage_error). */
typedef int (*cli_config_fn)(void *ctx, const char *name, const char *value);

/* Reads PATH and calls fn for every option in order. Values stay valid until
 * cli_config_release(). 0, or CLI_EXIT_USAGE (the reason printed, naming FILE:LINE). */
int cli_config_read(const char *cmd, const char *path, cli_config_fn fn, void *ctx);

/* The same for an open file, NAME naming it in messages (fuzz/fuzz_cli_config.c). */
int cli_config_read_stream(const char *cmd, const char *name, FILE *f, cli_config_fn fn, void *ctx);

/* An option of a getopt_long table: val as getopt_long returns it, arg NULL for
 * no_argument options. 0, or non-zero with the reason printed. */
typedef int (*cli_config_opt_fn)(void *ctx, int val, const char *arg);

/* cli_config_read for a command that parses its command line with getopt_long: each name
 * is looked up in opts (after aliases: NULL-terminated pairs {file name, option name});
 * a no_argument option must have no value, a required_argument one must have one.
 * coturn's "listening-ip" and "listening-port" (defaults 0.0.0.0 and 3478) become one
 * "listen IP:PORT" when opts has a "listen" option. "help" is refused. */
int cli_config_getopt(const char *cmd, const char *path, const struct option *opts,
                      const char *const *aliases, cli_config_opt_fn fn, void *ctx);

/* The same for an open file, NAME naming it in messages (fuzz/fuzz_cli_config.c). */
int cli_config_getopt_stream(const char *cmd, const char *name, FILE *f, const struct option *opts,
                             const char *const *aliases, cli_config_opt_fn fn, void *ctx);

/* "FILE:LINE" of the line being applied, NULL outside a config file. */
extern const char *cli_config_where;

/* Wipes and frees every kept value. */
void cli_config_release(void);

#endif
