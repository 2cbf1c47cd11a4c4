/* The output sink: a delivery that keeps failing is produced again
 * SP_SINK_MAX_RETRIES times, then logged and counted, and flush returns
 * instead of hanging. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>
#include <librdkafka/rdkafka.h>

#include "stream/config.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/metrics.h"
#include "tests/support/harness.h"

Test(sink, undeliverable_messages_are_retried_then_counted) {
    sp_config cfg;
    sp_config_init(&cfg);
    char err[256], bs[64];
    snprintf(bs, sizeof bs, "127.0.0.1:%d", sp_t_free_port()); /* nothing listens there */
    cr_assert_eq(sp_config_set(&cfg, "brokers", bs, err, sizeof err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "kafka.message.timeout.ms", "300", err, sizeof err), SP_OK);
    sp_metrics m;
    memset(&m, 0, sizeof m);
    sp_sink *sk = sp_sink_new(&cfg, &m, err, sizeof err);
    cr_assert_not_null(sk, "%s", err);
    sp_header h = {"error", "x", 1};
    cr_assert_eq(sp_sink_produce(sk, "shop.deadletter", "k", 1, "v", 1, &h, 1), SP_OK);
    int rounds = 0;
    while (sp_sink_flush(sk, 1000) != SP_OK && rounds < 30) rounds++;
    cr_assert_lt(rounds, 30, "flush never finished");
    cr_assert_eq(m.produce_failed, 1);
    cr_assert_eq(m.produced, 0);
    sp_sink_destroy(sk);
    sp_config_release(&cfg);
}

/* A sink on a fresh one-partition mock cluster (stopped by the caller). */
static sp_sink *mock_sink(sp_t_mock *mock, sp_config *cfg, sp_metrics *m) {
    cr_assert_eq(sp_t_mock_start(mock, 1), 0);
    sp_config_init(cfg);
    char err[256];
    cr_assert_eq(sp_config_set(cfg, "brokers", mock->bootstrap, err, sizeof err), SP_OK);
    memset(m, 0, sizeof *m);
    sp_sink *sk = sp_sink_new(cfg, m, err, sizeof err);
    cr_assert_not_null(sk, "%s", err);
    return sk;
}

Test(sink, delivered_messages_are_counted) {
    sp_t_mock mock;
    sp_config cfg;
    sp_metrics m;
    sp_sink *sk = mock_sink(&mock, &cfg, &m);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(sp_sink_produce(sk, "shop.deadletter", "k", 1, "v", 1, NULL, 0), SP_OK);
    cr_assert_eq(sp_sink_flush(sk, 20000), SP_OK);
    cr_assert_eq(m.produced, 10);
    cr_assert_eq(m.produce_failed, 0);
    sp_sink_destroy(sk);
    sp_config_release(&cfg);
    sp_t_mock_stop(&mock);
}

/* The producer lingers SP_SINK_LINGER_MS by default (outputs come one by one
 * as events are processed; with 0 each would wake the broker thread and go
 * out alone), and a kafka.linger.ms or kafka.queue.buffering.max.ms setting
 * wins over it. */
Test(sink, the_producer_lingers_a_millisecond_unless_configured) {
    const char *keys[] = {NULL, "kafka.linger.ms", "kafka.queue.buffering.max.ms"};
    const char *want[] = {SP_SINK_LINGER_MS, "7", "9"};
    for (int i = 0; i < 3; i++) {
        sp_config cfg;
        sp_config_init(&cfg);
        char err[256], v[64];
        cr_assert_eq(sp_config_set(&cfg, "brokers", "127.0.0.1:9", err, sizeof err), SP_OK);
        if (keys[i]) cr_assert_eq(sp_config_set(&cfg, keys[i], want[i], err, sizeof err), SP_OK);
        sp_metrics m;
        memset(&m, 0, sizeof m);
        sp_sink *sk = sp_sink_new(&cfg, &m, err, sizeof err);
        cr_assert_not_null(sk, "%s", err);
        cr_assert_eq(sp_sink_conf_get(sk, "linger.ms", v, sizeof v), SP_OK);
        cr_assert_str_eq(v, want[i], "%s: linger.ms %s", keys[i] ? keys[i] : "default", v);
        cr_assert_eq(sp_sink_conf_get(sk, "no.such.property", v, sizeof v), SP_ERR_FATAL);
        sp_sink_destroy(sk);
        sp_config_release(&cfg);
    }
    cr_assert_str_eq(SP_SINK_LINGER_MS, "1");
}

/* By default the sink holds records (SP_SINK_HOLD_US) and hands them to
 * librdkafka together; meanwhile they count as outstanding, so the commit
 * that depends on them waits. With kafka.linger.ms set they go at once. */
Test(sink, records_are_held_a_moment_and_count_as_outstanding) {
    sp_t_mock mock;
    sp_config cfg;
    sp_metrics m;
    sp_sink *sk = mock_sink(&mock, &cfg, &m);
    uint64_t gen = sp_sink_next_gen(sk) + 1; /* the generation records now get */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(sp_sink_produce(sk, "sink.held", "k", 1, "v", 1, NULL, 0), SP_OK);
    cr_assert_eq(sp_sink_held(sk), 5);
    cr_assert_eq(sp_sink_outstanding(sk, gen), 5);
    struct timespec ts = {0, 3 * SP_SINK_HOLD_US * 1000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < 8 && sp_sink_held(sk); i++) cr_assert_eq(sp_sink_tick(sk), SP_OK);
    cr_assert_eq(sp_sink_held(sk), 0, "the hold ran out and the records stayed");
    cr_assert_eq(sp_sink_flush(sk, 20000), SP_OK);
    cr_assert_eq(m.produced, 5);
    cr_assert_eq(sp_sink_outstanding(sk, gen), 0);
    sp_sink_destroy(sk);
    sp_config_release(&cfg);

    char err[256];
    sp_config_init(&cfg);
    cr_assert_eq(sp_config_set(&cfg, "brokers", mock.bootstrap, err, sizeof err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "kafka.linger.ms", "1", err, sizeof err), SP_OK);
    sk = sp_sink_new(&cfg, &m, err, sizeof err);
    cr_assert_not_null(sk, "%s", err);
    cr_assert_eq(sp_sink_produce(sk, "sink.held", "k", 1, "v", 1, NULL, 0), SP_OK);
    cr_assert_eq(sp_sink_held(sk), 0, "kafka.linger.ms set: nothing is held");
    sp_sink_destroy(sk);
    sp_config_release(&cfg);
    sp_t_mock_stop(&mock);
}

/* A held record librdkafka refuses when it is handed over (here: larger
 * than message.max.bytes) is counted and logged, its generation never
 * settles (no commit can count on it), and the sink refuses every record
 * after it: the consumer loop stops with the batch uncommitted, as it did
 * when produce refused the record directly. */
Test(sink, a_record_refused_at_hand_over_stops_the_sink) {
    sp_t_mock mock;
    cr_assert_eq(sp_t_mock_start(&mock, 1), 0);
    sp_config cfg;
    sp_config_init(&cfg);
    char err[256];
    cr_assert_eq(sp_config_set(&cfg, "brokers", mock.bootstrap, err, sizeof err), SP_OK);
    cr_assert_eq(sp_config_set(&cfg, "kafka.message.max.bytes", "1000", err, sizeof err), SP_OK);
    sp_metrics m;
    memset(&m, 0, sizeof m);
    sp_sink *sk = sp_sink_new(&cfg, &m, err, sizeof err);
    cr_assert_not_null(sk, "%s", err);
    uint64_t gen = sp_sink_next_gen(sk) + 1;
    static char big[4000];
    cr_assert_eq(sp_sink_produce(sk, "sink.big", "k", 1, "small", 5, NULL, 0), SP_OK);
    cr_assert_eq(sp_sink_produce(sk, "sink.big", "k", 1, big, sizeof big, NULL, 0), SP_OK);
    cr_assert_eq(sp_sink_send(sk), SP_ERR_RETRY);
    cr_assert_eq(m.produce_failed, 1);
    cr_assert_eq(sp_sink_produce(sk, "sink.big", "k", 1, "later", 5, NULL, 0), SP_ERR_RETRY);
    cr_assert_eq(sp_sink_tick(sk), SP_ERR_RETRY);
    sp_sink_flush(sk, 20000);
    cr_assert_eq(m.produced, 1, "the record before the refused one is delivered");
    cr_assert_eq(sp_sink_outstanding(sk, gen), 1, "the refused record's generation settled");
    sp_sink_destroy(sk);
    sp_config_release(&cfg);
    sp_t_mock_stop(&mock);
}

/* Reads topic's partitions from the start until `want` records came (or
 * 20 s passed) and checks each one: key "k<topic index>", value
 * "v<record index>", header "n" = the topic name. Returns how many came. */
static int read_back(const char *bootstrap, const char *topic, int t, int want) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cr_assert_eq(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err),
                 RD_KAFKA_CONF_OK);
    cr_assert_eq(rd_kafka_conf_set(conf, "group.id", "sink-read-back", err, sizeof err),
                 RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 0, rkt, &md, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int nparts = md->topics[0].err ? 0 : md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    cr_assert_gt(nparts, 0, "%s: no such topic", topic);
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(rk, tp), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(tp);
    int got = 0;
    for (int polls = 0; got < want && polls < 200; polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err) cr_log_warn("%s: %s", topic, rd_kafka_message_errstr(m));
        if (!m->err) {
            char key[16], val[16];
            snprintf(key, sizeof key, "k%d", t);
            snprintf(val, sizeof val, "v%d", got);
            cr_assert_str_eq(rd_kafka_topic_name(m->rkt), topic);
            cr_assert(m->key_len == strlen(key) && !memcmp(m->key, key, m->key_len),
                      "%s: record %d: key %.*s", topic, got, (int)m->key_len, (char *)m->key);
            cr_assert(m->len == strlen(val) && !memcmp(m->payload, val, m->len),
                      "%s: record %d: value %.*s", topic, got, (int)m->len, (char *)m->payload);
            rd_kafka_headers_t *h = NULL;
            const void *hv = NULL;
            size_t hl = 0;
            cr_assert_eq(rd_kafka_message_headers(m, &h), RD_KAFKA_RESP_ERR_NO_ERROR);
            cr_assert_eq(rd_kafka_header_get_last(h, "n", &hv, &hl), RD_KAFKA_RESP_ERR_NO_ERROR);
            cr_assert(hl == strlen(topic) && !memcmp(hv, topic, hl), "%s: header", topic);
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

/* The sink produces by topic handle, made on a topic's first record and
 * kept: records interleaved over more topics than it keeps handles for
 * (the rest go by name), named from one reused buffer, each land in their
 * own topic with their key, value and headers. */
Test(sink, records_reach_their_topic_by_handle_or_by_name, .timeout = 120) {
    sp_t_mock mock;
    sp_config cfg;
    sp_metrics m;
    sp_sink *sk = mock_sink(&mock, &cfg, &m);
    enum { TOPICS = 20, ROUNDS = 3 };
    char topic[32], key[16], val[16];
    int sent[TOPICS] = {0};
    for (int r = 0; r < ROUNDS; r++)
        for (int t = 0; t < TOPICS; t++) {
            snprintf(topic, sizeof topic, "sink.t%02d", t);
            snprintf(key, sizeof key, "k%d", t);
            snprintf(val, sizeof val, "v%d", sent[t]++);
            sp_header h = {"n", topic, strlen(topic)};
            cr_assert_eq(sp_sink_produce(sk, topic, key, strlen(key), val, strlen(val), &h, 1),
                         SP_OK);
        }
    cr_assert_eq(sp_sink_flush(sk, 20000), SP_OK);
    cr_assert_eq(m.produced, TOPICS * ROUNDS);
    for (int t = 0; t < TOPICS; t++) {
        snprintf(topic, sizeof topic, "sink.t%02d", t);
        cr_assert_eq(read_back(mock.bootstrap, topic, t, ROUNDS), ROUNDS, "%s", topic);
    }
    sp_sink_destroy(sk);
    sp_config_release(&cfg);
    sp_t_mock_stop(&mock);
}
