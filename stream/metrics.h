#ifndef STREAM_METRICS_H
#define STREAM_METRICS_H

/* Pipeline counters and latency histograms. Updated by the consumer loop's
 * thread; read by the SIGUSR1 printer and at exit (and later by /metrics).
 * Counters are plain 64-bit integers written by one thread: a reader on
 * another thread may see a value one update old, never a torn one on the
 * 64-bit targets we build for. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "stream/event.h"

#define SP_HIST_BUCKETS 64

typedef struct sp_hist {
    uint64_t count;
    double sum;
    uint64_t buckets[SP_HIST_BUCKETS]; /* bucket i: up to 2^(i/4) microseconds */
} sp_hist;

/* Every field before commit_latency must be a 64-bit counter and every field
 * from commit_latency on an sp_hist: sp_metrics_sum relies on that layout. */
typedef struct sp_metrics {
    uint64_t events[SP_KIND__COUNT];   /* processed, by kind */
    uint64_t messages;                 /* consumed from Kafka */
    uint64_t deadletter;
    uint64_t duplicates;
    uint64_t batches;
    uint64_t commits;
    uint64_t fenced;
    uint64_t stale;                    /* messages below the partition's next offset, skipped */
    uint64_t produce_failed;           /* deliveries that failed after retries */
    uint64_t produced;
    int64_t lag;                       /* sum over assigned partitions */
    uint64_t kpi_windows;              /* KpiWindow messages emitted (corrections included) */
    uint64_t kpi_corrections;          /* ... of which re-emissions after a change */
    uint64_t kpi_late;                 /* late events applied (kpi.late_policy=apply) */
    uint64_t kpi_late_dropped;         /* late events dropped (kpi.late_policy=drop) */
    uint64_t rec_impressions;          /* recommendation impressions (sp_kpi_add_impressions) */
    uint64_t recommendations;          /* Recommendation messages emitted (recommend operator) */
    uint64_t fraud_orders;             /* orders scored by the fraud operator */
    uint64_t fraud_alerts;             /* FraudAlert messages for orders */
    uint64_t review_burst_alerts;      /* FraudAlert messages for review bursts */
    uint64_t kpi_alerts;               /* KpiAlert messages */
    int has_thread_clock;              /* thread_clock is set */
    clockid_t thread_clock;            /* CPU clock of the thread running the operators */
    /* Histograms: every field from commit_latency to the end is an sp_hist. */
    sp_hist commit_latency;            /* Redis commit, microseconds */
    sp_hist batch_latency;             /* whole batch, microseconds */
    sp_hist rec_latency;               /* message polled -> recommendation produced, microseconds */
    sp_hist fraud_score_latency;       /* feature extraction + scoring of one order, microseconds */
} sp_metrics;

void sp_hist_add(sp_hist *h, double us);
/* The q-quantile (0..1) in microseconds, from the bucket bounds. */
double sp_hist_quantile(const sp_hist *h, double q);
uint64_t sp_metrics_events_total(const sp_metrics *m);
/* One line: "counters: events=... clicks=... deadletter=..." */
void sp_metrics_print(const sp_metrics *m, FILE *f);
/* dst += src, counters and histograms (lag too: lags of disjoint partitions add). */
void sp_metrics_sum(sp_metrics *dst, const sp_metrics *src);

#endif
