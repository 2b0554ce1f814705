/*
 * natkit: peer-to-peer connections by peer ID.
 *
 * An nk_node is this host's end: one identity, one UDP socket (whose
 * addresses are the host candidates), one hub connection, and any number of
 * connections to other peers. Each connection (nk_conn) is a connectivity
 * agent (include/natkit/agent.h: finds and keeps the best path — direct,
 * TURN or hub) under a secure session (include/natkit/session.h: Noise IK,
 * authenticated peer IDs, reliable ordered messages). The node glues them:
 * session datagrams ride the agent's selected path; the agent's path changes
 * move the session; an incoming connection request creates a connection.
 *
 * Sans-I/O like every natkit core: datagrams, hub bytes and the time go in;
 * datagrams, hub bytes, events and the next deadline come out. The bundled
 * driver (nk_node_driver, natkit/node_driver.h) runs it on a UDP socket and a
 * hub link, and reports events through a callback.
 */
#ifndef NATKIT_NODE_H
#define NATKIT_NODE_H

#include "natkit/addr.h"
#include "natkit/agent.h"
#include "natkit/common.h"
#include "natkit/hub_client.h"
#include "natkit/identity.h"
#include "natkit/session.h"
#include "natkit/turn_client.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_NODE_MAX_ADDRS 16

typedef struct nk_node_config {
    const nk_identity *identity;         /* required (copied) */
    nk_addr hub;                         /* the hub (family NONE: no hub; manual connections only) */
    nk_addr host[NK_NODE_MAX_ADDRS];     /* host candidates: local IPs with the UDP socket's port */
    size_t nhost;
    nk_addr stun[NK_NODE_MAX_ADDRS];     /* STUN servers (failover in order) */
    size_t nstun;
    nk_addr turn;                        /* TURN server (family NONE: none) */
    const char *turn_user, *turn_pass;   /* long-term credentials for it (copied) */
    int accept;                          /* 1: accept incoming connection requests */
    size_t max_conns;                    /* 0: 128 */
    int64_t keepalive_ms;                /* agent keepalive on the selected path (0: agent default) */
    int64_t settle_ms;                   /* how long a new connection waits for a direct or TURN path
                                            before it reports "connected" on the hub relay (0: 4000) */
    nk_random_fn random;                 /* NULL: libsodium */
    void *random_ctx;
} nk_node_config;

typedef struct nk_node nk_node;
typedef struct nk_conn nk_conn;

typedef enum nk_node_event_type {
    NK_NODE_EV_REGISTERED = 1,  /* registered at the hub; addr: how the hub sees us */
    NK_NODE_EV_HUB_CLOSED,      /* the hub connection is over; err/reason */
    NK_NODE_EV_INCOMING,        /* a peer asked to connect; conn created (accept mode) */
    NK_NODE_EV_CONNECTED,       /* conn: session up on path; rtt_ms, connect_ms */
    NK_NODE_EV_PATH_CHANGED,    /* conn: path moved (prev -> path) */
    NK_NODE_EV_READABLE,        /* conn: nk_conn_recv has messages */
    NK_NODE_EV_DISCONNECTED,    /* conn: over (err, reason); free it with nk_conn_close or node free */
} nk_node_event_type;

typedef struct nk_node_event {
    nk_node_event_type type;
    nk_conn *conn;
    nk_peer_id peer;
    nk_path_info path, prev;
    nk_addr addr;
    int64_t rtt_ms;
    int64_t connect_ms;         /* CONNECTED: since the connection was created */
    int err;
    const char *reason;         /* static text */
} nk_node_event;

NK_API int nk_node_new(nk_node **out, const nk_node_config *cfg, int64_t now_ms);
NK_API void nk_node_free(nk_node *n);

/* The hub client core, for the transport driver (nk_hub_link_pump). NULL without a hub. */
NK_API nk_hub_client *nk_node_hub_client(nk_node *n);
/* Call after the hub transport moved bytes (or connected: starts registration). */
NK_API void nk_node_handle_hub(nk_node *n, int64_t now_ms);

/* Starts a connection to peer through the hub (NK_ERR_STATE without one). */
NK_API int nk_node_connect(nk_node *n, int64_t now_ms, const nk_peer_id *peer, nk_conn **out);

/*
 * Connects to peer at a known address, without a hub (both sides call this
 * with each other's public IP:PORT, started within a few seconds). The
 * lower peer ID starts the handshake, so both sides can run the same thing.
 */
NK_API int nk_node_connect_direct(nk_node *n, int64_t now_ms, const nk_peer_id *peer, const nk_addr *addr,
                                  nk_conn **out);

/* A datagram from the node's UDP socket. 0: consumed; NK_ERR_NOT_FOUND: nobody's. */
NK_API int nk_node_handle_datagram(nk_node *n, int64_t now_ms, const nk_addr *from, const uint8_t *p, size_t len);
NK_API void nk_node_handle_timeout(nk_node *n, int64_t now_ms);
NK_API int64_t nk_node_next_deadline(const nk_node *n);
NK_API int nk_node_poll_transmit(nk_node *n, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap);
NK_API int nk_node_poll_event(nk_node *n, nk_node_event *ev);
NK_API size_t nk_node_conn_count(const nk_node *n);

/* Queues a message for reliable, ordered delivery (NK_ERR_AGAIN: queue full). */
NK_API int nk_conn_send(nk_conn *c, int64_t now_ms, const uint8_t *msg, size_t len);
/* Sends msg to every connected peer; returns to how many it was queued. */
NK_API int nk_node_broadcast(nk_node *n, int64_t now_ms, const uint8_t *msg, size_t len);
/* Messages sent and not yet acknowledged by the peer. */
NK_API size_t nk_conn_unacked(const nk_conn *c);
/* The next message: its length, or NK_ERR_AGAIN. */
NK_API int nk_conn_recv(nk_conn *c, uint8_t *buf, size_t cap);
NK_API const nk_peer_id *nk_conn_peer(const nk_conn *c);
NK_API void nk_conn_path(const nk_conn *c, nk_path_info *out);
NK_API int nk_conn_is_connected(const nk_conn *c);
/* The connection's secure session (for nk_tcpseal_new / nk_session_export_key). */
NK_API const nk_session *nk_conn_session(const nk_conn *c);
/* Closes the session (the peer is told) and frees the connection. */
NK_API void nk_conn_close(nk_conn *c, int64_t now_ms);

#ifdef __cplusplus
}
#endif
#endif
