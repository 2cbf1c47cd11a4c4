/* Replay against librdkafka's in-process mock cluster: every record of a
 * generated file (malformed and duplicated ones included) arrives byte for
 * byte on the topic of its body, keyed by its user, in file order per user;
 * click logs arrive as view events; failed deliveries fail the command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "stream/cli.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/gen.h"

static char dir[64];
static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mock;
static const char *bootstraps;

#define PARTITIONS 3

/* A mock cluster of one broker with the three input topics, plus a scratch
 * directory, for each test. */
static void setup(void) {
    strcpy(dir, "/tmp/sp_test_replay_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    cr_assert_not_null(mock_rk, "%s", errstr);
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    cr_assert_not_null(mock);
    bootstraps = rd_kafka_mock_cluster_bootstraps(mock);
    const char *topics[] = {"shop.clicks", "shop.orders", "shop.reviews", "t.clicks",
                            "t.orders", "t.reviews"};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(rd_kafka_mock_topic_create(mock, topics[i], PARTITIONS, 1), 0);
}

static void teardown(void) {
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_rk);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(replay, .init = setup, .fini = teardown, .timeout = 60);

struct msg {
    char topic[32];
    char *key;
    size_t key_len;
    uint8_t *value;
    size_t len;
    char ct[32];
    int partition;
    int64_t offset;
    int matched;
};

/* Reads every partition of the three topics from the beginning with a plain
 * consumer until `want` messages are in or 20 s pass. */
static struct msg *consume_all(const char *prefix, size_t want, size_t *got) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof errstr),
                 RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "group.id", "test-replay", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    cr_assert_not_null(rk, "%s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3 * PARTITIONS);
    static const char *sfx[] = {"clicks", "orders", "reviews"};
    for (int t = 0; t < 3; t++)
        for (int p = 0; p < PARTITIONS; p++) {
            char name[64];
            snprintf(name, sizeof name, "%s%s", prefix, sfx[t]);
            rd_kafka_topic_partition_list_add(parts, name, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    cr_assert_eq(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);

    struct msg *out = calloc(want + 16, sizeof *out);
    size_t n = 0;
    time_t deadline = time(NULL) + 20;
    while (n < want + 16 && time(NULL) < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) {
            if (n >= want) break; /* quiet after the expected count: nothing extra came */
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        struct msg *x = &out[n++];
        snprintf(x->topic, sizeof x->topic, "%s", rd_kafka_topic_name(m->rkt));
        x->key_len = m->key_len;
        x->key = malloc(m->key_len + 1);
        if (m->key_len) memcpy(x->key, m->key, m->key_len);
        x->key[m->key_len] = 0;
        x->len = m->len;
        x->value = malloc(m->len + 1);
        memcpy(x->value, m->payload, m->len);
        x->partition = m->partition;
        x->offset = m->offset;
        rd_kafka_headers_t *hdrs;
        const void *hv;
        size_t hl;
        if (!rd_kafka_message_headers(m, &hdrs) &&
            !rd_kafka_header_get_last(hdrs, "content-type", &hv, &hl))
            snprintf(x->ct, sizeof x->ct, "%.*s", (int)hl, (const char *)hv);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *got = n;
    return out;
}

static void free_msgs(struct msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(m[i].key);
        free(m[i].value);
    }
    free(m);
}

static int run_replay(const char *const *args) {
    char *argv[40];
    int argc = 0;
    argv[argc++] = "replay";
    for (; *args; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return sp_cmd_replay(argc, argv);
}

struct expect {
    uint8_t *data;
    size_t len;
    char topic[32];
    char user[32];  /* the key: empty when the record lost its user */
};

/* Generates a file with plenty of malformed records and duplicates and
 * works out, from the generator's own labels and the body kind, where each
 * record must land. A record whose user_id was emptied, or whose JSON no
 * longer parses, has no key; a JSON record without a body, or whose body was
 * cut away, goes to clicks. */
static struct expect *make_file(const char *file, enum sp_gen_format fmt, size_t n,
                                const char *prefix) {
    sp_gen_conf conf;
    sp_gen_conf_init(&conf);
    conf.events = n;
    conf.users = 200;
    conf.seed = 99;
    conf.format = fmt;
    conf.malformed_rate = 0.1;
    conf.duplicate_rate = 0.05;
    conf.fraud_rate = 0.05;
    char err[128];
    sp_gen *g = sp_gen_new(&conf, err, sizeof err);
    cr_assert_not_null(g);
    FILE *f = fopen(file, "wb");
    cr_assert_not_null(f);
    struct expect *ex = calloc(n, sizeof *ex);
    sp_gen_record rec;
    size_t i = 0;
    while (sp_gen_next(g, &rec)) {
        cr_assert_eq(sp_gen_write(f, fmt, rec.data, rec.len), 0);
        struct expect *e = &ex[i++];
        e->data = malloc(rec.len);
        memcpy(e->data, rec.data, rec.len);
        e->len = rec.len;
        const char *m = rec.malformed ? rec.malformed : "";
        int unparsable = !strcmp(m, "invalid_json") || (fmt == SP_GEN_JSONL && !strcmp(m, "nan_amount"));
        int keyless = unparsable || !strcmp(m, "empty_user_id");
        const char *t = "clicks";
        if (!unparsable && strcmp(m, "missing_body")) {
            if (rec.kind == SP_KIND_ORDER) t = "orders";
            else if (rec.kind == SP_KIND_REVIEW) t = "reviews";
        }
        snprintf(e->topic, sizeof e->topic, "%s%s", prefix, t);
        snprintf(e->user, sizeof e->user, "%s", keyless ? "" : rec.user_id);
    }
    fclose(f);
    sp_gen_destroy(g);
    return ex;
}

/* Matches each message to an unmatched expected record with the same bytes,
 * then checks topic, key and header, and that per user the messages in a
 * partition keep the file's order. */
static void check_arrivals(struct expect *ex, size_t n, struct msg *got, size_t ngot, int json) {
    cr_assert_eq(ngot, n, "consumed %zu of %zu records", ngot, n);
    int *used = calloc(n, sizeof *used);
    size_t *pos = calloc(ngot, sizeof *pos);
    for (size_t k = 0; k < ngot; k++) {
        size_t i = 0;
        for (; i < n; i++)
            if (!used[i] && ex[i].len == got[k].len && !memcmp(ex[i].data, got[k].value, got[k].len) &&
                !strcmp(ex[i].topic, got[k].topic))
                break;
        cr_assert_lt(i, n, "message %zu on %s (%zu bytes) matches no record of the file", k,
                     got[k].topic, got[k].len);
        used[i] = 1;
        pos[k] = i;
        cr_assert_str_eq(got[k].key, ex[i].user, "record %zu", i);
        cr_assert_str_eq(got[k].ct, json ? "application/json" : "application/x-protobuf");
    }
    /* per user and partition, offsets increase with the position in the file */
    for (size_t a = 0; a < ngot; a++)
        for (size_t b = 0; b < ngot; b++)
            if (got[a].key_len && !strcmp(got[a].key, got[b].key) &&
                !strcmp(got[a].topic, got[b].topic) && got[a].offset < got[b].offset)
                cr_assert_lt(pos[a], pos[b], "user %s out of order", got[a].key);
    free(used);
    free(pos);
}

static void replay_generated(enum sp_gen_format fmt) {
    char file[128];
    snprintf(file, sizeof file, "%s/events", dir);
    size_t n = 800;
    struct expect *ex = make_file(file, fmt, n, "shop.");
    const char *args[] = {"--brokers", bootstraps, "--quiet", file, NULL};
    cr_assert_eq(run_replay(args), 0);
    size_t ngot;
    struct msg *got = consume_all("shop.", n, &ngot);
    check_arrivals(ex, n, got, ngot, fmt == SP_GEN_JSONL);
    free_msgs(got, ngot);
    for (size_t i = 0; i < n; i++) free(ex[i].data);
    free(ex);
}

Test(replay, jsonl_arrives_byte_identical_on_the_right_topics) { replay_generated(SP_GEN_JSONL); }

Test(replay, proto_arrives_byte_identical_on_the_right_topics) { replay_generated(SP_GEN_PROTO); }

Test(replay, topic_prefix_limit_and_properties) {
    char file[128];
    snprintf(file, sizeof file, "%s/events", dir);
    struct expect *ex = make_file(file, SP_GEN_JSONL, 300, "t.");
    const char *args[] = {"--brokers", bootstraps, "--topic-prefix", "t.", "--limit", "100",
                          "-X", "acks=all", "--quiet", file, NULL};
    cr_assert_eq(run_replay(args), 0);
    size_t ngot;
    struct msg *got = consume_all("t.", 100, &ngot);
    check_arrivals(ex, 100, got, ngot, 1);
    free_msgs(got, ngot);
    for (size_t i = 0; i < 300; i++) free(ex[i].data);
    free(ex);
}

Test(replay, rsc15_rows_become_view_events) {
    char file[128];
    snprintf(file, sizeof file, "%s/clicks.tsv", dir);
    FILE *f = fopen(file, "w");
    fputs("SessionId\tItemId\tTime\n"
          "1\t214536502\t1396860669.277\n"
          "1\t214536506\t1396860886.998\n"
          "7\t214577561\t1396861020.5\n",
          f);
    fclose(f);
    const char *args[] = {"--brokers", bootstraps, "--format", "rsc15", "--quiet", file, NULL};
    cr_assert_eq(run_replay(args), 0);
    size_t ngot;
    struct msg *got = consume_all("shop.", 3, &ngot);
    cr_assert_eq(ngot, 3);
    int64_t want_ts[] = {1396860669277, 1396860886998, 1396861020500};
    const char *want_item[] = {"214536502", "214536506", "214577561"};
    int found = 0;
    for (size_t k = 0; k < ngot; k++) {
        cr_assert_str_eq(got[k].topic, "shop.clicks");
        sp_event *ev;
        char err[128];
        cr_assert_eq(sp_event_decode(got[k].value, got[k].len, got[k].ct, &ev, err, sizeof err),
                     SP_OK, "%s", err);
        cr_assert_eq(sp_event_validate(ev, err, sizeof err), SP_OK, "%s", err);
        cr_assert_eq(sp_event_kind_of(ev), SP_KIND_VIEW);
        cr_assert_str_eq(ev->user_id, got[k].key);
        cr_assert_str_eq(ev->session_id, ev->user_id);
        for (int i = 0; i < 3; i++)
            if (!strcmp(ev->click->item_id, want_item[i])) {
                cr_assert_eq(ev->ts_ms, want_ts[i]);
                cr_assert_str_eq(ev->user_id, i < 2 ? "1" : "7");
                found |= 1 << i;
            }
        for (size_t j = 0; j < k; j++) {
            sp_event *o;
            cr_assert_eq(sp_event_decode(got[j].value, got[j].len, got[j].ct, &o, err, sizeof err), 0);
            cr_assert_str_neq(o->event_id, ev->event_id);
            sp_event_free(o);
        }
        sp_event_free(ev);
    }
    cr_assert_eq(found, 7);
    free_msgs(got, ngot);
}

Test(replay, diginetica_rows_become_json_view_events) {
    char file[128];
    snprintf(file, sizeof file, "%s/views.csv", dir);
    FILE *f = fopen(file, "w");
    fputs("session_id;user_id;item_id;timeframe;eventdate\n"
          "1;NA;81766;526309;2016-05-09\n"
          "2;5;31331;1031018;2016-05-10\n",
          f);
    fclose(f);
    const char *args[] = {"--brokers", bootstraps, "--format", "diginetica", "--encode", "json",
                          "--quiet", file, NULL};
    cr_assert_eq(run_replay(args), 0);
    size_t ngot;
    struct msg *got = consume_all("shop.", 2, &ngot);
    cr_assert_eq(ngot, 2);
    for (size_t k = 0; k < ngot; k++) {
        cr_assert_str_eq(got[k].ct, "application/json");
        cr_assert_eq(got[k].value[0], '{');
        sp_event *ev;
        char err[128];
        cr_assert_eq(sp_event_decode(got[k].value, got[k].len, got[k].ct, &ev, err, sizeof err),
                     SP_OK, "%s", err);
        /* 2016-05-09T00:00:00Z is 1462752000 s */
        if (!strcmp(ev->user_id, "1")) cr_assert_eq(ev->ts_ms, 1462752000000 + 526309);
        else cr_assert_eq(ev->ts_ms, 1462752000000 + 86400000 + 1031018);
        sp_event_free(ev);
    }
    free_msgs(got, ngot);
}

Test(replay, failed_deliveries_fail_the_command) {
    char file[128];
    snprintf(file, sizeof file, "%s/events", dir);
    struct expect *ex = make_file(file, SP_GEN_PROTO, 20, "shop.");
    /* nothing listens on port 1: every message times out */
    const char *args[] = {"--brokers", "127.0.0.1:1", "-X", "message.timeout.ms=500",
                          "--quiet", file, NULL};
    cr_assert_eq(run_replay(args), 1);
    for (size_t i = 0; i < 20; i++) free(ex[i].data);
    free(ex);
}

Test(replay, usage_errors) {
    const char *a[] = {"--brokers", "x:1", NULL};
    const char *b[] = {"--brokers", "x:1", "--format", "csv", "f", NULL};
    const char *c[] = {"--brokers", "x:1", "-X", "no.such.property=1", "/dev/null", NULL};
    cr_assert_eq(run_replay(a), 2);
    cr_assert_eq(run_replay(b), 2);
    cr_assert_eq(run_replay(c), 2);
}

/* `gen --brokers` produces the same records the library generates, through
 * the same routing, straight to Kafka. */
Test(replay, gen_produces_straight_to_kafka) {
    char file[128];
    snprintf(file, sizeof file, "%s/events", dir);
    struct expect *ex = make_file(file, SP_GEN_PROTO, 300, "shop.");
    char *argv[] = {"gen", "--events", "300", "--users", "200", "--seed", "99",
                    "--malformed-rate", "0.1", "--duplicate-rate", "0.05", "--fraud-rate", "0.05",
                    "--format", "proto", "--brokers", (char *)bootstraps, NULL};
    cr_assert_eq(sp_cmd_gen(17, argv), 0);
    size_t ngot;
    struct msg *got = consume_all("shop.", 300, &ngot);
    check_arrivals(ex, 300, got, ngot, 0);
    free_msgs(got, ngot);
    for (size_t i = 0; i < 300; i++) free(ex[i].data);
    free(ex);
}
