/*
 * turn_load: natkit's TURN load generator (used by bench/turn.sh), one
 * process that is both the TURN clients and their echo peer, so the same
 * load can be put on natkit turn-server and on coturn in the same run.
 *
 *   turn_load --server IP:PORT --user U --pass P --mode relay|alloc|hold
 *             [--allocations N] [--window W] [--size BYTES] [--duration S]
 *             [--warmup S] [--hold S] [--json]
 *
 * relay: N allocations, each with a channel bound to the peer socket; each
 *   keeps W ChannelData packets in flight (a closed loop): the server relays
 *   a packet to the peer, the peer echoes it to the relayed address, the
 *   server relays it back as ChannelData and the client sends the next one.
 *   Each round trip is two relayed packets; relayed packets/s is reported.
 *   A client that got nothing for 200 ms has its window counted lost and
 *   refilled.
 * alloc: N concurrent sessions, each a loop of: unauthenticated Allocate
 *   (401), authenticated Allocate, Refresh with LIFETIME 0, on a new socket
 *   every time; allocations/s is reported.
 * hold: makes N allocations (N sockets) and holds them for --hold seconds
 *   after printing "held N" (the bench reads the server's RSS meanwhile).
 *
 * Busy-polls (epoll with no wait) non-blocking sockets with recvmmsg/sendmmsg; identical
 * datagrams to one destination go out as one UDP GSO send (--no-gso: one by one), so that the
 * load costs its CPU less than the servers it drives.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "natkit/addr.h"
#include "natkit/stun.h"
#include "natkit/turn.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define MAX_CLIENTS 8192
#define BATCH       64
#define PKT         2048

typedef struct options {
    nk_addr server;
    const char *user, *pass, *mode;
    int allocations, window, size, json;
    double duration_s, warmup_s, hold_s;
} options;

typedef struct creds {
    char realm[256], nonce[256];
    uint8_t key[32];
    int have;
} creds;

static void die(const char *msg)
{
    fprintf(stderr, "turn_load: %s\n", msg);
    exit(1);
}

static int udp_connected(const nk_addr *server)
{
    struct sockaddr_storage ss;
    unsigned sl;
    nk_addr_to_sockaddr(server, (struct sockaddr *)&ss, &sl);
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0)
        return -1;
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    return fd;
}

/* ---- requests ---- */

typedef struct req {
    uint16_t method;
    uint32_t lifetime;       /* Refresh */
    uint16_t channel;        /* ChannelBind */
    const nk_addr *peer;     /* ChannelBind */
    uint8_t tid[NK_STUN_TID_SIZE];
} req;

static int build(const options *o, const creds *c, req *r, uint8_t *buf, size_t cap)
{
    nk_stun_builder b;
    getrandom(r->tid, sizeof(r->tid), 0);
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(r->method, NK_STUN_REQUEST), r->tid);
    if (r->method == NK_STUN_ALLOCATE) {
        uint8_t v[4] = {NK_TURN_TRANSPORT_UDP, 0, 0, 0};
        nk_stun_build_attr(&b, NK_STUN_ATTR_REQUESTED_TRANSPORT, v, 4);
    } else if (r->method == NK_STUN_REFRESH) {
        nk_stun_build_u32(&b, NK_STUN_ATTR_LIFETIME, r->lifetime);
    } else if (r->method == NK_STUN_CHANNEL_BIND) {
        nk_stun_build_u32(&b, NK_STUN_ATTR_CHANNEL_NUMBER, (uint32_t)r->channel << 16);
        nk_stun_build_addr(&b, NK_STUN_ATTR_XOR_PEER_ADDRESS, r->peer);
    }
    if (c->have) {
        nk_stun_build_string(&b, NK_STUN_ATTR_USERNAME, o->user);
        nk_stun_build_string(&b, NK_STUN_ATTR_REALM, c->realm);
        nk_stun_build_string(&b, NK_STUN_ATTR_NONCE, c->nonce);
        nk_stun_build_integrity(&b, c->key, 16);
    }
    return nk_stun_build_end(&b);
}

/* Takes REALM/NONCE from a 401/438; 0 if the request should be sent again with them. */
static int learn(const options *o, creds *c, const nk_stun_msg *m)
{
    int code;
    const char *reason;
    size_t rl, kl;
    if (nk_stun_get_error(m, &code, &reason, &rl) != 0 || (code != 401 && code != 438))
        return -1;
    if (nk_stun_get_string(m, NK_STUN_ATTR_REALM, c->realm, sizeof(c->realm)) != 0 ||
        nk_stun_get_string(m, NK_STUN_ATTR_NONCE, c->nonce, sizeof(c->nonce)) != 0)
        return -1;
    if (nk_stun_long_term_key(NK_STUN_PWALG_MD5, o->user, c->realm, o->pass, c->key, &kl) != 0)
        return -1;
    c->have = 1;
    return 0;
}

/* Blocking request/response with retransmissions (setup only). 0 with *m decoded into rx, or -1. */
static int exchange(const options *o, int fd, creds *c, req *r, nk_stun_msg *m, uint8_t *rx, size_t cap)
{
    uint8_t tx[1024];
    for (int attempt = 0; attempt < 12; attempt++) {
        int n = build(o, c, r, tx, sizeof(tx));
        if (n < 0 || send(fd, tx, (size_t)n, 0) < 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t deadline = nk__now_ms() + 500;
        while (nk__now_ms() < deadline) {
            if (poll(&p, 1, (int)(deadline - nk__now_ms())) <= 0)
                continue;
            ssize_t got = recv(fd, rx, cap, 0);
            if (got <= 0 || nk_stun_decode(m, rx, (size_t)got, 0) != 0 || memcmp(m->tid, r->tid, sizeof(r->tid)))
                continue;
            if (nk_stun_class(m->type) == NK_STUN_SUCCESS)
                return 0;
            if (learn(o, c, m) != 0)
                return -1;
            break; /* send again with the new nonce */
        }
    }
    return -1;
}

/* ---- relay mode ---- */

typedef struct client {
    int fd;
    nk_addr relay;
    uint32_t inflight;
    uint64_t got_since_check;
} client;

/* Allocates on a new socket; a few tries (a reused 5-tuple with an old allocation gets 437). */
static void setup_client(const options *o, client *cl, const nk_addr *peer, creds *c)
{
    uint8_t rx[PKT];
    nk_stun_msg m;
    for (int attempt = 0;; attempt++) {
        req r = {.method = NK_STUN_ALLOCATE};
        if ((cl->fd = udp_connected(&o->server)) < 0)
            die("socket");
        if (exchange(o, cl->fd, c, &r, &m, rx, sizeof(rx)) == 0 &&
            nk_stun_get_addr(&m, NK_STUN_ATTR_XOR_RELAYED_ADDRESS, &cl->relay) == 0)
            break;
        if (attempt == 4)
            die("Allocate failed");
        close(cl->fd);
    }
    req bind = {.method = NK_STUN_CHANNEL_BIND, .channel = NK_TURN_CHANNEL_MIN, .peer = peer};
    if (exchange(o, cl->fd, c, &bind, &m, rx, sizeof(rx)) != 0)
        die("ChannelBind failed");
}

/* Refresh with LIFETIME 0 on every socket, without waiting for the answers. */
static void release_all(const options *o, const int *fds, size_t stride, int n, creds *c)
{
    uint8_t tx[1024];
    for (int i = 0; i < n; i++) {
        int fd = *(const int *)((const uint8_t *)fds + (size_t)i * stride);
        req r = {.method = NK_STUN_REFRESH, .lifetime = 0};
        int len = build(o, c, &r, tx, sizeof(tx));
        if (fd >= 0 && len > 0)
            send(fd, tx, (size_t)len, 0);
    }
}

static int use_gso = 1; /* --no-gso turns it off */

/* A GSO send of n datagrams (the iovecs) of seg bytes each to h's destination. */
static int send_gso(int fd, struct msghdr *h, struct iovec *iov, int n, uint16_t seg)
{
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(uint16_t))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    h->msg_iov = iov;
    h->msg_iovlen = (size_t)n;
    h->msg_control = ctl.buf;
    h->msg_controllen = sizeof(ctl.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    if (sendmsg(fd, h, MSG_DONTWAIT) >= 0)
        return n;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        use_gso = 0; /* not supported: plain sends from now on */
    return -1;
}

static void send_packets(const options *o, client *cl, int count, const uint8_t *frame, size_t len)
{
    struct mmsghdr msg[BATCH];
    struct iovec iov = {.iov_base = (void *)frame, .iov_len = len};
    while (count > 1 && use_gso) { /* identical frames to the server: one GSO send */
        struct iovec v[BATCH];
        struct msghdr h = {0};
        int n = count < BATCH ? count : BATCH;
        for (int i = 0; i < n; i++)
            v[i] = iov;
        if (send_gso(cl->fd, &h, v, n, (uint16_t)len) < 0)
            break;
        cl->inflight += (uint32_t)n;
        count -= n;
    }
    while (count > 0) {
        int n = count < BATCH ? count : BATCH;
        for (int i = 0; i < n; i++)
            msg[i].msg_hdr = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1};
        int sent = sendmmsg(cl->fd, msg, (unsigned)n, MSG_DONTWAIT);
        if (sent <= 0)
            return; /* the socket buffer is full: counted lost by the stall check */
        cl->inflight += (uint32_t)sent;
        count -= sent;
    }
}

typedef struct rx_batch {
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage name[BATCH];
    uint8_t buf[BATCH][PKT];
} rx_batch;

static int recv_batch(int fd, rx_batch *b)
{
    for (int i = 0; i < BATCH; i++) {
        b->iov[i] = (struct iovec){.iov_base = b->buf[i], .iov_len = PKT};
        b->msg[i].msg_hdr = (struct msghdr){.msg_name = &b->name[i], .msg_namelen = sizeof(b->name[i]),
                                            .msg_iov = &b->iov[i], .msg_iovlen = 1};
    }
    return recvmmsg(fd, b->msg, BATCH, MSG_DONTWAIT, NULL);
}

/* The peer: every datagram goes back to where it came from (the relayed address). */
static uint64_t echo(int peer_fd, rx_batch *b)
{
    int n = recv_batch(peer_fd, b);
    if (n <= 0)
        return 0;
    for (int i = 0; i < n; i++)
        b->iov[i].iov_len = b->msg[i].msg_len;
    int done = 0;
    while (use_gso && done < n) { /* runs back to the same relayed address, same size: one GSO send */
        int end = done + 1;
        while (end < n && b->msg[end].msg_hdr.msg_namelen == b->msg[done].msg_hdr.msg_namelen &&
               !memcmp(b->msg[end].msg_hdr.msg_name, b->msg[done].msg_hdr.msg_name, b->msg[done].msg_hdr.msg_namelen) &&
               b->msg[end].msg_len == b->msg[done].msg_len)
            end++;
        if (end - done == 1) {
            if (sendmsg(peer_fd, &b->msg[done].msg_hdr, MSG_DONTWAIT) < 0)
                break;
        } else {
            struct msghdr h = {.msg_name = b->msg[done].msg_hdr.msg_name, .msg_namelen = b->msg[done].msg_hdr.msg_namelen};
            if (send_gso(peer_fd, &h, &b->iov[done], end - done, (uint16_t)b->msg[done].msg_len) < 0)
                break;
        }
        done = end;
    }
    while (done < n) {
        int s = sendmmsg(peer_fd, b->msg + done, (unsigned)(n - done), MSG_DONTWAIT);
        if (s <= 0)
            break;
        done += s;
    }
    return (uint64_t)n;
}

static int64_t stall_check(const options *o, client *cls, int n, const uint8_t *frame, size_t len, uint64_t *lost)
{
    for (int i = 0; i < n; i++) {
        if (cls[i].got_since_check == 0) {
            *lost += cls[i].inflight;
            cls[i].inflight = 0;
            send_packets(o, &cls[i], o->window, frame, len);
        }
        cls[i].got_since_check = 0;
    }
    return nk__now_ms() + 200;
}

static int run_relay(const options *o)
{
    static rx_batch b;
    static client cls[MAX_CLIENTS];
    uint8_t frame[PKT];
    nk_addr peer;
    int n = o->allocations;
    nk_addr_parse(&peer, o->server.family == NK_AF_INET6 ? "[::1]:0" : "127.0.0.1:0");
    int peer_fd = udp_connected(&o->server);
    /* the peer is unconnected: re-open it bound */
    close(peer_fd);
    struct sockaddr_storage ss;
    unsigned sl;
    nk_addr_to_sockaddr(&peer, (struct sockaddr *)&ss, &sl);
    peer_fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    socklen_t psl = sizeof(ss);
    int sz = 4 << 20;
    setsockopt(peer_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (peer_fd < 0 || bind(peer_fd, (struct sockaddr *)&ss, sl) != 0 ||
        getsockname(peer_fd, (struct sockaddr *)&ss, &psl) != 0)
        die("peer socket");
    nk_addr_from_sockaddr(&peer, (struct sockaddr *)&ss);
    static creds c[MAX_CLIENTS];
    for (int i = 0; i < n; i++)
        setup_client(o, &cls[i], &peer, &c[i]);
    int flen = nk_turn_channel_data_write(frame, sizeof(frame), NK_TURN_CHANNEL_MIN, frame + 4, (size_t)o->size, 0);
    memset(frame + 4, 0xab, (size_t)o->size);
    for (int i = 0; i < n; i++)
        send_packets(o, &cls[i], o->window, frame, (size_t)flen);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)n};
    epoll_ctl(ep, EPOLL_CTL_ADD, peer_fd, &ev);
    for (int i = 0; i < n; i++) {
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, cls[i].fd, &ev);
    }
    uint64_t round_trips = 0, lost = 0;
    int64_t start = nk__now_us(), measure_from = start + (int64_t)(o->warmup_s * 1e6),
            end = measure_from + (int64_t)(o->duration_s * 1e6), next_check = nk__now_ms() + 200;
    uint64_t rt_at_start = 0, lost_at_start = 0;
    int measuring = 0;
    for (uint64_t iter = 0;; iter++) {
        struct epoll_event evs[MAX_CLIENTS < 256 ? MAX_CLIENTS : 256];
        int ready = epoll_wait(ep, evs, 256, 0); /* busy-polls one fd instead of every socket */
        for (int e = 0; e < ready; e++) {
            int i = (int)evs[e].data.u32;
            if (i == n) {
                (void)echo(peer_fd, &b); /* the peer side: its count is not needed */
                continue;
            }
            int got = recv_batch(cls[i].fd, &b);
            if (got <= 0)
                continue;
            cls[i].inflight -= (uint32_t)got <= cls[i].inflight ? (uint32_t)got : cls[i].inflight;
            cls[i].got_since_check += (uint64_t)got;
            round_trips += (uint64_t)got;
            send_packets(o, &cls[i], got, frame, (size_t)flen);
        }
        if ((iter & 63) != 0)
            continue;
        int64_t now = nk__now_us();
        if (!measuring && now >= measure_from) {
            measuring = 1;
            rt_at_start = round_trips;
            lost_at_start = lost;
        }
        if (now >= end)
            break;
        if (now / 1000 >= next_check)
            next_check = stall_check(o, cls, n, frame, (size_t)flen, &lost);
    }
    for (int i = 0; i < n; i++)
        release_all(o, &cls[i].fd, sizeof(client), 1, &c[i]);
    double secs = o->duration_s;
    uint64_t rt = round_trips - rt_at_start, ls = lost - lost_at_start;
    double pps = 2.0 * (double)rt / secs;
    double loss = rt + ls > 0 ? 100.0 * (double)ls / (double)(rt + ls) : 0;
    if (o->json)
        printf("{\"relayed_pps\":%.0f,\"round_trips\":%llu,\"lost\":%llu,\"loss_pct\":%.3f,\"allocations\":%d,"
               "\"window\":%d,\"size\":%d}\n",
               pps, (unsigned long long)rt, (unsigned long long)ls, loss, n, o->window, o->size);
    else
        printf("relayed %.0f packets/s (%llu round trips, %llu lost, %.3f%%)\n", pps, (unsigned long long)rt,
               (unsigned long long)ls, loss);
    return rt > 0 ? 0 : 1;
}

/* ---- alloc and hold modes: sessions as small state machines ---- */

enum { S_IDLE, S_CHALLENGE, S_ALLOCATE, S_REFRESH, S_HELD };

typedef struct session {
    int fd, state;
    creds c;
    req r;
    int64_t sent_ms;
    int tries;
} session;

static void session_send(const options *o, session *s, int64_t now)
{
    uint8_t tx[1024];
    int n = build(o, &s->c, &s->r, tx, sizeof(tx));
    if (n > 0)
        send(s->fd, tx, (size_t)n, 0);
    s->sent_ms = now;
}

static void session_start(const options *o, session *s, int64_t now)
{
    if (s->fd >= 0)
        close(s->fd);
    if ((s->fd = udp_connected(&o->server)) < 0)
        die("socket (raise the open files limit)");
    memset(&s->c, 0, sizeof(s->c));
    s->r = (req){.method = NK_STUN_ALLOCATE};
    s->state = S_CHALLENGE;
    s->tries = 0;
    session_send(o, s, now);
}

/* Advances one session on its answer; returns 1 when an allocation was completed. */
static int session_step(const options *o, session *s, const nk_stun_msg *m, int hold, int64_t now)
{
    int ok = nk_stun_class(m->type) == NK_STUN_SUCCESS, done = 0;
    if (!ok && learn(o, &s->c, m) == 0) { /* 401/438: again, with credentials */
        s->state = s->state == S_CHALLENGE ? S_ALLOCATE : s->state;
        session_send(o, s, now);
        return 0;
    }
    if (!ok) {
        session_start(o, s, now); /* refused: start over */
        return 0;
    }
    if (s->state == S_ALLOCATE || s->state == S_CHALLENGE) {
        done = 1;
        if (hold) {
            s->state = S_HELD;
            return done;
        }
        s->state = S_REFRESH;
        s->r = (req){.method = NK_STUN_REFRESH, .lifetime = 0};
        session_send(o, s, now);
        return done;
    }
    session_start(o, s, now); /* refreshed away: the next allocation on a new socket */
    return 0;
}

static int run_allocs(const options *o, int hold)
{
    static session ss[MAX_CLIENTS];
    uint8_t rx[PKT];
    int n = hold ? (o->allocations < 64 ? o->allocations : 64) : o->allocations, started = 0;
    uint64_t count = 0, at_start = 0, timeouts = 0;
    int64_t now = nk__now_ms(), measure_from = now + (int64_t)(o->warmup_s * 1000),
            end = measure_from + (int64_t)(o->duration_s * 1000);
    int measuring = hold;
    for (int i = 0; i < MAX_CLIENTS; i++)
        ss[i].fd = -1;
    for (; started < n; started++)
        session_start(o, &ss[started], now);
    for (;;) {
        now = nk__now_ms();
        if (!hold && !measuring && now >= measure_from)
            measuring = 1, at_start = count;
        if (!hold && now >= end)
            break;
        if (hold && (int)count >= o->allocations)
            break;
        if (hold && now >= end + 60000)
            die("hold: allocations too slow");
        for (int i = 0; i < started; i++) {
            session *s = &ss[i];
            if (s->state == S_HELD)
                continue;
            ssize_t got = recv(s->fd, rx, sizeof(rx), MSG_DONTWAIT);
            nk_stun_msg m;
            if (got > 0 && nk_stun_decode(&m, rx, (size_t)got, 0) == 0 && !memcmp(m.tid, s->r.tid, 12)) {
                count += (uint64_t)session_step(o, s, &m, hold, now);
                if (hold && s->state == S_HELD && started < o->allocations && started < MAX_CLIENTS)
                    session_start(o, &ss[started++], now);
            } else if (now - s->sent_ms > 500) {
                timeouts++;
                session_send(o, s, now);
            }
        }
    }
    if (hold) {
        printf("held %llu\n", (unsigned long long)count);
        fflush(stdout);
        usleep((useconds_t)(o->hold_s * 1e6)); /* the bench reads the server's memory now */
        for (int i = 0; i < started; i++)
            release_all(o, &ss[i].fd, sizeof(session), 1, &ss[i].c);
        return 0;
    }
    double rate = (double)(count - at_start) / o->duration_s;
    if (o->json)
        printf("{\"allocations_per_s\":%.0f,\"allocations\":%llu,\"retransmissions\":%llu,\"sessions\":%d}\n", rate,
               (unsigned long long)(count - at_start), (unsigned long long)timeouts, n);
    else
        printf("%.0f allocations/s (%llu retransmissions)\n", rate, (unsigned long long)timeouts);
    return count > at_start ? 0 : 1;
}

/* ---- options ---- */

static void usage(void)
{
    fprintf(stderr, "usage: turn_load --server IP:PORT --user U --pass P --mode relay|alloc|hold [--allocations N]\n"
                    "                 [--window W] [--size BYTES] [--duration S] [--warmup S] [--hold S] [--json]\n");
    exit(2);
}

static void parse(options *o, int argc, char **argv)
{
    *o = (options){.mode = "relay", .allocations = 16, .window = 16, .size = 100, .duration_s = 3,
                   .warmup_s = 1, .hold_s = 2};
    int have_server = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--no-gso")) {
            use_gso = 0;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (!strcmp(a, "--server"))
            have_server = nk_addr_parse(&o->server, v) == 0;
        else if (!strcmp(a, "--user"))
            o->user = v;
        else if (!strcmp(a, "--pass"))
            o->pass = v;
        else if (!strcmp(a, "--mode"))
            o->mode = v;
        else if (!strcmp(a, "--allocations"))
            o->allocations = atoi(v);
        else if (!strcmp(a, "--window"))
            o->window = atoi(v);
        else if (!strcmp(a, "--size"))
            o->size = atoi(v);
        else if (!strcmp(a, "--duration"))
            o->duration_s = atof(v);
        else if (!strcmp(a, "--warmup"))
            o->warmup_s = atof(v);
        else if (!strcmp(a, "--hold"))
            o->hold_s = atof(v);
        else
            usage();
    }
    if (!have_server || o->user == NULL || o->pass == NULL || o->allocations < 1 || o->allocations > MAX_CLIENTS ||
        o->window < 1 || o->size < 1 || o->size > 1400 || o->duration_s <= 0)
        usage();
}

int main(int argc, char **argv)
{
    options o;
    parse(&o, argc, argv);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!strcmp(o.mode, "relay"))
        return run_relay(&o);
    if (!strcmp(o.mode, "alloc"))
        return run_allocs(&o, 0);
    if (!strcmp(o.mode, "hold"))
        return run_allocs(&o, 1);
    usage();
    return 2;
}
