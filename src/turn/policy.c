/*
 * natkit: the TURN server's peer address policy. Secure by default: peers in
 * private, loopback, link-local, multicast and reserved ranges are refused
 * unless the operator opens them; IPv6 addresses that carry an IPv4 address
 * are judged as that IPv4 address too, so ::ffff:127.0.0.1, 64:ff9b::7f00:1,
 * 2002:7f00:1:: and Teredo forms cannot reach what 127.0.0.1 cannot.
 */
#include <stdlib.h>
#include <string.h>

#include "natkit/addr.h"
#include "server_internal.h"

static const char *const builtin_denied[] = {
    "0.0.0.0/8",       "10.0.0.0/8",   "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12",   "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/128",
    "::1/128",         "fc00::/7",     "fe80::/10",     "fec0::/10",   "ff00::/8",
    /* local-use NAT64 (RFC 8215): its prefix length is the operator's, so where the IPv4 sits is
     * not known; refused as a whole unless --allow-peer opens it (the /96 reading is still checked) */
    "64:ff9b:1::/48",
};

int nk__cidr_parse(nk__cidr *c, const char *text)
{
    char ip[64];
    const char *slash = strchr(text, '/');
    size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
    nk_addr a;
    if (n == 0 || n >= sizeof(ip))
        return NK_ERR_ADDRESS;
    memcpy(ip, text, n);
    ip[n] = '\0';
    if (nk_addr_parse_ip(&a, ip) != 0)
        return NK_ERR_ADDRESS;
    unsigned max = a.family == NK_AF_INET ? 32 : 128, prefix = max;
    if (slash != NULL) {
        char *end;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || v > max)
            return NK_ERR_ADDRESS;
        prefix = (unsigned)v;
    }
    memset(c, 0, sizeof(*c));
    c->family = a.family;
    c->prefix = (uint8_t)prefix;
    memcpy(c->ip, a.ip, nk_addr_ip_len(&a));
    return 0;
}

int nk__cidr_match(const nk__cidr *c, const nk_addr *a)
{
    if (c->family != a->family)
        return 0;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->ip, a->ip, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->ip[full] & mask) == (a->ip[full] & mask);
}

int nk__cidr_list_add(nk__cidr_list *l, const char *text)
{
    nk__cidr c;
    if (nk__cidr_parse(&c, text) != 0)
        return NK_ERR_ADDRESS;
    nk__cidr *v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (v == NULL)
        return NK_ERR_NOMEM;
    v[l->n++] = c;
    l->v = v;
    return 0;
}

static int list_match(const nk__cidr_list *l, const nk_addr *a)
{
    for (size_t i = 0; i < l->n; i++)
        if (nk__cidr_match(&l->v[i], a))
            return 1;
    return 0;
}

static void v4_from(nk_addr *out, const uint8_t *p, int invert)
{
    memset(out, 0, sizeof(*out));
    out->family = NK_AF_INET;
    for (int i = 0; i < 4; i++)
        out->ip[i] = invert ? (uint8_t)~p[i] : p[i];
}

static int prefix_is(const uint8_t *ip, const uint8_t *pfx, size_t n)
{
    return memcmp(ip, pfx, n) == 0;
}

size_t nk__turn_embedded_ipv4(const nk_addr *a, nk_addr out[2])
{
    static const uint8_t zero80[10] = {0};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t nat64_local[6] = {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
    const uint8_t *ip = a->ip;
    if (a->family != NK_AF_INET6)
        return 0;
    /* ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (translated) */
    if (prefix_is(ip, zero80, 10) &&
        ((ip[10] == 0xff && ip[11] == 0xff) || (ip[10] == 0 && ip[11] == 0)) &&
        !(ip[10] == 0 && ip[12] == 0 && ip[13] == 0 && ip[14] == 0 && ip[15] <= 1)) {
        v4_from(&out[0], ip + 12, 0);
        return 1;
    }
    if (prefix_is(ip, zero80, 8) && ip[8] == 0xff && ip[9] == 0xff && ip[10] == 0 && ip[11] == 0) {
        v4_from(&out[0], ip + 12, 0);
        return 1;
    }
    if (prefix_is(ip, nat64, 12) || prefix_is(ip, nat64_local, 6)) {
        v4_from(&out[0], ip + 12, 0);
        return 1;
    }
    if (ip[0] == 0x20 && ip[1] == 0x02) { /* 6to4 2002:AABB:CCDD::/48 */
        v4_from(&out[0], ip + 2, 0);
        return 1;
    }
    if (ip[0] == 0x20 && ip[1] == 0x01 && ip[2] == 0 && ip[3] == 0) { /* Teredo */
        v4_from(&out[0], ip + 4, 0);  /* server */
        v4_from(&out[1], ip + 12, 1); /* client, obfuscated */
        return 2;
    }
    return 0;
}

int nk__turn_policy_init(nk__turn_policy *p)
{
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < sizeof(builtin_denied) / sizeof(builtin_denied[0]); i++)
        if (nk__cidr_list_add(&p->builtin, builtin_denied[i]) != 0)
            return NK_ERR_NOMEM;
    return 0;
}

void nk__turn_policy_free(nk__turn_policy *p)
{
    free(p->builtin.v);
    free(p->allow.v);
    free(p->deny.v);
    memset(p, 0, sizeof(*p));
}

/* One address (the peer or an IPv4 it carries) passes when not denied and either opened or not in a default range. */
static int one_allowed(const nk__turn_policy *p, const nk_addr *a)
{
    if (list_match(&p->deny, a))
        return 0;
    return list_match(&p->allow, a) || !list_match(&p->builtin, a);
}

int nk__turn_policy_allows(const nk__turn_policy *p, const nk_addr *peer)
{
    nk_addr v4[2];
    if (peer->family != NK_AF_INET && peer->family != NK_AF_INET6)
        return 0;
    if (!one_allowed(p, peer))
        return 0;
    size_t n = nk__turn_embedded_ipv4(peer, v4);
    for (size_t i = 0; i < n; i++)
        if (!one_allowed(p, &v4[i]))
            return 0;
    return 1;
}
