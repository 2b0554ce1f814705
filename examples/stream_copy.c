/*
 * stream_copy: a byte stream and a datagram between two peers, with backpressure.
 *
 * The same in-process setup as two_peers.c (a hub on loopback, "alice" accepting,
 * "bob" connecting to her peer ID), then the data plane of an nk_conn (QUIC):
 *   - bob opens a stream (nk_conn_stream_open) and writes SIZE bytes into it.
 *     A write takes what fits and says how much; when it takes less than asked,
 *     bob stops and waits for NK_NODE_EV_STREAM_WRITABLE: nothing is dropped and
 *     nothing piles up in memory. Then he ends his side (nk_conn_stream_shutdown:
 *     the FIN follows the bytes);
 *   - alice learns of the stream (NK_NODE_EV_STREAM_OPENED), reads on
 *     NK_NODE_EV_STREAM_READABLE until the read returns 0 (the FIN) and checks
 *     every byte against the same generator bob used;
 *   - bob sends one unreliable datagram (RFC 9221); on loopback it arrives.
 * Exit 0 only when alice has every byte intact and bob's stream has nothing left
 * unacknowledged; 1 with a reason otherwise, within DEADLINE_MS.
 */
#include <stdio.h>
#include <string.h>

#include <natkit/natkit.h>

#define DEADLINE_MS 30000
#define SIZE (8u << 20) /* 8 MiB */

static const char DATAGRAM[] = "a datagram from bob";

typedef struct peer {
    const char *name;
    nk_identity id;
    nk_node_driver *drv;
    nk_conn *conn;
    int registered, connected, failed, closing;
    int64_t stream;         /* bob: the stream he writes; alice: the one she reads (-1: none yet) */
    uint64_t done;          /* bytes written (bob) or read and checked (alice) */
    uint32_t gen;           /* the byte generator's state */
    int writable, finished, damaged, got_datagram;
} peer;

/* The bytes of the stream: both sides run the same generator (xorshift32). */
static uint8_t next_byte(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (uint8_t)*s;
}

static void alice_read(peer *p, nk_conn *c, int64_t id)
{
    uint8_t buf[65536];
    int n;
    while ((n = nk_conn_stream_read(c, id, buf, sizeof(buf))) > 0) {
        for (int i = 0; i < n; i++)
            if (buf[i] != next_byte(&p->gen))
                p->damaged = 1;
        p->done += (uint64_t)n;
    }
    if (n == 0)
        p->finished = 1; /* the FIN: everything bob wrote is here */
}

static void on_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    peer *p = ctx;
    uint8_t dg[1500];
    (void)d;
    switch (ev->type) {
    case NK_NODE_EV_REGISTERED:
        p->registered = 1;
        break;
    case NK_NODE_EV_INCOMING:
        p->conn = ev->conn;
        break;
    case NK_NODE_EV_CONNECTED:
        p->connected = 1;
        printf("%-5s connected on the %s path\n", p->name, nk_path_kind_name(ev->path.kind));
        break;
    case NK_NODE_EV_STREAM_OPENED: /* alice: bob's stream */
        p->stream = ev->stream_id;
        break;
    case NK_NODE_EV_STREAM_READABLE:
        if (ev->stream_id == p->stream)
            alice_read(p, ev->conn, ev->stream_id);
        break;
    case NK_NODE_EV_STREAM_WRITABLE: /* bob: room again */
        p->writable = 1;
        break;
    case NK_NODE_EV_DATAGRAM:
        while (nk_conn_datagram_read(ev->conn, dg, sizeof(dg)) >= 0)
            p->got_datagram = 1;
        break;
    case NK_NODE_EV_DISCONNECTED:
        if (p->closing)
            break;
        /* fall through */
    case NK_NODE_EV_HUB_CLOSED:
        fprintf(stderr, "%s: %s (%s)\n", p->name, ev->reason ? ev->reason : "-", nk_strerror(ev->err));
        p->failed = 1;
        break;
    default:
        break;
    }
}

static int peer_open(peer *p, const char *name, const nk_addr *hub, int accept)
{
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->stream = -1;
    p->gen = 2463534242u;
    int rc = nk_identity_generate(&p->id);
    if (rc != 0)
        return rc;
    nk_node_driver_options o;
    memset(&o, 0, sizeof(o));
    o.node.identity = &p->id;
    o.node.hub = *hub;
    o.node.accept = accept;
    nk_addr_parse(&o.bind, "127.0.0.1:0");
    o.on_event = on_event;
    o.ctx = p;
    return nk_node_driver_open(&p->drv, &o);
}

static void run_both(peer *a, peer *b)
{
    nk_node_driver_poll(a->drv, 1, -1);
    nk_node_driver_poll(b->drv, 1, -1);
}

static int fail(const char *why)
{
    fprintf(stderr, "stream_copy: %s\n", why);
    return 1;
}

/* bob writes until the stream pushes back or everything is in; then the FIN. */
static int bob_write(peer *bob)
{
    uint8_t chunk[65536];
    while (bob->done < SIZE) {
        size_t want = SIZE - bob->done < sizeof(chunk) ? (size_t)(SIZE - bob->done) : sizeof(chunk);
        uint32_t s = bob->gen;
        for (size_t i = 0; i < want; i++)
            chunk[i] = next_byte(&s);
        int n = nk_conn_stream_write(bob->conn, bob->stream, chunk, want);
        if (n == NK_ERR_AGAIN || n == 0)
            return 0; /* full: wait for STREAM_WRITABLE */
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) /* advance the generator by what was taken */
            (void)next_byte(&bob->gen);
        bob->done += (uint64_t)n;
        if ((size_t)n < want)
            return 0;
    }
    return nk_conn_stream_shutdown(bob->conn, bob->stream);
}

static int run(peer *alice, peer *bob)
{
    int64_t start = nk_node_driver_now();
#define TIMED_OUT() (nk_node_driver_now() - start > DEADLINE_MS || alice->failed || bob->failed)
    while (!(alice->registered && bob->registered))
        if (run_both(alice, bob), TIMED_OUT())
            return fail("the peers did not register at the hub");
    int rc = nk_node_connect(nk_node_driver_node(bob->drv), nk_node_driver_now(), &alice->id.id, &bob->conn);
    if (rc != 0)
        return fail(nk_strerror(rc));
    while (!(alice->connected && bob->connected))
        if (run_both(alice, bob), TIMED_OUT())
            return fail("no connection");

    if ((rc = nk_conn_stream_open(bob->conn, &bob->stream)) != 0)
        return fail(nk_strerror(rc));
    if ((rc = nk_conn_datagram_send(bob->conn, (const uint8_t *)DATAGRAM, sizeof(DATAGRAM) - 1)) != 0)
        return fail(nk_strerror(rc));
    int64_t t0 = nk_node_driver_now();
    if ((rc = bob_write(bob)) != 0)
        return fail(nk_strerror(rc));
    while (!alice->finished || nk_conn_stream_unacked(bob->conn, bob->stream) > 0) {
        if (run_both(alice, bob), TIMED_OUT())
            return fail("the stream did not finish");
        if (bob->writable && bob->done < SIZE) {
            bob->writable = 0;
            if ((rc = bob_write(bob)) != 0)
                return fail(nk_strerror(rc));
        }
    }
    int64_t ms = nk_node_driver_now() - t0;
    if (alice->damaged || alice->done != SIZE)
        return fail("the stream arrived damaged");
    printf("alice got %u bytes intact in %lld ms (%.0f MB/s), and %s\n", SIZE, (long long)ms,
           ms > 0 ? SIZE / 1e3 / (double)ms : 0.0, alice->got_datagram ? "the datagram" : "no datagram (it may be lost)");

    bob->closing = 1;
    nk_conn_close(bob->conn, nk_node_driver_now());
    bob->conn = NULL;
    run_both(alice, bob);
    return 0;
#undef TIMED_OUT
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    nk_hub_service_options ho;
    nk_hub_service_options_init(&ho);
    nk_addr_parse(&ho.listen, "127.0.0.1:0");
    ho.raise_nofile = 0;
    nk_hub_service *hub;
    int rc = nk_hub_service_start(&hub, &ho);
    if (rc != 0) {
        fprintf(stderr, "stream_copy: cannot start the hub: %s\n", nk_strerror(rc));
        return 1;
    }
    nk_addr hub_addr;
    nk_hub_service_addrs(hub, &hub_addr, NULL);

    peer alice, bob;
    memset(&alice, 0, sizeof(alice));
    memset(&bob, 0, sizeof(bob));
    int status = 1;
    if ((rc = peer_open(&alice, "alice", &hub_addr, 1)) != 0)
        fprintf(stderr, "stream_copy: alice: %s\n", nk_strerror(rc));
    else if ((rc = peer_open(&bob, "bob", &hub_addr, 0)) != 0)
        fprintf(stderr, "stream_copy: bob: %s\n", nk_strerror(rc));
    else
        status = run(&alice, &bob);

    if (bob.drv != NULL)
        nk_node_driver_free(bob.drv);
    if (alice.drv != NULL)
        nk_node_driver_free(alice.drv);
    nk_identity_wipe(&alice.id);
    nk_identity_wipe(&bob.id);
    nk_hub_service_free(hub);
    return status;
}
