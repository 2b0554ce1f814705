/* natkit discover: placeholder until the STUN client driver lands. */
#include "cli.h"
int cmd_discover_main(int argc, char **argv);
int cmd_discover_main(int argc, char **argv) { (void)argc; (void)argv; return 1; }
