/*
 * two_peers: two peers that know each other only by peer ID.
 *
 * In one process, on loopback:
 *   - a hub (nk_hub_service, natkit/hub.h): where peers register under their
 *     ID and exchange connection requests and candidates;
 *   - "alice": an nk_node (natkit/node.h) with a fresh identity
 *     (natkit/identity.h) that accepts incoming connections;
 *   - "bob": an nk_node that connects to alice's peer ID, then sends her one
 *     message over the connection (QUIC, TLS 1.3; reliable and ordered).
 * Both nodes run on the bundled driver (nk_node_driver: one UDP socket and a
 * hub connection each, events through a callback). Each prints the path its
 * connection settled on (direct, turn or hub). Exit 0 only when alice got the
 * message intact; 1 with a reason otherwise, within DEADLINE_MS.
 */
#include <stdio.h>
#include <string.h>

#include <natkit/natkit.h>
#include <natkit/hub.h>
#include <natkit/identity.h>
#include <natkit/node.h>

#define DEADLINE_MS 20000

static const char MESSAGE[] = "hello alice, this is bob";

typedef struct peer {
    const char *name;
    nk_identity id;
    nk_node_driver *drv;
    nk_conn *conn; /* the one connection of this example */
    int registered, connected, failed, closing;
    char got[256]; /* alice: the message received */
    int got_len;
} peer;

static void print_path(const peer *p, const nk_node_event *ev)
{
    char l[NK_ADDR_STRLEN], r[NK_ADDR_STRLEN];
    printf("%-5s connected on %s path %s -> %s (rtt %lld ms, %lld ms after the request)\n", p->name,
           nk_path_kind_name(ev->path.kind), nk_addr_format(&ev->path.local, l, sizeof(l)),
           nk_addr_format(&ev->path.remote, r, sizeof(r)), (long long)ev->rtt_ms, (long long)ev->connect_ms);
}

/* Called by nk_node_driver_poll for every event of the node. */
static void on_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    peer *p = ctx;
    switch (ev->type) {
    case NK_NODE_EV_REGISTERED:
        p->registered = 1;
        break;
    case NK_NODE_EV_INCOMING: /* accept mode: the node already created the connection */
        p->conn = ev->conn;
        break;
    case NK_NODE_EV_CONNECTED:
        p->connected = 1;
        print_path(p, ev);
        break;
    case NK_NODE_EV_READABLE: {
        char buf[256];
        int n;
        while ((n = nk_conn_recv(ev->conn, (uint8_t *)buf, sizeof(buf))) >= 0) {
            memcpy(p->got, buf, (size_t)n);
            p->got_len = n;
        }
        break;
    }
    case NK_NODE_EV_DISCONNECTED:
        if (p->closing)
            break; /* the end of the connection this side closed itself */
        /* fall through */
    case NK_NODE_EV_HUB_CLOSED:
        fprintf(stderr, "%s: %s: %s (%s)\n", p->name, ev->type == NK_NODE_EV_HUB_CLOSED ? "hub closed" : "disconnected",
                ev->reason ? ev->reason : "-", nk_strerror(ev->err));
        p->failed = 1;
        break;
    default:
        break;
    }
    (void)d;
}

static int peer_open(peer *p, const char *name, const nk_addr *hub, int accept)
{
    memset(p, 0, sizeof(*p));
    p->name = name;
    int rc = nk_identity_generate(&p->id);
    if (rc != 0)
        return rc;
    nk_node_driver_options o;
    memset(&o, 0, sizeof(o));
    o.node.identity = &p->id; /* copied by the node */
    o.node.hub = *hub;
    o.node.accept = accept;
    nk_addr_parse(&o.bind, "127.0.0.1:0"); /* the UDP socket; also the host candidate */
    o.on_event = on_event;
    o.ctx = p;
    return nk_node_driver_open(&p->drv, &o);
}

/* Runs both nodes for a little while. Each poll waits at most 5 ms for its own sockets. */
static void run_both(peer *a, peer *b)
{
    nk_node_driver_poll(a->drv, 5, -1);
    nk_node_driver_poll(b->drv, 5, -1);
}

static int fail(const char *why)
{
    fprintf(stderr, "two_peers: %s\n", why);
    return 1;
}

static int run(peer *alice, peer *bob)
{
    int64_t start = nk_node_driver_now();
#define TIMED_OUT() (nk_node_driver_now() - start > DEADLINE_MS || alice->failed || bob->failed)

    /* 1. both register at the hub */
    while (!(alice->registered && bob->registered))
        if (run_both(alice, bob), TIMED_OUT())
            return fail("the peers did not register at the hub");

    /* 2. bob connects to alice knowing only her peer ID (the hub tells him where she is) */
    char idtext[NK_PEER_ID_STRLEN];
    printf("alice is %s\n", nk_peer_id_format(&alice->id.id, idtext, sizeof(idtext)));
    int rc = nk_node_connect(nk_node_driver_node(bob->drv), nk_node_driver_now(), &alice->id.id, &bob->conn);
    if (rc != 0)
        return fail(nk_strerror(rc));
    while (!(alice->connected && bob->connected))
        if (run_both(alice, bob), TIMED_OUT())
            return fail("no connection");

    /* 3. bob sends, alice receives */
    rc = nk_conn_send(bob->conn, nk_node_driver_now(), (const uint8_t *)MESSAGE, sizeof(MESSAGE) - 1);
    if (rc != 0)
        return fail(nk_strerror(rc));
    while (alice->got_len == 0)
        if (run_both(alice, bob), TIMED_OUT())
            return fail("the message did not arrive");
    if (alice->got_len != (int)sizeof(MESSAGE) - 1 || memcmp(alice->got, MESSAGE, sizeof(MESSAGE) - 1) != 0)
        return fail("the message arrived damaged");
    printf("alice got \"%.*s\"\n", alice->got_len, alice->got);

    /* 4. bob hangs up politely: the close goes out with the next poll */
    bob->closing = 1;
    nk_conn_close(bob->conn, nk_node_driver_now()); /* frees the connection */
    bob->conn = NULL;
    run_both(alice, bob);
    return 0;
#undef TIMED_OUT
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep stdout and stderr lines in order */

    /* The hub, on a loopback port of the kernel's choosing. */
    nk_hub_service_options ho;
    nk_hub_service_options_init(&ho);
    nk_addr_parse(&ho.listen, "127.0.0.1:0");
    ho.raise_nofile = 0;
    nk_hub_service *hub;
    int rc = nk_hub_service_start(&hub, &ho);
    if (rc != 0) {
        fprintf(stderr, "two_peers: cannot start the hub: %s\n", nk_strerror(rc));
        return 1;
    }
    nk_addr hub_addr;
    nk_hub_service_addrs(hub, &hub_addr, NULL);

    peer alice, bob;
    memset(&alice, 0, sizeof(alice));
    memset(&bob, 0, sizeof(bob));
    int status = 1;
    if ((rc = peer_open(&alice, "alice", &hub_addr, 1)) != 0)
        fprintf(stderr, "two_peers: alice: %s\n", nk_strerror(rc));
    else if ((rc = peer_open(&bob, "bob", &hub_addr, 0)) != 0)
        fprintf(stderr, "two_peers: bob: %s\n", nk_strerror(rc));
    else
        status = run(&alice, &bob);

    /* Freeing a driver frees its node and every connection still open. */
    if (bob.drv != NULL)
        nk_node_driver_free(bob.drv);
    if (alice.drv != NULL)
        nk_node_driver_free(alice.drv);
    nk_identity_wipe(&alice.id);
    nk_identity_wipe(&bob.id);
    nk_hub_service_free(hub);
    return status;
}
