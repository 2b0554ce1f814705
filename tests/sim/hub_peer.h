/*
 * Hub clients for the hub core's unit tests (test_hub.c, test_hub_cluster.c), header only: the
 * parts of a test peer that do not depend on how many hubs the test's world has.
 */
#ifndef NK_TEST_HUB_PEER_H
#define NK_TEST_HUB_PEER_H

#include <string.h>

#include "natkit/hub.h"

/* *c: a client of hub for *id, made on the first connection and kept over reconnections; *id is
 * generated then, unless the test set one (to come back as the same peer). */
static inline int hub_peer_client(nk_hub_client **c, nk_identity *id, const nk_addr *hub)
{
    if (*c != NULL)
        return 0;
    if (id->id.key[0] == 0 && id->id.key[1] == 0) {
        int rc = nk_identity_generate(id);
        if (rc != 0)
            return rc;
    }
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = id;
    cc.hub = *hub;
    return nk_hub_client_new(c, &cc);
}

/* c's next event that is not a PONG (the keepalive answers no test looks for here). */
static inline int hub_peer_next_event(nk_hub_client *c, nk_hub_event *ev, uint8_t *buf, size_t cap)
{
    int rc;
    while ((rc = nk_hub_client_poll_event(c, ev, buf, cap)) == 0 && ev->type == NK_HUB_EV_PONG)
        ;
    return rc;
}

#endif
