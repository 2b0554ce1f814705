/*
 * natkit CLI: the keys of a TCP upgrade's sealed stream, from the QUIC connection that carried the
 * announcement (docs/internals/tcp-upgrade.md): out[64] = TLS exporter, label "natkit tcp",
 * context the upgrade's token; the QUIC client sends with out[0..32) and receives with
 * out[32..64), the server the reverse. Both ends of one connection get the same bytes, every
 * connection and every token other ones.
 */
#ifndef CLI_TCP_KEYS_H
#define CLI_TCP_KEYS_H

#include "natkit/quic.h"
#include "natkit/tcpseal.h"

#define CLI_TCP_KEY_LABEL "natkit tcp"

/* A seal keyed from q (client: 1 on the QUIC client's side) and token; buf_cap as nk_tcpseal_new_keys.
 * 0, or the exporter's / the seal's error. The exported bytes are wiped. */
int cli_tcpseal_from_quic(nk_tcpseal **out, nk_quic *q, int client, const uint8_t token[NK_TCP_TOKEN_LEN],
                          size_t buf_cap);

#endif
