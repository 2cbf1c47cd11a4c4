#ifndef TESTS_SUPPORT_PIPELINE_H
#define TESTS_SUPPORT_PIPELINE_H

/* The end-to-end cases of the spine, written once and run against each
 * Kafka endpoint: tests/test_pipeline.c (librdkafka's mock cluster as a
 * process) and tests/test_pipeline_kafka.c (a real Apache Kafka broker).
 * Each case generates events, replays them into the world's topics, runs
 * processors, and compares the state in Redis with counts computed straight
 * from the generated file, or with the state of an uninterrupted run. */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/support/harness.h"

#define PL_PARTITIONS 6
#define PL_NEVENTS 12000

struct pl_world {
    char bootstrap[256];
    char prefix[64];            /* topic prefix: "shop." or one per test */
    char topic_buf[3][96];      /* <prefix>clicks, orders, reviews */
    const char *topic_names[3];
    char inputs[300];           /* the three, comma-separated */
    char dlq[96];               /* <prefix>deadletter */
    int partitions;
    const char *xprops[8];      /* NULL-terminated "prop=value" for -X (SASL) */
    const char *extra_args[24]; /* NULL-terminated, appended to every pl_processor's argv */
    sp_t_mock mock;             /* when the world owns a mock cluster */
    sp_t_redis redis;           /* the run under test */
    sp_t_redis reference;       /* an uninterrupted run */
    char dir[256];
    char data[300], truth[300];
    int64_t per_topic[3];       /* records produced to each input topic */
};

extern struct pl_world w;

struct pl_user_counts {
    char user[64];
    long n[8];  /* view click add_to_cart remove_from_cart search order review events */
};

struct pl_oracle {
    struct pl_user_counts *u;
    size_t nu;
    char **seen;
    size_t nseen;
    long valid, dups, malformed;
};

/* World lifecycle: pl_setup takes an existing endpoint whose topics exist
 * (<prefix>clicks/orders/reviews/deadletter with `partitions` partitions);
 * pl_setup_mock starts a mock cluster of its own. */
void pl_setup(const char *bootstrap, const char *prefix, int partitions);
void pl_setup_mock(void);
void pl_setup_mock_n(int partitions);
void pl_teardown(void);
void pl_apply_xprops(rd_kafka_conf_t *conf);

void pl_gen(const char *format, int events, double malformed, double dups);
pid_t pl_replay_start(const char *rate);
void pl_count_topics(void);
void pl_replay_all(void);
pid_t pl_processor(const char *url, const char *group, int idle_ms, const char *name);
/* The same with extra arguments (NULL-terminated), e.g. "--workers", "2". */
pid_t pl_processor_with(const char *url, const char *group, int idle_ms, const char *name,
                        const char *const *extra);
char *pl_reference_dump(void);
int64_t pl_committed_total(const char *url);
void pl_wait_all_committed(const char *url);
void pl_wait_progress(const char *url, int64_t at_least, int timeout_ms);
void pl_oracle_jsonl(struct pl_oracle *o);
void pl_oracle_proto(struct pl_oracle *o);
void pl_assert_counts_match(const char *dump, struct pl_oracle *o);
void pl_oracle_free(struct pl_oracle *o);
long pl_counter(const char *log, const char *name);
/* Waits until `log` holds `what` `count` times (fails the test after
 * timeout_ms). Signals and assignments are seen in the log, not guessed from
 * progress: commits are pipelined, so the committed offsets can run behind
 * the batch that handled a signal. */
void pl_wait_log(const char *log, const char *what, int count, int timeout_ms);
/* Waits for the processor started as `name`; when it did not exit with
 * `want`, the last lines of its log go into the test's output (a sanitizer
 * report or the error that stopped it is there) and the test fails. */
void pl_expect_exit(pid_t pid, int timeout_ms, const char *name, int want, const char *what);
/* Logs (cr_log_error) the rebalance, fencing, warning and counter lines of
 * the named processors' logs and where the test's files are kept: what a
 * state-equality failure needs to be understood after the fact. */
void pl_log_story(const char *const *names);

/* The cases. */
void pl_case_end_to_end(const char *format);
void pl_case_kill9(void);
void pl_case_rebalance(void);
void pl_case_rebalance_churn(int cycles);
void pl_case_redis_outage(void);
void pl_case_poison(void);

/* Cases for a real broker (tests/test_pipeline_kafka.c). */
long pl_check_deadletters_at_least_once(void);
void pl_case_group_kill9(int kills);
void pl_case_broker_restart(int (*restart)(void *ctx), void *ctx);

#endif
