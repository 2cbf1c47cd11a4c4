/* counts: per-user event counts by kind, in the user's hash
 * "{p<n>}:u:<user_id>" (fields view, click, add_to_cart, remove_from_cart,
 * search, order, review, and events). The seed of the profile operator, and
 * what the exactly-once tests compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "stream/error.h"

struct counts {
    sp_store *store;
    sp_op_hints users;                 /* the event's user entry, prefetch to process */
    sp_fname kind[SP_KIND__COUNT + 1], events; /* [COUNT]: "unknown" */
};

static int counts_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    struct counts *c = sp_xcalloc(1, sizeof *c);
    c->store = env->store;
    for (int k = 0; k <= SP_KIND__COUNT; k++) c->kind[k] = sp_fname_of(sp_event_kind_name(k));
    c->events = sp_fname_of("events");
    *priv = c;
    return SP_OK;
}

/* "u:<user_id>" (user ids are at most SP_EVENT_MAX_ID bytes). */
static void user_key(char *buf, size_t len, const sp_op_event *e) {
    size_t n = strlen(e->ev->user_id);
    if (n > len - 3) n = len - 3;
    buf[0] = 'u';
    buf[1] = ':';
    memcpy(buf + 2, e->ev->user_id, n);
    buf[2 + n] = '\0';
}

static void counts_prefetch(void *priv, const sp_op_event *e) {
    struct counts *c = priv;
    char key[256];
    user_key(key, sizeof key, e);
    sp_op_want(&c->users, c->store, e, key);
}

static int counts_process(void *priv, const sp_op_event *e) {
    struct counts *c = priv;
    char key[256];
    user_key(key, sizeof key, e);
    sp_obj *u;
    int rc = sp_op_get(&c->users, c->store, e, key, &u);
    if (rc != SP_OK) return rc;
    sp_obj_incr_f(u, &c->kind[(unsigned)e->kind < SP_KIND__COUNT ? e->kind : SP_KIND__COUNT], 1);
    sp_obj_incr_f(u, &c->events, 1);
    return SP_OK;
}

static void counts_destroy(void *priv) {
    struct counts *c = priv;
    if (!c) return;
    sp_op_hints_release(&c->users);
    free(c);
}

const sp_op sp_op_counts = {
    .name = "counts",
    .help = "per-user event counts by kind",
    .init = counts_init,
    .prefetch = counts_prefetch,
    .process = counts_process,
    .destroy = counts_destroy,
};
