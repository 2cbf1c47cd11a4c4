#ifndef TESTS_SUPPORT_PB_DIFF_H
#define TESTS_SUPPORT_PB_DIFF_H

/* The differential check between the batch path's protobuf decoder
 * (sp_event_decode_arena, stream/event_pb.c) and protobuf-c's unpack (the
 * sp_event_decode path), shared by tests/test_event_pb.c and `make fuzz`. */
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct sp_arena;

/* Compares two messages of one type field by field through the protobuf-c
 * descriptor (not through the decoder's own tables, so a wrong table cannot
 * hide itself): strings by content, doubles by bits, absent and present
 * submessages, the oneof case and only its member, repeated fields element by
 * element, unknown fields by tag, wire type and bytes. Returns 0 when equal,
 * else 1 with the path of the first difference in where. */
int pb_diff_msg(const ProtobufCMessage *a, const ProtobufCMessage *b, char *where, size_t n);

/* Decodes buf[0..len) as protobuf both ways. Returns 0 when they agree:
 * both reject, or both accept with equal structs (pb_diff_msg) that pack to
 * the same bytes. Otherwise 1, with what differs in why. *accepted (may be
 * NULL) says whether both accepted. The arena is reset before returning. */
int pb_diff_decode(struct sp_arena *arena, const uint8_t *buf, size_t len, int *accepted,
                   char *why, size_t n);

/* The batch path's verdict on buf[0..len) (sp_event_read_arena, whose
 * validation skips the string checks of events the decoder found plain)
 * against the one-event path's (sp_event_decode, then sp_event_validate).
 * Returns 0 when they agree: the same accept or reject and, for an input both
 * decode, the same reason. Otherwise 1, with both verdicts in why. The arena
 * is reset before returning. */
int pb_diff_validate(struct sp_arena *arena, const uint8_t *buf, size_t len, char *why,
                     size_t n);

#endif
