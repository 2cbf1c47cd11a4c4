/* Sentiment: the generated AFINN table, the rule layer (negation,
 * intensifiers, "but"), accuracy on a small hand-labelled set, the learned
 * model's features, and the `shopstream sentiment` command. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/sentiment.h"
#include "stream/error.h"

Test(lexicon, loaded_sorted_and_holds_known_afinn_values) {
    cr_assert_gt(sp_afinn165_count, 3000, "AFINN-165 has 3382 entries, got %zu", sp_afinn165_count);
    for (size_t i = 1; i < sp_afinn165_count; i++)
        cr_assert_lt(strcmp(sp_afinn165[i - 1].word, sp_afinn165[i].word), 0,
                     "table not sorted at %zu", i);
    static const struct {
        const char *w;
        int v;
    } known[] = {{"good", 3}, {"bad", -3}, {"abandon", -2}, {"outstanding", 5},
                 {"catastrophic", -4}, {"not good", -2}, {"does not work", -3}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        int v = 99;
        cr_assert_eq(sp_sentiment_lookup(known[i].w, &v), SP_OK, "%s missing", known[i].w);
        cr_assert_eq(v, known[i].v, "%s = %d, AFINN says %d", known[i].w, v, known[i].v);
    }
    int v;
    cr_assert_eq(sp_sentiment_lookup("shopstream", &v), SP_ERR_NOTFOUND);
}

static double raw(const char *text) {
    struct sp_sentiment_detail d;
    sp_sentiment_score(text, &d);
    return d.raw;
}

Test(rules, plain_words_sum_their_valences) {
    cr_assert_float_eq(raw("the screen is good"), 3.0, 1e-9);
    cr_assert_float_eq(raw("good and bad"), 0.0, 1e-9);
    cr_assert_float_eq(raw("nothing to see here"), 0.0, 1e-9);
    struct sp_sentiment_detail d;
    double s = sp_sentiment_score("good", &d);
    cr_assert_float_eq(s, 3.0 / sqrt(9.0 + 15.0), 1e-9);
    cr_assert_eq(d.hits, 1);
}

Test(rules, negation_flips_within_its_scope) {
    /* "great" is +3; "never", "isn't", "without" flip it by SP_SENT_NEGATION. */
    cr_assert_float_eq(raw("it is never great"), 3.0 * SP_SENT_NEGATION, 1e-9);
    cr_assert_float_eq(raw("the sound isn't great"), 3.0 * SP_SENT_NEGATION, 1e-9);
    cr_assert_float_eq(raw("it isnt great"), 3.0 * SP_SENT_NEGATION, 1e-9);
    cr_assert_float_eq(raw("not really that great"), 3.0 * 1.3 * SP_SENT_NEGATION, 1e-9);
    cr_assert_lt(sp_sentiment_score("this phone is not happy", NULL), 0);
    cr_assert_gt(sp_sentiment_score("not bad at all", NULL), 0);
    cr_assert_float_eq(raw("no good"), 3.0 * SP_SENT_NEGATION, 1e-9);
    /* The scope ends after three words and at punctuation. */
    cr_assert_float_eq(raw("not for me, but great"), 3.0 * SP_SENT_BUT_AFTER, 1e-9);
    cr_assert_float_eq(raw("no. great"), 3.0, 1e-9);
    cr_assert_float_eq(raw("no one two three great"), 3.0, 1e-9);
}

Test(rules, intensifiers_scale_and_diminishers_damp) {
    cr_assert_float_eq(raw("very great"), 3.0 * 1.3, 1e-9);
    cr_assert_float_eq(raw("extremely bad"), -3.0 * 1.5, 1e-9);
    cr_assert_float_eq(raw("slightly bad"), -3.0 * 0.6, 1e-9);
    cr_assert_gt(sp_sentiment_score("very great", NULL), sp_sentiment_score("great", NULL));
    cr_assert_lt(sp_sentiment_score("extremely bad", NULL), sp_sentiment_score("bad", NULL));
}

Test(rules, but_clause_outweighs_what_came_before) {
    cr_assert_float_eq(raw("great but broken"), 3.0 * 0.5 - 1.0 * 1.5, 1e-9);
    cr_assert_gt(sp_sentiment_score("it was awful but now it is great", NULL), 0);
    cr_assert_lt(sp_sentiment_score("it looked great but it is awful", NULL), 0);
}

Test(rules, case_punctuation_and_quotes_do_not_matter) {
    cr_assert_float_eq(raw("GOOD!!!"), 3.0, 1e-9);
    cr_assert_float_eq(raw("\"good\""), 3.0, 1e-9);
    cr_assert_float_eq(raw(""), 0.0, 1e-9);
}

/* Written for this test, not taken from any data set. */
static const struct {
    const char *text;
    int label;
} handmade[] = {
    {"Works great, very happy with it.", 1},
    {"The battery died after two days, total waste of money.", 0},
    {"Excellent sound and a comfortable fit.", 1},
    {"Terrible customer service, never again.", 0},
    {"I love this case, it fits perfectly.", 1},
    {"Not worth the price.", 0},
    {"The charger broke within a week.", 0},
    {"Best purchase I have made this year!", 1},
    {"It does not work with my phone.", 0},
    {"Clear calls and easy setup, recommended.", 1},
    {"Disappointing quality and poor design.", 0},
    {"Pretty good for the money.", 1},
    {"The headset is uncomfortable and the volume is bad.", 0},
    {"Nice product, fast shipping.", 1},
    {"Awful. Returned it the next day.", 0},
    {"I am not happy with this at all.", 0},
    {"Not bad, it does the job.", 1},
    {"Looked nice at first but it failed after a month.", 0},
    {"Cheap plastic but the sound is amazing.", 1},
    {"Useless buttons and a horrible interface.", 0},
};

Test(accuracy, handmade_reviews_at_least_eighty_percent) {
    size_t n = sizeof handmade / sizeof handmade[0], right = 0;
    for (size_t i = 0; i < n; i++) {
        int pred = sp_sentiment_score(handmade[i].text, NULL) > 0;
        right += pred == handmade[i].label;
    }
    cr_assert_geq((double)right / (double)n, 0.8, "lexicon got %zu of %zu", right, n);
}

Test(learned, features_mark_negation_and_learn_the_handmade_set) {
    float *a = calloc(SP_SENT_DIM, sizeof(float)), *b = calloc(SP_SENT_DIM, sizeof(float));
    sp_sentiment_features("it works", a);
    sp_sentiment_features("it never works", b);
    cr_assert_float_eq(a[0], (float)sp_sentiment_score("it works", NULL), 1e-6);
    int differ = 0;
    for (size_t j = 5; j < SP_SENT_DIM; j++) differ += a[j] != b[j];
    cr_assert_geq(differ, 2, "negated 'works' must hash apart from plain 'works'");
    free(a);
    free(b);

    size_t n = sizeof handmade / sizeof handmade[0];
    float *x = malloc(n * SP_SENT_DIM * sizeof(float));
    uint8_t *y = malloc(n);
    for (size_t i = 0; i < n; i++) {
        sp_sentiment_features(handmade[i].text, x + i * SP_SENT_DIM);
        y[i] = (uint8_t)handmade[i].label;
    }
    sp_logreg *m = sp_logreg_new(SP_SENT_DIM);
    struct sp_logreg_opts o = {.epochs = 200, .lr = 0.05, .l2 = 1e-4};
    sp_logreg_train(m, x, y, n, &o);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sp_sentiment_model_score(m, handmade[i].text) > 0.5, handmade[i].label,
                     "training example %zu not fitted", i);
    sp_logreg_destroy(m);
    free(x);
    free(y);
}

/* The command over a labelled file with a header line and CRLF endings, as
 * the UCI file is: scores per line, then the metrics line. */
Test(cli, sentiment_command_scores_lines_and_reports_metrics) {
    const char *bin = getenv("SHOPSTREAM_BIN");
    cr_assert_not_null(bin, "SHOPSTREAM_BIN not set (run through make test)");
    char dir[] = "/tmp/sp_sent_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], cmd[1024];
    snprintf(path, sizeof path, "%s/in.tsv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "sentence\tscore\r\nreally good phone\t1\r\nbad battery\t0\r\nnot good\t1\r\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s sentiment --data %s", bin, path);
    FILE *p = popen(cmd, "r");
    char out[4096] = {0};
    size_t got = fread(out, 1, sizeof out - 1, p);
    cr_assert_eq(pclose(p), 0);
    cr_assert_gt(got, 0);
    cr_assert_null(strstr(out, "sentence"), "header line must be skipped:\n%s", out);
    cr_assert_not_null(strstr(out, "\treally good phone\n"), "%s", out);
    cr_assert_not_null(strstr(out, "-0.6124\tbad battery\n"), "%s", out);
    /* 2 of 3 right: TP=1 (good phone), TN=1 (bad battery), FN=1 (not good). */
    cr_assert_not_null(strstr(out, "n=3 accuracy=0.6667 precision=1.0000 recall=0.5000 f1=0.6667"),
                       "%s", out);
    remove(path);
    rmdir(dir);
}

Test(stats, per_item_counts_and_averages) {
    struct sp_review_stats s = {0};
    cr_assert_float_eq(sp_review_stats_rating(&s), 0, 1e-12);
    cr_assert_float_eq(sp_review_stats_sentiment(&s), 0, 1e-12);
    sp_review_stats_add(&s, 5, 0.6);
    sp_review_stats_add(&s, 2, -0.4);
    sp_review_stats_add(&s, 0, 0.1); /* no rating given */
    cr_assert_eq(s.count, 3);
    cr_assert_eq(s.rated, 2);
    cr_assert_float_eq(sp_review_stats_rating(&s), 3.5, 1e-12);
    cr_assert_float_eq(sp_review_stats_sentiment(&s), 0.1, 1e-12);
}

/* --train-out then --model: the learned model saved by one run scores the
 * next; a file that is not a model is refused. */
Test(cli, sentiment_learned_model_round_trip) {
    const char *bin = getenv("SHOPSTREAM_BIN");
    cr_assert_not_null(bin, "SHOPSTREAM_BIN not set (run through make test)");
    char dir[] = "/tmp/sp_sent_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char data[256], model[256], cmd[1024];
    snprintf(data, sizeof data, "%s/train.tsv", dir);
    snprintf(model, sizeof model, "%s/sent.model", dir);
    FILE *f = fopen(data, "w");
    for (size_t i = 0; i < sizeof handmade / sizeof handmade[0]; i++)
        fprintf(f, "%s\t%d\n", handmade[i].text, handmade[i].label);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s sentiment --data %s --quiet --train-out %s >/dev/null", bin, data,
             model);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s sentiment --data %s --model %s", bin, data, model);
    FILE *p = popen(cmd, "r");
    char out[8192] = {0};
    size_t got = fread(out, 1, sizeof out - 1, p);
    cr_assert_eq(pclose(p), 0);
    cr_assert_gt(got, 0);
    /* Trained on these very lines: it must fit them all. */
    cr_assert_not_null(strstr(out, "# learned-model n=20 accuracy=1.0000"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s sentiment --data %s --model %s 2>/dev/null", bin, data, data);
    cr_assert_neq(system(cmd), 0, "a text file is not a model");
    remove(data);
    remove(model);
    rmdir(dir);
}
