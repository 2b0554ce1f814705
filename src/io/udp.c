/* natkit: nk_udp_* (natkit/udp.h), UDP socket helpers over nk_addr. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errctx.h"
#include "natkit/udp.h"
#include "sockets.h"

int nk_udp_open(const nk_addr *bind_addr, int reuse_port)
{
    struct sockaddr_storage ss;
    unsigned sl;
    int one = 1;

    nk__errctx_clear();
    if (nk_addr_to_sockaddr(bind_addr, (struct sockaddr *)&ss, &sl) != 0)
        return NK_ERR_ADDRESS;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        nk__errctx_set(errno, "open a UDP socket");
        return NK_ERR_SYSTEM;
    }
    if (ss.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    } else {
        setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    }
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto Fail;
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0)
        goto Fail;
    return fd;
Fail:
    return nk__bind_failed(fd, "bind", bind_addr);
}

int nk_udp_local(int fd, nk_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return NK_ERR_SYSTEM;
    return nk_addr_from_sockaddr(out, (struct sockaddr *)&ss);
}

int nk_udp_send(int fd, const nk_addr *to, const uint8_t *p, size_t n)
{
    struct sockaddr_storage ss;
    unsigned sl;
    if (nk_addr_to_sockaddr(to, (struct sockaddr *)&ss, &sl) != 0)
        return NK_ERR_ADDRESS;
    if (sendto(fd, p, n, 0, (struct sockaddr *)&ss, sl) < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? NK_ERR_AGAIN : NK_ERR_SYSTEM;
    return 0;
}

static void local_from_cmsg(struct msghdr *mh, int fd, nk_addr *local)
{
    nk_udp_local(fd, local);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            memcpy(local->ip, &pi.ipi_addr, 4);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            memcpy(local->ip, &pi.ipi6_addr, 16);
        }
    }
}

int nk_udp_recv(int fd, uint8_t *buf, size_t cap, nk_addr *from, nk_addr *local)
{
    struct sockaddr_storage ss;
    union {
        struct cmsghdr align;
        uint8_t buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_name = &ss;
    mh.msg_namelen = sizeof(ss);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof(control.buf);

    ssize_t n = recvmsg(fd, &mh, 0);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? NK_ERR_AGAIN : NK_ERR_SYSTEM;
    if (nk_addr_from_sockaddr(from, (struct sockaddr *)&ss) != 0)
        return NK_ERR_ADDRESS;
    if (local != NULL)
        local_from_cmsg(&mh, fd, local);
    return (int)n;
}
