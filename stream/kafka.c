/* librdkafka configuration and the output sink. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/log.h"

rd_kafka_conf_t *sp_kafka_conf_new(const sp_config *cfg, char *err, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char sub[512];
    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->brokers, sub, sizeof sub) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "key 'brokers': %s", sub);
        goto fail;
    }
    for (size_t i = 0; i < cfg->nkafka; i++) {
        if (rd_kafka_conf_set(conf, cfg->kafka_keys[i], cfg->kafka_values[i], sub, sizeof sub) !=
            RD_KAFKA_CONF_OK) {
            if (sp_config_is_secret(cfg->kafka_keys[i]))
                snprintf(err, errlen, "key 'kafka.%s': invalid value", cfg->kafka_keys[i]);
            else
                snprintf(err, errlen, "key 'kafka.%s': %s", cfg->kafka_keys[i], sub);
            goto fail;
        }
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* True when the configuration sets kafka.<key> itself. */
static int user_set(const sp_config *cfg, const char *key) {
    for (size_t i = 0; cfg && i < cfg->nkafka; i++)
        if (!strcmp(cfg->kafka_keys[i], key)) return 1;
    return 0;
}

void sp_kafka_consumer_defaults(rd_kafka_conf_t *conf, const sp_config *cfg) {
    static const char *defaults[][2] = {
        {"queued.min.messages", "1000000"},
        {"queued.max.messages.kbytes", "131072"},
    };
    char sub[256];
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (!user_set(cfg, defaults[i][0]))
            rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], sub, sizeof sub);
}

/* Topics a sink keeps handles for (sp_sink_produce). */
#define SP_SINK_TOPICS 16

struct sp_sink {
    rd_kafka_t *rk;
    sp_metrics *metrics;
    uint64_t gen;                        /* current generation (sp_sink_next_gen) */
    int64_t outstanding[SP_SINK_GENS];   /* queued, not yet settled, per gen % SP_SINK_GENS */
    /* Handles of the topics checked and produced to, so that a record
     * names its topic by handle: by name, rd_kafka_producev takes the
     * client's write lock to look the topic up and drops its reference
     * again, every record. */
    rd_kafka_topic_t *topics[SP_SINK_TOPICS];
    int ntopics;
    /* Records held before librdkafka sees them (sp_sink_produce): their
     * topic, key and value bytes side by side in bytes. */
    struct held *held;
    size_t nheld, capheld;
    char *bytes;
    size_t nbytes, capbytes;
    double held_since_us; /* when the oldest held record came */
    double hold_us;       /* 0: hand each record over at once */
    unsigned ticks;
    int failed; /* a record librdkafka refused: SP_ERR_RETRY from then on */
};

struct held {
    rd_kafka_topic_t *rkt; /* NULL: by name, at topic_off in bytes */
    size_t topic_off, key_off, keylen, value_off, len;
    rd_kafka_headers_t *hdrs;
    uint64_t gen;
};

/* The message opaque: generation << 8 | retries so far. */
#define OPAQUE(gen, tries) ((void *)(uintptr_t)(((uint64_t)(gen) << 8) | (uint64_t)(tries)))
#define OPAQUE_GEN(o) ((uint64_t)(uintptr_t)(o) >> 8)
#define OPAQUE_TRIES(o) ((int)((uintptr_t)(o) & 0xff))

/* Delivery report: a final failure is produced again (the retry count rides
 * in the message opaque) up to SP_SINK_MAX_RETRIES, then counted. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    sp_sink *sk = opaque;
    uint64_t gen = OPAQUE_GEN(m->_private);
    if (!m->err) {
        sk->metrics->produced++;
        sk->outstanding[gen % SP_SINK_GENS]--;
        return;
    }
    int tries = OPAQUE_TRIES(m->_private);
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (tries < SP_SINK_MAX_RETRIES) {
        rd_kafka_headers_t *hdrs = NULL, *copy = NULL;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
            copy = rd_kafka_headers_copy(hdrs);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_OPAQUE(OPAQUE(gen, tries + 1)), RD_KAFKA_V_END);
        if (!e) {
            sp_warn("sink: delivery to %s failed (%s); retry %d", topic, rd_kafka_err2str(m->err),
                    (int)tries + 1);
            return;
        }
        if (copy) rd_kafka_headers_destroy(copy);
    }
    sk->metrics->produce_failed++;
    sk->outstanding[gen % SP_SINK_GENS]--;
    sp_error("sink: message to %s lost after %d retries: %s", topic, tries,
             rd_kafka_err2str(m->err));
}

void sp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (!strcmp(fac, "CONFWARN") && strstr(buf, "consumer property")) return;
    if (!strcmp(fac, "COMMITFAIL") && level >= 4) {
        sp_info("kafka: %s (Kafka's copy of the offsets, kept for lag monitoring only: the "
                "offsets the state restarts from are committed in Redis): %s",
                fac, buf);
        return;
    }
    if (level <= 3)
        sp_error("kafka: %s: %s", fac, buf);
    else if (level <= 4)
        sp_warn("kafka: %s: %s", fac, buf);
    else
        sp_debug("kafka: %s: %s", fac, buf);
}

sp_sink *sp_sink_new(const sp_config *cfg, sp_metrics *metrics, char *err, size_t errlen) {
    rd_kafka_conf_t *conf = sp_kafka_conf_new(cfg, err, errlen);
    if (!conf) return NULL;
    sp_sink *sk = sp_xcalloc(1, sizeof *sk);
    sk->metrics = metrics;
    char sub[256];
    rd_kafka_conf_set(conf, "enable.idempotence", "true", sub, sizeof sub);
    /* Outputs are produced one by one as events are processed (a
     * recommendation every 10-20 us at full speed). With linger.ms 0 each
     * woke librdkafka's broker thread and went out in its own ProduceRequest
     * (~15% of the processor's CPU with personalization on). With a linger
     * of 1 ms alone the broker thread is still woken over and over within
     * each millisecond (strace: several wake-ups through its pipe between
     * two requests; perf stat: 35k-190k syscalls and 110-240 ms of its CPU
     * per 100k messages of the warm bench). So the sink also holds records
     * for up to SP_SINK_HOLD_US and hands them over together: the broker
     * thread meets bursts instead of a trickle (bench/RESULTS.md). A record
     * reaches librdkafka at most ~1 ms after it was produced, or at its
     * batch's end if sooner, and is sent after the 1 ms linger. A
     * kafka.linger.ms setting wins, and records are then handed over at
     * once. */
    if (!user_set(cfg, "linger.ms") && !user_set(cfg, "queue.buffering.max.ms")) {
        rd_kafka_conf_set(conf, "linger.ms", SP_SINK_LINGER_MS, sub, sizeof sub);
        sk->hold_us = SP_SINK_HOLD_US;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, sp_kafka_log_cb);
    rd_kafka_conf_set_opaque(conf, sk);
    sk->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, sub, sizeof sub);
    if (!sk->rk) {
        snprintf(err, errlen, "kafka producer: %s", sub);
        rd_kafka_conf_destroy(conf);
        free(sk);
        return NULL;
    }
    return sk;
}

void sp_sink_destroy(sp_sink *sk) {
    if (!sk) return;
    sp_sink_flush(sk, 10000);
    for (int i = 0; i < sk->ntopics; i++) rd_kafka_topic_destroy(sk->topics[i]);
    rd_kafka_destroy(sk->rk);
    free(sk->held);
    free(sk->bytes);
    free(sk);
}

/* The handle of topic, made on its first record; NULL (produce by name)
 * once SP_SINK_TOPICS distinct topics have handles. A processor writes to
 * a handful of topics, so a scan is the lookup. */
static rd_kafka_topic_t *topic_handle(sp_sink *sk, const char *topic) {
    for (int i = 0; i < sk->ntopics; i++)
        if (!strcmp(rd_kafka_topic_name(sk->topics[i]), topic)) return sk->topics[i];
    if (sk->ntopics == SP_SINK_TOPICS) return NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(sk->rk, topic, NULL);
    if (rkt) sk->topics[sk->ntopics++] = rkt;
    return rkt;
}

/* Hands one record to librdkafka. Returns 0, or SP_ERR_RETRY when
 * librdkafka refuses it (logged and counted; its generation stays
 * outstanding, so the commit that depends on it is never made). */
static int hand_over(sp_sink *sk, const struct held *r) {
    rd_kafka_vu_t vu[6] = {
        {.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = r->rkt},
        {.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {sk->bytes + r->value_off, r->len}},
        {.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {sk->bytes + r->key_off, r->keylen}},
        {.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY},
        {.vtype = RD_KAFKA_VTYPE_HEADERS, .u.headers = r->hdrs},
        {.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = OPAQUE(r->gen, 0)},
    };
    const char *topic = r->rkt ? rd_kafka_topic_name(r->rkt) : sk->bytes + r->topic_off;
    if (!r->rkt) vu[0] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_TOPIC, .u.cstr = topic};
    for (;;) {
        rd_kafka_error_t *err = rd_kafka_produceva(sk->rk, vu, 6);
        rd_kafka_resp_err_t e = err ? rd_kafka_error_code(err) : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err) rd_kafka_error_destroy(err);
        if (!e) return SP_OK;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(sk->rk, 50);
            continue;
        }
        if (r->hdrs) rd_kafka_headers_destroy(r->hdrs);
        sk->metrics->produce_failed++;
        sp_error("sink: cannot produce to %s: %s", topic, rd_kafka_err2str(e));
        return SP_ERR_RETRY;
    }
}

int sp_sink_send(sp_sink *sk) {
    for (size_t i = 0; i < sk->nheld; i++)
        if (hand_over(sk, &sk->held[i]) != SP_OK) sk->failed = SP_ERR_RETRY;
    sk->nheld = sk->nbytes = 0;
    return sk->failed;
}

size_t sp_sink_held(const sp_sink *sk) { return sk->nheld; }

int sp_sink_tick(sp_sink *sk) {
    /* The clock is read every 8th call: events take microseconds each. */
    if (!sk->nheld || (++sk->ticks & 7)) return sk->failed;
    return sp_now_us() - sk->held_since_us >= sk->hold_us ? sp_sink_send(sk) : sk->failed;
}

/* Copies n bytes to the end of the held bytes; returns their offset. */
static size_t keep_bytes(sp_sink *sk, const void *p, size_t n) {
    if (sk->nbytes + n > sk->capbytes) {
        sk->capbytes = sk->capbytes * 2 > sk->nbytes + n ? sk->capbytes * 2 : sk->nbytes + n + 4096;
        sk->bytes = sp_xrealloc(sk->bytes, sk->capbytes);
    }
    if (n) memcpy(sk->bytes + sk->nbytes, p, n);
    sk->nbytes += n;
    return sk->nbytes - n;
}

int sp_sink_produce(sp_sink *sk, const char *topic, const void *key, size_t keylen,
                    const void *value, size_t len, const sp_header *hdrs, size_t nhdrs) {
    if (sk->failed) return sk->failed;
    rd_kafka_headers_t *h = nhdrs ? rd_kafka_headers_new(nhdrs) : NULL;
    for (size_t i = 0; i < nhdrs; i++)
        rd_kafka_header_add(h, hdrs[i].name, -1, hdrs[i].value, (ssize_t)hdrs[i].len);
    struct held r = {.rkt = topic_handle(sk, topic), .keylen = keylen, .len = len, .hdrs = h,
                     .gen = sk->gen};
    if (!r.rkt) r.topic_off = keep_bytes(sk, topic, strlen(topic) + 1);
    r.key_off = keep_bytes(sk, key, keylen);
    r.value_off = keep_bytes(sk, value, len);
    if (!sk->hold_us) {
        sk->nbytes = 0;
        int rc = hand_over(sk, &r);
        if (rc == SP_OK) sk->outstanding[sk->gen % SP_SINK_GENS]++;
        return rc;
    }
    if (sk->nheld == sk->capheld) {
        sk->capheld = sk->capheld ? sk->capheld * 2 : 256;
        sk->held = sp_xrealloc(sk->held, sk->capheld * sizeof *sk->held);
    }
    if (!sk->nheld) sk->held_since_us = sp_now_us();
    sk->held[sk->nheld++] = r;
    sk->outstanding[sk->gen % SP_SINK_GENS]++;
    return sp_sink_tick(sk);
}

int sp_sink_flush(sp_sink *sk, int timeout_ms) {
    sp_sink_send(sk);
    if (rd_kafka_outq_len(sk->rk) == 0) {
        rd_kafka_poll(sk->rk, 0);
        return sk->failed;
    }
    /* Not rd_kafka_flush(): in librdkafka 2.0.2 it waits in 10 ms steps
     * (about 10 ms per batch measured on the mock cluster, against about
     * 1 ms for this loop), and the consumer loop waits here every batch. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (rd_kafka_outq_len(sk->rk) > 0) {
        rd_kafka_poll(sk->rk, 1);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= timeout_ms)
            return SP_ERR_RETRY;
    }
    return sk->failed;
}

int sp_sink_conf_get(const sp_sink *sk, const char *name, char *buf, size_t len) {
    size_t n = len;
    return rd_kafka_conf_get(rd_kafka_conf(sk->rk), name, buf, &n) == RD_KAFKA_CONF_OK ? SP_OK
                                                                                     : SP_ERR_FATAL;
}

uint64_t sp_sink_next_gen(sp_sink *sk) { return sk->gen++; }

int64_t sp_sink_outstanding(const sp_sink *sk, uint64_t gen) {
    return sk->outstanding[gen % SP_SINK_GENS];
}

void sp_sink_poll(sp_sink *sk, int timeout_ms) {
    sp_sink_send(sk);
    rd_kafka_poll(sk->rk, timeout_ms);
}

int sp_sink_check_topic(sp_sink *sk, const char *topic, int timeout_ms, char *err,
                        size_t errlen) {
    rd_kafka_topic_t *own = NULL, *rkt = topic_handle(sk, topic);
    if (!rkt) rkt = own = rd_kafka_topic_new(sk->rk, topic, NULL); /* the table is full */
    if (!rkt) {
        snprintf(err, errlen, "output topic '%s': %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return SP_ERR_FATAL;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(sk->rk, 0, rkt, &md, timeout_ms);
    int rc = SP_OK;
    if (e) {
        snprintf(err, errlen, "output topic '%s': no metadata within %d ms (%s)", topic,
                 timeout_ms, rd_kafka_err2str(e));
        rc = SP_ERR_RETRY;
    } else if (md->topic_cnt < 1 || md->topics[0].err) {
        rd_kafka_resp_err_t te = md->topic_cnt < 1 ? RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                                                   : md->topics[0].err;
        if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || te == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            snprintf(err, errlen,
                     "output topic '%s' does not exist on the cluster (create it, e.g. "
                     "`shopstream topics create --brokers ... %s`)",
                     topic, topic);
        else
            snprintf(err, errlen, "output topic '%s': %s", topic, rd_kafka_err2str(te));
        rc = te == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ? SP_ERR_RETRY : SP_ERR_NOTFOUND;
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (own) rd_kafka_topic_destroy(own);
    return rc;
}
