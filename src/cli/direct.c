/*
 * natkit CLI: the loop behind `natkit accept` and `natkit dial`.
 *
 *   dial -> accept   HELLO (plaintext: nonce, local address), resent until the REPLY
 *   accept -> dial   REPLY (acceptor's peer ID, the address the HELLO came from)
 *   dial <-> accept  Noise IK session over that one UDP path (peer ID proved)
 *   accept           TCP listener; nk_upgrade ANNOUNCE (sealed session messages,
 *                    resent until ACKed); session keepalives hold the UDP mapping
 *   dial             connects; both open an nk_tcpseal keyed from the session and the
 *                    announcement's token; the acceptor keeps the first connection
 *                    that authenticates and refuses the others
 *   both             stdin bytes -> TCP -> the peer's stdout; if TCP fails, over the
 *                    UDP session instead (said on stderr)
 * Status goes to stderr; stdout carries only what the peer sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "direct.h"
#include "direct_hello.h"
#include "natkit/session.h"
#include "natkit/tcp.h"
#include "udp.h"

#define PATH_ID        1
#define HELLO_RTO_MS   250
#define TCP_CONNECT_MS 10000
#define MAX_CAND       4
#define UDP_CHUNK      1100
#define DATA_TAG       'D'

typedef struct cand {
    nk_tcp_stream *ts;
    nk_addr from;
} cand;

typedef struct dstate {
    nk_direct_opts *o;
    nk_identity id;
    int udp;
    nk_addr peer_addr;            /* where the peer's UDP packets come from / go to */
    int have_peer_addr;
    nk__hello hello;              /* dial: what we send */
    int64_t hello_next_ms;
    int have_reply;
    nk_session *s;
    int session_up;
    nk_upgrade *u;
    int lfd;                      /* accept: TCP listener */
    cand cands[MAX_CAND];
    int cfd;                      /* dial: TCP connecting */
    int64_t cfd_deadline;
    nk_addr tcp_target;
    uint8_t token[NK_TCP_TOKEN_LEN];
    nk_tcp_stream *ts;            /* dial: ours (authenticated or not yet); accept: the winner */
    int tcp_up, udp_fallback;
    int64_t tcp_up_ms;
    uint8_t in[65536];            /* from stdin, not yet taken */
    size_t in_off, in_len;
    int stdin_open, shut, peer_done;
    uint64_t sent, received;
    int64_t start_ms;
    int done, status;
} dstate;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(dstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(dstate *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "natkit %s: ", st->o->cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

static void fail(dstate *st, int status)
{
    st->done = 1;
    st->status = status;
}

/* ---- identity ---- */

int nk_direct_load_key(const char *cmd, const char *file, nk_identity *id)
{
    char path[PATH_MAX];
    if (file == NULL) {
        if (nk_identity_default_path(path, sizeof(path)) != 0) {
            fprintf(stderr, "natkit %s: no default key path (set HOME or use --key)\n", cmd);
            return -1;
        }
        file = path;
        if (access(file, F_OK) != 0) {
            if (nk_identity_generate(id) != 0 || nk_identity_save(id, file) != 0) {
                fprintf(stderr, "natkit %s: could not create a key at %s\n", cmd, file);
                return -1;
            }
            fprintf(stderr, "natkit %s: made a new identity key at %s\n", cmd, file);
            return 0;
        }
    }
    int rc = nk_identity_load(id, file);
    if (rc != 0) {
        fprintf(stderr, "natkit %s: cannot load key %s: %s\n", cmd, file, nk_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- printing ---- */

static const char *mapping_text(const nk_addr *local, const nk_addr *mapped)
{
    if (nk_addr_equal(local, mapped))
        return "no NAT on this path (the address is seen unchanged)";
    if (local->port == mapped->port)
        return "NAT: address translated, port preserved";
    return "NAT: address and port translated";
}

static void print_mapping(dstate *st, const char *who, const nk_addr *local, const nk_addr *mapped)
{
    char l[NK_ADDR_STRLEN], m[NK_ADDR_STRLEN];
    nk_addr_format(local, l, sizeof(l));
    nk_addr_format(mapped, m, sizeof(m));
    say(st, "%s UDP mapping: local %s is seen as %s: %s", who, l, m, mapping_text(local, mapped));
}

static void print_id(dstate *st, const char *what, const nk_peer_id *id)
{
    char text[NK_PEER_ID_STRLEN];
    nk_peer_id_format(id, text, sizeof(text));
    say(st, "%s %s", what, text);
}

/* ---- UDP ---- */

static void udp_send(dstate *st, const uint8_t *p, size_t n)
{
    if (st->have_peer_addr)
        nk__udp_send(st->udp, &st->peer_addr, p, n);
}

static void flush_session(dstate *st, int64_t now)
{
    uint8_t buf[2048];
    nk_session_transmit tx;
    if (st->s == NULL)
        return;
    while (nk_session_poll_transmit(st->s, now, &tx, buf, sizeof(buf)) == 0)
        udp_send(st, buf, tx.len);
}

static void send_hello(dstate *st, int64_t now)
{
    uint8_t buf[NK__HELLO_LEN];
    int n = nk__hello_encode(&st->hello, buf, sizeof(buf));
    if (n > 0)
        udp_send(st, buf, (size_t)n);
    st->hello_next_ms = now + HELLO_RTO_MS;
}

static int start_initiator(dstate *st, int64_t now)
{
    nk_session_config c;
    memset(&c, 0, sizeof(c));
    c.identity = &st->id;
    c.peer = st->o->have_peer_id ? &st->o->peer_id : &st->hello.id;
    c.initiator = 1;
    c.keepalive_ms = 5000; /* holds the NAT's UDP mapping while TCP carries the data */
    int rc = nk_session_new(&st->s, &c, now);
    if (rc == 0)
        rc = nk_session_connect(st->s, PATH_ID, now);
    if (rc != 0) {
        say(st, "cannot start the session: %s", nk_strerror(rc));
        fail(st, NK_EXIT_FAIL);
    }
    return rc;
}

/* dial: the acceptor's REPLY names it and says how our mapping looks from there. */
static void on_reply(dstate *st, const nk__hello *h, const nk_addr *local, int64_t now)
{
    if (st->have_reply || memcmp(h->nonce, st->hello.nonce, 8) != 0)
        return;
    st->have_reply = 1;
    print_id(st, "acceptor's peer ID:", &h->id);
    if (st->o->have_peer_id && !nk_peer_id_equal(&h->id, &st->o->peer_id)) {
        say(st, "that is not the pinned --peer-id: refusing");
        fail(st, NK_EXIT_FAIL);
        return;
    }
    say(st, st->o->have_peer_id ? "it matches --peer-id (pinned)"
                                : "trust on first use: compare it with the ID the acceptor printed (or pin it with --peer-id)");
    nk_addr l = *local;
    l.port = st->hello.addr.port;
    print_mapping(st, "our", &l, &h->addr);
    st->hello.id = h->id;
    start_initiator(st, now);
}

/* accept: answer every HELLO (it is padded, so the answer is no bigger). */
static void on_hello(dstate *st, const nk__hello *h, const nk_addr *from)
{
    nk__hello r;
    uint8_t buf[NK__REPLY_LEN];
    memset(&r, 0, sizeof(r));
    r.reply = 1;
    memcpy(r.nonce, h->nonce, 8);
    r.id = st->id.id;
    r.addr = *from;
    int n = nk__hello_encode(&r, buf, sizeof(buf));
    if (n > 0)
        nk__udp_send(st->udp, from, buf, (size_t)n);
    if (!st->have_peer_addr)
        print_mapping(st, "the dialer's", &h->addr, from);
}

static int start_responder(dstate *st, const nk_addr *from, int64_t now)
{
    nk_session_config c;
    memset(&c, 0, sizeof(c));
    c.identity = &st->id;
    c.keepalive_ms = 5000;
    int rc = nk_session_new(&st->s, &c, now);
    if (rc != 0) {
        say(st, "cannot start the session: %s", nk_strerror(rc));
        fail(st, NK_EXIT_FAIL);
        return rc;
    }
    st->peer_addr = *from;
    st->have_peer_addr = 1;
    return 0;
}

static void on_datagram(dstate *st, const uint8_t *p, size_t n, const nk_addr *from, const nk_addr *local,
                        int64_t now)
{
    nk__hello h;
    if (nk__hello_is(p, n)) {
        if (nk__hello_decode(&h, p, n) != 0)
            return;
        if (st->o->acceptor && !h.reply)
            on_hello(st, &h, from);
        else if (!st->o->acceptor && h.reply && nk_addr_equal(from, &st->peer_addr))
            on_reply(st, &h, local, now);
        return;
    }
    int type;
    uint32_t idx;
    if (st->o->acceptor && st->s == NULL && nk_session_peek(p, n, &type, &idx) == 0 &&
        type == NK_SESSION_PKT_INIT && start_responder(st, from, now) != 0)
        return;
    if (st->s == NULL || !nk_addr_equal(from, &st->peer_addr))
        return; /* one peer, one path */
    nk_session_handle_datagram(st->s, now, PATH_ID, p, n);
}

static void read_udp(dstate *st, int64_t now)
{
    uint8_t buf[2048];
    nk_addr from, local;
    for (int i = 0; i < 64; i++) {
        int n = nk__udp_recv(st->udp, buf, sizeof(buf), &from, &local);
        if (n < 0)
            return;
        on_datagram(st, buf, (size_t)n, &from, &local, now);
    }
}

/* ---- TCP: the acceptor's side ---- */

static int open_listener(dstate *st, uint16_t *port)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(st->o->tcp_port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void start_announce(dstate *st, int64_t now)
{
    uint16_t port;
    st->lfd = open_listener(st, &port);
    if (st->lfd < 0) {
        say(st, "cannot listen on TCP: %s; staying on UDP", strerror(errno));
        st->udp_fallback = 1;
        return;
    }
    nk_addr a = st->o->advertise;
    a.port = port;
    nk_upgrade_announce(st->u, now, &a);
    memcpy(st->token, nk_upgrade_token(st->u), NK_TCP_TOKEN_LEN);
    say(st, "TCP listening on port %u; announcing it over UDP", port);
}

static void accept_one(dstate *st)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(st->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int slot = -1;
    for (int i = 0; i < MAX_CAND; i++)
        if (st->cands[i].ts == NULL)
            slot = i;
    nk_tcpseal *t;
    if (slot < 0 || nk_tcpseal_new(&t, st->s, st->token, 0) != 0) {
        close(fd);
        return;
    }
    if (nk_tcp_stream_new(&st->cands[slot].ts, fd, t) != 0) {
        nk_tcpseal_free(t);
        close(fd);
        return;
    }
    nk_addr_from_sockaddr(&st->cands[slot].from, (struct sockaddr *)&ss);
}

static void tcp_is_up(dstate *st, const nk_addr *remote, int64_t now)
{
    char r[NK_ADDR_STRLEN];
    nk_addr_format(remote, r, sizeof(r));
    st->tcp_up = 1;
    st->tcp_up_ms = now;
    say(st, "TCP stream with %s is up (sealed with keys from the session; peer authenticated)", r);
}

/* The first candidate that authenticates wins; the listener closes (the token is used up). */
static void check_cands(dstate *st, int64_t now)
{
    char f[NK_ADDR_STRLEN];
    for (int i = 0; i < MAX_CAND && !st->tcp_up; i++) {
        cand *c = &st->cands[i];
        if (c->ts == NULL)
            continue;
        int rc = nk_tcp_stream_pump(c->ts);
        if (rc != 0) {
            say(st, "refused a TCP connection from %s: %s", nk_addr_format(&c->from, f, sizeof(f)), nk_strerror(rc));
            nk_tcp_stream_free(c->ts);
            c->ts = NULL;
        } else if (nk_tcpseal_authenticated(nk_tcp_stream_seal(c->ts))) {
            st->ts = c->ts;
            c->ts = NULL;
            tcp_is_up(st, &c->from, now);
        }
    }
    if (!st->tcp_up)
        return;
    for (int i = 0; i < MAX_CAND; i++) {
        nk_tcp_stream_free(st->cands[i].ts);
        st->cands[i].ts = NULL;
    }
    close(st->lfd);
    st->lfd = -1;
}

/* ---- TCP: the dialer's side ---- */

static void dial_failed(dstate *st, int err, int64_t now)
{
    say(st, "TCP to the announced port failed (%s): staying on the UDP session", nk_strerror(err));
    nk_upgrade_report(st->u, now, err);
    if (st->cfd >= 0)
        close(st->cfd);
    st->cfd = -1;
    nk_tcp_stream_free(st->ts);
    st->ts = NULL;
    st->udp_fallback = 1;
}

static void on_announced(dstate *st, const nk_upgrade_event *ev, int64_t now)
{
    struct sockaddr_storage ss;
    unsigned sl;
    char t[NK_ADDR_STRLEN];
    if (st->cfd >= 0 || st->ts != NULL || st->udp_fallback)
        return;
    st->tcp_target = ev->addr;
    if (ev->addr.family == NK_AF_NONE) {
        st->tcp_target = st->peer_addr;
        st->tcp_target.port = ev->addr.port;
    }
    memcpy(st->token, ev->token, NK_TCP_TOKEN_LEN);
    say(st, "the acceptor announced TCP %s; connecting", nk_addr_format(&st->tcp_target, t, sizeof(t)));
    if (nk_addr_to_sockaddr(&st->tcp_target, (struct sockaddr *)&ss, &sl) != 0) {
        dial_failed(st, NK_ERR_ADDRESS, now);
        return;
    }
    st->cfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (st->cfd < 0 || (connect(st->cfd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS)) {
        dial_failed(st, NK_ERR_SYSTEM, now);
        return;
    }
    st->cfd_deadline = now + TCP_CONNECT_MS;
}

static void dial_progress(dstate *st, int64_t now)
{
    if (st->cfd >= 0) {
        int err = 0;
        socklen_t el = sizeof(err);
        struct pollfd pf = {st->cfd, POLLOUT, 0};
        if (poll(&pf, 1, 0) == 1) {
            getsockopt(st->cfd, SOL_SOCKET, SO_ERROR, &err, &el);
            nk_tcpseal *t;
            if (err != 0 || nk_tcpseal_new(&t, st->s, st->token, 0) != 0) {
                dial_failed(st, NK_ERR_SYSTEM, now);
                return;
            }
            if (nk_tcp_stream_new(&st->ts, st->cfd, t) != 0) {
                nk_tcpseal_free(t);
                dial_failed(st, NK_ERR_SYSTEM, now);
                return;
            }
            st->cfd = -1;
        }
    }
    if (st->ts == NULL || st->tcp_up)
        return;
    int rc = nk_tcp_stream_pump(st->ts);
    if (rc != 0)
        dial_failed(st, rc, now);
    else if (nk_tcpseal_authenticated(nk_tcp_stream_seal(st->ts))) {
        tcp_is_up(st, &st->tcp_target, now);
        nk_upgrade_report(st->u, now, 0);
    } else if (now > st->cfd_deadline)
        dial_failed(st, NK_ERR_TIMEOUT, now);
}

/* ---- the session's events and messages ---- */

static void on_upgrade_event(dstate *st, const nk_upgrade_event *ev, int64_t now)
{
    nk_upgrade_stats us;
    switch (ev->type) {
    case NK_UPGRADE_EV_ANNOUNCED:
        on_announced(st, ev, now);
        break;
    case NK_UPGRADE_EV_ACKED:
        nk_upgrade_get_stats(st->u, &us);
        say(st, "the dialer has the announcement (sent %llu times)", (unsigned long long)(us.retransmits + 1));
        break;
    case NK_UPGRADE_EV_RESULT:
        if (ev->err != 0) {
            say(st, "the dialer could not connect over TCP (%s): staying on the UDP session", nk_strerror(ev->err));
            st->udp_fallback = 1;
        }
        break;
    case NK_UPGRADE_EV_FAILED:
        if (!st->tcp_up) {
            say(st, "the TCP announcement was never acknowledged: staying on the UDP session");
            st->udp_fallback = 1;
        }
        break;
    }
}

static void on_session_up(dstate *st, int64_t now)
{
    nk_session_stats ss;
    st->session_up = 1;
    nk_session_get_stats(st->s, &ss);
    print_id(st, "secure session up with peer ID", nk_session_peer(st->s));
    say(st, "(Noise IK over UDP, rtt %lld ms)", (long long)ss.srtt_ms);
    if (st->o->no_tcp)
        st->udp_fallback = 1;
    else if (st->o->acceptor)
        start_announce(st, now);
}

static void write_out(dstate *st, const uint8_t *p, size_t n)
{
    fwrite(p, 1, n, stdout);
    st->received += n;
}

static void session_messages(dstate *st, int64_t now)
{
    uint8_t buf[NK_SESSION_MAX_MESSAGE];
    int n;
    while ((n = nk_session_recv(st->s, buf, sizeof(buf))) > 0) {
        if (nk_upgrade_is_message(buf, (size_t)n))
            nk_upgrade_handle_message(st->u, now, buf, (size_t)n);
        else if (buf[0] == DATA_TAG)
            write_out(st, buf + 1, (size_t)n - 1);
    }
    fflush(stdout);
}

static void drive_session(dstate *st, int64_t now)
{
    nk_session_event ev;
    nk_upgrade_event uev;
    uint8_t msg[NK_UPGRADE_MAX_MESSAGE];
    if (st->s == NULL)
        return;
    if (now >= nk_session_next_deadline(st->s))
        nk_session_handle_timeout(st->s, now);
    while (nk_session_poll_event(st->s, &ev) == 0) {
        if (ev.type == NK_SESSION_EV_CONNECTED)
            on_session_up(st, now);
        else if (ev.type == NK_SESSION_EV_CLOSED && !st->tcp_up) {
            say(st, "the session closed: %s", ev.err != 0 ? nk_strerror(ev.err) : "by the peer");
            fail(st, st->peer_done && !st->stdin_open ? NK_EXIT_OK : NK_EXIT_FAIL);
        }
    }
    session_messages(st, now);
    nk_upgrade_handle_timeout(st->u, now);
    int n;
    while (st->session_up && (n = nk_upgrade_poll_message(st->u, now, msg, sizeof(msg))) > 0)
        nk_session_send(st->s, msg, (size_t)n); /* a full queue loses it; nk_upgrade resends */
    while (nk_upgrade_poll_event(st->u, &uev) == 0)
        on_upgrade_event(st, &uev, now);
    flush_session(st, now);
}

/* ---- stdin -> the peer ---- */

static int data_phase(const dstate *st)
{
    return st->tcp_up || st->udp_fallback;
}

static void read_stdin(dstate *st)
{
    ssize_t n = read(STDIN_FILENO, st->in, st->o->acceptor || st->tcp_up ? sizeof(st->in) : UDP_CHUNK);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
        st->stdin_open = 0;
    if (n > 0) {
        st->in_off = 0;
        st->in_len = (size_t)n;
    }
}

static void push_tcp(dstate *st)
{
    while (st->in_len > 0) {
        int rc = nk_tcp_stream_write(st->ts, st->in + st->in_off, st->in_len);
        if (rc <= 0)
            break;
        st->in_off += (size_t)rc;
        st->in_len -= (size_t)rc;
        st->sent += (uint64_t)rc;
    }
    if (!st->stdin_open && st->in_len == 0 && !st->shut && nk_tcp_stream_shutdown(st->ts) == 0)
        st->shut = 1;
}

static void push_udp(dstate *st, int64_t now)
{
    uint8_t msg[UDP_CHUNK + 1];
    while (st->in_len > 0) {
        size_t c = st->in_len < UDP_CHUNK ? st->in_len : UDP_CHUNK;
        msg[0] = DATA_TAG;
        memcpy(msg + 1, st->in + st->in_off, c);
        if (nk_session_send(st->s, msg, c + 1) != 0)
            break;
        st->in_off += c;
        st->in_len -= c;
        st->sent += c;
    }
    flush_session(st, now);
    if (!st->stdin_open && st->in_len == 0 && nk_session_unacked(st->s) == 0)
        st->shut = 1;
}

static void pull_tcp(dstate *st)
{
    uint8_t buf[65536];
    int rc = 0, n, moved = 1;
    /* reading makes room in the seal, which may take what the driver holds or the kernel has: again */
    for (int round = 0; round < 32 && moved && rc == 0; round++) {
        moved = 0;
        rc = nk_tcp_stream_pump(st->ts);
        while (rc == 0 && (n = nk_tcp_stream_read(st->ts, buf, sizeof(buf))) > 0) {
            write_out(st, buf, (size_t)n);
            moved = 1;
        }
    }
    fflush(stdout);
    if (rc == 0)
        rc = nk_tcp_stream_read(st->ts, buf, sizeof(buf));
    if (rc == NK_ERR_CLOSED) {
        if (!st->peer_done)
            say(st, "the peer finished sending");
        st->peer_done = 1;
    } else if (rc != NK_ERR_AGAIN && rc != 0) {
        say(st, "TCP stream failed: %s", nk_strerror(rc));
        fail(st, NK_EXIT_FAIL);
    }
}

static void report_throughput(dstate *st, int64_t now)
{
    double secs = (double)(now - st->tcp_up_ms) / 1000.0;
    if (secs <= 0)
        secs = 0.001;
    say(st, "%s: sent %llu bytes, received %llu bytes in %.3f s (%.1f MB/s total)", st->tcp_up ? "TCP" : "UDP",
        (unsigned long long)st->sent, (unsigned long long)st->received, secs,
        (double)(st->sent + st->received) / 1e6 / secs);
}

static void drive_data(dstate *st, int64_t now)
{
    if (st->tcp_up) {
        pull_tcp(st);
        if (!st->done)
            push_tcp(st);
        if (st->shut && st->peer_done && nk_tcp_stream_flushed(st->ts)) {
            report_throughput(st, now);
            st->done = 1;
        }
    } else if (st->udp_fallback && st->session_up) {
        push_udp(st, now);
        if (st->shut) {
            report_throughput(st, now);
            st->done = 1;
        }
    }
}

/* ---- the loop ---- */

static int64_t next_deadline(const dstate *st, int64_t now)
{
    int64_t d = now + 1000;
    if (!st->o->acceptor && !st->have_reply && st->hello_next_ms < d)
        d = st->hello_next_ms;
    if (st->s != NULL && nk_session_next_deadline(st->s) < d)
        d = nk_session_next_deadline(st->s);
    if (nk_upgrade_next_deadline(st->u) < d)
        d = nk_upgrade_next_deadline(st->u);
    if (st->cfd >= 0 && st->cfd_deadline < d)
        d = st->cfd_deadline;
    if (st->ts != NULL && nk_tcp_stream_ready(st->ts))
        d = now;
    return d;
}

static nfds_t build_pollfds(dstate *st, struct pollfd *pf)
{
    nfds_t n = 0;
    pf[n++] = (struct pollfd){st->udp, POLLIN, 0};
    if (data_phase(st) && st->stdin_open && st->in_len == 0)
        pf[n++] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
    if (st->lfd >= 0)
        pf[n++] = (struct pollfd){st->lfd, POLLIN, 0};
    if (st->cfd >= 0)
        pf[n++] = (struct pollfd){st->cfd, POLLOUT, 0};
    if (st->ts != NULL)
        pf[n++] = (struct pollfd){nk_tcp_stream_fd(st->ts), nk_tcp_stream_events(st->ts), 0};
    for (int i = 0; i < MAX_CAND; i++)
        if (st->cands[i].ts != NULL)
            pf[n++] = (struct pollfd){nk_tcp_stream_fd(st->cands[i].ts), POLLIN, 0};
    return n;
}

static void step(dstate *st, const struct pollfd *pf, nfds_t npf, int64_t now)
{
    read_udp(st, now);
    for (nfds_t i = 1; i < npf; i++) {
        if (pf[i].fd == STDIN_FILENO && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
            read_stdin(st);
        if (pf[i].fd == st->lfd && (pf[i].revents & POLLIN))
            accept_one(st);
    }
    if (!st->o->acceptor && !st->have_reply && now >= st->hello_next_ms)
        send_hello(st, now);
    drive_session(st, now);
    if (st->o->acceptor)
        check_cands(st, now);
    else
        dial_progress(st, now);
    drive_data(st, now);
    if (!st->session_up && !st->o->acceptor && now - st->start_ms > st->o->timeout_ms) {
        say(st, "no answer from the acceptor within %ld s", st->o->timeout_ms / 1000);
        fail(st, NK_EXIT_FAIL);
    }
}

/* The address to print for `accept`: --advertise-ip, else the first IPv4 address of an interface that is up and
 * not loopback. */
static void pick_advertise(const dstate *st, nk_addr *out)
{
    struct ifaddrs *ifs, *i;
    *out = st->o->advertise;
    if (out->family != NK_AF_NONE || getifaddrs(&ifs) != 0)
        return;
    for (i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) != 0 ||
            (i->ifa_flags & IFF_UP) == 0)
            continue;
        if (nk_addr_from_sockaddr(out, i->ifa_addr) == 0)
            break;
    }
    freeifaddrs(ifs);
    if (out->family == NK_AF_NONE)
        nk_addr_parse_ip(out, "127.0.0.1");
}

/* The local IP the kernel would use toward peer (a connected UDP socket sends nothing). */
static void local_toward(const nk_addr *peer, nk_addr *local)
{
    struct sockaddr_storage ss;
    unsigned sl;
    socklen_t gl = sizeof(ss);
    nk_addr got;
    if (nk_addr_to_sockaddr(peer, (struct sockaddr *)&ss, &sl) != 0)
        return;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&ss, sl) == 0 && getsockname(fd, (struct sockaddr *)&ss, &gl) == 0 &&
        nk_addr_from_sockaddr(&got, (struct sockaddr *)&ss) == 0) {
        memcpy(local->ip, got.ip, sizeof(got.ip));
        local->family = got.family;
    }
    close(fd);
}

static int open_udp(dstate *st)
{
    char text[NK_ADDR_STRLEN];
    nk_addr local, shown;
    st->udp = nk__udp_open(&st->o->bind, 0);
    if (st->udp < 0) {
        say(st, "cannot bind UDP %s: %s", nk_addr_format(&st->o->bind, text, sizeof(text)), strerror(errno));
        return -1;
    }
    nk__udp_local(st->udp, &local);
    print_id(st, "my peer ID is", &st->id.id);
    if (st->o->acceptor) {
        pick_advertise(st, &shown);
        shown.port = local.port;
        fprintf(stderr, "UDP listen addr to share: %s\n", nk_addr_format(&shown, text, sizeof(text)));
        fflush(stderr);
        return 0;
    }
    st->hello.addr = local;
    local_toward(&st->o->peer, &st->hello.addr);
    randombytes_buf(st->hello.nonce, sizeof(st->hello.nonce));
    st->peer_addr = st->o->peer;
    st->have_peer_addr = 1;
    return 0;
}

static void cleanup(dstate *st)
{
    if (st->s != NULL) {
        nk_session_close(st->s, now_ms());
        flush_session(st, now_ms());
    }
    nk_tcp_stream_free(st->ts);
    for (int i = 0; i < MAX_CAND; i++)
        nk_tcp_stream_free(st->cands[i].ts);
    if (st->lfd >= 0)
        close(st->lfd);
    if (st->cfd >= 0)
        close(st->cfd);
    if (st->udp >= 0)
        close(st->udp);
    nk_upgrade_free(st->u);
    nk_session_free(st->s);
    nk_identity_wipe(&st->id);
}

int nk_direct_run(nk_direct_opts *o)
{
    static dstate st; /* big buffers; one per process */
    memset(&st, 0, sizeof(st));
    st.o = o;
    st.udp = st.lfd = st.cfd = -1;
    st.stdin_open = 1;
    st.start_ms = now_ms();
    nk_upgrade_config uc = {.acceptor = o->acceptor};
    if (nk_direct_load_key(o->cmd, o->key_file, &st.id) != 0 || nk_upgrade_new(&st.u, &uc) != 0 || open_udp(&st) != 0) {
        cleanup(&st);
        return NK_EXIT_FAIL;
    }
    nk_cli_install_stop_signals();
    struct pollfd pf[4 + MAX_CAND];
    while (!st.done && !nk_cli_stop_requested) {
        int64_t now = now_ms();
        nfds_t n = build_pollfds(&st, pf);
        int64_t wait = next_deadline(&st, now) - now;
        if (poll(pf, n, wait < 0 ? 0 : (int)wait) < 0 && errno != EINTR)
            break;
        step(&st, pf, n, now_ms());
    }
    cleanup(&st);
    return st.status;
}
