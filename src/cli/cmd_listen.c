/* natkit listen: wait for peers to connect by our ID; chat with them over stdin/stdout. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "p2p.h"

int cmd_listen_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit listen --hub HOST:PORT [--stun HOST:PORT]... [--turn HOST:PORT --user U --pass P]\n"
            "                     [--key FILE] [--bind IP:PORT] [--keepalive SECONDS] [--hub-tls [--hub-ca FILE]]\n"
            "                     [--json]\n\n"
            "Registers this peer's ID at the hub and accepts connections from other peers.\n"
            "Each connection uses the best path there is: direct (hole punched through NATs),\n"
            "else a TURN relay, else the hub's relay; all of them end-to-end encrypted and\n"
            "authenticated. Lines typed on stdin go to every connected peer; messages from\n"
            "peers are printed on stdout; status goes to stderr (one JSON object per line\n"
            "with --json). Runs until SIGINT/SIGTERM.\n\n"
            "  --hub HOST:PORT    the hub for rendezvous (and last-resort relay)\n"
            "  --stun HOST:PORT   STUN server for the public address (repeatable: failover)\n"
            "  --turn HOST:PORT   TURN server for a relayed candidate (with --user/--pass)\n"
            "  --key FILE         identity key (default $XDG_CONFIG_HOME/natkit/key, made if missing)\n"
            "  --bind IP:PORT     UDP socket address (default 0.0.0.0, any port)\n"
            "  --keepalive S      keepalive interval on the chosen path (default 25, at most 25)\n"
            "  --hub-tls          TLS to the hub; --hub-ca FILE verifies its certificate\n"
            "  --json             status as JSON events on stderr\n");
}

int cmd_listen_main(int argc, char **argv)
{
    p2p_opts o;
    int exit_now;
    memset(&o, 0, sizeof(o));
    o.cmd = "listen";
    o.drv.node.accept = 1;
    int rc = p2p_parse(&o, argc, argv, 0, usage, &exit_now);
    if (exit_now) {
        p2p_opts_free(&o);
        return rc;
    }
    rc = p2p_run(&o);
    p2p_opts_free(&o);
    return rc;
}
