/* Placeholders for the subcommands other branches implement (run,
 * dump-state, mock-kafka), so that this branch links and its tests run on
 * their own. The lead deletes this file when merging: a duplicate definition
 * at link time is the reminder. */
#include <stdio.h>

#include "stream/cli.h"

static int pending(const char *name) {
    fprintf(stderr, "shopstream %s: not built on this branch\n", name);
    return 2;
}

int sp_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return pending("run");
}

int sp_cmd_dump_state(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return pending("dump-state");
}

int sp_cmd_mock_kafka(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return pending("mock-kafka");
}
