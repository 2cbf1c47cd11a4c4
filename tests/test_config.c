/* Config: defaults, file, environment, flags, and errors that name the key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream/config.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/log.h"
#include "tests/support/harness.h"

static const char *write_tmp(const char *text) {
    static char path[300];
    snprintf(path, sizeof path, "%s/shopstream.conf", sp_t_tmpdir());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(config, defaults_are_documented_values) {
    sp_config c;
    sp_config_init(&c);
    cr_assert_str_eq(c.input_topics, "shop.clicks,shop.orders,shop.reviews");
    cr_assert_str_eq(c.deadletter_topic, "shop.deadletter");
    cr_assert_eq(c.batch_max_messages, 2000);
    sp_config_release(&c);
}

Test(config, file_then_env_then_flags) {
    const char *path = write_tmp("# comment\nbrokers = file:1\ngroup.id = from-file\n"
                                 "batch.max_ms = 7  # trailing\nkafka.linger.ms = 3\n");
    setenv("SHOPSTREAM_GROUP_ID", "from-env", 1);
    setenv("SHOPSTREAM_KAFKA_SASL_USERNAME", "alice", 1);
    char *argv[] = {"run", "--group.id=from-flag", "--config", (char *)path, "-X",
                    "client.id=x", "--batch.max_messages", "5", NULL};
    sp_config c;
    sp_config_init(&c);
    char err[256];
    int help;
    cr_assert_eq(sp_config_from_args(&c, 8, argv, &help, err, sizeof err), SP_OK, "%s", err);
    cr_assert_str_eq(c.brokers, "file:1");
    cr_assert_str_eq(c.group_id, "from-flag");
    cr_assert_eq(c.batch_max_ms, 7);
    cr_assert_eq(c.batch_max_messages, 5);
    int seen = 0;
    for (size_t i = 0; i < c.nkafka; i++) {
        if (!strcmp(c.kafka_keys[i], "linger.ms")) {
            seen |= 1;
            cr_assert_str_eq(c.kafka_values[i], "3");
        }
        if (!strcmp(c.kafka_keys[i], "client.id")) seen |= 2;
        if (!strcmp(c.kafka_keys[i], "sasl.username")) {
            seen |= 4;
            cr_assert_str_eq(c.kafka_values[i], "alice");
        }
    }
    cr_assert_eq(seen, 7);
    unsetenv("SHOPSTREAM_GROUP_ID");
    unsetenv("SHOPSTREAM_KAFKA_SASL_USERNAME");
    sp_config_release(&c);
}

struct bad_case {
    const char *key, *value, *must_contain;
};

Test(config, bad_keys_and_values_name_the_key) {
    static const struct bad_case cases[] = {
        {"no.such.key", "1", "'no.such.key'"},
        {"batch.max_messages", "abc", "'batch.max_messages'"},
        {"batch.max_messages", "0", "'batch.max_messages'"},
        {"batch.max_ms", "12x", "'batch.max_ms'"},
        {"kafka.", "1", "'kafka.'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_config c;
        sp_config_init(&c);
        char err[256] = "";
        cr_assert_neq(sp_config_set(&c, cases[i].key, cases[i].value, err, sizeof err), SP_OK);
        cr_assert(strstr(err, cases[i].must_contain), "case %zu: '%s'", i, err);
        sp_config_release(&c);
    }
}

Test(config, file_error_names_line_and_key) {
    const char *path = write_tmp("brokers = a\n\nbogus.key = 1\n");
    sp_config c;
    sp_config_init(&c);
    char err[512];
    cr_assert_neq(sp_config_load_file(&c, path, err, sizeof err), SP_OK);
    cr_assert(strstr(err, ":3:") && strstr(err, "bogus.key"), "%s", err);
    sp_config_release(&c);
}

Test(config, secrets_are_masked_when_printed) {
    sp_config c;
    sp_config_init(&c);
    char err[256];
    sp_config_set(&c, "kafka.sasl.password", "hunter2-secret", err, sizeof err);
    sp_config_set(&c, "redis.url", "redis://user:topsecretpw@host:1/0", err, sizeof err);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_config_print(&c, f);
    fclose(f);
    cr_assert_null(strstr(buf, "hunter2-secret"));
    cr_assert_null(strstr(buf, "topsecretpw"));
    free(buf);
    sp_config_set(&c, "redis.url", "unix:///s.sock?password=sockpw", err, sizeof err);
    f = open_memstream(&buf, &len);
    sp_config_print(&c, f);
    fclose(f);
    cr_assert_null(strstr(buf, "sockpw"));
    cr_assert(strstr(buf, "kafka.sasl.password = ***"));
    free(buf);
    sp_config_release(&c);
}

Test(config, unknown_kafka_property_stops_startup_naming_it) {
    char *argv[] = {(char *)sp_t_bin(), "run", "-X", "no.such.prop=1", "--redis.url",
                    "redis://127.0.0.1:1", NULL};
    const char *dir = sp_t_tmpdir();
    char log[300];
    snprintf(log, sizeof log, "%s/out", dir);
    pid_t pid = sp_t_spawn(argv, log);
    cr_assert_eq(sp_t_wait(pid, 20000), 2);
    char *out = sp_t_read_file(log, NULL);
    cr_assert(strstr(out, "kafka.no.such.prop"), "%s", out);
    free(out);
}

/* The consumer's prefetch queue holds more than librdkafka 2.0.2's one
 * second of refill backoff (sp_kafka_consumer_defaults); a kafka.<prop> of
 * the same name wins. */
static char *conf_value(rd_kafka_conf_t *conf, const char *key) {
    static char v[64];
    size_t n = sizeof v;
    cr_assert_eq(rd_kafka_conf_get(conf, key, v, &n), RD_KAFKA_CONF_OK, "%s", key);
    return v;
}

Test(config, consumer_prefetch_defaults_and_the_users_setting_wins) {
    sp_config c;
    char err[256];
    int help = 0;
    sp_config_init(&c);
    char *argv[] = {"run", "-X", "queued.min.messages=5000", "--brokers", "127.0.0.1:1", NULL};
    cr_assert_eq(sp_config_from_args(&c, 5, argv, &help, err, sizeof err), SP_OK, "%s", err);
    rd_kafka_conf_t *conf = sp_kafka_conf_new(&c, err, sizeof err);
    cr_assert_not_null(conf, "%s", err);
    sp_kafka_consumer_defaults(conf, &c);
    cr_assert_str_eq(conf_value(conf, "queued.min.messages"), "5000");
    cr_assert_str_eq(conf_value(conf, "queued.max.messages.kbytes"), "131072");
    rd_kafka_conf_destroy(conf);
    conf = rd_kafka_conf_new();
    sp_kafka_consumer_defaults(conf, NULL);
    cr_assert_str_eq(conf_value(conf, "queued.min.messages"), "1000000");
    rd_kafka_conf_destroy(conf);
    sp_config_release(&c);
}

/* What sp_kafka_log_cb writes for one librdkafka log line, at log level
 * info: stderr captured into a temporary file. */
static char *kafka_log_line(int level, const char *fac, const char *buf) {
    fflush(stderr);
    int saved = dup(2);
    FILE *f = tmpfile();
    dup2(fileno(f), 2);
    sp_log_set_level(SP_LOG_INFO);
    sp_kafka_log_cb(NULL, level, fac, buf);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = ftell(f);
    char *out = calloc(1, (size_t)n + 1);
    rewind(f);
    cr_assert_eq(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

/* A rebalance routinely fails the commit of Kafka's copy of the offsets
 * ("Unknown member"); the state's offsets are in Redis, so that is no
 * warning. A real warning stays one. */
Test(config, kafka_commitfail_is_info_and_other_warnings_stay_warnings) {
    char *s = kafka_log_line(4, "COMMITFAIL", "Offset commit (manual) failed: Unknown member");
    cr_assert(strstr(s, " INFO "), "%s", s);
    cr_assert(strstr(s, "lag monitoring only"), "%s", s);
    cr_assert(strstr(s, "Unknown member"), "%s", s);
    free(s);
    s = kafka_log_line(4, "FAIL", "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed");
    cr_assert(strstr(s, " WARN "), "%s", s);
    free(s);
    s = kafka_log_line(3, "ERROR", "something broke");
    cr_assert(strstr(s, " ERROR "), "%s", s);
    free(s);
}

Test(config, run_help_documents_every_key) {
    char *argv[] = {(char *)sp_t_bin(), "run", "--help", NULL};
    int st;
    char *out = sp_t_capture(argv, &st);
    cr_assert_eq(st, 0);
    const char *keys[] = {"brokers", "group.id", "topics.input", "topics.deadletter", "operators",
                          "redis.url", "batch.max_messages", "batch.max_ms", "cache.max_entries",
                          "dedupe.window_ms", "dedupe.max_ids", "kafka.<prop>"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_assert(strstr(out, keys[i]), "missing %s", keys[i]);
    free(out);
}
