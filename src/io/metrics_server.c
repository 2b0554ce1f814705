/*
 * natkit: nk_metrics_server, GET /metrics over HTTP with libmicrohttpd (its own
 * polling thread). We bind the socket ourselves so a bind failure comes back
 * with its errno, then hand it to libmicrohttpd; every byte of HTTP is parsed
 * by libmicrohttpd. See docs/internals/metrics.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "clock.h"
#include "natkit/metrics_server.h"
#include "sockets.h"

#define MAX_TEXT (4 * 1024 * 1024)

struct nk_metrics_server {
    struct MHD_Daemon *mhd;
    int fd;
    nk_addr addr;
    nk_metrics_collect_fn collect;
    void *ctx;
    double start_unix_s;
    int64_t start_ms;
};

static void process_families(const nk_metrics_server *s, nk_metrics_text *t)
{
    nk_metrics_label version = {"version", nk_version()};
    nk_metrics_family(t, "natkit_build_info", NK_METRICS_GAUGE, "Always 1; the version in a label");
    nk_metrics_sample(t, "natkit_build_info", &version, 1, 1);
    nk_metrics_family(t, "natkit_start_time_seconds", NK_METRICS_GAUGE, "When the server started, Unix time");
    nk_metrics_sample(t, "natkit_start_time_seconds", NULL, 0, s->start_unix_s);
    nk_metrics_family(t, "natkit_uptime_seconds", NK_METRICS_GAUGE, "Seconds since the server started");
    nk_metrics_sample(t, "natkit_uptime_seconds", NULL, 0, (double)(nk__now_ms() - s->start_ms) / 1000.0);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body,
                             size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    char *body = strdup(text);
    return body != NULL ? reply(conn, status, "text/plain; charset=utf-8", body, strlen(body)) : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    nk_metrics_server *s = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n");
    if (strcmp(url, "/metrics") != 0)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
    nk_metrics_text t;
    nk_metrics_text_init(&t, MAX_TEXT);
    s->collect(s->ctx, &t);
    process_families(s, &t);
    if (t.err != 0) {
        nk_metrics_text_free(&t);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics could not be written\n");
    }
    return reply(conn, MHD_HTTP_OK, NK_METRICS_CONTENT_TYPE, t.buf, t.len); /* libmicrohttpd frees t.buf */
}

int nk_metrics_server_start(nk_metrics_server **out, const nk_addr *listen, nk_metrics_collect_fn collect,
                            void *ctx)
{
    if (out == NULL || listen == NULL || collect == NULL ||
        (listen->family != NK_AF_INET && listen->family != NK_AF_INET6))
        return NK_ERR_INVAL;
    nk_metrics_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    s->collect = collect;
    s->ctx = ctx;
    s->start_unix_s = (double)nk__unix_ms() / 1000.0;
    s->start_ms = nk__now_ms();
    if ((s->fd = nk__listen_tcp(listen, 0, &s->addr)) < 0) {
        int e = errno;
        free(s);
        errno = e;
        return NK_ERR_ADDRESS;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (listen->family == NK_AF_INET6)
        flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)10, MHD_OPTION_END);
    if (s->mhd == NULL) {
        close(s->fd);
        free(s);
        errno = EIO;
        return NK_ERR_SYSTEM;
    }
    *out = s;
    return 0;
}

void nk_metrics_server_addr(const nk_metrics_server *s, nk_addr *out)
{
    *out = s->addr;
}

void nk_metrics_server_free(nk_metrics_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->mhd); /* joins its thread and closes the listening socket it was given */
    free(s);
}
