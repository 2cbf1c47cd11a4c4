/* `shopstream sentiment`: scores lines of text with the lexicon scorer (or a
 * learned model), and with labelled input reports accuracy, precision, recall
 * and F1 of the positive class; `--cv K` cross-validates the learned model
 * and `--train-out FILE` trains it on the whole input and saves it. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/logreg.h"
#include "models/sentiment.h"
#include "stream/cli.h"
#include "stream/error.h"

struct sent_line {
    char *text;
    int label; /* 0, 1, or -1 when the line has none */
};

struct sent_set {
    struct sent_line *v;
    size_t n, cap;
    int labelled; /* every line carried a 0/1 label */
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: shopstream sentiment [--data FILE] [--model FILE] [--cv K] "
            "[--train-out FILE] [--quiet]\n"
            "  Scores each line of FILE (default stdin) and prints score<TAB>text.\n"
            "  Lines may be text<TAB>label (label 0/1; a header line is skipped); then\n"
            "  accuracy, precision, recall and F1 of the positive class follow.\n"
            "  --model FILE      score with a learned model instead of the lexicon\n"
            "                    (printed score = 2p-1, in [-1,1])\n"
            "  --cv K            K-fold cross-validation of the learned model on FILE\n"
            "  --train-out FILE  train the learned model on all of FILE and save it\n"
            "  --quiet           print only the metrics\n");
}

/* Parses "label" as 0 or 1; anything else (a header such as "score") is -1. */
static int parse_label(const char *s) {
    if ((s[0] == '0' || s[0] == '1') && s[1] == '\0') return s[0] - '0';
    return -1;
}

/* Reads every line, strips CR/LF, and splits off a trailing TAB label. The
 * first line is dropped when it has a TAB but no 0/1 label: that is a
 * header such as "sentence<TAB>score". */
static int read_lines(FILE *f, struct sent_set *set) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int first = 1;
    set->labelled = 1;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        char *tab = strrchr(line, '\t');
        int label = -1;
        if (tab) {
            label = parse_label(tab + 1);
            if (label < 0 && first) {
                first = 0;
                continue;
            }
            if (label >= 0) *tab = '\0';
        }
        first = 0;
        if (len == 0) continue;
        if (label < 0) set->labelled = 0;
        if (set->n == set->cap) {
            set->cap = set->cap ? set->cap * 2 : 256;
            set->v = sp_xrealloc(set->v, set->cap * sizeof *set->v);
        }
        set->v[set->n].text = sp_xstrdup(line);
        set->v[set->n].label = label;
        set->n++;
    }
    free(line);
    if (set->n == 0) set->labelled = 0;
    return 0;
}

struct confusion {
    size_t tp, fp, tn, fn;
};

static void confusion_add(struct confusion *c, int pred, int label) {
    if (pred && label) c->tp++;
    else if (pred) c->fp++;
    else if (label) c->fn++;
    else c->tn++;
}

static void print_metrics(const char *what, const struct confusion *c) {
    size_t n = c->tp + c->fp + c->tn + c->fn;
    double acc = n ? (double)(c->tp + c->tn) / (double)n : 0;
    double prec = c->tp + c->fp ? (double)c->tp / (double)(c->tp + c->fp) : 0;
    double rec = c->tp + c->fn ? (double)c->tp / (double)(c->tp + c->fn) : 0;
    double f1 = prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0;
    printf("# %s n=%zu accuracy=%.4f precision=%.4f recall=%.4f f1=%.4f\n", what, n, acc, prec,
           rec, f1);
}

static const struct sp_logreg_opts model_opts = {
    .epochs = 200, .lr = 0.05, .l2 = 1e-3, .standardize = 0, .pos_weight = 1.0};

/* Trains the learned model on the rows of set selected by keep (NULL: all). */
static sp_logreg *train_model(const struct sent_set *set, const uint8_t *keep) {
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++) n += !keep || keep[i];
    float *x = sp_xmalloc(n * SP_SENT_DIM * sizeof(float));
    uint8_t *y = sp_xmalloc(n);
    size_t r = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (keep && !keep[i]) continue;
        sp_sentiment_features(set->v[i].text, x + r * SP_SENT_DIM);
        y[r++] = (uint8_t)set->v[i].label;
    }
    sp_logreg *m = sp_logreg_new(SP_SENT_DIM);
    sp_logreg_train(m, x, y, n, &model_opts);
    free(x);
    free(y);
    return m;
}

/* K folds by a fixed pseudo-random permutation (the file is sorted by nothing
 * in particular, but a fixed shuffle keeps folds balanced and reproducible). */
static void cross_validate(const struct sent_set *set, int k) {
    size_t n = set->n;
    size_t *perm = sp_xmalloc(n * sizeof *perm);
    uint8_t *keep = sp_xmalloc(n);
    int *fold = sp_xmalloc(n * sizeof *fold);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t j = s % i, t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) fold[perm[i]] = (int)(i % (size_t)k);
    struct confusion c = {0};
    for (int f = 0; f < k; f++) {
        for (size_t i = 0; i < n; i++) keep[i] = fold[i] != f;
        sp_logreg *m = train_model(set, keep);
        for (size_t i = 0; i < n; i++)
            if (fold[i] == f)
                confusion_add(&c, sp_sentiment_model_score(m, set->v[i].text) > 0.5,
                              set->v[i].label);
        sp_logreg_destroy(m);
    }
    char what[64];
    snprintf(what, sizeof what, "learned-model %d-fold-cv", k);
    print_metrics(what, &c);
    free(perm);
    free(keep);
    free(fold);
}

int sp_cmd_sentiment(int argc, char **argv) {
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},      {"model", required_argument, NULL, 'm'},
        {"cv", required_argument, NULL, 'k'},        {"train-out", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},           {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *data = NULL, *model_path = NULL, *out = NULL;
    int cv = 0, quiet = 0, c, rc = 1;
    struct sent_set set = {0};
    sp_logreg *model = NULL;
    FILE *f = NULL;
    char err[512];
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:m:k:o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'm': model_path = optarg; break;
        case 'k': cv = atoi(optarg); break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || cv == 1 || cv < 0) {
        usage(stderr);
        return 2;
    }
    f = data ? fopen(data, "r") : stdin;
    if (!f) {
        perror(data);
        return 1;
    }
    read_lines(f, &set);
    if ((cv || out) && !set.labelled) {
        fprintf(stderr, "sentiment: --cv and --train-out need text<TAB>label lines\n");
        rc = 2;
        goto fail;
    }
    if (model_path && !(model = sp_logreg_load(model_path, err, sizeof err))) {
        fprintf(stderr, "sentiment: %s\n", err);
        goto fail;
    }
    if (model && sp_logreg_dim(model) != SP_SENT_DIM) {
        fprintf(stderr, "sentiment: %s is not a sentiment model (dimension %zu)\n", model_path,
                sp_logreg_dim(model));
        goto fail;
    }
    struct confusion conf = {0};
    for (size_t i = 0; i < set.n; i++) {
        double s = model ? 2 * sp_sentiment_model_score(model, set.v[i].text) - 1
                         : sp_sentiment_score(set.v[i].text, NULL);
        if (!quiet) printf("%.4f\t%s\n", s, set.v[i].text);
        if (set.labelled) confusion_add(&conf, s > 0, set.v[i].label);
    }
    if (set.labelled) print_metrics(model ? "learned-model" : "lexicon", &conf);
    if (cv) cross_validate(&set, cv);
    if (out) {
        sp_logreg *m = train_model(&set, NULL);
        int src = sp_logreg_save(m, out, err, sizeof err);
        sp_logreg_destroy(m);
        if (src != SP_OK) {
            fprintf(stderr, "sentiment: %s\n", err);
            goto fail;
        }
    }
    rc = 0;
fail:
    if (f && f != stdin) fclose(f);
    for (size_t i = 0; i < set.n; i++) free(set.v[i].text);
    free(set.v);
    sp_logreg_destroy(model);
    return rc;
}
