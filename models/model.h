#ifndef MODELS_MODEL_H
#define MODELS_MODEL_H

/* The model object shared by the trainer, the evaluator and the serving
 * scorer: a kind, a configuration, one flat array of float parameters cut
 * into named tensors by a layout, and the item-id vocabulary.
 *
 * Every kind scores an item the same way: score(i) = u . E[i] + bias[i],
 * where u is the user representation (the MF user vector, the GRU hidden
 * state, or the attention encoder's last output) and E the item embeddings,
 * shared between the encoders' input and the output layer. */
#include <stddef.h>
#include <stdint.h>

#include "models/vocab.h"

enum sp_model_kind { SP_MODEL_MF = 1, SP_MODEL_GRU = 2, SP_MODEL_SASREC = 3 };

#define SP_MODEL_MAX_DIM    1024
#define SP_MODEL_MAX_LEN    1024
#define SP_MODEL_MAX_BLOCKS 4
#define SP_MODEL_N_WEIGHTS  8 /* MF weights per event kind (enum sp_event_kind) */

/* Hyper-parameters stored in the model file. Training-only fields are kept
 * too, so that a file says how it was made and the stream's online MF uses
 * the same learning rate, L2 and weights as the trainer. */
struct sp_model_config {
    uint32_t kind;     /* enum sp_model_kind */
    uint32_t dim;      /* embedding and hidden size */
    uint32_t max_len;  /* SASRec: positions, i.e. the last L items attended */
    uint32_t n_blocks; /* SASRec: transformer blocks */
    uint32_t n_neg;    /* sampled negatives (MF: per interaction; seq: per sequence) */
    float lr;          /* Adam step (seq) or SGD step (MF) */
    float lr_decay;    /* MF: lr_t = lr / (1 + lr_decay * t) */
    float l2;          /* L2 penalty */
    float dropout;     /* SASRec training dropout */
    float weights[SP_MODEL_N_WEIGHTS]; /* MF: weight of each event kind */
};

/* Offsets (in floats) of each tensor inside the flat parameter array.
 * Matrices are row-major and multiply from the right: Y = X W + b. */
struct sp_block_layout {
    size_t ln1_g, ln1_b, wq, bq, wk, bk, wv, bv, wo, bo;
    size_t ln2_g, ln2_b, w1, b1, w2, b2;
};

struct sp_layout {
    size_t emb;         /* n_items x dim */
    size_t bias;        /* n_items */
    size_t gru_wx;      /* dim x 3dim, gates [r | z | n] */
    size_t gru_wh;      /* dim x 3dim */
    size_t gru_bx, gru_bh; /* 3dim each */
    size_t pos;         /* max_len x dim */
    struct sp_block_layout blk[SP_MODEL_MAX_BLOCKS];
    size_t lnf_g, lnf_b;
    size_t total;
};

typedef struct sp_model {
    struct sp_model_config cfg;
    uint32_t n_items;
    struct sp_layout lay;
    float *params;   /* lay.total floats */
    sp_vocab *vocab; /* n_items ids, owned */
} sp_model;

/* Fills *lay for cfg and n_items. Returns 0, or SP_ERR_BADINPUT when the
 * configuration is out of range (dims, lengths, block counts). */
int sp_model_layout(const struct sp_model_config *cfg, uint32_t n_items, struct sp_layout *lay);

/* Default hyper-parameters for a kind. */
void sp_model_config_default(struct sp_model_config *cfg, enum sp_model_kind kind);

/* A model with freshly initialised parameters (seeded, deterministic).
 * Takes ownership of vocab, which must hold n_items ids. */
sp_model *sp_model_new(const struct sp_model_config *cfg, sp_vocab *vocab, uint64_t seed,
                       char *err, size_t errlen);

const char *sp_model_kind_name(uint32_t kind);
int sp_model_kind_parse(const char *s, enum sp_model_kind *out);

/* Small deterministic generator (splitmix64 seeding a xorshift64*), used
 * wherever the models need randomness, so that a seed fixes a run. */
uint64_t sp_rng_next(uint64_t *s);
float sp_rng_uniform(uint64_t *s);           /* [0, 1) */
float sp_rng_normal(uint64_t *s);            /* N(0, 1) */
uint32_t sp_rng_below(uint64_t *s, uint32_t n); /* [0, n) */
uint64_t sp_rng_seed(uint64_t seed);

/* One OpenBLAS thread unless OPENBLAS_NUM_THREADS says otherwise. The
 * matrices here are small (64 x 64, a few hundred candidate rows): OpenBLAS
 * threads cost more in wake-ups than they return, and an idle one spins in
 * sched_yield, taking the core that Redis and Kafka share with the
 * processor. Called by every command that uses BLAS, before the first call. */
void sp_model_blas_threads(void);

#endif
