/*
 * natkit: peer identity. A peer's identity is an Ed25519 key pair (libsodium);
 * its peer ID is the public key, printed as 52 lowercase base32 characters
 * (RFC 4648 alphabet, no padding). The same key is the TLS raw public key of
 * natkit's QUIC connections (natkit/quic.h), so a connection authenticates
 * exactly the ID the user named; converted to X25519
 * (crypto_sign_ed25519_*_to_curve25519) it seals the agent's probes.
 */
#ifndef NATKIT_IDENTITY_H
#define NATKIT_IDENTITY_H

#include "natkit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NK_PEER_ID_SIZE    32
#define NK_PEER_ID_STRLEN  53 /* 52 characters + NUL */
#define NK_SIGNATURE_SIZE  64

typedef struct nk_peer_id {
    uint8_t key[NK_PEER_ID_SIZE]; /* Ed25519 public key */
} nk_peer_id;

typedef struct nk_identity {
    nk_peer_id id;
    uint8_t secret[64];           /* Ed25519 secret key (libsodium layout); wipe with nk_identity_wipe */
} nk_identity;

NK_API int nk_identity_generate(nk_identity *out);
/* Writes the key file (mode 0600, created atomically; parent directories 0700). */
NK_API int nk_identity_save(const nk_identity *id, const char *path);
/* As nk_identity_save; with NK_IDENTITY_NO_OVERWRITE an existing file is never
 * replaced (checked atomically) and the call returns NK_ERR_DENIED. */
#define NK_IDENTITY_NO_OVERWRITE 1
NK_API int nk_identity_save_ex(const nk_identity *id, const char *path, int flags);
/* 0; NK_ERR_NOT_FOUND (no such file), NK_ERR_MALFORMED (not a key file),
 * NK_ERR_SYSTEM (see errno). On failure *out is wiped. Key file format:
 * "natkit-key-v1\n" then the base64 (standard, padded) 32-byte Ed25519 seed and "\n". */
NK_API int nk_identity_load(nk_identity *out, const char *path);
/* $XDG_CONFIG_HOME/natkit/key, or ~/.config/natkit/key. */
NK_API int nk_identity_default_path(char *buf, size_t cap);
NK_API void nk_identity_wipe(nk_identity *id);

NK_API int nk_identity_sign(const nk_identity *id, const uint8_t *msg, size_t len, uint8_t sig[NK_SIGNATURE_SIZE]);
NK_API int nk_peer_id_verify(const nk_peer_id *peer, const uint8_t *msg, size_t len,
                             const uint8_t sig[NK_SIGNATURE_SIZE]);

/* X25519 forms of the same keys (the agent's probe sealing). */
NK_API int nk_identity_x25519(const nk_identity *id, uint8_t secret[32], uint8_t pub[32]);
NK_API int nk_peer_id_x25519(const nk_peer_id *peer, uint8_t pub[32]);

NK_API char *nk_peer_id_format(const nk_peer_id *peer, char *buf, size_t cap);
/* 0 or NK_ERR_INVAL (wrong length, bad character, not a valid Ed25519 point). */
NK_API int nk_peer_id_parse(nk_peer_id *out, const char *text);
NK_API int nk_peer_id_equal(const nk_peer_id *a, const nk_peer_id *b);

#ifdef __cplusplus
}
#endif
#endif
