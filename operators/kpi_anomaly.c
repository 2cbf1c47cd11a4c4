/* KPI anomalies over the kpi operator's window series. See kpi_anomaly.h. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/anomaly.h"
#include "operators/kpi_anomaly.h"
#include "state/blob.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/log.h"
#include "stream/metrics.h"

#define NSERIES 3
#define MAX_GAP 1440 /* windows of zeros fed for a gap, at most */
#define ALPHA 0.1

static const char *const series_name[NSERIES] = {"orders", "gmv", "conversion_rate"};

struct sp_kpi_anomaly {
    sp_store *store;
    sp_sink *sink;
    sp_metrics *metrics;
    const char *topic;
    double threshold;
    double support;
    int64_t window_ms;
    struct sp_kpi_detector det; /* scratch: one series at a time */
    char *enc;
};

sp_kpi_anomaly *sp_kpi_anomaly_new(const sp_op_env *env, int64_t window_ms) {
    sp_kpi_anomaly *a = sp_xcalloc(1, sizeof *a);
    a->store = env->store;
    a->sink = env->sink;
    a->metrics = env->metrics;
    a->topic = env->cfg->kpi_alerts_topic;
    a->threshold = env->cfg->kpi_anomaly_threshold;
    a->support = env->cfg->kpi_anomaly_min_support;
    a->window_ms = window_ms;
    a->enc = sp_xmalloc(sp_blob_encoded_max(sizeof(struct sp_kpi_detector)));
    return a;
}

void sp_kpi_anomaly_destroy(sp_kpi_anomaly *a) {
    if (!a) return;
    free(a->enc);
    free(a);
}

static int alert(sp_kpi_anomaly *a, int32_t part, int64_t start, const char *metric, double x,
                 double expected, double z, double score) {
    char id[128], why[160];
    snprintf(id, sizeof id, "%s:%" PRId64 ":p%d", metric, start, (int)part);
    snprintf(why, sizeof why, "%s %.4g is %.1f\xcf\x83 %s the forecast of %.4g (partition %d)",
             metric, x, fabs(z), z >= 0 ? "above" : "below", expected, (int)part);
    char *reasons[1] = {why};
    Shopstream__V1__KpiAlert k = SHOPSTREAM__V1__KPI_ALERT__INIT;
    k.alert_id = id;
    k.partition = part;
    k.window_start_ms = start;
    k.window_end_ms = start + a->window_ms;
    k.metric = (char *)metric;
    k.value = x;
    k.expected = expected;
    k.z = z;
    k.score = score;
    k.reasons = reasons;
    k.n_reasons = 1;
    uint8_t buf[512];
    size_t size = shopstream__v1__kpi_alert__get_packed_size(&k);
    if (size > sizeof buf) return SP_ERR_FATAL;
    shopstream__v1__kpi_alert__pack(&k, buf);
    sp_header h = {"content-type", "application/x-protobuf", 22};
    a->metrics->kpi_alerts++;
    sp_info("kpi alert %s score=%.3f: %s", id, score, why);
    return sp_sink_produce(a->sink, a->topic, id, strlen(id), buf, size, &h, 1);
}

int sp_kpi_anomaly_observe(sp_kpi_anomaly *a, int32_t part, int64_t start, double orders,
                           double gmv, double conversion_rate, double sessions) {
    sp_obj *o;
    int rc = sp_store_get(a->store, part, "kpianom", &o);
    if (rc != SP_OK) return rc;
    const char *lastv = sp_obj_get_str(o, "last");
    int64_t last = lastv ? strtoll(lastv, NULL, 10) : INT64_MIN;
    if (lastv && start <= last) return SP_OK;
    int64_t gap = lastv ? (start - last) / a->window_ms - 1 : 0;
    if (gap > MAX_GAP) gap = MAX_GAP;
    const double x[NSERIES] = {orders, gmv, conversion_rate};
    int judged[NSERIES] = {0, 0, sessions >= a->support};
    for (int s = 0; s < NSERIES && rc == SP_OK; s++) {
        if (sp_blob_decode(sp_obj_get_str(o, series_name[s]), &a->det, sizeof a->det) != SP_OK)
            sp_kpi_init(&a->det, 0, ALPHA);
        if (s < 2)
            for (int64_t g = 0; g < gap; g++) sp_kpi_update(&a->det, 0.0);
        double z, score = sp_kpi_score(&a->det, x[s], &z);
        double expected = a->det.level;
        if (s == 0) judged[0] = judged[1] = orders >= a->support || expected >= a->support;
        if (judged[s] && score > a->threshold) rc = alert(a, part, start, series_name[s], x[s], expected, z, score);
        sp_kpi_update(&a->det, x[s]);
        sp_blob_encode(&a->det, sizeof a->det, a->enc);
        sp_obj_set_str(o, series_name[s], a->enc);
    }
    sp_obj_set_int(o, "last", start);
    return rc;
}
