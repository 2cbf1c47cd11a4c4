/* Item-id vocabulary: an open-addressing hash table (FNV-1a, linear
 * probing) over an array of strings. The table only grows; it is built once
 * by the trainer or the loader and then read by the stream. */
#include <stdlib.h>
#include <string.h>

#include "models/vocab.h"
#include "stream/error.h"

struct sp_vocab {
    char **ids;     /* ids[i] is the string of index i */
    uint32_t *lens; /* lens[i] is strlen(ids[i]) */
    size_t n, cap;  /* used and allocated entries of ids and lens */
    int32_t *slots; /* hash table of indices, -1 = empty; size is a power of two */
    uint32_t *tags; /* per slot: the high half of its id's hash */
    size_t nslots;
};

static uint64_t fnv1a(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

sp_vocab *sp_vocab_new(void) {
    sp_vocab *v = sp_xcalloc(1, sizeof *v);
    v->nslots = 64;
    v->slots = sp_xmalloc(v->nslots * sizeof *v->slots);
    v->tags = sp_xmalloc(v->nslots * sizeof *v->tags);
    memset(v->slots, 0xff, v->nslots * sizeof *v->slots);
    return v;
}

void sp_vocab_destroy(sp_vocab *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) free(v->ids[i]);
    free(v->ids);
    free(v->lens);
    free(v->slots);
    free(v->tags);
    free(v);
}

/* Slot holding id (hash h), or the empty slot where it would go. Each
 * slot keeps the high half of its id's hash and each id its length, so a
 * slot of another id is passed over without reading that id's bytes (the
 * stream looks an item up at every event, and a strlen and a memcmp per
 * slot visited were most of that). */
static size_t probe(const sp_vocab *v, const char *id, size_t len, uint64_t h) {
    size_t mask = v->nslots - 1, i = (size_t)h & mask;
    uint32_t tag = (uint32_t)(h >> 32);
    for (;;) {
        int32_t k = v->slots[i];
        if (k < 0) return i;
        if (v->tags[i] == tag && v->lens[k] == len && !memcmp(v->ids[k], id, len)) return i;
        i = (i + 1) & mask;
    }
}

static void grow(sp_vocab *v) {
    free(v->slots);
    free(v->tags);
    v->nslots *= 2;
    v->slots = sp_xmalloc(v->nslots * sizeof *v->slots);
    v->tags = sp_xmalloc(v->nslots * sizeof *v->tags);
    memset(v->slots, 0xff, v->nslots * sizeof *v->slots);
    for (size_t k = 0; k < v->n; k++) {
        uint64_t h = fnv1a(v->ids[k], v->lens[k]);
        size_t i = probe(v, v->ids[k], v->lens[k], h);
        v->slots[i] = (int32_t)k;
        v->tags[i] = (uint32_t)(h >> 32);
    }
}

int32_t sp_vocab_add(sp_vocab *v, const char *id, size_t len) {
    uint64_t h = fnv1a(id, len);
    size_t i = probe(v, id, len, h);
    if (v->slots[i] >= 0) return v->slots[i];
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->ids = sp_xrealloc(v->ids, v->cap * sizeof *v->ids);
        v->lens = sp_xrealloc(v->lens, v->cap * sizeof *v->lens);
    }
    v->ids[v->n] = sp_xstrndup(id, len);
    v->lens[v->n] = (uint32_t)strlen(v->ids[v->n]); /* an id holding a NUL is cut there */
    v->slots[i] = (int32_t)v->n;
    v->tags[i] = (uint32_t)(h >> 32);
    v->n++;
    if (v->n * 2 > v->nslots) grow(v);
    return (int32_t)(v->n - 1);
}

int32_t sp_vocab_find(const sp_vocab *v, const char *id, size_t len) {
    return v->slots[probe(v, id, len, fnv1a(id, len))];
}

const char *sp_vocab_id(const sp_vocab *v, int32_t idx) {
    if (idx < 0 || (size_t)idx >= v->n) return NULL;
    return v->ids[idx];
}

size_t sp_vocab_size(const sp_vocab *v) { return v->n; }
