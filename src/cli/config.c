/* natkit CLI: the servers' --config FILE reader (config.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "config.h"

#define MAX_DEPTH 4
#define LINE_MAX_LEN 1024 /* longest line + 1 */


/* Every value handed out, kept until cli_config_release (callers may keep pointers). */
typedef struct kept {
    struct kept *next;
    size_t len;
    char s[];
} kept;

static kept *kept_values;
static int depth;

static const char *keep(const char *v)
{
    size_t n = strlen(v);
    kept *k = malloc(sizeof(*k) + n + 1);
    if (k == NULL)
        return NULL;
    memcpy(k->s, v, n + 1);
    k->len = n;
    k->next = kept_values;
    kept_values = k;
    return k->s;
}

void cli_config_release(void)
{
    while (kept_values != NULL) {
        kept *k = kept_values;
        kept_values = k->next;
        sodium_memzero(k->s, k->len);
        free(k);
    }
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Cuts a '#' comment that follows a space or tab (outside double quotes). */
static void cut_comment(char *s)
{
    int quoted = 0;
    for (char *p = s; *p != '\0'; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (*p == '#' && !quoted && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

/* Splits a line into name and value (NULL when there is none); 0, 1 for nothing, -1 bad. */
static int split(char *line, char **name, char **value)
{
    char *s = trim(line), *v;
    if (*s == '\0' || *s == '#')
        return 1;
    cut_comment(s);
    s = trim(s);
    if (*s == '-')
        s += s[1] == '-' ? 2 : 1;
    v = s + strcspn(s, "= \t");
    if (*v != '\0')
        *v++ = '\0';
    v = trim(v);
    if (*v == '=')
        v = trim(v + 1);
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        v++;
    } else if (n > 0 && (v[0] == '"' || v[n - 1] == '"')) {
        return -1;
    }
    *name = s;
    *value = *v != '\0' || n >= 2 ? v : NULL;
    return *s == '\0' ? -1 : 0;
}

int cli_config_read_stream(const char *cmd, const char *name, FILE *f, cli_config_fn fn, void *ctx)
{
    char *line = NULL, where[512];
    size_t cap = 0;
    ssize_t n;
    const char *outer = cli_config_where;
    int lineno = 0, rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        char *key, *value;
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", name, lineno);
        cli_config_where = where;
        if (n >= LINE_MAX_LEN)
            rc = cli_usage_error(cmd, "line longer than %d characters", LINE_MAX_LEN - 1);
        else if (memchr(line, '\0', (size_t)n) != NULL)
            rc = cli_usage_error(cmd, "a NUL byte in the line");
        else {
            int s = split(line, &key, &value);
            if (s < 0)
                rc = cli_usage_error(cmd, "cannot read this line (want 'name=value', 'name value' or 'name')");
            else if (s == 0) {
                const char *v = value != NULL ? keep(value) : NULL;
                if (value != NULL && v == NULL)
                    rc = cli_usage_error(cmd, "out of memory");
                else if ((rc = fn(ctx, key, v)) != 0) /* a nested file that cannot be read: 1 */
                    rc = rc == CLI_EXIT_FAIL ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
            }
        }
        sodium_memzero(line, cap);
        cli_config_where = outer;
    }
    free(line);
    cli_config_where = outer;
    if (rc == 0 && ferror(f))
        rc = cli_fail(cmd, CLI_EXIT_FAIL, errno, "cannot read --config %s", name);
    return rc;
}

int cli_config_read(const char *cmd, const char *path, cli_config_fn fn, void *ctx)
{
    if (depth >= MAX_DEPTH)
        return cli_usage_error(cmd, "--config %s: nested more than %d deep", path, MAX_DEPTH);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return cli_fail(cmd, CLI_EXIT_FAIL, errno, "cannot read --config %s", path);
    }
    depth++;
    int rc = cli_config_read_stream(cmd, path, f, fn, ctx);
    depth--;
    fclose(f);
    return rc;
}

/* ---- getopt_long tables ---------------------------------------------------- */

typedef struct getopt_ctx {
    const char *cmd;
    const struct option *opts;
    const char *const *aliases;
    cli_config_opt_fn fn;
    void *ctx;
    const char *listening_ip, *listening_port; /* coturn's split listen address */
    char listening_where[512];
} getopt_ctx;

static const struct option *find_opt(const struct option *opts, const char *name)
{
    for (; opts->name != NULL; opts++)
        if (!strcmp(opts->name, name))
            return opts;
    return NULL;
}

static int getopt_apply(void *arg, const char *name, const char *value)
{
    getopt_ctx *g = arg;
    for (const char *const *a = g->aliases; a != NULL && a[0] != NULL; a += 2)
        if (!strcmp(name, a[0])) {
            name = a[1];
            break;
        }
    if (find_opt(g->opts, "listen") != NULL &&
        (!strcmp(name, "listening-ip") || !strcmp(name, "listening-port"))) {
        if (value == NULL)
            return cli_usage_error(g->cmd, "'%s' needs a value", name);
        *(name[10] == 'i' ? &g->listening_ip : &g->listening_port) = value;
        snprintf(g->listening_where, sizeof(g->listening_where), "%s", cli_config_where);
        return 0;
    }
    const struct option *o = find_opt(g->opts, name);
    if (o == NULL || !strcmp(name, "help"))
        return cli_usage_error(g->cmd, "unknown option '%s'", name);
    if (o->has_arg == no_argument && value != NULL)
        return cli_usage_error(g->cmd, "'%s' takes no value (a line with the name alone turns it on)", name);
    if (o->has_arg == required_argument && value == NULL)
        return cli_usage_error(g->cmd, "'%s' needs a value", name);
    return g->fn(g->ctx, o->val, value);
}

/* listening-ip / listening-port, given in any order, make one --listen at the end. */
static int getopt_listen(getopt_ctx *g)
{
    char addr[128];
    const char *ip = g->listening_ip != NULL ? g->listening_ip : "0.0.0.0";
    if (g->listening_ip == NULL && g->listening_port == NULL)
        return 0;
    snprintf(addr, sizeof(addr), strchr(ip, ':') != NULL ? "[%s]:%s" : "%s:%s", ip,
             g->listening_port != NULL ? g->listening_port : "3478");
    const char *v = keep(addr);
    if (v == NULL)
        return cli_usage_error(g->cmd, "out of memory");
    const char *outer = cli_config_where;
    cli_config_where = g->listening_where;
    int rc = g->fn(g->ctx, find_opt(g->opts, "listen")->val, v);
    cli_config_where = outer;
    return rc;
}

/* Reads PATH, or F when PATH is NULL (named NAME). */
static int getopt_read(const char *cmd, const char *path, const char *name, FILE *f, const struct option *opts,
                       const char *const *aliases, cli_config_opt_fn fn, void *ctx)
{
    getopt_ctx g = {.cmd = cmd, .opts = opts, .aliases = aliases, .fn = fn, .ctx = ctx};
    int rc = path != NULL ? cli_config_read(cmd, path, getopt_apply, &g)
                          : cli_config_read_stream(cmd, name, f, getopt_apply, &g);
    if (rc == 0)
        rc = getopt_listen(&g);
    return rc == 0 || rc == CLI_EXIT_FAIL ? rc : CLI_EXIT_USAGE; /* a file that cannot be read: 1 */
}

int cli_config_getopt(const char *cmd, const char *path, const struct option *opts,
                      const char *const *aliases, cli_config_opt_fn fn, void *ctx)
{
    return getopt_read(cmd, path, NULL, NULL, opts, aliases, fn, ctx);
}

int cli_config_getopt_stream(const char *cmd, const char *name, FILE *f, const struct option *opts,
                             const char *const *aliases, cli_config_opt_fn fn, void *ctx)
{
    return getopt_read(cmd, NULL, name, f, opts, aliases, fn, ctx);
}
