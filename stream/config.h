#ifndef STREAM_CONFIG_H
#define STREAM_CONFIG_H

/* Processor configuration. Sources, later ones overriding earlier ones:
 * built-in defaults, a `key = value` file (--config FILE), SHOPSTREAM_*
 * environment variables (SHOPSTREAM_REDIS_URL for redis.url, and
 * SHOPSTREAM_KAFKA_SASL_PASSWORD for kafka.sasl.password), then command-line
 * flags (--key=value, --key value, or -X kafka-prop=value). An unknown key or
 * a bad value is a startup error that names the key. Every kafka.<prop> key is
 * handed to librdkafka as <prop> (consumer and producer alike). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sp_config {
    char *brokers;             /* bootstrap servers */
    char *group_id;
    char *input_topics;        /* comma-separated, co-partitioned */
    char *deadletter_topic;
    char *operators;           /* comma-separated operator names, in order */
    char *redis_url;
    int redis_timeout_ms;
    char *redis_cluster;       /* seed nodes; "" = single node at redis_url */
    char *redis_user;
    char *redis_password;      /* secret */
    int redis_wait_replicas;
    int batch_max_messages;
    int batch_max_ms;
    int commit_max_inflight;
    int commit_interval_ms;
    int64_t cache_max_entries;
    int64_t dedupe_window_ms;
    int64_t dedupe_max_ids;
    int stop_when_idle_ms;     /* 0: run until signalled */
    int workers;               /* consumer threads, each a group member */
    char *log_level;
    char *instance_id;
    /* kpi operator and HTTP (operators/kpi.c, stream/http.c) */
    char *kpi_topic;
    int64_t kpi_window_ms;
    int64_t kpi_rollup_ms;         /* 0: no rollup windows */
    int64_t kpi_allowed_lateness_ms;
    char *kpi_late_policy;         /* "apply" or "drop" */
    int64_t kpi_session_gap_ms;
    char *kpi_dimensions;          /* "global,category" or "global" */
    char *http_listen;             /* host:port; "" or "0" disables */
    /* personalization operators (operators/profile.c, online_mf.c, recommend.c) */
    char *recommend_model;         /* model file; "" = no sequence model */
    int recommend_k;
    int recommend_candidates;
    char *recommend_on;            /* click kinds that trigger a recommendation */
    int64_t recommend_rate_limit_ms; /* event time between two lists for one user */
    char *recommend_blend;         /* "sequence,mf,popularity" weights */
    int recommend_ttl_s;           /* TTL of rec:<user_id> */
    int recommend_exclude_viewed;  /* 1: never recommend the item in view */
    char *recommend_topic;
    int64_t profile_half_life_s;   /* category affinity decay */
    int profile_recent_items;
    int profile_top_categories;
    int mf_dim;                    /* MF dimension when no model is loaded */
    char *mf_lr;                   /* user-vector SGD step (a float, as text) */
    char *mf_item_lr;              /* item-factor SGD step; 0 freezes the shared table */
    char *mf_weights;              /* kind=weight,... */
    int mf_neg;                    /* sampled negatives per event */
    int64_t mf_refresh_ms;         /* reload of the shared item table */
    int mf_apply_rows;             /* item rows per compare-and-set script */
    /* fraud operator, review bursts, KPI anomalies (operators/fraud.c,
     * operators/reviews.c, operators/kpi_anomaly.c) */
    char *fraud_alerts_topic;
    char *fraud_model;             /* logistic model file; "" = unsupervised only */
    double fraud_threshold;
    double fraud_rule_small;
    double fraud_rule_large;
    int64_t fraud_rule_window_ms;
    int fraud_log_alerts;          /* 1: one log line per alert */
    int64_t review_burst_window_ms;
    double review_young_days;
    int review_burst_min_young;
    int review_burst_min_dupes;
    char *kpi_alerts_topic;
    double kpi_anomaly_threshold;
    double kpi_anomaly_min_support;
    /* kafka.<prop> pairs, in the order given; the last value of a key wins. */
    size_t nkafka;
    char **kafka_keys;
    char **kafka_values;
} sp_config;

/* Fills cfg with defaults. */
void sp_config_init(sp_config *cfg);
void sp_config_release(sp_config *cfg);

/* Sets one key. Returns 0, or SP_ERR_FATAL with "key 'x': reason" in err. */
int sp_config_set(sp_config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Reads a `key = value` file; '#' starts a comment. The error names the file,
 * line and key. */
int sp_config_load_file(sp_config *cfg, const char *path, char *err, size_t errlen);

/* Applies SHOPSTREAM_* variables from environ. */
int sp_config_load_env(sp_config *cfg, char *err, size_t errlen);

/* Parses argv (after the subcommand): --config FILE first, then env, then
 * the remaining flags. Sets *help when --help was given. */
int sp_config_from_args(sp_config *cfg, int argc, char **argv, int *help, char *err,
                        size_t errlen);

/* Prints the reference of every key: name, default, help. */
void sp_config_print_help(FILE *f);

/* Prints the effective config; secrets (passwords, tokens, keys) masked. */
void sp_config_print(const sp_config *cfg, FILE *f);

/* True for keys whose values must never be logged. */
int sp_config_is_secret(const char *key);

#endif
