/*
 * Fuzz target: the servers' --config reader (src/cli/config.c), through the getopt_long
 * table path that stun-server and hub use (names, aliases, flags and values, coturn's
 * listening-ip/-port joined into one listen). Whatever it hands on must be an option of the
 * table with a value exactly when the option takes one, and no line may outlive its limits.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct option opts[] = {
    {"listen", required_argument, NULL, 'l'}, {"quiet", no_argument, NULL, 'q'},
    {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char *const aliases[] = {"relay-threads", "threads", NULL};

static int check(void *ctx, int val, const char *arg)
{
    (void)ctx;
    if (val == 'h' || (val == 'q') != (arg == NULL))
        abort();
    if (arg != NULL && strlen(arg) >= 1024 + 16)
        abort();
    return arg != NULL && strcmp(arg, "stop") == 0; /* an apply error ends the read */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) { /* the reader reports every bad line on stderr */
        quiet = 1;
        if (freopen("/dev/null", "w", stderr) == NULL)
            abort();
    }
    if (size == 0)
        return 0;
    FILE *f = fmemopen((void *)data, size, "r");
    if (f == NULL)
        return 0;
    cli_config_getopt_stream("fuzz", "input", f, opts, aliases, check, NULL);
    fclose(f);
    cli_config_release();
    return 0;
}
