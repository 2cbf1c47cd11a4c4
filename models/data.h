#ifndef MODELS_DATA_H
#define MODELS_DATA_H

/* Interaction data for training and evaluation: sequences (one per user or
 * session) of item indices in time order, read from the supported formats. */
#include <stddef.h>
#include <stdint.h>

#include "models/vocab.h"

enum sp_data_format {
    SP_FMT_SEQ,        /* "user item item ..." per line, time order (Amazon Beauty) */
    SP_FMT_RSC15,      /* TSV SessionId ItemId Time, header line */
    SP_FMT_DIGINETICA, /* session_id;user_id;item_id;timeframe;eventdate, header */
    SP_FMT_EVENTS      /* shopstream JSONL events; click events only */
};

struct sp_dataset {
    size_t n_seq, n_events;
    size_t *off;    /* n_seq + 1: sequence s is item[off[s] .. off[s+1]) */
    int32_t *item;  /* item index, -1 when a frozen vocabulary does not know it */
    int64_t *ts;    /* event time in ms (the position for SP_FMT_SEQ) */
    uint8_t *kind;  /* enum sp_event_kind of each event (view when unknown) */
};

int sp_data_format_parse(const char *s, enum sp_data_format *out);

/* Reads path into *d (released with sp_dataset_release). Sequences come in
 * order of first appearance, events inside one by time then file order.
 * Items are mapped through vocab: added when frozen is 0, else -1 when
 * unknown. Returns 0, or SP_ERR_IO / SP_ERR_BADINPUT with a reason naming
 * the line. */
int sp_dataset_load(const char *path, enum sp_data_format fmt, sp_vocab *vocab, int frozen,
                    struct sp_dataset *d, char *err, size_t errlen);
void sp_dataset_release(struct sp_dataset *d);

#endif
