#ifndef MODELS_VOCAB_H
#define MODELS_VOCAB_H

/* Item-id vocabulary: maps the stream's string ids to dense indices
 * 0..n-1 and back. Indices are assigned in insertion order, so a vocabulary
 * built from the same data in the same order is the same vocabulary. */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_vocab sp_vocab;

sp_vocab *sp_vocab_new(void);
void sp_vocab_destroy(sp_vocab *v);

/* Index of id, adding it at the end when it is new. */
int32_t sp_vocab_add(sp_vocab *v, const char *id, size_t len);

/* Index of id, or -1 when it is not in the vocabulary. */
int32_t sp_vocab_find(const sp_vocab *v, const char *id, size_t len);

/* The id at idx (NUL-terminated, owned by the vocabulary), NULL if out of range. */
const char *sp_vocab_id(const sp_vocab *v, int32_t idx);
size_t sp_vocab_size(const sp_vocab *v);

#endif
