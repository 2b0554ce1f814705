/*
 * natkit: the bundled driver for nk_node — one UDP socket, one hub link,
 * poll(). The only file of the node that reads the clock or touches sockets.
 * The socket is dual stack by default ([::]:P, IPV6_V6ONLY off; IPv4 where the
 * host has no IPv6): IPv4 peers appear as v4-mapped addresses, turned into
 * plain IPv4 nk_addr at this boundary both ways, so the cores never see one.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "errctx.h"
#include "natkit/hub_link.h"
#include "natkit/node_driver.h"
#include "natkit/udp.h"
#include "sockets.h"
#include "udp_gso.h"

#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define HUB_CONNECT_TIMEOUT_MS 5000
#define RECV_BUDGET            256     /* datagrams handled per poll before the others get a turn */
#define TX_BATCH               64      /* datagrams per sendmmsg (runs to one peer: one GSO send) */
#define TX_SLOT                2048    /* room for one datagram */
#define RX_BATCH               8       /* recvmmsg slots */
#define RX_SLOT                65536   /* one slot takes a GRO train of datagrams */
#define SOCK_BUF               (4 << 20) /* SO_SNDBUF / SO_RCVBUF asked for (the kernel may cap it) */
#define MAX_XSOCKS             512     /* birthday probing's extra sockets, all connections together
                                          (two attempts at once; the rest of the 1,024 descriptors a
                                          process usually gets stay free for streams and the hub) */

/* An extra socket a connection asked for (birthday probing): plain sendto/recvfrom, no batching
 * (a few hundred packets per attempt; the socket that wins then carries its connection). */
typedef struct xsock {
    int fd;
    nk_addr local;
} xsock;

struct nk_node_driver {
    nk_node_driver_options opt;
    nk_node *node;
    nk_hub_link *link;
    int64_t link_deadline;   /* the link is connecting: given up then */
    int fd;
    int gso, gro;
    int dual;                /* AF_INET6 with IPV6_V6ONLY off: both families on fd */
    int tcp_hold;            /* bound TCP socket holding the port for the TCP upgrade, or -1 */
    nk_addr local;
    /* batched output: flush() fills these, one sendmmsg (UDP GSO per run) sends them */
    uint8_t (*tx)[TX_SLOT];
    struct sockaddr_storage tx_name[TX_BATCH];
    struct iovec tx_iov[TX_BATCH];
    struct mmsghdr tx_msg[TX_BATCH];
    /* batched input */
    uint8_t (*rx)[RX_SLOT];
    xsock *xs;
    size_t nxs;
    /* poll_fds: the socket, the hub link, the caller's descriptors and the extra sockets (grown) */
    struct pollfd *pfd;
    unsigned pfd_cap;
};

int64_t nk_node_driver_now(void)
{
    return nk__now_ms();
}

#define MAX_HOST6 4 /* IPv6 host candidates at most (a host has global, temporary and ULA ones;
                       the agent keeps 12 local candidates in all) */

/* An IPv6 address worth offering: global unicast or ULA (no link-local: it would need its scope
 * id, no loopback, multicast or v4-mapped/compatible). */
static int usable_v6(const nk_addr *a)
{
    static const uint8_t zero[10];
    if ((a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80) || a->ip[0] == 0xff || memcmp(a->ip, zero, 10) == 0)
        return 0;
    return (a->ip[0] & 0xe0) == 0x20 || (a->ip[0] & 0xfe) == 0xfc; /* 2000::/3, fc00::/7 */
}

/* Host candidates: the bound IP, or the addresses of the up, non-loopback interfaces of the
 * socket's families (IPv4 all; IPv6 global and ULA, MAX_HOST6 at most). */
static void gather_host(nk_node_config *cfg, const nk_addr *local, int dual)
{
    if (cfg->nhost > 0)
        return;
    static const uint8_t any[16];
    if (memcmp(local->ip, any, nk_addr_ip_len(local)) != 0) {
        cfg->host[cfg->nhost++] = *local;
        return;
    }
    int v4 = dual || local->family == NK_AF_INET, v6 = dual || local->family == NK_AF_INET6, n6 = 0;
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0)
        return;
    for (struct ifaddrs *i = ifa; i != NULL && cfg->nhost < NK_NODE_MAX_ADDRS; i = i->ifa_next) {
        if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        int fam = i->ifa_addr->sa_family;
        nk_addr a;
        if (!((fam == AF_INET && v4) || (fam == AF_INET6 && v6 && n6 < MAX_HOST6)) ||
            nk_addr_from_sockaddr(&a, i->ifa_addr) != 0 || (fam == AF_INET6 && !usable_v6(&a)))
            continue;
        n6 += fam == AF_INET6;
        a.port = local->port;
        cfg->host[cfg->nhost++] = a;
    }
    freeifaddrs(ifa);
    if (cfg->nhost == 0) { /* only loopback here: use it */
        nk_addr lo;
        nk_addr_parse(&lo, v4 ? "127.0.0.1:0" : "[::1]:0");
        lo.port = local->port;
        cfg->host[cfg->nhost++] = lo;
    }
}

/*
 * The UDP socket for bind. `[::]:P` (and no --bind at all: `[::]:0`) is one dual-stack socket —
 * one descriptor in the poll set, one recvmmsg/GRO and sendmmsg/GSO path for both families, the
 * same port in every host candidate, birthday probing's extra sockets alike — and falls back to
 * IPv4 `0.0.0.0:P` where the host has no IPv6 (the socket or the bind fails). `0.0.0.0:P` stays
 * IPv4 only, a specific address is that address's family only.
 */
static int open_socket(const nk_addr *bind_addr, int *dual)
{
    static const uint8_t any[16];
    *dual = 0;
    if (bind_addr->family != NK_AF_INET6 || memcmp(bind_addr->ip, any, 16) != 0)
        return nk_udp_open(bind_addr, 0);
    struct sockaddr_storage ss;
    unsigned sl;
    int off = 0, one = 1;
    nk_addr_to_sockaddr(bind_addr, (struct sockaddr *)&ss, &sl);
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) == 0 &&
        bind(fd, (struct sockaddr *)&ss, sl) == 0) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
        *dual = 1;
        return fd;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (e == EADDRINUSE || e == EACCES) { /* the port is taken: that is the error, not IPv6 */
        char text[NK_ADDR_STRLEN];
        nk__errctx_set(e, "bind %s", nk_addr_format(bind_addr, text, sizeof(text)));
        errno = e;
        return NK_ERR_SYSTEM;
    }
    nk_addr v4 = {.family = NK_AF_INET, .port = bind_addr->port};
    return nk_udp_open(&v4, 0);
}

/* A TCP socket bound to ss (port 0: the kernel picks one), with the upgrade's socket options and
 * never listening: its fd and *port, or -1. */
static int tcp_hold(const struct sockaddr_storage *ss, unsigned sl, uint16_t *port)
{
    int one = 1, off = 0;
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    nk_addr at;
    int h = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h < 0)
        return -1;
    if ((ss->ss_family == AF_INET6 && setsockopt(h, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) != 0) ||
        setsockopt(h, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(h, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(h, (const struct sockaddr *)ss, sl) != 0 || getsockname(h, (struct sockaddr *)&got, &gl) != 0 ||
        nk_addr_from_sockaddr(&at, (struct sockaddr *)&got) != 0) {
        close(h);
        return -1;
    }
    *port = at.port;
    return h;
}

/* With port 0: a port free for TCP too, and held. The TCP upgrade (nk_conn_tcp) binds TCP to the
 * UDP socket's port; a port only UDP chose can be the source port of another process's TCP
 * connection (connect() takes the even ports of the same range: on a host with many connections,
 * half the UDP ports), and then no TCP socket binds there. So the TCP side picks the port (bind to
 * port 0 skips ports in use) and stays bound (SO_REUSEADDR and SO_REUSEPORT like the upgrade's own
 * sockets, never listening): no connect() takes a port a bound socket holds. Without such a port
 * (a host without IPv6 for a [::] bind, say) the UDP socket alone chooses, as before. */
static int open_socket_held(const nk_addr *bind_addr, int *dual, int *hold)
{
    struct sockaddr_storage ss;
    unsigned sl;
    *hold = -1;
    nk_addr_to_sockaddr(bind_addr, (struct sockaddr *)&ss, &sl);
    for (int tries = 0; bind_addr->port == 0 && tries < 16; tries++) {
        nk_addr b = *bind_addr;
        int h = tcp_hold(&ss, sl, &b.port);
        if (h < 0)
            break;
        int fd = open_socket(&b, dual);
        if (fd >= 0) {
            nk__errctx_clear(); /* an earlier try's port was taken: no error */
            *hold = h;
            return fd;
        }
        close(h);
        if (errno != EADDRINUSE) /* not the port: the error is the plain bind's as well */
            break;
    }
    return open_socket(bind_addr, dual);
}

/* A destination as the socket wants it: IPv4 as v4-mapped IPv6 on a dual-stack socket. Returns
 * nonzero for a family the socket cannot reach (the datagram is dropped, as a failed send). */
static int dest_name(const nk_node_driver *d, const nk_addr *to, struct sockaddr_storage *ss, unsigned *sl)
{
    nk_addr m = *to;
    if (d->dual && to->family == NK_AF_INET) {
        memset(m.ip, 0, sizeof(m.ip));
        m.ip[10] = m.ip[11] = 0xff;
        memcpy(m.ip + 12, to->ip, 4);
        m.family = NK_AF_INET6;
    } else if (!d->dual && to->family != d->local.family) {
        return NK_ERR_ADDRESS;
    }
    return nk_addr_to_sockaddr(&m, (struct sockaddr *)ss, sl);
}

/* Bigger socket buffers (a QUIC window's worth of datagrams arrives in bursts), UDP GSO for
 * sends and GRO for receives where the kernel has them (NATKIT_NO_GSO=1 turns both off). */
static void tune_socket(nk_node_driver *d)
{
    int v = SOCK_BUF, one = 1;
    if (setsockopt(d->fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) != 0)
        setsockopt(d->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    if (setsockopt(d->fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0)
        setsockopt(d->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    if (getenv("NATKIT_NO_GSO") != NULL)
        return;
    d->gso = nk__ts_gso_probe(d->fd);
    d->gro = setsockopt(d->fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
}

/* ---- the hub link: dialed when the node says so (nk_node_hub_dial), never blocking ---- */

static void hub_link_drop(nk_node_driver *d)
{
    nk_hub_link_free(d->link);
    d->link = NULL;
}

/* The link is connecting: on, open (registration starts), or failed (the node schedules a retry). */
static void hub_connecting(nk_node_driver *d)
{
    int rc = nk_hub_link_progress(d->link);
    if (rc == NK_ERR_AGAIN && nk__now_ms() < d->link_deadline)
        return;
    if (rc == 0) {
        nk_node_hub_connected(d->node, nk__now_ms());
        return;
    }
    char why[128];
    int e = rc == NK_ERR_SYSTEM ? errno : 0;
    if (rc == NK_ERR_SYSTEM)
        snprintf(why, sizeof(why), "%s", strerror(errno));
    else if (rc == NK_ERR_TIMEOUT || rc == NK_ERR_AGAIN)
        snprintf(why, sizeof(why), "no connection within %d ms", HUB_CONNECT_TIMEOUT_MS);
    else if (rc == NK_ERR_AUTH)
        snprintf(why, sizeof(why), "TLS handshake failed");
    else
        snprintf(why, sizeof(why), "%s", nk_strerror(rc));
    hub_link_drop(d);
    nk_node_hub_dial_failed(d->node, nk__now_ms(), why, e);
}

static void hub_dial(nk_node_driver *d)
{
    nk_addr hub;
    if (d->link != NULL || nk_node_hub_dial(d->node, nk__now_ms(), &hub) != 0)
        return;
    int rc = nk_hub_link_start(&d->link, &hub, d->opt.hub_tls, d->opt.hub_ca_file, HUB_CONNECT_TIMEOUT_MS);
    if (rc != 0) {
        d->link = NULL;
        int e = rc == NK_ERR_SYSTEM ? errno : 0;
        nk_node_hub_dial_failed(d->node, nk__now_ms(), e != 0 ? strerror(e) : nk_strerror(rc), e);
        return;
    }
    d->link_deadline = nk__now_ms() + HUB_CONNECT_TIMEOUT_MS;
    hub_connecting(d);
}

int nk_node_driver_open(nk_node_driver **out, const nk_node_driver_options *o)
{
    *out = NULL;
    nk__errctx_clear();
    nk_node_driver *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NK_ERR_NOMEM;
    d->opt = *o;
    d->fd = -1;
    d->tcp_hold = -1;
    d->tx = malloc(TX_BATCH * sizeof(*d->tx));
    d->rx = malloc(RX_BATCH * sizeof(*d->rx));
    if (d->tx == NULL || d->rx == NULL) {
        nk_node_driver_free(d);
        return NK_ERR_NOMEM;
    }
    nk_addr bind = o->bind;
    if (bind.family == NK_AF_NONE)
        nk_addr_parse(&bind, "[::]:0");
    int rc = d->fd = open_socket_held(&bind, &d->dual, &d->tcp_hold);
    if (rc >= 0)
        rc = nk_udp_local(d->fd, &d->local);
    if (rc >= 0)
        tune_socket(d);
    if (rc >= 0) {
        gather_host(&d->opt.node, &d->local, d->dual);
        rc = nk_node_new(&d->node, &d->opt.node, nk__now_ms());
    }
    if (rc < 0) {
        int saved = errno;
        nk_node_driver_free(d);
        errno = saved;
        return rc;
    }
    hub_dial(d); /* the first hub: connecting now, registering from the first poll */
    *out = d;
    return 0;
}

nk_node *nk_node_driver_node(nk_node_driver *d)
{
    return d->node;
}

void nk_node_driver_local(const nk_node_driver *d, nk_addr *out)
{
    *out = d->local;
}

/* The time for the node's calls: milliseconds, and the microseconds for QUIC (nk_node_set_now_us). */
static int64_t tick(nk_node_driver *d)
{
    int64_t us = nk__now_us();
    nk_node_set_now_us(d->node, us);
    return us / 1000;
}

/* ---- extra sockets (birthday probing) ------------------------------------------------------- */

static xsock *xs_find(nk_node_driver *d, const nk_addr *local)
{
    for (size_t i = 0; i < d->nxs; i++)
        if (nk_addr_equal(&d->xs[i].local, local))
            return &d->xs[i];
    return NULL;
}

static void xs_close(nk_node_driver *d, const nk_addr *local)
{
    xsock *x = xs_find(d, local);
    if (x == NULL)
        return;
    close(x->fd);
    *x = d->xs[--d->nxs];
}

/* Opens up to n sockets on the main socket's IP (any port) and gives them to the connection. */
static void xs_open(nk_node_driver *d, nk_conn *c, size_t n)
{
    nk_addr bind = d->local, *got;
    bind.port = 0;
    if (n > MAX_XSOCKS - d->nxs)
        n = MAX_XSOCKS - d->nxs;
    if (d->xs == NULL && (d->xs = calloc(MAX_XSOCKS, sizeof(*d->xs))) == NULL)
        n = 0;
    got = n > 0 ? malloc(n * sizeof(*got)) : NULL;
    size_t k = 0, first = d->nxs;
    for (; got != NULL && k < n; k++) {
        int dual;
        int fd = open_socket(&bind, &dual); /* the main socket's families */
        if (fd < 0)
            break; /* out of descriptors or ports: probe with fewer */
        if (nk_udp_local(fd, &got[k]) < 0) {
            close(fd);
            break;
        }
        d->xs[d->nxs++] = (xsock){.fd = fd, .local = got[k]};
    }
    if (nk_conn_add_sockets(c, tick(d), got, got != NULL ? k : 0) != 0)
        while (d->nxs > first)
            close(d->xs[--d->nxs].fd);
    free(got);
}

static void xs_send(nk_node_driver *d, const nk_transmit *tx, const uint8_t *p)
{
    struct sockaddr_storage name;
    unsigned sl;
    xsock *x = xs_find(d, &tx->from);
    if (x != NULL && dest_name(d, &tx->to, &name, &sl) == 0)
        sendto(x->fd, p, tx->len, MSG_DONTWAIT, (struct sockaddr *)&name, sl); /* a failure is a loss */
}

static void flush(nk_node_driver *d);

static void xs_read(nk_node_driver *d, xsock *x)
{
    nk_addr local = x->local, from;
    for (int i = 0; i < RECV_BUDGET; i++) {
        struct sockaddr_storage name;
        socklen_t nl = sizeof(name);
        ssize_t r = recvfrom(x->fd, d->rx[0], 2048, MSG_DONTWAIT, (struct sockaddr *)&name, &nl);
        if (r < 0)
            break;
        if (nk_addr_from_sockaddr(&from, (struct sockaddr *)&name) != 0)
            continue;
        nk__addr_unmap_v4(&from);
        nk_node_handle_datagram_on(d->node, tick(d), &local, &from, d->rx[0], (size_t)r);
        flush(d); /* may close x (the attempt ended): look it up again */
        if ((x = xs_find(d, &local)) == NULL)
            break;
    }
}

/* The node's events: the driver's own (extra sockets) here, the rest to the caller. */
static void dispatch(nk_node_driver *d, const nk_node_event *ev)
{
    if (ev->type == NK_NODE_EV_OPEN_SOCKETS && ev->conn != NULL)
        xs_open(d, ev->conn, ev->nsockets);
    else if (ev->type == NK_NODE_EV_CLOSE_SOCKET)
        xs_close(d, &ev->addr);
    else if (ev->type != NK_NODE_EV_OPEN_SOCKETS && d->opt.on_event != NULL)
        d->opt.on_event(d->opt.ctx, d, ev);
}

/* Everything the node has to send, TX_BATCH datagrams per sendmmsg; a failed send is a lost
 * datagram (the protocols above resend). */
static void flush(nk_node_driver *d)
{
    nk_transmit tx;
    nk_node_event ev;
    int64_t now = tick(d);
    for (;;) {
        unsigned n = 0;
        while (n < TX_BATCH && nk_node_poll_transmit(d->node, now, &tx, d->tx[n], TX_SLOT) == 0) {
            unsigned sl;
            if (tx.from.family != NK_AF_NONE) {
                xs_send(d, &tx, d->tx[n]);
                continue;
            }
            if (dest_name(d, &tx.to, &d->tx_name[n], &sl) != 0)
                continue;
            d->tx_iov[n] = (struct iovec){.iov_base = d->tx[n], .iov_len = tx.len};
            d->tx_msg[n] = (struct mmsghdr){.msg_hdr = {.msg_name = &d->tx_name[n], .msg_namelen = sl,
                                                        .msg_iov = &d->tx_iov[n], .msg_iovlen = 1}};
            n++;
        }
        if (n > 0)
            nk__ts_send_batch(d->fd, d->tx_msg, n, d->gso);
        if (n < TX_BATCH)
            break;
    }
    while (nk_node_poll_event(d->node, &ev) == 0)
        dispatch(d, &ev);
}

/* The GRO segment size of a received train (0: one datagram). */
static size_t gro_size(struct msghdr *h)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            return v > 0 ? (size_t)v : 0;
        }
    }
    return 0;
}

/* Up to RECV_BUDGET datagrams, RX_BATCH trains per recvmmsg; what they make the node send goes
 * after each batch (acknowledgements for a whole batch at once). */
static void read_udp(nk_node_driver *d)
{
    struct mmsghdr m[RX_BATCH];
    struct iovec iov[RX_BATCH];
    struct sockaddr_storage name[RX_BATCH];
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in6_pktinfo))];
    } ctl[RX_BATCH];
    int handled = 0;
    while (handled < RECV_BUDGET) {
        for (unsigned i = 0; i < RX_BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = d->rx[i], .iov_len = d->gro ? RX_SLOT : 2048};
            m[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &name[i], .msg_namelen = sizeof(name[i]),
                                                .msg_iov = &iov[i], .msg_iovlen = 1,
                                                .msg_control = ctl[i].buf, .msg_controllen = sizeof(ctl[i].buf)}};
        }
        int got = recvmmsg(d->fd, m, RX_BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0)
            break;
        int64_t now = tick(d);
        for (int i = 0; i < got; i++) {
            nk_addr from;
            if (nk_addr_from_sockaddr(&from, (struct sockaddr *)&name[i]) != 0)
                continue;
            nk__addr_unmap_v4(&from);
            size_t len = m[i].msg_len, seg = gro_size(&m[i].msg_hdr);
            if (seg == 0 || seg > len)
                seg = len;
            for (size_t off = 0; off < len; off += seg) {
                size_t n = len - off < seg ? len - off : seg;
                nk_node_handle_datagram(d->node, now, &from, d->rx[i] + off, n);
                handled++;
            }
        }
        flush(d);
        if (got < RX_BATCH)
            break;
    }
}

static void pump_hub(nk_node_driver *d)
{
    nk_hub_client *hc = nk_node_hub_client(d->node);
    if (!nk_hub_link_is_open(d->link)) {
        hub_connecting(d);
        if (d->link == NULL || !nk_hub_link_is_open(d->link))
            return;
    }
    if (nk_hub_link_pump(d->link, hc, nk__now_ms()) != 0) {
        nk_hub_client_handle_closed(hc, nk__now_ms());
        hub_link_drop(d); /* before the node's events: it may ask for the next dial at once */
        nk_node_handle_hub(d->node, tick(d));
        return;
    }
    nk_node_handle_hub(d->node, tick(d));
    nk_hub_link_pump(d->link, hc, nk__now_ms()); /* what the node queued for the hub goes now */
    nk_node_handle_hub(d->node, tick(d));   /* and what that pump read is not left waiting */
}

#define MAX_EXTRA_FDS (1u << 20) /* a sanity bound, far above any descriptor limit */

/* Room for the socket, the hub link and nfds of the caller's descriptors. */
static int pfd_room(nk_node_driver *d, unsigned nfds)
{
    unsigned want = 2 + nfds;
    if (want <= d->pfd_cap)
        return 0;
    unsigned cap = d->pfd_cap != 0 ? d->pfd_cap : 64;
    while (cap < want)
        cap *= 2;
    struct pollfd *p = realloc(d->pfd, cap * sizeof(*p));
    if (p == NULL)
        return NK_ERR_NOMEM;
    d->pfd = p;
    d->pfd_cap = cap;
    return 0;
}

int nk_node_driver_poll_fds(nk_node_driver *d, int64_t timeout_ms, struct pollfd *fds, unsigned nfds)
{
    if (nfds > MAX_EXTRA_FDS || (fds == NULL && nfds > 0))
        return NK_ERR_INVAL;
    if (pfd_room(d, nfds + (unsigned)d->nxs) != 0)
        return NK_ERR_NOMEM;
    struct pollfd *p = d->pfd;
    flush(d); /* what the caller queued since the last call (messages) goes out first */
    hub_dial(d);
    if (d->link != NULL)
        pump_hub(d); /* a pump also reads: what it read is handled now, not at the next hub packet */
    nfds_t np = 0, hub_i = 0, extra_i;
    p[np++] = (struct pollfd){.fd = d->fd, .events = POLLIN};
    if (d->link != NULL) {
        short ev = POLLIN;
        if (nk_hub_link_wants_write(d->link, nk_node_hub_client(d->node)))
            ev |= POLLOUT;
        hub_i = np;
        p[np++] = (struct pollfd){.fd = nk_hub_link_fd(d->link), .events = ev};
    }
    extra_i = np;
    for (unsigned i = 0; i < nfds; i++)
        p[np++] = (struct pollfd){.fd = fds[i].fd, .events = fds[i].events}; /* poll skips fd < 0 */
    nfds_t xs_i = np;
    size_t nxs = d->nxs;
    for (size_t i = 0; i < nxs; i++)
        p[np++] = (struct pollfd){.fd = d->xs[i].fd, .events = POLLIN};
    int64_t now = nk__now_ms();
    int64_t wait = nk_node_next_deadline(d->node) - now;
    if (wait > timeout_ms)
        wait = timeout_ms;
    if (d->link != NULL && !nk_hub_link_is_open(d->link) && d->link_deadline - now < wait)
        wait = d->link_deadline - now;
    if (wait > INT32_MAX)
        wait = INT32_MAX;
    if (wait < 0)
        wait = 0;
    int r = poll(p, np, (int)wait);
    if (r < 0 && errno != EINTR)
        return NK_ERR_SYSTEM;
    if (r > 0 && (p[0].revents & POLLIN))
        read_udp(d);
    for (size_t i = 0; r > 0 && i < nxs; i++) {
        if (!(p[xs_i + i].revents & POLLIN))
            continue;
        for (size_t k = 0; k < d->nxs; k++) /* still open (an earlier read may have closed it)? */
            if (d->xs[k].fd == p[xs_i + i].fd) {
                xs_read(d, &d->xs[k]);
                break;
            }
    }
    if (r > 0 && d->link != NULL && hub_i > 0 && p[hub_i].revents != 0)
        pump_hub(d);
    now = tick(d);
    if (now >= nk_node_next_deadline(d->node)) {
        nk_node_handle_timeout(d->node, now);
        if (d->link != NULL)
            pump_hub(d);
    }
    if (d->link == NULL)
        hub_dial(d);
    else if (!nk_hub_link_is_open(d->link))
        hub_connecting(d); /* its timeout */
    flush(d);
    if (d->link != NULL && nk_hub_link_wants_write(d->link, nk_node_hub_client(d->node)))
        pump_hub(d); /* what that flush queued for the hub relay leaves now, not at the next call */
    int ready = 0;
    for (unsigned i = 0; i < nfds; i++) {
        fds[i].revents = r > 0 ? p[extra_i + i].revents : 0;
        ready += fds[i].revents != 0;
    }
    return ready;
}

int nk_node_driver_poll(nk_node_driver *d, int64_t timeout_ms, int extra_fd)
{
    struct pollfd e = {.fd = extra_fd, .events = POLLIN};
    int r = nk_node_driver_poll_fds(d, timeout_ms, &e, extra_fd >= 0 ? 1 : 0);
    if (r < 0)
        return r;
    return extra_fd >= 0 && (e.revents & (POLLIN | POLLHUP)) ? 1 : 0;
}

/* The fallback when the caller did not release the node's TURN allocation itself
 * (nk_node_release_turn, then polling until nk_node_turn_released, as natkit's CLI does): one
 * Refresh with lifetime 0, sent once, no wait; lost or refused, the allocation stays until its
 * lifetime ends. Sent directly: flush() would hand the caller events while it frees. */
static void release_turn(nk_node_driver *d)
{
    nk_transmit tx;
    unsigned sl;
    int64_t now = tick(d);
    if (d->node == NULL || d->fd < 0 || d->tx == NULL || nk_node_release_turn(d->node, now) != 0)
        return;
    /* the TURN client's datagrams come first; a few more (what was due anyway) do no harm */
    for (int i = 0; i < 8 && nk_node_poll_transmit(d->node, now, &tx, d->tx[0], TX_SLOT) == 0; i++) {
        if (tx.from.family != NK_AF_NONE || dest_name(d, &tx.to, &d->tx_name[0], &sl) != 0)
            continue;
        if (sendto(d->fd, d->tx[0], tx.len, MSG_DONTWAIT, (struct sockaddr *)&d->tx_name[0], sl) < 0)
            break; /* best effort */
    }
}

void nk_node_driver_free(nk_node_driver *d)
{
    if (d == NULL)
        return;
    release_turn(d);
    nk_hub_link_free(d->link);
    nk_node_free(d->node);
    if (d->fd >= 0)
        close(d->fd);
    if (d->tcp_hold >= 0)
        close(d->tcp_hold);
    for (size_t i = 0; i < d->nxs; i++)
        close(d->xs[i].fd);
    free(d->xs);
    free(d->tx);
    free(d->rx);
    free(d->pfd);
    free(d);
}
