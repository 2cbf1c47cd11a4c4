/* `shopstream replay FILE`: produce a file of events into the input topics.
 *
 * Generator output (JSONL or length-prefixed protobuf) is sent byte for byte:
 * replay never re-encodes, because the point of replaying malformed records
 * is that the processor sees exactly what was written. Public click logs
 * (RSC15 TSV, Diginetica CSV) have no wire form of their own, so each row
 * becomes a view event, encoded as protobuf (or JSON with --encode json).
 *
 * The producer is idempotent, batches for 5 ms and compresses with lz4; it
 * waits for every delivery before exiting and fails if any failed. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "stream/cli.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/log.h"
#include "stream/replay.h"

#define MAX_RECORD (16u << 20) /* a length prefix above this means a corrupt file */

/* ---- the sink ---- */

static const char *topic_suffix[3] = {"clicks", "orders", "reviews"};

struct sp_replay_sink {
    rd_kafka_t *rk;
    char topic[3][256];
    int used[3];        /* records sent to each topic */
    uint64_t queued;
    uint64_t delivered; /* updated by the delivery callback, on our thread in poll/flush */
    uint64_t failed;
    char first_error[256];
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    sp_replay_sink *s = opaque;
    if (!m->err) {
        s->delivered++;
        return;
    }
    if (!s->failed++)
        snprintf(s->first_error, sizeof s->first_error, "%s", rd_kafka_err2str(m->err));
}

sp_replay_sink *sp_replay_sink_new(const sp_replay_sink_conf *c, char *err, size_t errlen) {
    sp_replay_sink *s = sp_xcalloc(1, sizeof *s);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *prefix = c->topic_prefix ? c->topic_prefix : "shop.";
    for (int i = 0; i < 3; i++)
        snprintf(s->topic[i], sizeof s->topic[i], "%s%s", prefix, topic_suffix[i]);
    static const char *defaults[][2] = {
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"compression.type", "lz4"},
        {"client.id", "shopstream-replay"},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, errlen))
            goto fail;
    if (!c->brokers || !*c->brokers) {
        snprintf(err, errlen, "no brokers: give --brokers or SHOPSTREAM_BROKERS");
        goto fail;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, errlen)) goto fail;
    for (int i = 0; i < c->nprops; i++) {
        const char *eq = strchr(c->props[i], '=');
        if (!eq || eq == c->props[i]) {
            snprintf(err, errlen, "-X %s: expected prop=value", c->props[i]);
            goto fail;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - c->props[i]), c->props[i]);
        if (rd_kafka_conf_set(conf, name, eq + 1, err, errlen)) goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, s);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!s->rk) goto fail; /* rd_kafka_new frees conf only on success */
    return s;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    free(s);
    return NULL;
}

/* Routing uses sp_event_peek, not a full decode: a record the processor will
 * reject (bad amount, truncated body) still belongs on its body's topic and
 * its user's partition, where the processor dead-letters it in order. */
int sp_replay_sink_send(sp_replay_sink *s, const uint8_t *data, size_t len, int is_json) {
    sp_event_peek_info info;
    sp_event_peek(data, len, is_json ? "application/json" : "application/x-protobuf", &info);
    int t = info.body == SHOPSTREAM__V1__EVENT__BODY_ORDER    ? 1
            : info.body == SHOPSTREAM__V1__EVENT__BODY_REVIEW ? 2
                                                              : 0;
    const char *ct = is_json ? "application/json" : "application/x-protobuf";
    rd_kafka_resp_err_t e;
    for (;;) {
        e = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->topic[t]),
                              RD_KAFKA_V_KEY(info.user_id_len ? info.user_id : NULL,
                                             info.user_id_len),
                              RD_KAFKA_V_VALUE((void *)data, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_HEADER("content-type", ct, -1), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        rd_kafka_poll(s->rk, 50);
    }
    if (e) {
        if (!s->failed++)
            snprintf(s->first_error, sizeof s->first_error, "%s", rd_kafka_err2str(e));
        return SP_ERR_RETRY;
    }
    s->queued++;
    s->used[t] = 1;
    return SP_OK;
}

void sp_replay_sink_poll(sp_replay_sink *s) { rd_kafka_poll(s->rk, 0); }

const char *sp_replay_sink_first_error(const sp_replay_sink *s) { return s->first_error; }

void sp_replay_sink_stats(const sp_replay_sink *s, uint64_t *queued, uint64_t *delivered,
                          uint64_t *failed, int *topics) {
    if (queued) *queued = s->queued;
    if (delivered) *delivered = s->delivered;
    if (failed) *failed = s->failed;
    if (topics) *topics = s->used[0] + s->used[1] + s->used[2];
}

/* Flushes until librdkafka holds nothing: every message then has either
 * been acknowledged or failed (message.timeout.ms bounds the wait). */
void sp_replay_sink_flush(sp_replay_sink *s) {
    while (rd_kafka_outq_len(s->rk) > 0) rd_kafka_flush(s->rk, 1000);
}

uint64_t sp_replay_sink_close(sp_replay_sink *s) {
    if (!s) return 0;
    sp_replay_sink_flush(s);
    uint64_t failed = s->failed;
    rd_kafka_destroy(s->rk);
    free(s);
    return failed;
}

/* ---- readers ---- */

enum rfmt { F_AUTO, F_JSONL, F_PROTO, F_RSC15, F_DIGINETICA };

struct reader {
    FILE *f;
    enum rfmt fmt;
    int encode_json;     /* for click logs: JSON instead of protobuf */
    char *line;
    size_t line_cap;
    uint8_t *buf;
    size_t buf_cap;
    uint64_t lineno;
    char err[256];
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): no timegm, no TZ environment. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Turns one click-log row into a view event in r->buf. RSC15 rows are
 * `session<TAB>item<TAB>unix seconds`; Diginetica rows are
 * `session;user;item;ms into the session;YYYY-MM-DD`. The user is the
 * session (neither log has logged-in users worth the name), and the event id
 * is a hash of the row, so replaying a file twice yields the same ids. */
static int convert_row(struct reader *r, char *line, size_t n, const uint8_t **data, size_t *len,
                       int *is_json) {
    char *fields[5];
    int nf = 0;
    char sep = r->fmt == F_RSC15 ? '\t' : ';';
    char *p = line;
    while (nf < 5) {
        fields[nf++] = p;
        char *q = strchr(p, sep);
        if (!q) break;
        *q = 0;
        p = q + 1;
    }
    int64_t ts;
    const char *session, *item;
    char *end;
    if (r->fmt == F_RSC15) {
        if (nf < 3) goto bad;
        session = fields[0];
        item = fields[1];
        double secs = strtod(fields[2], &end);
        if (end == fields[2] || !isfinite(secs) || secs <= 0) goto bad;
        ts = (int64_t)llround(secs * 1000.0);
    } else {
        if (nf < 5) goto bad;
        session = fields[0];
        item = fields[2];
        long long frame = strtoll(fields[3], &end, 10);
        if (end == fields[3] || frame < 0) goto bad;
        int y, m, d;
        if (sscanf(fields[4], "%d-%d-%d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
            goto bad;
        ts = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400000 + frame;
    }
    if (!*session || !*item) goto bad;

    char event_id[40];
    snprintf(event_id, sizeof event_id, "%s-%016" PRIx64,
             r->fmt == F_RSC15 ? "rsc15" : "diginetica", fnv1a(line, n));
    sp_event ev = SHOPSTREAM__V1__EVENT__INIT;
    Shopstream__V1__Click click = SHOPSTREAM__V1__CLICK__INIT;
    ev.event_id = event_id;
    ev.ts_ms = ts;
    ev.user_id = (char *)session;
    ev.session_id = (char *)session;
    ev.body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
    ev.click = &click;
    click.kind = SHOPSTREAM__V1__CLICK_KIND__VIEW;
    click.item_id = (char *)item;
    if (r->encode_json) {
        char *js = sp_event_to_json(&ev);
        *len = strlen(js);
        if (r->buf_cap < *len) r->buf = sp_xrealloc(r->buf, r->buf_cap = *len * 2);
        memcpy(r->buf, js, *len);
        free(js);
    } else {
        *len = shopstream__v1__event__get_packed_size(&ev);
        if (r->buf_cap < *len) r->buf = sp_xrealloc(r->buf, r->buf_cap = *len * 2);
        shopstream__v1__event__pack(&ev, r->buf);
    }
    *data = r->buf;
    *is_json = r->encode_json;
    return 1;
bad:
    snprintf(r->err, sizeof r->err, "line %" PRIu64 ": not a %s row", r->lineno,
             r->fmt == F_RSC15 ? "RSC15 (session<TAB>item<TAB>seconds)"
                               : "Diginetica (session;user;item;timeframe;date)");
    return SP_ERR_BADINPUT;
}

/* Returns 1 with the next record, 0 at the end of the file, or a negative
 * SP_ERR_* with the reason in r->err. Blank lines are skipped; the header
 * line of the click logs too. */
static int reader_next(struct reader *r, const uint8_t **data, size_t *len, int *is_json) {
    if (r->fmt == F_AUTO) {
        int c = getc(r->f);
        if (c == EOF) return 0;
        ungetc(c, r->f);
        r->fmt = c == '{' ? F_JSONL : F_PROTO;
    }
    if (r->fmt == F_PROTO) {
        uint8_t hdr[4];
        size_t got = fread(hdr, 1, 4, r->f);
        if (got == 0 && feof(r->f)) return 0;
        if (got != 4) goto short_read;
        uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (n > MAX_RECORD) {
            snprintf(r->err, sizeof r->err, "record %" PRIu64 ": length %u is not plausible (not a "
                     "length-prefixed protobuf file?)", r->lineno + 1, n);
            return SP_ERR_BADINPUT;
        }
        if (r->buf_cap < n) r->buf = sp_xrealloc(r->buf, r->buf_cap = n);
        if (fread(r->buf, 1, n, r->f) != n) goto short_read;
        r->lineno++;
        *data = r->buf;
        *len = n;
        *is_json = 0;
        return 1;
    }
    for (;;) {
        ssize_t n = getline(&r->line, &r->line_cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) goto short_read;
            return 0;
        }
        r->lineno++;
        while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r')) r->line[--n] = 0;
        if (n == 0) continue;
        if (r->fmt == F_JSONL) {
            *data = (const uint8_t *)r->line;
            *len = (size_t)n;
            *is_json = 1;
            return 1;
        }
        if (r->lineno == 1) continue; /* the click logs' header line */
        return convert_row(r, r->line, (size_t)n, data, len, is_json);
    }
short_read:
    snprintf(r->err, sizeof r->err, "record %" PRIu64 ": %s", r->lineno + 1,
             ferror(r->f) ? strerror(errno) : "file ends inside a record");
    return SP_ERR_IO;
}

/* ---- the command ---- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(uint64_t n, double elapsed, long long pos, long long size) {
    double rate = elapsed > 0 ? n / elapsed : 0;
    if (size > 0) {
        double frac = (double)pos / (double)size;
        if (frac > 1) frac = 1;
        int filled = (int)(frac * 30);
        char bar[31];
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '-';
        bar[30] = 0;
        fprintf(stderr, "\r[%s] %5.1f%% %10" PRIu64 " events %9.0f/s ", bar, frac * 100, n, rate);
    } else {
        fprintf(stderr, "\r%10" PRIu64 " events %9.0f/s ", n, rate);
    }
    fflush(stderr);
}

static void replay_usage(FILE *f) {
    fprintf(f,
            "usage: shopstream replay [options] FILE\n"
            "\n"
            "Produces every record of FILE (- for stdin) to the input topic of its body:\n"
            "clicks to <prefix>clicks, orders to <prefix>orders, reviews to <prefix>reviews,\n"
            "keyed by user_id, with a content-type header. Generator records are sent byte\n"
            "for byte (malformed ones too); a record that cannot be routed goes to\n"
            "<prefix>clicks with an empty key.\n"
            "\n"
            "  --format F        auto (default: '{' first means JSONL, else length-prefixed\n"
            "                    protobuf), jsonl, proto, rsc15 (TSV session, item, seconds),\n"
            "                    diginetica (CSV session;user;item;timeframe;date); click\n"
            "                    logs become view events with user = session\n"
            "  --encode E        for rsc15/diginetica: proto (default) or json\n"
            "  --brokers H:P     bootstrap servers (or SHOPSTREAM_BROKERS)\n"
            "  --topic-prefix P  input topic prefix (shop.)\n"
            "  -X prop=value     librdkafka producer property, repeatable (SASL, SSL, ...)\n"
            "  --rate N          records per second, 0 = as fast as possible (0)\n"
            "  --limit N         stop after N records\n"
            "  --quiet           no progress bar\n"
            "  -h, --help        this help\n"
            "\n"
            "Waits for every delivery; exits 1 if any record failed.\n");
}

/* `shopstream replay FILE`: reads records one at a time (memory does not
 * grow with the file), paces them when --rate is set, and reports progress
 * on a terminal. SIGINT/SIGTERM stop reading but still flush what was
 * queued, so an interrupted replay leaves a clean prefix of the file in the
 * topics. Exit 2 for usage errors, 1 if the file is unreadable or any
 * delivery failed. */
int sp_cmd_replay(int argc, char **argv) {
    static const struct option opts[] = {
        {"format", required_argument, 0, 'f'}, {"encode", required_argument, 0, 'e'},
        {"brokers", required_argument, 0, 'b'}, {"topic-prefix", required_argument, 0, 'p'},
        {"rate", required_argument, 0, 'r'},    {"limit", required_argument, 0, 'l'},
        {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct reader rd = {.fmt = F_AUTO};
    sp_replay_sink_conf sc = {.brokers = getenv("SHOPSTREAM_BROKERS"), .topic_prefix = "shop."};
    const char **props = sp_xcalloc((size_t)argc + 1, sizeof *props);
    double rate = 0;
    uint64_t limit = UINT64_MAX;
    int quiet = 0, rc = 2, c;
    sp_replay_sink *sink = NULL;
    char err[512], *end;
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    int handlers = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, "hX:", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (!strcmp(optarg, "auto")) rd.fmt = F_AUTO;
            else if (!strcmp(optarg, "jsonl") || !strcmp(optarg, "json")) rd.fmt = F_JSONL;
            else if (!strcmp(optarg, "proto")) rd.fmt = F_PROTO;
            else if (!strcmp(optarg, "rsc15")) rd.fmt = F_RSC15;
            else if (!strcmp(optarg, "diginetica")) rd.fmt = F_DIGINETICA;
            else goto bad_value;
            break;
        case 'e':
            if (!strcmp(optarg, "json")) rd.encode_json = 1;
            else if (!strcmp(optarg, "proto")) rd.encode_json = 0;
            else goto bad_value;
            break;
        case 'b': sc.brokers = optarg; break;
        case 'p': sc.topic_prefix = optarg; break;
        case 'X': props[sc.nprops++] = optarg; break;
        case 'r':
            rate = strtod(optarg, &end);
            if (end == optarg || *end || !(rate >= 0) || isinf(rate)) goto bad_value;
            break;
        case 'l':
            errno = 0;
            limit = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || *optarg == '-') goto bad_value;
            break;
        case 'q': quiet = 1; break;
        case 'h':
            replay_usage(stdout);
            rc = 0;
            goto fail;
        default: replay_usage(stderr); goto fail;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "shopstream replay: expected one FILE\n");
        replay_usage(stderr);
        goto fail;
    }
    const char *path = argv[optind];
    sc.props = props;
    rd.f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!rd.f) {
        fprintf(stderr, "shopstream replay: %s: %s\n", path, strerror(errno));
        rc = 1;
        goto fail;
    }
    sink = sp_replay_sink_new(&sc, err, sizeof err);
    if (!sink) {
        fprintf(stderr, "shopstream replay: %s\n", err);
        goto fail;
    }
    rc = 1;
    stop_requested = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    handlers = 1;

    struct stat st;
    long long size = rd.f != stdin && !fstat(fileno(rd.f), &st) ? (long long)st.st_size : 0;
    int bar = !quiet && isatty(STDERR_FILENO);
    double t0 = now_s(), next_bar = t0 + 0.2;
    uint64_t n = 0;
    const uint8_t *data;
    size_t len;
    int is_json, r = 0;
    while (n < limit && !stop_requested && (r = reader_next(&rd, &data, &len, &is_json)) == 1) {
        if (rate > 0) {
            double ahead = t0 + (double)n / rate - now_s();
            if (ahead > 0.001) {
                struct timespec ts = {(time_t)ahead, (long)((ahead - floor(ahead)) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        sp_replay_sink_send(sink, data, len, is_json);
        n++;
        if ((n & 255) == 0) {
            sp_replay_sink_poll(sink);
            if (bar && now_s() >= next_bar) {
                progress(n, now_s() - t0, (long long)ftello(rd.f), size);
                next_bar = now_s() + 0.2;
            }
        }
    }
    if (bar) {
        progress(n, now_s() - t0, (long long)ftello(rd.f), size);
        fputc('\n', stderr);
    }
    if (r < 0) fprintf(stderr, "shopstream replay: %s: %s\n", path, rd.err);
    if (stop_requested) fprintf(stderr, "shopstream replay: interrupted, flushing\n");

    uint64_t delivered, failed;
    int topics;
    sp_replay_sink_flush(sink);
    sp_replay_sink_stats(sink, NULL, &delivered, &failed, &topics);
    double secs = now_s() - t0;
    fprintf(stderr, "replay: %" PRIu64 " records produced to %d topics in %.2f s (%.0f/s)\n",
            delivered, topics, secs, secs > 0 ? delivered / secs : 0.0);
    if (failed) {
        fprintf(stderr, "replay: %" PRIu64 " records failed delivery (first error: %s)\n", failed,
                sp_replay_sink_first_error(sink));
        goto fail;
    }
    rc = r < 0 ? 1 : 0;
    goto fail;
bad_value:
    fprintf(stderr, "shopstream replay: bad value '%s'\n", optarg);
fail:
    if (handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (sink) sp_replay_sink_close(sink);
    if (rd.f && rd.f != stdin) fclose(rd.f);
    free(rd.line);
    free(rd.buf);
    free(props);
    return rc;
}
