/*
 * natkit: nk_hub_client, the sans-I/O client core for one hub connection:
 * registers under the peer ID by signing the hub's challenge, then sends and
 * receives routed messages. Bytes and time in; bytes, events and the next
 * deadline out.
 */
#ifndef NATKIT_HUB_CLIENT_H
#define NATKIT_HUB_CLIENT_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/hub_frame.h"
#include "natkit/identity.h"
#include "natkit/common.h" /* NK_DEADLINE_NONE */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_hub_client_config {
    const nk_identity *identity; /* copied (and wiped on free) */
    nk_addr hub;                 /* the address the transport connected to (bound into the proof) */
    int64_t ping_interval_ms;    /* hub ping (keepalive + RTT) interval (0: 15000) */
    int64_t timeout_ms;          /* closed when the hub sends nothing for this long (0: 45000) */
    size_t event_cap;            /* bytes of undelivered events kept (0: 256 KiB); relay dropped beyond */
    size_t queue_cap;            /* bytes queued for the hub (0: 256 KiB); sends fail with NK_ERR_LIMIT */
    int64_t challenge_ms;        /* closed as NK_HUB_CLOSE_NOT_HUB when no CHALLENGE came this long after
                                    nk_hub_client_register (0: 5000) */
} nk_hub_client_config;

typedef enum nk_hub_client_state_t {
    NK_HUB_CLIENT_IDLE = 0,      /* before nk_hub_client_register */
    NK_HUB_CLIENT_CHALLENGED,    /* waiting for the challenge, then for REGISTERED */
    NK_HUB_CLIENT_REGISTERED,
    NK_HUB_CLIENT_CLOSED,        /* see nk_hub_client_close_code */
} nk_hub_client_state_t;

typedef enum nk_hub_event_type {
    NK_HUB_EV_REGISTERED = 1, /* addr: how the hub sees us */
    NK_HUB_EV_MESSAGE,        /* msg_type (NK_HUB_T_CONNECT/CANDIDATE/RELAY/SIGNAL) from peer: data[0..len) */
    NK_HUB_EV_UNKNOWN_PEER,   /* peer is not registered; msg_type: what we sent */
    NK_HUB_EV_PONG,           /* rtt_ms: this ping's round trip */
    NK_HUB_EV_CLOSED,         /* code (NK_HUB_CLOSE_*), reason: hub connection over; close the transport.
                                 retry_ms: the hub's hint of when to come back (-1: none). Code
                                 NK_HUB_CLOSE_NOT_HUB: the other end never answered like a hub (no
                                 CHALLENGE in time, something else first, or EOF before one) */
} nk_hub_event_type;

typedef struct nk_hub_event {
    nk_hub_event_type type;
    uint8_t msg_type;
    nk_peer_id peer;
    nk_addr addr;
    int64_t rtt_ms;
    int code;
    int64_t retry_ms;            /* CLOSED: the hub's retry-after hint (-1: none) */
    char reason[NK_HUB_MAX_REASON + 1];
    size_t len;                  /* MESSAGE: payload bytes copied into the caller's buffer */
} nk_hub_event;

typedef struct nk_hub_client nk_hub_client;

NK_API int nk_hub_client_new(nk_hub_client **out, const nk_hub_client_config *cfg);
NK_API void nk_hub_client_free(nk_hub_client *c);
/* The transport is connected (or being connected): wait for the challenge and register. Also
 * restarts after CLOSED, on a new transport. */
NK_API int nk_hub_client_register(nk_hub_client *c, int64_t now_ms);
/* The address of the hub the next registration is for (bound into the proof): to register at
 * another hub after CLOSED. NK_ERR_STATE while a connection is live (CHALLENGED, REGISTERED). */
NK_API int nk_hub_client_set_hub(nk_hub_client *c, const nk_addr *hub);
/* Bytes from the hub. 0, or NK_ERR_CLOSED once the connection is over (an event says why). */
NK_API int nk_hub_client_handle_bytes(nk_hub_client *c, int64_t now_ms, const uint8_t *p, size_t n);
/* The transport failed or closed under us. */
NK_API void nk_hub_client_handle_closed(nk_hub_client *c, int64_t now_ms);
NK_API void nk_hub_client_handle_timeout(nk_hub_client *c, int64_t now_ms);
NK_API int64_t nk_hub_client_next_deadline(const nk_hub_client *c);
/* Moves up to cap bytes to write to the hub into buf; returns how many (0: nothing). */
NK_API int nk_hub_client_poll_transmit(nk_hub_client *c, int64_t now_ms, uint8_t *buf, size_t cap);
/* Bytes queued for the hub and not yet taken by poll_transmit. */
NK_API size_t nk_hub_client_pending(const nk_hub_client *c);
/*
 * 0 and *ev filled (a MESSAGE's payload in buf[0..ev->len)), NK_ERR_AGAIN, or
 * NK_ERR_NOBUFS when cap is below the payload (give NK_HUB_MAX_PAYLOAD).
 */
NK_API int nk_hub_client_poll_event(nk_hub_client *c, nk_hub_event *ev, uint8_t *buf, size_t cap);
/*
 * Sends a routed message (type NK_HUB_T_CONNECT/CANDIDATE/RELAY/SIGNAL) to
 * peer. 0, NK_ERR_STATE (not registered), NK_ERR_INVAL (type, size) or
 * NK_ERR_LIMIT (queue full; relay: dropped).
 */
NK_API int nk_hub_client_send(nk_hub_client *c, int64_t now_ms, uint8_t type, const nk_peer_id *peer,
                              const uint8_t *payload, size_t len);
/* Tells the hub how a connection settled (a REPORT frame, for its metrics; hubs that do not
 * know REPORT ignore it). 0, NK_ERR_STATE (not registered), NK_ERR_LIMIT (queue full). */
NK_API int nk_hub_client_report(nk_hub_client *c, int64_t now_ms, const nk_hub_report *r);
/* Sends a ping now (a PONG event gives its RTT). Pings also go out every ping_interval_ms. */
NK_API int nk_hub_client_ping(nk_hub_client *c, int64_t now_ms);
/* Sends CLOSE(NORMAL); the state is CLOSED once it is flushed (poll_transmit). */
NK_API void nk_hub_client_close(nk_hub_client *c, int64_t now_ms);
NK_API nk_hub_client_state_t nk_hub_client_state(const nk_hub_client *c);
/* Smoothed hub RTT in ms (RFC 6298 style), the last sample, or -1 before the first PONG. */
NK_API int64_t nk_hub_client_rtt(const nk_hub_client *c);
NK_API int64_t nk_hub_client_last_rtt(const nk_hub_client *c);
NK_API int nk_hub_client_close_code(const nk_hub_client *c);
NK_API const nk_peer_id *nk_hub_client_id(const nk_hub_client *c);

#ifdef __cplusplus
}
#endif
#endif
