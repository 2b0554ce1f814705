/*
 * natkit: nk_tcpseal, sans-I/O, the sealed byte stream of a TCP upgrade (see
 * natkit/tcp.h). Keys come from the QUIC connection that announced the upgrade:
 * its TLS exporter (nk_quic_export / nk_conn_export) with label
 * NK_TCPSEAL_EXPORT_LABEL and the token as context gives NK_TCPSEAL_EXPORT_LEN
 * bytes, one 32-byte key per direction (nk_tcpseal_new_exported). Framing is
 * crypto_secretstream_xchacha20poly1305 records with a 2-byte length. Each side
 * opens with a magic, its secretstream header and a first record holding the
 * token: a TCP peer that does not hold the connection's keys (or replays another
 * upgrade) fails that record and is refused. Bounded buffers: write takes what
 * fits (NK_ERR_AGAIN when none), feed takes what can be decrypted into room for
 * the reader.
 */
#ifndef NATKIT_TCPSEAL_H
#define NATKIT_TCPSEAL_H

#include "natkit/common.h"
#include "natkit/upgrade.h" /* NK_TCP_TOKEN_LEN */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nk_tcpseal nk_tcpseal;

#define NK_TCPSEAL_RECORD 16384 /* largest plaintext per record */

typedef struct nk_tcpseal_stats_t {
    uint64_t bytes_in, bytes_out;     /* plaintext */
    uint64_t records_in, records_out;
    uint64_t auth_failed, malformed;  /* a stream that fails stops there (sticky error) */
} nk_tcpseal_stats_t;

/* The exporter input of a TCP upgrade's keys: export(NK_TCPSEAL_EXPORT_LABEL, context = the
 * token, NK_TCPSEAL_EXPORT_LEN bytes) on the QUIC connection that carried the announcement. */
#define NK_TCPSEAL_EXPORT_LABEL "natkit tcp"
#define NK_TCPSEAL_EXPORT_LEN   64

/* Keys from those exported bytes (both sides call it with the same bytes and token): the QUIC
 * client (client = 1) sends with exported[0..32) and receives with exported[32..64), the server
 * the reverse. The caller keeps (and wipes) exported. buf_cap bounds both buffers (ciphertext
 * out, plaintext in); 0: 256 KiB, at least 32 KiB. */
NK_API int nk_tcpseal_new_exported(nk_tcpseal **out, const uint8_t exported[NK_TCPSEAL_EXPORT_LEN], int client,
                                   const uint8_t token[NK_TCP_TOKEN_LEN], size_t buf_cap);
/* The same with explicit keys (tests, fuzzing). */
NK_API int nk_tcpseal_new_keys(nk_tcpseal **out, const uint8_t key_tx[32], const uint8_t key_rx[32],
                               const uint8_t token[NK_TCP_TOKEN_LEN], size_t buf_cap);
NK_API void nk_tcpseal_free(nk_tcpseal *t);

/* Plaintext in: how many bytes were taken (> 0), NK_ERR_AGAIN when the output buffer is
 * full, NK_ERR_STATE after shutdown or an error. */
NK_API int nk_tcpseal_write(nk_tcpseal *t, const uint8_t *p, size_t n);
/* Ends our direction (an authenticated end-of-stream record). NK_ERR_AGAIN: no room yet. */
NK_API int nk_tcpseal_shutdown(nk_tcpseal *t);
/* Ciphertext to put on the socket, and how much of it was sent. */
NK_API size_t nk_tcpseal_pending(const nk_tcpseal *t, const uint8_t **p);
NK_API void nk_tcpseal_consume(nk_tcpseal *t, size_t n);
/* Ciphertext from the socket: bytes taken (0: no room, read later), or NK_ERR_AUTH /
 * NK_ERR_MALFORMED (the stream is dead; close the connection). */
NK_API int nk_tcpseal_feed(nk_tcpseal *t, const uint8_t *p, size_t n);
/* Bytes the feed would take now (0: the reader must read first). */
NK_API size_t nk_tcpseal_feed_room(const nk_tcpseal *t);
/* Plaintext out: bytes, NK_ERR_AGAIN (nothing yet), NK_ERR_CLOSED (the peer ended its direction
 * and everything was read), or the stream's error. */
NK_API int nk_tcpseal_read(nk_tcpseal *t, uint8_t *buf, size_t cap);
/* 1 once the peer's first record (the token) authenticated. */
NK_API int nk_tcpseal_authenticated(const nk_tcpseal *t);
/* 0, or the sticky error. */
NK_API int nk_tcpseal_error(const nk_tcpseal *t);
NK_API void nk_tcpseal_stats(const nk_tcpseal *t, nk_tcpseal_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif
