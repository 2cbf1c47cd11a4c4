/* See pb_diff.h. The comparison walks protobuf-c's descriptors so that it
 * shares nothing with the decoder under test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/arena.h"
#include "stream/error.h"
#include "stream/event.h"
#include "tests/support/pb_diff.h"

#define MEMBER(m, off) ((const char *)(m) + (off))

static int differ(char *where, size_t n, const char *path, const char *what) {
    snprintf(where, n, "%s%s", path, what);
    return 1;
}

static int diff_value(const ProtobufCFieldDescriptor *f, const void *a, const void *b,
                      const char *path, char *where, size_t n) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *x = *(char *const *)a, *y = *(char *const *)b;
        if (!x || !y) return x != y ? differ(where, n, path, ": NULL string") : 0;
        return strcmp(x, y) ? differ(where, n, path, ": strings differ") : 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *x = *(ProtobufCMessage *const *)a;
        const ProtobufCMessage *y = *(ProtobufCMessage *const *)b;
        if (!x || !y) return x != y ? differ(where, n, path, ": present in one only") : 0;
        char sub[256];
        snprintf(sub, sizeof sub, "%s.", path);
        if (!pb_diff_msg(x, y, where, n)) return 0;
        char inner[256];
        snprintf(inner, sizeof inner, "%s", where);
        snprintf(where, n, "%s%s", sub, inner);
        return 1;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return memcmp(a, b, 8) ? differ(where, n, path, ": 64-bit values differ") : 0;
    default: /* int32, uint32, enum, float, bool: 4 bytes in protobuf-c */
        return memcmp(a, b, 4) ? differ(where, n, path, ": 32-bit values differ") : 0;
    }
}

static size_t elt_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    default: return 4;
    }
}

int pb_diff_msg(const ProtobufCMessage *a, const ProtobufCMessage *b, char *where, size_t n) {
    const ProtobufCMessageDescriptor *d = a->descriptor;
    if (b->descriptor != d) return differ(where, n, "", "descriptor");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na = *(const size_t *)MEMBER(a, f->quantifier_offset);
            size_t nb = *(const size_t *)MEMBER(b, f->quantifier_offset);
            if (na != nb) return differ(where, n, f->name, ": counts differ");
            const char *pa = *(char *const *)MEMBER(a, f->offset);
            const char *pb = *(char *const *)MEMBER(b, f->offset);
            for (size_t k = 0; k < na; k++) {
                char path[64];
                snprintf(path, sizeof path, "%s[%zu]", f->name, k);
                size_t sz = elt_size(f->type);
                if (diff_value(f, pa + k * sz, pb + k * sz, path, where, n)) return 1;
            }
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t ca = *(const uint32_t *)MEMBER(a, f->quantifier_offset);
            uint32_t cb = *(const uint32_t *)MEMBER(b, f->quantifier_offset);
            if (ca != cb) return differ(where, n, f->name, ": oneof cases differ");
            if (ca != f->id) continue;
        }
        if (diff_value(f, MEMBER(a, f->offset), MEMBER(b, f->offset), f->name, where, n))
            return 1;
    }
    if (a->n_unknown_fields != b->n_unknown_fields)
        return differ(where, n, "", "unknown field counts differ");
    for (unsigned i = 0; i < a->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *x = &a->unknown_fields[i], *y = &b->unknown_fields[i];
        if (x->tag != y->tag || x->wire_type != y->wire_type || x->len != y->len ||
            memcmp(x->data, y->data, x->len)) {
            snprintf(where, n, "unknown field %u (tag %u) differs", i, x->tag);
            return 1;
        }
    }
    return 0;
}

int pb_diff_decode(sp_arena *arena, const uint8_t *buf, size_t len, int *accepted, char *why,
                   size_t n) {
    static const char *ct = "application/x-protobuf";
    char err_ref[256] = "", err_new[256] = "";
    sp_event *ref = NULL, *got = NULL;
    int rc_ref = sp_event_decode(buf, len, ct, &ref, err_ref, sizeof err_ref);
    int rc_new = sp_event_decode_arena(arena, buf, len, ct, &got, err_new, sizeof err_new);
    int bad = 0;
    if (accepted) *accepted = rc_ref == SP_OK && rc_new == SP_OK;
    if ((rc_ref == SP_OK) != (rc_new == SP_OK)) {
        snprintf(why, n, "protobuf-c %s (%s), arena decoder %s (%s)",
                 rc_ref == SP_OK ? "accepts" : "rejects", err_ref,
                 rc_new == SP_OK ? "accepts" : "rejects", err_new);
        bad = 1;
    } else if (rc_ref != SP_OK) {
        if (strncmp(err_new, "protobuf: ", 10) && strncmp(err_new, "message too large", 17) &&
            strcmp(err_new, "empty message")) {
            snprintf(why, n, "rejected without a protobuf reason: '%s'", err_new);
            bad = 1;
        }
    } else {
        char where[256];
        if (pb_diff_msg(&ref->base, &got->base, where, sizeof where)) {
            snprintf(why, n, "structs differ at %s", where);
            bad = 1;
        } else {
            size_t la = protobuf_c_message_get_packed_size(&ref->base);
            size_t lb = protobuf_c_message_get_packed_size(&got->base);
            uint8_t *pa = malloc(la ? la : 1), *pb = malloc(lb ? lb : 1);
            protobuf_c_message_pack(&ref->base, pa);
            protobuf_c_message_pack(&got->base, pb);
            if (la != lb || memcmp(pa, pb, la)) {
                snprintf(why, n, "re-packed bytes differ (%zu vs %zu bytes)", la, lb);
                bad = 1;
            }
            free(pa);
            free(pb);
        }
    }
    sp_event_free(ref);
    sp_arena_reset(arena);
    return bad;
}

int pb_diff_validate(sp_arena *arena, const uint8_t *buf, size_t len, char *why, size_t n) {
    char err_ref[256] = "", err_new[256] = "";
    sp_event *ref = NULL, *got = NULL;
    int rc_ref = sp_event_decode(buf, len, NULL, &ref, err_ref, sizeof err_ref);
    int decoded = rc_ref == SP_OK;
    if (decoded) rc_ref = sp_event_validate(ref, err_ref, sizeof err_ref);
    int rc_new = sp_event_read_arena(arena, buf, len, NULL, NULL, &got, err_new, sizeof err_new);
    int bad = rc_new != rc_ref || (decoded && strcmp(err_new, err_ref));
    if (bad)
        snprintf(why, n, "batch path %d (%s), decode and validate %d (%s)", rc_new, err_new,
                 rc_ref, err_ref);
    sp_event_free(ref);
    sp_arena_reset(arena);
    return bad;
}
