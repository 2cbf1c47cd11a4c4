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

static void setup_12(void) { pl_setup_mock_n(12); }

Test(pipeline, jsonl_counts_in_redis_equal_counts_from_the_file) { pl_case_end_to_end("jsonl"); }

Test(pipeline, protobuf_counts_in_redis_equal_counts_from_the_file) {
    pl_case_end_to_end("proto");
}

Test(pipeline, kill9_at_random_points_loses_nothing_and_counts_nothing_twice) { pl_case_kill9(); }

Test(pipeline, rebalance_two_processors_one_stopped_mid_stream) { pl_case_rebalance(); }

/* A second processor joins and leaves three times while the first works
 * slowly through a backlog: 12 partitions, batches of 2 and 5. */
Test(pipeline, rebalance_churn_while_a_slow_processor_has_a_backlog_in_hand,
     .init = setup_12) {
    pl_case_rebalance_churn(3);
}

Test(pipeline, redis_outage_mid_stream_loses_nothing) { pl_case_redis_outage(); }

Test(pipeline, poison_messages_go_to_the_dead_letter_topic_with_reasons) { pl_case_poison(); }

/* commit.interval_ms: the state changes of several batches go to Redis in
 * one commit. Exactly-once must hold as with a commit per batch: a kill -9
 * loses the uncommitted batches, which are consumed again; a revoke commits
 * what is in hand before the partitions go; an idle processor still commits
 * (pl_wait_all_committed waits for every offset while it runs). */
static void with_interval(const char *ms) {
    const char *args[] = {"--commit.interval_ms", ms, NULL};
    memcpy(w.extra_args, args, sizeof args);
}

Test(pipeline, kill9_with_commit_interval_loses_nothing_and_counts_nothing_twice) {
    with_interval("300");
    pl_case_kill9();
}

Test(pipeline, rebalance_with_commit_interval) {
    with_interval("300");
    pl_case_rebalance();
}

/* An interval longer than the run: nothing is committed until the stop,
 * which commits every partition once; the counts are still exact. (A batch
 * window with no message also commits -- the stream is idle -- so the
 * window is made longer than any pause in delivery.) */
Test(pipeline, commit_interval_longer_than_the_run_commits_once_at_stop) {
    const char *args[] = {"--commit.interval_ms", "600000", "--batch.max_messages", "100",
                          "--batch.max_ms", "5000", NULL};
    memcpy(w.extra_args, args, sizeof args);
    pl_case_end_to_end("jsonl");
    char log[300];
    snprintf(log, sizeof log, "%s/run.log", w.dir);
    long batches = pl_counter(log, "batches"), commits = pl_counter(log, "commits");
    cr_assert_gt(batches, 50, "batches=%ld: the run should take many batches", batches);
    cr_assert_leq(commits, 12, "commits=%ld over %ld batches: expected one per partition at stop",
                  commits, batches);
    cr_assert_gt(commits, 0);
}

/* run.stop_when_idle_ms counts from the assignment, not from start-up: a
 * processor started before its input, which joins the group (seconds on the
 * mock) and finds its partitions empty, waits for the events produced next
 * instead of stopping at once (it did, with fetches answered within 5 ms). */
Test(pipeline, stop_when_idle_counts_from_the_assignment) {
    pl_gen("jsonl", PL_NEVENTS, 0.01, 0.01);
    const char *args[] = {"--kafka.fetch.wait.max.ms", "5", NULL};
    pid_t pid = pl_processor_with(w.redis.url, "idle", 2000, "idle", args);
    char log[300];
    snprintf(log, sizeof log, "%s/idle.log", w.dir);
    pl_wait_log(log, "assigned partition", 1, 60000);
    pl_replay_all();
    cr_assert_eq(sp_t_wait(pid, 120000), 0, "processor failed");
    struct pl_oracle o = {0};
    pl_oracle_jsonl(&o);
    cr_assert_eq(pl_counter(log, "events"), o.valid, "the processor stopped before the input came");
    pl_oracle_free(&o);
}

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

/* SIGTERM finishes the batch, commits and exits 0 also when it lands while
 * the processor waits for Kafka to acknowledge a batch's outputs (here dead
 * letters) before that batch's commit may go: every broker answers 150 ms
 * late, batches are small and one commit may be in flight, so the
 * processor spends most of its time in that wait. It used to give up the
 * batch there ("stopping with the batch uncommitted") and exit 1. Each
 * stop must leave progress behind, and the final state must equal an
 * uninterrupted run. */
static void setup_slow_kafka(void) {
    sp_t_mock mock;
    cr_assert_eq(sp_t_mock_start_rtt(&mock, PL_PARTITIONS, 150), 0, "mock kafka did not start");
    pl_setup(mock.bootstrap, "shop.", PL_PARTITIONS);
    w.mock = mock;
}

Test(pipeline, sigterm_while_kafka_holds_outputs_back_commits_and_exits_0,
     .init = setup_slow_kafka) {
    pl_gen("jsonl", 6000, 0.05, 0.01);
    pl_replay_all();
    const char *args[] = {"--batch.max_messages", "50", "--commit.max_inflight", "1", NULL};
    srand(7);
    for (int round = 0; round < 4; round++) {
        char name[16], log[300];
        snprintf(name, sizeof name, "stop%d", round);
        snprintf(log, sizeof log, "%s/%s.log", w.dir, name);
        int64_t before = pl_committed_total(w.redis.url);
        pid_t pid = pl_processor_with(w.redis.url, "slow", 0, name, args);
        pl_wait_log(log, "running:", 1, 60000);
        pl_wait_progress(w.redis.url, before + 1, 120000);
        sp_t_sleep_ms(rand() % 200);
        kill(pid, SIGTERM);
        pl_expect_exit(pid, 60000, name, 0, "SIGTERM mid-stream must commit and exit 0");
        char *text = sp_t_read_file(log, NULL);
        cr_assert(text && !strstr(text, "uncommitted"), "%s gave its batch up at the stop", name);
        free(text);
        cr_assert_gt(pl_committed_total(w.redis.url), before);
    }
    pid_t pid = pl_processor_with(w.redis.url, "slow", 1500, "last", args);
    pl_expect_exit(pid, 180000, "last", 0, "the last run failed");
    char *want = pl_reference_dump();
    char *got = sp_t_dump(w.redis.url);
    if (strcmp(got, want))
        pl_log_story((const char *const[]){"stop0", "stop1", "stop2", "stop3", "last", NULL});
    cr_assert_str_eq(got, want, "state after four stops differs from an uninterrupted run: %s",
                     sp_t_first_diff(got, want));
    free(got);
    free(want);
}

/* workers = 2: two instances of two consumer threads each share 12
 * partitions; one instance is killed -9 mid-stream and restarted; the final
 * state equals an uninterrupted single-processor run. */
Test(pipeline, two_instances_of_two_workers_one_killed_and_restarted, .init = setup_12) {
    pl_gen("jsonl", PL_NEVENTS, 0.01, 0.01);
    pid_t rp = pl_replay_start("4000");
    const char *two[] = {"--workers", "2", NULL};
    pid_t a = pl_processor_with(w.redis.url, "workers", 0, "a", two);
    pid_t b = pl_processor_with(w.redis.url, "workers", 0, "b", two);
    pl_wait_progress(w.redis.url, PL_NEVENTS / 3, 120000);
    kill(a, SIGKILL);
    cr_assert_eq(sp_t_wait(a, 10000), 128 + SIGKILL);
    a = pl_processor_with(w.redis.url, "workers", 0, "a2", two);
    cr_assert_eq(sp_t_wait(rp, 60000), 0, "replay failed");
    pl_count_topics();
    pl_wait_all_committed(w.redis.url);
    kill(a, SIGTERM);
    kill(b, SIGTERM);
    cr_assert_eq(sp_t_wait(a, 30000), 0);
    cr_assert_eq(sp_t_wait(b, 30000), 0);
    char log[300];
    snprintf(log, sizeof log, "%s/b.log", w.dir);
    char *text = sp_t_read_file(log, NULL);
    cr_assert(strstr(text, "worker 1 counters:"), "instance b did not run two workers");
    /* the processing threads' CPU, a part of the process's */
    const char *tp = strstr(text, "cpu_seconds: process=");
    cr_assert(tp, "instance b printed no cpu_seconds line");
    const char *wc = strstr(tp, " workers=");
    cr_assert(wc, "no workers figure in: %.200s", tp);
    double cpu = atof(tp + 21), wcpu = atof(wc + 9);
    cr_assert(wcpu > 0 && wcpu <= cpu, "workers %f against process %f", wcpu, cpu);
    free(text);
    char *want = pl_reference_dump();
    char *got = sp_t_dump(w.redis.url);
    cr_assert_str_eq(got, want, "state with workers and a kill -9 differs from a clean run");
    free(got);
    free(want);
}
