/* Model files: a saved model loads back identical; truncated, corrupted,
 * foreign, future-version and shape-mismatched files are refused with a
 * reason, never a crash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/model.h"
#include "models/scorer.h"

static sp_model *make(enum sp_model_kind kind) {
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, kind);
    cfg.dim = 6;
    cfg.max_len = 5;
    cfg.n_blocks = 1;
    sp_vocab *v = sp_vocab_new();
    const char *ids[] = {"sku-1", "sku-2", "a longer item id", "x"};
    for (int i = 0; i < 4; i++) sp_vocab_add(v, ids[i], strlen(ids[i]));
    char err[128];
    sp_model *m = sp_model_new(&cfg, v, 5, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    return m;
}

static char *tmp_path(const char *tag) {
    static char p[256];
    snprintf(p, sizeof p, "/tmp/sp_models_test_%d_%s.bin", (int)getpid(), tag);
    return p;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(b, 1, n, f);
    fclose(f);
}

/* FNV-1a 64, the file's checksum, re-derived here so that tests can forge
 * files whose checksum is right but whose content is wrong. */
static void reseal(unsigned char *b, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n - 8; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    memcpy(b + n - 8, &h, 8);
}

Test(models_file, round_trip_keeps_everything) {
    enum sp_model_kind kinds[] = {SP_MODEL_MF, SP_MODEL_GRU, SP_MODEL_SASREC};
    for (int k = 0; k < 3; k++) {
        sp_model *m = make(kinds[k]);
        char err[256];
        const char *p = tmp_path("rt");
        cr_assert_eq(sp_model_save(m, p, err, sizeof err), 0, "%s", err);
        sp_model *l = sp_model_load(p, err, sizeof err);
        cr_assert_not_null(l, "%s", err);
        cr_assert_eq(memcmp(&l->cfg, &m->cfg, sizeof m->cfg), 0);
        cr_assert_eq(l->n_items, m->n_items);
        cr_assert_eq(l->lay.total, m->lay.total);
        cr_assert_eq(memcmp(l->params, m->params, m->lay.total * sizeof(float)), 0);
        for (int32_t i = 0; i < 4; i++)
            cr_assert_str_eq(sp_model_item_id(l, i), sp_model_item_id(m, i));
        cr_assert_eq(sp_model_item_index(l, "a longer item id"), 2);
        cr_assert_eq(sp_model_item_index(l, "nope"), -1);
        cr_assert_eq(sp_model_kind_of(l), (uint32_t)kinds[k]);
        sp_model_destroy(l);
        sp_model_destroy(m);
        unlink(p);
    }
}

/* Saves a GRU model and returns its bytes for tampering. */
static unsigned char *saved(size_t *n) {
    sp_model *m = make(SP_MODEL_GRU);
    char err[256];
    cr_assert_eq(sp_model_save(m, tmp_path("src"), err, sizeof err), 0);
    sp_model_destroy(m);
    unsigned char *b = slurp(tmp_path("src"), n);
    unlink(tmp_path("src"));
    return b;
}

static void expect_refused(const unsigned char *b, size_t n, const char *words) {
    char err[256] = "";
    const char *p = tmp_path("bad");
    spit(p, b, n);
    sp_model *m = sp_model_load(p, err, sizeof err);
    unlink(p);
    cr_assert_null(m, "a bad file was accepted");
    cr_assert(strstr(err, words) != NULL, "error '%s' should mention '%s'", err, words);
}

Test(models_file, flipped_byte_is_a_checksum_error) {
    size_t n;
    unsigned char *b = saved(&n);
    b[n / 2] ^= 0x40;
    expect_refused(b, n, "checksum");
    free(b);
}

Test(models_file, every_truncation_is_refused) {
    size_t n;
    unsigned char *b = saved(&n);
    for (size_t cut = 0; cut < n; cut += (cut < 64 ? 1 : 37)) {
        char err[256] = "";
        const char *p = tmp_path("cut");
        spit(p, b, cut);
        sp_model *m = sp_model_load(p, err, sizeof err);
        cr_assert_null(m, "file cut at %zu of %zu bytes was accepted", cut, n);
        cr_assert(strlen(err) > 0);
    }
    unlink(tmp_path("cut"));
    free(b);
}

Test(models_file, foreign_file_is_bad_magic) {
    unsigned char b[64] = "this is not a model file at all, just text........";
    expect_refused(b, sizeof b, "magic");
}

Test(models_file, newer_version_is_refused_by_name) {
    size_t n;
    unsigned char *b = saved(&n);
    uint32_t v = 2;
    memcpy(b + 8, &v, 4);
    reseal(b, n);
    expect_refused(b, n, "version 2");
    free(b);
}

Test(models_file, shapes_that_disagree_with_the_payload_are_refused) {
    size_t n;
    unsigned char *b = saved(&n);
    uint32_t dim = 7; /* header: magic 8, version 4, kind 4, then dim */
    memcpy(b + 16, &dim, 4);
    reseal(b, n);
    expect_refused(b, n, "parameters");
    free(b);
    b = saved(&n);
    uint32_t kind = 3; /* a GRU payload labelled as attention */
    memcpy(b + 12, &kind, 4);
    reseal(b, n);
    expect_refused(b, n, "parameters");
    free(b);
    b = saved(&n);
    uint32_t huge = 1u << 30;
    memcpy(b + 16, &huge, 4);
    reseal(b, n);
    expect_refused(b, n, "out of range");
    free(b);
}

Test(models_file, missing_file_names_the_path) {
    char err[256] = "";
    cr_assert_null(sp_model_load("/nonexistent/dir/model.bin", err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/dir/model.bin") != NULL, "%s", err);
}
