/*
 * natkit internal: what the TURN client's files share (turn_client.c: the
 * API, input, timers; turn_client_ops.c: requests, credentials and what their
 * answers mean). See docs/internals/turn-client.md.
 */
#ifndef NK__TURN_CLIENT_INTERNAL_H
#define NK__TURN_CLIENT_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "natkit/stun.h"
#include "natkit/turn_client.h"
#include "random.h"
#include "ring.h"

#define NK__TURN_EVENT_CAP    64
#define NK__TURN_STREAM_CAP   (131072 + 64)   /* two largest frames */
#define NK__TURN_RETRY_MS     5000             /* a failed refresh is tried again after this */
#define NK__TURN_REQ_CAP      1200             /* largest request we build */
#define NK__TURN_RELEASE_MIN_RTO_MS 50         /* the deallocation's RTO, at least (see start_request) */
#define NK__TURN_SECURITY_COOKIE "obMatJos2"   /* RFC 8489 section 9.2: nonce prefix for feature bits */

enum op_kind { OP_ALLOC, OP_PERM, OP_CHAN };

enum op_state {
    ST_NONE = 0,      /* not requested yet (permissions wait for the allocation) */
    ST_VIA_CHANNEL,   /* permission installed by its channel's ChannelBind: wait for it */
    ST_PENDING,       /* first request in flight */
    ST_ACTIVE,        /* installed; refreshed at refresh_ms, gone at expires_ms */
    ST_FAILED,
};

typedef struct op {
    nk_stun_txn *txn;      /* request in flight, or NULL */
    uint16_t method;       /* of the request in flight */
    uint8_t state;         /* enum op_state */
    uint8_t auth_retries;  /* 401/438 rounds for the request in flight */
    uint8_t sent_auth;     /* the request in flight carried credentials */
    char sent_nonce[128];  /* ... with this nonce */
    int64_t refresh_ms;
    int64_t expires_ms;
} op;

typedef struct perm {
    op op;
    nk_addr ip;            /* port 0 */
} perm;

typedef struct chan {
    op op;
    nk_addr peer;
    uint16_t number;
} chan;

struct nk_turn_client {
    nk_turn_client_config cfg;
    char *user, *pass, *realm_cfg, *software;
    nk_turn_state state;
    int64_t now_ms;              /* of the last call that passed a time */

    /* long-term credentials, once the server said realm and nonce */
    int have_auth;
    char realm[128];
    char nonce[128];
    int pwalg;                   /* NK_STUN_PWALG_MD5 or _SHA256 */
    uint8_t pwalgs[64];          /* PASSWORD-ALGORITHMS as offered, echoed back */
    size_t pwalgs_len;
    uint8_t key[32];
    size_t key_len;

    op alloc;
    uint32_t lifetime_s;
    int64_t alloc_rtt_ms;        /* of the allocation's last answered request, -1 before */
    int release_asked;           /* deallocate was called while ALLOCATING: it starts on success */
    nk_addr relayed, mapped;

    perm *perms;
    size_t nperms;
    chan *chans;
    size_t nchans;
    uint16_t next_channel;

    nk_turn_event ev_slots[NK__TURN_EVENT_CAP];
    nk__ring events;             /* over ev_slots; full: the new event is dropped and counted */

    uint8_t *stream;             /* TCP/TLS reassembly */
    size_t stream_off, stream_len;
    int stream_broken;
    int stream_reset;            /* redirected: what is buffered came from the old connection */

    /* 300 Try Alternate: the servers the Allocate went to before cfg.server */
    nk_addr tried[NK_TURN_MAX_REDIRECTS];
    size_t ntried;
    char alt_domain[256];        /* ALTERNATE-DOMAIN of the last redirect, "" when none */

    uint64_t dropped;
};

/* ---- small helpers (both files) ---- */

static inline int is_stream(const nk_turn_client *c)
{
    return c->cfg.transport != NK_TRANSPORT_UDP;
}

static inline void fill_random(nk_turn_client *c, uint8_t *buf, size_t len)
{
    nk__random(c->cfg.random, c->cfg.random_ctx, buf, len);
}

static inline void op_drop_txn(op *o)
{
    free(o->txn);
    o->txn = NULL;
}

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline op *owner_op(void *owner)
{
    return (op *)owner; /* op is the first member of perm and chan; &c->alloc for the allocation */
}

static inline perm *find_perm(nk_turn_client *c, const nk_addr *peer)
{
    for (size_t i = 0; i < c->nperms; i++)
        if (nk_addr_equal_ip(&c->perms[i].ip, peer))
            return &c->perms[i];
    return NULL;
}

static inline chan *find_chan_by_number(nk_turn_client *c, uint16_t number)
{
    for (size_t i = 0; i < c->nchans; i++)
        if (c->chans[i].number == number)
            return &c->chans[i];
    return NULL;
}

/* ---- turn_client_ops.c ---- */

/* Queues an event (NULL and counted as dropped when the queue is full). */
nk_turn_event *nk__turn_push_event(nk_turn_client *c, nk_turn_event_type type);
void nk__turn_push_error(nk_turn_client *c, uint16_t method, int status, const nk_addr *peer, const char *reason,
                         size_t reason_len);
/* Builds and starts a fresh request for an op (not an auth retry). */
int nk__turn_begin_op(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner);
/* An op's request ended: success (m, status 0), error response or timeout. */
void nk__turn_op_done(nk_turn_client *c, int64_t now_ms, enum op_kind kind, void *owner, uint16_t method,
                      const nk_stun_msg *m, int status, const char *reason, size_t rlen);
void nk__turn_perm_done(nk_turn_client *c, int64_t now_ms, perm *p, int status, const char *reason, size_t rlen);
void nk__turn_chan_done(nk_turn_client *c, int64_t now_ms, chan *ch, int status, const char *reason, size_t rlen);
/* The allocation is gone (CLOSED event with status); permissions and channels stop. */
void nk__turn_close_allocation(nk_turn_client *c, int status);
/* A success or error response: NK_ERR_NOT_FOUND when no op sent it, NK_ERR_INTEGRITY when forged. */
int nk__turn_handle_response(nk_turn_client *c, int64_t now_ms, const nk_addr *from, const nk_stun_msg *m);

#endif
