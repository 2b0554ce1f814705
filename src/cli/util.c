/* natkit CLI: helpers shared by subcommands. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "natkit/common.h"

volatile int cli_stop_requested;

int cli_parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_seconds(const char *text, long min_ms, long max_ms, long *out_ms)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < 0)
        return -1;
    double ms = v * 1000.0;
    if (ms < (double)min_ms || ms > (double)max_ms)
        return -1;
    *out_ms = (long)ms;
    return 0;
}

int cli_pass_arg(const char *cmd, char *arg, char *dst, size_t cap)
{
    size_t n = strlen(arg);
    if (n == 0 || n >= cap)
        return cli_usage_error(cmd, "--pass: want 1 to %zu characters", cap - 1);
    memcpy(dst, arg, n + 1);
    memset(arg, 'x', n); /* what ps shows from now on */
    return 0;
}

/* After a full buffer with no line end: whether the line ends right there (a line end, or the
 * end of f, comes next) rather than going on past it. */
static int line_ends_here(FILE *f)
{
    int c = fgetc(f);
    if (c == EOF || c == '\n')
        return 1;
    if (c != '\r')
        return 0;
    c = fgetc(f); /* "\r\n", or a last "\r" */
    return c == EOF || c == '\n';
}

int cli_secret_line(const char *cmd, const char *source, FILE *f, char *dst, size_t cap)
{
    int rc = 0;
    if (fgets(dst, (int)cap, f) == NULL)
        dst[0] = '\0';
    size_t n = strlen(dst);
    if (ferror(f))
        rc = cli_fail(cmd, CLI_EXIT_FAIL, errno, "cannot read %s", source);
    else if (n == cap - 1 && dst[n - 1] != '\n' && !line_ends_here(f))
        rc = cli_usage_error(cmd, "%s: a line longer than %zu bytes (it is not cut short)", source, cap - 1);
    if (n > 0 && dst[n - 1] == '\n')
        dst[--n] = '\0';
    while (n > 0 && dst[n - 1] == '\r')
        dst[--n] = '\0';
    if (rc != 0)
        sodium_memzero(dst, cap);
    return rc;
}

int cli_secret_file(const char *cmd, const char *flag, const char *file, char *dst, size_t cap)
{
    char source[PATH_MAX + 64];
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return cli_fail(cmd, CLI_EXIT_FAIL, errno, "cannot read %s '%s'", flag, file);
    snprintf(source, sizeof(source), "%s '%s'", flag, file);
    int rc = cli_secret_line(cmd, source, f, dst, cap);
    fclose(f);
    if (rc == 0 && dst[0] == '\0')
        rc = cli_usage_error(cmd, "%s: its first line is empty", source);
    return rc;
}

int cli_pass_env(const char *cmd, char *dst, size_t cap)
{
    const char *v = getenv(CLI_PASS_ENV);
    if (dst[0] != '\0' || v == NULL || v[0] == '\0')
        return 0;
    size_t n = strlen(v);
    if (n >= cap) /* as turn-user says it: never cut short, never silently passed over */
        return cli_usage_error(cmd, "$%s: longer than %zu bytes (it is not cut short)", CLI_PASS_ENV, cap - 1);
    memcpy(dst, v, n + 1);
    return 0;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    cli_stop_requested = 1;
}

void cli_install_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* A private key readable or writable by anyone but its owner is refused, as ssh does. */
static int key_file_private(const char *cmd, const char *file)
{
    struct stat sb;
    if (stat(file, &sb) != 0 || (sb.st_mode & (S_IRWXG | S_IRWXO)) == 0)
        return 0; /* (a missing file is reported by the loader) */
    cli_fail(cmd, CLI_EXIT_FAIL, 0,
             "key file %s has mode %04o: others than its owner may read or change it, so it is "
             "not used; fix: chmod 600 %s",
             file, (unsigned)(sb.st_mode & 07777), file);
    return -1;
}

int cli_load_key(const char *cmd, const char *file, nk_identity *id)
{
    char path[PATH_MAX];
    if (file == NULL) {
        if (nk_identity_default_path(path, sizeof(path)) != 0) {
            cli_fail(cmd, CLI_EXIT_FAIL, 0, "no default key path (set HOME or use --key)");
            return -1;
        }
        file = path;
        if (access(file, F_OK) != 0) {
            int rc = nk_identity_generate(id);
            if (rc == 0 && (rc = nk_identity_save(id, file)) != 0) {
                cli_fail(cmd, CLI_EXIT_FAIL, rc == NK_ERR_SYSTEM ? errno : 0, "cannot create a key at %s%s%s", file,
                         rc == NK_ERR_SYSTEM ? "" : ": ", rc == NK_ERR_SYSTEM ? "" : nk_strerror(rc));
                return -1;
            }
            if (rc != 0) {
                cli_fail(cmd, CLI_EXIT_FAIL, 0, "cannot make a key: %s", nk_strerror(rc));
                return -1;
            }
            if (cli_json) {
                fputs("{\"event\":\"key-created\",\"file\":", stderr);
                cli_json_str(stderr, file);
                fputs("}\n", stderr);
            } else {
                fprintf(stderr, "natkit %s: made a new identity key at %s\n", cmd, file);
            }
            return 0;
        }
    }
    if (key_file_private(cmd, file) != 0)
        return -1;
    int rc = nk_identity_load(id, file);
    if (rc != 0) {
        if (rc == NK_ERR_SYSTEM)
            cli_fail(cmd, CLI_EXIT_FAIL, errno, "cannot load key %s", file);
        else
            cli_fail(cmd, CLI_EXIT_FAIL, 0, "cannot load key %s: %s", file, nk_strerror(rc));
        return -1;
    }
    return 0;
}
