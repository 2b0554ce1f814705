/*
 * hub_cluster_probe: two real peers, X at hub A and Y at hub B (the same hub
 * for the one-hub baseline), checking and timing what a hub cluster forwards:
 *   - signalling round trips: X sends SIGNAL to Y, Y echoes it back (-n of
 *     them, one at a time): median and p99 in microseconds;
 *   - relay: X sends --relay K RELAY packets of random bytes to Y (windows of
 *     16, each window delivered before the next); every one must arrive tagged
 *     with X's ID and byte-identical;
 *   - a CONNECT to an ID registered nowhere is answered "unknown peer".
 * Prints one JSON object and exits 0 when everything held, 1 otherwise.
 *
 *   - with --burst N: X sends N SIGNAL frames of BURST_SIZE bytes to Y as fast as its hub link
 *     takes them (after running --burst-cmd CMD, e.g. a `redis-cli CLIENT PAUSE` that makes the
 *     cluster's forward queue fill): every one must arrive, in order and intact, and X must hear
 *     no "unknown peer" (backpressure pauses X instead; docs/internals/hub.md).
 *   - with --flood-ms M: X then sends relay packets as fast as its hub link takes them for M
 *     ms (the hubs drop what they cannot pass on); Y's count gives the packet rate.
 *
 *   --tls-a CA: X reaches hub A over TLS (--hub-a is then A's TLS port), trusting the CA file.
 *
 *   hub_cluster_probe --hub-a IP:PORT --hub-b IP:PORT [-n 200] [--relay 300] [--burst N [--burst-cmd CMD]]
 *                     [--tls-a CA] [--flood-ms M] [--timeout S]
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "natkit/hub.h"

#define RELAY_SIZE 1200
#define WINDOW     16
#define BURST_SIZE 2000

typedef struct ppeer {
    nk_identity id;
    nk_hub_client *c;
    nk_hub_link *link;
    int registered, unknown;
    uint64_t echo_seq;      /* X: the last echo received */
    uint64_t relay_ok, relay_bad;
    uint32_t burst_next;    /* Y: the next burst frame expected */
    uint64_t burst_bad;     /* Y: burst frames out of order or damaged */
} ppeer;

static int64_t g_deadline_us;
static uint8_t (*g_relay)[RELAY_SIZE];
static size_t g_nrelay;

/* Burst frame seq: seq u32, then bytes that depend on seq. */
static void burst_fill(uint8_t *p, uint32_t seq)
{
    memcpy(p, &seq, 4);
    for (size_t i = 4; i < BURST_SIZE; i++)
        p[i] = (uint8_t)(seq * 31 + i);
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *msg)
{
    fprintf(stderr, "hub_cluster_probe: %s\n", msg);
    exit(1);
}

static void peer_open(ppeer *p, const nk_addr *hub, const char *tls_ca)
{
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &p->id;
    cc.hub = *hub;
    cc.event_cap = (size_t)16 << 20; /* a pump may read a whole burst before its events are taken */
    if (nk_identity_generate(&p->id) != 0 || nk_hub_client_new(&p->c, &cc) != 0 ||
        nk_hub_link_open(&p->link, hub, tls_ca != NULL, tls_ca, 5000, NULL) != 0 || nk_hub_client_register(p->c, now_us() / 1000) != 0)
        die("cannot connect to a hub");
}

/* X and Y's events; Y echoes signals. */
static void events(ppeer *p, ppeer *other, int is_y)
{
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    while (nk_hub_client_poll_event(p->c, &ev, buf, sizeof(buf)) == 0) {
        if (ev.type == NK_HUB_EV_REGISTERED)
            p->registered = 1;
        else if (ev.type == NK_HUB_EV_UNKNOWN_PEER)
            p->unknown = 1;
        else if (ev.type == NK_HUB_EV_CLOSED)
            die("a hub closed a probe connection");
        if (ev.type != NK_HUB_EV_MESSAGE)
            continue;
        if (!nk_peer_id_equal(&ev.peer, &other->id.id))
            die("a message tagged with the wrong sender");
        if (ev.msg_type == NK_HUB_T_SIGNAL && ev.len == 8 && is_y) {
            if (nk_hub_client_send(p->c, now_us() / 1000, NK_HUB_T_SIGNAL, &other->id.id, buf, 8) != 0)
                die("echo refused");
        } else if (ev.msg_type == NK_HUB_T_SIGNAL && ev.len == 8) {
            memcpy(&p->echo_seq, buf, 8);
        } else if (ev.msg_type == NK_HUB_T_SIGNAL && ev.len == BURST_SIZE && is_y) {
            uint8_t want[BURST_SIZE];
            burst_fill(want, p->burst_next);
            p->burst_bad += memcmp(buf, want, BURST_SIZE) != 0;
            p->burst_next++;
        } else if (ev.msg_type == NK_HUB_T_RELAY && ev.len == RELAY_SIZE + 4 && is_y) {
            uint32_t seq;
            memcpy(&seq, buf, 4);
            if (seq <= g_nrelay && memcmp(buf + 4, g_relay[seq], RELAY_SIZE) == 0)
                p->relay_ok++;
            else
                p->relay_bad++;
        }
    }
}

/* Pumps both links until done() or the deadline. */
static int run_until(ppeer *x, ppeer *y, int (*done)(ppeer *, ppeer *, uint64_t), uint64_t arg)
{
    ppeer *ps[2] = {x, y};
    while (!done(x, y, arg)) {
        if (now_us() > g_deadline_us)
            return 0;
        struct pollfd fds[2];
        for (int i = 0; i < 2; i++) {
            fds[i].fd = nk_hub_link_fd(ps[i]->link);
            fds[i].events = POLLIN | (nk_hub_link_wants_write(ps[i]->link, ps[i]->c) ? POLLOUT : 0);
        }
        poll(fds, 2, 20);
        for (int i = 0; i < 2; i++) {
            if (nk_hub_link_pump(ps[i]->link, ps[i]->c, now_us() / 1000) != 0)
                die("a hub connection was lost");
            events(ps[i], ps[1 - i], i == 1);
        }
    }
    return 1;
}

static int both_registered(ppeer *x, ppeer *y, uint64_t a)
{
    (void)a;
    return x->registered && y->registered;
}
static int echoed(ppeer *x, ppeer *y, uint64_t seq)
{
    (void)y;
    return x->echo_seq == seq;
}
static int relayed(ppeer *x, ppeer *y, uint64_t n)
{
    (void)x;
    return y->relay_ok + y->relay_bad >= n;
}
static int burst_done(ppeer *x, ppeer *y, uint64_t n)
{
    (void)x;
    return y->burst_next >= n;
}
static int unknown(ppeer *x, ppeer *y, uint64_t a)
{
    (void)y;
    (void)a;
    return x->unknown;
}

static int cmp64(const void *a, const void *b)
{
    int64_t p = *(const int64_t *)a, q = *(const int64_t *)b;
    return p < q ? -1 : p > q;
}

int main(int argc, char **argv)
{
    const char *ha = NULL, *hb = NULL;
    size_t n = 200;
    double timeout_s = 30;
    long flood_ms = 0;
    uint32_t burst = 0;
    const char *burst_cmd = NULL, *tls_a = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hub-a") == 0 && i + 1 < argc)
            ha = argv[++i];
        else if (strcmp(argv[i], "--hub-b") == 0 && i + 1 < argc)
            hb = argv[++i];
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--relay") == 0 && i + 1 < argc)
            g_nrelay = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--burst") == 0 && i + 1 < argc)
            burst = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--burst-cmd") == 0 && i + 1 < argc)
            burst_cmd = argv[++i];
        else if (strcmp(argv[i], "--tls-a") == 0 && i + 1 < argc)
            tls_a = argv[++i];
        else if (strcmp(argv[i], "--flood-ms") == 0 && i + 1 < argc)
            flood_ms = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_s = strtod(argv[++i], NULL);
        else
            ha = NULL, i = argc;
    }
    nk_addr a, b;
    if (ha == NULL || hb == NULL || n < 1 || nk_addr_parse(&a, ha) != 0 || nk_addr_parse(&b, hb) != 0) {
        fprintf(stderr, "usage: hub_cluster_probe --hub-a IP:PORT --hub-b IP:PORT [-n N] [--relay K] [--burst N "
                        "[--burst-cmd CMD]] [--tls-a CA] [--flood-ms M] [--timeout S]\n");
        return 2;
    }
    if (sodium_init() < 0)
        die("libsodium");
    g_deadline_us = now_us() + (int64_t)(timeout_s * 1e6);
    g_relay = calloc(g_nrelay + 1, RELAY_SIZE);
    int64_t *rtt = calloc(n, sizeof(*rtt));
    if (g_relay == NULL || rtt == NULL)
        die("out of memory");
    randombytes_buf(g_relay, (g_nrelay + 1) * RELAY_SIZE);
    ppeer x, y;
    memset(&x, 0, sizeof(x));
    memset(&y, 0, sizeof(y));
    peer_open(&x, &a, tls_a);
    peer_open(&y, &b, NULL);
    int ok_reg = run_until(&x, &y, both_registered, 0);

    size_t got = 0;
    for (uint64_t seq = 1; ok_reg && seq <= n; seq++) {
        int64_t t0 = now_us();
        if (nk_hub_client_send(x.c, t0 / 1000, NK_HUB_T_SIGNAL, &y.id.id, (const uint8_t *)&seq, 8) != 0)
            die("send refused");
        if (!run_until(&x, &y, echoed, seq))
            break;
        rtt[got++] = now_us() - t0;
    }
    qsort(rtt, got, sizeof(*rtt), cmp64);

    uint8_t pkt[RELAY_SIZE + 4];
    int ok_relay = ok_reg && got == n;
    int64_t r0 = now_us();
    for (size_t i = 0; ok_relay && i < g_nrelay; i++) {
        uint32_t seq = (uint32_t)i;
        memcpy(pkt, &seq, 4);
        memcpy(pkt + 4, g_relay[i], RELAY_SIZE);
        if (nk_hub_client_send(x.c, now_us() / 1000, NK_HUB_T_RELAY, &y.id.id, pkt, sizeof(pkt)) != 0)
            die("relay send refused");
        if ((i + 1) % WINDOW == 0 || i + 1 == g_nrelay)
            ok_relay = run_until(&x, &y, relayed, i + 1);
    }
    int64_t relay_us = now_us() - r0;
    ok_relay = ok_relay && y.relay_ok == g_nrelay && y.relay_bad == 0;

    nk_identity ghost;
    nk_identity_generate(&ghost);
    nk_hub_client_send(x.c, now_us() / 1000, NK_HUB_T_CONNECT, &ghost.id, (const uint8_t *)"hi", 2);
    int ok_unknown = ok_relay && run_until(&x, &y, unknown, 0);

    /* the burst: X's frames must all arrive in order, and X must hear no "unknown peer" */
    uint32_t burst_sent = 0;
    int64_t b0 = now_us();
    int ok_burst = ok_unknown;
    x.unknown = 0;
    if (ok_burst && burst > 0 && burst_cmd != NULL && system(burst_cmd) != 0)
        die("--burst-cmd failed");
    while (ok_burst && burst_sent < burst && !x.unknown) {
        uint8_t frame[BURST_SIZE];
        burst_fill(frame, burst_sent);
        while (burst_sent < burst && nk_hub_client_pending(x.c) < 65536 &&
               nk_hub_client_send(x.c, now_us() / 1000, NK_HUB_T_SIGNAL, &y.id.id, frame, sizeof(frame)) == 0)
            burst_fill(frame, ++burst_sent);
        int64_t saved = g_deadline_us;
        g_deadline_us = now_us() + 10000;
        (void)run_until(&x, &y, burst_done, UINT64_MAX); /* one poll round (10 ms at most) */
        g_deadline_us = saved;
        ok_burst = now_us() <= g_deadline_us;
    }
    ok_burst = ok_burst && !x.unknown && run_until(&x, &y, burst_done, burst) && !x.unknown && y.burst_bad == 0;
    int64_t burst_us = now_us() - b0;

    /* the flood: as fast as X's link takes them, then 1 s for the rest to arrive */
    uint64_t flood_sent = 0, before = y.relay_ok + y.relay_bad;
    int64_t f_end = now_us() + flood_ms * 1000, f_drain = f_end + 1000000;
    while (ok_unknown && flood_ms > 0 && now_us() < f_drain) {
        memcpy(pkt, &(uint32_t){0}, 4);
        memcpy(pkt + 4, g_relay[0], RELAY_SIZE);
        while (now_us() < f_end && nk_hub_client_pending(x.c) < 65536 &&
               nk_hub_client_send(x.c, now_us() / 1000, NK_HUB_T_RELAY, &y.id.id, pkt, sizeof(pkt)) == 0)
            flood_sent++;
        if (now_us() >= f_end && y.relay_ok + y.relay_bad - before >= flood_sent)
            break;
        g_deadline_us = now_us() + 10000;
        (void)run_until(&x, &y, relayed, UINT64_MAX); /* one poll round (10 ms at most) */
    }
    uint64_t flood_got = y.relay_ok + y.relay_bad - before;

    int ok = ok_reg && got == n && ok_relay && ok_unknown && ok_burst && (flood_ms == 0 || y.relay_bad == 0);
    printf("{\"registered\":%s,\"signals\":%zu,\"signal_rtt_us_median\":%lld,\"signal_rtt_us_p99\":%lld,"
           "\"relay_sent\":%zu,\"relay_ok\":%llu,\"relay_bad\":%llu,\"relay_ms\":%lld,\"unknown_peer\":%s,"
           "\"burst_sent\":%lu,\"burst_received\":%lu,\"burst_bad\":%llu,\"burst_unknown\":%s,\"burst_ms\":%lld,"
           "\"flood_sent\":%llu,\"flood_received\":%llu,\"flood_pps\":%.0f,\"ok\":%s}\n",
           ok_reg ? "true" : "false", got, got ? (long long)rtt[got / 2] : -1LL,
           got ? (long long)rtt[got * 99 / 100 < got ? got * 99 / 100 : got - 1] : -1LL, g_nrelay,
           (unsigned long long)y.relay_ok, (unsigned long long)y.relay_bad, (long long)(relay_us / 1000),
           ok_unknown ? "true" : "false", (unsigned long)burst_sent, (unsigned long)y.burst_next,
           (unsigned long long)y.burst_bad, x.unknown ? "true" : "false", (long long)(burst_us / 1000),
           (unsigned long long)flood_sent, (unsigned long long)flood_got,
           flood_ms > 0 ? (double)flood_got * 1000.0 / (double)flood_ms : 0.0, ok ? "true" : "false");
    nk_hub_link_free(x.link);
    nk_hub_link_free(y.link);
    nk_hub_client_free(x.c);
    nk_hub_client_free(y.c);
    free(g_relay);
    free(rtt);
    return ok ? 0 : 1;
}
