/* natkit CLI: what `accept` and `dial` share (a session over one UDP path, upgraded to TCP). */
#ifndef CLI_DIRECT_H
#define CLI_DIRECT_H

#include "natkit/addr.h"
#include "natkit/identity.h"

typedef struct direct_opts {
    const char *cmd;          /* "accept" or "dial" */
    int acceptor;
    const char *key_file;
    nk_addr bind;             /* UDP bind address (port 0: chosen by the kernel) */
    nk_addr advertise;        /* accept: --advertise-ip (family NONE: found from the interfaces) */
    uint16_t tcp_port;        /* accept: --tcp-port (0: chosen by the kernel) */
    nk_addr peer;             /* dial: the acceptor's UDP address */
    int have_peer_id;
    nk_peer_id peer_id;       /* dial: --peer-id (pinned) */
    long timeout_ms;          /* dial: give up when the session is not up after this */
    int no_tcp;               /* --udp-only: skip the upgrade (tests the fallback) */
} direct_opts;

/* Runs until done: returns the process exit status. */
int direct_run(direct_opts *o);

#endif
