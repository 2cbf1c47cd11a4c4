#ifndef STREAM_EVENT_PB_H
#define STREAM_EVENT_PB_H

/* A hand-written protobuf decoder for shopstream.v1.Event, the batch path's
 * replacement for protobuf_c_message_unpack. It fills the very structs
 * protobuf-c generates (descriptors set, so protobuf_c_message_pack,
 * get_packed_size and sp_event_to_json work on the result), taking every byte
 * from an arena. See stream/event_pb.c for where it matches protobuf-c 1.4.1
 * quirk for quirk and why. */
#include <stddef.h>
#include <stdint.h>

#include "stream/event.h"

struct sp_arena;

/* Decodes buf[0..len) into a new event in `arena` (released by
 * sp_arena_reset, never by sp_event_free). Accepts exactly what the
 * non-arena path accepts (pb_walk's top-level checks, then protobuf-c's
 * unpack). Returns 0, or SP_ERR_BADINPUT with a short reason in err
 * ("protobuf: truncated", "protobuf: bad wire type 3 for field 10", ...).
 * Does not validate: call sp_event_validate() next. *plain (if not NULL)
 * is set to 1 when every string the event holds is at most SP_EVENT_MAX_ID
 * bytes of ASCII without a NUL -- so validation's string checks can only
 * fail for a missing string -- and to 0 otherwise (which says nothing). */
int sp_event_pb_decode(struct sp_arena *arena, const uint8_t *buf, size_t len, sp_event **out,
                       int *plain, char *err, size_t errlen);

#endif
