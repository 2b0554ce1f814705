/* natkit internal: the TURN server core's pieces (turn_*.c). See docs/internals/turn-server.md. */
#ifndef NK__TURN_SERVER_INTERNAL_H
#define NK__TURN_SERVER_INTERNAL_H

#include <pthread.h>

#include "natkit/stun.h"
#include "natkit/turn_server.h"
#include "srclimit.h"

/* ---- peer policy (turn_policy.c) ---- */

typedef struct nk__cidr {
    uint8_t family;
    uint8_t prefix;
    uint8_t ip[16];
} nk__cidr;

typedef struct nk__cidr_list {
    nk__cidr *v;
    size_t n;
} nk__cidr_list;

typedef struct nk__turn_policy {
    nk__cidr_list builtin; /* secure default: refused */
    nk__cidr_list allow;
    nk__cidr_list deny;
} nk__turn_policy;

int nk__cidr_parse(nk__cidr *c, const char *text);
int nk__cidr_match(const nk__cidr *c, const nk_addr *a);
int nk__cidr_list_add(nk__cidr_list *l, const char *text);
/* IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo): 0..2 written. */
size_t nk__turn_embedded_ipv4(const nk_addr *a, nk_addr out[2]);
int nk__turn_policy_init(nk__turn_policy *p);
void nk__turn_policy_free(nk__turn_policy *p);
int nk__turn_policy_allows(const nk__turn_policy *p, const nk_addr *peer);

/* ---- credentials and nonces (turn_auth.c) ---- */

#define NK__TURN_KEY_MAX 16 /* MD5 long-term key */
#define NK__TURN_NONCE_LEN 32

typedef struct nk__turn_account {
    char *name;
    uint8_t key[NK__TURN_KEY_MAX];
} nk__turn_account;

typedef struct nk__turn_auth {
    char *realm;
    char *secret;            /* TURN REST, or NULL */
    size_t secret_len;
    nk__turn_account *accounts;
    size_t naccounts;
    uint8_t nonce_key[32];
    uint32_t nonce_lifetime_s;
    int64_t unix_offset_ms;  /* unix ms = now_ms + offset */
    int external;            /* ops.user_keys is set: REST names may come from it too */
} nk__turn_auth;

void nk__turn_nonce_make(const nk__turn_auth *a, int64_t now_ms, const nk_addr *client,
                         char out[NK__TURN_NONCE_LEN + 1]);
/* 0 fresh, NK_ERR_AUTH forged, NK_ERR_TIMEOUT stale. */
int nk__turn_nonce_check(const nk__turn_auth *a, int64_t now_ms, const nk_addr *client, const char *nonce);
int nk__turn_auth_add_account(nk__turn_auth *a, const char *user, const char *pass);
/* The long-term key for user, or NK_ERR_AUTH (unknown user, expired REST name). */
int nk__turn_auth_key(const nk__turn_auth *a, int64_t now_ms, const char *user,
                      uint8_t key[NK__TURN_KEY_MAX]);
/* The name quotas are counted under: REST "expiry:user" -> "user". */
const char *nk__turn_quota_name(const nk__turn_auth *a, const char *user);
void nk__turn_auth_free(nk__turn_auth *a);

/* ---- allocations (turn_alloc.c) ---- */

typedef struct nk__turn_perm {
    uint8_t family;
    uint8_t ip[16];
    int64_t expires;
} nk__turn_perm;

typedef struct nk__turn_chan {
    uint16_t number;
    nk_addr peer;
    int64_t expires;
} nk__turn_chan;

typedef struct nk__turn_user {
    struct nk__turn_user *next;
    uint32_t count;
    char name[];
} nk__turn_user;

typedef struct nk__turn_alloc {
    struct nk__turn_alloc *hnext; /* 5-tuple hash chain */
    uint64_t hash;
    uint8_t transport;
    nk_addr client;
    nk_addr local;
    nk_addr relay;
    int64_t expires;
    size_t heap_idx;
    uint8_t tid[NK_STUN_TID_SIZE]; /* the Allocate, for retransmissions */
    uint8_t key[NK__TURN_KEY_MAX];
    char *username;
    nk__turn_user *owner;
    nk__turn_perm *perms;
    uint16_t nperms, perms_cap;
    uint16_t nchans, chans_cap;
    nk__turn_chan *chans;
} nk__turn_alloc;

typedef struct nk__turn_table {
    nk__turn_alloc **buckets;  /* by 5-tuple */
    size_t nbuckets;           /* power of two */
    size_t count;
    nk__turn_alloc **by_port;  /* relay port - port_min */
    uint16_t port_min, port_max;
    nk__turn_alloc **heap;     /* min-heap on expires */
    size_t heap_cap;
    nk__turn_user **users;     /* quota records by name */
    size_t nusers_buckets;
    uint8_t hash_key[16];      /* SipHash key: no hash flooding */
} nk__turn_table;

int nk__turn_table_init(nk__turn_table *t, uint16_t port_min, uint16_t port_max, const uint8_t key[16]);
void nk__turn_table_free(nk__turn_table *t);
nk__turn_alloc *nk__turn_table_find(const nk__turn_table *t, uint8_t transport, const nk_addr *client,
                                    const nk_addr *local);
nk__turn_alloc *nk__turn_table_by_port(const nk__turn_table *t, uint16_t port);
int nk__turn_table_port_free(const nk__turn_table *t, uint16_t port);
/* Inserts a (filled) allocation: hash, port index and heap. */
int nk__turn_table_insert(nk__turn_table *t, nk__turn_alloc *a);
void nk__turn_table_remove(nk__turn_table *t, nk__turn_alloc *a);
void nk__turn_table_set_expiry(nk__turn_table *t, nk__turn_alloc *a, int64_t expires);
nk__turn_alloc *nk__turn_table_earliest(const nk__turn_table *t);
nk__turn_user *nk__turn_user_get(nk__turn_table *t, const char *name, int create);
void nk__turn_user_release(nk__turn_table *t, nk__turn_user *u);
void nk__turn_alloc_free(nk__turn_alloc *a);

/* Permissions and channels of one allocation; expired entries count as absent. */
int nk__turn_perm_ok(const nk__turn_alloc *a, const nk_addr *peer, int64_t now_ms);
/* 1 when installing all n peers (repeats and refreshed ones included) stays within max. */
int nk__turn_perm_fit(const nk__turn_alloc *a, const nk_addr *peers, size_t n, int64_t now_ms, size_t max);
int nk__turn_perm_install(nk__turn_alloc *a, const nk_addr *peer, int64_t expires, int64_t now_ms,
                          size_t max);
nk__turn_chan *nk__turn_chan_by_number(nk__turn_alloc *a, uint16_t number, int64_t now_ms);
nk__turn_chan *nk__turn_chan_by_peer(nk__turn_alloc *a, const nk_addr *peer, int64_t now_ms);
int nk__turn_chan_install(nk__turn_alloc *a, uint16_t number, const nk_addr *peer, int64_t expires,
                          int64_t now_ms, size_t max);

/* ---- the server (turn_server.c, turn_methods.c) ---- */

/* An EVEN-PORT R=1 reservation: the next port, held 30 s for its token. */
#define NK__TURN_RESERVATIONS 32
#define NK__TURN_RESERVATION_MS 30000
typedef struct nk__turn_resv {
    uint8_t token[8];
    uint16_t port;
    int64_t expires;
} nk__turn_resv;

typedef struct nk__turn_resv_table {
    nk__turn_resv v[NK__TURN_RESERVATIONS];
    pthread_mutex_t *lock; /* NULL: used by one core only */
} nk__turn_resv_table;

/* turn_resv.c */
int nk__resv_taken(nk__turn_resv_table *t, uint16_t port, int64_t now);
/* Holds port under token for 30 s; 0, or NK_ERR_LIMIT (table full, port already held). */
int nk__resv_add(nk__turn_resv_table *t, uint16_t port, int64_t now, const uint8_t token[8]);
/* 0 with *port (the token is used up), or NK_ERR_NOT_FOUND. */
int nk__resv_redeem(nk__turn_resv_table *t, const uint8_t token[8], int64_t now, uint16_t *port);

struct nk_turn_server {
    nk_turn_server_config cfg;
    nk__turn_resv_table own_resv;
    nk__turn_resv_table *resv; /* own_resv, or the shared state's */
    nk_turn_server_ops ops;
    nk__turn_auth auth;
    nk__turn_policy policy;
    nk__turn_table table;
    nk_turn_server_stats_t stats;
    nk__ratelimit *rate;       /* unauthenticated UDP answers per source; NULL: no limit */
    nk_addr *alternates;       /* Try Alternate targets (copies of cfg's lists), or NULL */
    nk_addr *tls_alternates;
    size_t alt_next, tls_alt_next; /* round-robin positions */
};

/* One request being answered. */
typedef struct nk__turn_req {
    nk_turn_server *s;
    int64_t now;
    uint8_t transport;
    const nk_addr *client;
    const nk_addr *local;
    const nk_stun_msg *m;
    nk_transmit *tx;
    uint8_t *out;
    size_t cap;
    char user[514];
    uint8_t key[NK__TURN_KEY_MAX];
    int authed;
} nk__turn_req;

int nk__turn_handle_request(nk__turn_req *r);
/* Shared state (turn_shared.c): quotas (0, 486 or 508) and the reservations. */
int nk__turn_shared_take(nk_turn_shared *q, const char *name);
void nk__turn_shared_release(nk_turn_shared *q, const char *name);
nk__turn_resv_table *nk__turn_shared_resv(nk_turn_shared *q);
/* Gives back an allocation's place in the quota (its own records or the shared ones). */
void nk__turn_release_quota(nk_turn_server *s, nk__turn_user *owner, const char *username);
int nk__turn_handle_send(nk_turn_server *s, int64_t now_ms, uint8_t transport, const nk_addr *client,
                         const nk_addr *local, const nk_stun_msg *m, nk_transmit *tx, uint8_t *out,
                         size_t cap);
void nk__turn_random(const nk_turn_server *s, void *buf, size_t n);
void nk__turn_end_allocation(nk_turn_server *s, nk__turn_alloc *a);

#endif
