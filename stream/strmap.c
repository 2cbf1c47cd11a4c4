/* String -> int64 map, open addressing with backward-shift deletion so that
 * long-lived sets with steady churn never fill up with tombstones. */
#include <stdlib.h>
#include <string.h>

#include "stream/error.h"
#include "stream/strmap.h"

struct slot {
    char *key;   /* NULL: empty; else a copy made by key_new */
    size_t len;
    uint64_t hash;
    int64_t value;
};

struct sp_strmap {
    struct slot *slots;
    size_t cap, n;
};

/* A key's copy carries its hash in the eight bytes before it, so that a
 * caller holding the copy (sp_strmap_key, sp_strmap_intern) can delete it
 * without hashing it again (sp_strmap_del_kept). */
static char *key_new(const char *key, size_t len, uint64_t h) {
    char *block = sp_xmalloc(sizeof h + len + 1);
    memcpy(block, &h, sizeof h);
    memcpy(block + sizeof h, key, len);
    block[sizeof h + len] = '\0';
    return block + sizeof h;
}

static void key_free(char *key) {
    if (key) free(key - sizeof(uint64_t));
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
    for (size_t i = 0; i < m->cap; i++) key_free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static size_t find(const sp_strmap *m, const char *key, size_t len, uint64_t h) {
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
    uint64_t h = sp_hash_bytes(key, len);
    struct slot *s = &m->slots[find(m, key, len, h)];
    int fresh = !s->key;
    if (fresh) {
        s->key = key_new(key, len, h);
        s->len = len;
        s->hash = h;
        s->value = value;
        m->n++;
    }
    *slot = &s->value;
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
    size_t i = find(m, key, len, sp_hash_bytes(key, len));
    if (!m->slots[i].key) return 0;
    if (value) *value = m->slots[i].value;
    return 1;
}

const char *sp_strmap_key(const sp_strmap *m, const char *key, size_t len) {
    return m->slots[find(m, key, len, sp_hash_bytes(key, len))].key;
}

/* Empties slot i, then pulls later members of its probe run into the hole. */
static void remove_at(sp_strmap *m, size_t i) {
    key_free(m->slots[i].key);
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
    size_t i = find(m, key, len, sp_hash_bytes(key, len));
    if (!m->slots[i].key) return 0;
    remove_at(m, i);
    return 1;
}

int sp_strmap_del_kept(sp_strmap *m, const char *kept) {
    uint64_t h;
    memcpy(&h, kept - sizeof h, sizeof h);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key != kept) {
        if (!m->slots[i].key) return 0;
        i = (i + 1) & (m->cap - 1);
    }
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
            if (value) *value = s->value;
            return 1;
        }
    }
    return 0;
}
