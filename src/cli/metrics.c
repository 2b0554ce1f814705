/* natkit CLI: the --metrics endpoint of stun-server, turn-server and hub. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_parse_metrics(const char *cmd, const char *text, nk_addr *out)
{
    if (nk_addr_parse(out, text) != 0)
        return cli_usage_error(cmd, "--metrics wants a numeric IP:PORT ([IPv6]:PORT; port 0: any), not '%s'",
                               text);
    return 0;
}

int cli_metrics_start(const char *cmd, const nk_addr *addr, nk_metrics_collect_fn collect, void *ctx,
                      nk_metrics_server **out)
{
    char text[NK_ADDR_STRLEN];
    sigset_t block, old;
    *out = NULL;
    if (addr->family == NK_AF_NONE)
        return 0;
    /* The HTTP thread inherits a mask without the stop signals: they go to the command's own thread. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int err = nk_metrics_server_start(out, addr, collect, ctx);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        if (err == NK_ERR_ADDRESS || err == NK_ERR_SYSTEM)
            return cli_fail(cmd, CLI_EXIT_FAIL, e, "cannot serve metrics on %s", nk_addr_format(addr, text, sizeof(text)));
        return cli_fail(cmd, CLI_EXIT_FAIL, 0, "cannot serve metrics on %s: %s", nk_addr_format(addr, text, sizeof(text)),
                        nk_strerror(err));
    }
    nk_addr bound;
    nk_metrics_server_addr(*out, &bound);
    cli_log(cmd, "metrics on http://%s/metrics", nk_addr_format(&bound, text, sizeof(text)));
    return 0;
}
