/* Topic administration over librdkafka's admin API, and the `shopstream
 * topics` subcommand built on it. See stream/admin.h for the contract. */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream/admin.h"
#include "stream/cli.h"
#include "stream/error.h"
#include "stream/log.h"

struct sp_admin {
    rd_kafka_t *rk;
    int timeout_ms;       /* bound on each public call */
    int auth_failed;      /* set by error_cb: the login was refused */
    char last_err[512];   /* last error librdkafka reported through error_cb */
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Remembers librdkafka's asynchronous errors so a failed connection can say
 * why (refused login, connection refused) instead of only "timed out". The
 * texts are librdkafka's and name brokers and mechanisms, never credentials. */
static void admin_error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque) {
    struct sp_admin *a = opaque;
    (void)rk;
    if (code == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
        code == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED)
        a->auth_failed = 1;
    if (a->auth_failed && code != RD_KAFKA_RESP_ERR__AUTHENTICATION &&
        code != RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED)
        return; /* keep the authentication error, it is the one that matters */
    snprintf(a->last_err, sizeof a->last_err, "%s", reason);
}

/* librdkafka's own log lines repeat what error_cb reports; keep them for
 * --log-level debug rather than printing each retry. */
static void admin_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    (void)level;
    sp_debug("rdkafka %s: %s", fac, buf);
}

/* A property whose value must never be echoed, even in an error message. */
static int prop_is_secret(const char *key) {
    static const char *const words[] = {"password", "secret", "jaas", "token", "key"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(key, words[i])) return 1;
    return 0;
}

/* Applies one "key=value" property to conf. Errors name the key and, for
 * keys that are not secret, librdkafka's reason (which may quote the value). */
static int admin_conf_set(rd_kafka_conf_t *conf, const char *prop, char *err, size_t errlen) {
    const char *eq = strchr(prop, '=');
    char rkerr[256];
    if (!eq || eq == prop) {
        snprintf(err, errlen, "Kafka property must be key=value (got a key-only or empty entry)");
        return SP_ERR_FATAL;
    }
    char *key = sp_xstrndup(prop, (size_t)(eq - prop));
    const char *k = strncmp(key, "kafka.", 6) ? key : key + 6;
    int rc = SP_OK;
    if (rd_kafka_conf_set(conf, k, eq + 1, rkerr, sizeof rkerr) != RD_KAFKA_CONF_OK) {
        if (prop_is_secret(k))
            snprintf(err, errlen, "invalid Kafka property '%s'", k);
        else
            snprintf(err, errlen, "invalid Kafka property '%s': %s", k, rkerr);
        rc = SP_ERR_FATAL;
    }
    free(key);
    return rc;
}

/* Fetches metadata (all topics when all_topics, else brokers only) in short
 * slices until the deadline, serving error_cb between slices: a refused
 * login ends the wait at once instead of at the timeout. */
static int admin_metadata(struct sp_admin *a, int all_topics, const rd_kafka_metadata_t **md,
                          char *err, size_t errlen) {
    long long deadline = now_ms() + a->timeout_ms;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) break;
        e = rd_kafka_metadata(a->rk, all_topics, NULL, md, left < 500 ? (int)left : 500);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return SP_OK;
        rd_kafka_poll(a->rk, 0);
        if (a->auth_failed) {
            snprintf(err, errlen, "Kafka authentication failed: %s", a->last_err);
            return SP_ERR_FATAL;
        }
    }
    snprintf(err, errlen, "no Kafka broker answered within %d ms (%s)", a->timeout_ms,
             a->last_err[0] ? a->last_err : rd_kafka_err2str(e));
    return SP_ERR_RETRY;
}

sp_admin *sp_admin_new(const char *brokers, const char *const *props, size_t nprops,
                       int timeout_ms, char *err, size_t errlen) {
    struct sp_admin *a = sp_xcalloc(1, sizeof *a);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const rd_kafka_metadata_t *md = NULL;
    char rkerr[256];

    a->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    if (!brokers || !*brokers) {
        snprintf(err, errlen, "no Kafka bootstrap servers given");
        goto fail;
    }
    /* Describing a topic must never create it on a cluster that allows
     * auto-creation. */
    if (rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", rkerr, sizeof rkerr) ||
        rd_kafka_conf_set(conf, "bootstrap.servers", brokers, rkerr, sizeof rkerr)) {
        snprintf(err, errlen, "Kafka configuration: %s", rkerr);
        goto fail;
    }
    for (size_t i = 0; i < nprops; i++)
        if (admin_conf_set(conf, props[i], err, errlen)) goto fail;
    rd_kafka_conf_set_opaque(conf, a);
    rd_kafka_conf_set_error_cb(conf, admin_error_cb);
    rd_kafka_conf_set_log_cb(conf, admin_log_cb);

    a->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof rkerr);
    if (!a->rk) {
        snprintf(err, errlen, "cannot create Kafka client: %s", rkerr);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    if (admin_metadata(a, 0, &md, err, errlen)) goto fail;
    rd_kafka_metadata_destroy(md);
    return a;

fail:
    if (conf) rd_kafka_conf_destroy(conf);
    sp_admin_destroy(a);
    return NULL;
}

void sp_admin_destroy(sp_admin *a) {
    if (!a) return;
    if (a->rk) rd_kafka_destroy(a->rk);
    free(a);
}

static const rd_kafka_metadata_topic_t *md_find(const rd_kafka_metadata_t *md, const char *name) {
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, name)) return &md->topics[i];
    return NULL;
}

int sp_admin_partition_count(sp_admin *a, const char *topic, int *partitions, char *err,
                             size_t errlen) {
    const rd_kafka_metadata_t *md = NULL;
    int rc = admin_metadata(a, 1, &md, err, errlen);
    if (rc) return rc;
    const rd_kafka_metadata_topic_t *t = md_find(md, topic);
    if (!t || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        snprintf(err, errlen, "no topic '%s'", topic);
        rc = SP_ERR_NOTFOUND;
    } else if (t->err) {
        snprintf(err, errlen, "topic '%s': %s", topic, rd_kafka_err2str(t->err));
        rc = SP_ERR_RETRY;
    } else {
        *partitions = t->partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Runs one admin request and waits for its result event. The request and
 * operation timeouts are the handle's, and the wait a little longer, so the
 * broker's own timeout answer arrives before we give up. */
static rd_kafka_event_t *admin_wait(struct sp_admin *a, rd_kafka_queue_t *q, char *err,
                                    size_t errlen) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, a->timeout_ms + 2000);
    if (!ev) {
        snprintf(err, errlen, "Kafka admin request got no answer within %d ms", a->timeout_ms);
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "Kafka admin request failed: %s", rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

static rd_kafka_AdminOptions_t *admin_options(struct sp_admin *a, rd_kafka_admin_op_t op) {
    char rkerr[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(a->rk, op);
    rd_kafka_AdminOptions_set_request_timeout(o, a->timeout_ms, rkerr, sizeof rkerr);
    rd_kafka_AdminOptions_set_operation_timeout(o, a->timeout_ms, rkerr, sizeof rkerr);
    return o;
}

/* Polls metadata until every topic in names has `partitions` partitions each
 * with a leader (want_present) or none of them is listed any more. KRaft
 * brokers learn of a new topic shortly after the controller commits it, so
 * "created" and "usable" are not the same instant. */
static int admin_wait_topics(struct sp_admin *a, const char *const *names, size_t n,
                             int partitions, int want_present, char *err, size_t errlen) {
    long long deadline = now_ms() + a->timeout_ms;
    for (;;) {
        const rd_kafka_metadata_t *md = NULL;
        int rc = admin_metadata(a, 1, &md, err, errlen);
        if (rc) return rc;
        size_t ok = 0;
        const char *pending = NULL;
        for (size_t i = 0; i < n; i++) {
            const rd_kafka_metadata_topic_t *t = md_find(md, names[i]);
            int present = t && !t->err && t->partition_cnt > 0;
            int ready = present;
            if (present && want_present && partitions > 0 && t->partition_cnt != partitions) {
                snprintf(err, errlen, "topic '%s' exists with %d partitions, not %d", names[i],
                         t->partition_cnt, partitions);
                rd_kafka_metadata_destroy(md);
                return SP_ERR_FATAL;
            }
            for (int p = 0; present && p < t->partition_cnt; p++)
                if (t->partitions[p].err || t->partitions[p].leader < 0) ready = 0;
            if (want_present ? ready : !t) ok++;
            else if (!pending) pending = names[i];
        }
        rd_kafka_metadata_destroy(md);
        if (ok == n) return SP_OK;
        if (now_ms() >= deadline) {
            snprintf(err, errlen, "topic '%s' is still %s after %d ms", pending,
                     want_present ? "not ready" : "listed", a->timeout_ms);
            return SP_ERR_RETRY;
        }
        struct timespec nap = {0, 100 * 1000000};
        nanosleep(&nap, NULL);
    }
}

int sp_admin_create_topics(sp_admin *a, const char *const *names, size_t n, int partitions,
                           int replication, char *err, size_t errlen) {
    if (n == 0) return SP_OK;
    rd_kafka_NewTopic_t **nt = sp_xcalloc(n, sizeof *nt);
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = admin_options(a, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_event_t *ev = NULL;
    char rkerr[256];
    int rc = SP_ERR_FATAL;

    for (size_t i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(names[i], partitions, replication, rkerr, sizeof rkerr);
        if (!nt[i]) {
            snprintf(err, errlen, "topic '%s': %s", names[i], rkerr);
            goto fail;
        }
    }
    rd_kafka_CreateTopics(a->rk, nt, n, o, q);
    if (!(ev = admin_wait(a, q, err, errlen))) {
        rc = SP_ERR_RETRY;
        goto fail;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            continue; /* an existing topic's count is checked below */
        const char *why = rd_kafka_topic_result_error_string(res[i]);
        snprintf(err, errlen, "cannot create topic '%s': %s", rd_kafka_topic_result_name(res[i]),
                 why ? why : rd_kafka_err2str(e));
        goto fail;
    }
    rc = admin_wait_topics(a, names, n, partitions, 1, err, errlen);

fail:
    if (ev) rd_kafka_event_destroy(ev);
    for (size_t i = 0; i < n; i++)
        if (nt[i]) rd_kafka_NewTopic_destroy(nt[i]);
    free(nt);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return rc;
}

int sp_admin_delete_topics(sp_admin *a, const char *const *names, size_t n, char *err,
                           size_t errlen) {
    if (n == 0) return SP_OK;
    rd_kafka_DeleteTopic_t **dt = sp_xcalloc(n, sizeof *dt);
    rd_kafka_queue_t *q = rd_kafka_queue_new(a->rk);
    rd_kafka_AdminOptions_t *o = admin_options(a, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_event_t *ev = NULL;
    int rc = SP_ERR_FATAL;

    for (size_t i = 0; i < n; i++) dt[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_DeleteTopics(a->rk, dt, n, o, q);
    if (!(ev = admin_wait(a, q, err, errlen))) {
        rc = SP_ERR_RETRY;
        goto fail;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            continue;
        const char *why = rd_kafka_topic_result_error_string(res[i]);
        snprintf(err, errlen, "cannot delete topic '%s': %s", rd_kafka_topic_result_name(res[i]),
                 why ? why : rd_kafka_err2str(e));
        goto fail;
    }
    rc = admin_wait_topics(a, names, n, 0, 0, err, errlen);

fail:
    if (ev) rd_kafka_event_destroy(ev);
    for (size_t i = 0; i < n; i++) rd_kafka_DeleteTopic_destroy(dt[i]);
    free(dt);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
    return rc;
}

static int cmp_topic(const void *x, const void *y) {
    const rd_kafka_metadata_topic_t *const *a = x, *const *b = y;
    return strcmp((*a)->topic, (*b)->topic);
}

/* `topics list`: one line per topic, "NAME<TAB>PARTITIONS<TAB>REPLICAS",
 * sorted, internal (double-underscore) topics only with --all. */
static int topics_list(struct sp_admin *a, int all, char *err, size_t errlen) {
    const rd_kafka_metadata_t *md = NULL;
    int rc = admin_metadata(a, 1, &md, err, errlen);
    if (rc) return rc;
    const rd_kafka_metadata_topic_t **ts = sp_xcalloc((size_t)md->topic_cnt, sizeof *ts);
    size_t n = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!md->topics[i].err && (all || strncmp(md->topics[i].topic, "__", 2)))
            ts[n++] = &md->topics[i];
    qsort(ts, n, sizeof *ts, cmp_topic);
    for (size_t i = 0; i < n; i++)
        printf("%s\t%d\t%d\n", ts[i]->topic, ts[i]->partition_cnt,
               ts[i]->partition_cnt ? ts[i]->partitions[0].replica_cnt : 0);
    free(ts);
    rd_kafka_metadata_destroy(md);
    return SP_OK;
}

static void topics_usage(FILE *f) {
    fprintf(f,
            "usage: shopstream topics create|delete|list --brokers HOST:PORT[,...]\n"
            "                         [-X prop=value ...] [--partitions N] [--replication R]\n"
            "                         [--timeout-ms MS] [--all] [TOPIC ...]\n"
            "\n"
            "  create       create TOPICs with N partitions (required) and R replicas\n"
            "               (default -1: the broker's default); an existing topic with\n"
            "               N partitions is fine, one with another count is an error\n"
            "  delete       delete TOPICs; a missing topic is fine\n"
            "  list         print NAME, PARTITIONS, REPLICAS per topic (--all: internal too)\n"
            "  -X prop=val  any librdkafka property, e.g. for SASL:\n"
            "               -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=PLAIN\n"
            "               -X sasl.username=U -X sasl.password=P\n"
            "  --timeout-ms bound on reaching the cluster and on each request (default 10000)\n"
            "\n"
            "exit status: 0 done, 1 cluster unreachable or request failed, 2 usage error\n");
}

/* `shopstream topics create|delete|list`: a thin command line over the
 * functions above, for scripts and humans. Usage errors are exit 2 before
 * any connection is tried; anything the cluster refuses or does not answer
 * in time is exit 1 with one line on stderr. -X values are handed to
 * librdkafka and never printed. */
int sp_cmd_topics(int argc, char **argv) {
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"partitions", required_argument, NULL, 'p'},
        {"replication", required_argument, NULL, 'r'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL;
    const char **props = sp_xcalloc((size_t)argc + 1, sizeof *props);
    size_t nprops = 0;
    int partitions = -1, replication = -1, timeout_ms = 10000, all = 0, c, status = 2;
    char err[1024];
    struct sp_admin *a = NULL;

    optind = 0; /* full reset, so the command can run more than once in a process */
    while ((c = getopt_long(argc, argv, "b:X:p:r:t:ah", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': brokers = optarg; break;
        case 'X': props[nprops++] = optarg; break;
        case 'p': partitions = atoi(optarg); break;
        case 'r': replication = atoi(optarg); break;
        case 't': timeout_ms = atoi(optarg); break;
        case 'a': all = 1; break;
        case 'h': topics_usage(stdout); status = 0; goto done;
        default: topics_usage(stderr); goto done;
        }
    }
    if (optind >= argc) {
        topics_usage(stderr);
        goto done;
    }
    const char *action = argv[optind++];
    const char *const *names = (const char *const *)argv + optind;
    size_t n = (size_t)(argc - optind);
    int is_create = !strcmp(action, "create"), is_delete = !strcmp(action, "delete");
    if (!is_create && !is_delete && strcmp(action, "list")) {
        fprintf(stderr, "shopstream topics: unknown action '%s'\n", action);
        topics_usage(stderr);
        goto done;
    }
    if (!brokers) {
        fprintf(stderr, "shopstream topics: --brokers is required\n");
        goto done;
    }
    if ((is_create || is_delete) && n == 0) {
        fprintf(stderr, "shopstream topics %s: name at least one topic\n", action);
        goto done;
    }
    if (is_create && partitions < 1) {
        fprintf(stderr, "shopstream topics create: --partitions N (N >= 1) is required\n");
        goto done;
    }
    if (timeout_ms < 1) {
        fprintf(stderr, "shopstream topics: --timeout-ms must be positive\n");
        goto done;
    }

    status = 1;
    if (!(a = sp_admin_new(brokers, props, nprops, timeout_ms, err, sizeof err))) {
        sp_error("topics: %s", err);
        goto done;
    }
    int rc;
    if (is_create)
        rc = sp_admin_create_topics(a, names, n, partitions, replication, err, sizeof err);
    else if (is_delete)
        rc = sp_admin_delete_topics(a, names, n, err, sizeof err);
    else
        rc = topics_list(a, all, err, sizeof err);
    if (rc) {
        sp_error("topics %s: %s", action, err);
        goto done;
    }
    if (is_create)
        sp_info("topics: %zu topic(s) ready with %d partitions", n, partitions);
    else if (is_delete)
        sp_info("topics: %zu topic(s) deleted", n);
    status = 0;

done:
    sp_admin_destroy(a);
    free(props);
    return status;
}
