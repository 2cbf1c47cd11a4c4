#ifndef STREAM_KAFKA_H
#define STREAM_KAFKA_H

/* Kafka plumbing shared by the source and the sink: building librdkafka
 * configuration from shopstream's config, and the output producer. */
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/config.h"
#include "stream/metrics.h"

/* A librdkafka conf with bootstrap servers and every kafka.<prop> applied.
 * An unknown or invalid property is an error naming "kafka.<prop>"; the value
 * of a secret property is never copied into err. */
rd_kafka_conf_t *sp_kafka_conf_new(const sp_config *cfg, char *err, size_t errlen);

/* The consumer's prefetch settings, where cfg (may be NULL) sets no
 * kafka.<prop> of the same name. librdkafka 2.0.2 refills its consumer
 * queue -- one queue for all of an instance's partitions -- only while it
 * holds fewer than queued.min.messages and queued.max.messages.kbytes, and
 * once over either it waits a whole second before fetching again
 * (librdkafka #2879; fetch.queue.backoff.ms came in 2.2.0). With the
 * defaults (100,000 messages) a processor that gets through 500k messages a
 * second ran dry for most of that second. The queue should hold more than a
 * second of processing: 1,000,000 messages or 128 MiB. */
void sp_kafka_consumer_defaults(rd_kafka_conf_t *conf, const sp_config *cfg);

/* librdkafka's log lines, at the matching level (errors, warnings; the
 * rest at debug). Two kinds are expected and not warnings: the producer's
 * CONFWARN about consumer properties (the two share the kafka.* keys), and
 * COMMITFAIL, a failed commit of Kafka's copy of the offsets (lag
 * monitoring only; a rebalance fails it routinely), logged at info. */
void sp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* The sink: an idempotent producer for outputs and dead letters. A delivery
 * that fails after librdkafka's own retries is produced again up to
 * SP_SINK_MAX_RETRIES times, then logged and counted in
 * metrics->produce_failed. */
#define SP_SINK_MAX_RETRIES 3

/* The producer's linger.ms, and how long the sink holds records before
 * handing them to librdkafka together, unless kafka.linger.ms (or
 * kafka.queue.buffering.max.ms) is set: see sp_sink_new. */
#define SP_SINK_LINGER_MS "1"
#define SP_SINK_HOLD_US 1000

typedef struct sp_sink sp_sink;

typedef struct sp_header {
    const char *name;
    const void *value;
    size_t len;
} sp_header;

sp_sink *sp_sink_new(const sp_config *cfg, sp_metrics *metrics, char *err, size_t errlen);
void sp_sink_destroy(sp_sink *sk);

/* The value librdkafka holds for a producer property (as the string it
 * prints). Returns 0, or SP_ERR_FATAL for an unknown property or a buffer
 * too small. */
int sp_sink_conf_get(const sp_sink *sk, const char *name, char *buf, size_t len);

/* Queues one message (payload, key and headers are copied). The sink holds
 * it until SP_SINK_HOLD_US have passed since the oldest record it holds
 * (checked here and in sp_sink_tick), or until sp_sink_send, sp_sink_poll
 * or sp_sink_flush; a held record counts as outstanding for its
 * generation. Returns 0, or SP_ERR_RETRY once librdkafka has refused a
 * record: the caller stops without committing. */
int sp_sink_produce(sp_sink *sk, const char *topic, const void *key, size_t keylen,
                    const void *value, size_t len, const sp_header *hdrs, size_t nhdrs);

/* Hands every held record to librdkafka, in the order produced. Returns 0,
 * or SP_ERR_RETRY when librdkafka has refused one, now or before (logged,
 * counted in metrics->produce_failed; its generation never settles, so no
 * commit that depends on it is made). */
int sp_sink_send(sp_sink *sk);

/* sp_sink_send once the oldest held record has waited SP_SINK_HOLD_US; for
 * the consumer loop, once per event. Returns as sp_sink_send. */
int sp_sink_tick(sp_sink *sk);

/* How many records the sink holds (not yet handed to librdkafka). */
size_t sp_sink_held(const sp_sink *sk);

/* Waits until every queued message is delivered or has failed for good.
 * Returns 0, or SP_ERR_RETRY if messages are still in flight after
 * timeout_ms. Outputs are flushed before the state commit that depends on
 * them, so a crash can repeat an output but never lose one. */
int sp_sink_flush(sp_sink *sk, int timeout_ms);

/* Looks an output topic up on the cluster now, so that a topic that does not
 * exist stops startup with a clear error instead of blocking the first
 * commit, and so that the first output does not wait for librdkafka's next
 * metadata refresh (about a second). Returns 0; SP_ERR_NOTFOUND (or
 * another error the cluster gave for the topic, e.g. not authorized) with
 * err naming the topic; SP_ERR_RETRY when no answer came in timeout_ms (the
 * caller may go on: librdkafka keeps trying). */
int sp_sink_check_topic(sp_sink *sk, const char *topic, int timeout_ms, char *err,
                        size_t errlen);

/* Generations, for the consumer loop's asynchronous commits: every message
 * is tagged with the generation current when it was produced;
 * sp_sink_next_gen() returns the current one and starts the next, and
 * sp_sink_outstanding() tells how many of a generation's messages are
 * neither delivered nor failed for good yet (delivery reports are served by
 * sp_sink_poll, which waits up to timeout_ms for one, sp_sink_flush and a
 * full queue). Counts are kept modulo
 * SP_SINK_GENS generations: at most that many may be outstanding at once. */
#define SP_SINK_GENS 64
uint64_t sp_sink_next_gen(sp_sink *sk);
int64_t sp_sink_outstanding(const sp_sink *sk, uint64_t gen);
void sp_sink_poll(sp_sink *sk, int timeout_ms);

#endif
