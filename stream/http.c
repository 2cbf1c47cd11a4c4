/* The HTTP server: /metrics, /healthz, /api/..., and the dashboard. See
 * stream/http.h for the routes and the threading rules.
 *
 * KPI reads merge partitions in the reader, as DESIGN.md asks: the windows
 * of partition n are {p<n>}:kpi:<len>:<start>:<dim>, listed in the sorted
 * set {p<n>}:kpi:idx:<len>; counters are summed over partitions, and unique
 * users are the sum of each partition's PFCOUNT (users are partitioned by
 * user_id, so the partitions' sets are disjoint). Which partitions exist is
 * found by SCAN of {p*}:meta, remembered for a few seconds. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operators/kpi.h"
#include "state/reader.h"
#include "stream/error.h"
#include "stream/http.h"
#include "stream/log.h"

extern const unsigned char sp_asset_dashboard_html[];
extern const size_t sp_asset_dashboard_html_len;
extern const unsigned char sp_asset_chart_js[];
extern const size_t sp_asset_chart_js_len;

#define MAX_PARTS 1024
#define NCOUNTERS SP_KPI_NCOUNTERS

struct sp_http {
    sp_http_conf conf;
    struct MHD_Daemon *d;
    sp_reader *reader;
    int port;
    int32_t parts[MAX_PARTS];
    size_t nparts;
    int64_t parts_at_ms;
};

/* A growable text buffer for /metrics. */
struct buf {
    char *s;
    size_t n, cap;
};

static void bprintf(struct buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (b->s && (size_t)n < b->cap - b->n) {
            b->n += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->s = sp_xrealloc(b->s, b->cap);
    }
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ partitions */

static void add_part(void *ctx, const char *key) {
    sp_http *h = ctx;
    int p;
    if (sscanf(key, "{p%d}:meta", &p) != 1 || p < 0 || h->nparts >= MAX_PARTS) return;
    for (size_t i = 0; i < h->nparts; i++)
        if (h->parts[i] == p) return;
    h->parts[h->nparts++] = p;
}

static int int32_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int refresh_parts(sp_http *h) {
    if (h->nparts && mono_ms() - h->parts_at_ms < 5000) return SP_OK;
    h->nparts = 0;
    int rc = sp_reader_scan(h->reader, "{p*}:meta", add_part, h);
    qsort(h->parts, h->nparts, sizeof *h->parts, int32_cmp);
    h->parts_at_ms = mono_ms();
    return rc;
}

/* ------------------------------------------------------------- KPI reads */

struct window {
    int64_t start;
    double c[NCOUNTERS];
    long long uu;
    int present; /* the hash exists */
};

struct kpi_read {
    struct window *w;
    size_t nw;
};

static void add_fields(void *ctx, size_t i, const char *field, const char *value) {
    struct window *w = ((struct kpi_read *)ctx)->w;
    w[i].present = 1;
    int c = sp_kpi_counter_index(field);
    if (c >= 0 && c < NCOUNTERS) w[i].c[c] += strtod(value, NULL);
}

static void counters_json(cJSON *o, const double *c, int with_uu, long long uu) {
    for (int i = 0; i < NCOUNTERS; i++) cJSON_AddNumberToObject(o, sp_kpi_counters[i], c[i]);
    const char *dn[8];
    double dv[8];
    int nd = sp_kpi_derive(c, dn, dv);
    for (int i = 0; i < nd; i++) cJSON_AddNumberToObject(o, dn[i], dv[i]);
    if (with_uu) cJSON_AddNumberToObject(o, "unique_users", (double)uu);
}

struct starts {
    int64_t *v;
    size_t n, cap;
};

static void add_start(void *ctx, const char *member, double score) {
    (void)member;
    struct starts *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->v = sp_xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = (int64_t)score;
}

static int int64_cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The windows of length len with from <= start < to, dimension dim, summed
 * over partitions (the `limit` latest), into a JSON object. NULL when Redis
 * is unreachable. */
static cJSON *read_kpi(sp_http *h, int64_t len, int64_t from, int64_t to, const char *dim,
                       size_t limit) {
    if (refresh_parts(h) != SP_OK) return NULL;
    struct starts st = {0};
    for (size_t i = 0; i < h->nparts; i++) {
        char key[64];
        snprintf(key, sizeof key, "{p%d}:kpi:idx:%" PRId64, (int)h->parts[i], len);
        if (sp_reader_zrange_score(h->reader, key, from, to - 1, add_start, &st) != SP_OK) {
            free(st.v);
            return NULL;
        }
    }
    qsort(st.v, st.n, sizeof *st.v, int64_cmp);
    size_t nu = 0;
    for (size_t i = 0; i < st.n; i++)
        if (!nu || st.v[nu - 1] != st.v[i]) st.v[nu++] = st.v[i];
    size_t first = limit && nu > limit ? nu - limit : 0, nw = nu - first;
    int global = !strcmp(dim, "global");

    size_t nk = nw * h->nparts;
    struct window *w = sp_xcalloc(nk ? nk : 1, sizeof *w);
    char **keys = sp_xcalloc(nk ? nk : 1, sizeof *keys);
    char **uukeys = sp_xcalloc(nk ? nk : 1, sizeof *uukeys);
    long long *uu = sp_xcalloc(nk ? nk : 1, sizeof *uu);
    for (size_t p = 0; p < h->nparts; p++)
        for (size_t i = 0; i < nw; i++) {
            size_t k = p * nw + i;
            char buf[512];
            snprintf(buf, sizeof buf, "{p%d}:kpi:%" PRId64 ":%" PRId64 ":%s", (int)h->parts[p],
                     len, st.v[first + i], dim);
            keys[k] = sp_xstrdup(buf);
            snprintf(buf, sizeof buf, "{p%d}:kpi:%" PRId64 ":%" PRId64 ":uu", (int)h->parts[p],
                     len, st.v[first + i]);
            uukeys[k] = sp_xstrdup(buf);
        }
    struct kpi_read kr = {w, nk};
    int rc = sp_reader_hgetall(h->reader, nk, (const char *const *)keys, add_fields, &kr);
    if (rc == SP_OK && global)
        rc = sp_reader_pfcount_each(h->reader, nk, (const char *const *)uukeys, uu);
    /* Unique users over the whole range: per partition one PFCOUNT of its
     * windows' keys (one slot), summed. */
    long long uu_total = 0;
    for (size_t p = 0; p < h->nparts && rc == SP_OK && global && nw; p++) {
        long long n = 0;
        rc = sp_reader_pfcount(h->reader, nw, (const char *const *)&uukeys[p * nw], &n);
        uu_total += n;
    }
    cJSON *out = NULL;
    if (rc == SP_OK) {
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "window_ms", (double)len);
        cJSON_AddStringToObject(out, "dim", dim);
        cJSON_AddNumberToObject(out, "partitions", (double)h->nparts);
        cJSON *arr = cJSON_AddArrayToObject(out, "windows");
        double total[NCOUNTERS] = {0};
        for (size_t i = 0; i < nw; i++) {
            double c[NCOUNTERS] = {0};
            long long u = 0;
            int present = 0;
            for (size_t p = 0; p < h->nparts; p++) {
                for (int j = 0; j < NCOUNTERS; j++) c[j] += w[p * nw + i].c[j];
                u += uu[p * nw + i];
                present |= w[p * nw + i].present;
            }
            if (!present) continue; /* no data of this dimension in the window */
            for (int j = 0; j < NCOUNTERS; j++) total[j] += c[j];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "start", (double)st.v[first + i]);
            cJSON_AddNumberToObject(o, "end", (double)(st.v[first + i] + len));
            counters_json(o, c, global, u);
            cJSON_AddItemToArray(arr, o);
        }
        cJSON *t = cJSON_AddObjectToObject(out, "total");
        counters_json(t, total, global, uu_total);
    }
    for (size_t k = 0; k < nk; k++) {
        free(keys[k]);
        free(uukeys[k]);
    }
    free(keys);
    free(uukeys);
    free(uu);
    free(w);
    free(st.v);
    return out;
}

/* All-time counters summed over partitions ({p<n>}:kpi:total) into c. */
static int read_totals(sp_http *h, double *c) {
    memset(c, 0, NCOUNTERS * sizeof *c);
    if (refresh_parts(h) != SP_OK) return SP_ERR_RETRY;
    char **keys = sp_xcalloc(h->nparts ? h->nparts : 1, sizeof *keys);
    for (size_t p = 0; p < h->nparts; p++) {
        char buf[64];
        snprintf(buf, sizeof buf, "{p%d}:kpi:total", (int)h->parts[p]);
        keys[p] = sp_xstrdup(buf);
    }
    struct window *w = sp_xcalloc(h->nparts ? h->nparts : 1, sizeof *w);
    struct kpi_read kr = {w, h->nparts};
    int rc = sp_reader_hgetall(h->reader, h->nparts, (const char *const *)keys, add_fields, &kr);
    for (size_t p = 0; p < h->nparts; p++) {
        for (int j = 0; j < NCOUNTERS; j++) c[j] += w[p].c[j];
        free(keys[p]);
    }
    free(keys);
    free(w);
    return rc;
}

struct wm_read {
    int64_t min;
    int any;
};

static void wm_field(void *ctx, size_t i, const char *field, const char *value) {
    (void)i;
    struct wm_read *r = ctx;
    if (strcmp(field, "emitted")) return;
    int64_t v = strtoll(value, NULL, 10);
    if (!r->any || v < r->min) r->min = v;
    r->any = 1;
}

/* The start of the latest window every partition has emitted, or -1. */
static int64_t last_complete_window(sp_http *h, int64_t len) {
    if (refresh_parts(h) != SP_OK || !h->nparts) return -1;
    char **keys = sp_xcalloc(h->nparts, sizeof *keys);
    for (size_t p = 0; p < h->nparts; p++) {
        char buf[64];
        snprintf(buf, sizeof buf, "{p%d}:kpi:wm", (int)h->parts[p]);
        keys[p] = sp_xstrdup(buf);
    }
    /* A partition with no "emitted" yet makes the answer "none". */
    struct wm_read r = {0, 0};
    size_t seen = 0;
    for (size_t p = 0; p < h->nparts; p++) {
        struct wm_read one = {0, 0};
        if (sp_reader_hgetall(h->reader, 1, (const char *const *)&keys[p], wm_field, &one) ==
                SP_OK &&
            one.any) {
            seen++;
            if (!r.any || one.min < r.min) r.min = one.min;
            r.any = 1;
        }
        free(keys[p]);
    }
    free(keys);
    if (!r.any || seen < h->nparts) return -1;
    int64_t end = r.min - (r.min % len + len) % len; /* floor to len */
    return end - len;
}

/* ----------------------------------------------------------------- routes */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type,
                                 const void *body, size_t len, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    size_t n = strlen(s);
    char *copy = sp_xmalloc(n + 1); /* MHD frees with free(); cJSON may use another allocator */
    memcpy(copy, s, n + 1);
    cJSON_free(s);
    return send_body(c, status, "application/json", copy, n, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    return send_json(c, status, j);
}

static const char *arg(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static int64_t arg_i64(struct MHD_Connection *c, const char *name, int64_t def) {
    const char *v = arg(c, name);
    if (!v || !*v) return def;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end ? def : x;
}

static enum MHD_Result route_kpi(sp_http *h, struct MHD_Connection *c) {
    const char *dim = arg(c, "dim"), *res = arg(c, "res");
    int64_t len = h->conf.window_ms;
    if (res && !strcmp(res, "rollup") && h->conf.rollup_ms) len = h->conf.rollup_ms;
    else if (res && strcmp(res, "window")) len = arg_i64(c, "res", len);
    if (len <= 0) return send_error(c, 400, "res must be window, rollup or a window length in ms");
    if (!dim || !*dim) dim = "global";
    if (strchr(dim, '*') || strchr(dim, '?') || strchr(dim, '[') || strlen(dim) > 200)
        return send_error(c, 400, "bad dim");
    int64_t from = arg_i64(c, "from", 0), to = arg_i64(c, "to", INT64_MAX);
    int64_t limit = arg_i64(c, "limit", 2000);
    if (limit <= 0 || limit > 100000) limit = 2000;
    cJSON *j = read_kpi(h, len, from, to, dim, (size_t)limit);
    if (!j) return send_error(c, 503, "redis unreachable");
    return send_json(c, 200, j);
}

static enum MHD_Result route_totals(sp_http *h, struct MHD_Connection *c) {
    double t[NCOUNTERS];
    if (read_totals(h, t) != SP_OK) return send_error(c, 503, "redis unreachable");
    cJSON *j = cJSON_CreateObject();
    counters_json(j, t, 0, 0);
    cJSON_AddNumberToObject(j, "partitions", (double)h->nparts);
    return send_json(c, 200, j);
}

struct hash_json {
    cJSON *o;
};

static void hash_field(void *ctx, size_t i, const char *field, const char *value) {
    (void)i;
    cJSON *o = ctx;
    char *end;
    double d = strtod(value, &end);
    if (*value && !*end)
        cJSON_AddNumberToObject(o, field, d);
    else
        cJSON_AddStringToObject(o, field, value);
}

struct found {
    char key[512];
    int n;
};

static void found_key(void *ctx, const char *key) {
    struct found *f = ctx;
    if (!f->n++) snprintf(f->key, sizeof f->key, "%s", key);
}

/* A user's state. The owning partition is not known here (another instance
 * may own it), so the user's hash is found by SCAN {p*}:u:<id>: O(keys),
 * fine for an operator's lookup, not for a web tier's hot path. */
static enum MHD_Result route_user(sp_http *h, struct MHD_Connection *c, const char *id) {
    if (!*id || strlen(id) > 128) return send_error(c, 400, "bad user id");
    char pat[400];
    size_t n = (size_t)snprintf(pat, sizeof pat, "{p*}:u:");
    for (const char *s = id; *s && n + 3 < sizeof pat; s++) {
        if (strchr("*?[]\\", *s)) pat[n++] = '\\';
        pat[n++] = *s;
    }
    pat[n] = '\0';
    struct found f = {"", 0};
    if (sp_reader_scan(h->reader, pat, found_key, &f) != SP_OK)
        return send_error(c, 503, "redis unreachable");
    if (!f.n) return send_error(c, 404, "no such user");
    cJSON *j = cJSON_CreateObject(), *st = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "user_id", id);
    int part = -1;
    sscanf(f.key, "{p%d}", &part);
    cJSON_AddNumberToObject(j, "partition", part);
    cJSON_AddStringToObject(j, "key", f.key);
    const char *keys[] = {f.key};
    if (sp_reader_hgetall(h->reader, 1, keys, hash_field, st) != SP_OK) {
        cJSON_Delete(st);
        cJSON_Delete(j);
        return send_error(c, 503, "redis unreachable");
    }
    cJSON_AddItemToObject(j, "state", st);
    return send_json(c, 200, j);
}

static enum MHD_Result route_item(sp_http *h, struct MHD_Connection *c, const char *id) {
    if (!*id || strlen(id) > 128) return send_error(c, 400, "bad item id");
    char key[200];
    snprintf(key, sizeof key, "item:%s", id);
    cJSON *st = cJSON_CreateObject();
    const char *keys[] = {key};
    if (sp_reader_hgetall(h->reader, 1, keys, hash_field, st) != SP_OK) {
        cJSON_Delete(st);
        return send_error(c, 503, "redis unreachable");
    }
    if (!cJSON_GetArraySize(st)) {
        cJSON_Delete(st);
        return send_error(c, 404, "no reviews for this item");
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "item_id", id);
    cJSON *cnt = cJSON_GetObjectItem(st, "count"), *sum = cJSON_GetObjectItem(st, "rating_sum");
    cJSON *sent = cJSON_GetObjectItem(st, "sentiment_sum");
    double n = cJSON_IsNumber(cnt) ? cnt->valuedouble : 0;
    cJSON_AddNumberToObject(j, "reviews", n);
    cJSON_AddNumberToObject(j, "rating_avg", n > 0 && cJSON_IsNumber(sum) ? sum->valuedouble / n : 0);
    cJSON_AddNumberToObject(j, "sentiment_sum", cJSON_IsNumber(sent) ? sent->valuedouble : 0);
    cJSON_AddNumberToObject(j, "sentiment_avg",
                            n > 0 && cJSON_IsNumber(sent) ? sent->valuedouble / n : 0);
    cJSON_AddItemToObject(j, "state", st);
    return send_json(c, 200, j);
}

static void alert_item(void *ctx, const char *value, size_t len) {
    cJSON *arr = ctx;
    cJSON *a = cJSON_ParseWithLength(value, len);
    if (a) cJSON_AddItemToArray(arr, a);
}

/* The latest fraud alerts: the fraud operator keeps them (as JSON) in the
 * Redis list alerts:recent, newest first; empty until it runs. */
static enum MHD_Result route_alerts(sp_http *h, struct MHD_Connection *c) {
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(j, "alerts");
    if (sp_reader_lrange(h->reader, "alerts:recent", 0, 19, alert_item, arr) != SP_OK) {
        cJSON_Delete(j);
        return send_error(c, 503, "redis unreachable");
    }
    return send_json(c, 200, j);
}

static enum MHD_Result route_healthz(sp_http *h, struct MHD_Connection *c) {
    char rerr[256] = "", kerr[256] = "";
    int redis_ok = sp_reader_ping(h->reader, rerr, sizeof rerr) == SP_OK;
    int kafka_ok = 1;
    if (h->conf.rk) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(h->conf.rk, 0, NULL, &md, 1000);
        if (e) {
            kafka_ok = 0;
            snprintf(kerr, sizeof kerr, "%s", rd_kafka_err2str(e));
        } else {
            if (md->broker_cnt == 0) {
                kafka_ok = 0;
                snprintf(kerr, sizeof kerr, "no brokers");
            }
            rd_kafka_metadata_destroy(md);
        }
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", redis_ok && kafka_ok ? "ok" : "unavailable");
    cJSON *un = cJSON_AddArrayToObject(j, "unreachable");
    if (!redis_ok) cJSON_AddItemToArray(un, cJSON_CreateString("redis"));
    if (!kafka_ok) cJSON_AddItemToArray(un, cJSON_CreateString("kafka"));
    cJSON_AddStringToObject(j, "redis", redis_ok ? "ok" : rerr);
    cJSON_AddStringToObject(j, "kafka", !h->conf.rk ? "not checked" : kafka_ok ? "ok" : kerr);
    return send_json(c, redis_ok && kafka_ok ? 200 : 503, j);
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v) {
    bprintf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
            (unsigned long long)v);
}

static void counter_s(struct buf *b, const char *name, const char *help, double seconds) {
    bprintf(b, "# HELP %s %s\n# TYPE %s counter\n%s %.6f\n", name, help, name, name, seconds);
}

/* A Prometheus histogram (seconds) from an sp_hist (microseconds): one
 * bucket per doubling, cumulative, plus +Inf. */
static void histogram(struct buf *b, const char *name, const char *help, const sp_hist *hist) {
    bprintf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SP_HIST_BUCKETS; i++) {
        cum += hist->buckets[i];
        if (i % 4 == 0 && i < SP_HIST_BUCKETS - 1)
            bprintf(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double)(1u << (i / 4)) / 1e6,
                    (unsigned long long)cum);
    }
    bprintf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
            (unsigned long long)hist->count, name, hist->sum / 1e6, name,
            (unsigned long long)hist->count);
}

static void kpi_gauges(struct buf *b, const char *name, const char *help, const double *c,
                       int with_uu, long long uu) {
    bprintf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    for (int i = 0; i < NCOUNTERS; i++)
        bprintf(b, "%s{metric=\"%s\"} %.17g\n", name, sp_kpi_counters[i], c[i]);
    const char *dn[8];
    double dv[8];
    int nd = sp_kpi_derive(c, dn, dv);
    for (int i = 0; i < nd; i++) bprintf(b, "%s{metric=\"%s\"} %.17g\n", name, dn[i], dv[i]);
    if (with_uu) bprintf(b, "%s{metric=\"unique_users\"} %lld\n", name, uu);
}

static enum MHD_Result route_metrics(sp_http *h, struct MHD_Connection *c) {
    struct buf b = {0};
    const sp_metrics *m = h->conf.metrics;
    if (m) {
        bprintf(&b, "# HELP shopstream_events_total Events processed, by kind.\n"
                    "# TYPE shopstream_events_total counter\n");
        for (int k = 0; k < SP_KIND__COUNT; k++)
            bprintf(&b, "shopstream_events_total{kind=\"%s\"} %llu\n",
                    sp_event_kind_name((enum sp_event_kind)k), (unsigned long long)m->events[k]);
        counter(&b, "shopstream_messages_total", "Messages consumed from Kafka.", m->messages);
        counter(&b, "shopstream_deadletter_total", "Messages sent to the dead-letter topic.",
                m->deadletter);
        counter(&b, "shopstream_duplicates_total", "Events dropped as duplicates.", m->duplicates);
        counter(&b, "shopstream_batches_total", "Batches committed.", m->batches);
        counter(&b, "shopstream_commits_total", "Partition commits.", m->commits);
        counter(&b, "shopstream_fenced_total", "Commits refused: partition owned elsewhere.",
                m->fenced);
        counter(&b, "shopstream_produced_total", "Messages delivered to Kafka.", m->produced);
        counter(&b, "shopstream_produce_failed_total", "Deliveries failed for good.",
                m->produce_failed);
        counter(&b, "shopstream_kpi_windows_total", "KpiWindow messages emitted.", m->kpi_windows);
        counter(&b, "shopstream_kpi_corrections_total", "KpiWindow corrections emitted.",
                m->kpi_corrections);
        counter(&b, "shopstream_kpi_late_applied_total", "Late events applied.", m->kpi_late);
        counter(&b, "shopstream_kpi_late_dropped_total", "Late events dropped.",
                m->kpi_late_dropped);
        bprintf(&b, "# HELP shopstream_consumer_lag Messages behind the end of the assigned "
                    "partitions.\n# TYPE shopstream_consumer_lag gauge\nshopstream_consumer_lag "
                    "%lld\n",
                (long long)m->lag);
        /* CPU: the process's as every Prometheus client library names it,
         * and apart the operator thread's (the processing core; the rest
         * is librdkafka's threads and the Redis committers) */
        struct timespec ts;
        if (m->has_thread_clock && clock_gettime(m->thread_clock, &ts) == 0)
            counter_s(&b, "shopstream_worker_cpu_seconds_total",
                      "CPU time of the thread that runs this instance's operators.",
                      (double)ts.tv_sec + ts.tv_nsec / 1e9);
        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
            counter_s(&b, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                      (double)ts.tv_sec + ts.tv_nsec / 1e9);
        histogram(&b, "shopstream_commit_latency_seconds", "Redis commit latency per partition.",
                  &m->commit_latency);
        histogram(&b, "shopstream_batch_latency_seconds", "Latency of a whole batch.",
                  &m->batch_latency);
    }
    double t[NCOUNTERS];
    int redis_ok = read_totals(h, t) == SP_OK;
    bprintf(&b, "# HELP shopstream_redis_up Whether the KPI reads reached Redis.\n"
                "# TYPE shopstream_redis_up gauge\nshopstream_redis_up %d\n",
            redis_ok);
    if (redis_ok) {
        kpi_gauges(&b, "shopstream_kpi_alltime",
                   "All-time KPIs summed over partitions (counters and derived).", t, 0, 0);
        int64_t len = h->conf.window_ms, start = last_complete_window(h, len);
        if (start >= 0) {
            cJSON *j = read_kpi(h, len, start, start + 1, "global", 1);
            cJSON *arr = j ? cJSON_GetObjectItem(j, "windows") : NULL;
            cJSON *w = arr ? cJSON_GetArrayItem(arr, 0) : NULL;
            if (w) {
                double c[NCOUNTERS];
                for (int i = 0; i < NCOUNTERS; i++)
                    c[i] = cJSON_GetObjectItem(w, sp_kpi_counters[i])->valuedouble;
                long long uu = (long long)cJSON_GetObjectItem(w, "unique_users")->valuedouble;
                kpi_gauges(&b, "shopstream_kpi_last_window",
                           "KPIs of the latest window complete in every partition.", c, 1, uu);
                bprintf(&b,
                        "# HELP shopstream_kpi_last_window_start_seconds Start of that window "
                        "(event time).\n# TYPE shopstream_kpi_last_window_start_seconds gauge\n"
                        "shopstream_kpi_last_window_start_seconds %.3f\n",
                        (double)start / 1000.0);
            }
            cJSON_Delete(j);
        }
    }
    return send_body(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.n,
                     MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    sp_http *h = cls;
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_error(c, 405, "only GET");
    if (!strcmp(url, "/metrics")) return route_metrics(h, c);
    if (!strcmp(url, "/healthz")) return route_healthz(h, c);
    if (!strcmp(url, "/api/kpi")) return route_kpi(h, c);
    if (!strcmp(url, "/api/totals")) return route_totals(h, c);
    if (!strcmp(url, "/api/alerts")) return route_alerts(h, c);
    if (!strncmp(url, "/api/user/", 10)) return route_user(h, c, url + 10);
    if (!strncmp(url, "/api/item/", 10)) return route_item(h, c, url + 10);
    if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
        return send_body(c, 200, "text/html; charset=utf-8", sp_asset_dashboard_html,
                         sp_asset_dashboard_html_len, MHD_RESPMEM_PERSISTENT);
    if (!strcmp(url, "/assets/chart.umd.js"))
        return send_body(c, 200, "application/javascript", sp_asset_chart_js,
                         sp_asset_chart_js_len, MHD_RESPMEM_PERSISTENT);
    return send_error(c, 404, "not found");
}

static int parse_listen(const char *listen, struct sockaddr_in *sa, char *err, size_t errlen) {
    const char *colon = strrchr(listen, ':');
    char host[64];
    if (!colon || (size_t)(colon - listen) >= sizeof host) {
        snprintf(err, errlen, "key 'http.listen': '%s' is not host:port", listen);
        return SP_ERR_FATAL;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (*end || port < 0 || port > 65535 ||
        inet_pton(AF_INET, !strcmp(host, "localhost") ? "127.0.0.1" : host, &sa->sin_addr) != 1) {
        snprintf(err, errlen, "key 'http.listen': '%s' is not IPv4-host:port", listen);
        return SP_ERR_FATAL;
    }
    return SP_OK;
}

sp_http *sp_http_start(const sp_http_conf *conf, char *err, size_t errlen) {
    struct sockaddr_in sa;
    if (parse_listen(conf->listen, &sa, err, errlen) != SP_OK) return NULL;
    sp_http *h = sp_xcalloc(1, sizeof *h);
    h->conf = *conf;
    if (!(h->reader = sp_reader_new_conf(conf->redis_url, conf->redis_cluster, conf->redis_user,
                                         conf->redis_password, conf->redis_timeout_ms, err,
                                         errlen)))
        goto fail;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                            ntohs(sa.sin_port), NULL, NULL, handler, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)10, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "http: cannot listen on %s (address in use?)", conf->listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : ntohs(sa.sin_port);
    return h;
fail:
    sp_http_stop(h);
    return NULL;
}

int sp_http_port(const sp_http *h) { return h->port; }

void sp_http_stop(sp_http *h) {
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d);
    sp_reader_destroy(h->reader);
    free(h);
}
