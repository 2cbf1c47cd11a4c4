/* The recommend operator's hand-written protobuf encoder must give the
 * bytes protobuf-c gives for the same message (the list topic's consumers
 * decode it with protobuf-c or any other library). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "operators/recommend.h"

/* "", NULL, short, and 127/128/300-byte strings (one and two-byte lengths). */
static char *random_str(uint64_t *rng, char *buf) {
    static const size_t lens[] = {0, 1, 5, 17, 127, 128, 300};
    uint32_t pick = sp_rng_below(rng, 8);
    if (pick == 7) return NULL;
    size_t n = lens[pick];
    for (size_t i = 0; i < n; i++) buf[i] = (char)('a' + sp_rng_below(rng, 26));
    buf[n] = '\0';
    return buf;
}

Test(recommend, pack_is_byte_identical_to_protobuf_c) {
    static const float scores[] = {0.0f, -0.0f, 1.5f, -3.25e-7f, 1e30f};
    static const int64_t stamps[] = {0, 1, 127, 128, 1767225600000, -1, INT64_MIN};
    static const double lat[] = {0.0, -0.0, 0.25, 1e-300, 12345.678};
    uint64_t rng = sp_rng_seed(31);
    for (int trial = 0; trial < 2000; trial++) {
        char s[4][301], ids[130][301];
        Shopstream__V1__ScoredItem items[130], *ptrs[130];
        size_t n = trial % 50 == 0 ? 130 : sp_rng_below(&rng, 12); /* 130: a long items field */
        for (size_t i = 0; i < n; i++) {
            shopstream__v1__scored_item__init(&items[i]);
            items[i].item_id = random_str(&rng, ids[i]);
            items[i].score = sp_rng_below(&rng, 3) ? sp_rng_normal(&rng)
                                                   : scores[sp_rng_below(&rng, 5)];
            ptrs[i] = &items[i];
        }
        Shopstream__V1__Recommendation rec = SHOPSTREAM__V1__RECOMMENDATION__INIT;
        rec.rec_id = random_str(&rng, s[0]);
        rec.user_id = random_str(&rng, s[1]);
        rec.model = random_str(&rng, s[2]);
        rec.trigger_event_id = random_str(&rng, s[3]);
        rec.n_items = n;
        rec.items = ptrs;
        rec.ts_ms = stamps[sp_rng_below(&rng, 7)];
        rec.latency_ms = lat[sp_rng_below(&rng, 5)];
        size_t want_len = shopstream__v1__recommendation__get_packed_size(&rec);
        uint8_t *want = malloc(want_len), *got = malloc(sp_recommend_pack_bound(&rec));
        shopstream__v1__recommendation__pack(&rec, want);
        size_t got_len = sp_recommend_pack(&rec, got);
        cr_assert_leq(got_len, sp_recommend_pack_bound(&rec));
        cr_assert_eq(got_len, want_len, "trial %d: %zu bytes, protobuf-c %zu", trial, got_len,
                     want_len);
        cr_assert_eq(memcmp(got, want, want_len), 0, "trial %d: bytes differ", trial);
        free(want);
        free(got);
    }
}
