#ifndef STREAM_EVENT_H
#define STREAM_EVENT_H

/* Input events: decoding (protobuf or its JSON rendering), validation and
 * encoding. The decoded event is protobuf-c's generated struct; operators read
 * it through the sp_event typedef and borrow it for one process() call. */
#include <stddef.h>
#include <stdint.h>

#include "proto/shopstream.pb-c.h"

typedef Shopstream__V1__Event sp_event;

/* Limits applied by sp_event_validate (bytes / counts). */
#define SP_EVENT_MAX_BYTES   (64 * 1024)
#define SP_EVENT_MAX_ID      128   /* event_id, user_id, session_id, item ids ... */
#define SP_EVENT_MAX_TEXT    8192  /* review text, search query */
#define SP_EVENT_MAX_ITEMS   256   /* order line items */
#define SP_EVENT_MAX_TS_MS   253402300800000LL /* 10000-01-01T00:00:00Z */

enum sp_event_kind {
    SP_KIND_VIEW = 0,
    SP_KIND_CLICK,
    SP_KIND_ADD_TO_CART,
    SP_KIND_REMOVE_FROM_CART,
    SP_KIND_SEARCH,
    SP_KIND_ORDER,
    SP_KIND_REVIEW,
    SP_KIND__COUNT
};

/* Stable lower-case names: "view", "click", "add_to_cart",
 * "remove_from_cart", "search", "order", "review". Used as Redis field names
 * and in JSON. */
const char *sp_event_kind_name(enum sp_event_kind k);

/* Kind of a validated event; SP_KIND__COUNT for one that would not validate
 * (no body, unknown click kind). */
enum sp_event_kind sp_event_kind_of(const sp_event *ev);

/* Decodes one Kafka message value. JSON is chosen when content_type contains
 * "json" or, with no content type, when the first non-space byte is '{';
 * protobuf otherwise. On success *out owns a new event, freed with
 * sp_event_free(). On failure returns SP_ERR_BADINPUT and writes a short
 * reason ("protobuf: truncated", "json: field 'user_id' must be a string",
 * ...) into err. Does not validate: call sp_event_validate() next. */
int sp_event_decode(const void *buf, size_t len, const char *content_type, sp_event **out,
                    char *err, size_t errlen);

void sp_event_free(sp_event *ev);

/* As sp_event_decode, but the event lives in `arena` (it is released by
 * sp_arena_reset, never by sp_event_free): the consumer loop's per-batch
 * path, which so does no malloc/free per event for decoding. Protobuf goes
 * through stream/event_pb.c's decoder instead of protobuf-c's unpack: the
 * same structs and the same accept/reject decisions, but its reasons may be
 * more specific ("protobuf: bad wire type 0 for field 3" where protobuf-c's
 * path says "protobuf: malformed nested message"). */
struct sp_arena;
int sp_event_decode_arena(struct sp_arena *arena, const void *buf, size_t len,
                          const char *content_type, sp_event **out, char *err, size_t errlen);

/* Where sp_event_read_arena finds a message's content type when it needs
 * it: NULL or "" for none. It may copy the value into buf (len bytes). */
typedef const char *(*sp_content_type_fn)(void *ctx, char *buf, size_t len);

/* The consumer's batch path: decodes (into arena) and validates one message,
 * choosing the format by its leading byte alone ('{' after blanks: JSON,
 * else protobuf), so that the Kafka headers are not parsed for every
 * message. Only if that decode or validation fails is content_type(ctx)
 * asked; if it names the other format, the message is decoded and validated
 * that way too, and that result stands -- a message rejected this way gets
 * the reason of the format its header names, as when the header decided
 * alone. The one change from a header-first choice: a message that decodes
 * and validates by its leading byte is accepted even if its header names
 * the other format. Returns 0 with the event in arena, or SP_ERR_BADINPUT
 * with the reason in err. */
int sp_event_read_arena(struct sp_arena *arena, const void *buf, size_t len,
                        sp_content_type_fn content_type, void *ctx, sp_event **out, char *err,
                        size_t errlen);

/* Checks what the schema cannot: required fields present (event_id, user_id,
 * ts_ms > 0, exactly one body), valid UTF-8 in every string, size limits,
 * finite non-negative amounts and prices, quantity >= 1, rating 1..5, known
 * click kind. Returns 0 or SP_ERR_BADINPUT with the reason in err. */
int sp_event_validate(const sp_event *ev, char *err, size_t errlen);

/* Renders an event as one line of JSON (no newline), the same rendering that
 * sp_event_decode accepts. Caller frees with free(). */
char *sp_event_to_json(const sp_event *ev);

/* Encodes to protobuf into a new buffer; caller frees with free(). */
uint8_t *sp_event_pack(const sp_event *ev, size_t *len);

/* What routing needs from a message that may not decode: the body's field
 * number and the user_id, found without a full decode. */
typedef struct sp_event_peek_info {
    int body;            /* 10 click, 11 order, 12 review (the oneof field numbers), 0 none */
    const char *user_id; /* NOT NUL-terminated: user_id_len bytes, borrowed from the
                          * message (protobuf) or from user_id_buf (JSON) */
    size_t user_id_len;
    char user_id_buf[SP_EVENT_MAX_ID + 1];
} sp_event_peek_info;

/* Finds the body kind and user_id of a message as far as it can be read: a
 * truncated protobuf still yields the fields before the cut. Returns 0 if
 * anything was found, SP_ERR_BADINPUT if nothing (then route it anywhere with
 * an empty key). Same format choice as sp_event_decode. */
int sp_event_peek(const void *buf, size_t len, const char *content_type,
                  sp_event_peek_info *info);

/* 1 if s[0..len) is well-formed UTF-8 (RFC 3629), 0 otherwise. */
int sp_utf8_valid(const char *s, size_t len);

#endif
