/* `shopstream fraud train|eval`: replays fraud-handbook-sim CSVs
 * (TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,
 * TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO) through the fraud
 * feature extractor and scorer in time order, each transaction scored before
 * the state learns it, with labels reaching the terminal state only
 * label-delay days after their transaction. CUSTOMER_ID is the user and the
 * card, TERMINAL_ID the terminal. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "models/fraud.h"
#include "models/logreg.h"
#include "stream/cli.h"
#include "stream/error.h"

#define DAY_MS (24 * 3600 * 1000LL)

struct tx {
    int64_t id; /* TRANSACTION_ID */
    int64_t ts_ms;
    int32_t customer, terminal, day;
    double amount;
    uint8_t fraud, scenario;
};

struct txs {
    struct tx *v;
    size_t n, cap;
    int32_t max_customer, max_terminal;
};

struct fraud_args {
    const char *data, *model, *out, *scores; /* scores: optional per-tx CSV of the test days */
    int weeks[8], nweeks;
    int train_until, test_from, test_until; /* days; test_until exclusive */
    int label_delay;
    int train_all_labels; /* 1: train on labels not yet known at train-until */
    int has_train_until;
    int feedback; /* investigated cards per day whose labels are known the next day; 0 = none */
};

static void usage(FILE *f) {
    fprintf(f,
        "usage: shopstream fraud train --data DIR [--weeks 1,2] --out FILE [--label-delay D] [--feedback K]\n"
        "       shopstream fraud eval  --data DIR [--weeks 1,2,3] [--model FILE]\n"
        "                              [--train-until DAY [--train-labels known|all]]\n"
        "                              [--test-from DAY] [--test-until DAY] [--label-delay D] [--feedback K]\n"
        "       shopstream eval-fraud --data FILE|DIR [--format handbook] [eval options]\n"
        "  DIR holds weekN.csv files in the fraud handbook's format (--weeks picks\n"
        "  them); FILE is one such CSV with every week in it. Transactions are\n"
        "  replayed in time order; each is scored before the state learns it; labels\n"
        "  reach the terminal-risk state D days (default 7) after their transaction.\n"
        "  train: fits the logistic model on every transaction of the given weeks.\n"
        "  eval: scores days [test-from, test-until) (default 14..21) with --model, or\n"
        "  with a model fitted in-process on days before --train-until using only\n"
        "  labels known by then (transactions older than D days; 'all' uses every\n"
        "  label before train-until), or unsupervised; prints AUC ROC, Average\n"
        "  Precision, Card Precision@100, recall per fraud scenario, scoring cost.\n"
        "  --scores FILE writes transaction_id,customer,terminal,day,score,label,scenario\n"
        "  for every test transaction.\n"
        "  --feedback K (train and eval): investigated alerts. After each day the K\n"
        "  customers with the highest score that day (the --model's score, else the\n"
        "  unsupervised one) are investigated, and the labels of their transactions of\n"
        "  that day are known from the next day on; every other label still comes D\n"
        "  days late. Default 0: only the delay.\n");
}

static int parse_weeks(const char *s, struct fraud_args *a) {
    a->nweeks = 0;
    while (*s && a->nweeks < 8) {
        char *end;
        long w = strtol(s, &end, 10);
        if (end == s || w < 1 || w > 52) return -1;
        a->weeks[a->nweeks++] = (int)w;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return a->nweeks ? 0 : -1;
}

/* Appends one handbook CSV. Rows that do not parse are counted and skipped
 * with a warning, never silently. */
static int load_csv(const char *path, struct txs *t) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return SP_ERR_IO;
    }
    char *line = NULL;
    size_t cap = 0;
    long row = 0, bad = 0;
    while (getline(&line, &cap, f) >= 0) {
        if (row++ == 0 && strncmp(line, "TRANSACTION_ID", 14) == 0) continue;
        long long id, secs;
        int cust, term, day, fraud, scen;
        double amount;
        char date[16], time_[16];
        if (sscanf(line, "%lld,%15s %15[^,],%d,%d,%lf,%lld,%d,%d,%d", &id, date, time_, &cust,
                   &term, &amount, &secs, &day, &fraud, &scen) != 10 ||
            cust < 0 || term < 0) {
            bad++;
            continue;
        }
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 65536;
            t->v = sp_xrealloc(t->v, t->cap * sizeof *t->v);
        }
        t->v[t->n++] = (struct tx){.id = id, .ts_ms = secs * 1000, .customer = cust, .terminal = term,
                                   .day = day, .amount = amount, .fraud = fraud != 0,
                                   .scenario = (uint8_t)scen};
        if (cust > t->max_customer) t->max_customer = cust;
        if (term > t->max_terminal) t->max_terminal = term;
    }
    free(line);
    fclose(f);
    if (bad) fprintf(stderr, "fraud: %s: skipped %ld malformed rows\n", path, bad);
    return SP_OK;
}

static int cmp_ts(const void *a, const void *b) {
    const struct tx *x = a, *y = b;
    return (x->ts_ms > y->ts_ms) - (x->ts_ms < y->ts_ms);
}

static int load_weeks(const struct fraud_args *a, struct txs *t) {
    char path[4096];
    struct stat sb;
    int one_file = stat(a->data, &sb) == 0 && S_ISREG(sb.st_mode);
    if (one_file && load_csv(a->data, t) != SP_OK) return SP_ERR_IO;
    for (int i = 0; i < a->nweeks && !one_file; i++) {
        snprintf(path, sizeof path, "%s/week%d.csv", a->data, a->weeks[i]);
        if (load_csv(path, t) != SP_OK) return SP_ERR_IO;
    }
    if (t->n == 0) {
        fprintf(stderr, "fraud: no transactions in %s\n", a->data);
        return SP_ERR_BADINPUT;
    }
    /* mergesort-stable order is not needed: equal times keep no meaning */
    qsort(t->v, t->n, sizeof *t->v, cmp_ts);
    return SP_OK;
}

struct replay {
    float *x;        /* n * SP_FF__COUNT features, as each tx was scored */
    double *unsup;   /* unsupervised score */
    double *cost_ns; /* extract + score time per tx */
    double *live;    /* the score the stream had for it (model if loaded, else unsupervised) */
    uint8_t *known;  /* label released to the state (early by investigation, or by delay) */
    size_t investigated; /* labels released early */
    uint64_t alerts_rule;
    double wall_s; /* the whole replay: labels, extract, score, update, learn */
};

static void release(const struct tx *l, struct sp_fraud_user *users, struct sp_fraud_terminal *terms) {
    sp_fraud_terminal_label(&terms[l->terminal], l->ts_ms, l->fraud);
    sp_fraud_user_label(&users[l->customer], l->ts_ms, l->fraud);
}

/* Investigated alerts for the day held by t->v[from, to): the k customers
 * with the highest live score that day (ties by lower id) get all their
 * labels of the day released now. best[] is scratch of max_customer + 1
 * entries, all -1 on entry and on return. */
static void investigate(const struct txs *t, size_t from, size_t to, int k, double *best,
                        struct replay *out, struct sp_fraud_user *users,
                        struct sp_fraud_terminal *terms) {
    int32_t *cand = sp_xmalloc((to - from + 1) * sizeof *cand);
    size_t nc = 0;
    for (size_t i = from; i < to; i++) {
        int32_t c = t->v[i].customer;
        if (best[c] < 0) cand[nc++] = c;
        if (out->live[i] > best[c]) best[c] = out->live[i];
    }
    /* partial selection of the k best: k is small (100) */
    size_t top = nc < (size_t)k ? nc : (size_t)k;
    for (size_t a = 0; a < top; a++) {
        size_t m = a;
        for (size_t b = a + 1; b < nc; b++)
            if (best[cand[b]] > best[cand[m]] ||
                (best[cand[b]] == best[cand[m]] && cand[b] < cand[m]))
                m = b;
        int32_t tmp = cand[a];
        cand[a] = cand[m];
        cand[m] = tmp;
    }
    for (size_t a = 0; a < top; a++) best[cand[a]] = 2; /* mark: investigated */
    for (size_t i = from; i < to; i++)
        if (best[t->v[i].customer] == 2 && !out->known[i]) {
            release(&t->v[i], users, terms);
            out->known[i] = 1;
            out->investigated++;
        }
    for (size_t a = 0; a < nc; a++) best[cand[a]] = -1;
    free(cand);
}

/* The stream: labels whose delay has passed reach the terminals, then the
 * tx is featurized and scored against the state as it was, then learned.
 * Labels are released in transaction order, which is release order too
 * because the delay is constant. With feedback > 0, the investigated
 * customers' labels of a day are released when the next day starts. */
static void replay_stream(const struct txs *t, const struct sp_fraud_config *cfg,
                          sp_fraud_scorer *sc, const sp_logreg *model, int feedback,
                          struct replay *out) {
    size_t nc = (size_t)t->max_customer + 1, nt = (size_t)t->max_terminal + 1;
    struct sp_fraud_user *users = sp_xmalloc(nc * sizeof *users);
    struct sp_fraud_card *cards = sp_xmalloc(nc * sizeof *cards);
    struct sp_fraud_terminal *terms = sp_xmalloc(nt * sizeof *terms);
    for (size_t i = 0; i < nc; i++) {
        sp_fraud_user_init(&users[i]);
        sp_fraud_card_init(&cards[i]);
    }
    for (size_t i = 0; i < nt; i++) sp_fraud_terminal_init(&terms[i]);
    int64_t delay_ms = (int64_t)cfg->label_delay_days * DAY_MS;
    size_t released = 0, day_start = 0;
    double *best = NULL;
    if (feedback > 0) {
        best = sp_xmalloc(nc * sizeof *best);
        for (size_t i = 0; i < nc; i++) best[i] = -1;
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct tx *x = &t->v[i];
        if (x->day != t->v[day_start].day) {
            if (best) investigate(t, day_start, i, feedback, best, out, users, terms);
            day_start = i;
        }
        while (released < i && t->v[released].ts_ms + delay_ms <= x->ts_ms) {
            if (!out->known[released]) release(&t->v[released], users, terms);
            out->known[released++] = 1;
        }
        struct sp_fraud_state st = {.user = &users[x->customer], .card = &cards[x->customer],
                                    .terminal = &terms[x->terminal]};
        /* The handbook has no account ages and every customer exists from
         * day 0, so first-seen would be the simulation clock in disguise
         * (and the fraud rate rises with it): give every account the same
         * age of one year instead. */
        struct sp_fraud_order o = {.ts_ms = x->ts_ms, .amount = x->amount,
                                   .user = (uint64_t)x->customer + 1,
                                   .card = (uint64_t)x->customer + 1, .session_views = -1,
                                   .account_created_ms = x->ts_ms - 365 * DAY_MS};
        struct sp_fraud_features f;
        struct sp_fraud_result r;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        sp_fraud_extract(cfg, &st, &o, &f);
        sp_fraud_score(sc, &f, &r);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        out->cost_ns[i] = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
        memcpy(out->x + i * SP_FF__COUNT, f.v, sizeof f.v);
        out->unsup[i] = r.unsup;
        out->live[i] = model ? sp_logreg_predict(model, f.v) : r.unsup;
        out->alerts_rule += f.v[SP_FF_RULE] > 0;
        sp_fraud_update(cfg, &st, &o);
        sp_fraud_scorer_learn(sc, &f);
    }
    free(best);
    free(users);
    free(cards);
    free(terms);
}

/* Chosen on a validation split inside weeks 1-2 (train on days 0-6, score
 * days 7-13), see bench/RESULTS.md. */
static const struct sp_logreg_opts fraud_lr_opts = {
    .epochs = 4000, .lr = 0.2, .l2 = 0, .standardize = 1, .pos_weight = 1.0};

/* Fits the model on the rows keep[] marks. */
static sp_logreg *fit(const struct txs *t, const struct replay *rp, const uint8_t *keep,
                      size_t *used, size_t *frauds) {
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) n += keep[i];
    float *x = sp_xmalloc((n ? n : 1) * SP_FF__COUNT * sizeof(float));
    uint8_t *y = sp_xmalloc(n ? n : 1);
    size_t r = 0;
    *frauds = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!keep[i]) continue;
        memcpy(x + r * SP_FF__COUNT, rp->x + i * SP_FF__COUNT, SP_FF__COUNT * sizeof(float));
        y[r] = t->v[i].fraud;
        *frauds += y[r++];
    }
    *used = n;
    sp_logreg *m = sp_logreg_new(SP_FF__COUNT);
    if (sp_logreg_train(m, x, y, n, &fraud_lr_opts) != SP_OK) {
        sp_logreg_destroy(m);
        m = NULL;
    }
    free(x);
    free(y);
    return m;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const struct fraud_args *a, const struct txs *t, const struct replay *rp,
                   const sp_logreg *model, const struct sp_fraud_config *cfg) {
    size_t m = 0;
    for (size_t i = 0; i < t->n; i++) m += t->v[i].day >= a->test_from && t->v[i].day < a->test_until;
    if (m == 0) {
        printf("no transactions in test days [%d, %d)\n", a->test_from, a->test_until);
        return;
    }
    double *score = sp_xmalloc(m * sizeof *score), *cost = sp_xmalloc(m * sizeof *cost);
    uint8_t *label = sp_xmalloc(m);
    int32_t *day = sp_xmalloc(m * sizeof *day), *cust = sp_xmalloc(m * sizeof *cust);
    size_t j = 0, frauds = 0, alerts = 0, tp = 0;
    size_t scen_n[8] = {0}, scen_hit[8] = {0};
    for (size_t i = 0; i < t->n; i++) {
        const struct tx *x = &t->v[i];
        if (x->day < a->test_from || x->day >= a->test_until) continue;
        const float *f = rp->x + i * SP_FF__COUNT;
        score[j] = model ? sp_logreg_predict(model, f) : rp->unsup[i];
        int alert = score[j] > cfg->alert_threshold || f[SP_FF_RULE] > 0;
        label[j] = x->fraud;
        day[j] = x->day;
        cust[j] = x->customer;
        cost[j] = rp->cost_ns[i];
        frauds += x->fraud;
        alerts += alert;
        tp += alert && x->fraud;
        if (x->fraud && x->scenario < 8) {
            scen_n[x->scenario]++;
            scen_hit[x->scenario] += alert;
        }
        j++;
    }
    if (a->scores) {
        FILE *f = fopen(a->scores, "w");
        if (!f) {
            perror(a->scores);
        } else {
            fprintf(f, "transaction_id,customer,terminal,day,score,label,scenario\n");
            for (size_t i = 0, r = 0; i < t->n; i++) {
                const struct tx *x = &t->v[i];
                if (x->day < a->test_from || x->day >= a->test_until) continue;
                fprintf(f, "%lld,%d,%d,%d,%.9g,%d,%d\n", (long long)x->id, x->customer,
                        x->terminal, x->day, score[r++], x->fraud, x->scenario);
            }
            fclose(f);
        }
    }
    printf("test days [%d, %d): %zu transactions, %zu frauds (%.2f%%), scorer: %s\n",
           a->test_from, a->test_until, m, frauds, 100.0 * frauds / m,
           model ? "logistic model (unsupervised score among its inputs)" : "unsupervised");
    printf("AUC ROC            %.4f\n", sp_metric_auc(score, label, m));
    printf("Average Precision  %.4f\n", sp_metric_ap(score, label, m));
    printf("Card Precision@100 %.4f\n", sp_metric_card_precision(day, cust, score, label, m, 100, 1));
    printf("alerts (score > %.2f or rule): %zu, precision %.4f, recall %.4f\n",
           cfg->alert_threshold, alerts, alerts ? (double)tp / alerts : 0,
           frauds ? (double)tp / frauds : 0);
    static const char *const scen_name[4] = {
        "", "1 amount > 220", "2 compromised terminal (28 days)", "3 compromised card (14 days, amount x5 on 1/3)"};
    uint8_t *only = sp_xmalloc(m);
    for (int s = 1; s < 4; s++) {
        if (!scen_n[s]) continue;
        /* AUC of this scenario's frauds against the legitimate transactions
         * (the other scenarios' frauds left out). */
        size_t k = 0;
        double *sc = sp_xmalloc(m * sizeof *sc);
        for (size_t i = 0, r = 0; i < t->n; i++) {
            const struct tx *x = &t->v[i];
            if (x->day < a->test_from || x->day >= a->test_until) continue;
            if (!x->fraud || x->scenario == s) {
                sc[k] = score[r];
                only[k++] = x->fraud;
            }
            r++;
        }
        printf("  scenario %s: %zu frauds, recall %.4f, AUC vs legitimate %.4f\n", scen_name[s],
               scen_n[s], (double)scen_hit[s] / scen_n[s], sp_metric_auc(sc, only, k));
        free(sc);
    }
    free(only);
    qsort(cost, m, sizeof *cost, cmp_dbl);
    printf("scoring cost per tx (extract + unsupervised score): p50 %.2f us, p99 %.2f us\n",
           cost[m / 2] / 1000.0, cost[(size_t)(0.99 * (double)(m - 1))] / 1000.0);
    printf("replay of all %zu tx: %.2f s, %.0f tx/s (labels, extract, score, update, HST learn; "
           "single thread, no Kafka/Redis)\n",
           t->n, rp->wall_s, (double)t->n / rp->wall_s);
    free(score);
    free(cost);
    free(label);
    free(day);
    free(cust);
}

static void print_weights(const sp_logreg *m) {
    fprintf(stderr, "fraud: model weights (standardized units):");
    for (int i = 0; i < SP_FF__COUNT; i++)
        fprintf(stderr, "%s %s=%.2f", i % 6 ? "" : "\n ", sp_fraud_feature_name(i),
                sp_logreg_weight(m, (size_t)i));
    fprintf(stderr, "\n");
}

static int run(const char *mode, struct fraud_args *a) {
    struct txs t = {0};
    struct replay rp = {0};
    struct sp_fraud_config cfg;
    sp_fraud_scorer *sc = NULL;
    sp_logreg *model = NULL;
    uint8_t *keep = NULL;
    char err[512];
    int rc = 1;
    sp_fraud_config_default(&cfg);
    cfg.label_delay_days = a->label_delay;
    if (load_weeks(a, &t) != SP_OK) goto fail;
    if (a->model && !(model = sp_logreg_load(a->model, err, sizeof err))) {
        fprintf(stderr, "fraud: %s\n", err);
        goto fail;
    }
    if (model && sp_logreg_dim(model) != SP_FF__COUNT) {
        fprintf(stderr, "fraud: %s has %zu features, this build computes %d\n", a->model,
                sp_logreg_dim(model), SP_FF__COUNT);
        goto fail;
    }
    if (!(sc = sp_fraud_scorer_new(&cfg, NULL, err, sizeof err))) {
        fprintf(stderr, "fraud: %s\n", err);
        goto fail;
    }
    rp.x = sp_xmalloc(t.n * SP_FF__COUNT * sizeof(float));
    rp.unsup = sp_xmalloc(t.n * sizeof(double));
    rp.cost_ns = sp_xmalloc(t.n * sizeof(double));
    rp.live = sp_xmalloc(t.n * sizeof(double));
    rp.known = sp_xcalloc(t.n, 1);
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    replay_stream(&t, &cfg, sc, model, a->feedback, &rp);
    if (a->feedback > 0)
        fprintf(stderr, "fraud: investigated alerts: %d customers a day, %zu labels known the next day\n",
                a->feedback, rp.investigated);
    clock_gettime(CLOCK_MONOTONIC, &w1);
    rp.wall_s = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
    keep = sp_xcalloc(t.n, 1);
    if (!strcmp(mode, "train")) {
        for (size_t i = 0; i < t.n; i++) keep[i] = 1;
    } else if (a->has_train_until && !model) {
        int64_t until = (int64_t)a->train_until * DAY_MS;
        int64_t known = until - (a->train_all_labels ? 0 : (int64_t)a->label_delay * DAY_MS);
        for (size_t i = 0; i < t.n; i++) keep[i] = t.v[i].ts_ms < known;
    }
    size_t used = 0, frauds = 0;
    for (size_t i = 0; i < t.n && !model; i++)
        if (keep[i]) {
            model = fit(&t, &rp, keep, &used, &frauds);
            if (!model) goto fail;
            fprintf(stderr, "fraud: trained on %zu transactions (%zu frauds)\n", used, frauds);
            print_weights(model);
            break;
        }
    if (!strcmp(mode, "train")) {
        if (sp_logreg_save(model, a->out, err, sizeof err) != SP_OK) {
            fprintf(stderr, "fraud: %s\n", err);
            goto fail;
        }
        printf("wrote %s (%d features, %zu transactions, %zu frauds)\n", a->out, SP_FF__COUNT,
               used, frauds);
    } else {
        report(a, &t, &rp, model, &cfg);
    }
    rc = 0;
fail:
    free(keep);
    free(rp.x);
    free(rp.unsup);
    free(rp.cost_ns);
    free(rp.live);
    free(rp.known);
    free(t.v);
    sp_logreg_destroy(model);
    sp_fraud_scorer_destroy(sc);
    return rc;
}

/* The spelling: `eval-fraud` = `fraud eval`; --format names the CSV
 * layout and only the handbook's is known. */
int sp_cmd_eval_fraud(int argc, char **argv) {
    char **args = sp_xcalloc((size_t)argc + 2, sizeof *args);
    int n = 0, rc;
    args[n++] = "fraud";
    args[n++] = "eval";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            if (strcmp(argv[++i], "handbook")) {
                fprintf(stderr, "eval-fraud: unknown --format '%s' (known: handbook)\n", argv[i]);
                free(args);
                return 2;
            }
            continue;
        }
        if (!strcmp(argv[i], "--format=handbook")) continue;
        args[n++] = argv[i];
    }
    rc = sp_cmd_fraud(n, args);
    free(args);
    return rc;
}

int sp_cmd_fraud(int argc, char **argv) {
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},        {"weeks", required_argument, NULL, 'w'},
        {"out", required_argument, NULL, 'o'},         {"model", required_argument, NULL, 'm'},
        {"train-until", required_argument, NULL, 't'}, {"test-from", required_argument, NULL, 'f'},
        {"test-until", required_argument, NULL, 'u'},  {"label-delay", required_argument, NULL, 'l'},
        {"train-labels", required_argument, NULL, 'L'}, {"help", no_argument, NULL, 'h'},
        {"scores", required_argument, NULL, 's'},      {"feedback", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0}};
    if (argc < 2 || (strcmp(argv[1], "train") && strcmp(argv[1], "eval"))) {
        usage(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    const char *mode = argv[1];
    int train = !strcmp(mode, "train");
    struct fraud_args a = {.test_from = 14, .test_until = 21, .label_delay = 7};
    parse_weeks(train ? "1,2" : "1,2,3", &a);
    int c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': a.data = optarg; break;
        case 'w':
            if (parse_weeks(optarg, &a)) {
                fprintf(stderr, "fraud: bad --weeks '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': a.out = optarg; break;
        case 'm': a.model = optarg; break;
        case 's': a.scores = optarg; break;
        case 't': a.train_until = atoi(optarg); a.has_train_until = 1; break;
        case 'f': a.test_from = atoi(optarg); break;
        case 'u': a.test_until = atoi(optarg); break;
        case 'l': a.label_delay = atoi(optarg); break;
        case 'F': a.feedback = atoi(optarg); break;
        case 'L':
            if (strcmp(optarg, "known") && strcmp(optarg, "all")) {
                fprintf(stderr, "fraud: --train-labels is 'known' or 'all'\n");
                return 2;
            }
            a.train_all_labels = !strcmp(optarg, "all");
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!a.data || (train && !a.out) || (!train && a.model && a.has_train_until) ||
        a.label_delay < 0 || a.feedback < 0 || a.test_until <= a.test_from || optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    return run(mode, &a);
}
