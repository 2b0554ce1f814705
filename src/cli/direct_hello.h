/*
 * natkit internal: the plaintext first exchange of `natkit accept` / `natkit dial`
 * (docs/internals/tcp-upgrade.md). The dialer's HELLO (padded, so the answer is
 * never bigger than the question) carries a nonce and its local address; the
 * acceptor's REPLY echoes the nonce and gives its peer ID and the address it saw
 * the HELLO come from. Nothing here is authenticated: the peer ID is trusted on
 * first use (or pinned) and the Noise IK handshake that follows proves it.
 */
#ifndef NK__DIRECT_HELLO_H
#define NK__DIRECT_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "natkit/addr.h"
#include "natkit/identity.h"

#define NK__HELLO_MAGIC 0xA8
#define NK__HELLO_LEN   64  /* HELLO, padded */
#define NK__REPLY_LEN   61

typedef struct nk__hello {
    int reply;               /* 0: HELLO, 1: REPLY */
    uint8_t nonce[8];
    nk_addr addr;            /* HELLO: the dialer's local address; REPLY: what the acceptor saw */
    nk_peer_id id;           /* REPLY: the acceptor */
} nk__hello;

/* Bytes written (NK__HELLO_LEN or NK__REPLY_LEN), or NK_ERR_NOBUFS / NK_ERR_INVAL. */
int nk__hello_encode(const nk__hello *h, uint8_t *buf, size_t cap);
/* 0, or NK_ERR_MALFORMED. */
int nk__hello_decode(nk__hello *h, const uint8_t *p, size_t n);
int nk__hello_is(const uint8_t *p, size_t n);

#endif
