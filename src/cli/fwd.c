/* natkit CLI: the byte pump between file descriptors and a stream (see fwd.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fwd.h"
#include "natkit/node_driver.h"

#define RUN_ROUNDS 16 /* buffers moved per call at most (each way); the loop comes back at once */

const char *fwd_err_text(uint64_t code)
{
    switch (code) {
    case FWD_ERR_RESET:
        return "the TCP connection on the other side failed";
    case FWD_ERR_NO_FORWARD:
        return "the listener does not forward a port (it runs without --forward)";
    case FWD_ERR_CONNECT:
        return "the listener could not reach its --forward target";
    case FWD_ERR_PREAMBLE:
        return "the stream did not start with natkit's preamble";
    case FWD_ERR_BUSY:
        return "too many streams at once";
    case FWD_ERR_NOT_STDIO:
        return "a second stdin/stdout stream";
    default:
        return "unknown reason";
    }
}

void fwd_preamble_put(uint8_t out[FWD_PREAMBLE_LEN], int kind)
{
    out[0] = 'N';
    out[1] = 'K';
    out[2] = 'S';
    out[3] = (uint8_t)kind;
}

size_t fwd_preamble_feed(uint8_t acc[FWD_PREAMBLE_LEN], size_t *have, const uint8_t *p, size_t n, int *kind)
{
    static const uint8_t magic[3] = {'N', 'K', 'S'};
    size_t k = 0;
    *kind = 0;
    while (*have < FWD_PREAMBLE_LEN && k < n) {
        acc[*have] = p[k++];
        if (*have < sizeof(magic) && acc[*have] != magic[*have]) {
            *kind = -1;
            return k;
        }
        (*have)++;
    }
    if (*have == FWD_PREAMBLE_LEN)
        *kind = acc[3] == FWD_KIND_STDIO || acc[3] == FWD_KIND_FORWARD ? acc[3] : -1;
    return k;
}

size_t fwd_delivered_put(uint8_t *out, size_t cap, int64_t sid)
{
    char text[FWD_DELIVERED_MAX + 1];
    int n = sid == FWD_DELIVERED_TCP ? snprintf(text, sizeof(text), "%stcp", FWD_DELIVERED_PREFIX)
                                     : snprintf(text, sizeof(text), "%s%lld", FWD_DELIVERED_PREFIX, (long long)sid);
    if (sid < FWD_DELIVERED_TCP || n < 0 || (size_t)n > cap || (size_t)n >= sizeof(text))
        return 0;
    memcpy(out, text, (size_t)n);
    return (size_t)n;
}

int fwd_delivered_parse(const uint8_t *m, size_t n, int64_t *sid)
{
    const size_t pl = sizeof(FWD_DELIVERED_PREFIX) - 1;
    if (n < pl || memcmp(m, FWD_DELIVERED_PREFIX, pl) != 0)
        return 0;
    const uint8_t *p = m + pl, *end = m + n;
    if (end - p == 3 && memcmp(p, "tcp", 3) == 0) {
        *sid = FWD_DELIVERED_TCP;
        return 1;
    }
    /* a QUIC stream ID: 1 to 19 digits, no leading zero, below 2^62 */
    if (p == end || end - p > 19 || (*p == '0' && end - p > 1))
        return -1;
    uint64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v >= (uint64_t)1 << 62)
        return -1;
    *sid = (int64_t)v;
    return 1;
}

int fwd_out_kind(int fd)
{
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0)
        return FWD_OUT_PLAIN;
    if (S_ISFIFO(sb.st_mode))
        return FWD_OUT_PIPE;
    if (S_ISSOCK(sb.st_mode))
        return FWD_OUT_SOCK;
    return FWD_OUT_PLAIN;
}

ssize_t fwd_write_out(int fd, int kind, const uint8_t *p, size_t n)
{
    if (kind == FWD_OUT_SOCK)
        return send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (kind == FWD_OUT_PIPE) {
        /* POLLOUT on a pipe means a free page: a write of up to PIPE_BUF bytes fits at once */
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, 0) <= 0) {
            errno = EAGAIN;
            return -1;
        }
        if (pf.revents & (POLLERR | POLLHUP | POLLNVAL)) {
            errno = EPIPE;
            return -1;
        }
        return write(fd, p, n < PIPE_BUF ? n : PIPE_BUF);
    }
    return write(fd, p, n);
}

int fwd_pump_init(fwd_pump *p, int in_fd, int out_fd, int sock)
{
    memset(p, 0, sizeof(*p));
    p->in_fd = in_fd;
    p->out_fd = out_fd;
    p->sock = sock;
    p->sid = -1;
    p->up = malloc(FWD_BUF);
    p->down = malloc(FWD_BUF);
    if (p->up == NULL || p->down == NULL) {
        fwd_pump_free(p);
        return NK_ERR_NOMEM;
    }
    return 0;
}

void fwd_pump_free(fwd_pump *p)
{
    free(p->up);
    free(p->down);
    p->up = p->down = NULL;
}

void fwd_pump_set_stream(fwd_pump *p, nk_conn *c, int64_t sid)
{
    p->conn = c;
    p->sid = sid;
    p->tcp = NULL;
    p->carrier = NULL;
}

void fwd_pump_set_tcp(fwd_pump *p, nk_conn *c, p2p_tcp *t)
{
    p->tcp = t;
    p->conn = c;
    p->sid = -1;
    p->carrier = NULL;
}

void fwd_pump_set_carrier(fwd_pump *p, const fwd_carrier *k)
{
    p->carrier = k;
    p->tcp = NULL;
    p->conn = NULL;
    p->sid = -1;
}

static int have_stream(const fwd_pump *p)
{
    return p->carrier != NULL || p->tcp != NULL || (p->conn != NULL && p->sid >= 0);
}

/* Read on every run, not on READABLE events: the TCP stream of connect --tcp and carriers. */
static int polled(const fwd_pump *p)
{
    return p->carrier != NULL || p->tcp != NULL;
}

static int pump_write(fwd_pump *p, const uint8_t *b, size_t n)
{
    if (p->carrier != NULL)
        return p->carrier->write(p->carrier->ctx, b, n);
    return fwd_stream_write(p->conn, p->sid, p->tcp, b, n);
}

static int pump_read(fwd_pump *p, uint8_t *b, size_t cap)
{
    if (p->carrier != NULL)
        return p->carrier->read(p->carrier->ctx, b, cap);
    return fwd_stream_read(p->conn, p->sid, p->tcp, b, cap);
}

static void pump_shutdown(fwd_pump *p)
{
    if (p->carrier != NULL)
        p->carrier->shutdown(p->carrier->ctx);
    else
        fwd_stream_shutdown(p->conn, p->sid, p->tcp);
}

int fwd_stream_write(nk_conn *c, int64_t sid, p2p_tcp *t, const uint8_t *b, size_t n)
{
    if (t != NULL)
        return p2p_tcp_write(t, b, n);
    int k = nk_conn_stream_write(c, sid, b, n);
    return k == NK_ERR_AGAIN ? 0 : k;
}

int fwd_stream_read(nk_conn *c, int64_t sid, p2p_tcp *t, uint8_t *b, size_t cap)
{
    if (t != NULL) {
        int k = p2p_tcp_read(t, b, cap);
        return k == NK_ERR_CLOSED ? 0 : k;
    }
    return nk_conn_stream_read(c, sid, b, cap);
}

void fwd_stream_shutdown(nk_conn *c, int64_t sid, p2p_tcp *t)
{
    if (t != NULL)
        p2p_tcp_shutdown(t);
    else
        nk_conn_stream_shutdown(c, sid);
}

size_t fwd_pump_unacked(const fwd_pump *p)
{
    if (p->carrier != NULL)
        return p->carrier->unacked(p->carrier->ctx);
    if (p->tcp != NULL)
        return p2p_tcp_finished(p->tcp) ? 0 : 1;
    return p->conn != NULL && p->sid >= 0 ? nk_conn_stream_unacked(p->conn, p->sid) : 0;
}

/* An RST instead of a FIN when the owner closes the socket (SO_LINGER 0). */
static void rst_socket(fwd_pump *p)
{
    if (!p->sock || p->in_fd < 0)
        return;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(p->in_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void fwd_pump_abort(fwd_pump *p, uint64_t code, const char *why)
{
    if (p->failed)
        return;
    p->failed = 1;
    p->why = why;
    if (p->tcp == NULL && p->conn != NULL && p->sid >= 0)
        nk_conn_stream_reset(p->conn, p->sid, code);
    rst_socket(p);
}

void fwd_pump_on_delivered(fwd_pump *p)
{
    p->delivered = 1;
}

/* The peer's bytes and FIN are on our output: say so (again on the next run while the message
 * channel is full). */
static void tell_delivered(fwd_pump *p)
{
    uint8_t msg[FWD_DELIVERED_MAX];
    int rc;
    if (p->told || !p->out_shut || p->failed || (p->conn == NULL && p->carrier == NULL))
        return;
    if (p->carrier != NULL) {
        rc = p->carrier->tell(p->carrier->ctx); /* the owner's message channel */
    } else {
        size_t n = fwd_delivered_put(msg, sizeof(msg), p->tcp != NULL ? FWD_DELIVERED_TCP : p->sid);
        rc = nk_conn_send(p->conn, nk_node_driver_now(), msg, n);
    }
    if (rc != NK_ERR_AGAIN)
        p->told = 1; /* sent, or the connection is gone (its owner sees DISCONNECTED) */
}

void fwd_pump_on_readable(fwd_pump *p)
{
    p->readable = 1;
}

void fwd_pump_on_reset(fwd_pump *p, uint64_t code)
{
    if (p->failed)
        return;
    p->failed = 1;
    p->why = fwd_err_text(code);
    rst_socket(p);
}

static void sys_fail(fwd_pump *p, const char *why)
{
    p->sys_errno = errno;
    fwd_pump_abort(p, FWD_ERR_RESET, why);
}

void fwd_pump_wants(const fwd_pump *p, short *in_events, short *out_events)
{
    *in_events = *out_events = 0;
    if (p->failed)
        return;
    if (p->in_fd >= 0 && have_stream(p) && !p->in_eof && p->up_len == 0)
        *in_events |= POLLIN;
    if (p->out_fd >= 0 && p->down_len > 0)
        *out_events |= POLLOUT;
}

static int is_again(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* The up buffer -> stream. Returns 1 when something moved, 0 when not, -1 when it failed. */
static int push_up(fwd_pump *p)
{
    int k = pump_write(p, p->up + p->up_off, p->up_len);
    if (k < 0) {
        fwd_pump_abort(p, FWD_ERR_RESET, "the stream refused the bytes");
        return -1;
    }
    p->up_off += (size_t)k;
    p->up_len -= (size_t)k;
    p->bytes_up += (uint64_t)k;
    return k > 0;
}

/* in_fd -> stream. Returns 1 when something moved. */
static int move_up(fwd_pump *p, short in_revents)
{
    int moved = 0;
    if (p->up_len > 0 && (moved = push_up(p)) < 0)
        return 0;
    if (p->up_len == 0 && !p->in_eof && p->in_fd >= 0 && (in_revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(p->in_fd, p->up, FWD_BUF);
        if (n > 0) {
            p->up_off = 0;
            p->up_len = (size_t)n;
            moved = 1;
            if (push_up(p) < 0) /* what read() returned goes out at once */
                return 0;
        } else if (n == 0) {
            p->in_eof = 1;
        } else if (!is_again(errno)) { /* not an end: the peer must not take it for one */
            sys_fail(p, p->sock ? "reading the TCP connection failed" : "reading stdin failed");
            return 0;
        }
    }
    if (p->in_eof && p->up_len == 0 && !p->fin_sent) {
        pump_shutdown(p);
        p->fin_sent = 1;
    }
    return moved;
}

static int flush_down(fwd_pump *p)
{
    while (p->down_len > 0) {
        ssize_t n = fwd_write_out(p->out_fd, p->out_kind, p->down + p->down_off, p->down_len);
        if (n < 0) {
            if (is_again(errno))
                return 0;
            sys_fail(p, p->sock ? "writing the TCP connection failed" : "writing stdout failed");
            return 0;
        }
        p->down_off += (size_t)n;
        p->down_len -= (size_t)n;
    }
    return 1;
}

/* stream -> out_fd. Returns 1 when something moved. */
static int move_down(fwd_pump *p)
{
    int moved = 0;
    if (p->down_len > 0 && !flush_down(p))
        return 0;
    while (!p->failed && p->down_len == 0 && !p->peer_fin && (p->readable || polled(p))) {
        int n = pump_read(p, p->down, FWD_BUF);
        if (n == NK_ERR_AGAIN) {
            p->readable = 0;
            break;
        }
        if (n == 0) {
            p->peer_fin = 1;
            p->readable = 0;
            break;
        }
        if (n < 0) {
            fwd_pump_on_reset(p, FWD_ERR_RESET);
            break;
        }
        p->down_off = 0;
        p->down_len = (size_t)n;
        p->bytes_down += (uint64_t)n;
        moved = 1;
        if (p->out_fd < 0) {
            p->down_len = 0; /* nowhere to go */
            continue;
        }
        if (!flush_down(p))
            break;
        if (polled(p))
            break; /* one buffer per round: p2p_tcp_read (or the carrier) is polled */
    }
    if (p->peer_fin && p->down_len == 0 && !p->out_shut && !p->failed) {
        p->out_shut = 1;
        if (p->sock && p->out_fd >= 0)
            shutdown(p->out_fd, SHUT_WR);
    }
    return moved;
}

void fwd_pump_run(fwd_pump *p, short in_revents, short out_revents)
{
    (void)out_revents; /* out_fd is written whenever down has bytes; EAGAIN waits for POLLOUT */
    if (p->failed || !have_stream(p))
        return;
    tell_delivered(p); /* a retry (the message channel was full) */
    for (int i = 0; i < RUN_ROUNDS && !p->failed; i++) {
        int moved = move_up(p, in_revents);
        moved |= move_down(p);
        in_revents = 0;
        if (!moved)
            break;
        if (p->up_len == 0 && !p->in_eof && p->in_fd >= 0) {
            struct pollfd pf = {.fd = p->in_fd, .events = POLLIN};
            if (poll(&pf, 1, 0) > 0)
                in_revents = pf.revents; /* more to read now: another round */
        }
    }
    tell_delivered(p);
}

int fwd_pump_done(const fwd_pump *p)
{
    if (p->failed)
        return 1;
    return p->fin_sent && p->out_shut && p->told && p->delivered && fwd_pump_unacked(p) == 0;
}
