/* profile: what the shop knows about a user, in the hash
 * "{p<n>}:prof:<user_id>" of the user's partition (so it is exactly-once,
 * committed with the offsets). Fields:
 *
 *   first_ms last_ms events n_<kind>      first/last event time, counts by kind
 *   sessions recent_sessions              distinct session ids (among the last 16)
 *   orders spend aov                      orders, their total, average order value
 *   aff aff_ms                            category affinity: "cat:score,..." best
 *                                         first, top profile.top_categories,
 *                                         decayed with profile.half_life_s of
 *                                         event time, as of aff_ms
 *   recent                                "item:kind:ts ..." newest first by event
 *                                         time, at most profile.recent_items
 *   price_n price_sum price_min price_max price_mean   prices of items seen
 *   devices ips                           space-separated, at most 8 each, newest first
 *   ratings_n ratings_sum ratings_mean    reviews given
 *   rec_clicks                            clicks that came from a recommendation
 *
 * Every value is a function of the user's events in partition order, so a
 * replayed batch recomputes the same profile (decay uses event time, never
 * the clock). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "operators/personal.h"
#include "stream/error.h"

#define LIST_MAX 8
#define SESSIONS_MAX 16
#define TEXT_MAX 8192

struct profile {
    sp_store *store;
    sp_personal *ctx;
    int recent, top;
};

static int profile_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    sp_personal *ctx = sp_personal_get(env, err, errlen);
    if (!ctx) return SP_ERR_FATAL;
    struct profile *p = sp_xcalloc(1, sizeof *p);
    p->store = env->store;
    p->ctx = ctx;
    p->recent = env->cfg->profile_recent_items;
    p->top = env->cfg->profile_top_categories;
    *priv = p;
    return SP_OK;
}

static void prof_key(char *buf, size_t len, const sp_op_event *e) {
    snprintf(buf, len, "prof:%s", e->ev->user_id);
}

static void profile_prefetch(void *priv, const sp_op_event *e) {
    struct profile *p = priv;
    char key[256];
    prof_key(key, sizeof key, e);
    sp_store_want(p->store, e->partition, key);
}

/* Puts `word` first in a space-separated list, dropping an older copy and
 * anything past `max` words. */
static void list_push(sp_obj *o, const char *field, const char *word, int max) {
    if (!word || !*word || strchr(word, ' ')) return;
    const char *old = sp_obj_get_str(o, field);
    char out[TEXT_MAX];
    size_t n = (size_t)snprintf(out, sizeof out, "%s", word);
    int count = 1;
    if (old) {
        const char *s = old;
        while (*s && count < max) {
            const char *sp = strchr(s, ' ');
            size_t len = sp ? (size_t)(sp - s) : strlen(s);
            if (len && !(len == strlen(word) && !strncmp(s, word, len)) &&
                n + len + 2 < sizeof out) {
                out[n++] = ' ';
                memcpy(out + n, s, len);
                n += len;
                out[n] = '\0';
                count++;
            }
            s += len;
            while (*s == ' ') s++;
        }
    }
    if (!old || strcmp(old, out)) sp_obj_set_str(o, field, out);
}

/* Puts "item:kind:ts" into the ring of recent items, which is kept sorted
 * newest first by event time (then by text), so that the ring holds the
 * profile.recent_items newest events whatever order the input topics were
 * interleaved in. */
static void recent_push(struct profile *p, sp_obj *o, const char *item, const char *kind,
                        int64_t ts) {
    const char *old = sp_obj_get_str(o, "recent");
    char mine[2 * SP_EVENT_MAX_ID + 48], out[TEXT_MAX];
    snprintf(mine, sizeof mine, "%s:%s:%lld", item, kind, (long long)ts);
    size_t n = 0, mlen = strlen(mine);
    int count = 0, placed = 0;
    const char *s = old ? old : "";
    while (count < p->recent && (*s || !placed)) {
        const char *w = s, *sp = strchr(s, ' ');
        size_t len = *s ? (sp ? (size_t)(sp - s) : strlen(s)) : 0;
        int take_mine = !placed;
        if (take_mine && len) {
            const char *c = w + len;
            while (c > w && c[-1] != ':') c--;
            long long wts = atoll(c);
            int cmp = wts != ts ? (wts < ts ? -1 : 1) : strncmp(w, mine, len);
            if (cmp == 0 && len == mlen) return; /* the same event again */
            take_mine = cmp < 0;
        }
        const char *src = take_mine ? mine : w;
        size_t sl = take_mine ? mlen : len;
        if (n + sl + 2 >= sizeof out) break;
        if (n) out[n++] = ' ';
        memcpy(out + n, src, sl);
        n += sl;
        count++;
        if (take_mine) {
            placed = 1;
        } else {
            s += len;
            while (*s == ' ') s++;
        }
    }
    out[n] = '\0';
    if (!old || strcmp(old, out)) sp_obj_set_str(o, "recent", out);
}

struct aff {
    char cat[SP_EVENT_MAX_ID + 1];
    double score;
};

static int aff_cmp(const void *a, const void *b) {
    const struct aff *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return strcmp(x->cat, y->cat);
}

/* Decays the affinity to event time ts (never backwards: a late event's
 * weight is decayed to the profile's time instead) and adds w to cat. */
static void affinity_add(struct profile *p, sp_obj *o, const char *cat, double w, int64_t ts) {
    if (!cat || !*cat || w <= 0 || strlen(cat) > SP_EVENT_MAX_ID) return;
    struct aff a[101];
    int n = 0;
    const char *s = sp_obj_get_str(o, "aff");
    while (s && *s && n < p->top) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *colon = NULL;
        for (const char *c = s; c < s + len; c++)
            if (*c == ':') colon = c;
        if (colon && (size_t)(colon - s) <= SP_EVENT_MAX_ID) {
            memcpy(a[n].cat, s, (size_t)(colon - s));
            a[n].cat[colon - s] = '\0';
            a[n].score = strtod(colon + 1, NULL);
            n++;
        }
        s += len + (comma ? 1 : 0);
    }
    int64_t at = sp_obj_get_int(o, "aff_ms", ts);
    double f = 1.0;
    if (ts > at) {
        f = pow(0.5, (double)(ts - at) / p->ctx->half_life_ms);
        for (int i = 0; i < n; i++) a[i].score *= f;
        at = ts;
    } else {
        w *= pow(0.5, (double)(at - ts) / p->ctx->half_life_ms);
    }
    int found = 0;
    for (int i = 0; i < n && !found; i++)
        if (!strcmp(a[i].cat, cat)) {
            a[i].score += w;
            found = 1;
        }
    if (!found) {
        snprintf(a[n].cat, sizeof a[n].cat, "%s", cat);
        a[n++].score = w;
    }
    qsort(a, (size_t)n, sizeof a[0], aff_cmp);
    if (n > p->top) n = p->top;
    char out[TEXT_MAX];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof out - 160; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%s:%.6g", i ? "," : "", a[i].cat,
                                a[i].score);
    sp_obj_set_str(o, "aff", out);
    sp_obj_set_int(o, "aff_ms", at);
}

static void price_add(sp_obj *o, double price) {
    if (!(price > 0)) return;
    int64_t n = sp_obj_get_int(o, "price_n", 0);
    double sum = sp_obj_get_double(o, "price_sum", 0) + price;
    double lo = sp_obj_get_double(o, "price_min", price);
    double hi = sp_obj_get_double(o, "price_max", price);
    sp_obj_set_int(o, "price_n", n + 1);
    sp_obj_set_double(o, "price_sum", sum);
    sp_obj_set_double(o, "price_min", price < lo ? price : lo);
    sp_obj_set_double(o, "price_max", price > hi ? price : hi);
    sp_obj_set_double(o, "price_mean", sum / (double)(n + 1));
}

static int profile_process(void *priv, const sp_op_event *e) {
    struct profile *p = priv;
    const sp_event *ev = e->ev;
    char key[256], field[64];
    prof_key(key, sizeof key, e);
    sp_obj *o;
    int rc = sp_store_get(p->store, e->partition, key, &o);
    if (rc != SP_OK) return rc;
    const char *kind = sp_event_kind_name(e->kind);
    int64_t ts = ev->ts_ms;
    if (ts < sp_obj_get_int(o, "first_ms", INT64_MAX)) sp_obj_set_int(o, "first_ms", ts);
    if (ts > sp_obj_get_int(o, "last_ms", INT64_MIN)) sp_obj_set_int(o, "last_ms", ts);
    sp_obj_incr(o, "events", 1);
    snprintf(field, sizeof field, "n_%s", kind);
    sp_obj_incr(o, field, 1);
    if (ev->session_id && *ev->session_id && !strchr(ev->session_id, ' ')) {
        /* distinct session ids among the last SESSIONS_MAX seen: a count that
         * does not depend on how the input topics were interleaved */
        const char *seen = sp_obj_get_str(o, "recent_sessions");
        size_t sl = strlen(ev->session_id);
        int known = 0;
        for (const char *c = seen; c && *c && !known;) {
            const char *sp = strchr(c, ' ');
            size_t len = sp ? (size_t)(sp - c) : strlen(c);
            known = len == sl && !strncmp(c, ev->session_id, len);
            c += len;
            while (*c == ' ') c++;
        }
        if (!known) {
            sp_obj_incr(o, "sessions", 1);
            list_push(o, "recent_sessions", ev->session_id, SESSIONS_MAX);
        }
    }
    if (ev->context) {
        list_push(o, "devices", ev->context->device_id, LIST_MAX);
        list_push(o, "ips", ev->context->ip, LIST_MAX);
    }
    float w = e->kind < SP_KIND__COUNT ? p->ctx->mf_weights[e->kind] : 0;
    if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_CLICK && ev->click) {
        const Shopstream__V1__Click *c = ev->click;
        if (c->item_id && *c->item_id) {
            recent_push(p, o, c->item_id, kind, ts);
            price_add(o, c->price);
        }
        affinity_add(p, o, c->category, w, ts);
        if (c->rec_id && *c->rec_id) sp_obj_incr(o, "rec_clicks", 1);
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_ORDER && ev->order) {
        const Shopstream__V1__Order *ord = ev->order;
        int64_t orders = sp_obj_get_int(o, "orders", 0) + 1;
        double spend = sp_obj_get_double(o, "spend", 0) + ord->total;
        sp_obj_set_int(o, "orders", orders);
        sp_obj_set_double(o, "spend", spend);
        sp_obj_set_double(o, "aov", spend / (double)orders);
        for (size_t i = 0; i < ord->n_items; i++) {
            const Shopstream__V1__LineItem *li = ord->items[i];
            if (li->item_id && *li->item_id) recent_push(p, o, li->item_id, kind, ts);
            affinity_add(p, o, li->category, w, ts);
        }
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_REVIEW && ev->review) {
        int64_t n = sp_obj_get_int(o, "ratings_n", 0) + 1;
        int64_t sum = sp_obj_get_int(o, "ratings_sum", 0) + ev->review->rating;
        sp_obj_set_int(o, "ratings_n", n);
        sp_obj_set_int(o, "ratings_sum", sum);
        sp_obj_set_double(o, "ratings_mean", (double)sum / (double)n);
        if (ev->review->item_id && *ev->review->item_id)
            recent_push(p, o, ev->review->item_id, kind, ts);
    }
    return SP_OK;
}

static void profile_destroy(void *priv) {
    struct profile *p = priv;
    if (!p) return;
    sp_personal_put(p->ctx);
    free(p);
}

const sp_op sp_op_profile = {
    .name = "profile",
    .help = "per-user profile: counts, sessions, spend, category affinity, recent items",
    .init = profile_init,
    .prefetch = profile_prefetch,
    .process = profile_process,
    .destroy = profile_destroy,
};
