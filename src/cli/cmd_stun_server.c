/* natkit stun-server: placeholder until the server driver lands. */
#include "cli.h"
int cmd_stun_server_main(int argc, char **argv);
int cmd_stun_server_main(int argc, char **argv) { (void)argc; (void)argv; return 1; }
