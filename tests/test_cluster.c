/* Redis Cluster: the slot function against the specification and a real
 * server, the cluster client's redirections (MOVED, ASK, TRYAGAIN) against a
 * real 3-master cluster, the store committing to the node that owns each
 * partition, and the whole pipeline against a 6-node cluster (3 masters, 3
 * replicas): a clean run, kill -9 of the processor, slots migrated mid-stream
 * and a master killed mid-stream (with redis.wait_replicas=1) all end in the
 * state a run against one plain redis-server ends in. */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state/cluster.h"
#include "state/reader.h"
#include "state/store.h"
#include "stream/config.h"
#include "stream/error.h"
#include "tests/support/expect.h"
#include "tests/support/harness.h"

/* ------------------------------------------------------------ slots */

Test(cluster_slot, crc16_and_hash_tags_follow_the_specification) {
    /* The specification's test vector. */
    cr_assert_eq(sp_cluster_crc16("123456789", 9), 0x31C3);
    cr_assert_eq(sp_cluster_keyslot("123456789", 9), 0x31C3 & 16383);
    /* Values CLUSTER KEYSLOT gives (documented examples). */
    cr_assert_eq(sp_cluster_keyslot("foo", 3), 12182);
    cr_assert_eq(sp_cluster_keyslot("somekey", 7), 11058);
    /* Hash tags: same tag, same slot; the first {...} only; empty tag = no tag. */
    const char *a = "{user1000}.following", *b = "{user1000}.followers";
    cr_assert_eq(sp_cluster_keyslot(a, strlen(a)), sp_cluster_keyslot(b, strlen(b)));
    cr_assert_eq(sp_cluster_keyslot(a, strlen(a)), sp_cluster_keyslot("user1000", 8));
    cr_assert_eq(sp_cluster_keyslot("foo{}{bar}", 10), sp_cluster_crc16("foo{}{bar}", 10) & 16383);
    cr_assert_eq(sp_cluster_keyslot("foo{{bar}}zap", 13), sp_cluster_keyslot("{bar", 4));
    cr_assert_eq(sp_cluster_keyslot("foo{bar}{zap}", 13), sp_cluster_keyslot("bar", 3));
    cr_assert_eq(sp_cluster_keyslot("{p7}:u:u000123", 14), sp_cluster_keyslot("{p7}:meta", 9));
    cr_assert_eq(sp_cluster_keyslot("no{close", 8), sp_cluster_crc16("no{close", 8) & 16383);
}

/* ------------------------------------------ client and store (3 masters) */

static sp_t_cluster cl3;

static void start3(void) {
    cr_assert_eq(sp_t_cluster_start(&cl3, 3, 0, 5000), 0, "cluster did not start");
}
static void stop3(void) { sp_t_cluster_stop(&cl3); }

static redisReply *at(int node, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static redisReply *at(int node, const char *fmt, ...) {
    redisContext *c = redisConnect("127.0.0.1", cl3.node[node].port);
    cr_assert(c && !c->err);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    cr_assert_not_null(r);
    return r;
}

static void ok(redisReply *r) {
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "%s", r->str);
    freeReplyObject(r);
}

Test(cluster_slot, matches_cluster_keyslot_of_a_real_server, .init = start3, .fini = stop3) {
    const char *keys[] = {"a", "{p0}:meta", "{p11}:u:u000042", "x{}y", "{}", "{a}{b}",
                          "kpi:uu:{w1767225600000}", "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        redisReply *r = at(0, "CLUSTER KEYSLOT %s", keys[i]);
        cr_assert_eq(r->integer, (long long)sp_cluster_keyslot(keys[i], strlen(keys[i])), "%s",
                     keys[i]);
        freeReplyObject(r);
    }
}

static sp_cluster *client(void) {
    sp_cluster_conf cc = {cl3.seeds, NULL, NULL, 2000, NULL};
    char err[256];
    sp_cluster *c = sp_cluster_new(&cc, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    return c;
}

static redisReply *one(sp_cluster *c, int argc, const char **argv) {
    size_t lens[16];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    size_t *lp = lens;
    redisReply *r = NULL;
    cr_assert_eq(sp_cluster_pipeline(c, 1, &argc, &argv, &lp, &r, NULL), SP_OK);
    return r;
}

/* Moves a slot's keys from node `from` to node `to` the way redis-cli does,
 * leaving it half-way (MIGRATING/IMPORTING) when `finish` is 0. */
static void migrate_begin(int slot, int from, int to) {
    char idf[41], idt[41];
    cr_assert_eq(sp_t_cluster_node_id(&cl3, from, idf), 0);
    cr_assert_eq(sp_t_cluster_node_id(&cl3, to, idt), 0);
    ok(at(to, "CLUSTER SETSLOT %d IMPORTING %s", slot, idf));
    ok(at(from, "CLUSTER SETSLOT %d MIGRATING %s", slot, idt));
}

static void migrate_key(int from, int to, const char *key) {
    ok(at(from, "MIGRATE 127.0.0.1 %d %s 0 5000", cl3.node[to].port, key));
}

static void migrate_finish(int slot, int from, int to) {
    for (;;) {
        redisReply *r = at(from, "CLUSTER GETKEYSINSLOT %d 100", slot);
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) migrate_key(from, to, r->element[i]->str);
        freeReplyObject(r);
        if (!n) break;
    }
    char idt[41];
    cr_assert_eq(sp_t_cluster_node_id(&cl3, to, idt), 0);
    for (int i = 0; i < cl3.n; i++) ok(at(i, "CLUSTER SETSLOT %d NODE %s", slot, idt));
}

Test(cluster_client, follows_ask_during_a_migration_and_moved_after_it, .init = start3,
     .fini = stop3) {
    sp_cluster *c = client();
    const char *set1[] = {"HSET", "{p3}:u:a", "n", "1"};
    const char *set2[] = {"HSET", "{p3}:meta", "epoch", "5"};
    freeReplyObject(one(c, 4, set1));
    freeReplyObject(one(c, 4, set2));
    int slot = (int)sp_cluster_keyslot("{p3}", 4);
    int from = sp_t_cluster_master_of(&cl3, "{p3}"), to = (from + 1) % 3;
    migrate_begin(slot, from, to);
    migrate_key(from, to, "{p3}:u:a");
    /* The key has moved, the slot has not: the old owner answers ASK. */
    const char *get[] = {"HGET", "{p3}:u:a", "n"};
    redisReply *r = one(c, 3, get);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(r->str, "1");
    freeReplyObject(r);
    sp_cluster_stats s;
    sp_cluster_get_stats(c, &s);
    cr_assert_eq(s.ask, 1);
    cr_assert_eq(s.moved, 0);
    migrate_finish(slot, from, to);
    /* Now the map is stale: MOVED, then every later command goes straight. */
    const char *get2[] = {"HGET", "{p3}:meta", "epoch"};
    for (int i = 0; i < 3; i++) {
        r = one(c, 3, get2);
        cr_assert_str_eq(r->str, "5");
        freeReplyObject(r);
    }
    sp_cluster_get_stats(c, &s);
    cr_assert_eq(s.moved, 1);
    cr_assert_geq(s.refreshes, 1);
    sp_cluster_destroy(c);
}

struct finisher {
    int slot, from, to;
};

static void *finish_later(void *arg) {
    struct finisher *f = arg;
    sp_t_sleep_ms(400);
    migrate_finish(f->slot, f->from, f->to);
    return NULL;
}

/* A script over two keys of one slot while only one of them has moved gets
 * TRYAGAIN; the client backs off and succeeds once the migration is over. */
Test(cluster_client, retries_tryagain_until_the_migration_ends, .init = start3, .fini = stop3) {
    sp_cluster *c = client();
    const char *set1[] = {"SET", "{p5}:x", "1"};
    const char *set2[] = {"SET", "{p5}:y", "2"};
    freeReplyObject(one(c, 3, set1));
    freeReplyObject(one(c, 3, set2));
    struct finisher f = {(int)sp_cluster_keyslot("{p5}", 4), sp_t_cluster_master_of(&cl3, "{p5}"),
                         0};
    f.to = (f.from + 1) % 3;
    migrate_begin(f.slot, f.from, f.to);
    migrate_key(f.from, f.to, "{p5}:y");
    pthread_t t;
    pthread_create(&t, NULL, finish_later, &f);
    const char *eval[] = {"EVAL", "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])",
                          "2", "{p5}:x", "{p5}:y"};
    redisReply *r = one(c, 5, eval);
    pthread_join(t, NULL);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
    cr_assert_str_eq(r->str, "12");
    freeReplyObject(r);
    sp_cluster_stats s;
    sp_cluster_get_stats(c, &s);
    cr_assert_gt(s.tryagain, 0);
    sp_cluster_destroy(c);
}

Test(cluster_client, a_pipeline_over_every_master_returns_replies_in_order, .init = start3,
     .fini = stop3) {
    sp_cluster *c = client();
    enum { N = 300 };
    int argcs[N];
    const char **argvs[N];
    size_t *lens[N];
    char keys[N][32], vals[N][16];
    const char *argv[N][3];
    size_t lv[N][3];
    redisReply *replies[N];
    int nodes[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "{p%d}:k%d", i % 24, i);
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        argv[i][0] = "SET";
        argv[i][1] = keys[i];
        argv[i][2] = vals[i];
        for (int j = 0; j < 3; j++) lv[i][j] = strlen(argv[i][j]);
        argcs[i] = 3;
        argvs[i] = argv[i];
        lens[i] = lv[i];
    }
    cr_assert_eq(sp_cluster_pipeline(c, N, argcs, argvs, lens, replies, nodes), SP_OK);
    int per_node[SP_T_CLUSTER_MAX] = {0};
    for (int i = 0; i < N; i++) {
        freeReplyObject(replies[i]);
        argv[i][0] = "GET";
        argcs[i] = 2;
        lv[i][0] = 3;
    }
    cr_assert_eq(sp_cluster_pipeline(c, N, argcs, argvs, lens, replies, nodes), SP_OK);
    for (int i = 0; i < N; i++) {
        cr_assert_str_eq(replies[i]->str, vals[i]);
        freeReplyObject(replies[i]);
        cr_assert(nodes[i] >= 0 && nodes[i] < SP_T_CLUSTER_MAX);
        per_node[nodes[i]]++;
    }
    int used = 0;
    for (int k = 0; k < SP_T_CLUSTER_MAX; k++) used += per_node[k] > 0;
    cr_assert_eq(used, 3, "24 tags should spread over the 3 masters");
    sp_cluster_destroy(c);
}

/* SCRIPT LOAD is per node: broadcast, it makes EVALSHA work on every master. */
Test(cluster_client, script_load_reaches_every_master, .init = start3, .fini = stop3) {
    sp_cluster *c = client();
    const char *load[] = {"SCRIPT", "LOAD", "return KEYS[1]"};
    size_t ll[] = {6, 4, 14};
    redisReply *r = NULL;
    cr_assert_eq(sp_cluster_broadcast(c, 3, load, ll, &r), SP_OK);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    char sha[64];
    snprintf(sha, sizeof sha, "%s", r->str);
    freeReplyObject(r);
    int nodes_used[SP_T_CLUSTER_MAX] = {0};
    for (int p = 0; p < 24; p++) {
        char key[32];
        snprintf(key, sizeof key, "{p%d}:k", p);
        const char *evalsha[] = {"EVALSHA", sha, "1", key};
        size_t lens[] = {7, strlen(sha), 1, strlen(key)};
        int argc = 4, node = -1;
        const char **argv = evalsha;
        size_t *lp = lens;
        cr_assert_eq(sp_cluster_pipeline(c, 1, &argc, &argv, &lp, &r, &node), SP_OK);
        cr_assert_eq(r->type, REDIS_REPLY_STRING, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "");
        cr_assert_str_eq(r->str, key);
        freeReplyObject(r);
        nodes_used[node] = 1;
    }
    int used = 0;
    for (int k = 0; k < SP_T_CLUSTER_MAX; k++) used += nodes_used[k];
    cr_assert_eq(used, 3);
    sp_cluster_destroy(c);
}

Test(cluster_store, commits_each_partition_on_the_node_that_owns_it, .init = start3,
     .fini = stop3) {
    sp_store_conf sc = {.cluster = cl3.seeds, .timeout_ms = 2000, .max_entries = 1000};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    const char *topics[] = {"t.a"};
    int64_t off;
    for (int p = 0; p < 12; p++) {
        cr_assert_eq(sp_store_assign(st, p, topics, 1, &off), SP_OK);
        cr_assert_eq(off, -1);
        sp_store_want(st, p, "u:alice");
    }
    cr_assert_eq(sp_store_prefetch(st), SP_OK);
    for (int p = 0; p < 12; p++) {
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, p, "u:alice", &o), SP_OK);
        sp_obj_incr(o, "view", p + 1);
        const char *z[] = {"ZADD", NULL, "5", "ev1"};
        char dd[32];
        snprintf(dd, sizeof dd, "{p%d}:dd", p);
        z[1] = dd;
        sp_store_tx_cmd(st, p, 4, z);
        int64_t next = 100 + p;
        cr_assert_eq(sp_store_commit(st, p, topics, &next, 1), SP_OK);
    }
    sp_store_destroy(st);
    /* Every partition's keys are on the master of its slot, nowhere else. */
    for (int p = 0; p < 12; p++) {
        char tag[32];
        snprintf(tag, sizeof tag, "{p%d}", p);
        int owner = sp_t_cluster_master_of(&cl3, tag);
        cr_assert_geq(owner, 0);
        redisReply *r = at(owner, "HGET {p%d}:meta off:t.a", p);
        cr_assert_eq(r->type, REDIS_REPLY_STRING);
        cr_assert_eq(atoll(r->str), 100 + p);
        freeReplyObject(r);
        r = at(owner, "HGET {p%d}:u:alice view", p);
        cr_assert_eq(atoll(r->str), p + 1);
        freeReplyObject(r);
        r = at(owner, "ZSCORE {p%d}:dd ev1", p);
        cr_assert_str_eq(r->str, "5");
        freeReplyObject(r);
    }
    /* A second owner reads the offsets back and is fenced off the first. */
    sp_store *a = sp_store_new(&sc, err, sizeof err), *b = sp_store_new(&sc, err, sizeof err);
    cr_assert_eq(sp_store_assign(a, 4, topics, 1, &off), SP_OK);
    cr_assert_eq(off, 104);
    cr_assert_eq(sp_store_assign(b, 4, topics, 1, &off), SP_OK);
    int64_t next = 200;
    cr_assert_eq(sp_store_commit(a, 4, topics, &next, 1), SP_ERR_FENCED);
    cr_assert_eq(sp_store_commit(b, 4, topics, &next, 1), SP_OK);
    sp_store_destroy(a);
    sp_store_destroy(b);
    /* dump-state merges every master, sorted like a single server's dump. */
    char *d = sp_t_dump(cl3.url);
    cr_assert_not_null(d);
    cr_assert(strstr(d, "{p0}:dd zset ev1=5\n{p0}:meta hash off:t.a=100\n{p0}:u:alice hash view=1\n"
                        "{p10}:dd zset"),
              "%s", d);
    cr_assert(strstr(d, "{p4}:meta hash off:t.a=200\n"));
    free(d);
}

static void count_key(void *ctx, const char *key) {
    (void)key;
    ++*(int *)ctx;
}

static void sum_field(void *ctx, size_t i, const char *field, const char *value) {
    (void)i;
    if (!strcmp(field, "view")) *(long *)ctx += atol(value);
}

/* The HTTP side's reader finds what the store wrote, over every master. */
Test(cluster_store, the_reader_sees_every_master, .init = start3, .fini = stop3) {
    for (int i = 0; i < cl3.n; i++) ok(at(i, "CONFIG SET requirepass %s", "rpw"));
    sp_store_conf sc = {.cluster = cl3.seeds, .timeout_ms = 2000, .max_entries = 1000,
                        .password = "rpw"};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    const char *topics[] = {"t"};
    int64_t off;
    const char *keys[12];
    char names[12][32];
    for (int p = 0; p < 12; p++) {
        cr_assert_eq(sp_store_assign(st, p, topics, 1, &off), SP_OK);
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, p, "u:x", &o), SP_OK);
        sp_obj_incr(o, "view", p);
        int64_t next = 1;
        cr_assert_eq(sp_store_commit(st, p, topics, &next, 1), SP_OK);
        snprintf(names[p], sizeof names[p], "{p%d}:u:x", p);
        keys[p] = names[p];
    }
    sp_store_destroy(st);
    sp_reader *r = sp_reader_new_conf("redis://ignored:1", cl3.seeds, NULL, "rpw", 1000, err,
                                      sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(sp_reader_ping(r, err, sizeof err), SP_OK, "%s", err);
    int metas = 0;
    cr_assert_eq(sp_reader_scan(r, "{p*}:meta", count_key, &metas), SP_OK);
    cr_assert_eq(metas, 12);
    long views = 0;
    cr_assert_eq(sp_reader_hgetall(r, 12, keys, sum_field, &views), SP_OK);
    cr_assert_eq(views, 66);
    sp_reader_destroy(r);
    /* A wrong password: the reader answers "unavailable" at once. */
    r = sp_reader_new_conf(NULL, cl3.seeds, NULL, "nope", 1000, err, sizeof err);
    cr_assert_not_null(r);
    cr_assert_neq(sp_reader_ping(r, err, sizeof err), SP_OK);
    sp_reader_destroy(r);
}

Test(cluster_store, wait_replicas_waits_for_a_replica, .init = start3, .fini = stop3) {
    /* No replicas here: a commit with wait_replicas=1 cannot complete, and
     * an abort makes it give up with SP_ERR_RETRY instead of counting it. */
    volatile int abort_flag = 0;
    sp_store_conf sc = {.cluster = cl3.seeds, .timeout_ms = 200, .max_entries = 1000,
                        .abort_flag = &abort_flag, .wait_replicas = 1};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    const char *topics[] = {"t.a"};
    int64_t off;
    abort_flag = 1;
    cr_assert_eq(sp_store_assign(st, 1, topics, 1, &off), SP_ERR_RETRY);
    sp_store_destroy(st);
}

struct bg_commit {
    sp_store *st;
    int64_t next;
    volatile int done;
    int rc;
};

static void *commit_in_background(void *arg) {
    struct bg_commit *b = arg;
    const char *topics[] = {"t"};
    b->rc = sp_store_commit(b->st, 2, topics, &b->next, 1);
    b->done = 1;
    return NULL;
}

/* One plain Redis with a replica: with wait_replicas=1 a commit returns only
 * once the replica holds it; while the replica is stopped, it does not
 * return at all. */
Test(single_store, wait_replicas_commit_returns_only_once_the_replica_has_it) {
    sp_t_redis master, replica;
    cr_assert_eq(sp_t_redis_start(&master, 0), 0);
    cr_assert_eq(sp_t_redis_start(&replica, 0), 0);
    redisContext *mc = redisConnect("127.0.0.1", master.port);
    freeReplyObject(redisCommand(mc, "CONFIG SET repl-diskless-sync-delay 0"));
    redisContext *rc = redisConnect("127.0.0.1", replica.port);
    freeReplyObject(redisCommand(rc, "REPLICAOF 127.0.0.1 %d", master.port));
    sp_store_conf sc = {.url = master.url, .timeout_ms = 400, .max_entries = 100,
                        .wait_replicas = 1};
    char err[256];
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(st, 2, topics, 1, &off), SP_OK);
    for (int i = 1; i <= 5; i++) {
        sp_obj *o;
        cr_assert_eq(sp_store_get(st, 2, "u:bob", &o), SP_OK);
        sp_obj_incr(o, "n", 1);
        int64_t next = i;
        cr_assert_eq(sp_store_commit(st, 2, topics, &next, 1), SP_OK);
        redisReply *r = redisCommand(rc, "HGET {p2}:meta off:t");
        cr_assert(r && r->type == REDIS_REPLY_STRING, "commit %d not on the replica", i);
        cr_assert_eq(atoll(r->str), i, "replica behind commit %d", i);
        freeReplyObject(r);
    }
    kill(replica.pid, SIGSTOP);
    struct bg_commit b = {st, 6, 0, -1};
    pthread_t t;
    pthread_create(&t, NULL, commit_in_background, &b);
    sp_t_sleep_ms(1000); /* several WAIT rounds of 200 ms */
    int returned_early = b.done;
    kill(replica.pid, SIGCONT);
    pthread_join(t, NULL);
    cr_assert_not(returned_early, "the commit returned while its replica was stopped");
    cr_assert_eq(b.rc, SP_OK);
    redisReply *r = redisCommand(rc, "HGET {p2}:meta off:t");
    cr_assert_str_eq(r->str, "6");
    freeReplyObject(r);
    sp_store_destroy(st);
    redisFree(rc);
    redisFree(mc);
    sp_t_redis_stop(&replica);
    sp_t_redis_stop(&master);
}

/* -------------------------------------- the pipeline against a cluster */

#define PARTITIONS 6
#define NEVENTS 8000

static const char *const topics[] = {"shop.clicks", "shop.orders", "shop.reviews"};

struct world {
    sp_t_mock mock;
    sp_t_cluster cluster;
    sp_t_redis reference; /* an uninterrupted run against one plain redis-server */
    char dir[256];
    char data[300];
    int64_t per_topic[3];
};

static struct world w;

static void world_start(int node_timeout_ms) {
    memset(&w, 0, sizeof w);
    snprintf(w.dir, sizeof w.dir, "%s", sp_t_tmpdir());
    cr_assert_eq(sp_t_mock_start(&w.mock, PARTITIONS), 0, "mock kafka did not start");
    cr_assert_eq(sp_t_cluster_start(&w.cluster, 3, 1, node_timeout_ms), 0,
                 "redis cluster did not start");
    cr_assert_eq(sp_t_redis_start(&w.reference, 0), 0, "redis-server did not start");
    char n[16];
    snprintf(n, sizeof n, "%d", NEVENTS);
    snprintf(w.data, sizeof w.data, "%s/events.jsonl", w.dir);
    char truth[300];
    snprintf(truth, sizeof truth, "%s/truth.json", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "gen", "--events", n, "--users", "400", "--seed", "11",
                    "--format", "jsonl", "--malformed-rate", "0.01", "--duplicate-rate", "0.01",
                    "--out", w.data, "--truth", truth, NULL};
    int st;
    free(sp_t_capture(argv, &st));
    cr_assert_eq(st, 0, "gen failed");
}

static void setup(void) { world_start(5000); }
/* A dead master is replaced after 1.5 s without answers. */
static void setup_fast_failover(void) { world_start(1500); }

static void teardown(void) {
    sp_t_mock_stop(&w.mock);
    sp_t_cluster_stop(&w.cluster);
    sp_t_redis_stop(&w.reference);
}

static pid_t replay_start(const char *rate) {
    char log[300];
    snprintf(log, sizeof log, "%s/replay.log", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "replay", w.data, "--brokers", w.mock.bootstrap,
                    "--rate", (char *)rate, "--quiet", NULL};
    return sp_t_spawn(argv, log);
}

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

/* A processor against url (a redis:// URL or a cluster's "cluster:..."). */
static pid_t processor(const char *url, const char *group, int idle_ms, const char *name,
                       int wait_replicas) {
    char idle[16], log[300], wr[16];
    snprintf(idle, sizeof idle, "%d", idle_ms);
    snprintf(wr, sizeof wr, "%d", wait_replicas);
    snprintf(log, sizeof log, "%s/%s.log", w.dir, name);
    int cluster = !strncmp(url, "cluster:", 8);
    char *argv[] = {(char *)sp_t_bin(), "run", "--brokers", w.mock.bootstrap,
                    cluster ? "--redis.cluster" : "--redis.url", (char *)(cluster ? url + 8 : url),
                    "--redis.wait_replicas", wr, "--redis.timeout_ms", "1000", "--group.id",
                    (char *)group, "--run.stop_when_idle_ms", idle, "--batch.max_messages", "200",
                    "--batch.max_ms", "50", "--log.level", "info", "-X", "session.timeout.ms=6000",
                    "-X", "heartbeat.interval.ms=500", NULL};
    return sp_t_spawn(argv, log);
}

static void expect_exit(pid_t pid, int timeout_ms, const char *name, int want, const char *what) {
    sp_t_expect_exit(pid, timeout_ms, w.dir, name, want, what);
}

static char *reference_dump(void) {
    pid_t pid = processor(w.reference.url, "reference", 1500, "reference", 0);
    expect_exit(pid, 120000, "reference", 0, "reference run failed");
    char *d = sp_t_dump(w.reference.url);
    cr_assert_not_null(d);
    cr_assert_gt(strlen(d), 1000, "the reference run wrote almost nothing");
    return d;
}

static int64_t committed_total(void) {
    int64_t n = 0;
    for (int t = 0; t < 3; t++) n += sp_t_committed(w.cluster.url, topics[t]);
    return n;
}

static void wait_progress(int64_t at_least, int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (committed_total() >= at_least) return;
        sp_t_sleep_ms(20);
    }
    cr_assert_fail("no progress to %lld within %d ms", (long long)at_least, timeout_ms);
}

/* The last "redis cluster: ..." counter of a processor log. */
/* A cluster counter of the processor's run, summed over the lines its
 * cluster clients print when they close: the consumer loop's and the
 * committer's (each has its own connections). */
static long cluster_counter(const char *name, const char *counter) {
    char log[300], key[64];
    snprintf(log, sizeof log, "%s/%s.log", w.dir, name);
    snprintf(key, sizeof key, " %s=", counter);
    char *text = sp_t_read_file(log, NULL);
    cr_assert_not_null(text);
    long v = -1;
    for (const char *p = strstr(text, "redis cluster: moved="); p;
         p = strstr(p + 1, "redis cluster: moved=")) {
        const char *eol = strchr(p, '\n'), *f = strstr(p, key);
        if (f && (!eol || f < eol)) v = (v < 0 ? 0 : v) + atol(f + strlen(key));
    }
    cr_assert_geq(v, 0, "no cluster counters in %s", log);
    free(text);
    return v;
}

static void assert_same_state_as_one_redis(void) {
    char *want = reference_dump();
    char *got = sp_t_dump(w.cluster.url);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want, "state in the cluster differs from a run against one Redis: %s "
                     "(logs in %s)", sp_t_first_diff(got, want), w.dir);
    free(got);
    free(want);
}

Test(cluster_pipeline, end_to_end_state_equals_a_single_redis_run, .init = setup,
     .fini = teardown, .timeout = 240) {
    cr_assert_eq(sp_t_wait(replay_start("0"), 60000), 0, "replay failed");
    pid_t pid = processor(w.cluster.url, "e2e", 1500, "run", 0);
    expect_exit(pid, 120000, "run", 0, "processor did not exit cleanly");
    /* The partitions really are spread over the masters. */
    int owners[SP_T_CLUSTER_MAX] = {0}, used = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        char tag[32];
        snprintf(tag, sizeof tag, "{p%d}", p);
        int k = sp_t_cluster_master_of(&w.cluster, tag);
        cr_assert_geq(k, 0);
        used += !owners[k]++;
    }
    cr_assert_geq(used, 2, "all partitions on one master: nothing routed");
    assert_same_state_as_one_redis();
}

Test(cluster_pipeline, kill9_of_the_processor_loses_nothing_and_counts_nothing_twice,
     .init = setup, .fini = teardown, .timeout = 400) {
    cr_assert_eq(sp_t_wait(replay_start("0"), 60000), 0, "replay failed");
    count_topics();
    int64_t total = w.per_topic[0] + w.per_topic[1] + w.per_topic[2];
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    for (int k = 1; k <= 2; k++) {
        pid_t pid = processor(w.cluster.url, "crash", 0, "crash", 0);
        double frac = (k - 1) * 0.4 + 0.05 + 0.3 * rand() / (double)RAND_MAX;
        wait_progress((int64_t)(frac * total), 120000);
        sp_t_sleep_ms(rand() % 40);
        kill(pid, SIGKILL);
        expect_exit(pid, 10000, "crash", 128 + SIGKILL, "killed processor");
        cr_log_info("seed %u: killed run %d at %.0f%% committed", seed, k,
                    100.0 * committed_total() / total);
    }
    pid_t pid = processor(w.cluster.url, "crash", 1500, "crash-final", 0);
    expect_exit(pid, 180000, "crash-final", 0, "final run failed");
    assert_same_state_as_one_redis();
}

/* Moves every slot of the partitions that node `from` owns to node `to`,
 * a few keys at a time with pauses, so the processor meets ASK and TRYAGAIN
 * during the moves and MOVED after them. */
static void migrate_partitions(int from, int to) {
    char idf[41], idt[41];
    cr_assert_eq(sp_t_cluster_node_id(&w.cluster, from, idf), 0);
    cr_assert_eq(sp_t_cluster_node_id(&w.cluster, to, idt), 0);
    redisContext *src = redisConnect("127.0.0.1", w.cluster.node[from].port);
    redisContext *dst = redisConnect("127.0.0.1", w.cluster.node[to].port);
    int moved = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        char tag[32];
        snprintf(tag, sizeof tag, "{p%d}", p);
        if (sp_t_cluster_master_of(&w.cluster, tag) != from) continue;
        int slot = (int)sp_cluster_keyslot(tag, strlen(tag));
        freeReplyObject(redisCommand(dst, "CLUSTER SETSLOT %d IMPORTING %s", slot, idf));
        freeReplyObject(redisCommand(src, "CLUSTER SETSLOT %d MIGRATING %s", slot, idt));
        for (;;) {
            redisReply *r = redisCommand(src, "CLUSTER GETKEYSINSLOT %d 10", slot);
            cr_assert(r && r->type == REDIS_REPLY_ARRAY);
            size_t n = r->elements;
            for (size_t i = 0; i < n; i++) {
                redisReply *m = redisCommand(src, "MIGRATE 127.0.0.1 %d %s 0 5000",
                                             w.cluster.node[to].port, r->element[i]->str);
                cr_assert(m && m->type != REDIS_REPLY_ERROR, "MIGRATE: %s", m ? m->str : "?");
                freeReplyObject(m);
            }
            freeReplyObject(r);
            if (!n) break;
            sp_t_sleep_ms(30);
        }
        for (int i = 0; i < w.cluster.n; i++) {
            redisContext *c = redisConnect("127.0.0.1", w.cluster.node[i].port);
            redisReply *r = redisCommand(c, "CLUSTER SETSLOT %d NODE %s", slot, idt);
            if (r) freeReplyObject(r); /* replicas refuse; they follow their master */
            redisFree(c);
        }
        moved++;
    }
    redisFree(src);
    redisFree(dst);
    cr_assert_gt(moved, 0, "node %d owned no partition", from);
}

Test(cluster_pipeline, slots_migrated_mid_stream_change_nothing, .init = setup, .fini = teardown,
     .timeout = 300) {
    /* 1000 msg/s: the stream (8 s) must outlast the migration, or the
     * processor may have written every key before a slot moved (seen in CI
     * at 3000 msg/s on a loaded machine: no MOVED). */
    pid_t rp = replay_start("1000");
    pid_t pid = processor(w.cluster.url, "reshard", 0, "reshard", 0);
    wait_progress(NEVENTS / 4, 120000);
    int from = sp_t_cluster_master_of(&w.cluster, "{p0}");
    int to = sp_t_cluster_master_of(&w.cluster, "{p1}");
    if (to == from) to = sp_t_cluster_master_of(&w.cluster, "{p2}");
    if (to == from) to = sp_t_cluster_master_of(&w.cluster, "{p3}");
    cr_assert_neq(to, from);
    migrate_partitions(from, to);
    cr_assert_eq(sp_t_cluster_wait_ok(&w.cluster, 30000), 0);
    cr_assert_eq(sp_t_wait(rp, 60000), 0, "replay failed");
    count_topics();
    cr_assert_eq(sp_t_wait_committed(w.cluster.url, topics, w.per_topic, 3, 120000), 0,
                 "not everything was committed after the migration");
    kill(pid, SIGTERM);
    expect_exit(pid, 30000, "reshard", 0, "processor did not exit cleanly");
    cr_assert_gt(cluster_counter("reshard", "moved"), 0, "the processor never saw MOVED");
    cr_log_info("reshard: moved=%ld ask=%ld tryagain=%ld", cluster_counter("reshard", "moved"),
                cluster_counter("reshard", "ask"), cluster_counter("reshard", "tryagain"));
    assert_same_state_as_one_redis();
}

Test(cluster_pipeline, master_killed_mid_stream_with_wait_replicas_loses_nothing,
     .init = setup_fast_failover, .fini = teardown, .timeout = 300) {
    pid_t rp = replay_start("3000");
    pid_t pid = processor(w.cluster.url, "failover", 0, "failover", 1);
    wait_progress(NEVENTS / 3, 120000);
    int victim = sp_t_cluster_master_of(&w.cluster, "{p0}");
    cr_assert_geq(victim, 0);
    kill(w.cluster.node[victim].pid, SIGKILL);
    sp_t_wait(w.cluster.node[victim].pid, 5000);
    w.cluster.node[victim].pid = 0;
    /* The replica takes over {p0}'s slot... */
    int owner = -1;
    for (int i = 0; i < 300 && (owner < 0 || owner == victim); i++) {
        sp_t_sleep_ms(100);
        owner = sp_t_cluster_master_of(&w.cluster, "{p0}");
    }
    cr_assert(owner >= 0 && owner != victim, "no replica was promoted");
    /* ... and the old master comes back as its replica, so WAIT 1 can
     * succeed again for that shard. */
    cr_assert_eq(sp_t_redis_restart(&w.cluster.node[victim]), 0);
    cr_assert_eq(sp_t_cluster_wait_ok(&w.cluster, 60000), 0);
    cr_assert_eq(sp_t_wait(rp, 60000), 0, "replay failed");
    count_topics();
    cr_assert_eq(sp_t_wait_committed(w.cluster.url, topics, w.per_topic, 3, 120000), 0,
                 "not everything was committed after the failover");
    kill(pid, SIGTERM);
    expect_exit(pid, 30000, "failover", 0, "processor did not survive the failover");
    cr_assert_gt(cluster_counter("failover", "connection_errors"), 0,
                 "the processor never noticed the dead master");
    assert_same_state_as_one_redis();
}

/* ------------------------------------------------- config and credentials */

Test(cluster_config, keys_parse_and_the_password_is_never_printed) {
    sp_config c;
    sp_config_init(&c);
    char err[256];
    cr_assert_eq(c.redis_wait_replicas, 0);
    cr_assert_str_eq(c.redis_cluster, "");
    cr_assert_eq(sp_config_set(&c, "redis.cluster", "10.0.0.1:7000,10.0.0.2:7000", err, sizeof err),
                 SP_OK);
    cr_assert_eq(sp_config_set(&c, "redis.wait_replicas", "1", err, sizeof err), SP_OK);
    cr_assert_eq(c.redis_wait_replicas, 1);
    cr_assert_neq(sp_config_set(&c, "redis.wait_replicas", "-1", err, sizeof err), SP_OK);
    cr_assert(strstr(err, "redis.wait_replicas"), "%s", err);
    cr_assert_eq(sp_config_set(&c, "redis.password", "s3cr3t-pw", err, sizeof err), SP_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_config_print(&c, f);
    fclose(f);
    cr_assert_null(strstr(buf, "s3cr3t-pw"));
    cr_assert(strstr(buf, "redis.password = ***"), "%s", buf);
    cr_assert(strstr(buf, "redis.cluster = 10.0.0.1:7000,10.0.0.2:7000"));
    free(buf);
    sp_config_release(&c);
}

Test(cluster_config, bad_seed_lists_name_the_key) {
    const char *bad[] = {"", "host", "host:0", "host:99999", ":7000", "a:1,b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_cluster_conf cc = {bad[i], NULL, NULL, 100, NULL};
        char err[256] = "";
        cr_assert_null(sp_cluster_new(&cc, err, sizeof err), "'%s' accepted", bad[i]);
        cr_assert(strstr(err, "redis.cluster"), "'%s': %s", bad[i], err);
    }
}

/* requirepass on every node: the right password connects (and dump-state
 * finds it in the environment), a wrong one fails at once, never retried and
 * never echoed. */
Test(cluster_config, password_authenticates_every_node, .init = start3, .fini = stop3) {
    for (int i = 0; i < cl3.n; i++) ok(at(i, "CONFIG SET requirepass %s", "pw-4-test"));
    char err[256];
    sp_store_conf sc = {.cluster = cl3.seeds, .timeout_ms = 1000, .max_entries = 100,
                        .password = "pw-4-test"};
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    const char *topics[] = {"t"};
    int64_t off;
    for (int p = 0; p < 6; p++) cr_assert_eq(sp_store_assign(st, p, topics, 1, &off), SP_OK);
    sp_store_destroy(st);
    sc.password = "wrong-pw-xyz";
    cr_assert_null(sp_store_new(&sc, err, sizeof err));
    cr_assert(strstr(err, "AUTH"), "%s", err);
    cr_assert_null(strstr(err, "wrong-pw-xyz"));
    setenv("SHOPSTREAM_REDIS_PASSWORD", "pw-4-test", 1);
    char *d = sp_t_dump(cl3.url);
    cr_assert_not_null(d);
    cr_assert(strstr(d, "{p5}:meta hash\n"), "%s", d);
    free(d);
}
