/* natkit keygen: make an identity key pair and print its peer ID. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "natkit/identity.h"

int cmd_keygen_main(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out, "usage: natkit keygen [--out FILE] [--force]\n"
                 "       natkit keygen --show [FILE]\n\n"
                 "Makes a new identity key pair, writes it to FILE (mode 0600) and prints the\n"
                 "peer ID (52 base32 characters) that other peers use to reach this one.\n\n"
                 "  --out FILE  where to write the key (default $XDG_CONFIG_HOME/natkit/key,\n"
                 "              or ~/.config/natkit/key)\n"
                 "  --force     replace an existing key file (its identity is lost)\n"
                 "  --show      print the peer ID of an existing key (FILE, or the default key)\n"
                 "              without changing it\n\n"
                 "A key file that others than its owner may read or change (any group or other\n"
                 "permission, e.g. mode 0644) is refused by every command that loads it, --show\n"
                 "too: chmod 600 it.\n\n"
                 "exit status: 0 written (or shown), 1 could not write (or the file exists), or\n"
                 "could not read the key, 2 usage error\n");
}

/* keygen --show: the ID of an existing key, read the way connect/listen read it (mode checked). */
static int show_id(const char *file)
{
    nk_identity id;
    char text[NK_PEER_ID_STRLEN];
    if (cli_load_key("keygen", file, &id) != 0)
        return CLI_EXIT_FAIL;
    nk_peer_id_format(&id.id, text, sizeof(text));
    nk_identity_wipe(&id);
    printf("%s\n", text);
    return CLI_EXIT_OK;
}

int cmd_keygen_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"show", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char path[PATH_MAX];
    const char *out = NULL;
    int force = 0, show = 0, ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+o:fsh", opts, NULL)) != -1) {
        switch (ch) {
        case 'o':
            if (optarg[0] == '\0')
                return cli_usage_error("keygen", "--out needs a file name");
            out = optarg;
            break;
        case 'f':
            force = 1;
            break;
        case 's':
            show = 1;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_usage_error("keygen", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (show && optind < argc && out == NULL)
        out = argv[optind++]; /* keygen --show FILE */
    if (optind < argc)
        return cli_usage_error("keygen", "unexpected argument '%s'", argv[optind]);
    if (show && force)
        return cli_usage_error("keygen", "--show changes nothing: no --force with it");
    if (out == NULL) {
        if (nk_identity_default_path(path, sizeof(path)) != 0) {
            fprintf(stderr, "natkit keygen: no default key path (set XDG_CONFIG_HOME or HOME, or use --out)\n");
            return CLI_EXIT_FAIL;
        }
        out = path;
    }
    if (show)
        return show_id(out);

    nk_identity id;
    if (nk_identity_generate(&id) != 0) {
        fprintf(stderr, "natkit keygen: could not generate a key\n");
        return CLI_EXIT_FAIL;
    }
    int rc = nk_identity_save_ex(&id, out, force ? 0 : NK_IDENTITY_NO_OVERWRITE);
    char text[NK_PEER_ID_STRLEN];
    nk_peer_id_format(&id.id, text, sizeof(text));
    nk_identity_wipe(&id);
    if (rc == NK_ERR_DENIED) {
        fprintf(stderr, "natkit keygen: %s exists; not replacing it (use --force)\n", out);
        return CLI_EXIT_FAIL;
    }
    if (rc != 0) {
        return cli_fail("keygen", CLI_EXIT_FAIL, rc == NK_ERR_SYSTEM ? errno : 0, "cannot write %s%s%s", out,
                        rc == NK_ERR_SYSTEM ? "" : ": ", rc == NK_ERR_SYSTEM ? "" : nk_strerror(rc));
    }
    printf("%s\n", text);
    fprintf(stderr, "natkit keygen: wrote %s\n", out);
    return CLI_EXIT_OK;
}
