/*
 * natkit: the blocking driver for nk_stun_client (UDP). The only place in
 * the STUN client that reads the clock or touches a socket.
 */
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "natkit/stun_client.h"
#include "natkit/udp.h"

typedef struct {
    int fd[2];          /* [0] IPv4, [1] IPv6; -1 when unused */
} sockets;

static int family_index(uint8_t family)
{
    return family == NK_AF_INET6 ? 1 : 0;
}

static int open_sockets(sockets *s, const nk_stun_client_config *cfg, const nk_addr *bind_addr)
{
    s->fd[0] = s->fd[1] = -1;
    for (size_t i = 0; i < cfg->nservers; i++) {
        int k = family_index(cfg->servers[i].family);
        if (s->fd[k] >= 0)
            continue;
        nk_addr any;
        memset(&any, 0, sizeof(any));
        any.family = cfg->servers[i].family;
        const nk_addr *b = &any;
        if (bind_addr != NULL && bind_addr->family != NK_AF_NONE) {
            if (bind_addr->family != any.family)
                continue; /* this server's family cannot be reached from the chosen local address */
            b = bind_addr;
        }
        s->fd[k] = nk_udp_open(b, 0);
        if (s->fd[k] < 0)
            return s->fd[k];
    }
    return s->fd[0] >= 0 || s->fd[1] >= 0 ? 0 : NK_ERR_ADDRESS;
}

static void close_sockets(sockets *s)
{
    for (int k = 0; k < 2; k++)
        if (s->fd[k] >= 0)
            close(s->fd[k]);
}

static void flush_transmits(nk_stun_client *c, const sockets *s)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    while (nk_stun_client_poll_transmit(c, nk__now_ms(), &tx, buf, sizeof(buf)) == 0) {
        int fd = s->fd[family_index(tx.to.family)];
        if (fd >= 0)
            nk_udp_send(fd, &tx.to, buf, tx.len); /* a lost send is a lost datagram: retransmission covers it */
    }
}

static void read_datagrams(nk_stun_client *c, const sockets *s, nk_addr *local)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    for (int k = 0; k < 2; k++) {
        if (s->fd[k] < 0)
            continue;
        for (int budget = 64; budget > 0; budget--) {
            nk_addr from, at;
            int n = nk_udp_recv(s->fd[k], buf, sizeof(buf), &from, &at);
            if (n < 0)
                break;
            if (nk_stun_client_handle_datagram(c, nk__now_ms(), &from, buf, (size_t)n) == 0)
                *local = at;
        }
    }
}

int nk_stun_discover(const nk_stun_client_config *cfg, const nk_addr *bind_addr, nk_addr *local,
                     nk_stun_binding_result *res)
{
    nk_stun_client *c;
    sockets s;
    int rc;

    memset(res, 0, sizeof(*res));
    memset(local, 0, sizeof(*local));
    if ((rc = nk_stun_client_new(&c, cfg)) != 0)
        return res->status = rc;
    if ((rc = open_sockets(&s, cfg, bind_addr)) != 0 || (rc = nk_stun_client_start(c, nk__now_ms())) != 0) {
        close_sockets(&s);
        nk_stun_client_free(c);
        return res->status = rc;
    }
    while (!nk_stun_client_result(c, res)) {
        flush_transmits(c, &s);
        struct pollfd pfd[2];
        nfds_t n = 0;
        for (int k = 0; k < 2; k++)
            if (s.fd[k] >= 0)
                pfd[n++] = (struct pollfd){.fd = s.fd[k], .events = POLLIN};
        int64_t wait = nk_stun_client_next_deadline(c) - nk__now_ms();
        if (wait < 0)
            wait = 0;
        if (wait > 1000)
            wait = 1000;
        if (poll(pfd, n, (int)wait) > 0)
            read_datagrams(c, &s, local);
        nk_stun_client_handle_timeout(c, nk__now_ms());
    }
    close_sockets(&s);
    nk_stun_client_free(c);
    return res->status;
}
