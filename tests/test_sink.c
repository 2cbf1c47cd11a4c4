/* The output sink: a delivery that keeps failing is produced again
 * SP_SINK_MAX_RETRIES times, then logged and counted, and flush returns
 * instead of hanging. */
#include <criterion/criterion.h>
#include <string.h>

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

Test(sink, delivered_messages_are_counted) {
    sp_t_mock mock;
    cr_assert_eq(sp_t_mock_start(&mock, 1), 0);
    sp_config cfg;
    sp_config_init(&cfg);
    char err[256];
    cr_assert_eq(sp_config_set(&cfg, "brokers", mock.bootstrap, err, sizeof err), SP_OK);
    sp_metrics m;
    memset(&m, 0, sizeof m);
    sp_sink *sk = sp_sink_new(&cfg, &m, err, sizeof err);
    cr_assert_not_null(sk, "%s", err);
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
