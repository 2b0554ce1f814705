/* natkit connect: connect to a peer by ID; stdin/stdout as a byte stream, or --local port forwarding. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "p2p.h"

int cmd_connect_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit connect PEER_ID (--hub HOST:PORT | --peer IP:PORT) [--stun HOST:PORT]...\n"
            "                      [--turn HOST:PORT --user U [--pass-file FILE]]\n"
            "                      [--key FILE] [--bind IP:PORT] [--keepalive SECONDS] [--cc ALGO] [--timeout SECONDS]\n"
            "                      [--hub-tls [--hub-ca FILE]] [--tcp | --local IP:PORT] [--json]\n\n"
            "Connects to the peer with this ID (it runs `natkit listen` at the same hub) over\n"
            "the best path there is: direct, else TURN, else the hub's relay, end-to-end\n"
            "encrypted and authenticated (QUIC, both peer IDs proven in the handshake).\n\n"
            "stdin and stdout are a byte stream to the peer (one QUIC stream): the bytes of\n"
            "stdin arrive on the listener's stdout exactly as they were (binary-safe, nothing\n"
            "buffered: what one read() gets goes out at once), and what the listener sends\n"
            "comes out on stdout. Backpressure both ways: stdin is read only as fast as the\n"
            "peer takes it, and while stdout is not read the peer is held back. At the end of\n"
            "stdin the stream is ended; connect exits 0 once the peer has everything: it has\n"
            "written every byte and the end to its stdout (or its --forward service) and told\n"
            "us so, and it ended its side too (each side ends independently). It exits 1\n"
            "when the peer is lost first, saying why, how much was not acknowledged and\n"
            "whether the peer had confirmed the delivery (a listener that stops says so:\n"
            "\"peer ID closed the connection: stopped\"; so does connect to the listener when\n"
            "it is stopped itself).\n"
            "Status goes to stderr (with --json one JSON object a line and nothing else:\n"
            "key-created, started, registered, hub-closed, hub-lost, hub-reconnecting,\n"
            "hub-failed, waiting, local, connected, path-changed,\n"
            "tcp, stream-open, stream-closed, stream-end, done, refused, disconnected,\n"
            "warning, error; fields: docs/json-events.md). A wrong --stun, --turn or --pass is\n"
            "a warning; connecting to our own ID is a usage error.\n\n"
            "  --local IP:PORT    port forwarding: instead of stdin/stdout, listen on this local\n"
            "                     TCP address and carry each connection accepted there to the\n"
            "                     peer on a stream of its own; the peer (`natkit listen --forward\n"
            "                     HOST:PORT --allow OUR_ID`) connects each one to its service.\n"
            "                     Half-closes and resets pass through. Runs until interrupted\n"
            "                     (exit 0) or the peer is lost (exit 1); a listener that does not\n"
            "                     allow us refuses the connection (\"refused by the listener: not\n"
            "                     allowed\", exit 1). Example: natkit connect ID --hub H:P --local\n"
            "                     127.0.0.1:2222, then ssh -p 2222 localhost\n"
            "  --timeout S        give up when not connected after S seconds (default 30); a\n"
            "                     peer not registered at the hub (yet) is asked for again\n"
            "                     until then (JSON: a \"waiting\" event)\n"
            "  --hub HOST:PORT    the hub (repeatable, up to 8: tried in turn; reconnected with backoff)\n"
            "  --peer IP:PORT     no hub: the peer's public address, exchanged by hand. Both sides\n"
            "                     run `natkit connect OTHER_ID --peer OTHER_IP:PORT --bind 0.0.0.0:PORT`\n"
            "                     within a few seconds of each other; `natkit discover --bind\n"
            "                     0.0.0.0:PORT` tells each side its public IP:PORT to share\n"
            "  --tcp              once on a direct path, move the data to a kernel TCP stream:\n"
            "                     both sides connect at the same moment (TCP simultaneous open,\n"
            "                     from the UDP socket's port, timed over the connection), sealed\n"
            "                     with keys from the QUIC handshake; stdin waits until it is up.\n"
            "                     When no SYN gets through (e.g. a NAT that changes ports) or the\n"
            "                     path is not direct, it says so and the bytes go over the QUIC\n"
            "                     stream as without --tcp. The listener answers by itself.\n"
            "  (the other options are as for `natkit listen`, --control too: `natkit status`\n"
            "  shows this connection's path, RTT and bytes; see natkit listen --help)\n\n"
            "exit status: 0 done, 1 could not connect, refused, lost the peer, or stopped by\n"
            "SIGINT/SIGTERM before the transfer ended (with --local: 0), 2 usage error\n");
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
