/*
 * epoll_core: a sans-I/O natkit core driven from the caller's own event loop.
 *
 * natkit's protocol cores (here nk_stun_client, natkit/stun_client.h) never
 * read a clock, touch a socket or sleep. The application owns all of that and
 * talks to a core with five kinds of calls:
 *
 *   nk_stun_client_handle_datagram  bytes that arrived, with the time
 *   nk_stun_client_handle_timeout   "it is now T" (when a deadline passed)
 *   nk_stun_client_poll_transmit    bytes the core wants sent, one at a time
 *   nk_stun_client_next_deadline    when the core next needs the time
 *   nk_stun_client_result           (for other cores: poll_event) the outcome
 *
 * This program owns one UDP socket (plain socket/sendto/recvfrom), its own
 * clock (clock_gettime) and an epoll instance, and runs a STUN Binding
 * against a STUN server it starts in-process (nk_stun_service, a bundled
 * driver with its own threads). The same loop would carry any number of
 * cores, or fit into an existing epoll/libuv/io_uring loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, epoll, sockets under a strict -std=c11 */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include <natkit/natkit.h>

/* The application's clock, in milliseconds: cores take whatever time they are given. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A STUN server on 127.0.0.1 in this process (see discover.c for why a port is picked). */
static int start_local_server(nk_stun_service **svc, nk_addr *addr)
{
    nk_stun_service_options o;
    nk_stun_service_options_init(&o);
    o.tcp = 0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int rc = NK_ERR_ADDRESS;
    for (int i = 0; i < 50 && rc == NK_ERR_ADDRESS; i++) {
        nk_addr_parse(&o.listen, "127.0.0.1:0");
        o.listen.port = (uint16_t)(20000 + rand() % 40000);
        rc = nk_stun_service_start(svc, &o);
    }
    if (rc == 0)
        *addr = o.listen;
    return rc;
}

/* Sends everything the core has queued. A failed send is a lost datagram: the core retransmits. */
static void flush(nk_stun_client *c, int fd)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    while (nk_stun_client_poll_transmit(c, now_ms(), &tx, buf, sizeof(buf)) == 0) {
        struct sockaddr_storage ss;
        unsigned len = sizeof(ss);
        if (nk_addr_to_sockaddr(&tx.to, (struct sockaddr *)&ss, &len) == 0)
            sendto(fd, buf, tx.len, 0, (struct sockaddr *)&ss, len);
    }
}

/* Feeds every waiting datagram to the core. */
static void drain(nk_stun_client *c, int fd)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&ss, &len);
        if (n < 0)
            return; /* EAGAIN: all read */
        nk_addr from;
        if (nk_addr_from_sockaddr(&from, (struct sockaddr *)&ss) == 0)
            nk_stun_client_handle_datagram(c, now_ms(), &from, buf, (size_t)n); /* not ours: ignored */
    }
}

int main(void)
{
    nk_stun_service *svc;
    nk_addr server;
    int rc = start_local_server(&svc, &server);
    if (rc != 0) {
        fprintf(stderr, "epoll_core: cannot start the STUN server: %s\n", nk_strerror(rc));
        return 1;
    }

    /* The application's socket and event loop. */
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd < 0 || bind(fd, (struct sockaddr *)&lo, sizeof(lo)) != 0 || ep < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        perror("epoll_core: socket/bind/epoll");
        nk_stun_service_free(svc);
        return 1;
    }

    /* The core: a Binding against one server, giving up after 5 s. */
    nk_stun_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.servers = &server;
    cfg.nservers = 1;
    cfg.timeout_ms = 5000;
    nk_stun_client *c = NULL;
    if ((rc = nk_stun_client_new(&c, &cfg)) != 0 || (rc = nk_stun_client_start(c, now_ms())) != 0) {
        fprintf(stderr, "epoll_core: %s\n", nk_strerror(rc));
        nk_stun_client_free(c);
        close(ep);
        close(fd);
        nk_stun_service_free(svc);
        return 1;
    }

    nk_stun_binding_result res;
    memset(&res, 0, sizeof(res));
    res.status = NK_ERR_TIMEOUT;
    int wakeups = 0;
    while (!nk_stun_client_result(c, &res)) {
        flush(c, fd); /* 1. send what the core wants sent */

        /* 2. sleep until a datagram arrives or the core's next deadline, whichever is first */
        int64_t deadline = nk_stun_client_next_deadline(c), wait = -1;
        if (deadline != NK_DEADLINE_NONE) {
            wait = deadline - now_ms();
            wait = wait < 0 ? 0 : wait > 60000 ? 60000 : wait;
        }
        struct epoll_event got;
        int n = epoll_wait(ep, &got, 1, (int)wait);
        if (n < 0 && errno != EINTR) {
            perror("epoll_core: epoll_wait");
            break;
        }
        wakeups++;

        /* 3. hand the core what happened: datagrams, then the time */
        if (n > 0)
            drain(c, fd);
        if (nk_stun_client_next_deadline(c) <= now_ms())
            nk_stun_client_handle_timeout(c, now_ms());
    }

    /* On loopback nothing translates addresses: the server must see exactly our socket's address. */
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    nk_addr bound;
    memset(&bound, 0, sizeof(bound));
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
        nk_addr_from_sockaddr(&bound, (struct sockaddr *)&ss);

    char sbuf[NK_ADDR_STRLEN], mbuf[NK_ADDR_STRLEN];
    int ok = nk_stun_client_result(c, &res) && res.status == 0;
    if (ok && !nk_addr_equal(&res.mapped, &bound)) {
        fprintf(stderr, "epoll_core: mapped %s is not our socket's %s\n",
                nk_addr_format(&res.mapped, mbuf, sizeof(mbuf)), nk_addr_format(&bound, sbuf, sizeof(sbuf)));
        ok = 0;
    } else if (ok)
        printf("server %s says we are %s (rtt %lld ms, %d loop wakeups)\n",
               nk_addr_format(&res.server, sbuf, sizeof(sbuf)), nk_addr_format(&res.mapped, mbuf, sizeof(mbuf)),
               (long long)res.rtt_ms, wakeups);
    else
        fprintf(stderr, "epoll_core: no answer: %s\n", nk_strerror(res.status));

    nk_stun_client_free(c);
    close(ep);
    close(fd);
    nk_stun_service_free(svc);
    return ok ? 0 : 1;
}
