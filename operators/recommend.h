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

#endif
