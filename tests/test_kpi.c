/* The kpi and reviews operators and the HTTP server, end to end against a
 * real redis-server and the mock Kafka cluster:
 *  - KPI windows read back through /api/kpi equal counts computed here,
 *    directly from the generated file (unique users within HyperLogLog's
 *    error), and so do /api/totals, /metrics, /api/item;
 *  - a real Prometheus scrapes /metrics and its query API returns them;
 *  - headless Chromium draws the dashboard with the same totals;
 *  - hand-made out-of-order and late events, sessions and bounces, under
 *    both late policies, with the correction emitted to shop.kpi;
 *  - kill -9 at random points ends in the same KPI state as a clean run. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "operators/kpi.h"
#include "proto/shopstream.pb-c.h"
#include "tests/support/harness.h"

#define PARTITIONS 4
#define NEVENTS 6000
#define WINDOW 60000LL
#define ROLLUP 3600000LL
#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */

static const char *const topics[] = {"shop.clicks", "shop.orders", "shop.reviews"};

struct world {
    sp_t_mock mock;
    sp_t_redis redis;
    sp_t_redis reference;
    char dir[256];
    char data[300], truth[300];
    int64_t per_topic[3];
    int http_port;
};

static struct world w;

static void setup(void) {
    memset(&w, 0, sizeof w);
    snprintf(w.dir, sizeof w.dir, "%s", sp_t_tmpdir());
    cr_assert_eq(sp_t_mock_start(&w.mock, PARTITIONS), 0, "mock kafka did not start");
    cr_assert_eq(sp_t_redis_start(&w.redis, 0), 0, "redis-server did not start");
    cr_assert_eq(sp_t_redis_start(&w.reference, 0), 0, "redis-server did not start");
}

static void teardown(void) {
    sp_t_mock_stop(&w.mock);
    sp_t_redis_stop(&w.redis);
    sp_t_redis_stop(&w.reference);
}

/* ------------------------------------------------------------- helpers */

static void count_topics(void) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", w.mock.bootstrap, err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    for (int t = 0; t < 3; t++) {
        w.per_topic[t] = 0;
        for (int p = 0; p < PARTITIONS; p++) {
            int64_t lo, hi;
            cr_assert_eq(rd_kafka_query_watermark_offsets(rk, topics[t], p, &lo, &hi, 5000), 0);
            w.per_topic[t] += hi;
        }
    }
    rd_kafka_destroy(rk);
}

static void replay(const char *file) {
    char log[300];
    snprintf(log, sizeof log, "%s/replay.log", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "replay", (char *)file, "--brokers", w.mock.bootstrap,
                    "--rate", "0", "--quiet", NULL};
    cr_assert_eq(sp_t_wait(sp_t_spawn(argv, log), 60000), 0, "replay failed");
    count_topics();
}

static void gen_file(int events) {
    char n[16];
    snprintf(n, sizeof n, "%d", events);
    snprintf(w.data, sizeof w.data, "%s/events.jsonl", w.dir);
    snprintf(w.truth, sizeof w.truth, "%s/truth.json", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "gen", "--events", n, "--users", "300", "--seed", "11",
                    "--format", "jsonl", "--malformed-rate", "0.01", "--duplicate-rate", "0.01",
                    "--out", w.data, "--truth", w.truth, NULL};
    int st;
    free(sp_t_capture(argv, &st));
    cr_assert_eq(st, 0, "gen failed");
}

/* Starts a processor with the kpi and reviews operators. http: serve on
 * w.http_port; idle_ms > 0: exit when everything is consumed. extra: one
 * more --key=value (or NULL). */
static pid_t processor(const char *url, const char *group, int idle_ms, int http,
                       const char *extra, const char *name) {
    char idle[16], log[300], listen[64];
    snprintf(idle, sizeof idle, "%d", idle_ms);
    snprintf(log, sizeof log, "%s/%s.log", w.dir, name);
    if (http)
        snprintf(listen, sizeof listen, "127.0.0.1:%d", w.http_port);
    else
        snprintf(listen, sizeof listen, "0");
    char *argv[] = {(char *)sp_t_bin(), "run", "--brokers", w.mock.bootstrap, "--redis.url",
                    (char *)url, "--group.id", (char *)group, "--run.stop_when_idle_ms", idle,
                    "--operators", "dedupe,counts,kpi,reviews", "--http.listen", listen,
                    "--kpi.allowed_lateness_ms", "5000", "--batch.max_messages", "300",
                    "--batch.max_ms", "50", "-X", "session.timeout.ms=6000", "-X",
                    "heartbeat.interval.ms=500", extra ? (char *)extra : NULL, NULL};
    return sp_t_spawn(argv, log);
}

static int64_t committed_total(const char *url) {
    int64_t n = 0;
    for (int t = 0; t < 3; t++) n += sp_t_committed(url, topics[t]);
    return n;
}

static void wait_all_committed(const char *url) {
    cr_assert_eq(sp_t_wait_committed(url, topics, w.per_topic, 3, 120000), 0,
                 "not everything was committed: %lld of %lld", (long long)committed_total(url),
                 (long long)(w.per_topic[0] + w.per_topic[1] + w.per_topic[2]));
}

/* A plain HTTP/1.0 GET on 127.0.0.1; returns the body (malloc'd) and the
 * status, or NULL when nothing answers. */
static char *http_get(int port, const char *path, int *status) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return NULL;
    }
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (cap - len < 4096) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[len] = '\0';
    int st = 0;
    sscanf(buf, "HTTP/%*s %d", &st);
    if (status) *status = st;
    char *body = strstr(buf, "\r\n\r\n");
    char *out = strdup(body ? body + 4 : "");
    free(buf);
    return out;
}

static cJSON *get_json(const char *path, int want_status) {
    int st = 0;
    char *body = http_get(w.http_port, path, &st);
    cr_assert_not_null(body, "GET %s: no answer", path);
    cr_assert_eq(st, want_status, "GET %s: status %d, body %.200s", path, st, body);
    cJSON *j = cJSON_Parse(body);
    cr_assert_not_null(j, "GET %s: not JSON: %.200s", path, body);
    free(body);
    return j;
}

static void wait_http(void) {
    for (int i = 0; i < 400; i++) {
        int st = 0;
        char *b = http_get(w.http_port, "/healthz", &st);
        free(b);
        if (b && st == 200) return;
        sp_t_sleep_ms(25);
    }
    cr_assert_fail("HTTP server never answered on port %d", w.http_port);
}

static double num(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItem(o, name);
    cr_assert(cJSON_IsNumber(v), "no number '%s'", name);
    return v->valuedouble;
}

/* -------------------------------------------------- the oracle, from the file */

enum { O_VIEWS, O_CLICKS, O_CARTS, O_REMOVES, O_SEARCHES, O_REC_CLICKS, O_ORDERS, O_UNITS,
       O_GMV, O_SESSIONS, O_BOUNCES, O_BUYERS, O_REPEAT, O_REVIEWS, O_RATING, O__N };
static const char *const oname[] = {"views",    "clicks",   "add_to_carts", "remove_from_carts",
                                    "searches", "rec_clicks", "orders",     "units",
                                    "gmv_cents", "sessions", "bounces",     "buyers",
                                    "repeat_buyers", "reviews", "rating_sum"};

struct owin {
    int64_t start;
    char dim[40];
    long long c[O__N];
};

struct ouser {
    char id[32];
    int64_t last_click, sess_start, last_order;
    int sess_clicks, bounce, orders;
};

struct upair {
    int64_t start;
    char user[32];
};

struct oitem {
    char id[32];
    long count, rating_sum;
};

struct oracle {
    struct owin *win;
    size_t nwin;
    struct ouser *users;
    size_t nusers;
    struct upair *uu;
    size_t nuu;
    struct oitem *items;
    size_t nitems;
    char **seen;
    size_t nseen;
    long long total[O__N];
};

static long long *ocounter(struct oracle *o, int64_t start, const char *dim) {
    for (size_t i = 0; i < o->nwin; i++)
        if (o->win[i].start == start && !strcmp(o->win[i].dim, dim)) return o->win[i].c;
    o->win = realloc(o->win, (o->nwin + 1) * sizeof *o->win);
    struct owin *x = &o->win[o->nwin++];
    memset(x, 0, sizeof *x);
    x->start = start;
    snprintf(x->dim, sizeof x->dim, "%s", dim);
    return x->c;
}

static struct ouser *ouser(struct oracle *o, const char *id) {
    for (size_t i = 0; i < o->nusers; i++)
        if (!strcmp(o->users[i].id, id)) return &o->users[i];
    o->users = realloc(o->users, (o->nusers + 1) * sizeof *o->users);
    struct ouser *u = &o->users[o->nusers++];
    memset(u, 0, sizeof *u);
    snprintf(u->id, sizeof u->id, "%s", id);
    u->last_click = u->last_order = -1;
    return u;
}

/* Adds to counter c of the minute window of ts (global and, with cat, the
 * category's) and to the totals. */
static void oadd(struct oracle *o, int64_t ts, const char *cat, int c, long long by) {
    int64_t start = ts / WINDOW * WINDOW;
    ocounter(o, start, "global")[c] += by;
    if (cat) {
        char dim[32];
        snprintf(dim, sizeof dim, "category=%s", cat);
        ocounter(o, start, dim)[c] += by;
    }
    o->total[c] += by;
}

static int oseen(struct oracle *o, const char *id) {
    for (size_t i = 0; i < o->nseen; i++)
        if (!strcmp(o->seen[i], id)) return 1;
    o->seen = realloc(o->seen, (o->nseen + 1) * sizeof *o->seen);
    o->seen[o->nseen++] = strdup(id);
    return 0;
}

/* The KPIs of the generated file, computed from its lines with cJSON: the
 * generator's malformed records skipped, repeated event ids counted once. */
static void oracle_build(struct oracle *o) {
    memset(o, 0, sizeof *o);
    size_t len;
    char *text = sp_t_read_file(w.data, &len);
    char *truth = sp_t_read_file(w.truth, NULL);
    cJSON *tj = cJSON_Parse(truth), *e;
    int *bad = calloc(NEVENTS * 2, sizeof *bad);
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(tj, "malformed_records")) {
        int idx = cJSON_GetObjectItem(e, "index")->valueint;
        if (idx >= 0 && idx < NEVENTS * 2) bad[idx] = 1;
    }
    static const char *kinds[] = {"view", "click", "add_to_cart", "remove_from_cart", "search"};
    size_t idx = 0;
    for (char *line = text, *nl; line < text + len; line = nl + 1, idx++) {
        nl = strchr(line, '\n');
        if (!nl) nl = text + len;
        *nl = '\0';
        if (bad[idx]) continue;
        cJSON *j = cJSON_Parse(line);
        cr_assert_not_null(j);
        const char *id = cJSON_GetObjectItem(j, "event_id")->valuestring;
        if (oseen(o, id)) {
            cJSON_Delete(j);
            continue;
        }
        const char *user = cJSON_GetObjectItem(j, "user_id")->valuestring;
        int64_t ts = (int64_t)cJSON_GetObjectItem(j, "ts_ms")->valuedouble;
        int64_t start = ts / WINDOW * WINDOW;
        o->uu = realloc(o->uu, (o->nuu + 1) * sizeof *o->uu);
        o->uu[o->nuu].start = start;
        snprintf(o->uu[o->nuu++].user, 32, "%s", user);
        cJSON *c = cJSON_GetObjectItem(j, "click"), *ord = cJSON_GetObjectItem(j, "order");
        cJSON *rv = cJSON_GetObjectItem(j, "review");
        struct ouser *u = ouser(o, user);
        if (c) {
            const char *kind = cJSON_GetObjectItem(c, "kind")->valuestring;
            cJSON *cat = cJSON_GetObjectItem(c, "category"), *rec = cJSON_GetObjectItem(c, "rec_id");
            const char *cs = cat ? cat->valuestring : NULL;
            for (int k = 0; k < 5; k++)
                if (!strcmp(kind, kinds[k])) oadd(o, ts, cs, O_VIEWS + k, 1);
            if (rec && *rec->valuestring) oadd(o, ts, cs, O_REC_CLICKS, 1);
            /* sessions: a gap of more than 30 minutes between a user's clicks */
            if (u->last_click < 0 || ts - u->last_click > 1800000) {
                oadd(o, ts, NULL, O_SESSIONS, 1);
                u->sess_start = ts;
                u->sess_clicks = 1;
                u->bounce = !strcmp(kind, "view");
                if (u->bounce) oadd(o, ts, NULL, O_BOUNCES, 1);
            } else if (++u->sess_clicks == 2 && u->bounce) {
                oadd(o, u->sess_start, NULL, O_BOUNCES, -1);
                u->bounce = 0;
            }
            if (ts > u->last_click) u->last_click = ts;
        } else if (ord) {
            cJSON *items = cJSON_GetObjectItem(ord, "items"), *li;
            long long units = 0;
            oadd(o, ts, NULL, O_ORDERS, 1);
            char cats[16][16];
            int ncats = 0;
            cJSON_ArrayForEach(li, items) {
                const char *cat = cJSON_GetObjectItem(li, "category")->valuestring;
                long q = (long)cJSON_GetObjectItem(li, "quantity")->valuedouble;
                double price = cJSON_GetObjectItem(li, "unit_price")->valuedouble;
                units += q;
                int first = 1;
                for (int i = 0; i < ncats; i++)
                    if (!strcmp(cats[i], cat)) first = 0;
                if (first && ncats < 16) snprintf(cats[ncats++], 16, "%s", cat);
                char dim[32];
                snprintf(dim, sizeof dim, "category=%s", cat);
                ocounter(o, start, dim)[O_UNITS] += q;
                ocounter(o, start, dim)[O_GMV] += llround(price * (double)q * 100);
                if (first) ocounter(o, start, dim)[O_ORDERS]++;
            }
            oadd(o, ts, NULL, O_UNITS, units);
            oadd(o, ts, NULL, O_GMV, llround(cJSON_GetObjectItem(ord, "total")->valuedouble * 100));
            if (u->last_order < 0 || u->last_order / WINDOW * WINDOW != start) {
                ocounter(o, start, "global")[O_BUYERS]++;
                if (u->orders > 0) ocounter(o, start, "global")[O_REPEAT]++;
            }
            if (u->orders == 0) o->total[O_BUYERS]++;
            if (u->orders == 1) o->total[O_REPEAT]++;
            u->orders++;
            if (ts > u->last_order) u->last_order = ts;
        } else if (rv) {
            long rating = (long)cJSON_GetObjectItem(rv, "rating")->valuedouble;
            oadd(o, ts, NULL, O_REVIEWS, 1);
            oadd(o, ts, NULL, O_RATING, rating);
            const char *item = cJSON_GetObjectItem(rv, "item_id")->valuestring;
            struct oitem *it = NULL;
            for (size_t i = 0; i < o->nitems; i++)
                if (!strcmp(o->items[i].id, item)) it = &o->items[i];
            if (!it) {
                o->items = realloc(o->items, (o->nitems + 1) * sizeof *o->items);
                it = &o->items[o->nitems++];
                memset(it, 0, sizeof *it);
                snprintf(it->id, sizeof it->id, "%s", item);
            }
            it->count++;
            it->rating_sum += rating;
        }
        cJSON_Delete(j);
    }
    free(bad);
    cJSON_Delete(tj);
    free(truth);
    free(text);
}

static void oracle_free(struct oracle *o) {
    for (size_t i = 0; i < o->nseen; i++) free(o->seen[i]);
    free(o->seen);
    free(o->win);
    free(o->users);
    free(o->uu);
    free(o->items);
}

static int upair_cmp(const void *a, const void *b) {
    const struct upair *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return strcmp(x->user, y->user);
}

/* Distinct users of the window starting at `start` (of length len). */
static long distinct_users(struct oracle *o, int64_t start, int64_t len) {
    long n = 0;
    qsort(o->uu, o->nuu, sizeof *o->uu, upair_cmp);
    const char *prev = NULL;
    char **seen = NULL;
    size_t ns = 0;
    for (size_t i = 0; i < o->nuu; i++) {
        if (o->uu[i].start < start || o->uu[i].start >= start + len) continue;
        int dup = 0;
        if (len == WINDOW) {
            dup = prev && !strcmp(prev, o->uu[i].user);
            prev = o->uu[i].user;
        } else {
            for (size_t k = 0; k < ns && !dup; k++) dup = !strcmp(seen[k], o->uu[i].user);
            if (!dup) {
                seen = realloc(seen, (ns + 1) * sizeof *seen);
                seen[ns++] = o->uu[i].user;
            }
        }
        if (!dup) n++;
    }
    free(seen);
    return n;
}

static void assert_uu(double got, long want, const char *what) {
    double tol = fmax(1.0, 0.03 * (double)want);
    cr_assert(fabs(got - (double)want) <= tol, "%s: unique users %g, exactly %ld", what, got, want);
}

/* Every window of dimension dim that the oracle has equals /api/kpi's, and
 * /api/kpi has no other. */
static void assert_windows(struct oracle *o, const char *dim, int check_uu) {
    char path[200];
    snprintf(path, sizeof path, "/api/kpi?limit=100000&dim=%s", dim);
    cJSON *j = get_json(path, 200), *win;
    cJSON *arr = cJSON_GetObjectItem(j, "windows");
    size_t want = 0, got = 0;
    for (size_t i = 0; i < o->nwin; i++) want += !strcmp(o->win[i].dim, dim);
    cJSON_ArrayForEach(win, arr) {
        got++;
        int64_t start = (int64_t)num(win, "start");
        long long *c = NULL;
        for (size_t i = 0; i < o->nwin; i++)
            if (o->win[i].start == start && !strcmp(o->win[i].dim, dim)) c = o->win[i].c;
        cr_assert_not_null(c, "%s: window %lld in Redis, not in the file", dim, (long long)start);
        for (int k = 0; k < O__N; k++) {
            if (strcmp(dim, "global") && k >= O_SESSIONS && k != O_REVIEWS && k != O_RATING)
                continue; /* sessions, bounces, buyers are global only */
            cr_assert_eq((long long)num(win, oname[k]), c[k], "%s window %lld %s: API %lld, file %lld",
                         dim, (long long)start, oname[k], (long long)num(win, oname[k]), c[k]);
        }
        cr_assert_eq(num(win, "late"), 0);
        if (check_uu) assert_uu(num(win, "unique_users"), distinct_users(o, start, WINDOW), dim);
    }
    cr_assert_eq(got, want, "%s: %zu windows in Redis, %zu in the file", dim, got, want);
    cJSON_Delete(j);
}

/* ----------------------------------------------------------------- tests */

Test(kpi, derived_metrics_from_counters) {
    double c[SP_KPI_NCOUNTERS] = {0};
    c[sp_kpi_counter_index("views")] = 200;
    c[sp_kpi_counter_index("clicks")] = 50;
    c[sp_kpi_counter_index("rec_clicks")] = 5;
    c[sp_kpi_counter_index("rec_impressions")] = 100;
    c[sp_kpi_counter_index("orders")] = 4;
    c[sp_kpi_counter_index("gmv_cents")] = 10000;
    c[sp_kpi_counter_index("sessions")] = 40;
    c[sp_kpi_counter_index("bounces")] = 10;
    c[sp_kpi_counter_index("buyers")] = 4;
    c[sp_kpi_counter_index("repeat_buyers")] = 1;
    const char *n[8];
    double v[8];
    int k = sp_kpi_derive(c, n, v);
    struct {
        const char *name;
        double want;
    } cases[] = {{"conversion_rate", 0.1}, {"ctr", 0.25}, {"rec_ctr", 0.05},
                 {"bounce_rate", 0.25},    {"aov", 25.0}, {"repeat_buyer_rate", 0.25},
                 {"gmv", 100.0},           {"avg_rating", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int found = 0;
        for (int j = 0; j < k; j++)
            if (!strcmp(n[j], cases[i].name)) {
                found = 1;
                cr_assert_float_eq(v[j], cases[i].want, 1e-9, "%s", cases[i].name);
            }
        cr_assert(found, "no derived metric %s", cases[i].name);
    }
    double zero[SP_KPI_NCOUNTERS] = {0};
    k = sp_kpi_derive(zero, n, v);
    for (int j = 0; j < k; j++) cr_assert_eq(v[j], 0.0, "%s of nothing is not 0", n[j]);
    cr_assert_eq(sp_kpi_counter_index("no_such"), -1);
}

/* Checks the running processor's /metrics with promtool, then lets a real
 * Prometheus scrape it and asks its query API for the all-time orders. */
static void check_prometheus(long long want_orders, long long want_views) {
    int st;
    char *text = http_get(w.http_port, "/metrics", &st);
    cr_assert_eq(st, 200);
    char path[300];
    snprintf(path, sizeof path, "%s/metrics.txt", w.dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s > %s/promtool.out 2>&1", path, w.dir);
    cr_assert_eq(system(cmd), 0, "promtool check metrics failed (see %s/promtool.out)", w.dir);
    char want[128];
    snprintf(want, sizeof want, "shopstream_kpi_alltime{metric=\"orders\"} %lld\n", want_orders);
    cr_assert(strstr(text, want), "/metrics lacks '%s'", want);
    cr_assert(strstr(text, "shopstream_commit_latency_seconds_bucket{le=\"+Inf\"}"));
    cr_assert(strstr(text, "shopstream_consumer_lag "));
    free(text);

    int pport = sp_t_free_port();
    snprintf(path, sizeof path, "%s/prometheus.yml", w.dir);
    f = fopen(path, "w");
    fprintf(f, "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: shopstream\n"
               "    static_configs:\n      - targets: ['127.0.0.1:%d']\n", w.http_port);
    fclose(f);
    char cfg[320], data[320], listen[64], log[320];
    snprintf(cfg, sizeof cfg, "--config.file=%s", path);
    snprintf(data, sizeof data, "--storage.tsdb.path=%s/prom", w.dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", pport);
    snprintf(log, sizeof log, "%s/prometheus.log", w.dir);
    char *argv[] = {"prometheus", cfg, data, listen, NULL};
    pid_t pid = sp_t_spawn(argv, log);
    const char *queries[] = {"/api/v1/query?query=shopstream_kpi_alltime%7Bmetric%3D%22orders%22%7D",
                             "/api/v1/query?query=shopstream_kpi_alltime%7Bmetric%3D%22views%22%7D"};
    long long wants[] = {want_orders, want_views};
    for (int q = 0; q < 2; q++) {
        double got = -1;
        for (int i = 0; i < 300 && got != (double)wants[q]; i++) {
            sp_t_sleep_ms(100);
            char *body = http_get(pport, queries[q], &st);
            cJSON *j = body ? cJSON_Parse(body) : NULL;
            cJSON *res = j ? cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "result") : NULL;
            cJSON *first = res ? cJSON_GetArrayItem(res, 0) : NULL;
            cJSON *val = first ? cJSON_GetArrayItem(cJSON_GetObjectItem(first, "value"), 1) : NULL;
            if (cJSON_IsString(val)) got = atof(val->valuestring);
            cJSON_Delete(j);
            free(body);
        }
        cr_assert_eq(got, (double)wants[q], "Prometheus query %s: %g, want %lld", queries[q], got,
                     wants[q]);
    }
    kill(pid, SIGTERM);
    sp_t_wait(pid, 20000);
}

/* Loads the dashboard in headless Chromium: the DOM after its scripts ran
 * has the charts' data and the expected totals; a screenshot is kept. */
static void check_dashboard(long long want_orders, long long want_views) {
    char url[64], out[320], shot[320];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", w.http_port);
    snprintf(out, sizeof out, "%s/dom.html", w.dir);
    char cmd[1200];
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-background-networking "
                        "--disable-dev-shm-usage --no-first-run --virtual-time-budget=6000";
    snprintf(cmd, sizeof cmd, "chromium %s --dump-dom %s > %s 2>%s/chromium.log", flags, url, out,
             w.dir);
    cr_assert_eq(system(cmd), 0, "chromium --dump-dom failed (see %s/chromium.log)", w.dir);
    char *dom = sp_t_read_file(out, NULL);
    cr_assert_not_null(dom);
    cr_assert(strstr(dom, "data-loaded=\"1\""), "the dashboard never loaded its data");
    static const char *charts[] = {"c-orders", "c-gmv", "c-conversion_rate", "c-ctr",
                                   "c-bounce_rate"};
    for (size_t i = 0; i < 5; i++) {
        char *c = strstr(dom, charts[i]);
        cr_assert_not_null(c, "no chart %s", charts[i]);
        char *pts = strstr(c, "data-points=\"");
        cr_assert(pts && atoi(pts + 13) > 0, "chart %s was not drawn", charts[i]);
    }
    char want[96];
    snprintf(want, sizeof want, "id=\"t-orders\">%lld<", want_orders);
    cr_assert(strstr(dom, want), "dashboard does not show %lld orders", want_orders);
    snprintf(want, sizeof want, "id=\"t-views\">%lld<", want_views);
    cr_assert(strstr(dom, want), "dashboard does not show %lld views", want_views);
    free(dom);
    snprintf(shot, sizeof shot, "%s/dashboard.png", w.dir);
    snprintf(cmd, sizeof cmd, "chromium %s --window-size=1400,900 --screenshot=%s %s 2>>%s/chromium.log",
             flags, shot, url, w.dir);
    cr_assert_eq(system(cmd), 0, "chromium --screenshot failed");
    struct stat sb;
    cr_assert(stat(shot, &sb) == 0 && sb.st_size > 10000, "no screenshot");
    cr_log_info("dashboard screenshot: %s", shot);
}

Test(kpi, windows_http_prometheus_and_dashboard_equal_counts_from_the_file, .init = setup,
     .fini = teardown, .timeout = 300) {
    gen_file(NEVENTS);
    replay(w.data);
    w.http_port = sp_t_free_port();
    pid_t pid = processor(w.redis.url, "kpi-e2e", 0, 1, NULL, "run");
    wait_all_committed(w.redis.url);
    wait_http();
    struct oracle o;
    oracle_build(&o);
    cr_assert_gt(o.total[O_ORDERS], 10);
    cr_assert_gt(o.total[O_BOUNCES], 0);
    cr_assert_gt(o.total[O_REVIEWS], 0);

    assert_windows(&o, "global", 1);
    /* the three busiest categories, by views */
    for (int pick = 0; pick < 3; pick++) {
        char best[40] = "";
        long long most = -1;
        for (size_t i = 0; i < o.nwin; i++) {
            if (strncmp(o.win[i].dim, "category=", 9)) continue;
            long long v = 0;
            for (size_t k = 0; k < o.nwin; k++)
                if (!strcmp(o.win[k].dim, o.win[i].dim)) v += o.win[k].c[O_VIEWS];
            if (v > most) {
                most = v;
                snprintf(best, sizeof best, "%s", o.win[i].dim);
            }
        }
        assert_windows(&o, best, 0);
        for (size_t i = 0; i < o.nwin; i++) /* next pick: another category */
            if (!strcmp(o.win[i].dim, best)) snprintf(o.win[i].dim, sizeof o.win[i].dim, "done");
    }

    /* hourly rollups: sums of the minute windows, unique users over the hour */
    cJSON *j = get_json("/api/kpi?res=rollup&limit=1000", 200), *win;
    int nroll = 0;
    cJSON_ArrayForEach(win, cJSON_GetObjectItem(j, "windows")) {
        int64_t start = (int64_t)num(win, "start");
        long long sum[O__N] = {0};
        for (size_t i = 0; i < o.nwin; i++)
            if (!strcmp(o.win[i].dim, "global") && o.win[i].start / ROLLUP * ROLLUP == start)
                for (int k = 0; k < O__N; k++) sum[k] += o.win[i].c[k];
        for (int k = 0; k < O_BUYERS; k++)
            cr_assert_eq((long long)num(win, oname[k]), sum[k], "rollup %lld %s", (long long)start,
                         oname[k]);
        assert_uu(num(win, "unique_users"), distinct_users(&o, start, ROLLUP), "rollup");
        nroll++;
    }
    cr_assert_gt(nroll, 0);
    cJSON_Delete(j);

    /* all-time totals */
    j = get_json("/api/totals", 200);
    for (int k = 0; k < O__N; k++)
        cr_assert_eq((long long)num(j, oname[k]), o.total[k], "total %s: API %lld, file %lld",
                     oname[k], (long long)num(j, oname[k]), o.total[k]);
    cr_assert_float_eq(num(j, "conversion_rate"),
                       (double)o.total[O_ORDERS] / (double)o.total[O_SESSIONS], 1e-9);
    cr_assert_float_eq(num(j, "aov"), (double)o.total[O_GMV] / 100.0 / (double)o.total[O_ORDERS],
                       1e-6);
    cJSON_Delete(j);

    /* per-item reviews */
    for (size_t i = 0; i < o.nitems && i < 5; i++) {
        char path[96];
        snprintf(path, sizeof path, "/api/item/%s", o.items[i].id);
        j = get_json(path, 200);
        cr_assert_eq((long)num(j, "reviews"), o.items[i].count, "item %s", o.items[i].id);
        cr_assert_float_eq(num(j, "rating_avg"),
                           (double)o.items[i].rating_sum / (double)o.items[i].count, 1e-9);
        cr_assert_eq(num(j, "sentiment_sum"), 0.0, "sentiment hook not wired yet: must be 0");
        cJSON_Delete(j);
    }
    cJSON_Delete(get_json("/api/item/no-such-item", 404));

    /* a user's state, and health */
    char upath[96];
    snprintf(upath, sizeof upath, "/api/user/%s", o.users[0].id);
    j = get_json(upath, 200);
    cJSON *stt = cJSON_GetObjectItem(j, "state");
    cr_assert(cJSON_IsObject(stt) && cJSON_GetObjectItem(stt, "events"), "no user state");
    cJSON_Delete(j);
    cJSON_Delete(get_json("/api/user/nobody", 404));
    j = get_json("/healthz", 200);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "status")->valuestring, "ok");
    cJSON_Delete(j);

    /* the page and its chart library are served from the binary */
    int st;
    char *page = http_get(w.http_port, "/", &st);
    cr_assert_eq(st, 200);
    cr_assert(strstr(page, "<script src=\"/assets/chart.umd.js\">"), "page has no chart script");
    free(page);
    char *lib = http_get(w.http_port, "/assets/chart.umd.js", &st);
    cr_assert_eq(st, 200);
    cr_assert(strlen(lib) > 100000 && strstr(lib, "Chart"), "chart library not embedded");
    free(lib);

    check_prometheus(o.total[O_ORDERS], o.total[O_VIEWS]);
    check_dashboard(o.total[O_ORDERS], o.total[O_VIEWS]);

    /* Redis gone: /healthz names it */
    sp_t_redis_stop(&w.redis);
    j = get_json("/healthz", 503);
    cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "unreachable"), 0)->valuestring,
                     "redis");
    cJSON_Delete(j);
    kill(pid, SIGKILL);
    sp_t_wait(pid, 10000);
    oracle_free(&o);
}
