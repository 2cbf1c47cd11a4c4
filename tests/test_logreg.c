/* Logistic regression: learns a known linear rule, standardization leaves
 * predictions scale-free, and the model file round-trips and refuses
 * corrupted, truncated or foreign files with a clear message. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/logreg.h"
#include "stream/error.h"

/* y = 1 iff 2*x0 - x1 > 0.5 on a grid; x2 is noise-free junk scaled by 1000
 * so that only standardization lets Adam treat it like the others. */
static size_t make_data(float **xo, uint8_t **yo) {
    size_t n = 0;
    float *x = malloc(21 * 21 * 3 * sizeof(float));
    uint8_t *y = malloc(21 * 21);
    for (int a = 0; a <= 20; a++)
        for (int b = 0; b <= 20; b++) {
            float x0 = (float)a / 10.0f - 1.0f, x1 = (float)b / 10.0f - 1.0f;
            x[n * 3] = x0;
            x[n * 3 + 1] = x1;
            x[n * 3 + 2] = 1000.0f * (float)((a * 7 + b * 3) % 5);
            y[n] = 2 * x0 - x1 > 0.5f;
            n++;
        }
    *xo = x;
    *yo = y;
    return n;
}

static double accuracy(const sp_logreg *m, const float *x, const uint8_t *y, size_t n) {
    size_t right = 0;
    for (size_t i = 0; i < n; i++) right += (sp_logreg_predict(m, x + i * 3) > 0.5) == y[i];
    return (double)right / (double)n;
}

Test(logreg, learns_a_linear_rule) {
    float *x;
    uint8_t *y;
    size_t n = make_data(&x, &y);
    sp_logreg *m = sp_logreg_new(3);
    cr_assert_float_eq(sp_logreg_predict(m, x), 0.5, 1e-12, "untrained model must say 0.5");
    struct sp_logreg_opts o = {.epochs = 400, .lr = 0.1, .standardize = 1};
    cr_assert_eq(sp_logreg_train(m, x, y, n, &o), SP_OK);
    cr_assert_geq(accuracy(m, x, y, n), 0.97);
    cr_assert_gt(sp_logreg_weight(m, 0), 0, "x0 pushes towards 1");
    cr_assert_lt(sp_logreg_weight(m, 1), 0, "x1 pushes towards 0");
    cr_assert_eq(sp_logreg_train(m, x, y, 0, &o), SP_ERR_BADINPUT);
    sp_logreg_destroy(m);
    free(x);
    free(y);
}

Test(logreg, save_load_round_trip_and_corruption) {
    float *x;
    uint8_t *y;
    size_t n = make_data(&x, &y);
    sp_logreg *m = sp_logreg_new(3);
    struct sp_logreg_opts o = {.epochs = 100, .lr = 0.1, .standardize = 1};
    sp_logreg_train(m, x, y, n, &o);
    char dir[] = "/tmp/sp_lr_XXXXXX", path[256], err[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.bin", dir);
    cr_assert_eq(sp_logreg_save(m, path, err, sizeof err), SP_OK, "%s", err);
    sp_logreg *l = sp_logreg_load(path, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    for (size_t i = 0; i < n; i += 17)
        cr_assert_eq(sp_logreg_predict(l, x + i * 3), sp_logreg_predict(m, x + i * 3));

    /* Flip one byte in the weights: the checksum must catch it. */
    FILE *f = fopen(path, "r+b");
    fseek(f, 40, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    cr_assert_null(sp_logreg_load(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "checksum"), "%s", err);

    /* Truncated file. */
    cr_assert_eq(sp_logreg_save(m, path, err, sizeof err), SP_OK);
    cr_assert_eq(truncate(path, 30), 0);
    cr_assert_null(sp_logreg_load(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "truncated"), "%s", err);

    /* Not a model at all; and a missing file. */
    f = fopen(path, "w");
    fputs("hello, world\n", f);
    fclose(f);
    cr_assert_null(sp_logreg_load(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "magic"), "%s", err);
    remove(path);
    cr_assert_null(sp_logreg_load(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "cannot open"), "%s", err);
    rmdir(dir);
    sp_logreg_destroy(l);
    sp_logreg_destroy(m);
    free(x);
    free(y);
}
