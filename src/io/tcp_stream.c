/*
 * natkit: nk_tcp_stream, the thin driver that puts an nk_tcpseal on a
 * non-blocking TCP socket. The only place of the TCP upgrade that touches a
 * socket (the CLI does the listening and connecting).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "natkit/tcp.h"

#define RBUF 65536

struct nk_tcp_stream {
    int fd;
    nk_tcpseal *seal;
    uint8_t rbuf[RBUF];      /* read from the socket, not yet taken by the seal */
    size_t roff, rlen;
    int eof;                 /* the socket said end of file */
};

int nk_tcp_stream_new(nk_tcp_stream **out, int fd, nk_tcpseal *t)
{
    if (out == NULL || fd < 0 || t == NULL)
        return NK_ERR_INVAL;
    nk_tcp_stream *ts = calloc(1, sizeof(*ts));
    if (ts == NULL)
        return NK_ERR_NOMEM;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(ts);
        return NK_ERR_SYSTEM;
    }
    ts->fd = fd;
    ts->seal = t;
    *out = ts;
    return 0;
}

void nk_tcp_stream_free(nk_tcp_stream *ts)
{
    if (ts == NULL)
        return;
    close(ts->fd);
    nk_tcpseal_free(ts->seal);
    free(ts);
}

int nk_tcp_stream_fd(const nk_tcp_stream *ts)
{
    return ts->fd;
}

nk_tcpseal *nk_tcp_stream_seal(nk_tcp_stream *ts)
{
    return ts->seal;
}

short nk_tcp_stream_events(const nk_tcp_stream *ts)
{
    const uint8_t *p;
    short ev = 0;
    if (!ts->eof && ts->rlen == 0 && nk_tcpseal_feed_room(ts->seal) > 0)
        ev |= POLLIN;
    if (nk_tcpseal_pending(ts->seal, &p) > 0)
        ev |= POLLOUT;
    return ev;
}

int nk_tcp_stream_ready(const nk_tcp_stream *ts)
{
    return ts->rlen > 0 && nk_tcpseal_feed_room(ts->seal) > 0;
}

static int flush_out(nk_tcp_stream *ts)
{
    const uint8_t *p;
    size_t n;
    while ((n = nk_tcpseal_pending(ts->seal, &p)) > 0) {
        ssize_t w = send(ts->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return NK_ERR_SYSTEM;
        }
        nk_tcpseal_consume(ts->seal, (size_t)w);
    }
    return 0;
}

/* Hands what was read to the seal; 0 or the seal's error. */
static int feed_seal(nk_tcp_stream *ts)
{
    if (ts->rlen == 0)
        return 0;
    int rc = nk_tcpseal_feed(ts->seal, ts->rbuf + ts->roff, ts->rlen);
    if (rc < 0)
        return rc;
    ts->roff += (size_t)rc;
    ts->rlen -= (size_t)rc;
    if (ts->rlen == 0)
        ts->roff = 0;
    return 0;
}

static int fill_in(nk_tcp_stream *ts)
{
    for (int rounds = 0; rounds < 16; rounds++) {
        int rc = feed_seal(ts);
        if (rc != 0)
            return rc;
        if (ts->rlen > 0 || ts->eof || nk_tcpseal_feed_room(ts->seal) == 0)
            return 0;
        ssize_t r = recv(ts->fd, ts->rbuf, sizeof(ts->rbuf), 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return NK_ERR_SYSTEM;
        }
        if (r == 0) {
            ts->eof = 1;
            return 0;
        }
        ts->roff = 0;
        ts->rlen = (size_t)r;
    }
    return 0;
}

int nk_tcp_stream_pump(nk_tcp_stream *ts)
{
    int rc = flush_out(ts);
    if (rc == 0)
        rc = fill_in(ts);
    if (rc != 0)
        return rc;
    if (nk_tcpseal_error(ts->seal) != 0)
        return nk_tcpseal_error(ts->seal);
    uint8_t tmp[1];
    if (ts->eof && ts->rlen == 0 && nk_tcpseal_read(ts->seal, tmp, 0) == NK_ERR_AGAIN)
        return nk_tcpseal_authenticated(ts->seal) ? NK_ERR_TRUNCATED : NK_ERR_AUTH; /* ended early */
    return 0;
}

int nk_tcp_stream_write(nk_tcp_stream *ts, const uint8_t *p, size_t n)
{
    int rc = nk_tcpseal_write(ts->seal, p, n);
    int frc = flush_out(ts);
    if (frc != 0)
        return frc;
    if (rc == NK_ERR_AGAIN) { /* the kernel may have taken some: try once more */
        rc = nk_tcpseal_write(ts->seal, p, n);
        if (flush_out(ts) != 0)
            return NK_ERR_SYSTEM;
    }
    return rc;
}

int nk_tcp_stream_read(nk_tcp_stream *ts, uint8_t *buf, size_t cap)
{
    int rc = nk_tcpseal_read(ts->seal, buf, cap);
    if (rc == NK_ERR_AGAIN && ts->eof && ts->rlen == 0)
        return nk_tcpseal_authenticated(ts->seal) ? NK_ERR_TRUNCATED : NK_ERR_AUTH;
    return rc;
}

int nk_tcp_stream_shutdown(nk_tcp_stream *ts)
{
    int rc = nk_tcpseal_shutdown(ts->seal);
    if (rc == 0)
        rc = flush_out(ts);
    return rc;
}

int nk_tcp_stream_flushed(const nk_tcp_stream *ts)
{
    const uint8_t *p;
    return nk_tcpseal_pending(ts->seal, &p) == 0;
}
