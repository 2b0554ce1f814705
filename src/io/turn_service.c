/*
 * natkit: nk_turn_service (natkit/turn_service.h), the TURN server's driver:
 * its loop, UDP listener and relay sockets.
 * One thread, epoll; datagrams are taken and answered in batches
 * (recvmmsg/sendmmsg) and the core writes each answer straight into a slot
 * of the send batch, so a relayed packet is copied once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "errctx.h"
#include "natkit/udp.h"
#include "sockets.h"
#include "turn_service_internal.h"

static int ep_add(nk_turn_service *d, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    return epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : NK_ERR_SYSTEM;
}

static void flush_relay(nk_turn_service *d);

/* A non-blocking UDP socket bound to a; -1 with errno set. */
static int udp_bind(const nk_addr *a, int reuse_port)
{
    struct sockaddr_storage ss;
    unsigned sl;
    int one = 1;
    if (nk_addr_to_sockaddr(a, (struct sockaddr *)&ss, &sl) != 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* ---- relay sockets: the core's callbacks ---- */

static int relay_open(void *ctx, const nk_addr *relay)
{
    nk_turn_service *d = ctx;
    int fd = udp_bind(relay, 0);
    if (fd < 0)
        return errno == EADDRINUSE || errno == EACCES ? NK_ERR_ADDRESS : NK_ERR_SYSTEM;
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (ep_add(d, fd, EPOLLIN, nk__ts_tag(NK__TS_RELAY, relay->port)) != 0) {
        close(fd);
        return NK_ERR_SYSTEM;
    }
    d->relay_fd[relay->port] = fd;
    d->relay_ip = *relay;
    d->relay_ip.port = 0;
    return 0;
}

/* DF on every datagram of this relay: path-MTU discovery "do" (too large: EMSGSIZE, dropped). */
static int relay_dont_fragment(void *ctx, const nk_addr *relay)
{
    nk_turn_service *d = ctx;
    int fd = d->relay_fd[relay->port];
    int v4 = IP_PMTUDISC_DO, v6 = IPV6_PMTUDISC_DO;
    if (fd < 0)
        return NK_ERR_STATE;
    if (relay->family == NK_AF_INET)
        return setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof(v4)) == 0 ? 0 : NK_ERR_SYSTEM;
    return setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof(v6)) == 0 ? 0 : NK_ERR_SYSTEM;
}

static void relay_close(void *ctx, const nk_addr *relay)
{
    nk_turn_service *d = ctx;
    int fd = d->relay_fd[relay->port];
    if (fd < 0)
        return;
    if (d->nrb > 0)
        flush_relay(d);
    epoll_ctl(d->ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    d->relay_fd[relay->port] = -1;
}

void nk_turn_service_ops(nk_turn_service *d, nk_turn_server_ops *ops)
{
    memset(ops, 0, sizeof(*ops));
    ops->relay_open = relay_open;
    ops->relay_close = relay_close;
    ops->relay_dont_fragment = relay_dont_fragment;
    ops->ctx = d;
}

/* ---- set-up ---- */

static void batch_init(nk_turn_service *d)
{
    for (int i = 0; i < NK__TS_BATCH; i++) {
        d->rx_iov[i] = (struct iovec){.iov_base = d->rx_buf[i], .iov_len = NK__TS_PKT};
        d->rx_msg[i].msg_hdr = (struct msghdr){.msg_name = &d->rx_name[i], .msg_namelen = sizeof(d->rx_name[i]),
                                               .msg_iov = &d->rx_iov[i], .msg_iovlen = 1};
        d->tx_iov[i].iov_base = d->tx_buf[i];
        d->tx_msg[i].msg_hdr = (struct msghdr){.msg_name = &d->tx_name[i], .msg_iov = &d->tx_iov[i], .msg_iovlen = 1};
    }
    for (int i = 0; i < NK__TS_RB; i++) {
        d->rb_iov[i].iov_base = d->rb_buf[i];
        d->rb_msg[i].msg_hdr = (struct msghdr){.msg_name = &d->rb_name[i], .msg_iov = &d->rb_iov[i], .msg_iovlen = 1};
    }
}

static int open_listeners(nk_turn_service *d)
{
    int sz = 4 << 20;
    d->udp_fd = udp_bind(&d->cfg.listen, d->cfg.reuse_port);
    if (d->udp_fd < 0) {
        char text[NK_ADDR_STRLEN];
        nk__errctx_set(errno, "bind UDP %s", nk_addr_format(&d->cfg.listen, text, sizeof(text)));
        return NK_ERR_SYSTEM;
    }
    setsockopt(d->udp_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(d->udp_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (d->cfg.listen.port == 0)
        nk_udp_local(d->udp_fd, &d->cfg.listen);
    d->gso = getenv("NATKIT_NO_GSO") == NULL && nk__ts_gso_probe(d->udp_fd);
    if ((d->tcp_fd = nk__listen_tcp(&d->cfg.listen, d->cfg.reuse_port, NULL)) < 0)
        return d->tcp_fd;
    if (d->cfg.tls_listen.family != NK_AF_NONE && (d->tls_fd = nk__listen_tcp(&d->cfg.tls_listen, d->cfg.reuse_port, NULL)) < 0)
        return d->tls_fd;
    if (ep_add(d, d->udp_fd, EPOLLIN, nk__ts_tag(NK__TS_UDP, 0)) != 0 ||
        ep_add(d, d->tcp_fd, EPOLLIN, nk__ts_tag(NK__TS_TCP_LISTEN, 0)) != 0 ||
        (d->tls_fd >= 0 && ep_add(d, d->tls_fd, EPOLLIN, nk__ts_tag(NK__TS_TLS_LISTEN, 0)) != 0))
        return NK_ERR_SYSTEM;
    return 0;
}

void nk_turn_service_options_init(nk_turn_service_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_connections = 1024;
    o->max_per_ip = NK__TS_PER_IP;
    o->first_ms = NK__TS_FIRST_MS;
    o->alloc_timeout_ms = NK__TS_IDLE_MS;
}

int nk_turn_service_new(nk_turn_service **out, const nk_turn_service_options *cfg)
{
    nk__errctx_clear();
    nk_turn_service *d = calloc(1, sizeof(*d));
    *out = NULL;
    if (d == NULL)
        return NK_ERR_NOMEM;
    d->cfg = *cfg;
    if (d->cfg.max_connections == 0)
        d->cfg.max_connections = 1024;
    if (d->cfg.max_per_ip == 0)
        d->cfg.max_per_ip = NK__TS_PER_IP;
    if (d->cfg.first_ms <= 0)
        d->cfg.first_ms = NK__TS_FIRST_MS;
    if (d->cfg.alloc_timeout_ms <= 0)
        d->cfg.alloc_timeout_ms = NK__TS_IDLE_MS;
    d->udp_fd = d->tcp_fd = d->tls_fd = -1;
    d->ep = epoll_create1(EPOLL_CLOEXEC);
    d->relay_fd = malloc(65536 * sizeof(int));
    int err = d->ep < 0 ? NK_ERR_SYSTEM : d->relay_fd == NULL ? NK_ERR_NOMEM : 0;
    for (int i = 0; err == 0 && i < 65536; i++)
        d->relay_fd[i] = -1;
    batch_init(d);
    if (err == 0)
        err = nk__ts_stream_init(d);
    if (err == 0)
        err = open_listeners(d);
    if (err != 0) {
        int saved = errno;
        nk_turn_service_free(d);
        errno = saved;
        return err;
    }
    *out = d;
    return 0;
}

void nk_turn_service_addrs(const nk_turn_service *d, nk_addr *listen, nk_addr *tls_listen)
{
    if (listen != NULL)
        *listen = d->cfg.listen;
    if (tls_listen != NULL)
        *tls_listen = d->cfg.tls_listen;
}

void nk_turn_service_free(nk_turn_service *d)
{
    if (d == NULL)
        return;
    nk__ts_stream_free(d);
    for (int i = 0; d->relay_fd != NULL && i < 65536; i++)
        if (d->relay_fd[i] >= 0)
            close(d->relay_fd[i]);
    free(d->relay_fd);
    if (d->udp_fd >= 0)
        close(d->udp_fd);
    if (d->tcp_fd >= 0)
        close(d->tcp_fd);
    if (d->tls_fd >= 0)
        close(d->tls_fd);
    if (d->ep >= 0)
        close(d->ep);
    free(d);
}

/* ---- sending ---- */

static void flush_udp(nk_turn_service *d)
{
    nk__ts_send_batch(d->udp_fd, d->tx_msg, d->ntx, d->gso);
    d->ntx = 0;
}

/* One sendmmsg per relay socket, each socket's datagrams in the order they were queued. */
static void flush_relay(nk_turn_service *d)
{
    struct mmsghdr group[NK__TS_RB];
    uint8_t done[NK__TS_RB] = {0};
    for (unsigned i = 0; i < d->nrb; i++) {
        if (done[i])
            continue;
        unsigned k = 0;
        for (unsigned j = i; j < d->nrb; j++) {
            if (!done[j] && d->rb_fd[j] == d->rb_fd[i]) {
                group[k++] = d->rb_msg[j];
                done[j] = 1;
            }
        }
        nk__ts_send_batch(d->rb_fd[i], group, k, d->gso);
    }
    d->nrb = 0;
}

void nk__ts_flush(nk_turn_service *d)
{
    flush_relay(d);
    flush_udp(d);
}

/* A datagram from a relay socket to a peer, queued until the next flush. */
static void queue_relay(nk_turn_service *d, int fd, const nk_addr *to, const uint8_t *buf, size_t len)
{
    unsigned sl;
    if (d->nrb == NK__TS_RB)
        flush_relay(d);
    unsigned i = d->nrb;
    if (len > NK__TS_OUT || nk_addr_to_sockaddr(to, (struct sockaddr *)&d->rb_name[i], &sl) != 0)
        return;
    memcpy(d->rb_buf[i], buf, len);
    d->rb_msg[i].msg_hdr.msg_namelen = sl;
    d->rb_iov[i].iov_len = len;
    d->rb_fd[i] = fd;
    d->nrb++;
}

/* The core wrote into the next free send slot; queue it toward a client, or send it to a peer. */
void nk__ts_emit(nk_turn_service *d, const nk_transmit *tx, const uint8_t *buf)
{
    if (tx->transport != NK_TRANSPORT_UDP) {
        nk__ts_conn_send(d, tx->transport, &tx->to, buf, tx->len);
        return;
    }
    if (!nk_addr_equal(&tx->from, &d->cfg.listen)) { /* from a relay to a peer */
        int fd = d->relay_fd[tx->from.port];
        if (fd >= 0)
            queue_relay(d, fd, &tx->to, buf, tx->len);
        return;
    }
    unsigned i = d->ntx;
    if (buf != d->tx_buf[i])
        memcpy(d->tx_buf[i], buf, tx->len);
    unsigned sl;
    if (nk_addr_to_sockaddr(&tx->to, (struct sockaddr *)&d->tx_name[i], &sl) != 0)
        return;
    d->tx_msg[i].msg_hdr.msg_namelen = sl;
    d->tx_iov[i].iov_len = tx->len;
    if (++d->ntx == NK__TS_BATCH)
        flush_udp(d);
}

/* ---- receiving ---- */

static int recv_batch(int fd, nk_turn_service *d)
{
    for (int i = 0; i < NK__TS_BATCH; i++)
        d->rx_msg[i].msg_hdr.msg_namelen = sizeof(d->rx_name[i]);
    int n;
    do
        n = recvmmsg(fd, d->rx_msg, NK__TS_BATCH, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    return n;
}

static void on_udp(nk_turn_service *d)
{
    nk_transmit tx;
    for (int round = 0; round < 8; round++) {
        int n = recv_batch(d->udp_fd, d);
        for (int i = 0; i < n; i++) {
            nk_addr from;
            if ((d->rx_msg[i].msg_hdr.msg_flags & MSG_TRUNC) ||
                nk_addr_from_sockaddr(&from, (struct sockaddr *)&d->rx_name[i]) != 0) {
                nk_turn_server_count_dropped(d->srv, 0); /* larger than any TURN message we take */
                continue;
            }
            if (nk_turn_server_handle_client(d->srv, d->now, NK_TRANSPORT_UDP, &from, &d->cfg.listen, d->rx_buf[i],
                                             d->rx_msg[i].msg_len, &tx, d->tx_buf[d->ntx], NK__TS_OUT) == 1)
                nk__ts_emit(d, &tx, d->tx_buf[d->ntx]);
        }
        if (n < NK__TS_BATCH)
            break;
    }
}

static void on_relay(nk_turn_service *d, uint16_t port)
{
    nk_transmit tx;
    nk_addr relay = d->relay_ip;
    relay.port = port;
    for (int round = 0; round < 8; round++) {
        int fd = d->relay_fd[port];
        if (fd < 0)
            return;
        int n = recv_batch(fd, d);
        for (int i = 0; i < n; i++) {
            nk_addr peer;
            if ((d->rx_msg[i].msg_hdr.msg_flags & MSG_TRUNC) ||
                nk_addr_from_sockaddr(&peer, (struct sockaddr *)&d->rx_name[i]) != 0) {
                nk_turn_server_count_dropped(d->srv, 1); /* too large to relay whole */
                continue;
            }
            if (nk_turn_server_handle_relay(d->srv, d->now, &relay, &peer, d->rx_buf[i], d->rx_msg[i].msg_len, &tx,
                                            d->tx_buf[d->ntx], NK__TS_OUT) == 1)
                nk__ts_emit(d, &tx, d->tx_buf[d->ntx]);
        }
        if (n < NK__TS_BATCH)
            break;
    }
}

static void dispatch(nk_turn_service *d, const struct epoll_event *ev)
{
    uint32_t kind = (uint32_t)(ev->data.u64 >> 32), index = (uint32_t)ev->data.u64;
    switch (kind) {
    case NK__TS_UDP: on_udp(d); break;
    case NK__TS_RELAY: on_relay(d, (uint16_t)index); break;
    case NK__TS_TCP_LISTEN: nk__ts_accept(d, d->tcp_fd, NK_TRANSPORT_TCP); break;
    case NK__TS_TLS_LISTEN: nk__ts_accept(d, d->tls_fd, NK_TRANSPORT_TLS); break;
    case NK__TS_CONN: nk__ts_conn_event(d, index, ev->events); break;
    }
}

static int wait_ms(const nk_turn_service *d)
{
    int64_t deadline = nk_turn_server_next_deadline(d->srv), wait = 1000;
    if (deadline - d->now < wait)
        wait = deadline - d->now;
    return wait < 0 ? 0 : (int)wait;
}

static void publish_stats(nk_turn_service *d, const nk_turn_server *s)
{
    nk_turn_server_stats_t st;
    nk_turn_server_stats(s, &st);
    st.tcp_accepted = d->conn_stats.tcp_accepted;
    st.tcp_rejected = d->conn_stats.tcp_rejected;
    st.tcp_rejected_per_ip = d->conn_stats.tcp_rejected_per_ip;
    st.tcp_first_timeout = d->conn_stats.tcp_first_timeout;
    st.tcp_evicted = d->conn_stats.tcp_evicted;
    nk__stats_publish(d->stats_pub, &st, sizeof(st));
}

int nk_turn_service_run(nk_turn_service *d, nk_turn_server *s, volatile int *stop)
{
    struct epoll_event evs[64];
    int64_t last_unix = 0;
    d->srv = s;
    d->now = nk__now_ms();
    while (!*stop) {
        if (d->now - last_unix >= 1000) {
            nk_turn_server_set_unix_time(s, d->now, nk__unix_ms());
            nk__ts_sweep(d);
            last_unix = d->now;
        }
        int n = epoll_wait(d->ep, evs, 64, wait_ms(d));
        if (n < 0 && errno != EINTR)
            return NK_ERR_SYSTEM;
        d->now = nk__now_ms();
        for (int i = 0; i < n; i++)
            dispatch(d, &evs[i]);
        nk__ts_flush(d);
        if (nk_turn_server_next_deadline(s) <= d->now)
            nk_turn_server_handle_timeout(s, d->now);
        publish_stats(d, s);
    }
    publish_stats(d, s);
    return 0;
}

void nk_turn_service_stats(const nk_turn_service *d, nk_turn_server_stats_t *out)
{
    nk__stats_read(out, d->stats_pub, sizeof(*out));
}
