/*
 * hub_core: N simulated peers registering at the sans-I/O hub server core (nk_hub_server) in one
 * process, no sockets and no descriptors, so N is not capped by RLIMIT_NOFILE (bench/hub_scale.sh).
 * Each peer has its own Ed25519 identity (derived from a per-peer seed with libsodium) and gets
 * its proof made by a real hub client core (nk_hub_client), like fuzz/hub_fuzz.h's register_peer.
 *
 * Phases (the clock is read only between phases, never per peer):
 *   accept    the core accepts every connection; the driver takes each CHALLENGE     (timed)
 *   prove     one client core per peer reads its CHALLENGE and writes REGISTER (the
 *             Ed25519 signature), then is freed; the frames are kept                 (timed apart,
 *                                                                                      not in the rate)
 *   register  every REGISTER goes into the core (proof verified: Ed25519), the
 *             driver drains its events and takes each REGISTERED                      (timed)
 * registrations/s = N / (accept + register): the server's whole share of a registration. The
 * clients' signing is left out: in the real hub it runs in the peers, not in the hub process.
 *
 * Memory: the core's heap in use (glibc mallinfo2: uordblks + hblkhd, chunk headers included;
 * under ASan the sanitizer's allocated bytes, without headers) after every peer registered and
 * every queued byte was taken, minus the same figure before nk_hub_server_new. Everything else
 * the process holds (identities, frames) is allocated before that baseline and the client cores
 * are freed before it is read again, so the difference is the core's own: its tables (sized by
 * max_conns) and its per-connection records and queues. Both are printed, with the core freed at
 * the end (what is left then would be a leak). glibc's per-thread cache (tcache) keeps up to 7
 * freed chunks per size that mallinfo2 still counts as in use (~10 kB of noise), so the tool runs
 * itself again with GLIBC_TUNABLES=glibc.malloc.tcache_count=0: then the count is exact and the
 * core leaves 0 bytes after nk_hub_server_free ("heap_left_after_free"). Peer i connects from
 * 10.x.y.z (i + 1 as the low 24 bits), port 40000 + i % 20000: distinct sources, as in a real
 * deployment. Identities: crypto_sign_seed_keypair of a keyed BLAKE2b of the peer's index.
 *
 * Relay (--relay F, after the memory was read, so it does not count there): peer 1 sends F RELAY
 * frames of 1,200 bytes to peer 0, one frame per nk_hub_server_handle_bytes, and the driver takes
 * the events and peer 0's bytes after every frame (the worst case for a send buffer given back
 * when drained: one allocation per frame), then again with 32 frames between drains (a driver
 * with a write in flight). relay frames/s = F / the core's time for those calls. Every byte is
 * checked to arrive as a RELAY frame from peer 1.
 *
 *   hub_core [-n 50000] [--max-per-ip K (0: no per-source limit, as hub_scale.sh's socket run)]
 *            [--relay F (0: none)]
 * Prints one JSON object; exits 0 when every peer registered and was checked, 1 otherwise.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natkit/hub.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HUB_CORE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HUB_CORE_ASAN 1
#endif
#ifdef HUB_CORE_ASAN
size_t __sanitizer_get_current_allocated_bytes(void); /* libasan's (gcc ships no header for it) */
static const char *heap_source = "asan_allocated_bytes";
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
#include <unistd.h>
static const char *heap_source = "mallinfo2";
static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

#define CHALLENGE_FRAME 64 /* room for a CHALLENGE frame (4 + 1 + 32 bytes) */
#define REGISTER_FRAME 128 /* room for a REGISTER frame (4 + 1 + 32 + 64 bytes) */

_Noreturn static void die(const char *msg)
{
    fprintf(stderr, "hub_core: %s\n", msg);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The process's resident set, kB (/proc/self/statm). */
static long rss_kb(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * 4;
}

typedef struct peer {
    nk_hub_conn_id conn;
    uint8_t challenge[CHALLENGE_FRAME], reg[REGISTER_FRAME];
    uint8_t challenge_len, reg_len;
    uint8_t registered; /* the core's REGISTERED frame was taken for it */
} peer;

static nk_hub_server *g_s;
static peer *g_peers;
static size_t g_n;
static uint8_t g_buf[1 << 16];

/* What a driver does after each call into the core: every event handled, every queued byte taken
 * (a SEND event: poll_transmit); the user pointer given to accept is the peer's index + 1. The
 * bytes go into the peer's challenge slot during accept, else are checked to be REGISTERED.
 * Returns the number of REGISTERED events. */
static size_t drain(int accepting)
{
    nk_hub_server_event ev;
    size_t registered = 0;
    while (nk_hub_server_poll_event(g_s, &ev) == 0) {
        size_t i = (size_t)(uintptr_t)ev.user - 1;
        if (ev.user == NULL || i >= g_n)
            die("an event for a connection the bench does not know");
        peer *p = &g_peers[i];
        switch (ev.type) {
        case NK_HUB_SEV_SEND: {
            int n = nk_hub_server_poll_transmit(g_s, ev.conn, g_buf, sizeof(g_buf));
            if (n <= 0)
                die("a SEND event with nothing to send");
            nk_hub_frame f;
            if (nk_hub_frame_parse(g_buf, (size_t)n, NK_HUB_MAX_PAYLOAD + NK_PEER_ID_SIZE, &f) != n)
                die("the core sent something other than one whole frame");
            if (accepting) {
                if (f.type != NK_HUB_T_CHALLENGE || (size_t)n > sizeof(p->challenge))
                    die("the first frame was not a CHALLENGE");
                memcpy(p->challenge, g_buf, (size_t)n);
                p->challenge_len = (uint8_t)n;
            } else {
                if (f.type != NK_HUB_T_REGISTERED || nk_hub_frame_check(&f) != 0)
                    die("the answer to REGISTER was not REGISTERED");
                p->registered = 1;
            }
            break;
        }
        case NK_HUB_SEV_REGISTERED: registered++; break;
        case NK_HUB_SEV_CLOSE: die("the core closed a connection"); break;
        default: break;
        }
    }
    return registered;
}

#define RELAY_PAYLOAD 1200

/* Takes every event and peer 0's queued bytes; returns the RELAY payload bytes taken (each frame
 * checked: RELAY from peer 1), or dies. */
static size_t relay_drain(const nk_peer_id *from)
{
    nk_hub_server_event ev;
    size_t got = 0;
    while (nk_hub_server_poll_event(g_s, &ev) == 0) {
        if (ev.type == NK_HUB_SEV_CLOSE)
            die("the core closed a connection during the relay");
        if (ev.type != NK_HUB_SEV_SEND)
            continue;
        if (ev.conn != g_peers[0].conn)
            die("relay bytes for a peer other than peer 0");
        int n = nk_hub_server_poll_transmit(g_s, ev.conn, g_buf, sizeof(g_buf));
        for (int off = 0; off < n;) {
            nk_hub_frame f;
            int k = nk_hub_frame_parse(g_buf + off, (size_t)(n - off), NK_HUB_MAX_PAYLOAD + NK_PEER_ID_SIZE, &f);
            if (k <= 0 || f.type != NK_HUB_T_RELAY || f.len != NK_PEER_ID_SIZE + RELAY_PAYLOAD ||
                memcmp(f.body, from->key, NK_PEER_ID_SIZE) != 0)
                die("peer 0 got something other than whole RELAY frames from peer 1");
            got += f.len - NK_PEER_ID_SIZE;
            off += k;
        }
    }
    return got;
}

/* frames RELAY frames peer 1 -> peer 0, drained every batch frames: the core's frames/s. */
static double relay_rate(long frames, long batch, int64_t now, const nk_identity *ids)
{
    uint8_t payload[RELAY_PAYLOAD], frame[NK_HUB_HEADER_SIZE + NK_PEER_ID_SIZE + RELAY_PAYLOAD];
    memset(payload, 0xa5, sizeof(payload));
    int len = nk_hub_frame_write_routed(frame, sizeof(frame), NK_HUB_T_RELAY, &ids[0].id, payload, sizeof(payload));
    if (len <= 0)
        die("could not write a RELAY frame");
    size_t got = 0;
    double t = now_ms();
    for (long i = 0; i < frames; i++) {
        if (nk_hub_server_handle_bytes(g_s, now, g_peers[1].conn, frame, (size_t)len) != 0)
            die("nk_hub_server_handle_bytes refused a RELAY frame");
        if ((i + 1) % batch == 0 || i + 1 == frames)
            got += relay_drain(&ids[1].id);
    }
    double ms = now_ms() - t;
    if (got != (size_t)frames * RELAY_PAYLOAD)
        die("not every relay byte arrived");
    return ms > 0 ? (double)frames * 1e3 / ms : 0.0;
}

int main(int argc, char **argv)
{
    long n = 50000, max_per_ip = 0, relay = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--max-per-ip") == 0 && i + 1 < argc)
            max_per_ip = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--relay") == 0 && i + 1 < argc)
            relay = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: hub_core [-n PEERS] [--max-per-ip K] [--relay FRAMES]\n");
            return 2;
        }
    }
    if (n < 1 || n > 10000000 || max_per_ip < 0 || max_per_ip > 1000000 || relay < 0 || relay > 100000000 ||
        (relay > 0 && n < 2)) {
        fprintf(stderr, "hub_core: -n must be 1..10000000 (2.. with --relay), --max-per-ip 0..1000000, --relay 0..100000000\n");
        return 2;
    }
#ifndef HUB_CORE_ASAN
    if (getenv("HUB_CORE_NO_TCACHE") == NULL) { /* once: the same command without glibc's tcache */
        const char *old = getenv("GLIBC_TUNABLES");
        char tun[512];
        snprintf(tun, sizeof(tun), "%s%sglibc.malloc.tcache_count=0", old != NULL ? old : "", old != NULL ? ":" : "");
        setenv("GLIBC_TUNABLES", tun, 1);
        setenv("HUB_CORE_NO_TCACHE", "1", 1);
        execv("/proc/self/exe", argv);
        /* not re-run: the figures then carry the tcache's few kB ("tcache":"on") */
    }
#endif
#ifdef HUB_CORE_ASAN
    const char *tcache = "n/a"; /* ASan's own allocator */
#else
    const char *tcache = getenv("HUB_CORE_NO_TCACHE") != NULL ? "off" : "on";
#endif
    if (sodium_init() < 0)
        die("sodium_init failed");
    g_n = (size_t)n;

    /* Everything the bench itself keeps, before the baseline, touched so it is resident. */
    double t0 = now_ms();
    nk_identity *ids = calloc(g_n, sizeof(*ids));
    g_peers = calloc(g_n, sizeof(*g_peers));
    if (ids == NULL || g_peers == NULL)
        die("out of memory");
    volatile uint8_t *touch = (volatile uint8_t *)g_peers; /* resident before the RSS baseline */
    for (size_t off = 0; off < g_n * sizeof(*g_peers); off += 4096)
        touch[off] = 0;
    for (size_t i = 0; i < g_n; i++) {
        uint8_t seed[crypto_sign_SEEDBYTES];
        uint8_t tag[16] = "natkit hub_core";
        crypto_generichash(seed, sizeof(seed), (const uint8_t *)&i, sizeof(i), tag, sizeof(tag));
        crypto_sign_seed_keypair(ids[i].id.key, ids[i].secret, seed);
    }
    double keys_ms = now_ms() - t0;
    nk_addr hub;
    if (nk_addr_parse(&hub, "192.0.2.1:7000") != 0)
        die("address");

    long rss0 = rss_kb();
    size_t heap0 = heap_in_use();
    nk_hub_server_config cfg;
    nk_hub_server_config_init(&cfg);
    cfg.max_conns = (int)n + 100; /* as hub_scale.sh's socket run: --max-conns/--max-peers N + 100 */
    cfg.max_peers = (int)n + 100;
    cfg.max_per_ip = (int)max_per_ip;
    if (nk_hub_server_new(&g_s, &cfg) != 0)
        die("nk_hub_server_new failed");
    size_t heap_tables = heap_in_use() - heap0;

    /* accept: the core makes and queues each challenge; the driver takes it */
    int64_t now = 1000;
    double t1 = now_ms();
    for (size_t i = 0; i < g_n; i++) {
        nk_addr remote;
        memset(&remote, 0, sizeof(remote));
        remote.family = NK_AF_INET;
        remote.port = (uint16_t)(40000 + i % 20000);
        uint32_t v = (uint32_t)(i + 1);
        remote.ip[0] = 10;
        remote.ip[1] = (uint8_t)(v >> 16);
        remote.ip[2] = (uint8_t)(v >> 8);
        remote.ip[3] = (uint8_t)v;
        if (nk_hub_server_accept(g_s, now, &hub, &remote, (void *)(uintptr_t)(i + 1), &g_peers[i].conn) != 0)
            die("nk_hub_server_accept refused a peer");
        drain(1);
    }
    double accept_ms = now_ms() - t1;
    size_t heap_accepted = heap_in_use() - heap0;

    /* prove (not in the rate): a client core per peer, freed at once */
    double t2 = now_ms();
    for (size_t i = 0; i < g_n; i++) {
        peer *p = &g_peers[i];
        nk_hub_client_config cc;
        memset(&cc, 0, sizeof(cc));
        cc.identity = &ids[i];
        cc.hub = hub;
        nk_hub_client *c = NULL;
        if (p->challenge_len == 0 || nk_hub_client_new(&c, &cc) != 0 || nk_hub_client_register(c, now) != 0 ||
            nk_hub_client_handle_bytes(c, now, p->challenge, p->challenge_len) != 0)
            die("the client core did not take its challenge");
        int k = nk_hub_client_poll_transmit(c, now, g_buf, sizeof(g_buf));
        nk_hub_frame f;
        if (k <= 0 || (size_t)k > sizeof(p->reg) || nk_hub_frame_parse(g_buf, (size_t)k, 1024, &f) != k ||
            f.type != NK_HUB_T_REGISTER)
            die("the client core did not answer with one REGISTER frame");
        memcpy(p->reg, g_buf, (size_t)k);
        p->reg_len = (uint8_t)k;
        nk_hub_client_free(c);
    }
    double prove_ms = now_ms() - t2;

    /* register: every proof verified by the core, every REGISTERED taken */
    now += 10;
    size_t events = 0;
    double t3 = now_ms();
    for (size_t i = 0; i < g_n; i++) {
        if (nk_hub_server_handle_bytes(g_s, now, g_peers[i].conn, g_peers[i].reg, g_peers[i].reg_len) != 0)
            die("nk_hub_server_handle_bytes failed");
        events += drain(0);
    }
    double register_ms = now_ms() - t3;
    size_t heap_registered = heap_in_use() - heap0;
    long rss1 = rss_kb();

    /* checks, outside the timing */
    nk_hub_stats_t st;
    nk_hub_server_stats(g_s, &st);
    size_t answered = 0, found = 0;
    for (size_t i = 0; i < g_n; i++) {
        answered += g_peers[i].registered;
        found += (size_t)nk_hub_server_has_peer(g_s, &ids[i].id);
    }
    int ok = st.registered == g_n && st.peers == g_n && st.auth_failed == 0 && events == g_n &&
             answered == g_n && found == g_n;
    double relay_1 = 0, relay_32 = 0;
    if (ok && relay > 0) {
        relay_1 = relay_rate(relay, 1, now, ids);
        relay_32 = relay_rate(relay, 32, now, ids);
    }
    nk_hub_server_free(g_s);
    long long left = (long long)heap_in_use() - (long long)heap0;

    double server_ms = accept_ms + register_ms;
    printf("{\"peers\":%zu,\"max_per_ip\":%ld,\"heap\":\"%s\",\"tcache\":\"%s\",\"keys_ms\":%.1f,\"accept_ms\":%.1f,"
           "\"prove_ms\":%.1f,\"register_ms\":%.1f,\"server_ms\":%.1f,\"registrations_per_s\":%.0f,"
           "\"verify_per_s\":%.0f,\"core_bytes\":%zu,\"table_bytes\":%zu,\"accepted_bytes\":%zu,"
           "\"bytes_per_peer\":%.0f,\"conn_bytes_per_peer\":%.0f,\"table_bytes_per_peer\":%.0f,"
           "\"rss_growth_kb\":%ld,\"heap_left_after_free\":%lld,\"relay_frames\":%ld,\"relay_per_s_drain_1\":%.0f,"
           "\"relay_per_s_drain_32\":%.0f,\"registered\":%s}\n",
           g_n, max_per_ip, heap_source, tcache, keys_ms, accept_ms, prove_ms, register_ms, server_ms,
           server_ms > 0 ? (double)g_n * 1e3 / server_ms : 0.0, register_ms > 0 ? (double)g_n * 1e3 / register_ms : 0.0,
           heap_registered, heap_tables, heap_accepted, (double)heap_registered / (double)g_n,
           (double)(heap_registered - heap_tables) / (double)g_n, (double)heap_tables / (double)g_n, rss1 - rss0,
           left, relay, relay_1, relay_32, ok ? "true" : "false");
    free(ids);
    free(g_peers);
    return ok ? 0 : 1;
}
