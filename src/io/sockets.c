/* natkit: socket helpers shared by the drivers (sockets.h). */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "errctx.h"
#include "sockets.h"

int nk__listen_tcp(const nk_addr *a, int reuse_port, nk_addr *bound)
{
    struct sockaddr_storage ss;
    unsigned sl = sizeof(ss);
    socklen_t blen = sizeof(ss);
    int one = 1;
    if (nk_addr_to_sockaddr(a, (struct sockaddr *)&ss, &sl) != 0) {
        errno = EINVAL;
        return NK_ERR_ADDRESS;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NK_ERR_SYSTEM;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 1024) != 0 ||
        (bound != NULL && (getsockname(fd, (struct sockaddr *)&ss, &blen) != 0 ||
                           nk_addr_from_sockaddr(bound, (struct sockaddr *)&ss) != 0))) {
        return nk__bind_failed(fd, "bind TCP", a);
    }
    return fd;
}

int nk__bind_failed(int fd, const char *what, const nk_addr *a)
{
    int saved = errno;
    char text[NK_ADDR_STRLEN];
    nk__errctx_set(saved, "%s %s", what, nk_addr_format(a, text, sizeof(text)));
    close(fd);
    errno = saved;
    return NK_ERR_SYSTEM;
}

void nk__addr_unmap_v4(nk_addr *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a->family == NK_AF_INET6 && memcmp(a->ip, prefix, 12) == 0) {
        memmove(a->ip, a->ip + 12, 4);
        memset(a->ip + 4, 0, 12);
        a->family = NK_AF_INET;
    }
}
