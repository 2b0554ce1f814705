/*
 * natkit: the STUN service driver. Worker threads, each with its own UDP and
 * TCP sockets on every server address (SO_REUSEPORT when there are several)
 * and its own epoll; UDP in recvmmsg/sendmmsg batches; the request handler
 * (stun_server.c) does all the protocol work. See docs/internals/stun-server.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "errctx.h"
#include "natkit/stun_service.h"
#include "random.h"
#include "stun_service.h"

#define DEFAULT_TCP_MAX_CONNS 1024
#define DEFAULT_TCP_IDLE_MS   30000
#define DEFAULT_BATCH         32
#define DEFAULT_TCP_PER_IP    64
#define DEFAULT_TCP_FIRST_MS  5000
#define DEFAULT_UDP_RATE      500
#define SOCKET_BUFFER         (4 << 20)
#define RECV_ROUNDS           8   /* recvmmsg batches per readiness event, for fairness */
#define EPOLL_EVENTS          64

void nk_stun_service_options_init(nk_stun_service_options *o)
{
    memset(o, 0, sizeof(*o));
    o->threads = 1;
    o->tcp = 1;
    o->tcp_max_conns = DEFAULT_TCP_MAX_CONNS;
    o->tcp_idle_ms = DEFAULT_TCP_IDLE_MS;
    o->batch = DEFAULT_BATCH;
    o->tcp_max_per_ip = DEFAULT_TCP_PER_IP;
    o->tcp_first_ms = DEFAULT_TCP_FIRST_MS;
    o->udp_rate = DEFAULT_UDP_RATE;
}

static int normalize_options(nk_stun_service_options *o)
{
    if (nk_addr_ip_len(&o->listen) == 0 || o->listen.port == 0)
        return NK_ERR_INVAL;
    if (o->threads <= 0)
        o->threads = 1;
    if (o->threads > 256 || o->tcp_max_conns < 0 || o->tcp_idle_ms < 0 || o->batch < 0 ||
        o->batch > NK__SVC_MAX_BATCH)
        return NK_ERR_INVAL;
    if (o->tcp_max_conns == 0)
        o->tcp_max_conns = DEFAULT_TCP_MAX_CONNS;
    if (o->tcp_idle_ms == 0)
        o->tcp_idle_ms = DEFAULT_TCP_IDLE_MS;
    if (o->batch == 0)
        o->batch = DEFAULT_BATCH;
    if (o->tcp_first_ms < 0 || o->udp_burst < 0 || o->rate_entries < 0 || o->udp_rate > 1000000 ||
        o->udp_burst > 1000000)
        return NK_ERR_INVAL;
    if (o->tcp_max_per_ip == 0)
        o->tcp_max_per_ip = DEFAULT_TCP_PER_IP;
    if (o->tcp_first_ms == 0)
        o->tcp_first_ms = DEFAULT_TCP_FIRST_MS;
    if (o->udp_rate == 0)
        o->udp_rate = DEFAULT_UDP_RATE;
    if (o->udp_rate > 0 && o->udp_burst == 0)
        o->udp_burst = 2 * o->udp_rate;
    return 0;
}

/* ---- sockets ---- */

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v));
}

static int open_socket(const nk_addr *a, int type, int reuseport)
{
    struct sockaddr_storage ss;
    unsigned len = sizeof(ss);
    if (nk_addr_to_sockaddr(a, (struct sockaddr *)&ss, &len) != 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (type == SOCK_STREAM)
        set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    else {
        /* Beyond net.core.[rw]mem_max when allowed (CAP_NET_ADMIN), else up to it. */
        if (set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER) != 0)
            set_int(fd, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER);
        if (set_int(fd, SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER) != 0)
            set_int(fd, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER);
    }
    if ((reuseport && set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || (type == SOCK_STREAM && listen(fd, 1024) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int epoll_add(int epfd, nk__ep *e, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = e};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ev);
}

static void worker_init(nk__worker *w, nk_stun_service *svc)
{
    w->svc = svc;
    w->epfd = -1;
    w->spare_fd = -1;
    for (int i = 0; i < NK__SVC_MAX_SLOTS; i++) {
        w->udp[i] = (nk__svc_sock){{NK__EP_UDP, -1}, i};
        w->tcp[i] = (nk__svc_sock){{NK__EP_TCP_LISTEN, -1}, i};
    }
    w->stop = (nk__ep){NK__EP_STOP, svc->stop_fd};
    for (int i = 0; i < NK__SVC_MAX_BATCH; i++) {
        w->riov[i] = (struct iovec){w->rbuf[i], NK__SVC_UDP_MAX};
        w->rmsg[i].msg_hdr.msg_iov = &w->riov[i];
        w->rmsg[i].msg_hdr.msg_iovlen = 1;
        w->rmsg[i].msg_hdr.msg_name = &w->rname[i];
    }
}

static int is_wildcard(const nk_addr *a)
{
    static const uint8_t any[16];
    return memcmp(a->ip, any, nk_addr_ip_len(a)) == 0;
}

/* NK_ERR_ADDRESS with errno kept and the error context set ("bind UDP 127.0.0.1:3478"). */
static int bind_failed(const char *proto, const nk_addr *a)
{
    int e = errno;
    char text[NK_ADDR_STRLEN];
    nk__errctx_set(e, "bind %s %s", proto, nk_addr_format(a, text, sizeof(text)));
    errno = e;
    return NK_ERR_ADDRESS;
}

static int worker_open(nk__worker *w)
{
    nk_stun_service *svc = w->svc;
    int reuseport = svc->opt.threads > 1;
    uint8_t key[NK__SRCLIMIT_HASH_KEY];
    nk__random(NULL, NULL, key, sizeof(key));
    const nk_stun_service_options *o = &svc->opt;
    int err = nk__conncount_new(&w->per_ip, (uint32_t)o->tcp_max_conns,
                                o->tcp_max_per_ip > 0 ? (uint32_t)o->tcp_max_per_ip : 0, key);
    if (err == 0)
        err = nk__ratelimit_new(&w->rate, o->udp_rate > 0 ? (uint32_t)o->udp_rate : 0, (uint32_t)o->udp_burst,
                                (uint32_t)o->rate_entries, key);
    if (err != 0)
        return err;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0 || epoll_add(w->epfd, &w->stop, EPOLLIN) != 0)
        return NK_ERR_SYSTEM;
    for (size_t i = 0; i < svc->naddrs; i++) {
        w->udp[i].e.fd = open_socket(&svc->addrs[i], SOCK_DGRAM, reuseport);
        if (w->udp[i].e.fd < 0)
            return bind_failed("UDP", &svc->addrs[i]);
        if (is_wildcard(&svc->addrs[i])) {
            if (nk__svc_pktinfo_enable(w->udp[i].e.fd, svc->addrs[i].family) != 0)
                return NK_ERR_SYSTEM;
            w->pktinfo = 1;
        }
        if (epoll_add(w->epfd, &w->udp[i].e, EPOLLIN) != 0)
            return NK_ERR_SYSTEM;
        if (!svc->opt.tcp)
            continue;
        w->tcp[i].e.fd = open_socket(&svc->addrs[i], SOCK_STREAM, reuseport);
        if (w->tcp[i].e.fd < 0)
            return bind_failed("TCP", &svc->addrs[i]);
        if (epoll_add(w->epfd, &w->tcp[i].e, EPOLLIN) != 0)
            return NK_ERR_SYSTEM;
    }
    return 0;
}

static void worker_close(nk__worker *w)
{
    nk__svc_tcp_close_all(w);
    for (int i = 0; i < NK__SVC_MAX_SLOTS; i++) {
        if (w->udp[i].e.fd >= 0)
            close(w->udp[i].e.fd);
        if (w->tcp[i].e.fd >= 0)
            close(w->tcp[i].e.fd);
        w->udp[i].e.fd = w->tcp[i].e.fd = -1;
    }
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->spare_fd >= 0)
        close(w->spare_fd);
    w->epfd = w->spare_fd = -1;
    nk__conncount_free(w->per_ip);
    nk__ratelimit_free(w->rate);
    w->per_ip = NULL;
    w->rate = NULL;
}

/* ---- UDP ---- */

static int slot_of(const nk_stun_service *svc, const nk_addr *a, int fallback)
{
    for (size_t i = 0; i < svc->naddrs; i++)
        if (nk_addr_equal(a, &svc->addrs[i]))
            return (int)i;
    return fallback;
}

/* Queues the response in sbuf[i] (to tx->to) on the send queue of its socket. */
static void queue_send(nk__worker *w, int slot, unsigned i, const nk_transmit *tx)
{
    unsigned salen = sizeof(w->sname[i]);
    if (nk_addr_to_sockaddr(&tx->to, (struct sockaddr *)&w->sname[i], &salen) != 0) {
        w->stats.send_failed++;
        return;
    }
    w->siov[i] = (struct iovec){w->sbuf[i], tx->len};
    nk__send_q *q = &w->sq[slot];
    struct msghdr *h = &q->msg[q->n++].msg_hdr;
    memset(h, 0, sizeof(*h));
    h->msg_name = &w->sname[i];
    h->msg_namelen = salen;
    h->msg_iov = &w->siov[i];
    h->msg_iovlen = 1;
    if (w->pktinfo) {
        h->msg_control = w->sctl[i];
        h->msg_controllen = nk__svc_pktinfo_source(w->sctl[i], sizeof(w->sctl[i]), &tx->from);
    }
}

/* Sends a queue; a datagram the kernel refuses is dropped and counted. */
static void flush_queue(nk__worker *w, int fd, nk__send_q *q)
{
    unsigned off = 0;
    while (off < q->n) {
        int r = sendmmsg(fd, q->msg + off, q->n - off, MSG_DONTWAIT);
        if (r > 0) {
            off += (unsigned)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            w->stats.send_failed += q->n - off;
            break;
        } else {
            w->stats.send_failed++; /* this one (e.g. an ICMP error reported late) */
            off++;
        }
    }
    q->n = 0;
}

static void handle_datagrams(nk__worker *w, nk__svc_sock *u, unsigned n, int64_t now_ms)
{
    nk_stun_service *svc = w->svc;
    for (unsigned i = 0; i < n; i++) {
        struct msghdr *h = &w->rmsg[i].msg_hdr;
        nk_addr from, local = svc->addrs[u->slot];
        nk_transmit tx;
        if ((h->msg_flags & MSG_TRUNC) != 0 ||
            nk_addr_from_sockaddr(&from, (struct sockaddr *)&w->rname[i]) != 0 ||
            (w->pktinfo && nk__svc_pktinfo_local(h, &local) != 0)) {
            w->stats.dropped_malformed++;
            continue;
        }
        nk_stun_server_stats_t one = {0}; /* this datagram's counts: an answer counts once it may go out */
        int rc = nk_stun_server_handle(svc->srv, &one, &local, &from, NK_TRANSPORT_UDP, w->rbuf[i],
                                       w->rmsg[i].msg_len, &tx, w->sbuf[i], NK__SVC_UDP_MAX);
        if (rc == 0 && !nk__ratelimit_take(w->rate, now_ms, &from)) {
            one.responses = one.errors = 0; /* the source is over its rate: no answer, whatever it asked */
            one.rate_limited = 1;
        }
        nk_stun_server_stats_add(&w->stats, &one);
        if (rc != 0 || one.rate_limited != 0)
            continue;
        queue_send(w, slot_of(svc, &tx.from, u->slot), i, &tx);
    }
    for (size_t s = 0; s < svc->naddrs; s++)
        if (w->sq[s].n > 0)
            flush_queue(w, w->udp[s].e.fd, &w->sq[s]);
}

static void udp_readable(nk__worker *w, nk__svc_sock *u, int64_t now_ms)
{
    unsigned batch = (unsigned)w->svc->opt.batch;
    for (int round = 0; round < RECV_ROUNDS; round++) {
        for (unsigned i = 0; i < batch; i++) {
            w->rmsg[i].msg_hdr.msg_namelen = sizeof(w->rname[i]);
            w->rmsg[i].msg_hdr.msg_flags = 0;
            w->rmsg[i].msg_hdr.msg_control = w->pktinfo ? w->rctl[i] : NULL;
            w->rmsg[i].msg_hdr.msg_controllen = w->pktinfo ? sizeof(w->rctl[i]) : 0;
        }
        int n = recvmmsg(u->e.fd, w->rmsg, batch, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN, or an error we will see again on the next event */
        handle_datagrams(w, u, (unsigned)n, now_ms);
        if ((unsigned)n < batch)
            return;
    }
}

/* ---- the worker loop ---- */

static void dispatch(nk__worker *w, nk__ep *e, uint32_t events, int64_t now_ms, int *stop)
{
    switch (e->kind) {
    case NK__EP_UDP:
        udp_readable(w, (nk__svc_sock *)e, now_ms);
        break;
    case NK__EP_TCP_LISTEN:
        nk__svc_tcp_accept(w, (nk__svc_sock *)e, now_ms);
        break;
    case NK__EP_TCP_CONN:
        nk__svc_tcp_event(w, (nk__tcp_conn *)e, events, now_ms);
        break;
    case NK__EP_STOP:
        *stop = 1;
        break;
    }
}

static void *worker_main(void *arg)
{
    nk__worker *w = arg;
    struct epoll_event evs[EPOLL_EVENTS];
    int stop = 0, timeout = -1;
    while (!stop) {
        int n = epoll_wait(w->epfd, evs, EPOLL_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            w->err = NK_ERR_SYSTEM;
            uint64_t one = 1;
            if (write(w->svc->fail_fd, &one, sizeof(one)) < 0) {
                /* nothing more to tell */
            }
            break;
        }
        int64_t now = nk__now_ms();
        for (int i = 0; i < n; i++)
            dispatch(w, evs[i].data.ptr, evs[i].events, now, &stop);
        nk__svc_tcp_reap(w);
        timeout = nk__svc_tcp_sweep(w, now);
        nk__stats_publish(w->stats_pub, &w->stats, sizeof(w->stats));
    }
    nk__stats_publish(w->stats_pub, &w->stats, sizeof(w->stats));
    return NULL;
}

/* ---- the service ---- */

static void service_destroy(nk_stun_service *s)
{
    if (s->workers != NULL) {
        for (int i = 0; i < s->nworkers; i++)
            worker_close(&s->workers[i]);
        free(s->workers);
    }
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    if (s->fail_fd >= 0)
        close(s->fail_fd);
    nk_stun_server_free(s->srv);
    free(s);
}

static int service_setup(nk_stun_service *s)
{
    const nk_addr *alt = s->opt.alt_ip.family != NK_AF_NONE ? &s->opt.alt_ip : NULL;
    int err = nk_stun_server_new(&s->srv, &s->opt.listen, alt, s->opt.alt_port);
    if (err != 0)
        return err;
    s->naddrs = nk_stun_server_addrs(s->srv, s->addrs);
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->fail_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd < 0 || s->fail_fd < 0)
        return NK_ERR_SYSTEM;
    s->workers = calloc((size_t)s->opt.threads, sizeof(nk__worker));
    if (s->workers == NULL)
        return NK_ERR_NOMEM;
    s->nworkers = s->opt.threads;
    for (int i = 0; i < s->nworkers; i++)
        worker_init(&s->workers[i], s);
    for (int i = 0; i < s->nworkers; i++)
        if ((err = worker_open(&s->workers[i])) != 0)
            return err;
    return 0;
}

/* Threads start with every signal blocked: signals belong to the application. */
static int start_threads(nk_stun_service *s)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = 0;
    for (int i = 0; i < s->nworkers && err == 0; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0)
            err = NK_ERR_SYSTEM;
        else
            s->started = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

static void join_threads(nk_stun_service *s)
{
    nk_stun_service_request_stop(s);
    for (int i = 0; i < s->started; i++)
        pthread_join(s->workers[i].thread, NULL);
    s->started = 0;
}

int nk_stun_service_start(nk_stun_service **out, const nk_stun_service_options *o)
{
    nk__errctx_clear();
    if (out == NULL || o == NULL)
        return NK_ERR_INVAL;
    *out = NULL;
    nk_stun_service *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    s->opt = *o;
    s->stop_fd = s->fail_fd = -1;
    int err = normalize_options(&s->opt);
    if (err == 0)
        err = service_setup(s);
    if (err == 0)
        err = start_threads(s);
    if (err != 0) {
        int e = errno;
        join_threads(s);
        service_destroy(s);
        errno = e;
        return err;
    }
    *out = s;
    return 0;
}

void nk_stun_service_request_stop(nk_stun_service *s)
{
    uint64_t one = 1;
    if (s != NULL && s->stop_fd >= 0 && write(s->stop_fd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: the stop is pending anyway */
    }
}

void nk_stun_service_free(nk_stun_service *s)
{
    if (s == NULL)
        return;
    join_threads(s);
    service_destroy(s);
}

size_t nk_stun_service_addrs(const nk_stun_service *s, nk_addr out[4])
{
    memcpy(out, s->addrs, s->naddrs * sizeof(nk_addr));
    return s->naddrs;
}

void nk_stun_service_stats(const nk_stun_service *s, nk_stun_server_stats_t *out)
{
    nk_stun_server_stats_t one;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < s->nworkers; i++) {
        nk__stats_read(&one, s->workers[i].stats_pub, sizeof(one));
        nk_stun_server_stats_add(out, &one);
    }
}

int nk_stun_service_wait(nk_stun_service *s, int extra_fd)
{
    struct pollfd p[2] = {{.fd = s->fail_fd, .events = POLLIN}, {.fd = extra_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, extra_fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR)
            return NK_ERR_SYSTEM;
        if (n > 0 && (p[0].revents & POLLIN) != 0)
            break;
        if (n > 0 && p[1].revents != 0)
            return 0;
    }
    for (int i = 0; i < s->nworkers; i++)
        if (s->workers[i].err != 0)
            return s->workers[i].err;
    return NK_ERR_SYSTEM;
}

void nk_stun_service_stop(nk_stun_service *s)
{
    if (s != NULL)
        join_threads(s);
}
