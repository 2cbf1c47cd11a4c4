#ifndef MODELS_TRAIN_H
#define MODELS_TRAIN_H

/* The trainer: learns a model from a data set, deterministically for a
 * seed. Sequence models use Adam on the sampled-softmax next-item loss;
 * MF uses the same online BPR update the stream uses, epoch after epoch. */
#include <stddef.h>
#include <stdint.h>

#include "models/data.h"
#include "models/model.h"

struct sp_train_opts {
    struct sp_model_config cfg;
    uint32_t epochs;
    uint32_t batch;    /* sequences per Adam step */
    uint32_t holdout;  /* events left out at the end of each sequence (kept for eval) */
    uint64_t seed;
    int progress;      /* 1: live line on a terminal, else one log line per epoch */
    double max_seconds; /* stop after the epoch that passes this (0 = no limit) */
};

void sp_train_opts_default(struct sp_train_opts *o, enum sp_model_kind kind);

/* Trains on d, whose items are indices of vocab; the model takes ownership
 * of vocab (also on failure). Returns NULL with a reason in err. */
sp_model *sp_train(const struct sp_dataset *d, sp_vocab *vocab, const struct sp_train_opts *o,
                   char *err, size_t errlen);

#endif
