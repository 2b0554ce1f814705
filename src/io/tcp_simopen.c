/*
 * natkit: the socket side of TCP simultaneous open (see include/natkit/tcp.h and
 * docs/internals/tcp-simopen.md). A driver, like nk_tcp_stream: it owns sockets,
 * but never reads a clock or blocks; the caller polls its fds and passes the time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "natkit/tcp.h"

#define DEFAULT_WINDOW_MS 5000
#define DEFAULT_RETRY_MS  100

struct nk_tcp_simopen {
    nk_tcp_simopen_config cfg;
    int fd;            /* the attempt in flight, or -1 */
    int lfd;           /* the listener on the same port, or -1 */
    uint32_t polled_attempt;       /* the attempt (stats.attempts) the last pollfds handed out; 0: none */
    int polled_lfd;                /* the last pollfds handed out the listener */
    int64_t retry_at, give_up_at;
    nk_tcp_simopen_stats_t stats;
};

int nk_tcp_simopen_new(nk_tcp_simopen **out, const nk_tcp_simopen_config *cfg)
{
    if (out == NULL || cfg == NULL || cfg->remote.port == 0 || cfg->local.port == 0 ||
        cfg->local.family != cfg->remote.family || cfg->window_ms < 0 || cfg->retry_ms < 0)
        return NK_ERR_INVAL;
    nk_tcp_simopen *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NK_ERR_NOMEM;
    s->cfg = *cfg;
    if (s->cfg.window_ms == 0)
        s->cfg.window_ms = DEFAULT_WINDOW_MS;
    if (s->cfg.retry_ms == 0)
        s->cfg.retry_ms = DEFAULT_RETRY_MS;
    s->fd = -1;
    s->retry_at = cfg->start_ms;
    s->give_up_at = cfg->start_ms + s->cfg.window_ms;
    /* the listener exists from the start: a SYN that arrives before our first attempt is caught */
    int rc = nk_tcp_listen_from(&s->cfg.local, &s->lfd);
    if (rc == NK_ERR_ADDRESS) { /* the port is taken for TCP: every attempt's bind would fail too */
        free(s);
        return rc;
    }
    if (rc != 0)
        s->lfd = -1; /* attempts alone can still meet */
    *out = s;
    return 0;
}

static void close_all(nk_tcp_simopen *s)
{
    if (s->fd >= 0)
        close(s->fd);
    if (s->lfd >= 0)
        close(s->lfd);
    s->fd = s->lfd = -1;
}

void nk_tcp_simopen_free(nk_tcp_simopen *s)
{
    if (s == NULL)
        return;
    close_all(s);
    free(s);
}

/* Remembers what it hands out: step believes revents only for those sockets, so results of a
 * poll made for another object, or for an attempt since replaced by one with the same fd
 * number, are ignored. */
void nk_tcp_simopen_pollfds(nk_tcp_simopen *s, struct pollfd pfd[NK_TCP_SIMOPEN_FDS])
{
    pfd[0] = (struct pollfd){.fd = s->fd, .events = POLLOUT, .revents = 0};
    pfd[1] = (struct pollfd){.fd = s->lfd, .events = POLLIN, .revents = 0};
    s->polled_attempt = s->fd >= 0 ? s->stats.attempts : 0;
    s->polled_lfd = s->lfd >= 0;
}

int64_t nk_tcp_simopen_next_deadline(const nk_tcp_simopen *s)
{
    if (s->give_up_at == INT64_MAX)
        return INT64_MAX;
    if (s->fd < 0 && s->retry_at < s->give_up_at)
        return s->retry_at;
    return s->give_up_at;
}

/* The listener took a connection: the peer's if it comes from its address. */
static int take_accepted(nk_tcp_simopen *s, int *fd_out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    nk_addr from;
    int fd = accept4(s->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return NK_ERR_AGAIN;
    if (nk_addr_from_sockaddr(&from, (struct sockaddr *)&ss) != 0 || !nk_addr_equal_ip(&from, &s->cfg.remote)) {
        s->stats.strangers++;
        close(fd);
        return NK_ERR_AGAIN;
    }
    s->stats.via_listener = 1;
    *fd_out = fd;
    return 0;
}

/* Our attempt finished: 0 with the connected socket, else it was refused (again later). */
static int finish_attempt(nk_tcp_simopen *s, int64_t now, int *fd_out)
{
    int rc = nk_tcp_connect_result(s->fd);
    if (rc == NK_ERR_AGAIN)
        return rc;
    if (rc == 0) {
        *fd_out = s->fd;
        s->fd = -1;
        return 0;
    }
    s->stats.refused++;
    close(s->fd);
    s->fd = -1;
    s->retry_at = now + s->cfg.retry_ms; /* refused or reset: the peer's NAT had no mapping yet */
    return NK_ERR_AGAIN;
}

static void maybe_attempt(nk_tcp_simopen *s, int64_t now)
{
    if (s->fd >= 0 || now < s->retry_at)
        return;
    s->stats.attempts++;
    if (nk_tcp_connect_from(&s->cfg.local, &s->cfg.remote, &s->fd) != 0) {
        s->fd = -1;
        s->retry_at = now + s->cfg.retry_ms;
    }
}

int nk_tcp_simopen_step(nk_tcp_simopen *s, int64_t now, const struct pollfd pfd[NK_TCP_SIMOPEN_FDS], int *fd_out)
{
    if (s == NULL || fd_out == NULL)
        return NK_ERR_INVAL;
    if (s->give_up_at == INT64_MAX)
        return NK_ERR_STATE; /* done: connected or given up */
    int rc = NK_ERR_AGAIN;
    int attempt_polled = pfd != NULL && s->fd >= 0 && s->polled_attempt == s->stats.attempts &&
                         pfd[0].fd == s->fd;
    int listener_polled = pfd != NULL && s->lfd >= 0 && s->polled_lfd && pfd[1].fd == s->lfd;
    s->polled_attempt = 0; /* these revents are used once */
    s->polled_lfd = 0;
    if (attempt_polled && pfd[0].revents != 0)
        rc = finish_attempt(s, now, fd_out);
    if (rc != 0 && listener_polled && (pfd[1].revents & POLLIN))
        rc = take_accepted(s, fd_out);
    if (rc == 0) {
        s->stats.up_ms = now - s->cfg.start_ms;
        close_all(s);
        s->give_up_at = INT64_MAX;
        return 0;
    }
    if (now >= s->give_up_at) {
        close_all(s);
        s->give_up_at = INT64_MAX;
        return NK_ERR_TIMEOUT;
    }
    maybe_attempt(s, now);
    return NK_ERR_AGAIN;
}

void nk_tcp_simopen_stats(const nk_tcp_simopen *s, nk_tcp_simopen_stats_t *out)
{
    *out = s->stats;
}
