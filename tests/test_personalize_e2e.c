/* The personalization operators end to end (gen -> train -> replay -> run)
 * against the mock cluster and real redis-servers: SIGHUP while consuming
 * (a bad model file, then a good one) loses and doubles no event; kill -9 at
 * random points leaves profiles, user vectors and recommendation state equal
 * to an uninterrupted run's.
 *
 * Two conditions make "equal" the right test there. The shared item factors
 * are at-least-once, and user vectors learn against them, so they are frozen
 * (mf.item_lr=0, see operators/online_mf.c). And a user's events arrive on
 * three topics whose interleaving depends on fetch timing: state that
 * depends on order (an SGD trajectory, the rounding of a decayed sum) can
 * differ between two clean runs too, by order, not by loss or repetition.
 * So the kill -9 case consumes the clicks topic only, where a partition's
 * order is fixed. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/support/harness.h"
#include "tests/support/pipeline.h"

#define NEVENTS 6000

static char model[300];

static void train(void) {
    snprintf(model, sizeof model, "%s/model.gru", w.dir);
    char *argv[] = {(char *)sp_t_bin(), "train", "--data", w.data, "--format", "events",
                    "--model", "gru", "--dim", "16", "--epochs", "2", "--quiet", "--out", model,
                    NULL};
    int st;
    free(sp_t_capture(argv, &st));
    cr_assert_eq(st, 0, "train failed");
}

static void use_operators(const char *item_lr, const char *inputs) {
    static const char *args[16];
    int n = 0;
    args[n++] = "--operators";
    args[n++] = "dedupe,counts,profile,mf,recommend";
    args[n++] = "--recommend.model";
    args[n++] = model;
    args[n++] = "--http.listen";
    args[n++] = "0";
    args[n++] = "--mf.item_lr";
    args[n++] = item_lr;
    args[n++] = "--recommend.rate_limit_ms";
    args[n++] = "20000";
    if (inputs) {
        args[n++] = "--topics.input";
        args[n++] = inputs;
    }
    args[n] = NULL;
    memcpy(w.extra_args, args, sizeof args);
}

/* Replaces the model file atomically with `len` bytes of `bytes`. */
static void put_model(const char *bytes, size_t len) {
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", model);
    FILE *f = fopen(tmp, "wb");
    cr_assert_not_null(f);
    fwrite(bytes, 1, len, f);
    fclose(f);
    cr_assert_eq(rename(tmp, model), 0);
}

static char *dump_partitions(const char *url) {
    char *argv[] = {(char *)sp_t_bin(), "dump-state", "--redis-url", (char *)url, "--match",
                    "{p*", NULL};
    int st;
    char *d = sp_t_capture(argv, &st);
    cr_assert_eq(st, 0);
    return d;
}

TestSuite(personalize_e2e, .init = pl_setup_mock, .fini = pl_teardown, .timeout = 300);

Test(personalize_e2e, sighup_mid_stream_reloads_and_keeps_every_event) {
    pl_gen("jsonl", NEVENTS, 0.01, 0.01);
    train();
    use_operators("0.01", NULL);
    size_t len;
    char *good = sp_t_read_file(model, &len);
    pid_t rp = pl_replay_start("1500");
    pid_t pid = pl_processor(w.redis.url, "hup", 0, "hup");
    char log[300];
    snprintf(log, sizeof log, "%s/hup.log", w.dir);
    pl_wait_progress(w.redis.url, NEVENTS / 5, 120000);
    put_model("not a model", 11);
    kill(pid, SIGHUP);
    pl_wait_log(log, "reload: keeping the current model", 1, 60000); /* the bad file refused */
    pl_wait_progress(w.redis.url, NEVENTS / 2, 120000);
    put_model(good, len);
    kill(pid, SIGHUP);
    pl_wait_log(log, "reload: model", 1, 60000); /* the good one loaded */
    cr_assert_eq(sp_t_wait(rp, 60000), 0, "replay failed");
    pl_count_topics();
    pl_wait_all_committed(w.redis.url);
    kill(pid, SIGTERM);
    cr_assert_eq(sp_t_wait(pid, 30000), 0, "the processor did not survive the reloads");

    char *dump = sp_t_dump(w.redis.url);
    struct pl_oracle o = {0};
    pl_oracle_jsonl(&o);
    pl_assert_counts_match(dump, &o);
    cr_assert_eq(pl_counter(log, "events"), o.valid);
    cr_assert_gt(pl_counter(log, "recommendations"), 0);
    char *text = sp_t_read_file(log, NULL);
    cr_assert(strstr(text, "reload: keeping the current model"), "the bad file was not refused");
    cr_assert(strstr(text, "reload: model"), "the good file was not loaded");
    cr_assert(strstr(dump, "}:prof:") && strstr(dump, "}:mfu:") && strstr(dump, "}:rs:"));
    /* the lists' rec:<user> keys, written from the committer thread with
     * each batch's commit: there, as JSON, with their TTL */
    redisContext *rc = redisConnect("127.0.0.1", w.redis.port);
    cr_assert(rc && !rc->err);
    redisReply *keys = redisCommand(rc, "KEYS rec:*");
    cr_assert_eq(keys->type, REDIS_REPLY_ARRAY);
    cr_assert_gt(keys->elements, 0, "no rec:<user> in Redis");
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *v = redisCommand(rc, "GET %s", keys->element[i]->str);
        cr_assert(v->type == REDIS_REPLY_STRING && strstr(v->str, "\"rec_id\":\"r"), "%s",
                  keys->element[i]->str);
        freeReplyObject(v);
        v = redisCommand(rc, "TTL %s", keys->element[i]->str);
        cr_assert_gt(v->integer, 0, "%s has no TTL", keys->element[i]->str);
        freeReplyObject(v);
    }
    freeReplyObject(keys);
    redisFree(rc);
    free(text);
    free(dump);
    free(good);
    pl_oracle_free(&o);
}

Test(personalize_e2e, kill9_leaves_profiles_and_user_vectors_equal_to_a_clean_run) {
    pl_gen("jsonl", NEVENTS, 0.01, 0.01);
    train();
    use_operators("0", w.topic_names[0]);
    pl_replay_all();
    pid_t ref = pl_processor(w.reference.url, "reference", 1500, "reference");
    cr_assert_eq(sp_t_wait(ref, 120000), 0, "reference run failed");
    char *want = dump_partitions(w.reference.url);
    cr_assert(strstr(want, "}:prof:") && strstr(want, "}:mfu:") && strstr(want, "}:rs:"));
    int64_t total = w.per_topic[0];
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    for (int k = 1; k <= 2; k++) {
        pid_t pid = pl_processor(w.redis.url, "crash", 0, "crash");
        double frac = (k - 1) * 0.4 + 0.1 + 0.3 * rand() / (double)RAND_MAX;
        pl_wait_progress(w.redis.url, (int64_t)(frac * total), 120000);
        sp_t_sleep_ms(rand() % 40);
        kill(pid, SIGKILL);
        cr_assert_eq(sp_t_wait(pid, 10000), 128 + SIGKILL);
    }
    /* Until everything is committed, not until idle: a killed member keeps
     * its partitions until its session times out (see pl_case_kill9). */
    pid_t pid = pl_processor(w.redis.url, "crash", 0, "crash-final");
    char flog[300];
    snprintf(flog, sizeof flog, "%s/crash-final.log", w.dir);
    pl_wait_log(flog, "running:", 1, 60000); /* its SIGTERM handler is in place */
    cr_assert_eq(sp_t_wait_committed(w.redis.url, w.topic_names, w.per_topic, 1, 180000), 0,
                 "the last run did not commit every record");
    kill(pid, SIGTERM);
    cr_assert_eq(sp_t_wait(pid, 60000), 0, "final run failed");
    char *got = dump_partitions(w.redis.url);
    cr_assert_str_eq(got, want, "partition state after kill -9 differs from a clean run (seed %u)",
                     seed);
    free(got);
    free(want);
}
