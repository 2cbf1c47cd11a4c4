/* Anomaly detectors: EWMA z-scores against hand-computed values, clipping,
 * Half-Space Trees on a planted outlier, the KPI detector on synthetic series
 * with planted spikes and drops, and `shopstream score-series` streaming. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/anomaly.h"
#include "stream/error.h"

/* Deterministic standard normal noise (xorshift + Box-Muller). */
static uint64_t rng = 88172645463325252ull;
static double unif(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(2 * M_PI * unif()); }

Test(zscore, maps_sigmas_to_unit_interval) {
    cr_assert_float_eq(sp_anomaly_z_to_score(0), 0.0, 1e-12);
    cr_assert_float_eq(sp_anomaly_z_to_score(3), 0.5, 1e-12);
    cr_assert_float_eq(sp_anomaly_z_to_score(-6), 0.8, 1e-12);
    cr_assert_float_eq(sp_anomaly_z_to_score(INFINITY), 1.0, 1e-12);
    cr_assert_lt(sp_anomaly_z_to_score(9.9), sp_anomaly_z_to_score(10));
}

Test(zscore, ewma_mean_spread_and_reason) {
    struct sp_ewma_z s;
    struct sp_ewma_z_opts o = {.alpha = 0.1, .clip = 0, .min_std = 0.01, .warmup = 2};
    sp_ewma_z_init(&s);
    cr_assert_float_eq(sp_ewma_z_score(&s, 100, &o), 0.0, 1e-12, "no history, no alarm");
    sp_ewma_z_update(&s, 10, &o);
    cr_assert_float_eq(sp_ewma_z_score(&s, 100, &o), 0.0, 1e-12, "still warming up");
    sp_ewma_z_update(&s, 20, &o);
    /* Two points: mean 15, population variance 25 (by hand). */
    cr_assert_float_eq(s.mean, 15.0, 1e-12);
    cr_assert_float_eq(sp_ewma_z_std(&s, &o), 5.0, 1e-12);
    cr_assert_float_eq(sp_ewma_z_score(&s, 45, &o), 6.0, 1e-12);
    cr_assert_float_eq(sp_ewma_z_score(&s, 5, &o), -2.0, 1e-12);
    /* Third point weighs max(alpha, 1/3) = 1/3: mean 15 + 15/3 = 20,
     * var = (2/3)(25 + (1/3) 225) = 66.67. */
    sp_ewma_z_update(&s, 30, &o);
    cr_assert_float_eq(s.mean, 20.0, 1e-12);
    cr_assert_float_eq(s.var, 200.0 / 3.0, 1e-9);

    char buf[128];
    sp_anomaly_z_reason(buf, sizeof buf, "amount", 9.31, "this user's");
    cr_assert_str_eq(buf, "amount 9.3σ above this user's mean");
    sp_anomaly_z_reason(buf, sizeof buf, "orders", -4.04, "the forecast's");
    cr_assert_str_eq(buf, "orders 4.0σ below the forecast's mean");
}

Test(zscore, clipping_keeps_one_outlier_from_hiding_the_next) {
    struct sp_ewma_z a, b;
    struct sp_ewma_z_opts clip = {.alpha = 0.1, .clip = 3, .min_std = 0.01, .warmup = 5};
    struct sp_ewma_z_opts raw = clip;
    raw.clip = 0;
    sp_ewma_z_init(&a);
    sp_ewma_z_init(&b);
    for (int i = 0; i < 200; i++) {
        double x = 50 + 5 * gauss();
        sp_ewma_z_update(&a, x, &clip);
        sp_ewma_z_update(&b, x, &raw);
    }
    sp_ewma_z_update(&a, 5000, &clip);
    sp_ewma_z_update(&b, 5000, &raw);
    double za = sp_ewma_z_score(&a, 500, &clip), zb = sp_ewma_z_score(&b, 500, &raw);
    cr_assert_gt(za, 30, "clipped state still sees 500 as extreme (z=%.1f)", za);
    cr_assert_lt(zb, 10, "unclipped state was blinded by the first outlier (z=%.1f)", zb);
}

Test(zscore, floor_on_spread_for_regular_histories) {
    struct sp_ewma_z s;
    struct sp_ewma_z_opts o = {.alpha = 0.1, .min_std = 0, .rel_std = 0.1, .warmup = 3};
    sp_ewma_z_init(&s);
    for (int i = 0; i < 20; i++) sp_ewma_z_update(&s, 40, &o);
    /* Identical amounts: spread 0, floored at 10% of 40. */
    cr_assert_float_eq(sp_ewma_z_score(&s, 41, &o), 0.25, 1e-9);
}

Test(hst, rejects_bad_sizes) {
    static struct sp_hst h;
    cr_assert_eq(sp_hst_init(&h, 0, 4, 2, 100, 1), SP_ERR_FATAL);
    cr_assert_eq(sp_hst_init(&h, 4, SP_HST_MAX_DEPTH + 1, 2, 100, 1), SP_ERR_FATAL);
    cr_assert_eq(sp_hst_init(&h, 4, 4, SP_HST_MAX_DIM + 1, 100, 1), SP_ERR_FATAL);
}

Test(hst, outlier_scores_above_the_cluster_and_state_is_plain_bytes) {
    static struct sp_hst h, copy, again;
    cr_assert_eq(sp_hst_init(&h, 25, 8, 3, 250, 42), SP_OK);
    cr_assert_eq(sp_hst_init(&again, 25, 8, 3, 250, 42), SP_OK);
    cr_assert_eq(memcmp(&h, &again, sizeof h), 0, "same seed, same trees");
    float in[3] = {0.3f, 0.3f, 0.6f}, out[3] = {0.9f, 0.95f, 0.05f};
    cr_assert_float_eq(sp_hst_score(&h, out), 0.0, 1e-12, "no reference window yet");
    for (int i = 0; i < 1000; i++) {
        float x[3] = {(float)(0.3 + 0.03 * gauss()), (float)(0.3 + 0.03 * gauss()),
                      (float)(0.6 + 0.03 * gauss())};
        sp_hst_update(&h, x);
    }
    cr_assert_eq(h.windows, 4);
    double si = sp_hst_score(&h, in), so = sp_hst_score(&h, out);
    cr_assert(si >= 0 && si <= 1 && so >= 0 && so <= 1);
    cr_assert_gt(so, 0.9, "outlier %.3f", so);
    cr_assert_lt(si, 0.2, "inlier %.3f", si);
    /* The state survives a byte copy (what an operator does through Redis). */
    memcpy(&copy, &h, sizeof h);
    cr_assert_eq(sp_hst_score(&copy, out), so);
}

/* Ranks: are the n planted indices exactly the n highest scores? */
static void assert_planted_on_top(const double *score, int len, const int *planted, int n) {
    for (int p = 0; p < n; p++) {
        int above = 0;
        for (int i = 0; i < len; i++) above += score[i] > score[planted[p]];
        cr_assert_lt(above, n, "planted point %d ranks %d (score %.3f)", planted[p], above + 1,
                     score[planted[p]]);
        cr_assert_gt(score[planted[p]], 0.7, "planted point %d scores %.3f", planted[p],
                     score[planted[p]]);
    }
}

Test(kpi, planted_spike_and_drop_in_a_noisy_level_series) {
    static struct sp_kpi_detector d;
    enum { N = 600 };
    double x[N], s[N];
    int planted[] = {200, 350, 351};
    cr_assert_eq(sp_kpi_init(&d, 0, 0.05), SP_OK);
    for (int i = 0; i < N; i++) x[i] = 100 + (i > 450 ? 20 : 0) * (i - 450) / 150.0 + 4 * gauss();
    x[200] += 60;
    x[350] -= 45;
    x[351] -= 45;
    for (int i = 0; i < N; i++) {
        s[i] = sp_kpi_score(&d, x[i], NULL);
        cr_assert(s[i] >= 0 && s[i] <= 1);
        sp_kpi_update(&d, x[i]);
    }
    assert_planted_on_top(s, N, planted, 3);
    /* The words of an alert name the value, the forecast and the sigmas. */
    char buf[128];
    sp_kpi_reason(buf, sizeof buf, "orders", 42, 100, -5.06);
    cr_assert_str_eq(buf, "orders 42 vs 100 expected (5.1σ below)");
    int alarms = 0;
    for (int i = 20; i < N; i++) alarms += s[i] > 0.7;
    cr_assert_leq(alarms, 5, "%d alarms for 3 planted points", alarms);
}

Test(kpi, seasonal_naive_finds_what_the_cycle_hides) {
    static struct sp_kpi_detector seas, flat;
    enum { N = 24 * 30 };
    double x[N], ss[N], sf[N];
    int planted[] = {24 * 20 + 6}; /* +25 at a trough: still inside the daily range */
    cr_assert_eq(sp_kpi_init(&seas, 24, 0.05), SP_OK);
    cr_assert(isnan(sp_kpi_forecast(&seas)), "no forecast before one season");
    cr_assert_eq(sp_kpi_init(&flat, 0, 0.05), SP_OK);
    for (int i = 0; i < N; i++) x[i] = 200 + 60 * sin(2 * M_PI * i / 24.0) + 3 * gauss();
    x[planted[0]] += 25;
    for (int i = 0; i < N; i++) {
        double z;
        if (i >= 24 && i != planted[0] + 24)
            cr_assert_float_eq(sp_kpi_forecast(&seas), x[i - 24], 1e-12,
                               "seasonal naive: last season's value");
        ss[i] = sp_kpi_score(&seas, x[i], &z);
        sf[i] = sp_kpi_score(&flat, x[i], NULL);
        sp_kpi_update(&seas, x[i]);
        sp_kpi_update(&flat, x[i]);
        if (i == planted[0]) cr_assert_gt(z, 0, "a spike has a positive z");
    }
    assert_planted_on_top(ss, N, planted, 1);
    /* One season later the clipped memory must not raise a false alarm. */
    cr_assert_lt(ss[planted[0] + 24], 0.5, "echo of the spike scored %.3f", ss[planted[0] + 24]);
    int above = 0;
    for (int i = 0; i < N; i++) above += sf[i] > sf[planted[0]];
    cr_assert_geq(above, 3, "the flat EWMA should not single it out (rank %d)", above + 1);
}

/* Feeds rows one by one through a pipe and reads each scored row before
 * writing the next: the command must answer without seeing later input. */
Test(cli, score_series_is_strictly_streaming, .timeout = 20) {
    const char *bin = getenv("SHOPSTREAM_BIN");
    cr_assert_not_null(bin, "SHOPSTREAM_BIN not set (run through make test)");
    int in[2], out[2];
    cr_assert_eq(pipe(in), 0);
    cr_assert_eq(pipe(out), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(bin, bin, "score-series", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    FILE *w = fdopen(in[1], "w"), *r = fdopen(out[0], "r");
    char line[256];
    fprintf(w, "ts,orders\n");
    fflush(w);
    cr_assert_not_null(fgets(line, sizeof line, r));
    cr_assert_str_eq(line, "ts,orders,anomaly_score\n");
    double best = -1;
    int best_at = -1;
    for (int i = 0; i < 120; i++) {
        double v = 50 + 2 * gauss() + (i == 90 ? 40 : 0);
        fprintf(w, "%d,%.3f\n", 1000 + 60 * i, v);
        fflush(w);
        cr_assert_not_null(fgets(line, sizeof line, r), "no answer to row %d", i);
        int ts;
        double val, sc;
        cr_assert_eq(sscanf(line, "%d,%lf,%lf", &ts, &val, &sc), 3, "bad row: %s", line);
        cr_assert_eq(ts, 1000 + 60 * i);
        cr_assert(sc >= 0 && sc <= 1);
        if (sc > best) best = sc, best_at = i;
    }
    fclose(w);
    cr_assert_null(fgets(line, sizeof line, r));
    fclose(r);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_eq(best_at, 90, "highest score at row %d", best_at);
}
