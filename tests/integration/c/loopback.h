/* What the cmocka programs of tests/integration/c share (real sockets, wall-clock deadlines; the
 * clock is the driver's, nk_node_driver_now): a node driver with a fresh identity on 127.0.0.1.
 * Unit tests never include it: they run on tests/sim's clock and open no socket. */
#ifndef NK_TEST_LOOPBACK_H
#define NK_TEST_LOOPBACK_H

#include <string.h>

#include "natkit/node_driver.h"

/* A node driver on 127.0.0.1 (a port the kernel picks) for the identity id, which it makes;
 * its events go to on_event(ctx, ...); local: its address. 0, or the error of the step that
 * failed. */
static inline int loopback_node_open(nk_node_driver **d, nk_identity *id, nk_addr *local,
                                     void (*on_event)(void *ctx, nk_node_driver *d, const nk_node_event *ev),
                                     void *ctx)
{
    int rc = nk_identity_generate(id);
    if (rc != 0)
        return rc;
    nk_node_driver_options o;
    memset(&o, 0, sizeof(o));
    o.node.identity = id;
    nk_addr_parse(&o.bind, "127.0.0.1:0");
    o.on_event = on_event;
    o.ctx = ctx;
    if ((rc = nk_node_driver_open(d, &o)) != 0)
        return rc;
    nk_node_driver_local(*d, local);
    return 0;
}

#endif
