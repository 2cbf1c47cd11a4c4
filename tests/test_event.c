/* Event decoding and validation, table-driven: good messages round-trip in
 * both wire formats, and each kind of bad message is rejected with a reason
 * that names what is wrong (the dead-letter `error` header). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "stream/arena.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/gen.h"

/* A complete event assembled in place: every body kind with plausible
 * values, so that each table row changes one thing. */
struct fx {
    sp_event ev;
    Shopstream__V1__Context ctx;
    Shopstream__V1__Click click;
    Shopstream__V1__Order order;
    Shopstream__V1__LineItem li[2];
    Shopstream__V1__LineItem *lp[2];
    Shopstream__V1__Review review;
    char big[SP_EVENT_MAX_TEXT + 2];
};

enum body { B_CLICK, B_ORDER, B_REVIEW, B_NONE };

static void fx_init(struct fx *f, enum body b) {
    memset(f, 0, sizeof *f);
    shopstream__v1__event__init(&f->ev);
    shopstream__v1__context__init(&f->ctx);
    shopstream__v1__click__init(&f->click);
    shopstream__v1__order__init(&f->order);
    shopstream__v1__review__init(&f->review);
    f->ev.event_id = "e0001";
    f->ev.ts_ms = 1767225600123;
    f->ev.user_id = "u000042";
    f->ev.session_id = "s0001";
    f->ev.context = &f->ctx;
    f->ctx.device_id = "d01";
    f->ctx.ip = "10.1.2.3";
    f->ctx.country = "DE";
    f->ctx.channel = "web";
    f->click.kind = SHOPSTREAM__V1__CLICK_KIND__VIEW;
    f->click.item_id = "i00042";
    f->click.category = "c07";
    f->click.price = 19.99;
    for (int i = 0; i < 2; i++) {
        shopstream__v1__line_item__init(&f->li[i]);
        f->li[i].item_id = i ? "i00002" : "i00001";
        f->li[i].category = "c01";
        f->li[i].quantity = (uint32_t)(i + 1);
        f->li[i].unit_price = 10.5 + i;
        f->lp[i] = &f->li[i];
    }
    f->order.order_id = "o0001";
    f->order.items = f->lp;
    f->order.n_items = 2;
    f->order.total = 33.5;
    f->order.currency = "EUR";
    f->order.payment_method = "card";
    f->order.card_fingerprint = "card_ab12";
    f->order.shipping_country = "DE";
    f->review.item_id = "i00001";
    f->review.rating = 4;
    f->review.text = "Ganz gut, schnell geliefert \xe2\x9c\x93";
    f->review.order_id = "o0001";
    switch (b) {
    case B_CLICK:
        f->ev.body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
        f->ev.click = &f->click;
        break;
    case B_ORDER:
        f->ev.body_case = SHOPSTREAM__V1__EVENT__BODY_ORDER;
        f->ev.order = &f->order;
        break;
    case B_REVIEW:
        f->ev.body_case = SHOPSTREAM__V1__EVENT__BODY_REVIEW;
        f->ev.review = &f->review;
        break;
    case B_NONE: break;
    }
}

/* Runs decode then validate the way the runtime does; returns the first
 * error code and leaves the reason in err. */
static int decode_validate(const void *buf, size_t len, const char *ct, char *err, size_t n) {
    sp_event *ev = NULL;
    int rc = sp_event_decode(buf, len, ct, &ev, err, n);
    if (rc == SP_OK) {
        cr_assert_not_null(ev);
        rc = sp_event_validate(ev, err, n);
    } else {
        cr_assert_null(ev);
    }
    sp_event_free(ev);
    return rc;
}

/* ---- good messages ---- */

static void search_click(struct fx *f) {
    f->click.kind = SHOPSTREAM__V1__CLICK_KIND__SEARCH;
    f->click.item_id = "";
    f->click.price = 0;
    f->click.query = "red shoes";
}
static void rec_click(struct fx *f) {
    f->click.kind = SHOPSTREAM__V1__CLICK_KIND__CLICK;
    f->click.rec_id = "r123";
}
static void no_context(struct fx *f) { f->ev.context = NULL; }
static void id_at_limit(struct fx *f) {
    memset(f->big, 'x', SP_EVENT_MAX_ID);
    f->big[SP_EVENT_MAX_ID] = 0;
    f->ev.user_id = f->big;
}
static void text_at_limit(struct fx *f) {
    memset(f->big, 'y', SP_EVENT_MAX_TEXT);
    f->big[SP_EVENT_MAX_TEXT] = 0;
    f->review.text = f->big;
}
static void rating_1(struct fx *f) { f->review.rating = 1; }
static void rating_5(struct fx *f) { f->review.rating = 5; }
static void free_item(struct fx *f) { f->click.price = 0; }
static void negative_zero_price(struct fx *f) { f->click.price = -0.0; }
static void last_ts(struct fx *f) { f->ev.ts_ms = 253402300800000LL - 1; }

struct good_case {
    const char *name;
    enum body body;
    void (*mutate)(struct fx *);
    enum sp_event_kind kind;
};

static const struct good_case good[] = {
    {"view", B_CLICK, NULL, SP_KIND_VIEW},
    {"rec click", B_CLICK, rec_click, SP_KIND_CLICK},
    {"search without item", B_CLICK, search_click, SP_KIND_SEARCH},
    {"order two lines", B_ORDER, NULL, SP_KIND_ORDER},
    {"review utf8", B_REVIEW, NULL, SP_KIND_REVIEW},
    {"no context", B_CLICK, no_context, SP_KIND_VIEW},
    {"user_id at 128 bytes", B_CLICK, id_at_limit, SP_KIND_VIEW},
    {"text at 8192 bytes", B_REVIEW, text_at_limit, SP_KIND_REVIEW},
    {"rating 1", B_REVIEW, rating_1, SP_KIND_REVIEW},
    {"rating 5", B_REVIEW, rating_5, SP_KIND_REVIEW},
    {"price 0", B_CLICK, free_item, SP_KIND_VIEW},
    {"price -0.0", B_CLICK, negative_zero_price, SP_KIND_VIEW},
    {"last ts_ms before year 10000", B_CLICK, last_ts, SP_KIND_VIEW},
};

Test(event, good_messages_round_trip_in_both_formats) {
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        static struct fx f;
        fx_init(&f, good[i].body);
        if (good[i].mutate) good[i].mutate(&f);
        char err[256] = "";
        size_t n;
        uint8_t *pb = sp_event_pack(&f.ev, &n);

        sp_event *ev = NULL;
        cr_assert_eq(sp_event_decode(pb, n, NULL, &ev, err, sizeof err), SP_OK, "%s: %s",
                     good[i].name, err);
        cr_assert_eq(sp_event_validate(ev, err, sizeof err), SP_OK, "%s: %s", good[i].name, err);
        cr_assert_eq(sp_event_kind_of(ev), good[i].kind, "%s", good[i].name);
        cr_assert_str_eq(ev->user_id, f.ev.user_id, "%s", good[i].name);
        cr_assert_eq(ev->ts_ms, f.ev.ts_ms, "%s", good[i].name);

        /* protobuf -> JSON -> protobuf gives back the same bytes */
        char *js = sp_event_to_json(ev);
        cr_assert_null(strchr(js, '\n'), "%s: JSON must be one line", good[i].name);
        sp_event *ev2 = NULL;
        cr_assert_eq(sp_event_decode(js, strlen(js), NULL, &ev2, err, sizeof err), SP_OK,
                     "%s: %s\n%s", good[i].name, err, js);
        cr_assert_eq(sp_event_validate(ev2, err, sizeof err), SP_OK, "%s: %s", good[i].name,
                     err);
        size_t n2;
        uint8_t *pb2 = sp_event_pack(ev2, &n2);
        cr_assert_eq(n2, n, "%s: %zu != %zu\n%s", good[i].name, n2, n, js);
        cr_assert_eq(memcmp(pb, pb2, n), 0, "%s", good[i].name);

        /* and the JSON rendering is stable */
        char *js2 = sp_event_to_json(ev2);
        cr_assert_str_eq(js, js2, "%s", good[i].name);

        free(js);
        free(js2);
        free(pb);
        free(pb2);
        sp_event_free(ev);
        sp_event_free(ev2);
    }
}

/* JSON written by hand (as a kcat user would), not by sp_event_to_json:
 * the field names and click-kind spelling of the schema are what we accept. */
Test(event, handwritten_json_matches_protobuf) {
    const char *js =
        "  {\"event_id\":\"e0001\",\"ts_ms\":1767225600123,\"user_id\":\"u000042\","
        "\"session_id\":\"s0001\",\"context\":{\"device_id\":\"d01\",\"ip\":\"10.1.2.3\","
        "\"country\":\"DE\",\"channel\":\"web\"},\"order\":{\"order_id\":\"o0001\","
        "\"items\":[{\"item_id\":\"i00001\",\"category\":\"c01\",\"quantity\":1,"
        "\"unit_price\":10.5},{\"item_id\":\"i00002\",\"category\":\"c01\",\"quantity\":2,"
        "\"unit_price\":11.5}],\"total\":33.5,\"currency\":\"EUR\",\"payment_method\":"
        "\"card\",\"card_fingerprint\":\"card_ab12\",\"shipping_country\":\"DE\"}}\n";
    char err[256] = "";
    sp_event *ev = NULL;
    cr_assert_eq(sp_event_decode(js, strlen(js), "application/json", &ev, err, sizeof err),
                 SP_OK, "%s", err);
    cr_assert_eq(sp_event_validate(ev, err, sizeof err), SP_OK, "%s", err);
    cr_assert_eq(ev->body_case, SHOPSTREAM__V1__EVENT__BODY_ORDER);
    cr_assert_eq(ev->order->n_items, 2);
    cr_assert_eq(ev->order->items[1]->quantity, 2);
    cr_assert_float_eq(ev->order->total, 33.5, 1e-12);
    cr_assert_str_eq(ev->context->country, "DE");

    static struct fx f;
    fx_init(&f, B_ORDER);
    size_t n1, n2;
    uint8_t *a = sp_event_pack(&f.ev, &n1), *b = sp_event_pack(ev, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(a, b, n1), 0);
    free(a);
    free(b);
    sp_event_free(ev);

    const char *click = "{\"event_id\":\"e9\",\"ts_ms\":5,\"user_id\":\"u1\","
                        "\"click\":{\"kind\":\"add_to_cart\",\"item_id\":\"i1\"}}";
    cr_assert_eq(sp_event_decode(click, strlen(click), NULL, &ev, err, sizeof err), SP_OK);
    cr_assert_eq(ev->click->kind, SHOPSTREAM__V1__CLICK_KIND__ADD_TO_CART);
    cr_assert_eq(sp_event_kind_of(ev), SP_KIND_ADD_TO_CART);
    sp_event_free(ev);
}

/* ---- bad messages ---- */

static void empty_user(struct fx *f) { f->ev.user_id = ""; }
static void empty_event_id(struct fx *f) { f->ev.event_id = ""; }
static void zero_ts(struct fx *f) { f->ev.ts_ms = 0; }
/* make fuzz found this one: a timestamp JSON cannot carry exactly. */
static void far_ts(struct fx *f) { f->ev.ts_ms = 253402300800000LL; }
static void bad_utf8_user(struct fx *f) { f->ev.user_id = "u\xc3\x28"; }
static void bad_utf8_text(struct fx *f) { f->review.text = "great \xff product"; }
static void overlong_utf8(struct fx *f) { f->ctx.device_id = "d\xc0\xaf"; }
static void surrogate_utf8(struct fx *f) { f->click.category = "\xed\xa0\x80"; }
static void id_too_long(struct fx *f) {
    memset(f->big, 'x', SP_EVENT_MAX_ID + 1);
    f->big[SP_EVENT_MAX_ID + 1] = 0;
    f->click.item_id = f->big;
}
static void text_too_long(struct fx *f) {
    memset(f->big, 'y', SP_EVENT_MAX_TEXT + 1);
    f->big[SP_EVENT_MAX_TEXT + 1] = 0;
    f->review.text = f->big;
}
static void nan_total(struct fx *f) { f->order.total = NAN; }
static void inf_total(struct fx *f) { f->order.total = INFINITY; }
static void negative_total(struct fx *f) { f->order.total = -5; }
static void negative_price(struct fx *f) { f->click.price = -0.01; }
static void nan_unit_price(struct fx *f) { f->li[1].unit_price = NAN; }
static void zero_quantity(struct fx *f) { f->li[0].quantity = 0; }
static void no_line_item_id(struct fx *f) { f->li[1].item_id = ""; }
static void bad_utf8_line_category(struct fx *f) { f->li[0].category = "c\xff"; }
static void long_line_item_id(struct fx *f) {
    memset(f->big, 'x', SP_EVENT_MAX_ID + 1);
    f->big[SP_EVENT_MAX_ID + 1] = 0;
    f->li[1].item_id = f->big;
}
static void no_lines(struct fx *f) { f->order.n_items = 0; }
static void no_order_id(struct fx *f) { f->order.order_id = ""; }
static void rating_0(struct fx *f) { f->review.rating = 0; }
static void rating_6(struct fx *f) { f->review.rating = 6; }
static void kind_9(struct fx *f) { f->click.kind = (Shopstream__V1__ClickKind)9; }
static void kind_0(struct fx *f) { f->click.kind = 0; }
static void view_no_item(struct fx *f) { f->click.item_id = ""; }

/* Byte-level damage applied after encoding. */
static size_t cut3(uint8_t *b, size_t n) {
    (void)b;
    return n - 3;
}
static size_t unknown_field_15(uint8_t *b, size_t n) {
    b[n] = (15 << 3) | 2; /* field 15, length-delimited: not in the oneof */
    b[n + 1] = 2;
    b[n + 2] = 'h';
    b[n + 3] = 'i';
    return n + 4;
}
static size_t wire_type_7(uint8_t *b, size_t n) {
    b[n] = (2 << 3) | 7;
    return n + 1;
}
static size_t json_cut(uint8_t *b, size_t n) {
    (void)b;
    return n / 2;
}

enum enc { PB, JSON, RAW };

struct bad_case {
    const char *name;
    enum enc enc;
    enum body body;
    void (*mutate)(struct fx *);
    size_t (*damage)(uint8_t *, size_t);
    const char *raw; /* RAW: the message itself */
    const char *want;
};

#define EV_HEAD "\"event_id\":\"e1\",\"ts_ms\":1767225600000,\"user_id\":\"u1\""

static const struct bad_case bad[] = {
    {"truncated protobuf", PB, B_ORDER, NULL, cut3, NULL, "protobuf: truncated"},
    {"bad wire type", PB, B_CLICK, NULL, wire_type_7, NULL, "protobuf: bad wire type 7"},
    {"unknown oneof field", PB, B_NONE, NULL, unknown_field_15, NULL, "unknown or missing body"},
    {"missing body json", JSON, B_NONE, NULL, NULL, NULL, "unknown or missing body"},
    {"empty user_id pb", PB, B_CLICK, empty_user, NULL, NULL, "missing user_id"},
    {"empty user_id json", JSON, B_ORDER, empty_user, NULL, NULL, "missing user_id"},
    {"empty event_id", PB, B_CLICK, empty_event_id, NULL, NULL, "missing event_id"},
    {"ts_ms 0", PB, B_CLICK, zero_ts, NULL, NULL, "ts_ms must be > 0"},
    {"ts_ms year 10000", PB, B_CLICK, far_ts, NULL, NULL, "ts_ms must be before year 10000"},
    {"invalid utf8 pb", PB, B_CLICK, bad_utf8_user, NULL, NULL, "invalid UTF-8 in user_id"},
    {"invalid utf8 json", JSON, B_REVIEW, bad_utf8_text, NULL, NULL,
     "invalid UTF-8 in review.text"},
    {"overlong utf8", PB, B_CLICK, overlong_utf8, NULL, NULL, "invalid UTF-8 in context.device_id"},
    {"surrogate utf8", PB, B_CLICK, surrogate_utf8, NULL, NULL, "invalid UTF-8 in click.category"},
    {"oversize id", PB, B_CLICK, id_too_long, NULL, NULL, "click.item_id too long (129 > 128"},
    {"oversize text", JSON, B_REVIEW, text_too_long, NULL, NULL, "review.text too long"},
    {"NaN total", PB, B_ORDER, nan_total, NULL, NULL, "order.total must be a finite amount"},
    {"inf total", PB, B_ORDER, inf_total, NULL, NULL, "order.total must be a finite amount"},
    {"negative total pb", PB, B_ORDER, negative_total, NULL, NULL, "order.total must be a finite amount >= 0"},
    {"negative total json", JSON, B_ORDER, negative_total, NULL, NULL, "order.total"},
    {"negative price", PB, B_CLICK, negative_price, NULL, NULL, "click.price"},
    {"NaN unit price", PB, B_ORDER, nan_unit_price, NULL, NULL, "order.items[1].unit_price"},
    {"quantity 0", PB, B_ORDER, zero_quantity, NULL, NULL, "order.items[0].quantity"},
    {"line item without id", PB, B_ORDER, no_line_item_id, NULL, NULL,
     "missing order.items[1].item_id"},
    {"line item category utf8", PB, B_ORDER, bad_utf8_line_category, NULL, NULL,
     "invalid UTF-8 in order.items[0].category"},
    {"line item id too long", PB, B_ORDER, long_line_item_id, NULL, NULL,
     "order.items[1].item_id too long (129 > 128 bytes)"},
    {"order without lines", PB, B_ORDER, no_lines, NULL, NULL, "order has no items"},
    {"order without id", PB, B_ORDER, no_order_id, NULL, NULL, "missing order.order_id"},
    {"rating 0", PB, B_REVIEW, rating_0, NULL, NULL, "review.rating must be 1..5 (got 0)"},
    {"rating 6", JSON, B_REVIEW, rating_6, NULL, NULL, "review.rating must be 1..5 (got 6)"},
    {"unknown click kind", PB, B_CLICK, kind_9, NULL, NULL, "unknown click kind 9"},
    {"unspecified click kind", PB, B_CLICK, kind_0, NULL, NULL, "missing click.kind"},
    {"view without item", PB, B_CLICK, view_no_item, NULL, NULL, "missing click.item_id"},
    {"truncated json", JSON, B_ORDER, NULL, json_cut, NULL, "json: syntax error"},
    {"NaN literal", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"order\":{\"total\":NaN}}", "json: syntax error"},
    {"trailing data", RAW, 0, NULL, NULL, "{" EV_HEAD "} x", "json: trailing data"},
    {"array without content type", RAW, 0, NULL, NULL, "[1,2]", "protobuf: bad wire type 3"},
    {"unknown field", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"foo\":1}", "json: unknown field 'foo'"},
    {"unknown nested field", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"click\":{\"kind\":\"view\",\"colour\":\"red\"}}",
     "json: unknown field 'click.colour'"},
    {"user_id number", RAW, 0, NULL, NULL, "{\"event_id\":\"e1\",\"ts_ms\":1,\"user_id\":7}",
     "json: field 'user_id' must be a string"},
    {"ts_ms string", RAW, 0, NULL, NULL, "{\"event_id\":\"e1\",\"ts_ms\":\"1\"}",
     "json: field 'ts_ms' must be an integer"},
    {"ts_ms fraction", RAW, 0, NULL, NULL, "{\"ts_ms\":1.5}", "json: field 'ts_ms' must be an integer"},
    {"rating negative", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"review\":{\"rating\":-1}}",
     "json: field 'review.rating' out of range"},
    {"price string", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"click\":{\"price\":\"9.99\"}}",
     "json: field 'click.price' must be a number"},
    {"unknown kind name", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"click\":{\"kind\":\"purchase\"}}",
     "json: unknown click kind 'purchase'"},
    {"two bodies", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"click\":{},\"review\":{}}", "json: more than one body"},
    {"duplicate field", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"user_id\":\"u2\"}", "json: duplicate field 'user_id'"},
    {"body not object", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"order\":[]}", "json: field 'order' must be an object"},
    {"items not array", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"order\":{\"items\":{}}}",
     "json: field 'order.items' must be an array"},
    {"line item unknown field", RAW, 0, NULL, NULL, "{" EV_HEAD ",\"order\":{\"items\":[{\"sku\":\"x\"}]}}",
     "json: unknown field 'order.items[0].sku'"},
    {"empty message", RAW, 0, NULL, NULL, "", "empty message"},
};

Test(event, bad_messages_rejected_with_reason) {
    static uint8_t buf[4 * SP_EVENT_MAX_BYTES];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const struct bad_case *c = &bad[i];
        static struct fx f;
        size_t n = 0;
        if (c->enc == RAW) {
            n = strlen(c->raw);
            memcpy(buf, c->raw, n);
        } else {
            fx_init(&f, c->body);
            if (c->mutate) c->mutate(&f);
            if (c->enc == PB) {
                uint8_t *p = sp_event_pack(&f.ev, &n);
                memcpy(buf, p, n);
                free(p);
            } else {
                char *js = sp_event_to_json(&f.ev);
                n = strlen(js);
                memcpy(buf, js, n);
                free(js);
            }
        }
        if (c->damage) n = c->damage(buf, n);
        char err[256] = "";
        int rc = decode_validate(buf, n, NULL, err, sizeof err);
        cr_assert_eq(rc, SP_ERR_BADINPUT, "%s: accepted", c->name);
        cr_assert_not_null(strstr(err, c->want), "%s: reason '%s' lacks '%s'", c->name, err,
                           c->want);
    }
}

Test(event, oversize_message_rejected_before_parsing) {
    size_t n = SP_EVENT_MAX_BYTES + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    char err[128];
    sp_event *ev = NULL;
    cr_assert_eq(sp_event_decode(big, n, NULL, &ev, err, sizeof err), SP_ERR_BADINPUT);
    cr_assert_not_null(strstr(err, "message too large"), "%s", err);
    cr_assert_null(ev);
    free(big);
}

Test(event, content_type_overrides_first_byte) {
    static struct fx f;
    fx_init(&f, B_CLICK);
    char *js = sp_event_to_json(&f.ev);
    char err[128];
    sp_event *ev = NULL;
    /* JSON text labelled as protobuf is read as protobuf, and fails */
    cr_assert_eq(sp_event_decode(js, strlen(js), "application/x-protobuf", &ev, err, sizeof err),
                 SP_ERR_BADINPUT);
    cr_assert_not_null(strstr(err, "protobuf:"), "%s", err);
    cr_assert_eq(sp_event_decode(js, strlen(js), "application/json; charset=utf-8", &ev, err,
                                 sizeof err),
                 SP_OK, "%s", err);
    sp_event_free(ev);
    free(js);
    cr_assert_eq(sp_event_decode("[1,2]", 5, "application/json", &ev, err, sizeof err),
                 SP_ERR_BADINPUT);
    cr_assert_str_eq(err, "json: not an object");
}

/* The batch path (sp_event_read_arena): the leading byte picks the format;
 * the content type is asked only when that fails, and then only matters if
 * it names the other format. */
struct ct_probe {
    const char *ct;
    int asked;
};

static const char *ct_probe_get(void *ctx, char *buf, size_t len) {
    struct ct_probe *p = ctx;
    p->asked++;
    if (!p->ct) return NULL;
    snprintf(buf, len, "%s", p->ct);
    return buf;
}

struct read_case {
    const char *name;
    int body; /* 0 valid protobuf click, 1 its JSON, 2 its JSON after blanks, 3 raw */
    const char *raw;
    const char *ct;
    int asked; /* was the content type needed */
    const char *want; /* NULL: accepted; else a substring of the reason */
};

static const struct read_case read_cases[] = {
    {"protobuf, no header", 0, NULL, NULL, 0, NULL},
    {"protobuf, protobuf header", 0, NULL, "application/x-protobuf", 0, NULL},
    {"protobuf labelled json", 0, NULL, "application/json", 0, NULL},
    {"json labelled protobuf", 1, NULL, "application/x-protobuf", 0, NULL},
    {"json after blanks, json header", 2, NULL, "application/json", 0, NULL},
    {"json after blanks, no header", 2, NULL, NULL, 0, NULL},
    /* Rejected: the reason is the one of the format the header names. */
    {"bad json, protobuf header", 3, "{\"user_id\":", "application/x-protobuf", 1,
     "protobuf: bad wire type 3"},
    {"bad json, json header", 3, "{\"user_id\":", "application/json", 1, "json: syntax error"},
    {"bad json, no header", 3, "{\"user_id\":", NULL, 1, "json: syntax error"},
    {"json array, json header", 3, "[1,2]", "application/json", 1, "json: not an object"},
    {"json array, no header", 3, "[1,2]", NULL, 1, "protobuf: bad wire type 3"},
    {"json missing user_id, json header", 3, "{\"event_id\":\"e1\",\"ts_ms\":5}",
     "application/json", 1, "missing user_id"},
    {"json missing user_id, protobuf header", 3, "{\"event_id\":\"e1\",\"ts_ms\":5}",
     "application/x-protobuf", 1, "protobuf: bad wire type 3"},
    {"empty, json header", 3, "", "application/json", 1, "empty message"},
};

Test(event, read_arena_picks_by_leading_byte_and_asks_the_header_only_on_failure) {
    static struct fx f;
    fx_init(&f, B_CLICK);
    size_t pblen;
    uint8_t *pb = sp_event_pack(&f.ev, &pblen);
    char *js = sp_event_to_json(&f.ev);
    char blanks[4096];
    snprintf(blanks, sizeof blanks, " \r\n\t %s", js);
    sp_arena *arena = sp_arena_new(0);
    for (size_t i = 0; i < sizeof read_cases / sizeof read_cases[0]; i++) {
        const struct read_case *c = &read_cases[i];
        const void *buf = c->body == 0 ? (const void *)pb : c->body == 1 ? js
                          : c->body == 2 ? blanks : c->raw;
        size_t len = c->body == 0 ? pblen : strlen(buf);
        struct ct_probe probe = {c->ct, 0};
        sp_event *ev = NULL;
        char err[256] = "";
        int rc = sp_event_read_arena(arena, buf, len, ct_probe_get, &probe, &ev, err, sizeof err);
        cr_assert_eq(probe.asked, c->asked, "%s: content type asked %d times", c->name,
                     probe.asked);
        if (!c->want) {
            cr_assert_eq(rc, SP_OK, "%s: %s", c->name, err);
            cr_assert_str_eq(ev->user_id, "u000042", "%s", c->name);
            cr_assert_eq(sp_event_kind_of(ev), SP_KIND_VIEW, "%s", c->name);
        } else {
            cr_assert_eq(rc, SP_ERR_BADINPUT, "%s: accepted", c->name);
            cr_assert_null(ev, "%s", c->name);
            cr_assert_not_null(strstr(err, c->want), "%s: reason '%s' lacks '%s'", c->name, err,
                               c->want);
            /* a rejection keeps the reason a header-first choice gave */
            char old[256] = "";
            if (len && decode_validate(buf, len, c->ct, old, sizeof old) == SP_ERR_BADINPUT)
                cr_assert_not_null(strstr(err, old) ? err : strstr(old, err) ? old : NULL,
                                   "%s: reason '%s', header-first gave '%s'", c->name, err, old);
        }
        sp_arena_reset(arena);
    }
    sp_arena_destroy(arena);
    free(pb);
    free(js);
}

Test(event, peek_routes_truncated_protobuf_and_json) {
    static struct fx f;
    fx_init(&f, B_ORDER);
    size_t n;
    uint8_t *pb = sp_event_pack(&f.ev, &n);
    sp_event_peek_info info;
    cr_assert_eq(sp_event_peek(pb, n - 5, NULL, &info), SP_OK);
    cr_assert_eq(info.body, SHOPSTREAM__V1__EVENT__BODY_ORDER);
    cr_assert_eq(info.user_id_len, strlen("u000042"));
    cr_assert_eq(memcmp(info.user_id, "u000042", info.user_id_len), 0);
    free(pb);

    const char *js = "{\"user_id\":\"u7\",\"review\":{\"rating\":9}}";
    cr_assert_eq(sp_event_peek(js, strlen(js), NULL, &info), SP_OK);
    cr_assert_eq(info.body, SHOPSTREAM__V1__EVENT__BODY_REVIEW);
    cr_assert_eq(info.user_id_len, 2);
    cr_assert_eq(memcmp(info.user_id, "u7", 2), 0);

    cr_assert_eq(sp_event_peek("{\"user_id\":", 11, NULL, &info), SP_ERR_BADINPUT);
    cr_assert_eq(info.body, 0);
}

Test(event, utf8_boundaries) {
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain", 1},
        {"\xc3\xa9", 1},              /* é */
        {"\xf0\x9f\x9b\x92", 1},      /* U+1F6D2, 4 bytes */
        {"\xf4\x8f\xbf\xbf", 1},      /* U+10FFFF, the last code point */
        {"\xf4\x90\x80\x80", 0},      /* U+110000 */
        {"\xc0\x80", 0},              /* overlong NUL */
        {"\xe0\x80\xaf", 0},          /* overlong '/' */
        {"\xed\x9f\xbf", 1},          /* U+D7FF, just below the surrogates */
        {"\xed\xa0\x80", 0},          /* U+D800 */
        {"\xc3", 0},                  /* cut short */
        {"\x80", 0},                  /* stray continuation */
        {"\xf8\x88\x80\x80\x80", 0},  /* 5-byte form */
        /* Past the eight-byte ASCII fast path: the bad byte after one,
         * two and a half words, and a sequence split across a word. */
        {"abcdefgh\xff", 0},
        {"abcdefghijklmnopqrst\x80u", 0},
        {"abcdefghijklmnopqrstuvwxyz0123\xc3", 0},
        {"abcdefg\xc3\xa9hijklmnop", 1},
        {"abcdefghijklmnop\xf0\x9f\x9b\x92", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(sp_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok, "case %zu", i);
}

Test(event, kind_names_are_stable) {
    static const char *want[] = {"view", "click", "add_to_cart", "remove_from_cart",
                                 "search", "order", "review"};
    for (int k = 0; k < SP_KIND__COUNT; k++)
        cr_assert_str_eq(sp_event_kind_name((enum sp_event_kind)k), want[k]);
    cr_assert_str_eq(sp_event_kind_name(SP_KIND__COUNT), "unknown");
}

/* Untrusted input: every prefix of real records and single-bit flips in them
 * decode to either an event or a reason, never a crash or a leak (this test
 * earns its keep under `make asan`). A flipped record that still decodes must
 * still get a definite answer from validate. */
Test(event, decode_survives_every_truncation_and_bit_flip) {
    for (int f = 0; f < 2; f++) {
        sp_gen_conf conf;
        sp_gen_conf_init(&conf);
        conf.events = 150;
        conf.users = 40;
        conf.format = f ? SP_GEN_PROTO : SP_GEN_JSONL;
        char err[256];
        sp_gen *g = sp_gen_new(&conf, err, sizeof err);
        cr_assert_not_null(g);
        sp_gen_record rec;
        uint64_t x = 12345;
        size_t rejected = 0, tried = 0;
        static uint8_t buf[SP_EVENT_MAX_BYTES];
        while (sp_gen_next(g, &rec)) {
            for (size_t cut = 0; cut <= rec.len; cut++) {
                sp_event *ev = NULL;
                int rc = sp_event_decode(rec.data, cut, NULL, &ev, err, sizeof err);
                cr_assert(rc == SP_OK || rc == SP_ERR_BADINPUT);
                if (rc == SP_OK) rc = sp_event_validate(ev, err, sizeof err);
                cr_assert(rc == SP_OK || rc == SP_ERR_BADINPUT);
                rejected += rc != SP_OK;
                tried++;
                sp_event_free(ev);
            }
            for (int k = 0; k < 64; k++) {
                memcpy(buf, rec.data, rec.len);
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                size_t bit = (size_t)(x >> 33) % (rec.len * 8);
                buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                sp_event *ev = NULL;
                int rc = sp_event_decode(buf, rec.len, NULL, &ev, err, sizeof err);
                if (rc == SP_OK) rc = sp_event_validate(ev, err, sizeof err);
                cr_assert(rc == SP_OK || rc == SP_ERR_BADINPUT);
                cr_assert(rc == SP_OK || err[0], "rejected without a reason");
                sp_event_free(ev);
            }
        }
        /* nearly every proper prefix of a record is broken, and said so */
        cr_assert_gt(rejected, tried / 2);
        sp_gen_destroy(g);
    }
}
