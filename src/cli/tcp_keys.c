/* natkit CLI: TCP upgrade keys from the QUIC exporter (see tcp_keys.h). */
#include <sodium.h>

#include "tcp_keys.h"

int cli_tcpseal_from_quic(nk_tcpseal **out, nk_quic *q, int client, const uint8_t token[NK_TCP_TOKEN_LEN],
                          size_t buf_cap)
{
    uint8_t k[64];
    int rc = nk_quic_export(q, CLI_TCP_KEY_LABEL, token, NK_TCP_TOKEN_LEN, k, sizeof(k));
    if (rc == 0)
        rc = client ? nk_tcpseal_new_keys(out, k, k + 32, token, buf_cap)
                    : nk_tcpseal_new_keys(out, k + 32, k, token, buf_cap);
    sodium_memzero(k, sizeof(k));
    return rc;
}
