/*
 * natkit turn-user: manage the TURN users and REST secrets of `natkit turn-server --userdb` (and
 * of coturn) without coturn's turnadmin: the same SQLite/PostgreSQL tables and Redis keys
 * (nk_turn_userdb_*, include/natkit/turn_userdb.h). Passwords and secrets are read from a file,
 * the environment or the terminal, not from the command line unless --pass/--secret is given.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "natkit/turn_userdb.h"

#define CMD "turn-user"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit turn-user add|delete|list|add-secret|delete-secret\n"
            "                        (--userdb FILE | --redis-userdb CONNINFO | --psql-userdb CONNINFO)\n"
            "                        [--realm REALM] [--user USER] [--pass-file FILE | --pass PASS]\n"
            "                        [--secret-file FILE | --secret SECRET | --all]\n\n"
            "Manages the users of `natkit turn-server --userdb` in coturn's own schema, so coturn's turnadmin\n"
            "and turnserver read what it writes and the other way round. A running turn-server sees changes\n"
            "within 1 s. Only MD5(user:realm:password) is stored (coturn's hmackey), never the password.\n\n"
            "  add            add USER to REALM, or change its password   (turnadmin -a -u USER -r REALM -p ...)\n"
            "  delete         remove USER from REALM                       (turnadmin -d -u USER -r REALM)\n"
            "  list           print 'USER<TAB>REALM' per user, of REALM or of every realm   (turnadmin -l)\n"
            "  add-secret     add a TURN REST shared secret to REALM     (turnadmin -s SECRET -r REALM)\n"
            "  delete-secret  remove one secret (or --all of REALM's)\n\n"
            "  --userdb FILE            coturn's SQLite database; created with coturn's schema when new\n"
            "  --redis-userdb CONNINFO  coturn's Redis database: \"ip=127.0.0.1 port=6379 dbname=0 password=...\"\n"
            "  --psql-userdb CONNINFO   coturn's PostgreSQL database (its tables: /usr/share/coturn/schema.sql),\n"
            "                           CONNINFO as libpq takes it: \"host=127.0.0.1 dbname=coturn user=...\"\n"
            "  --realm REALM            the realm (required but for list)\n"
            "  --user USER              the user name\n"
            "  --pass-file FILE         read the password from the first line of FILE ('-': standard input);\n"
            "                           without it: $NATKIT_TURN_PASS, else a prompt on the terminal, else one\n"
            "                           line of standard input\n"
            "  --pass PASS              the password on the command line: visible to every user in `ps`\n"
            "  --secret-file FILE, --secret SECRET  the same for a REST secret ($NATKIT_TURN_SECRET)\n"
            "  --all                    delete-secret: every secret of REALM\n"
            "Exit 0 done, 1 failed (database unreadable or unreachable, user not there), 2 usage error.\n");
}

typedef struct args {
    const char *action, *userdb, *redis, *psql, *realm, *user, *pass_file, *pass, *secret_file, *secret;
    int all;
} args;

static int parse(args *a, int argc, char **argv)
{
    static const struct {
        const char *name;
        size_t off;
    } opts[] = {
        {"--userdb", offsetof(args, userdb)},       {"--redis-userdb", offsetof(args, redis)},
        {"--psql-userdb", offsetof(args, psql)},
        {"--realm", offsetof(args, realm)},         {"--user", offsetof(args, user)},
        {"--pass-file", offsetof(args, pass_file)}, {"--pass", offsetof(args, pass)},
        {"--secret-file", offsetof(args, secret_file)}, {"--secret", offsetof(args, secret)},
    };
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        size_t k;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(s, "--all")) {
            a->all = 1;
            continue;
        }
        if (s[0] != '-') {
            if (a->action != NULL)
                return (cli_usage_error(CMD, "unexpected argument '%s'", s), -1);
            a->action = s;
            continue;
        }
        for (k = 0; k < sizeof(opts) / sizeof(opts[0]) && strcmp(s, opts[k].name) != 0; k++)
            ;
        if (k == sizeof(opts) / sizeof(opts[0]))
            return (cli_usage_error(CMD, "unknown option '%s'", s), -1);
        if (i + 1 >= argc)
            return (cli_usage_error(CMD, "option '%s' needs a value", s), -1);
        *(const char **)((char *)a + opts[k].off) = argv[++i];
    }
    return 0;
}

/* A password or secret: FILE ('-': standard input), the given value, $ENV, a prompt on the
 * terminal, or a line of standard input. Read through cli_secret_line: a line longer than buf
 * is an error naming where it came from, never cut short. */
static int get_secret(const char *what, const char *file, const char *given, const char *env, char *buf, size_t cap)
{
    const char *e = getenv(env);
    const char *opt = strcmp(what, "password") == 0 ? "--pass" : "--secret";
    char source[48];
    int rc;
    snprintf(source, sizeof(source), "%s-file - (standard input)", opt);
    if (file != NULL && strcmp(file, "-") != 0) {
        snprintf(source, sizeof(source), "%s-file", opt);
        if ((rc = cli_secret_file(CMD, source, file, buf, cap)) != 0)
            return rc;
    } else if (file != NULL) {
        if ((rc = cli_secret_line(CMD, source, stdin, buf, cap)) != 0)
            return rc;
        if (buf[0] == '\0')
            return cli_usage_error(CMD, "%s: its first line is empty", source);
    } else if (given != NULL || e != NULL) {
        const char *v = given != NULL ? given : e;
        size_t n = strlen(v);
        if (n < cap)
            memcpy(buf, v, n + 1);
        if (given != NULL) /* off the command line seen in /proc from now on */
            sodium_memzero((char *)given, n);
        if (n >= cap)
            return cli_usage_error(CMD, "%s%s: longer than %zu bytes (it is not cut short)", given != NULL ? "" : "$",
                                   given != NULL ? opt : env, cap - 1);
    } else {
        FILE *tty = fopen("/dev/tty", "r+");
        struct termios old, noecho;
        int is_tty = tty != NULL && tcgetattr(fileno(tty), &old) == 0;
        if (is_tty) {
            fprintf(tty, "%s: ", what);
            fflush(tty);
            noecho = old;
            noecho.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(fileno(tty), TCSAFLUSH, &noecho);
        }
        rc = cli_secret_line(CMD, is_tty ? "the terminal" : "standard input", is_tty ? tty : stdin, buf, cap);
        if (is_tty) {
            tcsetattr(fileno(tty), TCSAFLUSH, &old);
            fputc('\n', tty);
        }
        if (tty != NULL)
            fclose(tty);
        if (rc != 0)
            return rc;
        if (buf[0] == '\0') {
            return cli_fail(CMD, CLI_EXIT_FAIL, 0, "no %s given (--%s-file, $%s, or the terminal)", what,
                            strcmp(what, "password") == 0 ? "pass" : "secret", env);
        }
    }
    if (buf[0] == '\0') {
        return cli_fail(CMD, CLI_EXIT_FAIL, 0, "empty %s", what);
    }
    return 0;
}

static void print_user(void *ctx, const char *realm, const char *user)
{
    printf("%s\t%s\n", user, realm);
}

static const char *where(const args *a)
{
    return a->userdb != NULL ? a->userdb : a->redis != NULL ? "the Redis userdb" : "the PostgreSQL userdb";
}

static int act(const args *a, const nk_turn_userdb_options *o)
{
    char buf[1024], err[700];
    int e, rc;
    const char *act = a->action;
    if (!strcmp(act, "list")) {
        e = nk_turn_userdb_list(o, print_user, NULL, err, sizeof(err));
    } else if (!strcmp(act, "add") || !strcmp(act, "delete")) {
        if (a->user == NULL)
            return cli_usage_error(CMD, "%s needs --user", act);
        if (!strcmp(act, "delete"))
            e = nk_turn_userdb_delete_user(o, a->user, err, sizeof(err));
        else {
            if ((rc = get_secret("password", a->pass_file, a->pass, "NATKIT_TURN_PASS", buf, sizeof(buf))) != 0)
                return rc;
            e = nk_turn_userdb_put_user(o, a->user, buf, err, sizeof(err));
            sodium_memzero(buf, sizeof(buf));
        }
    } else if (!strcmp(act, "add-secret") || !strcmp(act, "delete-secret")) {
        int del = !strcmp(act, "delete-secret");
        if (del && a->all)
            e = nk_turn_userdb_delete_secret(o, NULL, err, sizeof(err));
        else {
            if ((rc = get_secret("secret", a->secret_file, a->secret, "NATKIT_TURN_SECRET", buf, sizeof(buf))) != 0)
                return rc;
            e = del ? nk_turn_userdb_delete_secret(o, buf, err, sizeof(err))
                    : nk_turn_userdb_add_secret(o, buf, err, sizeof(err));
            sodium_memzero(buf, sizeof(buf));
        }
    } else
        return cli_usage_error(CMD, "unknown action '%s' (add, delete, list, add-secret, delete-secret)", act);
    if (e != 0) {
        return e == NK_ERR_INVAL ? cli_usage_error(CMD, "%s", err) : cli_fail(CMD, CLI_EXIT_FAIL, 0, "%s", err);
    }
    if (strcmp(act, "list") != 0)
        fprintf(stderr, "natkit " CMD ": %s done (realm %s, %s)\n", act, o->realm, where(a));
    return CLI_EXIT_OK;
}

int cmd_turn_user_main(int argc, char **argv);
int cmd_turn_user_main(int argc, char **argv)
{
    args a;
    nk_turn_userdb_options o;
    memset(&a, 0, sizeof(a));
    int rc = parse(&a, argc, argv);
    if (rc != 0)
        return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (a.action == NULL)
        return cli_usage_error(CMD, "give an action: add, delete, list, add-secret or delete-secret");
    if ((a.userdb != NULL) + (a.redis != NULL) + (a.psql != NULL) != 1)
        return cli_usage_error(CMD, "give exactly one of --userdb FILE, --redis-userdb CONNINFO and "
                                    "--psql-userdb CONNINFO");
    if (a.realm == NULL && strcmp(a.action, "list") != 0)
        return cli_usage_error(CMD, "%s needs --realm", a.action);
    nk_turn_userdb_options_init(&o);
    o.sqlite_path = a.userdb;
    o.redis = a.redis;
    o.psql = a.psql;
    o.realm = a.realm;
    return act(&a, &o);
}
