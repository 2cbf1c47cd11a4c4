#ifndef STREAM_CLI_H
#define STREAM_CLI_H

/* Subcommands of the shopstream binary. Each takes the arguments after its
 * own name (argv[0] is the subcommand name) and returns the process exit
 * status: 0 success, 1 runtime failure, 2 usage or config error. */
int sp_cmd_run(int argc, char **argv);        /* stream/run.c */
int sp_cmd_gen(int argc, char **argv);        /* stream/gen.c */
int sp_cmd_replay(int argc, char **argv);     /* stream/replay.c */
int sp_cmd_dump_state(int argc, char **argv); /* state/dump.c */
int sp_cmd_mock_kafka(int argc, char **argv); /* stream/mock_kafka.c */
int sp_cmd_bench_consume(int argc, char **argv); /* stream/bench_consume.c */
int sp_cmd_train(int argc, char **argv);      /* models/cli.c */
int sp_cmd_eval(int argc, char **argv);       /* models/cli.c */
int sp_cmd_topics(int argc, char **argv);     /* stream/admin.c */
int sp_cmd_inspect(int argc, char **argv);    /* state/inspect.c */

int sp_cmd_sentiment(int argc, char **argv);  /* models/sentiment_cli.c */
int sp_cmd_fraud(int argc, char **argv);      /* models/fraud_cli.c */
int sp_cmd_eval_fraud(int argc, char **argv); /* models/fraud_cli.c */
int sp_cmd_score_series(int argc, char **argv); /* models/anomaly_cli.c */

#endif
