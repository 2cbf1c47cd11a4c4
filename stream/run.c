/* `shopstream run`: the consumer loop.
 *
 * One batch: poll up to batch.max_messages or batch.max_ms; decode and
 * validate every message (bad ones go to the dead-letter topic); let every
 * operator declare the keys it will touch and load the misses in one Redis
 * round trip; run the events through the operators in partition order;
 * then take the batch's changes -- per partition the dirty state and the next
 * input offsets, one fenced Redis script each -- into a transaction
 * (sp_store_prepare). The transaction is sent once every output and dead
 * letter of its batch is delivered (outputs are durable before the state
 * that produced them is), by the store's committer thread, while this loop
 * already processes the next batches: up to commit.max_inflight batches are
 * in flight, committed strictly in order. Kafka's own committed offsets are
 * written once a transaction is applied, asynchronously, for lag monitoring
 * only: on assignment the next offset comes from Redis.
 *
 * A rebalance is served inside rd_kafka_consumer_poll(): on revocation the
 * batch in hand is processed and committed before the partitions are handed
 * over; on assignment each partition's epoch is bumped (fencing the previous
 * owner) and consumption starts at the offsets stored with the state. */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "models/model.h"
#include "operators/operator.h"
#include "state/store.h"
#include "stream/arena.h"
#include "stream/cli.h"
#include "stream/config.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/http.h"
#include "stream/kafka.h"
#include "stream/log.h"
#include "stream/metrics.h"

#define MAX_TOPICS 8

struct rpart {
    int owned;
    int touched;                  /* has messages in the current batch */
    int uncommitted;              /* has messages since the last prepared commit */
    int64_t next[MAX_TOPICS];     /* next offset to commit, -1 = none yet */
    int dirty_off[MAX_TOPICS];    /* next[] changed since the last prepared commit */
    int eof[MAX_TOPICS];
};

struct runner {
    sp_config cfg;
    sp_metrics metrics;
    rd_kafka_t *rk;
    sp_sink *sink;
    sp_store *store;
    sp_pipeline *pl;
    sp_http *http;                /* NULL when http.listen is off */
    char *topics[MAX_TOPICS];
    int ntopics;
    rd_kafka_message_t **msgs;
    double *arrival_us;           /* when each message of the batch was polled */
    sp_event **evs;               /* decoded into arena, released per batch */
    sp_arena *arena;
    size_t nmsgs, capmsgs;
    struct rpart *parts;
    size_t nparts;
    int assigned;                 /* number of partitions owned */
    int failed;                   /* a fatal error: stop and exit 1 */
    int64_t last_msg_ms;
    double first_msg_us;          /* rate: first message to last commit */
    double last_commit_us;
    struct inflight *infl;        /* prepared commits, oldest first */
    size_t ninfl;
    int uncommitted;              /* a partition has messages not yet in a commit */
    int64_t last_prepare_ms;      /* when the last commit was prepared */
};

/* A batch's commit on its way: waiting for the batch's outputs (gen), then
 * sent (submitted), then applied (reaped). */
struct inflight {
    sp_txn *txn;
    uint64_t gen;
    int submitted;
    rd_kafka_topic_partition_list_t *offsets; /* for Kafka's committed offsets */
};

/* The first SIGINT/SIGTERM asks for a clean stop: finish the batch in hand,
 * wait for its outputs and commits, leave the group. It also sets
 * abort_flag, which ends the store's retries while Redis is unreachable (no
 * commit can land then); the clean stop clears it before its last commit. A
 * second signal (stop_signals == 2) gives up waiting for Kafka too. */
static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t stop_signals;
static volatile int abort_flag;
static volatile sig_atomic_t usr1_flag;
static volatile sig_atomic_t hup_flag; /* SIGHUP: operators reload their files */

static void on_stop(int sig) {
    (void)sig;
    stop_flag = 1;
    abort_flag = 1;
    if (stop_signals < 2) stop_signals++;
}

static void on_usr1(int sig) {
    (void)sig;
    usr1_flag = 1;
}

static void on_hup(int sig) {
    (void)sig;
    hup_flag = 1;
}

static int64_t now_ms(void) { return (int64_t)(sp_now_us() / 1000); }

static double now_us(void) { return sp_now_us(); }

static int topic_index(const struct runner *r, const char *topic) {
    for (int i = 0; i < r->ntopics; i++)
        if (!strcmp(r->topics[i], topic)) return i;
    return -1;
}

static struct rpart *rpart_get(struct runner *r, int32_t p) {
    if ((size_t)p >= r->nparts) {
        size_t n = r->nparts ? r->nparts : 16;
        while (n <= (size_t)p) n *= 2;
        r->parts = sp_xrealloc(r->parts, n * sizeof *r->parts);
        memset(r->parts + r->nparts, 0, (n - r->nparts) * sizeof *r->parts);
        r->nparts = n;
    }
    return &r->parts[p];
}

/* Sends a message that failed decoding or validation to the dead-letter
 * topic: original key and bytes, the reason and where it came from. */
static int dead_letter(struct runner *r, const rd_kafka_message_t *m, const char *reason) {
    char part[16], off[24];
    snprintf(part, sizeof part, "%d", (int)m->partition);
    snprintf(off, sizeof off, "%lld", (long long)m->offset);
    const char *topic = rd_kafka_topic_name(m->rkt);
    sp_header h[] = {
        {"error", reason, strlen(reason)},
        {"source.topic", topic, strlen(topic)},
        {"source.partition", part, strlen(part)},
        {"source.offset", off, strlen(off)},
    };
    r->metrics.deadletter++;
    sp_debug("dead letter %s/%d@%lld: %s", topic, (int)m->partition, (long long)m->offset,
             reason);
    return sp_sink_produce(r->sink, r->cfg.deadletter_topic, m->key, m->key_len, m->payload,
                           m->len, h, 4);
}

/* The content-type header of message `msg`, for sp_event_read_arena, which
 * asks only when the leading byte's choice of format fails: librdkafka
 * parses all of a message's headers (and allocates) on first access. */
static const char *content_type(void *msg, char *buf, size_t len) {
    const rd_kafka_message_t *m = msg;
    rd_kafka_headers_t *hdrs;
    const void *val;
    size_t size;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (rd_kafka_header_get_last(hdrs, "content-type", &val, &size) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (size >= len) size = len - 1;
    memcpy(buf, val, size);
    buf[size] = '\0';
    return buf;
}

static void free_batch(struct runner *r) {
    for (size_t i = 0; i < r->nmsgs; i++) {
        r->evs[i] = NULL;
        rd_kafka_message_destroy(r->msgs[i]);
    }
    r->nmsgs = 0;
    if (r->arena) sp_arena_reset(r->arena);
}

/* Takes the changes of every partition the batch touched (operators flushed
 * before) into one transaction, sent by pump() once the batch's outputs
 * (generation gen) are delivered. */
static void prepare_commit(struct runner *r, uint64_t gen) {
    size_t n = 0, np = r->nparts ? r->nparts : 1;
    sp_commit *cs = sp_xmalloc(np * sizeof *cs);
    const char *(*topics)[MAX_TOPICS] = sp_xmalloc(np * sizeof *topics);
    int64_t (*offs)[MAX_TOPICS] = sp_xmalloc(np * sizeof *offs);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t p = 0; p < r->nparts; p++) {
        struct rpart *rp = &r->parts[p];
        if (!rp->uncommitted || !rp->owned) continue;
        int k = 0;
        for (int t = 0; t < r->ntopics; t++) {
            if (rp->dirty_off[t]) {
                topics[n][k] = r->topics[t];
                offs[n][k++] = rp->next[t];
            }
            if (rp->next[t] >= 0)
                rd_kafka_topic_partition_list_add(l, r->topics[t], (int32_t)p)->offset =
                    rp->next[t];
            rp->dirty_off[t] = 0;
        }
        rp->uncommitted = 0;
        cs[n] = (sp_commit){(int32_t)p, topics[n], offs[n], k, SP_OK};
        n++;
    }
    struct inflight *f = &r->infl[r->ninfl++];
    *f = (struct inflight){sp_store_prepare(r->store, cs, n), gen, 0, l};
    free(cs);
    free(topics);
    free(offs);
}

/* A transaction came back: count it, give up the partitions that were
 * fenced, and record the offsets with Kafka too (asynchronously), so that
 * standard lag tools see the group's progress. */
static int finish_commit(struct runner *r, struct inflight *f) {
    sp_txn *t = f->txn;
    int rc = t->rc;
    sp_hist_add(&r->metrics.commit_latency, t->latency_us);
    for (size_t i = 0; i < t->n && rc == SP_OK; i++) {
        int32_t p = t->commits[i].part;
        struct rpart *rp = rpart_get(r, p);
        if (t->commits[i].result == SP_OK) {
            r->metrics.commits++;
            continue;
        }
        if (t->commits[i].result != SP_ERR_FENCED) {
            rc = SP_ERR_FATAL;
            break;
        }
        r->metrics.fenced++;
        if (rp->owned && !sp_store_owns(r->store, p)) { /* not if assigned again since */
            sp_pipeline_revoke(r->pl, p);
            rp->owned = 0;
            r->assigned--;
        }
        for (int k = 0; k < r->ntopics; k++) rd_kafka_topic_partition_list_del(f->offsets, r->topics[k], p);
    }
    if (rc == SP_OK) {
        r->last_commit_us = now_us();
        if (f->offsets->cnt) rd_kafka_commit(r->rk, f->offsets, 1);
    }
    rd_kafka_topic_partition_list_destroy(f->offsets);
    sp_txn_free(t);
    r->ninfl--;
    memmove(r->infl, r->infl + 1, r->ninfl * sizeof *r->infl);
    return rc;
}

/* Moves the commits in flight along: serves delivery reports, sends (in
 * order) each one whose batch's outputs are all delivered, and takes in the
 * applied ones. With wait_ms > 0 it waits that long for progress when
 * nothing could move at once. Returns SP_OK or the error that stops the
 * loop (SP_ERR_RETRY: aborted while Redis was unreachable). */
static int pump(struct runner *r, int wait_ms) {
    int rc = SP_OK;
    for (int round = 0; round < 2 && rc == SP_OK; round++) {
        size_t before = r->ninfl, sent = 0;
        sp_sink_poll(r->sink, round ? wait_ms : 0);
        for (size_t i = 0; i < r->ninfl; i++) {
            struct inflight *f = &r->infl[i];
            if (f->submitted) continue;
            if (sp_sink_outstanding(r->sink, f->gen) > 0) break;
            sp_store_submit(r->store, f->txn);
            f->submitted = 1;
            sent++;
        }
        int w = round ? wait_ms : 0;
        while (rc == SP_OK && r->ninfl && r->infl[0].submitted) {
            if (!sp_store_reap(r->store, w)) break;
            w = 0;
            rc = finish_commit(r, &r->infl[0]);
        }
        /* The reaped transaction is the head: sp_store_reap returns them in
         * submit order, which is this queue's order. */
        if (!wait_ms || sent || r->ninfl < before || !r->ninfl) break;
        if (r->infl[0].submitted) {
            sp_sink_poll(r->sink, 0);
            break; /* waited for Redis above */
        }
    }
    if (rc != SP_OK)
        sp_error(rc == SP_ERR_RETRY ? "commit aborted while Redis was unreachable"
                                    : "commit failed (%d)", rc);
    return rc;
}

/* Waits until every prepared commit is applied. While Kafka holds a batch's
 * outputs back, its commit waits (until the sink gives them up: librdkafka's
 * delivery.timeout.ms, then SP_SINK_MAX_RETRIES more tries); a second
 * stop signal gives up, and the uncommitted batches are consumed again on
 * restart. */
static int drain(struct runner *r) {
    int rc = SP_OK, warned = 0;
    double t0 = now_us();
    while (r->ninfl && rc == SP_OK) {
        rc = pump(r, 10);
        if (r->ninfl && !r->infl[0].submitted) {
            if (stop_signals > 1) return SP_ERR_RETRY;
            if (!warned && now_us() - t0 > 1e6) {
                sp_warn("sink: outputs still in flight; waiting before commit "
                        "(a second SIGTERM stops without committing)");
                warned = 1;
            }
        }
    }
    return rc;
}

/* Prepares the commit of everything processed since the last one and lets
 * commits in flight move on; waits while commit.max_inflight are. A stop
 * request ends that wait with commit.max_inflight in flight (never more:
 * r->infl has room for one more) and leaves them to drain(). */
static int commit_now(struct runner *r) {
    r->last_prepare_ms = now_ms();
    if (!r->uncommitted) return pump(r, 0);
    r->uncommitted = 0;
    int rc = sp_pipeline_before_commit(r->pl);
    if (rc != SP_OK) return rc;
    prepare_commit(r, sp_sink_next_gen(r->sink));
    rc = pump(r, 0);
    size_t max = (size_t)r->cfg.commit_max_inflight;
    double t0 = 0, warn_at = 5e6;
    while (rc == SP_OK && (r->ninfl > max || (r->ninfl == max && !stop_flag))) {
        rc = pump(r, 5);
        /* A commit waits for its batch's outputs; a Kafka that does not
         * acknowledge them holds the stream up, and says so. */
        double now = now_us();
        if (!t0) t0 = now;
        if (now - t0 > warn_at && r->ninfl && !r->infl[0].submitted) {
            sp_warn("sink: the oldest commit has waited %.0f s for Kafka to acknowledge its "
                    "batch's outputs (%lld still in flight); consumption is held up",
                    (now - t0) / 1e6, (long long)sp_sink_outstanding(r->sink, r->infl[0].gen));
            warn_at *= 2;
        }
    }
    return rc;
}

/* Processes the batch in hand (see the top of the file) and commits it, with
 * the batches before it, once commit.interval_ms has passed since the last
 * commit (at once with the default 0) or when a batch window passes with no
 * message at all: an idle stream has no writes to save by waiting. */
static int process_batch(struct runner *r) {
    if (!r->nmsgs) /* a batch window without messages: the stream is idle, commit */
        return r->uncommitted ? commit_now(r) : SP_OK;
    double t0 = now_us();
    char err[256];
    int rc = SP_OK;
    sp_op_event *oes = sp_xmalloc(r->nmsgs * sizeof *oes);

    for (size_t i = 0; i < r->nmsgs; i++) {
        rd_kafka_message_t *m = r->msgs[i];
        struct rpart *rp = rpart_get(r, m->partition);
        int t = topic_index(r, rd_kafka_topic_name(m->rkt));
        r->evs[i] = NULL;
        if (!rp->owned || t < 0) continue; /* lost before we got to it */
        /* Already applied: a message fetched under an earlier assignment of
         * this partition can still come out of librdkafka's queue after the
         * partition was revoked and assigned again from the offsets in
         * Redis. Processing it would count it twice. */
        if (m->offset < rp->next[t]) {
            r->metrics.stale++;
            continue;
        }
        rp->touched = rp->uncommitted = 1;
        r->uncommitted = 1;
        rp->next[t] = m->offset + 1;
        rp->dirty_off[t] = 1;
        sp_event *ev = NULL;
        err[0] = '\0';
        if (sp_event_read_arena(r->arena, m->payload, m->len, content_type, m, &ev, err,
                                sizeof err) != SP_OK) {
            if ((rc = dead_letter(r, m, err[0] ? err : "invalid event")) != SP_OK) goto out;
            continue;
        }
        r->evs[i] = ev;
        oes[i] = (sp_op_event){ev, sp_event_kind_of(ev), m->partition, rd_kafka_topic_name(m->rkt),
                               m->offset, r->arrival_us[i], (uint32_t)i};
        sp_pipeline_prefetch(r->pl, &oes[i]);
    }
    if ((rc = sp_store_prefetch(r->store)) != SP_OK) goto out;
    for (size_t i = 0; i < r->nmsgs; i++) {
        if (!r->evs[i] || !rpart_get(r, oes[i].partition)->owned) continue;
        const char *by = NULL;
        rc = sp_pipeline_process(r->pl, &oes[i], &by);
        if (rc == SP_OP_DROP) {
            r->metrics.duplicates++;
            rc = SP_OK;
            continue;
        }
        if (rc != SP_OK || (rc = sp_sink_tick(r->sink)) != SP_OK) goto out;
        r->metrics.events[oes[i].kind]++;
    }
    /* Operators flush (they may produce outputs, e.g. KPI windows); the
     * commit goes out once those outputs are delivered: a crash before it
     * repeats them, never loses them. */
    for (size_t p = 0; p < r->nparts; p++)
        if (r->parts[p].touched && r->parts[p].owned) {
            r->parts[p].touched = 0;
            if ((rc = sp_pipeline_flush(r->pl, (int32_t)p)) != SP_OK) goto out;
        }
    if ((rc = sp_sink_send(r->sink)) != SP_OK) goto out;
    r->metrics.batches++;
    sp_hist_add(&r->metrics.batch_latency, now_us() - t0);
    if (now_ms() - r->last_prepare_ms >= r->cfg.commit_interval_ms) rc = commit_now(r);
out:
    free(oes);
    free_batch(r);
    sp_store_end_batch(r->store);
    if (rc != SP_OK) {
        r->failed = 1;
        if (rc == SP_ERR_RETRY)
            sp_warn("stopping with the batch uncommitted; it will be processed again");
        else
            sp_error("batch failed (%d); stopping without commit", rc);
    }
    return rc;
}

/* Distinct partition numbers in a list (input topics are co-partitioned). */
static size_t distinct_partitions(const rd_kafka_topic_partition_list_t *l, int32_t *out) {
    size_t n = 0;
    for (int i = 0; i < l->cnt; i++) {
        size_t j = 0;
        while (j < n && out[j] != l->elems[i].partition) j++;
        if (j == n) out[n++] = l->elems[i].partition;
    }
    return n;
}

static void on_assign(struct runner *r, rd_kafka_topic_partition_list_t *l) {
    int32_t *ps = sp_xmalloc((size_t)(l->cnt ? l->cnt : 1) * sizeof *ps);
    size_t n = distinct_partitions(l, ps);
    const char *topics[MAX_TOPICS];
    for (int t = 0; t < r->ntopics; t++) topics[t] = r->topics[t];
    for (size_t k = 0; k < n && !r->failed; k++) {
        int64_t offs[MAX_TOPICS];
        if (sp_store_assign(r->store, ps[k], topics, r->ntopics, offs) != SP_OK ||
            sp_pipeline_assign(r->pl, ps[k]) != SP_OK) {
            r->failed = 1;
            break;
        }
        struct rpart *rp = rpart_get(r, ps[k]);
        memset(rp, 0, sizeof *rp);
        rp->owned = 1;
        r->assigned++;
        for (int t = 0; t < r->ntopics; t++) rp->next[t] = offs[t];
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].partition != ps[k]) continue;
            int t = topic_index(r, l->elems[i].topic);
            /* No offset in Redis: from the start. Offset 0 rather than
             * BEGINNING, which costs a ListOffsets round trip per partition
             * before its first fetch -- and on one connection those answers
             * queue behind the fetches in flight, each of which the broker
             * may hold fetch.wait.max.ms: partitions started up to half a
             * second late, one by one. Where the log no longer starts at
             * 0, auto.offset.reset=earliest (consumer_new) moves the fetch
             * to its start, which is what BEGINNING means. */
            l->elems[i].offset = t >= 0 && offs[t] >= 0 ? offs[t] : 0;
        }
        sp_info("assigned partition %d (offsets from Redis)", (int)ps[k]);
    }
    free(ps);
    /* run.stop_when_idle_ms counts from here too: the group join (seconds
     * on a real broker) is not idleness, and new partitions may hold data. */
    r->last_msg_ms = now_ms();
    rd_kafka_assign(r->rk, r->failed ? NULL : l);
}

static void on_revoke(struct runner *r, rd_kafka_topic_partition_list_t *l) {
    if (r->failed) free_batch(r);
    else if (process_batch(r) == SP_OK && commit_now(r) != SP_OK) r->failed = 1;
    if (!r->failed && drain(r) != SP_OK) r->failed = 1;
    int32_t *ps = sp_xmalloc((size_t)(l->cnt ? l->cnt : 1) * sizeof *ps);
    size_t n = distinct_partitions(l, ps);
    for (size_t k = 0; k < n; k++) {
        sp_pipeline_revoke(r->pl, ps[k]);
        sp_store_revoke(r->store, ps[k]);
        struct rpart *rp = rpart_get(r, ps[k]);
        if (rp->owned) r->assigned--;
        memset(rp, 0, sizeof *rp);
    }
    free(ps);
    sp_info("revoked %zu partitions", n);
    rd_kafka_assign(r->rk, NULL);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque) {
    (void)rk;
    struct runner *r = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(r, l);
    else
        on_revoke(r, l);
}

static void update_lag(struct runner *r) {
    int64_t lag = 0;
    for (size_t p = 0; p < r->nparts; p++) {
        if (!r->parts[p].owned) continue;
        for (int t = 0; t < r->ntopics; t++) {
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(r->rk, r->topics[t], (int32_t)p, &lo, &hi) ||
                hi < 0)
                continue;
            int64_t pos = r->parts[p].next[t] >= 0 ? r->parts[p].next[t] : lo;
            if (hi > pos) lag += hi - pos;
        }
    }
    r->metrics.lag = lag;
}

/* True when every owned partition of every topic has reached its end. */
static int all_at_eof(const struct runner *r) {
    if (!r->assigned) return 0;
    for (size_t p = 0; p < r->nparts; p++)
        for (int t = 0; t < r->ntopics && r->parts[p].owned; t++)
            if (!r->parts[p].eof[t]) return 0;
    return 1;
}

static void handle_consumer_error(struct runner *r, rd_kafka_message_t *m) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        int t = m->rkt ? topic_index(r, rd_kafka_topic_name(m->rkt)) : -1;
        if (t >= 0) rpart_get(r, m->partition)->eof[t] = 1;
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__AUTHENTICATION || m->err == RD_KAFKA_RESP_ERR__FATAL ||
        m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED) {
        sp_error("kafka: %s; stopping", rd_kafka_message_errstr(m));
        r->failed = 1;
        return;
    }
    sp_warn("kafka: %s", rd_kafka_message_errstr(m));
}

/* Errors that are not about one message (a refused login, a fatal
 * client error) reach the application only through this callback, served
 * from rd_kafka_consumer_poll on our thread; without it librdkafka would
 * log them and retry for ever, and `run` with a wrong password would hang.
 * The rest are transient (brokers down, timeouts): librdkafka reconnects. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    struct runner *r = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__FATAL) {
        sp_error("Kafka %s: %s; stopping",
                 err == RD_KAFKA_RESP_ERR__FATAL ? "fatal error" : "authentication failed", reason);
        r->failed = 1;
        return;
    }
    sp_warn("kafka: %s", reason);
}

static rd_kafka_t *consumer_new(struct runner *r, char *err, size_t errlen) {
    rd_kafka_conf_t *conf = sp_kafka_conf_new(&r->cfg, err, errlen);
    if (!conf) return NULL;
    char sub[256];
    static const char *fixed[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "true"},
        {"partition.assignment.strategy", "range"},
    };
    if (rd_kafka_conf_set(conf, "group.id", r->cfg.group_id, sub, sizeof sub) != RD_KAFKA_CONF_OK)
        goto bad;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], sub, sizeof sub) != RD_KAFKA_CONF_OK)
            goto bad;
    sp_kafka_consumer_defaults(conf, &r->cfg);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, sp_kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, r);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, sub, sizeof sub);
    if (!rk) {
        snprintf(err, errlen, "kafka consumer: %s", sub);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
bad:
    snprintf(err, errlen, "kafka consumer config: %s", sub);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: shopstream run [--config FILE] [--key=value ...] [-X kafka-prop=value ...]\n\n"
            "Consumes the input topics as a member of the consumer group, keeps state in Redis\n"
            "with exactly-once offsets, and writes outputs and dead letters to Kafka.\n"
            "SIGINT/SIGTERM: finish the batch, commit, leave the group, exit 0.\n"
            "SIGUSR1: print the counters. SIGHUP: reload files (recommend.model).\n\n");
    sp_config_print_help(f);
    fprintf(f, "\noperators:");
}

static void print_op(const sp_op *op, void *ctx) {
    fprintf(ctx, "\n  %-22s %s", op->name, op->help);
}

/* One worker's outcome, summed by sp_cmd_run. */
struct run_result {
    int worker;          /* in: 0 runs the HTTP server */
    int status;          /* out: exit status */
    sp_metrics metrics;  /* out */
    double first_msg_us, last_commit_us;
    double cpu_s;        /* out: the worker thread's own CPU (user + system) */
};

/* One consumer-group member: its own config copy (parsed from the same
 * arguments), consumer, producer, Redis connections and operators. Workers
 * share nothing but the process-wide stop flags. */
static void run_instance(int argc, char **argv, struct run_result *res) {
    struct runner r;
    memset(&r, 0, sizeof r);
    r.metrics.has_thread_clock = pthread_getcpuclockid(pthread_self(), &r.metrics.thread_clock) == 0;
    char err[512];
    int help = 0, status = 1;
    sp_config_init(&r.cfg);
    if (sp_config_from_args(&r.cfg, argc, argv, &help, err, sizeof err) != SP_OK) {
        fprintf(stderr, "shopstream run: %s\n", err);
        sp_config_release(&r.cfg);
        res->status = 2;
        return;
    }
    if (res->worker > 0) sp_config_set(&r.cfg, "http.listen", "0", err, sizeof err);
    enum sp_log_level lvl;
    if (sp_log_parse_level(r.cfg.log_level, &lvl) != SP_OK) {
        fprintf(stderr, "shopstream run: key 'log.level': '%s' is not debug|info|warn|error\n",
                r.cfg.log_level);
        sp_config_release(&r.cfg);
        res->status = 2;
        return;
    }
    sp_log_set_level(lvl);

    char *list = sp_xstrdup(r.cfg.input_topics), *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (r.ntopics == MAX_TOPICS) {
            fprintf(stderr, "shopstream run: key 'topics.input': at most %d topics\n", MAX_TOPICS);
            free(list);
            goto done;
        }
        r.topics[r.ntopics++] = sp_xstrdup(t);
    }
    free(list);
    if (!r.ntopics) {
        fprintf(stderr, "shopstream run: key 'topics.input': no topics\n");
        status = 2;
        goto done;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Config errors first (they exit 2), then the services. */
    if (!(r.sink = sp_sink_new(&r.cfg, &r.metrics, err, sizeof err)) ||
        !(r.rk = consumer_new(&r, err, sizeof err))) {
        fprintf(stderr, "shopstream run: %s\n", err);
        status = 2;
        goto done;
    }
    /* The dead-letter topic must exist before the first bad message needs
     * it: a missing one would hold every commit back. */
    int trc = sp_sink_check_topic(r.sink, r.cfg.deadletter_topic, 10000, err, sizeof err);
    if (trc == SP_ERR_RETRY) {
        sp_warn("%s; going on", err);
    } else if (trc != SP_OK) {
        fprintf(stderr, "shopstream run: key 'topics.deadletter': %s\n", err);
        status = 2;
        goto done;
    }
    sp_store_conf sc = {.url = r.cfg.redis_url,
                        .timeout_ms = r.cfg.redis_timeout_ms,
                        .max_entries = r.cfg.cache_max_entries,
                        .abort_flag = &abort_flag,
                        .cluster = r.cfg.redis_cluster,
                        .user = r.cfg.redis_user,
                        .password = r.cfg.redis_password,
                        .wait_replicas = r.cfg.redis_wait_replicas};
    if (!(r.store = sp_store_new(&sc, err, sizeof err))) {
        fprintf(stderr, "shopstream run: %s\n", err);
        goto done;
    }
    sp_op_env env = {r.store, r.sink, &r.cfg, &r.metrics};
    if (!(r.pl = sp_pipeline_new(r.cfg.operators, &env, err, sizeof err))) {
        fprintf(stderr, "shopstream run: %s\n", err);
        status = 2;
        goto done;
    }
    if (r.cfg.http_listen[0] && strcmp(r.cfg.http_listen, "0")) {
        sp_http_conf hc = {r.cfg.http_listen, r.cfg.redis_url, r.cfg.redis_timeout_ms,
                           &r.metrics, r.rk, r.cfg.kpi_window_ms, r.cfg.kpi_rollup_ms,
                           r.cfg.redis_cluster, r.cfg.redis_user, r.cfg.redis_password};
        /* Without HTTP the processor still does its job: say so and go on
         * (a second instance on one host, say, finds the port taken). */
        if (!(r.http = sp_http_start(&hc, err, sizeof err)))
            sp_error("%s; running without HTTP", err);
        else
            sp_info("http: serving http://%.*s:%d/ (/metrics, /healthz, /api/kpi)",
                    (int)(strrchr(r.cfg.http_listen, ':') - r.cfg.http_listen), r.cfg.http_listen,
                    sp_http_port(r.http));
    }
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(r.ntopics);
    for (int t = 0; t < r.ntopics; t++)
        rd_kafka_topic_partition_list_add(sub, r.topics[t], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(r.rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        fprintf(stderr, "shopstream run: subscribe: %s\n", rd_kafka_err2str(e));
        goto done;
    }
    sp_info("running: group '%s', topics %s, operators %s", r.cfg.group_id, r.cfg.input_topics,
            r.cfg.operators);

    r.capmsgs = (size_t)r.cfg.batch_max_messages;
    r.msgs = sp_xmalloc(r.capmsgs * sizeof *r.msgs);
    r.arrival_us = sp_xmalloc(r.capmsgs * sizeof *r.arrival_us);
    r.evs = sp_xcalloc(r.capmsgs, sizeof *r.evs);
    r.arena = sp_arena_new(4 << 20);
    r.infl = sp_xcalloc((size_t)r.cfg.commit_max_inflight + 1, sizeof *r.infl);
    r.last_msg_ms = now_ms();
    while (!stop_flag && !r.failed) {
        int64_t deadline = now_ms() + r.cfg.batch_max_ms;
        int idle = 1;  /* the last poll returned nothing */
        double at = 0; /* when the last message came */
        while (r.nmsgs < r.capmsgs && !stop_flag && !r.failed) {
            /* While messages flow the deadline is read every 64 of them
             * (those polls return at once, far under a millisecond each). */
            int64_t left = !idle && (r.nmsgs & 63) ? 1 : deadline - now_ms();
            if (left <= 0) break;
            /* Commits in flight move on between messages; while some wait,
             * an idle poll comes back every millisecond to serve them. */
            if (r.ninfl && !(r.nmsgs & 255) && pump(&r, 0) != SP_OK) {
                r.failed = 1;
                break;
            }
            /* While messages flow the poll does not wait (timeout 0 also
             * spares librdkafka a clock read). */
            int was_idle = idle;
            rd_kafka_message_t *m =
                rd_kafka_consumer_poll(r.rk, !idle ? 0 : r.ninfl && left > 1 ? 1 : (int)left);
            idle = !m;
            if (!m) {
                if (r.ninfl && pump(&r, 0) != SP_OK) r.failed = 1;
                continue;
            }
            if (m->err) {
                handle_consumer_error(&r, m);
                rd_kafka_message_destroy(m);
                continue;
            }
            /* The clock is read for the first message after a wait and for
             * every 16th after it: messages taken back to back from
             * librdkafka's queue come out microseconds apart, and a clock
             * read costs as much as the rest of the loop. */
            if (was_idle || !(r.nmsgs & 15)) at = now_us();
            if (!r.metrics.messages++) r.first_msg_us = at;
            r.last_msg_ms = (int64_t)(at / 1000);
            int t = topic_index(&r, rd_kafka_topic_name(m->rkt));
            if (t >= 0) rpart_get(&r, m->partition)->eof[t] = 0;
            r.arrival_us[r.nmsgs] = at;
            r.msgs[r.nmsgs++] = m;
        }
        if (r.failed) break;
        if (process_batch(&r) != SP_OK) break;
        update_lag(&r);
        if (usr1_flag) {
            usr1_flag = 0;
            sp_metrics_print(&r.metrics, stderr);
        }
        if (hup_flag) { /* between batches: no event is half-processed */
            hup_flag = 0;
            sp_info("SIGHUP: reloading");
            sp_pipeline_reload(r.pl);
        }
        if (r.cfg.stop_when_idle_ms && all_at_eof(&r) && !r.ninfl &&
            now_ms() - r.last_msg_ms >= r.cfg.stop_when_idle_ms) {
            sp_info("all partitions consumed and idle for %d ms: stopping",
                    r.cfg.stop_when_idle_ms);
            break;
        }
    }
    if (!r.failed) {
        /* Leaves the group; the revoke callback commits what is in hand. */
        abort_flag = 0;
        if (process_batch(&r) != SP_OK || commit_now(&r) != SP_OK || drain(&r) != SP_OK)
            r.failed = 1;
        rd_kafka_consumer_close(r.rk);
    }
    status = r.failed ? 1 : 0;
done:
    sp_http_stop(r.http);
    if (r.rk) {
        if (r.failed) rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    free_batch(&r);
    sp_pipeline_destroy(r.pl);
    sp_sink_destroy(r.sink);
    sp_store_destroy(r.store);
    res->metrics = r.metrics;
    res->first_msg_us = r.first_msg_us;
    res->last_commit_us = r.last_commit_us;
    res->status = status;
    for (int t = 0; t < r.ntopics; t++) free(r.topics[t]);
    free(r.msgs);
    free(r.arrival_us);
    free(r.evs);
    for (size_t i = 0; i < r.ninfl; i++) { /* never sent: consumed again on restart */
        if (!r.infl[i].submitted) sp_txn_free(r.infl[i].txn); /* else the store's */
        rd_kafka_topic_partition_list_destroy(r.infl[i].offsets);
    }
    free(r.infl);
    sp_arena_destroy(r.arena);
    free(r.parts);
    sp_config_release(&r.cfg);
}

struct worker_arg {
    int argc;
    char **argv;
    struct run_result res;
};

static void *worker_main(void *p) {
    struct worker_arg *a = p;
    run_instance(a->argc, a->argv, &a->res);
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0)
        a->res.cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    if (a->res.status != 0) {
        /* One worker failing stops the others: the process exits non-zero
         * and its partitions go to the group's other members. */
        stop_flag = 1;
    }
    return NULL;
}

int sp_cmd_run(int argc, char **argv) {
    sp_config cfg;
    char err[512];
    int help = 0;
    sp_config_init(&cfg);
    if (sp_config_from_args(&cfg, argc, argv, &help, err, sizeof err) != SP_OK) {
        fprintf(stderr, "shopstream run: %s\n", err);
        sp_config_release(&cfg);
        return 2;
    }
    int workers = cfg.workers;
    sp_config_release(&cfg);
    sp_model_blas_threads(); /* the recommend operator scores with BLAS */
    if (help) {
        run_usage(stdout);
        sp_op_list(print_op, stdout);
        fprintf(stdout, "\n");
        return 0;
    }
    /* workers = N runs N consumer-group members in this process, each on its
     * own thread with its own Kafka and Redis connections, like Kafka
     * Streams' stream threads; the group spreads the partitions over them. */
    struct worker_arg *ws = sp_xcalloc((size_t)workers, sizeof *ws);
    pthread_t *th = sp_xcalloc((size_t)workers, sizeof *th);
    for (int i = 0; i < workers; i++) {
        ws[i].argc = argc;
        ws[i].argv = argv;
        ws[i].res.worker = i;
        if (i > 0) pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }
    worker_main(&ws[0]);
    for (int i = 1; i < workers; i++) pthread_join(th[i], NULL);

    sp_metrics total;
    memset(&total, 0, sizeof total);
    int status = 0;
    double first = 0, last = 0, wcpu = 0;
    for (int i = 0; i < workers; i++) {
        struct run_result *res = &ws[i].res;
        wcpu += res->cpu_s;
        if (res->status > status) status = res->status;
        if (workers > 1) {
            printf("worker %d ", i);
            sp_metrics_print(&res->metrics, stdout);
        }
        sp_metrics_sum(&total, &res->metrics);
        if (res->first_msg_us > 0 && (!first || res->first_msg_us < first)) first = res->first_msg_us;
        if (res->last_commit_us > last) last = res->last_commit_us;
    }
    sp_metrics_print(&total, stdout);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (last > first && first > 0) {
        double s = (last - first) / 1e6;
        printf("throughput: messages=%llu seconds=%.3f rate=%.0f max_rss_kb=%ld\n",
               (unsigned long long)total.messages, s, (double)total.messages / s, ru.ru_maxrss);
    }
    /* process: every thread (librdkafka's, the Redis committers'); workers:
     * the consumer threads that run the operators, start-up included */
    printf("cpu_seconds: process=%.3f workers=%.3f\n",
           (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6,
           wcpu);
    free(ws);
    free(th);
    return status;
}
