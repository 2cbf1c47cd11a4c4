/* `shopstream mock-kafka`: librdkafka's in-process mock cluster, run as its
 * own process, so tests can kill -9 the processor while "Kafka" lives on.
 *
 * The mock keeps at most 5 MiB or 100,000 message sets per partition and
 * silently drops older ones (librdkafka 2.0.2, rdkafka_mock.c): tests spread
 * load over partitions and check that every event arrived. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream/cli.h"
#include "stream/error.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: shopstream mock-kafka [--brokers N] [--partitions N] [--topics a,b,...]\n"
            "                             [--bootstrap-file FILE] [--rtt-ms N]\n\n"
            "Starts librdkafka's mock Kafka cluster, creates the topics (default\n"
            "shop.clicks,shop.orders,shop.reviews,shop.deadletter with 6 partitions),\n"
            "prints 'bootstrap: HOST:PORT' and runs until SIGINT/SIGTERM. Supports\n"
            "consumer groups and the idempotent producer; no transactions, admin API or SASL.\n"
            "--rtt-ms N delays every broker response by N ms (a slow or distant Kafka:\n"
            "tests use it to hold a batch's outputs unacknowledged for a while).\n");
}

int sp_cmd_mock_kafka(int argc, char **argv) {
    int brokers = 1, partitions = 6, rtt_ms = 0;
    const char *topics = "shop.clicks,shop.orders,shop.reviews,shop.deadletter";
    const char *bootstrap_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--brokers") && v) {
            brokers = atoi(v), i++;
        } else if (!strcmp(a, "--partitions") && v) {
            partitions = atoi(v), i++;
        } else if (!strcmp(a, "--topics") && v) {
            topics = v, i++;
        } else if (!strcmp(a, "--rtt-ms") && v) {
            rtt_ms = atoi(v), i++;
        } else if (!strcmp(a, "--bootstrap-file") && v) {
            bootstrap_file = v, i++;
        } else {
            fprintf(stderr, "shopstream mock-kafka: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (brokers < 1 || partitions < 1 || rtt_ms < 0) {
        fprintf(stderr, "shopstream mock-kafka: --brokers and --partitions must be >= 1, "
                        "--rtt-ms >= 0\n");
        return 2;
    }
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "shopstream mock-kafka: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "shopstream mock-kafka: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    char *list = sp_xstrdup(topics), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, t, partitions, 1);
        if (e) fprintf(stderr, "shopstream mock-kafka: topic %s: %s\n", t, rd_kafka_err2str(e));
    }
    free(list);
    for (int b = 1; b <= brokers && rtt_ms; b++) /* mock broker ids are 1..N */
        rd_kafka_mock_broker_set_rtt(mc, b, rtt_ms);
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    if (bootstrap_file) {
        FILE *f = fopen(bootstrap_file, "w");
        if (f) {
            fprintf(f, "%s\n", bs);
            fclose(f);
        }
    }
    printf("bootstrap: %s\n", bs);
    fflush(stdout);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop) pause();
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
