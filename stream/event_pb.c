/* A protobuf decoder for shopstream.v1.Event that fills protobuf-c's
 * generated structs from an arena.
 *
 * Why not protobuf_c_message_unpack: it scans every message twice (once to
 * count, once to parse), looks each field up by binary search in the
 * descriptor, and calls the allocator once per string and per message. On
 * the consumer thread that was ~4k instructions of ~14k per message. Here one
 * pass walks the bytes, a table indexed by field number says what each field
 * is, and nothing is copied but the message itself, once.
 *
 * Strings point into that copy of the message in the arena, so the event
 * owns everything it points to and lives exactly as long as the arena,
 * whatever happens to the Kafka message. Each string still has to end in a
 * NUL, and the byte after a string is always the next tag to be read (of this
 * message or an enclosing one), or the copy's extra last byte: so the decoder
 * remembers where the last string ended and writes its NUL there as soon as
 * it has read that tag byte. Only tag bytes already read are overwritten,
 * never string or unknown-field bytes. (Copying each string out instead cost
 * a memcpy call per string, ~300 instructions per message.)
 *
 * What it accepts and how it fills the structs follows protobuf-c 1.4.1 (the
 * library the non-arena path uses), including where that differs from other
 * protobuf runtimes; tests/test_event_pb.c checks it against protobuf-c on
 * random and hand-built inputs:
 *  - scalars: the last occurrence wins; uint32 and enum keep the low 32 bits
 *    of the varint; int64 is the varint's two's complement; an enum value
 *    outside ClickKind is kept as is (proto3 open enums; validate rejects it).
 *  - a known field with the wrong wire type fails the decode.
 *  - Context (a singular message) seen twice merges: strings the second
 *    carries win, the others are kept; the first's unknown fields are dropped
 *    (protobuf-c's merge_messages keeps only the second's).
 *  - the body oneof: a later member replaces the earlier entirely, even the
 *    same member again (protobuf-c frees the old one, it does not merge).
 *  - Order.items is appended to; there are no repeated scalars in Event, so
 *    packed encoding never arises.
 *  - unknown fields are kept in base.unknown_fields (tag, wire type, the
 *    bytes after the tag), so pack() writes them back as protobuf-c would.
 *  - wire types 3 and 4 (groups), 6 and 7 fail; tags longer than 5 bytes, a
 *    one-byte tag with field 0, length prefixes longer than 5 bytes and
 *    varints longer than 10 bytes fail.
 *  - strings are not checked for UTF-8 (protobuf-c does not either):
 *    sp_event_validate does that, with its own reasons.
 * At the top level it also applies pb_walk's stricter tag checks (field 0 in
 * a longer tag, tags of 2^32 and above fail), which the non-arena path runs
 * before protobuf-c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/arena.h"
#include "stream/error.h"
#include "stream/event_pb.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "event_pb.c copies fixed64/fixed32 wire values as they lie: little-endian only"
#endif

typedef Shopstream__V1__Context sp_pb_context;
typedef Shopstream__V1__Click sp_pb_click;
typedef Shopstream__V1__Order sp_pb_order;
typedef Shopstream__V1__LineItem sp_pb_line;
typedef Shopstream__V1__Review sp_pb_review;

/* What a field number means in one message type. */
enum pb_kind {
    K_NONE,  /* not in the schema: kept as an unknown field */
    K_STR,   /* string */
    K_I64,   /* int64 */
    K_U32,   /* uint32 or enum */
    K_DBL,   /* double */
    K_MSG,   /* singular message (merges) */
    K_ONEOF, /* message member of a oneof (replaces) */
    K_REP,   /* repeated message (appends) */
};

struct pb_msg;

struct pb_fd {
    uint8_t kind;
    uint16_t offset;       /* of the member */
    uint16_t aux;          /* K_ONEOF: offset of the case; K_REP: of the count */
    const struct pb_msg *sub;
};

struct pb_msg {
    const ProtobufCMessageDescriptor *desc;
    uint32_t nfields;          /* highest field number + 1 */
    const struct pb_fd *fields; /* indexed by field number */
    /* Indexed by the first byte of a tag: the field a one-byte tag (field
     * number < 16 with its wire type) names when that is a known field with
     * the wire type the schema gives it, else NULL -- the decoder's fast
     * path, which then has no check left but the value's. 256 entries, so
     * that a byte with its continuation bit set needs no test of its own:
     * its entry is NULL. Filled once at start-up (tags_init); while empty,
     * every tag simply takes the full path. */
    const struct pb_fd **by_tag;
};

#define FD(k, st, m) {k, offsetof(st, m), 0, NULL}
#define TABLE(name, desc, fds)                           \
    static const struct pb_fd *name##_by_tag[256];       \
    static const struct pb_msg name = {&desc, sizeof fds / sizeof fds[0], fds, name##_by_tag}

static const struct pb_fd context_fds[] = {
    [1] = FD(K_STR, sp_pb_context, device_id),
    [2] = FD(K_STR, sp_pb_context, ip),
    [3] = FD(K_STR, sp_pb_context, country),
    [4] = FD(K_STR, sp_pb_context, channel),
};
TABLE(context_md, shopstream__v1__context__descriptor, context_fds);

static const struct pb_fd click_fds[] = {
    [1] = FD(K_U32, sp_pb_click, kind),     [2] = FD(K_STR, sp_pb_click, item_id),
    [3] = FD(K_STR, sp_pb_click, category), [4] = FD(K_DBL, sp_pb_click, price),
    [5] = FD(K_STR, sp_pb_click, rec_id),   [6] = FD(K_STR, sp_pb_click, query),
};
TABLE(click_md, shopstream__v1__click__descriptor, click_fds);

static const struct pb_fd line_fds[] = {
    [1] = FD(K_STR, sp_pb_line, item_id),
    [2] = FD(K_STR, sp_pb_line, category),
    [3] = FD(K_U32, sp_pb_line, quantity),
    [4] = FD(K_DBL, sp_pb_line, unit_price),
};
TABLE(line_md, shopstream__v1__line_item__descriptor, line_fds);

static const struct pb_fd order_fds[] = {
    [1] = FD(K_STR, sp_pb_order, order_id),
    [2] = {K_REP, offsetof(sp_pb_order, items), offsetof(sp_pb_order, n_items), &line_md},
    [3] = FD(K_DBL, sp_pb_order, total),
    [4] = FD(K_STR, sp_pb_order, currency),
    [5] = FD(K_STR, sp_pb_order, payment_method),
    [6] = FD(K_STR, sp_pb_order, card_fingerprint),
    [7] = FD(K_STR, sp_pb_order, shipping_country),
};
TABLE(order_md, shopstream__v1__order__descriptor, order_fds);

static const struct pb_fd review_fds[] = {
    [1] = FD(K_STR, sp_pb_review, item_id),
    [2] = FD(K_U32, sp_pb_review, rating),
    [3] = FD(K_STR, sp_pb_review, text),
    [4] = FD(K_STR, sp_pb_review, order_id),
};
TABLE(review_md, shopstream__v1__review__descriptor, review_fds);

#define BODY(m, md) {K_ONEOF, offsetof(sp_event, m), offsetof(sp_event, body_case), &md}
static const struct pb_fd event_fds[] = {
    [1] = FD(K_STR, sp_event, event_id),
    [2] = FD(K_I64, sp_event, ts_ms),
    [3] = FD(K_STR, sp_event, user_id),
    [4] = FD(K_STR, sp_event, session_id),
    [5] = {K_MSG, offsetof(sp_event, context), 0, &context_md},
    [10] = BODY(click, click_md),
    [11] = BODY(order, order_md),
    [12] = BODY(review, review_md),
};
TABLE(event_md, shopstream__v1__event__descriptor, event_fds);

static const struct pb_fd unknown_fd = {K_NONE, 0, 0, NULL};

/* The wire type of each kind of field. */
static const unsigned wire_of[] = {
    [K_STR] = 2, [K_I64] = 0, [K_U32] = 0, [K_DBL] = 1, [K_MSG] = 2, [K_ONEOF] = 2, [K_REP] = 2,
};

static void tags_fill(const struct pb_msg *md) {
    for (uint32_t i = 1; i < md->nfields; i++) {
        const struct pb_fd *fd = &md->fields[i];
        uint32_t tag = i << 3 | wire_of[fd->kind];
        if (fd->kind != K_NONE && tag < 0x80) md->by_tag[tag] = fd;
    }
}

__attribute__((constructor)) static void tags_init(void) {
    tags_fill(&context_md);
    tags_fill(&click_md);
    tags_fill(&line_md);
    tags_fill(&order_md);
    tags_fill(&review_md);
    tags_fill(&event_md);
}

enum { PB_TRUNCATED = 1, PB_BAD_VARINT, PB_BAD_FIELD, PB_BAD_LENGTH, PB_BAD_WIRE };

/* One field as read off the wire. */
struct pb_field {
    uint32_t num;
    unsigned wire;
    uint64_t v;          /* varint value, fixed bits, or (wire 2) payload length */
    const uint8_t *data; /* wire 2: the payload */
};

/* Bytes readable past the end of the copy (its extra last byte included),
 * zeroed: what lets str_bad read any string of up to eight bytes as one
 * word, wherever it lies. */
#define PB_PAD 9

/* Room allocated with the event for the sub-messages nearly every event
 * has, a Context and one body, so that they take no arena call of their
 * own (new_msg). */
#define PB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PB_SPARE \
    (sizeof(sp_pb_context) + PB_MAX(sizeof(sp_pb_click), PB_MAX(sizeof(sp_pb_order), sizeof(sp_pb_review))))

struct pbd {
    sp_arena *arena;
    uint8_t *spare; /* what is left of the PB_SPARE bytes */
    size_t spare_left;
    uint8_t *copy;  /* the message, copied into the arena, plus PB_PAD bytes */
    uint8_t *nul;   /* where the last string ends: zeroed once read past */
    uint64_t bad;   /* str_bad of every string so far, or'ed */
    uint32_t field; /* PB_BAD_WIRE: which field, and its wire type */
    unsigned wire;
};

/* Reads a varint of at most max bytes. Returns 0, PB_TRUNCATED if the input
 * ends inside it, or `overlong` if max bytes all have the continuation bit.
 * A one-byte varint (every length prefix and most values of an event) is
 * read without the loop. */
static inline __attribute__((always_inline)) int pb_varint(const uint8_t **pp, const uint8_t *end,
                                                           int max, int overlong, uint64_t *v) {
    const uint8_t *p = *pp;
    uint64_t x = 0;
    if (p < end && *p < 0x80) {
        *v = *p;
        *pp = p + 1;
        return 0;
    }
    for (int i = 0; i < max; i++) {
        if (p == end) return PB_TRUNCATED;
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            *pp = p;
            return 0;
        }
    }
    return overlong;
}

/* The value of a wire type 2 field: a length prefix of at most 5 bytes (as
 * protobuf-c) and that many bytes, all within the input. A one-byte prefix
 * (every string of an event but long review texts) takes one test for
 * both "the prefix is there" and "so are its bytes": reading *p is safe
 * even at p == end, since p is in the copy and PB_PAD follows it. */
static inline __attribute__((always_inline)) int pb_len(const uint8_t **pp, const uint8_t *end,
                                                        struct pb_field *f) {
    const uint8_t *p = *pp;
    uint64_t n = *p;
    if (n < 0x80) {
        if ((uint64_t)(end - p) <= n) return PB_TRUNCATED;
        p++;
    } else {
        int rc = pb_varint(&p, end, 5, PB_BAD_LENGTH, &n);
        if (rc) return rc;
        if (n > (uint64_t)(end - p)) return PB_TRUNCATED;
    }
    f->v = n;
    f->data = p;
    *pp = p + n;
    return 0;
}

/* A varint value (at most 10 bytes). One of up to eight bytes that ends
 * before `end` -- a timestamp takes six -- is read as one word (PB_PAD makes
 * eight bytes readable from anywhere in the copy) and its 7-bit groups are
 * gathered pairwise instead of byte by byte; anything else takes the loop. */
static inline __attribute__((always_inline)) int pb_uvarint(const uint8_t **pp, const uint8_t *end,
                                                            uint64_t *v) {
    const uint8_t *p = *pp;
    uint64_t w, stop;
    if (p < end && *p < 0x80) {
        *v = *p;
        *pp = p + 1;
        return 0;
    }
    memcpy(&w, p, 8);
    stop = ~w & 0x8080808080808080ULL; /* the high bit of each byte that ends a varint */
    if (stop) {
        size_t n = ((size_t)__builtin_ctzll(stop) >> 3) + 1;
        if (n <= (size_t)(end - p)) {
            w &= (~0ULL >> (64 - 8 * n)) & 0x7f7f7f7f7f7f7f7fULL;
            w = (w & 0x007f007f007f007fULL) | (w & 0x7f007f007f007f00ULL) >> 1;
            w = (w & 0x00003fff00003fffULL) | (w & 0x3fff00003fff0000ULL) >> 2;
            *v = (w & 0x000000000fffffffULL) | (w & 0x0fffffff00000000ULL) >> 4;
            *pp = p + n;
            return 0;
        }
    }
    return pb_varint(pp, end, 10, PB_BAD_VARINT, v);
}

/* The value of a fixed-width field (wire type 1: 8 bytes, 5: 4), as it
 * lies. */
static inline __attribute__((always_inline)) int pb_fixed(const uint8_t **pp, const uint8_t *end,
                                                          size_t n, struct pb_field *f) {
    if ((size_t)(end - *pp) < n) return PB_TRUNCATED;
    uint64_t w = 0;
    memcpy(&w, *pp, n);
    f->v = w;
    *pp += n;
    return 0;
}

/* Reads the value of field f (its tag read, *pp just after it) by its wire
 * type: the varint (at most 10 bytes), fixed bits or payload. */
static int pb_value(struct pbd *d, const uint8_t **pp, const uint8_t *end, struct pb_field *f) {
    switch (f->wire) {
    case 0: return pb_uvarint(pp, end, &f->v);
    case 1: return pb_fixed(pp, end, 8, f);
    case 2: return pb_len(pp, end, f);
    case 5: return pb_fixed(pp, end, 4, f);
    default:
        d->field = f->num;
        d->wire = f->wire;
        return PB_BAD_WIRE;
    }
}

/* Reads a tag that the fast path's table does not know (p < end on entry),
 * and terminates the last string read (see the top of the file). The limits
 * are protobuf-c's: a tag of at most 5 bytes whose first byte names a field.
 * `top` adds pb_walk's: no field 0 however encoded, no tag of 2^32 or
 * more. */
static int pb_tag(struct pbd *d, const uint8_t **pp, const uint8_t *end, int top,
                  struct pb_field *f) {
    const uint8_t *p = *pp;
    uint64_t tag;
    int rc;
    uint8_t b = *p++;
    *d->nul = '\0'; /* may be the byte just read: b holds it */
    if (b < 8) return PB_BAD_FIELD;
    if (b < 0x80) {
        tag = b;
    } else {
        if ((rc = pb_varint(&p, end, 4, PB_BAD_FIELD, &tag))) return rc;
        tag = (b & 0x7f) | tag << 7;
    }
    f->num = (uint32_t)(tag >> 3);
    f->wire = tag & 7;
    if (top && (f->num == 0 || tag >> 32)) return PB_BAD_FIELD;
    *pp = p;
    return 0;
}

/* What a string s[0..n) in d->copy adds to d->bad: a value with a high bit
 * of some byte set (of 0x8080808080808080) unless the string is "plain": at
 * most SP_EVENT_MAX_ID bytes, all ASCII, no NUL. Such a string passes every
 * string check of sp_event_validate but for absence (its strlen is n,
 * within every limit, and valid UTF-8), so the batch path skips those
 * checks for an event with only plain strings. Eight bytes at a time, the
 * or of w | (w - 0x01..) for each word w: in a byte x that borrows nothing
 * from the byte below, x | (x - 1) has its high bit set iff x is 0 or above
 * 0x7f; and a byte borrows only from a zero byte below it, which is caught
 * itself. A string of at most eight bytes is read as the word starting at
 * it (PB_PAD makes that readable anywhere) and only its own bytes of the
 * result kept -- the bytes past it, above it in the word, cannot borrow
 * from it -- so one word and no branch on where the string lies. */
static inline uint64_t str_bad(const uint8_t *s, size_t n) {
    static const uint64_t keep[9] = {
        0, 0xff, 0xffff, 0xffffff, 0xffffffff, 0xffffffffffULL, 0xffffffffffffULL,
        0xffffffffffffffULL, ~0ULL,
    };
    const uint64_t ones = 0x0101010101010101ULL;
    uint64_t w, bad = 0;
    if (n <= 8) {
        memcpy(&w, s, 8);
        return (w | (w - ones)) & keep[n];
    }
    if (n > SP_EVENT_MAX_ID) return 0x80;
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&w, s + i, 8);
        bad |= w | (w - ones);
    }
    memcpy(&w, s + n - 8, 8); /* the last (overlapping) word */
    return bad | w | (w - ones);
}

/* p, a pointer into d->copy that the decoder reads through as const, as
 * the writable pointer it is. */
static uint8_t *in_copy(struct pbd *d, const uint8_t *p) { return d->copy + (p - d->copy); }

/* Room for one more element in an arena array that holds n: capacities go
 * 4, 8, 16, ..., so whether it is full follows from n alone. */
static void *grow(struct pbd *d, void *arr, size_t n, size_t elt) {
    if (n && (n < 4 || (n & (n - 1)))) return arr;
    void *more = sp_arena_alloc(d->arena, (n ? 2 * n : 4) * elt);
    if (n) memcpy(more, arr, n * elt);
    return more;
}

/* Keeps field f, whose value is val[0..p) (everything after the tag), as an
 * unknown field of m. */
static void keep_unknown(struct pbd *d, const struct pb_field *f, const uint8_t *val,
                         const uint8_t *p, ProtobufCMessage *m) {
    m->unknown_fields = grow(d, m->unknown_fields, m->n_unknown_fields, sizeof *m->unknown_fields);
    ProtobufCMessageUnknownField *u = &m->unknown_fields[m->n_unknown_fields++];
    u->tag = f->num;
    u->wire_type = (ProtobufCWireType)f->wire;
    u->len = (size_t)(p - val);
    u->data = in_copy(d, val);
}

static ProtobufCMessage *new_msg(struct pbd *d, const struct pb_msg *md) {
    size_t n = md->desc->sizeof_message; /* a multiple of 8, so the spare stays aligned */
    ProtobufCMessage *m;
    if (n <= d->spare_left) {
        m = (ProtobufCMessage *)d->spare;
        d->spare += n;
        d->spare_left -= n;
    } else {
        m = sp_arena_alloc(d->arena, n);
    }
    md->desc->message_init(m);
    return m;
}

/* Makes m ready to take a second occurrence of itself the way protobuf-c's
 * merge_messages leaves it: scalars are the second's (zero if it lacks
 * them, since proto3 scalars have no presence there), strings it lacks keep
 * the first's, unknown fields are only the second's. Context, the one
 * message the schema merges, has strings only; nested messages in a merged
 * message would need merging in turn, and are not supported. */
static void merge_prepare(const struct pb_msg *md, ProtobufCMessage *m) {
    for (uint32_t i = 0; i < md->nfields; i++) {
        char *at = (char *)m + md->fields[i].offset;
        switch (md->fields[i].kind) {
        case K_I64: *(int64_t *)at = 0; break;
        case K_U32: *(uint32_t *)at = 0; break;
        case K_DBL: *(double *)at = 0; break;
        default: break;
        }
    }
    m->n_unknown_fields = 0;
    m->unknown_fields = NULL;
}

/* A message-typed field fd of md, its payload in f: merged into, replacing,
 * or appended, by kind. Returns the message its payload is to be decoded
 * into. */
static ProtobufCMessage *sub_msg(struct pbd *d, const struct pb_msg *md, const struct pb_fd *fd,
                                 ProtobufCMessage *parent) {
    char *at = (char *)parent + fd->offset;
    ProtobufCMessage *sub = *(ProtobufCMessage **)at;
    if (fd->kind == K_MSG && sub) {
        merge_prepare(fd->sub, sub);
    } else if (fd->kind == K_REP) {
        size_t *n = (size_t *)((char *)parent + fd->aux);
        ProtobufCMessage ***arr = (ProtobufCMessage ***)at;
        *arr = grow(d, *arr, *n, sizeof **arr);
        sub = (*arr)[(*n)++] = new_msg(d, fd->sub);
    } else {
        sub = *(ProtobufCMessage **)at = new_msg(d, fd->sub);
        /* the case is the field number, the fd's index in its table */
        if (fd->kind == K_ONEOF) *(uint32_t *)((char *)parent + fd->aux) = (uint32_t)(fd - md->fields);
    }
    return sub;
}

/* An enclosing message, while one of its sub-messages is decoded. */
struct pb_frame {
    const uint8_t *end;
    const struct pb_msg *md;
    ProtobufCMessage *m;
};

/* The deepest the schema nests messages below Event: Order, then
 * Order.items. Unknown fields are never decoded, so no input nests deeper. */
#define PB_DEPTH 2

/* Decodes p[0..end) into ev. Each field is found one of two ways, and then
 * read by what the schema says it is (so by the wire type it must have): a
 * one-byte tag of a known field with its own wire type straight from
 * md->by_tag; anything else by pb_tag, with the checks that need, an
 * unknown field or a known field with another wire type being read by its
 * wire type and kept or refused there. A sub-message is decoded in the same
 * loop, the enclosing message's state kept in up[] (a call per sub-message
 * cost about 60 instructions of saving and restoring registers): when its
 * bytes end, p is where the enclosing message goes on. */
static int decode_msg(struct pbd *d, const uint8_t *p, const uint8_t *end, ProtobufCMessage *ev) {
    struct pb_frame up[PB_DEPTH];
    int depth = 0;
    const struct pb_msg *md = &event_md;
    ProtobufCMessage *m = ev;
    const struct pb_fd *const *by_tag = md->by_tag; /* not reloaded after each store */
    struct pb_field f = {.data = NULL};
    int rc;
    for (;;) {
        while (p < end) {
            uint8_t b = *p;
            const struct pb_fd *fd = by_tag[b];
            if (fd) {
                *d->nul = '\0'; /* may be the tag byte: b holds it (see pb_tag) */
                p++;
            } else {
                if ((rc = pb_tag(d, &p, end, depth == 0, &f))) return rc;
                fd = f.num < md->nfields ? &md->fields[f.num] : &unknown_fd;
                if (fd->kind == K_NONE || f.wire != wire_of[fd->kind]) {
                    const uint8_t *val = p;
                    /* a bad value fails before a wrong wire type does */
                    if ((rc = pb_value(d, &p, end, &f))) return rc;
                    if (fd->kind != K_NONE) {
                        d->field = f.num;
                        d->wire = f.wire;
                        return PB_BAD_WIRE;
                    }
                    keep_unknown(d, &f, val, p, m);
                    continue;
                }
            }
            char *at = (char *)m + fd->offset;
            if (fd->kind == K_STR) { /* most fields: one test, not the switch's tree */
                if ((rc = pb_len(&p, end, &f))) return rc;
                *(char **)at = (char *)in_copy(d, f.data);
                d->nul = in_copy(d, p);
                d->bad |= str_bad(f.data, (size_t)f.v);
                continue;
            }
            switch (fd->kind) {
            case K_I64:
                if ((rc = pb_uvarint(&p, end, &f.v))) return rc;
                *(int64_t *)at = (int64_t)f.v;
                break;
            case K_U32:
                if ((rc = pb_uvarint(&p, end, &f.v))) return rc;
                *(uint32_t *)at = (uint32_t)f.v;
                break;
            case K_DBL:
                if ((rc = pb_fixed(&p, end, 8, &f))) return rc;
                memcpy(at, &f.v, sizeof(double));
                break;
            default:
                if ((rc = pb_len(&p, end, &f))) return rc;
                if (depth == PB_DEPTH) abort(); /* a table nesting deeper than PB_DEPTH */
                up[depth++] = (struct pb_frame){end, md, m};
                m = sub_msg(d, md, fd, m);
                md = fd->sub;
                by_tag = md->by_tag;
                p = f.data;
                end = f.data + f.v;
                break;
            }
        }
        if (!depth) return 0;
        depth--;
        end = up[depth].end;
        md = up[depth].md;
        m = up[depth].m;
        by_tag = md->by_tag;
    }
}

int sp_event_pb_decode(sp_arena *arena, const uint8_t *buf, size_t len, sp_event **out,
                       int *plain, char *err, size_t errlen) {
    /* One allocation for the event, room for its sub-messages and the copy
     * behind them. */
    sp_event *ev = sp_arena_alloc(arena, sizeof *ev + PB_SPARE + len + PB_PAD);
    struct pbd d = {arena, (uint8_t *)(ev + 1), PB_SPARE, (uint8_t *)(ev + 1) + PB_SPARE,
                    NULL, 0, 0, 0};
    shopstream__v1__event__init(ev);
    memcpy(d.copy, buf, len);
    memset(d.copy + len, 0, PB_PAD);
    d.nul = d.copy + len;
    int rc = decode_msg(&d, d.copy, d.copy + len, &ev->base);
    *out = rc ? NULL : ev;
    if (plain) *plain = !rc && !(d.bad & 0x8080808080808080ULL);
    if (!rc) return SP_OK;
    if (err && errlen) {
        switch (rc) {
        case PB_TRUNCATED: snprintf(err, errlen, "protobuf: truncated"); break;
        case PB_BAD_VARINT: snprintf(err, errlen, "protobuf: bad varint"); break;
        case PB_BAD_FIELD: snprintf(err, errlen, "protobuf: bad field number"); break;
        case PB_BAD_LENGTH: snprintf(err, errlen, "protobuf: bad length prefix"); break;
        default:
            snprintf(err, errlen, "protobuf: bad wire type %u for field %u", d.wire,
                     (unsigned)d.field);
            break;
        }
    }
    return SP_ERR_BADINPUT;
}
