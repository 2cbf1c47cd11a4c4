/* Integration tests against a real Apache Kafka 4.x broker (deploy/local/
 * kafka.sh): topic creation through the admin API, produce/consume, broker
 * restart, and SASL/PLAIN (right password works, wrong one is a prompt,
 * clear error, and the password never shows in output or logs).
 *
 * Two brokers (PLAINTEXT and SASL) are started once for the whole binary in
 * the Criterion runner and found by the tests through the environment. With
 * no Java 17 on the machine every test here fails, saying so: these tests
 * are part of `make test`, not optional. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stream/admin.h"
#include "stream/error.h"
#include "tests/support/kafka_broker.h"

#define SASL_USER "shop-test"
#define SASL_PASS "pw-Zq81xKv0wT" /* unique, so a leak is found by grep */
#define WRONG_PASS "pw-Wrong55Yhq"

static sp_test_broker *plain_broker, *sasl_broker;

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
    char err[1024];
    (void)set;
    if (!sp_test_broker_available(err, sizeof err)) {
        setenv("SP_TEST_KAFKA_ERROR", err, 1);
        return;
    }
    const char *sasl[] = {NULL, SASL_USER ":" SASL_PASS};
    sp_test_broker *b[2];
    if (sp_test_brokers_start(2, sasl, b, err, sizeof err)) {
        setenv("SP_TEST_KAFKA_ERROR", err, 1);
        return;
    }
    plain_broker = b[0];
    sasl_broker = b[1];
    sp_test_broker_export(plain_broker, "plain");
    sp_test_broker_export(sasl_broker, "sasl");
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
    (void)stats;
    sp_test_broker_stop(plain_broker);
    sp_test_broker_stop(sasl_broker);
}

/* The broker published by the runner, or a test failure naming why there
 * is none (no Java, or it did not start). */
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

/* Tests judge outcomes, not librdkafka's retry chatter. */
static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* A librdkafka handle of the given type on bootstrap with extra "k=v"
 * properties (NULL-terminated list or NULL). */
static rd_kafka_t *client_new(rd_kafka_type_t type, const char *bootstrap,
                              const char *const *extra, const char *group) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr),
                 RD_KAFKA_CONF_OK, "%s", errstr);
    for (size_t i = 0; extra && extra[i]; i++) {
        char *kv = strdup(extra[i]), *eq = strchr(kv, '=');
        *eq = '\0';
        cr_assert_eq(rd_kafka_conf_set(conf, kv, eq + 1, errstr, sizeof errstr),
                     RD_KAFKA_CONF_OK, "%s", errstr);
        free(kv);
    }
    if (group) {
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr);
    }
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    cr_assert_not_null(rk, "rd_kafka_new: %s", errstr);
    return rk;
}

/* Produces n messages "msg-<tag>-<i>" keyed "user-<i>" and waits until all
 * are acknowledged by the broker. */
static void produce_n(const char *bootstrap, const char *const *extra, const char *topic,
                      const char *tag, int n) {
    rd_kafka_t *p = client_new(RD_KAFKA_PRODUCER, bootstrap, extra, NULL);
    for (int i = 0; i < n; i++) {
        char key[32], val[64];
        snprintf(key, sizeof key, "user-%d", i);
        snprintf(val, sizeof val, "msg-%s-%d", tag, i);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(e));
    }
    cr_assert_eq(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR, "messages not acknowledged");
    rd_kafka_destroy(p);
}

/* Consumes `topic` from the beginning in a new consumer group until `want`
 * messages arrived or 30 s passed; marks seen[i] for each "msg-<tag>-<i>"
 * and returns how many messages (of any tag) arrived. */
static int consume_all(const char *bootstrap, const char *const *extra, const char *topic,
                       const char *group, const char *tag, int *seen, int nseen, int want) {
    rd_kafka_t *c = client_new(RD_KAFKA_CONSUMER, bootstrap, extra, group);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    cr_assert_eq(rd_kafka_subscribe(c, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(subs);
    int got = 0;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "msg-%s-", tag);
    for (int polls = 0; got < want && polls < 300; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) continue;
        if (!m->err) {
            got++;
            char val[64] = {0};
            memcpy(val, m->payload, m->len < sizeof val - 1 ? m->len : sizeof val - 1);
            int i;
            if (!strncmp(val, prefix, strlen(prefix)) &&
                sscanf(val + strlen(prefix), "%d", &i) == 1 && i >= 0 && i < nseen)
                seen[i]++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return got;
}

/* Partition count of topic as an independent, credential-less librdkafka
 * client sees it: -1 if there is no such topic, -2 if metadata failed. */
static int metadata_partitions(const char *bootstrap, const char *topic) {
    rd_kafka_t *rk = client_new(RD_KAFKA_PRODUCER, bootstrap, NULL, NULL);
    const rd_kafka_metadata_t *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 2500) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_destroy(rk);
        return -2;
    }
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return n;
}

struct run_result {
    int status;
    char out[8192];
    char err[8192];
};

static void slurp(FILE *f, char *buf, size_t len) {
    rewind(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
}

/* Runs $SHOPSTREAM_BIN with args, capturing stdout and stderr apart. */
static void run_shopstream(const char *const *args, struct run_result *r) {
    const char *bin = getenv("SHOPSTREAM_BIN");
    if (!bin) bin = "bin/shopstream";
    cr_assert_eq(access(bin, X_OK), 0, "%s is not built (make test sets SHOPSTREAM_BIN)", bin);
    FILE *fo = tmpfile(), *fe = tmpfile();
    cr_assert(fo && fe);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const char *argv[32] = {bin};
        size_t n = 1;
        for (size_t i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
        argv[n] = NULL;
        dup2(fileno(fo), STDOUT_FILENO);
        dup2(fileno(fe), STDERR_FILENO);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) cr_assert_eq(errno, EINTR);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(fo, r->out, sizeof r->out);
    slurp(fe, r->err, sizeof r->err);
    fclose(fo);
    fclose(fe);
}

/* 1 if the file at path contains needle. */
static int file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

TestSuite(kafka_broker, .timeout = 120);

Test(kafka_broker, admin_creates_topics_with_given_partition_counts) {
    sp_test_broker *b = need_broker("plain");
    const char *bs = sp_test_broker_bootstrap(b);
    const char *twelve[] = {"t.clicks", "t.orders"}, *three[] = {"t.small"};
    char err[512];

    cr_assert_eq(sp_test_create_topics(bs, twelve, 2, 12, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sp_test_create_topics(bs, three, 1, 3, NULL, err, sizeof err), 0, "%s", err);
    cr_expect_eq(metadata_partitions(bs, "t.clicks"), 12);
    cr_expect_eq(metadata_partitions(bs, "t.orders"), 12);
    cr_expect_eq(metadata_partitions(bs, "t.small"), 3);

    /* Again with the same count: fine. With another: an error that says so. */
    cr_expect_eq(sp_test_create_topics(bs, twelve, 2, 12, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sp_test_create_topics(bs, three, 1, 5, NULL, err, sizeof err), -1);
    cr_expect(strstr(err, "3 partitions") != NULL, "error does not name the count: %s", err);
    cr_expect_eq(metadata_partitions(bs, "t.small"), 3);

    /* The broker must not auto-create topics: describing a missing one says
     * NOTFOUND and leaves it missing. */
    sp_admin *a = sp_admin_new(bs, NULL, 0, 10000, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    int n = 0;
    cr_expect_eq(sp_admin_partition_count(a, "t.nope", &n, err, sizeof err), SP_ERR_NOTFOUND);
    cr_expect_eq(metadata_partitions(bs, "t.nope"), -1);
    sp_admin_destroy(a);
    sp_test_broker_stop(b);
}

Test(kafka_broker, produce_and_consume_roundtrip) {
    sp_test_broker *b = need_broker("plain");
    const char *bs = sp_test_broker_bootstrap(b);
    const char *topic[] = {"t.roundtrip"};
    char err[512];
    int seen[50] = {0};

    cr_assert_eq(sp_test_create_topics(bs, topic, 1, 4, NULL, err, sizeof err), 0, "%s", err);
    produce_n(bs, NULL, topic[0], "rt", 50);
    int got = consume_all(bs, NULL, topic[0], "g.roundtrip", "rt", seen, 50, 50);
    cr_assert_eq(got, 50, "consumed %d of 50", got);
    for (int i = 0; i < 50; i++) cr_expect_eq(seen[i], 1, "message %d seen %d times", i, seen[i]);
    sp_test_broker_stop(b);
}

Test(kafka_broker, restart_keeps_data_and_address) {
    sp_test_broker *b = need_broker("plain");
    char bs[64], err[512];
    snprintf(bs, sizeof bs, "%s", sp_test_broker_bootstrap(b));
    const char *topic[] = {"t.restart"};
    int seen[20] = {0};

    cr_assert_eq(sp_test_create_topics(bs, topic, 1, 2, NULL, err, sizeof err), 0, "%s", err);
    produce_n(bs, NULL, topic[0], "before", 10);
    cr_assert_eq(sp_test_broker_restart(b, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(sp_test_broker_bootstrap(b), bs);
    produce_n(bs, NULL, topic[0], "after", 10);
    int got = consume_all(bs, NULL, topic[0], "g.restart", "before", seen, 20, 20);
    cr_assert_eq(got, 20, "consumed %d of 20 after the restart", got);
    for (int i = 0; i < 10; i++) cr_expect_eq(seen[i], 1, "pre-restart message %d lost", i);
    cr_expect_eq(metadata_partitions(bs, topic[0]), 2);
    sp_test_broker_stop(b);
}

Test(kafka_broker, topics_command_create_list_delete) {
    sp_test_broker *b = need_broker("plain");
    const char *bs = sp_test_broker_bootstrap(b);
    struct run_result r;

    const char *create[] = {"topics", "create", "--brokers", bs, "--partitions", "6",
                            "c.one", "c.two", NULL};
    run_shopstream(create, &r);
    cr_assert_eq(r.status, 0, "create failed: %s", r.err);
    run_shopstream(create, &r);
    cr_assert_eq(r.status, 0, "create is not idempotent: %s", r.err);

    const char *list[] = {"topics", "list", "--brokers", bs, NULL};
    run_shopstream(list, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "c.one\t6\t1\n") != NULL, "list output: %s", r.out);
    cr_expect(strstr(r.out, "c.two\t6\t1\n") != NULL, "list output: %s", r.out);
    cr_expect(strstr(r.out, "__consumer_offsets") == NULL, "internal topic listed: %s", r.out);

    const char *other[] = {"topics", "create", "--brokers", bs, "--partitions", "2",
                           "c.one", NULL};
    run_shopstream(other, &r);
    cr_expect_eq(r.status, 1, "a partition-count mismatch must fail");
    cr_expect(strstr(r.err, "6 partitions") != NULL, "stderr: %s", r.err);

    const char *del[] = {"topics", "delete", "--brokers", bs, "c.one", NULL};
    run_shopstream(del, &r);
    cr_assert_eq(r.status, 0, "delete failed: %s", r.err);
    run_shopstream(list, &r);
    cr_expect(strstr(r.out, "c.one\t") == NULL, "deleted topic still listed: %s", r.out);
    cr_expect(strstr(r.out, "c.two\t6\t1\n") != NULL, "list output: %s", r.out);
    sp_test_broker_stop(b);
}

Test(kafka_broker, topics_command_unreachable_broker_fails) {
    struct run_result r;
    /* Port 1 on loopback: nothing listens, connections are refused. The
     * suite timeout turns a hang into a failure. */
    const char *args[] = {"topics", "list", "--brokers", "127.0.0.1:1", "--timeout-ms", "1500",
                          NULL};
    run_shopstream(args, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "no Kafka broker answered within 1500 ms") != NULL, "stderr: %s",
              r.err);
}

Test(kafka_broker, topics_command_usage_errors) {
    struct run_result r;
    const char *no_parts[] = {"topics", "create", "--brokers", "127.0.0.1:1", "x", NULL};
    run_shopstream(no_parts, &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "--partitions") != NULL, "stderr: %s", r.err);
    const char *bad_action[] = {"topics", "frobnicate", "--brokers", "127.0.0.1:1", NULL};
    run_shopstream(bad_action, &r);
    cr_expect_eq(r.status, 2);
    const char *bad_prop[] = {"topics", "list", "--brokers", "127.0.0.1:1", "-X",
                              "sasl.password", NULL};
    run_shopstream(bad_prop, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "key=value") != NULL, "stderr: %s", r.err);
}

Test(kafka_broker, sasl_right_password_produces_and_consumes) {
    sp_test_broker *b = need_broker("sasl");
    const char *bs = sp_test_broker_bootstrap(b);
    const char *topic[] = {"s.roundtrip"};
    char err[512];
    int seen[10] = {0};

    cr_assert_eq(sp_test_create_topics(bs, topic, 1, 3, sasl_conf, err, sizeof err), 0, "%s",
                 err);
    cr_expect_eq(metadata_partitions(bs, topic[0]), -2,
                 "a client without credentials must not read metadata");
    produce_n(bs, sasl_conf, topic[0], "sasl", 10);
    int got = consume_all(bs, sasl_conf, topic[0], "g.sasl", "sasl", seen, 10, 10);
    cr_assert_eq(got, 10, "consumed %d of 10 over SASL", got);
    sp_test_broker_stop(b);
}

Test(kafka_broker, sasl_wrong_password_is_a_clear_prompt_error) {
    sp_test_broker *b = need_broker("sasl");
    const char *bs = sp_test_broker_bootstrap(b);
    struct run_result r;
    char log[512];

    /* A 60 s admin timeout: the error must come from the refused login, not
     * from waiting the timeout out (the suite timeout would fail the test). */
    const char *wrong[] = {"topics", "list", "--brokers", bs, "--timeout-ms", "60000", "-X",
                           "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                           "-X", "sasl.username=" SASL_USER, "-X", "sasl.password=" WRONG_PASS,
                           NULL};
    run_shopstream(wrong, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "authentication failed") != NULL, "stderr: %s", r.err);
    cr_expect(strstr(r.err, "Invalid username or password") != NULL, "stderr: %s", r.err);
    cr_expect(!strstr(r.err, WRONG_PASS) && !strstr(r.out, WRONG_PASS), "password leaked: %s",
              r.err);

    /* The right password works, and is not in anything printed either. */
    const char *right[] = {"topics", "create", "--brokers", bs, "--partitions", "2",
                           "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                           "-X", "sasl.username=" SASL_USER, "-X", "sasl.password=" SASL_PASS,
                           "s.cli", NULL};
    run_shopstream(right, &r);
    cr_expect_eq(r.status, 0, "stderr: %s", r.err);
    cr_expect(!strstr(r.err, SASL_PASS) && !strstr(r.out, SASL_PASS), "password leaked: %s",
              r.err);

    snprintf(log, sizeof log, "%s/kafka.log", sp_test_broker_dir(b));
    cr_expect(!file_contains(log, SASL_PASS), "broker log contains the password");
    cr_expect(!file_contains(log, WRONG_PASS), "broker log contains the wrong password");
    sp_test_broker_stop(b);
}
