/* The string map behind dedupe's id window: put/get/del with backward-shift
 * deletion, and sp_strmap_key, whose copy dedupe's heap and pending list
 * borrow instead of copying each id again. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "stream/strmap.h"

Test(strmap, key_copies_stay_put_through_growth_and_vanish_on_delete) {
    sp_strmap *m = sp_strmap_new(4);
    const char *kept[2000];
    char id[32];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(id, sizeof id, "ev-%d", i);
        cr_assert_eq(sp_strmap_put(m, id, (size_t)n, i), 1);
        kept[i] = sp_strmap_key(m, id, (size_t)n);
        cr_assert_not_null(kept[i]);
        cr_assert_neq(kept[i], id, "the map must hold its own copy");
    }
    /* The table grew many times; every borrowed pointer still names its key. */
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(id, sizeof id, "ev-%d", i);
        cr_assert_str_eq(kept[i], id);
        cr_assert_eq(sp_strmap_key(m, id, (size_t)n), kept[i]);
    }
    /* Delete every other key through its own borrowed copy (as dedupe's
     * heap does); the rest stay reachable across the shifted probe runs. */
    for (int i = 0; i < 2000; i += 2) cr_assert_eq(sp_strmap_del(m, kept[i], strlen(kept[i])), 1);
    cr_assert_eq(sp_strmap_size(m), 1000);
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(id, sizeof id, "ev-%d", i);
        int64_t v = -1;
        cr_assert_eq(sp_strmap_get(m, id, (size_t)n, &v), i % 2, "key %s", id);
        if (i % 2) {
            cr_assert_eq(v, i);
            cr_assert_eq(sp_strmap_key(m, id, (size_t)n), kept[i]);
        } else {
            cr_assert_null(sp_strmap_key(m, id, (size_t)n));
        }
    }
    sp_strmap_destroy(m);
}

/* sp_strmap_intern is get-or-insert in one probe (and sp_strmap_del_kept
 * deletes by the kept copy without hashing): a new key takes the value
 * given, a present one keeps its own (the slot can change it), and both
 * hand back the map's copy of the key -- against a plain array reference,
 * through growth and deletions. */
Test(strmap, intern_inserts_once_and_keeps_existing_values) {
    sp_strmap *m = sp_strmap_new(2);
    enum { N = 3000 };
    static int64_t ref[N];
    static int present[N];
    char id[32];
    uint64_t x = 99;
    for (int round = 0; round < 20000; round++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((x >> 33) % N);
        int n = snprintf(id, sizeof id, "id-%d", k);
        if ((x >> 20) % 5 == 0) { /* now and then a delete, by key or by the kept copy */
            if ((x >> 24) % 2 || !present[k])
                cr_assert_eq(sp_strmap_del(m, id, (size_t)n), present[k]);
            else
                cr_assert_eq(sp_strmap_del_kept(m, sp_strmap_key(m, id, (size_t)n)), 1);
            cr_assert_null(sp_strmap_key(m, id, (size_t)n));
            present[k] = 0;
            continue;
        }
        int64_t *slot;
        const char *kept;
        int fresh = sp_strmap_intern(m, id, (size_t)n, round, &slot, &kept);
        cr_assert_eq(fresh, !present[k], "key %s", id);
        cr_assert_str_eq(kept, id);
        cr_assert_neq(kept, id);
        cr_assert_eq(kept, sp_strmap_key(m, id, (size_t)n));
        cr_assert_eq(*slot, present[k] ? ref[k] : round, "key %s", id);
        if (present[k] && round % 2) *slot = ref[k] = -round; /* written through the slot */
        if (!present[k]) ref[k] = round;
        present[k] = 1;
    }
    size_t live = 0;
    for (int k = 0; k < N; k++) {
        int n = snprintf(id, sizeof id, "id-%d", k);
        int64_t v;
        cr_assert_eq(sp_strmap_get(m, id, (size_t)n, &v), present[k]);
        if (present[k]) cr_assert_eq(v, ref[k]);
        live += present[k];
    }
    cr_assert_eq(sp_strmap_size(m), live);
    sp_strmap_destroy(m);
}

/* sp_strmap_del_kept_if deletes by the kept copy only while the value is
 * the one given (dedupe: a trimmed heap entry whose id was seen again since
 * must not delete it). */
Test(strmap, del_kept_if_deletes_only_while_the_value_is_unchanged) {
    sp_strmap *m = sp_strmap_new(4);
    int64_t *slot;
    const char *kept;
    cr_assert_eq(sp_strmap_intern(m, "ev-7", 4, 100, &slot, &kept), 1);
    *slot = 250; /* seen again */
    cr_assert_eq(sp_strmap_del_kept_if(m, kept, 100), 0);
    int64_t v = 0;
    cr_assert_eq(sp_strmap_get(m, "ev-7", 4, &v), 1);
    cr_assert_eq(v, 250);
    cr_assert_eq(sp_strmap_del_kept_if(m, kept, 250), 1);
    cr_assert_eq(sp_strmap_get(m, "ev-7", 4, NULL), 0);
    cr_assert_eq(sp_strmap_size(m), 0);
    sp_strmap_destroy(m);
}

/* sp_strmap_del_kept finds the entry by its copy's address: a copy of an
 * equal key from another map is not it. */
Test(strmap, del_kept_deletes_only_this_maps_copy) {
    sp_strmap *a = sp_strmap_new(4), *b = sp_strmap_new(4);
    sp_strmap_put(a, "ev-1", 4, 1);
    sp_strmap_put(b, "ev-1", 4, 2);
    const char *in_b = sp_strmap_key(b, "ev-1", 4);
    cr_assert_eq(sp_strmap_del_kept(a, in_b), 0);
    cr_assert_eq(sp_strmap_size(a), 1);
    cr_assert_eq(sp_strmap_del_kept(a, sp_strmap_key(a, "ev-1", 4)), 1);
    cr_assert_eq(sp_strmap_size(a), 0);
    cr_assert_eq(sp_strmap_get(b, "ev-1", 4, NULL), 1);
    sp_strmap_destroy(a);
    sp_strmap_destroy(b);
}

/* Key copies come from the map's pool up to a size and from malloc above
 * it; blocks freed are reused. Keys of every length from 0 to 600 bytes,
 * inserted, overwritten and deleted at random (by key and by the kept copy)
 * against a reference: every key reads back its own bytes and value (kept
 * in the key's block), by lookup and by iteration, so no block is ever
 * handed out twice. Destroyed with keys of both kinds alive
 * (make asan checks nothing leaks). */
Test(strmap, pooled_and_large_key_copies_survive_churn) {
    enum { N = 601 }; /* key k has k bytes */
    static char keys[N][608];
    static size_t lens[N];
    static int64_t ref[N];
    static int present[N];
    uint64_t x = 7;
    for (int k = 0; k < N; k++) {
        lens[k] = (size_t)k;
        for (size_t j = 0; j < lens[k]; j++) keys[k][j] = (char)('a' + (k * 31 + (int)j) % 26);
    }
    sp_strmap *m = sp_strmap_new(4);
    for (int round = 0; round < 60000; round++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((x >> 33) % N);
        switch ((x >> 20) % 4) {
        case 0:
            if (present[k] && (x >> 25) % 2)
                cr_assert_eq(sp_strmap_del_kept(m, sp_strmap_key(m, keys[k], lens[k])), 1);
            else
                cr_assert_eq(sp_strmap_del(m, keys[k], lens[k]), present[k]);
            present[k] = 0;
            break;
        default:
            cr_assert_eq(sp_strmap_put(m, keys[k], lens[k], round), !present[k]);
            ref[k] = round;
            present[k] = 1;
            break;
        }
    }
    size_t live = 0;
    for (int k = 0; k < N; k++) {
        int64_t v;
        cr_assert_eq(sp_strmap_get(m, keys[k], lens[k], &v), present[k], "key %d", k);
        if (!present[k]) continue;
        live++;
        cr_assert_eq(v, ref[k]);
        const char *kept = sp_strmap_key(m, keys[k], lens[k]);
        cr_assert(!memcmp(kept, keys[k], lens[k]) && kept[lens[k]] == '\0', "key %d", k);
    }
    cr_assert_eq(sp_strmap_size(m), live);
    cr_assert_gt(live, 100);
    /* Iteration gives every live key once, with its own value. */
    size_t idx = 0, seen = 0, len;
    const char *key;
    int64_t v;
    while (sp_strmap_next(m, &idx, &key, &len, &v)) {
        cr_assert(len < N && present[len] && !memcmp(key, keys[len], len), "key of %zu bytes", len);
        cr_assert_eq(v, ref[len], "key %zu", len);
        seen++;
    }
    cr_assert_eq(seen, live);
    sp_strmap_destroy(m);
}
