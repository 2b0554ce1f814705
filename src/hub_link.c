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
#include "hub_internal.h"

#define LINK_BUF 16384 /* per link: 1000 links in one process stay small */

struct nk_hub_link {
    int fd;
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

static int tcp_connect(const nk_addr *hub, int64_t deadline, int *out)
{
    struct sockaddr_storage ss;
    unsigned len = sizeof(ss);
    if (nk_addr_to_sockaddr(hub, (struct sockaddr *)&ss, &len) != 0)
        return NK_ERR_ADDRESS;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NK_ERR_SYSTEM;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        if (errno != EINPROGRESS)
            rc = NK_ERR_SYSTEM;
        else if ((rc = wait_fd(fd, POLLOUT, deadline)) == 0) {
            int err = 0;
            socklen_t el = sizeof(err);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err != 0) {
                errno = err;
                rc = NK_ERR_SYSTEM;
            }
        }
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static int tls_connect(nk_hub_link *l, const nk_addr *hub, const char *ca_file, int64_t deadline)
{
    l->ctx = SSL_CTX_new(TLS_client_method());
    if (l->ctx == NULL)
        return NK_ERR_NOMEM;
    SSL_CTX_set_min_proto_version(l->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(l->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(l->ctx, ca_file, NULL) != 1)
            return NK_ERR_INVAL;
        SSL_CTX_set_verify(l->ctx, SSL_VERIFY_PEER, NULL);
    }
    l->ssl = SSL_new(l->ctx);
    if (l->ssl == NULL || SSL_set_fd(l->ssl, l->fd) != 1)
        return NK_ERR_NOMEM;
    if (ca_file != NULL) {
        char ip[NK_ADDR_STRLEN];
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), nk_addr_format_ip(hub, ip, sizeof(ip)));
    }
    for (;;) {
        int r = SSL_connect(l->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(l->ssl, r), rc;
        if (e == SSL_ERROR_WANT_READ)
            rc = wait_fd(l->fd, POLLIN, deadline);
        else if (e == SSL_ERROR_WANT_WRITE)
            rc = wait_fd(l->fd, POLLOUT, deadline);
        else
            rc = NK_ERR_AUTH;
        if (rc != 0) {
            ERR_clear_error();
            return rc;
        }
    }
}

int nk_hub_link_open(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int timeout_ms,
                     nk_addr *local)
{
    if (out == NULL || hub == NULL)
        return NK_ERR_INVAL;
    nk_hub_link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NK_ERR_NOMEM;
    int64_t deadline = nk__now_ms() + (timeout_ms > 0 ? timeout_ms : 10000);
    int rc = tcp_connect(hub, deadline, &l->fd);
    if (rc != 0) {
        free(l);
        return rc;
    }
    if (tls && (rc = tls_connect(l, hub, ca_file, deadline)) != 0) {
        nk_hub_link_free(l);
        return rc;
    }
    if (local != NULL) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0)
            nk_addr_from_sockaddr(local, (struct sockaddr *)&ss);
    }
    *out = l;
    return 0;
}

int nk_hub_link_fd(const nk_hub_link *l)
{
    return l->fd;
}

int nk_hub_link_wants_write(const nk_hub_link *l, const nk_hub_client *c)
{
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
    int rc = pump_in(l, c, now_ms);
    if (rc == 0 && now_ms >= nk_hub_client_next_deadline(c))
        nk_hub_client_handle_timeout(c, now_ms);
    int wrc = pump_out(l, c, now_ms);
    if (rc != 0 || wrc != 0) {
        nk_hub_client_handle_closed(c, now_ms);
        return NK_ERR_CLOSED;
    }
    if (nk_hub_client_get_state(c) == NK_HUB_CLIENT_CLOSED && l->out_len == 0)
        return NK_ERR_CLOSED;
    return 0;
}

int nk_hub_link_wait(nk_hub_link *l, nk_hub_client *c, int timeout_ms)
{
    int64_t now = nk__now_ms();
    int64_t d = nk_hub_client_next_deadline(c);
    int64_t wait = timeout_ms < 0 ? INT32_MAX : timeout_ms;
    if (d != NK_DEADLINE_NONE && d - now < wait)
        wait = d - now < 0 ? 0 : d - now;
    struct pollfd p = {l->fd, POLLIN, 0};
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
