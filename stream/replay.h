#ifndef STREAM_REPLAY_H
#define STREAM_REPLAY_H

/* Producing event records into the input topics, as `shopstream replay` and
 * `shopstream gen --brokers` do. A record goes to the topic of its body
 * (<prefix>clicks, <prefix>orders, <prefix>reviews), keyed by its user_id,
 * with its bytes untouched: a malformed record must reach the processor
 * exactly as it was written. A record that cannot be read far enough to
 * route goes to <prefix>clicks with an empty key. */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_replay_sink sp_replay_sink;

typedef struct sp_replay_sink_conf {
    const char *brokers;      /* bootstrap servers */
    const char *topic_prefix; /* "shop." unless set */
    const char **props;       /* "name=value" librdkafka properties, applied last */
    int nprops;
} sp_replay_sink_conf;

/* Creates an idempotent producer (linger 5 ms, lz4). Returns NULL with the
 * reason in err for a bad property or broker list. */
sp_replay_sink *sp_replay_sink_new(const sp_replay_sink_conf *conf, char *err, size_t errlen);

/* Queues one record (copied), waiting for room when the local queue is full.
 * is_json picks the content-type header (application/json or
 * application/x-protobuf) and how the record is peeked for routing. Returns
 * 0 or SP_ERR_RETRY when librdkafka refuses it (counted as failed). */
int sp_replay_sink_send(sp_replay_sink *s, const uint8_t *data, size_t len, int is_json);

/* Serves delivery reports without blocking; call it now and then. */
void sp_replay_sink_poll(sp_replay_sink *s);

/* Records queued, delivered and failed so far, and topics written to. */
void sp_replay_sink_stats(const sp_replay_sink *s, uint64_t *queued, uint64_t *delivered,
                          uint64_t *failed, int *topics);

/* The first delivery error's description, "" if none. */
const char *sp_replay_sink_first_error(const sp_replay_sink *s);

/* Waits until every queued record has been delivered or has failed. */
void sp_replay_sink_flush(sp_replay_sink *s);

/* Waits for every queued record to be delivered or to fail, then frees the
 * producer. Returns the number of records that failed (0 is success). */
uint64_t sp_replay_sink_close(sp_replay_sink *s);

#endif
