/* A configured chain of operators: each callback of the runtime fans out to
 * the operators in their configured order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "stream/error.h"

struct stage {
    const sp_op *op;
    void *priv;
};

struct sp_pipeline {
    struct stage *stages;
    size_t n;
};

sp_pipeline *sp_pipeline_new(const char *names, const sp_op_env *env, char *err,
                             size_t errlen) {
    sp_pipeline *pl = sp_xcalloc(1, sizeof *pl);
    char *list = sp_xstrdup(names), *save = NULL;
    for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        const sp_op *op = sp_op_find(tok);
        if (!op) {
            snprintf(err, errlen, "key 'operators': unknown operator '%s'", tok);
            goto fail;
        }
        pl->stages = sp_xrealloc(pl->stages, (pl->n + 1) * sizeof *pl->stages);
        struct stage *s = &pl->stages[pl->n];
        s->op = op;
        s->priv = NULL;
        if (op->init) {
            char sub[256] = "";
            if (op->init(&s->priv, env, sub, sizeof sub) != SP_OK) {
                snprintf(err, errlen, "operator '%s': %s", tok, sub);
                goto fail;
            }
        }
        pl->n++;
    }
    free(list);
    return pl;
fail:
    free(list);
    sp_pipeline_destroy(pl);
    return NULL;
}

void sp_pipeline_destroy(sp_pipeline *pl) {
    if (!pl) return;
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->destroy) pl->stages[i].op->destroy(pl->stages[i].priv);
    free(pl->stages);
    free(pl);
}

void sp_pipeline_prefetch(sp_pipeline *pl, const sp_op_event *e) {
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->prefetch) pl->stages[i].op->prefetch(pl->stages[i].priv, e);
}

int sp_pipeline_process(sp_pipeline *pl, const sp_op_event *e, const char **dropped_by) {
    for (size_t i = 0; i < pl->n; i++) {
        int rc = pl->stages[i].op->process(pl->stages[i].priv, e);
        if (rc == SP_OP_DROP) {
            if (dropped_by) *dropped_by = pl->stages[i].op->name;
            return SP_OP_DROP;
        }
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

int sp_pipeline_flush(sp_pipeline *pl, int32_t part) {
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->flush) {
            int rc = pl->stages[i].op->flush(pl->stages[i].priv, part);
            if (rc != SP_OK) return rc;
        }
    return SP_OK;
}

int sp_pipeline_before_commit(sp_pipeline *pl) {
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->before_commit) {
            int rc = pl->stages[i].op->before_commit(pl->stages[i].priv);
            if (rc != SP_OK) return rc;
        }
    return SP_OK;
}

int sp_pipeline_assign(sp_pipeline *pl, int32_t part) {
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->assign) {
            int rc = pl->stages[i].op->assign(pl->stages[i].priv, part);
            if (rc != SP_OK) return rc;
        }
    return SP_OK;
}

void sp_pipeline_revoke(sp_pipeline *pl, int32_t part) {
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->revoke) pl->stages[i].op->revoke(pl->stages[i].priv, part);
}

int sp_pipeline_reload(sp_pipeline *pl) {
    int first = SP_OK;
    for (size_t i = 0; i < pl->n; i++)
        if (pl->stages[i].op->reload) {
            int rc = pl->stages[i].op->reload(pl->stages[i].priv);
            if (rc != SP_OK && first == SP_OK) first = rc;
        }
    return first;
}

struct sp_op_hint {
    uint64_t batch;       /* sp_store_batch when set */
    const sp_event *ev;   /* the event it was set for */
    sp_obj *obj;
};

void sp_op_want(sp_op_hints *h, sp_store *st, const sp_op_event *e, const char *suffix) {
    sp_obj *o = sp_store_want(st, e->partition, suffix);
    if (e->seq >= h->cap) {
        size_t n = h->cap ? h->cap : 256;
        while (n <= e->seq) n *= 2;
        h->v = sp_xrealloc(h->v, n * sizeof *h->v);
        memset(h->v + h->cap, 0, (n - h->cap) * sizeof *h->v);
        h->cap = n;
    }
    h->v[e->seq] = (struct sp_op_hint){sp_store_batch(st), e->ev, o};
}

int sp_op_get(sp_op_hints *h, sp_store *st, const sp_op_event *e, const char *suffix,
              sp_obj **out) {
    if (e->seq < h->cap) {
        const struct sp_op_hint *t = &h->v[e->seq];
        if (t->obj && t->ev == e->ev && t->batch == sp_store_batch(st)) {
            int rc = sp_store_load(st, t->obj);
            if (rc == SP_OK) *out = t->obj;
            return rc;
        }
    }
    return sp_store_get(st, e->partition, suffix, out);
}

void sp_op_hints_release(sp_op_hints *h) {
    free(h->v);
    *h = (sp_op_hints){0};
}
