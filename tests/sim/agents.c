/*
 * Two agents, two sites, STUN/TURN servers and a hub on the test world (agents.h).
 */
#include "agents.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>


const char *const sim_site_names[SIM_SITE_COUNT] = {"public",     "full-cone", "restricted",
                                                    "port-restr", "symmetric", "udp-blocked"};

typedef enum { ST_INTERNET, ST_HOST, ST_HUB } stage;

/* What must hold, held not: the caller's fail (a cmocka test's fail_msg), or abort. */
static void check(const sim_agents *w, int ok, const char *what)
{
    if (ok)
        return;
    if (w->fail != NULL)
        w->fail(what);
    fprintf(stderr, "tests/sim/agents: %s\n", what);
    abort();
}

static void server_random(void *ctx, uint8_t *buf, size_t n)
{
    sim_random(&((sim_agents *)ctx)->srv_rnd, buf, n);
}

static int relay_open(void *ctx, const nk_addr *relay)
{
    (void)ctx;
    (void)relay;
    return 0;
}

static void relay_close(void *ctx, const nk_addr *relay)
{
    (void)ctx;
    (void)relay;
}

/* ---- the event queue -------------------------------------------------------------- */

static void enqueue(sim_agents *w, int64_t at, stage where, int dst, int aux, const nk_addr *from, const nk_addr *to,
                    const uint8_t *d, size_t len)
{
    check(w, len <= SIM_AGENTS_PKT_MAX, "datagram too long");
    sim_pkt k = {.tag = where, .dst = dst, .aux = aux, .data = d, .len = len};
    k.from = from ? *from : (nk_addr){0};
    k.to = to ? *to : (nk_addr){0};
    sim_queue_put(&w->net, at, &k);
}

/* ---- the internet and the NATs ------------------------------------------------------- */

static int is_private(const nk_addr *a)
{
    return a->ip[0] == 10;
}

static int is_server(const sim_agents *w, const nk_addr *a)
{
    return nk_addr_equal_ip(a, &w->stun_addr[0]) || nk_addr_equal_ip(a, &w->stun_addr[1]) ||
           nk_addr_equal_ip(a, &w->turn_addr);
}

/* The site's outside link drops this datagram (site.loss %, from the world's rng). */
static int site_drops(sim_agents *w, const sim_site *s)
{
    uint32_t r;
    if (s->loss == 0)
        return 0;
    sim_random(&w->rng, (uint8_t *)&r, sizeof(r));
    return r % 100 < s->loss;
}

static void inet_send(sim_agents *w, const nk_addr *from, const nk_addr *to, const uint8_t *d, size_t len)
{
    check(w, len <= SIM_AGENTS_PKT_MAX, "datagram too long");
    if (w->drop_direct && !is_server(w, from) && !is_server(w, to))
        return;
    sim_pkt k = {.tag = ST_INTERNET, .dst = -1, .from = *from, .to = *to, .data = d, .len = len};
    if (to->family == NK_AF_INET6 && w->inet6_ms > 0) { /* IPv6 takes another route */
        sim_queue_put(&w->net, w->clock.now + w->inet6_ms, &k);
        return;
    }
    if (w->fixed_delay)
        sim_queue_put(&w->net, w->clock.now + w->net.link.delay_ms, &k);
    else
        sim_queue_send(&w->net, w->clock.now, &k);
}

void sim_agents_host_send(sim_agents *w, int hi, const nk_transmit *tx, const uint8_t *d)
{
    sim_agent_host *h = &w->hosts[hi];
    sim_site *s = &w->sites[h->site];
    const nk_addr *src_addr = tx->to.family == NK_AF_INET6 ? &h->addr6 : &h->addr;
    if (tx->from.family != NK_AF_NONE) { /* from an extra socket: it must be open */
        size_t i = 0;
        while (i < h->nextra && !nk_addr_equal(&h->extra[i], &tx->from))
            i++;
        check(w, i < h->nextra && !h->extra_closed[i], "sent from an extra socket that is not open");
        src_addr = &h->extra[i];
    }
    if (src_addr->family != tx->to.family)
        return; /* no address of that family on this host: the send fails */
    if (tx->len > 0 && d[0] == 0x81) {
        memcpy(h->last_probe, d, tx->len);
        h->last_probe_len = tx->len;
        h->last_probe_to = tx->to;
    }
    for (int j = 0; j < 2; j++)
        if (j != hi && w->hosts[j].site == h->site && nk_addr_equal(&w->hosts[j].addr, &tx->to)) {
            enqueue(w, w->clock.now + SIM_AGENTS_LAN_MS, ST_HOST, j, 0, src_addr, &tx->to, d, tx->len);
            return;
        }
    if (is_private(&tx->to))
        return;
    if (tx->to.family == NK_AF_INET6) { /* no NAT; a stateful firewall where the site has one */
        nk_addr src, dst;
        if (!s->fw6_on)
            inet_send(w, src_addr, &tx->to, d, tx->len);
        else if (sim_nat_send(&s->fw6, w->clock.now, src_addr, &tx->to, &src, &dst) == SIM_NAT_OUT)
            inet_send(w, &src, &dst, d, tx->len);
        return;
    }
    if (s->type == SIM_SITE_PUBLIC) {
        inet_send(w, src_addr, &tx->to, d, tx->len);
        return;
    }
    nk_addr src, dst;
    if (sim_nat_send(&s->nat, w->clock.now, src_addr, &tx->to, &src, &dst) == SIM_NAT_OUT &&
        !site_drops(w, s))
        inet_send(w, &src, &dst, d, tx->len); /* else UDP blocked, or to itself (no hairpinning) */
}

/* The address is this host's main socket or one of its open extra sockets. */
static int host_owns(const sim_agent_host *h, const nk_addr *a)
{
    if (nk_addr_equal(&h->addr, a) || nk_addr_equal(&h->addr6, a))
        return 1;
    for (size_t i = 0; i < h->nextra; i++)
        if (!h->extra_closed[i] && nk_addr_equal(&h->extra[i], a))
            return 1;
    return 0;
}

static void to_host(sim_agents *w, const sim_pkt *k)
{
    for (int j = 0; k->to.family == NK_AF_INET6 && j < 2; j++) {
        sim_agent_host *h = &w->hosts[j];
        sim_site *s = &w->sites[h->site];
        nk_addr internal;
        if (!nk_addr_equal(&h->addr6, &k->to))
            continue;
        if (!s->fw6_on || sim_nat_receive(&s->fw6, w->clock.now, &k->from, &k->to, &internal))
            enqueue(w, w->clock.now, ST_HOST, j, 0, &k->from, &k->to, k->data, k->len);
        return;
    }
    for (int j = 0; j < 2; j++) {
        sim_agent_host *h = &w->hosts[j];
        sim_site *s = &w->sites[h->site];
        if (s->type == SIM_SITE_PUBLIC && nk_addr_equal(&h->addr, &k->to)) {
            enqueue(w, w->clock.now, ST_HOST, j, 0, &k->from, &k->to, k->data, k->len);
            return;
        }
    }
    for (int si = 0; si < 2; si++) {
        sim_site *s = &w->sites[si];
        nk_addr internal;
        if (s->type == SIM_SITE_PUBLIC || !nk_addr_equal_ip(&s->nat.pub, &k->to))
            continue;
        if (site_drops(w, s))
            return;
        if (!sim_nat_receive(&s->nat, w->clock.now, &k->from, &k->to, &internal))
            return;
        for (int j = 0; j < 2; j++)
            if (w->hosts[j].site == si && host_owns(&w->hosts[j], &internal))
                enqueue(w, w->clock.now, ST_HOST, j, 0, &k->from, &internal, k->data, k->len);
        return;
    }
}

static void server_out(sim_agents *w, const nk_transmit *tx, const nk_addr *dflt)
{
    inet_send(w, tx->from.family != NK_AF_NONE ? &tx->from : dflt, &tx->to, w->out, tx->len);
}

static void deliver_internet(sim_agents *w, const sim_pkt *k)
{
    nk_transmit tx;
    for (int i = 0; i < 2; i++) {
        if (!nk_addr_equal_ip(&k->to, &w->stun_addr[i]))
            continue;
        if (i != w->stun_down &&
            (nk_addr_equal(&k->to, &w->stun_addr[i]) || (i == 0 && w->stun0_alt_port != 0 && k->to.port == w->stun0_alt_port)) &&
            nk_stun_server_handle(w->stun[i], NULL, &k->to, &k->from, NK_TRANSPORT_UDP, k->data, k->len, &tx,
                                  w->out, sizeof(w->out)) == 0)
            server_out(w, &tx, &k->to);
        return;
    }
    if (w->turn != NULL && nk_addr_equal_ip(&k->to, &w->turn_addr)) {
        int rc = k->to.port == w->turn_addr.port
                     ? nk_turn_server_handle_client(w->turn, w->clock.now, NK_TRANSPORT_UDP, &k->from, &k->to, k->data,
                                                    k->len, &tx, w->out, sizeof(w->out))
                     : nk_turn_server_handle_relay(w->turn, w->clock.now, &k->to, &k->from, k->data, k->len, &tx, w->out,
                                                   sizeof(w->out));
        if (rc == 1)
            server_out(w, &tx, &k->to);
        return;
    }
    to_host(w, k);
}

/* ---- the agents ------------------------------------------------------------------------- */

static int first_direct(const sim_agent_host *h)
{
    for (size_t i = 0; i < h->npath; i++)
        if (h->path_kind[i] == NK_PATH_DIRECT)
            return 0;
    return 1;
}

/* The driver's part of birthday probing: n more sockets on the host's IP, reported at once. */
static void open_extra(sim_agents *w, int hi, size_t n)
{
    sim_agent_host *h = &w->hosts[hi];
    check(w, h->nextra == 0, "a second birthday attempt"); /* one attempt per agent */
    check(w, n > 0 && n <= SIM_AGENTS_MAXEXTRA, "extra sockets asked: none or too many");
    for (size_t i = 0; i < n; i++) {
        h->extra[i] = h->addr;
        h->extra[i].port = (uint16_t)(20000 + i);
    }
    h->nextra = h->extra_open = h->extra_asked = n;
    h->bd_opened_at = w->clock.now;
    check(w, nk_agent_add_sockets(h->ag, w->clock.now, h->extra, n) == 0, "nk_agent_add_sockets failed");
}

static void record_event(sim_agents *w, int hi, const nk_agent_event *ev)
{
    sim_agent_host *h = &w->hosts[hi];
    switch (ev->type) {
    case NK_AGENT_EV_OPEN_SOCKETS: open_extra(w, hi, ev->nsockets); break;
    case NK_AGENT_EV_CLOSE_SOCKETS:
        for (size_t i = 0; i < h->nextra; i++)
            if (!h->extra_closed[i] && !nk_addr_equal(&h->extra[i], &ev->keep)) {
                h->extra_closed[i] = 1;
                h->extra_open--;
            }
        break;
    case NK_AGENT_EV_PATH:
        check(w, h->npath < SIM_AGENTS_MAXPATHEV, "too many path events");
        if (ev->path.kind == NK_PATH_DIRECT && first_direct(h)) {
            nk_agent_stats_t st;
            nk_agent_stats(h->ag, &st);
            h->bd_probes_at_direct = st.birthday_probes;
        }
        h->path_at[h->npath] = w->clock.now;
        h->path_kind[h->npath++] = ev->path.kind;
        break;
    case NK_AGENT_EV_DATA:
        check(w, ev->len > 0 && ev->data[0] == (uint8_t)('a' + (1 - hi)), "data that the peer did not send");
        h->data_rx++;
        h->last_data_at = w->clock.now;
        break;
    case NK_AGENT_EV_FAILED: h->failed = 1; break;
    case NK_AGENT_EV_CANDIDATE:
        if (!is_private(&ev->path.local))
            h->punchable = 1;
        if (ev->path.kind == NK_PATH_TURN)
            h->relayed = 1;
        break;
    default: break;
    }
}

void sim_agents_pump(sim_agents *w, int hi)
{
    uint8_t buf[SIM_AGENTS_PKT_MAX];
    nk_transmit tx;
    uint8_t type;
    size_t len;
    nk_agent_event ev;
    nk_agent *ag = w->hosts[hi].ag;
    for (int guard = 0; guard < 10000; guard++) {
        int moved = 0;
        if (nk_agent_poll_event(ag, &ev) == 0) {
            record_event(w, hi, &ev);
            moved = 1;
        }
        nk_turn_client *tc = w->hosts[hi].shared;
        if (tc != NULL && nk_turn_client_poll_transmit(tc, w->clock.now, &tx, buf, sizeof(buf)) == 0) {
            sim_agents_host_send(w, hi, &tx, buf);
            moved = 1;
        }
        if (nk_agent_poll_transmit(ag, w->clock.now, &tx, buf, sizeof(buf)) == 0) {
            check(w, tx.len <= sizeof(buf), "a transmit longer than its buffer");
            sim_agents_host_send(w, hi, &tx, buf);
            moved = 1;
        }
        if (nk_agent_poll_signal(ag, &type, buf, sizeof(buf), &len) == 0) {
            if (w->hub_up)
                enqueue(w, w->clock.now + SIM_AGENTS_HUB_MS, ST_HUB, 1 - hi,
                        type | (w->hosts[hi].punchable ? SIM_AGENTS_HUB_MARK : 0), NULL, NULL, buf, len);
            moved = 1;
        }
        if (!moved)
            return;
    }
    check(w, 0, "agent output never ends");
}

void sim_agents_start(sim_agents *w, int hi, int controlling)
{
    sim_agent_host *h = &w->hosts[hi];
    nk_turn_client_config tc = {.server = w->turn_addr, .transport = NK_TRANSPORT_UDP, .username = "u",
                                .password = "p"};
    nk_addr srflx, hosts[2];
    size_t nhosts = 0;
    if (h->addr6.family != NK_AF_NONE && w->v6_first)
        hosts[nhosts++] = h->addr6;
    if (h->addr.family != NK_AF_NONE)
        hosts[nhosts++] = h->addr;
    if (h->addr6.family != NK_AF_NONE && !w->v6_first)
        hosts[nhosts++] = h->addr6;
    nk_agent_config cfg = {
        .identity = &h->id,
        .peer = w->hosts[1 - hi].id.id,
        .controlling = controlling,
        .host = hosts,
        .nhost = nhosts,
        .stun = w->stun_addr,
        .nstun = 2,
        .turn = w->use_turn && !w->shared_turn ? &tc : NULL,
        .keepalive_ms = w->keepalive_ms,
        .direct_retry_ms = w->retry_ms,
        .random = sim_random,
        .random_ctx = &h->rnd,
    };
    const sim_site *s = &w->sites[h->site];
    if (w->presrflx && s->type != SIM_SITE_PUBLIC && s->type != SIM_SITE_BLOCKED && h->addr.family == NK_AF_INET) {
        srflx = s->nat.pub;
        srflx.port = h->addr.port; /* cone NATs here preserve ports */
        cfg.srflx = &srflx;
        cfg.nsrflx = 1;
        cfg.nstun = 0;
    }
    if (w->use_turn && w->shared_turn) {
        tc.random = sim_random;
        tc.random_ctx = &w->srv_rnd;
        check(w, nk_turn_client_new(&h->shared, &tc) == 0, "nk_turn_client_new failed");
        check(w, nk_turn_client_allocate(h->shared, w->clock.now) == 0, "nk_turn_client_allocate failed");
        cfg.turn_shared = h->shared;
    }
    check(w, nk_agent_new(&h->ag, &cfg, w->clock.now) == 0, "nk_agent_new failed");
    nk_agent_set_hub_rtt(h->ag, SIM_AGENTS_HUB_MS);
    check(w, nk_agent_start(h->ag, w->clock.now) == 0, "nk_agent_start failed");
    h->started = w->clock.now;
    sim_agents_pump(w, hi);
}

/* The driver's part in shared mode: the server's datagrams go to its TURN client, and each
 * relayed agent frame to the agent nk_agent_peek names. */
static void shared_input(sim_agents *w, int hi, const sim_pkt *k)
{
    sim_agent_host *h = &w->hosts[hi];
    nk_turn_event ev;
    nk_peer_id sender;
    nk_turn_client_handle_input(h->shared, w->clock.now, &k->from, k->data, k->len);
    while (nk_turn_client_poll_event(h->shared, &ev) == 0) {
        if (ev.type != NK_TURN_EV_DATA || nk_agent_peek(ev.data, ev.len, &sender) != 0)
            continue;
        check(w, nk_peer_id_equal(&sender, &w->hosts[1 - hi].id.id), "a relayed frame from another peer");
        nk_agent_handle_relayed(h->ag, w->clock.now, &ev.peer, ev.data, ev.len);
    }
}

static void deliver(sim_agents *w, const sim_pkt *k)
{
    sim_agent_host *h = k->dst >= 0 ? &w->hosts[k->dst] : NULL;
    switch ((stage)k->tag) {
    case ST_INTERNET: deliver_internet(w, k); return;
    case ST_HOST:
        if (h->ag == NULL)
            return;
        if (h->shared != NULL && nk_addr_equal(&k->from, &w->turn_addr))
            shared_input(w, k->dst, k);
        else if (host_owns(h, &k->to))
            nk_agent_handle_datagram_on(h->ag, w->clock.now, &k->to, &k->from, k->data, k->len);
        break;
    case ST_HUB:
        if (h->ag == NULL) /* the responder's agent is made when the request arrives, as a node does */
            sim_agents_start(w, k->dst, 0);
        if ((k->aux & SIM_AGENTS_HUB_MARK) && h->punch_sig_at < 0)
            h->punch_sig_at = w->clock.now;
        nk_agent_handle_signal(h->ag, w->clock.now, (uint8_t)k->aux, k->data, k->len);
        break;
    }
    sim_agents_pump(w, k->dst);
}

static int64_t agents_deadline(const sim_agents *w)
{
    int64_t d = w->turn != NULL ? nk_turn_server_next_deadline(w->turn) : INT64_MAX;
    for (int i = 0; i < 2; i++)
        if (w->hosts[i].ag != NULL) {
            int64_t a = nk_agent_next_deadline(w->hosts[i].ag);
            d = a < d ? a : d;
            if (w->hosts[i].shared != NULL) {
                a = nk_turn_client_next_deadline(w->hosts[i].shared);
                d = a < d ? a : d;
            }
        }
    return d;
}

int sim_agents_step(sim_agents *w, int64_t until)
{
    sim_clock_offer(&w->clock, sim_queue_next(&w->net));
    sim_clock_offer(&w->clock, agents_deadline(w));
    if (!sim_clock_advance(&w->clock, until))
        return 0;
    const sim_pkt *k = sim_queue_pop(&w->net, w->clock.now);
    if (k != NULL) {
        deliver(w, k);
        return 1;
    }
    if (w->turn != NULL)
        nk_turn_server_handle_timeout(w->turn, w->clock.now);
    for (int i = 0; i < 2; i++) {
        sim_agent_host *h = &w->hosts[i];
        if (h->shared != NULL && nk_turn_client_next_deadline(h->shared) <= w->clock.now) {
            nk_turn_client_handle_timeout(h->shared, w->clock.now);
            sim_agents_pump(w, i);
        }
        if (h->ag != NULL && nk_agent_next_deadline(h->ag) <= w->clock.now) {
            nk_agent_handle_timeout(h->ag, w->clock.now);
            sim_agents_pump(w, i);
        }
    }
    return 1;
}

void sim_agents_run_until(sim_agents *w, int64_t until)
{
    for (int guard = 0; guard < 2000000; guard++)
        if (!sim_agents_step(w, until)) {
            w->clock.now = until;
            return;
        }
    check(w, 0, "simulation did not settle");
}

void sim_agents_send_data(sim_agents *w, int hi, int n)
{
    uint8_t msg[200];
    memset(msg, 'a' + hi, sizeof(msg));
    for (int i = 0; i < n; i++) {
        int rc = nk_agent_send(w->hosts[hi].ag, w->clock.now, 0, msg, sizeof(msg));
        check(w, rc == 0 || rc == NK_ERR_AGAIN, "nk_agent_send failed");
    }
    sim_agents_pump(w, hi);
}

nk_path_kind sim_agents_selected(const sim_agents *w, int hi)
{
    nk_path_info p;
    nk_agent_selected(w->hosts[hi].ag, &p);
    return p.kind;
}

int64_t sim_agents_first_path(const sim_agents *w, int hi, nk_path_kind kind)
{
    const sim_agent_host *h = &w->hosts[hi];
    for (size_t i = 0; i < h->npath; i++)
        if (h->path_kind[i] == kind)
            return h->path_at[i];
    return -1;
}

/* ---- setting up ----------------------------------------------------------------------------- */

static int parse(sim_agents *w, nk_addr *a, const char *text)
{
    int rc = nk_addr_parse(a, text);
    check(w, rc == 0, "an address that does not parse");
    return rc;
}

static void site_init(sim_agents *w, sim_site *s, sim_site_type type, const char *pub)
{
    nk_addr p;
    parse(w, &p, pub);
    s->type = type;
    sim_nat_init(&s->nat, &p, &w->rng);
    switch (type) {
    case SIM_SITE_RESTRICTED: s->nat.filtering = NK_NAT_ADDRESS_DEPENDENT; break;
    case SIM_SITE_PORT: s->nat.filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT; break;
    case SIM_SITE_SYMMETRIC:
        s->nat.mapping = s->nat.filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
        s->nat.ports = NK_PORTS_RANDOM;
        break;
    case SIM_SITE_BLOCKED: s->nat.blocked = 1; break;
    default: break;
    }
}

static int make_identity(nk_identity *id, uint8_t seed_byte)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof(seed));
    return crypto_sign_seed_keypair(id->id.key, id->secret, seed);
}

sim_agents *sim_agents_new(const sim_agents_config *cfg)
{
    sim_agents *w = calloc(1, sizeof(*w));
    if (w == NULL || sodium_init() < 0) {
        free(w);
        return NULL;
    }
    sim_site_type ta = cfg->type[0], tb = cfg->same_site ? cfg->type[0] : cfg->type[1];
    w->fail = cfg->fail;
    sim_clock_init(&w->clock, 1000);
    sim_rng_seed(&w->rng, cfg->seed);
    sim_rng_seed(&w->srv_rnd, cfg->srv_seed);
    sim_queue_init(&w->net, &w->rng);
    w->net.link.delay_ms = SIM_AGENTS_INET_MS;
    w->hub_up = 1;
    w->use_turn = cfg->use_turn;
    w->stun_down = -1;
    int rc = parse(w, &w->stun_addr[0], "198.51.100.1:3478") | parse(w, &w->stun_addr[1], "198.51.100.3:3478") |
             parse(w, &w->turn_addr, "198.51.100.2:3478");
    for (int i = 0; i < 2; i++)
        rc |= nk_stun_server_new(&w->stun[i], &w->stun_addr[i], NULL, 0);
    if (cfg->use_turn) {
        nk_turn_server_config tcfg;
        nk_turn_server_config_init(&tcfg);
        tcfg.realm = "natkit.test";
        tcfg.relay_ip = w->turn_addr;
        nk_turn_server_ops ops = {.relay_open = relay_open, .relay_close = relay_close, .random = server_random,
                                  .ctx = w};
        rc |= nk_turn_server_new(&w->turn, &tcfg, &ops);
        rc |= w->turn != NULL ? nk_turn_server_add_user(w->turn, "u", "p") : 0;
    }
    site_init(w, &w->sites[0], ta, "203.0.113.1:0");
    site_init(w, &w->sites[1], tb, "203.0.113.2:0");
    w->hosts[0].site = 0;
    w->hosts[1].site = cfg->same_site ? 0 : 1;
    rc |= parse(w, &w->hosts[0].addr, ta == SIM_SITE_PUBLIC ? "203.0.113.11:5000" : "10.0.1.2:5000");
    if (cfg->same_site)
        rc |= parse(w, &w->hosts[1].addr, ta == SIM_SITE_PUBLIC ? "203.0.113.12:5000" : "10.0.1.3:5000");
    else
        rc |= parse(w, &w->hosts[1].addr, tb == SIM_SITE_PUBLIC ? "203.0.113.12:5000" : "10.0.2.2:5000");
    for (int i = 0; i < 2; i++) {
        rc |= make_identity(&w->hosts[i].id, (uint8_t)(i + 1));
        w->hosts[i].punch_sig_at = -1;
        w->hosts[i].bd_opened_at = -1;
        sim_rng_seed(&w->hosts[i].rnd, cfg->host_seed[i]);
    }
    if (rc != 0) {
        sim_agents_free(w);
        return NULL;
    }
    return w;
}

void sim_agents_give_v6(sim_agents *w, int hi, const char *a6, int v6only)
{
    sim_agent_host *h = &w->hosts[hi];
    sim_site *s = &w->sites[h->site];
    nk_addr none;
    parse(w, &none, "[::]:0");
    parse(w, &h->addr6, a6);
    if (v6only)
        memset(&h->addr, 0, sizeof(h->addr));
    if (!s->fw6_on) {
        sim_nat_init(&s->fw6, &none, &w->rng);
        s->fw6.firewall = 1;
        s->fw6.filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
        s->fw6_on = 1;
    }
}

void sim_agents_free(sim_agents *w)
{
    if (w == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        nk_agent_free(w->hosts[i].ag);
        nk_turn_client_free(w->hosts[i].shared);
        nk_stun_server_free(w->stun[i]);
    }
    nk_turn_server_free(w->turn);
    sim_queue_free(&w->net);
    for (int i = 0; i < 2; i++) {
        sim_nat_free(&w->sites[i].nat);
        sim_nat_free(&w->sites[i].fw6);
    }
    free(w);
}
