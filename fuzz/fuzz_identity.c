/*
 * Fuzz target: the two identity parsers. The input is tried as a peer ID
 * (parse, then format must give back the same key) and as a key file (parse,
 * then the derived key must sign and verify).
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity/internal.h"
#include "natkit/identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void peer_id(const uint8_t *data, size_t size)
{
    char text[64];
    nk_peer_id id, back;
    if (size >= sizeof(text))
        size = sizeof(text) - 1;
    memcpy(text, data, size);
    text[size] = '\0';
    if (nk_peer_id_parse(&id, text) != 0)
        return;
    char out[NK_PEER_ID_STRLEN];
    nk_peer_id_format(&id, out, sizeof(out));
    if (strlen(out) != NK_PEER_ID_STRLEN - 1 || nk_peer_id_parse(&back, out) != 0 || !nk_peer_id_equal(&id, &back))
        abort();
    for (size_t i = 0; i < NK_PEER_ID_STRLEN - 1; i++) /* the same text, up to case */
        if ((text[i] | 0x20) != out[i])
            abort();
    uint8_t x[32];
    if (nk_peer_id_x25519(&id, x) != 0)
        abort(); /* a parsed ID is always usable by the session */
}

static void key_file(const uint8_t *data, size_t size)
{
    nk_identity id;
    if (nk__identity_parse_key_file(&id, (const char *)data, size) != 0)
        return;
    uint8_t sig[NK_SIGNATURE_SIZE];
    if (nk_identity_sign(&id, data, size, sig) != 0 || nk_peer_id_verify(&id.id, data, size, sig) != 0)
        abort();
    nk_identity_wipe(&id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    peer_id(data, size);
    key_file(data, size);
    return 0;
}
