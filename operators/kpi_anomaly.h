#ifndef OPERATORS_KPI_ANOMALY_H
#define OPERATORS_KPI_ANOMALY_H

/* KPI anomalies: the kpi operator hands every first emission of a base
 * window of the global dimension to sp_kpi_anomaly_observe(), which runs
 * models/anomaly.h's KPI series detector over three series -- orders, GMV,
 * conversion rate -- and produces a KpiAlert to topics.kpi_alerts for a
 * point whose score is above kpi.anomaly_threshold.
 *
 * One detector per partition and series, not over the merged series: the
 * kpi operator emits per-partition windows (readers sum the partitions), and
 * a partition's detector can then live in the partition's commit
 * ({p<n>}:kpianom, one state/blob.h blob per series, plus "last", the start
 * of the latest window observed) -- exactly-once, with no cross-instance
 * merge that would have to wait for the slowest partition. Producers key
 * events by user, so partitions see statistically similar traffic and a
 * shop-wide incident (checkout down, a price glitch) shows in every one.
 *
 * Small numbers are noise, not anomalies: a partition that sees an order
 * every few minutes has a 1-order minute "20 sigma" above a level of 0.05.
 * So a point is judged (may alert) only with support: orders and GMV when
 * the window's orders or the forecast orders reach kpi.anomaly_min_support,
 * the conversion rate when the window has that many sessions. The detector
 * learns from every point either way.
 *
 * Windows without events are never emitted; the gap is fed to the orders
 * and GMV series as zeros (up to a day of windows), and the conversion rate,
 * undefined without sessions, skips it. */
#include <stdint.h>

#include "operators/operator.h"

typedef struct sp_kpi_anomaly sp_kpi_anomaly;

sp_kpi_anomaly *sp_kpi_anomaly_new(const sp_op_env *env, int64_t window_ms);
void sp_kpi_anomaly_destroy(sp_kpi_anomaly *a);

/* Observes the window [start, start + window_ms) of partition part: scores
 * each series' value first, alerts, then learns it. A window at or before
 * the latest one observed is ignored (a correction, or a repeat). Returns 0
 * or a store/sink error. */
int sp_kpi_anomaly_observe(sp_kpi_anomaly *a, int32_t part, int64_t start, double orders,
                           double gmv, double conversion_rate, double sessions);

#endif
