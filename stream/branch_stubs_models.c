/* Branch-only stand-ins (models branch): the subcommands other branches
 * implement, so that bin/shopstream links here. Weak, so a real definition
 * wins; the lead deletes this file when merging. */
#include <stdio.h>

#include "stream/cli.h"

#define STUB(fn)                                                                     \
    __attribute__((weak)) int fn(int argc, char **argv) {                           \
        (void)argc;                                                                  \
        fprintf(stderr, "%s: not built on this branch\n", argv[0]);                  \
        return 2;                                                                    \
    }

STUB(sp_cmd_run)
STUB(sp_cmd_gen)
STUB(sp_cmd_replay)
STUB(sp_cmd_dump_state)
STUB(sp_cmd_mock_kafka)
