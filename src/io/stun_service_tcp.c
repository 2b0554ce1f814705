/*
 * natkit: the STUN service's TCP side. Each connection has a fixed input
 * buffer (one STUN message at most NK__SVC_TCP_MSG_MAX bytes), a small output
 * backlog, and a place in its worker's idle list; connections over the limit
 * are closed at once, idle ones after tcp_idle_ms, and a stream that is not
 * STUN or carries a message that is too long is closed.
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

#include "natkit/stun.h"
#include "stun_service.h"

#define ACCEPTS_PER_EVENT 64
#define READS_PER_EVENT   8

/* ---- the idle list: oldest activity first ---- */

static void idle_unlink(nk__worker *w, nk__tcp_conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->idle_head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        w->idle_tail = c->prev;
    c->prev = c->next = NULL;
}

static void idle_push(nk__worker *w, nk__tcp_conn *c)
{
    c->prev = w->idle_tail;
    c->next = NULL;
    if (w->idle_tail != NULL)
        w->idle_tail->next = c;
    else
        w->idle_head = c;
    w->idle_tail = c;
}

static void touch(nk__worker *w, nk__tcp_conn *c, int64_t now_ms)
{
    c->last_ms = now_ms;
    idle_unlink(w, c);
    idle_push(w, c);
}

/* Closes now; the memory waits on the dead list until the event batch is over. */
static void conn_close(nk__worker *w, nk__tcp_conn *c)
{
    if (c->e.fd < 0)
        return;
    idle_unlink(w, c);
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->e.fd, NULL);
    close(c->e.fd);
    c->e.fd = -1;
    c->next = w->dead;
    w->dead = c;
    w->nconns--;
}

void nk__svc_tcp_reap(nk__worker *w)
{
    while (w->dead != NULL) {
        nk__tcp_conn *c = w->dead;
        w->dead = c->next;
        free(c);
    }
}

void nk__svc_tcp_close_all(nk__worker *w)
{
    while (w->idle_head != NULL)
        conn_close(w, w->idle_head);
    nk__svc_tcp_reap(w);
}

int nk__svc_tcp_sweep(nk__worker *w, int64_t now_ms)
{
    int64_t idle = w->svc->opt.tcp_idle_ms;
    while (w->idle_head != NULL && now_ms - w->idle_head->last_ms >= idle) {
        conn_close(w, w->idle_head);
        w->stats.tcp_idle_closed++;
    }
    nk__svc_tcp_reap(w);
    if (w->idle_head == NULL)
        return -1;
    return (int)(w->idle_head->last_ms + idle - now_ms);
}

/* ---- accepting ---- */

static void conn_open(nk__worker *w, nk__svc_sock *l, int fd, const struct sockaddr_storage *ss,
                      int64_t now_ms)
{
    nk__tcp_conn *c = malloc(sizeof(*c));
    if (c == NULL) {
        close(fd);
        w->stats.tcp_rejected++;
        return;
    }
    memset(c, 0, offsetof(nk__tcp_conn, in));
    c->e = (nk__ep){NK__EP_TCP_CONN, fd};
    c->slot = l->slot;
    c->events = EPOLLIN;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->e};
    if (nk_addr_from_sockaddr(&c->peer, (const struct sockaddr *)ss) != 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        free(c);
        w->stats.tcp_rejected++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->last_ms = now_ms;
    idle_push(w, c);
    w->nconns++;
    w->stats.tcp_accepted++;
}

/*
 * Out of descriptors: the listener would stay readable and the worker spin.
 * Give back the spare descriptor, accept and close one connection, take the
 * spare again. Returns 1 when a connection was shed.
 */
static int shed_one(nk__worker *w, nk__svc_sock *l)
{
    if (w->spare_fd < 0)
        return 0;
    close(w->spare_fd);
    int fd = accept4(l->e.fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        w->stats.tcp_rejected++;
    }
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

void nk__svc_tcp_accept(nk__worker *w, nk__svc_sock *l, int64_t now_ms)
{
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->e.fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && shed_one(w, l))
            continue;
        if (fd < 0)
            return; /* EAGAIN, or a condition the next event retries */
        if (w->nconns >= w->svc->opt.tcp_max_conns) {
            close(fd);
            w->stats.tcp_rejected++;
            continue;
        }
        conn_open(w, l, fd, &ss, now_ms);
    }
}

/* ---- one connection ---- */

static void set_interest(nk__worker *w, nk__tcp_conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = &c->e};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->e.fd, &ev) == 0)
        c->events = events;
}

/* Writes the backlog; 0, or -1 when the connection is gone. */
static int flush_out(nk__worker *w, nk__tcp_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t r = send(c->e.fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r <= 0) {
            conn_close(w, c);
            return -1;
        }
        c->out_off += (size_t)r;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/*
 * Handles every complete message in the input buffer while the backlog has
 * room for an answer. Returns -1 when the connection was closed.
 */
static int process_input(nk__worker *w, nk__tcp_conn *c)
{
    nk_stun_service *svc = w->svc;
    size_t off = 0;
    int rc = 0;
    while (rc == 0) {
        size_t mlen;
        int fr = nk_stun_frame_length(c->in + off, c->in_len - off, &mlen);
        if (fr == NK_ERR_AGAIN || (fr == 0 && mlen > c->in_len - off && mlen <= sizeof(c->in)))
            break;
        if (fr != 0 || mlen > sizeof(c->in)) {
            if (fr == NK_ERR_NOT_STUN)
                w->stats.dropped_not_stun++;
            else
                w->stats.dropped_malformed++;
            conn_close(w, c);
            return -1;
        }
        if (sizeof(c->out) - c->out_len < nk_stun_server_response_bound(mlen))
            break; /* answer later, once the backlog drains */
        nk_transmit tx;
        int hr = nk_stun_server_handle(svc->srv, &w->stats, &svc->addrs[c->slot], &c->peer,
                                       NK_TRANSPORT_TCP, c->in + off, mlen, &tx, c->out + c->out_len,
                                       sizeof(c->out) - c->out_len);
        if (hr == 0)
            c->out_len += tx.len;
        off += mlen;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

/* Reads what is there (bounded); -1 when the connection was closed. */
static int read_input(nk__worker *w, nk__tcp_conn *c, int64_t now_ms)
{
    for (int i = 0; i < READS_PER_EVENT && c->in_len < sizeof(c->in); i++) {
        ssize_t r = recv(c->e.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r <= 0) {
            conn_close(w, c);
            return -1;
        }
        c->in_len += (size_t)r;
        touch(w, c, now_ms);
        if (process_input(w, c) != 0 || flush_out(w, c) != 0)
            return -1;
        if (c->out_len > 0)
            return 0; /* the peer is not reading: stop reading too */
    }
    return 0;
}

void nk__svc_tcp_event(nk__worker *w, nk__tcp_conn *c, uint32_t events, int64_t now_ms)
{
    if (c->e.fd < 0)
        return;
    if ((events & EPOLLOUT) != 0) {
        if (flush_out(w, c) != 0 || process_input(w, c) != 0 || flush_out(w, c) != 0)
            return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && c->out_len == 0) {
        if (read_input(w, c, now_ms) != 0)
            return;
    }
    /* A backlog waits for EPOLLOUT and pauses reading; otherwise read. */
    set_interest(w, c, c->out_len > 0 ? EPOLLOUT : EPOLLIN);
}
