/* The train and eval subcommands. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/data.h"
#include "models/model.h"
#include "models/eval.h"
#include "models/scorer.h"
#include "models/train.h"
#include "stream/cli.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/log.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU time of this thread: unlike wall time, not inflated when a shared
 * machine preempts us, so it shows what the scoring itself costs. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}


static void train_usage(FILE *f) {
    fprintf(f,
            "usage: shopstream train --data FILE --format seq|rsc15|diginetica|events\n"
            "                        --model gru|sasrec|mf --out FILE [options]\n"
            "  --dim N          embedding size (mf 32, others 64)\n"
            "  --epochs N       passes over the data (mf 30, others 20)\n"
            "  --batch N        sequences per Adam step (128)\n"
            "  --lr F           learning rate (mf 0.05 SGD, others 0.001 Adam)\n"
            "  --lr-decay F     mf: lr / (1 + F * epoch) (0.01)\n"
            "  --l2 F           L2 penalty (mf 0.01, others 0)\n"
            "  --dropout F      dropout in training (sasrec 0.5, gru 0.2 on inputs and outputs)\n"
            "  --neg N          sampled negatives (mf 1 per event, others 128 per sequence)\n"
            "  --max-len N      last N items used (50)\n"
            "  --blocks N       sasrec attention blocks (2)\n"
            "  --weight KIND=F  mf weight of an event kind (view, click, add_to_cart, ...)\n"
            "  --holdout N      leave the last N events of each sequence out (0)\n"
            "  --seed N         random seed (42); the same seed gives the same model\n"
            "  --max-seconds S  stop after the epoch that passes S seconds\n"
            "  --quiet          no progress output\n");
}

static int parse_weight(struct sp_model_config *cfg, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq) return SP_ERR_BADINPUT;
    /* the names of enum sp_event_kind, as stream/event.h spells them */
    static const char *names[] = {"view",  "click",  "add_to_cart", "remove_from_cart",
                                  "search", "order", "review"};
    for (int k = 0; k < SP_KIND__COUNT && k < SP_MODEL_N_WEIGHTS; k++) {
        const char *name = names[k];
        if (strlen(name) == (size_t)(eq - arg) && !strncmp(arg, name, (size_t)(eq - arg))) {
            cfg->weights[k] = strtof(eq + 1, NULL);
            return SP_OK;
        }
    }
    return SP_ERR_BADINPUT;
}

int sp_cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},     {"format", required_argument, 0, 'f'},
        {"model", required_argument, 0, 'm'},    {"out", required_argument, 0, 'o'},
        {"dim", required_argument, 0, 1},        {"epochs", required_argument, 0, 2},
        {"batch", required_argument, 0, 3},      {"lr", required_argument, 0, 4},
        {"lr-decay", required_argument, 0, 5},   {"l2", required_argument, 0, 6},
        {"dropout", required_argument, 0, 7},    {"neg", required_argument, 0, 8},
        {"max-len", required_argument, 0, 9},    {"blocks", required_argument, 0, 10},
        {"weight", required_argument, 0, 11},    {"holdout", required_argument, 0, 12},
        {"seed", required_argument, 0, 13},      {"max-seconds", required_argument, 0, 14},
        {"quiet", no_argument, 0, 'q'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *data = NULL, *fmt_s = "seq", *kind_s = NULL, *out = NULL;
    enum sp_model_kind kind;
    sp_model_blas_threads();
    /* the kind decides the defaults, so find it before the other flags */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--model")) kind_s = argv[i + 1];
    if (!kind_s || sp_model_kind_parse(kind_s, &kind) != SP_OK) {
        fprintf(stderr, "train: --model gru|sasrec|mf is required\n");
        train_usage(stderr);
        return 2;
    }
    struct sp_train_opts o;
    sp_train_opts_default(&o, kind);
    o.progress = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:f:m:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'f': fmt_s = optarg; break;
        case 'm': break;
        case 'o': out = optarg; break;
        case 1: o.cfg.dim = (uint32_t)atoi(optarg); break;
        case 2: o.epochs = (uint32_t)atoi(optarg); break;
        case 3: o.batch = (uint32_t)atoi(optarg); break;
        case 4: o.cfg.lr = strtof(optarg, NULL); break;
        case 5: o.cfg.lr_decay = strtof(optarg, NULL); break;
        case 6: o.cfg.l2 = strtof(optarg, NULL); break;
        case 7: o.cfg.dropout = strtof(optarg, NULL); break;
        case 8: o.cfg.n_neg = (uint32_t)atoi(optarg); break;
        case 9: o.cfg.max_len = (uint32_t)atoi(optarg); break;
        case 10: o.cfg.n_blocks = (uint32_t)atoi(optarg); break;
        case 11:
            if (parse_weight(&o.cfg, optarg) != SP_OK) {
                fprintf(stderr, "train: --weight wants KIND=F with a known event kind\n");
                return 2;
            }
            break;
        case 12: o.holdout = (uint32_t)atoi(optarg); break;
        case 13: o.seed = strtoull(optarg, NULL, 10); break;
        case 14: o.max_seconds = atof(optarg); break;
        case 'q': o.progress = -1; break;
        case 'h': train_usage(stdout); return 0;
        default: train_usage(stderr); return 2;
        }
    }
    enum sp_data_format fmt;
    if (!data || !out || sp_data_format_parse(fmt_s, &fmt) != SP_OK || o.batch == 0 ||
        o.cfg.dropout < 0 || o.cfg.dropout >= 1) {
        fprintf(stderr, "train: need --data, --out and a valid --format; see --help\n");
        return 2;
    }
    char err[512];
    struct sp_dataset ds;
    sp_vocab *vocab = sp_vocab_new();
    if (sp_dataset_load(data, fmt, vocab, 0, &ds, err, sizeof err) != SP_OK) {
        fprintf(stderr, "train: %s\n", err);
        sp_vocab_destroy(vocab);
        return 1;
    }
    sp_info("train: %s: %zu sequences, %zu events, %zu items; %s dim %u", data, ds.n_seq,
            ds.n_events, sp_vocab_size(vocab), sp_model_kind_name(kind), o.cfg.dim);
    double t0 = now_s();
    sp_model *m = sp_train(&ds, vocab, &o, err, sizeof err);
    sp_dataset_release(&ds);
    if (!m) {
        fprintf(stderr, "train: %s\n", err);
        return 1;
    }
    int rc = sp_model_save(m, out, err, sizeof err);
    if (rc != SP_OK) fprintf(stderr, "train: %s\n", err);
    else sp_info("train: wrote %s in %.1fs", out, now_s() - t0);
    printf("trained %s in %.1f s -> %s\n", sp_model_kind_name(kind), now_s() - t0, out);
    sp_model_destroy(m);
    return rc == SP_OK ? 0 : 1;
}

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: shopstream eval --data FILE --format seq|rsc15|diginetica|events\n"
            "                       --model FILE|pop|itemknn\n"
            "                       --protocol sampled100|full|session|prequential [options]\n"
            "  --train FILE         session protocol: training data the baselines are fitted on\n"
            "  --train-format F     format of --train (default: --format)\n"
            "  --k LIST             cut-offs, e.g. 10,20 (default 10,20)\n"
            "  --seed N             sampling seed (42)\n"
            "  --max-users N        sampled100: users drawn (10000)\n"
            "  --max-events N       prequential: predictions made (0 = all)\n"
            "  --fold-passes N      mf: passes of online updates over a history (20)\n"
            "  --holdout N          baselines: leave the last N events of each sequence out\n"
            "                       when fitting (leave-one-out protocols: 1)\n"
            "  --bench-serving N    time scoring against N random items instead (one core)\n"
            "  --dim N              --bench-serving: vector size (64)\n");
}

static int bench_serving(size_t n_items, uint32_t dim, size_t n_users, uint64_t seed);

int sp_cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'},       {"format", required_argument, 0, 'f'},
        {"model", required_argument, 0, 'm'},      {"protocol", required_argument, 0, 'p'},
        {"train", required_argument, 0, 't'},      {"train-format", required_argument, 0, 1},
        {"k", required_argument, 0, 2},            {"seed", required_argument, 0, 3},
        {"max-users", required_argument, 0, 4},    {"max-events", required_argument, 0, 5},
        {"fold-passes", required_argument, 0, 6},  {"bench-serving", required_argument, 0, 7},
        {"dim", required_argument, 0, 8},          {"users", required_argument, 0, 9},
        {"holdout", required_argument, 0, 10},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    const char *data = NULL, *fmt_s = "seq", *model_s = NULL, *proto_s = NULL, *train = NULL,
               *tfmt_s = NULL;
    struct sp_eval_opts o = {.ks = {10, 20}, .n_k = 2, .seed = 42, .max_users = 10000};
    uint32_t fold = 20, dim = 64;
    long fit_holdout = -1;
    size_t bench_items = 0, bench_users = 2000;
    int c;
    sp_model_blas_threads();
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:f:m:p:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'f': fmt_s = optarg; break;
        case 'm': model_s = optarg; break;
        case 'p': proto_s = optarg; break;
        case 't': train = optarg; break;
        case 1: tfmt_s = optarg; break;
        case 2: {
            o.n_k = 0;
            for (char *p = optarg; *p && o.n_k < SP_METRICS_MAX_K;) {
                char *end;
                long k = strtol(p, &end, 10);
                if (end == p || k < 1) break;
                o.ks[o.n_k++] = (size_t)k;
                p = *end == ',' ? end + 1 : end;
            }
            break;
        }
        case 3: o.seed = strtoull(optarg, NULL, 10); break;
        case 4: o.max_users = (size_t)atol(optarg); break;
        case 5: o.max_events = (size_t)atol(optarg); break;
        case 6: fold = (uint32_t)atoi(optarg); break;
        case 7: bench_items = (size_t)atol(optarg); break;
        case 8: dim = (uint32_t)atoi(optarg); break;
        case 9: bench_users = (size_t)atol(optarg); break;
        case 10: fit_holdout = atol(optarg); break;
        case 'h': eval_usage(stdout); return 0;
        default: eval_usage(stderr); return 2;
        }
    }
    if (bench_items) return bench_serving(bench_items, dim, bench_users, o.seed);
    enum sp_data_format fmt, tfmt;
    enum sp_protocol proto;
    if (!data || !model_s || !proto_s || sp_data_format_parse(fmt_s, &fmt) != SP_OK ||
        sp_protocol_parse(proto_s, &proto) != SP_OK || o.n_k == 0 ||
        sp_data_format_parse(tfmt_s ? tfmt_s : fmt_s, &tfmt) != SP_OK) {
        fprintf(stderr, "eval: need --data, --model, --protocol and valid formats\n");
        eval_usage(stderr);
        return 2;
    }
    char err[512];
    int rc = 1, baseline = !strcmp(model_s, "pop") || !strcmp(model_s, "itemknn");
    sp_model *m = NULL;
    sp_vocab *vocab = NULL;
    sp_rec *r = NULL;
    struct sp_dataset ds = {0}, fit = {0};
    double t0 = now_s();
    if (!baseline) {
        m = sp_model_load(model_s, err, sizeof err);
        if (!m) goto fail;
        vocab = m->vocab;
    } else {
        vocab = sp_vocab_new();
        if (train && sp_dataset_load(train, tfmt, vocab, 0, &fit, err, sizeof err) != SP_OK)
            goto fail;
    }
    if (sp_dataset_load(data, fmt, vocab, m || train, &ds, err, sizeof err) != SP_OK) goto fail;
    size_t n_items = sp_vocab_size(vocab);
    if (m) {
        r = sp_rec_new_model(m, fold);
    } else {
        /* without --train, baselines learn from the data minus each last
         * item (leave-one-out), from nothing (prequential: they learn as
         * the stream goes), or, for sessions, from the test data itself */
        int loo = !train && (proto == SP_PROTO_SAMPLED100 || proto == SP_PROTO_FULL);
        uint32_t holdout = loo ? 1 : 0;
        if (!train && proto == SP_PROTO_PREQUENTIAL) holdout = UINT32_MAX;
        if (fit_holdout >= 0) holdout = (uint32_t)fit_holdout;
        r = sp_rec_new_baseline(!strcmp(model_s, "pop") ? SP_REC_POP : SP_REC_KNN,
                                train ? &fit : &ds, n_items, holdout);
        if (!train && proto == SP_PROTO_SESSION)
            sp_warn("eval: baseline fitted on the evaluation data itself; pass --train");
    }
    struct sp_metrics mt;
    o.protocol = proto;
    sp_evaluate(r, &ds, n_items, &o, &mt);
    double el = now_s() - t0;
    const char *name = m ? sp_model_kind_name(m->cfg.kind) : model_s;
    int sess = proto == SP_PROTO_SESSION || proto == SP_PROTO_PREQUENTIAL;
    printf("%-8s %-12s %8s", "model", "protocol", "queries");
    for (size_t i = 0; i < mt.n_k; i++) {
        printf(sess ? "  Recall@%-3zu" : "  HR@%-7zu", mt.k[i]);
        printf("  NDCG@%-5zu", mt.k[i]);
        if (sess) printf("  MRR@%-6zu", mt.k[i]);
    }
    printf("  seconds\n%-8s %-12s %8zu", name, proto_s, mt.n);
    for (size_t i = 0; i < mt.n_k; i++) {
        printf("  %-11.4f", sp_metrics_mean(&mt, &mt.hit[i]));
        printf("  %-10.4f", sp_metrics_mean(&mt, &mt.ndcg[i]));
        if (sess) printf("  %-10.4f", sp_metrics_mean(&mt, &mt.mrr[i]));
    }
    printf("  %.1f\n", el);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "eval: %s\n", err);
    sp_rec_destroy(r);
    sp_dataset_release(&ds);
    sp_dataset_release(&fit);
    if (m)
        sp_model_destroy(m);
    else
        sp_vocab_destroy(vocab);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Serving cost on a random GRU model of n_items items: per user one GRU
 * step plus top-10 over all items with 20 exclusions (what the recommend
 * operator does per page view), then the same users 64 at a time through
 * the batched sgemm path. */
static int bench_serving(size_t n_items, uint32_t dim, size_t n_users, uint64_t seed) {
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, SP_MODEL_GRU);
    cfg.dim = dim;
    sp_vocab *v = sp_vocab_new();
    char id[32], err[256];
    for (size_t i = 0; i < n_items; i++) sp_vocab_add(v, id, (size_t)snprintf(id, sizeof id, "i%zu", i));
    sp_model *m = sp_model_new(&cfg, v, seed, err, sizeof err);
    if (!m) {
        fprintf(stderr, "eval: %s\n", err);
        return 1;
    }
    sp_scorer *s = sp_scorer_new(m, 64, err, sizeof err);
    uint64_t rng = sp_rng_seed(seed);
    float *users = sp_xcalloc(n_users * dim, sizeof(float));
    double *lat = sp_xmalloc(n_users * sizeof(double)), *cpu = sp_xmalloc(n_users * sizeof(double));
    int32_t ex[20];
    struct sp_scored top[10];
    struct sp_scored *btop = sp_xmalloc(n_users * 10 * sizeof *btop);
    size_t *cnt = sp_xmalloc(n_users * sizeof *cnt);
    struct sp_exclude *exl = sp_xmalloc(n_users * sizeof *exl);
    double t0 = now_s();
    for (size_t u = 0; u < n_users; u++) {
        for (int j = 0; j < 20; j++) ex[j] = (int32_t)sp_rng_below(&rng, (uint32_t)n_items);
        struct sp_exclude e = {ex, 20};
        double a = now_s(), ac = cpu_s();
        sp_gru_step(m, users + u * dim, ex[0]);
        sp_scorer_topk(s, users + u * dim, NULL, 0, &e, 10, top);
        lat[u] = now_s() - a;
        cpu[u] = cpu_s() - ac;
    }
    double single = now_s() - t0;
    for (size_t u = 0; u < n_users; u++) exl[u] = (struct sp_exclude){ex, 20};
    t0 = now_s();
    sp_scorer_topk_batch(s, users, n_users, exl, 10, btop, cnt);
    double batched = now_s() - t0;
    qsort(lat, n_users, sizeof *lat, cmp_double);
    qsort(cpu, n_users, sizeof *cpu, cmp_double);
    printf("items %zu dim %u users %zu: per user wall p50 %.3f ms p99 %.3f ms, cpu p50 %.3f ms "
           "p99 %.3f ms, %.0f users/s; batched by 64: %.0f users/s\n",
           n_items, dim, n_users, lat[n_users / 2] * 1e3, lat[(size_t)(n_users * 0.99)] * 1e3,
           cpu[n_users / 2] * 1e3, cpu[(size_t)(n_users * 0.99)] * 1e3,
           (double)n_users / single, (double)n_users / batched);
    free(users);
    free(lat);
    free(cpu);
    free(btop);
    free(cnt);
    free(exl);
    sp_scorer_destroy(s);
    sp_model_destroy(m);
    return 0;
}
