/*
 * conn_load: many concurrent nk_conn connections in ONE process, and the heap each idle one keeps.
 *
 * In this process: a hub (nk_hub_service on 127.0.0.1:0, its own thread), one listening node
 * and N connecting nodes (nk_node_driver each: a node holds one connection per peer, so N
 * connections need N peers). Phases:
 *   1. every node registers at the hub; the heap is measured (baseline);
 *   2. every connector connects to the listener by peer ID (hub signalling, then the direct
 *      loopback path) and opens a stream; both ends write --bytes bytes of a per-connection
 *      pattern on it and read and check the other's;
 *   3. everything acknowledged, the streams stay open, nothing moves for --idle-ms: the heap is
 *      measured ("idle, stream open");
 *   4. both ends finish their stream (FIN, read to the end), idle again, heap measured
 *      ("idle, no stream").
 * The per-connection figures are (heap now - baseline) / N: both ends of every connection are in
 * this process, so "per endpoint" (what one peer holding N connections pays) is half of it. Heap
 * in use is mallinfo2() (in-use bytes of every arena + mmapped blocks); RSS from /proc/self/statm;
 * QUIC's own count (ngtcp2 + natkit's stream buffers, GnuTLS not included) from nk_conn_stats.
 *
 * Exit 0 when it measured (whatever the figures), 1 when it could not (a connection failed,
 * bytes differed, the deadline passed).
 *
 *   conn_load [-n 200] [--bytes 65536] [--idle-ms 1500] [--timeout 60] [--json]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natkit/hub_service.h"
#include "natkit/identity.h"
#include "natkit/natkit.h"
#include "natkit/node.h"
#include "natkit/node_driver.h"

#define GOAL_BYTES (64 * 1024)

typedef struct end {
    nk_conn *conn;
    int64_t sid;          /* the stream (-1: none yet) */
    size_t tx, rx;        /* pattern bytes written / read and checked */
    int connected, shut, fin, bad, reset;
} end;

typedef struct lnode {
    size_t idx;           /* 0: the listener; 1..N: connectors (connection idx - 1) */
    nk_identity id;
    nk_node_driver *drv;
    int registered;
} lnode;

static size_t g_n = 200, g_bytes = 65536;
static int64_t g_idle_ms = 1500, g_deadline;
static lnode *g_nodes;    /* [0] listener, [1..N] connectors */
static end *g_srv, *g_cli; /* per connection: the listener's end, the connector's end */
static int g_failed;
static int64_t g_t0;
static size_t g_wave_end;
#define WAVE 25
static const char *g_why = "";

static void fail_now(const char *why)
{
    if (!g_failed)
        g_why = why;
    g_failed = 1;
}

/* The byte at offset i of connection k, direction dir (0: connector -> listener). */
static uint8_t pattern(size_t k, int dir, size_t i)
{
    return (uint8_t)(i * 7 + (i >> 9) + k * 13 + (size_t)dir * 101);
}

static void write_some(end *e, size_t k, int dir)
{
    uint8_t buf[16384];
    while (e->sid >= 0 && e->tx < g_bytes) {
        size_t n = g_bytes - e->tx < sizeof(buf) ? g_bytes - e->tx : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(k, dir, e->tx + i);
        int w = nk_conn_stream_write(e->conn, e->sid, buf, n);
        if (w == NK_ERR_AGAIN)
            return; /* STREAM_WRITABLE follows */
        if (w < 0) {
            fail_now("stream write failed");
            return;
        }
        e->tx += (size_t)w;
        if ((size_t)w < n)
            return;
    }
}

static void read_some(end *e, size_t k, int dir)
{
    uint8_t buf[16384];
    for (;;) {
        int r = nk_conn_stream_read(e->conn, e->sid, buf, sizeof(buf));
        if (r == NK_ERR_AGAIN || r == NK_ERR_NOT_FOUND)
            return;
        if (r < 0) {
            fail_now("stream read failed");
            return;
        }
        if (r == 0) {
            if (e->rx != g_bytes)
                e->bad = 1;
            e->fin = 1;
            return;
        }
        for (int i = 0; i < r; i++)
            if (e->rx + (size_t)i >= g_bytes || buf[i] != pattern(k, dir, e->rx + (size_t)i))
                e->bad = 1;
        e->rx += (size_t)r;
        if (e->bad)
            fail_now("stream bytes differ");
    }
}

/* The listener's end of a connection: by peer ID. */
static size_t conn_index(const nk_peer_id *peer)
{
    for (size_t k = 0; k < g_n; k++)
        if (nk_peer_id_equal(peer, &g_nodes[k + 1].id.id))
            return k;
    return SIZE_MAX;
}

static void on_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    lnode *nd = ctx;
    (void)d;
    if (ev->type == NK_NODE_EV_REGISTERED) {
        nd->registered = 1;
        return;
    }
    if (ev->type == NK_NODE_EV_HUB_CLOSED) {
        fail_now("hub connection closed");
        return;
    }
    size_t k;
    end *e;
    int dir; /* the direction this end reads */
    if (nd->idx == 0) {
        k = conn_index(nk_conn_peer(ev->conn));
        if (k == SIZE_MAX)
            return;
        e = &g_srv[k];
        dir = 0;
    } else {
        k = nd->idx - 1;
        e = &g_cli[k];
        dir = 1;
    }
    switch (ev->type) {
    case NK_NODE_EV_INCOMING:
        e->conn = ev->conn;
        break;
    case NK_NODE_EV_CONNECTED:
        e->conn = ev->conn;
        e->connected = 1;
        if (nd->idx != 0 && e->sid < 0) {
            if (nk_conn_stream_open(e->conn, &e->sid) != 0)
                fail_now("stream open failed");
            write_some(e, k, 0);
        }
        break;
    case NK_NODE_EV_STREAM_OPENED:
        if (nd->idx == 0 && e->sid < 0) {
            e->sid = ev->stream_id;
            write_some(e, k, 1);
        }
        break;
    case NK_NODE_EV_STREAM_WRITABLE:
        write_some(e, k, 1 - dir);
        break;
    case NK_NODE_EV_STREAM_READABLE:
        if (ev->stream_id == e->sid)
            read_some(e, k, dir);
        break;
    case NK_NODE_EV_STREAM_RESET:
        e->reset = 1;
        fail_now("stream reset");
        break;
    case NK_NODE_EV_DISCONNECTED:
        fprintf(stderr, "conn_load: connection %zu (%s end) lost after %lld ms: %s (%s)\n", k,
                nd->idx == 0 ? "listening" : "connecting", (long long)(nk_node_driver_now() - g_t0),
                ev->reason != NULL ? ev->reason : "-", nk_strerror(ev->err));
        fail_now("a connection was lost");
        break;
    default:
        break;
    }
}

/* One round over every node; the last poll waits up to 1 ms so an idle process sleeps. */
static void poll_all(void)
{
    for (size_t i = 1; i <= g_n; i++)
        nk_node_driver_poll(g_nodes[i].drv, 0, -1);
    nk_node_driver_poll(g_nodes[0].drv, 1, -1);
}

static int run_until(int (*done)(void), const char *what)
{
    while (!done()) {
        if (g_failed)
            return -1;
        if (nk_node_driver_now() > g_deadline) {
            fail_now(what);
            return -1;
        }
        poll_all();
    }
    return g_failed ? -1 : 0;
}

static void run_for(int64_t ms)
{
    int64_t until = nk_node_driver_now() + ms;
    while (nk_node_driver_now() < until && !g_failed)
        poll_all();
}

static int all_registered(void)
{
    for (size_t i = 0; i <= g_n; i++)
        if (!g_nodes[i].registered)
            return 0;
    return 1;
}

static int wave_connected(void)
{
    for (size_t k = 0; k < g_wave_end; k++)
        if (!g_srv[k].connected || !g_cli[k].connected)
            return 0;
    return 1;
}

static int all_moved(void)
{
    for (size_t k = 0; k < g_n; k++) {
        const end *s = &g_srv[k], *c = &g_cli[k];
        if (!s->connected || !c->connected || s->sid < 0 || c->sid < 0 || s->rx < g_bytes || c->rx < g_bytes ||
            s->tx < g_bytes || c->tx < g_bytes || nk_conn_stream_unacked(s->conn, s->sid) > 0 ||
            nk_conn_stream_unacked(c->conn, c->sid) > 0)
            return 0;
    }
    return 1;
}

static int all_finished(void)
{
    for (size_t k = 0; k < g_n; k++)
        if (!g_srv[k].fin || !g_cli[k].fin)
            return 0;
    return 1;
}

extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes != NULL)
        return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    unsigned long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Sum of QUIC's own count (ngtcp2 + natkit's buffers) over every end. */
static size_t quic_mem(void)
{
    size_t sum = 0;
    for (size_t k = 0; k < g_n; k++) {
        nk_conn_stats_t st;
        nk_conn_stats(g_srv[k].conn, &st);
        sum += st.quic_mem_bytes;
        nk_conn_stats(g_cli[k].conn, &st);
        sum += st.quic_mem_bytes;
    }
    return sum;
}

typedef struct sample {
    size_t heap, rss, quic;
} sample;

static sample measure(void)
{
    malloc_trim(0);
    sample s = {heap_in_use(), rss_bytes(), 0};
    return s;
}

static double kib_per(size_t now, size_t base, size_t count)
{
    return now > base ? (double)(now - base) / 1024.0 / (double)count : 0.0;
}

static int open_node(lnode *nd, size_t idx, const nk_addr *hub)
{
    nd->idx = idx;
    if (nk_identity_generate(&nd->id) != 0)
        return -1;
    nk_node_driver_options o;
    memset(&o, 0, sizeof(o));
    o.node.identity = &nd->id;
    o.node.hub = *hub;
    o.node.accept = idx == 0;
    o.node.max_conns = idx == 0 ? g_n + 8 : 4;
    nk_addr_parse(&o.bind, "127.0.0.1:0");
    o.on_event = on_event;
    o.ctx = nd;
    return nk_node_driver_open(&nd->drv, &o) == 0 ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: conn_load [-n 200] [--bytes 65536] [--idle-ms 1500] [--timeout 60] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int64_t timeout_s = 60;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            g_n = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc)
            g_bytes = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--idle-ms") == 0 && i + 1 < argc)
            g_idle_ms = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_s = strtoll(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            usage();
    }
    if (g_n == 0 || g_n > 2000 || g_bytes == 0)
        usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t start = nk_node_driver_now();
    g_deadline = start + timeout_s * 1000;

    nk_hub_service_options ho;
    nk_hub_service_options_init(&ho);
    nk_addr_parse(&ho.listen, "127.0.0.1:0");
    ho.raise_nofile = 0;
    nk_hub_service *hub;
    if (nk_hub_service_start(&hub, &ho) != 0) {
        fprintf(stderr, "conn_load: cannot start the hub\n");
        return 1;
    }
    nk_addr hub_addr;
    nk_hub_service_addrs(hub, &hub_addr, NULL);

    g_nodes = calloc(g_n + 1, sizeof(*g_nodes));
    g_srv = calloc(g_n, sizeof(*g_srv));
    g_cli = calloc(g_n, sizeof(*g_cli));
    if (g_nodes == NULL || g_srv == NULL || g_cli == NULL)
        return 1;
    for (size_t k = 0; k < g_n; k++)
        g_srv[k].sid = g_cli[k].sid = -1;
    int status = 1;
    sample base = {0}, open_idle = {0}, idle = {0};
    int64_t t_conn = 0, t_moved = 0;
    for (size_t i = 0; i <= g_n; i++) {
        if (open_node(&g_nodes[i], i, &hub_addr) != 0) {
            fprintf(stderr, "conn_load: cannot open node %zu (file descriptors?)\n", i);
            goto out;
        }
    }
    if (run_until(all_registered, "the nodes did not register at the hub") != 0)
        goto out;
    run_for(300);
    base = measure();

    int64_t t0 = g_t0 = nk_node_driver_now();
    /* in waves of WAVE connections (each waits for the one before to be up): 200 handshakes at
     * once through one hub link are a thundering herd no real peer sees */
    for (size_t k0 = 0; k0 < g_n; k0 += WAVE) {
        g_wave_end = k0 + WAVE < g_n ? k0 + WAVE : g_n;
        for (size_t k = k0; k < g_wave_end; k++) {
            if (nk_node_connect(nk_node_driver_node(g_nodes[k + 1].drv), nk_node_driver_now(), &g_nodes[0].id.id,
                                &g_cli[k].conn) != 0) {
                fail_now("nk_node_connect failed");
                goto out;
            }
        }
        if (run_until(wave_connected, "not every connection came up in time") != 0)
            goto out;
    }
    t_conn = nk_node_driver_now() - t0;
    if (run_until(all_moved, "not every connection moved its bytes in time") != 0)
        goto out;
    t_moved = nk_node_driver_now() - t0;
    run_for(g_idle_ms);
    if (g_failed)
        goto out;
    open_idle = measure();
    open_idle.quic = quic_mem();

    for (size_t k = 0; k < g_n; k++) {
        if (nk_conn_stream_shutdown(g_srv[k].conn, g_srv[k].sid) != 0 ||
            nk_conn_stream_shutdown(g_cli[k].conn, g_cli[k].sid) != 0)
            fail_now("stream shutdown failed");
    }
    if (run_until(all_finished, "the streams did not finish in time") != 0)
        goto out;
    run_for(g_idle_ms);
    if (g_failed)
        goto out;
    idle = measure();
    idle.quic = quic_mem();
    if (nk_node_conn_count(nk_node_driver_node(g_nodes[0].drv)) != g_n) {
        fail_now("the listener does not hold every connection");
        goto out;
    }
    status = 0;

    double per_open = kib_per(open_idle.heap, base.heap, g_n), per_idle = kib_per(idle.heap, base.heap, g_n);
    double ep_open = per_open / 2, ep_idle = per_idle / 2;
    double goal = GOAL_BYTES / 1024.0;
    if (json) {
        printf("{\"connections\":%zu,\"bytes_each_way\":%zu,\"bytes_verified\":%zu,\"connected_ms\":%lld,\"moved_ms\":%lld,"
               "\"heap_per_endpoint_idle_kib\":%.1f,\"heap_per_endpoint_stream_open_kib\":%.1f,"
               "\"rss_per_endpoint_idle_kib\":%.1f,\"quic_per_endpoint_idle_kib\":%.1f,"
               "\"goal_kib\":%.0f,\"ratio\":%.2f}\n",
               g_n, g_bytes, 2 * g_n * g_bytes, (long long)t_conn, (long long)t_moved, ep_idle, ep_open,
               kib_per(idle.rss, base.rss, 2 * g_n), (double)idle.quic / 1024.0 / (double)(2 * g_n), goal,
               ep_idle / goal);
    } else {
        printf("   %zu connections in one process (1 listening node, %zu connecting nodes, hub in-process);\n"
               "   %zu bytes each way on one stream per connection, checked: %zu bytes verified, all moved in "
               "%lld ms\n"
               "   (connections opened in waves of %d: all up after %lld ms)\n",
               g_n, g_n, g_bytes, 2 * g_n * g_bytes, (long long)t_moved, WAVE, (long long)t_conn);
        printf("   heap per connection, both ends: %.1f KiB idle with the stream open, %.1f KiB idle after it "
               "finished\n",
               per_open, per_idle);
        printf("   per endpoint (one peer's cost):  %.1f KiB stream open, %.1f KiB idle; RSS %.1f KiB; QUIC's own "
               "count (ngtcp2 + buffers, no GnuTLS) %.1f KiB\n",
               ep_open, ep_idle, kib_per(idle.rss, base.rss, 2 * g_n),
               (double)idle.quic / 1024.0 / (double)(2 * g_n));
        printf("   goal <= %.0f KiB per idle connection: idle endpoint %.1f KiB, ratio %.2f (<= 1.00 meets it)\n", goal,
               ep_idle, ep_idle / goal);
    }

out:
    if (g_failed || status != 0) {
        size_t conn = 0, moved = 0;
        for (size_t k = 0; k < g_n; k++) {
            conn += g_srv[k].connected && g_cli[k].connected;
            moved += g_srv[k].rx >= g_bytes && g_cli[k].rx >= g_bytes;
        }
        fprintf(stderr, "conn_load: could not measure: %s (%zu of %zu connected, %zu moved their bytes)\n", g_why,
                conn, g_n, moved);
        status = 1;
    }
    for (size_t i = 0; i <= g_n; i++) {
        if (g_nodes[i].drv != NULL)
            nk_node_driver_free(g_nodes[i].drv);
        nk_identity_wipe(&g_nodes[i].id);
    }
    nk_hub_service_free(hub);
    free(g_nodes);
    free(g_srv);
    free(g_cli);
    return status;
}
