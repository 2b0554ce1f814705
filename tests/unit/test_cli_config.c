/*
 * The servers' --config reader (src/cli/config.c): the line forms, comments at line ends,
 * quotes, flags, coturn's names and split listen address, and errors that name FILE:LINE
 * and stop the read.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "config.h"

static const struct option opts[] = {
    {"listen", required_argument, NULL, 'l'}, {"quiet", no_argument, NULL, 'q'},
    {"threads", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char *const aliases[] = {"relay-threads", "threads", NULL};

typedef struct seen {
    char log[1024]; /* "l=VALUE;q;..." in order */
    char where[64]; /* cli_config_where at the last option */
} seen;

static int record(void *ctx, int val, const char *arg)
{
    seen *s = ctx;
    size_t n = strlen(s->log);
    snprintf(s->log + n, sizeof(s->log) - n, arg != NULL ? "%c=%s;" : "%c;", val, arg);
    snprintf(s->where, sizeof(s->where), "%s", cli_config_where != NULL ? cli_config_where : "");
    return arg != NULL && !strcmp(arg, "bad") ? cli_usage_error("test", "bad value") : 0;
}

/* Reads TEXT as the file "f.conf"; returns the reader's result, the options in s. */
static int read_text(const char *text, seen *s)
{
    memset(s, 0, sizeof(*s));
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    int rc = cli_config_getopt_stream("test", "f.conf", f, opts, aliases, record, s);
    fclose(f);
    cli_config_release();
    return rc;
}

static void test_forms(void **state)
{
    seen s;
    (void)state;
    assert_int_equal(read_text("# a comment\n\nlisten=1.2.3.4:5\n  threads   7  \n--quiet\n"
                               "relay-threads = 3\n",
                               &s),
                     0);
    assert_string_equal(s.log, "l=1.2.3.4:5;t=7;q;t=3;");
}

static void test_comments_and_quotes(void **state)
{
    seen s;
    (void)state;
    assert_int_equal(read_text("threads=4   # four\nlisten=a#b\nlisten \"x # y\"  # z\nquiet\t# flag\n", &s), 0);
    assert_string_equal(s.log, "t=4;l=a#b;l=x # y;q;");
}

static void test_coturn_listen(void **state)
{
    seen s;
    (void)state;
    assert_int_equal(read_text("listening-port=3480\nthreads=1\nlistening-ip=::1\n", &s), 0);
    assert_string_equal(s.log, "t=1;l=[::1]:3480;");
    assert_string_equal(s.where, "f.conf:3"); /* the joined listen is blamed on its last line */
    assert_int_equal(read_text("listening-port=9\n", &s), 0);
    assert_string_equal(s.log, "l=0.0.0.0:9;");
}

static void test_errors_stop_and_name_the_line(void **state)
{
    seen s;
    (void)state;
    assert_int_equal(read_text("threads=1\nbogus=2\nthreads=3\n", &s), CLI_EXIT_USAGE);
    assert_string_equal(s.log, "t=1;");
    assert_int_equal(read_text("quiet=yes\n", &s), CLI_EXIT_USAGE); /* a flag takes no value */
    assert_int_equal(read_text("threads\n", &s), CLI_EXIT_USAGE);   /* an option needs one */
    assert_int_equal(read_text("help\n", &s), CLI_EXIT_USAGE);
    assert_int_equal(read_text("listen \"open\n", &s), CLI_EXIT_USAGE);
    assert_int_equal(read_text("threads=1\nlisten=bad\nthreads=2\n", &s), CLI_EXIT_USAGE);
    assert_string_equal(s.log, "t=1;l=bad;");
    assert_string_equal(s.where, "f.conf:2");
    assert_null(cli_config_where); /* nothing left behind after the read */
    char longline[1100];
    memset(longline, 'a', sizeof(longline) - 2);
    longline[sizeof(longline) - 2] = '\n';
    longline[sizeof(longline) - 1] = '\0';
    assert_int_equal(read_text(longline, &s), CLI_EXIT_USAGE);
    assert_int_equal(cli_config_getopt("test", "/nonexistent/f.conf", opts, aliases, record, &s), CLI_EXIT_FAIL); /* cannot be read: runtime, 1 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_comments_and_quotes),
        cmocka_unit_test(test_coturn_listen),
        cmocka_unit_test(test_errors_stop_and_name_the_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
