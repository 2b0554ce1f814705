/* natkit CLI: what `listen` and `connect` share (options, the run loop, output); docs/internals/cli-p2p.md. */
#ifndef CLI_P2P_H
#define CLI_P2P_H

#include "natkit/node_driver.h"

typedef struct p2p_opts {
    const char *cmd;             /* "listen" or "connect" */
    nk_node_driver_options drv;
    const char *key_file;
    char turn_pass[256];         /* --pass-file, $NATKIT_TURN_PASS or --pass (wiped by p2p_opts_free) */
    int have_pass;               /* --pass or --pass-file given (not both) */
    int json;
    int have_peer;
    nk_peer_id peer;             /* connect: whom */
    int have_addr;
    nk_addr addr;                /* connect --peer: where, without a hub */
    long connect_timeout_ms;
    int tcp;                     /* connect --tcp: ask for a TCP simultaneous open on a direct path */
    int have_local;
    nk_addr local;               /* connect --local IP:PORT: local TCP connections, a stream each */
    int have_forward;
    nk_addr forward;             /* listen --forward HOST:PORT: every stream goes to this TCP service */
    int have_allow;              /* listen --allow / --allow-file: only these peers (others refused) */
    nk_peer_id *allow;           /* (malloc'd; p2p_opts_free) */
    size_t nallow;
    const char *control;         /* --control PATH: the control socket (NULL: the runtime directory's) */
} p2p_opts;

/*
 * Parses the options listen and connect share; connect's PEER_ID is the one
 * positional argument when want_peer. Returns 0, or an exit status (2, or
 * 0 after --help) to return at once.
 */
int p2p_parse(p2p_opts *o, int argc, char **argv, int want_peer, void (*usage)(FILE *out), int *exit_now);

void p2p_opts_free(p2p_opts *o);

/* Runs until done: returns the process exit status. */
int p2p_run(p2p_opts *o);

/* The control socket for `natkit status` (p2p_status.c; control.h drives it). NULL when it
 * could not be opened (said on stderr); *fatal then says whether to stop (--control given). */
struct ctl_server;
struct ctl_server *p2p_ctl_open(const p2p_opts *o, nk_node_driver *d, int *fatal);

#endif
