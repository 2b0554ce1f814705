/*
 * The Prometheus text writer (src/metrics): exact text for families, labels
 * (escaping), numbers, histograms; the sticky error; the servers' families.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/metrics.h"

static void test_family_and_samples(void **state)
{
    nk_metrics_text t;
    nk_metrics_text_init(&t, 0);
    nk_metrics_family(&t, "x_total", NK_METRICS_COUNTER, "a \\ help\nline");
    nk_metrics_label l[2] = {{"path", "a\"b\\c\nd"}, {"k", ""}};
    nk_metrics_sample_u64(&t, "x_total", l, 2, 18446744073709551615ull);
    nk_metrics_sample_u64(&t, "x_total", NULL, 0, 0);
    nk_metrics_family(&t, "g", NK_METRICS_GAUGE, "");
    nk_metrics_sample(&t, "g", NULL, 0, 0.05);
    nk_metrics_sample(&t, "g", NULL, 0, 3);
    nk_metrics_sample(&t, "g", NULL, 0, -1.5);
    nk_metrics_sample(&t, "g", NULL, 0, 1e300);
    nk_metrics_sample(&t, "g", NULL, 0, 0.0 / 0.0);
    nk_metrics_sample(&t, "g", NULL, 0, -1.0 / 0.0);
    assert_int_equal(t.err, 0);
    assert_string_equal(t.buf, "# HELP x_total a \\\\ help\\nline\n"
                               "# TYPE x_total counter\n"
                               "x_total{path=\"a\\\"b\\\\c\\nd\",k=\"\"} 18446744073709551615\n"
                               "x_total 0\n"
                               "# HELP g \n"
                               "# TYPE g gauge\n"
                               "g 0.05\n"
                               "g 3\n"
                               "g -1.5\n"
                               "g 1e+300\n"
                               "g NaN\n"
                               "g -Inf\n");
    assert_int_equal(t.len, strlen(t.buf));
    nk_metrics_text_reset(&t);
    assert_int_equal(t.len, 0);
    assert_string_equal(t.buf, "");
    nk_metrics_text_free(&t);
}

static void test_histogram(void **state)
{
    nk_metrics_text t;
    nk_metrics_text_init(&t, 0);
    double bounds[2] = {0.1, 1};
    uint64_t counts[3] = {1, 2, 3};
    nk_metrics_label l = {"side", "a"};
    nk_metrics_histogram(&t, "h_seconds", &l, 1, bounds, counts, 2, 7.5);
    nk_metrics_histogram(&t, "h_seconds", NULL, 0, bounds, counts, 0, 0);
    assert_int_equal(t.err, 0);
    assert_string_equal(t.buf, "h_seconds_bucket{side=\"a\",le=\"0.1\"} 1\n"
                               "h_seconds_bucket{side=\"a\",le=\"1\"} 3\n"
                               "h_seconds_bucket{side=\"a\",le=\"+Inf\"} 6\n"
                               "h_seconds_sum{side=\"a\"} 7.5\n"
                               "h_seconds_count{side=\"a\"} 6\n"
                               "h_seconds_bucket{le=\"+Inf\"} 1\n"
                               "h_seconds_sum 0\n"
                               "h_seconds_count 1\n");
    /* bounds must ascend */
    double bad[2] = {1, 1};
    nk_metrics_histogram(&t, "h2", NULL, 0, bad, counts, 2, 0);
    assert_int_equal(t.err, NK_ERR_INVAL);
    nk_metrics_text_free(&t);
}

static void test_errors_stick(void **state)
{
    nk_metrics_text t;
    const char *bad_names[] = {"", "1x", "a-b", "a b", "é"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        nk_metrics_text_init(&t, 0);
        nk_metrics_sample(&t, bad_names[i], NULL, 0, 1);
        assert_int_equal(t.err, NK_ERR_INVAL);
        nk_metrics_text_free(&t);
    }
    const char *bad_labels[] = {"le", "__x", "a:b", "9"};
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        nk_metrics_label l = {bad_labels[i], "v"};
        nk_metrics_text_init(&t, 0);
        nk_metrics_sample(&t, "ok:name_1", &l, 1, 1);
        assert_int_equal(t.err, NK_ERR_INVAL);
        nk_metrics_text_free(&t);
    }
    nk_metrics_text_init(&t, 0);
    nk_metrics_family(&t, "x", (nk_metrics_type)9, "h");
    assert_int_equal(t.err, NK_ERR_INVAL);
    nk_metrics_text_free(&t);
    /* over the cap: NK_ERR_LIMIT, and nothing more is written, not even what would fit */
    nk_metrics_text_init(&t, 64);
    nk_metrics_family(&t, "a_rather_long_metric_name_total", NK_METRICS_COUNTER, "help");
    assert_int_equal(t.err, NK_ERR_LIMIT);
    size_t len = t.len;
    assert_true(len < 64);
    nk_metrics_text_reset(&t);
    nk_metrics_sample(&t, "x", NULL, 0, 1);
    assert_int_equal(t.err, 0);
    assert_string_equal(t.buf, "x 1\n");
    nk_metrics_text_free(&t);
}

/* The number of lines of t that start with prefix. */
static int lines_with(const nk_metrics_text *t, const char *prefix)
{
    int n = 0;
    for (const char *p = t->buf; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

static void test_server_families(void **state)
{
    nk_metrics_text t;
    nk_metrics_text_init(&t, 0);
    nk_stun_server_stats_t ss = {.requests = 10, .responses = 9, .errors = 1, .dropped_malformed = 2,
                                 .tcp_rejected_per_ip = 4, .tcp_evicted = 5, .rate_limited = 6};
    nk_metrics_write_stun(&t, &ss);
    assert_int_equal(t.err, 0);
    assert_non_null(strstr(t.buf, "\nnatkit_stun_tcp_connections_total{result=\"rejected_per_ip\"} 4\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_stun_tcp_limit_closed_total{reason=\"evicted\"} 5\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_stun_rate_limited_total 6\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_stun_requests_total 10\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_stun_responses_total{result=\"error\"} 1\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_stun_dropped_total{reason=\"malformed\"} 2\n"));

    nk_metrics_text_reset(&t);
    nk_turn_server_stats_t ts;
    memset(&ts, 0, sizeof(ts));
    ts.allocations = 3;
    ts.bytes_to_client = 1234;
    ts.allocate_errors[1] = 7;                    /* 401 */
    ts.allocate_errors[NK_TURN_STATS_NCODES] = 1; /* other */
    ts.rate_limited = 8;
    ts.tcp_first_timeout = 2;
    nk_metrics_write_turn(&t, &ts);
    assert_int_equal(t.err, 0);
    assert_non_null(strstr(t.buf, "\nnatkit_turn_rate_limited_total 8\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_turn_tcp_limit_closed_total{reason=\"first_message_timeout\"} 2\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_turn_allocations 3\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_turn_relayed_bytes_total{direction=\"to_client\"} 1234\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_turn_allocate_errors_total{code=\"401\"} 7\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_turn_allocate_errors_total{code=\"other\"} 1\n"));
    assert_int_equal(lines_with(&t, "natkit_turn_allocate_errors_total{"), NK_TURN_STATS_NCODES + 1);

    nk_metrics_text_reset(&t);
    nk_hub_stats_t hs;
    memset(&hs, 0, sizeof(hs));
    hs.peers = 2;
    hs.routed = 10;
    hs.relay_frames = 4;
    hs.closed = 6;
    hs.idle_closed = 2;
    hs.nomem_closed = 1;
    hs.reports = 3;
    hs.report_path[1] = 2;
    hs.report_path[3] = 1;
    hs.report_connect_ms[0] = 1;
    hs.report_connect_ms[4] = 2;
    hs.report_connect_ms_sum = 1500;
    hs.rejected_per_ip = 9;
    hs.register_timeouts = 1;
    hs.ignored_reports = 7;
    hs.ignored_unknown = 8;
    nk_metrics_write_hub(&t, &hs);
    assert_int_equal(t.err, 0);
    assert_non_null(strstr(t.buf, "\nnatkit_hub_peers 2\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_signalling_messages_total 6\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_relay_frames_total 4\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connections_closed_total{reason=\"other\"} 3\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connections_closed_total{reason=\"nomem\"} 1\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connections_total{result=\"rejected_per_ip\"} 9\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_register_timeouts_total 1\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_frames_ignored_total{reason=\"unregistered_report\"} 7\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_frames_ignored_total{reason=\"unknown_type\"} 8\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_peer_connections_total{path=\"direct\"} 2\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_peer_connections_total{path=\"hub\"} 1\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connect_time_seconds_bucket{le=\"0.05\"} 1\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connect_time_seconds_bucket{le=\"0.5\"} 1\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connect_time_seconds_bucket{le=\"1\"} 3\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connect_time_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connect_time_seconds_sum 1.5\n"));
    assert_non_null(strstr(t.buf, "\nnatkit_hub_connect_time_seconds_count 3\n"));
    /* every family has one HELP and one TYPE line */
    assert_int_equal(lines_with(&t, "# HELP "), lines_with(&t, "# TYPE "));
    nk_metrics_text_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_errors_stick),
        cmocka_unit_test(test_server_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
