/* shopstream: entry point. Dispatches to one subcommand per table row; adding
 * a subcommand is a function in its module and one line here. */
#include <stdio.h>
#include <string.h>

#include "stream/cli.h"

struct sp_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct sp_command commands[] = {
    {"run", sp_cmd_run, "run the stream processor (Kafka in -> Redis state -> Kafka out)"},
    {"gen", sp_cmd_gen, "generate a deterministic synthetic shop event stream"},
    {"replay", sp_cmd_replay, "produce a file of events into the input topics"},
    {"dump-state", sp_cmd_dump_state, "print every key in the state store, canonical and sorted"},
    {"mock-kafka", sp_cmd_mock_kafka, "run librdkafka's mock Kafka cluster as a process"},
    {"bench-consume", sp_cmd_bench_consume, "raw consume rate of the input topics (no processing)"},
    {"topics", sp_cmd_topics, "create, delete or list Kafka topics (admin API)"},
    {"train", sp_cmd_train, "train a recommendation model (gru, sasrec, mf) into a model file"},
    {"eval", sp_cmd_eval, "rank held-out items with a model or a baseline: HR, NDCG, Recall, MRR"},
    {"sentiment", sp_cmd_sentiment, "score review text with the lexicon or a learned model"},
    {"fraud", sp_cmd_fraud, "train and evaluate the fraud scorer on handbook-format CSVs"},
    {"eval-fraud", sp_cmd_eval_fraud, "fraud eval on one handbook-format CSV (issue 6 spelling)"},
    {"inspect", sp_cmd_inspect, "one user's profile and recommendations, or an item's factors, as JSON"},
    {"score-series", sp_cmd_score_series, "KPI anomaly score for each row of a timestamp,value CSV"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: shopstream <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'shopstream <command> --help' describes each command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "shopstream: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
