/* natkit connect: connect to a peer by ID and chat over stdin/stdout. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "p2p.h"

int cmd_connect_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit connect PEER_ID (--hub HOST:PORT | --peer IP:PORT) [--stun HOST:PORT]...\n"
            "                      [--turn HOST:PORT --user U --pass P]\n"
            "                      [--key FILE] [--bind IP:PORT] [--keepalive SECONDS] [--timeout SECONDS]\n"
            "                      [--hub-tls [--hub-ca FILE]] [--tcp] [--json]\n\n"
            "Connects to the peer with this ID (it runs `natkit listen` at the same hub) over\n"
            "the best path there is: direct, else TURN, else the hub's relay, end-to-end\n"
            "encrypted and authenticated. Lines typed on stdin reach the peer; its messages\n"
            "are printed on stdout; status goes to stderr (JSON events with --json:\n"
            "connected, path-changed, disconnected). At the end of stdin it waits until the\n"
            "peer has everything, then closes.\n\n"
            "  --timeout S        give up when not connected after S seconds (default 30)\n"
            "  --peer IP:PORT     no hub: the peer's public address, exchanged by hand. Both sides\n"
            "                     run `natkit connect OTHER_ID --peer OTHER_IP:PORT --bind 0.0.0.0:PORT`\n"
            "                     within a few seconds of each other; `natkit discover --bind\n"
            "                     0.0.0.0:PORT` tells each side its public IP:PORT to share\n"
            "  --tcp              once on a direct path, move the data to a TCP stream: both\n"
            "                     sides connect at the same moment (TCP simultaneous open, from\n"
            "                     the UDP socket's port, timed over the session), sealed with\n"
            "                     the session's keys; stdin then goes over it as raw bytes. When\n"
            "                     no SYN gets through (e.g. a NAT that changes ports) it says so\n"
            "                     and stays on the UDP path. The listener answers by itself.\n"
            "  (the other options are as for `natkit listen`; see natkit listen --help)\n\n"
            "exit status: 0 done, 1 could not connect or lost the peer, 2 usage error\n");
}

int cmd_connect_main(int argc, char **argv)
{
    p2p_opts o;
    int exit_now;
    memset(&o, 0, sizeof(o));
    o.cmd = "connect";
    int rc = p2p_parse(&o, argc, argv, 1, usage, &exit_now);
    if (exit_now) {
        p2p_opts_free(&o);
        return rc;
    }
    rc = p2p_run(&o);
    p2p_opts_free(&o);
    return rc;
}
