/* natkit internal: shared between turn_service.c (loop, UDP, relays), turn_service_stream.c (TCP/TLS) and turn_service_gso.c. */
#ifndef NK__TURN_SERVICE_INTERNAL_H
#define NK__TURN_SERVICE_INTERNAL_H

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "natkit/turn_service.h"
#include "srclimit.h"
#include "stats_pub.h"

#define NK__TS_BATCH     32
#define NK__TS_RB        128             /* datagrams toward peers queued before a flush */
#define NK__TS_PKT       4096            /* largest datagram taken from a socket */
#define NK__TS_OUT       (NK__TS_PKT + 64)
#define NK__TS_FRAME_MAX (65536 + 64)    /* largest stream frame */
#define NK__TS_WBUF_MAX  (1u << 20)      /* pending bytes per connection before dropping relayed data */
#define NK__TS_IDLE_MS   30000           /* default: a connection without an allocation is closed after this */
#define NK__TS_FIRST_MS  5000            /* default: ... without a valid message */
#define NK__TS_PER_IP    64              /* default: connections per source */

enum { NK__TS_UDP = 1, NK__TS_TCP_LISTEN, NK__TS_TLS_LISTEN, NK__TS_RELAY, NK__TS_CONN };

typedef struct nk__ts_conn {
    struct nk__ts_conn *hnext;
    int fd;
    uint32_t slot;
    uint8_t transport;
    nk_addr peer;
    SSL *ssl;
    uint32_t events;       /* what epoll watches now */
    int64_t opened_ms;     /* accept, or the end of its last allocation */
    int64_t accepted_ms;
    int valid;             /* a message the core took (not dropped) has arrived */
    uint8_t *rbuf;
    size_t rlen;
    uint8_t *wbuf;
    size_t wlen, wcap;
} nk__ts_conn;

struct nk_turn_service {
    nk_turn_service_options cfg;
    int ep;
    int udp_fd, tcp_fd, tls_fd;
    SSL_CTX *tls;
    nk_turn_server *srv;
    int64_t now;
    /* the core's stats as of the last loop turn, for other threads (stats_pub.h) */
    _Atomic uint64_t stats_pub[NK__STATS_WORDS(nk_turn_server_stats_t)];
    /* relays */
    int *relay_fd;         /* by port; -1 when none */
    nk_addr relay_ip;
    /* connections */
    nk__ts_conn **conns;   /* by slot */
    uint32_t nconns_cap, nconns;
    nk__ts_conn *conn_hash[1024];
    nk__conncount *per_ip;   /* connections per source; NULL: no limit */
    nk_turn_server_stats_t conn_stats; /* the driver's tcp_* counters (the rest stays 0) */
    /* UDP batches */
    struct mmsghdr rx_msg[NK__TS_BATCH];
    struct iovec rx_iov[NK__TS_BATCH];
    struct sockaddr_storage rx_name[NK__TS_BATCH];
    uint8_t rx_buf[NK__TS_BATCH][NK__TS_PKT];
    struct mmsghdr tx_msg[NK__TS_BATCH];
    struct iovec tx_iov[NK__TS_BATCH];
    struct sockaddr_storage tx_name[NK__TS_BATCH];
    uint8_t tx_buf[NK__TS_BATCH][NK__TS_OUT];
    unsigned ntx;
    /* datagrams toward peers, queued and sent one sendmmsg per relay socket */
    struct mmsghdr rb_msg[NK__TS_RB];
    struct iovec rb_iov[NK__TS_RB];
    struct sockaddr_storage rb_name[NK__TS_RB];
    uint8_t rb_buf[NK__TS_RB][NK__TS_OUT];
    int rb_fd[NK__TS_RB];
    unsigned nrb;
    int gso;               /* the kernel takes UDP_SEGMENT */
    uint8_t scratch[NK__TS_FRAME_MAX];
};

/* Sends what the core produced (data in buf). */
void nk__ts_emit(nk_turn_service *d, const nk_transmit *tx, const uint8_t *buf);
/* Sends the queued datagrams (to clients and to peers). */
void nk__ts_flush(nk_turn_service *d);
/* Stream side (turn_service_stream.c). */
int nk__ts_stream_init(nk_turn_service *d);
void nk__ts_stream_free(nk_turn_service *d);
void nk__ts_accept(nk_turn_service *d, int listen_fd, uint8_t transport);
void nk__ts_conn_event(nk_turn_service *d, uint32_t slot, uint32_t events);
/* Closes connections without a valid message after first_ms, or without an allocation for alloc_timeout_ms. */
void nk__ts_sweep(nk_turn_service *d);
void nk__ts_conn_send(nk_turn_service *d, uint8_t transport, const nk_addr *to, const uint8_t *p, size_t n);
/* Batched sends (turn_service_gso.c): one sendmmsg, same-destination runs as UDP GSO when gso. */
int nk__ts_gso_probe(int fd);
void nk__ts_send_batch(int fd, const struct mmsghdr *msgs, unsigned n, int gso);

static inline uint64_t nk__ts_tag(uint32_t kind, uint32_t index)
{
    return (uint64_t)kind << 32 | index;
}

#endif
