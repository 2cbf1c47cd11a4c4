/* Input events: decoding from protobuf or its JSON rendering, validation and
 * encoding.
 *
 * Every decoded event, whichever wire format it came in, is unpacked from
 * protobuf bytes: by protobuf-c itself for sp_event_decode, so sp_event_free()
 * has exactly one way to free it, and by stream/event_pb.c's one-pass decoder
 * into the arena for sp_event_decode_arena, the consumer's hot path. JSON is
 * therefore read into a temporary message whose strings borrow from the
 * cJSON tree, packed, and unpacked again: JSON is the human and kcat path,
 * and one extra pack/unpack there buys a single ownership rule everywhere
 * else.
 *
 * Reason strings are short and specific because they become the dead-letter
 * topic's `error` header: "protobuf: ..." and "json: ..." come from decoding,
 * everything else from validation. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "stream/error.h"
#include "stream/arena.h"
#include "stream/event.h"
#include "stream/event_pb.h"

typedef Shopstream__V1__Context sp_pb_context;
typedef Shopstream__V1__Click sp_pb_click;
typedef Shopstream__V1__Order sp_pb_order;
typedef Shopstream__V1__LineItem sp_pb_line;
typedef Shopstream__V1__Review sp_pb_review;

static const char *kind_names[SP_KIND__COUNT] = {
    "view", "click", "add_to_cart", "remove_from_cart", "search", "order", "review",
};

const char *sp_event_kind_name(enum sp_event_kind k) {
    if ((unsigned)k >= SP_KIND__COUNT) return "unknown";
    return kind_names[k];
}

/* Maps the oneof body (and the click kind) to the flat kind enumeration the
 * operators count by. Returns SP_KIND__COUNT for an event that would not
 * validate, so that callers indexing arrays by kind can check one bound. */
enum sp_event_kind sp_event_kind_of(const sp_event *ev) {
    switch (ev->body_case) {
    case SHOPSTREAM__V1__EVENT__BODY_CLICK:
        if (!ev->click) return SP_KIND__COUNT;
        switch (ev->click->kind) {
        case SHOPSTREAM__V1__CLICK_KIND__VIEW: return SP_KIND_VIEW;
        case SHOPSTREAM__V1__CLICK_KIND__CLICK: return SP_KIND_CLICK;
        case SHOPSTREAM__V1__CLICK_KIND__ADD_TO_CART: return SP_KIND_ADD_TO_CART;
        case SHOPSTREAM__V1__CLICK_KIND__REMOVE_FROM_CART: return SP_KIND_REMOVE_FROM_CART;
        case SHOPSTREAM__V1__CLICK_KIND__SEARCH: return SP_KIND_SEARCH;
        default: return SP_KIND__COUNT;
        }
    case SHOPSTREAM__V1__EVENT__BODY_ORDER: return ev->order ? SP_KIND_ORDER : SP_KIND__COUNT;
    case SHOPSTREAM__V1__EVENT__BODY_REVIEW: return ev->review ? SP_KIND_REVIEW : SP_KIND__COUNT;
    default: return SP_KIND__COUNT;
    }
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SP_ERR_BADINPUT;
}

/* ---- protobuf wire walking ---- */

/* Reads one base-128 varint at *pos. Returns 0, or -1 when the buffer ends
 * inside it, or -2 when it runs past ten bytes. */
static int pb_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*pos >= len) return -1;
        uint8_t b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -2;
}

/* Walks the top-level fields of a protobuf message without unpacking it.
 * It exists for two reasons: protobuf-c only says "failed", and a dead-letter
 * reason should say *why* (truncated, bad wire type); and replay must route
 * records to topics even when they are truncated, so the walk reports the
 * user_id and the body field it saw before the first error. Returns 0 when
 * the whole buffer is well-formed at the top level, SP_ERR_BADINPUT with a
 * reason otherwise. */
static int pb_walk(const uint8_t *p, size_t len, sp_event_peek_info *info, char *err,
                   size_t errlen) {
    size_t pos = 0;
    while (pos < len) {
        uint64_t tag, n;
        int rc = pb_varint(p, len, &pos, &tag);
        if (rc == -1) return fail(err, errlen, "protobuf: truncated");
        if (rc == -2) return fail(err, errlen, "protobuf: bad varint");
        uint32_t field = (uint32_t)(tag >> 3);
        if (field == 0 || tag >> 32) return fail(err, errlen, "protobuf: bad field number");
        switch (tag & 7) {
        case 0:
            rc = pb_varint(p, len, &pos, &n);
            if (rc == -1) return fail(err, errlen, "protobuf: truncated");
            if (rc == -2) return fail(err, errlen, "protobuf: bad varint");
            break;
        case 1:
            if (len - pos < 8) return fail(err, errlen, "protobuf: truncated");
            pos += 8;
            break;
        case 5:
            if (len - pos < 4) return fail(err, errlen, "protobuf: truncated");
            pos += 4;
            break;
        case 2:
            rc = pb_varint(p, len, &pos, &n);
            if (rc == -1) return fail(err, errlen, "protobuf: truncated");
            if (rc == -2) return fail(err, errlen, "protobuf: bad varint");
            if (info && field >= 10 && field <= 12) info->body = (int)field;
            if (n > len - pos) return fail(err, errlen, "protobuf: truncated");
            if (info && field == 3) {
                info->user_id = (const char *)p + pos;
                info->user_id_len = (size_t)n;
            }
            pos += (size_t)n;
            break;
        default:
            return fail(err, errlen, "protobuf: bad wire type %u", (unsigned)(tag & 7));
        }
    }
    return SP_OK;
}

/* ---- JSON reading ---- */

/* The message being read from JSON: protobuf-c structs whose strings borrow
 * from the cJSON tree, plus the line item arrays, which are ours. */
struct json_msg {
    sp_event ev;
    sp_pb_context ctx;
    sp_pb_click click;
    sp_pb_order order;
    sp_pb_review review;
    sp_pb_line *lines;
    sp_pb_line **line_ptrs;
};

struct json_field {
    const char *name;
    int type;      /* J_STR, J_I64, J_U32, J_DBL, J_KIND */
    size_t offset; /* into the protobuf-c struct */
};

enum { J_STR, J_I64, J_U32, J_DBL, J_KIND };

#define JF(st, t, f) {#f, t, offsetof(st, f)}

static const struct json_field context_fields[] = {
    JF(sp_pb_context, J_STR, device_id),
    JF(sp_pb_context, J_STR, ip),
    JF(sp_pb_context, J_STR, country),
    JF(sp_pb_context, J_STR, channel),
    {NULL, 0, 0},
};
static const struct json_field click_fields[] = {
    JF(sp_pb_click, J_KIND, kind),       JF(sp_pb_click, J_STR, item_id),
    JF(sp_pb_click, J_STR, category),    JF(sp_pb_click, J_DBL, price),
    JF(sp_pb_click, J_STR, rec_id),      JF(sp_pb_click, J_STR, query),
    {NULL, 0, 0},
};
static const struct json_field line_fields[] = {
    JF(sp_pb_line, J_STR, item_id),
    JF(sp_pb_line, J_STR, category),
    JF(sp_pb_line, J_U32, quantity),
    JF(sp_pb_line, J_DBL, unit_price),
    {NULL, 0, 0},
};
static const struct json_field order_fields[] = {
    JF(sp_pb_order, J_STR, order_id),
    JF(sp_pb_order, J_DBL, total),
    JF(sp_pb_order, J_STR, currency),
    JF(sp_pb_order, J_STR, payment_method),
    JF(sp_pb_order, J_STR, card_fingerprint),
    JF(sp_pb_order, J_STR, shipping_country),
    {NULL, 0, 0},
};
static const struct json_field review_fields[] = {
    JF(sp_pb_review, J_STR, item_id),
    JF(sp_pb_review, J_U32, rating),
    JF(sp_pb_review, J_STR, text),
    JF(sp_pb_review, J_STR, order_id),
    {NULL, 0, 0},
};
static const struct json_field event_fields[] = {
    JF(sp_event, J_STR, event_id),
    JF(sp_event, J_I64, ts_ms),
    JF(sp_event, J_STR, user_id),
    JF(sp_event, J_STR, session_id),
    {NULL, 0, 0},
};

/* 2^53: the largest range in which a JSON number (a double, in cJSON) holds
 * every integer exactly. */
#define JSON_MAX_INT 9007199254740992.0

static int click_kind_parse(const char *s) {
    for (int k = SP_KIND_VIEW; k <= SP_KIND_SEARCH; k++)
        if (!strcmp(s, kind_names[k])) return k + 1; /* ClickKind numbers are ours + 1 */
    return -1;
}

/* Stores one scalar JSON member into the struct field it names, checking its
 * type strictly: a string where a number belongs is an error, not a guess. */
static int json_scalar(const cJSON *it, const struct json_field *f, const char *path, void *st,
                       char *err, size_t errlen) {
    char *dst = (char *)st + f->offset;
    switch (f->type) {
    case J_STR:
        if (!cJSON_IsString(it))
            return fail(err, errlen, "json: field '%s%s' must be a string", path, f->name);
        *(char **)dst = it->valuestring;
        return SP_OK;
    case J_DBL:
        if (!cJSON_IsNumber(it))
            return fail(err, errlen, "json: field '%s%s' must be a number", path, f->name);
        *(double *)dst = it->valuedouble;
        return SP_OK;
    case J_KIND:
        if (cJSON_IsString(it)) {
            int k = click_kind_parse(it->valuestring);
            if (k < 0)
                return fail(err, errlen, "json: unknown click kind '%.32s'", it->valuestring);
            *(Shopstream__V1__ClickKind *)dst = (Shopstream__V1__ClickKind)k;
            return SP_OK;
        }
        if (cJSON_IsNumber(it) && it->valuedouble == floor(it->valuedouble) &&
            fabs(it->valuedouble) < 2147483648.0) {
            *(Shopstream__V1__ClickKind *)dst = (Shopstream__V1__ClickKind)(int)it->valuedouble;
            return SP_OK;
        }
        return fail(err, errlen, "json: field '%skind' must be a string", path);
    default: {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v != floor(v))
            return fail(err, errlen, "json: field '%s%s' must be an integer", path, f->name);
        if (f->type == J_U32) {
            if (v < 0 || v > 4294967295.0)
                return fail(err, errlen, "json: field '%s%s' out of range", path, f->name);
            *(uint32_t *)dst = (uint32_t)v;
        } else {
            if (fabs(v) > JSON_MAX_INT)
                return fail(err, errlen, "json: field '%s%s' out of range", path, f->name);
            *(int64_t *)dst = (int64_t)v;
        }
        return SP_OK;
    }
    }
}

/* Reads the members of one JSON object into a protobuf-c struct by table.
 * Members the table does not name are handed to `extra` (the event's nested
 * objects); a member neither knows is an error naming it, and so is a member
 * given twice, because either is a producer bug worth hearing about. */
typedef int (*json_extra_fn)(const cJSON *it, struct json_msg *m, char *err, size_t errlen);

static int json_object(const cJSON *obj, const struct json_field *fields, const char *path,
                       void *st, struct json_msg *m, json_extra_fn extra, char *err,
                       size_t errlen) {
    if (!cJSON_IsObject(obj)) {
        if (!*path) return fail(err, errlen, "json: not an object");
        return fail(err, errlen, "json: field '%.*s' must be an object", (int)strlen(path) - 1,
                    path);
    }
    for (const cJSON *it = obj->child; it; it = it->next) {
        for (const cJSON *o = obj->child; o != it; o = o->next)
            if (!strcmp(o->string, it->string))
                return fail(err, errlen, "json: duplicate field '%s%.64s'", path, it->string);
        const struct json_field *f = fields;
        while (f->name && strcmp(f->name, it->string)) f++;
        int rc;
        if (f->name)
            rc = json_scalar(it, f, path, st, err, errlen);
        else if (extra)
            rc = extra(it, m, err, errlen);
        else
            rc = fail(err, errlen, "json: unknown field '%s%.64s'", path, it->string);
        if (rc) return rc;
    }
    return SP_OK;
}

/* An order's one non-scalar member: the line items, each read by table. */
static int json_order_extra(const cJSON *it, struct json_msg *m, char *err, size_t errlen) {
    if (strcmp(it->string, "items"))
        return fail(err, errlen, "json: unknown field 'order.%.64s'", it->string);
    if (!cJSON_IsArray(it)) return fail(err, errlen, "json: field 'order.items' must be an array");
    int n = cJSON_GetArraySize(it);
    if (n > SP_EVENT_MAX_ITEMS)
        return fail(err, errlen, "order has too many items (%d > %d)", n, SP_EVENT_MAX_ITEMS);
    m->lines = sp_xcalloc((size_t)n, sizeof *m->lines);
    m->line_ptrs = sp_xcalloc((size_t)n, sizeof *m->line_ptrs);
    int i = 0;
    for (const cJSON *li = it->child; li; li = li->next, i++) {
        char path[48];
        snprintf(path, sizeof path, "order.items[%d].", i);
        sp_pb_line init = SHOPSTREAM__V1__LINE_ITEM__INIT;
        m->lines[i] = init;
        m->line_ptrs[i] = &m->lines[i];
        int rc = json_object(li, line_fields, path, &m->lines[i], m, NULL, err, errlen);
        if (rc) return rc;
    }
    m->order.items = m->line_ptrs;
    m->order.n_items = (size_t)n;
    return SP_OK;
}

static int json_set_body(struct json_msg *m, Shopstream__V1__Event__BodyCase bc, char *err,
                         size_t errlen) {
    if (m->ev.body_case != SHOPSTREAM__V1__EVENT__BODY__NOT_SET)
        return fail(err, errlen, "json: more than one body");
    m->ev.body_case = bc;
    return SP_OK;
}

/* The event's nested objects: the context and at most one body. */
static int json_event_extra(const cJSON *it, struct json_msg *m, char *err, size_t errlen) {
    int rc;
    if (!strcmp(it->string, "context")) {
        m->ev.context = &m->ctx;
        return json_object(it, context_fields, "context.", &m->ctx, m, NULL, err, errlen);
    }
    if (!strcmp(it->string, "click")) {
        if ((rc = json_set_body(m, SHOPSTREAM__V1__EVENT__BODY_CLICK, err, errlen))) return rc;
        m->ev.click = &m->click;
        return json_object(it, click_fields, "click.", &m->click, m, NULL, err, errlen);
    }
    if (!strcmp(it->string, "order")) {
        if ((rc = json_set_body(m, SHOPSTREAM__V1__EVENT__BODY_ORDER, err, errlen))) return rc;
        m->ev.order = &m->order;
        return json_object(it, order_fields, "order.", &m->order, m, json_order_extra, err,
                           errlen);
    }
    if (!strcmp(it->string, "review")) {
        if ((rc = json_set_body(m, SHOPSTREAM__V1__EVENT__BODY_REVIEW, err, errlen))) return rc;
        m->ev.review = &m->review;
        return json_object(it, review_fields, "review.", &m->review, m, NULL, err, errlen);
    }
    return fail(err, errlen, "json: unknown field '%.64s'", it->string);
}

/* Parses with cJSON, rejects trailing bytes (one message is one value), reads
 * the tree strictly into borrowed protobuf-c structs, then packs and unpacks
 * so the caller gets an ordinary protobuf-c event. */
static int unpack(sp_arena *arena, const uint8_t *p, size_t len, sp_event **out, int *plain,
                  char *err, size_t errlen);

static int decode_json(const char *buf, size_t len, sp_arena *arena, sp_event **out, char *err,
                       size_t errlen) {
    struct json_msg m = {
        .ev = SHOPSTREAM__V1__EVENT__INIT,
        .ctx = SHOPSTREAM__V1__CONTEXT__INIT,
        .click = SHOPSTREAM__V1__CLICK__INIT,
        .order = SHOPSTREAM__V1__ORDER__INIT,
        .review = SHOPSTREAM__V1__REVIEW__INIT,
    };
    uint8_t *packed = NULL;
    const char *end = NULL;
    int rc = SP_ERR_BADINPUT;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        size_t at = end && end >= buf ? (size_t)(end - buf) : 0;
        fail(err, errlen, "json: syntax error at byte %zu", at);
        goto fail;
    }
    while (end < buf + len && strchr(" \t\r\n", *end) && *end) end++;
    if (end != buf + len) {
        fail(err, errlen, "json: trailing data at byte %zu", (size_t)(end - buf));
        goto fail;
    }
    rc = json_object(root, event_fields, "", &m.ev, &m, json_event_extra, err, errlen);
    if (rc) goto fail;
    size_t n = shopstream__v1__event__get_packed_size(&m.ev);
    packed = sp_xmalloc(n);
    shopstream__v1__event__pack(&m.ev, packed);
    if (unpack(arena, packed, n, out, NULL, err, errlen) != SP_OK) {
        rc = fail(err, errlen, "json: cannot represent as protobuf");
        goto fail;
    }
    rc = SP_OK;
fail:
    free(packed);
    free(m.lines);
    free(m.line_ptrs);
    cJSON_Delete(root);
    return rc;
}

/* Picks the wire format as the header promises: an explicit content type
 * wins; without one, JSON always starts with '{' (after blanks) and a
 * protobuf Event never does, since 0x7b would be field 15 with wire type 3,
 * a group, which the schema has none of. */
static int looks_json(const uint8_t *p, size_t len, const char *content_type) {
    if (content_type && *content_type) return strstr(content_type, "json") != NULL;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n') continue;
        return p[i] == '{';
    }
    return 0;
}

/* Protobuf bytes to an event: with an arena, the batch path's own decoder
 * (stream/event_pb.c: one pass, arena only, and *plain when it saw only
 * plain strings); without, protobuf-c's unpack, so that sp_event_free has
 * one way to free. pb_walk runs first there because protobuf-c only says
 * "failed", and it gives the reason. */
static int unpack(sp_arena *arena, const uint8_t *p, size_t len, sp_event **out, int *plain,
                  char *err, size_t errlen) {
    if (arena) return sp_event_pb_decode(arena, p, len, out, plain, err, errlen);
    int rc = pb_walk(p, len, NULL, err, errlen);
    if (rc) return rc;
    *out = shopstream__v1__event__unpack(NULL, len, p);
    if (!*out) return fail(err, errlen, "protobuf: malformed nested message");
    return SP_OK;
}

/* *plain (if not NULL) is set when the event's strings are known to pass
 * validation's string checks but for absence: see validate(). */
static int decode(const void *buf, size_t len, const char *content_type, sp_arena *arena,
                  sp_event **out, int *plain, char *err, size_t errlen) {
    const uint8_t *p = buf;
    *out = NULL;
    if (plain) *plain = 0;
    if (len > SP_EVENT_MAX_BYTES)
        return fail(err, errlen, "message too large (%zu > %d bytes)", len, SP_EVENT_MAX_BYTES);
    if (len == 0) return fail(err, errlen, "empty message");
    if (looks_json(p, len, content_type)) return decode_json(buf, len, arena, out, err, errlen);
    return unpack(arena, p, len, out, plain, err, errlen);
}

int sp_event_decode(const void *buf, size_t len, const char *content_type, sp_event **out,
                    char *err, size_t errlen) {
    return decode(buf, len, content_type, NULL, out, NULL, err, errlen);
}

int sp_event_decode_arena(sp_arena *arena, const void *buf, size_t len, const char *content_type,
                          sp_event **out, char *err, size_t errlen) {
    return decode(buf, len, content_type, arena, out, NULL, err, errlen);
}

static int validate(const sp_event *ev, int plain, char *err, size_t errlen);

int sp_event_read_arena(sp_arena *arena, const void *buf, size_t len,
                        sp_content_type_fn content_type, void *ctx, sp_event **out, char *err,
                        size_t errlen) {
    int plain;
    if (decode(buf, len, NULL, arena, out, &plain, err, errlen) == SP_OK &&
        validate(*out, plain, err, errlen) == SP_OK)
        return SP_OK;
    int json = looks_json(buf, len, NULL); /* only a failure needs it */
    char ctbuf[64];
    const char *ct = content_type ? content_type(ctx, ctbuf, sizeof ctbuf) : NULL;
    *out = NULL;
    if (!ct || !*ct || (strstr(ct, "json") != NULL) == json) return SP_ERR_BADINPUT;
    if (decode(buf, len, ct, arena, out, &plain, err, errlen) == SP_OK &&
        validate(*out, plain, err, errlen) == SP_OK)
        return SP_OK;
    *out = NULL;
    return SP_ERR_BADINPUT;
}

int sp_event_peek(const void *buf, size_t len, const char *content_type, sp_event_peek_info *info) {
    memset(info, 0, sizeof *info);
    if (!looks_json(buf, len, content_type)) {
        pb_walk(buf, len, info, NULL, 0);
        return info->body || info->user_id_len ? SP_OK : SP_ERR_BADINPUT;
    }
    /* JSON: the routing fields are found by a real parse; the strings are
     * copied out because the tree dies here. */
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return SP_ERR_BADINPUT;
    }
    static const char *bodies[] = {"click", "order", "review"};
    for (int i = 0; i < 3; i++)
        if (cJSON_GetObjectItemCaseSensitive(root, bodies[i])) info->body = 10 + i;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "user_id");
    if (cJSON_IsString(u)) {
        size_t n = strlen(u->valuestring);
        if (n >= sizeof info->user_id_buf) n = sizeof info->user_id_buf - 1;
        memcpy(info->user_id_buf, u->valuestring, n);
        info->user_id = info->user_id_buf;
        info->user_id_len = n;
    }
    cJSON_Delete(root);
    return SP_OK;
}

void sp_event_free(sp_event *ev) {
    if (ev) shopstream__v1__event__free_unpacked(ev, NULL);
}

/* ---- validation ---- */

/* Accepts exactly the well-formed UTF-8 of RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
int sp_utf8_valid(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    while (p < end) {
        uint64_t w; /* ASCII, the common case, eight bytes at a time */
        if (end - p >= 8 && (memcpy(&w, p, 8), !(w & 0x8080808080808080ULL))) {
            p += 8;
            continue;
        }
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (end - p <= n) return 0;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        p += n + 1;
    }
    return 1;
}

/* plain: the decoder saw only strings of at most SP_EVENT_MAX_ID bytes of
 * ASCII without a NUL (sp_event_pb_decode), so of the checks below only
 * absence can fail -- every limit is at least SP_EVENT_MAX_ID -- and the
 * strlen and UTF-8 scan of each string are skipped. */
static int check_str(const char *s, const char *name, size_t max, int required, int plain,
                     char *err, size_t errlen) {
    if (plain) return required && !(s && *s) ? fail(err, errlen, "missing %s", name) : SP_OK;
    size_t n = s ? strlen(s) : 0;
    if (!n) return required ? fail(err, errlen, "missing %s", name) : SP_OK;
    if (n > max) return fail(err, errlen, "%s too long (%zu > %zu bytes)", name, n, max);
    if (!sp_utf8_valid(s, n)) return fail(err, errlen, "invalid UTF-8 in %s", name);
    return SP_OK;
}

static int check_amount(double v, const char *name, char *err, size_t errlen) {
    if (!isfinite(v) || v < 0)
        return fail(err, errlen, "%s must be a finite amount >= 0 (got %g)", name, v);
    return SP_OK;
}

/* check_str of line item i's field; its name ("order.items[3].item_id") is
 * written only for the reason of a failure. */
static int check_line_str(const char *s, size_t i, const char *field, int required, int plain,
                          char *err, size_t errlen) {
    if (check_str(s, field, SP_EVENT_MAX_ID, required, plain, NULL, 0) == SP_OK) return SP_OK;
    char name[64];
    snprintf(name, sizeof name, "order.items[%zu].%s", i, field);
    return check_str(s, name, SP_EVENT_MAX_ID, required, plain, err, errlen);
}

#define STR(s, name, max, req)                                            \
    do {                                                                  \
        if ((rc = check_str((s), (name), (max), (req), plain, err, errlen))) return rc; \
    } while (0)

static int validate_click(const sp_pb_click *c, int plain, char *err, size_t errlen) {
    int rc;
    if (c->kind == SHOPSTREAM__V1__CLICK_KIND__CLICK_KIND_UNSPECIFIED)
        return fail(err, errlen, "missing click.kind");
    if (c->kind < SHOPSTREAM__V1__CLICK_KIND__VIEW || c->kind > SHOPSTREAM__V1__CLICK_KIND__SEARCH)
        return fail(err, errlen, "unknown click kind %d", (int)c->kind);
    STR(c->item_id, "click.item_id", SP_EVENT_MAX_ID,
        c->kind != SHOPSTREAM__V1__CLICK_KIND__SEARCH);
    STR(c->category, "click.category", SP_EVENT_MAX_ID, 0);
    STR(c->rec_id, "click.rec_id", SP_EVENT_MAX_ID, 0);
    STR(c->query, "click.query", SP_EVENT_MAX_TEXT, 0);
    return check_amount(c->price, "click.price", err, errlen);
}

static int validate_order(const sp_pb_order *o, int plain, char *err, size_t errlen) {
    int rc;
    STR(o->order_id, "order.order_id", SP_EVENT_MAX_ID, 1);
    if (o->n_items == 0) return fail(err, errlen, "order has no items");
    if (o->n_items > SP_EVENT_MAX_ITEMS)
        return fail(err, errlen, "order has too many items (%zu > %d)", o->n_items,
                    SP_EVENT_MAX_ITEMS);
    for (size_t i = 0; i < o->n_items; i++) {
        const sp_pb_line *li = o->items[i];
        if ((rc = check_line_str(li->item_id, i, "item_id", 1, plain, err, errlen))) return rc;
        if ((rc = check_line_str(li->category, i, "category", 0, plain, err, errlen))) return rc;
        if (li->quantity < 1)
            return fail(err, errlen, "order.items[%zu].quantity must be >= 1", i);
        if (check_amount(li->unit_price, "", NULL, 0) != SP_OK) {
            char name[64];
            snprintf(name, sizeof name, "order.items[%zu].unit_price", i);
            return check_amount(li->unit_price, name, err, errlen);
        }
    }
    STR(o->currency, "order.currency", SP_EVENT_MAX_ID, 0);
    STR(o->payment_method, "order.payment_method", SP_EVENT_MAX_ID, 0);
    STR(o->card_fingerprint, "order.card_fingerprint", SP_EVENT_MAX_ID, 0);
    STR(o->shipping_country, "order.shipping_country", SP_EVENT_MAX_ID, 0);
    return check_amount(o->total, "order.total", err, errlen);
}

static int validate_review(const sp_pb_review *r, int plain, char *err, size_t errlen) {
    int rc;
    STR(r->item_id, "review.item_id", SP_EVENT_MAX_ID, 1);
    if (r->rating < 1 || r->rating > 5)
        return fail(err, errlen, "review.rating must be 1..5 (got %u)", r->rating);
    STR(r->text, "review.text", SP_EVENT_MAX_TEXT, 0);
    STR(r->order_id, "review.order_id", SP_EVENT_MAX_ID, 0);
    return SP_OK;
}

/* Checks in a fixed order (ids, time, strings, then the body) so that a
 * message with several faults always gets the same reason. plain: see
 * check_str. */
static int validate(const sp_event *ev, int plain, char *err, size_t errlen) {
    int rc;
    STR(ev->event_id, "event_id", SP_EVENT_MAX_ID, 1);
    STR(ev->user_id, "user_id", SP_EVENT_MAX_ID, 1);
    if (ev->ts_ms <= 0) return fail(err, errlen, "ts_ms must be > 0");
    /* Before year 10000: also below 2^53, so the JSON rendering (a double)
     * carries every accepted timestamp exactly. Found by make fuzz. */
    if (ev->ts_ms >= SP_EVENT_MAX_TS_MS)
        return fail(err, errlen, "ts_ms must be before year 10000 (got %lld)", (long long)ev->ts_ms);
    STR(ev->session_id, "session_id", SP_EVENT_MAX_ID, 0);
    if (ev->context) {
        STR(ev->context->device_id, "context.device_id", SP_EVENT_MAX_ID, 0);
        STR(ev->context->ip, "context.ip", SP_EVENT_MAX_ID, 0);
        STR(ev->context->country, "context.country", SP_EVENT_MAX_ID, 0);
        STR(ev->context->channel, "context.channel", SP_EVENT_MAX_ID, 0);
    }
    switch (ev->body_case) {
    case SHOPSTREAM__V1__EVENT__BODY_CLICK:
        if (ev->click) return validate_click(ev->click, plain, err, errlen);
        break;
    case SHOPSTREAM__V1__EVENT__BODY_ORDER:
        if (ev->order) return validate_order(ev->order, plain, err, errlen);
        break;
    case SHOPSTREAM__V1__EVENT__BODY_REVIEW:
        if (ev->review) return validate_review(ev->review, plain, err, errlen);
        break;
    default: break;
    }
    return fail(err, errlen, "unknown or missing body");
}

int sp_event_validate(const sp_event *ev, char *err, size_t errlen) {
    return validate(ev, 0, err, errlen);
}

/* ---- rendering ---- */

/* Members equal to the proto3 default (empty string, zero) are left out, as
 * proto3's JSON mapping does, so that JSON -> protobuf -> JSON is the
 * identity. Integers are written as raw text: cJSON would print a 13-digit
 * timestamp through a double's %g. A zero double is omitted only when its
 * bits are zero, since -0.0 survives a protobuf round trip. */
static void put_str(cJSON *o, const char *name, const char *s) {
    if (s && *s) cJSON_AddStringToObject(o, name, s);
}

static void put_dbl(cJSON *o, const char *name, double v) {
    if (v != 0 || signbit(v)) cJSON_AddNumberToObject(o, name, v);
}

static void put_int(cJSON *o, const char *name, int64_t v) {
    char buf[24];
    if (!v) return;
    snprintf(buf, sizeof buf, "%" PRId64, v);
    cJSON_AddRawToObject(o, name, buf);
}

char *sp_event_to_json(const sp_event *ev) {
    cJSON *o = cJSON_CreateObject(), *b;
    put_str(o, "event_id", ev->event_id);
    put_int(o, "ts_ms", ev->ts_ms);
    put_str(o, "user_id", ev->user_id);
    put_str(o, "session_id", ev->session_id);
    if (ev->context) {
        b = cJSON_AddObjectToObject(o, "context");
        put_str(b, "device_id", ev->context->device_id);
        put_str(b, "ip", ev->context->ip);
        put_str(b, "country", ev->context->country);
        put_str(b, "channel", ev->context->channel);
    }
    if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_CLICK && ev->click) {
        const sp_pb_click *c = ev->click;
        b = cJSON_AddObjectToObject(o, "click");
        if (c->kind >= SHOPSTREAM__V1__CLICK_KIND__VIEW &&
            c->kind <= SHOPSTREAM__V1__CLICK_KIND__SEARCH)
            cJSON_AddStringToObject(b, "kind", kind_names[c->kind - 1]);
        else
            put_int(b, "kind", c->kind);
        put_str(b, "item_id", c->item_id);
        put_str(b, "category", c->category);
        put_dbl(b, "price", c->price);
        put_str(b, "rec_id", c->rec_id);
        put_str(b, "query", c->query);
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_ORDER && ev->order) {
        const sp_pb_order *r = ev->order;
        b = cJSON_AddObjectToObject(o, "order");
        put_str(b, "order_id", r->order_id);
        if (r->n_items) {
            cJSON *arr = cJSON_AddArrayToObject(b, "items");
            for (size_t i = 0; i < r->n_items; i++) {
                cJSON *li = cJSON_CreateObject();
                put_str(li, "item_id", r->items[i]->item_id);
                put_str(li, "category", r->items[i]->category);
                put_int(li, "quantity", r->items[i]->quantity);
                put_dbl(li, "unit_price", r->items[i]->unit_price);
                cJSON_AddItemToArray(arr, li);
            }
        }
        put_dbl(b, "total", r->total);
        put_str(b, "currency", r->currency);
        put_str(b, "payment_method", r->payment_method);
        put_str(b, "card_fingerprint", r->card_fingerprint);
        put_str(b, "shipping_country", r->shipping_country);
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_REVIEW && ev->review) {
        const sp_pb_review *r = ev->review;
        b = cJSON_AddObjectToObject(o, "review");
        put_str(b, "item_id", r->item_id);
        put_int(b, "rating", r->rating);
        put_str(b, "text", r->text);
        put_str(b, "order_id", r->order_id);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) abort(); /* cJSON fails only when malloc does: abort as sp_xmalloc would */
    return s;
}

uint8_t *sp_event_pack(const sp_event *ev, size_t *len) {
    *len = shopstream__v1__event__get_packed_size(ev);
    uint8_t *buf = sp_xmalloc(*len);
    shopstream__v1__event__pack(ev, buf);
    return buf;
}
