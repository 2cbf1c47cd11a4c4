/* The spine end to end against librdkafka's mock cluster (run as its own
 * process, so processors can be killed while "Kafka" lives on) and real
 * redis-servers. The cases are in tests/support/pipeline.c, shared with
 * tests/test_pipeline_kafka.c, which runs them against Apache Kafka. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/pipeline.h"

TestSuite(pipeline, .init = pl_setup_mock, .fini = pl_teardown, .timeout = 400);

Test(pipeline, jsonl_counts_in_redis_equal_counts_from_the_file) { pl_case_end_to_end("jsonl"); }

Test(pipeline, protobuf_counts_in_redis_equal_counts_from_the_file) {
    pl_case_end_to_end("proto");
}

Test(pipeline, kill9_at_random_points_loses_nothing_and_counts_nothing_twice) { pl_case_kill9(); }

Test(pipeline, rebalance_two_processors_one_stopped_mid_stream) { pl_case_rebalance(); }

Test(pipeline, redis_outage_mid_stream_loses_nothing) { pl_case_redis_outage(); }

Test(pipeline, poison_messages_go_to_the_dead_letter_topic_with_reasons) { pl_case_poison(); }

/* SIGUSR1 prints the counters while running; SIGTERM finishes, commits,
 * leaves the group and exits 0. */
Test(pipeline, sigusr1_prints_counters_and_sigterm_exits_cleanly) {
    pl_gen("jsonl", 2000, 0.01, 0.01);
    pl_replay_all();
    pid_t pid = pl_processor(w.redis.url, "signals", 0, "signals");
    pl_wait_all_committed(w.redis.url);
    char log[300];
    snprintf(log, sizeof log, "%s/signals.log", w.dir);
    kill(pid, SIGUSR1);
    char *text = NULL;
    for (int i = 0; i < 100; i++) {
        free(text);
        text = sp_t_read_file(log, NULL);
        if (text && strstr(text, "counters:")) break;
        sp_t_sleep_ms(50);
    }
    cr_assert(text && strstr(text, "counters:"), "no counters after SIGUSR1");
    free(text);
    cr_assert_eq(sp_t_wait(pid, 300), -1, "the processor must keep running after SIGUSR1");
    kill(pid, SIGTERM);
    cr_assert_eq(sp_t_wait(pid, 30000), 0, "SIGTERM must end the processor with status 0");
    text = sp_t_read_file(log, NULL);
    cr_assert(strstr(text, "revoked"), "the processor did not hand its partitions back");
    free(text);
}
