/*
 * hub_load: N real peers against a running hub, from one process. Each peer
 * gets its own identity and TCP (or TLS) connection; the tool checks, in
 * phases: every peer registers; every peer gets a candidate and a relay packet
 * from its neighbour, tagged with the neighbour's ID; a message to an unknown
 * ID is answered "unknown peer"; a proof for someone else's ID is refused; a
 * second registration of an ID replaces the first connection. (The forged
 * proof is sent over plain TCP only; with --tls it is skipped.) Prints one JSON
 * object (timings; hub RTTs during the registration burst and, one peer at a
 * time, with everyone registered and idle) and exits 0 when everything held, 1 otherwise.
 *
 *   hub_load --hub 127.0.0.1:7000 [-n 1000] [--tls [--ca FILE]] [--timeout SECONDS]
 *            [--relay-seconds S]   then: peer 1 floods peer 0 with 1200-byte relay packets
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "natkit/hub.h"

typedef struct lpeer {
    uint64_t relay_rx, relay_rx_bytes;
    nk_identity id;
    nk_hub_client *c;
    nk_hub_link *link;
    int registered, got_candidate, got_relay, got_unknown, got_connect, closed_code;
    int64_t rtt;
} lpeer;

static nk_addr g_hub;
static int g_tls;
static const char *g_ca;
static double g_flood_s; /* relay flood from peer 1 to peer 0, seconds */ /* verify the hub's certificate against this file */
static int64_t g_deadline;
static size_t g_n;

static void die(const char *msg)
{
    fprintf(stderr, "hub_load: %s\n", msg);
    exit(1);
}

static int peer_open(lpeer *p)
{
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &p->id;
    cc.hub = g_hub;
    p->closed_code = -1;
    p->rtt = -1;
    if (nk_hub_link_open(&p->link, &g_hub, g_tls, g_ca, 5000, NULL) != 0)
        return -1;
    if (p->c == NULL && nk_hub_client_new(&p->c, &cc) != 0)
        return -1;
    return nk_hub_client_register(p->c, nk__now_ms());
}

static void peer_events(lpeer *peers, size_t i)
{
    lpeer *p = &peers[i];
    nk_hub_event ev;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    while (nk_hub_client_poll_event(p->c, &ev, buf, sizeof(buf)) == 0) {
        switch (ev.type) {
        case NK_HUB_EV_REGISTERED: p->registered = 1; break;
        case NK_HUB_EV_PONG: p->rtt = ev.rtt_ms; break;
        case NK_HUB_EV_UNKNOWN_PEER: p->got_unknown = 1; break;
        case NK_HUB_EV_CLOSED: p->closed_code = ev.code; break;
        case NK_HUB_EV_MESSAGE: {
            uint32_t from;
            if (ev.msg_type == NK_HUB_T_RELAY && ev.len > 4) { /* the relay flood */
                p->relay_rx++;
                p->relay_rx_bytes += ev.len;
                break;
            }
            if (ev.len != 4)
                break;
            memcpy(&from, buf, 4);
            if (from >= g_n || !nk_peer_id_equal(&ev.peer, &peers[from].id.id))
                die("message tagged with the wrong sender");
            if (ev.msg_type == NK_HUB_T_CANDIDATE)
                p->got_candidate = 1;
            else if (ev.msg_type == NK_HUB_T_RELAY)
                p->got_relay = 1;
            else if (ev.msg_type == NK_HUB_T_CONNECT)
                p->got_connect = 1;
            break;
        }
        }
    }
}

/* Runs every link until done() holds or the deadline passes. */
static int run_until(lpeer *peers, size_t n, int (*done)(lpeer *, size_t))
{
    struct pollfd *fds = calloc(n, sizeof(*fds));
    if (fds == NULL)
        die("out of memory");
    int ok = 0;
    while (!(ok = done(peers, n)) && nk__now_ms() < g_deadline) {
        for (size_t i = 0; i < n; i++) {
            fds[i].fd = peers[i].link != NULL ? nk_hub_link_fd(peers[i].link) : -1;
            fds[i].events = POLLIN;
            if (peers[i].link != NULL && nk_hub_link_wants_write(peers[i].link, peers[i].c))
                fds[i].events |= POLLOUT;
        }
        poll(fds, (nfds_t)n, 50);
        int64_t now = nk__now_ms();
        for (size_t i = 0; i < n; i++) {
            if (peers[i].link == NULL)
                continue;
            if (nk_hub_link_pump(peers[i].link, peers[i].c, now) != 0) {
                nk_hub_link_free(peers[i].link);
                peers[i].link = NULL;
            }
            peer_events(peers, i);
        }
    }
    free(fds);
    return ok;
}

static int all_registered(lpeer *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!p[i].registered)
            return 0;
    return 1;
}

static int all_delivered(lpeer *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!p[i].got_candidate || !p[i].got_relay || p[i].rtt < 0)
            return 0;
    return p[0].got_unknown;
}

static int replaced(lpeer *p, size_t m)
{
    /* p[m - 1] is the old connection of p[0]'s identity */
    return p[m - 1].closed_code == NK_HUB_CLOSE_REPLACED && p[0].got_connect;
}

/* A raw connection that claims victim's ID with a proof signed by another key. */
static int forged_is_refused(const nk_peer_id *victim)
{
    struct sockaddr_storage ss;
    unsigned len = sizeof(ss);
    nk_addr_to_sockaddr(&g_hub, (struct sockaddr *)&ss, &len);
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) != 0)
        die("raw connect failed");
    uint8_t buf[512];
    ssize_t r = recv(fd, buf, 4 + 33, MSG_WAITALL);
    if (r != 37 || buf[0] != NK_HUB_T_CHALLENGE)
        die("no challenge on the raw connection");
    nk_identity attacker;
    nk_identity_generate(&attacker);
    uint8_t msg[NK_HUB_PROOF_MSG_SIZE], body[97];
    int n = nk_hub_proof_message(msg, sizeof(msg), buf + 5, &g_hub, victim);
    body[0] = NK_HUB_VERSION;
    memcpy(body + 1, victim->key, 32);
    nk_identity_sign(&attacker, msg, (size_t)n, body + 33);
    n = nk_hub_frame_write(buf, sizeof(buf), NK_HUB_T_REGISTER, body, sizeof(body));
    if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
        die("raw send failed");
    r = recv(fd, buf, sizeof(buf), 0);
    close(fd);
    nk_hub_frame f;
    return r > 0 && nk_hub_frame_parse(buf, (size_t)r, NK_HUB_MAX_BODY, &f) > 0 && f.type == NK_HUB_T_CLOSE &&
           f.len >= 2 && (f.body[0] << 8 | f.body[1]) == NK_HUB_CLOSE_AUTH;
}

/* Hub RTT one peer at a time (the others registered and idle): max over samples. */
static int64_t idle_rtt_max(lpeer *peers, size_t n, size_t samples)
{
    int64_t worst = -1;
    for (size_t k = 0; k < samples; k++) {
        lpeer *p = &peers[1 + k * (n - 1) / samples];
        p->rtt = -1;
        nk_hub_client_ping(p->c, nk__now_ms());
        int64_t deadline = nk__now_ms() + 10000; /* generous: a loaded CI machine */
        while (p->rtt < 0 && p->link != NULL && nk__now_ms() < deadline) {
            if (nk_hub_link_wait(p->link, p->c, 100) != 0)
                die("link lost during the RTT samples");
            peer_events(peers, (size_t)(p - peers));
        }
        if (p->rtt < 0)
            return -1;
        worst = p->rtt > worst ? p->rtt : worst;
    }
    return worst;
}

/* tx floods rx with relay packets of size bytes for ms; returns packets sent. */
static uint64_t relay_flood(lpeer *peers, size_t tx, size_t rx, size_t size, int64_t ms)
{
    static uint8_t pkt[NK_HUB_MAX_PAYLOAD];
    memset(pkt, 0xab, sizeof(pkt));
    uint64_t sent = 0;
    int64_t end = nk__now_ms() + ms, drain_end = end + 1000;
    size_t who[2] = {tx, rx};
    for (;;) {
        int64_t now = nk__now_ms();
        if (now >= drain_end || (now >= end && peers[rx].relay_rx == sent))
            break;
        while (now < end && nk_hub_client_pending(peers[tx].c) < 65536 &&
               nk_hub_client_send(peers[tx].c, now, NK_HUB_T_RELAY, &peers[rx].id.id, pkt, size) == 0)
            sent++;
        struct pollfd fds[2];
        for (int i = 0; i < 2; i++) {
            fds[i].fd = nk_hub_link_fd(peers[who[i]].link);
            fds[i].events = POLLIN;
            if (nk_hub_link_wants_write(peers[who[i]].link, peers[who[i]].c))
                fds[i].events |= POLLOUT;
        }
        poll(fds, 2, 10);
        for (int i = 0; i < 2; i++) {
            if (nk_hub_link_pump(peers[who[i]].link, peers[who[i]].c, nk__now_ms()) != 0)
                die("link lost during the relay flood");
            peer_events(peers, who[i]);
        }
    }
    return sent;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void send_all(lpeer *peers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t me = (uint32_t)i;
        const nk_peer_id *to = &peers[(i + 1) % n].id.id;
        if (nk_hub_client_send(peers[i].c, nk__now_ms(), NK_HUB_T_CANDIDATE, to, (uint8_t *)&me, 4) != 0 ||
            nk_hub_client_send(peers[i].c, nk__now_ms(), NK_HUB_T_RELAY, to, (uint8_t *)&me, 4) != 0)
            die("send refused");
    }
    nk_identity ghost;
    nk_identity_generate(&ghost);
    nk_hub_client_send(peers[0].c, nk__now_ms(), NK_HUB_T_CONNECT, &ghost.id, (const uint8_t *)"hi", 2);
}

int main(int argc, char **argv)
{
    size_t n = 1000;
    double timeout_s = 60;
    const char *hub = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hub") == 0 && i + 1 < argc)
            hub = argv[++i];
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--tls") == 0)
            g_tls = 1;
        else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
            g_ca = argv[++i];
        else if (strcmp(argv[i], "--relay-seconds") == 0 && i + 1 < argc)
            g_flood_s = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_s = strtod(argv[++i], NULL);
        else {
            fprintf(stderr, "usage: hub_load --hub IP:PORT [-n N] [--tls [--ca FILE]] [--timeout SECONDS] [--relay-seconds S]\n");
            return 2;
        }
    }
    if (hub == NULL || n < 2 || nk_addr_parse(&g_hub, hub) != 0) {
        fprintf(stderr, "usage: hub_load --hub IP:PORT [-n N>=2] [--tls [--ca FILE]] [--timeout SECONDS] [--relay-seconds S]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g_n = n;
    g_deadline = nk__now_ms() + (int64_t)(timeout_s * 1000);
    lpeer *peers = calloc(n + 1, sizeof(*peers));
    if (peers == NULL)
        die("out of memory");

    int64_t t0 = nk__now_ms();
    for (size_t i = 0; i < n; i++) {
        nk_identity_generate(&peers[i].id);
        if (peer_open(&peers[i]) != 0)
            die("cannot connect to the hub");
    }
    int64_t t_conn = nk__now_ms();
    int ok_reg = run_until(peers, n, all_registered);
    int64_t t_reg = nk__now_ms();
    send_all(peers, n);
    int ok_del = ok_reg && run_until(peers, n, all_delivered);
    int64_t t_del = nk__now_ms();
    int64_t rtt_idle = ok_del ? idle_rtt_max(peers, n, 20) : -1;
    int ok_forged = g_tls ? 1 : forged_is_refused(&peers[1].id.id); /* raw frames: plain TCP only */

    /* p[0]'s identity registers again on a new connection; the old one moves to p[n] */
    peers[n] = peers[0];
    peers[0].c = NULL;
    peers[0].registered = peers[0].got_connect = 0;
    if (peer_open(&peers[0]) != 0)
        die("cannot reconnect");
    int ok_rep = ok_del && run_until(peers, n + 1, all_registered) && !nk_peer_id_equal(&peers[0].id.id, &peers[1].id.id);
    nk_hub_client_send(peers[1].c, nk__now_ms(), NK_HUB_T_CONNECT, &peers[0].id.id, (const uint8_t *)"\1\0\0\0", 4);
    ok_rep = ok_rep && run_until(peers, n + 1, replaced);

    uint64_t flood_sent = 0;
    int64_t flood_ms = (int64_t)(g_flood_s * 1000);
    if (ok_rep && flood_ms > 0)
        flood_sent = relay_flood(peers, 1, 0, 1200, flood_ms);

    int64_t *rtts = calloc(n, sizeof(*rtts));
    size_t nr = 0;
    for (size_t i = 1; i < n; i++)
        if (peers[i].rtt >= 0)
            rtts[nr++] = peers[i].rtt;
    qsort(rtts, nr, sizeof(*rtts), cmp64);
    int ok = ok_reg && ok_del && ok_forged && ok_rep && rtt_idle >= 0;
    printf("{\"peers\":%zu,\"tls\":%s,\"connect_ms\":%lld,\"register_ms\":%lld,\"deliver_ms\":%lld,"
           "\"registered\":%s,\"delivered\":%s,\"unknown_peer\":%s,\"forged_refused\":%s,\"replaced\":%s,"
           "\"hub_rtt_ms_burst_median\":%lld,\"hub_rtt_ms_burst_max\":%lld,\"hub_rtt_ms_idle_max\":%lld,\"relay_sent\":%llu,\"relay_received\":%llu,"
           "\"relay_pps\":%.0f,\"relay_mbit_s\":%.1f,\"ok\":%s}\n",
           n, g_tls ? "true" : "false", (long long)(t_conn - t0), (long long)(t_reg - t_conn),
           (long long)(t_del - t_reg), ok_reg ? "true" : "false", ok_del ? "true" : "false",
           peers[0].got_unknown || peers[n].got_unknown ? "true" : "false", ok_forged ? "true" : "false",
           ok_rep ? "true" : "false", nr ? (long long)rtts[nr / 2] : -1LL, nr ? (long long)rtts[nr - 1] : -1LL,
           (long long)rtt_idle,
           (unsigned long long)flood_sent, (unsigned long long)peers[0].relay_rx,
           flood_ms > 0 ? (double)peers[0].relay_rx * 1000.0 / (double)flood_ms : 0.0,
           flood_ms > 0 ? (double)peers[0].relay_rx_bytes * 8.0 / 1000.0 / (double)flood_ms : 0.0,
           ok ? "true" : "false");
    for (size_t i = 0; i <= n; i++) {
        nk_hub_link_free(peers[i].link);
        nk_hub_client_free(peers[i].c);
    }
    free(rtts);
    free(peers);
    return ok ? 0 : 1;
}
