/* The generator: deterministic bytes, a truth file that matches what an
 * independent reader finds in the output, valid records that validate,
 * malformed ones that fail for the stated reason, real duplicates, per-user
 * time order, Zipf popularity and the fraud scenarios' defining shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "stream/cli.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/gen.h"

static char dir[64];

static void make_dir(void) {
    strcpy(dir, "/tmp/sp_test_gen_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(gen, .init = make_dir, .fini = remove_dir);

static char *path(const char *name) {
    static char buf[16][128];
    static int k;
    char *p = buf[k++ % 16];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *file, size_t *len) {
    FILE *f = fopen(file, "rb");
    cr_assert_not_null(f, "%s", file);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

static int run_gen(const char *const *args) {
    char *argv[40];
    int argc = 0;
    argv[argc++] = "gen";
    for (; *args; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return sp_cmd_gen(argc, argv);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

Test(gen, same_seed_same_bytes_other_seed_other_bytes) {
    const char *fmts[] = {"jsonl", "proto"};
    for (int f = 0; f < 2; f++) {
        const char *a[] = {"--events", "3000", "--users", "300", "--seed", "7", "--format", fmts[f],
                           "--out", path("a"), "--truth", path("ta"), NULL};
        const char *b[] = {"--events", "3000", "--users", "300", "--seed", "7", "--format", fmts[f],
                           "--out", path("b"), "--truth", path("tb"), NULL};
        const char *c[] = {"--events", "3000", "--users", "300", "--seed", "8", "--format", fmts[f],
                           "--out", path("c"), NULL};
        cr_assert_eq(run_gen(a), 0);
        cr_assert_eq(run_gen(b), 0);
        cr_assert_eq(run_gen(c), 0);
        cr_assert(same_file(path("a"), path("b")), "%s: same seed, different output", fmts[f]);
        cr_assert(same_file(path("ta"), path("tb")), "%s: same seed, different truth", fmts[f]);
        cr_assert(!same_file(path("a"), path("c")), "%s: other seed, same output", fmts[f]);
    }
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

static double num(const cJSON *o, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    x = x ? cJSON_GetObjectItemCaseSensitive(x, b) : NULL;
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *name) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Classifies the JSONL output with cJSON alone, by the rules of the format
 * rather than by calling the code under test, and compares with the truth
 * file: counts by kind, duplicates, malformed records (by index). The
 * generator writes ASCII only, so any high byte is the injected bad UTF-8. */
Test(gen, truth_matches_an_independent_reading) {
    const char *a[] = {"--events", "6000", "--users", "400", "--seed", "11",
                       "--malformed-rate", "0.05", "--duplicate-rate", "0.03", "--fraud-rate", "0.05",
                       "--out", path("g.jsonl"), "--truth", path("g.truth"), NULL};
    cr_assert_eq(run_gen(a), 0);
    char *text = slurp(path("g.jsonl"), NULL);
    char *truth_text = slurp(path("g.truth"), NULL);
    cJSON *truth = cJSON_Parse(truth_text);
    cr_assert_not_null(truth);

    static const char *kinds[] = {"view", "click", "add_to_cart", "remove_from_cart",
                                  "search", "order", "review"};
    double count[7] = {0};
    int nlines = 0, ndup = 0, nmal = 0;
    char **seen = calloc(6000, sizeof *seen);
    int nseen = 0;
    int *mal_idx = calloc(6000, sizeof *mal_idx), *dup_idx = calloc(6000, sizeof *dup_idx);
    for (char *line = text, *nl; *line; line = nl + 1, nlines++) {
        nl = strchr(line, '\n');
        cr_assert_not_null(nl, "last line lacks a newline");
        size_t n = (size_t)(nl - line);
        cJSON *o = cJSON_ParseWithLength(line, n);
        int bad = !o || !is_ascii(line, n);
        if (!bad) {
            const char *user = str(o, "user_id");
            const cJSON *click = cJSON_GetObjectItemCaseSensitive(o, "click");
            const cJSON *order = cJSON_GetObjectItemCaseSensitive(o, "order");
            const cJSON *review = cJSON_GetObjectItemCaseSensitive(o, "review");
            double rating = num(o, "review", "rating");
            bad = !user || !*user || (!click && !order && !review) ||
                  num(o, "click", "price") < 0 || num(o, "order", "total") < 0 ||
                  (review && (rating < 1 || rating > 5));
        }
        if (bad) {
            mal_idx[nmal++] = nlines;
            cJSON_Delete(o);
            continue;
        }
        const char *id = str(o, "event_id");
        cr_assert_not_null(id);
        int dup = 0;
        for (int i = 0; i < nseen && !dup; i++) dup = !strcmp(seen[i], id);
        if (dup) {
            dup_idx[ndup++] = nlines;
        } else {
            seen[nseen++] = strdup(id);
            int k;
            if (cJSON_GetObjectItemCaseSensitive(o, "order")) k = 5;
            else if (cJSON_GetObjectItemCaseSensitive(o, "review")) k = 6;
            else {
                const char *kind = str(cJSON_GetObjectItemCaseSensitive(o, "click"), "kind");
                cr_assert_not_null(kind);
                for (k = 0; k < 5 && strcmp(kinds[k], kind); k++) {
                }
                cr_assert_lt(k, 5, "unknown kind %s", kind);
            }
            count[k]++;
        }
        cJSON_Delete(o);
    }
    cr_assert_eq(nlines, 6000);
    cr_assert_eq(cJSON_GetObjectItem(truth, "records")->valuedouble, 6000);
    const cJSON *ev = cJSON_GetObjectItem(truth, "events");
    for (int k = 0; k < 7; k++) {
        cr_assert_eq(cJSON_GetObjectItem(ev, kinds[k])->valuedouble, count[k], "%s: truth %g, found %g",
                     kinds[k], cJSON_GetObjectItem(ev, kinds[k])->valuedouble, count[k]);
        cr_assert_gt(count[k], 0, "no %s events at all", kinds[k]);
    }
    cr_assert_eq(cJSON_GetObjectItem(truth, "duplicates")->valuedouble, ndup);
    cr_assert_eq(cJSON_GetObjectItem(truth, "malformed_total")->valuedouble, nmal);
    cr_assert_gt(ndup, 50);
    cr_assert_gt(nmal, 150);
    const cJSON *ml = cJSON_GetObjectItem(truth, "malformed_records");
    cr_assert_eq(cJSON_GetArraySize(ml), nmal);
    for (int i = 0; i < nmal; i++)
        cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(ml, i), "index")->valuedouble,
                     mal_idx[i]);
    const cJSON *dl = cJSON_GetObjectItem(truth, "duplicate_records");
    for (int i = 0; i < ndup; i++)
        cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(dl, i), "index")->valuedouble,
                     dup_idx[i]);
    /* every fraud event is a valid event of the output */
    const cJSON *fr = cJSON_GetObjectItem(truth, "fraud");
    cr_assert_gt(cJSON_GetArraySize(fr), 20);
    for (const cJSON *f = fr->child; f; f = f->next) {
        const char *id = str(f, "event_id");
        int found = 0;
        for (int i = 0; i < nseen && !found; i++) found = !strcmp(seen[i], id);
        cr_assert(found, "fraud event %s not among valid events", id);
    }
    for (int i = 0; i < nseen; i++) free(seen[i]);
    free(seen);
    free(mal_idx);
    free(dup_idx);
    cJSON_Delete(truth);
    free(truth_text);
    free(text);
}

struct seen_rec {
    char event_id[32];
    char user_id[16];
    int64_t ts;
    uint8_t *data;
    size_t len;
};

/* Through the library: valid records decode and validate, malformed ones
 * fail with the reason the truth promises, duplicates repeat an earlier
 * record byte for byte, event ids are otherwise unique, and each user's
 * events are in time order. Both formats; every malformed kind that fits the
 * format shows up. */
Test(gen, records_validate_fail_and_repeat_as_labelled) {
    for (int f = 0; f < 2; f++) {
        sp_gen_conf conf;
        sp_gen_conf_init(&conf);
        conf.events = 4000;
        conf.users = 300;
        conf.seed = 5;
        conf.format = f ? SP_GEN_PROTO : SP_GEN_JSONL;
        conf.malformed_rate = 0.15;
        conf.duplicate_rate = 0.05;
        conf.fraud_rate = 0.05;
        char err[256];
        sp_gen *g = sp_gen_new(&conf, err, sizeof err);
        cr_assert_not_null(g, "%s", err);
        struct seen_rec *seen = calloc(conf.events, sizeof *seen);
        size_t nseen = 0, ndup = 0;
        int mal_kinds_seen[16] = {0};
        const char *mal_names[16] = {0};
        int nmal_names = 0;
        sp_gen_record rec;
        uint64_t expect_index = 0;
        while (sp_gen_next(g, &rec)) {
            cr_assert_eq(rec.index, expect_index++);
            const char *ct = f ? "application/x-protobuf" : "application/json";
            sp_event *ev = NULL;
            int rc = sp_event_decode(rec.data, rec.len, ct, &ev, err, sizeof err);
            if (rc == SP_OK) rc = sp_event_validate(ev, err, sizeof err);
            if (rec.label == SP_GEN_MALFORMED) {
                cr_assert_eq(rc, SP_ERR_BADINPUT, "malformed %s record %llu accepted",
                             rec.malformed, (unsigned long long)rec.index);
                cr_assert_not_null(strstr(err, rec.reason), "%s: reason '%s' lacks '%s'",
                                   rec.malformed, err, rec.reason);
                int k = 0;
                while (k < nmal_names && strcmp(mal_names[k], rec.malformed)) k++;
                if (k == nmal_names) mal_names[nmal_names++] = rec.malformed;
                mal_kinds_seen[k]++;
            } else {
                cr_assert_eq(rc, SP_OK, "record %llu: %s", (unsigned long long)rec.index, err);
                cr_assert_str_eq(ev->event_id, rec.event_id);
                cr_assert_str_eq(ev->user_id, rec.user_id);
                cr_assert_eq(sp_event_kind_of(ev), rec.kind);
            }
            sp_event_free(ev);
            if (rec.label == SP_GEN_DUPLICATE) {
                size_t i = 0;
                while (i < nseen && strcmp(seen[i].event_id, rec.event_id)) i++;
                cr_assert_lt(i, nseen, "duplicate of unknown event %s", rec.event_id);
                cr_assert_eq(seen[i].len, rec.len);
                cr_assert_eq(memcmp(seen[i].data, rec.data, rec.len), 0);
                ndup++;
                continue;
            }
            for (size_t i = 0; i < nseen; i++) {
                cr_assert_str_neq(seen[i].event_id, rec.event_id, "event id reused");
                if (!strcmp(seen[i].user_id, rec.user_id))
                    cr_assert_geq(rec.ts_ms, seen[i].ts, "user %s goes back in time",
                                  rec.user_id);
            }
            struct seen_rec *s = &seen[nseen++];
            snprintf(s->event_id, sizeof s->event_id, "%s", rec.event_id);
            snprintf(s->user_id, sizeof s->user_id, "%s", rec.user_id);
            s->ts = rec.ts_ms;
            s->data = malloc(rec.len);
            memcpy(s->data, rec.data, rec.len);
            s->len = rec.len;
        }
        cr_assert_eq(expect_index, conf.events);
        cr_assert_gt(ndup, 100);
        /* seven kinds fit each format (truncation is protobuf's, bad syntax JSON's) */
        cr_assert_eq(nmal_names, 7, "format %d: only %d malformed kinds", f, nmal_names);
        for (size_t i = 0; i < nseen; i++) free(seen[i].data);
        free(seen);
        sp_gen_destroy(g);
    }
}

static int cmp_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* Popularity is Zipf-like: the top item draws far more views than the
 * median item. */
Test(gen, item_popularity_is_skewed) {
    sp_gen_conf conf;
    sp_gen_conf_init(&conf);
    conf.events = 20000;
    conf.items = 1000;
    conf.users = 2000;
    char err[128];
    sp_gen *g = sp_gen_new(&conf, err, sizeof err);
    int *views = calloc(conf.items, sizeof *views);
    sp_gen_record rec;
    int total = 0;
    while (sp_gen_next(g, &rec)) {
        if (rec.label != SP_GEN_VALID || rec.kind != SP_KIND_VIEW) continue;
        sp_event *ev;
        cr_assert_eq(sp_event_decode(rec.data, rec.len, NULL, &ev, err, sizeof err), SP_OK);
        int item = atoi(ev->click->item_id + 1);
        cr_assert(item >= 0 && item < (int)conf.items);
        cr_assert_eq(ev->click->category[0], 'c');
        views[item]++;
        total++;
        sp_event_free(ev);
    }
    qsort(views, conf.items, sizeof *views, cmp_desc);
    double mean = (double)total / conf.items;
    cr_assert_gt(views[0], 20 * mean, "top item %d views, mean %.1f", views[0], mean);
    cr_assert_gt(views[0], 10 * (views[conf.items / 2] + 1));
    free(views);
    sp_gen_destroy(g);
}

/* The fraud scenarios have the shapes their detectors look for: card
 * testing is a sub-1.00 then a 500+ order on one card within a minute;
 * geo mismatch ships to a country other than the IP's; a review burst is
 * many different accounts rating one item. */
Test(gen, fraud_scenarios_have_their_shape) {
    sp_gen_conf conf;
    sp_gen_conf_init(&conf);
    conf.events = 20000;
    conf.users = 1000;
    conf.fraud_rate = 0.1;
    conf.malformed_rate = 0;
    conf.duplicate_rate = 0;
    char err[128];
    sp_gen *g = sp_gen_new(&conf, err, sizeof err);
    sp_gen_record rec;
    int small_pending = 0, pairs = 0, geo = 0, bursts = 0;
    double small_ts = 0;
    char small_card[64] = "", burst_item[16] = "", last_burst_user[16] = "";
    int burst_len = 0;
    while (sp_gen_next(g, &rec)) {
        if (!rec.fraud) continue;
        sp_event *ev;
        cr_assert_eq(sp_event_decode(rec.data, rec.len, NULL, &ev, err, sizeof err), SP_OK);
        if (!strcmp(rec.fraud, "card_testing")) {
            cr_assert_eq(ev->body_case, SHOPSTREAM__V1__EVENT__BODY_ORDER);
            if (ev->order->total < 1.0) {
                small_pending = 1;
                small_ts = (double)ev->ts_ms;
                snprintf(small_card, sizeof small_card, "%s", ev->order->card_fingerprint);
            } else if (small_pending && !strcmp(small_card, ev->order->card_fingerprint)) {
                cr_assert_gt(ev->order->total, 500);
                cr_assert_leq(ev->ts_ms - small_ts, 60000);
                pairs++;
                small_pending = 0;
            }
        } else if (!strcmp(rec.fraud, "geo_mismatch")) {
            cr_assert_str_neq(ev->order->shipping_country, ev->context->country);
            geo++;
        } else if (!strcmp(rec.fraud, "review_burst")) {
            cr_assert_eq(ev->body_case, SHOPSTREAM__V1__EVENT__BODY_REVIEW);
            if (strcmp(burst_item, ev->review->item_id)) {
                if (burst_len >= 8) bursts++;
                snprintf(burst_item, sizeof burst_item, "%s", ev->review->item_id);
                burst_len = 0;
            }
            cr_assert_str_neq(last_burst_user, ev->user_id);
            snprintf(last_burst_user, sizeof last_burst_user, "%s", ev->user_id);
            cr_assert_geq(atoi(ev->user_id + 1), (int)conf.users, "burst from an old account");
            burst_len++;
        }
        sp_event_free(ev);
    }
    if (burst_len >= 8) bursts++;
    cr_assert_gt(pairs, 5);
    cr_assert_gt(geo, 5);
    cr_assert_gt(bursts, 5);
    sp_gen_destroy(g);
}

Test(gen, proto_file_is_length_prefixed) {
    const char *a[] = {"--events", "500", "--format", "proto", "--malformed-rate", "0",
                       "--out", path("p.bin"), NULL};
    cr_assert_eq(run_gen(a), 0);
    size_t n;
    char *b = slurp(path("p.bin"), &n);
    size_t pos = 0;
    int records = 0;
    while (pos < n) {
        cr_assert_leq(pos + 4, n);
        const unsigned char *u = (const unsigned char *)b + pos;
        size_t len = (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
        cr_assert_leq(pos + 4 + len, n);
        sp_event *ev;
        char err[128];
        cr_assert_eq(sp_event_decode(b + pos + 4, len, "application/x-protobuf", &ev, err,
                                     sizeof err),
                     SP_OK, "%s", err);
        sp_event_free(ev);
        pos += 4 + len;
        records++;
    }
    cr_assert_eq(records, 500);
    free(b);
}

Test(gen, bad_options_are_usage_errors) {
    const char *a[] = {"--users", "0", "--out", path("x"), NULL};
    const char *b[] = {"--fraud-rate", "1.5", NULL};
    const char *c[] = {"--format", "xml", NULL};
    const char *d[] = {"--events", "-3", NULL};
    cr_assert_eq(run_gen(a), 2);
    cr_assert_eq(run_gen(b), 2);
    cr_assert_eq(run_gen(c), 2);
    cr_assert_eq(run_gen(d), 2);
}
