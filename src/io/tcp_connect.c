/*
 * natkit: TCP connections from a chosen local port, for TCP simultaneous open
 * (both sides connect, nobody listens). See docs/internals/tcp-upgrade.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "natkit/tcp.h"

/* A non-blocking TCP socket bound to local with SO_REUSEADDR and SO_REUSEPORT, or < 0. */
static int bound_socket(const nk_addr *local, int *fd_out)
{
    struct sockaddr_storage la;
    unsigned llen;
    if (nk_addr_to_sockaddr(local, (struct sockaddr *)&la, &llen) != 0)
        return NK_ERR_INVAL;
    int fd = socket(la.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NK_ERR_SYSTEM;
    int one = 1;
    /* Each attempt is a new socket on the same port, next to the listener and older attempts. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&la, llen) != 0) {
        int rc = errno == EADDRINUSE ? NK_ERR_ADDRESS : NK_ERR_SYSTEM;
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int nk_tcp_listen_from(const nk_addr *local, int *fd_out)
{
    int fd;
    if (local == NULL || fd_out == NULL)
        return NK_ERR_INVAL;
    int rc = bound_socket(local, &fd);
    if (rc != 0)
        return rc;
    if (listen(fd, 4) != 0) {
        close(fd);
        return NK_ERR_SYSTEM;
    }
    *fd_out = fd;
    return 0;
}

int nk_tcp_connect_from(const nk_addr *local, const nk_addr *remote, int *fd_out)
{
    struct sockaddr_storage ra;
    unsigned rlen;
    int fd;
    if (local == NULL || remote == NULL || fd_out == NULL || remote->port == 0 || local->family != remote->family ||
        nk_addr_to_sockaddr(remote, (struct sockaddr *)&ra, &rlen) != 0)
        return NK_ERR_INVAL;
    int rc = bound_socket(local, &fd);
    if (rc != 0)
        return rc;
    if (connect(fd, (struct sockaddr *)&ra, rlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return NK_ERR_SYSTEM;
    }
    *fd_out = fd;
    return 0;
}

/* Where the handshake of fd stands once SO_ERROR had nothing to say. SO_ERROR is also 0 while
 * the connect is still in progress, and after a failure whose error was read already; getpeername
 * is not enough either (it succeeds in SYN_RECV, the middle of a simultaneous open). */
static int handshake_state(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return errno == EBADF || errno == ENOTSOCK ? NK_ERR_INVAL : NK_ERR_SYSTEM;
    switch (ti.tcpi_state) {
    case TCP_SYN_SENT:
    case TCP_SYN_RECV:
        return NK_ERR_AGAIN;
    case TCP_CLOSE:
        return NK_ERR_CLOSED; /* failed (its error already taken) or never connected */
    case TCP_LISTEN:
        return NK_ERR_INVAL;
    default:
        return 0; /* established, or past it: a peer that closed since is for the reader to see */
    }
}

int nk_tcp_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (fd < 0)
        return NK_ERR_INVAL;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return errno == EBADF || errno == ENOTSOCK ? NK_ERR_INVAL : NK_ERR_SYSTEM;
    if (err == 0)
        return handshake_state(fd);
    if (err == EINPROGRESS || err == EALREADY)
        return NK_ERR_AGAIN;
    return err == ECONNREFUSED || err == ECONNRESET ? NK_ERR_CLOSED : err == ETIMEDOUT ? NK_ERR_TIMEOUT : NK_ERR_SYSTEM;
}
