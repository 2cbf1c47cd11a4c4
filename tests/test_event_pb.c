/* The batch path's protobuf decoder (stream/event_pb.c) against protobuf-c's
 * unpack, which sp_event_decode uses: thousands of random events packed by
 * protobuf-c, concatenations of them (protobuf's merge), hand-built byte
 * strings for each merge / last-one-wins / unknown-field / quirk rule, and
 * every prefix and random damage of valid encodings. Each input must be
 * accepted by both or rejected by both, and when accepted decode to equal
 * structs that pack to the same bytes (tests/support/pb_diff.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "stream/arena.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/event_pb.h"
#include "tests/support/pb_diff.h"

typedef Shopstream__V1__Context pb_context;
typedef Shopstream__V1__Click pb_click;
typedef Shopstream__V1__Order pb_order;
typedef Shopstream__V1__LineItem pb_line;
typedef Shopstream__V1__Review pb_review;

static uint64_t rng_state;

static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t below(uint64_t n) { return rnd() % n; }

/* ---- random events, built in an arena and packed by protobuf-c ---- */

/* Strings of every sort protobuf-c passes through unchecked: empty, ASCII,
 * valid multi-byte UTF-8, arbitrary high bytes (invalid UTF-8), now and then
 * long. No NUL: protobuf-c packs a C string up to its first NUL. */
static char *rnd_str(sp_arena *a) {
    size_t n;
    switch (below(8)) {
    case 0:
    case 1: n = 0; break;
    case 2: n = 100 + below(300); break;
    default: n = 1 + below(16); break;
    }
    char *s = sp_arena_alloc(a, n + 1);
    int mode = (int)below(4);
    for (size_t i = 0; i < n; i++) {
        if (mode == 0) s[i] = (char)(1 + below(255));
        else if (mode == 1 && i + 2 <= n && below(3) == 0) {
            s[i++] = (char)0xc3; /* é */
            s[i] = (char)0xa9;
        } else s[i] = (char)('a' + below(26));
    }
    s[n] = '\0';
    return s;
}

static uint64_t rnd_bits(void) {
    return rnd() >> below(64); /* every magnitude, so every varint length */
}

static double rnd_double(void) {
    static const double nice[] = {0.0, -0.0, 1.5, 19.99, 1e300, -3.0};
    if (below(4)) return nice[below(sizeof nice / sizeof nice[0])];
    uint64_t bits = rnd();
    double d;
    memcpy(&d, &bits, 8); /* NaN payloads and infinities too: compared by bits */
    return d;
}

/* Unknown fields protobuf-c will write back after the known ones: numbers
 * beyond every message of the schema, every wire type it keeps. */
static void rnd_unknown(sp_arena *a, ProtobufCMessage *m) {
    if (below(6)) return;
    unsigned n = 1 + (unsigned)below(3);
    m->unknown_fields = sp_arena_alloc(a, n * sizeof *m->unknown_fields);
    m->n_unknown_fields = n;
    for (unsigned i = 0; i < n; i++) {
        ProtobufCMessageUnknownField *u = &m->unknown_fields[i];
        static const ProtobufCWireType wires[] = {0, 1, 2, 5};
        u->tag = below(2) ? 13 + (uint32_t)below(20) : 1000 + (uint32_t)below(1u << 20);
        u->wire_type = wires[below(4)];
        uint8_t *d = sp_arena_alloc(a, 32);
        size_t len = 0;
        if (u->wire_type == 0) {
            uint64_t v = rnd_bits();
            do {
                d[len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                v >>= 7;
            } while (v);
        } else {
            size_t k = u->wire_type == 1 ? 8 : u->wire_type == 5 ? 4 : below(20);
            if (u->wire_type == 2) d[len++] = (uint8_t)k; /* the length prefix */
            for (size_t j = 0; j < k; j++) d[len++] = (uint8_t)rnd();
        }
        u->len = len;
        u->data = d;
    }
}

static sp_event *rnd_event(sp_arena *a) {
    sp_event *ev = sp_arena_alloc(a, sizeof *ev);
    shopstream__v1__event__init(ev);
    ev->event_id = rnd_str(a);
    ev->ts_ms = below(4) ? (int64_t)rnd_bits() : -(int64_t)rnd_bits();
    ev->user_id = rnd_str(a);
    ev->session_id = rnd_str(a);
    if (below(3)) {
        pb_context *c = sp_arena_alloc(a, sizeof *c);
        shopstream__v1__context__init(c);
        c->device_id = rnd_str(a);
        c->ip = rnd_str(a);
        c->country = rnd_str(a);
        c->channel = rnd_str(a);
        rnd_unknown(a, &c->base);
        ev->context = c;
    }
    switch (below(4)) {
    case 0: {
        pb_click *c = sp_arena_alloc(a, sizeof *c);
        shopstream__v1__click__init(c);
        c->kind = below(3) ? (int)below(6) : (int)(int32_t)rnd();
        c->item_id = rnd_str(a);
        c->category = rnd_str(a);
        c->price = rnd_double();
        c->rec_id = rnd_str(a);
        c->query = rnd_str(a);
        rnd_unknown(a, &c->base);
        ev->body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
        ev->click = c;
        break;
    }
    case 1: {
        pb_order *o = sp_arena_alloc(a, sizeof *o);
        shopstream__v1__order__init(o);
        o->order_id = rnd_str(a);
        o->n_items = below(7);
        o->items = sp_arena_alloc(a, (o->n_items + 1) * sizeof *o->items);
        for (size_t i = 0; i < o->n_items; i++) {
            pb_line *l = sp_arena_alloc(a, sizeof *l);
            shopstream__v1__line_item__init(l);
            l->item_id = rnd_str(a);
            l->category = rnd_str(a);
            l->quantity = (uint32_t)rnd_bits();
            l->unit_price = rnd_double();
            rnd_unknown(a, &l->base);
            o->items[i] = l;
        }
        o->total = rnd_double();
        o->currency = rnd_str(a);
        o->payment_method = rnd_str(a);
        o->card_fingerprint = rnd_str(a);
        o->shipping_country = rnd_str(a);
        rnd_unknown(a, &o->base);
        ev->body_case = SHOPSTREAM__V1__EVENT__BODY_ORDER;
        ev->order = o;
        break;
    }
    case 2: {
        pb_review *r = sp_arena_alloc(a, sizeof *r);
        shopstream__v1__review__init(r);
        r->item_id = rnd_str(a);
        r->rating = (uint32_t)rnd_bits();
        r->text = rnd_str(a);
        r->order_id = rnd_str(a);
        rnd_unknown(a, &r->base);
        ev->body_case = SHOPSTREAM__V1__EVENT__BODY_REVIEW;
        ev->review = r;
        break;
    }
    default: break;
    }
    rnd_unknown(a, &ev->base);
    return ev;
}

/* One random encoding: a packed event, or (one in three) two or three of
 * them back to back, which protobuf defines as their merge. */
static size_t rnd_encoding(sp_arena *a, uint8_t *out, size_t cap) {
    size_t n = 0;
    int parts = below(3) ? 1 : 2 + (int)below(2);
    for (int i = 0; i < parts; i++) {
        sp_event *ev = rnd_event(a);
        size_t k = protobuf_c_message_get_packed_size(&ev->base);
        if (n + k > cap) break;
        n += protobuf_c_message_pack(&ev->base, out + n);
    }
    return n;
}

#define CHECK(arena, buf, len, what, ...)                                                   \
    do {                                                                                  \
        char why_[512];                                                                   \
        if (pb_diff_decode((arena), (buf), (len), NULL, why_, sizeof why_))              \
            cr_assert_fail("%s: " what, why_, __VA_ARGS__);                               \
    } while (0)

Test(event_pb, random_events_decode_as_protobuf_c_decodes_them) {
    rng_state = 0x9e3779b97f4a7c15ULL;
    sp_arena *build = sp_arena_new(0), *arena = sp_arena_new(0);
    static uint8_t buf[SP_EVENT_MAX_BYTES];
    size_t accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = rnd_encoding(build, buf, sizeof buf);
        int ok;
        char why[512];
        if (pb_diff_decode(arena, buf, n, &ok, why, sizeof why))
            cr_assert_fail("event %d (%zu bytes): %s", i, n, why);
        accepted += ok;
        sp_arena_reset(build);
    }
    /* Every encoding protobuf-c produced is valid protobuf: none may be lost. */
    cr_assert_eq(accepted, 20000, "only %zu of 20000 accepted", accepted);
    sp_arena_destroy(build);
    sp_arena_destroy(arena);
}

/* Damage: every prefix (of the first thousand encodings, to keep the run short),
 * and for every encoding random bit flips, byte overwrites, insertions and
 * deletions. Most are rejected; the two decoders must say the same. */
Test(event_pb, every_prefix_and_random_damage_judged_as_protobuf_c_judges) {
    rng_state = 0x243f6a8885a308d3ULL;
    sp_arena *build = sp_arena_new(0), *arena = sp_arena_new(0);
    static uint8_t buf[SP_EVENT_MAX_BYTES], dam[SP_EVENT_MAX_BYTES + 8];
    size_t tried = 0, rejected = 0;
    for (int i = 0; i < 3000; i++) {
        size_t n = rnd_encoding(build, buf, sizeof buf - 8);
        if (i < 1000) {
            for (size_t cut = 0; cut < n; cut++) {
                int ok;
                char why[512];
                if (pb_diff_decode(arena, buf, cut, &ok, why, sizeof why))
                    cr_assert_fail("event %d cut at %zu of %zu: %s", i, cut, n, why);
                tried++;
                rejected += !ok;
            }
        }
        for (int k = 0; k < 16 && n; k++) {
            size_t m = n, at = below(n);
            memcpy(dam, buf, n);
            switch (below(4)) {
            case 0: dam[at] ^= (uint8_t)(1u << below(8)); break;
            case 1: dam[at] = (uint8_t)rnd(); break;
            case 2:
                memmove(dam + at + 1, dam + at, n - at);
                dam[at] = (uint8_t)rnd();
                m++;
                break;
            default:
                memmove(dam + at, dam + at + 1, n - at - 1);
                m--;
                break;
            }
            int ok;
            char why[512];
            if (pb_diff_decode(arena, dam, m, &ok, why, sizeof why))
                cr_assert_fail("event %d damaged at %zu: %s", i, at, why);
            tried++;
            rejected += !ok;
        }
        sp_arena_reset(build);
    }
    cr_assert_gt(rejected, tried / 4, "damage should mostly be rejected (%zu of %zu)", rejected,
                 tried);
    sp_arena_destroy(build);
    sp_arena_destroy(arena);
}

/* ---- hand-built encodings ---- */

struct wbuf {
    uint8_t b[1024];
    size_t n;
};

static void w_raw(struct wbuf *w, const void *p, size_t n) {
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void w_varint(struct wbuf *w, uint64_t v) {
    do {
        w->b[w->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void w_tag(struct wbuf *w, uint32_t field, unsigned wire) {
    w_varint(w, (uint64_t)field << 3 | wire);
}
static void w_bytes(struct wbuf *w, uint32_t field, const void *p, size_t n) {
    w_tag(w, field, 2);
    w_varint(w, n);
    w_raw(w, p, n);
}
static void w_str(struct wbuf *w, uint32_t field, const char *s) { w_bytes(w, field, s, strlen(s)); }
static void w_msg(struct wbuf *w, uint32_t field, const struct wbuf *m) {
    w_bytes(w, field, m->b, m->n);
}
static void w_u(struct wbuf *w, uint32_t field, uint64_t v) {
    w_tag(w, field, 0);
    w_varint(w, v);
}

/* Decodes with the arena decoder after checking it agrees with protobuf-c. */
static sp_event *decode_both(sp_arena *arena, const struct wbuf *w, const char *name) {
    CHECK(arena, w->b, w->n, "%s", name);
    sp_event *ev = NULL;
    char err[256] = "";
    int rc = sp_event_decode_arena(arena, w->b, w->n, "application/x-protobuf", &ev, err,
                                   sizeof err);
    cr_assert_eq(rc, SP_OK, "%s: %s", name, err);
    return ev;
}

static const char *reject_reason(sp_arena *arena, const struct wbuf *w, const char *name) {
    static char err[256];
    sp_event *ev = NULL;
    CHECK(arena, w->b, w->n, "%s", name);
    int rc = sp_event_decode_arena(arena, w->b, w->n, "application/x-protobuf", &ev, err,
                                   sizeof err);
    cr_assert_eq(rc, SP_ERR_BADINPUT, "%s: accepted", name);
    cr_assert_null(ev);
    return err;
}

static void head(struct wbuf *w) {
    w_str(w, 1, "e1");
    w_u(w, 2, 1767225600000);
    w_str(w, 3, "u1");
}

Test(event_pb, scalars_last_one_wins_and_context_merges) {
    sp_arena *arena = sp_arena_new(0);
    struct wbuf w = {0}, c1 = {0}, c2 = {0};
    head(&w);
    w_str(&w, 3, "u2"); /* user_id again */
    w_u(&w, 2, 5);      /* ts_ms again */
    w_str(&c1, 1, "dev");
    w_str(&c1, 2, "10.0.0.1");
    w_str(&c1, 3, "DE");
    w_tag(&c1, 9, 0); /* an unknown field in the first context: dropped by the merge */
    w_varint(&c1, 1);
    w_str(&c2, 2, "10.0.0.2");
    w_str(&c2, 3, ""); /* present but empty: wins over "DE" */
    w_msg(&w, 5, &c1);
    w_msg(&w, 5, &c2);
    sp_event *ev = decode_both(arena, &w, "merge");
    cr_assert_str_eq(ev->user_id, "u2");
    cr_assert_eq(ev->ts_ms, 5);
    cr_assert_str_eq(ev->context->device_id, "dev");
    cr_assert_str_eq(ev->context->ip, "10.0.0.2");
    cr_assert_str_eq(ev->context->country, "");
    cr_assert_str_eq(ev->context->channel, "");
    cr_assert_eq(ev->context->base.n_unknown_fields, 0);
    sp_arena_destroy(arena);
}

Test(event_pb, oneof_later_member_replaces_the_earlier) {
    sp_arena *arena = sp_arena_new(0);
    struct wbuf click = {0}, click2 = {0}, order = {0}, line = {0};
    w_u(&click, 1, 2);
    w_str(&click, 2, "i1");
    w_str(&click, 3, "c1");
    w_u(&click2, 1, 3);
    w_str(&line, 1, "i9");
    w_u(&line, 3, 2);
    w_str(&order, 1, "o1");
    w_msg(&order, 2, &line);
    w_msg(&order, 2, &line);

    struct wbuf w = {0};
    head(&w);
    w_msg(&w, 11, &order);
    w_msg(&w, 10, &click);
    sp_event *ev = decode_both(arena, &w, "order then click");
    cr_assert_eq(ev->body_case, SHOPSTREAM__V1__EVENT__BODY_CLICK);
    cr_assert_str_eq(ev->click->item_id, "i1");

    w = (struct wbuf){0};
    head(&w);
    w_msg(&w, 10, &click);
    w_msg(&w, 11, &order);
    ev = decode_both(arena, &w, "click then order");
    cr_assert_eq(ev->body_case, SHOPSTREAM__V1__EVENT__BODY_ORDER);
    cr_assert_eq(ev->order->n_items, 2);
    cr_assert_eq(ev->order->items[1]->quantity, 2);

    /* The same member twice: protobuf-c 1.4.1 replaces, it does not merge. */
    w = (struct wbuf){0};
    head(&w);
    w_msg(&w, 10, &click);
    w_msg(&w, 10, &click2);
    ev = decode_both(arena, &w, "click twice");
    cr_assert_eq(ev->click->kind, SHOPSTREAM__V1__CLICK_KIND__ADD_TO_CART);
    cr_assert_str_eq(ev->click->item_id, "");
    sp_arena_destroy(arena);
}

Test(event_pb, many_line_items_are_all_kept_in_order) {
    sp_arena *arena = sp_arena_new(0);
    static struct wbuf w, order;
    w = (struct wbuf){0};
    order = (struct wbuf){0};
    for (int i = 0; i < 40; i++) { /* past several doublings of the item array */
        struct wbuf line = {0};
        w_u(&line, 3, (uint64_t)i + 1);
        if (i % 7 == 0) w_str(&line, 1, "x");
        w_msg(&order, 2, &line);
    }
    struct wbuf empty = {0};
    w_msg(&order, 2, &empty); /* an empty line item is still an item */
    head(&w);
    w_msg(&w, 11, &order);
    sp_event *ev = decode_both(arena, &w, "40 items");
    cr_assert_eq(ev->order->n_items, 41);
    for (int i = 0; i < 40; i++) cr_assert_eq(ev->order->items[i]->quantity, (uint32_t)i + 1);
    cr_assert_eq(ev->order->items[40]->quantity, 0);
    sp_arena_destroy(arena);
}

Test(event_pb, varints_truncate_and_extend_as_protobuf_c_does) {
    sp_arena *arena = sp_arena_new(0);
    struct wbuf w = {0}, click = {0}, review = {0};
    head(&w);
    w_u(&w, 2, (uint64_t)-1234); /* int64 -1234: ten bytes of two's complement */
    w_u(&click, 1, 99);          /* a ClickKind no one knows: kept */
    w_msg(&w, 10, &click);
    sp_event *ev = decode_both(arena, &w, "negative ts, unknown kind");
    cr_assert_eq(ev->ts_ms, -1234);
    cr_assert_eq((int)ev->click->kind, 99);

    w = (struct wbuf){0};
    head(&w);
    w_u(&review, 2, (1ULL << 32) + 4); /* uint32 rating from a 5-byte varint: low 32 bits */
    w_u(&review, 2, (1ULL << 63) + 3); /* again, ten bytes: last wins */
    w_msg(&w, 12, &review);
    ev = decode_both(arena, &w, "uint32 truncation");
    cr_assert_eq(ev->review->rating, 3);

    w = (struct wbuf){0};
    click = (struct wbuf){0};
    head(&w);
    w_u(&click, 1, (uint64_t)(int64_t)-2); /* negative enum, as protobuf-c packs one */
    w_msg(&w, 10, &click);
    ev = decode_both(arena, &w, "negative enum");
    cr_assert_eq((int)ev->click->kind, -2);

    /* An overlong but terminated varint (ten bytes for 1) is fine. */
    w = (struct wbuf){0};
    head(&w);
    w_tag(&w, 2, 0);
    w_raw(&w, "\x81\x80\x80\x80\x80\x80\x80\x80\x80\x00", 10);
    ev = decode_both(arena, &w, "overlong varint");
    cr_assert_eq(ev->ts_ms, 1);
    sp_arena_destroy(arena);
}

Test(event_pb, unknown_fields_skipped_by_wire_type_and_kept) {
    sp_arena *arena = sp_arena_new(0);
    struct wbuf w = {0}, click = {0};
    head(&w);
    w_u(&w, 7, 300);                           /* varint */
    w_tag(&w, 8, 1);                           /* 64-bit */
    w_raw(&w, "12345678", 8);
    w_str(&w, 9, "skipped");                   /* length-delimited */
    w_tag(&w, 100000, 5);                      /* 32-bit, a three-byte tag */
    w_raw(&w, "abcd", 4);
    w_u(&click, 1, 1);
    w_str(&click, 2, "i1");
    w_u(&click, 40, 7); /* nested unknown */
    w_msg(&w, 10, &click);
    sp_event *ev = decode_both(arena, &w, "unknown fields");
    cr_assert_eq(ev->base.n_unknown_fields, 4);
    cr_assert_eq(ev->base.unknown_fields[3].tag, 100000);
    cr_assert_eq(ev->base.unknown_fields[3].len, 4);
    cr_assert_eq(ev->click->base.n_unknown_fields, 1);
    cr_assert_str_eq(ev->click->item_id, "i1");
    /* and pack() writes them back: nothing is lost */
    cr_assert_eq(protobuf_c_message_get_packed_size(&ev->base), w.n);

    /* A nested tag with field 0 in two bytes: protobuf-c keeps it as
     * unknown field 0 (pb_walk refuses one at the top level). */
    struct wbuf c2 = {0};
    w_raw(&c2, "\x80\x00\x05", 3);
    w_msg(&w, 5, &c2);
    ev = decode_both(arena, &w, "nested field 0");
    cr_assert_eq(ev->context->base.n_unknown_fields, 1);
    cr_assert_eq(ev->context->base.unknown_fields[0].tag, 0);

    /* a string with a NUL inside reads as C reads it, in both */
    w = (struct wbuf){0};
    head(&w);
    w_bytes(&w, 4, "ab\0cd", 5);
    ev = decode_both(arena, &w, "embedded NUL");
    cr_assert_str_eq(ev->session_id, "ab");
    sp_arena_destroy(arena);
}

struct bad_bytes {
    const char *name;
    const char *bytes;
    size_t len;
    const char *want;
};

#define B(s) s, sizeof(s) - 1
/* Each starts with event_id "e" (0a 01 65) so that the damage comes after a
 * good field. */
static const struct bad_bytes bad[] = {
    {"group start at the top", B("\x0a\x01\x65\x53"), "protobuf: bad wire type 3 for field 10"},
    {"group end at the top", B("\x0a\x01\x65\x54"), "protobuf: bad wire type 4 for field 10"},
    {"wire type 7", B("\x0a\x01\x65\x17"), "protobuf: bad wire type 7 for field 2"},
    {"group in a click", B("\x0a\x01\x65\x52\x02\x0b\x0c"), "protobuf: bad wire type 3 for field 1"},
    {"string sent as varint", B("\x0a\x01\x65\x18\x05"), "protobuf: bad wire type 0 for field 3"},
    {"ts_ms sent as fixed64", B("\x0a\x01\x65\x11\x01\x02\x03\x04\x05\x06\x07\x08"),
     "protobuf: bad wire type 1 for field 2"},
    {"click sent as varint", B("\x0a\x01\x65\x50\x01"), "protobuf: bad wire type 0 for field 10"},
    {"price sent as fixed32", B("\x0a\x01\x65\x52\x05\x25\x00\x00\x00\x00"),
     "protobuf: bad wire type 5 for field 4"},
    {"line item sent as varint", B("\x0a\x01\x65\x5a\x02\x10\x01"),
     "protobuf: bad wire type 0 for field 2"},
    {"truncated string", B("\x0a\x05\x65"), "protobuf: truncated"},
    {"truncated nested string", B("\x0a\x01\x65\x52\x03\x12\x05\x61"), "protobuf: truncated"},
    {"truncated fixed64", B("\x0a\x01\x65\x21\x01\x02"), "protobuf: truncated"},
    {"truncated tag", B("\x0a\x01\x65\x80"), "protobuf: truncated"},
    {"eleven-byte varint", B("\x0a\x01\x65\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
     "protobuf: bad varint"},
    {"field 0", B("\x0a\x01\x65\x00\x01"), "protobuf: bad field number"},
    {"field 0 in two bytes at the top", B("\x0a\x01\x65\x80\x00\x01"),
     "protobuf: bad field number"},
    {"six-byte tag", B("\x0a\x01\x65\x88\x80\x80\x80\x80\x00\x01"), "protobuf: bad field number"},
    {"tag above 2^32 at the top", B("\x0a\x01\x65\xf8\xff\xff\xff\x7f\x01"),
     "protobuf: bad field number"},
    {"six-byte length prefix", B("\x0a\x81\x80\x80\x80\x80\x00\x65"),
     "protobuf: bad length prefix"},
    {"one-byte field 0 nested", B("\x0a\x01\x65\x2a\x02\x00\x01"), "protobuf: bad field number"},
};

/* Each of t[0..n) must be rejected, by both decoders, with its reason. */
static void rejected_with_reasons(const struct bad_bytes *t, size_t n) {
    sp_arena *arena = sp_arena_new(0);
    for (size_t i = 0; i < n; i++) {
        struct wbuf w = {0};
        w_raw(&w, t[i].bytes, t[i].len);
        const char *err = reject_reason(arena, &w, t[i].name);
        cr_assert_str_eq(err, t[i].want, "%s: '%s'", t[i].name, err);
    }
    sp_arena_destroy(arena);
}

Test(event_pb, malformed_bytes_rejected_with_the_reason) {
    rejected_with_reasons(bad, sizeof bad / sizeof bad[0]);
}

/* A tag above 2^32 nested is protobuf-c's business alone: it keeps it. */
Test(event_pb, huge_nested_field_number_kept_as_protobuf_c_keeps_it) {
    sp_arena *arena = sp_arena_new(0);
    struct wbuf w = {0}, c = {0};
    head(&w);
    w_raw(&c, "\xf8\xff\xff\xff\x7f\x01", 6);
    w_msg(&w, 5, &c);
    sp_event *ev = decode_both(arena, &w, "huge nested tag");
    cr_assert_eq(ev->context->base.n_unknown_fields, 1);
    cr_assert_eq(ev->context->base.unknown_fields[0].tag, 0xffffffffu);
    sp_arena_destroy(arena);
}

/* ---- the batch path's validation shortcut ---- */

/* The batch path's validation shortcut must not change any verdict or reason
 * (pb_diff_validate). */
static void same_verdict(sp_arena *arena, const uint8_t *buf, size_t n, const char *what, int i) {
    char why[640];
    if (pb_diff_validate(arena, buf, n, why, sizeof why)) cr_assert_fail("%s %d: %s", what, i, why);
}

Test(event_pb, batch_path_validation_judges_as_validate) {
    rng_state = 0x13198a2e03707344ULL;
    sp_arena *build = sp_arena_new(0), *arena = sp_arena_new(0);
    static uint8_t buf[SP_EVENT_MAX_BYTES], dam[SP_EVENT_MAX_BYTES + 8];
    for (int i = 0; i < 20000; i++) {
        size_t n = rnd_encoding(build, buf, sizeof buf - 8);
        same_verdict(arena, buf, n, "event", i);
        memcpy(dam, buf, n);
        if (n) dam[below(n)] = (uint8_t)rnd(); /* now and then a NUL or a high byte in a string */
        same_verdict(arena, dam, n, "damaged event", i);
        sp_arena_reset(build);
        sp_arena_reset(arena);
    }
    sp_arena_destroy(build);
    sp_arena_destroy(arena);
}

/* What "plain" must mean, byte by byte. */
static int plain_ref(const uint8_t *s, size_t n) {
    if (n > SP_EVENT_MAX_ID) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == 0 || s[i] > 0x7f) return 0;
    return 1;
}

/* Every length around the word size and the limit, one odd byte at every
 * position (NUL, DEL, 0x80, 0xff and harmless ones), in the first string
 * and in a later one: the decoder's word-at-a-time flag against the
 * reference, and the batch path's verdict against validate's. */
Test(event_pb, plain_strings_flag_matches_a_bytewise_reference) {
    static const uint8_t odd[] = {0x00, 0x01, 0x7f, 0x80, 0xc3, 0xff};
    sp_arena *arena = sp_arena_new(0);
    uint8_t s[SP_EVENT_MAX_ID + 8];
    size_t lens[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 24, 63, 64, 65, 127, 128, 129, 135};
    size_t nplain = 0, nnot = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t at = 0; at <= n; at++) {
            for (size_t k = 0; k < sizeof odd; k++) {
                if (at == n && k) break; /* at == n: no odd byte, once */
                memset(s, 'a', n);
                if (at < n) s[at] = odd[k];
                for (int later = 0; later < 2; later++) {
                    struct wbuf w = {.n = 0};
                    w_str(&w, 1, "e1");
                    w_u(&w, 2, 1767225600000);
                    if (later) {
                        w_str(&w, 3, "u1");
                        w_bytes(&w, 4, s, n); /* session_id */
                    } else {
                        w_bytes(&w, 3, s, n); /* user_id */
                    }
                    struct wbuf click = {.n = 0};
                    w_u(&click, 1, 1);
                    w_str(&click, 2, "i1");
                    w_msg(&w, 10, &click);
                    sp_event *ev = NULL;
                    char err[256];
                    int plain = -1;
                    cr_assert_eq(sp_event_pb_decode(arena, w.b, w.n, &ev, &plain, err, sizeof err),
                                 SP_OK);
                    cr_assert_eq(plain, plain_ref(s, n), "len %zu, byte 0x%02x at %zu", n,
                                 at < n ? s[at] : 0, at);
                    nplain += plain == 1;
                    nnot += plain == 0;
                    same_verdict(arena, w.b, w.n, "odd byte at", (int)at);
                    sp_arena_reset(arena);
                }
            }
        }
    }
    /* Messages shorter than a word: the string cannot be read as one. */
    for (size_t n = 1; n <= 5; n++)
        for (size_t at = 0; at < n; at++)
            for (size_t k = 0; k < sizeof odd; k++) {
                memset(s, 'a', n);
                s[at] = odd[k];
                struct wbuf w = {.n = 0};
                w_bytes(&w, 1, s, n);
                sp_event *ev = NULL;
                char err[256];
                int plain = -1;
                cr_assert_eq(sp_event_pb_decode(arena, w.b, w.n, &ev, &plain, err, sizeof err),
                             SP_OK);
                cr_assert_eq(plain, plain_ref(s, n), "short message: len %zu, byte 0x%02x at %zu",
                             n, s[at], at);
                sp_arena_reset(arena);
            }
    cr_assert_gt(nplain, 100);
    cr_assert_gt(nnot, 100);
    sp_arena_destroy(arena);
}

/* ---- the decoder's fast paths, with values worked out by hand ---- */

struct varint_case {
    const char *name;
    const char *bytes; /* ts_ms's varint as it lies on the wire */
    size_t len;
    long long ts_ms;
};

/* Every length the word-at-a-time varint read takes (1 to 8 bytes) and the
 * two it leaves to the loop (9 and 10), each at the end of the message, so
 * that the bytes after it are the copy's zeroed padding. */
static const struct varint_case varints[] = {
    {"1 byte", B("\x05"), 5},
    {"2 bytes", B("\xac\x02"), 300},
    {"overlong 2 bytes for 1", B("\x81\x00"), 1},
    {"6 bytes, a timestamp", B("\x80\xd0\xea\xb6\xb7\x33"), 1767225600000LL},
    {"8 bytes, 2^49", B("\x80\x80\x80\x80\x80\x80\x80\x01"), 562949953421312LL},
    {"8 bytes, 2^56 - 1", B("\xff\xff\xff\xff\xff\xff\xff\x7f"), 72057594037927935LL},
    {"9 bytes, 2^56", B("\x80\x80\x80\x80\x80\x80\x80\x80\x01"), 72057594037927936LL},
    {"10 bytes, -1", B("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), -1},
};

Test(event_pb, varint_values_of_every_length_read_as_written) {
    sp_arena *arena = sp_arena_new(0);
    for (size_t i = 0; i < sizeof varints / sizeof varints[0]; i++) {
        struct wbuf w = {0};
        w_str(&w, 1, "e1");
        w_tag(&w, 2, 0);
        w_raw(&w, varints[i].bytes, varints[i].len);
        sp_event *ev = decode_both(arena, &w, varints[i].name);
        cr_assert_eq(ev->ts_ms, varints[i].ts_ms, "%s: %lld", varints[i].name,
                     (long long)ev->ts_ms);
    }
    /* The same inside a message, followed by more of the enclosing one:
     * review.rating 2^32 + 7 in five bytes keeps its low 32 bits, 7. */
    struct wbuf w = {0}, review = {0};
    w_tag(&review, 2, 0);
    w_raw(&review, "\x87\x80\x80\x80\x10", 5);
    w_msg(&w, 12, &review);
    head(&w);
    sp_event *ev = decode_both(arena, &w, "nested five-byte rating");
    cr_assert_eq(ev->review->rating, 7);
    cr_assert_eq(ev->ts_ms, 1767225600000LL);
    sp_arena_destroy(arena);
}

/* A value cut by the end of its message, where the bytes that follow (of
 * the enclosing message, or the copy's padding) would complete it: the
 * word-at-a-time reads must not look past the end. */
static const struct bad_bytes cut[] = {
    {"ts_ms cut at the end of the message", B("\x0a\x01\x65\x10\x96"), "protobuf: truncated"},
    {"six-byte ts_ms cut after five", B("\x0a\x01\x65\x10\x80\xd0\xea\xb6\xb7"),
     "protobuf: truncated"},
    {"rating cut by the end of the review", B("\x62\x02\x10\x96\x0a\x01\x65"),
     "protobuf: truncated"},
    {"quantity cut by the end of the line item", B("\x5a\x04\x12\x02\x18\xff\x0a\x01\x65"),
     "protobuf: truncated"},
    {"string tag at the end of the message", B("\x0a\x01\x65\x1a"), "protobuf: truncated"},
    {"string tag at the end of the click", B("\x52\x01\x12\x00\x0a\x01\x65"),
     "protobuf: truncated"},
    {"string one byte short in a click", B("\x52\x03\x12\x02\x61\x0a\x01\x65"),
     "protobuf: truncated"},
};

Test(event_pb, values_cut_by_the_end_of_their_message_are_truncated) {
    rejected_with_reasons(cut, sizeof cut / sizeof cut[0]);
}

struct str_case {
    const char *name;
    const char *user_id;
    size_t len;
    const char *want; /* the batch path's reason, or NULL: accepted */
};

/* user_id values that the decoder's plainness check must hand to the full
 * string checks (or not), judged by the batch path: its reason is the one
 * validation gives. The user_id is the message's last field, so a short one
 * is read together with the copy's padding. */
static const struct str_case strs[] = {
    {"ASCII", B("u1"), NULL},
    {"valid UTF-8, 2 bytes", B("\xc3\xbc"), NULL},
    {"valid UTF-8 after ASCII", B("abcdefghij\xc3\xbc"), NULL},
    {"high byte last of 1", B("\xff"), "invalid UTF-8 in user_id"},
    {"high byte last of 8", B("abcdefg\xff"), "invalid UTF-8 in user_id"},
    {"high byte last of 9", B("abcdefgh\xff"), "invalid UTF-8 in user_id"},
    {"cut UTF-8 after 8 ASCII", B("abcdefgh\xc3"), "invalid UTF-8 in user_id"},
    {"invalid UTF-8 after ASCII", B("abcdefghijklmnopq\xe0\x80\x80"), "invalid UTF-8 in user_id"},
    {"NUL first", B("\0abc"), "missing user_id"},
    {"NUL in the middle, valid prefix", B("ab\0\xff"), NULL},
};

Test(event_pb, strings_are_judged_by_validation_whatever_their_bytes) {
    sp_arena *arena = sp_arena_new(0);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        struct wbuf w = {0}, click = {0};
        w_u(&click, 1, 1);
        w_str(&click, 2, "i1");
        w_str(&w, 1, "e1");
        w_u(&w, 2, 1767225600000);
        w_msg(&w, 10, &click);
        w_bytes(&w, 3, strs[i].user_id, strs[i].len);
        sp_event *ev = NULL;
        char err[256] = "";
        int rc = sp_event_read_arena(arena, w.b, w.n, NULL, NULL, &ev, err, sizeof err);
        if (strs[i].want) {
            cr_assert_eq(rc, SP_ERR_BADINPUT, "%s: accepted", strs[i].name);
            cr_assert_str_eq(err, strs[i].want, "%s: '%s'", strs[i].name, err);
        } else {
            cr_assert_eq(rc, SP_OK, "%s: %s", strs[i].name, err);
            cr_assert_eq(memcmp(ev->user_id, strs[i].user_id, strlen(strs[i].user_id) + 1), 0,
                         "%s", strs[i].name);
        }
        same_verdict(arena, w.b, w.n, strs[i].name, (int)i);
        sp_arena_reset(arena);
    }
    /* The limit: 128 bytes of ASCII pass, 129 do not. */
    char id[130];
    memset(id, 'a', sizeof id);
    for (size_t n = 128; n <= 129; n++) {
        struct wbuf w = {0}, click = {0};
        w_u(&click, 1, 1);
        w_str(&click, 2, "i1");
        w_str(&w, 1, "e1");
        w_u(&w, 2, 1767225600000);
        w_bytes(&w, 3, id, n);
        w_msg(&w, 10, &click);
        sp_event *ev = NULL;
        char err[256] = "";
        int rc = sp_event_read_arena(arena, w.b, w.n, NULL, NULL, &ev, err, sizeof err);
        if (n == 128) cr_assert_eq(rc, SP_OK, "128 bytes: %s", err);
        else cr_assert_str_eq(err, "user_id too long (129 > 128 bytes)", "'%s'", err);
        sp_arena_reset(arena);
    }
    sp_arena_destroy(arena);
}

/* Fields in an order no encoder writes (the body first, ids last), a field
 * repeated, an unknown field between them and a known field with a
 * two-byte tag: each read as it should be. */
Test(event_pb, fields_in_any_order_repeated_or_unknown_read_as_written) {
    sp_arena *arena = sp_arena_new(0);
    struct wbuf w = {0}, click = {0};
    w_str(&click, 3, "c7");
    w_u(&click, 1, 2);
    w_str(&click, 2, "i1");
    w_msg(&w, 10, &click);
    w_str(&w, 4, "s1");
    w_u(&w, 99, 300);                 /* unknown, two-byte tag and value */
    w_raw(&w, "\x9a\x00\x02u9", 5);   /* user_id (field 3) in a two-byte tag */
    w_str(&w, 3, "u2");               /* and again: the last wins */
    w_tag(&w, 2, 0);
    w_raw(&w, "\x80\xd0\xea\xb6\xb7\x33", 6);
    w_str(&w, 1, "e1");
    sp_event *ev = decode_both(arena, &w, "odd order");
    cr_assert_str_eq(ev->event_id, "e1");
    cr_assert_str_eq(ev->user_id, "u2");
    cr_assert_str_eq(ev->session_id, "s1");
    cr_assert_eq(ev->ts_ms, 1767225600000LL);
    cr_assert_eq(ev->body_case, SHOPSTREAM__V1__EVENT__BODY_CLICK);
    cr_assert_eq(ev->click->kind, SHOPSTREAM__V1__CLICK_KIND__CLICK);
    cr_assert_str_eq(ev->click->item_id, "i1");
    cr_assert_str_eq(ev->click->category, "c7");
    cr_assert_eq(ev->base.n_unknown_fields, 1);
    cr_assert_eq(ev->base.unknown_fields[0].tag, 99);
    cr_assert_eq(ev->base.unknown_fields[0].len, 2);
    sp_arena_destroy(arena);
}
