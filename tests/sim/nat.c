/*
 * The test world's NAT: RFC 4787 / RFC 5780 mapping and filtering
 * behaviour (endpoint-independent, address-dependent, address-and-port-
 * dependent), port allocation (preserving, sequential, random), hairpinning,
 * idle mapping timeout and reboot. One public IP, any number of hosts inside.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_nat_init(sim_nat *n, const nk_addr *pub, sim_rng *rng)
{
    memset(n, 0, sizeof(*n));
    n->mapping = NK_NAT_ENDPOINT_INDEPENDENT;
    n->filtering = NK_NAT_ENDPOINT_INDEPENDENT;
    n->ports = NK_PORTS_PRESERVING;
    n->pub = *pub;
    n->pub.port = 0;
    n->rng = rng;
    n->next_port = 40000;
}

void sim_nat_free(sim_nat *n)
{
    for (size_t i = 0; i < n->nmaps; i++)
        free(n->maps[i].peers);
    free(n->maps);
    n->maps = NULL;
    n->nmaps = n->cap = 0;
}

static int alive(const sim_nat *n, const sim_mapping *m, int64_t now)
{
    return m->used && (n->lifetime_ms == 0 || now - m->last <= n->lifetime_ms);
}

size_t sim_nat_count(const sim_nat *n, int64_t now)
{
    size_t c = 0;
    for (size_t i = 0; i < n->nmaps; i++)
        c += (size_t)alive(n, &n->maps[i], now);
    return c;
}

/* Whether m serves internal -> remote under the mapping behaviour. */
static int same_key(const sim_nat *n, const sim_mapping *m, const nk_addr *internal, const nk_addr *remote)
{
    if (!nk_addr_equal(&m->internal, internal))
        return 0;
    if (n->firewall)
        return 1; /* no translation: one entry per inside endpoint */
    switch (n->mapping) {
    case NK_NAT_ADDRESS_DEPENDENT: return nk_addr_equal_ip(&m->remote, remote);
    case NK_NAT_ADDRESS_AND_PORT_DEPENDENT: return nk_addr_equal(&m->remote, remote);
    default: return 1;
    }
}

static int port_used(const sim_nat *n, uint16_t port, int64_t now)
{
    for (size_t i = 0; i < n->nmaps; i++)
        if (n->maps[i].ext == port && alive(n, &n->maps[i], now))
            return 1;
    return 0;
}

static uint16_t allocate_port(sim_nat *n, uint16_t internal_port, int64_t now)
{
    uint16_t port;
    if (n->firewall)
        return internal_port;
    switch (n->ports) {
    case NK_PORTS_SEQUENTIAL:
        n->next_port = (uint16_t)(n->next_port + (n->delta ? n->delta : 1));
        return n->next_port;
    case NK_PORTS_RANDOM:
        do
            port = (uint16_t)(20000 + sim_rng_below(n->rng, 40000));
        while (port_used(n, port, now));
        return port;
    default:
        port = (uint16_t)(internal_port + 1000 * n->epoch);
        while (port_used(n, port, now))
            port++;
        return port;
    }
}

static sim_mapping *outbound(sim_nat *n, int64_t now, const nk_addr *internal, const nk_addr *remote)
{
    sim_mapping *m = NULL;
    for (size_t i = 0; i < n->nmaps; i++) {
        m = &n->maps[i];
        if (!m->used || !same_key(n, m, internal, remote))
            continue;
        if (alive(n, m, now))
            return m;
        m->used = 0; /* expired: forget it; the next one gets another port */
        n->epoch++;
        n->nexpired++;
    }
    m = NULL;
    for (size_t i = 0; i < n->nmaps && m == NULL; i++)
        if (!alive(n, &n->maps[i], now))
            m = &n->maps[i];
    if (m == NULL) {
        if (n->nmaps == n->cap) {
            n->cap = n->cap ? 2 * n->cap : 32;
            n->maps = realloc(n->maps, n->cap * sizeof(*n->maps));
            assert(n->maps != NULL);
        }
        m = &n->maps[n->nmaps++];
        memset(m, 0, sizeof(*m));
    }
    nk_addr *peers = m->peers; /* a reused slot keeps its table */
    size_t cap = m->cappeers;
    memset(m, 0, sizeof(*m));
    m->peers = peers;
    m->cappeers = cap;
    m->internal = *internal;
    m->remote = *remote;
    m->ext = allocate_port(n, internal->port, now);
    m->used = 1;
    m->last = now;
    n->nmapped++;
    return m;
}

static void remember(sim_mapping *m, const nk_addr *remote)
{
    for (size_t i = 0; i < m->npeers; i++)
        if (nk_addr_equal(&m->peers[i], remote))
            return;
    if (m->npeers == m->cappeers) {
        m->cappeers = m->cappeers ? 2 * m->cappeers : 8;
        m->peers = realloc(m->peers, m->cappeers * sizeof(*m->peers));
        assert(m->peers != NULL);
    }
    m->peers[m->npeers++] = *remote;
}

static int filter_allows(const sim_nat *n, const sim_mapping *m, const nk_addr *from)
{
    if (n->filtering == NK_NAT_ENDPOINT_INDEPENDENT)
        return 1;
    for (size_t i = 0; i < m->npeers; i++) {
        if (n->filtering == NK_NAT_ADDRESS_DEPENDENT && nk_addr_equal_ip(&m->peers[i], from))
            return 1;
        if (nk_addr_equal(&m->peers[i], from))
            return 1;
    }
    return 0;
}

static sim_mapping *find_port(sim_nat *n, int64_t now, const nk_addr *to)
{
    if (n->firewall) {
        for (size_t i = 0; i < n->nmaps; i++)
            if (nk_addr_equal(&n->maps[i].internal, to) && alive(n, &n->maps[i], now))
                return &n->maps[i];
        return NULL;
    }
    if (!nk_addr_equal_ip(to, &n->pub))
        return NULL;
    for (size_t i = 0; i < n->nmaps; i++)
        if (n->maps[i].ext == to->port && alive(n, &n->maps[i], now))
            return &n->maps[i];
    return NULL;
}

sim_verdict sim_nat_send(sim_nat *n, int64_t now, const nk_addr *internal, const nk_addr *remote, nk_addr *src,
                         nk_addr *dst)
{
    if (n->blocked)
        return SIM_NAT_DROP;
    sim_mapping *m = outbound(n, now, internal, remote);
    m->last = now;
    remember(m, remote);
    *src = n->pub;
    src->port = m->ext;
    *dst = *remote;
    if (n->firewall) {
        *src = *internal;
        return SIM_NAT_OUT;
    }
    if (!nk_addr_equal_ip(remote, &n->pub))
        return SIM_NAT_OUT;
    /* To its own public address: looped back inside (the filter is not asked), or dropped. */
    sim_mapping *h = n->hairpin ? find_port(n, now, remote) : NULL;
    if (h == NULL)
        return SIM_NAT_DROP;
    h->last = now;
    *dst = h->internal;
    return SIM_NAT_HAIRPIN;
}

int sim_nat_receive(sim_nat *n, int64_t now, const nk_addr *from, const nk_addr *to, nk_addr *internal)
{
    sim_mapping *m = find_port(n, now, to);
    if (m == NULL)
        return 0;
    if (!filter_allows(n, m, from)) {
        n->nfiltered++;
        return 0;
    }
    m->last = now;
    *internal = m->internal;
    return 1;
}

void sim_nat_reboot(sim_nat *n)
{
    for (size_t i = 0; i < n->nmaps; i++)
        n->maps[i].used = 0;
    n->epoch++;
}
