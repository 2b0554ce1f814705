/* natkit CLI: the subcommand table. Add one line per command. */
#include "cli.h"

int cmd_accept_main(int argc, char **argv);
int cmd_connect_main(int argc, char **argv);
int cmd_dial_main(int argc, char **argv);
int cmd_discover_main(int argc, char **argv);
int cmd_hub_main(int argc, char **argv);
int cmd_keygen_main(int argc, char **argv);
int cmd_listen_main(int argc, char **argv);
int cmd_nat_type_main(int argc, char **argv);
int cmd_status_main(int argc, char **argv);
int cmd_stun_server_main(int argc, char **argv);
int cmd_turn_check_main(int argc, char **argv);
int cmd_turn_server_main(int argc, char **argv);
int cmd_turn_user_main(int argc, char **argv);

const cli_cmd cli_commands[] = {
    {"accept", cmd_accept_main, "wait for one `natkit dial`, upgrade to a sealed TCP stream, pipe stdin/stdout"},
    {"connect", cmd_connect_main, "connect to a peer by ID (direct, else TURN, else hub relay), encrypted"},
    {"dial", cmd_dial_main, "reach a `natkit accept` at IP:PORT over UDP, then a sealed TCP stream"},
    {"discover", cmd_discover_main, "find this host's public (mapped) address with STUN"},
    {"hub", cmd_hub_main, "run a hub: peers register by ID, exchange signalling and relay packets"},
    {"keygen", cmd_keygen_main, "make an identity key pair and print its peer ID"},
    {"listen", cmd_listen_main, "accept connections from peers by ID at a hub"},
    {"nat-type", cmd_nat_type_main, "find how the NAT behaves (RFC 5780 mapping, filtering, hairpinning, ...)"},
    {"status", cmd_status_main, "show what running listen/connect/hub processes hold: peers, paths, bytes"},
    {"stun-server", cmd_stun_server_main, "run a STUN server (RFC 5780 with --alt-ip)"},
    {"turn-check", cmd_turn_check_main, "allocate on a TURN server and measure echoes through the relay"},
    {"turn-server", cmd_turn_server_main, "run a TURN relay server (RFC 8656; UDP, TCP, TLS)"},
    {"turn-user", cmd_turn_user_main, "add, delete, list TURN users and REST secrets in coturn's SQLite/Redis/PostgreSQL userdb"},
    {NULL, NULL, NULL},
};
