/* Operators through the pipeline with a real Redis store: dedupe drops a
 * repeated event_id inside its window and keeps memory and Redis in step;
 * counts counts by kind. */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "state/store.h"
#include "stream/error.h"
#include "tests/support/harness.h"

static sp_t_redis redis;
static void start(void) { cr_assert_eq(sp_t_redis_start(&redis, 0), 0); }
static void stop(void) { sp_t_redis_stop(&redis); }

struct rig {
    sp_config cfg;
    sp_store *store;
    sp_pipeline *pl;
};

static void rig_open(struct rig *r, int64_t window, int64_t max_ids) {
    sp_config_init(&r->cfg);
    r->cfg.dedupe_window_ms = window;
    r->cfg.dedupe_max_ids = max_ids;
    free(r->cfg.input_topics);
    r->cfg.input_topics = strdup("t,u");
    sp_store_conf sc = {.url = redis.url, .timeout_ms = 1000, .max_entries = 1000};
    char err[256];
    r->store = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(r->store, "%s", err);
    sp_op_env env = {r->store, NULL, &r->cfg, NULL};
    r->pl = sp_pipeline_new("dedupe,counts", &env, err, sizeof err);
    cr_assert_not_null(r->pl, "%s", err);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(r->store, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(sp_pipeline_assign(r->pl, 0), SP_OK);
}

static void rig_close(struct rig *r) {
    sp_pipeline_destroy(r->pl);
    sp_store_destroy(r->store);
    sp_config_release(&r->cfg);
}

/* Runs one event; returns SP_OK or SP_OP_DROP. */
static int feed_topic(struct rig *r, const char *topic, const char *id, int64_t ts);
static int feed(struct rig *r, const char *id, int64_t ts) { return feed_topic(r, "t", id, ts); }

static void user_event(Shopstream__V1__Event *ev, Shopstream__V1__Click *click, const char *id,
                       const char *user);

static int feed_topic(struct rig *r, const char *topic, const char *id, int64_t ts) {
    Shopstream__V1__Event ev;
    Shopstream__V1__Click click;
    user_event(&ev, &click, id, "u1");
    ev.ts_ms = ts;
    sp_op_event e = {.ev = &ev, .kind = SP_KIND_VIEW, .partition = 0, .topic = topic};
    sp_pipeline_prefetch(r->pl, &e);
    cr_assert_eq(sp_store_prefetch(r->store), SP_OK);
    return sp_pipeline_process(r->pl, &e, NULL);
}

static void commit(struct rig *r, int64_t off) {
    const char *topics[] = {"t"};
    cr_assert_eq(sp_pipeline_flush(r->pl, 0), SP_OK);
    cr_assert_eq(sp_pipeline_before_commit(r->pl), SP_OK);
    cr_assert_eq(sp_store_commit(r->store, 0, topics, &off, 1), SP_OK);
    sp_store_end_batch(r->store);
}

/* The ids of topic t, partition 0, held in Redis: every record of every
 * bucket the index lists, as "ts:id" lines, and the number of buckets. */
static char *redis_ids(int *nbuckets) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *idx = redisCommand(c, "HGETALL {p0}:ddx:t");
    size_t cap = 4096, n = 0;
    char *out = calloc(1, cap);
    *nbuckets = (int)idx->elements / 2;
    for (size_t i = 0; i + 1 < idx->elements; i += 2) {
        redisReply *b = redisCommand(c, "GET {p0}:ddx:t:%s", idx->element[i]->str);
        cr_assert_eq(b->type, REDIS_REPLY_STRING, "bucket %s in the index but not in Redis",
                     idx->element[i]->str);
        for (const char *s = b->str; *s;) {
            char *q;
            long long ts = strtoll(s, &q, 10);
            long long len = strtoll(q + 1, &q, 10);
            n += (size_t)snprintf(out + n, cap - n, "%lld:%.*s\n", ts, (int)len, q + 1);
            s = q + 1 + len;
        }
        freeReplyObject(b);
    }
    freeReplyObject(idx);
    redisFree(c);
    return out;
}

Test(dedupe, drops_repeats_within_the_window_even_after_a_restart, .init = start, .fini = stop) {
    struct rig r;
    rig_open(&r, 1000, 100);
    cr_assert_eq(feed(&r, "a", 10000), SP_OK);
    cr_assert_eq(feed(&r, "a", 10000), SP_OP_DROP);   /* same batch */
    cr_assert_eq(feed(&r, "b", 10500), SP_OK);
    commit(&r, 3);
    cr_assert_eq(feed(&r, "b", 10500), SP_OP_DROP);   /* next batch */
    commit(&r, 4);
    rig_close(&r);
    /* A new owner loads the ids from Redis. */
    rig_open(&r, 1000, 100);
    cr_assert_eq(feed(&r, "a", 10000), SP_OP_DROP);
    cr_assert_eq(feed(&r, "c", 10999), SP_OK);
    commit(&r, 5);
    rig_close(&r);
    char *dump = sp_t_dump(redis.url);
    cr_assert(strstr(dump, "{p0}:u:u1 hash events=3 view=3"), "%s", dump);
    free(dump);
}

Test(dedupe, forgets_ids_older_than_the_window_in_memory_and_in_redis, .init = start,
     .fini = stop) {
    struct rig r;
    rig_open(&r, 1000, 100);
    cr_assert_eq(feed(&r, "old", 1000), SP_OK);
    commit(&r, 1);
    cr_assert_eq(feed(&r, "new", 2000), SP_OK); /* cutoff 1000: "old" stays (not < cutoff) */
    commit(&r, 2);
    cr_assert_eq(feed(&r, "newer", 2001), SP_OK); /* cutoff 1001: "old" goes */
    commit(&r, 3);
    int nb;
    char *ids = redis_ids(&nb);
    cr_assert_str_eq(ids, "1000:old\n2000:new\n2001:newer\n", "one bucket, in offset order");
    free(ids);
    cr_assert_eq(feed(&r, "old", 1000), SP_OK, "an id past the window is new again");
    /* ... and is not written again: it is outside the window as it comes */
    commit(&r, 4);
    ids = redis_ids(&nb);
    cr_assert_str_eq(ids, "1000:old\n2000:new\n2001:newer\n");
    free(ids);
    rig_close(&r);
    /* A new owner applies the window to what it reads: "old" is new, "new"
     * and "newer" are not. */
    rig_open(&r, 1000, 100);
    cr_assert_eq(feed(&r, "newer", 2001), SP_OP_DROP);
    cr_assert_eq(feed(&r, "new", 2000), SP_OP_DROP);
    cr_assert_eq(feed(&r, "old", 1000), SP_OK);
    commit(&r, 5);
    /* A bucket that ends before the window is deleted with its index entry. */
    cr_assert_eq(feed(&r, "later", 200000), SP_OK); /* cutoff 199000 > 59999 */
    commit(&r, 6);
    ids = redis_ids(&nb);
    cr_assert_str_eq(ids, "200000:later\n");
    cr_assert_eq(nb, 1);
    free(ids);
    rig_close(&r);
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *e = redisCommand(c, "EXISTS {p0}:ddx:t:0");
    cr_assert_eq(e->integer, 0, "the dead bucket's string is still in Redis");
    freeReplyObject(e);
    redisFree(c);
}

Test(dedupe, keeps_at_most_max_ids_and_the_same_ones_as_redis, .init = start, .fini = stop) {
    struct rig r;
    rig_open(&r, 1000000, 3);
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "e%d", i);
        cr_assert_eq(feed(&r, id, 5000 + i), SP_OK);
    }
    commit(&r, 10);
    int nb;
    char *ids = redis_ids(&nb);
    cr_assert_eq(nb, 1);
    cr_assert(strstr(ids, "5000:e0\n") && strstr(ids, "5009:e9\n"),
              "Redis keeps whole buckets (max_ids bounds memory): %s", ids);
    free(ids);
    /* e7..e9 are remembered, e6 is not: in memory ... */
    cr_assert_eq(feed(&r, "e9", 5009), SP_OP_DROP);
    cr_assert_eq(feed(&r, "e6", 5006), SP_OK);
    commit(&r, 12);
    rig_close(&r);
    /* ... and in Redis, for the next owner. */
    rig_open(&r, 1000000, 3);
    cr_assert_eq(feed(&r, "e9", 5009), SP_OP_DROP);
    cr_assert_eq(feed(&r, "e5", 5005), SP_OK);
    rig_close(&r);
}

Test(pipeline_config, unknown_operator_is_an_error_naming_it, .init = start, .fini = stop) {
    sp_config cfg;
    sp_config_init(&cfg);
    sp_store_conf sc = {.url = redis.url, .timeout_ms = 1000, .max_entries = 1000};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    sp_op_env env = {st, NULL, &cfg, NULL};
    cr_assert_null(sp_pipeline_new("dedupe,nosuch", &env, err, sizeof err));
    cr_assert(strstr(err, "'nosuch'"), "%s", err);
    sp_store_destroy(st);
    sp_config_release(&cfg);
}

/* Topics are fetched independently: one running hours of event time ahead
 * must not push another's recent ids out of the window. */
Test(dedupe, window_is_per_topic_partition, .init = start, .fini = stop) {
    struct rig r;
    rig_open(&r, 1000, 100);
    cr_assert_eq(feed_topic(&r, "t", "x", 5000), SP_OK);
    cr_assert_eq(feed_topic(&r, "u", "y", 9999999), SP_OK);
    commit(&r, 2);
    cr_assert_eq(feed_topic(&r, "t", "x", 5000), SP_OP_DROP);
    /* Within one topic-partition the window applies at lookup, whether or
     * not a commit (and its trimming) came in between. */
    cr_assert_eq(feed_topic(&r, "t", "z", 7000), SP_OK);
    cr_assert_eq(feed_topic(&r, "t", "x", 5000), SP_OK, "x is 2000 ms behind: outside the window");
    rig_close(&r);
}

/* The ids' text in Redis is a function of the events, not of where batches
 * end: the same stream committed after every event and committed once
 * leaves the same keys. (This is what kill -9 tests compare.) */
static char *run_stream(int every) {
    struct rig r;
    rig_open(&r, 30000, 1000);
    char id[32];
    int64_t off = 0;
    for (int i = 0; i < 60; i++) {
        int64_t ts = 100000 + 7000LL * i;
        snprintf(id, sizeof id, "e%d", i);
        feed(&r, id, ts);
        if (i % 5 == 4) { /* a late event, and a duplicate of a recent one */
            snprintf(id, sizeof id, "late%d", i);
            feed(&r, id, ts - 50000);
            snprintf(id, sizeof id, "e%d", i - 1);
            feed(&r, id, ts - 7000);
        }
        if (i % 10 == 9) { /* an id seen before the window: new again */
            snprintf(id, sizeof id, "e%d", i - 6);
            feed(&r, id, ts + 1);
        }
        if (every && ++off % every == 0) commit(&r, off);
    }
    commit(&r, ++off);
    rig_close(&r);
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    char *dump = sp_t_dump(redis.url);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
    return dump;
}

Test(dedupe, redis_text_does_not_depend_on_batch_boundaries, .init = start, .fini = stop) {
    char *once = run_stream(0), *each = run_stream(1), *threes = run_stream(3);
    cr_assert(strstr(once, ":ddx:t:"), "no id bucket in the dump: %s", once);
    /* Only the epoch in meta differs between runs: compare the ids' keys. */
    char *a = strstr(once, "{p0}:ddx"), *b = strstr(each, "{p0}:ddx"), *c = strstr(threes, "{p0}:ddx");
    cr_assert(a && b && c);
    char *ae = strstr(a, "{p0}:meta"), *be = strstr(b, "{p0}:meta"), *ce = strstr(c, "{p0}:meta");
    if (ae) *ae = '\0';
    if (be) *be = '\0';
    if (ce) *ce = '\0';
    cr_assert_str_eq(a, b);
    cr_assert_str_eq(a, c);
    free(once);
    free(each);
    free(threes);
}

/* Upgrading from the sorted-set layout: its ids are still honoured, and the
 * old key is gone after the next commit. */
Test(dedupe, reads_and_then_drops_the_old_sorted_set, .init = start, .fini = stop) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    freeReplyObject(redisCommand(c, "ZADD {p0}:dd:t 5000 old1 5100 old2"));
    struct rig r;
    rig_open(&r, 100000, 100);
    cr_assert_eq(feed(&r, "old2", 5100), SP_OP_DROP, "an id of the old layout was forgotten");
    cr_assert_eq(feed(&r, "fresh", 5200), SP_OK);
    commit(&r, 1);
    rig_close(&r);
    redisReply *e = redisCommand(c, "EXISTS {p0}:dd:t");
    cr_assert_eq(e->integer, 0);
    freeReplyObject(e);
    redisFree(c);
    rig_open(&r, 100000, 100);
    cr_assert_eq(feed(&r, "old1", 5000), SP_OP_DROP, "lost in the move to buckets");
    cr_assert_eq(feed(&r, "fresh", 5200), SP_OP_DROP);
    rig_close(&r);
}

/* A view of item i1 by `user` at ts 1000 (feed_topic sets its own ts). */
static void user_event(Shopstream__V1__Event *ev, Shopstream__V1__Click *click, const char *id,
                       const char *user) {
    *ev = (Shopstream__V1__Event)SHOPSTREAM__V1__EVENT__INIT;
    *click = (Shopstream__V1__Click)SHOPSTREAM__V1__CLICK__INIT;
    click->kind = SHOPSTREAM__V1__CLICK_KIND__VIEW;
    click->item_id = "i1";
    ev->event_id = (char *)id;
    ev->ts_ms = 1000;
    ev->user_id = (char *)user;
    ev->body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
    ev->click = click;
}

static int64_t views_of(struct rig *r, const char *user) {
    char key[64];
    snprintf(key, sizeof key, "u:%s", user);
    sp_obj *o;
    cr_assert_eq(sp_store_get(r->store, 0, key, &o), SP_OK);
    return sp_obj_get_int(o, "view", 0);
}

/* sp_op_hints (operators/operator.h): counts keeps the user entry it wanted
 * in prefetch for the same event's process. A hint must serve only the
 * event that set it, in its batch: another event at the same place in the
 * batch, or the same event struct reused in a later batch, gets the entry
 * of its own key. */
Test(hints, a_hint_serves_only_the_event_and_batch_that_set_it, .init = start, .fini = stop) {
    struct rig r;
    rig_open(&r, 3600000, 1000);
    Shopstream__V1__Event a, b;
    Shopstream__V1__Click ca, cb;
    user_event(&a, &ca, "e1", "alice");
    user_event(&b, &cb, "e2", "bob");
    sp_op_event ea = {.ev = &a, .kind = SP_KIND_VIEW, .partition = 0, .topic = "t", .seq = 0};
    sp_op_event eb = {.ev = &b, .kind = SP_KIND_VIEW, .partition = 0, .topic = "t", .seq = 0};

    /* alice wanted at place 0; bob processed at place 0 without a prefetch */
    sp_pipeline_prefetch(r.pl, &ea);
    cr_assert_eq(sp_store_prefetch(r.store), SP_OK);
    cr_assert_eq(sp_pipeline_process(r.pl, &eb, NULL), SP_OK);
    cr_assert_eq(views_of(&r, "bob"), 1);
    cr_assert_eq(views_of(&r, "alice"), 0, "bob's event was counted on alice's hint");
    cr_assert_eq(sp_pipeline_process(r.pl, &ea, NULL), SP_OK);
    cr_assert_eq(views_of(&r, "alice"), 1);
    commit(&r, 2);

    /* the same struct, wanted for carol, then the batch ends and it comes
     * back as dave's event without a prefetch */
    user_event(&a, &ca, "e3", "carol");
    sp_pipeline_prefetch(r.pl, &ea);
    sp_store_end_batch(r.store);
    user_event(&a, &ca, "e4", "dave");
    cr_assert_eq(sp_pipeline_process(r.pl, &ea, NULL), SP_OK);
    cr_assert_eq(views_of(&r, "dave"), 1);
    cr_assert_eq(views_of(&r, "carol"), 0, "a hint of an earlier batch was used");
    rig_close(&r);
}

static void flushall(void) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
}

/* Memory keeps the ids in (ts, id bytes) order in two parts: those that came
 * in order, and the rest. Trimming to max_ids must pick exactly the lowest
 * entries whichever part they sit in, ties on ts broken by the id bytes (a
 * shorter id first when one is the other's prefix). */
struct seen {
    const char *id;
    int64_t ts;
};

/* Feeds `in` (n events, one batch), commits, and checks that exactly the ids
 * of `kept` (NULL-terminated) are remembered: in memory, then for a new
 * owner that reads them back from Redis. A probe of a forgotten id takes it
 * again, so probes run before anything is committed after them. */
static void expect_kept(int64_t max_ids, const struct seen *in, size_t n, const char *const *kept) {
    struct rig r;
    for (int owner = 0; owner < 2; owner++) {
        rig_open(&r, 1000000000, max_ids);
        if (!owner) {
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(feed(&r, in[i].id, in[i].ts), SP_OK, "%s", in[i].id);
            commit(&r, (int64_t)n);
        }
        for (size_t i = 0; i < n; i++) {
            int want = SP_OK;
            for (const char *const *k = kept; *k; k++)
                if (!strcmp(*k, in[i].id)) want = SP_OP_DROP;
            cr_assert_eq(feed(&r, in[i].id, in[i].ts), want, "%s: %s (%s owner)", in[i].id,
                         want == SP_OK ? "remembered but should be trimmed" : "trimmed but should be kept",
                         owner ? "new" : "first");
        }
        rig_close(&r);
    }
}

Test(dedupe, max_ids_keeps_the_highest_ts_and_id_in_order_or_not, .init = start, .fini = stop) {
    /* Sorted: c4000 m5000 a5500 b6000 n6000 nn6000 z6000 o6500 p7000 y7000;
     * the cut after b6000 falls between an out-of-order b and an in-order n
     * of the same time. */
    static const struct seen in[] = {
        {"m", 5000}, {"n", 6000},  {"a", 5500}, /* below the newest: out of order */
        {"z", 6000}, {"b", 6000},               /* ties on ts: z after n, b before it */
        {"p", 7000}, {"c", 4000},  {"y", 7000}, {"o", 6500}, {"nn", 6000},
    };
    static const char *const kept[] = {"n", "nn", "z", "o", "p", "y", NULL};
    expect_kept(6, in, sizeof in / sizeof in[0], kept);
}

Test(dedupe, max_ids_can_keep_an_out_of_order_id_over_an_in_order_one, .init = start,
     .fini = stop) {
    /* k comes after x, so out of order, and is above d of the same time. */
    static const struct seen in[] = {{"d", 6000}, {"x", 9000}, {"k", 6000}, {"e", 5000}};
    static const char *const kept[] = {"k", "x", NULL};
    expect_kept(2, in, sizeof in / sizeof in[0], kept);
}

/* An id new again (its last time before the window) leaves its old entry
 * behind; trimming must skip that one and not take the id with it, whether
 * the new entry came in order or not. */
Test(dedupe, an_id_new_again_is_kept_by_its_newer_time, .init = start, .fini = stop) {
    for (int late = 0; late < 2; late++) {
        struct rig r;
        rig_open(&r, 1000, 2);
        cr_assert_eq(feed(&r, "a", 5000), SP_OK);
        cr_assert_eq(feed(&r, "b", 5500), SP_OK);
        cr_assert_eq(feed(&r, "c", 6300), SP_OK);
        cr_assert_eq(feed(&r, "d", 6400), SP_OK); /* cutoff 5400: a's 5000 is out */
        /* a again at 6450 (in order) or 6350 (below d: out of order) */
        cr_assert_eq(feed(&r, "a", late ? 6350 : 6450), SP_OK, "a is outside the window");
        commit(&r, 5);
        /* Sorted: a5000 (stale) b5500 c6300 {a6350} d6400 {a6450}; two stay. */
        cr_assert_eq(feed(&r, "a", 6300), SP_OP_DROP, "a went with its stale entry");
        cr_assert_eq(feed(&r, "d", 6400), SP_OP_DROP);
        cr_assert_eq(feed(&r, "c", 6300), SP_OK, "c should have been trimmed (late=%d)", late);
        rig_close(&r);
        flushall();
    }
}

/* Many ids, a third of them late by up to 300 ms and many on the same
 * millisecond, trimmed at every few events: what stays is the highest
 * max_ids by (ts, id), as a sort of every id says. */
static int seen_cmp(const void *a, const void *b) {
    const struct seen *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return strcmp(x->id, y->id);
}

Test(dedupe, max_ids_matches_a_sort_of_every_id_under_jitter, .init = start, .fini = stop) {
    enum { N = 240, MAX_IDS = 37 };
    static char ids[N][16];
    struct seen in[N], sorted[N];
    uint32_t rng = 12345;
    for (int i = 0; i < N; i++) {
        rng = rng * 1103515245u + 12345u;
        int64_t jitter = (rng >> 16) % 3 == 0 ? (int64_t)((rng >> 8) % 300) : 0;
        snprintf(ids[i], sizeof ids[i], "id%u", (rng >> 4) % 1000000);
        in[i] = (struct seen){ids[i], (10000 + 10 * i - jitter) / 50 * 50};
    }
    for (int every = 1; every <= 13; every += 12) {
        struct rig r;
        rig_open(&r, 1000000000, MAX_IDS);
        int fresh = 0;
        for (int i = 0; i < N; i++) {
            int rc = feed(&r, in[i].id, in[i].ts);
            if (rc == SP_OK) sorted[fresh++] = in[i];
            if ((i + 1) % every == 0) commit(&r, i + 1);
        }
        commit(&r, N + 1);
        cr_assert_gt(fresh, 2 * MAX_IDS);
        qsort(sorted, (size_t)fresh, sizeof *sorted, seen_cmp);
        for (int i = 0; i < fresh; i++)
            cr_assert_eq(feed(&r, sorted[i].id, sorted[i].ts), i < fresh - MAX_IDS ? SP_OK : SP_OP_DROP,
                         "rank %d of %d: %s at %lld (commit every %d)", i, fresh, sorted[i].id,
                         (long long)sorted[i].ts, every);
        rig_close(&r);
        flushall();
    }
}
