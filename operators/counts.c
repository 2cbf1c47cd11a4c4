/* counts: per-user event counts by kind, in the user's hash
 * "{p<n>}:u:<user_id>" (fields view, click, add_to_cart, remove_from_cart,
 * search, order, review, and events). The seed of the profile operator, and
 * what the exactly-once tests compare. */
#include <stdio.h>
#include <stdlib.h>

#include "operators/operator.h"
#include "stream/error.h"

struct counts {
    sp_store *store;
};

static int counts_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    struct counts *c = sp_xcalloc(1, sizeof *c);
    c->store = env->store;
    *priv = c;
    return SP_OK;
}

static void user_key(char *buf, size_t len, const sp_op_event *e) {
    snprintf(buf, len, "u:%s", e->ev->user_id);
}

static void counts_prefetch(void *priv, const sp_op_event *e) {
    struct counts *c = priv;
    char key[256];
    user_key(key, sizeof key, e);
    sp_store_want(c->store, e->partition, key);
}

static int counts_process(void *priv, const sp_op_event *e) {
    struct counts *c = priv;
    char key[256];
    user_key(key, sizeof key, e);
    sp_obj *u;
    int rc = sp_store_get(c->store, e->partition, key, &u);
    if (rc != SP_OK) return rc;
    sp_obj_incr(u, sp_event_kind_name(e->kind), 1);
    sp_obj_incr(u, "events", 1);
    return SP_OK;
}

static void counts_destroy(void *priv) { free(priv); }

const sp_op sp_op_counts = {
    .name = "counts",
    .help = "per-user event counts by kind",
    .init = counts_init,
    .prefetch = counts_prefetch,
    .process = counts_process,
    .destroy = counts_destroy,
};
