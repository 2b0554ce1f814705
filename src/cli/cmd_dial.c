/* natkit dial: reach a `natkit accept`, upgrade the QUIC session to TCP, pass stdin/stdout over it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "direct.h"

int cmd_dial_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: natkit dial [IP:PORT] [--peer-id ID] [--key FILE] [--bind IP:PORT] [--timeout S] [--udp-only]\n\n"
            "Reaches `natkit accept` at IP:PORT (the \"UDP listen addr to share\" it printed;\n"
            "asked for on stdin when not given). Punches over UDP, learns the acceptor's peer\n"
            "ID from its first answer (trust on first use: compare it with what the acceptor\n"
            "printed, or pin it with --peer-id), runs the secure session (QUIC over UDP; TLS 1.3\n"
            "refuses an acceptor without that ID's key), prints both peer IDs and how our NAT\n"
            "mapped us, then connects to the TCP port the acceptor announces (the stream is\n"
            "sealed with keys from QUIC's exporter). stdin goes to the peer; what it sends is\n"
            "written on stdout; status on stderr. If TCP fails, or either side runs --udp-only,\n"
            "the data goes over a QUIC stream on UDP. Ends when both sides have finished sending\n"
            "(end of stdin) and each has the other's data: exit 0 only once the acceptor has\n"
            "written every byte of ours and the end to its stdout and told us so (and we did the\n"
            "same); exit 1 when the acceptor is lost first, saying whether it had confirmed our\n"
            "bytes. Both sides must be this version (an older peer never confirms: exit 1).\n"
            "stdout is written without blocking: while nobody reads it, the peer is held back\n"
            "(backpressure; nothing is lost) and our own direction goes on.\n\n"
            "  --peer-id ID       refuse any acceptor but this one\n"
            "  --bind IP:PORT     local UDP address (default 0.0.0.0:0)\n"
            "  --timeout S        give up when the session is not up after S seconds (default 15)\n"
            "  --key FILE         identity (default: natkit's key, made when missing)\n"
            "  --udp-only         no TCP upgrade; data over the QUIC session on UDP\n\n"
            "exit status: 0 done, 1 failed, 2 usage error. Stopped by SIGINT/SIGTERM: 0 if no data\n"
            "was lost (the peer had confirmed all we read from stdin on its stdout, and its own data\n"
            "had ended and was all on ours), else 1.\n");
}

/* The address from stdin: one line, read byte by byte so that nothing after it is buffered away. */
static int prompt_addr(nk_addr *out)
{
    char line[256];
    size_t n = 0;
    fprintf(stderr, "acceptor's UDP address (IP:PORT): ");
    fflush(stderr);
    while (n < sizeof(line) - 1 && read(STDIN_FILENO, line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    line[strcspn(line, "\r")] = '\0';
    return nk_addr_resolve(out, line, 0) == 0 && out->port != 0 ? 0 : -1;
}

int cmd_dial_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"peer-id", required_argument, NULL, 'i'}, {"key", required_argument, NULL, 'k'},
        {"bind", required_argument, NULL, 'b'},    {"timeout", required_argument, NULL, 'w'},
        {"udp-only", no_argument, NULL, 'U'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    direct_opts o;
    int ch;
    memset(&o, 0, sizeof(o));
    o.cmd = "dial";
    o.timeout_ms = 15000;
    nk_addr_parse(&o.bind, "0.0.0.0:0");
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "i:k:b:w:Uh", opts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            if (nk_peer_id_parse(&o.peer_id, optarg) != 0)
                return cli_usage_error(o.cmd, "--peer-id '%s': not a peer ID (52 base32 characters)", optarg);
            o.have_peer_id = 1;
            break;
        case 'k':
            o.key_file = optarg;
            break;
        case 'b':
            if (nk_addr_parse(&o.bind, optarg) != 0)
                return cli_usage_error(o.cmd, "--bind '%s': want IP:PORT", optarg);
            break;
        case 'w':
            if (cli_parse_seconds(optarg, 1000, 3600 * 1000, &o.timeout_ms) != 0)
                return cli_usage_error(o.cmd, "--timeout '%s': want seconds between 1 and 3600", optarg);
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
    if (optind < argc) {
        if (nk_addr_resolve(&o.peer, argv[optind], 0) != 0 || o.peer.port == 0)
            return cli_usage_error(o.cmd, "'%s': not an IP:PORT", argv[optind]);
        optind++;
    } else if (prompt_addr(&o.peer) != 0) {
        return cli_usage_error(o.cmd, "no acceptor address (want IP:PORT)");
    }
    if (optind < argc)
        return cli_usage_error(o.cmd, "unexpected argument '%s'", argv[optind]);
    return direct_run(&o);
}
