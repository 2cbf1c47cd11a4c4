/* Processor configuration: one table describes every key (type, default,
 * help), and the file, environment and flag parsers all go through it, so a
 * key cannot be documented in one place and parsed differently in another. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stream/config.h"
#include "stream/error.h"

extern char **environ;

enum opt_type { OPT_STR, OPT_INT, OPT_I64, OPT_DBL };

struct opt {
    const char *key;
    enum opt_type type;
    size_t offset;
    const char *def;
    int64_t min, max;
    const char *help;
};

#define O(f) offsetof(sp_config, f)
static const struct opt opts[] = {
    {"brokers", OPT_STR, O(brokers), "127.0.0.1:9092", 0, 0,
     "Kafka bootstrap servers (host:port,...); same as kafka.bootstrap.servers"},
    {"group.id", OPT_STR, O(group_id), "shopstream", 0, 0,
     "consumer group; every instance of one deployment uses the same id"},
    {"topics.input", OPT_STR, O(input_topics), "shop.clicks,shop.orders,shop.reviews", 0, 0,
     "input topics, comma-separated; all must have the same partition count"},
    {"topics.deadletter", OPT_STR, O(deadletter_topic), "shop.deadletter", 0, 0,
     "where malformed or invalid events go, with headers naming the reason"},
    {"operators", OPT_STR, O(operators), "dedupe,counts", 0, 0,
     "operators to run, in order (dedupe first drops producer retries)"},
    {"redis.url", OPT_STR, O(redis_url), "redis://127.0.0.1:6379/0", 0, 0,
     "state store: redis://[user:password@]host:port[/db] or unix:///path.sock[?db=N&password=P]"},
    {"redis.timeout_ms", OPT_INT, O(redis_timeout_ms), "2000", 1, 600000,
     "connect and command timeout for Redis"},
    {"redis.cluster", OPT_STR, O(redis_cluster), "", 0, 0,
     "Redis Cluster seed nodes host:port,host:port,... (replaces redis.url when set)"},
    {"redis.user", OPT_STR, O(redis_user), "", 0, 0,
     "Redis ACL user for redis.cluster (and redis.url when its URL names none)"},
    {"redis.password", OPT_STR, O(redis_password), "", 0, 0,
     "Redis password for redis.cluster (and redis.url when its URL has none); never printed"},
    {"redis.wait_replicas", OPT_INT, O(redis_wait_replicas), "0", 0, 64,
     "a commit counts once this many replicas hold it (Redis WAIT); 0 = don't wait"},
    {"batch.max_messages", OPT_INT, O(batch_max_messages), "2000", 1, 1000000,
     "a batch closes after this many messages ..."},
    {"batch.max_ms", OPT_INT, O(batch_max_ms), "100", 1, 600000,
     "... or after this many milliseconds, whichever comes first"},
    {"commit.max_inflight", OPT_INT, O(commit_max_inflight), "16", 1, 32,
     "batches whose Redis commit may be in flight while the next ones are processed "
     "(1: each batch is committed before the next is processed)"},
    {"commit.interval_ms", OPT_INT, O(commit_interval_ms), "0", 0, 600000,
     "state changes of the batches processed within this many milliseconds go to Redis "
     "in one commit (as Kafka Streams' commit.interval.ms): fewer writes when keys repeat; "
     "a crash replays at most this much more. 0 = one commit per batch"},
    {"cache.max_entries", OPT_I64, O(cache_max_entries), "200000", 16, INT64_MAX,
     "state cache bound: clean entries are evicted above it"},
    {"dedupe.window_ms", OPT_I64, O(dedupe_window_ms), "3600000", 0, INT64_MAX,
     "event-time window in which a repeated event_id is dropped"},
    {"dedupe.max_ids", OPT_I64, O(dedupe_max_ids), "100000", 1, INT64_MAX,
     "at most this many recent event_ids remembered per partition"},
    {"run.stop_when_idle_ms", OPT_INT, O(stop_when_idle_ms), "0", 0, INT_MAX,
     "exit once every assigned partition is at its end and idle this long (0 = never)"},
    {"workers", OPT_INT, O(workers), "1", 1, 256,
     "consumer threads in this process, each its own group member (instances x workers <= partitions)"},
    {"log.level", OPT_STR, O(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"instance.id", OPT_STR, O(instance_id), "", 0, 0,
     "name of this instance in logs (default: hostname-pid)"},
    {"topics.kpi", OPT_STR, O(kpi_topic), "shop.kpi", 0, 0,
     "where the kpi operator writes KpiWindow messages"},
    {"kpi.window_ms", OPT_I64, O(kpi_window_ms), "60000", 1000, 86400000,
     "event-time tumbling window of the kpi operator"},
    {"kpi.rollup_ms", OPT_I64, O(kpi_rollup_ms), "3600000", 0, 7 * 86400000LL,
     "rollup window (a multiple of kpi.window_ms; 0 = none)"},
    {"kpi.allowed_lateness_ms", OPT_I64, O(kpi_allowed_lateness_ms), "10000", 0, 86400000,
     "watermark = newest event time of a topic-partition minus this; older events are late"},
    {"kpi.late_policy", OPT_STR, O(kpi_late_policy), "apply", 0, 0,
     "late events: 'apply' (counted, applied, correction emitted) or 'drop' (counted only)"},
    {"kpi.session_gap_ms", OPT_I64, O(kpi_session_gap_ms), "1800000", 1000, 86400000,
     "a session ends after this much idle event time"},
    {"kpi.dimensions", OPT_STR, O(kpi_dimensions), "global,category", 0, 0,
     "KPI window dimensions: 'global,category' or 'global' (per-category windows cost most)"},
    {"http.listen", OPT_STR, O(http_listen), "127.0.0.1:8080", 0, 0,
     "HTTP (/metrics, /healthz, /api, dashboard) address host:port; empty or 0 disables"},
    /* personalization (operators/profile.c, online_mf.c, recommend.c) */
    {"recommend.model", OPT_STR, O(recommend_model), "", 0, 0,
     "model file from `shopstream train` (gru, sasrec or mf); SIGHUP reloads it"},
    {"recommend.k", OPT_INT, O(recommend_k), "10", 1, 100, "items in a recommendation"},
    {"recommend.candidates", OPT_INT, O(recommend_candidates), "256", 0, 100000,
     "items scored per list (the candidate set); 0 = every item"},
    {"recommend.on", OPT_STR, O(recommend_on), "view,click", 0, 0,
     "click kinds that trigger a recommendation"},
    {"recommend.rate_limit_ms", OPT_I64, O(recommend_rate_limit_ms), "1000", 0, INT64_MAX,
     "at most one recommendation per user per this much event time"},
    {"recommend.blend", OPT_STR, O(recommend_blend), "1,0.5,0.2", 0, 0,
     "score weights: sequence model, online MF, popularity prior"},
    {"recommend.ttl_s", OPT_INT, O(recommend_ttl_s), "86400", 1, INT_MAX,
     "TTL of rec:<user_id> in Redis"},
    {"recommend.exclude_viewed", OPT_INT, O(recommend_exclude_viewed), "1", 0, 1,
     "1: the item being viewed is never in its own list"},
    {"topics.recommendations", OPT_STR, O(recommend_topic), "shop.recommendations", 0, 0,
     "where the recommend operator writes Recommendation messages"},
    {"profile.half_life_s", OPT_I64, O(profile_half_life_s), "604800", 1, INT64_MAX,
     "half-life of the profile's category affinity (event time)"},
    {"profile.recent_items", OPT_INT, O(profile_recent_items), "20", 1, 200,
     "length of the profile's ring of recent items"},
    {"profile.top_categories", OPT_INT, O(profile_top_categories), "10", 1, 100,
     "categories kept in the profile's affinity"},
    {"mf.dim", OPT_INT, O(mf_dim), "32", 1, 256,
     "online MF dimension without a model (with one, the model's)"},
    {"mf.lr", OPT_STR, O(mf_lr), "0.05", 0, 0, "online MF step for user vectors"},
    {"mf.item_lr", OPT_STR, O(mf_item_lr), "0.01", 0, 0,
     "online MF step for the shared item factors (0 freezes them)"},
    {"mf.weights", OPT_STR, O(mf_weights),
     "view=1,click=2,add_to_cart=4,remove_from_cart=0,search=0,order=8,review=3", 0, 0,
     "online MF weight of each event kind"},
    {"mf.neg", OPT_INT, O(mf_neg), "2", 1, 64, "online MF sampled negatives per event"},
    {"mf.refresh_ms", OPT_I64, O(mf_refresh_ms), "10000", 0, INT64_MAX,
     "reload the shared item factors from Redis this often (0 = only at start)"},
    {"mf.apply_rows", OPT_INT, O(mf_apply_rows), "128", 1, 4000,
     "item rows per compare-and-set script when a batch's deltas are written (Redis runs "
     "nothing else during a script; Lua's unpack limits it)"},
    /* --- fraud operator, review bursts, KPI anomalies --- */
    {"topics.fraud_alerts", OPT_STR, O(fraud_alerts_topic), "shop.fraud-alerts", 0, 0,
     "where the fraud and reviews operators write FraudAlert messages"},
    {"fraud.threshold", OPT_DBL, O(fraud_threshold), "0.5", 0, 1,
     "alert when an order's combined fraud score is above this (the rule alerts always)"},
    {"fraud.model", OPT_STR, O(fraud_model), "", 0, 0,
     "supervised fraud model (shopstream fraud train); empty: unsupervised score only"},
    {"fraud.rule_small_amount", OPT_DBL, O(fraud_rule_small), "1.00", 0, 1e12,
     "small-then-large rule (Flink walkthrough): an order below this amount ..."},
    {"fraud.rule_large_amount", OPT_DBL, O(fraud_rule_large), "500.00", 0, 1e12,
     "... then one above this amount on the same card ..."},
    {"fraud.rule_window_ms", OPT_I64, O(fraud_rule_window_ms), "60000", 1, 86400000,
     "... within this many milliseconds of event time"},
    {"fraud.log_alerts", OPT_INT, O(fraud_log_alerts), "1", 0, 1,
     "log one line per fraud alert (score and reasons)"},
    {"reviews.burst_window_ms", OPT_I64, O(review_burst_window_ms), "3600000", 1000, 30 * 86400000LL,
     "review bursts: how far back the reviews of one item are counted"},
    {"reviews.young_days", OPT_DBL, O(review_young_days), "7", 0, 3650,
     "review bursts: an account first seen less than this many days ago is young"},
    {"reviews.burst_min_young", OPT_INT, O(review_burst_min_young), "5", 1, 100000,
     "review bursts: alert at this many reviews of one item from young accounts in the window"},
    {"reviews.burst_min_dupes", OPT_INT, O(review_burst_min_dupes), "3", 2, 100000,
     "review bursts: alert at this many near-identical reviews of one item in the window"},
    {"topics.kpi_alerts", OPT_STR, O(kpi_alerts_topic), "shop.kpi-alerts", 0, 0,
     "where KPI anomalies go (orders, GMV, conversion rate per partition window series)"},
    {"kpi.anomaly_threshold", OPT_DBL, O(kpi_anomaly_threshold), "0.8", 0, 1,
     "KPI anomaly score above which an alert is emitted (0.5 = 3 sigma, 0.8 = 6 sigma)"},
    {"kpi.anomaly_min_support", OPT_DBL, O(kpi_anomaly_min_support), "10", 0, 1e9,
     "KPI anomalies: judge orders/GMV only with this many orders (window or forecast), "
     "conversion with this many sessions"},
};
#undef O
#define NOPTS (sizeof opts / sizeof opts[0])

static const struct opt *opt_find(const char *key) {
    for (size_t i = 0; i < NOPTS; i++)
        if (!strcmp(opts[i].key, key)) return &opts[i];
    return NULL;
}

static int set_opt(sp_config *cfg, const struct opt *o, const char *value, char *err,
                   size_t errlen) {
    void *field = (char *)cfg + o->offset;
    if (o->type == OPT_STR) {
        char **s = field;
        free(*s);
        *s = sp_xstrdup(value);
        return SP_OK;
    }
    char *end;
    errno = 0;
    if (o->type == OPT_DBL) {
        double d = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !(d >= (double)o->min && d <= (double)o->max)) {
            snprintf(err, errlen, "key '%s': '%s' is not a number in [%lld, %lld]", o->key, value,
                     (long long)o->min, (long long)o->max);
            return SP_ERR_FATAL;
        }
        *(double *)field = d;
        return SP_OK;
    }
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end != '\0') {
        snprintf(err, errlen, "key '%s': '%s' is not an integer", o->key, value);
        return SP_ERR_FATAL;
    }
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "key '%s': %lld is out of range [%lld, %lld]", o->key, v,
                 (long long)o->min, (long long)o->max);
        return SP_ERR_FATAL;
    }
    if (o->type == OPT_INT)
        *(int *)field = (int)v;
    else
        *(int64_t *)field = v;
    return SP_OK;
}

void sp_config_init(sp_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char err[256];
    for (size_t i = 0; i < NOPTS; i++) set_opt(cfg, &opts[i], opts[i].def, err, sizeof err);
}

void sp_config_release(sp_config *cfg) {
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].type == OPT_STR) free(*(char **)((char *)cfg + opts[i].offset));
    for (size_t i = 0; i < cfg->nkafka; i++) {
        free(cfg->kafka_keys[i]);
        free(cfg->kafka_values[i]);
    }
    free(cfg->kafka_keys);
    free(cfg->kafka_values);
    memset(cfg, 0, sizeof *cfg);
}

int sp_config_is_secret(const char *key) {
    static const char *words[] = {"password", "secret", "token", "key.pem", "ssl.key",
                                  "sasl.jaas", "credential"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasestr(key, words[i])) return 1;
    return 0;
}

int sp_config_set(sp_config *cfg, const char *key, const char *value, char *err,
                  size_t errlen) {
    if (!strncmp(key, "kafka.", 6)) {
        const char *prop = key + 6;
        if (!*prop) {
            snprintf(err, errlen, "key '%s': missing librdkafka property name", key);
            return SP_ERR_FATAL;
        }
        for (size_t i = 0; i < cfg->nkafka; i++)
            if (!strcmp(cfg->kafka_keys[i], prop)) {
                free(cfg->kafka_values[i]);
                cfg->kafka_values[i] = sp_xstrdup(value);
                return SP_OK;
            }
        cfg->kafka_keys = sp_xrealloc(cfg->kafka_keys, (cfg->nkafka + 1) * sizeof(char *));
        cfg->kafka_values = sp_xrealloc(cfg->kafka_values, (cfg->nkafka + 1) * sizeof(char *));
        cfg->kafka_keys[cfg->nkafka] = sp_xstrdup(prop);
        cfg->kafka_values[cfg->nkafka] = sp_xstrdup(value);
        cfg->nkafka++;
        return SP_OK;
    }
    const struct opt *o = opt_find(key);
    if (!o) {
        snprintf(err, errlen, "unknown config key '%s' (see 'shopstream run --help')", key);
        return SP_ERR_FATAL;
    }
    return set_opt(cfg, o, value, err, errlen);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int sp_config_load_file(sp_config *cfg, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "config file '%s': %s", path, strerror(errno));
        return SP_ERR_FATAL;
    }
    char line[4096], sub[512];
    int lineno = 0, rc = SP_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            rc = SP_ERR_FATAL;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (sp_config_set(cfg, key, val, sub, sizeof sub) != SP_OK) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
            rc = SP_ERR_FATAL;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* SHOPSTREAM_REDIS_URL -> redis.url: each known key has exactly one variable
 * name (dots and dashes become underscores, upper case). Variables under
 * SHOPSTREAM_KAFKA_ map to kafka.<prop> with underscores turned into dots,
 * since librdkafka property names contain no underscores. */
static void env_name(const char *key, char *out, size_t outlen) {
    size_t n = (size_t)snprintf(out, outlen, "SHOPSTREAM_");
    for (const char *k = key; *k && n + 1 < outlen; k++)
        out[n++] = (*k == '.' || *k == '-') ? '_' : (char)toupper((unsigned char)*k);
    out[n] = '\0';
}

int sp_config_load_env(sp_config *cfg, char *err, size_t errlen) {
    char name[256], sub[512];
    for (size_t i = 0; i < NOPTS; i++) {
        env_name(opts[i].key, name, sizeof name);
        const char *v = getenv(name);
        if (v && set_opt(cfg, &opts[i], v, sub, sizeof sub) != SP_OK) {
            snprintf(err, errlen, "environment %s: %s", name, sub);
            return SP_ERR_FATAL;
        }
    }
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "SHOPSTREAM_KAFKA_", 17)) continue;
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        char key[256] = "kafka.";
        size_t n = 6;
        for (const char *k = *e + 17; k < eq && n + 1 < sizeof key; k++)
            key[n++] = (*k == '_') ? '.' : (char)tolower((unsigned char)*k);
        key[n] = '\0';
        sp_config_set(cfg, key, eq + 1, sub, sizeof sub);
    }
    return SP_OK;
}

int sp_config_from_args(sp_config *cfg, int argc, char **argv, int *help, char *err,
                        size_t errlen) {
    *help = 0;
    /* The file comes first whatever its position, so flags override it. */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
        if (path && sp_config_load_file(cfg, path, err, errlen) != SP_OK) return SP_ERR_FATAL;
    }
    if (sp_config_load_env(cfg, err, errlen) != SP_OK) return SP_ERR_FATAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char key[256];
        const char *val = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = 1;
            continue;
        }
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9)) continue;
        if (!strcmp(a, "-X")) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "-X needs prop=value");
                return SP_ERR_FATAL;
            }
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq) {
                snprintf(err, errlen, "-X %s: expected prop=value", kv);
                return SP_ERR_FATAL;
            }
            snprintf(key, sizeof key, "kafka.%.*s", (int)(eq - kv), kv);
            val = eq + 1;
        } else if (!strncmp(a, "--", 2)) {
            const char *eq = strchr(a, '=');
            if (eq) {
                snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2), a + 2);
                val = eq + 1;
            } else {
                snprintf(key, sizeof key, "%s", a + 2);
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "option '%s' needs a value", a);
                    return SP_ERR_FATAL;
                }
                val = argv[++i];
            }
        } else {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return SP_ERR_FATAL;
        }
        if (sp_config_set(cfg, key, val, err, errlen) != SP_OK) return SP_ERR_FATAL;
    }
    return SP_OK;
}

void sp_config_print_help(FILE *f) {
    fprintf(f, "config keys (file 'key = value', env SHOPSTREAM_KEY, flag --key=value):\n");
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(f, "  %-22s %s\n  %-22s default: %s\n", opts[i].key, opts[i].help, "",
                *opts[i].def ? opts[i].def : "(empty)");
    fprintf(f, "  %-22s %s\n", "kafka.<prop>",
            "any librdkafka property, e.g. kafka.security.protocol=SASL_SSL,");
    fprintf(f, "  %-22s %s\n", "", "kafka.sasl.username, kafka.sasl.password (or -X prop=value)");
    fprintf(f, "  %-22s %s\n", "", "consumer defaults: queued.min.messages=1000000,");
    fprintf(f, "  %-22s %s\n", "", "queued.max.messages.kbytes=131072 (more than a second of work)");
}

void sp_config_print(const sp_config *cfg, FILE *f) {
    for (size_t i = 0; i < NOPTS; i++) {
        const void *field = (const char *)cfg + opts[i].offset;
        if (opts[i].type == OPT_STR) {
            const char *v = *(char *const *)field;
            const char *pw = strstr(v, "password=");
            if (!strcmp(opts[i].key, "redis.url") && strchr(v, '@'))
                fprintf(f, "%s = redis://***@%s\n", opts[i].key, strrchr(v, '@') + 1);
            else if (!strcmp(opts[i].key, "redis.url") && pw)
                fprintf(f, "%s = %.*spassword=***\n", opts[i].key, (int)(pw - v), v);
            else if (sp_config_is_secret(opts[i].key) && *v)
                fprintf(f, "%s = ***\n", opts[i].key);
            else
                fprintf(f, "%s = %s\n", opts[i].key, v);
        } else if (opts[i].type == OPT_INT)
            fprintf(f, "%s = %d\n", opts[i].key, *(const int *)field);
        else
            fprintf(f, "%s = %lld\n", opts[i].key, (long long)*(const int64_t *)field);
    }
    for (size_t i = 0; i < cfg->nkafka; i++)
        fprintf(f, "kafka.%s = %s\n", cfg->kafka_keys[i],
                sp_config_is_secret(cfg->kafka_keys[i]) ? "***" : cfg->kafka_values[i]);
}
