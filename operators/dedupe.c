/* dedupe: drops an event whose event_id was seen recently in its
 * topic-partition (producer retries, replays by an upstream).
 *
 * A retry lands in the same topic-partition as its original, so ids are kept
 * per topic-partition, in the sorted set "{p<n>}:dd:<topic>" (member
 * event_id, score ts_ms), written in the partition's commit: the set and the
 * offsets move together, and after a crash the restarted instance sees
 * exactly the ids the committed offsets imply.
 *
 * "Recent" is measured in event time against the newest event seen so far in
 * the same topic-partition (maxts): an event is a duplicate when an earlier
 * one with its id has ts >= maxts - dedupe.window_ms. Keeping the window per
 * topic-partition matters: the three input topics are fetched independently,
 * so a partition's orders can run hours of event time ahead of its clicks.
 * The rule is checked at lookup, and trimming only drops ids that can never
 * match again, so whether an event counts as a duplicate does not depend on
 * where batch boundaries fall -- which is what lets a crashed and restarted
 * run end in exactly the state of an uninterrupted one.
 *
 * In memory the set is a hash map (membership, ts) plus a min-heap ordered
 * like the sorted set (score, then member bytes), so trimming memory and
 * Redis by the same rules -- everything older than maxts minus the window,
 * then the lowest entries beyond dedupe.max_ids -- leaves both holding the
 * same ids. (Only the max_ids bound, a memory guard, can make the outcome
 * depend on batch boundaries.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "stream/error.h"
#include "stream/strmap.h"

struct entry {
    int64_t ts;
    const char *id;  /* the ids map's copy: one allocation per remembered id */
    size_t len;
};

struct dd_part {
    int active;
    sp_strmap *ids;
    struct entry *heap;
    size_t nheap, capheap;
    struct entry *pending;  /* added since the last flush */
    size_t npending, cappending;
    int64_t maxts;
};

#define DD_MAX_TOPICS 8

struct dedupe {
    sp_store *store;
    int64_t window_ms, max_ids;
    char *topics[DD_MAX_TOPICS];
    int ntopics;
    struct dd_part *parts;  /* [partition * DD_MAX_TOPICS + topic] */
    size_t nparts;
};

static int entry_less(const struct entry *a, const struct entry *b) {
    if (a->ts != b->ts) return a->ts < b->ts;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->id, b->id, n);
    return c ? c < 0 : a->len < b->len;
}

static void heap_push(struct dd_part *p, struct entry e) {
    if (p->nheap == p->capheap) {
        p->capheap = p->capheap ? p->capheap * 2 : 1024;
        p->heap = sp_xrealloc(p->heap, p->capheap * sizeof *p->heap);
    }
    size_t i = p->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!entry_less(&e, &p->heap[up])) break;
        p->heap[i] = p->heap[up];
        i = up;
    }
    p->heap[i] = e;
}

static struct entry heap_pop(struct dd_part *p) {
    struct entry top = p->heap[0], last = p->heap[--p->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct entry *best = &last;
        if (l < p->nheap && entry_less(&p->heap[l], best)) m = l, best = &p->heap[l];
        if (r < p->nheap && entry_less(&p->heap[r], best)) m = r;
        if (m == i) break;
        p->heap[i] = p->heap[m];
        i = m;
    }
    if (p->nheap) p->heap[i] = last;
    return top;
}

static struct dd_part *part_of(struct dedupe *d, int32_t part, int topic) {
    size_t i = (size_t)part * DD_MAX_TOPICS + (size_t)topic;
    if (i >= d->nparts) {
        size_t n = d->nparts ? d->nparts : 16 * DD_MAX_TOPICS;
        while (n <= i) n *= 2;
        d->parts = sp_xrealloc(d->parts, n * sizeof *d->parts);
        memset(d->parts + d->nparts, 0, (n - d->nparts) * sizeof *d->parts);
        d->nparts = n;
    }
    return &d->parts[i];
}

static int topic_of(const struct dedupe *d, const char *topic) {
    for (int t = 0; t < d->ntopics; t++)
        if (!strcmp(d->topics[t], topic)) return t;
    return -1;
}

static void part_release(struct dd_part *p) {
    sp_strmap_destroy(p->ids);
    free(p->heap);
    free(p->pending);
    memset(p, 0, sizeof *p);
}

static const char *remember(struct dd_part *p, const char *id, size_t len, int64_t ts) {
    sp_strmap_put(p->ids, id, len, ts);
    struct entry e = {ts, sp_strmap_key(p->ids, id, len), len};
    heap_push(p, e);
    if (ts > p->maxts) p->maxts = ts;
    return e.id;
}

static void dedupe_destroy(void *priv);

static int dedupe_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    struct dedupe *d = sp_xcalloc(1, sizeof *d);
    d->store = env->store;
    d->window_ms = env->cfg->dedupe_window_ms;
    d->max_ids = env->cfg->dedupe_max_ids;
    char *list = sp_xstrdup(env->cfg->input_topics), *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (d->ntopics == DD_MAX_TOPICS) {
            snprintf(err, errlen, "at most %d input topics", DD_MAX_TOPICS);
            free(list);
            dedupe_destroy(d);
            return SP_ERR_FATAL;
        }
        d->topics[d->ntopics++] = sp_xstrdup(t);
    }
    free(list);
    *priv = d;
    return SP_OK;
}

static void load_one(void *ctx, const char *member, size_t len, double score) {
    remember(ctx, member, len, (int64_t)score);
}

static int dedupe_assign(void *priv, int32_t part) {
    struct dedupe *d = priv;
    for (int t = 0; t < d->ntopics; t++) {
        struct dd_part *p = part_of(d, part, t);
        part_release(p);
        p->ids = sp_strmap_new(1024);
        p->active = 1;
        char suffix[300];
        snprintf(suffix, sizeof suffix, "dd:%s", d->topics[t]);
        int rc = sp_store_zscan(d->store, part, suffix, load_one, p);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

static void dedupe_revoke(void *priv, int32_t part) {
    struct dedupe *d = priv;
    for (int t = 0; t < d->ntopics; t++) part_release(part_of(d, part, t));
}

static int dedupe_process(void *priv, const sp_op_event *e) {
    struct dedupe *d = priv;
    int t = topic_of(d, e->topic);
    if (t < 0) return SP_ERR_FATAL;
    struct dd_part *p = part_of(d, e->partition, t);
    if (!p->active) return SP_ERR_FATAL; /* an event of a partition we never assigned */
    const char *id = e->ev->event_id;
    size_t len = strlen(id);
    int64_t seen_ts;
    if (sp_strmap_get(p->ids, id, len, &seen_ts)) {
        if (seen_ts >= p->maxts - d->window_ms) return SP_OP_DROP;
        return SP_OK; /* outside the window: new again, and already remembered */
    }
    const char *kept = remember(p, id, len, e->ev->ts_ms);
    if (p->npending == p->cappending) {
        p->cappending = p->cappending ? p->cappending * 2 : 256;
        p->pending = sp_xrealloc(p->pending, p->cappending * sizeof *p->pending);
    }
    /* Borrowed: ids leave the map only in flush, after pending is written. */
    p->pending[p->npending++] = (struct entry){e->ev->ts_ms, kept, len};
    return SP_OK;
}

static void flush_stream(struct dedupe *d, struct dd_part *p, int32_t part, const char *topic);

/* Writes the ids added since the last flush into the partition's commit, then
 * trims memory and Redis by the same two rules (see the top of the file). */
static int dedupe_flush(void *priv, int32_t part) {
    struct dedupe *d = priv;
    for (int t = 0; t < d->ntopics; t++) flush_stream(d, part_of(d, part, t), part, d->topics[t]);
    return SP_OK;
}

static void flush_stream(struct dedupe *d, struct dd_part *p, int32_t part, const char *topic) {
    if (!p->active || !p->npending) return;
    char key[320], buf[64];
    snprintf(key, sizeof key, "{p%d}:dd:%s", (int)part, topic);
    size_t argc = 2 + 2 * p->npending;
    const char **argv = sp_xmalloc(argc * sizeof *argv);
    char (*scores)[24] = sp_xmalloc(p->npending * sizeof *scores);
    argv[0] = "ZADD";
    argv[1] = key;
    for (size_t i = 0; i < p->npending; i++) {
        sp_i64toa(p->pending[i].ts, scores[i]);
        argv[2 + 2 * i] = scores[i];
        argv[3 + 2 * i] = p->pending[i].id;
    }
    sp_store_tx_cmd(d->store, part, (int)argc, argv);
    p->npending = 0;
    free(scores);
    free(argv);

    int64_t cutoff = p->maxts - d->window_ms;
    snprintf(buf, sizeof buf, "(%lld", (long long)cutoff);
    const char *byscore[] = {"ZREMRANGEBYSCORE", key, "-inf", buf};
    sp_store_tx_cmd(d->store, part, 4, byscore);
    while (p->nheap && p->heap[0].ts < cutoff) {
        struct entry e = heap_pop(p);
        sp_strmap_del(p->ids, e.id, e.len); /* frees e.id */
    }
    if ((int64_t)p->nheap > d->max_ids) {
        snprintf(buf, sizeof buf, "%lld", (long long)((int64_t)p->nheap - d->max_ids - 1));
        const char *byrank[] = {"ZREMRANGEBYRANK", key, "0", buf};
        sp_store_tx_cmd(d->store, part, 4, byrank);
        while ((int64_t)p->nheap > d->max_ids) {
            struct entry e = heap_pop(p);
            sp_strmap_del(p->ids, e.id, e.len); /* frees e.id */
        }
    }
}

static void dedupe_destroy(void *priv) {
    struct dedupe *d = priv;
    if (!d) return;
    for (size_t i = 0; i < d->nparts; i++) part_release(&d->parts[i]);
    for (int t = 0; t < d->ntopics; t++) free(d->topics[t]);
    free(d->parts);
    free(d);
}

const sp_op sp_op_dedupe = {
    .name = "dedupe",
    .help = "drops an event whose event_id was seen recently in its partition",
    .init = dedupe_init,
    .process = dedupe_process,
    .flush = dedupe_flush,
    .assign = dedupe_assign,
    .revoke = dedupe_revoke,
    .destroy = dedupe_destroy,
};
