/* Model object: layout of the flat parameter array, initialisation, the
 * deterministic generator, and the versioned model file.
 *
 * File format (little-endian, version 1):
 *   magic "SPMODEL\0"  u32 version  u32 kind
 *   u32 dim  u32 n_items  u32 max_len  u32 n_blocks  u32 n_neg
 *   f32 lr  f32 lr_decay  f32 l2  f32 dropout  f32 weights[8]
 *   u64 n_params  u64 vocab_bytes
 *   f32 params[n_params]
 *   vocab: n_items times (u16 length, bytes)
 *   u64 FNV-1a checksum of every byte before it
 * The loader reads the whole file and checks every length against what is
 * left, the shapes against the payload, and the checksum, so a truncated,
 * corrupted or mismatched file is an error message, not a crash. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "models/scorer.h"
#include "stream/error.h"

#define MODEL_MAGIC "SPMODEL"
#define MODEL_VERSION 1u
#define MODEL_MAX_FILE (2ULL << 30)

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

uint64_t sp_rng_seed(uint64_t seed) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z ? z : 0x2545F4914F6CDD1DULL;
}

uint64_t sp_rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

float sp_rng_uniform(uint64_t *s) { return (float)(sp_rng_next(s) >> 40) / 16777216.0f; }

uint32_t sp_rng_below(uint64_t *s, uint32_t n) {
    return (uint32_t)(((sp_rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

float sp_rng_normal(uint64_t *s) {
    float u1 = sp_rng_uniform(s), u2 = sp_rng_uniform(s);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

const char *sp_model_kind_name(uint32_t kind) {
    switch (kind) {
    case SP_MODEL_MF: return "mf";
    case SP_MODEL_GRU: return "gru";
    case SP_MODEL_SASREC: return "sasrec";
    default: return "unknown";
    }
}

int sp_model_kind_parse(const char *s, enum sp_model_kind *out) {
    for (uint32_t k = SP_MODEL_MF; k <= SP_MODEL_SASREC; k++)
        if (!strcmp(s, sp_model_kind_name(k))) {
            *out = (enum sp_model_kind)k;
            return SP_OK;
        }
    return SP_ERR_BADINPUT;
}

void sp_model_config_default(struct sp_model_config *cfg, enum sp_model_kind kind) {
    static const float w[SP_MODEL_N_WEIGHTS] = {1.0f, 1.0f, 3.0f, 0.0f, 0.5f, 5.0f, 2.0f, 0.0f};
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->dim = kind == SP_MODEL_MF ? 32 : 64;
    cfg->max_len = 50;
    cfg->n_blocks = 2;
    cfg->n_neg = kind == SP_MODEL_MF ? 1 : 128;
    cfg->lr = kind == SP_MODEL_MF ? 0.05f : 0.001f;
    cfg->lr_decay = kind == SP_MODEL_MF ? 0.01f : 0.0f;
    cfg->l2 = kind == SP_MODEL_MF ? 0.01f : 0.0f;
    cfg->dropout = kind == SP_MODEL_SASREC ? 0.5f : kind == SP_MODEL_GRU ? 0.2f : 0.0f;
    memcpy(cfg->weights, w, sizeof w);
}

/* Cuts the flat array into tensors. Only the tensors a kind uses get space,
 * so the parameter count in a file pins its kind and shapes. */
int sp_model_layout(const struct sp_model_config *cfg, uint32_t n_items, struct sp_layout *lay) {
    size_t d = cfg->dim, off = 0;
    if (cfg->kind < SP_MODEL_MF || cfg->kind > SP_MODEL_SASREC) return SP_ERR_BADINPUT;
    if (d < 1 || d > SP_MODEL_MAX_DIM || n_items < 1 || n_items > (1u << 28)) return SP_ERR_BADINPUT;
    if (cfg->kind == SP_MODEL_SASREC &&
        (cfg->max_len < 1 || cfg->max_len > SP_MODEL_MAX_LEN || cfg->n_blocks < 1 ||
         cfg->n_blocks > SP_MODEL_MAX_BLOCKS))
        return SP_ERR_BADINPUT;
    if (cfg->n_neg > 4096 || cfg->max_len < 1 || cfg->max_len > SP_MODEL_MAX_LEN)
        return SP_ERR_BADINPUT;
    memset(lay, 0, sizeof *lay);
#define TAKE(field, n) (lay->field = off, off += (n))
    TAKE(emb, (size_t)n_items * d);
    TAKE(bias, n_items);
    if (cfg->kind == SP_MODEL_GRU) {
        TAKE(gru_wx, d * 3 * d);
        TAKE(gru_wh, d * 3 * d);
        TAKE(gru_bx, 3 * d);
        TAKE(gru_bh, 3 * d);
    } else if (cfg->kind == SP_MODEL_SASREC) {
        TAKE(pos, (size_t)cfg->max_len * d);
        for (uint32_t b = 0; b < cfg->n_blocks; b++) {
            struct sp_block_layout *k = &lay->blk[b];
            k->ln1_g = off, off += d;
            k->ln1_b = off, off += d;
            k->wq = off, off += d * d;
            k->bq = off, off += d;
            k->wk = off, off += d * d;
            k->bk = off, off += d;
            k->wv = off, off += d * d;
            k->bv = off, off += d;
            k->wo = off, off += d * d;
            k->bo = off, off += d;
            k->ln2_g = off, off += d;
            k->ln2_b = off, off += d;
            k->w1 = off, off += d * d;
            k->b1 = off, off += d;
            k->w2 = off, off += d * d;
            k->b2 = off, off += d;
        }
        TAKE(lnf_g, d);
        TAKE(lnf_b, d);
    }
#undef TAKE
    lay->total = off;
    return SP_OK;
}

static void fill_normal(float *p, size_t n, float sd, uint64_t *rng) {
    for (size_t i = 0; i < n; i++) p[i] = sd * sp_rng_normal(rng);
}

static void fill_xavier(float *p, size_t rows, size_t cols, uint64_t *rng) {
    float a = sqrtf(6.0f / (float)(rows + cols));
    for (size_t i = 0; i < rows * cols; i++) p[i] = a * (2.0f * sp_rng_uniform(rng) - 1.0f);
}

static void fill_const(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

/* Initialisation: small normal embeddings (MF a little larger, as BPR
 * needs non-zero factors to start), Xavier-uniform weight matrices, unit
 * layer-norm gains, zero biases. */
sp_model *sp_model_new(const struct sp_model_config *cfg, sp_vocab *vocab, uint64_t seed,
                       char *err, size_t errlen) {
    uint32_t n = (uint32_t)sp_vocab_size(vocab);
    struct sp_layout lay;
    if (sp_model_layout(cfg, n, &lay) != SP_OK) {
        seterr(err, errlen, "model: configuration out of range (kind %u, dim %u, %u items)",
               cfg->kind, cfg->dim, n);
        return NULL;
    }
    sp_model *m = sp_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->n_items = n;
    m->lay = lay;
    m->vocab = vocab;
    m->params = sp_xcalloc(lay.total, sizeof(float));
    uint64_t rng = sp_rng_seed(seed);
    size_t d = cfg->dim;
    float *P = m->params;
    fill_normal(P + lay.emb, (size_t)n * d, cfg->kind == SP_MODEL_MF ? 0.1f : 0.05f, &rng);
    if (cfg->kind == SP_MODEL_GRU) {
        fill_xavier(P + lay.gru_wx, d, 3 * d, &rng);
        fill_xavier(P + lay.gru_wh, d, 3 * d, &rng);
    } else if (cfg->kind == SP_MODEL_SASREC) {
        fill_normal(P + lay.pos, (size_t)cfg->max_len * d, 0.05f, &rng);
        for (uint32_t b = 0; b < cfg->n_blocks; b++) {
            const struct sp_block_layout *k = &lay.blk[b];
            fill_const(P + k->ln1_g, d, 1.0f);
            fill_const(P + k->ln2_g, d, 1.0f);
            fill_xavier(P + k->wq, d, d, &rng);
            fill_xavier(P + k->wk, d, d, &rng);
            fill_xavier(P + k->wv, d, d, &rng);
            fill_xavier(P + k->wo, d, d, &rng);
            fill_xavier(P + k->w1, d, d, &rng);
            fill_xavier(P + k->w2, d, d, &rng);
        }
        fill_const(P + lay.lnf_g, d, 1.0f);
    }
    return m;
}

void sp_model_destroy(sp_model *m) {
    if (!m) return;
    sp_vocab_destroy(m->vocab);
    free(m->params);
    free(m);
}

uint32_t sp_model_kind_of(const sp_model *m) { return m->cfg.kind; }
size_t sp_model_user_dim(const sp_model *m) { return m->cfg.dim; }
size_t sp_model_n_items(const sp_model *m) { return m->n_items; }
size_t sp_model_max_len(const sp_model *m) { return m->cfg.max_len; }

int32_t sp_model_item_index(const sp_model *m, const char *item_id) {
    return sp_vocab_find(m->vocab, item_id, strlen(item_id));
}

const char *sp_model_item_id(const sp_model *m, int32_t idx) { return sp_vocab_id(m->vocab, idx); }

/* ---- file ---- */

struct wbuf {
    unsigned char *p;
    size_t n, cap;
};

static void put(struct wbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = sp_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(struct wbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct wbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(struct wbuf *b, float v) { put(b, &v, 4); }

static uint64_t checksum(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int sp_model_save(const sp_model *m, const char *path, char *err, size_t errlen) {
    struct wbuf b = {0};
    put(&b, MODEL_MAGIC, 8);
    put_u32(&b, MODEL_VERSION);
    put_u32(&b, m->cfg.kind);
    put_u32(&b, m->cfg.dim);
    put_u32(&b, m->n_items);
    put_u32(&b, m->cfg.max_len);
    put_u32(&b, m->cfg.n_blocks);
    put_u32(&b, m->cfg.n_neg);
    put_f32(&b, m->cfg.lr);
    put_f32(&b, m->cfg.lr_decay);
    put_f32(&b, m->cfg.l2);
    put_f32(&b, m->cfg.dropout);
    for (int i = 0; i < SP_MODEL_N_WEIGHTS; i++) put_f32(&b, m->cfg.weights[i]);
    uint64_t vbytes = 0;
    for (uint32_t i = 0; i < m->n_items; i++) vbytes += 2 + strlen(sp_vocab_id(m->vocab, (int32_t)i));
    put_u64(&b, m->lay.total);
    put_u64(&b, vbytes);
    put(&b, m->params, m->lay.total * sizeof(float));
    for (uint32_t i = 0; i < m->n_items; i++) {
        const char *id = sp_vocab_id(m->vocab, (int32_t)i);
        size_t len = strlen(id);
        uint16_t l16 = (uint16_t)(len > 65535 ? 65535 : len);
        put(&b, &l16, 2);
        put(&b, id, l16);
    }
    put_u64(&b, checksum(b.p, b.n));

    int rc = SP_ERR_IO;
    size_t plen = strlen(path);
    char *tmp = sp_xmalloc(plen + 8);
    snprintf(tmp, plen + 8, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        seterr(err, errlen, "model: cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    size_t wrote = fwrite(b.p, 1, b.n, f);
    if (fclose(f) != 0 || wrote != b.n) {
        seterr(err, errlen, "model: short write to %s", tmp);
        remove(tmp);
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        seterr(err, errlen, "model: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        goto fail;
    }
    rc = SP_OK;
fail:
    free(tmp);
    free(b.p);
    return rc;
}

struct rbuf {
    const unsigned char *p;
    size_t n, at;
};

static int get(struct rbuf *b, void *dst, size_t n) {
    if (n > b->n - b->at) return -1;
    memcpy(dst, b->p + b->at, n);
    b->at += n;
    return 0;
}

/* Reads and checks a model file; see the format at the top of the file. */
sp_model *sp_model_load(const char *path, char *err, size_t errlen) {
    unsigned char *data = NULL;
    sp_model *m = NULL;
    sp_vocab *vocab = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "model: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long sz = ftell(f);
    if (sz < 0 || (unsigned long long)sz > MODEL_MAX_FILE) goto io;
    rewind(f);
    data = sp_xmalloc((size_t)sz + 1);
    if (fread(data, 1, (size_t)sz, f) != (size_t)sz) goto io;
    fclose(f);
    f = NULL;

    struct rbuf b = {data, (size_t)sz, 0};
    char magic[8];
    uint32_t version = 0, n_items = 0;
    struct sp_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (get(&b, magic, 8) || memcmp(magic, MODEL_MAGIC, 8)) {
        seterr(err, errlen, "model: %s is not a shopstream model file (bad magic)", path);
        goto fail;
    }
    uint64_t stored = 0;
    if (b.n >= 16) memcpy(&stored, data + b.n - 8, 8);
    if (b.n < 16 || checksum(data, b.n - 8) != stored) {
        seterr(err, errlen, "model: %s is corrupted or truncated (checksum mismatch)", path);
        goto fail;
    }
    b.n -= 8; /* the checksum is not payload */
    if (get(&b, &version, 4) || version != MODEL_VERSION) {
        seterr(err, errlen, "model: %s has version %u, this build reads version %u", path,
               version, MODEL_VERSION);
        goto fail;
    }
    if (get(&b, &cfg.kind, 4) || get(&b, &cfg.dim, 4) || get(&b, &n_items, 4) ||
        get(&b, &cfg.max_len, 4) || get(&b, &cfg.n_blocks, 4) || get(&b, &cfg.n_neg, 4) ||
        get(&b, &cfg.lr, 4) || get(&b, &cfg.lr_decay, 4) || get(&b, &cfg.l2, 4) ||
        get(&b, &cfg.dropout, 4) || get(&b, cfg.weights, sizeof cfg.weights)) {
        seterr(err, errlen, "model: %s: header truncated", path);
        goto fail;
    }
    struct sp_layout lay;
    if (sp_model_layout(&cfg, n_items, &lay) != SP_OK) {
        seterr(err, errlen, "model: %s: shapes out of range (kind %u, dim %u, %u items, len %u, %u blocks)",
               path, cfg.kind, cfg.dim, n_items, cfg.max_len, cfg.n_blocks);
        goto fail;
    }
    uint64_t n_params, vbytes;
    if (get(&b, &n_params, 8) || get(&b, &vbytes, 8)) {
        seterr(err, errlen, "model: %s: header truncated", path);
        goto fail;
    }
    if (n_params != lay.total) {
        seterr(err, errlen, "model: %s: %llu parameters but a %s model of these shapes has %zu",
               path, (unsigned long long)n_params, sp_model_kind_name(cfg.kind), lay.total);
        goto fail;
    }
    if (n_params * 4 + vbytes != b.n - b.at) {
        seterr(err, errlen, "model: %s: payload size does not match the header", path);
        goto fail;
    }
    m = sp_xcalloc(1, sizeof *m);
    m->cfg = cfg;
    m->n_items = n_items;
    m->lay = lay;
    m->params = sp_xmalloc(lay.total * sizeof(float));
    get(&b, m->params, lay.total * sizeof(float));
    for (size_t i = 0; i < lay.total; i++)
        if (!isfinite(m->params[i])) {
            seterr(err, errlen, "model: %s: parameter %zu is not finite", path, i);
            goto fail;
        }
    vocab = sp_vocab_new();
    for (uint32_t i = 0; i < n_items; i++) {
        uint16_t len;
        if (get(&b, &len, 2) || len > b.n - b.at) {
            seterr(err, errlen, "model: %s: item vocabulary truncated at item %u", path, i);
            goto fail;
        }
        if (sp_vocab_add(vocab, (const char *)b.p + b.at, len) != (int32_t)i) {
            seterr(err, errlen, "model: %s: duplicate item id at index %u", path, i);
            goto fail;
        }
        b.at += len;
    }
    if (b.at != b.n) {
        seterr(err, errlen, "model: %s: trailing bytes after the vocabulary", path);
        goto fail;
    }
    m->vocab = vocab;
    free(data);
    return m;
io:
    seterr(err, errlen, "model: cannot read %s: %s", path, strerror(errno));
fail:
    if (f) fclose(f);
    free(data);
    sp_vocab_destroy(vocab);
    if (m) {
        m->vocab = NULL;
        sp_model_destroy(m);
    }
    return NULL;
}

void sp_model_blas_threads(void) {
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
}
