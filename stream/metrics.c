/* Counters and log-bucketed latency histograms (four buckets per doubling,
 * so a quantile is within 19% of the truth, at a fixed 512 bytes). */
#include <math.h>
#include <stddef.h>

#include "stream/metrics.h"

static double bucket_upper(int i) { return pow(2.0, i / 4.0); }

void sp_hist_add(sp_hist *h, double us) {
    int i = 0;
    if (us > 1) i = (int)ceil(4.0 * log2(us));
    if (i < 0) i = 0;
    if (i >= SP_HIST_BUCKETS) i = SP_HIST_BUCKETS - 1;
    h->buckets[i]++;
    h->count++;
    h->sum += us;
}

double sp_hist_quantile(const sp_hist *h, double q) {
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
    if (rank == 0) rank = 1;
    for (int i = 0; i < SP_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) return bucket_upper(i);
    }
    return bucket_upper(SP_HIST_BUCKETS - 1);
}

uint64_t sp_metrics_events_total(const sp_metrics *m) {
    uint64_t n = 0;
    for (int k = 0; k < SP_KIND__COUNT; k++) n += m->events[k];
    return n;
}

void sp_metrics_print(const sp_metrics *m, FILE *f) {
    uint64_t clicks = 0;
    for (int k = SP_KIND_VIEW; k <= SP_KIND_SEARCH; k++) clicks += m->events[k];
    fprintf(f,
            "counters: messages=%llu events=%llu clicks=%llu orders=%llu reviews=%llu "
            "deadletter=%llu duplicates=%llu batches=%llu commits=%llu fenced=%llu stale=%llu "
            "produced=%llu produce_failed=%llu lag=%lld commit_p50_ms=%.3f commit_p99_ms=%.3f "
            "kpi_windows=%llu kpi_corrections=%llu kpi_late=%llu kpi_late_dropped=%llu "
            "recommendations=%llu rec_p50_ms=%.3f rec_p99_ms=%.3f\n",
            (unsigned long long)m->messages, (unsigned long long)sp_metrics_events_total(m),
            (unsigned long long)clicks, (unsigned long long)m->events[SP_KIND_ORDER],
            (unsigned long long)m->events[SP_KIND_REVIEW], (unsigned long long)m->deadletter,
            (unsigned long long)m->duplicates, (unsigned long long)m->batches,
            (unsigned long long)m->commits, (unsigned long long)m->fenced,
            (unsigned long long)m->stale,
            (unsigned long long)m->produced, (unsigned long long)m->produce_failed,
            (long long)m->lag, sp_hist_quantile(&m->commit_latency, 0.5) / 1000.0,
            sp_hist_quantile(&m->commit_latency, 0.99) / 1000.0,
            (unsigned long long)m->kpi_windows, (unsigned long long)m->kpi_corrections,
            (unsigned long long)m->kpi_late, (unsigned long long)m->kpi_late_dropped,
            (unsigned long long)m->recommendations, sp_hist_quantile(&m->rec_latency, 0.5) / 1000.0,
            sp_hist_quantile(&m->rec_latency, 0.99) / 1000.0);
    fprintf(f,
            "fraud: fraud_orders=%llu fraud_alerts=%llu review_burst_alerts=%llu kpi_alerts=%llu "
            "fraud_score_p50_us=%.1f fraud_score_p99_us=%.1f\n",
            (unsigned long long)m->fraud_orders, (unsigned long long)m->fraud_alerts,
            (unsigned long long)m->review_burst_alerts, (unsigned long long)m->kpi_alerts,
            sp_hist_quantile(&m->fraud_score_latency, 0.5),
            sp_hist_quantile(&m->fraud_score_latency, 0.99));
    fflush(f);
}

/* Every field before commit_latency is a 64-bit counter (see metrics.h),
 * so they are summed as an array: a counter added later is summed too. */
void sp_metrics_sum(sp_metrics *dst, const sp_metrics *src) {
    _Static_assert(offsetof(sp_metrics, commit_latency) % sizeof(uint64_t) == 0,
                   "counters must be 64-bit");
    uint64_t *d = (uint64_t *)dst;
    const uint64_t *s = (const uint64_t *)src;
    for (size_t i = 0; i < offsetof(sp_metrics, commit_latency) / sizeof(uint64_t); i++) d[i] += s[i];
    _Static_assert((sizeof(sp_metrics) - offsetof(sp_metrics, commit_latency)) % sizeof(sp_hist) == 0,
                   "histograms last");
    sp_hist *dh = &dst->commit_latency;
    const sp_hist *sh = &src->commit_latency;
    for (size_t h = 0; h < (sizeof(sp_metrics) - offsetof(sp_metrics, commit_latency)) / sizeof(sp_hist); h++) {
        dh[h].count += sh[h].count;
        dh[h].sum += sh[h].sum;
        for (int i = 0; i < SP_HIST_BUCKETS; i++) dh[h].buckets[i] += sh[h].buckets[i];
    }
}
