/*
 * natkit hub: the client driver. One non-blocking TCP (or TLS) socket to a
 * hub, moving bytes between it and an nk_hub_client; it fits any poll loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "errctx.h"
#include "natkit/hub.h"

#define LINK_BUF 16384 /* per link: 1000 links in one process stay small */

enum { L_CONNECTING = 1, L_HANDSHAKE, L_OPEN };

struct nk_hub_link {
    int fd;
    int state;
    short want;       /* TLS handshake: POLLIN or POLLOUT */
    int64_t deadline; /* connected (and TLS done) by then */
    SSL_CTX *ctx;
    SSL *ssl;
    size_t out_off, out_len;
    uint8_t out[LINK_BUF];
};

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - nk__now_ms();
        if (left <= 0)
            return NK_ERR_TIMEOUT;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return NK_ERR_SYSTEM;
    }
}

static int tcp_start(nk_hub_link *l, const nk_addr *hub)
{
    struct sockaddr_storage ss;
    unsigned len = sizeof(ss);
    if (nk_addr_to_sockaddr(hub, (struct sockaddr *)&ss, &len) != 0)
        return NK_ERR_ADDRESS;
    l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        return NK_ERR_SYSTEM;
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(l->fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS)
        return NK_ERR_SYSTEM;
    l->state = L_CONNECTING;
    return 0;
}

static int tls_setup(nk_hub_link *l, const nk_addr *hub, const char *ca_file)
{
    l->ctx = SSL_CTX_new(TLS_client_method());
    if (l->ctx == NULL)
        return NK_ERR_NOMEM;
    SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(l->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(l->ctx, ca_file, NULL) != 1) {
            ERR_clear_error();
            return NK_ERR_INVAL;
        }
        SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, NULL);
    }
    l->ssl = SSL_new(l->ctx);
    if (l->ssl == NULL || SSL_set_fd(l->ssl, l->fd) != 1)
        return NK_ERR_NOMEM;
    if (ca_file != NULL) {
        char ip[NK_ADDR_STRLEN];
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), nk_addr_format_ip(hub, ip, sizeof(ip)));
    }
    return 0;
}

/* Moves the connection on: 0 open, NK_ERR_AGAIN not yet, other: failed. */
static int link_progress(nk_hub_link *l)
{
    if (l->state == L_CONNECTING) {
        struct pollfd p = {l->fd, POLLOUT, 0};
        if (poll(&p, 1, 0) <= 0)
            return NK_ERR_AGAIN;
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            errno = err;
            return NK_ERR_SYSTEM;
        }
        l->state = l->ssl != NULL ? L_HANDSHAKE : L_OPEN;
    }
    if (l->state == L_HANDSHAKE) {
        int r = SSL_connect(l->ssl);
        if (r != 1) {
            int e = SSL_get_error(l->ssl, r);
            ERR_clear_error();
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return NK_ERR_AUTH;
            l->want = (short)(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT);
            return NK_ERR_AGAIN;
        }
        l->state = L_OPEN;
    }
    return 0;
}

static short link_events(const nk_hub_link *l)
{
    return l->state == L_CONNECTING ? POLLOUT : l->state == L_HANDSHAKE ? l->want : POLLIN;
}

int nk_hub_link_start(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int64_t timeout_ms)
{
    if (out == NULL || hub == NULL)
        return NK_ERR_INVAL;
    nk_hub_link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NK_ERR_NOMEM;
    l->fd = -1;
    l->want = POLLOUT;
    l->deadline = nk__now_ms() + (timeout_ms > 0 ? timeout_ms : 10000);
    int rc = tcp_start(l, hub);
    if (rc == 0 && tls)
        rc = tls_setup(l, hub, ca_file);
    if (rc != 0) {
        nk_hub_link_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* The error context of a link that could not be opened (nk_error_context). */
static void link_errctx(int rc, const nk_addr *hub, const char *ca_file)
{
    char text[NK_ADDR_STRLEN];
    nk_addr_format(hub, text, sizeof(text));
    if (rc == NK_ERR_SYSTEM)
        nk__errctx_set(errno, "connect to hub %s", text);
    else if (rc == NK_ERR_TIMEOUT)
        nk__errctx_set(ETIMEDOUT, "connect to hub %s", text);
    else if (rc == NK_ERR_AUTH)
        nk__errctx_set(0, "connect to hub %s: the TLS handshake failed (certificate not verified by %s?)", text,
                       ca_file != NULL ? ca_file : "the CA file");
    else if (rc == NK_ERR_INVAL && ca_file != NULL)
        nk__errctx_set(0, "load the CA file %s (not a readable PEM file)", ca_file);
}

int nk_hub_link_open(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int64_t timeout_ms,
                     nk_addr *local)
{
    nk_hub_link *l;
    int rc = nk_hub_link_start(&l, hub, tls, ca_file, timeout_ms);
    if (rc != 0) {
        link_errctx(rc, hub, ca_file);
        return rc;
    }
    while ((rc = link_progress(l)) == NK_ERR_AGAIN && (rc = wait_fd(l->fd, link_events(l), l->deadline)) == 0)
        ;
    if (rc != 0) {
        link_errctx(rc, hub, ca_file);
        nk_hub_link_free(l);
        return rc;
    }
    if (local != NULL)
        (void)nk_hub_link_local(l, local);
    *out = l;
    return 0;
}

int nk_hub_link_progress(nk_hub_link *l)
{
    if (l->state == L_OPEN)
        return 0;
    int rc = link_progress(l);
    if (rc == NK_ERR_AGAIN && nk__now_ms() >= l->deadline)
        return NK_ERR_TIMEOUT;
    return rc;
}

int nk_hub_link_local(const nk_hub_link *l, nk_addr *local)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) != 0)
        return NK_ERR_SYSTEM;
    return nk_addr_from_sockaddr(local, (struct sockaddr *)&ss);
}

int nk_hub_link_is_open(const nk_hub_link *l)
{
    return l->state == L_OPEN;
}

int nk_hub_link_fd(const nk_hub_link *l)
{
    return l->fd;
}

int nk_hub_link_wants_write(const nk_hub_link *l, const nk_hub_client *c)
{
    if (l->state != L_OPEN)
        return (link_events(l) & POLLOUT) != 0;
    return l->out_len > 0 || nk_hub_client_pending(c) > 0;
}

/* >0 bytes, 0 would block, <0 closed or failed. */
static ssize_t link_read(nk_hub_link *l, uint8_t *in, size_t cap)
{
    if (l->ssl != NULL) {
        int r = SSL_read(l->ssl, in, (int)cap);
        if (r > 0)
            return r;
        int e = SSL_get_error(l->ssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
    ssize_t r = recv(l->fd, in, cap, 0);
    if (r > 0)
        return r;
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
}

static ssize_t link_write(nk_hub_link *l, const uint8_t *p, size_t n)
{
    if (l->ssl != NULL) {
        int r = SSL_write(l->ssl, p, (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(l->ssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
    }
    ssize_t r = send(l->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0)
        return r;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

static int pump_in(nk_hub_link *l, nk_hub_client *c, int64_t now_ms)
{
    uint8_t in[LINK_BUF];
    for (;;) {
        ssize_t r = link_read(l, in, sizeof(in));
        if (r == 0)
            return 0;
        if (r < 0) {
            nk_hub_client_handle_closed(c, now_ms);
            return NK_ERR_CLOSED;
        }
        if (nk_hub_client_handle_bytes(c, now_ms, in, (size_t)r) != 0)
            return 0; /* closed by the hub or by us: flush the reason, then report */
    }
}

static int pump_out(nk_hub_link *l, nk_hub_client *c, int64_t now_ms)
{
    for (;;) {
        if (l->out_len == 0) {
            int n = nk_hub_client_poll_transmit(c, now_ms, l->out, sizeof(l->out));
            if (n <= 0)
                return 0;
            l->out_off = 0;
            l->out_len = (size_t)n;
        }
        ssize_t w = link_write(l, l->out + l->out_off, l->out_len);
        if (w < 0)
            return NK_ERR_CLOSED;
        if (w == 0)
            return 0;
        l->out_off += (size_t)w;
        l->out_len -= (size_t)w;
    }
}

int nk_hub_link_pump(nk_hub_link *l, nk_hub_client *c, int64_t now_ms)
{
    if (l->state != L_OPEN) {
        int prc = link_progress(l);
        if (prc == NK_ERR_AGAIN && nk__now_ms() < l->deadline)
            return 0;
        if (prc != 0) {
            nk_hub_client_handle_closed(c, now_ms);
            return NK_ERR_CLOSED;
        }
    }
    int rc = pump_in(l, c, now_ms);
    if (rc == 0 && now_ms >= nk_hub_client_next_deadline(c))
        nk_hub_client_handle_timeout(c, now_ms);
    int wrc = pump_out(l, c, now_ms);
    if (rc != 0 || wrc != 0) {
        nk_hub_client_handle_closed(c, now_ms);
        return NK_ERR_CLOSED;
    }
    if (nk_hub_client_state(c) == NK_HUB_CLIENT_CLOSED && l->out_len == 0)
        return NK_ERR_CLOSED;
    return 0;
}

int nk_hub_link_wait(nk_hub_link *l, nk_hub_client *c, int64_t timeout_ms)
{
    int64_t now = nk__now_ms();
    int64_t d = nk_hub_client_next_deadline(c);
    int64_t wait = timeout_ms < 0 || timeout_ms > INT32_MAX ? INT32_MAX : timeout_ms;
    if (d != NK_DEADLINE_NONE && d - now < wait)
        wait = d - now < 0 ? 0 : d - now;
    if (l->state != L_OPEN && l->deadline - now < wait)
        wait = l->deadline - now < 0 ? 0 : l->deadline - now;
    struct pollfd p = {l->fd, link_events(l), 0};
    if (nk_hub_link_wants_write(l, c))
        p.events |= POLLOUT;
    if (l->ssl == NULL || SSL_pending(l->ssl) == 0)
        (void)poll(&p, 1, (int)wait);
    return nk_hub_link_pump(l, c, nk__now_ms());
}

void nk_hub_link_free(nk_hub_link *l)
{
    if (l == NULL)
        return;
    if (l->ssl != NULL)
        SSL_free(l->ssl);
    SSL_CTX_free(l->ctx);
    if (l->fd >= 0)
        close(l->fd);
    free(l);
}
