/* The Redis state store against a real redis-server: URL parsing, the
 * read-through cache, fenced commits with offsets, retry across an outage. */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/store.h"
#include "stream/error.h"
#include "tests/support/harness.h"

static sp_t_redis redis;

static void start(void) { cr_assert_eq(sp_t_redis_start(&redis, 1), 0, "redis-server did not start"); }
static void stop(void) { sp_t_redis_stop(&redis); }

static sp_store *open_store(int64_t max_entries, volatile int *abort_flag) {
    sp_store_conf sc = {.url = redis.url, .timeout_ms = 1000, .max_entries = max_entries, .abort_flag = abort_flag};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    return st;
}

static char *hget(const char *key, const char *field) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *r = redisCommand(c, "HGET %s %s", key, field);
    char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

Test(redis_url, parses_every_form) {
    sp_redis_url u;
    char err[128];
    cr_assert_eq(sp_redis_url_parse("redis://user:p%40ss@db.example:6380/3", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.host, "db.example");
    cr_assert_eq(u.port, 6380);
    cr_assert_str_eq(u.user, "user");
    cr_assert_str_eq(u.password, "p%40ss");
    cr_assert_eq(u.db, 3);
    cr_assert_eq(sp_redis_url_parse("redis://:only@h:1", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.password, "only");
    cr_assert_eq(sp_redis_url_parse("redis://127.0.0.1", &u, err, sizeof err), 0);
    cr_assert_eq(u.port, 6379);
    cr_assert_eq(sp_redis_url_parse("unix:///run/redis.sock?db=2&password=pw", &u, err, sizeof err), 0);
    cr_assert_str_eq(u.unix_path, "/run/redis.sock");
    cr_assert_eq(u.db, 2);
    cr_assert_str_eq(u.password, "pw");
    cr_assert_neq(sp_redis_url_parse("unix:///s?bogus=1", &u, err, sizeof err), 0);
    cr_assert_neq(sp_redis_url_parse("http://x", &u, err, sizeof err), 0);
    cr_assert(strstr(err, "redis.url"));
    cr_assert_neq(sp_redis_url_parse("redis://secretpw@h:99999", &u, err, sizeof err), 0);
    cr_assert_null(strstr(err, "secretpw"));
}

Test(store, commit_writes_state_and_offsets_together, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    const char *topics[] = {"t.a", "t.b"};
    int64_t offs[2];
    cr_assert_eq(sp_store_assign(st, 3, topics, 2, offs), SP_OK);
    cr_assert_eq(offs[0], -1);
    cr_assert_eq(offs[1], -1);
    sp_obj *o;
    cr_assert_eq(sp_store_get(st, 3, "u:alice", &o), SP_OK);
    sp_obj_incr(o, "view", 2);
    sp_obj_set_str(o, "name", "Alice");
    const char *z[] = {"ZADD", "{p3}:dd", "5", "ev1"};
    sp_store_tx_cmd(st, 3, 4, z);
    int64_t next[] = {42, 7};
    cr_assert_eq(sp_store_commit(st, 3, topics, next, 2), SP_OK);
    char *v = hget("{p3}:u:alice", "view");
    cr_assert_str_eq(v, "2");
    free(v);
    v = hget("{p3}:meta", "off:t.b");
    cr_assert_str_eq(v, "7");
    free(v);
    /* A new owner starts from the committed offsets and sees the state. */
    sp_store *st2 = open_store(1000, NULL);
    cr_assert_eq(sp_store_assign(st2, 3, topics, 2, offs), SP_OK);
    cr_assert_eq(offs[0], 42);
    cr_assert_eq(offs[1], 7);
    cr_assert_eq(sp_store_get(st2, 3, "u:alice", &o), SP_OK);
    cr_assert_eq(sp_obj_get_int(o, "view", 0), 2);
    cr_assert_str_eq(sp_obj_get_str(o, "name"), "Alice");
    sp_store_destroy(st2);
    sp_store_destroy(st);
}

Test(store, old_owner_is_fenced_and_writes_nothing, .init = start, .fini = stop) {
    sp_store *a = open_store(1000, NULL), *b = open_store(1000, NULL);
    const char *topics[] = {"t"};
    int64_t offs[1];
    cr_assert_eq(sp_store_assign(a, 0, topics, 1, offs), SP_OK);
    cr_assert_eq(sp_store_assign(b, 0, topics, 1, offs), SP_OK); /* takes over */
    sp_obj *o;
    cr_assert_eq(sp_store_get(a, 0, "u:x", &o), SP_OK);
    sp_obj_incr(o, "view", 1);
    int64_t next[] = {10};
    cr_assert_eq(sp_store_commit(a, 0, topics, next, 1), SP_ERR_FENCED);
    cr_assert_null(hget("{p0}:u:x", "view"));
    cr_assert_null(hget("{p0}:meta", "off:t"));
    cr_assert_not(sp_store_owns(a, 0));
    /* The new owner commits fine. */
    cr_assert_eq(sp_store_get(b, 0, "u:x", &o), SP_OK);
    sp_obj_incr(o, "view", 1);
    cr_assert_eq(sp_store_commit(b, 0, topics, next, 1), SP_OK);
    char *v = hget("{p0}:u:x", "view");
    cr_assert_str_eq(v, "1");
    free(v);
    sp_store_destroy(a);
    sp_store_destroy(b);
}

Test(store, prefetch_loads_misses_and_eviction_keeps_values, .init = start, .fini = stop) {
    sp_store *st = open_store(16, NULL);
    const char *topics[] = {"t"};
    int64_t offs[1], next[1] = {1};
    cr_assert_eq(sp_store_assign(st, 1, topics, 1, offs), SP_OK);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "u:%d", i);
        sp_store_want(st, 1, key);
    }
    cr_assert_eq(sp_store_prefetch(st), SP_OK);
    for (int i = 0; i < 100; i++) {
        sp_obj *o;
        snprintf(key, sizeof key, "u:%d", i);
        cr_assert_eq(sp_store_get(st, 1, key, &o), SP_OK);
        sp_obj_incr(o, "n", i);
    }
    cr_assert_eq(sp_store_commit(st, 1, topics, next, 1), SP_OK);
    sp_store_end_batch(st);
    cr_assert_leq(sp_store_cached(st), 16, "cache holds %zu", sp_store_cached(st));
    for (int i = 0; i < 100; i++) {
        sp_obj *o;
        snprintf(key, sizeof key, "u:%d", i);
        cr_assert_eq(sp_store_get(st, 1, key, &o), SP_OK);
        cr_assert_eq(sp_obj_get_int(o, "n", -1), i == 0 ? 0 : i);
    }
    sp_store_destroy(st);
}

static void *restart_later(void *arg) {
    (void)arg;
    sp_t_sleep_ms(1500);
    sp_t_redis_restart(&redis);
    return NULL;
}

Test(store, commit_waits_out_a_redis_outage, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    const char *topics[] = {"t"};
    int64_t offs[1], next[1] = {99};
    cr_assert_eq(sp_store_assign(st, 2, topics, 1, offs), SP_OK);
    sp_obj *o;
    cr_assert_eq(sp_store_get(st, 2, "u:y", &o), SP_OK);
    sp_obj_incr(o, "order", 3);
    sp_t_redis_stop(&redis); /* AOF keeps the epoch across the restart */
    pthread_t th;
    pthread_create(&th, NULL, restart_later, NULL);
    cr_assert_eq(sp_store_commit(st, 2, topics, next, 1), SP_OK);
    pthread_join(th, NULL);
    char *v = hget("{p2}:u:y", "order");
    cr_assert_str_eq(v, "3");
    free(v);
    cr_assert_geq(sp_store_reconnects(st), 1);
    sp_store_destroy(st);
}

Test(store, abort_flag_stops_retrying, .init = start, .fini = stop) {
    volatile int flag = 0;
    sp_store *st = open_store(1000, &flag);
    const char *topics[] = {"t"};
    int64_t offs[1], next[1] = {5};
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, offs), SP_OK);
    sp_t_redis_stop(&redis);
    flag = 1;
    cr_assert_eq(sp_store_commit(st, 0, topics, next, 1), SP_ERR_RETRY);
    sp_store_destroy(st);
    sp_t_redis_restart(&redis);
}

/* redis.url carries the password, the database and the unix socket. */
Test(store, url_with_password_database_and_unix_socket) {
    static char sock[300];
    snprintf(sock, sizeof sock, "%s/redis.sock", sp_t_tmpdir());
    const char *extra[] = {"--requirepass", "s3cret-pw", "--unixsocket", sock, NULL};
    cr_assert_eq(sp_t_redis_start_args(&redis, 0, extra, "s3cret-pw"), 0);
    char url[400], err[256];
    const char *topics[] = {"t"};
    int64_t off, next = 9;

    /* Wrong password: a clear error, not a retry loop, and no password in it. */
    snprintf(url, sizeof url, "redis://:wrong-pw@127.0.0.1:%d/0", redis.port);
    sp_store_conf bad = {.url = url, .timeout_ms = 1000, .max_entries = 100};
    cr_assert_null(sp_store_new(&bad, err, sizeof err));
    cr_assert_null(strstr(err, "wrong-pw"));

    snprintf(url, sizeof url, "redis://:s3cret-pw@127.0.0.1:%d/3", redis.port);
    sp_store_conf sc = {.url = url, .timeout_ms = 1000, .max_entries = 100};
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(sp_store_commit(st, 0, topics, &next, 1), SP_OK);
    sp_store_destroy(st);

    /* The same database through the unix socket, with the password as a
     * query parameter, sees the committed offset. */
    snprintf(url, sizeof url, "unix://%s?db=3&password=s3cret-pw", sock);
    sp_store_conf uc = {.url = url, .timeout_ms = 1000, .max_entries = 100};
    st = sp_store_new(&uc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(off, 9);
    sp_store_destroy(st);
    /* ... and database 0 is untouched. */
    snprintf(url, sizeof url, "unix://%s?password=s3cret-pw", sock);
    sp_store_conf zc = {.url = url, .timeout_ms = 1000, .max_entries = 100};
    st = sp_store_new(&zc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(off, -1, "database 0 must be untouched");
    sp_store_destroy(st);
    sp_t_redis_stop(&redis);
}

/* Waits for the next finished transaction (the committer is a thread). */
static sp_txn *reap(sp_store *st) {
    for (int i = 0; i < 500; i++) {
        sp_txn *t = sp_store_reap(st, 20);
        if (t) return t;
    }
    cr_assert_fail("no transaction finished within 10 s");
    return NULL;
}

/* Takes partition 0 of topic "t", counts one view of u:x and prepares its
 * commit (next offset 10), not yet sent. */
static sp_txn *own_and_prepare_a_view(sp_store *st) {
    static const char *topics[] = {"t"};
    static int64_t next[] = {10};
    int64_t offs[1];
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, offs), SP_OK);
    sp_obj *o;
    cr_assert_eq(sp_store_get(st, 0, "u:x", &o), SP_OK);
    sp_obj_incr(o, "view", 1);
    sp_commit c = {0, topics, next, 1, SP_OK};
    return sp_store_prepare(st, &c, 1);
}

/* The field holds want (NULL: absent). */
static void expect_field(const char *key, const char *field, const char *want) {
    char *v = hget(key, field);
    if (!want)
        cr_assert_null(v, "%s %s = %s, want none", key, field, v);
    else
        cr_assert(v && !strcmp(v, want), "%s %s = %s, want %s", key, field, v ? v : "(none)",
                  want);
    free(v);
}

Test(store_async, a_transaction_holds_the_batch_it_was_prepared_from, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    const char *topics[] = {"t"};
    int64_t offs[1];
    cr_assert_eq(sp_store_assign(st, 1, topics, 1, offs), SP_OK);
    sp_obj *o;
    cr_assert_eq(sp_store_get(st, 1, "u:bob", &o), SP_OK);
    sp_obj_incr(o, "view", 3);
    int64_t next1[] = {100};
    sp_commit c1 = {1, topics, next1, 1, SP_OK};
    sp_txn *t1 = sp_store_prepare(st, &c1, 1);
    /* The next batch goes on changing the object before t1 is even sent:
     * t1 must carry the value it was prepared with, not this one. */
    sp_obj_incr(o, "view", 4);
    sp_obj_set_str(o, "last", "shoes");
    cr_assert_null(hget("{p1}:u:bob", "view"), "prepare must not write");
    sp_store_submit(st, t1);
    sp_txn *r1 = reap(st);
    cr_assert_eq(r1, t1);
    cr_assert_eq(r1->rc, SP_OK);
    cr_assert_eq(r1->commits[0].result, SP_OK);
    sp_txn_free(r1);
    expect_field("{p1}:u:bob", "view", "3");
    expect_field("{p1}:u:bob", "last", NULL);
    expect_field("{p1}:meta", "off:t", "100");
    /* The second transaction carries the later changes and offsets. */
    int64_t next2[] = {200};
    sp_commit c2 = {1, topics, next2, 1, SP_OK};
    sp_store_submit(st, sp_store_prepare(st, &c2, 1));
    sp_txn *r2 = reap(st);
    cr_assert_eq(r2->rc, SP_OK);
    sp_txn_free(r2);
    expect_field("{p1}:u:bob", "view", "7");
    expect_field("{p1}:u:bob", "last", "shoes");
    expect_field("{p1}:meta", "off:t", "200");
    sp_store_destroy(st);
}

Test(store_async, transactions_apply_in_order_and_unapplied_objects_stay_cached, .init = start,
     .fini = stop) {
    sp_store *st = open_store(16, NULL); /* a tiny cache: end_batch evicts */
    const char *topics[] = {"t"};
    int64_t offs[1];
    cr_assert_eq(sp_store_assign(st, 2, topics, 1, offs), SP_OK);
    sp_txn *ts[5];
    for (int b = 0; b < 5; b++) {
        for (int u = 0; u < 40; u++) {
            char key[32];
            snprintf(key, sizeof key, "u:%d", u);
            sp_obj *o;
            cr_assert_eq(sp_store_get(st, 2, key, &o), SP_OK);
            sp_obj_incr(o, "n", 1);
        }
        int64_t next[] = {10 * (b + 1)};
        sp_commit c = {2, topics, next, 1, SP_OK};
        ts[b] = sp_store_prepare(st, &c, 1);
        sp_store_end_batch(st);
        /* Nothing applied yet: every object must still be cached, or the
         * next batch would re-read a stale count from Redis. */
        cr_assert_geq(sp_store_cached(st), 40);
    }
    for (int b = 0; b < 5; b++) sp_store_submit(st, ts[b]);
    for (int b = 0; b < 5; b++) {
        sp_txn *t = reap(st);
        cr_assert_eq(t, ts[b], "transactions must come back in submit order");
        cr_assert_eq(t->rc, SP_OK);
        sp_txn_free(t);
    }
    sp_store_end_batch(st);
    cr_assert_leq(sp_store_cached(st), 16, "applied objects are evictable again");
    expect_field("{p2}:u:39", "n", "5");
    expect_field("{p2}:meta", "off:t", "50");
    sp_store_destroy(st);
}

Test(store_async, a_fenced_transaction_writes_nothing_and_revokes, .init = start, .fini = stop) {
    sp_store *a = open_store(1000, NULL), *b = open_store(1000, NULL);
    const char *topics[] = {"t"};
    int64_t offs[1];
    sp_txn *t = own_and_prepare_a_view(a);
    cr_assert_eq(sp_store_assign(b, 0, topics, 1, offs), SP_OK); /* takes over meanwhile */
    sp_store_submit(a, t);
    sp_txn *r = reap(a);
    cr_assert_eq(r->rc, SP_OK);
    cr_assert_eq(r->commits[0].result, SP_ERR_FENCED);
    sp_txn_free(r);
    cr_assert_not(sp_store_owns(a, 0));
    expect_field("{p0}:u:x", "view", NULL);
    expect_field("{p0}:meta", "off:t", NULL);
    sp_store_destroy(a);
    sp_store_destroy(b);
}

Test(store_async, a_stale_refusal_does_not_undo_a_newer_assignment, .init = start, .fini = stop) {
    sp_store *a = open_store(1000, NULL), *b = open_store(1000, NULL);
    const char *topics[] = {"t"};
    int64_t offs[1];
    sp_txn *t = own_and_prepare_a_view(a);
    cr_assert_eq(sp_store_assign(b, 0, topics, 1, offs), SP_OK); /* b takes it ... */
    cr_assert_eq(sp_store_assign(a, 0, topics, 1, offs), SP_OK); /* ... and a gets it back */
    sp_store_submit(a, t);
    sp_txn *r = reap(a);
    cr_assert_eq(r->commits[0].result, SP_ERR_FENCED, "built with the first epoch");
    sp_txn_free(r);
    cr_assert(sp_store_owns(a, 0), "the refusal of an old epoch revoked the new assignment");
    sp_store_destroy(a);
    sp_store_destroy(b);
}
