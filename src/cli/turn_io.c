/*
 * natkit CLI: sockets and TLS for a TURN client connection. Non-blocking
 * sockets and poll(); OpenSSL for TLS with certificate and name checks.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "natkit/clock.h"
#include "turn_io.h"

struct turn_io {
    int fd;
    uint8_t transport;
    SSL_CTX *ctx;
    SSL *ssl;
};

static void set_err(char *err, size_t cap, const char *what, const char *detail)
{
    snprintf(err, cap, "%s%s%s", what, detail != NULL ? ": " : "", detail != NULL ? detail : "");
}

static void ssl_err(char *err, size_t cap, const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    set_err(err, cap, what, e != 0 ? buf : "connection closed");
}

/* Waits for events on fd until deadline; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - nk_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (rc > 0)
            return 1;
        if (rc == 0 && left == 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static int connect_socket(turn_io *io, const turn_io_config *cfg, char *err, size_t cap)
{
    struct sockaddr_storage ss;
    unsigned sl = sizeof(ss);
    if (nk_addr_to_sockaddr(&cfg->server, (struct sockaddr *)&ss, &sl) != 0) {
        set_err(err, cap, "bad server address", NULL);
        return -1;
    }
    int stream = cfg->transport != NK_TRANSPORT_UDP;
    io->fd = socket(ss.ss_family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (io->fd < 0) {
        set_err(err, cap, "socket", strerror(errno));
        return -1;
    }
    if (stream) {
        int one = 1;
        setsockopt(io->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (cfg->bind.family != NK_AF_NONE) {
        struct sockaddr_storage bs;
        unsigned bl = sizeof(bs);
        if (nk_addr_to_sockaddr(&cfg->bind, (struct sockaddr *)&bs, &bl) != 0 ||
            bind(io->fd, (struct sockaddr *)&bs, bl) != 0) {
            set_err(err, cap, "bind", strerror(errno));
            return -1;
        }
    }
    if (connect(io->fd, (struct sockaddr *)&ss, sl) == 0)
        return 0;
    if (errno != EINPROGRESS) {
        set_err(err, cap, "connect", strerror(errno));
        return -1;
    }
    if (wait_fd(io->fd, POLLOUT, nk_now_ms() + cfg->timeout_ms) != 1) {
        set_err(err, cap, "connect", "timed out");
        return -1;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
        set_err(err, cap, "connect", strerror(soerr));
        return -1;
    }
    return 0;
}

static int is_ip_literal(const char *name)
{
    nk_addr a;
    return nk_addr_parse_ip(&a, name) == 0;
}

static int tls_setup(turn_io *io, const turn_io_config *cfg, char *err, size_t cap)
{
    io->ctx = SSL_CTX_new(TLS_client_method());
    if (io->ctx == NULL) {
        ssl_err(err, cap, "TLS context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(io->ctx, TLS1_2_VERSION);
    if (!cfg->tls_insecure) {
        SSL_CTX_set_verify(io->ctx, SSL_VERIFY_PEER, NULL);
        int ok = cfg->tls_ca_file != NULL ? SSL_CTX_load_verify_locations(io->ctx, cfg->tls_ca_file, NULL)
                                          : SSL_CTX_set_default_verify_paths(io->ctx);
        if (ok != 1) {
            ssl_err(err, cap, "TLS CA file");
            return -1;
        }
    }
    io->ssl = SSL_new(io->ctx);
    if (io->ssl == NULL || SSL_set_fd(io->ssl, io->fd) != 1) {
        ssl_err(err, cap, "TLS");
        return -1;
    }
    if (cfg->tls_name != NULL && !cfg->tls_insecure) {
        X509_VERIFY_PARAM *param = SSL_get0_param(io->ssl);
        int ok = is_ip_literal(cfg->tls_name) ? X509_VERIFY_PARAM_set1_ip_asc(param, cfg->tls_name)
                                              : SSL_set1_host(io->ssl, cfg->tls_name);
        if (ok != 1) {
            set_err(err, cap, "TLS name", cfg->tls_name);
            return -1;
        }
    }
    if (cfg->tls_name != NULL && !is_ip_literal(cfg->tls_name))
        SSL_set_tlsext_host_name(io->ssl, cfg->tls_name);
    return 0;
}

static int tls_handshake(turn_io *io, const turn_io_config *cfg, char *err, size_t cap)
{
    int64_t deadline = nk_now_ms() + cfg->timeout_ms;
    for (;;) {
        int rc = SSL_connect(io->ssl);
        if (rc == 1)
            return 0;
        int e = SSL_get_error(io->ssl, rc);
        short ev = (short)(e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0);
        if (ev == 0) {
            long v = SSL_get_verify_result(io->ssl);
            if (v != X509_V_OK) {
                set_err(err, cap, "TLS certificate", X509_verify_cert_error_string(v));
                return -1;
            }
            ssl_err(err, cap, "TLS handshake");
            return -1;
        }
        if (wait_fd(io->fd, ev, deadline) != 1) {
            set_err(err, cap, "TLS handshake", "timed out");
            return -1;
        }
    }
}

int turn_io_open(turn_io **out, const turn_io_config *cfg, char *err, size_t err_cap)
{
    turn_io *io = calloc(1, sizeof(*io));
    if (io == NULL) {
        set_err(err, err_cap, "out of memory", NULL);
        return NK_ERR_NOMEM;
    }
    io->fd = -1;
    io->transport = cfg->transport;
    if (connect_socket(io, cfg, err, err_cap) != 0 ||
        (cfg->transport == NK_TRANSPORT_TLS &&
         (tls_setup(io, cfg, err, err_cap) != 0 || tls_handshake(io, cfg, err, err_cap) != 0))) {
        turn_io_close(io);
        return NK_ERR_SYSTEM;
    }
    *out = io;
    return 0;
}

void turn_io_close(turn_io *io)
{
    if (io == NULL)
        return;
    if (io->ssl != NULL) {
        SSL_shutdown(io->ssl);
        SSL_free(io->ssl);
    }
    SSL_CTX_free(io->ctx);
    if (io->fd >= 0)
        close(io->fd);
    free(io);
}

int turn_io_local(const turn_io *io, nk_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(io->fd, (struct sockaddr *)&ss, &len) != 0)
        return NK_ERR_SYSTEM;
    return nk_addr_from_sockaddr(out, (struct sockaddr *)&ss);
}

static int tls_send(turn_io *io, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        size_t done = 0;
        int rc = SSL_write_ex(io->ssl, p + off, n - off, &done);
        if (rc == 1) {
            off += done;
            continue;
        }
        int e = SSL_get_error(io->ssl, rc);
        short ev = (short)(e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0);
        if (ev == 0 || wait_fd(io->fd, ev, nk_now_ms() + 5000) != 1)
            return NK_ERR_CLOSED;
    }
    return 0;
}

int turn_io_send(turn_io *io, const uint8_t *p, size_t n)
{
    if (io->ssl != NULL)
        return tls_send(io, p, n);
    size_t off = 0;
    do {
        ssize_t k = send(io->fd, p + off, n - off, MSG_NOSIGNAL);
        if (k >= 0) {
            off += (size_t)k;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && io->transport != NK_TRANSPORT_UDP && wait_fd(io->fd, POLLOUT, nk_now_ms() + 5000) == 1)
            continue;
        if (io->transport == NK_TRANSPORT_UDP && (errno == EAGAIN || errno == ECONNREFUSED))
            return 0; /* a lost datagram, as far as the protocol is concerned */
        return errno == EPIPE || errno == ECONNRESET ? NK_ERR_CLOSED : NK_ERR_SYSTEM;
    } while (off < n);
    return 0;
}

static int tls_recv(turn_io *io, uint8_t *buf, size_t cap, int wait_ms)
{
    int64_t deadline = nk_now_ms() + wait_ms;
    for (;;) {
        size_t got = 0;
        int rc = SSL_read_ex(io->ssl, buf, cap, &got);
        if (rc == 1)
            return (int)got;
        int e = SSL_get_error(io->ssl, rc);
        if (e == SSL_ERROR_ZERO_RETURN)
            return NK_ERR_CLOSED;
        short ev = (short)(e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0);
        if (ev == 0)
            return NK_ERR_CLOSED;
        int w = wait_fd(io->fd, ev, deadline);
        if (w == 0)
            return NK_ERR_AGAIN;
        if (w < 0)
            return NK_ERR_SYSTEM;
    }
}

int turn_io_recv(turn_io *io, uint8_t *buf, size_t cap, int wait_ms)
{
    if (io->ssl != NULL)
        return tls_recv(io, buf, cap, wait_ms);
    int64_t deadline = nk_now_ms() + wait_ms;
    for (;;) {
        ssize_t k = recv(io->fd, buf, cap, 0);
        if (k > 0 || (k == 0 && io->transport == NK_TRANSPORT_UDP))
            return (int)k;
        if (k == 0)
            return NK_ERR_CLOSED;
        if (errno == EINTR)
            continue;
        if (errno == ECONNREFUSED && io->transport == NK_TRANSPORT_UDP)
            continue; /* ICMP port unreachable from an earlier send: keep waiting */
        if (errno != EAGAIN)
            return errno == ECONNRESET ? NK_ERR_CLOSED : NK_ERR_SYSTEM;
        int w = wait_fd(io->fd, POLLIN, deadline);
        if (w == 0)
            return NK_ERR_AGAIN;
        if (w < 0)
            return NK_ERR_SYSTEM;
    }
}
