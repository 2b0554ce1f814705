/*
 * natkit CLI: the socket side of a TURN client, one connection to one
 * server over UDP, TCP or TLS (OpenSSL). The protocol lives in the library
 * (nk_turn_client); this only moves bytes and waits.
 */
#ifndef CLI_TURN_IO_H
#define CLI_TURN_IO_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/addr.h"

typedef struct turn_io turn_io;

typedef struct turn_io_config {
    nk_addr server;
    uint8_t transport;         /* NK_TRANSPORT_UDP, _TCP, _TLS */
    const char *tls_name;      /* TLS: the name (or IP literal) the certificate must carry */
    const char *tls_ca_file;   /* TLS: trust these CAs instead of the system's (PEM), or NULL */
    int tls_insecure;          /* TLS: do not verify the certificate */
    int timeout_ms;            /* connect + TLS handshake */
    nk_addr bind;              /* local IP to send from (port 0: any); family NK_AF_NONE: the kernel's choice */
} turn_io_config;

/* Connects (UDP: a connected socket). On failure *err gets a message. */
int turn_io_open(turn_io **out, const turn_io_config *cfg, char *err, size_t err_cap);
void turn_io_close(turn_io *io);
/* The local address of the connection. */
int turn_io_local(const turn_io *io, nk_addr *out);
/* Sends one datagram, or all bytes over a stream. 0 or NK_ERR_SYSTEM/NK_ERR_CLOSED. */
int turn_io_send(turn_io *io, const uint8_t *p, size_t n);
/*
 * Waits up to wait_ms (0: do not wait) for input and reads one datagram or
 * one chunk of the stream into buf. Returns the length, NK_ERR_AGAIN when
 * nothing came, NK_ERR_CLOSED when the server closed the stream, or
 * NK_ERR_SYSTEM.
 */
int turn_io_recv(turn_io *io, uint8_t *buf, size_t cap, int wait_ms);

#endif
