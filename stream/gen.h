#ifndef STREAM_GEN_H
#define STREAM_GEN_H

/* The synthetic shop: a seeded, deterministic generator of coherent user
 * sessions (view -> click -> add to cart -> order -> later review), with
 * Zipf item popularity, per-item category and price, per-user country,
 * devices, IP and cards, a share of injected fraud scenarios, malformed
 * records and producer-retry duplicates, and the ground truth for all three.
 * Same configuration, same bytes: no clock, no global state, no libc rand. */
#include <stdint.h>
#include <stdio.h>

#include "stream/event.h"

enum sp_gen_format { SP_GEN_JSONL, SP_GEN_PROTO };

typedef struct sp_gen_conf {
    uint64_t seed;
    uint64_t events;       /* records to produce, malformed and duplicates included */
    uint32_t users;
    uint32_t items;
    uint32_t categories;
    int64_t start_ms;      /* event time of the first session */
    enum sp_gen_format format;
    double fraud_rate;     /* share of sessions that are a fraud scenario */
    double malformed_rate; /* share of records that are malformed */
    double duplicate_rate; /* share of records that repeat an earlier record verbatim */
} sp_gen_conf;

/* Fills the defaults: 100000 events, 10000 users, 5000 items, 50
 * categories, seed 1, 2026-01-01T00:00:00Z, JSONL, fraud 1% of sessions,
 * malformed and duplicates 0.5% of records each. */
void sp_gen_conf_init(sp_gen_conf *conf);

enum sp_gen_label { SP_GEN_VALID, SP_GEN_DUPLICATE, SP_GEN_MALFORMED };

/* One generated record. Everything it points to belongs to the generator and
 * lives until the next sp_gen_next or sp_gen_destroy. */
typedef struct sp_gen_record {
    const uint8_t *data;   /* JSON text (no newline) or protobuf bytes (no length prefix) */
    size_t len;
    uint64_t index;        /* 0-based position in the output */
    enum sp_gen_label label;
    enum sp_event_kind kind; /* of the event before any damage */
    const char *event_id;
    const char *user_id;   /* the intended user, even when the record lost it */
    int64_t ts_ms;
    const char *fraud;     /* fraud pattern name, or NULL */
    const char *malformed; /* malformed kind ("truncated_protobuf", ...), or NULL */
    const char *reason;    /* for malformed: a substring of the reason decode/validate gives */
} sp_gen_record;

typedef struct sp_gen sp_gen;

/* Returns a generator for conf (copied), or NULL with the reason in err for
 * an impossible configuration (no users, rates outside [0,1], ...). */
sp_gen *sp_gen_new(const sp_gen_conf *conf, char *err, size_t errlen);

/* Produces the next record into *rec. Returns 1, or 0 when conf->events
 * records have been produced. */
int sp_gen_next(sp_gen *g, sp_gen_record *rec);

/* The ground truth of everything produced so far, as one JSON document:
 * counts of valid events by kind, duplicates, malformed records by kind,
 * fraud events by pattern, and the lists behind those counts. Caller frees
 * with free(). */
char *sp_gen_truth_json(const sp_gen *g);

void sp_gen_destroy(sp_gen *g);

/* Writes one record with the framing of the format: a newline after JSON, a
 * 4-byte big-endian length before protobuf. Returns 0 or SP_ERR_IO. */
int sp_gen_write(FILE *f, enum sp_gen_format fmt, const uint8_t *data, size_t len);

#endif
