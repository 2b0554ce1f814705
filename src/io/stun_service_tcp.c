/*
 * natkit: the STUN service's TCP side. Each connection has a fixed input
 * buffer (one STUN message at most NK__SVC_TCP_MSG_MAX bytes), a small output
 * backlog, and a place in one of its worker's lists: fresh (no valid message
 * yet, closed tcp_first_ms after the accept, and the first to go when the table
 * is full) or idle (closed after tcp_idle_ms without bytes). A source over
 * tcp_max_per_ip is closed at accept, and so is a stream that is not STUN or
 * carries a message that is too long.
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

/* ---- the lists: fresh (by accept time) and idle (by last activity), oldest first ---- */

static nk__conn_list *list_of(nk__worker *w, nk__tcp_conn *c)
{
    return c->fresh ? &w->fresh : &w->idle;
}

static void list_unlink(nk__conn_list *l, nk__tcp_conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static void list_push(nk__conn_list *l, nk__tcp_conn *c)
{
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail != NULL)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

/* Bytes arrived: an established connection moves to the idle list's end. A fresh one
 * keeps its place: only a valid message (mark_valid) lifts the first-message deadline. */
static void touch(nk__worker *w, nk__tcp_conn *c, int64_t now_ms)
{
    if (c->fresh)
        return;
    c->last_ms = now_ms;
    list_unlink(&w->idle, c);
    list_push(&w->idle, c);
}

static void mark_valid(nk__worker *w, nk__tcp_conn *c, int64_t now_ms)
{
    if (!c->fresh)
        return;
    list_unlink(&w->fresh, c);
    c->fresh = 0;
    c->last_ms = now_ms;
    list_push(&w->idle, c);
}

/* Closes now; the memory waits on the dead list until the event batch is over. */
static void conn_close(nk__worker *w, nk__tcp_conn *c)
{
    if (c->e.fd < 0)
        return;
    list_unlink(list_of(w, c), c);
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->e.fd, NULL);
    close(c->e.fd);
    nk__conncount_remove(w->per_ip, &c->peer);
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
    while (w->fresh.head != NULL)
        conn_close(w, w->fresh.head);
    while (w->idle.head != NULL)
        conn_close(w, w->idle.head);
    nk__svc_tcp_reap(w);
}

/* ms until the list's oldest connection expires, or -1 for an empty list. */
static int64_t list_wait(const nk__conn_list *l, int64_t limit, int64_t now_ms)
{
    return l->head == NULL ? -1 : l->head->last_ms + limit - now_ms;
}

int nk__svc_tcp_sweep(nk__worker *w, int64_t now_ms)
{
    int64_t idle = w->svc->opt.tcp_idle_ms, first = w->svc->opt.tcp_first_ms;
    while (w->idle.head != NULL && now_ms - w->idle.head->last_ms >= idle) {
        conn_close(w, w->idle.head);
        w->stats.tcp_idle_closed++;
    }
    while (w->fresh.head != NULL && now_ms - w->fresh.head->last_ms >= first) {
        conn_close(w, w->fresh.head);
        w->stats.tcp_first_timeout++;
    }
    nk__svc_tcp_reap(w);
    int64_t a = list_wait(&w->idle, idle, now_ms), b = list_wait(&w->fresh, first, now_ms);
    if (a < 0 || (b >= 0 && b < a))
        a = b;
    return a < 0 ? -1 : (int)a;
}

/* ---- accepting ---- */

static void conn_open(nk__worker *w, nk__svc_sock *l, int fd, const nk_addr *peer, int64_t now_ms)
{
    nk__tcp_conn *c = malloc(sizeof(*c));
    if (c == NULL) {
        close(fd);
        nk__conncount_remove(w->per_ip, peer);
        w->stats.tcp_rejected++;
        return;
    }
    memset(c, 0, offsetof(nk__tcp_conn, in));
    c->e = (nk__ep){NK__EP_TCP_CONN, fd};
    c->slot = l->slot;
    c->events = EPOLLIN;
    c->peer = *peer;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->e};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        free(c);
        nk__conncount_remove(w->per_ip, peer);
        w->stats.tcp_rejected++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->last_ms = now_ms;
    c->fresh = 1;
    list_push(&w->fresh, c);
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

/*
 * Whether a new connection from peer may take a place: its source under
 * tcp_max_per_ip (counted then), and a free place in the table, or one made by
 * closing the oldest connection that has not sent a valid message yet.
 */
static int admit(nk__worker *w, const nk_addr *peer)
{
    if (nk__conncount_add(w->per_ip, peer) != 0) {
        w->stats.tcp_rejected_per_ip++;
        return 0;
    }
    if (w->nconns < w->svc->opt.tcp_max_conns)
        return 1;
    if (w->fresh.head != NULL) {
        conn_close(w, w->fresh.head);
        w->stats.tcp_evicted++;
        return 1;
    }
    nk__conncount_remove(w->per_ip, peer);
    w->stats.tcp_rejected++;
    return 0;
}

void nk__svc_tcp_accept(nk__worker *w, nk__svc_sock *l, int64_t now_ms)
{
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        nk_addr peer;
        int fd = accept4(l->e.fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && shed_one(w, l))
            continue;
        if (fd < 0)
            return; /* EAGAIN, or a condition the next event retries */
        if (nk_addr_from_sockaddr(&peer, (const struct sockaddr *)&ss) != 0) {
            close(fd);
            w->stats.tcp_rejected++;
            continue;
        }
        if (!admit(w, &peer)) {
            close(fd);
            continue;
        }
        conn_open(w, l, fd, &peer, now_ms);
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
static int process_input(nk__worker *w, nk__tcp_conn *c, int64_t now_ms)
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
        if (hr == 0) {
            c->out_len += tx.len;
            mark_valid(w, c, now_ms);
        }
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
        if (process_input(w, c, now_ms) != 0 || flush_out(w, c) != 0)
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
        if (flush_out(w, c) != 0 || process_input(w, c, now_ms) != 0 || flush_out(w, c) != 0)
            return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && c->out_len == 0) {
        if (read_input(w, c, now_ms) != 0)
            return;
    }
    /* A backlog waits for EPOLLOUT and pauses reading; otherwise read. */
    set_interest(w, c, c->out_len > 0 ? EPOLLOUT : EPOLLIN);
}
