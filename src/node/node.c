/*
 * natkit: the node — connections to peers by ID, each an agent under a
 * secure session, plus the hub client that carries their signalling.
 * Sans-I/O; see include/natkit/node.h and docs/internals/node.md.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/node.h"
#include "natkit/session.h"
#include "ring.h"

#define DEFAULT_MAX_CONNS 128
#define DEFAULT_SETTLE_MS 4000
#define EVENT_RING        1024
#define PUMP_ROUNDS       64
#define DGRAM_CAP         2048

struct nk_conn {
    nk_node *node;
    nk_conn *next;
    nk_peer_id peer;
    nk_agent *agent;
    nk_session *session;
    int initiator;
    int session_started;     /* initiator: nk_session_connect called */
    int session_up;          /* the session reported CONNECTED */
    int announced;           /* our CONNECTED event went out */
    int path_told;           /* path is the agent's choice (else, on the controlled side, a hint:
                              * the best path the peer's packets came over) */
    int over;                /* DISCONNECTED went out */
    int closing;             /* closed by the user: reaped once its last datagrams are out */
    int64_t created_ms;
    nk_path_info path;       /* the agent's selected path */
};

struct nk_node {
    nk_node_config cfg;
    nk_identity identity;
    char *turn_user, *turn_pass;
    nk_turn_client_config turn;
    nk_turn_client *turn_client; /* one allocation for the socket, shared by every agent */
    nk_hub_client *hub;
    int64_t hub_rtt_ms;
    nk_conn *conns;
    size_t nconns;
    nk_conn *tx_cursor;      /* round-robin start for poll_transmit */
    nk_node_event ev_slots[EVENT_RING];
    nk__ring events;         /* over ev_slots; full: the new event is dropped and counted */
    uint64_t events_dropped;
    uint8_t buf[DGRAM_CAP];
};

/* ---- events ------------------------------------------------------------------- */

static nk_node_event *push_event(nk_node *n, nk_node_event_type type, nk_conn *c)
{
    nk_node_event *ev = nk__ring_emplace(&n->events);
    if (ev == NULL) {
        n->events_dropped++;
        return NULL;
    }
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->conn = c;
    if (c != NULL) {
        ev->peer = c->peer;
        ev->path = c->path;
    }
    return ev;
}

int nk_node_poll_event(nk_node *n, nk_node_event *ev)
{
    return nk__ring_pop(&n->events, ev);
}

/* ---- connections ---------------------------------------------------------------- */

static void disconnect(nk_conn *c, int err, const char *reason)
{
    if (c->over)
        return;
    c->over = 1;
    nk_node_event *ev = push_event(c->node, NK_NODE_EV_DISCONNECTED, c);
    if (ev != NULL) {
        ev->err = err;
        ev->reason = reason;
    }
}

static int make_session(nk_conn *c, int64_t now_ms)
{
    nk_session_config sc;
    memset(&sc, 0, sizeof(sc));
    sc.identity = &c->node->identity;
    sc.peer = &c->peer;
    sc.initiator = c->initiator;
    sc.random = c->node->cfg.random;
    sc.random_ctx = c->node->cfg.random_ctx;
    return nk_session_new(&c->session, &sc, now_ms);
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
    int rc = nk_agent_new(&c->agent, &ac, now_ms);
    if (rc != 0)
        return rc;
    if (n->hub_rtt_ms >= 0)
        nk_agent_set_hub_rtt(c->agent, n->hub_rtt_ms);
    return 0;
}

static void conn_free(nk_conn *c)
{
    nk_agent_free(c->agent);
    nk_session_free(c->session);
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
    int rc = make_agent(c, now_ms);
    if (rc == 0)
        rc = make_session(c, now_ms);
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

static nk_conn *find_conn(const nk_node *n, const nk_peer_id *peer)
{
    for (nk_conn *c = n->conns; c != NULL; c = c->next)
        if (!c->closing && nk_peer_id_equal(&c->peer, peer))
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
    if (c->announced || c->over || !c->session_up || c->path.kind == NK_PATH_NONE)
        return NK_DEADLINE_NONE;
    if (c->path.kind == NK_PATH_DIRECT)
        return 0;
    if (c->path.kind == NK_PATH_TURN)
        return c->created_ms + c->node->cfg.settle_ms / 2;
    return c->created_ms + c->node->cfg.settle_ms;
}

static void announce(nk_conn *c, int64_t now_ms)
{
    c->announced = 1;
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

/* Messages (or the end) arrived before the path was reported: CONNECTED comes first, on the path
 * they came over, whatever the settle rule says. */
static void announce_before(nk_conn *c, int64_t now_ms)
{
    if (!c->announced && !c->over && c->session_up && c->path.kind != NK_PATH_NONE)
        announce(c, now_ms);
}

static void on_agent_path(nk_conn *c, int64_t now_ms, const nk_agent_event *ev)
{
    nk_path_info prev = c->path;
    c->path = ev->path;
    c->path_told = 1;
    if (c->initiator && !c->session_started) {
        c->session_started = 1;
        int rc = nk_session_connect(c->session, c->path.id, now_ms);
        if (rc != 0)
            disconnect(c, rc, "secure session could not start");
    } else {
        nk_session_set_path(c->session, c->path.id);
    }
    if (c->announced && prev.id != c->path.id) {
        nk_node_event *out = push_event(c->node, NK_NODE_EV_PATH_CHANGED, c);
        if (out != NULL) {
            out->prev = prev;
            out->rtt_ms = c->path.rtt_ms;
        }
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
            if (!c->path_told && ev.path.kind != NK_PATH_NONE &&
                (c->path.kind == NK_PATH_NONE || ev.path.kind < c->path.kind))
                c->path = ev.path; /* controlled side, not told yet: the best path the peer uses */
            nk_session_handle_datagram(c->session, now_ms, ev.path.id, ev.data, ev.len); /* counted there */
            break;
        case NK_AGENT_EV_FAILED:
            disconnect(c, ev.err, "no path to the peer");
            break;
        case NK_AGENT_EV_CANDIDATE:
            break;
        }
    }
    return count;
}

static int pump_session(nk_conn *c, int64_t now_ms)
{
    nk_session_event ev;
    int count = 0;
    while (nk_session_poll_event(c->session, &ev) == 0) {
        count++;
        switch (ev.type) {
        case NK_SESSION_EV_CONNECTED:
            c->session_up = 1;
            /* The session takes the path its handshake finished on (often the hub, where it
             * started); the agent may have chosen a better one meanwhile. */
            if (c->path_told && c->path.id != 0)
                nk_session_set_path(c->session, c->path.id);
            break;
        case NK_SESSION_EV_READABLE:
            announce_before(c, now_ms);
            push_event(c->node, NK_NODE_EV_READABLE, c);
            break;
        case NK_SESSION_EV_CLOSED:
            announce_before(c, now_ms);
            disconnect(c, ev.err, ev.err == NK_ERR_CLOSED ? "peer closed the session"
                                  : ev.err == NK_ERR_TIMEOUT ? "peer stopped answering"
                                  : ev.err == NK_ERR_AUTH ? "peer failed authentication"
                                  : ev.err == 0 ? "closed here" : "session closed");
            break;
        default:
            break;
        }
    }
    nk_session_transmit tx;
    while (nk_session_poll_transmit(c->session, now_ms, &tx, c->node->buf, sizeof(c->node->buf)) == 0) {
        count++;
        nk_agent_send(c->agent, now_ms, tx.path, c->node->buf, tx.len); /* no path yet: the session retransmits */
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
    while (nk_agent_poll_signal(c->agent, &type, n->buf, sizeof(n->buf), &len) == 0) {
        if (n->hub != NULL)
            nk_hub_client_send(n->hub, now_ms, type, &c->peer, n->buf, len); /* full queue: the agent resends */
    }
}

static void pump_conn(nk_conn *c, int64_t now_ms)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        int progress = pump_agent(c, now_ms) + pump_session(c, now_ms);
        if (progress == 0)
            break;
    }
    flush_signals(c, now_ms);
    maybe_announce(c, now_ms);
}

static void pump_all(nk_node *n, int64_t now_ms)
{
    for (nk_conn *c = n->conns; c != NULL; c = c->next)
        if (!c->closing)
            pump_conn(c, now_ms);
}

/* ---- the hub ------------------------------------------------------------------------ */

static void on_hub_message(nk_node *n, int64_t now_ms, const nk_hub_event *ev, const uint8_t *payload)
{
    nk_conn *c = find_conn(n, &ev->peer);
    if (c == NULL) {
        if (ev->msg_type != NK_HUB_T_CONNECT || !n->cfg.accept)
            return; /* nobody asked for this peer */
        if (conn_new(n, now_ms, &ev->peer, 0, NULL, &c) != 0)
            return;
        push_event(n, NK_NODE_EV_INCOMING, c);
    }
    nk_agent_handle_signal(c->agent, now_ms, ev->msg_type, payload, ev->len);
    pump_conn(c, now_ms);
}

static void on_hub_event(nk_node *n, int64_t now_ms, const nk_hub_event *ev, const uint8_t *payload)
{
    nk_node_event *out;
    nk_conn *c;
    switch (ev->type) {
    case NK_HUB_EV_REGISTERED:
        out = push_event(n, NK_NODE_EV_REGISTERED, NULL);
        if (out != NULL)
            out->addr = ev->addr;
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
        out = push_event(n, NK_NODE_EV_HUB_CLOSED, NULL);
        if (out != NULL) {
            out->err = NK_ERR_CLOSED;
            out->reason = nk_hub_close_reason(ev->code);
        }
        for (c = n->conns; c != NULL; c = c->next)
            nk_agent_set_hub_up(c->agent, now_ms, 0);
        break;
    }
}

void nk_node_handle_hub(nk_node *n, int64_t now_ms)
{
    if (n->hub == NULL)
        return;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    nk_hub_event ev;
    if (nk_hub_client_state(n->hub) == NK_HUB_CLIENT_IDLE)
        nk_hub_client_register(n->hub, now_ms);
    for (int budget = 4096; budget > 0 && nk_hub_client_poll_event(n->hub, &ev, buf, sizeof(buf)) == 0; budget--)
        on_hub_event(n, now_ms, &ev, buf);
    pump_all(n, now_ms);
}

/* ---- node ------------------------------------------------------------------------------ */

int nk_node_new(nk_node **out, const nk_node_config *cfg, int64_t now_ms)
{
    *out = NULL;
    if (cfg == NULL || cfg->identity == NULL || cfg->nhost > NK_NODE_MAX_ADDRS || cfg->nstun > NK_NODE_MAX_ADDRS)
        return NK_ERR_INVAL;
    nk_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NK_ERR_NOMEM;
    nk__ring_init(&n->events, n->ev_slots, sizeof(n->ev_slots[0]), EVENT_RING);
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
    if (cfg->hub.family != NK_AF_NONE) {
        nk_hub_client_config hc;
        memset(&hc, 0, sizeof(hc));
        hc.identity = &n->identity;
        hc.hub = cfg->hub;
        int rc = nk_hub_client_new(&n->hub, &hc);
        if (rc != 0) {
            nk_node_free(n);
            return rc;
        }
    }
    *out = n;
    return 0;
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

static int connect_common(nk_node *n, int64_t now_ms, const nk_peer_id *peer, const nk_addr *remote,
                          nk_conn **out)
{
    nk_conn *c;
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
        nk_peer_id sender;
        if (ev.type != NK_TURN_EV_DATA || nk_agent_peek(ev.data, ev.len, &sender) != 0)
            continue;
        nk_conn *c = find_conn(n, &sender);
        if (c == NULL)
            continue;
        nk_agent_handle_relayed(c->agent, now_ms, &ev.peer, ev.data, ev.len);
        pump_conn(c, now_ms);
    }
}

int nk_node_handle_datagram(nk_node *n, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t len)
{
    nk_peer_id sender;
    if (n->turn_client != NULL && nk_addr_equal(from, &n->turn.server)) {
        int rc = nk_turn_client_handle_input(n->turn_client, now_ms, from, p, len);
        if (rc == 0) {
            pump_turn(n, now_ms);
            return 0;
        }
    }
    if (nk_agent_peek(p, len, &sender) == 0) {
        nk_conn *c = find_conn(n, &sender);
        if (c == NULL)
            return NK_ERR_NOT_FOUND;
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
    if (n->hub != NULL)
        nk_hub_client_handle_timeout(n->hub, now_ms);
    if (n->turn_client != NULL) {
        nk_turn_client_handle_timeout(n->turn_client, now_ms);
        pump_turn(n, now_ms);
    }
    for (nk_conn *c = n->conns; c != NULL; c = c->next) {
        nk_agent_handle_timeout(c->agent, now_ms);
        nk_session_handle_timeout(c->session, now_ms);
    }
    nk_node_handle_hub(n, now_ms); /* hub events, then every connection is pumped */
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int64_t nk_node_next_deadline(const nk_node *n)
{
    int64_t d = n->hub != NULL ? nk_hub_client_next_deadline(n->hub) : NK_DEADLINE_NONE;
    if (n->turn_client != NULL)
        d = min64(d, nk_turn_client_next_deadline(n->turn_client));
    for (const nk_conn *c = n->conns; c != NULL; c = c->next) {
        d = min64(d, nk_agent_next_deadline(c->agent));
        d = min64(d, nk_session_next_deadline(c->session));
        d = min64(d, announce_at(c));
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
    for (size_t i = 0; i < nk__ring_count(&n->events); i++) {
        nk_node_event *ev = nk__ring_at(&n->events, i);
        if (ev->conn == c)
            ev->conn = NULL;
    }
    n->nconns--;
    nk_agent_close(c->agent, 0); /* the shared TURN allocation stays; nothing is left to send */
    conn_free(c);
}

/* Frees connections the user closed once they have nothing left to send. */
static void reap_closed(nk_node *n, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap, int *sent)
{
    nk_conn *c = n->conns;
    while (c != NULL) {
        nk_conn *next = c->next;
        if (c->closing) {
            if (!*sent && nk_agent_poll_transmit(c->agent, now_ms, out, buf, cap) == 0)
                *sent = 1;
            else
                unlink_conn(n, c);
        }
        c = next;
    }
}

int nk_node_poll_transmit(nk_node *n, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    int sent = 0;
    if (n->turn_client != NULL && nk_turn_client_poll_transmit(n->turn_client, now_ms, out, buf, cap) == 0)
        return 0;
    reap_closed(n, now_ms, out, buf, cap, &sent);
    if (sent)
        return 0;
    /* Round-robin over connections so one busy peer cannot starve the others. */
    nk_conn *start = n->tx_cursor != NULL ? n->tx_cursor : n->conns;
    nk_conn *c = start;
    for (size_t i = 0; c != NULL && i < n->nconns; i++) {
        if (nk_agent_poll_transmit(c->agent, now_ms, out, buf, cap) == 0) {
            n->tx_cursor = c->next;
            return 0;
        }
        c = c->next != NULL ? c->next : n->conns;
    }
    n->tx_cursor = NULL;
    return NK_ERR_AGAIN;
}

/* ---- connections, public ------------------------------------------------------------- */

int nk_conn_send(nk_conn *c, int64_t now_ms, const uint8_t *msg, size_t len)
{
    if (c->over)
        return NK_ERR_CLOSED;
    int rc = nk_session_send(c->session, msg, len);
    if (rc == 0)
        pump_conn(c, now_ms); /* the message leaves now, not at the next timer */
    return rc;
}

int nk_conn_recv(nk_conn *c, uint8_t *buf, size_t cap)
{
    return nk_session_recv(c->session, buf, cap);
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

void nk_conn_close(nk_conn *c, int64_t now_ms)
{
    if (c->closing)
        return;
    nk_session_close(c->session, now_ms);
    pump_conn(c, now_ms); /* the CLOSE packet goes to the agent (or the hub); reaped once it is out */
    c->closing = 1;
    c->over = 1;
}

int nk_node_broadcast(nk_node *n, int64_t now_ms, const uint8_t *msg, size_t len)
{
    int sent = 0;
    for (nk_conn *c = n->conns; c != NULL; c = c->next)
        if (nk_conn_is_connected(c) && nk_conn_send(c, now_ms, msg, len) == 0)
            sent++;
    return sent;
}

const nk_session *nk_conn_session(const nk_conn *c)
{
    return c->session;
}

size_t nk_conn_unacked(const nk_conn *c)
{
    return nk_session_unacked(c->session);
}
