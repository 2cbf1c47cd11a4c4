/* String -> int64 map, open addressing with backward-shift deletion so that
 * long-lived sets with steady churn never fill up with tombstones. Key
 * copies of up to POOL_MAX bytes come from the map's own pool (free lists
 * by size over chunks it keeps until destroyed): dedupe adds and drops an
 * id per event, and malloc and free of each copy cost more than the rest of
 * its insertion and deletion together. */
#include <stdlib.h>
#include <string.h>

#include "stream/error.h"
#include "stream/strmap.h"

/* Sixteen bytes, four to a cache line: slots are probed at random and
 * dedupe's outgrow the caches, so a slot holds only what a probe compares
 * and what backward shifting needs; the value sits with the key's bytes in
 * its block (key_new), which a lookup reads anyway once the probe has found
 * the key. Keys are under 4 GiB. */
struct slot {
    char *key;     /* NULL: empty; else a copy made by key_new */
    uint32_t hash; /* the low half of the key's hash: picks its home, filters probes */
    uint32_t len;
};

#define POOL_GRAIN 16     /* block sizes are multiples of this */
#define POOL_MAX 256      /* larger blocks come from malloc */
#define POOL_CHUNK 65536  /* the largest chunk; the first is 1 KiB, then they double */

struct chunk {
    struct chunk *next;
    size_t size;
    _Alignas(16) char data[];
};

struct sp_strmap {
    struct slot *slots;
    size_t cap, n;
    void *free[POOL_MAX / POOL_GRAIN]; /* freed blocks by size class (next pointer inside) */
    struct chunk *chunks;             /* the newest first; blocks are cut from its end */
    size_t left;                      /* bytes not yet cut from chunks */
};

/* The block for a key of len bytes: its value, its hash's low half, the
 * bytes, a NUL. (The generator's 19-byte event ids fill a 32-byte block.) */
#define BLOCK_HEAD (sizeof(int64_t) + sizeof(uint32_t))
static size_t block_size(size_t len) { return BLOCK_HEAD + len + 1; }

/* The value of the key whose copy is `key`. */
static int64_t *value_of(const char *key) { return (int64_t *)(void *)(key - BLOCK_HEAD); }

static void *pool_get(sp_strmap *m, size_t size) {
    size_t c = (size - 1) / POOL_GRAIN;
    void *b = m->free[c];
    if (b) {
        memcpy(&m->free[c], b, sizeof b);
        return b;
    }
    size = (c + 1) * POOL_GRAIN;
    if (m->left < size) {
        size_t n = m->chunks ? 2 * m->chunks->size : 1024;
        struct chunk *k = sp_xmalloc(sizeof *k + (n < POOL_CHUNK ? n : POOL_CHUNK));
        k->size = n < POOL_CHUNK ? n : POOL_CHUNK;
        k->next = m->chunks;
        m->chunks = k;
        m->left = k->size;
    }
    m->left -= size;
    return m->chunks->data + m->left;
}

/* A key's copy carries its value and its hash's low half in the twelve
 * bytes before it, so that a caller holding the copy (sp_strmap_key,
 * sp_strmap_intern) can delete it without hashing it again
 * (sp_strmap_del_kept). */
static char *key_new(sp_strmap *m, const char *key, size_t len, uint32_t h, int64_t value) {
    size_t size = block_size(len);
    char *block = size <= POOL_MAX ? pool_get(m, size) : sp_xmalloc(size);
    memcpy(block, &value, sizeof value);
    memcpy(block + sizeof value, &h, sizeof h);
    memcpy(block + BLOCK_HEAD, key, len);
    block[BLOCK_HEAD + len] = '\0';
    return block + BLOCK_HEAD;
}

static void key_free(sp_strmap *m, char *key, size_t len) {
    char *block = key - BLOCK_HEAD;
    size_t size = block_size(len);
    if (size > POOL_MAX) {
        free(block);
        return;
    }
    size_t c = (size - 1) / POOL_GRAIN;
    memcpy(block, &m->free[c], sizeof m->free[c]);
    m->free[c] = block;
}

sp_strmap *sp_strmap_new(size_t hint) {
    sp_strmap *m = sp_xcalloc(1, sizeof *m);
    m->cap = 16;
    while (m->cap < hint * 2) m->cap *= 2;
    m->slots = sp_xcalloc(m->cap, sizeof *m->slots);
    return m;
}

void sp_strmap_destroy(sp_strmap *m) {
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && block_size(m->slots[i].len) > POOL_MAX)
            free(m->slots[i].key - BLOCK_HEAD);
    for (struct chunk *k = m->chunks, *next; k; k = next) {
        next = k->next;
        free(k);
    }
    free(m->slots);
    free(m);
}

static size_t find(const sp_strmap *m, const char *key, size_t len, uint32_t h) {
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key) {
        if (m->slots[i].hash == h && m->slots[i].len == len && !memcmp(m->slots[i].key, key, len))
            return i;
        i = (i + 1) & (m->cap - 1);
    }
    return i;
}

static void grow(sp_strmap *m) {
    struct slot *old = m->slots;
    size_t oldcap = m->cap;
    m->cap *= 2;
    m->slots = sp_xcalloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].key) m->slots[find(m, old[i].key, old[i].len, old[i].hash)] = old[i];
    free(old);
}

int sp_strmap_intern(sp_strmap *m, const char *key, size_t len, int64_t value, int64_t **slot,
                     const char **kept) {
    if ((m->n + 1) * 4 > m->cap * 3) grow(m);
    uint32_t h = (uint32_t)sp_hash_bytes(key, len);
    struct slot *s = &m->slots[find(m, key, len, h)];
    int fresh = !s->key;
    if (fresh) {
        s->key = key_new(m, key, len, h, value);
        s->len = (uint32_t)len;
        s->hash = h;
        m->n++;
    }
    *slot = value_of(s->key);
    *kept = s->key;
    return fresh;
}

int sp_strmap_put(sp_strmap *m, const char *key, size_t len, int64_t value) {
    int64_t *slot;
    const char *kept;
    int fresh = sp_strmap_intern(m, key, len, value, &slot, &kept);
    *slot = value;
    return fresh;
}

int sp_strmap_get(const sp_strmap *m, const char *key, size_t len, int64_t *value) {
    size_t i = find(m, key, len, (uint32_t)sp_hash_bytes(key, len));
    if (!m->slots[i].key) return 0;
    if (value) *value = *value_of(m->slots[i].key);
    return 1;
}

const char *sp_strmap_key(const sp_strmap *m, const char *key, size_t len) {
    return m->slots[find(m, key, len, (uint32_t)sp_hash_bytes(key, len))].key;
}

/* Empties slot i, then pulls later members of its probe run into the hole. */
static void remove_at(sp_strmap *m, size_t i) {
    key_free(m, m->slots[i].key, m->slots[i].len);
    m->slots[i].key = NULL;
    m->n--;
    /* Backward shift: pull later members of the probe run into the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & (m->cap - 1);
        if (!m->slots[j].key) break;
        size_t home = m->slots[j].hash & (m->cap - 1);
        /* Move j to i if its home is not in the cyclic range (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
}

int sp_strmap_del(sp_strmap *m, const char *key, size_t len) {
    size_t i = find(m, key, len, (uint32_t)sp_hash_bytes(key, len));
    if (!m->slots[i].key) return 0;
    remove_at(m, i);
    return 1;
}

/* The slot holding the copy `kept`, found by the hash stored before it:
 * cap when no slot does. */
static size_t kept_at(const sp_strmap *m, const char *kept) {
    uint32_t h;
    memcpy(&h, kept - sizeof h, sizeof h);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key != kept) {
        if (!m->slots[i].key) return m->cap;
        i = (i + 1) & (m->cap - 1);
    }
    return i;
}

int sp_strmap_del_kept(sp_strmap *m, const char *kept) {
    size_t i = kept_at(m, kept);
    if (i == m->cap) return 0;
    remove_at(m, i);
    return 1;
}

int sp_strmap_del_kept_if(sp_strmap *m, const char *kept, int64_t value) {
    size_t i = kept_at(m, kept);
    if (i == m->cap || *value_of(kept) != value) return 0;
    remove_at(m, i);
    return 1;
}

size_t sp_strmap_size(const sp_strmap *m) { return m->n; }

int sp_strmap_next(const sp_strmap *m, size_t *idx, const char **key, size_t *len,
                   int64_t *value) {
    while (*idx < m->cap) {
        const struct slot *s = &m->slots[(*idx)++];
        if (s->key) {
            *key = s->key;
            if (len) *len = s->len;
            if (value) *value = *value_of(s->key);
            return 1;
        }
    }
    return 0;
}
