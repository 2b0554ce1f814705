/*
 * natkit: the node — connections to peers by ID, each an agent under a
 * QUIC connection, plus the hub client that carries their signalling.
 * Sans-I/O; see include/natkit/node.h and docs/internals/node.md.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/node.h"
#include "natkit/quic.h"
#include "msgframe.h"
#include "random.h"
#include "redial.h"
#include "ring.h"

#define DEFAULT_MAX_CONNS 128
#define DEFAULT_SETTLE_MS 4000
#define EVENT_QUEUE_MIN   1024
#define EVENT_QUEUE_MAX   ((size_t)1 << 22) /* events kept before any is dropped (never seen) */
#define PUMP_ROUNDS       64
#define DGRAM_CAP         2048
#define QUIC_DATAGRAM     NK_AGENT_MAX_DATA /* largest QUIC datagram (1400): 1200 until QUIC's path MTU
                                             * discovery saw more get through; with the agent's
                                             * header, ChannelData and IPv4+UDP: 1465 bytes */
#define PREOPEN_MAX       (256 * 1024) /* message bytes kept before QUIC is up */
#define LINGER_MS         3000     /* nk_conn_close: time for sent bytes to be acknowledged */
#define CLOSE_COPIES      5        /* the CONNECTION_CLOSE goes out this many times (loss): at
                                      30 % loss all five are lost once in 400 closes */
#define CLOSE_GAP_MS      25       /* before the 2nd copy, doubling after (25, 50, 100, 200 ms: the
                                      last leaves 375 ms after the first): spread, so a burst of
                                      loss does not take them all, and never one GSO train, which
                                      a path drops or keeps as a whole */
#define CLOSE_ANSWER_MS   10       /* while copies are due, a datagram from the peer is answered
                                      with one more (RFC 9000 10.2.1), at most this often */
#define HUB_QUEUE_ROOM    (256 * 1024) /* the hub client's send queue (QUIC waits when it is full) */
#define APP_ERR_FRAMING   1        /* our CONNECTION_CLOSE code: the peer's message framing broke */

struct nk_conn {
    nk_node *node;
    nk_conn *next;
    nk_peer_id peer;
    nk_agent *agent;
    nk_quic *quic;           /* the server's from the start; the client's from the first path */
    int initiator;           /* agent controlling and QUIC client */
    int quic_up;             /* QUIC reported CONNECTED and our message stream is open (msg_tx) */
    int quic_closed;         /* QUIC reported CLOSED */
    int announced;           /* our CONNECTED event went out */
    int path_told;           /* path is the agent's choice (else, on the controlled side, a hint:
                              * the best path the peer's packets came over) */
    int over;                /* DISCONNECTED went out */
    int closing;             /* closed by the user: lingers, then CONNECTION_CLOSE, then reaped */
    int close_sent;          /* closing: the CONNECTION_CLOSE went to the agent (or nothing to send) */
    uint8_t *close_pkt;      /* its further copies, CLOSE_GAP_MS apart: close_left more, the next */
    size_t close_len;        /* at close_next on close_path */
    int close_left;
    int64_t close_next;
    int64_t close_gap;       /* until the copy after next */
    int64_t close_answered;  /* when a datagram from the peer was last answered with a copy */
    uint32_t close_path;
    int64_t linger_until;
    const char *close_reason; /* why we closed QUIC ourselves (framing error) */
    uint64_t close_code;     /* nk_conn_close_ex: the CONNECTION_CLOSE's application code ... */
    char close_phrase[NK_QUIC_CLOSE_REASON_MAX + 1]; /* ... and its reason phrase ("": none) */
    char peer_reason[96];    /* DISCONNECTED's reason when the peer closed with a phrase */
    int64_t created_ms;
    nk_path_info path;       /* the agent's selected path */
    uint32_t rx_path;        /* the path the last QUIC datagram came in on */
    nk_path_info rx_info;    /* ... and what it is */
    uint8_t *pend;           /* a QUIC datagram the agent had no room for yet (allocated then) */
    size_t pend_len;
    /* messages: ours on stream msg_tx (what nk_quic_stream_open gave at CONNECTED; -1 before),
     * the peer's on msg_rx (its first bidirectional stream, known from the roles) */
    int64_t msg_tx, msg_rx;
    uint8_t *txq;            /* framed message bytes QUIC has not taken yet */
    size_t txq_off, txq_len, txq_cap;
    int want_writable;       /* nk_conn_send said NK_ERR_AGAIN: WRITABLE when room comes */
    nk__msgrx rx;
    int readable_told;       /* READABLE went out; again after nk_conn_recv said NK_ERR_AGAIN */
    int dgram_told;          /* DATAGRAM went out; again after nk_conn_datagram_read said NK_ERR_AGAIN */
    nk_conn_stats_t st;
    nk_addr *xsock;          /* birthday probing: the extra sockets the driver opened */
    uint8_t *xopen;          /* ... and which of them are still open */
    size_t nxsock;
};

struct nk_node {
    nk_node_config cfg;
    nk_identity identity;
    char *turn_user, *turn_pass;
    nk_turn_client_config turn;
    nk_turn_client *turn_client; /* one allocation for the socket, shared by every agent */
    int turn_release_asked;      /* nk_node_release_turn was called */
    nk_hub_client *hub;
    int64_t hub_rtt_ms;
    nk_addr hubs[NK_NODE_MAX_HUBS]; /* tried in turn (redial.c) */
    size_t nhubs;
    nk__redial redial;
    nk_node_hub_state hub_state;
    int64_t hub_retry_at;        /* RECONNECTING: the next attempt is due then */
    int hub_due;                 /* ... and that time has come (no deadline until the driver dials) */
    int64_t hub_registered_at;   /* -1: not registered on this connection */
    int hub_dialing;             /* nk_node_hub_dial gave a hub; its transport is not open yet */
    int hub_dialer;              /* the driver dials (nk_node_hub_dial was called): no registration
                                    on nk_node_handle_hub alone */
    char hub_reason[NK_HUB_MAX_REASON + 32]; /* the text hub events point to */
    int hub_errno;                           /* errno of the last failed dial, for HUB_RETRY */
    nk_conn *conns;
    size_t nconns;
    nk_conn *tx_cursor;      /* round-robin start for poll_transmit */
    nk__ring evq;            /* of nk_node_event, growing: events are not dropped (readiness is
                              * coalesced per connection, so it stays small) */
    uint64_t events_dropped; /* only if it could not grow (out of memory, EVENT_QUEUE_MAX): nk_node_stats */
    int stun_warned, turn_warned; /* a WARNING about the STUN / TURN server was given */
    int64_t now_ms;          /* the latest time a call brought (for calls that take none) */
    int64_t now_us;          /* the driver's finer clock (nk_node_set_now_us), -1: none */
    uint8_t buf[DGRAM_CAP];
    uint8_t qbuf[QUIC_DATAGRAM]; /* QUIC's datagram on its way to an agent */
};

/* ---- events ------------------------------------------------------------------- */

static int grow_events(nk_node *n)
{
    size_t cap = n->evq.cap != 0 ? n->evq.cap * 2 : EVENT_QUEUE_MIN;
    if (cap > EVENT_QUEUE_MAX)
        return NK_ERR_LIMIT;
    nk_node_event *q = malloc(cap * sizeof(*q));
    if (q == NULL)
        return NK_ERR_NOMEM;
    free(nk__ring_move(&n->evq, q, cap));
    return 0;
}

/* A new event about c (NULL: the node). None about a connection the user closed. */
static nk_node_event *push_event(nk_node *n, nk_node_event_type type, nk_conn *c)
{
    if (c != NULL && c->closing)
        return NULL;
    if (nk__ring_full(&n->evq) && grow_events(n) != 0) {
        n->events_dropped++;
        return NULL;
    }
    nk_node_event *ev = nk__ring_emplace(&n->evq);
    if (ev == NULL) { /* not after the growth above; said for the compiler (-Warray-bounds) */
        n->events_dropped++;
        return NULL;
    }
    memset(ev, 0, sizeof(*ev));
    ev->stream_id = -1;
    ev->type = type;
    ev->conn = c;
    if (c != NULL) {
        ev->peer = c->peer;
        ev->path = c->path;
    }
    return ev;
}

/* A WARNING about a server: once per kind (flag), the user hears of it without a flood. */
static void warn_server(nk_node *n, int *flag, const nk_addr *server, int err, const char *reason)
{
    if (*flag)
        return;
    *flag = 1;
    nk_node_event *ev = push_event(n, NK_NODE_EV_WARNING, NULL);
    if (ev == NULL)
        return;
    ev->addr = *server;
    ev->err = err;
    ev->reason = reason;
}

int nk_node_poll_event(nk_node *n, nk_node_event *ev)
{
    return nk__ring_pop(&n->evq, ev);
}

/* ---- connections ---------------------------------------------------------------- */

static void disconnect_code(nk_conn *c, int err, const char *reason, uint64_t app_error)
{
    if (c->over)
        return;
    c->over = 1;
    nk_node_event *ev = push_event(c->node, NK_NODE_EV_DISCONNECTED, c);
    if (ev != NULL) {
        ev->err = err;
        ev->reason = reason;
        ev->app_error = app_error;
    }
}

static void disconnect(nk_conn *c, int err, const char *reason)
{
    disconnect_code(c, err, reason, 0);
}

/* The client expects the peer it dialled; the server the peer whose request (or address) made the
 * connection: both name c->peer. */
static int make_quic(nk_conn *c, int64_t now_ms)
{
    nk_quic_config qc;
    memset(&qc, 0, sizeof(qc));
    qc.role = c->initiator ? NK_QUIC_CLIENT : NK_QUIC_SERVER;
    qc.identity = &c->node->identity;
    qc.peer = &c->peer;
    qc.random = c->node->cfg.random;
    qc.random_ctx = c->node->cfg.random_ctx;
    qc.max_datagram = QUIC_DATAGRAM;
    qc.cc = c->node->cfg.cc;
    qc.now_us = &c->node->now_us;
    int rc = nk_quic_new(&c->quic, &qc, now_ms);
    if (rc != 0)
        return rc;
    /* The peer sends its messages on the first bidirectional stream it opens: RFC 9000 2.1 numbers
     * those 0, 4, 8, ... for the client and 1, 5, 9, ... for the server. Known before it arrives,
     * so its first bytes are never taken for a user stream. Ours comes from the open call. */
    c->msg_rx = c->initiator ? 1 : 0;
    return 0;
}

static int make_agent(nk_conn *c, int64_t now_ms)
{
    const nk_node *n = c->node;
    nk_agent_config ac;
    memset(&ac, 0, sizeof(ac));
    ac.identity = &n->identity;
    ac.peer = c->peer;
    ac.controlling = c->initiator;
    ac.host = n->cfg.host;
    ac.nhost = n->cfg.nhost;
    ac.stun = n->cfg.stun;
    ac.nstun = n->cfg.nstun;
    ac.turn_shared = n->turn_client;
    ac.keepalive_ms = n->cfg.keepalive_ms;
    ac.random = n->cfg.random;
    ac.random_ctx = n->cfg.random_ctx;
    ac.nat_mapping = n->cfg.nat_mapping;
    ac.birthday_sockets = n->cfg.birthday_sockets;
    int rc = nk_agent_new(&c->agent, &ac, now_ms);
    if (rc != 0)
        return rc;
    if (n->hub_rtt_ms >= 0)
        nk_agent_set_hub_rtt(c->agent, n->hub_rtt_ms);
    return 0;
}

/* Tells the driver to close the extra sockets still open (all but keep: family NONE closes all). */
static void close_sockets(nk_conn *c, const nk_addr *keep, nk_conn *owner)
{
    for (size_t i = 0; i < c->nxsock; i++) {
        if (!c->xopen[i] || (keep != NULL && nk_addr_equal(&c->xsock[i], keep)))
            continue;
        c->xopen[i] = 0;
        nk_node_event *ev = push_event(c->node, NK_NODE_EV_CLOSE_SOCKET, owner);
        if (ev != NULL)
            ev->addr = c->xsock[i];
    }
}

int nk_conn_add_sockets(nk_conn *c, int64_t now_ms, const nk_addr *local, size_t n)
{
    if (c == NULL || (local == NULL && n > 0) || c->nxsock > 0)
        return c != NULL && c->nxsock > 0 ? NK_ERR_STATE : NK_ERR_INVAL;
    if (n > 0) {
        c->xsock = malloc(n * sizeof(*c->xsock));
        c->xopen = malloc(n);
        if (c->xsock == NULL || c->xopen == NULL) {
            free(c->xsock);
            free(c->xopen);
            c->xsock = NULL;
            c->xopen = NULL;
            nk_agent_add_sockets(c->agent, now_ms, NULL, 0);
            return NK_ERR_NOMEM;
        }
    }
    int rc = nk_agent_add_sockets(c->agent, now_ms, local, n);
    if (rc != 0 || n == 0) { /* the caller keeps (and closes) what it opened */
        free(c->xsock);
        free(c->xopen);
        c->xsock = NULL;
        c->xopen = NULL;
        return rc;
    }
    memcpy(c->xsock, local, n * sizeof(*local));
    memset(c->xopen, 1, n);
    c->nxsock = n;
    return 0;
}

static void conn_free(nk_conn *c)
{
    free(c->xsock);
    free(c->xopen);
    nk_agent_free(c->agent);
    nk_quic_free(c->quic);
    nk__msgrx_free(&c->rx);
    free(c->txq);
    free(c->pend);
    free(c->close_pkt);
    free(c);
}

/* remote: a peer address given by hand (no hub signalling), or NULL. */
static int conn_new(nk_node *n, int64_t now_ms, const nk_peer_id *peer, int initiator, const nk_addr *remote,
                    nk_conn **out)
{
    if (n->nconns >= n->cfg.max_conns)
        return NK_ERR_LIMIT;
    nk_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NK_ERR_NOMEM;
    c->node = n;
    c->peer = *peer;
    c->initiator = initiator;
    c->created_ms = now_ms;
    c->msg_tx = c->msg_rx = -1;
    nk__msgrx_init(&c->rx, NK_CONN_MAX_MESSAGE);
    int rc = make_agent(c, now_ms);
    if (rc == 0 && !initiator)
        rc = make_quic(c, now_ms); /* the client's starts with the first path */
    if (rc == 0 && n->hub == NULL)
        nk_agent_set_hub_up(c->agent, now_ms, 0);
    if (rc == 0)
        rc = nk_agent_start(c->agent, now_ms);
    if (rc == 0 && remote != NULL)
        rc = nk_agent_add_remote_candidate(c->agent, now_ms, remote);
    if (rc != 0) {
        conn_free(c);
        return rc;
    }
    c->next = n->conns;
    n->conns = c;
    n->nconns++;
    *out = c;
    return 0;
}

/* Peer IDs are public keys: a plain memcmp (sodium_memcmp's constant time was ~2% of a busy
 * receiver, which looks up the connection of every datagram). */
static int same_peer(const nk_peer_id *a, const nk_peer_id *b)
{
    return memcmp(a->key, b->key, NK_PEER_ID_SIZE) == 0;
}

/* The user's open connection to peer. */
static nk_conn *find_conn(const nk_node *n, const nk_peer_id *peer)
{
    for (nk_conn *c = n->conns; c != NULL; c = c->next)
        if (!c->closing && same_peer(&c->peer, peer))
            return c;
    return NULL;
}

/* A datagram from peer for a connection whose CONNECTION_CLOSE copies are still going out: the
 * peer has not heard the close, so one more copy answers it (at most every CLOSE_ANSWER_MS). */
static int answer_closing(nk_node *n, int64_t now_ms, const nk_peer_id *peer)
{
    for (nk_conn *c = n->conns; c != NULL; c = c->next) {
        if (!c->close_sent || c->close_left == 0 || c->close_pkt == NULL || !same_peer(&c->peer, peer))
            continue;
        if (now_ms - c->close_answered >= CLOSE_ANSWER_MS) {
            c->close_answered = now_ms;
            nk_agent_send(c->agent, now_ms, c->close_path, c->close_pkt, c->close_len);
        }
        return 1;
    }
    return 0;
}

/* Where a datagram from peer goes: its open connection, else one the user closed that is still
 * finishing (its acknowledgements and CONNECTION_CLOSE). */
static nk_conn *route_conn(const nk_node *n, const nk_peer_id *peer)
{
    nk_conn *c = find_conn(n, peer);
    if (c != NULL)
        return c;
    for (c = n->conns; c != NULL; c = c->next)
        if (!c->close_sent && same_peer(&c->peer, peer))
            return c;
    return NULL;
}

/*
 * A direct path is reported at once. A relay is reported only once a better
 * path had its chance: TURN after half of settle_ms, the hub after settle_ms
 * (punching may still succeed; the first CONNECTED should name the path the
 * connection keeps).
 */
static int64_t announce_at(const nk_conn *c)
{
    if (c->announced || c->over || !c->quic_up || c->path.kind == NK_PATH_NONE)
        return NK_DEADLINE_NONE;
    if (c->path.kind == NK_PATH_DIRECT)
        return 0;
    if (c->path.kind == NK_PATH_TURN)
        return c->created_ms + c->node->cfg.settle_ms / 2;
    return c->created_ms + c->node->cfg.settle_ms;
}

/* Tells the hub how this connection settled (REPORT, for its metrics); best effort. */
static void report_to_hub(const nk_conn *c, int64_t now_ms)
{
    nk_node *n = c->node;
    int64_t ms = now_ms - c->created_ms;
    if (n->hub == NULL || nk_hub_client_state(n->hub) != NK_HUB_CLIENT_REGISTERED)
        return;
    nk_hub_report r = {.path = (uint8_t)c->path.kind,
                       .connect_ms = ms < 0 ? 0 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms,
                       .mapping = (uint8_t)n->cfg.nat_mapping,
                       .filtering = (uint8_t)n->cfg.nat_filtering};
    (void)nk_hub_client_report(n->hub, now_ms, &r);
}

static void announce(nk_conn *c, int64_t now_ms)
{
    c->announced = 1;
    report_to_hub(c, now_ms);
    nk_node_event *ev = push_event(c->node, NK_NODE_EV_CONNECTED, c);
    if (ev != NULL) {
        ev->rtt_ms = c->path.rtt_ms;
        ev->connect_ms = now_ms - c->created_ms;
    }
}

static void maybe_announce(nk_conn *c, int64_t now_ms)
{
    if (now_ms >= announce_at(c))
        announce(c, now_ms);
}

/* Data (or the end) arrived before the path was reported: CONNECTED comes first, on the path
 * it came over, whatever the settle rule says. (On the controlled side the agent may still hold
 * the hub relay it started with while the peer already sends on a better path it nominated: the
 * data's path is the one to report and to answer on; the agent's own PATH event follows.) */
static void announce_before(nk_conn *c, int64_t now_ms)
{
    if (c->announced || c->over || !c->quic_up)
        return;
    if (!c->initiator && c->rx_info.kind != NK_PATH_NONE &&
        (c->path.kind == NK_PATH_NONE || c->rx_info.kind < c->path.kind))
        c->path = c->rx_info;
    if (c->path.kind != NK_PATH_NONE)
        announce(c, now_ms);
}

static void on_agent_path(nk_conn *c, int64_t now_ms, const nk_agent_event *ev)
{
    nk_path_info prev = c->path;
    c->path = ev->path;
    c->path_told = 1;
    if (c->initiator && c->quic == NULL) {
        /* the first path (often the hub relay): the handshake starts now, in parallel with punching */
        int rc = make_quic(c, now_ms);
        if (rc != 0)
            disconnect(c, rc, "QUIC connection could not start");
    }
    if (c->announced && prev.id != c->path.id) {
        nk_node_event *out = push_event(c->node, NK_NODE_EV_PATH_CHANGED, c);
        if (out != NULL) {
            out->prev = prev;
            out->rtt_ms = c->path.rtt_ms;
        }
    }
}

/* A QUIC datagram from the peer, on path. */
static void on_data(nk_conn *c, int64_t now_ms, const nk_path_info *path, const uint8_t *p, size_t n)
{
    if (!c->path_told && path->kind != NK_PATH_NONE && (c->path.kind == NK_PATH_NONE || path->kind < c->path.kind))
        c->path = *path; /* controlled side, not told yet: the best path the peer uses */
    if (c->quic != NULL) {
        c->rx_path = path->id;
        c->rx_info = *path;
        c->st.rx_datagrams++;
        nk_quic_handle_datagram(c->quic, now_ms, p, n); /* drops are counted there */
    }
}

/* Drains the agent's events; returns how many there were. */
static int pump_agent(nk_conn *c, int64_t now_ms)
{
    nk_agent_event ev;
    int count = 0;
    while (nk_agent_poll_event(c->agent, &ev) == 0) {
        count++;
        switch (ev.type) {
        case NK_AGENT_EV_PATH:
            on_agent_path(c, now_ms, &ev);
            break;
        case NK_AGENT_EV_DATA:
            on_data(c, now_ms, &ev.path, ev.data, ev.len);
            break;
        case NK_AGENT_EV_FAILED:
            disconnect(c, ev.err, "no path to the peer");
            if (c->closing)
                c->close_sent = 1; /* nothing can reach the peer any more */
            break;
        case NK_AGENT_EV_CANDIDATE:
            break;
        case NK_AGENT_EV_OPEN_SOCKETS: {
            nk_node_event *out = push_event(c->node, NK_NODE_EV_OPEN_SOCKETS, c);
            if (out != NULL)
                out->nsockets = ev.nsockets;
            else
                nk_agent_add_sockets(c->agent, now_ms, NULL, 0);
            break;
        }
        case NK_AGENT_EV_CLOSE_SOCKETS:
            close_sockets(c, ev.keep.family != NK_AF_NONE ? &ev.keep : NULL, c);
            break;
        case NK_AGENT_EV_STUN_FAILED:
            warn_server(c->node, &c->node->stun_warned, &ev.path.remote, ev.err,
                        ev.err == NK_ERR_TIMEOUT ? "no STUN server answered: no public (mapped) address to offer"
                                                 : "the STUN server refused our request: no public (mapped) address to offer");
            break;
        }
    }
    return count;
}

static void flush_signals(nk_conn *c, int64_t now_ms)
{
    nk_node *n = c->node;
    uint8_t type;
    size_t len;
    /* Until the hub has registered us, signals wait in the agent: a send now would be refused. */
    if (n->hub != NULL && nk_hub_client_state(n->hub) != NK_HUB_CLIENT_REGISTERED)
        return;
    /* A full hub queue would refuse the signal; leave it in the agent (backpressure for QUIC). */
    while ((n->hub == NULL || nk_hub_client_pending(n->hub) + NK_HUB_MAX_PAYLOAD + 64 <= HUB_QUEUE_ROOM) &&
           nk_agent_poll_signal(c->agent, &type, n->buf, sizeof(n->buf), &len) == 0) {
        if (n->hub != NULL)
            nk_hub_client_send(n->hub, now_ms, type, &c->peer, n->buf, len); /* refused: the agent resends */
    }
}

/* The path QUIC's datagrams take: the agent's choice (or, on the controlled side before it is
 * told, the best path the peer uses), else where the last one came from. */
static uint32_t tx_path(const nk_conn *c)
{
    return c->path.id != 0 ? c->path.id : c->rx_path;
}

static int fill_quic(void *ctx, uint8_t *buf, size_t cap)
{
    nk_conn *c = ctx;
    return nk_quic_poll_transmit(c->quic, c->node->now_ms, buf, cap);
}

/* QUIC's next datagram written straight into the caller's buffer behind the agent's header (a
 * direct path, nothing else queued; no copy): 0 (out is set), NK_ERR_AGAIN when QUIC has nothing
 * now, another error when quic_tx has to take it through the agent's queues. */
static int quic_tx_in_place(nk_conn *c, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    uint32_t path = tx_path(c);
    if (c->quic == NULL || path == 0 || c->pend != NULL)
        return NK_ERR_UNSUPPORTED;
    c->node->now_ms = now_ms;
    int rc = nk_agent_send_in_place(c->agent, path, out, buf, cap, fill_quic, c);
    if (rc == 0) {
        c->st.tx_datagrams++;
        c->st.tx_path_id = path;
    }
    return rc;
}

/* Moves QUIC's datagrams into the agent until QUIC has none or the agent has no room (what did
 * not fit waits in pend). Returns how many went. */
static int quic_tx(nk_conn *c, int64_t now_ms)
{
    int count = 0;
    uint32_t path = tx_path(c);
    if (c->quic == NULL || path == 0)
        return 0;
    for (;;) {
        const uint8_t *dg = c->pend;
        size_t len = c->pend_len;
        if (dg == NULL) {
            int n = nk_quic_poll_transmit(c->quic, now_ms, c->node->qbuf, sizeof(c->node->qbuf));
            if (n <= 0)
                break;
            dg = c->node->qbuf;
            len = (size_t)n;
        }
        int rc = nk_agent_send(c->agent, now_ms, path, dg, len);
        if (rc == NK_ERR_AGAIN) {
            flush_signals(c, now_ms); /* the hub relay's queue is the agent's signal queue */
            rc = nk_agent_send(c->agent, now_ms, path, dg, len);
            if (rc == NK_ERR_AGAIN && c->pend == NULL && (c->pend = malloc(len)) != NULL) {
                memcpy(c->pend, dg, len);
                c->pend_len = len;
            }
            if (rc == NK_ERR_AGAIN && c->pend != NULL)
                break; /* it waits; the next poll_transmit drains the agent */
        }
        if (rc == 0) {
            c->st.tx_datagrams++;
            c->st.tx_path_id = path;
        } else {
            c->st.tx_dropped++; /* no usable path right now (or no memory): QUIC's loss recovery resends */
        }
        free(c->pend);
        c->pend = NULL;
        c->pend_len = 0;
        count++;
    }
    return count;
}

/* ---- messages over the two message streams ---------------------------------------------- */

static int txq_append(nk_conn *c, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (c->txq_off > 0) {
        memmove(c->txq, c->txq + c->txq_off, c->txq_len);
        c->txq_off = 0;
    }
    if (c->txq_len + n > c->txq_cap) {
        size_t cap = c->txq_cap != 0 ? c->txq_cap : 4096;
        while (cap < c->txq_len + n)
            cap *= 2;
        uint8_t *q = realloc(c->txq, cap);
        if (q == NULL)
            return NK_ERR_NOMEM;
        c->txq = q;
        c->txq_cap = cap;
    }
    memcpy(c->txq + c->txq_len, p, n);
    c->txq_len += n;
    return 0;
}

/* Hands queued message bytes to QUIC; WRITABLE when the queue emptied for a waiting sender. */
static void flush_txq(nk_conn *c)
{
    if (!c->quic_up)
        return;
    while (c->txq_len > 0) {
        int k = nk_quic_stream_write(c->quic, c->msg_tx, c->txq + c->txq_off, c->txq_len);
        if (k <= 0)
            return; /* full (a STREAM_WRITABLE follows) or closed */
        c->txq_off += (size_t)k;
        c->txq_len -= (size_t)k;
    }
    c->txq_off = 0;
    if (c->want_writable && !c->over) {
        c->want_writable = 0;
        push_event(c->node, NK_NODE_EV_WRITABLE, c);
    }
}

/* Reads the peer's message stream until a whole message is waiting (or nothing more is there). */
static void pull_message(nk_conn *c)
{
    if (c->quic == NULL || c->msg_rx < 0)
        return;
    for (;;) {
        uint8_t *dst;
        size_t want = nk__msgrx_want(&c->rx, &dst);
        if (want == 0)
            break;
        int n = nk_quic_stream_read(c->quic, c->msg_rx, dst, want);
        if (n <= 0)
            break; /* nothing yet (QUIC signals again), FIN, reset, or not opened yet */
        int rc = nk__msgrx_got(&c->rx, (size_t)n);
        if (rc < 0 && c->close_reason == NULL && !c->quic_closed) {
            c->close_reason = "peer sent a malformed message";
            nk_quic_close(c->quic, c->node->now_ms, APP_ERR_FRAMING);
        }
        if (rc != 0)
            break;
    }
}

static void tell_readable(nk_conn *c, int64_t now_ms)
{
    pull_message(c);
    if (c->rx.ready && !c->readable_told) {
        announce_before(c, now_ms);
        c->readable_told = 1;
        push_event(c->node, NK_NODE_EV_READABLE, c);
    }
}

static void stream_event(nk_conn *c, int64_t now_ms, nk_node_event_type type, const nk_quic_event *qe)
{
    announce_before(c, now_ms);
    nk_node_event *ev = push_event(c->node, type, c);
    if (ev != NULL) {
        ev->stream_id = qe->stream_id;
        ev->app_error = qe->app_error;
    }
}

static int is_msg_stream(const nk_conn *c, int64_t id)
{
    return id == c->msg_tx || id == c->msg_rx;
}

/* Our message stream is our first bidirectional stream (the peer expects it there: msg_rx on
 * its side); without it QUIC closes and the connection never reports CONNECTED. */
static void on_quic_connected(nk_conn *c)
{
    int64_t id;
    if (nk_quic_stream_open(c->quic, &id) != 0 || id != (c->msg_rx ^ 1)) {
        c->close_reason = "could not open the message stream";
        nk_quic_close(c->quic, c->node->now_ms, APP_ERR_FRAMING);
        return;
    }
    c->msg_tx = id;
    c->quic_up = 1;
    flush_txq(c);
}

/* "peer closed the connection: PHRASE" when the peer's CONNECTION_CLOSE has a reason phrase (QUIC
 * reports it as "peer closed: PHRASE"); only printable ASCII of it is kept, without quotes or
 * backslashes, so that it can be printed as is, in JSON too. */
static const char *peer_phrase(nk_conn *c, const nk_quic_event *ev)
{
    static const char prefix[] = "peer closed: ";
    if (strncmp(ev->reason, prefix, sizeof(prefix) - 1) != 0 || ev->reason[sizeof(prefix) - 1] == '\0')
        return "peer closed the connection";
    int n = snprintf(c->peer_reason, sizeof(c->peer_reason), "peer closed the connection: %s",
                     ev->reason + sizeof(prefix) - 1);
    for (int i = (int)sizeof("peer closed the connection: ") - 1; i < n && c->peer_reason[i] != '\0'; i++)
        if (c->peer_reason[i] < 0x20 || c->peer_reason[i] > 0x7e || c->peer_reason[i] == '"' ||
            c->peer_reason[i] == '\\')
            c->peer_reason[i] = '?';
    return c->peer_reason;
}

static const char *closed_reason(nk_conn *c, const nk_quic_event *ev)
{
    switch (ev->err) {
    case 0:
        return c->close_reason != NULL ? c->close_reason : "closed here";
    case NK_ERR_CLOSED:
        return ev->app_error == APP_ERR_FRAMING ? "peer refused our messages" : peer_phrase(c, ev);
    case NK_ERR_TIMEOUT:
        return "peer stopped answering";
    case NK_ERR_AUTH:
        return "peer failed authentication";
    case NK_ERR_MALFORMED:
        return "QUIC protocol error";
    default:
        return "connection closed";
    }
}

static int pump_quic(nk_conn *c, int64_t now_ms)
{
    nk_quic_event ev;
    int count = 0;
    if (c->quic == NULL)
        return 0;
    while (nk_quic_poll_event(c->quic, &ev) == 0) {
        count++;
        switch (ev.type) {
        case NK_QUIC_EV_CONNECTED:
            on_quic_connected(c);
            break;
        case NK_QUIC_EV_STREAM_OPENED:
            if (!is_msg_stream(c, ev.stream_id))
                stream_event(c, now_ms, NK_NODE_EV_STREAM_OPENED, &ev);
            break;
        case NK_QUIC_EV_STREAM_READABLE:
            if (ev.stream_id == c->msg_rx)
                tell_readable(c, now_ms);
            else if (!is_msg_stream(c, ev.stream_id))
                stream_event(c, now_ms, NK_NODE_EV_STREAM_READABLE, &ev);
            break;
        case NK_QUIC_EV_STREAM_WRITABLE:
            if (ev.stream_id == c->msg_tx)
                flush_txq(c);
            else if (!is_msg_stream(c, ev.stream_id))
                stream_event(c, now_ms, NK_NODE_EV_STREAM_WRITABLE, &ev);
            break;
        case NK_QUIC_EV_STREAM_FINISHED:
            if (!is_msg_stream(c, ev.stream_id))
                stream_event(c, now_ms, NK_NODE_EV_STREAM_FINISHED, &ev);
            break;
        case NK_QUIC_EV_STREAM_RESET:
            if (!is_msg_stream(c, ev.stream_id))
                stream_event(c, now_ms, NK_NODE_EV_STREAM_RESET, &ev);
            break;
        case NK_QUIC_EV_DATAGRAM:
            if (!c->dgram_told) {
                c->dgram_told = 1;
                stream_event(c, now_ms, NK_NODE_EV_DATAGRAM, &ev);
            }
            break;
        case NK_QUIC_EV_CLOSED:
            c->quic_closed = 1;
            announce_before(c, now_ms);
            disconnect_code(c, ev.err, closed_reason(c, &ev), ev.err == NK_ERR_CLOSED ? ev.app_error : 0);
            break;
        default:
            break;
        }
    }
    /* Except on the hub relay (whose signals the node flushes from here), QUIC's datagrams wait
     * in QUIC until poll_transmit takes them: in place where the path allows it */
    return count + (c->path.kind != NK_PATH_HUB && c->pend == NULL ? 0 : quic_tx(c, now_ms));
}

/* A closed connection: once what was sent is acknowledged (or LINGER_MS passed), the
 * CONNECTION_CLOSE goes to the agent CLOSE_COPIES times, with growing gaps from CLOSE_GAP_MS
 * (reap_closed sends the later copies; answer_closing one more for a datagram from the peer
 * meanwhile), so lost datagrams do not leave the peer to its idle timeout. */
static void finish_close(nk_conn *c, int64_t now_ms)
{
    if (!c->closing || c->close_sent)
        return;
    if (c->quic == NULL || c->quic_closed || !c->quic_up) {
        if (c->quic != NULL && !c->quic_closed)
            nk_quic_close_ex(c->quic, now_ms, c->close_code, c->close_phrase[0] != '\0' ? c->close_phrase : NULL);
        else {
            c->close_sent = 1;
            return;
        }
    } else {
        nk_quic_stats_t qs;
        nk_quic_stats(c->quic, &qs);
        int settled = c->txq_len == 0 && qs.bytes_in_flight == 0 && c->pend_len == 0 &&
                      nk_quic_stream_unacked(c->quic, c->msg_tx) == 0;
        if (!settled && now_ms < c->linger_until)
            return;
        quic_tx(c, now_ms); /* acknowledgements due go first */
        nk_quic_close_ex(c->quic, now_ms, c->close_code, c->close_phrase[0] != '\0' ? c->close_phrase : NULL);
    }
    c->close_sent = 1;
    uint32_t path = tx_path(c);
    int n = nk_quic_poll_transmit(c->quic, now_ms, c->node->qbuf, sizeof(c->node->qbuf));
    if (n > 0 && path != 0) {
        nk_agent_send(c->agent, now_ms, path, c->node->qbuf, (size_t)n); /* no room: fewer copies */
        if ((c->close_pkt = malloc((size_t)n)) != NULL) {
            memcpy(c->close_pkt, c->node->qbuf, (size_t)n);
            c->close_len = (size_t)n;
            c->close_left = CLOSE_COPIES - 1;
            c->close_next = now_ms + CLOSE_GAP_MS;
            c->close_gap = 2 * CLOSE_GAP_MS;
            c->close_answered = now_ms;
            c->close_path = path;
        }
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = 0;
    flush_signals(c, now_ms);
}

static void pump_conn(nk_conn *c, int64_t now_ms)
{
    if (c->close_sent)
        return;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        int progress = pump_agent(c, now_ms) + pump_quic(c, now_ms);
        if (progress == 0)
            break;
    }
    flush_signals(c, now_ms);
    maybe_announce(c, now_ms);
    finish_close(c, now_ms);
}

static void pump_all(nk_node *n, int64_t now_ms)
{
    for (nk_conn *c = n->conns; c != NULL; c = c->next)
        pump_conn(c, now_ms);
}

/* ---- the hub ------------------------------------------------------------------------ */

static void on_hub_message(nk_node *n, int64_t now_ms, const nk_hub_event *ev, const uint8_t *payload)
{
    nk_conn *c = find_conn(n, &ev->peer);
    if (c == NULL && ev->msg_type != NK_HUB_T_CONNECT)
        c = route_conn(n, &ev->peer); /* relayed datagrams for a connection still closing */
    if (c == NULL) {
        if (ev->msg_type != NK_HUB_T_CONNECT && answer_closing(n, now_ms, &ev->peer))
            return; /* relayed datagrams for a connection whose close copies are going out */
        if (ev->msg_type != NK_HUB_T_CONNECT || !n->cfg.accept)
            return; /* nobody asked for this peer */
        if (conn_new(n, now_ms, &ev->peer, 0, NULL, &c) != 0)
            return;
        push_event(n, NK_NODE_EV_INCOMING, c);
    }
    nk_agent_handle_signal(c->agent, now_ms, ev->msg_type, payload, ev->len);
    pump_conn(c, now_ms);
}

/* The hub connection (or the attempt at one) is over: tell, then wait for the next attempt, or give
 * up when no hub is left (none answered like a hub, one refused us for good, another process took
 * our ID). */
static void hub_attempt_over(nk_node *n, int64_t now_ms, int dial_failed, int code, int64_t retry_ms)
{
    nk_node_event *out;
    nk_addr at = n->hubs[n->redial.at];
    int64_t held = n->hub_registered_at >= 0 ? now_ms - n->hub_registered_at : -1;
    nk__redial_outcome how = NK__REDIAL_LOST;
    n->hub_registered_at = -1;
    if (!dial_failed) {
        if (code == NK_HUB_CLOSE_NOT_HUB)
            how = NK__REDIAL_NOT_HUB;
        else if (code == NK_HUB_CLOSE_VERSION || code == NK_HUB_CLOSE_AUTH)
            how = NK__REDIAL_REFUSED;
        if (how != NK__REDIAL_NOT_HUB && (out = push_event(n, NK_NODE_EV_HUB_CLOSED, NULL)) != NULL) {
            out->err = NK_ERR_CLOSED;
            out->reason = n->hub_reason;
            out->hub = at;
        }
    }
    uint32_t rnd;
    nk__random(n->cfg.random, n->cfg.random_ctx, &rnd, sizeof(rnd));
    int64_t delay = nk__redial_done(&n->redial, how, held, retry_ms, rnd);
    int next = nk__redial_peek(&n->redial);
    if (code == NK_HUB_CLOSE_REPLACED || next < 0) {
        n->hub_state = NK_NODE_HUB_FAILED;
        if ((out = push_event(n, NK_NODE_EV_HUB_FAILED, NULL)) != NULL) {
            out->err = NK_ERR_CLOSED;
            out->reason = n->hub_reason;
            out->hub = at;
        }
        return;
    }
    n->hub_state = NK_NODE_HUB_RECONNECTING;
    n->hub_retry_at = now_ms + delay;
    n->hub_due = 0;
    if ((out = push_event(n, NK_NODE_EV_HUB_RETRY, NULL)) != NULL) {
        out->err = dial_failed ? NK_ERR_SYSTEM : NK_ERR_CLOSED;
        out->reason = n->hub_reason;
        out->hub = n->hubs[next];
        out->retry_ms = delay;
        out->attempt = n->redial.fails;
        out->sys_errno = n->hub_errno;
    }
}

static void on_hub_event(nk_node *n, int64_t now_ms, const nk_hub_event *ev, const uint8_t *payload)
{
    nk_node_event *out;
    nk_conn *c;
    switch (ev->type) {
    case NK_HUB_EV_REGISTERED:
        n->hub_state = NK_NODE_HUB_REGISTERED;
        n->hub_registered_at = now_ms;
        nk__redial_answered(&n->redial);
        out = push_event(n, NK_NODE_EV_REGISTERED, NULL);
        if (out != NULL) {
            out->addr = ev->addr;
            out->hub = n->hubs[n->redial.at];
        }
        for (c = n->conns; c != NULL; c = c->next)
            nk_agent_set_hub_up(c->agent, now_ms, 1);
        break;
    case NK_HUB_EV_MESSAGE:
        on_hub_message(n, now_ms, ev, payload);
        break;
    case NK_HUB_EV_UNKNOWN_PEER:
        c = find_conn(n, &ev->peer);
        if (c != NULL && !c->announced)
            disconnect(c, NK_ERR_NOT_FOUND, "peer is not registered at the hub");
        break;
    case NK_HUB_EV_PONG:
        n->hub_rtt_ms = nk_hub_client_rtt(n->hub);
        for (c = n->conns; c != NULL; c = c->next)
            nk_agent_set_hub_rtt(c->agent, n->hub_rtt_ms);
        break;
    case NK_HUB_EV_CLOSED:
        for (c = n->conns; c != NULL; c = c->next)
            nk_agent_set_hub_up(c->agent, now_ms, 0);
        snprintf(n->hub_reason, sizeof(n->hub_reason), "%s",
                 ev->reason[0] != '\0' ? ev->reason : nk_hub_close_reason(ev->code));
        n->hub_errno = 0;
        hub_attempt_over(n, now_ms, 0, ev->code, ev->retry_ms);
        break;
    }
}

void nk_node_handle_hub(nk_node *n, int64_t now_ms)
{
    if (n->hub == NULL)
        return;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    nk_hub_event ev;
    n->now_ms = now_ms;
    n->now_us = -1;
    if (nk_hub_client_state(n->hub) == NK_HUB_CLIENT_IDLE && !n->hub_dialer) { /* a driver that dialed by itself */
        nk__redial_pick(&n->redial);
        nk_hub_client_register(n->hub, now_ms);
        n->hub_state = NK_NODE_HUB_CONNECTING;
    }
    for (int budget = 4096; budget > 0 && nk_hub_client_poll_event(n->hub, &ev, buf, sizeof(buf)) == 0; budget--)
        on_hub_event(n, now_ms, &ev, buf);
    pump_all(n, now_ms);
}

nk_node_hub_state nk_node_hub_status(const nk_node *n, nk_addr *hub)
{
    if (hub != NULL) {
        int next = n->hub_state == NK_NODE_HUB_RECONNECTING ? nk__redial_peek(&n->redial) : (int)n->redial.at;
        if (n->nhubs > 0 && next >= 0)
            *hub = n->hubs[next];
        else
            memset(hub, 0, sizeof(*hub));
    }
    return n->hub_state;
}

int nk_node_hub_dial(nk_node *n, int64_t now_ms, nk_addr *hub)
{
    if (n->hub == NULL || n->hub_state != NK_NODE_HUB_RECONNECTING)
        return NK_ERR_STATE;
    if (!n->hub_due && now_ms < n->hub_retry_at)
        return NK_ERR_AGAIN;
    int i = nk__redial_pick(&n->redial);
    if (i < 0 || nk_hub_client_set_hub(n->hub, &n->hubs[i]) != 0)
        return NK_ERR_STATE;
    n->now_ms = now_ms;
    n->hub_state = NK_NODE_HUB_CONNECTING;
    n->hub_dialing = n->hub_dialer = 1;
    *hub = n->hubs[i];
    return 0;
}

void nk_node_hub_connected(nk_node *n, int64_t now_ms)
{
    if (n->hub == NULL || n->hub_state != NK_NODE_HUB_CONNECTING || !n->hub_dialing)
        return;
    n->hub_dialing = 0;
    nk_hub_client_register(n->hub, now_ms); /* the challenge timer starts now */
    nk_node_handle_hub(n, now_ms);
}

void nk_node_hub_dial_failed(nk_node *n, int64_t now_ms, const char *why, int sys_errno)
{
    if (n->hub == NULL || n->hub_state != NK_NODE_HUB_CONNECTING || !n->hub_dialing)
        return;
    n->hub_dialing = 0;
    n->now_ms = now_ms;
    snprintf(n->hub_reason, sizeof(n->hub_reason), "cannot connect: %s", why != NULL ? why : "failed");
    n->hub_errno = sys_errno;
    hub_attempt_over(n, now_ms, 1, NK_HUB_CLOSE_NORMAL, -1);
}

/* ---- node ------------------------------------------------------------------------------ */

int nk_node_new(nk_node **out, const nk_node_config *cfg, int64_t now_ms)
{
    *out = NULL;
    if (cfg == NULL || cfg->identity == NULL || cfg->nhost > NK_NODE_MAX_ADDRS || cfg->nstun > NK_NODE_MAX_ADDRS ||
        cfg->nhubs > NK_NODE_MAX_HUBS)
        return NK_ERR_INVAL;
    nk_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NK_ERR_NOMEM;
    n->now_ms = now_ms;
    nk__ring_init(&n->evq, NULL, sizeof(nk_node_event), 0); /* storage at the first event */
    n->cfg = *cfg;
    n->identity = *cfg->identity;
    n->cfg.identity = &n->identity;
    if (n->cfg.max_conns == 0)
        n->cfg.max_conns = DEFAULT_MAX_CONNS;
    if (n->cfg.settle_ms <= 0)
        n->cfg.settle_ms = DEFAULT_SETTLE_MS;
    n->hub_rtt_ms = -1;
    if (cfg->turn.family != NK_AF_NONE) {
        n->turn_user = strdup(cfg->turn_user != NULL ? cfg->turn_user : "");
        n->turn_pass = strdup(cfg->turn_pass != NULL ? cfg->turn_pass : "");
        n->turn.server = cfg->turn;
        n->turn.transport = NK_TRANSPORT_UDP;
        n->turn.username = n->turn_user;
        n->turn.password = n->turn_pass;
        n->turn.random = cfg->random;
        n->turn.random_ctx = cfg->random_ctx;
        if (n->turn_user == NULL || n->turn_pass == NULL) {
            nk_node_free(n);
            return NK_ERR_NOMEM;
        }
    }
    n->cfg.turn_user = n->turn_user;
    n->cfg.turn_pass = n->turn_pass;
    if (cfg->turn.family != NK_AF_NONE) {
        /* One allocation per socket: a second one from the same 5-tuple is refused (437). */
        int rc = nk_turn_client_new(&n->turn_client, &n->turn);
        if (rc == 0)
            rc = nk_turn_client_allocate(n->turn_client, now_ms);
        if (rc != 0) {
            nk_node_free(n);
            return rc;
        }
    }
    for (size_t i = 0; i < cfg->nhubs; i++)
        n->hubs[n->nhubs++] = cfg->hubs[i];
    if (n->nhubs == 0 && cfg->hub.family != NK_AF_NONE)
        n->hubs[n->nhubs++] = cfg->hub;
    n->cfg.hub = n->nhubs > 0 ? n->hubs[0] : (nk_addr){0};
    nk__redial_init(&n->redial, n->nhubs);
    n->hub_registered_at = -1;
    if (n->nhubs > 0) {
        nk_hub_client_config hc;
        memset(&hc, 0, sizeof(hc));
        hc.identity = &n->identity;
        hc.hub = n->hubs[0];
        n->hub_state = NK_NODE_HUB_RECONNECTING; /* the first attempt is due at once */
        n->hub_retry_at = now_ms;
        n->hub_due = 1;
        hc.queue_cap = HUB_QUEUE_ROOM;
        int rc = nk_hub_client_new(&n->hub, &hc);
        if (rc != 0) {
            nk_node_free(n);
            return rc;
        }
    }
    *out = n;
    return 0;
}

int nk_node_release_turn(nk_node *n, int64_t now_ms)
{
    if (n == NULL || n->turn_client == NULL)
        return NK_ERR_STATE;
    nk_turn_state st = nk_turn_client_state(n->turn_client);
    if (st != NK_TURN_ALLOCATED && st != NK_TURN_ALLOCATING) /* an Allocate in flight may yet succeed */
        return NK_ERR_STATE;
    n->now_ms = now_ms;
    int rc = nk_turn_client_deallocate(n->turn_client, now_ms);
    if (rc == 0)
        n->turn_release_asked = 1;
    return rc;
}

int nk_node_turn_released(const nk_node *n)
{
    if (n == NULL || n->turn_client == NULL)
        return 1;
    nk_turn_state st = nk_turn_client_state(n->turn_client);
    return st != NK_TURN_DEALLOCATING && !(st == NK_TURN_ALLOCATING && n->turn_release_asked);
}

void nk_node_free(nk_node *n)
{
    if (n == NULL)
        return;
    while (n->conns != NULL) {
        nk_conn *c = n->conns;
        n->conns = c->next;
        conn_free(c);
    }
    nk_hub_client_free(n->hub);
    nk_turn_client_free(n->turn_client);
    if (n->turn_pass != NULL)
        sodium_memzero(n->turn_pass, strlen(n->turn_pass));
    free(n->turn_user);
    free(n->turn_pass);
    nk_identity_wipe(&n->identity);
    free(n->evq.slots);
    free(n);
}

nk_hub_client *nk_node_hub_client(nk_node *n)
{
    return n->hub;
}

size_t nk_node_conn_count(const nk_node *n)
{
    return n->nconns;
}

const nk_peer_id *nk_node_id(const nk_node *n)
{
    return n != NULL ? &n->identity.id : NULL;
}

nk_conn *nk_node_conn_next(nk_node *n, const nk_conn *prev)
{
    if (n == NULL)
        return NULL;
    nk_conn *c = prev != NULL ? prev->next : n->conns;
    while (c != NULL && c->closing)
        c = c->next;
    return c;
}

void nk_node_stats(const nk_node *n, nk_node_stats_t *st)
{
    if (n == NULL || st == NULL)
        return;
    memset(st, 0, sizeof(*st));
    st->conns = n->nconns;
    st->events_queued = nk__ring_count(&n->evq);
    st->events_dropped = n->events_dropped;
}

static int connect_common(nk_node *n, int64_t now_ms, const nk_peer_id *peer, const nk_addr *remote,
                          nk_conn **out)
{
    nk_conn *c;
    n->now_ms = now_ms;
    if (find_conn(n, peer) != NULL)
        return NK_ERR_STATE;
    if (nk_peer_id_equal(peer, &n->identity.id))
        return NK_ERR_INVAL;
    /* By hand both sides run the same command: the lower ID starts the handshake and nominates. */
    int initiator = remote == NULL || memcmp(n->identity.id.key, peer->key, NK_PEER_ID_SIZE) < 0;
    int rc = conn_new(n, now_ms, peer, initiator, remote, &c);
    if (rc != 0)
        return rc;
    pump_conn(c, now_ms);
    if (out != NULL)
        *out = c;
    return 0;
}

int nk_node_connect(nk_node *n, int64_t now_ms, const nk_peer_id *peer, nk_conn **out)
{
    if (n->hub == NULL)
        return NK_ERR_STATE;
    return connect_common(n, now_ms, peer, NULL, out);
}

int nk_node_connect_direct(nk_node *n, int64_t now_ms, const nk_peer_id *peer, const nk_addr *addr, nk_conn **out)
{
    if (addr == NULL || nk_addr_ip_len(addr) == 0 || addr->port == 0)
        return NK_ERR_INVAL;
    return connect_common(n, now_ms, peer, addr, out);
}

/* Relayed data goes to the agent whose peer sent it; allocation changes reach agents on their timers. */
static void pump_turn(nk_node *n, int64_t now_ms)
{
    nk_turn_event ev;
    while (nk_turn_client_poll_event(n->turn_client, &ev) == 0) {
        if (ev.type == NK_TURN_EV_ERROR && ev.method == NK_STUN_ALLOCATE) {
            warn_server(n, &n->turn_warned, &n->turn.server, ev.status,
                        ev.status == NK_ERR_STUN(401)   ? "the TURN server refused our credentials (--user/--pass): no relayed path"
                        : ev.status == NK_ERR_TIMEOUT   ? "the TURN server did not answer: no relayed path"
                                                        : "the TURN server refused the allocation: no relayed path");
            continue;
        }
        nk_peer_id sender;
        if (ev.type != NK_TURN_EV_DATA || nk_agent_peek(ev.data, ev.len, &sender) != 0)
            continue;
        nk_conn *c = route_conn(n, &sender);
        if (c == NULL) {
            answer_closing(n, now_ms, &sender);
            continue;
        }
        nk_agent_handle_relayed(c->agent, now_ms, &ev.peer, ev.data, ev.len);
        pump_conn(c, now_ms);
    }
}

int nk_node_handle_datagram(nk_node *n, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t len)
{
    return nk_node_handle_datagram_on(n, now_ms, NULL, from, p, len);
}

int nk_node_handle_datagram_on(nk_node *n, int64_t now_ms, const nk_addr *local, const nk_addr *from,
                               const uint8_t *p, size_t len)
{
    nk_peer_id sender;
    n->now_ms = now_ms;
    if (local != NULL) { /* an extra socket: only agent frames of the connection that owns it */
        if (nk_agent_peek(p, len, &sender) != 0)
            return NK_ERR_NOT_FOUND;
        nk_conn *c = route_conn(n, &sender);
        if (c == NULL)
            return answer_closing(n, now_ms, &sender) ? 0 : NK_ERR_NOT_FOUND;
        int rc = nk_agent_handle_datagram_on(c->agent, now_ms, local, from, p, len);
        pump_conn(c, now_ms);
        return rc;
    }
    nk_addr turn_server; /* cfg.turn, or the alternate a 300 Try Alternate sent the Allocate to */
    if (n->turn_client != NULL)
        nk_turn_client_server(n->turn_client, &turn_server, NULL);
    if (n->turn_client != NULL && nk_addr_equal(from, &turn_server)) {
        int rc = nk_turn_client_handle_input(n->turn_client, now_ms, from, p, len);
        if (rc == 0) {
            pump_turn(n, now_ms);
            return 0;
        }
    }
    if (nk_agent_peek(p, len, &sender) == 0) {
        nk_conn *c = route_conn(n, &sender);
        if (c == NULL)
            return answer_closing(n, now_ms, &sender) ? 0 : NK_ERR_NOT_FOUND;
        nk_path_info path;
        const uint8_t *data;
        size_t dlen;
        if (nk_agent_take_data(c->agent, from, p, len, &path, &data, &dlen) == 0) {
            on_data(c, now_ms, &path, data, dlen); /* straight to QUIC, no copy through the agent's queue */
            pump_conn(c, now_ms);
            return 0;
        }
        int rc = nk_agent_handle_datagram(c->agent, now_ms, from, p, len);
        pump_conn(c, now_ms);
        return rc;
    }
    /* STUN and TURN answers: the agent whose transaction it is takes it. */
    for (nk_conn *c = n->conns; c != NULL; c = c->next) {
        if (nk_agent_handle_datagram(c->agent, now_ms, from, p, len) == 0) {
            pump_conn(c, now_ms);
            return 0;
        }
    }
    return NK_ERR_NOT_FOUND;
}

void nk_node_handle_timeout(nk_node *n, int64_t now_ms)
{
    n->now_ms = now_ms;
    if (n->hub != NULL)
        nk_hub_client_handle_timeout(n->hub, now_ms);
    if (n->hub_state == NK_NODE_HUB_RECONNECTING && now_ms >= n->hub_retry_at)
        n->hub_due = 1; /* the driver dials (nk_node_hub_dial) */
    if (n->turn_client != NULL) {
        nk_turn_client_handle_timeout(n->turn_client, now_ms);
        pump_turn(n, now_ms);
    }
    for (nk_conn *c = n->conns; c != NULL; c = c->next) {
        if (c->close_sent)
            continue;
        nk_agent_handle_timeout(c->agent, now_ms);
        if (c->quic != NULL && now_ms >= nk_quic_next_deadline(c->quic))
            nk_quic_handle_timeout(c->quic, now_ms);
    }
    nk_node_handle_hub(n, now_ms); /* hub events, then every connection is pumped */
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

void nk_node_set_now_us(nk_node *n, int64_t now_us)
{
    if (n != NULL)
        n->now_us = now_us;
}

int64_t nk_node_next_deadline(const nk_node *n)
{
    int64_t d = n->hub != NULL ? nk_hub_client_next_deadline(n->hub) : NK_DEADLINE_NONE;
    if (n->hub_state == NK_NODE_HUB_RECONNECTING && !n->hub_due)
        d = min64(d, n->hub_retry_at);
    if (n->turn_client != NULL)
        d = min64(d, nk_turn_client_next_deadline(n->turn_client));
    for (const nk_conn *c = n->conns; c != NULL; c = c->next) {
        if (c->close_sent) {
            d = min64(d, c->close_left > 0 ? c->close_next : 0); /* a copy due, or reaped next */
            continue;
        }
        d = min64(d, nk_agent_next_deadline(c->agent));
        d = min64(d, nk_quic_next_deadline(c->quic)); /* loss recovery, ACK delay, pacing, idle */
        d = min64(d, announce_at(c));
        if (c->closing)
            d = min64(d, c->linger_until);
    }
    return d;
}

static void unlink_conn(nk_node *n, nk_conn *c)
{
    for (nk_conn **pp = &n->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (n->tx_cursor == c)
        n->tx_cursor = NULL;
    /* Events still queued for c must not point at freed memory. */
    for (size_t i = 0; i < nk__ring_count(&n->evq); i++) {
        nk_node_event *ev = nk__ring_at(&n->evq, i);
        if (ev->conn == c)
            ev->conn = NULL;
    }
    n->nconns--;
    close_sockets(c, NULL, NULL); /* the driver closes what is left (the socket that won) */
    nk_agent_close(c->agent, 0); /* the shared TURN allocation stays; nothing is left to send */
    conn_free(c);
}

/* Frees connections the user closed once their CONNECTION_CLOSE is out. */
static void reap_closed(nk_node *n, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap, int *sent)
{
    nk_conn *c = n->conns;
    while (c != NULL) {
        nk_conn *next = c->next;
        if (c->close_sent) {
            if (c->close_left > 0 && now_ms >= c->close_next) {
                nk_agent_send(c->agent, now_ms, c->close_path, c->close_pkt, c->close_len);
                c->close_left--;
                c->close_next = now_ms + c->close_gap;
                c->close_gap *= 2;
            }
            if (!*sent && nk_agent_poll_transmit(c->agent, now_ms, out, buf, cap) == 0)
                *sent = 1;
            else if (c->close_left == 0)
                unlink_conn(n, c);
        }
        c = next;
    }
}

int nk_node_poll_transmit(nk_node *n, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    int sent = 0;
    n->now_ms = now_ms;
    if (n->turn_client != NULL && nk_turn_client_poll_transmit(n->turn_client, now_ms, out, buf, cap) == 0)
        return 0;
    reap_closed(n, now_ms, out, buf, cap, &sent);
    if (sent)
        return 0;
    /* Round-robin over connections so one busy peer cannot starve the others. */
    nk_conn *start = n->tx_cursor != NULL ? n->tx_cursor : n->conns;
    nk_conn *c = start;
    for (size_t i = 0; c != NULL && i < n->nconns; i++) {
        /* the agent's queue first; when it is empty, QUIC's next datagram (pulled at the driver's
         * pace): in place on a direct path, else through the agent's queue */
        int rc = nk_agent_poll_transmit(c->agent, now_ms, out, buf, cap);
        if (rc != 0 && !c->close_sent) {
            rc = quic_tx_in_place(c, now_ms, out, buf, cap);
            if (rc != 0 && rc != NK_ERR_AGAIN && quic_tx(c, now_ms) > 0)
                rc = nk_agent_poll_transmit(c->agent, now_ms, out, buf, cap);
        }
        if (rc == 0) {
            n->tx_cursor = c->next;
            return 0;
        }
        if (!c->close_sent)
            flush_signals(c, now_ms); /* QUIC's datagrams for the hub relay */
        c = c->next != NULL ? c->next : n->conns;
    }
    n->tx_cursor = NULL;
    return NK_ERR_AGAIN;
}

/* ---- connections, public ------------------------------------------------------------- */

int nk_conn_send(nk_conn *c, int64_t now_ms, const uint8_t *msg, size_t len)
{
    if (c == NULL || (msg == NULL && len > 0))
        return NK_ERR_INVAL;
    if (c->over)
        return NK_ERR_CLOSED;
    if (len > NK_CONN_MAX_MESSAGE)
        return NK_ERR_LIMIT;
    c->node->now_ms = now_ms;
    /* All or nothing: a message is taken whole when nothing waits before it (QUIC takes what fits,
     * the rest waits in txq), or, before QUIC is up, while the waiting bytes stay under PREOPEN_MAX. */
    if (c->txq_len > 0 && (c->quic_up || c->txq_len + NK__MSGFRAME_HDR + len > PREOPEN_MAX)) {
        c->want_writable = 1;
        return NK_ERR_AGAIN;
    }
    uint8_t hdr[NK__MSGFRAME_HDR];
    nk__msgframe_header(hdr, (uint32_t)len);
    size_t took_hdr = 0, took = 0;
    if (c->quic_up && c->txq_len == 0) {
        int k = nk_quic_stream_write(c->quic, c->msg_tx, hdr, sizeof(hdr));
        took_hdr = k > 0 ? (size_t)k : 0;
        if (took_hdr == sizeof(hdr) && len > 0) {
            k = nk_quic_stream_write(c->quic, c->msg_tx, msg, len);
            took = k > 0 ? (size_t)k : 0;
        }
    }
    if (txq_append(c, hdr + took_hdr, sizeof(hdr) - took_hdr) != 0 || txq_append(c, msg + took, len - took) != 0)
        return NK_ERR_NOMEM; /* only possible before anything was taken: the buffer grows first */
    pump_conn(c, now_ms); /* the message leaves now, not at the next timer */
    return 0;
}

int nk_conn_recv(nk_conn *c, uint8_t *buf, size_t cap)
{
    if (c == NULL || (buf == NULL && cap > 0))
        return NK_ERR_INVAL;
    if (!c->rx.ready)
        pull_message(c);
    size_t len;
    const uint8_t *m = nk__msgrx_message(&c->rx, &len);
    if (m == NULL) {
        c->readable_told = 0; /* the next whole message is told */
        return NK_ERR_AGAIN;
    }
    if (len > cap)
        return NK_ERR_NOBUFS;
    if (len > 0)
        memcpy(buf, m, len);
    nk__msgrx_next(&c->rx);
    return (int)len;
}

const nk_peer_id *nk_conn_peer(const nk_conn *c)
{
    return &c->peer;
}

void nk_conn_path(const nk_conn *c, nk_path_info *out)
{
    *out = c->path;
}

int nk_conn_is_connected(const nk_conn *c)
{
    return c->announced && !c->over;
}

int nk_conn_is_client(const nk_conn *c)
{
    return c->initiator;
}

void nk_conn_close(nk_conn *c, int64_t now_ms)
{
    nk_conn_close_ex(c, now_ms, 0, NULL);
}

void nk_conn_close_ex(nk_conn *c, int64_t now_ms, uint64_t app_error, const char *reason)
{
    if (c == NULL || c->closing)
        return;
    c->close_code = app_error;
    snprintf(c->close_phrase, sizeof(c->close_phrase), "%s", reason != NULL ? reason : "");
    c->node->now_ms = now_ms;
    c->closing = 1;
    c->over = 1;
    c->linger_until = now_ms + LINGER_MS;
    pump_conn(c, now_ms); /* the CONNECTION_CLOSE goes to the agent now if nothing waits for an ACK */
}

int nk_node_broadcast(nk_node *n, int64_t now_ms, const uint8_t *msg, size_t len)
{
    int sent = 0;
    for (nk_conn *c = n->conns; c != NULL; c = c->next)
        if (nk_conn_is_connected(c) && nk_conn_send(c, now_ms, msg, len) == 0)
            sent++;
    return sent;
}

size_t nk_conn_unacked(const nk_conn *c)
{
    size_t n = c->txq_len;
    if (c->quic_up)
        n += nk_quic_stream_unacked(c->quic, c->msg_tx);
    return n;
}

/* ---- streams, datagrams, exporter ------------------------------------------------------ */

/* A stream the user may touch: QUIC is up and it is not one of the message streams. (Before
 * QUIC is up there is no stream of the user's: every one is opened, or reported, after.) */
static int user_stream(const nk_conn *c, int64_t id)
{
    if (c == NULL || id < 0)
        return NK_ERR_INVAL;
    if (c->quic == NULL || !c->quic_up)
        return NK_ERR_NOT_FOUND;
    if (is_msg_stream(c, id))
        return NK_ERR_INVAL;
    return 0;
}

int nk_conn_stream_open(nk_conn *c, int64_t *id)
{
    if (c == NULL || id == NULL)
        return NK_ERR_INVAL;
    if (c->over)
        return NK_ERR_CLOSED;
    if (c->quic == NULL || !c->quic_up)
        return NK_ERR_STATE;
    return nk_quic_stream_open(c->quic, id);
}

int nk_conn_stream_write(nk_conn *c, int64_t id, const uint8_t *p, size_t n)
{
    int rc = user_stream(c, id);
    return rc != 0 ? rc : nk_quic_stream_write(c->quic, id, p, n);
}

int nk_conn_stream_read(nk_conn *c, int64_t id, uint8_t *buf, size_t cap)
{
    int rc = user_stream(c, id);
    return rc != 0 ? rc : nk_quic_stream_read(c->quic, id, buf, cap);
}

int nk_conn_stream_shutdown(nk_conn *c, int64_t id)
{
    int rc = user_stream(c, id);
    return rc != 0 ? rc : nk_quic_stream_shutdown(c->quic, id);
}

int nk_conn_stream_reset(nk_conn *c, int64_t id, uint64_t code)
{
    int rc = user_stream(c, id);
    return rc != 0 ? rc : nk_quic_stream_reset(c->quic, id, code);
}

size_t nk_conn_stream_unacked(const nk_conn *c, int64_t id)
{
    return user_stream(c, id) != 0 ? 0 : nk_quic_stream_unacked(c->quic, id);
}

int nk_conn_datagram_send(nk_conn *c, const uint8_t *p, size_t n)
{
    if (c == NULL)
        return NK_ERR_INVAL;
    if (c->quic == NULL)
        return NK_ERR_STATE;
    return nk_quic_datagram_send(c->quic, p, n);
}

int nk_conn_datagram_read(nk_conn *c, uint8_t *buf, size_t cap)
{
    if (c == NULL)
        return NK_ERR_INVAL;
    int rc = c->quic != NULL ? nk_quic_datagram_read(c->quic, buf, cap) : NK_ERR_AGAIN;
    if (rc == NK_ERR_AGAIN)
        c->dgram_told = 0;
    return rc;
}

size_t nk_conn_datagram_max(const nk_conn *c)
{
    return c != NULL ? nk_quic_datagram_max(c->quic) : 0;
}

int nk_conn_export(nk_conn *c, const char *label, const uint8_t *ctx, size_t ctx_len, uint8_t *out, size_t len)
{
    if (c == NULL || label == NULL || out == NULL)
        return NK_ERR_INVAL;
    if (c->quic == NULL || !c->quic_up)
        return NK_ERR_STATE;
    return nk_quic_export(c->quic, label, ctx, ctx_len, out, len);
}

void nk_conn_stats(const nk_conn *c, nk_conn_stats_t *st)
{
    if (c == NULL || st == NULL)
        return;
    *st = c->st;
    if (c->quic != NULL) {
        nk_quic_stats_t qs;
        nk_quic_stats(c->quic, &qs);
        st->srtt_us = qs.srtt_us;
        st->cwnd = qs.cwnd;
        st->bytes_in_flight = qs.bytes_in_flight;
        st->quic_mem_bytes = qs.mem_bytes;
        st->tx_bytes = qs.tx_bytes;
        st->rx_bytes = qs.rx_bytes;
        st->stream_bytes_sent = qs.stream_bytes_sent;
        st->stream_bytes_read = qs.stream_bytes_read;
        st->streams = nk_quic_stream_count(c->quic, 2); /* 0 and 1 carry the messages */
    }
    st->age_ms = c->node->now_ms - c->created_ms;
    if (c->agent != NULL) {
        nk_agent_stats_t as;
        nk_agent_stats(c->agent, &as);
        st->probes_sent = as.probes_sent;
        st->birthday_probes = as.birthday_probes;
    }
}
