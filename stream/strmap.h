#ifndef STREAM_STRMAP_H
#define STREAM_STRMAP_H

/* A string -> int64 hash map with open addressing (linear probing, tombstone
 * free deletion by backward shift). Keys are copied. Used for small hot sets:
 * recent event ids, distinct devices. */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_strmap sp_strmap;

sp_strmap *sp_strmap_new(size_t hint);
void sp_strmap_destroy(sp_strmap *m);
/* Inserts or overwrites. Returns 1 if the key was new. */
int sp_strmap_put(sp_strmap *m, const char *key, size_t len, int64_t value);
/* The map's own copy of a present key (NUL-terminated), valid until the key
 * is deleted or the map destroyed; NULL when absent. Lets callers index the
 * same string without copying it again. */
const char *sp_strmap_key(const sp_strmap *m, const char *key, size_t len);
/* Looks key up and inserts it with `value` if absent, in one hash and one
 * probe: returns 1 if it was inserted, 0 if it was there. Either way *slot
 * points at the key's value (valid until the next put, intern or del) and
 * *kept at the map's copy of the key (as sp_strmap_key). For callers that
 * would otherwise call get, then put, then key. */
int sp_strmap_intern(sp_strmap *m, const char *key, size_t len, int64_t value, int64_t **slot,
                     const char **kept);
/* Returns 1 and sets *value (if non-NULL) when present. */
int sp_strmap_get(const sp_strmap *m, const char *key, size_t len, int64_t *value);
int sp_strmap_del(sp_strmap *m, const char *key, size_t len);
/* Deletes the key whose copy is `kept` (from sp_strmap_key or
 * sp_strmap_intern of this map, and not deleted since), without hashing it
 * again. Returns 1, or 0 if no key of the map has that copy. */
int sp_strmap_del_kept(sp_strmap *m, const char *kept);
/* The same, only while the key's value is still `value`: returns 0 and
 * leaves the key (or its absence) alone otherwise. */
int sp_strmap_del_kept_if(sp_strmap *m, const char *kept, int64_t value);
size_t sp_strmap_size(const sp_strmap *m);
/* Iteration: idx from 0 while it returns 1. Do not modify during iteration. */
int sp_strmap_next(const sp_strmap *m, size_t *idx, const char **key, size_t *len,
                   int64_t *value);

#endif
