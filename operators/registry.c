/* Every operator the binary knows: adding one is a file and a line here. */
#include <string.h>

#include "operators/operator.h"

extern const sp_op sp_op_dedupe;
extern const sp_op sp_op_counts;
extern const sp_op sp_op_kpi;
extern const sp_op sp_op_reviews;
extern const sp_op sp_op_profile;
extern const sp_op sp_op_mf;
extern const sp_op sp_op_recommend;
extern const sp_op sp_op_fraud;

static const sp_op *const registry[] = {
    &sp_op_dedupe,
    &sp_op_counts,
    &sp_op_kpi,
    &sp_op_reviews,
    &sp_op_profile,
    &sp_op_mf,
    &sp_op_recommend,
    &sp_op_fraud,
};

const sp_op *sp_op_find(const char *name) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

void sp_op_list(void (*fn)(const sp_op *op, void *ctx), void *ctx) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) fn(registry[i], ctx);
}
