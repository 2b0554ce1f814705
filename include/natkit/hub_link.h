/*
 * natkit: nk_hub_link, a client-side connection to a hub (TCP or TLS) that
 * feeds an nk_hub_client from any poll loop.
 */
#ifndef NATKIT_HUB_LINK_H
#define NATKIT_HUB_LINK_H

#include "natkit/addr.h"
#include "natkit/common.h"
#include "natkit/hub_client.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A client-side connection to a hub (TCP or TLS) that moves bytes between a
 * non-blocking socket and an nk_hub_client. Fits any poll loop: wait on
 * nk_hub_link_fd() for POLLIN (and POLLOUT when nk_hub_link_wants_write()),
 * then call nk_hub_link_pump().
 */
typedef struct nk_hub_link nk_hub_link;

/*
 * Connects (blocking, up to timeout_ms) to hub; tls: 1 for TLS. ca_file:
 * verify the hub's certificate against it (NULL with TLS: no verification;
 * the registration proof is still bound to the hub address). *local gets
 * the local address (may be NULL).
 */
NK_API int nk_hub_link_open(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int64_t timeout_ms,
                            nk_addr *local);
/*
 * The same without blocking: the connection (and TLS handshake) completes
 * inside nk_hub_link_pump; until then wants_write/fd drive the poller, and
 * pump fails with NK_ERR_CLOSED when it fails or is not done in timeout_ms.
 */
NK_API int nk_hub_link_start(nk_hub_link **out, const nk_addr *hub, int tls, const char *ca_file, int64_t timeout_ms);
/* Moves a started connection on without touching a client: 0 once open (TCP connected, TLS done),
 * NK_ERR_AGAIN not yet (poll fd for wants_write / POLLIN), NK_ERR_TIMEOUT past its timeout,
 * NK_ERR_SYSTEM (errno says why: ECONNREFUSED, ...) or NK_ERR_AUTH (TLS handshake failed). */
NK_API int nk_hub_link_progress(nk_hub_link *l);
/* 1 once connected (and the TLS handshake done). */
NK_API int nk_hub_link_is_open(const nk_hub_link *l);
/* The local address of the connection. */
NK_API int nk_hub_link_local(const nk_hub_link *l, nk_addr *local);
NK_API int nk_hub_link_fd(const nk_hub_link *l);
NK_API int nk_hub_link_wants_write(const nk_hub_link *l, const nk_hub_client *c);
/* Reads what is there into c, writes what c has. 0, or NK_ERR_CLOSED when the connection is over. */
NK_API int nk_hub_link_pump(nk_hub_link *l, nk_hub_client *c, int64_t now_ms);
/* poll() on the link for up to timeout_ms (bounded by c's deadline), then pump and handle timeouts. */
NK_API int nk_hub_link_wait(nk_hub_link *l, nk_hub_client *c, int64_t timeout_ms);
NK_API void nk_hub_link_free(nk_hub_link *l);

#ifdef __cplusplus
}
#endif
#endif
