#ifndef STATE_BLOB_H
#define STATE_BLOB_H

/* Fixed-size state structs (plain bytes, no pointers: models/fraud.h,
 * models/anomaly.h, ...) as Redis hash field values.
 *
 * Store objects hold C strings, so the bytes are written as text: "b1:"
 * followed by base64 of the PackBits run-length encoding of the struct.
 * The structs are mostly zeros and repeated fill (empty window buckets,
 * unused slots), which PackBits shrinks to two bytes per run: a fresh
 * sp_fraud_user of 3,080 bytes becomes 895 characters (its empty buckets
 * hold INT64_MIN, 7 zero bytes and 0x80, which run-length coding only
 * halves), the user's cards of 1,280 bytes a few dozen. The encoding is of this build's struct layout: a value whose decoded
 * length differs from the struct's size is refused (a layout change starts
 * that state afresh rather than reading garbage). */
#include <stddef.h>

/* Characters sp_blob_encode may write for n bytes, terminator included. */
size_t sp_blob_encoded_max(size_t n);

/* Encodes n bytes into out (at least sp_blob_encoded_max(n) chars). Returns
 * the string length. */
size_t sp_blob_encode(const void *bytes, size_t n, char *out);

/* Decodes s into exactly n bytes. Returns 0, or SP_ERR_BADINPUT when s is
 * not a blob of exactly n bytes (out is then unspecified). */
int sp_blob_decode(const char *s, void *out, size_t n);

#endif
