/* natkit listen: wait for peers to connect by our ID; stdin/stdout as byte streams, or --forward. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "p2p.h"

int cmd_listen_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit listen --hub HOST:PORT [--stun HOST:PORT]... [--turn HOST:PORT --user U [--pass-file FILE]]\n"
            "                     [--key FILE] [--bind IP:PORT] [--keepalive SECONDS] [--cc ALGO] [--hub-tls [--hub-ca FILE]]\n"
            "                     [--forward HOST:PORT] [--allow PEER_ID]... [--allow-file FILE] [--json]\n\n"
            "Registers this peer's ID at the hub and accepts connections from other peers.\n"
            "Each connection uses the best path there is: direct (hole punched through NATs),\n"
            "else a TURN relay, else the hub's relay; all of them end-to-end encrypted and\n"
            "authenticated (QUIC). Runs until SIGINT/SIGTERM (exit 0), or until writing stdout\n"
            "fails (exit 1: what peers send would have nowhere to go); at the end every peer is\n"
            "told: its connection closes with the reason \"stopped\" (a `natkit connect` there\n"
            "says \"peer ID closed the connection: stopped\" and exits 1 when its transfer was\n"
            "not over).\n\n"
            "Without --forward, each connected peer's stream (`natkit connect`) is a byte\n"
            "stream: what peers send is written to stdout as raw bytes (from several peers at\n"
            "once: interleaved in chunks), and stdin is copied to every connected peer. stdin\n"
            "is read only when at least one peer is there and every peer took the previous\n"
            "read (the slowest sets the pace; a peer joining later gets what is read after it\n"
            "came); a peer's stream is read only while stdout keeps up. When a peer ends its\n"
            "side we end ours to it once it has what stdin gave so far; at the end of stdin\n"
            "we end every peer's stream (and new ones at once), and keep receiving. A terminal\n"
            "on stdin is read only while listen runs in the foreground (started with & in an\n"
            "interactive shell it leaves the terminal alone until `fg`).\n\n"
            "  --forward HOST:PORT  port forwarding: every stream a peer opens (one per TCP\n"
            "                     connection made to its `natkit connect --local`, or its\n"
            "                     stdin/stdout) becomes a new TCP connection to HOST:PORT, copied\n"
            "                     both ways with backpressure, half-closes and resets passed on.\n"
            "                     stdin is not used. Needs --allow or --allow-file. A target that\n"
            "                     does not answer is named on stderr with the system's error and\n"
            "                     the peer's stream is reset with that reason.\n"
            "  --allow PEER_ID    only this peer may connect (repeatable); every other peer is told\n"
            "                     \"not allowed\" and its connection is closed (with or without\n"
            "                     --forward)\n"
            "  --allow-file FILE  the same, one peer ID a line ('#' starts a comment)\n"
            "  --hub HOST:PORT    the hub for rendezvous (and last-resort relay); repeatable (up to\n"
            "                     8): tried in turn. Lost or refused hubs are retried with backoff\n"
            "                     (0.5 s doubling to 30 s; a full hub's hint); exit 1 when no hub\n"
            "                     answers like a natkit hub\n"
            "  --stun HOST:PORT   STUN server for the public address (repeatable: failover)\n"
            "  --turn HOST:PORT   TURN server for a relayed candidate, with --user U and its password:\n"
            "  --pass-file FILE   the first line of FILE, or $NATKIT_TURN_PASS (the environment),\n"
            "  --pass P           or this (visible to every user in `ps` until it is read)\n"
            "  --key FILE         identity key (default $XDG_CONFIG_HOME/natkit/key, made if missing)\n"
            "  --bind IP:PORT     UDP socket address (default [::]:0: IPv4 and IPv6 on one socket, any\n"
            "                     port; 0.0.0.0:PORT: IPv4 only; IPv4 alone where the host has no IPv6)\n"
            "  --keepalive S      keepalive interval on the chosen path (default 25, at most 25)\n"
            "  --cc ALGO          QUIC congestion control: cubic (default), bbr (keeps its rate under\n"
            "                     random loss) or reno\n"
            "  --hub-tls          TLS to the hub; --hub-ca FILE verifies its certificate\n"
            "  --json             status as JSON events on stderr, one object a line and nothing\n"
            "                     else: key-created, started, registered, hub-closed, hub-lost,\n"
            "                     hub-reconnecting, hub-failed, incoming,\n"
            "                     connected, path-changed, refused, tcp, stream-open, stream-closed,\n"
            "                     disconnected, warning, error (fields: docs/json-events.md)\n"
            "  --control PATH     the control socket `natkit status` asks (peers, paths, bytes; default\n"
            "                     $XDG_RUNTIME_DIR/natkit/listen-PID.sock, see natkit status --help)\n\n"
            "A wrong --stun, --turn or --pass is a warning (the connection goes on without that\n"
            "path). exit status: 0 stopped by a signal, 1 could not start (the cause named: the\n"
            "address, the file, the system's error) or stdout failed, 2 usage error\n");
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
