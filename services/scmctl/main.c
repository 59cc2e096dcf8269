/*
 * scmctl - the operator's command line (see ctl.h and README.md).
 * main() only dispatches: each subcommand lives in its own cmd_*.c file and
 * is linked weakly, so a missing one is reported instead of failing the build.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "sf_util.h"


/* Pointers to the weak symbols: a missing definition reads as NULL. */
static int (*const p_account)(int, char **) = ctl_cmd_account;
static int (*const p_sync)(int, char **) = ctl_cmd_sync;
static int (*const p_catalog)(int, char **) = ctl_cmd_catalog;
static int (*const p_import)(int, char **) = ctl_cmd_import;
static int (*const p_order)(int, char **) = ctl_cmd_order;
static int (*const p_cert)(int, char **) = ctl_cmd_cert;
static int (*const p_license)(int, char **) = ctl_cmd_license;
static int (*const p_rekey)(int, char **) = ctl_cmd_rekey;

static const struct {
    const char *name;
    int (*const *fn)(int, char **);
    const char *summary;
} commands[] = {
    {"account", &p_account, "set, show, list, default or delete a stored SCM account"},
    {"sync", &p_sync, "sync the catalog from SCM now and wait for the result"},
    {"catalog", &p_catalog, "list organizations, domains or profiles of the mirrored catalog"},
    {"import", &p_import, "import the existing SCM orders and wait for the result"},
    {"order", &p_order, "create, renew, reissue, revoke, delete or check orders"},
    {"cert", &p_cert, "list, show and export certificates of the repository"},
    {"license", &p_license, "show or set the repository's license count"},
    {"rekey", &p_rekey, "re-seal every stored secret under the primary master key"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: scmctl <command> [options]\n"
            "       scmctl <command> --help\n"
            "       scmctl --version\n\n"
            "commands:\n");
    for (size_t i = 0; i < SF_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-9s %s%s\n", commands[i].name, commands[i].summary,
                *commands[i].fn ? "" : " (not available in this build)");
    fprintf(out, "\n");
    ctl_print_common_help(out);
    fprintf(out, "\nExit status: 0 success, 1 the operation failed or timed out, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("scmctl %s\n", SCMFLOW_VERSION);
        return CTL_EXIT_OK;
    }
    for (size_t i = 0; i < SF_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (*commands[i].fn == NULL) {
            fprintf(stderr, "scmctl: command \"%s\" is not available in this build\n", argv[1]);
            return CTL_EXIT_FAIL;
        }
        return (*commands[i].fn)(argc - 1, argv + 1);
    }
    fprintf(stderr, "scmctl: unknown command \"%s\" (see scmctl --help)\n", argv[1]);
    return CTL_EXIT_USAGE;
}
