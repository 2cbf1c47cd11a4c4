#ifndef OPERATORS_KPI_H
#define OPERATORS_KPI_H

/* What other operators may tell the kpi operator. See operators/kpi.c. */
#include <stdint.h>

/* Counts n recommendation impressions at event time ts_ms in partition
 * part's windows (the recommend operator calls this from its process() when
 * it shows recommendations; the change lands in the same commit as the
 * event). Returns 0, SP_ERR_NOTFOUND when the kpi operator is not running,
 * or a store error. */
int sp_kpi_add_impressions(int32_t part, int64_t ts_ms, int64_t n);

/* The counters of one window (or of the all-time totals), as stored in the
 * window hashes, in emission order; NULL-terminated. Derived metrics
 * (conversion rate, CTR, ...) are computed from them by sp_kpi_derive. */
#define SP_KPI_NCOUNTERS 19
extern const char *const sp_kpi_counters[];

/* Derived metrics from counter values (same order as sp_kpi_counters):
 * writes up to 8 name/value pairs, returns how many. Rates with a zero
 * denominator are 0. */
int sp_kpi_derive(const double *counters, const char **names, double *values);

/* Index of a counter in sp_kpi_counters, or -1. */
int sp_kpi_counter_index(const char *name);

#endif
