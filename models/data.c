/* Data loaders. Every format is read into rows (sequence key, time, file
 * line, item, kind), sorted stably by sequence then time, and packed into
 * offsets; so sequences of the session logs are rebuilt even when their
 * clicks are interleaved in the file. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "models/data.h"
#include "stream/error.h"
#include "stream/event.h"

struct row {
    int32_t seq, item;
    int64_t ts;
    uint32_t line;
    uint8_t kind;
};

struct rows {
    struct row *r;
    size_t n, cap;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void push(struct rows *rs, struct row r) {
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 4096;
        rs->r = sp_xrealloc(rs->r, rs->cap * sizeof *rs->r);
    }
    rs->r[rs->n++] = r;
}

static int cmp_row(const void *a, const void *b) {
    const struct row *x = a, *y = b;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

int sp_data_format_parse(const char *s, enum sp_data_format *out) {
    static const char *names[] = {"seq", "rsc15", "diginetica", "events"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum sp_data_format)i;
            return SP_OK;
        }
    return SP_ERR_BADINPUT;
}

static int32_t map_item(sp_vocab *v, int frozen, const char *s, size_t len) {
    return frozen ? sp_vocab_find(v, s, len) : sp_vocab_add(v, s, len);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Click kind from the JSON rendering: our lower-case names, the protobuf
 * enum names, or the protobuf enum number. */
static uint8_t json_kind(const cJSON *k) {
    static const char *lower[] = {"view", "click", "add_to_cart", "remove_from_cart", "search"};
    if (cJSON_IsNumber(k) && k->valueint >= 1 && k->valueint <= 5) return (uint8_t)(k->valueint - 1);
    if (cJSON_IsString(k))
        for (uint8_t i = 0; i < 5; i++)
            if (!strcasecmp(k->valuestring, lower[i])) return i;
    return SP_KIND_VIEW;
}

int sp_dataset_load(const char *path, enum sp_data_format fmt, sp_vocab *vocab, int frozen,
                    struct sp_dataset *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "r");
    if (!f) {
        seterr(err, errlen, "data: cannot open %s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    int rc = SP_ERR_BADINPUT;
    struct rows rs = {0};
    sp_vocab *keys = sp_vocab_new();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint32_t ln = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        ln++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (ln == 1 && (fmt == SP_FMT_RSC15 || fmt == SP_FMT_DIGINETICA)) continue; /* header */
        if (fmt == SP_FMT_SEQ) {
            char *save = NULL, *tok = strtok_r(line, " \t", &save);
            if (!tok) continue; /* blank line */
            int32_t seq = sp_vocab_add(keys, tok, strlen(tok));
            int64_t pos = 0;
            for (tok = strtok_r(NULL, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
                push(&rs, (struct row){seq, map_item(vocab, frozen, tok, strlen(tok)), pos++, ln,
                                       SP_KIND_VIEW});
        } else if (fmt == SP_FMT_RSC15 || fmt == SP_FMT_DIGINETICA) {
            char sep = fmt == SP_FMT_RSC15 ? '\t' : ';';
            char *fld[5] = {0};
            int nf = 0;
            for (char *p = line; nf < 5;) {
                fld[nf++] = p;
                char *q = strchr(p, sep);
                if (!q) break;
                *q = '\0';
                p = q + 1;
            }
            int64_t ts;
            const char *sess = fld[0], *item;
            if (fmt == SP_FMT_RSC15) {
                if (nf < 3) {
                    seterr(err, errlen, "data: %s:%u: expected SessionId<TAB>ItemId<TAB>Time", path, ln);
                    goto fail;
                }
                item = fld[1];
                ts = (int64_t)(strtod(fld[2], NULL) * 1000.0);
            } else {
                int y, mo, dd;
                if (nf < 5 || sscanf(fld[4], "%d-%d-%d", &y, &mo, &dd) != 3) {
                    seterr(err, errlen,
                           "data: %s:%u: expected session_id;user_id;item_id;timeframe;eventdate",
                           path, ln);
                    goto fail;
                }
                item = fld[2];
                ts = days_from_civil(y, (unsigned)mo, (unsigned)dd) * 86400000LL +
                     strtoll(fld[3], NULL, 10);
            }
            int32_t seq = sp_vocab_add(keys, sess, strlen(sess));
            push(&rs, (struct row){seq, map_item(vocab, frozen, item, strlen(item)), ts, ln,
                                   SP_KIND_CLICK});
        } else {
            cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
            const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user_id");
            const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "ts_ms");
            const cJSON *click = cJSON_GetObjectItemCaseSensitive(j, "click");
            const cJSON *item = cJSON_GetObjectItemCaseSensitive(click, "item_id");
            if (cJSON_IsString(user) && cJSON_IsString(item) && item->valuestring[0]) {
                int32_t seq = sp_vocab_add(keys, user->valuestring, strlen(user->valuestring));
                int64_t t = cJSON_IsNumber(ts) ? (int64_t)ts->valuedouble
                            : cJSON_IsString(ts) ? strtoll(ts->valuestring, NULL, 10) : 0;
                push(&rs, (struct row){seq,
                                       map_item(vocab, frozen, item->valuestring,
                                                strlen(item->valuestring)),
                                       t, ln,
                                       json_kind(cJSON_GetObjectItemCaseSensitive(click, "kind"))});
            }
            cJSON_Delete(j);
        }
    }
    if (ferror(f)) {
        seterr(err, errlen, "data: error reading %s", path);
        rc = SP_ERR_IO;
        goto fail;
    }
    qsort(rs.r, rs.n, sizeof *rs.r, cmp_row);
    d->n_seq = sp_vocab_size(keys);
    d->n_events = rs.n;
    d->off = sp_xcalloc(d->n_seq + 1, sizeof *d->off);
    d->item = sp_xmalloc((rs.n ? rs.n : 1) * sizeof *d->item);
    d->ts = sp_xmalloc((rs.n ? rs.n : 1) * sizeof *d->ts);
    d->kind = sp_xmalloc(rs.n ? rs.n : 1);
    for (size_t i = 0; i < rs.n; i++) {
        d->item[i] = rs.r[i].item;
        d->ts[i] = rs.r[i].ts;
        d->kind[i] = rs.r[i].kind;
        d->off[rs.r[i].seq + 1]++;
    }
    for (size_t s = 0; s < d->n_seq; s++) d->off[s + 1] += d->off[s];
    rc = SP_OK;
fail:
    fclose(f);
    free(line);
    free(rs.r);
    sp_vocab_destroy(keys);
    return rc;
}

void sp_dataset_release(struct sp_dataset *d) {
    free(d->off);
    free(d->item);
    free(d->ts);
    free(d->kind);
    memset(d, 0, sizeof *d);
}
