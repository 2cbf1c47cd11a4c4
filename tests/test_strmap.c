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
