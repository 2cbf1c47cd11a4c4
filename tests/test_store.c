/* The Redis state store against a real redis-server: URL parsing, the
 * read-through cache, fenced commits with offsets, retry across an outage. */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/numtext.h"
#include "state/store.h"
#include "stream/error.h"
#include "tests/support/harness.h"
#include "tests/support/proxy.h"

static sp_t_redis redis;

static void start(void) { cr_assert_eq(sp_t_redis_start(&redis, 1), 0, "redis-server did not start"); }
static void stop(void) { sp_t_redis_stop(&redis); }

static sp_store *open_store_at(const char *url, int64_t max_entries, volatile int *abort_flag) {
    sp_store_conf sc = {.url = url, .timeout_ms = 1000, .max_entries = max_entries, .abort_flag = abort_flag};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    return st;
}

static sp_store *open_store(int64_t max_entries, volatile int *abort_flag) {
    return open_store_at(redis.url, max_entries, abort_flag);
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

static char *get_str(const char *key) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *r = redisCommand(c, "GET %s", key);
    char *v = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* One batch of partition 0: a counter in a hash and an APPEND (as dedupe
 * queues), neither of which may be applied twice. */
static int commit_batch(sp_store *st, const char *piece, int64_t next) {
    const char *topics[] = {"t"};
    sp_obj *o;
    cr_assert_eq(sp_store_get(st, 0, "u:x", &o), SP_OK);
    sp_obj_incr(o, "view", 1);
    const char *app[] = {"APPEND", "{p0}:log", piece};
    sp_store_tx_cmd(st, 0, 3, app);
    const char *incr[] = {"HINCRBY", "{p0}:tally", "n", "1"};
    sp_store_tx_cmd(st, 0, 4, incr);
    return sp_store_commit(st, 0, topics, &next, 1);
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

/* What commit_batch's commands left in Redis. */
static void expect_batches(const char *log, const char *tally) {
    char *v = get_str("{p0}:log");
    cr_assert_str_eq(v, log);
    free(v);
    v = hget("{p0}:tally", "n");
    cr_assert_str_eq(v, tally);
    free(v);
}

/* A store connected through a proxy (tests/support/proxy.h), owning
 * partition 0, with commit_batch's first batch ("a;") committed. */
static sp_store *proxied_store(sp_t_proxy **px) {
    *px = sp_t_proxy_start(redis.port);
    cr_assert_not_null(*px);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", sp_t_proxy_port(*px));
    sp_store *st = open_store_at(url, 100, NULL);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(commit_batch(st, "a;", 1), SP_OK);
    return st;
}

/* The commit ran in Redis, its reply was lost with the connection: the store
 * sends it again (it cannot know), and Redis must not apply it twice. Seen
 * for real when a cluster master died after replicating a commit it had
 * not acknowledged: dedupe's APPEND doubled on the promoted replica. */
Test(store, a_commit_whose_reply_was_lost_is_sent_again_and_applied_once, .init = start,
     .fini = stop) {
    sp_t_proxy *px;
    sp_store *st = proxied_store(&px);
    sp_t_proxy_arm(px, "EXEC");
    cr_assert_eq(commit_batch(st, "b;", 2), SP_OK);
    cr_assert_eq(sp_t_proxy_dropped(px), 1, "the proxy never swallowed a commit's reply");
    cr_assert_eq(commit_batch(st, "c;", 3), SP_OK);
    expect_batches("a;b;c;", "3");
    expect_field("{p0}:u:x", "view", "3");
    expect_field("{p0}:meta", "off:t", "3");
    sp_store_destroy(st);
    sp_t_proxy_stop(px);
}

/* What another client does to the partition's meta hash between a commit's
 * fence check and its EXEC (see the proxy's interposition). */
static void meta_write(void *arg) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    freeReplyObject(redisCommand(c, (const char *)arg)); /* no % in it */
    redisFree(c);
}

static void meta_rewrite_epoch(void *arg) {
    (void)arg;
    char *e = hget("{p0}:meta", "epoch");
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    freeReplyObject(redisCommand(c, "HSET {p0}:meta epoch %s", e));
    redisFree(c);
    free(e);
}

static const char multi_cmd[] = "*1\r\n$5\r\nMULTI\r\n";

/* A commit whose meta hash was written between WATCH and EXEC (here with
 * the same epoch, as a fenced instance's refused commit does) is discarded
 * by Redis; the store must send it again, and it must apply once. */
Test(store, a_commit_discarded_by_a_write_to_its_meta_hash_is_sent_again_and_applied_once,
     .init = start, .fini = stop) {
    sp_t_proxy *px;
    sp_store *st = proxied_store(&px);
    sp_t_proxy_interpose(px, multi_cmd, 2, meta_rewrite_epoch, NULL);
    cr_assert_eq(commit_batch(st, "b;", 2), SP_OK);
    cr_assert_eq(sp_t_proxy_interposed(px), 1, "the write never went in between");
    cr_assert_eq(commit_batch(st, "c;", 3), SP_OK);
    expect_batches("a;b;c;", "3");
    expect_field("{p0}:meta", "off:t", "3");
    sp_store_destroy(st);
    sp_t_proxy_stop(px);
}

/* A new owner's epoch bump that lands after the fence check passed, before
 * EXEC: the transaction must not apply (WATCH), and the old owner is
 * fenced. */
Test(store, an_epoch_bump_between_the_fence_check_and_exec_fences_the_commit, .init = start,
     .fini = stop) {
    sp_t_proxy *px;
    sp_store *st = proxied_store(&px);
    sp_t_proxy_interpose(px, multi_cmd, 2, meta_write, "HINCRBY {p0}:meta epoch 1");
    int rc = commit_batch(st, "b;", 2);
    cr_assert_eq(rc, SP_ERR_FENCED, "rc %d", rc);
    cr_assert_eq(sp_t_proxy_interposed(px), 1, "the bump never went in between");
    cr_assert_not(sp_store_owns(st, 0));
    expect_batches("a;", "1");
    expect_field("{p0}:meta", "off:t", "1");
    sp_store_destroy(st);
    sp_t_proxy_stop(px);
}

/* Commits of a partition apply in sequence: one whose predecessor is not
 * there fails and writes nothing. */
Test(store, a_commit_over_a_missing_predecessor_fails_and_writes_nothing, .init = start,
     .fini = stop) {
    sp_store *st = open_store(100, NULL);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(commit_batch(st, "a;", 1), SP_OK);
    meta_write("HSET {p0}:meta cseq 0"); /* as if commit 1 had never applied */
    int rc = commit_batch(st, "b;", 2);
    cr_assert_eq(rc, SP_ERR_FATAL, "rc %d", rc);
    expect_batches("a;", "1");
    expect_field("{p0}:meta", "cseq", "0");
    sp_store_destroy(st);
}

/* The commit numbers go on across owners: a new owner's commits are applied,
 * not taken for repeats of the old owner's (which numbered them already). */
Test(store, a_new_owner_numbers_its_commits_after_the_last_applied, .init = start, .fini = stop) {
    sp_store *a = open_store(100, NULL);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(a, 0, topics, 1, &off), SP_OK);
    for (int i = 1; i <= 3; i++) cr_assert_eq(commit_batch(a, "a;", i), SP_OK);
    sp_store_destroy(a);
    sp_store *b = open_store(100, NULL);
    cr_assert_eq(sp_store_assign(b, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(off, 3);
    cr_assert_eq(commit_batch(b, "b;", 4), SP_OK);
    expect_batches("a;a;a;b;", "4");
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

/* A job that records, when it runs, the offset partition 0 has in Redis:
 * it ran before its transaction's commit iff it saw the old one. */
static const char snap_lua[] =
    "redis.call('APPEND', KEYS[2], (redis.call('HGET', KEYS[1], 'off:t') or 'none') .. ';')";

static int snap_runs, snap_frees;

static int snapshot_job(sp_store *conn, void *ctx) {
    const char *argv[] = {"EVAL", snap_lua, "2", "{p0}:meta", "side:snap"};
    size_t lens[5];
    for (int i = 0; i < 5; i++) lens[i] = strlen(argv[i]);
    const char *const *argvs[] = {argv};
    const size_t *lensv[] = {lens};
    int argc = 5;
    redisReply *r = NULL;
    int rc = sp_store_call(conn, 1, &argc, argvs, lensv, &r);
    if (rc == SP_OK && r->type == REDIS_REPLY_ERROR) rc = SP_ERR_FATAL;
    if (r) freeReplyObject(r);
    snap_runs++;
    return ctx ? SP_ERR_FATAL : rc; /* a ctx: fail on purpose */
}

static void snapshot_free(void *ctx) {
    (void)ctx;
    snap_frees++;
}

static void expect_snap(const char *want) {
    char *snap = get_str("side:snap");
    cr_assert(snap && !strcmp(snap, want), "side:snap = %s, want %s", snap ? snap : "(none)",
              want);
    free(snap);
}

Test(store_async, jobs_run_with_the_next_transaction_before_its_commits, .init = start,
     .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    snap_runs = snap_frees = 0;
    sp_store_tx_job(st, snapshot_job, snapshot_free, NULL);
    sp_txn *t = own_and_prepare_a_view(st); /* takes the queued job along */
    sp_store_tx_job(st, snapshot_job, snapshot_free, NULL); /* the next one's */
    char *snap = get_str("side:snap");
    cr_assert_null(snap, "a job must wait for its transaction, not run at once");
    cr_assert_eq(snap_runs, 0);
    sp_store_submit(st, t);
    sp_txn *r = reap(st);
    cr_assert_eq(r->rc, SP_OK);
    cr_assert_eq(r->commits[0].result, SP_OK);
    sp_txn_free(r);
    expect_snap("none;"); /* ran once, before the commit */
    expect_field("{p0}:meta", "off:t", "10");
    cr_assert_eq(snap_frees, 1);
    /* The second goes with the next transaction; a synchronous commit runs
     * it as well, before its own offsets. */
    const char *topics[] = {"t"};
    int64_t next[] = {20};
    cr_assert_eq(sp_store_commit(st, 0, topics, next, 1), SP_OK);
    expect_snap("none;10;");
    expect_field("{p0}:meta", "off:t", "20");
    cr_assert_eq(snap_runs, 2);
    cr_assert_eq(snap_frees, 2);
    /* One never run (no transaction followed) is freed with the store. */
    sp_store_tx_job(st, snapshot_job, snapshot_free, NULL);
    sp_store_destroy(st);
    cr_assert_eq(snap_runs, 2);
    cr_assert_eq(snap_frees, 3);
}

Test(store_async, a_failed_job_fails_its_transaction_before_the_commits, .init = start,
     .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    static int fail = 1;
    sp_store_tx_job(st, snapshot_job, NULL, &fail);
    sp_txn *t = own_and_prepare_a_view(st);
    sp_store_submit(st, t);
    sp_txn *r = reap(st);
    cr_assert_eq(r->rc, SP_ERR_FATAL);
    sp_txn_free(r);
    expect_snap("none;");
    expect_field("{p0}:meta", "off:t", NULL);
    expect_field("{p0}:u:x", "view", NULL);
    sp_store_destroy(st);
}

/* ------------------------------------------------------ typed fields
 *
 * The cache keeps numbers binary and writes their text only when needed;
 * everything below pins that the text, and what reads return, are exactly
 * what the text cache gave: "%lld", "%.17g", strtoll and strtod of the text. */

#include <math.h>

#include "state/numtext.h"

static void expect_g17(double v) {
    char got[SP_G17_MAX], want[64];
    size_t n = sp_g17(v, got);
    snprintf(want, sizeof want, "%.17g", v);
    cr_assert(!strcmp(got, want) && n == strlen(want), "sp_g17(%a) = %s, printf says %s", v, got,
              want);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Doubles that sit on the fast paths' edges, and the ones callers pass. */
static const double edge_doubles[] = {
    0.0, -0.0, 0.1, 0.2, 0.3, 1.0 / 3, 2.5, -1.5, 19.99, 1e300, -1e300, 5e-324, 2.2250738585072014e-308,
    1e-14, 9.9999999999999998e-15, 1e-15, 1e-5, 1.5e-5, 1e-4, 9.9999999999999995e-5, 0.001,
    1e16, 1e17, 99999999999999984.0, 1e20, 1e22, 9007199254740992.0, 9007199254740993.0,
    4503599627370495.5, 1234567890123456.25, 1234567890123456.75, 0.99999999999999989,
    0.99999999999999994, 123456.789, -123456.789, 1.7976931348623157e308, INFINITY, -INFINITY,
    NAN, -NAN, 3.0, -3.0, 1e15 + 0.5,
};

Test(numtext, g17_is_printf_byte_for_byte) {
    for (size_t i = 0; i < sizeof edge_doubles / sizeof *edge_doubles; i++)
        expect_g17(edge_doubles[i]);
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 300000; i++) {
        uint64_t r = rng_next(&s);
        double v;
        memcpy(&v, &r, sizeof v); /* any bit pattern */
        expect_g17(v);
        expect_g17((double)(int64_t)(rng_next(&s) % 2000000000) / 100.0); /* prices */
        expect_g17(ldexp((double)(rng_next(&s) >> 11), (int)(rng_next(&s) % 140) - 110));
        expect_g17(-(double)(rng_next(&s) % 100000) / (double)(1 + rng_next(&s) % 1000));
    }
}

/* Takes partition 5 of topic "t" and returns its object u:typed. */
static sp_obj *typed_obj(sp_store *st) {
    static const char *topics[] = {"t"};
    int64_t offs[1];
    cr_assert_eq(sp_store_assign(st, 5, topics, 1, offs), SP_OK);
    sp_obj *o;
    cr_assert_eq(sp_store_get(st, 5, "u:typed", &o), SP_OK);
    return o;
}

static void commit5(sp_store *st, int64_t next) {
    static const char *topics[] = {"t"};
    cr_assert_eq(sp_store_commit(st, 5, topics, &next, 1), SP_OK);
}

static int same_double(double a, double b) {
    return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a);
}

static const int64_t edge_ints[] = {0, 1, -1, 9, 10, -10, 1234567890123, INT64_MAX, INT64_MIN,
                                    INT64_MAX - 1, INT64_MIN + 1, 9007199254740993LL};

Test(store_typed, numbers_round_trip_through_cache_and_redis, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    char name[32], want[64];
    size_t ni = sizeof edge_ints / sizeof *edge_ints, nd = sizeof edge_doubles / sizeof *edge_doubles;
    for (size_t i = 0; i < ni; i++) {
        snprintf(name, sizeof name, "i%zu", i);
        sp_obj_set_int(o, name, edge_ints[i]);
        cr_assert_eq(sp_obj_get_int(o, name, 7), edge_ints[i]);
        cr_assert(same_double(sp_obj_get_double(o, name, 7), (double)edge_ints[i]));
        snprintf(want, sizeof want, "%lld", (long long)edge_ints[i]);
        cr_assert_str_eq(sp_obj_get_str(o, name), want);
    }
    for (size_t i = 0; i < nd; i++) {
        snprintf(name, sizeof name, "d%zu", i);
        sp_obj_set_double(o, name, edge_doubles[i]);
        cr_assert(same_double(sp_obj_get_double(o, name, 7), edge_doubles[i]), "%s", name);
        snprintf(want, sizeof want, "%.17g", edge_doubles[i]);
        cr_assert_eq(sp_obj_get_int(o, name, 7), strtoll(want, NULL, 10), "%s", name);
        if (i % 2) cr_assert_str_eq(sp_obj_get_str(o, name), want); /* half of them unread */
    }
    commit5(st, 1);
    /* Redis holds the texts printf gave, and a new owner reads them back
     * exactly -- then counts on from them. */
    for (size_t i = 0; i < nd; i++) {
        snprintf(name, sizeof name, "d%zu", i);
        snprintf(want, sizeof want, "%.17g", edge_doubles[i]);
        expect_field("{p5}:u:typed", name, want);
    }
    sp_store *st2 = open_store(1000, NULL);
    sp_obj *o2 = typed_obj(st2);
    for (size_t i = 0; i < ni; i++) {
        snprintf(name, sizeof name, "i%zu", i);
        snprintf(want, sizeof want, "%lld", (long long)edge_ints[i]);
        expect_field("{p5}:u:typed", name, want);
        cr_assert_eq(sp_obj_get_int(o2, name, 7), edge_ints[i]);
        cr_assert_str_eq(sp_obj_get_str(o2, name), want);
        if (edge_ints[i] < INT64_MAX - 5) sp_obj_incr(o2, name, 5);
    }
    for (size_t i = 0; i < nd; i++) {
        snprintf(name, sizeof name, "d%zu", i);
        cr_assert(same_double(sp_obj_get_double(o2, name, 7), edge_doubles[i]), "%s", name);
        sp_obj_incrf(o2, name, 0.1);
    }
    commit5(st2, 2);
    for (size_t i = 0; i < ni; i++) {
        snprintf(name, sizeof name, "i%zu", i);
        long long v = edge_ints[i] < INT64_MAX - 5 ? (long long)edge_ints[i] + 5 : (long long)edge_ints[i];
        snprintf(want, sizeof want, "%lld", v);
        expect_field("{p5}:u:typed", name, want);
    }
    for (size_t i = 0; i < nd; i++) {
        snprintf(name, sizeof name, "d%zu", i);
        snprintf(want, sizeof want, "%.17g", edge_doubles[i] + 0.1);
        expect_field("{p5}:u:typed", name, want);
    }
    sp_store_destroy(st2);
    sp_store_destroy(st);
}

/* A field changes kind with each set, and reads follow its text: a double
 * read as an integer is strtoll of its "%.17g" (truncation, or the
 * mantissa's first digits past 1e17), as it always was. */
Test(store_typed, a_field_changes_type_and_reads_follow_its_text, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    sp_obj_set_str(o, "f", "abc");
    cr_assert_eq(sp_obj_get_int(o, "f", 7), 0);
    sp_obj_set_int(o, "f", -42);
    cr_assert_str_eq(sp_obj_get_str(o, "f"), "-42");
    sp_obj_set_double(o, "f", 2.75);
    cr_assert_eq(sp_obj_get_int(o, "f", 7), 2);
    cr_assert_str_eq(sp_obj_get_str(o, "f"), "2.75");
    sp_obj_set_double(o, "f", 1e20);
    cr_assert_eq(sp_obj_get_int(o, "f", 7), 1);
    sp_obj_incr(o, "f", 1); /* strtoll("1e+20") + 1 */
    cr_assert_str_eq(sp_obj_get_str(o, "f"), "2");
    sp_obj_set_str(o, "f", "12");
    cr_assert_eq(sp_obj_get_int(o, "f", 7), 12);
    sp_obj_incrf(o, "f", 0.5);
    cr_assert_str_eq(sp_obj_get_str(o, "f"), "12.5");
    sp_obj_set_str(o, "f", "back to text");
    cr_assert_str_eq(sp_obj_get_str(o, "f"), "back to text");
    cr_assert(same_double(sp_obj_get_double(o, "f", 7), 0.0));
    commit5(st, 1);
    expect_field("{p5}:u:typed", "f", "back to text");

    /* Texts written by someone else, in forms "%lld"/"%.17g" do not
     * produce, are kept as they are, and read as strtoll/strtod read them. */
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    freeReplyObject(redisCommand(c, "HSET {p5}:u:other a 007 b 2.5 c -0 d +3 e 1e3 f 0x10 g nan h -0"));
    redisFree(c);
    sp_obj *p;
    cr_assert_eq(sp_store_get(st, 5, "u:other", &p), SP_OK);
    cr_assert_eq(sp_obj_get_int(p, "a", 0), 7);
    cr_assert_str_eq(sp_obj_get_str(p, "a"), "007");
    cr_assert(same_double(sp_obj_get_double(p, "a", 0), 7.0));
    cr_assert_eq(sp_obj_get_int(p, "b", 0), 2);
    cr_assert(same_double(sp_obj_get_double(p, "b", 0), 2.5));
    cr_assert_eq(sp_obj_get_int(p, "b", 0), 2);
    cr_assert_str_eq(sp_obj_get_str(p, "b"), "2.5");
    cr_assert(same_double(sp_obj_get_double(p, "c", 0), -0.0));
    cr_assert_eq(sp_obj_get_int(p, "c", 5), 0);
    cr_assert_str_eq(sp_obj_get_str(p, "c"), "-0");
    cr_assert_eq(sp_obj_get_int(p, "h", 5), 0); /* read as an integer first */
    cr_assert(same_double(sp_obj_get_double(p, "h", 0), -0.0));
    cr_assert_eq(sp_obj_get_int(p, "d", 0), 3);
    cr_assert_str_eq(sp_obj_get_str(p, "d"), "+3");
    cr_assert(same_double(sp_obj_get_double(p, "e", 0), 1000.0));
    cr_assert_eq(sp_obj_get_int(p, "e", 0), 1);
    cr_assert(same_double(sp_obj_get_double(p, "f", 0), 16.0));
    cr_assert(isnan(sp_obj_get_double(p, "g", 0)));
    sp_obj_incr(p, "a", 1);
    cr_assert_str_eq(sp_obj_get_str(p, "a"), "8");
    sp_obj_incrf(p, "b", 0.25);
    cr_assert_str_eq(sp_obj_get_str(p, "b"), "2.75");
    sp_store_destroy(st);
}

/* Many fields: lookups stay right while the field array and its index
 * grow, names keep their order, and texts handed out stay put. */
Test(store_typed, many_fields_and_pointers_that_stay_valid, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    sp_obj_set_str(o, "s", "kept");
    sp_obj_set_int(o, "n", 41);
    const char *s = sp_obj_get_str(o, "s"), *n = sp_obj_get_str(o, "n");
    const char *sname = sp_obj_field_name(o, 0);
    char name[32], want[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "field_%d", i);
        if (i % 3 == 0) sp_obj_set_int(o, name, i);
        else if (i % 3 == 1) sp_obj_set_double(o, name, i + 0.5);
        else sp_obj_set_str(o, name, name);
        /* every earlier field is still found */
        for (int j = 0; j <= i; j += 1 + i / 10) {
            snprintf(name, sizeof name, "field_%d", j);
            if (j % 3 == 0) cr_assert_eq(sp_obj_get_int(o, name, -1), j);
            else if (j % 3 == 1) cr_assert(same_double(sp_obj_get_double(o, name, -1), j + 0.5));
            else cr_assert_str_eq(sp_obj_get_str(o, name), name);
        }
    }
    cr_assert_null(sp_obj_get_str(o, "field_300"));
    cr_assert_null(sp_obj_get_str(o, "field_"));
    cr_assert_null(sp_obj_get_str(o, "field_10 "));
    cr_assert_eq(sp_obj_get_int(o, "fie", -9), -9);
    cr_assert_eq(sp_obj_nfields(o), 302);
    cr_assert_eq(s, sp_obj_get_str(o, "s"));
    cr_assert_str_eq(s, "kept");
    cr_assert_str_eq(n, "41");
    cr_assert_eq(sname, sp_obj_field_name(o, 0));
    for (size_t i = 2; i < sp_obj_nfields(o); i++) {
        int k = (int)i - 2;
        snprintf(name, sizeof name, "field_%d", k);
        cr_assert_str_eq(sp_obj_field_name(o, i), name);
        if (k % 3 == 0) snprintf(want, sizeof want, "%d", k);
        else if (k % 3 == 1) snprintf(want, sizeof want, "%.17g", k + 0.5);
        else snprintf(want, sizeof want, "%s", name);
        cr_assert_str_eq(sp_obj_field_value(o, i), want);
    }
    /* A number's text is rewritten in its own buffer: it stays where it was. */
    sp_obj_incr(o, "n", 1);
    cr_assert_eq(sp_obj_get_str(o, "n"), n);
    cr_assert_str_eq(n, "42");
    sp_obj_set_double(o, "n", -2.2250738585072014e-308);
    cr_assert_eq(sp_obj_get_str(o, "n"), n);
    cr_assert_str_eq(n, "-2.2250738585072014e-308");
    sp_store_destroy(st);
}

/* The _f calls reach the field of the name their sp_fname was made from,
 * and no other: what one kind of call writes the other reads, names that
 * are prefixes of each other stay apart, an absent field gives the
 * default, set_str_f stores the len bytes it was given (not up to a NUL),
 * and Redis holds the same texts as for the calls by name. */
Test(store_typed, calls_with_a_hashed_name_reach_the_same_field_as_by_name, .init = start,
     .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    sp_fname n = sp_fname_of("n_view"), nv = sp_fname_of("n_v"), d = sp_fname_of("price_sum"),
             s = sp_fname_of("recent_sessions_ts"), absent = sp_fname_of("n_vie");
    cr_assert_eq(n.len, 6);
    sp_obj_set_int_f(o, &n, 41);
    sp_obj_set_int(o, "n_v", -3);
    cr_assert_eq(sp_obj_get_int(o, "n_view", 0), 41);
    cr_assert_eq(sp_obj_get_int_f(o, &n, 0), 41);
    cr_assert_eq(sp_obj_get_int_f(o, &nv, 0), -3);
    sp_obj_incr_f(o, &n, 1);
    cr_assert_str_eq(sp_obj_get_str_f(o, &n), "42");
    cr_assert_eq(sp_obj_get_int_f(o, &absent, 77), 77);
    cr_assert(same_double(sp_obj_get_double_f(o, &absent, 0.5), 0.5));
    cr_assert_null(sp_obj_get_str_f(o, &absent));
    sp_obj_set_double_f(o, &d, 0.1);
    cr_assert(same_double(sp_obj_get_double(o, "price_sum", 0), 0.1));
    sp_obj_set_double(o, "price_sum", 2.75);
    cr_assert(same_double(sp_obj_get_double_f(o, &d, 0), 2.75));
    cr_assert_str_eq(sp_obj_get_str_f(o, &d), "2.75");
    sp_obj_set_str_f(o, &s, "1700000000000 1699999999000 trailing", 27);
    cr_assert_str_eq(sp_obj_get_str(o, "recent_sessions_ts"), "1700000000000 1699999999000");
    cr_assert_eq(sp_obj_get_str_f(o, &s), sp_obj_get_str(o, "recent_sessions_ts"));
    sp_obj_set_str(o, "recent_sessions_ts", "x");
    cr_assert_str_eq(sp_obj_get_str_f(o, &s), "x");
    sp_obj_set_str_f(o, &s, "", 0);
    cr_assert_str_eq(sp_obj_get_str(o, "recent_sessions_ts"), "");
    /* get_strn_f: the same text, and its length without a strlen */
    size_t len = 99;
    cr_assert_eq(sp_obj_get_strn_f(o, &s, &len), sp_obj_get_str(o, "recent_sessions_ts"));
    cr_assert_eq(len, 0);
    sp_obj_set_str_f(o, &s, "abc def", 7);
    cr_assert_str_eq(sp_obj_get_strn_f(o, &s, &len), "abc def");
    cr_assert_eq(len, 7);
    sp_obj_set_int_f(o, &n, -12345); /* a number's text, written on demand */
    cr_assert_str_eq(sp_obj_get_strn_f(o, &n, &len), "-12345");
    cr_assert_eq(len, 6);
    sp_obj_set_double_f(o, &d, 0.1);
    cr_assert_str_eq(sp_obj_get_strn_f(o, &d, &len), "0.10000000000000001");
    cr_assert_eq(len, 19);
    cr_assert_null(sp_obj_get_strn_f(o, &absent, &len));
    cr_assert_eq(len, 0);
    sp_obj_set_int_f(o, &n, 42);
    sp_obj_set_double_f(o, &d, 2.75);
    sp_obj_set_str_f(o, &s, "", 0);
    cr_assert_eq(sp_obj_nfields(o), 4);
    commit5(st, 1);
    expect_field("{p5}:u:typed", "n_view", "42");
    expect_field("{p5}:u:typed", "n_v", "-3");
    expect_field("{p5}:u:typed", "price_sum", "2.75");
    expect_field("{p5}:u:typed", "recent_sessions_ts", "");
    sp_store_destroy(st);
}

/* Pairs of names of one length with the same hash (FNV-1a 32, found by
 * search): a long name differing in bytes only the compare past the first
 * eight sees, a name shorter than eight bytes and one of exactly eight
 * (each compared as its first eight bytes, zero-padded) and one of ten
 * differing in its first eight. The probe compares the names themselves,
 * and each of a pair is its own field. */
Test(store_typed, names_with_the_same_hash_and_length_are_different_fields, .init = start,
     .fini = stop) {
    static const char *const pairs[][2] = {{"prefix__yCao_suffix__", "prefix__Aaia_suffix__"},
                                           {"n_jCxh", "n_v2la"},
                                           {"n_4FmOyU", "n_zFkqku"},
                                           {"aboBxj_sfx", "abC1la_sfx"}};
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        sp_fname a = sp_fname_of(pairs[i][0]), b = sp_fname_of(pairs[i][1]);
        cr_assert_eq(a.hash, b.hash, "%s", pairs[i][0]);
        cr_assert_eq(a.len, b.len);
        sp_obj_set_int_f(o, &a, (int64_t)i);
        cr_assert_eq(sp_obj_get_int_f(o, &b, -1), -1, "%s found as %s", pairs[i][1], pairs[i][0]);
        sp_obj_set_str(o, pairs[i][1], pairs[i][1]);
        cr_assert_eq(sp_obj_get_int(o, pairs[i][0], -1), (int64_t)i);
        cr_assert_str_eq(sp_obj_get_str_f(o, &b), pairs[i][1]);
    }
    cr_assert_eq(sp_obj_nfields(o), 8);
    sp_store_destroy(st);
}

/* sp_obj_reserve changes no field: a reserve below the count is nothing,
 * and after one above it every field is still found, new ones join in
 * order, and texts handed out before stay where they were. */
Test(store_typed, reserving_room_keeps_every_field_and_text, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    char name[32], want[32];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "r%d", i);
        sp_obj_set_int(o, name, i);
    }
    const char *t = sp_obj_get_str(o, "r3");
    sp_obj_reserve(o, 3);
    sp_obj_reserve(o, 0);
    cr_assert_eq(sp_obj_nfields(o), 5);
    sp_obj_reserve(o, 40);
    cr_assert_eq(sp_obj_nfields(o), 5);
    for (int i = 5; i < 60; i++) { /* past the reserve too */
        snprintf(name, sizeof name, "r%d", i);
        sp_obj_set_int(o, name, i);
    }
    cr_assert_eq(sp_obj_nfields(o), 60);
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof name, "r%d", i);
        snprintf(want, sizeof want, "%d", i);
        cr_assert_str_eq(sp_obj_field_name(o, (size_t)i), name);
        cr_assert_eq(sp_obj_get_int(o, name, -1), i, "%s", name);
        cr_assert_str_eq(sp_obj_field_value(o, (size_t)i), want);
    }
    cr_assert_null(sp_obj_get_str(o, "r60"));
    cr_assert_eq(sp_obj_get_str(o, "r3"), t);
    commit5(st, 1);
    expect_field("{p5}:u:typed", "r59", "59");
    sp_store_destroy(st);
}

/* Keys carry their partition in decimal, on both sides of each width
 * make_key writes apart (one digit, two, more): each object lands under
 * its own hash tag, and the cache tells them apart. */
Test(store_typed, keys_of_every_partition_width, .init = start, .fini = stop) {
    static const int32_t parts[] = {0, 9, 10, 99, 100, 12345};
    static const char *topics[] = {"t"};
    sp_store *st = open_store(1000, NULL);
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        int64_t offs[1], next = 1;
        cr_assert_eq(sp_store_assign(st, parts[i], topics, 1, offs), SP_OK);
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, parts[i], "u:w", &o), SP_OK);
        cr_assert_eq(sp_obj_nfields(o), 0, "p%d", parts[i]);
        sp_obj_set_int(o, "p", parts[i]);
        cr_assert_eq(sp_store_commit(st, parts[i], topics, &next, 1), SP_OK);
    }
    char key[64], want[16];
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        snprintf(key, sizeof key, "{p%d}:u:w", parts[i]);
        snprintf(want, sizeof want, "%d", parts[i]);
        expect_field(key, "p", want);
    }
    sp_store_destroy(st);
}

/* sp_obj_reserve on an object with no text yet takes one piece of arena
 * for the reserved fields' numbers: twenty numbers set after it have their
 * texts SP_G17_MAX bytes apart, in order (without it they took three
 * chunks); each value stays its own, in the cache and in Redis. */
Test(store_typed, reserving_room_for_a_new_object_keeps_its_texts_together, .init = start,
     .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    cr_assert_eq(sp_obj_nfields(o), 0);
    sp_obj_reserve(o, 20);
    const char *t[20];
    char name[32], want[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "n%d", i);
        sp_obj_set_int(o, name, 1000 + i);
        t[i] = sp_obj_get_str(o, name);
    }
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "n%d", i);
        snprintf(want, sizeof want, "%d", 1000 + i);
        cr_assert_eq(t[i] - t[0], (ptrdiff_t)i * SP_G17_MAX, "n%d", i);
        cr_assert_str_eq(t[i], want);
        cr_assert_eq(sp_obj_get_str(o, name), t[i]);
    }
    commit5(st, 1);
    expect_field("{p5}:u:typed", "n0", "1000");
    expect_field("{p5}:u:typed", "n19", "1019");
    sp_store_destroy(st);
}

/* The property: random sets, increments and reads on random fields agree
 * with a reference that keeps every field as plain printf text, through
 * commits and restarts (objects reloaded from Redis); and Redis ends up
 * holding the reference's texts. */
#define PROP_FIELDS 24
#define PROP_TEXT 64

struct ref {
    char v[PROP_FIELDS][PROP_TEXT];
    int set[PROP_FIELDS];
};

static double pick_double(uint64_t *s) {
    switch (rng_next(s) % 5) {
    case 0: return edge_doubles[rng_next(s) % (sizeof edge_doubles / sizeof *edge_doubles)];
    case 1: return (double)(int64_t)(rng_next(s) % 100000) / 100.0;
    case 2: return (double)((int64_t)(rng_next(s) % 2000001) - 1000000);
    case 3: return ldexp((double)(rng_next(s) >> 11), (int)(rng_next(s) % 100) - 80);
    default: {
        uint64_t r = rng_next(s);
        double v;
        memcpy(&v, &r, sizeof v);
        return v;
    }
    }
}

static int64_t pick_int(uint64_t *s) {
    switch (rng_next(s) % 3) {
    case 0: return (int64_t)(rng_next(s) % 2001) - 1000;
    case 1: return edge_ints[rng_next(s) % (sizeof edge_ints / sizeof *edge_ints)] / 2;
    default: return (int64_t)(rng_next(s) >> 2) - (INT64_MAX / 4);
    }
}

static const char *const prop_strs[] = {"", "x", "12", "-7", "2.5", "-0", "007", "1e3", "nan", "a b c"};

Test(store_typed, random_operations_agree_with_a_text_reference, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    static struct ref ref;
    memset(&ref, 0, sizeof ref);
    uint64_t s = 0x2545f4914f6cdd1dULL;
    int64_t next = 1;
    char name[16];
    for (int step = 0; step < 60000; step++) {
        int k = (int)(rng_next(&s) % PROP_FIELDS);
        snprintf(name, sizeof name, "f%d", k);
        char *r = ref.v[k];
        switch (rng_next(&s) % 9) {
        case 0: {
            int64_t v = pick_int(&s);
            sp_obj_set_int(o, name, v);
            snprintf(r, PROP_TEXT, "%lld", (long long)v);
            ref.set[k] = 1;
            break;
        }
        case 1: {
            double v = pick_double(&s);
            sp_obj_set_double(o, name, v);
            snprintf(r, PROP_TEXT, "%.17g", v);
            ref.set[k] = 1;
            break;
        }
        case 2: {
            const char *v = prop_strs[rng_next(&s) % (sizeof prop_strs / sizeof *prop_strs)];
            sp_obj_set_str(o, name, v);
            snprintf(r, PROP_TEXT, "%s", v);
            ref.set[k] = 1;
            break;
        }
        case 3: {
            int64_t by = (int64_t)(rng_next(&s) % 21) - 10;
            long long cur = ref.set[k] ? strtoll(r, NULL, 10) : 0;
            if ((by > 0 && cur > INT64_MAX - by) || (by < 0 && cur < INT64_MIN - by)) break;
            sp_obj_incr(o, name, by);
            snprintf(r, PROP_TEXT, "%lld", cur + by);
            ref.set[k] = 1;
            break;
        }
        case 4: {
            double by = (double)((int64_t)(rng_next(&s) % 2001) - 1000) / 8.0;
            double cur = ref.set[k] ? strtod(r, NULL) : 0;
            sp_obj_incrf(o, name, by);
            snprintf(r, PROP_TEXT, "%.17g", cur + by);
            ref.set[k] = 1;
            break;
        }
        case 5:
            cr_assert_eq(sp_obj_get_int(o, name, -99), ref.set[k] ? strtoll(r, NULL, 10) : -99,
                         "step %d %s (%s)", step, name, r);
            break;
        case 6:
            cr_assert(same_double(sp_obj_get_double(o, name, -99),
                                  ref.set[k] ? strtod(r, NULL) : -99),
                      "step %d %s (%s)", step, name, r);
            break;
        case 7: {
            const char *got = sp_obj_get_str(o, name);
            if (!ref.set[k])
                cr_assert_null(got, "step %d %s", step, name);
            else
                cr_assert(got && !strcmp(got, r), "step %d %s = %s, want %s", step, name,
                          got ? got : "(none)", r);
            break;
        }
        default:
            if (rng_next(&s) % 50) break;
            commit5(st, next++);
            if (rng_next(&s) % 4 == 0) { /* a restart: everything reloads */
                sp_store_destroy(st);
                st = open_store(1000, NULL);
                o = typed_obj(st);
            }
        }
    }
    commit5(st, next);
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *all = redisCommand(c, "HGETALL {p5}:u:typed");
    cr_assert_eq(all->type, REDIS_REPLY_ARRAY);
    int seen = 0;
    for (size_t i = 0; i + 1 < all->elements; i += 2) {
        int k = atoi(all->element[i]->str + 1);
        cr_assert(ref.set[k]);
        cr_assert_str_eq(all->element[i + 1]->str, ref.v[k], "%s", all->element[i]->str);
        seen++;
    }
    int want = 0;
    for (int k = 0; k < PROP_FIELDS; k++) want += ref.set[k];
    cr_assert_eq(seen, want);
    freeReplyObject(all);
    redisFree(c);
    sp_store_destroy(st);
}

/* sp_store_tx_cmd keeps each command in one block, its arguments' lengths
 * measured ahead for the first eight: a command with more arguments than
 * that, and a long one, arrive whole. */
Test(store, tx_cmd_keeps_every_argument_of_wide_and_long_commands, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(st, 0, topics, 1, &off), SP_OK);
    const char *hset[] = {"HSET", "{p0}:wide", "f1", "v1", "f2", "v2", "f3", "v3",
                          "f4", "v4", "f5", "v5", "f6", "a value longer than the others"};
    sp_store_tx_cmd(st, 0, 14, hset);
    char *text = malloc(10001);
    for (int i = 0; i < 10000; i++) text[i] = (char)('a' + i % 26);
    text[10000] = '\0';
    const char *app[] = {"APPEND", "{p0}:long", text};
    sp_store_tx_cmd(st, 0, 3, app);
    int64_t next = 1;
    cr_assert_eq(sp_store_commit(st, 0, topics, &next, 1), SP_OK);
    expect_field("{p0}:wide", "f1", "v1");
    expect_field("{p0}:wide", "f4", "v4"); /* arguments 8 and 9 */
    expect_field("{p0}:wide", "f5", "v5");
    expect_field("{p0}:wide", "f6", "a value longer than the others");
    char *v = get_str("{p0}:long");
    cr_assert_str_eq(v, text);
    free(v);
    free(text);
    sp_store_destroy(st);
}

/* ------------------------------------------------ the cache's memory */

/* A text of len bytes, its bytes a function of seed, none of them NUL. */
static void fill_text(char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)('a' + (seed + i * 7) % 26);
    buf[len] = '\0';
}

/* The lengths a text goes through: each side of a number's room (32 bytes
 * with the NUL), of a buffer carved from the object's arena or allocated
 * apart (128), of growth by half again (a text of 85 grows to 128, of 86
 * past it), long ones, then back down to short. */
static const size_t text_lens[] = {0,   1,   30,  31,  32,  33, 84, 85,  86, 126, 127,
                                   128, 129, 200, 999, 300, 64, 5,  0,   40, 129, 85};

/* Every text handed out stays as it was while other fields are set, grow
 * across every bound of their buffers, become numbers and text again, and
 * new fields are added; each field reads back what was set, and so does
 * Redis, and an owner that loads the object afresh. */
Test(store_mem, texts_keep_their_place_while_others_grow_and_shrink, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    enum { NG = 4 };
    static const char *const grow[NG] = {"g", "grown_text_field", "a_field_name_longer_than_24",
                                         "g2"};
    char want[NG][1024], buf[1024], name[48];
    const char *held[NG] = {0};
    size_t nl = sizeof text_lens / sizeof *text_lens, added = 0;
    for (size_t k = 0; k < NG; k++) sp_obj_set_int(o, grow[k], 0); /* first, in this order */
    for (size_t step = 0; step < nl * NG; step++) {
        size_t k = step % NG, len = text_lens[(step / NG + k * 5) % nl];
        fill_text(want[k], len, (unsigned)step);
        sp_obj_set_str(o, grow[k], want[k]);
        held[k] = sp_obj_get_str(o, grow[k]);
        /* a number and back, in the field's own buffer */
        if (step % 3 == 0) {
            sp_obj_set_double(o, grow[k], -1.0 / 3);
            cr_assert_str_eq(sp_obj_get_str(o, grow[k]), "-0.33333333333333331");
            sp_obj_set_str(o, grow[k], want[k]);
            held[k] = sp_obj_get_str(o, grow[k]);
        }
        /* a new field of a length from the list, a number or a text */
        snprintf(name, sizeof name, "added_%zu", added++);
        fill_text(buf, text_lens[step % nl], (unsigned)step + 100);
        if (step % 2)
            sp_obj_set_str(o, name, buf);
        else
            sp_obj_set_int(o, name, (int64_t)step * -1000003);
        for (size_t j = 0; j < NG; j++)
            if (held[j])
                cr_assert(!strcmp(held[j], want[j]) && sp_obj_get_str(o, grow[j]) == held[j],
                          "step %zu: %s changed or moved", step, grow[j]);
    }
    cr_assert_eq(sp_obj_nfields(o), NG + added);
    for (size_t i = 0; i < added; i++) {
        snprintf(name, sizeof name, "added_%zu", i);
        cr_assert_str_eq(sp_obj_field_name(o, NG + i), name);
        if (i % 2) {
            fill_text(buf, text_lens[i % nl], (unsigned)i + 100);
            cr_assert_str_eq(sp_obj_field_value(o, NG + i), buf, "%s", name);
        } else {
            cr_assert_eq(sp_obj_get_int(o, name, 1), (int64_t)i * -1000003, "%s", name);
        }
    }
    commit5(st, 1);
    sp_store *st2 = open_store(1000, NULL);
    sp_obj *o2 = typed_obj(st2);
    cr_assert_eq(sp_obj_nfields(o2), NG + added);
    for (size_t j = 0; j < NG; j++) {
        expect_field("{p5}:u:typed", grow[j], want[j]);
        cr_assert_str_eq(sp_obj_get_str(o2, grow[j]), want[j]);
    }
    /* The loaded object grows and shrinks as a new one does. */
    const char *kept = sp_obj_get_str(o2, "added_1");
    fill_text(buf, text_lens[1], 101);
    for (size_t i = 0; i < nl; i++) {
        fill_text(want[0], text_lens[i], (unsigned)i);
        sp_obj_set_str(o2, grow[0], want[0]);
        cr_assert_str_eq(sp_obj_get_str(o2, grow[0]), want[0]);
        cr_assert_str_eq(kept, buf);
    }
    sp_store_destroy(st2);
    sp_store_destroy(st);
}

/* Objects share their field names: a name handed out by field_name stays
 * put and unchanged while other objects with the same names leave the
 * cache (revoked) and thousands of other names come and go; and objects
 * loaded again afterwards find their fields by those names. */
Test(store_mem, field_names_outlive_other_objects_with_the_same_names, .init = start,
     .fini = stop) {
    static const char *topics[] = {"t"};
    static const char *const shared[] = {"events", "n_view", "a_long_shared_field_name_of_40_bytes_",
                                         "x"};
    enum { NS = sizeof shared / sizeof *shared, NOBJ = 40 };
    sp_store *st = open_store(100000, NULL);
    int64_t offs[1];
    cr_assert_eq(sp_store_assign(st, 5, topics, 1, offs), SP_OK);
    cr_assert_eq(sp_store_assign(st, 6, topics, 1, offs), SP_OK);
    char suffix[32], name[48];
    sp_obj *keep;
    cr_assert_eq(sp_store_get(st, 5, "u:keep", &keep), SP_OK);
    for (int i = 0; i < NS; i++) sp_obj_set_int(keep, shared[i], i);
    const char *names[NS];
    for (int i = 0; i < NS; i++) names[i] = sp_obj_field_name(keep, (size_t)i);
    for (int n = 0; n < NOBJ; n++) {
        snprintf(suffix, sizeof suffix, "u:%d", n);
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, 6, suffix, &o), SP_OK);
        for (int i = 0; i < NS; i++) sp_obj_set_int(o, shared[i], n * 10 + i);
        for (int i = 0; i < 50; i++) { /* names of this object alone */
            snprintf(name, sizeof name, "own_%d_%d", n, i);
            sp_obj_set_int(o, name, i);
        }
    }
    int64_t next = 1;
    cr_assert_eq(sp_store_commit(st, 6, topics, &next, 1), SP_OK);
    sp_store_revoke(st, 6);
    /* thousands of new names: the name table is rebuilt, unused names go */
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "later_%d", i);
        sp_obj_set_int(keep, name, i);
    }
    for (int i = 0; i < NS; i++) {
        cr_assert_eq(sp_obj_field_name(keep, (size_t)i), names[i]);
        cr_assert_str_eq(names[i], shared[i]);
        cr_assert_eq(sp_obj_get_int(keep, shared[i], -1), i);
    }
    for (int i = 0; i < 3000; i += 7) {
        snprintf(name, sizeof name, "later_%d", i);
        cr_assert_eq(sp_obj_get_int(keep, name, -1), i);
        cr_assert_str_eq(sp_obj_field_name(keep, (size_t)(NS + i)), name);
    }
    cr_assert_eq(sp_store_assign(st, 6, topics, 1, offs), SP_OK);
    for (int n = 0; n < NOBJ; n++) {
        snprintf(suffix, sizeof suffix, "u:%d", n);
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, 6, suffix, &o), SP_OK);
        cr_assert_eq(sp_obj_nfields(o), NS + 50);
        for (int i = 0; i < NS; i++) cr_assert_eq(sp_obj_get_int(o, shared[i], -1), n * 10 + i);
        snprintf(name, sizeof name, "own_%d_%d", n, 49);
        cr_assert_eq(sp_obj_get_int(o, name, -1), 49);
    }
    sp_store_destroy(st);
}

/* The property over several objects at once: random sets of short and long
 * texts, of numbers, increments and reads, on fields whose names the
 * objects share (short and long names) or have alone; texts held from
 * get_str across later changes of other fields; batches that end with the
 * cache over its bound, so clean objects are evicted and loaded again, and
 * restarts. Everything read agrees with a reference of plain printf texts,
 * every held text is unchanged until its field is next set, and Redis ends
 * up holding the reference's texts. */
#define MEM_OBJS 6
#define MEM_FIELDS 40
#define MEM_TEXT 1024 /* above the longest of text_lens */

struct mem_ref {
    char v[MEM_OBJS][MEM_FIELDS][MEM_TEXT];
    int set[MEM_OBJS][MEM_FIELDS];
    const char *held[MEM_OBJS][MEM_FIELDS]; /* until the field is set or the batch ends */
};

static void mem_name(char *buf, size_t size, int obj, int k) {
    if (k % 4 == 3)
        snprintf(buf, size, "own_%d_%d", obj, k);
    else if (k % 5 == 0)
        snprintf(buf, size, "a_field_name_shared_by_every_object_%d", k);
    else
        snprintf(buf, size, "s%d", k);
}

static void mem_check_held(const struct mem_ref *ref, int obj, int step) {
    for (int k = 0; k < MEM_FIELDS; k++)
        if (ref->held[obj][k])
            cr_assert(!strcmp(ref->held[obj][k], ref->v[obj][k]), "step %d: held text of %d/%d changed",
                      step, obj, k);
}

Test(store_mem, random_operations_on_many_objects_agree_with_a_text_reference, .init = start,
     .fini = stop) {
    sp_store *st = open_store(MEM_OBJS / 2, NULL); /* every batch evicts */
    static const char *topics[] = {"t"};
    int64_t offs[1], next = 1;
    cr_assert_eq(sp_store_assign(st, 5, topics, 1, offs), SP_OK);
    static struct mem_ref ref;
    memset(&ref, 0, sizeof ref);
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    char name[64], suffix[32];
    int step = 0;
    for (int batch = 0; batch < 150; batch++) {
        sp_obj *o[MEM_OBJS];
        for (int j = 0; j < MEM_OBJS; j++) {
            snprintf(suffix, sizeof suffix, "m:%d", j);
            cr_assert_eq(sp_store_get(st, 5, suffix, &o[j]), SP_OK);
        }
        for (int n = 0; n < 200; n++, step++) {
            int j = (int)(rng_next(&s) % MEM_OBJS), k = (int)(rng_next(&s) % MEM_FIELDS);
            mem_name(name, sizeof name, j, k);
            char *r = ref.v[j][k];
            int wrote = 1; /* the cases that set the field */
            switch (rng_next(&s) % 7) {
            case 0: {
                size_t nl = sizeof text_lens / sizeof *text_lens;
                size_t len = rng_next(&s) % 2 ? text_lens[rng_next(&s) % nl] : rng_next(&s) % 600;
                fill_text(r, len, (unsigned)step);
                sp_obj_set_str(o[j], name, r);
                break;
            }
            case 1: {
                int64_t v = pick_int(&s);
                sp_obj_set_int(o[j], name, v);
                snprintf(r, MEM_TEXT, "%lld", (long long)v);
                break;
            }
            case 2: {
                double v = pick_double(&s);
                sp_obj_set_double(o[j], name, v);
                snprintf(r, MEM_TEXT, "%.17g", v);
                break;
            }
            case 3: {
                long long cur = ref.set[j][k] ? strtoll(r, NULL, 10) : 0;
                if (cur > INT64_MAX - 10 || cur < INT64_MIN + 10) {
                    wrote = 0;
                    break;
                }
                sp_obj_incr(o[j], name, 3);
                snprintf(r, MEM_TEXT, "%lld", cur + 3);
                break;
            }
            case 4: {
                const char *got = sp_obj_get_str(o[j], name);
                wrote = 0;
                if (!ref.set[j][k]) {
                    cr_assert_null(got, "step %d %d/%s", step, j, name);
                    break;
                }
                cr_assert(got && !strcmp(got, r), "step %d %d/%s = %.40s, want %.40s", step, j, name,
                          got ? got : "(none)", r);
                ref.held[j][k] = got;
                break;
            }
            case 5:
                cr_assert_eq(sp_obj_get_int(o[j], name, -99),
                             ref.set[j][k] ? strtoll(r, NULL, 10) : -99, "step %d %d/%s", step, j,
                             name);
                wrote = 0;
                break;
            default:
                mem_check_held(&ref, j, step);
                wrote = 0;
            }
            if (wrote) {
                ref.set[j][k] = 1;
                ref.held[j][k] = NULL;
            }
        }
        for (int j = 0; j < MEM_OBJS; j++) {
            int want = 0;
            for (int k = 0; k < MEM_FIELDS; k++) want += ref.set[j][k];
            cr_assert_eq(sp_obj_nfields(o[j]), (size_t)want, "batch %d object %d", batch, j);
            for (size_t i = 0; i < sp_obj_nfields(o[j]); i++) { /* every field, by position */
                const char *fname = sp_obj_field_name(o[j], i);
                int k = -1;
                for (int kk = 0; kk < MEM_FIELDS && k < 0; kk++) {
                    mem_name(name, sizeof name, j, kk);
                    if (!strcmp(name, fname)) k = kk;
                }
                cr_assert(k >= 0 && ref.set[j][k], "unknown field %s", fname);
                cr_assert_str_eq(sp_obj_field_value(o[j], i), ref.v[j][k]);
            }
            mem_check_held(&ref, j, step);
        }
        commit5(st, next++);
        sp_store_end_batch(st);
        memset(ref.held, 0, sizeof ref.held);
        if (batch % 40 == 39) { /* a restart */
            sp_store_destroy(st);
            st = open_store(MEM_OBJS / 2, NULL);
            cr_assert_eq(sp_store_assign(st, 5, topics, 1, offs), SP_OK);
        }
    }
    for (int j = 0; j < MEM_OBJS; j++)
        for (int k = 0; k < MEM_FIELDS; k++) {
            snprintf(suffix, sizeof suffix, "{p5}:m:%d", j); /* the key */
            mem_name(name, sizeof name, j, k);
            expect_field(suffix, name, ref.set[j][k] ? ref.v[j][k] : NULL);
        }
    sp_store_destroy(st);
}

/* The index holds the first 65,535 fields' positions (16 bits); the ones
 * after them are found by a scan. Fields on each side of that bound are
 * found, changed and committed, absent names are not found, and an object
 * loaded with that many fields finds them all. */
Test(store_mem, fields_past_the_index_bound_are_found, .init = start, .fini = stop) {
    enum { BOUND = 65535, N = BOUND + 3 };
    sp_store *st = open_store(1000, NULL);
    sp_obj *o = typed_obj(st);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "b%d", i);
        sp_obj_set_int(o, name, i);
    }
    cr_assert_eq(sp_obj_nfields(o), N);
    static const int probe[] = {0, 1, BOUND - 2, BOUND - 1, BOUND, BOUND + 1, BOUND + 2};
    for (size_t p = 0; p < sizeof probe / sizeof *probe; p++) {
        int i = probe[p];
        snprintf(name, sizeof name, "b%d", i);
        cr_assert_eq(sp_obj_get_int(o, name, -1), i, "%s", name);
        cr_assert_str_eq(sp_obj_field_name(o, (size_t)i), name);
        sp_obj_incr(o, name, 1000000);
    }
    cr_assert_null(sp_obj_get_str(o, "b65538"));
    cr_assert_null(sp_obj_get_str(o, "b"));
    commit5(st, 1);
    sp_store *st2 = open_store(1000, NULL);
    sp_obj *o2 = typed_obj(st2);
    cr_assert_eq(sp_obj_nfields(o2), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "b%d", i);
        int changed = i <= 1 || i >= BOUND - 2;
        cr_assert_eq(sp_obj_get_int(o2, name, -1), changed ? i + 1000000 : i, "%s", name);
    }
    cr_assert_null(sp_obj_get_str(o2, "b65538"));
    sp_store_destroy(st2);
    sp_store_destroy(st);
}

/* What a commit sends, as Redis saw it: MONITOR's lines, each a command's
 * arguments quoted, read until the commit's EXEC. The fence script's own
 * calls ("[0 lua]") are left out. */
struct monitor {
    redisContext *c;
};

static void monitor_start(struct monitor *m) {
    m->c = redisConnect("127.0.0.1", redis.port);
    cr_assert(m->c && !m->c->err);
    redisReply *r = redisCommand(m->c, "MONITOR");
    cr_assert(r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK"));
    freeReplyObject(r);
}

/* The next n commands the monitor saw (the fence script's calls aside),
 * each "<quoted arguments>", into lines[] (the caller frees them). */
static void monitor_read(struct monitor *m, char **lines, size_t n) {
    for (size_t i = 0; i < n;) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(m->c, (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_STATUS);
        if (!strstr(r->str, " lua] ")) lines[i++] = strdup(strstr(r->str, "] ") + 2);
        freeReplyObject(r);
    }
}

static void monitor_stop(struct monitor *m) { redisFree(m->c); }

/* A command line as MONITOR quotes it; the arguments here are printable. */
static void expect_line(const char *got, const char *want) {
    cr_assert(!strcmp(got, want), "sent\n  %s\nwant\n  %s", got, want);
}

/* Regression test for build_commit, which sizes a commit and then copies
 * each argument straight into one buffer: every command and every byte of
 * every argument -- dirty fields of each type only, names and texts of one
 * and three-digit lengths, offsets of two topics, an operator's command --
 * as sent, written out here by hand. */
Test(store, a_commit_sends_exactly_the_dirty_fields_and_commands, .init = start, .fini = stop) {
    sp_store *st = open_store(1000, NULL);
    const char *topics[] = {"t", "orders"};
    int64_t offs[2];
    cr_assert_eq(sp_store_assign(st, 1, topics, 2, offs), SP_OK);
    sp_obj *bob, *item;
    cr_assert_eq(sp_store_get(st, 1, "u:bob", &bob), SP_OK);
    sp_obj_set_str(bob, "kept", "old");
    int64_t next0[] = {5, 6};
    cr_assert_eq(sp_store_commit(st, 1, topics, next0, 2), SP_OK);

    char longtext[151];
    memset(longtext, 'x', 150);
    longtext[150] = '\0';
    sp_obj_incr(bob, "view", 3);
    sp_obj_set_str(bob, "last", "shoes");
    sp_obj_set_double(bob, "score", 2.5);
    sp_obj_set_int(bob, "neg", -42);
    cr_assert_eq(sp_store_get(st, 1, "i:x", &item), SP_OK);
    sp_obj_set_str(item, "long", longtext);
    sp_obj_set_str(item, "empty", "");
    const char *app[] = {"APPEND", "{p1}:log", "b1;"};
    sp_store_tx_cmd(st, 1, 3, app);
    int64_t next1[] = {100, 2000000000000};
    sp_commit c = {1, topics, next1, 2, SP_OK};
    struct monitor m;
    monitor_start(&m);
    sp_txn *t = sp_store_prepare(st, &c, 1);
    sp_store_submit(st, t);
    sp_txn *r = reap(st);
    cr_assert_eq(r->rc, SP_OK);
    cr_assert_eq(r->commits[0].result, SP_OK);
    sp_txn_free(r);

    char *lines[8], want_item[256];
    monitor_read(&m, lines, 8);
    expect_line(lines[0], "\"WATCH\" \"{p1}:meta\"");
    cr_assert(!strncmp(lines[1], "\"EVAL\" \"local e", 15), "%s", lines[1]);
    const char *eval_end = "\" \"1\" \"{p1}:meta\" \"1\" \"2\"";
    cr_assert(strlen(lines[1]) > strlen(eval_end) &&
                  !strcmp(lines[1] + strlen(lines[1]) - strlen(eval_end), eval_end),
              "%s", lines[1]);
    expect_line(lines[2], "\"MULTI\"");
    expect_line(lines[3], "\"HSET\" \"{p1}:meta\" \"cseq\" \"2\" \"off:t\" \"100\" "
                          "\"off:orders\" \"2000000000000\"");
    snprintf(want_item, sizeof want_item, "\"HSET\" \"{p1}:i:x\" \"long\" \"%s\" \"empty\" \"\"",
             longtext);
    expect_line(lines[4], want_item);
    expect_line(lines[5], "\"HSET\" \"{p1}:u:bob\" \"view\" \"3\" \"last\" \"shoes\" "
                          "\"score\" \"2.5\" \"neg\" \"-42\"");
    expect_line(lines[6], "\"APPEND\" \"{p1}:log\" \"b1;\"");
    expect_line(lines[7], "\"EXEC\"");
    for (int i = 0; i < 8; i++) free(lines[i]);
    monitor_stop(&m);
    sp_store_destroy(st);
}

/* Regression test for make_key's partition numbers written digit by digit
 * (under 10, under 100) or by sp_i64toa: on both sides of each bound, the
 * cache reads the hash Redis holds under "{p<part>}:<suffix>", written here
 * by hiredis's formatting of "%d". */
Test(store, keys_of_one_two_and_many_digit_partitions, .init = start, .fini = stop) {
    static const int32_t parts[] = {0, 1, 9, 10, 11, 42, 99, 100, 101, 12345};
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        redisReply *r = redisCommand(c, "HSET {p%d}:u:a part %d", (int)parts[i], (int)parts[i]);
        freeReplyObject(r);
    }
    redisFree(c);
    sp_store *st = open_store(1000, NULL);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, parts[i], "u:a", &o), SP_OK);
        cr_assert_eq(sp_obj_get_int(o, "part", -1), parts[i], "partition %d", (int)parts[i]);
    }
    sp_store_destroy(st);
}
