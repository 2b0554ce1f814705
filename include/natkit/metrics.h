/*
 * natkit: nk_metrics_text, a writer of the Prometheus text exposition format
 * (version 0.0.4): metric families with # HELP and # TYPE, samples with
 * escaped labels, histograms with cumulative _bucket{le=...}, _sum and _count.
 * Sans-I/O: it appends to a growable buffer with a hard cap and nothing else.
 * nk_metrics_write_stun/_turn/_hub turn the servers' stats into families
 * (every metric is listed in docs/internals/metrics.md); the HTTP endpoint
 * that serves the text is nk_metrics_server (natkit/metrics_server.h).
 */
#ifndef NATKIT_METRICS_H
#define NATKIT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/common.h"
#include "natkit/hub_server.h"
#include "natkit/stun_server.h"
#include "natkit/turn_server.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum nk_metrics_type {
    NK_METRICS_COUNTER = 1,
    NK_METRICS_GAUGE,
    NK_METRICS_HISTOGRAM,
} nk_metrics_type;

typedef struct nk_metrics_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", not "le" */
    const char *value; /* any UTF-8; backslash, double quote and newline are escaped */
} nk_metrics_label;

/* The text being written: a plain struct the caller owns (init, write, free). */
typedef struct nk_metrics_text {
    char *buf;  /* NUL-terminated text, len bytes */
    size_t len, cap, max;
    int err;    /* the first error (NK_ERR_INVAL: bad name; NK_ERR_NOMEM / NK_ERR_LIMIT: over max); 0: fine */
} nk_metrics_text;

/* max: the largest text allowed (0: 1 MiB). Allocates nothing yet. */
NK_API void nk_metrics_text_init(nk_metrics_text *t, size_t max);
NK_API void nk_metrics_text_free(nk_metrics_text *t);
/* Empties the text and clears err; keeps the buffer. */
NK_API void nk_metrics_text_reset(nk_metrics_text *t);

/*
 * The # HELP and # TYPE lines of a family. help: one line of text (backslash
 * and newline are escaped). Every write below records the first error in
 * t->err and then does nothing, so a caller checks once at the end.
 */
NK_API void nk_metrics_family(nk_metrics_text *t, const char *name, nk_metrics_type type, const char *help);
/* One sample: name{labels} value. Integers up to 2^53 print exactly; NaN and infinities as Prometheus spells them. */
NK_API void nk_metrics_sample(nk_metrics_text *t, const char *name, const nk_metrics_label *labels, size_t nlabels,
                              double value);
/* The same for an unsigned counter or gauge, printed exactly. */
NK_API void nk_metrics_sample_u64(nk_metrics_text *t, const char *name, const nk_metrics_label *labels,
                                  size_t nlabels, uint64_t value);
/*
 * One histogram series of family name: bounds[0..nbounds) ascending upper
 * bounds; counts[0..nbounds] observations per bucket, not cumulative (counts[i]:
 * bounds[i-1] < v <= bounds[i]; counts[nbounds]: above the last bound). Writes
 * name_bucket{...,le="..."} (cumulative, "+Inf" last), name_sum and name_count.
 */
NK_API void nk_metrics_histogram(nk_metrics_text *t, const char *name, const nk_metrics_label *labels,
                                 size_t nlabels, const double *bounds, const uint64_t *counts, size_t nbounds,
                                 double sum);

/* The servers' counters as metric families (names: docs/internals/metrics.md). */
NK_API void nk_metrics_write_stun(nk_metrics_text *t, const nk_stun_server_stats_t *st);
NK_API void nk_metrics_write_turn(nk_metrics_text *t, const nk_turn_server_stats_t *st);
NK_API void nk_metrics_write_hub(nk_metrics_text *t, const nk_hub_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif
