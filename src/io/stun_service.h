/*
 * natkit internal: the STUN service driver's shared structures (the worker
 * thread, its sockets and TCP connections). See docs/internals/stun-server.md.
 */
#ifndef NK__STUN_SERVICE_H
#define NK__STUN_SERVICE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "natkit/stun_service.h"
#include "srclimit.h"
#include "stats_pub.h"

#define NK__SVC_MAX_BATCH   256
#define NK__SVC_UDP_MAX     2048 /* largest datagram taken; longer ones are dropped */
#define NK__SVC_TCP_MSG_MAX 2048 /* largest framed STUN message taken over TCP */
#define NK__SVC_TCP_OUT     1024 /* per-connection send backlog */
#define NK__SVC_MAX_SLOTS   4
#define NK__SVC_CTL_SIZE    64   /* room for one IP_PKTINFO / IPV6_PKTINFO cmsg */

enum { NK__EP_UDP = 1, NK__EP_TCP_LISTEN, NK__EP_TCP_CONN, NK__EP_STOP };

/* Every epoll registration points at one of these (first member). */
typedef struct nk__ep {
    int kind;
    int fd;
} nk__ep;

typedef struct nk__svc_sock {
    nk__ep e;
    int slot;        /* index in the server's addresses */
} nk__svc_sock;

typedef struct nk__tcp_conn {
    nk__ep e;                 /* e.fd < 0 once closed (awaiting free) */
    int slot;
    nk_addr peer;
    int64_t last_ms;          /* last bytes received (fresh: the accept) */
    uint8_t fresh;            /* no valid message yet: on the fresh list, not the idle list */
    struct nk__tcp_conn *prev, *next; /* list order (oldest first), or the dead list */
    uint32_t events;          /* current epoll interest */
    size_t in_len;
    size_t out_off, out_len;
    uint8_t in[NK__SVC_TCP_MSG_MAX];
    uint8_t out[NK__SVC_TCP_OUT];
} nk__tcp_conn;

typedef struct nk__worker nk__worker;

/* A list of connections, oldest first. */
typedef struct nk__conn_list {
    nk__tcp_conn *head, *tail;
} nk__conn_list;

struct nk_stun_service {
    nk_stun_service_options opt;
    nk_stun_server *srv;
    nk_addr addrs[NK__SVC_MAX_SLOTS];
    size_t naddrs;
    int stop_fd;       /* eventfd: readable = stop (never drained) */
    int fail_fd;       /* eventfd: a worker died */
    int nworkers;
    int started;       /* threads started */
    nk__worker *workers;
};

/* A worker's outgoing UDP batch for one socket. */
typedef struct nk__send_q {
    unsigned n;
    struct mmsghdr msg[NK__SVC_MAX_BATCH];
} nk__send_q;

struct nk__worker {
    nk_stun_service *svc;
    pthread_t thread;
    int epfd;
    int err;
    nk__svc_sock udp[NK__SVC_MAX_SLOTS];
    nk__svc_sock tcp[NK__SVC_MAX_SLOTS];
    nk__ep stop;
    /* TCP connections: fresh (no valid message yet) by accept time, the others by
     * last activity, oldest first; closed ones wait in dead. */
    nk__conn_list fresh, idle;
    nk__tcp_conn *dead;
    int nconns;
    nk__conncount *per_ip;  /* TCP connections per source (NULL: no limit) */
    nk__ratelimit *rate;    /* UDP answers per source (NULL: no limit) */
    int spare_fd;     /* held open to shed connections when out of descriptors */
    nk_stun_server_stats_t stats;
    /* stats as of the last batch, for readers on other threads (stats_pub.h) */
    _Atomic uint64_t stats_pub[NK__STATS_WORDS(nk_stun_server_stats_t)];
    /* UDP batches */
    struct mmsghdr rmsg[NK__SVC_MAX_BATCH];
    struct iovec riov[NK__SVC_MAX_BATCH];
    struct sockaddr_storage rname[NK__SVC_MAX_BATCH];
    struct iovec siov[NK__SVC_MAX_BATCH];
    struct sockaddr_storage sname[NK__SVC_MAX_BATCH];
    /* Wildcard listen: the local address of each datagram (IP_PKTINFO) and the
     * source address to answer from. */
    int pktinfo;
    _Alignas(struct cmsghdr) uint8_t rctl[NK__SVC_MAX_BATCH][NK__SVC_CTL_SIZE];
    _Alignas(struct cmsghdr) uint8_t sctl[NK__SVC_MAX_BATCH][NK__SVC_CTL_SIZE];
    nk__send_q sq[NK__SVC_MAX_SLOTS];
    uint8_t rbuf[NK__SVC_MAX_BATCH][NK__SVC_UDP_MAX];
    uint8_t sbuf[NK__SVC_MAX_BATCH][NK__SVC_UDP_MAX];
};

/* Packet info on wildcard sockets (stun_service_pktinfo.c). */
int nk__svc_pktinfo_enable(int fd, int family);
/* The datagram's local IP from its control data into local (port kept); 0 or -1. */
int nk__svc_pktinfo_local(const struct msghdr *h, nk_addr *local);
/* Control data that makes the datagram leave from local's IP; returns its length. */
size_t nk__svc_pktinfo_source(uint8_t *ctl, size_t cap, const nk_addr *local);

/* TCP (stun_service_tcp.c). */
void nk__svc_tcp_accept(nk__worker *w, nk__svc_sock *l, int64_t now_ms);
void nk__svc_tcp_event(nk__worker *w, nk__tcp_conn *c, uint32_t events, int64_t now_ms);
/* Closes idle connections; returns ms until the next one expires (-1: none). */
int nk__svc_tcp_sweep(nk__worker *w, int64_t now_ms);
/* Frees connections closed during an event batch. */
void nk__svc_tcp_reap(nk__worker *w);
void nk__svc_tcp_close_all(nk__worker *w);

#endif
