#ifndef STREAM_HTTP_H
#define STREAM_HTTP_H

/* The HTTP server (libmicrohttpd), started by `run` when http.listen is set:
 *   /metrics        Prometheus text: pipeline counters, consumer lag, latency
 *                   histograms, and the KPIs (all-time and the last window
 *                   complete in every partition)
 *   /healthz        200, or 503 naming what is unreachable (redis, kafka)
 *   /api/kpi        ?from=&to=&dim=&res=&limit=: windows summed over partitions
 *   /api/totals     all-time KPIs summed over partitions
 *   /api/user/ID    a user's state ({p*}:u:ID, found by SCAN)
 *   /api/item/ID    an item's review aggregates (item:ID)
 *   /api/alerts     the latest fraud alerts (Redis list alerts:recent)
 *   /               the live dashboard (page and chart library embedded)
 *
 * Threads: the server runs on one internal thread of its own and serves one
 * request at a time. It reads Redis through its own connection (sp_reader),
 * never the consumer's; it reads the consumer's counters from `metrics`
 * without a lock -- 64-bit counters written by one thread, so a reader sees
 * each value whole, perhaps one update old -- and asks librdkafka (which is
 * thread-safe) for broker metadata for /healthz.
 * @locality the consumer thread calls start and stop. */
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/metrics.h"

typedef struct sp_http_conf {
    const char *listen;         /* "host:port"; port 0 picks a free one */
    const char *redis_url;
    int redis_timeout_ms;
    const sp_metrics *metrics;  /* may be NULL (no pipeline counters) */
    rd_kafka_t *rk;             /* for /healthz; may be NULL */
    int64_t window_ms, rollup_ms;
    /* Redis Cluster seeds and credentials, as the store's (may be NULL). */
    const char *redis_cluster, *redis_user, *redis_password;
} sp_http_conf;

typedef struct sp_http sp_http;

/* Binds and starts serving. NULL with the reason in err (bad address,
 * address in use). The strings in conf must outlive the server. */
sp_http *sp_http_start(const sp_http_conf *conf, char *err, size_t errlen);
/* The bound port. */
int sp_http_port(const sp_http *h);
/* Stops serving and frees; accepts NULL. */
void sp_http_stop(sp_http *h);

#endif
