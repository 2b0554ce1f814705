/*
 * natkit: the TURN service's stream side: TCP and TLS client
 * connections, their framing (STUN messages and padded ChannelData, RFC 8656
 * section 12.5) and buffered writes. A connection that sends something that
 * is neither is closed; its allocation ends with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "natkit/stun.h"
#include "errctx.h"
#include "random.h"
#include "tls_files.h"
#include "turn_service_internal.h"

static int tls_init(nk_turn_service *d)
{
    if (d->cfg.tls_listen.family == NK_AF_NONE)
        return 0;
    if (d->cfg.cert_file == NULL || d->cfg.key_file == NULL)
        return NK_ERR_INVAL;
    int rc = nk__tls_files_check(d->cfg.cert_file, d->cfg.key_file);
    if (rc != 0)
        return rc;
    d->tls = SSL_CTX_new(TLS_server_method());
    if (d->tls == NULL)
        return NK_ERR_NOMEM;
    SSL_CTX_set_min_proto_version(d->tls, TLS1_2_VERSION);
    SSL_CTX_set_mode(d->tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(d->tls, d->cfg.cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(d->tls, d->cfg.key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(d->tls) != 1) {
        ERR_clear_error();
        nk__errctx_set(0, "load certificate %s and key %s (not PEM, or the key does not match)", d->cfg.cert_file,
                       d->cfg.key_file);
        return NK_ERR_INVAL;
    }
    return 0;
}

int nk__ts_stream_init(nk_turn_service *d)
{
    uint8_t key[NK__SRCLIMIT_HASH_KEY];
    d->nconns_cap = d->cfg.max_connections;
    d->conns = calloc(d->nconns_cap, sizeof(*d->conns));
    if (d->conns == NULL)
        return NK_ERR_NOMEM;
    nk__random(NULL, NULL, key, sizeof(key));
    int rc = nk__conncount_new(&d->per_ip, d->nconns_cap, d->cfg.max_per_ip > 0 ? (uint32_t)d->cfg.max_per_ip : 0, key);
    return rc != 0 ? rc : tls_init(d);
}

static size_t bucket(const nk_addr *a)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < nk_addr_ip_len(a); i++)
        h = (h ^ a->ip[i]) * 16777619u;
    h = (h ^ a->port) * 16777619u;
    return h & 1023;
}

static nk__ts_conn *conn_find(nk_turn_service *d, uint8_t transport, const nk_addr *peer)
{
    for (nk__ts_conn *c = d->conn_hash[bucket(peer)]; c != NULL; c = c->hnext)
        if (c->transport == transport && nk_addr_equal(&c->peer, peer))
            return c;
    return NULL;
}

static const nk_addr *local_of(const nk_turn_service *d, const nk__ts_conn *c)
{
    return c->transport == NK_TRANSPORT_TLS ? &d->cfg.tls_listen : &d->cfg.listen;
}

static void conn_close(nk_turn_service *d, nk__ts_conn *c)
{
    nk_turn_server_client_closed(d->srv, d->now, c->transport, &c->peer, local_of(d, c));
    nk__ts_conn **pp = &d->conn_hash[bucket(&c->peer)];
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp != NULL)
        *pp = c->hnext;
    epoll_ctl(d->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    SSL_free(c->ssl);
    d->conns[c->slot] = NULL;
    d->nconns--;
    nk__conncount_remove(d->per_ip, &c->peer);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

void nk__ts_stream_free(nk_turn_service *d)
{
    for (uint32_t i = 0; d->conns != NULL && i < d->nconns_cap; i++) {
        nk__ts_conn *c = d->conns[i];
        if (c == NULL)
            continue;
        close(c->fd);
        SSL_free(c->ssl);
        free(c->rbuf);
        free(c->wbuf);
        free(c);
    }
    free(d->conns);
    SSL_CTX_free(d->tls);
    nk__conncount_free(d->per_ip);
}

static void conn_watch(nk_turn_service *d, nk__ts_conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u64 = nk__ts_tag(NK__TS_CONN, c->slot)};
    epoll_ctl(d->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

static nk__ts_conn *conn_new(nk_turn_service *d, int fd, uint8_t transport, const nk_addr *peer)
{
    uint32_t slot = 0;
    while (slot < d->nconns_cap && d->conns[slot] != NULL)
        slot++;
    nk__ts_conn *c = slot < d->nconns_cap ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL || (c->rbuf = malloc(NK__TS_FRAME_MAX)) == NULL)
        goto Fail;
    c->fd = fd;
    c->slot = slot;
    c->opened_ms = c->accepted_ms = d->now;
    c->transport = transport;
    c->peer = *peer;
    if (transport == NK_TRANSPORT_TLS) {
        if ((c->ssl = SSL_new(d->tls)) == NULL || SSL_set_fd(c->ssl, fd) != 1)
            goto Fail;
        SSL_set_accept_state(c->ssl);
    }
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = nk__ts_tag(NK__TS_CONN, slot)};
    if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        goto Fail;
    d->conns[slot] = c;
    d->nconns++;
    size_t b = bucket(peer);
    c->hnext = d->conn_hash[b];
    d->conn_hash[b] = c;
    return c;
Fail:
    if (c != NULL) {
        SSL_free(c->ssl);
        free(c->rbuf);
        free(c);
    }
    return NULL;
}

/* The connection that has waited longest without sending a valid message, or NULL. */
static nk__ts_conn *oldest_unproven(nk_turn_service *d)
{
    nk__ts_conn *old = NULL;
    for (uint32_t i = 0; i < d->nconns_cap; i++) {
        nk__ts_conn *c = d->conns[i];
        if (c != NULL && !c->valid && (old == NULL || c->accepted_ms < old->accepted_ms))
            old = c;
    }
    return old;
}

/*
 * Whether a connection from peer may take a place (its source counted then): under the
 * per-source cap, and a free slot, or one made by closing the oldest connection that has
 * not sent a valid message (a scan of the table, only when it is full).
 */
static int admit(nk_turn_service *d, const nk_addr *peer)
{
    if (nk__conncount_add(d->per_ip, peer) != 0) {
        d->conn_stats.tcp_rejected_per_ip++;
        return 0;
    }
    if (d->nconns < d->nconns_cap)
        return 1;
    nk__ts_conn *old = oldest_unproven(d);
    if (old != NULL) {
        conn_close(d, old);
        d->conn_stats.tcp_evicted++;
        return 1;
    }
    nk__conncount_remove(d->per_ip, peer);
    d->conn_stats.tcp_rejected++;
    return 0;
}

void nk__ts_accept(nk_turn_service *d, int listen_fd, uint8_t transport)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        nk_addr peer;
        int one = 1;
        int fd = accept4(listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (nk_addr_from_sockaddr(&peer, (struct sockaddr *)&ss) != 0 || conn_find(d, transport, &peer) != NULL) {
            close(fd);
            d->conn_stats.tcp_rejected++;
            continue;
        }
        if (!admit(d, &peer)) {
            close(fd);
            continue;
        }
        if (conn_new(d, fd, transport, &peer) == NULL) {
            close(fd);
            nk__conncount_remove(d->per_ip, &peer);
            d->conn_stats.tcp_rejected++;
            continue;
        }
        d->conn_stats.tcp_accepted++;
    }
}

/* ---- raw I/O: TCP or TLS; > 0 bytes, 0 closed, NK_ERR_AGAIN, NK_ERR_SYSTEM ---- */

static int tls_result(nk__ts_conn *c, int n)
{
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return NK_ERR_AGAIN;
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? 0 : NK_ERR_SYSTEM;
}

static int conn_read(nk__ts_conn *c, uint8_t *p, size_t cap)
{
    if (c->ssl != NULL) {
        int n = SSL_read(c->ssl, p, (int)cap);
        return n > 0 ? n : tls_result(c, n);
    }
    ssize_t n = read(c->fd, p, cap);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? NK_ERR_AGAIN : NK_ERR_SYSTEM;
}

static int conn_write(nk__ts_conn *c, const uint8_t *p, size_t n)
{
    if (c->ssl != NULL) {
        int w = SSL_write(c->ssl, p, (int)n);
        return w > 0 ? w : tls_result(c, w);
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0)
        return (int)w;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? NK_ERR_AGAIN : NK_ERR_SYSTEM;
}

/* Writes the pending bytes; 0, or NK_ERR_SYSTEM when the connection failed. */
static int flush(nk_turn_service *d, nk__ts_conn *c)
{
    size_t off = 0;
    while (off < c->wlen) {
        int w = conn_write(c, c->wbuf + off, c->wlen - off);
        if (w == NK_ERR_AGAIN)
            break;
        if (w <= 0)
            return NK_ERR_SYSTEM;
        off += (size_t)w;
    }
    memmove(c->wbuf, c->wbuf + off, c->wlen - off);
    c->wlen -= off;
    conn_watch(d, c, c->wlen > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
    return 0;
}

static int append(nk__ts_conn *c, const uint8_t *p, size_t n)
{
    if (c->wlen + n > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 4096;
        while (cap < c->wlen + n)
            cap *= 2;
        uint8_t *b = realloc(c->wbuf, cap);
        if (b == NULL)
            return NK_ERR_NOMEM;
        c->wbuf = b;
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
    return 0;
}

void nk__ts_conn_send(nk_turn_service *d, uint8_t transport, const nk_addr *to, const uint8_t *p, size_t n)
{
    nk__ts_conn *c = conn_find(d, transport, to);
    if (c == NULL || c->wlen + n > NK__TS_WBUF_MAX) /* a slow reader loses whole frames, never parts */
        return;
    if (append(c, p, n) != 0 || flush(d, c) != 0)
        conn_close(d, c);
}

/* Length of the frame at p (STUN or padded ChannelData): > 0, 0 need more, < 0 not TURN. */
static long frame_length(const uint8_t *p, size_t n)
{
    size_t len;
    if (nk_turn_is_channel_data(p, n)) {
        uint16_t ch;
        const uint8_t *data;
        size_t dl;
        int rc = nk_turn_channel_data_parse(p, n, 1, &ch, &data, &dl, &len);
        return rc == 0 ? (long)len : rc == NK_ERR_AGAIN ? 0 : -1;
    }
    int rc = nk_stun_frame_length(p, n, &len);
    if (rc == NK_ERR_AGAIN)
        return 0;
    if (rc != 0 || len > NK__TS_FRAME_MAX)
        return -1;
    return len <= n ? (long)len : 0;
}

/* Hands every complete frame to the core; NK_ERR_MALFORMED when the stream is not TURN. */
static int process(nk_turn_service *d, nk__ts_conn *c)
{
    size_t off = 0;
    uint32_t slot = c->slot;
    nk_transmit tx;
    while (off < c->rlen) {
        long len = frame_length(c->rbuf + off, c->rlen - off);
        if (len < 0)
            return NK_ERR_MALFORMED;
        if (len == 0)
            break;
        int rc = nk_turn_server_handle_client(d->srv, d->now, c->transport, &c->peer, local_of(d, c),
                                              c->rbuf + off, (size_t)len, &tx, d->scratch, sizeof(d->scratch));
        if (rc >= 0)
            c->valid = 1; /* the first-message deadline no longer applies */
        if (rc == 1)
            nk__ts_emit(d, &tx, d->scratch);
        off += (size_t)len;
        if (d->conns[slot] != c) /* closed while answering: c is gone */
            return NK_ERR_CLOSED;
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    return 0;
}

static void on_readable(nk_turn_service *d, nk__ts_conn *c)
{
    /* Level-triggered epoll calls again for bytes left in the socket; bytes OpenSSL has
     * already taken in (SSL_pending) would not wake it, so those are read now. */
    for (int i = 0; i < 16 || (c->ssl != NULL && SSL_pending(c->ssl) > 0); i++) {
        int n = conn_read(c, c->rbuf + c->rlen, NK__TS_FRAME_MAX - c->rlen);
        if (n == NK_ERR_AGAIN)
            break;
        if (n <= 0) {
            conn_close(d, c);
            return;
        }
        c->rlen += (size_t)n;
        int rc = process(d, c);
        if (rc == NK_ERR_CLOSED)
            return;
        if (rc != 0) {
            nk_turn_server_count_dropped(d->srv, 0); /* not STUN or ChannelData framing */
            conn_close(d, c);
            return;
        }
    }
    if (c->ssl != NULL && c->wlen > 0 && flush(d, c) != 0)
        conn_close(d, c);
}

void nk__ts_sweep(nk_turn_service *d)
{
    for (uint32_t i = 0; i < d->nconns_cap && d->nconns > 0; i++) {
        nk__ts_conn *c = d->conns[i];
        if (c == NULL)
            continue;
        if (nk_turn_server_has_allocation(d->srv, c->transport, &c->peer, local_of(d, c))) {
            c->opened_ms = d->now; /* the idle clock restarts when the allocation ends */
        } else if (!c->valid && d->now - c->accepted_ms >= d->cfg.first_ms) {
            conn_close(d, c);
            d->conn_stats.tcp_first_timeout++;
        } else if (d->now - c->opened_ms >= d->cfg.alloc_timeout_ms) {
            conn_close(d, c);
        }
    }
}

void nk__ts_conn_event(nk_turn_service *d, uint32_t slot, uint32_t events)
{
    nk__ts_conn *c = slot < d->nconns_cap ? d->conns[slot] : NULL;
    if (c == NULL)
        return;
    if ((events & EPOLLOUT) && flush(d, c) != 0) {
        conn_close(d, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(d, c);
}
