/*
 * natkit: the STUN server's request handler (sans-I/O, stateless).
 * See include/natkit/stun_server.h and docs/internals/stun-server.md.
 */
#include <stdlib.h>
#include <string.h>

#include "natkit/stun.h"
#include "natkit/stun_server.h"
#include "internal.h"

/* Address slots: bit 0 = the alternate port, bit 1 = the alternate IP. */
#define SLOT_PORT 1
#define SLOT_IP   2

struct nk_stun_server {
    int rfc5780;
    nk_addr addr[4];
};

/*
 * The largest response that does not echo request bytes: IPv6 with
 * XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS (24
 * each), an empty PADDING (4) and FINGERPRINT (8). Classic and error
 * responses are smaller.
 */
#define MAX_FIXED_RESPONSE (NK_STUN_HEADER_SIZE + 4 * 24 + 4 + 8)
#define MAX_UNKNOWN        16   /* UNKNOWN-ATTRIBUTES entries reported */

void nk_stun_server_stats_add(nk_stun_server_stats_t *dst, const nk_stun_server_stats_t *src)
{
    dst->requests += src->requests;
    dst->responses += src->responses;
    dst->errors += src->errors;
    dst->dropped_malformed += src->dropped_malformed;
    dst->dropped_not_stun += src->dropped_not_stun;
    dst->ignored += src->ignored;
    dst->send_failed += src->send_failed;
    dst->tcp_accepted += src->tcp_accepted;
    dst->tcp_rejected += src->tcp_rejected;
    dst->tcp_idle_closed += src->tcp_idle_closed;
    dst->tcp_rejected_per_ip += src->tcp_rejected_per_ip;
    dst->tcp_first_timeout += src->tcp_first_timeout;
    dst->tcp_evicted += src->tcp_evicted;
    dst->rate_limited += src->rate_limited;
}

static int is_wildcard(const nk_addr *a)
{
    static const uint8_t any[16];
    return memcmp(a->ip, any, nk_addr_ip_len(a)) == 0;
}

int nk_stun_server_new(nk_stun_server **out, const nk_addr *primary, const nk_addr *alt_ip,
                       uint16_t alt_port)
{
    if (out == NULL || primary == NULL || nk_addr_ip_len(primary) == 0)
        return NK_ERR_INVAL;
    *out = NULL;
    int alt = alt_ip != NULL && alt_ip->family != NK_AF_NONE;
    if (alt) {
        if (alt_ip->family != primary->family || nk_addr_equal_ip(alt_ip, primary) ||
            is_wildcard(primary) || is_wildcard(alt_ip))
            return NK_ERR_INVAL;
        if (alt_port == 0)
            alt_port = (uint16_t)(primary->port + 1);
        if (alt_port == primary->port || alt_port == 0)
            return NK_ERR_INVAL;
    }
    nk_stun_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NK_ERR_NOMEM;
    srv->rfc5780 = alt;
    for (int i = 0; i < 4; i++)
        srv->addr[i] = *primary;
    if (alt) {
        for (int i = SLOT_IP; i < 4; i++)
            memcpy(srv->addr[i].ip, alt_ip->ip, sizeof(alt_ip->ip));
        srv->addr[SLOT_PORT].port = alt_port;
        srv->addr[SLOT_IP | SLOT_PORT].port = alt_port;
    }
    *out = srv;
    return 0;
}

void nk_stun_server_free(nk_stun_server *srv)
{
    free(srv);
}

int nk_stun_server_rfc5780(const nk_stun_server *srv)
{
    return srv->rfc5780;
}

size_t nk_stun_server_addrs(const nk_stun_server *srv, nk_addr out[4])
{
    size_t n = srv->rfc5780 ? 4 : 1;
    memcpy(out, srv->addr, n * sizeof(nk_addr));
    return n;
}

size_t nk_stun_server_response_bound(size_t n)
{
    return n > MAX_FIXED_RESPONSE ? n : MAX_FIXED_RESPONSE;
}

/* Which slot a local address is (0 in plain mode). */
static int local_slot(const nk_stun_server *srv, const nk_addr *local)
{
    if (!srv->rfc5780)
        return 0;
    int slot = 0;
    if (nk_addr_equal_ip(local, &srv->addr[SLOT_IP]))
        slot |= SLOT_IP;
    if (local->port == srv->addr[SLOT_PORT].port)
        slot |= SLOT_PORT;
    return slot;
}

/* What a request asks for, once its attributes are checked. */
typedef struct plan {
    int error;                  /* 0, 400 or 420 */
    uint16_t unknown[MAX_UNKNOWN];
    size_t nunknown;
    int slot;                   /* where it arrived */
    int reply_slot;             /* where the answer leaves from */
    uint16_t response_port;     /* 0: answer the source port */
    int padding;                /* the request had PADDING (UDP) */
} plan;

static void add_unknown(plan *pl, uint16_t type)
{
    for (size_t i = 0; i < pl->nunknown; i++)
        if (pl->unknown[i] == type)
            return;
    if (pl->nunknown < MAX_UNKNOWN)
        pl->unknown[pl->nunknown++] = type;
}

/*
 * Comprehension-required attributes the server does not act on: whatever
 * the codec does not know, RESPONSE-ADDRESS (RFC 3489's redirect, a
 * reflection vector, never honoured), and without an alternate address the
 * RFC 5780 attributes (RFC 5780 section 6.1: CHANGE-REQUEST gets 420).
 */
static void find_unknown(const nk_stun_server *srv, const nk_stun_msg *m, plan *pl)
{
    pl->nunknown = nk_stun_unknown_required(m, pl->unknown, MAX_UNKNOWN);
    if (pl->nunknown > MAX_UNKNOWN)
        pl->nunknown = MAX_UNKNOWN;
    for (size_t i = 0; i < m->nattrs; i++) {
        uint16_t t = m->attrs[i].type;
        if (t == NK_STUN_ATTR_RESPONSE_ADDRESS ||
            (!srv->rfc5780 && (t == NK_STUN_ATTR_CHANGE_REQUEST || t == NK_STUN_ATTR_RESPONSE_PORT ||
                               t == NK_STUN_ATTR_PADDING)))
            add_unknown(pl, t);
    }
    if (pl->nunknown > 0)
        pl->error = 420;
}

/* RFC 5780 section 6.1: CHANGE-REQUEST, RESPONSE-PORT, PADDING. */
static void check_rfc5780(const nk_stun_msg *m, uint8_t transport, plan *pl)
{
    const nk_stun_attr *cr = nk_stun_get(m, NK_STUN_ATTR_CHANGE_REQUEST);
    const nk_stun_attr *rp = nk_stun_get(m, NK_STUN_ATTR_RESPONSE_PORT);
    int udp = transport == NK_TRANSPORT_UDP;
    pl->padding = udp && nk_stun_get(m, NK_STUN_ATTR_PADDING) != NULL;
    if (cr != NULL) {
        if (cr->len != 4) {
            pl->error = 400;
            return;
        }
        uint8_t flags = cr->value[3];
        /* Over TCP the answer can only go back on the connection. */
        if (!udp && (flags & (NK_STUN_CHANGE_IP | NK_STUN_CHANGE_PORT)) != 0) {
            pl->error = 400;
            return;
        }
        if (flags & NK_STUN_CHANGE_IP)
            pl->reply_slot ^= SLOT_IP;
        if (flags & NK_STUN_CHANGE_PORT)
            pl->reply_slot ^= SLOT_PORT;
    }
    if (rp != NULL) {
        /* A 16-bit port (then 2 bytes of padding); UDP only; not with PADDING. */
        if ((rp->len != 2 && rp->len != 4) || !udp || pl->padding) {
            pl->error = 400;
            return;
        }
        pl->response_port = (uint16_t)(rp->value[0] << 8 | rp->value[1]);
        if (pl->response_port == 0)
            pl->error = 400;
    }
}

static void make_plan(const nk_stun_server *srv, const nk_stun_msg *m, const nk_addr *local,
                      uint8_t transport, plan *pl)
{
    memset(pl, 0, sizeof(*pl));
    pl->slot = pl->reply_slot = local_slot(srv, local);
    find_unknown(srv, m, pl);
    if (pl->error == 0 && srv->rfc5780)
        check_rfc5780(m, transport, pl);
    if (pl->error != 0) {
        pl->reply_slot = pl->slot;
        pl->response_port = 0;
        pl->padding = 0;
    }
}

/* PADDING that makes the response as long as the request, never longer. */
static void build_padding(nk_stun_builder *b, size_t request_len, size_t tail)
{
    size_t used = b->len + 4 + tail;
    size_t pad = request_len > used ? (request_len - used) & ~(size_t)3 : 0;
    uint8_t *v = nk__stun_build_reserve(b, NK_STUN_ATTR_PADDING, pad);
    if (v != NULL)
        memset(v, 0, pad);
}

static void build_success(const nk_stun_server *srv, const nk_stun_msg *m, const plan *pl,
                          const nk_addr *local, const nk_addr *from, nk_stun_builder *b)
{
    const nk_addr *origin = srv->rfc5780 ? &srv->addr[pl->reply_slot] : local;
    const nk_addr *other = &srv->addr[pl->slot ^ (SLOT_IP | SLOT_PORT)];
    if (m->classic) {
        /* RFC 3489 section 11.2: MAPPED, SOURCE and CHANGED-ADDRESS (the
         * last only when there is another address; the source only when
         * known, not a wildcard). */
        nk_stun_build_addr(b, NK_STUN_ATTR_MAPPED_ADDRESS, from);
        if (!is_wildcard(origin))
            nk_stun_build_addr(b, NK_STUN_ATTR_SOURCE_ADDRESS, origin);
        if (srv->rfc5780)
            nk_stun_build_addr(b, NK_STUN_ATTR_CHANGED_ADDRESS, other);
        return;
    }
    nk_stun_build_addr(b, NK_STUN_ATTR_XOR_MAPPED_ADDRESS, from);
    if (srv->rfc5780) {
        /* RFC 5780 section 6.1: both MAPPED-ADDRESS and XOR-MAPPED-ADDRESS. */
        nk_stun_build_addr(b, NK_STUN_ATTR_MAPPED_ADDRESS, from);
        nk_stun_build_addr(b, NK_STUN_ATTR_RESPONSE_ORIGIN, origin);
        nk_stun_build_addr(b, NK_STUN_ATTR_OTHER_ADDRESS, other);
    }
    if (pl->padding)
        build_padding(b, m->raw_len, m->fingerprint >= 0 ? 8 : 0);
}

static int build_response(const nk_stun_server *srv, const nk_stun_msg *m, const plan *pl,
                          const nk_addr *local, const nk_addr *from, uint8_t *buf, size_t cap)
{
    nk_stun_builder b;
    uint16_t cls = pl->error != 0 ? NK_STUN_ERROR : NK_STUN_SUCCESS;
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(NK_STUN_BINDING, cls), m->tid);
    if (pl->error != 0) {
        nk_stun_build_error(&b, pl->error, NULL);
        if (pl->error == 420)
            nk_stun_build_unknown(&b, pl->unknown, pl->nunknown);
    } else {
        build_success(srv, m, pl, local, from, &b);
    }
    if (!m->classic && m->fingerprint >= 0)
        nk_stun_build_fingerprint(&b);
    int len = nk_stun_build_end(&b);
    if (len > 0 && m->classic)
        memcpy(buf + 4, m->raw + 4, 4); /* the classic 128-bit transaction ID */
    return len;
}

static int classify_drop(nk_stun_server_stats_t *st, int rc)
{
    if (rc == NK_ERR_NOT_STUN) {
        if (st != NULL)
            st->dropped_not_stun++;
        return NK_ERR_NOT_STUN;
    }
    if (st != NULL)
        st->dropped_malformed++;
    return NK_ERR_MALFORMED;
}

int nk_stun_server_handle(const nk_stun_server *srv, nk_stun_server_stats_t *stats,
                          const nk_addr *local, const nk_addr *from, uint8_t transport,
                          const uint8_t *p, size_t n, nk_transmit *out, uint8_t *buf, size_t cap)
{
    if (srv == NULL || local == NULL || from == NULL || out == NULL || (p == NULL && n > 0) ||
        (buf == NULL && cap > 0))
        return NK_ERR_INVAL;
    nk_stun_msg m;
    int rc = nk_stun_decode(&m, p, n, 1);
    if (rc != 0)
        return classify_drop(stats, rc);
    if (m.type != nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST)) {
        if (stats != NULL)
            stats->ignored++;
        return NK_ERR_AGAIN;
    }
    if (stats != NULL)
        stats->requests++;
    plan pl;
    make_plan(srv, &m, local, transport, &pl);
    int len = build_response(srv, &m, &pl, local, from, buf, cap);
    if (len < 0)
        return len;
    memset(out, 0, sizeof(*out));
    out->to = *from;
    if (pl.response_port != 0)
        out->to.port = pl.response_port;
    out->from = srv->rfc5780 && transport == NK_TRANSPORT_UDP ? srv->addr[pl.reply_slot] : *local;
    out->transport = transport;
    out->len = (size_t)len;
    if (stats != NULL) {
        if (pl.error != 0)
            stats->errors++;
        else
            stats->responses++;
    }
    return 0;
}
