/* natkit: the command-line entry point and subcommand dispatch. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "natkit/common.h"

static void print_usage(FILE *out)
{
    fprintf(out, "usage: natkit <command> [options]\n"
                 "       natkit --version | --help\n\n"
                 "commands:\n");
    for (const cli_cmd *c = cli_commands; c->name != NULL; c++)
        fprintf(out, "  %-14s %s\n", c->name, c->summary);
    fprintf(out, "\n'natkit <command> --help' describes one command.\n");
}

/* Output that never reached standard output (a full disk, a closed pipe) is a job not done:
 * rc, or CLI_EXIT_FAIL with the system error when rc said done but stdout failed. */
static int stdout_done(const char *cmd, int rc)
{
    int e = fflush(stdout) != 0 ? errno : ferror(stdout) ? EIO : 0;
    if (e == 0 || rc != CLI_EXIT_OK)
        return rc;
    return cli_fail(cmd, CLI_EXIT_FAIL, e, "cannot write to standard output");
}

int main(int argc, char **argv)
{
    /* one write() per line: a status or JSON line written piecewise (cli_json_str) never mixes
     * with what another process writes to the same file, and costs one system call */
    static char errbuf[8192];
    setvbuf(stderr, errbuf, _IOLBF, sizeof(errbuf));
    /* A transfer allocates and frees 16 KiB stream chunks all the time: keep freed heap instead of
     * giving it back to the kernel and faulting it in again */
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
        cli_json |= strcmp(argv[i], "--json") == 0;
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("natkit %s (commit %s)\n", nk_version(), cli_commit);
        return stdout_done("version", CLI_EXIT_OK);
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_usage(stdout);
        return stdout_done("help", CLI_EXIT_OK);
    }
    for (const cli_cmd *c = cli_commands; c->name != NULL; c++) {
        if (strcmp(c->name, name) == 0)
            return stdout_done(c->name, c->main(argc - 1, argv + 1));
    }
    fprintf(stderr, "natkit: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}
