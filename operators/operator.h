#ifndef OPERATORS_OPERATOR_H
#define OPERATORS_OPERATOR_H

/* The operator interface. An operator is one struct of callbacks filled by
 * field name, in one file, registered by one line in operators/registry.c.
 *
 * Per batch the runtime calls, for each event in partition order:
 *   prefetch(ev)  declare the state keys the event will touch (sp_store_want,
 *                 or sp_op_want to keep the entry for process), so a batch
 *                 loads its misses in one Redis round trip;
 * then, after one sp_store_prefetch(), for each event:
 *   process(ev)   update cached state, queue outputs; return SP_OP_DROP to
 *                 stop the event here (later operators don't see it);
 * then for each partition touched:
 *   flush(part)   add non-hash state to the partition's commit
 *                 (sp_store_tx_cmd) and produce end-of-batch outputs; the
 *                 runtime flushes every touched partition, then takes the
 *                 batch's changes into a transaction that is applied once
 *                 the batch's outputs are delivered (state/store.h,
 *                 sp_store_prepare), while the next batch runs.
 * before_commit() runs once just before the runtime cuts that transaction:
 * every batch, or every commit.interval_ms. It is for side writes that must
 * reach Redis before the state that depends on them but need not go out per
 * batch (mf's shared item deltas: sending them then keeps them at-least-once
 * and sends one script per commit instead of one per batch).
 * assign/revoke bracket a partition's ownership; assign runs after the store
 * has bumped the partition's epoch. reload (SIGHUP) runs between batches:
 * re-read files such as a model; on a bad file keep the old one, log why and
 * return SP_ERR_BADINPUT (the stream goes on either way).
 *
 * process() borrows the event for the duration of the call. Every callback
 * but process is optional (NULL). Return 0 or a negative SP_ERR_*;
 * SP_ERR_RETRY from any callback means "Redis is gone and we are stopping". */
#include <stddef.h>
#include <stdint.h>

#include "state/store.h"
#include "stream/config.h"
#include "stream/event.h"

#define SP_OP_DROP 1

typedef struct sp_sink sp_sink;
typedef struct sp_metrics sp_metrics;

/* What operators may use, handed to init(). */
typedef struct sp_op_env {
    sp_store *store;
    sp_sink *sink;
    const sp_config *cfg;
    sp_metrics *metrics;
} sp_op_env;

/* One event as operators see it. */
typedef struct sp_op_event {
    const sp_event *ev;
    enum sp_event_kind kind;
    int32_t partition;
    const char *topic;
    int64_t offset;
    double arrival_us; /* monotonic clock when the message was polled; 0 unknown */
    uint32_t seq;      /* its place in the batch: the key of its sp_op_hints */
} sp_op_event;

/* The cache entries an operator wanted in an event's prefetch, found again
 * in the same event's process without a second lookup of the key (a hash
 * of it and a cache miss or two, per event and object). One entry per
 * event per sp_op_hints (an operator wanting two objects keeps two). A
 * hint holds only for the event that set it, in its batch
 * (sp_store_batch); any other call falls back to sp_store_get, so an
 * operator run without prefetch (tests, a caller that skips it) still gets
 * the right object. The operator owns it: zeroed to start,
 * sp_op_hints_release at the end. */
typedef struct sp_op_hints {
    struct sp_op_hint *v;
    size_t cap;
} sp_op_hints;

/* sp_store_want of "{p<part>}:<suffix>" for the event, remembered. */
void sp_op_want(sp_op_hints *h, sp_store *st, const sp_op_event *e, const char *suffix);
/* The object sp_op_want wanted for this event, loaded; else sp_store_get's. */
int sp_op_get(sp_op_hints *h, sp_store *st, const sp_op_event *e, const char *suffix,
              sp_obj **out);
void sp_op_hints_release(sp_op_hints *h);

typedef struct sp_op {
    const char *name;
    const char *help;
    int (*init)(void **priv, const sp_op_env *env, char *err, size_t errlen);
    void (*prefetch)(void *priv, const sp_op_event *e);
    int (*process)(void *priv, const sp_op_event *e);
    int (*flush)(void *priv, int32_t part);
    int (*before_commit)(void *priv);
    int (*assign)(void *priv, int32_t part);
    void (*revoke)(void *priv, int32_t part);
    void (*destroy)(void *priv);
    int (*reload)(void *priv);
} sp_op;

/* The registry: every operator the binary knows. */
const sp_op *sp_op_find(const char *name);
void sp_op_list(void (*fn)(const sp_op *op, void *ctx), void *ctx);

/* A configured chain of operators. */
typedef struct sp_pipeline sp_pipeline;

/* Builds the chain named in `names` (comma-separated). An unknown name or a
 * failing init is an error naming it. */
sp_pipeline *sp_pipeline_new(const char *names, const sp_op_env *env, char *err,
                             size_t errlen);
void sp_pipeline_destroy(sp_pipeline *pl);
void sp_pipeline_prefetch(sp_pipeline *pl, const sp_op_event *e);
/* Returns SP_OK, SP_OP_DROP (the event was dropped, e.g. a duplicate, and by
 * which operator: *dropped_by) or an error. */
int sp_pipeline_process(sp_pipeline *pl, const sp_op_event *e, const char **dropped_by);
int sp_pipeline_flush(sp_pipeline *pl, int32_t part);
int sp_pipeline_before_commit(sp_pipeline *pl);
int sp_pipeline_assign(sp_pipeline *pl, int32_t part);
void sp_pipeline_revoke(sp_pipeline *pl, int32_t part);
/* Calls every operator's reload; returns the first error (after trying all). */
int sp_pipeline_reload(sp_pipeline *pl);

#endif
