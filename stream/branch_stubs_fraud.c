/* LEAD: DELETE THIS FILE ON MERGE. The skeleton's command table names
 * subcommands that other branches implement; these stand-ins exist only so
 * that bin/shopstream links (and `make test` runs) on the fraud branch
 * alone. Each says so and fails. */
#include <stdio.h>

#include "stream/cli.h"

static int not_here(const char *name) {
    fprintf(stderr, "shopstream %s: not built on this branch\n", name);
    return 1;
}

int sp_cmd_run(int argc, char **argv) { (void)argc; (void)argv; return not_here("run"); }
int sp_cmd_gen(int argc, char **argv) { (void)argc; (void)argv; return not_here("gen"); }
int sp_cmd_replay(int argc, char **argv) { (void)argc; (void)argv; return not_here("replay"); }
int sp_cmd_dump_state(int argc, char **argv) { (void)argc; (void)argv; return not_here("dump-state"); }
int sp_cmd_mock_kafka(int argc, char **argv) { (void)argc; (void)argv; return not_here("mock-kafka"); }
