/* The train and eval subcommands end to end through bin/shopstream
 * (SHOPSTREAM_BIN): a seed fixes the model file byte for byte, eval prints
 * its table, and bad input is a usage or runtime error, not a crash. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[128];

static const char *bin(void) {
    const char *b = getenv("SHOPSTREAM_BIN");
    return b ? b : "bin/shopstream";
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/sp_models_cli_%d", (int)getpid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    cr_assert_eq(system(cmd), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/data.tsv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "SessionId\tItemId\tTime\n");
    for (int s = 0; s < 60; s++)
        for (int i = 0; i < 4; i++) fprintf(f, "%d\tit%d\t%d\n", s, (s + i * 3) % 17, 100 * s + i);
    fclose(f);
}

static void teardown(void) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)!system(cmd);
}

/* Runs a shell command; returns its exit status and its stdout in out. */
static int sh(char *out, size_t outlen, const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TestSuite(models_cli, .init = setup, .fini = teardown);

Test(models_cli, seeded_training_is_reproducible_and_evaluates) {
    char out[4096];
    const char *kinds[] = {"gru", "sasrec", "mf"};
    for (int k = 0; k < 3; k++) {
        for (int run = 0; run < 2; run++)
            cr_assert_eq(sh(out, sizeof out,
                            "%s train --data %s/data.tsv --format rsc15 --model %s --dim 8 "
                            "--epochs 2 --seed 9 --quiet --out %s/m%d.bin 2>&1",
                            bin(), dir, kinds[k], dir, run),
                         0, "%s", out);
        cr_assert_eq(sh(out, sizeof out, "cmp %s/m0.bin %s/m1.bin", dir, dir), 0,
                     "%s: same seed, different files", kinds[k]);
        cr_assert_eq(sh(out, sizeof out,
                        "%s eval --data %s/data.tsv --format rsc15 --model %s/m0.bin "
                        "--protocol session --k 5,20",
                        bin(), dir, dir),
                     0, "%s", out);
        cr_assert(strstr(out, "Recall@20") && strstr(out, "MRR@5"), "%s", out);
    }
}

Test(models_cli, bad_input_is_an_error_not_a_crash) {
    char out[4096];
    cr_assert_eq(sh(out, sizeof out, "%s train --data %s/data.tsv --out x 2>&1", bin(), dir), 2);
    cr_assert_eq(sh(out, sizeof out, "%s eval --data %s/data.tsv --model pop 2>&1", bin(), dir), 2);
    cr_assert_eq(sh(out, sizeof out, "%s eval --data %s/data.tsv --format rsc15 "
                                     "--model %s/data.tsv --protocol full 2>&1", bin(), dir, dir), 1);
    cr_assert(strstr(out, "magic"), "%s", out);
    cr_assert_eq(sh(out, sizeof out, "%s eval --data %s/nope --format rsc15 --model pop "
                                     "--protocol full 2>&1", bin(), dir), 1);
}
