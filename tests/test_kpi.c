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
#include <dirent.h>
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

#include "models/sentiment.h"
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
    double sentiment_sum; /* the lexicon scorer over the texts (the reviews operator's hook) */
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
            const cJSON *text = cJSON_GetObjectItem(rv, "text");
            if (cJSON_IsString(text)) it->sentiment_sum += sp_sentiment_score(text->valuestring, NULL);
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

/* user + system CPU seconds of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat
 * (tid 0: the process) */
static double proc_cpu_s(pid_t pid, long tid) {
    char path[96], buf[1024];
    if (tid)
        snprintf(path, sizeof path, "/proc/%d/task/%ld/stat", (int)pid, tid);
    else
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &stime) != 2)
        return -1;
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double metric_value(const char *text, const char *name) {
    char want[128];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *p = strstr(text, want);
    cr_assert(p, "/metrics lacks %s", name);
    return atof(p + strlen(want));
}

/* The processor's CPU in /metrics: the process's agrees with what the
 * kernel says of the process, and the operator thread's with what it says
 * of one of its threads, less than the whole. */
static void check_cpu_metrics(const char *text, pid_t pid) {
    double proc = metric_value(text, "process_cpu_seconds_total");
    double worker = metric_value(text, "shopstream_worker_cpu_seconds_total");
    double kproc = proc_cpu_s(pid, 0);
    /* the kernel counts in ticks (10 ms), read a moment after the scrape */
    cr_assert(kproc >= 0 && fabs(kproc - proc) < 0.05, "process CPU %.3f s, kernel says %.3f s",
              proc, kproc);
    /* librdkafka's threads and the Redis committer take their share */
    cr_assert(worker > 0.01 && worker < proc - 0.02, "worker CPU %.3f s of %.3f s", worker, proc);
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    double best = 1e9;
    for (struct dirent *e; (e = readdir(d));) {
        long tid = atol(e->d_name);
        double t = tid ? proc_cpu_s(pid, tid) : -1;
        if (t >= 0 && fabs(t - worker) < fabs(best - worker)) best = t;
    }
    closedir(d);
    cr_assert(fabs(best - worker) < 0.05, "worker CPU %.3f s: no thread of the process has it "
              "(closest %.3f s)", worker, best);
}

/* Checks the running processor's /metrics with promtool and its CPU
 * figures against the kernel's, then lets a real Prometheus scrape it and
 * asks its query API for the all-time orders. */
static void check_prometheus(long long want_orders, long long want_views, pid_t processor_pid) {
    int st;
    char *text = http_get(w.http_port, "/metrics", &st);
    cr_assert_eq(st, 200);
    check_cpu_metrics(text, processor_pid);
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

/* deploy/: the Prometheus config passes promtool, and every series the
 * Grafana dashboard queries is one that /metrics serves. */
static void check_deploy_files(void) {
    cr_assert_eq(system("promtool check config deploy/prometheus/prometheus.yml >/dev/null 2>&1"),
                 0, "deploy/prometheus/prometheus.yml does not pass promtool check config");
    char path[320];
    snprintf(path, sizeof path, "%s/metrics.txt", w.dir);
    char *metrics = sp_t_read_file(path, NULL), *dash = sp_t_read_file("deploy/grafana/shopstream.json", NULL);
    cr_assert(metrics && dash);
    cJSON *j = cJSON_Parse(dash), *panel, *target;
    cr_assert_not_null(j, "the Grafana dashboard is not JSON");
    int exprs = 0;
    cJSON_ArrayForEach(panel, cJSON_GetObjectItem(j, "panels"))
        cJSON_ArrayForEach(target, cJSON_GetObjectItem(panel, "targets")) {
            const char *e = cJSON_GetObjectItem(target, "expr")->valuestring;
            exprs++;
            for (const char *m = strstr(e, "shopstream_"); m; m = strstr(m + 1, "shopstream_")) {
                char name[96], series[160];
                size_t n = strspn(m, "abcdefghijklmnopqrstuvwxyz_");
                snprintf(name, sizeof name, "%.*s", (int)n, m);
                snprintf(series, sizeof series, "\n%s", name);
                cr_assert(strstr(metrics, series), "dashboard queries %s, /metrics has none", name);
                const char *label = strstr(m, "{metric=\"");
                if (label && label == m + n) {
                    snprintf(series, sizeof series, "%s%.*s", name, (int)(strchr(label + 9, '"') - label + 2), label);
                    cr_assert(strstr(metrics, series), "dashboard queries %s, /metrics has none", series);
                }
            }
        }
    cr_assert_gt(exprs, 10);
    cJSON_Delete(j);
    free(metrics);
    free(dash);
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
        cr_assert_float_eq(num(j, "sentiment_sum"), o.items[i].sentiment_sum, 1e-4,
                           "item %s: sentiment_sum %f, lexicon over the file's texts %f",
                           o.items[i].id, num(j, "sentiment_sum"), o.items[i].sentiment_sum);
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

    check_prometheus(o.total[O_ORDERS], o.total[O_VIEWS], pid);
    check_deploy_files();
    check_dashboard(o.total[O_ORDERS], o.total[O_VIEWS]);

    /* Redis gone: /healthz names it */
    sp_t_redis_stop(&w.redis);
    j = get_json("/healthz", 503);
    cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "unreachable"), 0)->valuestring,
                     "redis");
    cJSON_Delete(j);
    /* and Kafka too */
    sp_t_mock_stop(&w.mock);
    int named = 0;
    for (int i = 0; i < 20 && !named; i++) {
        j = get_json("/healthz", 503);
        cJSON *un = cJSON_GetObjectItem(j, "unreachable");
        named = cJSON_GetArraySize(un) == 2 &&
                !strcmp(cJSON_GetArrayItem(un, 1)->valuestring, "kafka");
        cJSON_Delete(j);
    }
    cr_assert(named, "/healthz does not name kafka with the cluster gone");
    kill(pid, SIGKILL);
    sp_t_wait(pid, 10000);
    oracle_free(&o);
}

/* ------------------------------------------- hand-made lateness and sessions */

static void write_lines(const char *path, const char *const *lines, size_t n) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (size_t i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

#define CLICK(id, user, dt, kind, cat)                                                        \
    "{\"event_id\":\"" id "\",\"ts_ms\":" dt ",\"user_id\":\"" user "\",\"session_id\":\"s\","  \
    "\"click\":{\"kind\":\"" kind "\",\"item_id\":\"i1\",\"category\":\"" cat "\",\"price\":5}}"
#define ORDER(id, user, dt)                                                                   \
    "{\"event_id\":\"" id "\",\"ts_ms\":" dt ",\"user_id\":\"" user "\",\"session_id\":\"s\","  \
    "\"order\":{\"order_id\":\"o" id "\",\"items\":[{\"item_id\":\"i1\",\"category\":\"c1\","   \
    "\"quantity\":2,\"unit_price\":5}],\"total\":10,\"currency\":\"EUR\"}}"
#define REVIEW(id, user, dt)                                                                  \
    "{\"event_id\":\"" id "\",\"ts_ms\":" dt ",\"user_id\":\"" user "\",\"session_id\":\"s\","  \
    "\"review\":{\"item_id\":\"i1\",\"rating\":4,\"text\":\"fine\"}}"

/* Event times are T0 plus: */
#define S(x) #x
#define AT(ms) S(ms)

struct kmsg {
    char key[128];
    int correction;
    double views, late;
};

/* Every KpiWindow in shop.kpi, decoded with protobuf-c. */
static size_t read_kpi_topic(struct kmsg *out, size_t max) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", w.mock.bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "kpi-check", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, "shop.kpi", NULL);
    const struct rd_kafka_metadata *md = NULL;
    cr_assert_eq(rd_kafka_metadata(rk, 0, t, &md, 5000), 0);
    int nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++) rd_kafka_topic_partition_list_add(l, "shop.kpi", p)->offset = 0;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    size_t n = 0;
    for (int idle = 0; idle < 20;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle++;
            continue;
        }
        idle = 0;
        if (!m->err && n < max) {
            Shopstream__V1__KpiWindow *kw = shopstream__v1__kpi_window__unpack(NULL, m->len, m->payload);
            cr_assert_not_null(kw, "shop.kpi holds something that is not a KpiWindow");
            struct kmsg *k = &out[n++];
            memset(k, 0, sizeof *k);
            snprintf(k->key, sizeof k->key, "%.*s", (int)m->key_len, (const char *)m->key);
            k->correction = kw->correction;
            for (size_t i = 0; i < kw->n_metrics; i++) {
                if (!strcmp(kw->metrics[i]->name, "views")) k->views = kw->metrics[i]->value;
                if (!strcmp(kw->metrics[i]->name, "late")) k->late = kw->metrics[i]->value;
            }
            shopstream__v1__kpi_window__free_unpacked(kw, NULL);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

static cJSON *window_at(cJSON *api, int64_t start) {
    cJSON *win;
    cJSON_ArrayForEach(win, cJSON_GetObjectItem(api, "windows"))
        if ((int64_t)num(win, "start") == start) return win;
    cr_assert_fail("no window at %lld", (long long)start);
    return NULL;
}

static void late_events(const char *policy) {
    /* File A: user ua on all three topics (so its partition gets a
     * watermark), ub a one-view session. a3 is 3 s out of order (within the
     * 5 s lateness); a6 starts a new session 40 minutes on; a8/a9 push the
     * orders and reviews watermarks to 50 minutes. Watermark after A:
     * min(40 min, 50 min, 50 min) - 5 s, so minutes 0 and 1 are emitted and
     * minute 40 is not. File B: a10, 40 minutes late. */
    const char *a[] = {
        CLICK("a1", "ua", AT(1767225601000), "view", "c1"),
        CLICK("b1", "ub", AT(1767225602000), "view", "c2"),
        CLICK("a2", "ua", AT(1767225661000), "click", "c1"),
        CLICK("a3", "ua", AT(1767225658000), "view", "c1"),
        ORDER("a4", "ua", AT(1767225630000)),
        REVIEW("a5", "ua", AT(1767225631000)),
        CLICK("a6", "ua", AT(1767228000000), "view", "c1"),
        ORDER("a8", "ua", AT(1767228600000)),
        REVIEW("a9", "ua", AT(1767228600000)),
    };
    const char *b[] = {CLICK("a10", "ua", AT(1767225650000), "view", "c1")};
    char fa[300], fb[300], extra[64];
    snprintf(fa, sizeof fa, "%s/a.jsonl", w.dir);
    snprintf(fb, sizeof fb, "%s/b.jsonl", w.dir);
    write_lines(fa, a, sizeof a / sizeof *a);
    write_lines(fb, b, 1);
    snprintf(extra, sizeof extra, "--kpi.late_policy=%s", policy);
    int apply = !strcmp(policy, "apply");

    replay(fa);
    w.http_port = sp_t_free_port();
    pid_t pid = processor(w.redis.url, "late", 0, 1, extra, "late");
    wait_all_committed(w.redis.url);
    replay(fb);
    wait_all_committed(w.redis.url);
    wait_http();

    cJSON *j = get_json("/api/kpi?limit=100", 200);
    cJSON *w0 = window_at(j, T0), *w1 = window_at(j, T0 + WINDOW),
          *w40 = window_at(j, T0 + 40 * WINDOW), *w50 = window_at(j, T0 + 50 * WINDOW);
    cr_assert_eq(num(w0, "views"), apply ? 4 : 3, "minute 0 views");
    cr_assert_eq(num(w0, "late"), apply ? 1 : 0);
    cr_assert_eq(num(w0, "late_dropped"), apply ? 0 : 1);
    cr_assert_eq(num(w0, "sessions"), 2, "ua's first session and ub's");
    cr_assert_eq(num(w0, "bounces"), 1, "ub bounced; ua's second click took its bounce back");
    cr_assert_eq(num(w0, "orders"), 1);
    cr_assert_eq(num(w0, "gmv_cents"), 1000);
    cr_assert_eq(num(w0, "reviews"), 1);
    cr_assert_eq(num(w0, "buyers"), 1);
    cr_assert_eq(num(w0, "repeat_buyers"), 0);
    cr_assert_eq(num(w0, "unique_users"), 2);
    cr_assert_float_eq(num(w0, "bounce_rate"), 0.5, 1e-9);
    cr_assert_eq(num(w1, "clicks"), 1);
    cr_assert_eq(num(w1, "sessions"), 0);
    cr_assert_eq(num(w40, "sessions"), 1, "40 idle minutes start a new session");
    cr_assert_eq(num(w40, "bounces"), 1);
    cr_assert_eq(num(w50, "buyers"), 1);
    cr_assert_eq(num(w50, "repeat_buyers"), 1, "ua had ordered before");
    cJSON_Delete(j);
    j = get_json("/api/kpi?limit=100&dim=category=c1", 200);
    cr_assert_eq(num(window_at(j, T0), "views"), apply ? 3 : 2);
    cr_assert_eq(num(window_at(j, T0), "units"), 2);
    cJSON_Delete(j);
    j = get_json("/api/totals", 200);
    cr_assert_eq(num(j, "late"), apply ? 1 : 0);
    cr_assert_eq(num(j, "late_dropped"), apply ? 0 : 1);
    cr_assert_eq(num(j, "buyers"), 1);
    cr_assert_eq(num(j, "repeat_buyers"), 1);
    cJSON_Delete(j);

    /* shop.kpi: minutes 0 and 1 emitted once the watermark passed them,
     * minute 40 not yet; with apply, minute 0 again as a correction. */
    cJSON *ua = get_json("/api/user/ua", 200), *ub = get_json("/api/user/ub", 200);
    double ua_part = num(ua, "partition");
    int same = ua_part == num(ub, "partition");
    cJSON_Delete(ua);
    cJSON_Delete(ub);
    double first_views = 2 + same; /* a1, a3, and b1 if ub shares ua's partition */
    struct kmsg *msgs = calloc(4096, sizeof *msgs);
    size_t n = read_kpi_topic(msgs, 4096);
    char k0[128], k1[128], k40[128];
    int first0 = 0, corr0 = 0, got1 = 0, got40 = 0, corrections = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(k0, sizeof k0, "60000:%lld:global:p%d", T0, (int)ua_part);
        snprintf(k1, sizeof k1, "60000:%lld:global:p", T0 + WINDOW);
        snprintf(k40, sizeof k40, "60000:%lld:", T0 + 40 * WINDOW);
        corrections += msgs[i].correction;
        if (!strcmp(msgs[i].key, k0)) {
            if (!msgs[i].correction) {
                first0++;
                cr_assert_eq(msgs[i].views, first_views, "minute 0 as first emitted");
            } else {
                corr0++;
                cr_assert_eq(msgs[i].views, first_views + 1, "the correction has the late view");
                cr_assert_eq(msgs[i].late, 1);
            }
        }
        if (!strncmp(msgs[i].key, k1, strlen(k1))) got1++;
        if (!strncmp(msgs[i].key, k40, strlen(k40))) got40++;
    }
    cr_assert_eq(first0, 1, "minute 0 (ua's partition) emitted %d times", first0);
    cr_assert_geq(got1, 1, "minute 1 was not emitted");
    cr_assert_eq(got40, 0, "minute 40 emitted before the watermark passed it");
    if (apply)
        cr_assert_eq(corr0, 1, "no correction of minute 0 after the late event");
    else
        cr_assert_eq(corrections, 0, "a dropped late event caused a correction");
    free(msgs);
    kill(pid, SIGTERM);
    cr_assert_eq(sp_t_wait(pid, 30000), 0);
}

Test(kpi, late_event_applied_with_a_correction_sessions_and_bounces, .init = setup,
     .fini = teardown, .timeout = 120) {
    late_events("apply");
}

Test(kpi, late_event_dropped_but_counted, .init = setup, .fini = teardown, .timeout = 120) {
    late_events("drop");
}

/* ------------------------------------------------------------ kill -9 */

Test(kpi, kill9_at_random_points_ends_in_the_state_of_a_clean_run, .init = setup,
     .fini = teardown, .timeout = 300) {
    gen_file(NEVENTS);
    replay(w.data);
    pid_t pid = processor(w.reference.url, "reference", 1500, 0, NULL, "reference");
    cr_assert_eq(sp_t_wait(pid, 120000), 0, "reference run failed");
    char *want = sp_t_dump(w.reference.url);
    cr_assert(strstr(want, ":kpi:60000:") && strstr(want, "pfcount=") && strstr(want, "item:"),
              "the reference run wrote no KPI windows, unique users or item aggregates");
    int64_t total = w.per_topic[0] + w.per_topic[1] + w.per_topic[2];
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    for (int k = 1; k <= 3; k++) {
        pid = processor(w.redis.url, "crash", 0, 0, NULL, "crash");
        int64_t target = (int64_t)(total * ((k - 1) * 0.25 + 0.1 + 0.15 * rand() / (double)RAND_MAX));
        for (int waited = 0; committed_total(w.redis.url) < target && waited < 60000; waited += 5)
            sp_t_sleep_ms(5);
        sp_t_sleep_ms(rand() % 30);
        kill(pid, SIGKILL);
        cr_assert_eq(sp_t_wait(pid, 10000), 128 + SIGKILL);
        cr_log_info("seed %u: killed run %d at %.0f%% committed", seed, k,
                    100.0 * (double)committed_total(w.redis.url) / (double)total);
    }
    pid = processor(w.redis.url, "crash", 1500, 0, NULL, "crash-final");
    cr_assert_eq(sp_t_wait(pid, 120000), 0, "final run failed");
    char *got = sp_t_dump(w.redis.url);
    if (strcmp(got, want)) {
        char a[320], b[320];
        snprintf(a, sizeof a, "%s/want.dump", w.dir);
        snprintf(b, sizeof b, "%s/got.dump", w.dir);
        FILE *f = fopen(a, "w");
        fputs(want, f);
        fclose(f);
        f = fopen(b, "w");
        fputs(got, f);
        fclose(f);
        cr_assert_fail("KPI state after kill -9 differs from a clean run (seed %u): diff %s %s",
                       seed, a, b);
    }
    free(got);
    free(want);
}
