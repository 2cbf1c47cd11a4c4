/* recommend: on the click kinds of recommend.on, a fresh top-K list for the
 * user, produced to topics.recommendations (key user_id) and written to
 * "rec:<user_id>" (JSON, TTL recommend.ttl_s).
 *
 * The score of an item blends (recommend.blend) three parts:
 *   sequence    the loaded model's u . E[i] + b[i], u being the user's GRU
 *               hidden state advanced one step per event (O(d^2), no history
 *               replay), or attention over the user's last items (SASRec),
 *               or the MF user vector (an MF model);
 *   mf          the online MF user vector against the shared item factors;
 *   popularity  log(1 + events on the item seen by this instance), over
 *               log(1 + the most seen item's, at least POP_FLOOR) -- a
 *               per-instance prior, not state.
 * Items the user bought (the last BOUGHT_MAX) and, with
 * recommend.exclude_viewed, the item being viewed are excluded. Without a
 * model the candidates are every item of the MF table.
 *
 * Per-user state in "{p<n>}:rs:<user_id>": h (GRU hidden state, hex
 * float32s), ring (SASRec: last item ids), bought, last_ms (event time of the
 * last list: the rate limit, recommend.rate_limit_ms, is in event time so
 * that a replay recommends exactly where the first run did). rec_id is a
 * hash of (user_id, trigger event_id): a list repeated after a crash has the
 * same id. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cjson/cJSON.h>

#include "models/model.h"
#include "operators/kpi.h"
#include "operators/operator.h"
#include "operators/personal.h"
#include "proto/shopstream.pb-c.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/metrics.h"

#define BOUGHT_MAX 100
#define TEXT_MAX 8192
#define K_MAX 100
#define POP_FLOOR 100.0f

struct pending {
    char *key, *json;
};

struct recommend {
    sp_store *store;
    sp_personal *ctx;
    const sp_config *cfg;
    float *seq, *blend, *mf;  /* per-item scratch, sized to the candidates */
    size_t cap;
    unsigned char *ban;       /* per-row flags, all zero between calls */
    size_t bancap;
    struct pending *pend;     /* rec:<user> writes of the batch */
    size_t npend, cappend;
    float maxpop;
};

static int rec_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    sp_personal *ctx = sp_personal_get(env, err, errlen);
    if (!ctx) return SP_ERR_FATAL;
    struct recommend *r = sp_xcalloc(1, sizeof *r);
    r->store = env->store;
    r->ctx = ctx;
    r->cfg = env->cfg;
    *priv = r;
    return SP_OK;
}

static void rec_prefetch(void *priv, const sp_op_event *e) {
    struct recommend *r = priv;
    char key[256];
    snprintf(key, sizeof key, "rs:%s", e->ev->user_id);
    sp_store_want(r->store, e->partition, key);
    snprintf(key, sizeof key, "mfu:%s", e->ev->user_id);
    sp_store_want(r->store, e->partition, key);
}

/* Whether `word` is in the space-separated list s. */
static int in_list(const char *s, const char *word) {
    size_t wl = strlen(word);
    for (; s && *s;) {
        const char *sp = strchr(s, ' ');
        size_t len = sp ? (size_t)(sp - s) : strlen(s);
        if (len == wl && !strncmp(s, word, len)) return 1;
        s += len;
        while (*s == ' ') s++;
    }
    return 0;
}

/* Appends word to a space-separated list field, keeping the last `max`. */
static void list_append(sp_obj *o, const char *field, const char *word, int max, int unique) {
    const char *old = sp_obj_get_str(o, field);
    if (!word || !*word || strchr(word, ' ') || (unique && in_list(old, word))) return;
    const char *s = old ? old : "";
    int count = 0;
    for (const char *c = s; *c; c++)
        if (*c == ' ') count++;
    if (*s) count++;
    while (count >= max && *s) {
        const char *sp = strchr(s, ' ');
        s = sp ? sp + 1 : s + strlen(s);
        count--;
    }
    char out[TEXT_MAX];
    snprintf(out, sizeof out, "%s%s%s", s, *s ? " " : "", word);
    sp_obj_set_str(o, field, out);
}

struct cand {
    int32_t row;
    float score;
};

static int worse(const struct cand *a, const struct cand *b) {
    return a->score < b->score || (a->score == b->score && a->row > b->row);
}

/* Keeps the k best in a min-heap rooted at the worst. */
static void offer(struct cand *h, size_t *n, size_t k, int32_t row, float score) {
    struct cand c = {row, score};
    size_t i;
    if (*n < k) {
        i = (*n)++;
        h[i] = c;
        while (i > 0 && worse(&h[i], &h[(i - 1) / 2])) {
            struct cand t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!worse(&h[0], &c)) return;
    h[0] = c;
    for (i = 0;;) {
        size_t l = 2 * i + 1, rr = l + 1, w = i;
        if (l < *n && worse(&h[l], &h[w])) w = l;
        if (rr < *n && worse(&h[rr], &h[w])) w = rr;
        if (w == i) break;
        struct cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static int cand_cmp(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    return worse(x, y) ? 1 : worse(y, x) ? -1 : 0;
}

/* The user representation for the sequence part; 0 when there is none. */
static int seq_user(struct recommend *r, sp_obj *rs, const float *mfu, int have_mfu, float *u) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    size_t d = sp_model_user_dim(m);
    switch (sp_model_kind_of(m)) {
    case SP_MODEL_GRU:
        if (sp_personal_hex_decode(sp_obj_get_str(rs, "h"), u, d) != d) memset(u, 0, d * 4);
        return 1;
    case SP_MODEL_SASREC: {
        int32_t idx[SP_MODEL_MAX_LEN];
        size_t n = 0;
        const char *s = sp_obj_get_str(rs, "ring");
        char id[SP_EVENT_MAX_ID + 1];
        while (s && *s && n < SP_MODEL_MAX_LEN) {
            const char *sp = strchr(s, ' ');
            size_t len = sp ? (size_t)(sp - s) : strlen(s);
            if (len <= SP_EVENT_MAX_ID) {
                memcpy(id, s, len);
                id[len] = '\0';
                int32_t i = sp_model_item_index(m, id);
                if (i >= 0) idx[n++] = i;
            }
            s += len;
            while (*s == ' ') s++;
        }
        return n && sp_scorer_attn_encode(c->scorer, idx, n, u) == SP_OK;
    }
    default:
        if (!have_mfu || d != c->dim) return 0;
        memcpy(u, mfu, d * sizeof(float));
        return 1;
    }
}

/* Scores the candidates and fills top[0..ret), best first. */
static size_t rank(struct recommend *r, sp_obj *rs, const float *mfu, int have_mfu,
                   const char *bought, int32_t viewed_row, struct cand *top) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    size_t n = m ? sp_model_n_items(m) : sp_vocab_size(c->items), d = c->dim;
    if (n > r->cap) {
        r->cap = n;
        r->seq = sp_xrealloc(r->seq, n * sizeof(float));
        r->blend = sp_xrealloc(r->blend, n * sizeof(float));
        r->mf = sp_xrealloc(r->mf, n * sizeof(float));
    }
    size_t rows = sp_vocab_size(c->items);
    if (rows > r->bancap) {
        r->ban = sp_xrealloc(r->ban, rows);
        memset(r->ban + r->bancap, 0, rows - r->bancap);
        r->bancap = rows;
    }
    float u[SP_PERSONAL_MAX_DIM];
    int have_seq = m && c->blend[0] != 0 && seq_user(r, rs, mfu, have_mfu, u);
    if (have_seq) sp_scorer_score_all(c->scorer, u, 1, r->seq);
    /* scaled by the most popular item, but never by fewer than POP_FLOOR
     * events: a prior that has seen three events should not decide */
    float lp = 1.0f / log1pf(r->maxpop > POP_FLOOR ? r->maxpop : POP_FLOOR);
    int identity = !m || c->model2mf_identity, use_mf = have_mfu && c->blend[1] != 0;
    if (use_mf && identity) /* rows 0..n-1 are the candidates: one sgemv */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0f, c->vec, (int)d, mfu, 1,
                    0.0f, r->mf, 1);
    float w0 = have_seq ? c->blend[0] : 0, w1 = c->blend[1], w2 = c->blend[2] * lp;
    for (size_t i = 0; i < n; i++) {
        int32_t row = identity ? (int32_t)i : c->model2mf[i];
        float s = w0 != 0 ? w0 * r->seq[i] : 0;
        if (use_mf) {
            float dot = identity ? r->mf[i]
                                 : cblas_sdot((int)d, mfu, 1, c->vec + (size_t)row * d, 1);
            s += w1 * (dot + c->bias[row]);
        }
        r->blend[i] = s + w2 * c->lpop[row];
    }
    /* the exclusions, as row flags */
    int32_t banned[BOUGHT_MAX + 1];
    size_t nb = 0;
    if (r->cfg->recommend_exclude_viewed) banned[nb++] = viewed_row;
    char id[SP_EVENT_MAX_ID + 1];
    for (const char *s = bought; s && *s && nb <= BOUGHT_MAX;) {
        const char *sp = strchr(s, ' ');
        size_t len = sp ? (size_t)(sp - s) : strlen(s);
        if (len <= SP_EVENT_MAX_ID) {
            memcpy(id, s, len);
            id[len] = '\0';
            int32_t b = sp_vocab_find(c->items, id, len);
            if (b >= 0) banned[nb++] = b;
        }
        s += len;
        while (*s == ' ') s++;
    }
    for (size_t i = 0; i < nb; i++) r->ban[banned[i]] = 1;
    size_t k = (size_t)r->cfg->recommend_k, got = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t row = identity ? (int32_t)i : c->model2mf[i];
        if (r->ban[row] || !isfinite(r->blend[i])) continue;
        offer(top, &got, k, row, r->blend[i]);
    }
    for (size_t i = 0; i < nb; i++) r->ban[banned[i]] = 0;
    qsort(top, got, sizeof *top, cand_cmp);
    return got;
}

static void emit(struct recommend *r, const sp_op_event *e, const struct cand *top, size_t n,
                 double t0) {
    sp_personal *c = r->ctx;
    const sp_event *ev = e->ev;
    char key[512], rec_id[40];
    snprintf(key, sizeof key, "%s/%s", ev->user_id, ev->event_id);
    snprintf(rec_id, sizeof rec_id, "r%016llx", (unsigned long long)sp_personal_hash(key, 0));
    double start = e->arrival_us > 0 ? e->arrival_us : t0;
    double latency_ms = (sp_personal_now_us() - start) / 1000.0;

    Shopstream__V1__ScoredItem items[K_MAX], *ptrs[K_MAX];
    cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "rec_id", rec_id);
    cJSON_AddStringToObject(j, "trigger_event_id", ev->event_id);
    cJSON_AddNumberToObject(j, "ts_ms", (double)ev->ts_ms);
    cJSON_AddStringToObject(j, "model", c->model ? c->model_name : "mf");
    for (size_t i = 0; i < n; i++) {
        shopstream__v1__scored_item__init(&items[i]);
        items[i].item_id = (char *)sp_vocab_id(c->items, top[i].row);
        items[i].score = top[i].score;
        ptrs[i] = &items[i];
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "item_id", items[i].item_id);
        cJSON_AddNumberToObject(it, "score", (double)((int)(top[i].score * 1e4)) / 1e4);
        cJSON_AddItemToArray(arr, it);
    }
    cJSON_AddItemToObject(j, "items", arr);
    Shopstream__V1__Recommendation rec = SHOPSTREAM__V1__RECOMMENDATION__INIT;
    rec.rec_id = rec_id;
    rec.user_id = ev->user_id;
    rec.n_items = n;
    rec.items = ptrs;
    rec.model = c->model ? c->model_name : "mf";
    rec.trigger_event_id = ev->event_id;
    rec.ts_ms = ev->ts_ms;
    rec.latency_ms = latency_ms;
    if (c->sink) {
        size_t len = shopstream__v1__recommendation__get_packed_size(&rec);
        uint8_t *buf = sp_xmalloc(len ? len : 1);
        shopstream__v1__recommendation__pack(&rec, buf);
        sp_sink_produce(c->sink, r->cfg->recommend_topic, ev->user_id, strlen(ev->user_id), buf,
                        len, NULL, 0);
        free(buf);
    }
    if (c->metrics) {
        c->metrics->recommendations++;
        sp_hist_add(&c->metrics->rec_latency, latency_ms * 1000.0);
    }
    sp_kpi_add_impressions(e->partition, ev->ts_ms, 1);
    if (r->npend == r->cappend) {
        r->cappend = r->cappend ? r->cappend * 2 : 64;
        r->pend = sp_xrealloc(r->pend, r->cappend * sizeof *r->pend);
    }
    snprintf(key, sizeof key, "rec:%s", ev->user_id);
    r->pend[r->npend].key = sp_xstrdup(key);
    r->pend[r->npend++].json = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
}

static int rec_process(void *priv, const sp_op_event *e) {
    struct recommend *r = priv;
    sp_personal *c = r->ctx;
    const sp_event *ev = e->ev;
    double t0 = sp_personal_now_us();
    char key[256];
    snprintf(key, sizeof key, "rs:%s", ev->user_id);
    sp_obj *rs, *mo;
    int rc = sp_store_get(r->store, e->partition, key, &rs);
    if (rc != SP_OK) return rc;
    if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_ORDER && ev->order) {
        for (size_t i = 0; i < ev->order->n_items; i++)
            list_append(rs, "bought", ev->order->items[i]->item_id, BOUGHT_MAX, 1);
        return SP_OK;
    }
    if (ev->body_case != SHOPSTREAM__V1__EVENT__BODY_CLICK || !ev->click || !ev->click->item_id ||
        !*ev->click->item_id)
        return SP_OK;
    const char *item = ev->click->item_id;
    int32_t row = sp_personal_item(c, item, ev->click->category);
    if (e->kind != SP_KIND_REMOVE_FROM_CART) {
        sp_personal_seen(c, row);
        if (c->pop[row] > r->maxpop) r->maxpop = c->pop[row];
    }
    const sp_model *m = c->model;
    int32_t idx = m ? sp_model_item_index(m, item) : -1;
    if (m && idx >= 0 && e->kind <= SP_KIND_ADD_TO_CART) {
        if (sp_model_kind_of(m) == SP_MODEL_GRU) {
            size_t d = sp_model_user_dim(m);
            float h[SP_PERSONAL_MAX_DIM];
            if (sp_personal_hex_decode(sp_obj_get_str(rs, "h"), h, d) != d) memset(h, 0, d * 4);
            if (sp_gru_step(m, h, idx) == SP_OK) {
                char hex[8 * SP_PERSONAL_MAX_DIM + 1];
                sp_personal_hex_encode(h, d, hex);
                sp_obj_set_str(rs, "h", hex);
            }
        } else if (sp_model_kind_of(m) == SP_MODEL_SASREC) {
            list_append(rs, "ring", item, (int)sp_model_max_len(m), 0);
        }
    }
    if (!c->rec_on[e->kind]) return SP_OK;
    int64_t last = sp_obj_get_int(rs, "last_ms", INT64_MIN);
    if (last != INT64_MIN && ev->ts_ms - last < r->cfg->recommend_rate_limit_ms) return SP_OK;
    sp_obj_set_int(rs, "last_ms", ev->ts_ms);

    snprintf(key, sizeof key, "mfu:%s", ev->user_id);
    if ((rc = sp_store_get(r->store, e->partition, key, &mo)) != SP_OK) return rc;
    float mfu[SP_PERSONAL_MAX_DIM];
    int have_mfu = sp_personal_hex_decode(sp_obj_get_str(mo, "v"), mfu, c->dim) == c->dim;
    struct cand top[K_MAX];
    size_t n = rank(r, rs, mfu, have_mfu, sp_obj_get_str(rs, "bought"), row, top);
    emit(r, e, top, n, t0);
    return SP_OK;
}

/* Writes the batch's rec:<user> lists (SET with a TTL: idempotent) in one
 * round trip, before the commit like every output. */
static int rec_flush(void *priv, int32_t part) {
    (void)part;
    struct recommend *r = priv;
    if (!r->npend) return SP_OK;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%d", r->cfg->recommend_ttl_s);
    int *argcs = sp_xmalloc(r->npend * sizeof *argcs);
    const char ***argvs = sp_xmalloc(r->npend * sizeof *argvs);
    const char **argv = sp_xmalloc(5 * r->npend * sizeof *argv);
    for (size_t i = 0; i < r->npend; i++) {
        argcs[i] = 5;
        argvs[i] = argv + 5 * i;
        argv[5 * i] = "SET";
        argv[5 * i + 1] = r->pend[i].key;
        argv[5 * i + 2] = r->pend[i].json;
        argv[5 * i + 3] = "EX";
        argv[5 * i + 4] = ttl;
    }
    int rc = sp_store_side(r->store, r->npend, argcs, (const char *const *const *)argvs, NULL);
    for (size_t i = 0; i < r->npend; i++) {
        free(r->pend[i].key);
        free(r->pend[i].json);
    }
    r->npend = 0;
    free(argcs);
    free(argvs);
    free(argv);
    return rc;
}

static int rec_reload(void *priv) {
    struct recommend *r = priv;
    return sp_personal_reload(r->ctx);
}

static void rec_destroy(void *priv) {
    struct recommend *r = priv;
    if (!r) return;
    for (size_t i = 0; i < r->npend; i++) {
        free(r->pend[i].key);
        free(r->pend[i].json);
    }
    free(r->pend);
    free(r->seq);
    free(r->blend);
    free(r->mf);
    free(r->ban);
    sp_personal_put(r->ctx);
    free(r);
}

const sp_op sp_op_recommend = {
    .name = "recommend",
    .help = "top-K recommendations on views and clicks: sequence model + online MF + popularity",
    .init = rec_init,
    .prefetch = rec_prefetch,
    .process = rec_process,
    .flush = rec_flush,
    .reload = rec_reload,
    .destroy = rec_destroy,
};
