/* `shopstream fraud train|eval` end to end on a small generated data set in
 * the handbook's CSV format (no shared data needed): customers with their
 * own spending level, and planted frauds whose amount is five times the
 * customer's. The evaluation must find them, a trained model file must load
 * back, and a corrupted one must be refused with a clear message. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x243F6A8885A308D3ull;
static double unif(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static char dir[] = "/tmp/sp_fraudcli_XXXXXX";

/* 300 customers, 3 weeks; each day each customer pays 0-3 times at a random
 * terminal; 1% of payments are frauds at 5x the customer's mean. */
static void make_data(void) {
    cr_assert_not_null(mkdtemp(dir));
    double mean[300];
    for (int c = 0; c < 300; c++) mean[c] = 5 + 95 * unif();
    long id = 0;
    for (int w = 1; w <= 3; w++) {
        char path[256];
        snprintf(path, sizeof path, "%s/week%d.csv", dir, w);
        FILE *f = fopen(path, "w");
        fprintf(f, "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,"
                   "TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO\n");
        for (int d = (w - 1) * 7; d < w * 7; d++)
            for (int s = 0; s < 86400; s += 600)
                for (int c = 0; c < 300; c++) {
                    if (unif() > 1.5 / 144) continue;
                    int fraud = unif() < 0.01;
                    double amt = mean[c] * (1 + 0.3 * (unif() - 0.5)) * (fraud ? 5 : 1);
                    long secs = (long)d * 86400 + s + (long)(unif() * 599);
                    fprintf(f, "%ld,2018-04-%02d %02ld:%02ld:%02ld,%d,%d,%.2f,%ld,%d,%d,%d\n", id++,
                            d + 1, (secs % 86400) / 3600, (secs % 3600) / 60, secs % 60, c,
                            (int)(unif() * 50), amt, secs, d, fraud, fraud ? 3 : 0);
                }
        fclose(f);
    }
}

static char *run(const char *args, int *status) {
    static char out[16384];
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", getenv("SHOPSTREAM_BIN"), args);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    *status = pclose(p);
    return out;
}

static double metric(const char *out, const char *name) {
    const char *p = strstr(out, name);
    cr_assert_not_null(p, "no '%s' in:\n%s", name, out);
    return atof(p + strlen(name));
}

Test(fraud_cli, train_eval_and_corrupted_model, .timeout = 60) {
    cr_assert_not_null(getenv("SHOPSTREAM_BIN"), "SHOPSTREAM_BIN not set (run through make test)");
    make_data();
    char args[1024], model[300];
    int st;
    snprintf(args, sizeof args, "fraud eval --data %s", dir);
    char *out = run(args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "scorer: unsupervised"), "%s", out);
    double auc = metric(out, "AUC ROC"), ap = metric(out, "Average Precision");
    cr_assert_gt(auc, 0.95, "unsupervised AUC %.3f\n%s", auc, out);
    cr_assert_gt(ap, 0.5, "unsupervised AP %.3f\n%s", ap, out);
    cr_assert_not_null(strstr(out, "Card Precision@100"), "%s", out);

    snprintf(model, sizeof model, "%s/fraud.model", dir);
    snprintf(args, sizeof args, "fraud train --data %s --weeks 1,2 --out %s", dir, model);
    out = run(args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "wrote "), "%s", out);
    snprintf(args, sizeof args, "fraud eval --data %s --model %s", dir, model);
    out = run(args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "scorer: logistic model"), "%s", out);
    cr_assert_gt(metric(out, "AUC ROC"), 0.95, "%s", out);
    cr_assert_not_null(strstr(out, "scenario 3"), "%s", out);

    FILE *f = fopen(model, "r+b");
    fseek(f, 64, SEEK_SET);
    fputc(0x7f, f);
    fclose(f);
    out = run(args, &st);
    cr_assert_neq(st, 0, "a corrupted model must fail");
    cr_assert_not_null(strstr(out, "corrupted model (checksum mismatch)"), "%s", out);

    snprintf(args, sizeof args, "fraud eval --data %s/nowhere", dir);
    out = run(args, &st);
    cr_assert_neq(st, 0);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* Investigated alerts (--feedback K): after each day, the K customers with
 * the day's highest scores have their labels of that day released at once.
 * Hand-made: day 0 has customer 7 alone (3 tx), day 1 customers 7 and 8 (2 tx
 * each), day 2 customer 8 (1 tx, the last day: nothing follows it, so it is
 * never investigated). With K = 1: 3 + 2 early labels whichever of 7 and 8
 * scores higher on day 1; with K = 2: 3 + 4; without --feedback none. */
Test(fraud_cli, investigated_alerts_release_labels_the_next_day, .timeout = 30) {
    cr_assert_not_null(getenv("SHOPSTREAM_BIN"), "SHOPSTREAM_BIN not set (run through make test)");
    char path[] = "/tmp/sp_fraudfb_XXXXXX", args[512];
    int fd = mkstemp(path), st;
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,"
               "TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO\n");
    static const struct { long secs; int cust, term, fraud; double amount; } rows[] = {
        {3600, 7, 1, 0, 20},          {7200, 7, 2, 1, 25},           {10800, 7, 1, 0, 30},
        {86400 + 3600, 7, 1, 0, 20},  {86400 + 4000, 8, 2, 1, 40},   {86400 + 7200, 8, 3, 0, 35},
        {86400 + 9000, 7, 2, 1, 900}, {2 * 86400 + 60, 8, 1, 0, 30}};
    for (int i = 0; i < 8; i++)
        fprintf(f, "%d,2018-04-0%ld 00:00:00,%d,%d,%.2f,%ld,%ld,%d,%d\n", i, rows[i].secs / 86400 + 1,
                rows[i].cust, rows[i].term, rows[i].amount, rows[i].secs, rows[i].secs / 86400,
                rows[i].fraud, rows[i].fraud ? 2 : 0);
    fclose(f);
    snprintf(args, sizeof args, "eval-fraud --data %s --format handbook --test-from 0 --test-until 3 --feedback 1", path);
    char *out = run(args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "investigated alerts: 1 customers a day, 5 labels known the next day"), "%s", out);
    snprintf(args, sizeof args, "eval-fraud --data %s --format handbook --test-from 0 --test-until 3 --feedback 2", path);
    out = run(args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_not_null(strstr(out, "investigated alerts: 2 customers a day, 7 labels known the next day"), "%s", out);
    snprintf(args, sizeof args, "eval-fraud --data %s --format handbook --test-from 0 --test-until 3", path);
    out = run(args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_null(strstr(out, "investigated"), "%s", out);
    snprintf(args, sizeof args, "eval-fraud --data %s --feedback -1", path);
    out = run(args, &st);
    cr_assert_neq(st, 0, "a negative --feedback is refused");
    unlink(path);
}
