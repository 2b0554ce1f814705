/*
 * stun_load: natkit's STUN Binding load generator (used by bench/stun.sh).
 *
 *   stun_load --server IP:PORT [--duration S] [--warmup S] [--sockets N] [--window W]
 *             [--batch B] [--timeout-ms T] [--json]
 *
 * One thread, N connected UDP sockets, each keeping W Binding requests
 * outstanding (a closed loop: every answer frees a slot that is refilled at
 * once). Requests go out with sendmmsg and answers come back with recvmmsg, B
 * at a time. Requests are built with the natkit codec and every answer is
 * decoded with it; only a Binding success response whose transaction ID is the
 * one outstanding in its slot and whose XOR-MAPPED-ADDRESS is the socket's own
 * address counts. A request unanswered after T ms is counted lost and its slot
 * reused (an answer arriving later is counted "late", never "ok").
 *
 * The requests a socket has to send, all 20 bytes long, leave in one UDP GSO
 * send (--no-gso, or a kernel without it: sendmmsg), so that generating the
 * load costs less than answering it and the server, not stun_load, is the
 * limit; the server still receives one datagram per request.
 * It busy-polls its sockets (so that a wake-up never waits for the scheduler
 * and the server, not the loop's latency, is the limit); --block sleeps in
 * poll() when nothing is queued. Runs --warmup seconds unmeasured, then --duration seconds measured, and
 * prints responses/s, loss and the mean round-trip time. Exit 1 when not a
 * single valid response arrived in the measured interval.
 *
 * Transaction ID layout: [0..1] slot, [2..5] per-socket sequence, [6..11]
 * random per run, so a response is matched to its slot in O(1).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "natkit/addr.h"
#include "natkit/stun.h"

#define MAX_SOCKETS 1024
#define MAX_WINDOW  4096
#define MAX_BATCH   256
#define REQ_SIZE    NK_STUN_HEADER_SIZE
#define RX_SIZE     512
#define GSO_MAX     64 /* UDP_MAX_SEGMENTS on older kernels */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

typedef struct options {
    nk_addr server;
    double duration_s, warmup_s;
    int sockets, window, batch, timeout_ms, json, block, no_gso;
} options;

typedef struct slot {
    uint8_t tid[NK_STUN_TID_SIZE];
    int64_t sent_us;
    uint8_t busy;
} slot;

typedef struct lsock {
    int fd;
    nk_addr local;
    uint32_t seq;
    slot *slots;
    uint16_t *idle;   /* slots waiting to be (re)sent */
    size_t nidle;
} lsock;

typedef struct counters {
    uint64_t sent, ok, lost, late, invalid, rtt_sum_us;
    int64_t cpu_us; /* this process's user+system time */
} counters;

typedef struct loadgen {
    options o;
    lsock *socks;
    uint8_t run_id[6];
    counters c;
    uint8_t (*rx)[RX_SIZE];
    uint8_t (*tx)[REQ_SIZE];
    struct mmsghdr *msgs;
    struct iovec *iovs;
} loadgen;

static void usage(FILE *f)
{
    fprintf(f, "usage: stun_load --server IP:PORT [--duration S] [--warmup S] [--sockets N]\n"
               "                 [--window W] [--batch B] [--timeout-ms T] [--block] [--no-gso] [--json]\n"
               "defaults: duration 5, warmup 1, sockets 16, window 32 per socket, batch 32,\n"
               "          timeout 1000 ms; busy-polls its sockets unless --block (poll() when idle)\n");
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_secs(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 3600))
        return -1;
    *out = v;
    return 0;
}

static int parse_args(options *o, int argc, char **argv)
{
    *o = (options){.duration_s = 5, .warmup_s = 1, .sockets = 16, .window = 32, .batch = 32, .timeout_ms = 1000};
    int have_server = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--json") || !strcmp(a, "--block") || !strcmp(a, "--no-gso")) {
            *(a[2] == 'j' ? &o->json : a[2] == 'b' ? &o->block : &o->no_gso) = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "stun_load: %s needs a value\n", a);
            return -1;
        }
        if (!strcmp(a, "--server"))
            bad = nk_addr_parse(&o->server, v) != 0, have_server = 1;
        else if (!strcmp(a, "--duration"))
            bad = parse_secs(v, &o->duration_s) || o->duration_s <= 0;
        else if (!strcmp(a, "--warmup"))
            bad = parse_secs(v, &o->warmup_s);
        else if (!strcmp(a, "--sockets"))
            bad = parse_int(v, 1, MAX_SOCKETS, &o->sockets);
        else if (!strcmp(a, "--window"))
            bad = parse_int(v, 1, MAX_WINDOW, &o->window);
        else if (!strcmp(a, "--batch"))
            bad = parse_int(v, 1, MAX_BATCH, &o->batch);
        else if (!strcmp(a, "--timeout-ms"))
            bad = parse_int(v, 1, 60000, &o->timeout_ms);
        else {
            fprintf(stderr, "stun_load: unknown option %s\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "stun_load: bad value for %s: %s\n", a, v);
            return -1;
        }
        i++;
    }
    if (!have_server) {
        fprintf(stderr, "stun_load: --server IP:PORT is required\n");
        return -1;
    }
    return 0;
}

static int open_socket(lsock *s, const nk_addr *server, int window)
{
    struct sockaddr_storage ss;
    unsigned len;
    nk_addr any = {.family = server->family};
    if (server->family == NK_AF_INET) { /* the client side of loopback stays on 127.0.0.1 */
        any.ip[0] = 127;
        any.ip[3] = 1;
        if (server->ip[0] != 127)
            memset(any.ip, 0, sizeof(any.ip));
    }
    s->fd = socket(server->family == NK_AF_INET6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0)
        return -1;
    int buf = 4 << 20;
    setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    nk_addr_to_sockaddr(&any, (struct sockaddr *)&ss, &len);
    if (bind(s->fd, (struct sockaddr *)&ss, len) < 0)
        return -1;
    nk_addr_to_sockaddr(server, (struct sockaddr *)&ss, &len);
    if (connect(s->fd, (struct sockaddr *)&ss, len) < 0)
        return -1;
    socklen_t sl = sizeof(ss);
    if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) < 0 || nk_addr_from_sockaddr(&s->local, (struct sockaddr *)&ss))
        return -1;
    s->slots = calloc((size_t)window, sizeof(*s->slots));
    s->idle = calloc((size_t)window, sizeof(*s->idle));
    if (!s->slots || !s->idle)
        return -1;
    for (int i = 0; i < window; i++)
        s->idle[s->nidle++] = (uint16_t)i;
    return 0;
}

static void make_tid(loadgen *g, lsock *s, uint16_t idx, uint8_t tid[NK_STUN_TID_SIZE])
{
    uint32_t seq = s->seq++;
    tid[0] = (uint8_t)idx;
    tid[1] = (uint8_t)(idx >> 8);
    memcpy(tid + 2, &seq, 4);
    memcpy(tid + 6, g->run_id, 6);
}

/*
 * The n requests built in g->tx (contiguous, REQ_SIZE each) as one GSO send.
 * Returns n, 0 (kernel busy: try later) or -1 (GSO unavailable: it is turned
 * off and the caller sends with sendmmsg).
 */
static int send_gso(loadgen *g, lsock *s, size_t n)
{
    if (n < 2)
        return -1;
    if (n > GSO_MAX)
        n = GSO_MAX;
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = g->tx[0], .iov_len = n * REQ_SIZE};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    uint16_t seg = REQ_SIZE;
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(seg));
    memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    if (sendmsg(s->fd, &h, MSG_DONTWAIT) == (ssize_t)iov.iov_len)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
        return 0;
    g->o.no_gso = 1;
    return -1;
}

/* Sends every idle slot of s, batch by batch; what the kernel refuses stays idle. */
static void send_idle(loadgen *g, lsock *s, int64_t now_us)
{
    while (s->nidle > 0) {
        size_t n = s->nidle < (size_t)g->o.batch ? s->nidle : (size_t)g->o.batch;
        for (size_t i = 0; i < n; i++) {
            uint16_t idx = s->idle[s->nidle - 1 - i];
            nk_stun_builder b;
            make_tid(g, s, idx, s->slots[idx].tid);
            nk_stun_build_begin(&b, g->tx[i], REQ_SIZE, nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST),
                                s->slots[idx].tid);
            int len = nk_stun_build_end(&b);
            g->iovs[i] = (struct iovec){.iov_base = g->tx[i], .iov_len = len > 0 ? (size_t)len : 0};
            g->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &g->iovs[i], .msg_iovlen = 1};
        }
        int sent = g->o.no_gso ? -1 : send_gso(g, s, n);
        if (sent == -1)
            sent = sendmmsg(s->fd, g->msgs, (unsigned)n, MSG_DONTWAIT);
        if (sent <= 0)
            return; /* EAGAIN/ENOBUFS: retried on the next pass */
        for (int i = 0; i < sent; i++) {
            uint16_t idx = s->idle[--s->nidle];
            s->slots[idx].busy = 1;
            s->slots[idx].sent_us = now_us;
        }
        g->c.sent += (uint64_t)sent;
        if ((size_t)sent < n)
            return;
    }
}

/* One received datagram: counts it and frees its slot when it is a valid answer. */
static void on_datagram(loadgen *g, lsock *s, const uint8_t *p, size_t n, int64_t now_us)
{
    nk_stun_msg m;
    nk_addr mapped;
    if (nk_stun_decode(&m, p, n, 0) != 0 || m.type != nk_stun_type(NK_STUN_BINDING, NK_STUN_SUCCESS)) {
        g->c.invalid++;
        return;
    }
    uint16_t idx = (uint16_t)(m.tid[0] | m.tid[1] << 8);
    if (idx >= g->o.window || !s->slots[idx].busy || memcmp(s->slots[idx].tid, m.tid, NK_STUN_TID_SIZE) != 0) {
        g->c.late++; /* answer to a request already counted lost, or not ours */
        return;
    }
    if (nk_stun_get_addr(&m, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, &mapped) != 0 || !nk_addr_equal(&mapped, &s->local)) {
        g->c.invalid++;
        return;
    }
    g->c.ok++;
    g->c.rtt_sum_us += (uint64_t)(now_us - s->slots[idx].sent_us);
    s->slots[idx].busy = 0;
    s->idle[s->nidle++] = idx;
}

/* Drains s; returns how many datagrams it read. */
static int receive(loadgen *g, lsock *s)
{
    int total = 0;
    for (;;) {
        unsigned n = (unsigned)g->o.batch;
        for (unsigned i = 0; i < n; i++) {
            g->iovs[i] = (struct iovec){.iov_base = g->rx[i], .iov_len = RX_SIZE};
            g->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &g->iovs[i], .msg_iovlen = 1};
        }
        int got = recvmmsg(s->fd, g->msgs, n, MSG_DONTWAIT, NULL);
        if (got <= 0)
            return total;
        int64_t now = nk__now_us();
        for (int i = 0; i < got; i++)
            on_datagram(g, s, g->rx[i], g->msgs[i].msg_len, now);
        total += got;
        if ((unsigned)got < n)
            return total;
    }
}

static void expire(loadgen *g, int64_t now_us)
{
    int64_t limit = (int64_t)g->o.timeout_ms * 1000;
    for (int k = 0; k < g->o.sockets; k++) {
        lsock *s = &g->socks[k];
        for (int i = 0; i < g->o.window; i++) {
            if (s->slots[i].busy && now_us - s->slots[i].sent_us > limit) {
                s->slots[i].busy = 0;
                s->idle[s->nidle++] = (uint16_t)i;
                g->c.lost++;
            }
        }
    }
}

static int64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void wait_readable(loadgen *g, struct pollfd *pfds)
{
    for (int k = 0; k < g->o.sockets; k++)
        pfds[k] = (struct pollfd){.fd = g->socks[k].fd, .events = POLLIN};
    poll(pfds, (nfds_t)g->o.sockets, 5);
}

static void run(loadgen *g, counters *measured, double *elapsed_s)
{
    struct pollfd *pfds = calloc((size_t)g->o.sockets, sizeof(*pfds));
    int64_t start = nk__now_us();
    int64_t t_measure = start + (int64_t)(g->o.warmup_s * 1e6);
    int64_t t_end = t_measure + (int64_t)(g->o.duration_s * 1e6);
    int64_t last_expire = start, t0 = 0;
    counters at_start = {0};
    int measuring = 0;
    for (;;) {
        int64_t now = nk__now_us();
        if (!measuring && now >= t_measure) {
            measuring = 1;
            at_start = g->c;
            at_start.cpu_us = cpu_us();
            t0 = now;
        }
        if (now >= t_end)
            break;
        if (now - last_expire > 10000) {
            expire(g, now);
            last_expire = now;
        }
        int got = 0;
        for (int k = 0; k < g->o.sockets; k++) {
            got += receive(g, &g->socks[k]);
            send_idle(g, &g->socks[k], nk__now_us());
        }
        if (got == 0 && g->o.block)
            wait_readable(g, pfds);
    }
    int64_t t1 = nk__now_us();
    *measured = (counters){
        .sent = g->c.sent - at_start.sent,
        .ok = g->c.ok - at_start.ok,
        .lost = g->c.lost - at_start.lost,
        .late = g->c.late - at_start.late,
        .invalid = g->c.invalid - at_start.invalid,
        .rtt_sum_us = g->c.rtt_sum_us - at_start.rtt_sum_us,
        .cpu_us = cpu_us() - at_start.cpu_us,
    };
    *elapsed_s = (double)(t1 - t0) / 1e6;
    free(pfds);
}

static void report(const loadgen *g, const counters *c, double secs)
{
    char server[NK_ADDR_STRLEN];
    nk_addr_format(&g->o.server, server, sizeof(server));
    double rate = secs > 0 ? (double)c->ok / secs : 0;
    double loss = c->sent ? 100.0 * (double)c->lost / (double)c->sent : 0;
    double rtt_us = c->ok ? (double)c->rtt_sum_us / (double)c->ok : 0;
    double cpu = secs > 0 ? 100.0 * (double)c->cpu_us / 1e6 / secs : 0;
    if (g->o.json) {
        printf("{\"server\":\"%s\",\"responses_per_s\":%.0f,\"duration_s\":%.3f,\"sent\":%llu,\"ok\":%llu,"
               "\"lost\":%llu,\"loss_pct\":%.3f,\"late\":%llu,\"invalid\":%llu,\"rtt_mean_us\":%.1f,"
               "\"cpu_pct\":%.1f,\"sockets\":%d,\"window\":%d,\"batch\":%d}\n",
               server, rate, secs, (unsigned long long)c->sent, (unsigned long long)c->ok,
               (unsigned long long)c->lost, loss, (unsigned long long)c->late, (unsigned long long)c->invalid,
               rtt_us, cpu, g->o.sockets, g->o.window, g->o.batch);
    } else {
        printf("stun_load: %s: %.0f responses/s over %.2f s (sockets %d x window %d, batch %d)\n", server, rate,
               secs, g->o.sockets, g->o.window, g->o.batch);
        printf("  sent %llu, ok %llu, lost %llu (%.3f%%), late %llu, invalid %llu, mean RTT %.1f us, load CPU %.0f%%\n",
               (unsigned long long)c->sent, (unsigned long long)c->ok, (unsigned long long)c->lost, loss,
               (unsigned long long)c->late, (unsigned long long)c->invalid, rtt_us, cpu);
    }
}

int main(int argc, char **argv)
{
    loadgen g;
    memset(&g, 0, sizeof(g));
    if (parse_args(&g.o, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    if (g.o.window > 65535)
        g.o.window = 65535;
    if (getrandom(g.run_id, sizeof(g.run_id), 0) != (ssize_t)sizeof(g.run_id)) {
        perror("stun_load: getrandom");
        return 1;
    }
    g.socks = calloc((size_t)g.o.sockets, sizeof(*g.socks));
    g.rx = calloc(MAX_BATCH, sizeof(*g.rx));
    g.tx = calloc(MAX_BATCH, sizeof(*g.tx));
    g.msgs = calloc(MAX_BATCH, sizeof(*g.msgs));
    g.iovs = calloc(MAX_BATCH, sizeof(*g.iovs));
    if (!g.socks || !g.rx || !g.tx || !g.msgs || !g.iovs) {
        fprintf(stderr, "stun_load: out of memory\n");
        return 1;
    }
    for (int k = 0; k < g.o.sockets; k++) {
        if (open_socket(&g.socks[k], &g.o.server, g.o.window) != 0) {
            perror("stun_load: socket");
            return 1;
        }
    }
    counters c;
    double secs;
    run(&g, &c, &secs);
    report(&g, &c, secs);
    for (int k = 0; k < g.o.sockets; k++) {
        close(g.socks[k].fd);
        free(g.socks[k].slots);
        free(g.socks[k].idle);
    }
    free(g.socks);
    free(g.rx);
    free(g.tx);
    free(g.msgs);
    free(g.iovs);
    return c.ok > 0 ? 0 : 1;
}
