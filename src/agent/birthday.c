/*
 * natkit: birthday probing, for the pair no punching connects: one side's NAT
 * maps endpoint-independently (the easy side: one public port for every
 * destination), the other's per destination (the hard side: a new port for
 * every peer address, so the port it used toward us is not the one the easy
 * side learnt from STUN). The hard side opens many extra sockets (the driver
 * opens them: NK_AGENT_EV_OPEN_SOCKETS) and sends from each to the easy
 * side's mapping; each opens one more port in its NAT, all admitting the easy
 * side. The easy side then sends paced probes to ports of the hard side's IP
 * until one lands on such a port: 256 open ports and 2,048 probes over the
 * 64,512 ports of a random allocator meet with 99.97 % probability. A NAT that
 * allocates ports sequentially is predicted instead (the ports after its last
 * STUN mapping are probed first). The probes are ordinary sealed PROBE frames,
 * so a hit is answered, confirmed and nominated like any other pair.
 *
 * It also learns our NAT's mapping behaviour (two STUN answers from different
 * server addresses: one mapping for both is endpoint-independent) and tells
 * the peer (a sealed SIGNAL), unless the config says it.
 *
 * Budget (agent.md): at most NK__BD_PROBES probes at NK__BD_INTERVAL_MS apart,
 * NK__BD_SOCKETS openers, NK__BD_WINDOW_MS per attempt, one attempt per agent,
 * only while a relay already carries the connection and only when both
 * behaviours say it can work; it stops at the first hit.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "cursor.h"

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

static int dependent(uint8_t mapping)
{
    return mapping == NK_NAT_ADDRESS_DEPENDENT || mapping == NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
}

void nk__bd_init(nk_agent *a, const nk_agent_config *cfg)
{
    nk__birthday *b = &a->bd;
    b->keep = -1;
    b->check_at = b->next_at = b->end_at = NK_DEADLINE_NONE;
    if (cfg->birthday_sockets < 0)
        b->want = 0;
    else if (cfg->birthday_sockets == 0)
        b->want = NK__BD_SOCKETS;
    else
        b->want = cfg->birthday_sockets < NK__BD_MAX_SOCKETS ? (size_t)cfg->birthday_sockets : NK__BD_MAX_SOCKETS;
    if (cfg->nat_mapping >= NK_NAT_ENDPOINT_INDEPENDENT && cfg->nat_mapping <= NK_NAT_ADDRESS_AND_PORT_DEPENDENT) {
        a->nat_self.mapping = (uint8_t)cfg->nat_mapping;
        a->nat_config = 1;
    }
    if (cfg->nat_ports >= NK_PORTS_PRESERVING && cfg->nat_ports <= NK_PORTS_RANDOM)
        a->nat_self.ports = (uint8_t)cfg->nat_ports;
    a->nat_self.delta = cfg->nat_port_delta > 0 ? cfg->nat_port_delta : 1;
    if (cfg->nhost > 0)
        a->host_port = cfg->host[0].port;
}

static void close_sockets(nk_agent *a, int keep)
{
    nk__birthday *b = &a->bd;
    b->keep = keep;
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_CLOSE_SOCKETS, 0);
    if (s != NULL) {
        if (keep >= 0)
            s->ev.keep = b->socks[keep];
        s->ev.path.rtt_ms = -1;
    }
}

static void done(nk_agent *a)
{
    nk__birthday *b = &a->bd;
    b->state = NK__BD_DONE;
    b->next_at = b->end_at = b->check_at = NK_DEADLINE_NONE;
    free(b->tried);
    b->tried = NULL;
}

void nk__bd_free(nk_agent *a)
{
    nk_stun_client_free(a->stun2);
    a->stun2 = NULL;
    free(a->bd.tried);
    free(a->bd.socks);
    a->bd.tried = NULL;
    a->bd.socks = NULL;
}

/* ---- learning our mapping ----------------------------------------------------------- */

/* Where the second Binding goes: the first answer's OTHER-ADDRESS (RFC 5780), then every other
 * configured server of the family on another IP, then the first server's own IP at
 * OTHER-ADDRESS's port, in that order (the STUN client fails over to the next after 750 ms while
 * the first keeps retransmitting: one silent alternate address, as seen in the lab, must not
 * leave our mapping unknown). The last one tells a port-dependent mapping (the usual symmetric
 * NAT) from an endpoint-independent one, though not an address-dependent one, which it takes for
 * endpoint-independent: then birthday probing may be tried in vain, within its budget. Returns
 * how many went into out. */
static size_t second_servers(const nk_agent *a, const nk_stun_binding_result *res, nk_addr *out, size_t cap)
{
    size_t n = 0;
    if (res->other_address.family == res->mapped.family && res->other_address.family != NK_AF_NONE &&
        !nk_addr_equal_ip(&res->other_address, &res->server))
        out[n++] = res->other_address;
    for (size_t i = 0; i < a->nstun && n < cap; i++) {
        const nk_addr *s = &a->stun_servers[i];
        int dup = s->family != res->mapped.family || nk_addr_equal_ip(s, &res->server);
        for (size_t j = 0; j < n && !dup; j++)
            dup = nk_addr_equal(s, &out[j]);
        if (!dup)
            out[n++] = *s;
    }
    if (n < cap && res->other_address.family == res->server.family && res->other_address.port != 0 &&
        res->other_address.port != res->server.port) {
        nk_addr alt_port = res->server;
        alt_port.port = res->other_address.port;
        out[n++] = alt_port;
    }
    return n;
}

/* The first STUN answer: our public address; a second Binding to another server address tells
 * whether the NAT keeps the mapping for every destination. */
void nk__bd_stun_first(nk_agent *a, int64_t now, const nk_stun_binding_result *res)
{
    nk_addr srv[4];
    size_t nsrv = 0;
    a->nat_self.last = res->mapped;
    if (a->nat_config || a->stun2 != NULL || a->bd.want == 0 ||
        (nsrv = second_servers(a, res, srv, sizeof(srv) / sizeof(srv[0]))) == 0) {
        nk__bd_send_nat(a);
        return;
    }
    if (nk__ag_stun_run(a, now, &a->stun2, srv, nsrv, 2750) != 0) {
        nk_stun_client_free(a->stun2);
        a->stun2 = NULL;
        a->stun2_done = 1;
    }
}

static void classify(nk_agent *a, const nk_addr *second)
{
    nk__natinfo *n = &a->nat_self;
    if (nk_addr_equal(second, &n->last)) {
        n->mapping = NK_NAT_ENDPOINT_INDEPENDENT;
        n->ports = second->port == a->host_port ? NK_PORTS_PRESERVING : NK_PORTS_UNKNOWN;
        return;
    }
    /* Another port toward another server: the mapping depends on the destination (address or
     * address and port: the two cannot be told apart here, and birthday probing treats them alike). */
    int d = (int)second->port - (int)n->last.port;
    n->mapping = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
    n->ports = d > 0 && d <= NK__BD_SEQ_MAX ? NK_PORTS_SEQUENTIAL : NK_PORTS_RANDOM;
    n->delta = d > 0 && d <= NK__BD_SEQ_MAX ? d : 1;
    n->prev = n->last;
    n->last = *second;
}

static void stun2_poll(nk_agent *a, int64_t now)
{
    nk_stun_binding_result res;
    if (a->stun2 == NULL || a->stun2_done || !nk_stun_client_result(a->stun2, &res))
        return;
    a->stun2_done = 1;
    if (res.status == 0 && res.mapped.family == a->nat_self.last.family) {
        classify(a, &res.mapped);
        nk__bd_send_nat(a);
        if (a->bd.state == NK__BD_IDLE && a->nat_peer.mapping != 0)
            a->bd.check_at = now + NK__BD_WAIT_MS; /* normal checks first */
    }
}

int nk__bd_stun_input(nk_agent *a, int64_t now, const nk_addr *from, const uint8_t *p, size_t n)
{
    if (a->stun2 == NULL || a->stun2_done || nk_stun_client_handle_datagram(a->stun2, now, from, p, n) != 0)
        return NK_ERR_NOT_FOUND;
    stun2_poll(a, now);
    return 0;
}

/* ---- signals -------------------------------------------------------------------------- */

/* Our NAT's behaviour to the peer, once it is known and our candidates went out. */
void nk__bd_send_nat(nk_agent *a)
{
    nk__sigmsg m;
    uint8_t buf[256];
    if (a->nat_self.mapping == 0 || !a->trickle || a->bd.want == 0)
        return;
    memset(&m, 0, sizeof(m));
    m.kind = NK_HUB_T_SIGNAL;
    m.sub = NK__AG_SIG_NAT;
    m.flags = (uint8_t)(a->nat_self.mapping | a->nat_self.ports << 4);
    m.hub_rtt = a->hub_rtt;
    if (a->nat_self.last.family != NK_AF_NONE) {
        m.cand[m.ncand].type = NK__CAND_SRFLX;
        m.cand[m.ncand++].addr = a->nat_self.last;
    }
    int n = nk__ag_signal_write(a, &m, buf, sizeof(buf));
    if (n > 0 && nk__ag_queue_signal(a, NK_HUB_T_SIGNAL, buf, (size_t)n) == 0)
        a->nat_sent = 1;
}

static void start_easy(nk_agent *a, int64_t now, const nk__sigmsg *m);

void nk__bd_on_signal(nk_agent *a, int64_t now, const nk__sigmsg *m)
{
    if (m->sub == NK__AG_SIG_NAT) {
        a->nat_peer.mapping = m->flags & 0x0f;
        a->nat_peer.ports = m->flags >> 4;
        if (m->ncand > 0)
            a->nat_peer.last = m->cand[0].addr;
        if (a->bd.state == NK__BD_IDLE && a->nat_self.mapping != 0)
            a->bd.check_at = now + NK__BD_WAIT_MS;
    } else if (m->sub == NK__AG_SIG_BIRTHDAY) {
        start_easy(a, now, m);
    }
}

/* ---- the hard side ------------------------------------------------------------------------ */

static int direct_valid(const nk_agent *a)
{
    for (size_t i = 0; i < a->npairs; i++)
        if (nk__ag_pair_usable(a, a->pairs[i]) && nk__ag_pair_kind(a->pairs[i]) == NK_PATH_DIRECT)
            return 1;
    return 0;
}

static int hard_role(const nk_agent *a)
{
    return a->bd.want > 0 && dependent(a->nat_self.mapping) && a->nat_self.last.family != NK_AF_NONE &&
           a->nat_peer.mapping == NK_NAT_ENDPOINT_INDEPENDENT && a->nat_peer.last.family == a->nat_self.last.family;
}

static int easy_role(const nk_agent *a)
{
    return a->bd.want > 0 && a->nat_self.mapping == NK_NAT_ENDPOINT_INDEPENDENT && dependent(a->nat_peer.mapping);
}

/* Only the hard side starts (it asks for sockets); the easy side waits for its signal. */
static void maybe_start(nk_agent *a, int64_t now)
{
    nk__birthday *b = &a->bd;
    b->check_at = NK_DEADLINE_NONE;
    if (b->state != NK__BD_IDLE || !hard_role(a) || direct_valid(a) || now - a->started_ms > NK__BD_GIVE_UP_MS)
        return;
    if (a->selected == 0) {
        b->check_at = now + 100; /* no relay carries the connection yet: it would cost connect time */
        return;
    }
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_OPEN_SOCKETS, 0);
    if (s == NULL)
        return;
    s->ev.nsockets = b->want;
    s->ev.path.rtt_ms = -1;
    b->state = NK__BD_WAIT_SOCKETS;
    b->role = NK__BD_HARD;
    b->target = a->nat_peer.last;
    b->end_at = now + 2000; /* sockets must come by then */
    a->stats.birthday_attempts++;
}

int nk_agent_add_sockets(nk_agent *a, int64_t now_ms, const nk_addr *local, size_t n)
{
    if (a == NULL || (local == NULL && n > 0))
        return NK_ERR_INVAL;
    nk__birthday *b = &a->bd;
    if (b->state != NK__BD_WAIT_SOCKETS || a->state != NK__AG_RUNNING)
        return NK_ERR_STATE;
    if (n > NK__BD_MAX_SOCKETS)
        return NK_ERR_LIMIT; /* more than asked for: the caller keeps (and closes) them */
    if (n == 0 || (b->socks = malloc(n * sizeof(*b->socks))) == NULL) {
        done(a);
        return n == 0 ? 0 : NK_ERR_NOMEM;
    }
    memcpy(b->socks, local, n * sizeof(*local));
    b->nsocks = n;
    b->sent = 0;
    b->state = NK__BD_OPENING;
    b->next_at = now_ms;
    b->end_at = now_ms + NK__BD_WINDOW_MS + NK__BD_LINGER_MS;
    return 0;
}

/* The first ports our NAT will hand out next, when it counts sequentially (0: unknown). */
static uint16_t predict(const nk_agent *a, int *delta)
{
    const nk__natinfo *n = &a->nat_self;
    *delta = n->delta > 0 ? n->delta : 1;
    if (n->ports != NK_PORTS_SEQUENTIAL || n->last.port == 0)
        return 0;
    uint32_t p = (uint32_t)n->last.port + (uint32_t)*delta;
    return p <= 0xffff ? (uint16_t)p : 0;
}

static void send_ready(nk_agent *a)
{
    nk__sigmsg m;
    uint8_t buf[256];
    int delta;
    memset(&m, 0, sizeof(m));
    m.kind = NK_HUB_T_SIGNAL;
    m.sub = NK__AG_SIG_BIRTHDAY;
    m.hub_rtt = a->hub_rtt;
    m.ncand = 1;
    m.cand[0].type = NK__CAND_SRFLX;
    m.cand[0].addr = a->nat_self.last;
    m.cand[0].addr.port = predict(a, &delta);
    if (m.cand[0].addr.port != 0 && m.cand[0].addr.port + delta <= 0xffff) {
        m.cand[1] = m.cand[0];
        m.cand[1].addr.port = (uint16_t)(m.cand[0].addr.port + delta);
        m.ncand = 2;
    }
    int n = nk__ag_signal_write(a, &m, buf, sizeof(buf));
    if (n > 0)
        nk__ag_queue_signal(a, NK_HUB_T_SIGNAL, buf, (size_t)n);
}

/* A sealed PROBE for birthday probing (txid: NK__BD_ID | seq): into buf, its length. */
static int bd_probe(nk_agent *a, uint32_t seq, const nk_addr *to, uint8_t *buf, size_t cap)
{
    nk__check c;
    c.type = NK__AG_PROBE;
    c.flags = 0;
    nk__store_u32(c.txid, NK__BD_ID);
    nk__store_u32(c.txid + 4, seq);
    c.observed = *to;
    a->stats.birthday_probes++;
    return nk__ag_check_write(a, &c, buf, cap);
}

/* ---- the easy side ------------------------------------------------------------------------ */

static void start_easy(nk_agent *a, int64_t now, const nk__sigmsg *m)
{
    nk__birthday *b = &a->bd;
    if (b->state != NK__BD_IDLE || !easy_role(a) || m->ncand == 0 || direct_valid(a) ||
        !nk_addr_equal_ip(&m->cand[0].addr, &a->nat_peer.last))
        return; /* one attempt, and only toward the IP the peer's NAT info named */
    b->tried = calloc(1, 65536 / 8);
    if (b->tried == NULL)
        return;
    b->state = NK__BD_PROBING;
    b->role = NK__BD_EASY;
    b->target = m->cand[0].addr;
    b->pred = m->cand[0].addr.port;
    b->pdelta = m->ncand > 1 && m->cand[1].addr.port > b->pred ? m->cand[1].addr.port - b->pred : 1;
    b->probes = 0;
    b->next_at = now;
    b->end_at = now + NK__BD_WINDOW_MS;
    nk__ag_random(a, (uint8_t *)&b->rng, sizeof(b->rng));
    a->stats.birthday_attempts++;
}

static int tried(const nk__birthday *b, uint16_t port)
{
    return (b->tried[port >> 3] >> (port & 7)) & 1;
}

/* xorshift32: random ports without a call per port into the injected source. */
static uint32_t next_rand(nk__birthday *b)
{
    uint32_t x = b->rng ? b->rng : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return b->rng = x;
}

/* The next port to probe: the predicted window first, then random untried ports (0: none). */
static uint16_t next_port(nk__birthday *b)
{
    if (b->pred != 0 && b->probes < NK__BD_PREDICT) {
        uint32_t p = (uint32_t)b->pred + (uint32_t)b->pdelta * b->probes;
        if (p <= 0xffff && !tried(b, (uint16_t)p))
            return (uint16_t)p;
    }
    for (int i = 0; i < 64; i++) {
        uint16_t p = (uint16_t)(1024 + next_rand(b) % (65536 - 1024));
        if (!tried(b, p))
            return p;
    }
    return 0;
}

/* ---- in and out ------------------------------------------------------------------------------ */

int nk__bd_poll_transmit(nk_agent *a, int64_t now, nk_transmit *out, uint8_t *buf, size_t cap)
{
    nk__birthday *b = &a->bd;
    if (b->next_at > now || cap < NK__AG_CHECK_SIZE || a->state != NK__AG_RUNNING)
        return NK_ERR_AGAIN;
    memset(out, 0, sizeof(*out));
    out->transport = NK_TRANSPORT_UDP;
    if (b->state == NK__BD_OPENING) {
        /* One opener per extra socket, all at once (one packet per NAT port; they go to the
         * easy side's one address, whose NAT drops them unless it probed that port already). */
        out->from = b->socks[b->sent];
        out->to = b->target;
        out->len = (size_t)bd_probe(a, (uint32_t)b->sent + 1, &b->target, buf, cap);
        if (++b->sent == b->nsocks) {
            b->state = NK__BD_READY;
            b->next_at = NK_DEADLINE_NONE;
            send_ready(a);
        }
        return 0;
    }
    if (b->state != NK__BD_PROBING)
        return NK_ERR_AGAIN;
    uint16_t port = b->probes < NK__BD_PROBES && now < b->end_at ? next_port(b) : 0;
    if (port == 0) {
        done(a);
        return NK_ERR_AGAIN;
    }
    b->tried[port >> 3] |= (uint8_t)(1u << (port & 7));
    b->probes++;
    out->to = b->target;
    out->to.port = port;
    out->len = (size_t)bd_probe(a, b->probes, &out->to, buf, cap);
    b->next_at = now + NK__BD_INTERVAL_MS;
    return 0;
}

/*
 * An authentic check frame. On the easy side, one from the hard side's IP on a port we
 * probed is the hit: probing stops and the port becomes a peer-reflexive candidate (its
 * pair is checked at once). On the hard side, the first one on an extra socket is the hit:
 * that socket stays, the others close. Answers to birthday probes are consumed here: 1; else 0.
 */
int nk__bd_rx(nk_agent *a, int64_t now, uint16_t base, const nk_addr *from, const nk__check *c)
{
    nk__birthday *b = &a->bd;
    int ours = c->type == NK__AG_ANSWER && nk__load_u32(c->txid) == NK__BD_ID;
    if (c->type == NK__AG_PROBE && nk__load_u32(c->txid) == NK__BD_ID && base == NK__BASE_SOCKET) {
        /* The hard side's openers reach us only when our NAT filters by address alone (then
         * all of them do): the first is answered like any probe, the rest would only fill the
         * pair table with peer-reflexive twins. */
        if (b->opener_taken)
            return 1;
        b->opener_taken = 1;
    }
    if (b->role == NK__BD_HARD && b->state != NK__BD_DONE && base >= NK__BASE_EXTRA) {
        a->stats.birthday_hits++;
        close_sockets(a, base - NK__BASE_EXTRA);
        done(a);
    }
    if (b->role == NK__BD_EASY && b->state == NK__BD_PROBING && base == NK__BASE_SOCKET &&
        nk_addr_equal_ip(from, &b->target) && tried(b, from->port)) {
        a->stats.birthday_hits++;
        done(a);
        if (nk__ag_add_remote(a, now, from, NK__CAND_PRFLX) == 1)
            nk__ag_checks_kick(a, now, 0, NK__AG_CHECK_WINDOW);
    }
    return ours;
}

int nk__bd_base_of(const nk_agent *a, const nk_addr *local)
{
    const nk__birthday *b = &a->bd;
    if (local == NULL || b->socks == NULL)
        return NK__BASE_SOCKET;
    for (size_t i = 0; i < b->nsocks; i++) {
        if (!nk_addr_equal(local, &b->socks[i]))
            continue;
        if (b->state == NK__BD_DONE && (int)i != b->keep)
            return -1; /* closed since: only the winner is still open */
        return NK__BASE_EXTRA + (int)i;
    }
    return NK__BASE_SOCKET; /* the main socket */
}

const nk_addr *nk__bd_socket(const nk_agent *a, uint16_t base)
{
    size_t i = (size_t)base - NK__BASE_EXTRA;
    return base >= NK__BASE_EXTRA && i < a->bd.nsocks ? &a->bd.socks[i] : NULL;
}

/* A direct pair works: an attempt in progress ends (the hard side keeps the socket that won). */
void nk__bd_on_valid(nk_agent *a, int64_t now, const nk__pair *pr)
{
    nk__birthday *b = &a->bd;
    (void)now;
    if (nk__ag_pair_kind(pr) != NK_PATH_DIRECT || b->state == NK__BD_IDLE || b->state == NK__BD_DONE)
        return;
    if (b->role == NK__BD_HARD && b->socks != NULL)
        close_sockets(a, -1); /* a direct path on the main socket: none of them is needed */
    done(a);
}

void nk__bd_timer(nk_agent *a, int64_t now)
{
    nk__birthday *b = &a->bd;
    if (a->stun2 != NULL && !a->stun2_done) {
        nk_stun_client_handle_timeout(a->stun2, now);
        stun2_poll(a, now);
    }
    if (b->check_at <= now)
        maybe_start(a, now);
    if (b->end_at > now)
        return;
    if (b->role == NK__BD_HARD && b->state != NK__BD_DONE) {
        if (b->socks != NULL)
            close_sockets(a, -1);
        done(a);
    } else if (b->state == NK__BD_PROBING) {
        done(a);
    }
}

int64_t nk__bd_deadline(const nk_agent *a)
{
    const nk__birthday *b = &a->bd;
    int64_t d = min64(b->check_at, b->end_at);
    if (b->state == NK__BD_OPENING || b->state == NK__BD_PROBING)
        d = min64(d, b->next_at);
    if (a->stun2 != NULL && !a->stun2_done)
        d = min64(d, nk_stun_client_next_deadline(a->stun2));
    return d;
}
