/* natkit accept: wait for one `natkit dial`, upgrade its QUIC session to TCP, pass stdin/stdout over it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "direct.h"

int cmd_accept_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit accept [--advertise-ip IP] [--port P] [--tcp-port P] [--key FILE] [--udp-only]\n\n"
            "Waits for one `natkit dial` (for a host that is reachable: public address or\n"
            "full-cone NAT). Binds UDP on every address and prints, on stderr,\n"
            "  UDP listen addr to share: IP:PORT\n"
            "(IP is --advertise-ip, else the first non-loopback IPv4 address here). When the\n"
            "dialer has punched through and the secure session is up (QUIC over UDP, both\n"
            "sides proving their peer IDs in TLS 1.3; the dialer's ID is printed: compare it),\n"
            "a TCP listener opens and its port is announced over the QUIC session; QUIC\n"
            "keepalives hold the UDP mapping meanwhile. The dialer connects; the TCP stream is\n"
            "sealed with keys from QUIC's exporter, so a connection from anyone else is refused.\n"
            "Then stdin goes to the peer and what it sends is written on stdout; status goes to\n"
            "stderr. If TCP fails, the data goes over a QUIC stream on UDP instead; if only one\n"
            "side runs --udp-only, both use UDP. Ends when both sides have finished sending (end\n"
            "of stdin) and each has the other's data: exit 0 only once the dialer has written\n"
            "every byte of ours and the end to its stdout and told us so (and we did the same);\n"
            "exit 1 when the dialer is lost first, saying whether it had confirmed our bytes.\n"
            "Both sides must be this version (an older peer never confirms: exit 1).\n"
            "stdout is written without blocking: while nobody reads it, the peer is held back\n"
            "(backpressure; nothing is lost) and our own direction goes on.\n\n"
            "  --advertise-ip IP  the IP to print (and announce for TCP) instead of a local one\n"
            "  --port P           UDP port (default: chosen by the kernel)\n"
            "  --tcp-port P       TCP port (default: chosen by the kernel)\n"
            "  --key FILE         identity (default: natkit's key, made when missing)\n"
            "  --udp-only         no TCP upgrade; data over the QUIC session on UDP\n\n"
            "exit status: 0 done, 1 failed, 2 usage error. Stopped by SIGINT/SIGTERM: 0 if no data\n"
            "was lost (the peer had confirmed all we read from stdin on its stdout, and its own data\n"
            "had ended and was all on ours), else 1.\n");
}

int cmd_accept_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"advertise-ip", required_argument, NULL, 'a'}, {"port", required_argument, NULL, 'p'},
        {"tcp-port", required_argument, NULL, 't'},     {"key", required_argument, NULL, 'k'},
        {"udp-only", no_argument, NULL, 'U'},           {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    direct_opts o;
    long v;
    int ch;
    memset(&o, 0, sizeof(o));
    o.cmd = "accept";
    o.acceptor = 1;
    nk_addr_parse(&o.bind, "0.0.0.0:0");
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "a:p:t:k:Uh", opts, NULL)) != -1) {
        switch (ch) {
        case 'a':
            if (nk_addr_parse_ip(&o.advertise, optarg) != 0)
                return cli_usage_error(o.cmd, "--advertise-ip '%s': not an IP address", optarg);
            break;
        case 'p':
            if (cli_parse_long(optarg, 1, 65535, &v) != 0)
                return cli_usage_error(o.cmd, "--port '%s': want 1..65535", optarg);
            o.bind.port = (uint16_t)v;
            break;
        case 't':
            if (cli_parse_long(optarg, 1, 65535, &v) != 0)
                return cli_usage_error(o.cmd, "--tcp-port '%s': want 1..65535", optarg);
            o.tcp_port = (uint16_t)v;
            break;
        case 'k':
            o.key_file = optarg;
            break;
        case 'U':
            o.no_tcp = 1;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_usage_error(o.cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(o.cmd, "unexpected argument '%s'", argv[optind]);
    return direct_run(&o);
}
