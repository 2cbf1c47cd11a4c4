/* Test harness around deploy/local/kafka.sh: start, restart and stop a real
 * Apache Kafka broker, and create topics with the admin API. See
 * kafka_broker.h. */
#include "tests/support/kafka_broker.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "stream/admin.h"
#include "stream/error.h"

struct sp_test_broker {
    char dir[256];
    char bootstrap[64];
    int owned; /* started by this process: _stop stops it and removes dir */
};

/* Where kafka.sh is: $SHOPSTREAM_KAFKA_SH, ./deploy/local/kafka.sh, or
 * beside the binary named by $SHOPSTREAM_BIN (bin/../deploy/local). */
static int script_path(char *out, size_t outlen) {
    const char *env = getenv("SHOPSTREAM_KAFKA_SH");
    if (env && *env) {
        snprintf(out, outlen, "%s", env);
        return access(out, R_OK) ? -1 : 0;
    }
    snprintf(out, outlen, "deploy/local/kafka.sh");
    if (!access(out, R_OK)) return 0;
    const char *bin = getenv("SHOPSTREAM_BIN");
    if (bin && *bin) {
        char *copy = sp_xstrdup(bin);
        snprintf(out, outlen, "%s/../deploy/local/kafka.sh", dirname(copy));
        free(copy);
        if (!access(out, R_OK)) return 0;
    }
    return -1;
}

/* A running `bash kafka.sh ...`: its pid and the read end of its stdout. */
struct script_run {
    pid_t pid;
    int fd;
};

/* Starts `bash kafka.sh <args>` with KAFKA_SASL set to sasl (if any) in the
 * child only, and with C1-only, serial-GC JVM options unless the caller set
 * KAFKA_JVM_OPTS: a test broker is short-lived, and on a small shared
 * machine that starts it up to a third faster. Its stderr (progress, log
 * tails on failure) goes to ours. Returns 0, or -1 with out filled. */
static int script_begin(const char *const *args, const char *sasl, struct script_run *run,
                        char *out, size_t outlen) {
    char path[512];
    int fds[2];
    if (script_path(path, sizeof path)) {
        snprintf(out, outlen, "deploy/local/kafka.sh not found (set SHOPSTREAM_KAFKA_SH)");
        return -1;
    }
    if (pipe(fds)) {
        snprintf(out, outlen, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(out, outlen, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        const char *argv[16] = {"bash", path};
        size_t n = 2;
        for (size_t i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
        argv[n] = NULL;
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (sasl) setenv("KAFKA_SASL", sasl, 1);
        setenv("KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC", 0);
        execvp("bash", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    run->pid = pid;
    run->fd = fds[0];
    return 0;
}

/* Collects the script's stdout into out and waits for it: its exit status,
 * or -1 if it died of a signal. */
static int script_end(struct script_run *run, char *out, size_t outlen) {
    size_t len = 0;
    ssize_t r;
    char sink[256];
    while ((r = read(run->fd, len + 1 < outlen ? out + len : sink,
                     len + 1 < outlen ? outlen - 1 - len : sizeof sink)) > 0 ||
           (r < 0 && errno == EINTR))
        if (r > 0 && len + 1 < outlen) len += (size_t)r;
    if (outlen) out[len < outlen ? len : outlen - 1] = '\0';
    close(run->fd);
    int status;
    while (waitpid(run->pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run_script(const char *const *args, const char *sasl, char *out, size_t outlen) {
    struct script_run run;
    if (script_begin(args, sasl, &run, out, outlen)) return -1;
    return script_end(&run, out, outlen);
}

int sp_test_broker_available(char *why, size_t whylen) {
    char out[256];
    const char *args[] = {"available", NULL};
    if (run_script(args, NULL, out, sizeof out) == 0) return 1;
    out[strcspn(out, "\n")] = '\0';
    if (why)
        snprintf(why, whylen, "the real-Kafka integration tests cannot run here: %s",
                 out[0] ? out : "deploy/local/kafka.sh available failed");
    return 0;
}

/* Finds "bootstrap: HOST:PORT" in the script's output (its last line). */
static int parse_bootstrap(const char *out, char *bootstrap, size_t len) {
    const char *p = strstr(out, "bootstrap: ");
    if (!p) return -1;
    p += strlen("bootstrap: ");
    size_t n = strcspn(p, " \r\n");
    if (n == 0 || n >= len) return -1;
    memcpy(bootstrap, p, n);
    bootstrap[n] = '\0';
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int sp_test_brokers_start(size_t n, const char *const *sasl, sp_test_broker **out, char *err,
                          size_t errlen) {
    struct script_run *runs = sp_xcalloc(n, sizeof *runs);
    char pid[32], buf[4096];
    const char *tmp = getenv("TMPDIR");
    size_t launched = 0;
    int rc = 0;

    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    for (; launched < n; launched++) {
        struct sp_test_broker *b = sp_xcalloc(1, sizeof *b);
        out[launched] = b;
        b->owned = 1;
        snprintf(b->dir, sizeof b->dir, "%s/sp-kafka-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(b->dir)) {
            snprintf(err, errlen, "mkdtemp %s: %s", b->dir, strerror(errno));
            b->dir[0] = '\0';
            rc = -1;
            break;
        }
        const char *args[] = {"start", "--dir", b->dir, "--watch-pid", pid, NULL};
        if (script_begin(args, sasl ? sasl[launched] : NULL, &runs[launched], err, errlen)) {
            rc = -1;
            break;
        }
    }
    for (size_t i = 0; i < launched; i++) {
        int st = script_end(&runs[i], buf, sizeof buf);
        if (rc == 0 && (st != 0 || parse_bootstrap(buf, out[i]->bootstrap,
                                                   sizeof out[i]->bootstrap))) {
            snprintf(err, errlen,
                     "deploy/local/kafka.sh start failed (exit %d); its output is above, the "
                     "broker log in %s/kafka.log",
                     st, out[i]->dir);
            setenv("SP_TEST_KEEP_KAFKA", "1", 1); /* keep the log for a post-mortem */
            rc = -1;
        }
    }
    if (rc) {
        for (size_t i = 0; i < n; i++) {
            sp_test_broker_stop(out[i]);
            out[i] = NULL;
        }
    }
    free(runs);
    return rc;
}

sp_test_broker *sp_test_broker_start(const char *sasl_user_pass, char *err, size_t errlen) {
    sp_test_broker *b;
    return sp_test_brokers_start(1, &sasl_user_pass, &b, err, errlen) ? NULL : b;
}

const char *sp_test_broker_bootstrap(const sp_test_broker *b) { return b->bootstrap; }

const char *sp_test_broker_dir(const sp_test_broker *b) { return b->dir; }

int sp_test_broker_restart(sp_test_broker *b, char *err, size_t errlen) {
    char out[4096], bootstrap[64];
    const char *stop[] = {"stop", "--dir", b->dir, NULL};
    const char *start[] = {"start", "--dir", b->dir, NULL};
    int rc = run_script(stop, NULL, out, sizeof out);
    if (rc != 0) {
        snprintf(err, errlen, "kafka.sh stop failed (exit %d)", rc);
        return -1;
    }
    rc = run_script(start, NULL, out, sizeof out);
    if (rc != 0 || parse_bootstrap(out, bootstrap, sizeof bootstrap)) {
        snprintf(err, errlen, "kafka.sh restart failed (exit %d); log in %s/kafka.log", rc,
                 b->dir);
        return -1;
    }
    if (strcmp(bootstrap, b->bootstrap)) {
        snprintf(err, errlen, "broker came back on %s, not %s", bootstrap, b->bootstrap);
        return -1;
    }
    return 0;
}

void sp_test_broker_stop(sp_test_broker *b) {
    if (!b) return;
    if (b->owned && b->dir[0]) {
        char out[1024];
        const char *args[] = {"stop", "--dir", b->dir, NULL};
        run_script(args, NULL, out, sizeof out);
        if (!getenv("SP_TEST_KEEP_KAFKA")) nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(b);
}

/* SP_TEST_KAFKA_<NAME>_<WHAT>, with name upper-cased. */
static void env_name(char *out, size_t len, const char *name, const char *what) {
    int n = snprintf(out, len, "SP_TEST_KAFKA_%s_%s", name, what);
    for (int i = 0; i < n && (size_t)i < len; i++) out[i] = (char)toupper((unsigned char)out[i]);
}

void sp_test_broker_export(const sp_test_broker *b, const char *name) {
    char key[128];
    env_name(key, sizeof key, name, "BOOTSTRAP");
    setenv(key, b->bootstrap, 1);
    env_name(key, sizeof key, name, "DIR");
    setenv(key, b->dir, 1);
}

sp_test_broker *sp_test_broker_from_env(const char *name) {
    char key[128];
    env_name(key, sizeof key, name, "BOOTSTRAP");
    const char *bs = getenv(key);
    env_name(key, sizeof key, name, "DIR");
    const char *dir = getenv(key);
    if (!bs || !dir) return NULL;
    struct sp_test_broker *b = sp_xcalloc(1, sizeof *b);
    snprintf(b->bootstrap, sizeof b->bootstrap, "%s", bs);
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    return b;
}

int sp_test_create_topics(const char *bootstrap, const char *const *names, size_t n,
                          int partitions, const char *const *extra_conf, char *err,
                          size_t errlen) {
    size_t nconf = 0;
    while (extra_conf && extra_conf[nconf]) nconf++;
    sp_admin *a = sp_admin_new(bootstrap, extra_conf, nconf, 15000, err, errlen);
    if (!a) return -1;
    int rc = sp_admin_create_topics(a, names, n, partitions, 1, err, errlen);
    sp_admin_destroy(a);
    return rc ? -1 : 0;
}

long sp_test_delete_records(const char *bootstrap, const char *topic, int partitions,
                            int64_t before, char *err, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, errlen);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!rk) return -1;
    long gone = 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (e) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, p, rd_kafka_err2str(e));
            gone = -1;
            goto out;
        }
        int64_t to = before < hi ? before : hi;
        if (to > lo) gone += (long)(to - lo);
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = to;
    }
    rd_kafka_DeleteRecords_t *del = rd_kafka_DeleteRecords_new(l);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteRecords(rk, &del, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev || rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "DeleteRecords: %s", ev ? rd_kafka_event_error_string(ev) : "timeout");
        gone = -1;
    } else {
        const rd_kafka_topic_partition_list_t *res =
            rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
        for (int i = 0; res && i < res->cnt && gone >= 0; i++)
            if (res->elems[i].err) {
                snprintf(err, errlen, "DeleteRecords %s [%d]: %s", topic,
                         (int)res->elems[i].partition, rd_kafka_err2str(res->elems[i].err));
                gone = -1;
            }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteRecords_destroy(del);
out:
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return gone;
}
