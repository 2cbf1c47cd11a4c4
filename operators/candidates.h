#ifndef OPERATORS_CANDIDATES_H
#define OPERATORS_CANDIDATES_H

/* Candidate generation for the recommend operator: a few hundred rows of
 * the personalization item table (operators/personal.h) that the full
 * blend then scores, instead of every item. Sources, in the order they are
 * taken (a row is listed once):
 *
 *   seeds      the user's recent items themselves (re-views are common);
 *   next       per seed, the loaded model's top items for a session made of
 *              that one item (GRU: one step from the zero state; SASRec:
 *              attention over [item]; MF: the item's own embedding as the
 *              user vector), computed for every model item at load and on
 *              reload -- what the model itself would say after the seed;
 *   covisit    per seed, the items that followed it in users' streams
 *              (consecutive events of one user), learned online with the
 *              Space-Saving algorithm (Metwally et al., ICDT 2005) in a
 *              fixed number of slots per item, so new items and shifts in
 *              taste the model has not seen still reach the list;
 *   popular    the most seen items of this instance (the popularity prior's
 *              own top);
 *   prior      the model's items with the highest bias (its global favourites).
 *
 * Co-visitation and popularity are this instance's priors, like the
 * popularity score: kept in memory, not state; a replayed batch counts
 * again, which only shifts a prior.
 *
 * @locality one thread: the consumer loop's (one per pipeline). */
#include <stddef.h>
#include <stdint.h>

#include "models/scorer.h"

typedef struct sp_cands sp_cands;

typedef struct sp_cands_conf {
    size_t next;       /* model top items kept per item (0: no model source) */
    size_t covisit;    /* co-visitation slots per item */
    size_t popular;    /* most seen items kept */
    size_t prior;      /* highest-bias model items kept */
} sp_cands_conf;

/* The defaults used by the recommend operator. */
void sp_cands_conf_default(sp_cands_conf *conf);

sp_cands *sp_cands_new(const sp_cands_conf *conf);
void sp_cands_destroy(sp_cands *c);

/* Makes room for rows [0, rows) (new rows have no neighbours). */
void sp_cands_reserve(sp_cands *c, size_t rows);

/* Recomputes the next and prior lists from model m, whose item i is row
 * model2row[i]. One blocked sgemm of the one-item session vectors against
 * the item embeddings: O(n_items^2 d), about 0.1 s for 10k items and d=32.
 * scorer is m's (SASRec needs its attention scratch). 0 or SP_ERR_BADINPUT. */
int sp_cands_build_model(sp_cands *c, const sp_model *m, sp_scorer *scorer,
                         const int32_t *model2row);

/* Drops the model lists (no model, or before a rebuild for another one). */
void sp_cands_clear_model(sp_cands *c);

/* One user went from row `from` to row `to` (consecutive events). */
void sp_cands_covisit(sp_cands *c, int32_t from, int32_t to);

/* Row `row` has now been seen `count` times (the popularity count). */
void sp_cands_seen(sp_cands *c, int32_t row, float count);

/* Writes at most max distinct rows into out, from the sources above for
 * seeds[0..nseeds) (most recent first, negative entries skipped). Returns
 * the number written. */
size_t sp_cands_collect(sp_cands *c, const int32_t *seeds, size_t nseeds, int32_t *out,
                        size_t max);

/* What a scorer of model items keeps of the candidates. */
typedef struct sp_cands_keep {
    const int32_t *skip;      /* rows never listed (the items a user bought), nskip of them */
    size_t nskip;
    const int32_t *row2model; /* per row: its model item, negative for none (not listed) */
} sp_cands_keep;

/* sp_cands_collect, then the rows of keep->skip and those without a model
 * item dropped: the same rows in the same order, and in items[i] the model
 * item of out[i]. Saves the scorer a pass over the list. */
size_t sp_cands_collect_kept(sp_cands *c, const int32_t *seeds, size_t nseeds,
                             const sp_cands_keep *keep, int32_t *out, int32_t *items, size_t max);

/* The neighbour lists of one row, for tests and `inspect`: the model's next
 * rows (best first) and the co-visited rows with their counts (in slot
 * order). Return the number written, at most max. */
size_t sp_cands_next_of(const sp_cands *c, int32_t row, int32_t *out, size_t max);
size_t sp_cands_covisit_of(const sp_cands *c, int32_t row, int32_t *out, float *counts,
                           size_t max);

#endif
