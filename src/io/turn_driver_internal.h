/* natkit internal: shared between turn_driver.c (loop, UDP, relays) and turn_driver_stream.c (TCP/TLS). */
#ifndef NK__TURN_DRIVER_INTERNAL_H
#define NK__TURN_DRIVER_INTERNAL_H

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "turn_driver.h"

#define NK__TD_BATCH     32
#define NK__TD_RB        128             /* datagrams toward peers queued before a flush */
#define NK__TD_PKT       4096            /* largest datagram taken from a socket */
#define NK__TD_OUT       (NK__TD_PKT + 64)
#define NK__TD_FRAME_MAX (65536 + 64)    /* largest stream frame */
#define NK__TD_WBUF_MAX  (1u << 20)      /* pending bytes per connection before dropping relayed data */
#define NK__TD_IDLE_MS   30000           /* a connection without an allocation is closed after this */

enum { NK__TD_UDP = 1, NK__TD_TCP_LISTEN, NK__TD_TLS_LISTEN, NK__TD_RELAY, NK__TD_CONN };

typedef struct nk__td_conn {
    struct nk__td_conn *hnext;
    int fd;
    uint32_t slot;
    uint8_t transport;
    nk_addr peer;
    SSL *ssl;
    uint32_t events;       /* what epoll watches now */
    int64_t opened_ms;
    uint8_t *rbuf;
    size_t rlen;
    uint8_t *wbuf;
    size_t wlen, wcap;
} nk__td_conn;

struct nk__turn_driver {
    nk__turn_driver_config cfg;
    int ep;
    int udp_fd, tcp_fd, tls_fd;
    SSL_CTX *tls;
    nk_turn_server *srv;
    int64_t now;
    /* relays */
    int *relay_fd;         /* by port; -1 when none */
    nk_addr relay_ip;
    /* connections */
    nk__td_conn **conns;   /* by slot */
    uint32_t nconns_cap, nconns;
    nk__td_conn *conn_hash[1024];
    /* UDP batches */
    struct mmsghdr rx_msg[NK__TD_BATCH];
    struct iovec rx_iov[NK__TD_BATCH];
    struct sockaddr_storage rx_name[NK__TD_BATCH];
    uint8_t rx_buf[NK__TD_BATCH][NK__TD_PKT];
    struct mmsghdr tx_msg[NK__TD_BATCH];
    struct iovec tx_iov[NK__TD_BATCH];
    struct sockaddr_storage tx_name[NK__TD_BATCH];
    uint8_t tx_buf[NK__TD_BATCH][NK__TD_OUT];
    unsigned ntx;
    /* datagrams toward peers, queued and sent one sendmmsg per relay socket */
    struct mmsghdr rb_msg[NK__TD_RB];
    struct iovec rb_iov[NK__TD_RB];
    struct sockaddr_storage rb_name[NK__TD_RB];
    uint8_t rb_buf[NK__TD_RB][NK__TD_OUT];
    int rb_fd[NK__TD_RB];
    unsigned nrb;
    int gso;               /* the kernel takes UDP_SEGMENT */
    uint8_t scratch[NK__TD_FRAME_MAX];
};

/* Sends what the core produced (data in buf). */
void nk__td_emit(nk__turn_driver *d, const nk_transmit *tx, const uint8_t *buf);
/* Sends the queued datagrams (to clients and to peers). */
void nk__td_flush(nk__turn_driver *d);
/* Stream side (turn_driver_stream.c). */
int nk__td_stream_init(nk__turn_driver *d);
void nk__td_stream_free(nk__turn_driver *d);
void nk__td_accept(nk__turn_driver *d, int listen_fd, uint8_t transport);
void nk__td_conn_event(nk__turn_driver *d, uint32_t slot, uint32_t events);
/* Closes connections that have had no allocation for NK__TD_IDLE_MS. */
void nk__td_sweep(nk__turn_driver *d);
void nk__td_conn_send(nk__turn_driver *d, uint8_t transport, const nk_addr *to, const uint8_t *p, size_t n);
int nk__td_listen_tcp(const nk_addr *a, int reuse_port);
/* Batched sends (turn_driver_gso.c): one sendmmsg, same-destination runs as UDP GSO when gso. */
int nk__td_gso_probe(int fd);
void nk__td_send_batch(int fd, const struct mmsghdr *msgs, unsigned n, int gso);

static inline uint64_t nk__td_tag(uint32_t kind, uint32_t index)
{
    return (uint64_t)kind << 32 | index;
}

#endif
