/* dedupe: drops an event whose event_id was seen recently in its partition
 * (producer retries, replays by an upstream).
 *
 * Per partition the recent ids live in the sorted set "{p<n>}:dd" (member
 * event_id, score ts_ms), written in the partition's commit, so the set and
 * the offsets move together: after a crash the restarted instance sees
 * exactly the ids the committed offsets imply. In memory the same set is a
 * hash map (membership) plus a min-heap ordered like the sorted set (score,
 * then member bytes), so trimming memory and Redis with the same rule --
 * first everything older than the newest ts minus dedupe.window_ms, then the
 * lowest entries beyond dedupe.max_ids -- leaves both holding the same ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "stream/error.h"
#include "stream/strmap.h"

struct entry {
    int64_t ts;
    char *id;
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

struct dedupe {
    sp_store *store;
    int64_t window_ms, max_ids;
    struct dd_part *parts;
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

static struct dd_part *part_of(struct dedupe *d, int32_t part) {
    if ((size_t)part >= d->nparts) {
        size_t n = d->nparts ? d->nparts : 16;
        while (n <= (size_t)part) n *= 2;
        d->parts = sp_xrealloc(d->parts, n * sizeof *d->parts);
        memset(d->parts + d->nparts, 0, (n - d->nparts) * sizeof *d->parts);
        d->nparts = n;
    }
    return &d->parts[part];
}

static void part_release(struct dd_part *p) {
    sp_strmap_destroy(p->ids);
    for (size_t i = 0; i < p->nheap; i++) free(p->heap[i].id);
    free(p->heap);
    for (size_t i = 0; i < p->npending; i++) free(p->pending[i].id);
    free(p->pending);
    memset(p, 0, sizeof *p);
}

static void remember(struct dd_part *p, const char *id, size_t len, int64_t ts) {
    struct entry e = {ts, sp_xstrndup(id, len), len};
    sp_strmap_put(p->ids, id, len, ts);
    heap_push(p, e);
    if (ts > p->maxts) p->maxts = ts;
}

static int dedupe_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    struct dedupe *d = sp_xcalloc(1, sizeof *d);
    d->store = env->store;
    d->window_ms = env->cfg->dedupe_window_ms;
    d->max_ids = env->cfg->dedupe_max_ids;
    *priv = d;
    return SP_OK;
}

static void load_one(void *ctx, const char *member, size_t len, double score) {
    remember(ctx, member, len, (int64_t)score);
}

static int dedupe_assign(void *priv, int32_t part) {
    struct dedupe *d = priv;
    struct dd_part *p = part_of(d, part);
    part_release(p);
    p->ids = sp_strmap_new(1024);
    p->active = 1;
    return sp_store_zscan(d->store, part, "dd", load_one, p);
}

static void dedupe_revoke(void *priv, int32_t part) {
    struct dedupe *d = priv;
    if ((size_t)part < d->nparts) part_release(&d->parts[part]);
}

static int dedupe_process(void *priv, const sp_op_event *e) {
    struct dedupe *d = priv;
    struct dd_part *p = part_of(d, e->partition);
    if (!p->active) return SP_ERR_FATAL; /* an event of a partition we never assigned */
    const char *id = e->ev->event_id;
    size_t len = strlen(id);
    if (sp_strmap_get(p->ids, id, len, NULL)) return SP_OP_DROP;
    remember(p, id, len, e->ev->ts_ms);
    if (p->npending == p->cappending) {
        p->cappending = p->cappending ? p->cappending * 2 : 256;
        p->pending = sp_xrealloc(p->pending, p->cappending * sizeof *p->pending);
    }
    p->pending[p->npending++] = (struct entry){e->ev->ts_ms, sp_xstrndup(id, len), len};
    return SP_OK;
}

/* Writes the ids added since the last flush into the partition's commit, then
 * trims memory and Redis by the same two rules (see the top of the file). */
static int dedupe_flush(void *priv, int32_t part) {
    struct dedupe *d = priv;
    struct dd_part *p = part_of(d, part);
    if (!p->active || !p->npending) return SP_OK;
    char key[64], buf[64];
    snprintf(key, sizeof key, "{p%d}:dd", (int)part);
    size_t argc = 2 + 2 * p->npending;
    const char **argv = sp_xmalloc(argc * sizeof *argv);
    char (*scores)[24] = sp_xmalloc(p->npending * sizeof *scores);
    argv[0] = "ZADD";
    argv[1] = key;
    for (size_t i = 0; i < p->npending; i++) {
        snprintf(scores[i], sizeof scores[i], "%lld", (long long)p->pending[i].ts);
        argv[2 + 2 * i] = scores[i];
        argv[3 + 2 * i] = p->pending[i].id;
    }
    sp_store_tx_cmd(d->store, part, (int)argc, argv);
    for (size_t i = 0; i < p->npending; i++) free(p->pending[i].id);
    p->npending = 0;
    free(scores);
    free(argv);

    int64_t cutoff = p->maxts - d->window_ms;
    snprintf(buf, sizeof buf, "(%lld", (long long)cutoff);
    const char *byscore[] = {"ZREMRANGEBYSCORE", key, "-inf", buf};
    sp_store_tx_cmd(d->store, part, 4, byscore);
    while (p->nheap && p->heap[0].ts < cutoff) {
        struct entry e = heap_pop(p);
        sp_strmap_del(p->ids, e.id, e.len);
        free(e.id);
    }
    if ((int64_t)p->nheap > d->max_ids) {
        snprintf(buf, sizeof buf, "%lld", (long long)((int64_t)p->nheap - d->max_ids - 1));
        const char *byrank[] = {"ZREMRANGEBYRANK", key, "0", buf};
        sp_store_tx_cmd(d->store, part, 4, byrank);
        while ((int64_t)p->nheap > d->max_ids) {
            struct entry e = heap_pop(p);
            sp_strmap_del(p->ids, e.id, e.len);
            free(e.id);
        }
    }
    return SP_OK;
}

static void dedupe_destroy(void *priv) {
    struct dedupe *d = priv;
    if (!d) return;
    for (size_t i = 0; i < d->nparts; i++) part_release(&d->parts[i]);
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
