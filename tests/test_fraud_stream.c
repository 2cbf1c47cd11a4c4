/* The fraud operator, review bursts and KPI anomalies end to end, against a
 * real redis-server and the mock Kafka cluster (processes):
 *  - a generated stream with injected fraud: shop.fraud-alerts, decoded with
 *    protobuf-c, against the generator's truth, pattern by pattern;
 *  - Apache Flink's fraud-detection walkthrough rule (a small amount, then a
 *    large one on the same card within a minute) as a golden test on
 *    hand-made orders, with the default and with configured amounts/window;
 *  - review bursts on hand-made reviews: young accounts, near-identical
 *    texts, and old accounts with distinct texts that must not alert;
 *  - a KPI series with a spike: one KpiAlert on shop.kpi-alerts, for it;
 *  - kill -9 at random points: the per-user fraud state ends equal to an
 *    uninterrupted run's. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis.h>

#include "proto/shopstream.pb-c.h"
#include "tests/support/harness.h"

#define PARTITIONS 4
#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define MIN 60000LL
#define DAY (24 * 60 * MIN)

static const char *const topics[] = {"shop.clicks", "shop.orders", "shop.reviews"};

static struct {
    sp_t_mock mock;
    sp_t_redis redis, reference;
    char dir[256], data[300], truth[300];
    int64_t per_topic[3];
    rd_kafka_t *producer;
} w;

static void setup(void) {
    memset(&w, 0, sizeof w);
    snprintf(w.dir, sizeof w.dir, "%s", sp_t_tmpdir());
    cr_assert_eq(sp_t_mock_start(&w.mock, PARTITIONS), 0, "mock kafka did not start");
    cr_assert_eq(sp_t_redis_start(&w.redis, 0), 0, "redis-server did not start");
    cr_assert_eq(sp_t_redis_start(&w.reference, 0), 0, "redis-server did not start");
}

static void teardown(void) {
    if (w.producer) rd_kafka_destroy(w.producer);
    sp_t_mock_stop(&w.mock);
    sp_t_redis_stop(&w.redis);
    sp_t_redis_stop(&w.reference);
}

TestSuite(fraud_stream, .init = setup, .fini = teardown, .timeout = 300);

/* ------------------------------------------------------------- helpers */

static void count_topics(void) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", w.mock.bootstrap, err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    for (int t = 0; t < 3; t++) {
        w.per_topic[t] = 0;
        for (int p = 0; p < PARTITIONS; p++) {
            int64_t lo, hi;
            cr_assert_eq(rd_kafka_query_watermark_offsets(rk, topics[t], p, &lo, &hi, 5000), 0);
            w.per_topic[t] += hi;
        }
    }
    rd_kafka_destroy(rk);
}

static void gen_and_replay(int events, double fraud_rate, int seed) {
    char n[16], f[16], s[16], log[300];
    snprintf(n, sizeof n, "%d", events);
    snprintf(f, sizeof f, "%g", fraud_rate);
    snprintf(s, sizeof s, "%d", seed);
    snprintf(w.data, sizeof w.data, "%s/events.jsonl", w.dir);
    snprintf(w.truth, sizeof w.truth, "%s/truth.json", w.dir);
    char *gen[] = {(char *)sp_t_bin(), "gen", "--events", n, "--users", "400", "--seed", s,
                   "--format", "jsonl", "--fraud-rate", f, "--out", w.data, "--truth", w.truth,
                   NULL};
    int st;
    free(sp_t_capture(gen, &st));
    cr_assert_eq(st, 0, "gen failed");
    snprintf(log, sizeof log, "%s/replay.log", w.dir);
    char *rep[] = {(char *)sp_t_bin(), "replay", w.data, "--brokers", w.mock.bootstrap, "--rate",
                   "0", "--quiet", NULL};
    cr_assert_eq(sp_t_wait(sp_t_spawn(rep, log), 60000), 0, "replay failed");
    count_topics();
}

/* A processor with the fraud, reviews and kpi operators; extra: up to four
 * more "--key=value" (NULL-terminated). */
static pid_t processor(const char *url, const char *group, int idle_ms, const char *name,
                       const char *const *extra) {
    char idle[16], log[300];
    snprintf(idle, sizeof idle, "%d", idle_ms);
    snprintf(log, sizeof log, "%s/%s.log", w.dir, name);
    char *argv[40] = {(char *)sp_t_bin(), "run", "--brokers", w.mock.bootstrap, "--redis.url",
                      (char *)url, "--group.id", (char *)group, "--run.stop_when_idle_ms", idle,
                      "--operators", "dedupe,counts,kpi,reviews,fraud", "--http.listen", "0",
                      "--batch.max_messages", "300", "--batch.max_ms", "50", "-X",
                      "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"};
    int n = 22;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return sp_t_spawn(argv, log);
}

static void run_to_end(const char *url, const char *group, const char *name,
                       const char *const *extra) {
    cr_assert_eq(sp_t_wait(processor(url, group, 1500, name, extra), 120000), 0,
                 "processor %s failed (see %s/%s.log)", name, w.dir, name);
}

/* Produces one JSON event to topic/partition, keyed by user. */
static void produce(const char *topic, int part, const char *user, const char *json) {
    if (!w.producer) {
        char err[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", w.mock.bootstrap, err, sizeof err);
        w.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        cr_assert_not_null(w.producer, "%s", err);
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        w.producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
        RD_KAFKA_V_KEY(user, strlen(user)), RD_KAFKA_V_VALUE((void *)json, strlen(json)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
}

static void produce_flush(void) {
    cr_assert_eq(rd_kafka_flush(w.producer, 10000), 0);
    count_topics();
}

static int nev;

static void order(int part, const char *user, int64_t ts, double amount, const char *card) {
    char j[1024], id[32];
    snprintf(id, sizeof id, "o%d", ++nev);
    snprintf(j, sizeof j,
             "{\"event_id\":\"e%d\",\"ts_ms\":%lld,\"user_id\":\"%s\",\"session_id\":\"s-%s\","
             "\"context\":{\"device_id\":\"d-%s\",\"ip\":\"10.0.0.1\",\"country\":\"DE\","
             "\"channel\":\"web\"},\"order\":{\"order_id\":\"%s\",\"items\":[{\"item_id\":\"i1\","
             "\"category\":\"c1\",\"quantity\":1,\"unit_price\":%.2f}],\"total\":%.2f,"
             "\"currency\":\"EUR\",\"payment_method\":\"card\",\"card_fingerprint\":\"%s\","
             "\"shipping_country\":\"DE\"}}",
             nev, (long long)ts, user, user, user, id, amount, amount, card);
    produce("shop.orders", part, user, j);
}

static void click(int part, const char *user, int64_t ts) {
    char j[512];
    snprintf(j, sizeof j,
             "{\"event_id\":\"e%d\",\"ts_ms\":%lld,\"user_id\":\"%s\",\"session_id\":\"s-%s\","
             "\"click\":{\"kind\":\"view\",\"item_id\":\"i1\",\"category\":\"c1\",\"price\":1}}",
             ++nev, (long long)ts, user, user);
    produce("shop.clicks", part, user, j);
}

static void review(int part, const char *user, int64_t ts, const char *item, const char *text) {
    char j[1024];
    snprintf(j, sizeof j,
             "{\"event_id\":\"e%d\",\"ts_ms\":%lld,\"user_id\":\"%s\",\"session_id\":\"s-%s\","
             "\"review\":{\"item_id\":\"%s\",\"rating\":5,\"text\":\"%s\"}}",
             ++nev, (long long)ts, user, user, item, text);
    produce("shop.reviews", part, user, j);
}

struct alert {
    char key[128], id[160], user[64], trigger[64], kind[32], item[64];
    double score;
    int nreasons;
    char reasons[6][128];
};

/* Every message of topic (all partitions), from the start; NULL-safe when the
 * topic was never created (nothing was produced to it). */
typedef void (*on_msg)(const rd_kafka_message_t *m, void *ctx);

static size_t read_topic(const char *topic, on_msg fn, void *ctx) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", w.mock.bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "fraud-check", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 0, t, &md, 5000), 0);
    int nparts = md->topics[0].err ? 0 : md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    size_t n = 0;
    if (nparts > 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++) rd_kafka_topic_partition_list_add(l, topic, p)->offset = 0;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        for (int idle = 0; idle < 15;) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (!m) {
                idle++;
                continue;
            }
            idle = 0;
            if (!m->err) {
                fn(m, ctx);
                n++;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

struct alerts {
    struct alert *a;
    size_t n;
};

static void on_alert(const rd_kafka_message_t *m, void *ctx) {
    struct alerts *as = ctx;
    Shopstream__V1__FraudAlert *fa = shopstream__v1__fraud_alert__unpack(NULL, m->len, m->payload);
    cr_assert_not_null(fa, "shop.fraud-alerts holds something that is not a FraudAlert");
    as->a = realloc(as->a, (as->n + 1) * sizeof *as->a);
    struct alert *a = &as->a[as->n++];
    memset(a, 0, sizeof *a);
    snprintf(a->key, sizeof a->key, "%.*s", (int)m->key_len, (const char *)m->key);
    snprintf(a->id, sizeof a->id, "%s", fa->alert_id);
    snprintf(a->user, sizeof a->user, "%s", fa->user_id);
    snprintf(a->trigger, sizeof a->trigger, "%s", fa->trigger_event_id);
    snprintf(a->kind, sizeof a->kind, "%s", fa->kind);
    snprintf(a->item, sizeof a->item, "%s", fa->item_id);
    a->score = fa->score;
    a->nreasons = (int)(fa->n_reasons < 6 ? fa->n_reasons : 6);
    for (int i = 0; i < a->nreasons; i++)
        snprintf(a->reasons[i], sizeof a->reasons[i], "%s", fa->reasons[i]);
    shopstream__v1__fraud_alert__free_unpacked(fa, NULL);
}

static struct alerts read_alerts(void) {
    struct alerts as = {0};
    read_topic("shop.fraud-alerts", on_alert, &as);
    return as;
}

static const struct alert *find_alert(const struct alerts *as, const char *user, const char *kind) {
    for (size_t i = 0; i < as->n; i++)
        if (!strcmp(as->a[i].user, user) && !strcmp(as->a[i].kind, kind)) return &as->a[i];
    return NULL;
}

static int has_reason(const struct alert *a, const char *needle) {
    for (int i = 0; a && i < a->nreasons; i++)
        if (strstr(a->reasons[i], needle)) return 1;
    return 0;
}

/* --------------------------------------- generated stream vs the truth */

/* Per injected pattern: how many of its events the generator labelled, and
 * how many of those got an alert. card_testing counts the large orders only
 * (the rule's target: the small probe itself looks like any small order). */
Test(fraud_stream, generated_fraud_patterns_are_found_with_reasons) {
    gen_and_replay(16000, 0.05, 7);
    run_to_end(w.redis.url, "g1", "run", NULL);
    struct alerts as = read_alerts();
    cr_assert_gt(as.n, 0, "no alerts at all");

    /* Amounts of the generated orders, by event id, from the file. */
    size_t len;
    char *text = sp_t_read_file(w.data, &len);
    char *truth_text = sp_t_read_file(w.truth, NULL);
    cJSON *truth = cJSON_Parse(truth_text);
    free(truth_text);
    cr_assert_not_null(truth);
    static const char *const pats[] = {"card_testing", "amount_spike", "multi_card_device",
                                       "geo_mismatch", "review_burst"};
    long labelled[5] = {0}, found[5] = {0};
    size_t order_alerts = 0, order_true = 0, burst_alerts = 0, burst_true = 0;
    for (size_t i = 0; i < as.n; i++) {
        const struct alert *a = &as.a[i];
        cr_assert(a->score >= 0 && a->score <= 1, "score %f", a->score);
        cr_assert_gt(a->nreasons, 0, "alert %s without reasons", a->id);
        cr_assert_str_eq(a->key, a->user, "alerts are keyed by user");
        char want[160];
        snprintf(want, sizeof want, "%s:%s", strcmp(a->kind, "order") ? "rb" : "fa", a->trigger);
        cr_assert_str_eq(a->id, want, "alert_id follows the trigger event");
        for (size_t k = 0; k < i; k++) cr_assert_str_neq(as.a[k].id, a->id, "duplicate alert");
        const char *pattern = NULL;
        const cJSON *f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(truth, "fraud")) if (
            !strcmp(cJSON_GetObjectItem(f, "event_id")->valuestring, a->trigger)) pattern =
            cJSON_GetObjectItem(f, "pattern")->valuestring;
        if (!strcmp(a->kind, "order")) {
            order_alerts++;
            order_true += pattern && strcmp(pattern, "review_burst");
        } else {
            cr_assert_str_eq(a->kind, "review_burst");
            burst_alerts++;
            burst_true += pattern && !strcmp(pattern, "review_burst");
        }
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(truth, "fraud")) {
        const char *id = cJSON_GetObjectItem(f, "event_id")->valuestring;
        const char *pattern = cJSON_GetObjectItem(f, "pattern")->valuestring;
        int k = 0;
        while (k < 5 && strcmp(pats[k], pattern)) k++;
        cr_assert_lt(k, 5, "unknown pattern %s", pattern);
        if (k == 0) { /* the large order of the pair: total above 500 */
            char needle[96];
            snprintf(needle, sizeof needle, "\"event_id\":\"%s\"", id);
            const char *line = strstr(text, needle), *tot = line ? strstr(line, "\"total\":") : NULL;
            cr_assert_not_null(tot);
            if (atof(tot + 8) <= 500) continue;
        }
        labelled[k]++;
        for (size_t i = 0; i < as.n; i++)
            if (!strcmp(as.a[i].trigger, id)) {
                found[k]++;
                if (k == 0)
                    cr_assert(has_reason(&as.a[i], "small-then-large rule"),
                              "card testing alert without the rule's reason");
                break;
            }
    }
    for (int k = 0; k < 5; k++) {
        cr_log_info("%s: recall %ld/%ld", pats[k], found[k], labelled[k]);
        cr_assert_gt(labelled[k], 0, "the generator injected no %s", pats[k]);
    }
    cr_log_info("orders: precision %zu/%zu; review bursts: precision %zu/%zu", order_true,
                order_alerts, burst_true, burst_alerts);
    /* Floors a working operator clears with room, a broken one does not. */
    cr_assert_geq(found[0], labelled[0] * 9 / 10, "card_testing recall %ld/%ld", found[0], labelled[0]);
    cr_assert_geq(found[2] * 10, labelled[2] * 6, "multi_card_device recall %ld/%ld", found[2], labelled[2]);
    cr_assert_geq(found[1] * 10, labelled[1] * 2, "amount_spike recall %ld/%ld", found[1], labelled[1]);
    cr_assert_geq(found[4] * 10, labelled[4] * 3, "review_burst recall %ld/%ld", found[4], labelled[4]);
    cr_assert_geq(order_true * 10, order_alerts * 7, "order alert precision %zu/%zu", order_true, order_alerts);
    cr_assert_geq(burst_true * 10, burst_alerts * 8, "burst alert precision %zu/%zu", burst_true, burst_alerts);
    cJSON_Delete(truth);
    free(text);
    free(as.a);
}

/* ------------------------------------------------ Flink walkthrough rule */

/* Apache Flink's fraud-detection walkthrough: per account, a transaction
 * below 1.00 followed by one above 500.00 within one minute is flagged. One
 * user per case, so the cases cannot interact. `expect` is whether the rule
 * fires under the default settings (1.00 / 500.00 / 60 s) and under
 * small=5, large=100, window=10 s. */
struct rule_case {
    const char *user;
    double a1, a2;
    int64_t gap_ms;
    const char *card2; /* card of the second order; NULL: the same */
    double between;    /* an order between the two (0: none) */
    int expect_default, expect_custom;
};

static const struct rule_case rule_cases[] = {
    {"flink-fires", 0.50, 600.00, 30000, NULL, 0, 1, 0},       /* the walkthrough's example */
    {"flink-too-late", 0.50, 600.00, 61000, NULL, 0, 0, 0},    /* outside the minute */
    {"flink-edge-60s", 0.50, 600.00, 60000, NULL, 0, 0, 0},    /* the timer fires at 60 s */
    {"flink-not-small", 1.00, 600.00, 10000, NULL, 0, 0, 0},   /* 1.00 is not below 1.00 */
    {"flink-not-large", 0.99, 500.00, 10000, NULL, 0, 0, 0},   /* 500.00 is not above 500.00 */
    {"flink-other-card", 0.50, 600.00, 10000, "card-b", 0, 0, 0}, /* not the same card */
    {"flink-interrupted", 0.50, 600.00, 20000, NULL, 20.00, 0, 0}, /* large must follow small */
    {"flink-custom", 3.00, 150.00, 5000, NULL, 0, 0, 1},        /* only with the custom rule */
    {"flink-custom-late", 3.00, 150.00, 12000, NULL, 0, 0, 0},
};
#define NRULE (sizeof rule_cases / sizeof rule_cases[0])

static void produce_rule_cases(void) {
    for (size_t i = 0; i < NRULE; i++) {
        const struct rule_case *c = &rule_cases[i];
        char card[64];
        snprintf(card, sizeof card, "card-%s", c->user);
        int64_t t = T0 + (int64_t)i * 10 * MIN;
        order(0, c->user, t, c->a1, card);
        if (c->between > 0) order(0, c->user, t + c->gap_ms / 2, c->between, card);
        order(0, c->user, t + c->gap_ms, c->a2, c->card2 ? c->card2 : card);
    }
    produce_flush();
}

static void check_rule(const struct alerts *as, int custom) {
    for (size_t i = 0; i < NRULE; i++) {
        const struct rule_case *c = &rule_cases[i];
        int want = custom ? c->expect_custom : c->expect_default;
        int fired = 0;
        for (size_t k = 0; k < as->n; k++)
            if (!strcmp(as->a[k].user, c->user) && has_reason(&as->a[k], "small-then-large rule")) {
                fired++;
                cr_assert_eq(as->a[k].score, 1.0, "%s: the rule alone scores 1", c->user);
                char words[128];
                snprintf(words, sizeof words, "%.2f then %.2f on the same card within %d s", c->a1,
                         c->a2, custom ? 10 : 60);
                cr_assert(has_reason(&as->a[k], words), "%s: reason '%s' missing (got '%s')",
                          c->user, words, as->a[k].reasons[0]);
            }
        cr_assert_eq(fired, want, "%s (%s rule): fired %d times, want %d", c->user,
                     custom ? "custom" : "default", fired, want);
    }
}

Test(fraud_stream, flink_walkthrough_rule_golden) {
    produce_rule_cases();
    run_to_end(w.redis.url, "rule-default", "rule-default", NULL);
    struct alerts as = read_alerts();
    check_rule(&as, 0);
    free(as.a);

    /* The same orders under a configured rule, into a fresh Redis: the alerts
     * of the first run are in the topic too, so look only at new ones. */
    struct alerts first = read_alerts();
    size_t before = first.n;
    free(first.a);
    const char *extra[] = {"--fraud.rule_small_amount=5", "--fraud.rule_large_amount=100",
                           "--fraud.rule_window_ms=10000", NULL};
    run_to_end(w.reference.url, "rule-custom", "rule-custom", extra);
    as = read_alerts();
    struct alerts fresh = {as.a + before, as.n - before};
    check_rule(&fresh, 1);
    free(as.a);
}

/* --------------------------------------------------------- review bursts */

Test(fraud_stream, review_bursts_young_accounts_and_near_identical_texts) {
    /* Old accounts: seen 30 days before their reviews. Processed first, so
     * their age is known when the reviews arrive. Everything in partition 0,
     * so the order in which the reviews are counted is the order produced
     * (across partitions it is the order in which batches land: the counts
     * are cross-partition, at-least-once). */
    char u[32];
    for (int i = 0; i < 6; i++) {
        snprintf(u, sizeof u, "old%d", i);
        click(0, u, T0 - 30 * DAY);
    }
    produce_flush();
    run_to_end(w.redis.url, "bursts", "bursts-1", NULL);

    static const char *const distinct[] = {
        "excellent battery life", "strap broke after a week", "colour differs from the photo",
        "fast delivery and good box", "too small for my wrist", "works with my old charger"};
    int64_t t = T0;
    for (int i = 0; i < 6; i++) { /* item-young: six new accounts in 10 minutes */
        snprintf(u, sizeof u, "new%d", i);
        review(0, u, t + i * 2 * MIN, "item-young", distinct[i]);
    }
    for (int i = 0; i < 6; i++) { /* item-calm: six old accounts, distinct texts */
        snprintf(u, sizeof u, "old%d", i);
        review(0, u, t + i * 2 * MIN, "item-calm", distinct[i]);
    }
    for (int i = 0; i < 3; i++) { /* item-copy: three old accounts, one text */
        snprintf(u, sizeof u, "old%d", i);
        review(0, u, t + 30 * MIN + i * MIN, "item-copy",
               "best purchase ever, five stars, highly recommended to everyone");
    }
    produce_flush();
    run_to_end(w.redis.url, "bursts", "bursts-2", NULL);

    struct alerts as = read_alerts();
    size_t young = 0, copy = 0;
    for (size_t i = 0; i < as.n; i++) {
        const struct alert *a = &as.a[i];
        cr_assert_str_eq(a->kind, "review_burst", "an order alert from reviews only?");
        cr_assert_str_neq(a->item, "item-calm", "old accounts with distinct texts alerted: %s",
                          a->reasons[0]);
        if (!strcmp(a->item, "item-young")) {
            young++;
            cr_assert(has_reason(a, "reviews of this item in 60 minutes from accounts younger "
                                    "than 7 days"), "reason: %s", a->reasons[0]);
        } else {
            cr_assert_str_eq(a->item, "item-copy");
            copy++;
            cr_assert(has_reason(a, "3 near-identical reviews of this item in 60 minutes"),
                      "reason: %s", a->reasons[0]);
        }
    }
    /* The 5th and 6th young reviews reach min_young = 5; the 3rd copy
     * reaches min_dupes = 3. */
    cr_assert_eq(young, 2, "young-account burst alerts: %zu", young);
    cr_assert_eq(copy, 1, "near-identical alerts: %zu", copy);
    cr_assert_not_null(find_alert(&as, "new5", "review_burst"));
    cr_assert_null(find_alert(&as, "new3", "review_burst"), "alerted before the threshold");
    free(as.a);
}

/* ---------------------------------------------------------- KPI anomalies */

struct kalerts {
    size_t n;
    char metric[16][32];
    int64_t start[16];
    char reason[16][160];
};

static void on_kpi_alert(const rd_kafka_message_t *m, void *ctx) {
    struct kalerts *k = ctx;
    Shopstream__V1__KpiAlert *a = shopstream__v1__kpi_alert__unpack(NULL, m->len, m->payload);
    cr_assert_not_null(a, "shop.kpi-alerts holds something that is not a KpiAlert");
    if (k->n < 16) {
        snprintf(k->metric[k->n], sizeof k->metric[0], "%s", a->metric);
        k->start[k->n] = a->window_start_ms;
        snprintf(k->reason[k->n], sizeof k->reason[0], "%s", a->n_reasons ? a->reasons[0] : "");
        k->n++;
    }
    shopstream__v1__kpi_alert__free_unpacked(a, NULL);
}

/* Partition 0 sees 10-14 orders a minute for 40 minutes, then 60 in minute
 * 40, then normal again; every topic of the partition moves on so the
 * watermark passes every window. Exactly the spike's orders and GMV alert. */
Test(fraud_stream, kpi_spike_in_orders_alerts_once) {
    static const int normal[] = {12, 10, 13, 11, 14, 12, 11, 13, 10, 12};
    for (int m = 0; m < 46; m++) {
        int n = m == 40 ? 60 : normal[m % 10];
        int64_t t = T0 + m * MIN;
        for (int i = 0; i < n; i++) {
            char user[32];
            snprintf(user, sizeof user, "k%d", i % 7);
            order(0, user, t + i * 500, 20.0, "kcard");
        }
        click(0, "k0", t + 1000);
        review(0, "k0", t + 2000, "kitem", "fine");
    }
    produce_flush();
    const char *extra[] = {"--kpi.rollup_ms=0", NULL};
    run_to_end(w.redis.url, "kpi", "kpi", extra);
    struct kalerts k = {0};
    read_topic("shop.kpi-alerts", on_kpi_alert, &k);
    cr_assert_eq(k.n, 2, "want orders and gmv alerts for minute 40, got %zu (first: %s)", k.n,
                 k.n ? k.reason[0] : "-");
    for (size_t i = 0; i < k.n; i++) {
        cr_assert_eq(k.start[i], T0 + 40 * MIN, "alert for the wrong window: %s", k.reason[i]);
        cr_assert(strstr(k.reason[i], "above the forecast"), "%s", k.reason[i]);
    }
    cr_assert(!strcmp(k.metric[0], "orders") || !strcmp(k.metric[1], "orders"));
    cr_assert(!strcmp(k.metric[0], "gmv") || !strcmp(k.metric[1], "gmv"));
}

/* ---------------------------------------------------------------- kill -9 */

static char *fraud_dump(const char *url) {
    char *argv[] = {(char *)sp_t_bin(), "dump-state", "--redis-url", (char *)url, "--match",
                    "*:fraud:*", NULL};
    int st;
    char *d = sp_t_capture(argv, &st);
    cr_assert_eq(st, 0);
    return d;
}

static int64_t committed_total(const char *url) {
    int64_t n = 0;
    for (int t = 0; t < 3; t++) n += sp_t_committed(url, topics[t]);
    return n;
}

Test(fraud_stream, kill9_per_user_fraud_state_equals_a_clean_run) {
    gen_and_replay(6000, 0.05, 9);
    int64_t total = w.per_topic[0] + w.per_topic[1] + w.per_topic[2];
    srand((unsigned)time(NULL));
    /* Small batches and one commit in flight, so that the stream outlasts
     * the kills: a processor that got through everything before its kill
     * left the next round a target past the end, and the test waited for it
     * until it timed out (CI, twice, once the processor had become fast). */
    const char *slow[] = {"--batch.max_messages", "20", "--commit.max_inflight", "1", NULL};
    int mid_stream = 0;
    for (int round = 0; round < 3; round++) {
        pid_t pid = processor(w.redis.url, "k9", 0, "victim", slow);
        int64_t start = committed_total(w.redis.url);
        int64_t target = start + (total - start) / 4 + rand() % 300;
        if (target >= total) target = total - 1;
        for (int waited = 0; waited < 60000 && committed_total(w.redis.url) < target; waited += 10)
            sp_t_sleep_ms(10);
        sp_t_sleep_ms(rand() % 100);
        kill(pid, SIGKILL);
        sp_t_wait(pid, 10000);
        if (committed_total(w.redis.url) < total) mid_stream++;
    }
    cr_assert_gt(mid_stream, 0, "no kill landed before the processor had committed everything");
    run_to_end(w.redis.url, "k9", "survivor", NULL);
    cr_assert_eq(sp_t_wait_committed(w.redis.url, topics, w.per_topic, 3, 60000), 0);
    run_to_end(w.reference.url, "clean", "clean", NULL);
    char *a = fraud_dump(w.redis.url), *b = fraud_dump(w.reference.url);
    cr_assert_gt(strlen(b), 1000, "the clean run holds no fraud state");
    cr_assert(strstr(b, " u=b1:") && strstr(b, " cards=b1:") && strstr(b, " sv="),
              "no user, card or session state in the dump: %.300s", b);
    cr_assert_str_eq(a, b, "per-user fraud state differs after kill -9");
    free(a);
    free(b);
}

/* The dashboard's alert panel reads the Redis list alerts:recent: the latest
 * order alerts (at most 100), newest first, each one also in Kafka. */
Test(fraud_stream, latest_alerts_are_kept_in_redis_for_the_dashboard) {
    gen_and_replay(16000, 0.05, 7);
    run_to_end(w.redis.url, "g-recent", "run", NULL);
    struct alerts as = read_alerts();
    size_t order_alerts = 0;
    for (size_t i = 0; i < as.n; i++) order_alerts += !strcmp(as.a[i].kind, "order");
    cr_assert_gt(order_alerts, 0, "no order alerts to keep");
    redisContext *c = redisConnect("127.0.0.1", w.redis.port);
    cr_assert(c && !c->err);
    redisReply *r = redisCommand(c, "LRANGE alerts:recent 0 -1");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, order_alerts < 100 ? order_alerts : 100);
    for (size_t i = 0; i < r->elements; i++) {
        cJSON *j = cJSON_Parse(r->element[i]->str);
        cr_assert_not_null(j, "not JSON: %s", r->element[i]->str);
        const char *id = cJSON_GetObjectItem(j, "alert_id")->valuestring;
        int in_kafka = 0;
        for (size_t k = 0; k < as.n && !in_kafka; k++) in_kafka = !strcmp(as.a[k].id, id);
        cr_assert(in_kafka, "%s is in alerts:recent but not in Kafka", id);
        cr_assert_gt(cJSON_GetArraySize(cJSON_GetObjectItem(j, "reasons")), 0);
        cJSON_Delete(j);
    }
    freeReplyObject(r);
    redisFree(c);
    free(as.a);
}
