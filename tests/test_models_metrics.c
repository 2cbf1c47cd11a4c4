/* Metrics against hand-computed cases, the data loaders, and the
 * evaluation protocols on data sets small enough to rank by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "models/data.h"
#include "models/eval.h"
#include "models/metrics.h"

Test(models_metrics, cutoffs_by_hand) {
    cr_assert_eq(sp_metric_hit(0, 10), 1.0);
    cr_assert_eq(sp_metric_hit(9, 10), 1.0);
    cr_assert_eq(sp_metric_hit(10, 10), 0.0);
    cr_assert_float_eq(sp_metric_ndcg(0, 10), 1.0, 1e-12);
    cr_assert_float_eq(sp_metric_ndcg(1, 10), 0.6309297535714575, 1e-12);
    cr_assert_float_eq(sp_metric_ndcg(9, 10), 0.2890648263178879, 1e-12);
    cr_assert_eq(sp_metric_ndcg(10, 10), 0.0);
    cr_assert_float_eq(sp_metric_mrr(3, 20), 0.25, 1e-12);
    cr_assert_eq(sp_metric_mrr(20, 20), 0.0);
}

Test(models_metrics, rank_counts_higher_items_and_half_the_ties) {
    float s[] = {0.5f, 0.9f, 0.5f, 0.1f, 0.5f, 0.7f};
    cr_assert_eq(sp_rank_of(s, 6, 1, NULL), 0u);
    cr_assert_eq(sp_rank_of(s, 6, 5, NULL), 1u);
    cr_assert_eq(sp_rank_of(s, 6, 3, NULL), 5u);
    /* target 0 ties with 2 and 4: 2 above (0.9, 0.7) + 2 ties / 2 */
    cr_assert_eq(sp_rank_of(s, 6, 0, NULL), 3u);
    unsigned char ban[6] = {0, 1, 0, 0, 0, 1};
    cr_assert_eq(sp_rank_of(s, 6, 0, ban), 1u);
    float others[] = {0.2f, 0.8f, 0.4f};
    cr_assert_eq(sp_rank_among(0.4f, others, 3), 1u);
    cr_assert_eq(sp_rank_among(0.9f, others, 3), 0u);
}

Test(models_metrics, running_means) {
    struct sp_metrics mt;
    size_t ks[] = {1, 10};
    sp_metrics_init(&mt, ks, 2);
    sp_metrics_add(&mt, 0);
    sp_metrics_add(&mt, 1);
    sp_metrics_add(&mt, 25);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.hit[0]), 1.0 / 3, 1e-12);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.hit[1]), 2.0 / 3, 1e-12);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.ndcg[1]), (1.0 + 1.0 / log2(3.0)) / 3, 1e-12);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.mrr[1]), (1.0 + 0.5) / 3, 1e-12);
}

static const char *write_tmp(const char *tag, const char *text) {
    static char p[4][256];
    static int k;
    char *path = p[k++ % 4];
    snprintf(path, 256, "/tmp/sp_models_metrics_%d_%s", (int)getpid(), tag);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(models_data, rsc15_rebuilds_interleaved_sessions_in_time_order) {
    const char *p = write_tmp("rsc", "SessionId\tItemId\tTime\n"
                                     "7\tb\t20.5\n9\tz\t1\n7\ta\t10\n9\ty\t3\n7\tc\t30\n");
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(p, SP_FMT_RSC15, v, 0, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.n_seq, 2u);
    cr_assert_eq(d.n_events, 5u);
    cr_assert_eq(d.off[1], 3u);
    const char *want[] = {"a", "b", "c", "z", "y"};
    for (int i = 0; i < 5; i++) cr_assert_str_eq(sp_vocab_id(v, d.item[i]), want[i]);
    cr_assert_eq(d.ts[1], 20500);
    sp_dataset_release(&d);
    /* a frozen vocabulary marks unknown items -1 instead of adding them */
    const char *q = write_tmp("rsc2", "SessionId\tItemId\tTime\n1\ta\t1\n1\tnew\t2\n");
    cr_assert_eq(sp_dataset_load(q, SP_FMT_RSC15, v, 1, &d, err, sizeof err), 0);
    cr_assert_eq(d.item[1], -1);
    cr_assert_eq(sp_vocab_size(v), 5u);
    sp_dataset_release(&d);
    sp_vocab_destroy(v);
}

Test(models_data, diginetica_orders_by_date_then_timeframe) {
    const char *p = write_tmp("dig", "session_id;user_id;item_id;timeframe;eventdate\n"
                                     "1;;i2;500;2016-05-10\n1;NA;i1;900;2016-05-09\n");
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(p, SP_FMT_DIGINETICA, v, 0, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.n_events, 2u);
    cr_assert_str_eq(sp_vocab_id(v, d.item[0]), "i1");
    cr_assert_eq(d.ts[1] - d.ts[0], 86400000 - 400);
    sp_dataset_release(&d);
    sp_vocab_destroy(v);
}

Test(models_data, events_keep_clicks_with_items_and_their_kind) {
    const char *p = write_tmp("ev",
        "{\"user_id\":\"u1\",\"ts_ms\":2000,\"click\":{\"kind\":\"ADD_TO_CART\",\"item_id\":\"p2\"}}\n"
        "{\"user_id\":\"u1\",\"ts_ms\":1000,\"click\":{\"kind\":\"view\",\"item_id\":\"p1\"}}\n"
        "{\"user_id\":\"u1\",\"ts_ms\":1500,\"order\":{\"total\":3}}\n"
        "not json at all\n"
        "{\"user_id\":\"u2\",\"ts_ms\":1,\"click\":{\"kind\":2,\"item_id\":\"p1\"}}\n");
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(p, SP_FMT_EVENTS, v, 0, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.n_seq, 2u);
    cr_assert_eq(d.n_events, 3u);
    cr_assert_str_eq(sp_vocab_id(v, d.item[0]), "p1");
    cr_assert_eq(d.kind[0], 0);  /* view */
    cr_assert_eq(d.kind[1], 2);  /* add_to_cart */
    cr_assert_eq(d.kind[2], 1);  /* protobuf CLICK = 2 -> click */
    sp_dataset_release(&d);
    sp_vocab_destroy(v);
}

Test(models_data, seq_lines_and_missing_files) {
    const char *p = write_tmp("seq", "u1 5 6 7\n   \nu2 6 5\n");
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(p, SP_FMT_SEQ, v, 0, &d, err, sizeof err), 0);
    cr_assert_eq(d.n_seq, 2u);
    cr_assert_eq(d.off[2], 5u);
    cr_assert_eq(d.item[3], d.item[1]);
    sp_dataset_release(&d);
    cr_assert_neq(sp_dataset_load("/nonexistent/x", SP_FMT_SEQ, v, 0, &d, err, sizeof err), 0);
    cr_assert(strstr(err, "/nonexistent/x"));
    sp_vocab_destroy(v);
}

static struct sp_metrics run(enum sp_rec_kind kind, enum sp_protocol proto, const char *path,
                             enum sp_data_format fmt, uint32_t holdout) {
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(path, fmt, v, 0, &d, err, sizeof err), 0, "%s", err);
    sp_rec *r = sp_rec_new_baseline(kind, &d, sp_vocab_size(v), holdout);
    struct sp_eval_opts o = {.protocol = proto, .ks = {1, 10, 20}, .n_k = 3, .seed = 1};
    struct sp_metrics mt;
    cr_assert_eq(sp_evaluate(r, &d, sp_vocab_size(v), &o, &mt), 0);
    sp_rec_destroy(r);
    sp_dataset_release(&d);
    sp_vocab_destroy(v);
    return mt;
}

Test(models_eval, full_protocol_by_hand) {
    /* popularity without the last items: a 2, b 2, c 0.
     * u1 [a b] -> c: a, b masked: rank 0.  u2 [a] -> c: b above: rank 1.
     * u3 [b] -> a: only c competes, lower: rank 0. */
    const char *p = write_tmp("full", "u1 a b c\nu2 a c\nu3 b a\n");
    struct sp_metrics mt = run(SP_REC_POP, SP_PROTO_FULL, p, SP_FMT_SEQ, 1);
    cr_assert_eq(mt.n, 3u);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.hit[0]), 2.0 / 3, 1e-9);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.hit[1]), 1.0, 1e-9);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.ndcg[1]), (2.0 + 1.0 / log2(3.0)) / 3, 1e-9);
}

Test(models_eval, session_protocol_by_hand) {
    /* counts a 2, b 3, c 2, d 1; five next-item queries:
     * [a] -> b rank 0 (twice), [a b] -> c rank 1 (b above, a ties: half
     * of one tie rounds down) twice, [a b c] -> d rank 3 */
    const char *p = write_tmp("sess", "SessionId\tItemId\tTime\n1\ta\t1\n1\tb\t2\n1\tc\t3\n"
                                      "2\ta\t1\n2\tb\t2\n2\tc\t3\n2\td\t4\n3\tb\t1\n");
    struct sp_metrics mt = run(SP_REC_POP, SP_PROTO_SESSION, p, SP_FMT_RSC15, 0);
    cr_assert_eq(mt.n, 5u, "session of one click must be dropped");
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.mrr[2]), (1 + 0.5 + 1 + 0.5 + 0.25) / 5, 1e-9);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.hit[0]), 2.0 / 5, 1e-9);
}

Test(models_eval, sampled_protocol_ranks_against_unseen_items_only) {
    /* item-kNN: in training (last items held out) b follows a in the t*
     * users; for the u* users, whose held-out item is b after a, b must
     * rank above any 100 sampled items they never saw */
    char buf[8192] = "";
    for (int u = 0; u < 20; u++) {
        char line[64];
        snprintf(line, sizeof line, "u%d x%d a b\nt%d a b q%d\n", u, u, u, u);
        strcat(buf, line);
    }
    for (int i = 0; i < 120; i++) {
        char line[64];
        snprintf(line, sizeof line, "w%d y%d z%d\n", i, i, (i + 1) % 120);
        strcat(buf, line);
    }
    const char *p = write_tmp("samp", buf);
    struct sp_metrics mt = run(SP_REC_KNN, SP_PROTO_SAMPLED100, p, SP_FMT_SEQ, 1);
    cr_assert_eq(mt.n, 160u);
    /* the 20 u* users of 160 all hit at rank 0 */
    cr_assert(sp_metrics_mean(&mt, &mt.hit[0]) >= 20.0 / 160 - 1e-9);
    cr_assert(sp_metrics_mean(&mt, &mt.hit[0]) < 0.5, "the other users' targets are unknowable");
}

Test(models_eval, prequential_predicts_before_it_learns) {
    /* time order: s1 a, s2 b, s1 b, s2 a. Popularity starts empty (holdout
     * covers everything). First events of a session are not predicted.
     * s1 b: a 1, b 1 -> tie, rank 0; then b 2. s2 a: b 2 above a 1 -> rank 1. */
    const char *p = write_tmp("preq", "SessionId\tItemId\tTime\n1\ta\t1\n2\tb\t2\n"
                                      "1\tb\t3\n2\ta\t4\n");
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(p, SP_FMT_RSC15, v, 0, &d, err, sizeof err), 0, "%s", err);
    sp_rec *r = sp_rec_new_baseline(SP_REC_POP, &d, sp_vocab_size(v), UINT32_MAX);
    struct sp_eval_opts o = {.protocol = SP_PROTO_PREQUENTIAL, .ks = {1}, .n_k = 1, .seed = 1};
    struct sp_metrics mt;
    cr_assert_eq(sp_evaluate(r, &d, sp_vocab_size(v), &o, &mt), 0);
    cr_assert_eq(mt.n, 2u);
    cr_assert_float_eq(sp_metrics_mean(&mt, &mt.hit[0]), 0.5, 1e-9);
    sp_rec_destroy(r);
    sp_dataset_release(&d);
    sp_vocab_destroy(v);
}
