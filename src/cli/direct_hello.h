/*
 * natkit CLI: the plaintext first exchange of `natkit accept` / `natkit dial`
 * (docs/internals/tcp-upgrade.md). The dialer's HELLO (padded, so the answer is
 * never bigger than the question) carries a nonce and its local address; the
 * acceptor's REPLY echoes the nonce and gives its peer ID and the address it saw
 * the HELLO come from. Nothing here is authenticated: the peer ID is trusted on
 * first use (or pinned) and the QUIC handshake that follows proves it.
 */
#ifndef DIRECT_HELLO_H
#define DIRECT_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/addr.h"
#include "natkit/identity.h"

#define HELLO_MAGIC     0xA8
#define HELLO_LEN       64  /* HELLO, padded */
#define HELLO_REPLY_LEN 61

typedef struct hello_msg {
    int reply;               /* 0: HELLO, 1: REPLY */
    uint8_t nonce[8];
    nk_addr addr;            /* HELLO: the dialer's local address; REPLY: what the acceptor saw */
    nk_peer_id id;           /* REPLY: the acceptor */
} hello_msg;

/* Bytes written (HELLO_LEN or HELLO_REPLY_LEN), or NK_ERR_NOBUFS / NK_ERR_INVAL. */
int hello_encode(const hello_msg *h, uint8_t *buf, size_t cap);
/* 0, or NK_ERR_MALFORMED. */
int hello_decode(hello_msg *h, const uint8_t *p, size_t n);
/* 1 for a datagram that is a HELLO or REPLY, well-formed or not (0xA8 then 'H' or 'R'); never for a
 * QUIC packet. */
int hello_is(const uint8_t *p, size_t n);

#endif
