#ifndef STREAM_KAFKA_H
#define STREAM_KAFKA_H

/* Kafka plumbing shared by the source and the sink: building librdkafka
 * configuration from shopstream's config, and the output producer. */
#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "stream/config.h"
#include "stream/metrics.h"

/* A librdkafka conf with bootstrap servers and every kafka.<prop> applied.
 * An unknown or invalid property is an error naming "kafka.<prop>"; the value
 * of a secret property is never copied into err. */
rd_kafka_conf_t *sp_kafka_conf_new(const sp_config *cfg, char *err, size_t errlen);

/* The sink: an idempotent producer for outputs and dead letters. A delivery
 * that fails after librdkafka's own retries is produced again up to
 * SP_SINK_MAX_RETRIES times, then logged and counted in
 * metrics->produce_failed. */
#define SP_SINK_MAX_RETRIES 3

typedef struct sp_sink sp_sink;

typedef struct sp_header {
    const char *name;
    const void *value;
    size_t len;
} sp_header;

sp_sink *sp_sink_new(const sp_config *cfg, sp_metrics *metrics, char *err, size_t errlen);
void sp_sink_destroy(sp_sink *sk);

/* Queues one message (payload, key and headers are copied). */
int sp_sink_produce(sp_sink *sk, const char *topic, const void *key, size_t keylen,
                    const void *value, size_t len, const sp_header *hdrs, size_t nhdrs);

/* Waits until every queued message is delivered or has failed for good.
 * Returns 0, or SP_ERR_RETRY if messages are still in flight after
 * timeout_ms. Outputs are flushed before the state commit that depends on
 * them, so a crash can repeat an output but never lose one. */
int sp_sink_flush(sp_sink *sk, int timeout_ms);

#endif
