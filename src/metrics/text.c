/*
 * natkit metrics: the Prometheus text exposition format, version 0.0.4
 * (docs/internals/metrics.md). Appends to a buffer that grows up to a hard cap;
 * the first error sticks in t->err and makes every later call a no-op.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/metrics.h"

#define DEFAULT_MAX (1024 * 1024)

void nk_metrics_text_init(nk_metrics_text *t, size_t max)
{
    memset(t, 0, sizeof(*t));
    t->max = max != 0 ? max : DEFAULT_MAX;
}

void nk_metrics_text_free(nk_metrics_text *t)
{
    if (t == NULL)
        return;
    free(t->buf);
    memset(t, 0, sizeof(*t));
}

void nk_metrics_text_reset(nk_metrics_text *t)
{
    t->len = 0;
    t->err = 0;
    if (t->buf != NULL)
        t->buf[0] = '\0';
}

/* Room for n more bytes and the NUL; 0 or -1 with t->err set. */
static int reserve(nk_metrics_text *t, size_t n)
{
    if (t->err != 0)
        return -1;
    if (n > t->max || t->len + n + 1 > t->max) {
        t->err = NK_ERR_LIMIT;
        return -1;
    }
    if (t->len + n + 1 <= t->cap)
        return 0;
    size_t cap = t->cap != 0 ? t->cap : 4096;
    while (cap < t->len + n + 1)
        cap *= 2;
    if (cap > t->max)
        cap = t->max;
    char *p = realloc(t->buf, cap);
    if (p == NULL) {
        t->err = NK_ERR_NOMEM;
        return -1;
    }
    t->buf = p;
    t->cap = cap;
    return 0;
}

static void put(nk_metrics_text *t, const char *s, size_t n)
{
    if (reserve(t, n) != 0)
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void puts_(nk_metrics_text *t, const char *s)
{
    put(t, s, strlen(s));
}

/* Text with backslash and newline escaped (HELP); with quote too when quote is set (label values). */
static void put_escaped(nk_metrics_text *t, const char *s, int quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            put(t, "\\\\", 2);
        else if (*s == '\n')
            put(t, "\\n", 2);
        else if (*s == '"' && quote)
            put(t, "\\\"", 2);
        else
            put(t, s, 1);
    }
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names the same without ':'. */
static int valid_name(const char *s, int label)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              (c == ':' && !label)))
            return 0;
    }
    return 1;
}

static int check_name(nk_metrics_text *t, const char *name)
{
    if (t->err == 0 && !valid_name(name, 0))
        t->err = NK_ERR_INVAL;
    return t->err == 0 ? 0 : -1;
}

void nk_metrics_family(nk_metrics_text *t, const char *name, nk_metrics_type type, const char *help)
{
    static const char *const types[] = {"untyped", "counter", "gauge", "histogram"};
    if (check_name(t, name) != 0)
        return;
    if (type < NK_METRICS_COUNTER || type > NK_METRICS_HISTOGRAM) {
        t->err = NK_ERR_INVAL;
        return;
    }
    puts_(t, "# HELP ");
    puts_(t, name);
    puts_(t, " ");
    put_escaped(t, help != NULL ? help : "", 0);
    puts_(t, "\n# TYPE ");
    puts_(t, name);
    puts_(t, " ");
    puts_(t, types[type]);
    puts_(t, "\n");
}

/* {a="x",b="y"} (nothing for no labels), with le="..." last when le is set. */
static void put_labels(nk_metrics_text *t, const nk_metrics_label *labels, size_t n, const char *le)
{
    if (n == 0 && le == NULL)
        return;
    puts_(t, "{");
    for (size_t i = 0; i < n; i++) {
        const char *k = labels[i].name;
        if (!valid_name(k, 1) || (k[0] == '_' && k[1] == '_') || strcmp(k, "le") == 0 ||
            labels[i].value == NULL) {
            if (t->err == 0)
                t->err = NK_ERR_INVAL;
            return;
        }
        if (i > 0)
            puts_(t, ",");
        puts_(t, k);
        puts_(t, "=\"");
        put_escaped(t, labels[i].value, 1);
        puts_(t, "\"");
    }
    if (le != NULL) {
        puts_(t, n > 0 ? ",le=\"" : "le=\"");
        puts_(t, le);
        puts_(t, "\"");
    }
    puts_(t, "}");
}

/* The forms Prometheus reads: NaN, +Inf, -Inf; integers exactly up to 2^53; else the
 * shortest decimal that reads back as the same double (0.05, not 0.050000000000000003). */
static void format_double(char *out, size_t cap, double v)
{
    if (isnan(v))
        snprintf(out, cap, "NaN");
    else if (isinf(v))
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    else if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(int64_t)v)
        snprintf(out, cap, "%lld", (long long)(int64_t)v);
    else
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
}

static void sample_text(nk_metrics_text *t, const char *name, const char *suffix, const nk_metrics_label *labels,
                        size_t nlabels, const char *le, const char *value)
{
    if (check_name(t, name) != 0)
        return;
    puts_(t, name);
    puts_(t, suffix);
    put_labels(t, labels, nlabels, le);
    puts_(t, " ");
    puts_(t, value);
    puts_(t, "\n");
}

void nk_metrics_sample(nk_metrics_text *t, const char *name, const nk_metrics_label *labels, size_t nlabels,
                       double value)
{
    char v[64];
    format_double(v, sizeof(v), value);
    sample_text(t, name, "", labels, nlabels, NULL, v);
}

void nk_metrics_sample_u64(nk_metrics_text *t, const char *name, const nk_metrics_label *labels, size_t nlabels,
                           uint64_t value)
{
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)value);
    sample_text(t, name, "", labels, nlabels, NULL, v);
}

void nk_metrics_histogram(nk_metrics_text *t, const char *name, const nk_metrics_label *labels, size_t nlabels,
                          const double *bounds, const uint64_t *counts, size_t nbounds, double sum)
{
    char le[64], v[64];
    uint64_t total = 0;
    for (size_t i = 0; i < nbounds; i++) {
        if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            if (t->err == 0)
                t->err = NK_ERR_INVAL;
            return;
        }
    }
    for (size_t i = 0; i <= nbounds; i++) {
        total += counts[i];
        if (i < nbounds)
            format_double(le, sizeof(le), bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(v, sizeof(v), "%llu", (unsigned long long)total);
        sample_text(t, name, "_bucket", labels, nlabels, le, v);
    }
    format_double(v, sizeof(v), sum);
    sample_text(t, name, "_sum", labels, nlabels, NULL, v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)total);
    sample_text(t, name, "_count", labels, nlabels, NULL, v);
}
