/*
 * natkit internal: the TURN server's event-loop driver (epoll, Linux). It is
 * the only part of the TURN server that reads the clock or touches sockets:
 * a UDP and a TCP listener on the same address, an optional TLS listener,
 * one UDP socket per allocation (opened and closed when the core asks, see
 * nk_turn_server_ops), and the client TCP/TLS connections with their framing.
 */
#ifndef NK__TURN_DRIVER_H
#define NK__TURN_DRIVER_H

#include "natkit/turn_server.h"

typedef struct nk__turn_driver_config {
    nk_addr listen;       /* UDP and TCP */
    nk_addr tls_listen;   /* NK_AF_NONE: no TLS */
    const char *cert_file;
    const char *key_file;
    unsigned max_connections; /* TCP + TLS clients; 0: 1024 */
    int reuse_port;           /* SO_REUSEPORT on the listeners (one driver per thread) */
} nk__turn_driver_config;

typedef struct nk__turn_driver nk__turn_driver;

/* Opens the listeners. 0, NK_ERR_SYSTEM (errno set), NK_ERR_ADDRESS or NK_ERR_INVAL (TLS files). */
int nk__turn_driver_new(nk__turn_driver **out, const nk__turn_driver_config *cfg);
/* The callbacks to give nk_turn_server_new (they open and close relay sockets). */
void nk__turn_driver_ops(nk__turn_driver *d, nk_turn_server_ops *ops);
/* Runs until *stop becomes non-zero. 0 or NK_ERR_SYSTEM. */
int nk__turn_driver_run(nk__turn_driver *d, nk_turn_server *s, volatile int *stop);
/* The bound listener addresses (port 0 resolved). */
void nk__turn_driver_addresses(const nk__turn_driver *d, nk_addr *listen, nk_addr *tls_listen);
/* Closes everything; free the server before (it closes its relays through the driver). */
void nk__turn_driver_free(nk__turn_driver *d);

#endif
