/* Placeholders for subcommands that other branches implement, so that
 * bin/shopstream links on this branch. Each one disappears by itself once
 * the file its cli.h comment names exists (the __has_include guards), so a
 * merge cannot end up with two definitions; the lead deletes this file after
 * merging. */
#include <stdio.h>

#include "stream/cli.h"

#define SP_BRANCH_STUB(fn, name)                                                  \
    int fn(int argc, char **argv) {                                               \
        (void)argc;                                                               \
        (void)argv;                                                               \
        fprintf(stderr, "shopstream %s: not built on this branch\n", name);       \
        return 2;                                                                 \
    }

#if !__has_include("stream/run.c")
SP_BRANCH_STUB(sp_cmd_run, "run")
#endif
#if !__has_include("stream/gen.c")
SP_BRANCH_STUB(sp_cmd_gen, "gen")
#endif
#if !__has_include("stream/replay.c")
SP_BRANCH_STUB(sp_cmd_replay, "replay")
#endif
#if !__has_include("state/dump.c")
SP_BRANCH_STUB(sp_cmd_dump_state, "dump-state")
#endif
#if !__has_include("stream/mock_kafka.c")
SP_BRANCH_STUB(sp_cmd_mock_kafka, "mock-kafka")
#endif
