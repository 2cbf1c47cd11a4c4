#ifndef OPERATORS_RECOMMEND_H
#define OPERATORS_RECOMMEND_H

/* The recommend operator's wire encoding, apart so that it can be tested
 * against protobuf-c's. The operator itself is sp_op_recommend
 * (operators/operator.h). */
#include <stddef.h>
#include <stdint.h>

#include "proto/shopstream.pb-c.h"

/* At least the packed size of rec: the buffer sp_recommend_pack needs. */
size_t sp_recommend_pack_bound(const Shopstream__V1__Recommendation *rec);

/* Packs rec into out (sp_recommend_pack_bound bytes) and returns the
 * length: the bytes of shopstream__v1__recommendation__pack, written
 * directly for this one message (field order, proto3 defaults left out)
 * instead of through protobuf-c's descriptor walk, which with its size
 * pass cost more than scoring the list. */
size_t sp_recommend_pack(const Shopstream__V1__Recommendation *rec, uint8_t *out);

/* One item of a list as the operator holds it: the id with its length,
 * which the operator looks up once per row instead of once per list and
 * encoder. */
typedef struct sp_rec_item {
    const char *id;  /* not NULL */
    size_t len;      /* strlen(id) */
    float score;
} sp_rec_item;

/* sp_recommend_pack_bound and sp_recommend_pack for rec with items[0..n)
 * in place of rec->items (which they ignore): the same bytes as packing
 * rec with those items as ScoredItems. */
size_t sp_recommend_pack_items_bound(const Shopstream__V1__Recommendation *rec,
                                     const sp_rec_item *items, size_t n);
size_t sp_recommend_pack_items(const Shopstream__V1__Recommendation *rec,
                               const sp_rec_item *items, size_t n, uint8_t *out);

/* The score of a rec:<user> JSON item as the operator writes it: cut (not
 * rounded) to 4 decimals, trailing zeros dropped, "0" for 0; %.4g beyond
 * 1e12 in magnitude, 0 for NaN and infinities. Writes at most 40 bytes
 * (no NUL) and returns the end. */
char *sp_recommend_json_score(char *out, float score);

#endif
