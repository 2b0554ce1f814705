/* natkit: transport addresses and their text and sockaddr forms. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "natkit/addr.h"
#include "addr_text.h"

int nk__addr_parse_port(const char *s, uint16_t *port)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int nk_addr_parse_ip(nk_addr *out, const char *text)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, out->ip) == 1) {
        out->family = NK_AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->ip) == 1) {
        out->family = NK_AF_INET6;
        return 0;
    }
    return NK_ERR_ADDRESS;
}

int nk__addr_split_host_port(const char *text, char *host, size_t cap, const char **port)
{
    const char *h = text, *hend, *colon;
    if (text[0] == '[') {
        h = text + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':')
            return -1;
        colon = hend + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return -1; /* bare IPv6 needs brackets */
        hend = colon;
    }
    size_t n = (size_t)(hend - h);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

int nk_addr_parse(nk_addr *out, const char *text)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    uint16_t p;
    memset(out, 0, sizeof(*out));
    if (nk__addr_split_host_port(text, host, sizeof(host), &port) != 0 || nk__addr_parse_port(port, &p) != 0 ||
        nk_addr_parse_ip(out, host) != 0)
        return NK_ERR_ADDRESS;
    out->port = p;
    return 0;
}

char *nk_addr_format_ip(const nk_addr *a, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (a->family == NK_AF_INET)
        inet_ntop(AF_INET, a->ip, buf, (socklen_t)cap);
    else if (a->family == NK_AF_INET6)
        inet_ntop(AF_INET6, a->ip, buf, (socklen_t)cap);
    else
        snprintf(buf, cap, "(none)");
    return buf;
}

char *nk_addr_format(const nk_addr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    nk_addr_format_ip(a, ip, sizeof(ip));
    if (a->family == NK_AF_INET6)
        snprintf(buf, cap, "[%s]:%u", ip, a->port);
    else
        snprintf(buf, cap, "%s:%u", ip, a->port);
    return buf;
}

size_t nk_addr_ip_len(const nk_addr *a)
{
    return a->family == NK_AF_INET ? 4 : a->family == NK_AF_INET6 ? 16 : 0;
}

int nk_addr_equal_ip(const nk_addr *a, const nk_addr *b)
{
    return a->family == b->family && memcmp(a->ip, b->ip, nk_addr_ip_len(a)) == 0;
}

int nk_addr_equal(const nk_addr *a, const nk_addr *b)
{
    return a->port == b->port && nk_addr_equal_ip(a, b);
}

int nk_addr_to_sockaddr(const nk_addr *a, struct sockaddr *sa, unsigned *salen)
{
    if (a->family == NK_AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)sa;
        memset(sin, 0, sizeof(*sin));
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        memcpy(&sin->sin_addr, a->ip, 4);
        *salen = sizeof(*sin);
        return 0;
    }
    if (a->family == NK_AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
        memset(sin6, 0, sizeof(*sin6));
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        memcpy(&sin6->sin6_addr, a->ip, 16);
        *salen = sizeof(*sin6);
        return 0;
    }
    return NK_ERR_ADDRESS;
}

int nk_addr_from_sockaddr(nk_addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        a->family = NK_AF_INET;
        a->port = ntohs(sin->sin_port);
        memcpy(a->ip, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        a->family = NK_AF_INET6;
        a->port = ntohs(sin6->sin6_port);
        memcpy(a->ip, &sin6->sin6_addr, 16);
        return 0;
    }
    return NK_ERR_ADDRESS;
}

void nk_addr_wire_put(uint8_t out[NK_ADDR_WIRE_SIZE], const nk_addr *a)
{
    memset(out, 0, NK_ADDR_WIRE_SIZE);
    if (a == NULL || (a->family != NK_AF_NONE && a->family != NK_AF_INET && a->family != NK_AF_INET6))
        return;
    out[0] = a->family;
    out[1] = (uint8_t)(a->port >> 8);
    out[2] = (uint8_t)a->port;
    memcpy(out + 3, a->ip, nk_addr_ip_len(a));
}

int nk_addr_wire_get(nk_addr *a, const uint8_t in[NK_ADDR_WIRE_SIZE])
{
    memset(a, 0, sizeof(*a));
    if (in[0] != NK_AF_NONE && in[0] != NK_AF_INET && in[0] != NK_AF_INET6)
        return NK_ERR_MALFORMED;
    a->family = in[0];
    a->port = (uint16_t)(in[1] << 8 | in[2]);
    memcpy(a->ip, in + 3, nk_addr_ip_len(a));
    return 0;
}
