/* dedupe: drops an event whose event_id was seen recently in its
 * topic-partition (producer retries, replays by an upstream).
 *
 * A retry lands in the same topic-partition as its original, so ids are kept
 * per topic-partition and written in the partition's commit: the ids and the
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
 * In memory the ids are a hash map (membership, ts) plus their entries in
 * (ts, id bytes) order; after each batch everything older than maxts minus
 * the window goes, then the lowest entries beyond dedupe.max_ids. That set
 * is the newest max_ids of all ids ever seen with ts inside the window,
 * whatever the batch boundaries. The order is kept in two parts: a FIFO ring
 * for the entries that came in order (no lower than the ring's newest, the
 * usual case: a partition's events come mostly in event-time order), where
 * adding and taking the lowest cost O(1), and a min-heap for the rest; the
 * lowest entry is the lower of the two heads, so trimming takes entries in
 * exactly the order one heap of all of them would. At worst (nothing in
 * order) that is the one heap, O(log n) an id, as before the ring.
 *
 * In Redis the ids live in event-time buckets (an eighth of the window, at
 * least a second): the string
 * "{p<n>}:ddx:<topic>:<start>" holds the ids of that bucket as
 * "<ts>:<len>:<id>" records, appended in offset order (APPEND of the batch's
 * new ids, one command per bucket), and the hash "{p<n>}:ddx:<topic>" maps
 * each live bucket's start to its end. A bucket is deleted once it ends
 * before maxts minus the window. An id is written only when it is inside
 * the window at the moment it is seen, and never into a bucket that is
 * already being deleted, so the buckets' text, too, depends only on the
 * events and not on batch boundaries. Redis keeps a superset of the memory
 * (whole buckets; max_ids is a memory bound only): a new owner reads every
 * live bucket and applies the same two trimming rules, which gives it
 * exactly the set the committed offsets imply.
 *
 * Why buckets and not one sorted set (the first design, whose key
 * "{p<n>}:dd:<topic>" is still read once and deleted, so upgrading loses
 * nothing): ZADD into a sorted set of 10^5 members cost Redis about 3 us per
 * id (redis-benchmark, 170 ids per call into a 340k-member set: 535 us a
 * call), more than all the rest of a batch's commit; an APPEND of the batch's
 * ids is one command per bucket per batch. */
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
    struct entry *ring;     /* entries that came in (ts, id) order, oldest at rhead */
    size_t rhead, nring, capring; /* capring: 0 or a power of two */
    struct entry *heap;     /* min-heap of the entries that came out of order */
    size_t nheap, capheap;
    struct entry *pending;  /* added since the last flush, inside the window when seen */
    size_t npending, cappending;
    int64_t maxts;
    struct bucket { int64_t start, end; } *buckets; /* in Redis, by start */
    size_t nbuckets, capbuckets;
    int legacy;             /* the old sorted set exists: delete it at the next flush */
};



#define DD_MAX_TOPICS 8

struct dedupe {
    sp_store *store;
    int64_t window_ms, max_ids;
    int64_t bucket_ms;      /* event-time span of a Redis bucket of ids */
    char *topics[DD_MAX_TOPICS];
    int ntopics;
    struct dd_part *parts;  /* [partition * DD_MAX_TOPICS + topic] */
    size_t nparts;
    char *text;             /* flush_stream's APPEND argument, kept between flushes */
    size_t captext;
    int64_t *bucket;        /* flush_stream: the bucket of each pending id */
    size_t capbucket;
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

/* The ring's i-th entry from its oldest. */
static struct entry *ring_at(const struct dd_part *p, size_t i) {
    return &p->ring[(p->rhead + i) & (p->capring - 1)];
}

/* Appends at the newest end; a full ring is copied, oldest first, into one
 * twice its size (a power of two, so that ring_at wraps with a mask). */
static void ring_push(struct dd_part *p, struct entry e) {
    if (p->nring == p->capring) {
        size_t cap = p->capring ? p->capring * 2 : 1024;
        struct entry *r = sp_xmalloc(cap * sizeof *r);
        size_t first = p->capring - p->rhead < p->nring ? p->capring - p->rhead : p->nring;
        if (p->nring) {
            memcpy(r, p->ring + p->rhead, first * sizeof *r);
            memcpy(r + first, p->ring, (p->nring - first) * sizeof *r);
        }
        free(p->ring);
        p->ring = r;
        p->rhead = 0;
        p->capring = cap;
    }
    *ring_at(p, p->nring++) = e;
}

/* Remembers an entry in order: onto the ring when it is no lower than the
 * ring's newest, else into the heap, so that the ring stays sorted and the
 * usual in-order id costs one comparison of times. */
static void order_push(struct dd_part *p, struct entry e) {
    if (!p->nring || !entry_less(&e, ring_at(p, p->nring - 1))) ring_push(p, e);
    else heap_push(p, e);
}

/* The lowest entry, or NULL when there is none: the lower of the ring's
 * head and the heap's top, so that order_pop takes entries in the order one
 * min-heap of them all would (ties on ts broken by the id bytes). */
static const struct entry *order_min(const struct dd_part *p) {
    const struct entry *r = p->nring ? &p->ring[p->rhead] : NULL;
    if (!p->nheap) return r;
    return r && !entry_less(&p->heap[0], r) ? r : &p->heap[0];
}

/* Takes out the lowest entry, `low` (order_min's answer). */
static struct entry order_pop(struct dd_part *p, const struct entry *low) {
    if (!p->nring || low != &p->ring[p->rhead]) return heap_pop(p);
    struct entry e = *low;
    p->rhead = (p->rhead + 1) & (p->capring - 1);
    p->nring--;
    return e;
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
    free(p->ring);
    free(p->heap);
    free(p->pending);
    free(p->buckets);
    memset(p, 0, sizeof *p);
}

/* An id the map has just taken (kept: its copy): into the order, and maxts. */
static void remember_new(struct dd_part *p, const char *kept, size_t len, int64_t ts) {
    order_push(p, (struct entry){ts, kept, len});
    if (ts > p->maxts) p->maxts = ts;
}

static const char *remember(struct dd_part *p, const char *id, size_t len, int64_t ts) {
    int64_t *slot;
    const char *kept;
    if (sp_strmap_intern(p->ids, id, len, ts, &slot, &kept)) {
        remember_new(p, kept, len, ts);
    } else if (ts > *slot) { /* written again when new again (dedupe_process) */
        *slot = ts;
        remember_new(p, kept, len, ts);
    }
    return kept;
}

static void dedupe_destroy(void *priv);

static int dedupe_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    struct dedupe *d = sp_xcalloc(1, sizeof *d);
    d->store = env->store;
    d->window_ms = env->cfg->dedupe_window_ms;
    d->max_ids = env->cfg->dedupe_max_ids;
    /* A batch then touches one or two buckets of a topic-partition; each
     * bucket records its own end, so a changed window only changes the
     * buckets written from then on. */
    d->bucket_ms = d->window_ms / 8 < 1000 ? 1000 : d->window_ms / 8;
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

/* A bucket's key "<prefix>:<start>" into key (cap bytes), and start's text
 * into num: snprintf's result, without its cost on the flush path. */
static void bucket_key(char *key, size_t cap, const char *prefix, int64_t start, char *num) {
    size_t n = strlen(prefix), k = sp_i64toa(start, num);
    if (n + 1 + k >= cap) {
        snprintf(key, cap, "%s:%s", prefix, num);
        return;
    }
    memcpy(key, prefix, n);
    key[n] = ':';
    memcpy(key + n + 1, num, k + 1);
}

static int64_t bucket_of(const struct dedupe *d, int64_t ts) {
    return ts - ((ts % d->bucket_ms) + d->bucket_ms) % d->bucket_ms;
}

/* The bucket starting at `start`, added with end `end` if new; its end is
 * raised to `end` if lower (a bucket written under a smaller window). Sets
 * *changed when the index entry must be written. */
static struct bucket *bucket_get(struct dd_part *p, int64_t start, int64_t end, int *changed) {
    size_t i = p->nbuckets;
    while (i > 0 && p->buckets[i - 1].start > start) i--;
    *changed = 0;
    if (i > 0 && p->buckets[i - 1].start == start) {
        struct bucket *b = &p->buckets[i - 1];
        if (b->end < end) b->end = end, *changed = 1;
        return b;
    }
    if (p->nbuckets == p->capbuckets) {
        p->capbuckets = p->capbuckets ? p->capbuckets * 2 : 16;
        p->buckets = sp_xrealloc(p->buckets, p->capbuckets * sizeof *p->buckets);
    }
    memmove(p->buckets + i + 1, p->buckets + i, (p->nbuckets - i) * sizeof *p->buckets);
    p->buckets[i] = (struct bucket){start, end};
    p->nbuckets++;
    *changed = 1;
    return &p->buckets[i];
}

/* Drops ids that can never match again: older than the window, then the
 * lowest beyond max_ids (see the top of the file). */
static void trim_memory(struct dedupe *d, struct dd_part *p) {
    int64_t cutoff = p->maxts - d->window_ms;
    const struct entry *low;
    while ((low = order_min(p)) &&
           (low->ts < cutoff || (int64_t)sp_strmap_size(p->ids) > d->max_ids)) {
        struct entry e = order_pop(p, low);
        /* An id seen again since has a newer entry and keeps its time: this
         * one is stale and deletes nothing. Else the id goes (frees e.id). */
        sp_strmap_del_kept_if(p->ids, e.id, e.ts);
    }
}

static void pending_add(struct dd_part *p, int64_t ts, const char *id, size_t len) {
    if (p->npending == p->cappending) {
        p->cappending = p->cappending ? p->cappending * 2 : 256;
        p->pending = sp_xrealloc(p->pending, p->cappending * sizeof *p->pending);
    }
    /* Borrowed: ids leave the map only in flush, after pending is written. */
    p->pending[p->npending++] = (struct entry){ts, id, len};
}

/* An id of the old sorted set: kept, and (see dedupe_assign) written into a
 * bucket with the next commit, which deletes the old key. */
static void load_legacy(void *ctx, const char *member, size_t len, double score) {
    struct dd_part *p = ctx;
    remember(p, member, len, (int64_t)score);
    p->legacy = 1;
}

static int entry_cmp(const void *a, const void *b) {
    return entry_less(a, b) ? -1 : entry_less(b, a) ? 1 : 0;
}

static void load_index(void *ctx, const char *field, size_t flen, const char *value,
                       size_t vlen) {
    (void)flen;
    (void)vlen;
    int changed;
    bucket_get(ctx, strtoll(field, NULL, 10), strtoll(value, NULL, 10), &changed);
}

/* Parses a bucket's "<ts>:<len>:<id>" records. */
static void load_bucket(void *ctx, const char *data, size_t len) {
    const char *s = data, *end = data + len;
    while (s < end) {
        char *q;
        long long ts = strtoll(s, &q, 10);
        if (q >= end || *q != ':') break;
        long long n = strtoll(q + 1, &q, 10);
        if (q >= end || *q != ':' || n < 0 || n > end - (q + 1)) break;
        remember(ctx, q + 1, (size_t)n, ts);
        s = q + 1 + n;
    }
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
        int rc = sp_store_zscan(d->store, part, suffix, load_legacy, p);
        if (rc != SP_OK) return rc;
        snprintf(suffix, sizeof suffix, "ddx:%s", d->topics[t]);
        if ((rc = sp_store_hscan(d->store, part, suffix, load_index, p)) != SP_OK) return rc;
        for (size_t i = 0; i < p->nbuckets; i++) {
            char key[340], num[24];
            bucket_key(key, sizeof key, suffix, p->buckets[i].start, num);
            if ((rc = sp_store_read_string(d->store, part, key, load_bucket, p)) != SP_OK)
                return rc;
        }
        trim_memory(d, p);
        if (p->legacy) { /* the surviving old ids go into buckets at the next flush */
            for (size_t i = 0; i < p->nring; i++)
                pending_add(p, ring_at(p, i)->ts, ring_at(p, i)->id, ring_at(p, i)->len);
            for (size_t i = 0; i < p->nheap; i++)
                pending_add(p, p->heap[i].ts, p->heap[i].id, p->heap[i].len);
            qsort(p->pending, p->npending, sizeof *p->pending, entry_cmp);
        }
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
    const char *id = e->ev->event_id, *kept;
    size_t len = strlen(id);
    int64_t *seen_ts;
    if (!sp_strmap_intern(p->ids, id, len, e->ev->ts_ms, &seen_ts, &kept)) {
        int64_t cutoff = p->maxts - d->window_ms;
        if (*seen_ts >= cutoff) return SP_OP_DROP;
        /* Seen before the window: new again, and it must leave the state a
         * trim would have (the old id gone, this one taken as new), or the
         * state would depend on whether a flush came in between. A late one
         * is gone at the next trim either way; one inside the window is
         * remembered and written with its time, which is above the old
         * one's, so the old entry pops first and trim_memory skips it. */
        if (e->ev->ts_ms < cutoff) return SP_OK;
        *seen_ts = e->ev->ts_ms;
        remember_new(p, kept, len, e->ev->ts_ms);
        pending_add(p, e->ev->ts_ms, kept, len);
        return SP_OK;
    }
    remember_new(p, kept, len, e->ev->ts_ms);
    /* Outside the window already (a late event): gone at the next trim, so
     * never written -- a rule that depends on the events alone. */
    if (e->ev->ts_ms < p->maxts - d->window_ms) return SP_OK;
    pending_add(p, e->ev->ts_ms, kept, len);
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
    if (!p->active || (!p->npending && !p->legacy)) return;
    char idx[320], key[360], num[24], end[24];
    snprintf(idx, sizeof idx, "{p%d}:ddx:%s", (int)part, topic);
    int64_t cutoff = p->maxts - d->window_ms;
    /* Buckets that end before the window: deleted, first, so that nothing
     * below writes into one of them again. */
    size_t kept = 0;
    for (size_t i = 0; i < p->nbuckets; i++) {
        if (p->buckets[i].end >= cutoff) {
            p->buckets[kept++] = p->buckets[i];
            continue;
        }
        bucket_key(key, sizeof key, idx, p->buckets[i].start, num);
        const char *del[] = {"DEL", key};
        const char *hdel[] = {"HDEL", idx, num};
        sp_store_tx_cmd(d->store, part, 2, del);
        sp_store_tx_cmd(d->store, part, 3, hdel);
    }
    p->nbuckets = kept;
    if (p->legacy) {
        snprintf(key, sizeof key, "{p%d}:dd:%s", (int)part, topic);
        const char *del[] = {"DEL", key};
        sp_store_tx_cmd(d->store, part, 2, del);
        p->legacy = 0;
    }
    /* The batch's new ids, one APPEND per bucket, each bucket's records in
     * the order they came (the pending list is in offset order). Each id's
     * bucket is worked out once, and the text built in a buffer that lives
     * as long as the operator. */
    if (p->npending > d->capbucket) {
        d->capbucket = p->npending * 2;
        d->bucket = sp_xrealloc(d->bucket, d->capbucket * sizeof *d->bucket);
    }
    for (size_t i = 0; i < p->npending; i++) d->bucket[i] = bucket_of(d, p->pending[i].ts);
    int64_t seen[64];
    size_t nseen = 0, n = 0;
    for (size_t i = 0; i < p->npending; i++) {
        int64_t b = d->bucket[i];
        if (b + d->bucket_ms - 1 < cutoff) continue; /* its bucket is gone */
        size_t k = 0;
        while (k < nseen && seen[k] != b) k++;
        if (k < nseen) continue; /* written with the first id of its bucket */
        if (nseen < sizeof seen / sizeof seen[0]) seen[nseen++] = b;
        else { /* a batch over more than 64 buckets: scan back instead */
            size_t j = 0;
            while (j < i && d->bucket[j] != b) j++;
            if (j < i) continue;
        }
        n = 0;
        for (size_t j = i; j < p->npending; j++) {
            const struct entry *e = &p->pending[j];
            if (d->bucket[j] != b) continue;
            if (n + e->len + 48 > d->captext) {
                d->captext = d->captext ? d->captext : 4096;
                while (n + e->len + 48 > d->captext) d->captext *= 2;
                d->text = sp_xrealloc(d->text, d->captext);
            }
            n += sp_i64toa(e->ts, d->text + n);
            d->text[n++] = ':';
            n += sp_i64toa((int64_t)e->len, d->text + n);
            d->text[n++] = ':';
            memcpy(d->text + n, e->id, e->len);
            n += e->len;
        }
        d->text[n] = '\0';
        bucket_key(key, sizeof key, idx, b, num);
        const char *app[] = {"APPEND", key, d->text};
        sp_store_tx_cmd(d->store, part, 3, app);
        int changed;
        struct bucket *bk = bucket_get(p, b, b + d->bucket_ms - 1, &changed);
        if (changed) {
            sp_i64toa(bk->end, end);
            const char *hset[] = {"HSET", idx, num, end};
            sp_store_tx_cmd(d->store, part, 4, hset);
        }
    }
    p->npending = 0;
    trim_memory(d, p);
}

static void dedupe_destroy(void *priv) {
    struct dedupe *d = priv;
    if (!d) return;
    for (size_t i = 0; i < d->nparts; i++) part_release(&d->parts[i]);
    for (int t = 0; t < d->ntopics; t++) free(d->topics[t]);
    free(d->parts);
    free(d->text);
    free(d->bucket);
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
