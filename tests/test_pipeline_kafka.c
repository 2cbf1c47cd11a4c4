/* The spine end to end against a real Apache Kafka 4.x broker
 * (deploy/local/kafka.sh): the six cases of tests/test_pipeline.c, then
 * what only a real broker can show -- three processors in one group killed
 * at random while events arrive, a broker restart mid-stream, and SASL/PLAIN
 * with the right and a wrong password.
 *
 * Three brokers are started together once for the whole binary, in the
 * Criterion runner (tests run in child processes, so they find them through
 * the environment): "plain" for every case that leaves the broker alone,
 * each test on its own topic prefix t<pid>. created with the admin API;
 * "restart", which only the broker-restart case uses, so restarting it
 * disturbs nobody whatever order the tests run in; and "sasl", whose only
 * listener is SASL_PLAINTEXT. With no Java 17 on the machine every test here
 * fails, saying so: these tests are part of `make test`, not optional. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/kafka_broker.h"
#include "tests/support/pipeline.h"

#define SASL_USER "shop-pipe"
#define SASL_PASS "pw-Pl7rQx2mVb" /* unique, so a leak is found by grep */
#define WRONG_PASS "pw-Nope93Kdw"
#define GROUP_PARTITIONS 12

static sp_test_broker *brokers[3];
static const char *const broker_names[3] = {"plain", "restart", "sasl"};

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
    char err[1024];
    (void)set;
    if (!sp_test_broker_available(err, sizeof err)) {
        setenv("SP_TEST_KAFKA_ERROR", err, 1);
        return;
    }
    const char *sasl[] = {NULL, NULL, SASL_USER ":" SASL_PASS};
    if (sp_test_brokers_start(3, sasl, brokers, err, sizeof err)) {
        setenv("SP_TEST_KAFKA_ERROR", err, 1);
        return;
    }
    for (int i = 0; i < 3; i++) sp_test_broker_export(brokers[i], broker_names[i]);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    for (int i = 0; i < 3; i++) sp_test_broker_stop(brokers[i]);
}

/* The broker published by the runner, or a test failure naming why there
 * is none (no Java, or it did not start). The handle does not own it. */
static sp_test_broker *need_broker(const char *name) {
    const char *why = getenv("SP_TEST_KAFKA_ERROR");
    if (why) cr_assert_fail("no Kafka broker: %s", why);
    sp_test_broker *b = sp_test_broker_from_env(name);
    if (!b) cr_assert_fail("no Kafka broker '%s' was published by the test runner", name);
    return b;
}

static const char *const sasl_conf[] = {
    "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN", "sasl.username=" SASL_USER,
    "sasl.password=" SASL_PASS, NULL};

static sp_test_broker *world_broker; /* the test's handle, freed by teardown */

/* Creates this test's four topics (prefix t<pid>.) on the named broker with
 * the admin API and sets up the world on them; xprops (SASL) go to every
 * client of the world. */
static void setup_on(const char *name, int partitions, const char *const *xprops) {
    world_broker = need_broker(name);
    const char *bs = sp_test_broker_bootstrap(world_broker);
    char prefix[32], names[4][96], err[512];
    snprintf(prefix, sizeof prefix, "t%d.", (int)getpid());
    static const char *kinds[] = {"clicks", "orders", "reviews", "deadletter"};
    const char *list[4];
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof names[i], "%s%s", prefix, kinds[i]);
        list[i] = names[i];
    }
    if (sp_test_create_topics(bs, list, 4, partitions, xprops, err, sizeof err)) {
        /* The runner deletes the broker's directory at the end: its log's
         * last lines now, for the post-mortem (a broker that was up at the
         * start and gone by this test, once). */
        char path[1200];
        snprintf(path, sizeof path, "%s/kafka.log", sp_test_broker_dir(world_broker));
        char *log = sp_t_read_file(path, NULL);
        size_t n = log ? strlen(log) : 0;
        cr_assert_fail("creating the topics: %s\n-- the last lines of %s:\n%s", err, path,
                       log ? log + (n > 3000 ? n - 3000 : 0) : "(cannot read it)");
    }
    pl_setup(bs, prefix, partitions);
    for (int i = 0; xprops && xprops[i] && i < 7; i++) w.xprops[i] = xprops[i];
}

static void setup_plain(void) { setup_on("plain", PL_PARTITIONS, NULL); }
static void setup_group(void) { setup_on("plain", GROUP_PARTITIONS, NULL); }
static void setup_restart(void) { setup_on("restart", PL_PARTITIONS, NULL); }
static void setup_sasl(void) { setup_on("sasl", PL_PARTITIONS, sasl_conf); }

static void teardown(void) {
    pl_teardown();
    sp_test_broker_stop(world_broker);
    world_broker = NULL;
}

/* ------------------------------------------- the spine's six cases */

TestSuite(pipeline_kafka, .init = setup_plain, .fini = teardown, .timeout = 400);

Test(pipeline_kafka, jsonl_counts_in_redis_equal_counts_from_the_file) {
    pl_case_end_to_end("jsonl");
}

Test(pipeline_kafka, protobuf_counts_in_redis_equal_counts_from_the_file) {
    pl_case_end_to_end("proto");
}

Test(pipeline_kafka, kill9_at_random_points_loses_nothing_and_counts_nothing_twice) {
    pl_case_kill9();
}

Test(pipeline_kafka, rebalance_two_processors_one_stopped_mid_stream) { pl_case_rebalance(); }

Test(pipeline_kafka, redis_outage_mid_stream_loses_nothing) { pl_case_redis_outage(); }

Test(pipeline_kafka, poison_messages_go_to_the_dead_letter_topic_with_reasons) {
    pl_case_poison();
}

/* A partition with no offset in Redis is read from the start of its log,
 * also when retention has moved that start past 0: run assigns such
 * partitions offset 0 (saving a ListOffsets round trip each), and the
 * broker's OFFSET_OUT_OF_RANGE must bring it to the log start
 * (auto.offset.reset=earliest), not to the end and not to an error. */
Test(pipeline_kafka, partitions_whose_log_no_longer_starts_at_0_are_read_from_their_start) {
    pl_gen("jsonl", 3000, 0, 0);
    pl_replay_all();
    char err[512];
    long gone = sp_test_delete_records(w.bootstrap, w.topic_names[0], w.partitions, 100, err,
                                       sizeof err);
    cr_assert_geq(gone, 0, "%s", err);
    cr_assert_gt(gone, 0, "no record was deleted");
    pid_t pid = pl_processor(w.redis.url, "trimmed", 1500, "trimmed");
    pl_expect_exit(pid, 120000, "trimmed", 0, "the processor failed on a trimmed log");
    for (int t = 0; t < 3; t++)
        cr_assert_eq(sp_t_committed(w.redis.url, w.topic_names[t]), w.per_topic[t],
                     "topic %s: committed %lld of %lld", w.topic_names[t],
                     (long long)sp_t_committed(w.redis.url, w.topic_names[t]),
                     (long long)w.per_topic[t]);
    char log[300];
    snprintf(log, sizeof log, "%s/trimmed.log", w.dir);
    long total = (long)(w.per_topic[0] + w.per_topic[1] + w.per_topic[2]);
    cr_assert_eq(pl_counter(log, "messages"), total - gone,
                 "read %ld messages; %ld were produced and %ld deleted", pl_counter(log, "messages"),
                 total, gone);
}

/* ------------------------------------ what only a real broker shows */

Test(pipeline_kafka_group, three_processors_kill9_while_producing_equal_one_clean_run,
     .init = setup_group, .fini = teardown, .timeout = 400) {
    pl_case_group_kill9(4);
}

/* tests/test_pipeline.c's churn case on 12 partitions: here the broker's
 * group coordinator, not the mock's, times the joins and leaves. */
Test(pipeline_kafka_group, rebalance_churn_while_a_slow_processor_has_a_backlog_in_hand,
     .init = setup_group, .fini = teardown, .timeout = 400) {
    pl_case_rebalance_churn(3);
}

static int restart_broker(void *ctx) {
    char err[512];
    int rc = sp_test_broker_restart(ctx, err, sizeof err);
    if (rc) cr_log_error("%s", err);
    return rc;
}

Test(pipeline_kafka_restart, broker_restart_mid_stream_processor_reconnects,
     .init = setup_restart, .fini = teardown, .timeout = 400) {
    pl_case_broker_restart(restart_broker, world_broker);
}

/* 1 if the file at path contains needle anywhere. */
static int file_has(const char *path, const char *needle) {
    char *text = sp_t_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    int found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* Runs argv with stdout and stderr to the given files; returns its exit
 * status, or fails the test when it has not stopped within 30 s (generous
 * for a loaded machine; a hang is what the callers catch). */
static int run_to_exit(char *const *argv, const char *out, const char *errf, const char *what) {
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = sp_t_wait(pid, 30000);
    if (st == -1) {
        kill(pid, SIGKILL);
        sp_t_wait(pid, 5000);
        cr_assert_fail("run with %s did not stop within 30 s", what);
    }
    return st;
}

/* The broker does not auto-create topics: a dead-letter topic that does not
 * exist stops `run` at startup (exit 2) with a message naming the key and
 * the topic, instead of a processor whose first bad message would hold every
 * commit back for ever. */
Test(pipeline_kafka, missing_deadletter_topic_stops_startup_naming_it) {
    char out[300], errf[300];
    snprintf(out, sizeof out, "%s/missing.out", w.dir);
    snprintf(errf, sizeof errf, "%s/missing.err", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "run", "--brokers", w.bootstrap, "--redis.url",
                    w.redis.url, "--group.id", "missing", "--topics.input", w.inputs,
                    "--topics.deadletter", "no.such.deadletter", "--http.listen", "0", NULL};
    int st = run_to_exit(argv, out, errf, "a missing dead-letter topic");
    cr_assert_eq(st, 2, "exit %d, want 2 (config error)", st);
    cr_expect(file_has(errf, "key 'topics.deadletter'"), "stderr does not name the key");
    cr_expect(file_has(errf, "'no.such.deadletter' does not exist"), "stderr does not name the topic");
}

TestSuite(pipeline_kafka_sasl, .init = setup_sasl, .fini = teardown, .timeout = 400);

/* gen -> replay -> run -> Redis with every client logging in over
 * SASL_PLAINTEXT/PLAIN (-X properties), and the password in no log. */
Test(pipeline_kafka_sasl, counts_in_redis_equal_counts_from_the_file) {
    pl_case_end_to_end("proto");
    static const char *logs[] = {"run.log", "replay.log"};
    for (int i = 0; i < 2; i++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", w.dir, logs[i]);
        cr_expect(!file_has(path, SASL_PASS), "%s contains the password", logs[i]);
    }
}

/* A wrong password given as --kafka.* keys: `run` stops on its own within
 * seconds, exit 1, with the broker's authentication error on stderr, and
 * neither password shows in its output. */
Test(pipeline_kafka_sasl, wrong_password_stops_run_with_a_clear_error) {
    char out[300], errf[300];
    snprintf(out, sizeof out, "%s/wrong.out", w.dir);
    snprintf(errf, sizeof errf, "%s/wrong.err", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "run", "--brokers", w.bootstrap, "--redis.url",
                    w.redis.url, "--group.id", "wrong", "--topics.input", w.inputs,
                    "--topics.deadletter", w.dlq, "--kafka.security.protocol=SASL_PLAINTEXT",
                    "--kafka.sasl.mechanism=PLAIN", "--kafka.sasl.username=" SASL_USER,
                    "--kafka.sasl.password=" WRONG_PASS, NULL};
    int st = run_to_exit(argv, out, errf, "a wrong password");
    cr_assert_eq(st, 1, "run with a wrong password exited %d (want 1; >128 is a crash)", st);
    cr_expect(file_has(errf, "Kafka authentication failed: "), "no authentication error on stderr");
    cr_expect(file_has(errf, "Invalid username or password"), "stderr lacks the broker's reason");
    cr_expect(file_has(errf, "; stopping"), "stderr does not say the processor stops");
    char broker_log[300];
    snprintf(broker_log, sizeof broker_log, "%s/kafka.log", sp_test_broker_dir(world_broker));
    const char *files[] = {out, errf, broker_log};
    for (int i = 0; i < 3; i++) {
        cr_expect(!file_has(files[i], WRONG_PASS), "%s contains the wrong password", files[i]);
        cr_expect(!file_has(files[i], SASL_PASS), "%s contains the password", files[i]);
    }
}
