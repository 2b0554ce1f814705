/*
 * natkit: IP_PKTINFO / IPV6_PKTINFO for the STUN service's wildcard sockets,
 * so that an answer leaves from the address the request was sent to, not
 * from whatever address the route to the client would pick.
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "stun_service.h"

int nk__svc_pktinfo_enable(int fd, int family)
{
    int one = 1;
    if (family == NK_AF_INET)
        return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
}

int nk__svc_pktinfo_local(const struct msghdr *h, nk_addr *local)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            local->family = NK_AF_INET;
            memcpy(local->ip, &pi.ipi_addr, 4);
            return 0;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            local->family = NK_AF_INET6;
            memcpy(local->ip, &pi.ipi6_addr, 16);
            return 0;
        }
    }
    return -1;
}

size_t nk__svc_pktinfo_source(uint8_t *ctl, size_t cap, const nk_addr *local)
{
    struct msghdr h = {.msg_control = ctl, .msg_controllen = cap};
    memset(ctl, 0, cap);
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    if (local->family == NK_AF_INET && cap >= CMSG_SPACE(sizeof(struct in_pktinfo))) {
        struct in_pktinfo pi = {0};
        memcpy(&pi.ipi_spec_dst, local->ip, 4);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    if (local->family == NK_AF_INET6 && cap >= CMSG_SPACE(sizeof(struct in6_pktinfo))) {
        struct in6_pktinfo pi = {0};
        memcpy(&pi.ipi6_addr, local->ip, 16);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    return 0;
}
