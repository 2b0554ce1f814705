/*
 * natkit: the agent's candidates. Gathering (host addresses from the
 * config, server-reflexive from nk_stun_client, relayed from nk_turn_client),
 * trickling them through the hub, the peer's candidates and the pairs they
 * make, and the signals that carry them.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

nk__pair *nk__ag_pair_find(nk_agent *a, uint16_t base, const nk_addr *remote)
{
    for (size_t i = 0; i < a->npairs; i++)
        if (a->pairs[i]->base == base && nk_addr_equal(&a->pairs[i]->remote, remote))
            return a->pairs[i];
    return NULL;
}

nk__pair *nk__ag_pair_by_id(nk_agent *a, uint32_t id)
{
    for (size_t i = 0; i < a->npairs; i++)
        if (a->pairs[i]->id == id)
            return a->pairs[i];
    return NULL;
}

/* ---- signals out ---------------------------------------------------------------------- */

void nk__ag_send_candidates(nk_agent *a, int64_t now, uint8_t type)
{
    nk__sigmsg m;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    memset(&m, 0, sizeof(m));
    m.kind = type;
    m.hub_rtt = a->hub_rtt;
    for (size_t i = 0; i < a->nlocal; i++)
        if (a->local[i].type != NK__CAND_PRFLX)
            m.cand[m.ncand++] = a->local[i];
    int n = nk__ag_signal_write(a, &m, buf, sizeof(buf));
    if (n > 0)
        nk__ag_queue_signal(a, type, buf, (size_t)n);
    a->trickle = 1;
    nk__bd_send_nat(a); /* our NAT's behaviour goes with our candidates (birthday.c) */
}

/* ---- local candidates ----------------------------------------------------------------- */

int nk__ag_add_local(nk_agent *a, const nk_addr *addr, uint8_t type)
{
    if (addr->family == NK_AF_NONE)
        return NK_ERR_INVAL;
    for (size_t i = 0; i < a->nlocal; i++)
        if (nk_addr_equal(&a->local[i].addr, addr))
            return 0;
    if (a->nlocal == NK__AG_MAX_LOCAL) {
        if (type != NK__CAND_PRFLX) /* peer-reflexive ones are informational: no loss */
            a->stats.dropped_limit++;
        return NK_ERR_LIMIT;
    }
    a->local[a->nlocal].addr = *addr;
    a->local[a->nlocal++].type = type;
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_CANDIDATE, 0);
    if (s != NULL) {
        s->ev.path.kind = type == NK__CAND_RELAY ? NK_PATH_TURN : NK_PATH_DIRECT;
        s->ev.path.local = *addr;
        s->ev.path.rtt_ms = -1;
    }
    return 1;
}

/* A candidate found after start: trickled at once when ours have gone out. */
static void found_local(nk_agent *a, int64_t now, const nk_addr *addr, uint8_t type)
{
    if (nk__ag_add_local(a, addr, type) == 1 && a->trickle && type != NK__CAND_PRFLX)
        nk__ag_send_candidates(a, now, NK_HUB_T_CANDIDATE);
}

static int socket_family(const nk_agent *a, uint8_t family);

/* One STUN client over the n servers (failover in their order) in *c (replacing the one there),
 * started; it gives up after timeout_ms. */
int nk__ag_stun_run(nk_agent *a, int64_t now, nk_stun_client **c, const nk_addr *servers, size_t n,
                    int64_t timeout_ms)
{
    nk_stun_client_config sc;
    memset(&sc, 0, sizeof(sc));
    sc.servers = servers;
    sc.nservers = n;
    /* sends at 0, 250, 750 ms and then every 500 ms (not 1.75, 3.75, 7.75 s): at 30 % loss each
     * way a round trip fails half the time, and the first 4 s (when a connection settles on a
     * relay) held 5 sends, all lost once in 30 gatherings; now 8 (1 in 200). At most 2 packets a
     * second to a server that does not answer, for timeout_ms. */
    sc.rto_ms = 250;
    sc.max_rto_ms = 500;
    sc.rc = (int)(timeout_ms / 500) + 2;
    sc.failover_ms = 750;
    sc.timeout_ms = timeout_ms;
    sc.random = a->random;
    sc.random_ctx = a->random_ctx;
    nk_stun_client_free(*c);
    *c = NULL;
    int rc = nk_stun_client_new(c, &sc);
    if (rc == 0)
        rc = nk_stun_client_start(*c, now);
    return rc;
}

/* The configured servers of one family, in their order. */
static size_t servers_of(const nk_agent *a, uint8_t family, nk_addr *out)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nstun; i++)
        if (a->stun_servers[i].family == family)
            out[n++] = a->stun_servers[i];
    return n;
}

/*
 * A (new) STUN run over the configured servers, one per address family our socket has (a host
 * candidate of it, or no host list at all): `stun` over the IPv4 servers (else the IPv6 ones:
 * an IPv6-only host), `stun6` over the IPv6 ones beside it on a dual-stack socket. Each family
 * gets its own server-reflexive candidate; a server of a family the socket lacks is skipped.
 */
int nk__ag_stun_begin(nk_agent *a, int64_t now)
{
    nk_addr v4[NK__AG_MAX_STUN], v6[NK__AG_MAX_STUN];
    size_t n4 = socket_family(a, NK_AF_INET) ? servers_of(a, NK_AF_INET, v4) : 0;
    size_t n6 = socket_family(a, NK_AF_INET6) ? servers_of(a, NK_AF_INET6, v6) : 0;
    if (n4 + n6 == 0)
        return 0;
    a->stun_done = 0;
    a->stun6_done = 1;
    a->gathered_ms = now;
    int rc = n4 > 0 ? nk__ag_stun_run(a, now, &a->stun, v4, n4, 10000)
                    : nk__ag_stun_run(a, now, &a->stun, v6, n6, 10000);
    if (rc == 0 && n4 > 0 && n6 > 0) {
        a->stun6_done = 0;
        rc = nk__ag_stun_run(a, now, &a->stun6, v6, n6, 10000);
    }
    return rc;
}

/*
 * A direct path died: our NAT may have dropped the mapping and will give a new
 * port, which the peer cannot guess. Ask STUN again (at most every 10 s); a new
 * server-reflexive address is trickled and punched like the first one.
 */
void nk__ag_regather(nk_agent *a, int64_t now)
{
    if (a->nstun == 0 || (a->stun != NULL && !a->stun_done) || (a->stun6 != NULL && !a->stun6_done) ||
        now - a->gathered_ms < NK__AG_REGATHER_MS)
        return;
    nk__ag_stun_begin(a, now);
}

int nk__ag_gather_start(nk_agent *a, int64_t now)
{
    int rc = nk__ag_stun_begin(a, now);
    if (rc != 0)
        return rc;
    if (a->turn_owned && (rc = nk_turn_client_allocate(a->turn, now)) != 0)
        return rc;
    nk__ag_turn_shared_check(a, now);
    if (a->controlling) {
        nk__ag_send_candidates(a, now, NK_HUB_T_CONNECT);
        a->connect_tries = 1;
        a->connect_next = now + NK__AG_CONNECT_RTX;
    }
    return 0;
}

void nk__ag_stun_poll(nk_agent *a, int64_t now)
{
    nk_stun_binding_result res;
    if (a->stun_done || !nk_stun_client_result(a->stun, &res))
        return;
    a->stun_done = 1;
    if (res.status == 0) {
        found_local(a, now, &res.mapped, NK__CAND_SRFLX);
        nk__bd_stun_first(a, now, &res);
        return;
    }
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_STUN_FAILED, 0);
    if (s != NULL) {
        s->ev.err = res.status;
        s->ev.path.remote = res.server.family != NK_AF_NONE ? res.server : a->stun_servers[0];
        s->ev.path.rtt_ms = -1;
    }
}

/* The IPv6 run beside the IPv4 one: its mapping is one more candidate; a failure says nothing
 * (the IPv4 run reports STUN_FAILED; an IPv6 path may still come from host candidates). */
void nk__ag_stun6_poll(nk_agent *a, int64_t now)
{
    nk_stun_binding_result res;
    if (a->stun6_done || !nk_stun_client_result(a->stun6, &res))
        return;
    a->stun6_done = 1;
    if (res.status == 0)
        found_local(a, now, &res.mapped, NK__CAND_SRFLX);
}

/* ---- TURN ------------------------------------------------------------------------------- */

static void turn_up(nk_agent *a, int64_t now, const nk_addr *relayed, const nk_addr *mapped)
{
    a->turn_ready = 1;
    a->turn_family = relayed->family;
    found_local(a, now, relayed, NK__CAND_RELAY);
    found_local(a, now, mapped, NK__CAND_SRFLX);
    nk__ag_checks_kick(a, now, 0, NK__AG_CHECK_WINDOW);
}

static void turn_gone(nk_agent *a, int64_t now)
{
    a->turn_ready = 0;
    for (size_t i = 0; i < a->npairs; i++)
        if (a->pairs[i]->base == NK__BASE_RELAY && a->pairs[i]->valid)
            nk__ag_on_dead(a, now, a->pairs[i]);
}

void nk__ag_turn_pump(nk_agent *a, int64_t now)
{
    nk_turn_event ev;
    for (int budget = 0; budget < 256 && nk_turn_client_poll_event(a->turn, &ev) == 0; budget++) {
        switch (ev.type) {
        case NK_TURN_EV_ALLOCATED: turn_up(a, now, &ev.relayed, &ev.mapped); break;
        case NK_TURN_EV_DATA: nk__ag_rx_frame(a, now, NK__BASE_RELAY, &ev.peer, ev.data, ev.len); break;
        case NK_TURN_EV_CLOSED: turn_gone(a, now); break;
        case NK_TURN_EV_REDIRECTED: a->turn_server = ev.peer; break; /* 300 Try Alternate: answers come from there */
        case NK_TURN_EV_ERROR:
            if (ev.method == NK_STUN_ALLOCATE && nk_turn_client_state(a->turn) == NK_TURN_FAILED)
                turn_gone(a, now); /* refresh errors are retried by the client; CLOSED says when it is over */
            break;
        default: break;
        }
    }
}

/* The driver's shared allocation: is it there (yet, still)? Looked at every 50 ms until it is. */
void nk__ag_turn_shared_check(nk_agent *a, int64_t now)
{
    if (a->turn == NULL || a->turn_owned)
        return;
    nk_turn_state st = nk_turn_client_state(a->turn);
    nk_addr relayed, mapped;
    if (st == NK_TURN_ALLOCATED && !a->turn_ready && nk_turn_client_relayed(a->turn, &relayed, &mapped) == 0)
        turn_up(a, now, &relayed, &mapped);
    else if (st != NK_TURN_ALLOCATED && a->turn_ready)
        turn_gone(a, now);
    a->shared_poll = st == NK_TURN_IDLE || st == NK_TURN_ALLOCATING ? now + 50 : NK_DEADLINE_NONE;
}

/* ---- remote candidates and pairs ---------------------------------------------------------- */

nk__pair *nk__ag_add_pair(nk_agent *a, uint16_t base, const nk_addr *remote, uint8_t rtype)
{
    nk__pair *pr = nk__ag_pair_find(a, base, remote);
    if (pr != NULL)
        return pr;
    if (a->npairs == NK__AG_MAX_PAIRS) {
        a->stats.dropped_limit++;
        return NULL;
    }
    pr = calloc(1, sizeof(*pr));
    if (pr == NULL) {
        a->stats.dropped_limit++;
        return NULL;
    }
    a->pairs[a->npairs++] = pr;
    pr->id = a->next_pair_id++;
    pr->base = base;
    pr->rtype = rtype;
    pr->remote = *remote;
    pr->rtt_ms = -1;
    pr->ka_next = pr->ka_wait = NK_DEADLINE_NONE;
    return pr;
}

/* Our socket can reach family: a host or server-reflexive candidate of it (or no host list at all). */
static int socket_family(const nk_agent *a, uint8_t family)
{
    int any = 0;
    for (size_t i = 0; i < a->nlocal; i++) {
        if (a->local[i].type == NK__CAND_RELAY)
            continue;
        any = 1;
        if (a->local[i].addr.family == family)
            return 1;
    }
    return !any;
}

/* A remote candidate turns out to be the peer's TURN relay: its pairs are TURN paths. */
static void mark_relay(nk_agent *a, size_t i)
{
    a->remote[i].type = NK__CAND_RELAY;
    for (size_t k = 0; k < a->npairs; k++)
        if (nk_addr_equal(&a->pairs[k]->remote, &a->remote[i].addr))
            a->pairs[k]->rtype = NK__CAND_RELAY;
}

/* 1 when the candidate is new (pairs were made), 0 when known, < 0 over the limit. */
int nk__ag_add_remote(nk_agent *a, int64_t now, const nk_addr *addr, uint8_t type)
{
    for (size_t i = 0; i < a->nremote; i++) {
        if (!nk_addr_equal(&a->remote[i].addr, addr))
            continue;
        if (type == NK__CAND_RELAY && a->remote[i].type != NK__CAND_RELAY)
            mark_relay(a, i); /* learnt as peer-reflexive first; the peer says it is its relay */
        return 0;
    }
    for (size_t i = 0; i < a->nlocal; i++)
        if (nk_addr_equal(&a->local[i].addr, addr))
            return 0; /* our own address (a peer behind the same NAT reporting the shared srflx) */
    if (a->nremote == NK__AG_MAX_REMOTE) {
        a->stats.dropped_limit++;
        return NK_ERR_LIMIT;
    }
    a->remote[a->nremote].addr = *addr;
    a->remote[a->nremote++].type = type;
    if (socket_family(a, addr->family))
        nk__ag_add_pair(a, NK__BASE_SOCKET, addr, type);
    if (a->turn != NULL && addr->family == a->turn_family) {
        if (nk_turn_client_permit(a->turn, now, addr) == 0)
            nk__ag_add_pair(a, NK__BASE_RELAY, addr, type);
    }
    return 1;
}

/* ---- signals in ----------------------------------------------------------------------------- */

static void take_candidates(nk_agent *a, int64_t now, const nk__sigmsg *m, int64_t pace_for)
{
    int added = 0;
    for (size_t i = 0; i < m->ncand; i++)
        if (nk__ag_add_remote(a, now, &m->cand[i].addr, m->cand[i].type) == 1)
            added = 1;
    if (added)
        nk__ag_checks_kick(a, now, pace_for, NK__AG_CHECK_WINDOW);
}

/*
 * The responder's punching rule: the initiator starts probing when our
 * candidates reach it, about (our hub RTT + its hub RTT) / 2 from now. We
 * probe at once (opening our NAT toward it), keep the 20 ms pace without
 * backoff until well after that instant, and send a round exactly then.
 */
static void on_connect(nk_agent *a, int64_t now, const nk__sigmsg *m)
{
    int64_t est = 0;
    if (a->hub_rtt >= 0 && a->peer_hub_rtt >= 0)
        est = (a->hub_rtt + a->peer_hub_rtt) / 2;
    else if (a->hub_rtt >= 0 || a->peer_hub_rtt >= 0)
        est = a->hub_rtt >= 0 ? a->hub_rtt : a->peer_hub_rtt;
    nk__ag_send_candidates(a, now, NK_HUB_T_CANDIDATE);
    take_candidates(a, now, m, est + NK__AG_PACE_ROUNDS * a->check_ms);
    if (est > 0)
        a->punch_at = now + est;
}

static void on_relay(nk_agent *a, const uint8_t *p, size_t n)
{
    if (n > NK_AGENT_MAX_DATA) {
        a->stats.rx_malformed++;
        return;
    }
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_DATA, n);
    if (s == NULL)
        return;
    nk__ag_path_info(a, NK__AG_HUB_PATH, &s->ev.path);
    memcpy(s->data, p, n);
    s->ev.len = n;
    a->stats.data_received++;
}

/* The responder's candidates (or a trickle from either side). */
static void on_candidates(nk_agent *a, int64_t now, const nk__sigmsg *m)
{
    if (!a->got_remote && a->controlling) {
        int64_t rtt = a->hub_rtt >= 0 && a->peer_hub_rtt >= 0 ? a->hub_rtt + a->peer_hub_rtt : 0;
        a->turn_hold_until = now + (2 * rtt > NK__AG_TURN_HOLD ? 2 * rtt : NK__AG_TURN_HOLD);
    }
    a->got_remote = 1;
    a->connect_next = NK_DEADLINE_NONE;
    take_candidates(a, now, m, NK__AG_PACE_ROUNDS * a->check_ms);
}

static void on_nominate_hub(nk_agent *a, int64_t now, const nk__sigmsg *m)
{
    if (m->sub == NK__AG_SIG_NOMINATE_HUB && !a->controlling) {
        a->nominated = NK__AG_HUB_PATH;
        nk__ag_select(a, now, NK__AG_HUB_PATH);
    }
}

static int count_bad_signal(nk_agent *a, int rc)
{
    if (rc == NK_ERR_AUTH)
        a->stats.rx_auth_failed++;
    else
        a->stats.rx_malformed++;
    return rc;
}

int nk__ag_on_signal(nk_agent *a, int64_t now, uint8_t type, const uint8_t *p, size_t n)
{
    nk__sigmsg m;
    if (type == NK_HUB_T_RELAY) {
        on_relay(a, p, n);
        return 0;
    }
    if (type != NK_HUB_T_CONNECT && type != NK_HUB_T_CANDIDATE && type != NK_HUB_T_SIGNAL)
        return count_bad_signal(a, NK_ERR_MALFORMED);
    int rc = nk__ag_signal_read(a, type, p, n, &m);
    if (rc != 0)
        return count_bad_signal(a, rc);
    if (m.hub_rtt >= 0)
        a->peer_hub_rtt = m.hub_rtt;
    a->peer_heard = 1;
    if (type == NK_HUB_T_CONNECT && !a->controlling)
        on_connect(a, now, &m);
    else if (type == NK_HUB_T_SIGNAL && m.sub == NK__AG_SIG_NOMINATE_HUB)
        on_nominate_hub(a, now, &m);
    else if (type == NK_HUB_T_SIGNAL)
        nk__bd_on_signal(a, now, &m); /* NAT behaviour, birthday probing ready */
    else
        on_candidates(a, now, &m); /* CANDIDATE, or a CONNECT in glare */
    nk__ag_hub_available(a, now);
    return 0;
}
