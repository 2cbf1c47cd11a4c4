/* `shopstream bench-consume`: the raw consume rate of the input topics, with
 * the processor's consumer settings and no processing at all, so `make bench`
 * can put the processor's rate beside it, measured on the same broker in the
 * same run. The clock runs from the first message to the last. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream/cli.h"
#include "stream/kafka.h"
#include "stream/error.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts every partition at offset 0 as `run` does for a partition with no
 * offset in Redis (the group is new each time, so nothing is committed),
 * rather than at BEGINNING, whose ListOffsets round trips could start some
 * partitions half a second late and make the raw rate look worse than it
 * is. */
static void raw_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t *l, void *opaque) {
    (void)opaque;
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, NULL);
        return;
    }
    for (int i = 0; i < l->cnt; i++) l->elems[i].offset = 0;
    rd_kafka_assign(rk, l);
}

int sp_cmd_bench_consume(int argc, char **argv) {
    const char *brokers = NULL, *topics = "shop.clicks,shop.orders,shop.reviews";
    long long expect = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
            brokers = argv[++i];
        else if (!strcmp(argv[i], "--topics") && i + 1 < argc)
            topics = argv[++i];
        else if (!strcmp(argv[i], "--messages") && i + 1 < argc)
            expect = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: shopstream bench-consume --brokers B --messages N [--topics a,b]\n");
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    if (!brokers || expect <= 0) {
        fprintf(stderr, "shopstream bench-consume: --brokers and --messages are required\n");
        return 2;
    }
    char err[256], group[64];
    snprintf(group, sizeof group, "bench-raw-%d", (int)time(NULL));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_conf_set(conf, "partition.assignment.strategy", "range", err, sizeof err);
    sp_kafka_consumer_defaults(conf, NULL); /* the processor's prefetch settings */
    rd_kafka_conf_set_rebalance_cb(conf, raw_rebalance);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "shopstream bench-consume: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(4);
    char *list = sp_xstrdup(topics), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        rd_kafka_topic_partition_list_add(sub, t, RD_KAFKA_PARTITION_UA);
    free(list);
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    long long n = 0, bytes = 0;
    double t0 = 0, t1 = 0, deadline = now_s() + 300;
    /* Nothing but the poll per message: the clock is read at the first
     * and the last one, and the deadline only while the queue is empty. */
    while (n < expect) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (now_s() > deadline) break;
            continue;
        }
        if (!m->err) {
            if (!n) t0 = now_s();
            n++;
            bytes += (long long)m->len;
            if (n == expect) t1 = now_s();
        }
        rd_kafka_message_destroy(m);
    }
    if (n < expect) t1 = now_s(); /* timed out: the rate is a lower bound */
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    double s = t1 > t0 ? t1 - t0 : 1e-9;
    printf("raw: messages=%lld bytes=%lld seconds=%.3f rate=%.0f\n", n, bytes, s, (double)n / s);
    return n == expect ? 0 : 1;
}
