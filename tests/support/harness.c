/* Test harness: see harness.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/harness.h"

#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];

static void kill_children(void) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0) kill(children[i], SIGKILL);
}

static void track(pid_t pid) {
    static int registered;
    if (!registered) {
        atexit(kill_children);
        registered = 1;
    }
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] <= 0) {
            children[i] = pid;
            return;
        }
}

static void untrack(pid_t pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid) children[i] = 0;
}

void sp_t_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *sp_t_bin(void) {
    const char *b = getenv("SHOPSTREAM_BIN");
    return b && *b ? b : "./bin/shopstream";
}

int sp_t_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        close(fd);
        return -1;
    }
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

const char *sp_t_tmpdir(void) {
    static char buf[8][256];
    static int next;
    char *d = buf[next++ % 8];
    const char *base = getenv("TMPDIR");
    snprintf(d, 256, "%s/shopstream-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(d);
}

/* A child dies with the test process that spawned it (PR_SET_PDEATHSIG):
 * a test that crashes or is killed at its timeout runs neither its .fini
 * nor atexit, and its redis-servers and processors stayed behind, holding
 * memory and ports for the rest of the run. Only for a spawn from the
 * main thread: the signal comes when the *thread* that forked ends, and a
 * test that restarts redis from a thread of its own (test_store's outage
 * tests) would lose that redis when the thread returns. */
pid_t sp_t_spawn(char *const argv[], const char *logfile) {
    pid_t parent = getpid();
    int main_thread = gettid() == parent;
    pid_t pid = fork();
    if (pid == 0) {
        if (main_thread) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(127); /* it died before the prctl */
        }
        setpgid(0, 0);
        if (logfile) {
            int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pid > 0) track(pid);
    return pid;
}

int sp_t_wait(pid_t pid, int timeout_ms) {
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            untrack(pid);
            if (WIFEXITED(st)) return WEXITSTATUS(st);
            if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
            return -1;
        }
        if (r < 0) return -1;
        if (mono_ms() > end) return -1;
        sp_t_sleep_ms(20);
    }
}

char *sp_t_capture(char *const argv[], int *status) {
    int p[2];
    if (pipe(p)) return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = read(p[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 4096) buf = realloc(buf, cap *= 2);
    }
    close(p[0]);
    buf[len] = '\0';
    int st = 0;
    waitpid(pid, &st, 0);
    if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return buf;
}

static int redis_ping(int port, const char *password) {
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return 0;
    }
    if (password) freeReplyObject(redisCommand(c, "AUTH %s", password));
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

static int redis_launch(sp_t_redis *r) {
    char port[16], log[320], timeout[16];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    snprintf(timeout, sizeof timeout, "%d", r->cluster_node_timeout);
    char *argv[40] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r->dir,
                      "--save", "", "--appendonly", r->appendonly ? "yes" : "no",
                      "--appendfsync", "always", NULL};
    int n = 13;
    if (r->cluster_node_timeout > 0) {
        argv[n++] = "--cluster-enabled";
        argv[n++] = "yes";
        argv[n++] = "--cluster-config-file";
        argv[n++] = "nodes.conf";
        argv[n++] = "--cluster-node-timeout";
        argv[n++] = timeout;
        /* One replica may fail over even if it lagged (tests kill masters). */
        argv[n++] = "--cluster-replica-validity-factor";
        argv[n++] = "0";
    }
    for (int i = 0; r->extra && r->extra[i] && n < 39; i++) argv[n++] = (char *)r->extra[i];
    r->pid = sp_t_spawn(argv, log);
    for (int i = 0; i < 200; i++) {
        if (redis_ping(r->port, r->password)) return 0;
        sp_t_sleep_ms(25);
    }
    return -1;
}

int sp_t_redis_start(sp_t_redis *r, int appendonly) {
    return sp_t_redis_start_args(r, appendonly, NULL, NULL);
}

int sp_t_redis_start_args(sp_t_redis *r, int appendonly, const char *const *extra,
                          const char *ping_password) {
    memset(r, 0, sizeof *r);
    r->appendonly = appendonly;
    r->extra = extra;
    r->password = ping_password;
    snprintf(r->dir, sizeof r->dir, "%s", sp_t_tmpdir());
    r->port = sp_t_free_port();
    snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
    return redis_launch(r);
}

void sp_t_redis_stop(sp_t_redis *r) {
    if (r->pid <= 0) return;
    redisContext *c = redisConnect("127.0.0.1", r->port);
    if (c && !c->err) {
        if (r->password) freeReplyObject(redisCommand(c, "AUTH %s", r->password));
        redisReply *rep = redisCommand(c, r->appendonly ? "SHUTDOWN" : "SHUTDOWN NOSAVE");
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    if (sp_t_wait(r->pid, 10000) < 0) {
        kill(r->pid, SIGKILL);
        sp_t_wait(r->pid, 5000);
    }
    r->pid = 0;
}

int sp_t_redis_restart(sp_t_redis *r) { return redis_launch(r); }

/* ------------------------------------------------------ Redis Cluster */

static redisReply *node_cmd(int port, const char *cmd) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, cmd);
    redisFree(c);
    return r;
}

static int port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A cluster node also listens on its port + 10000 (the cluster bus), so both
 * must be free; both are kept below the kernel's ephemeral range (32768 and
 * up), where an outgoing connection could take the bus port meanwhile. */
static int cluster_free_port(void) {
    static unsigned seed;
    if (!seed) seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (int i = 0; i < 1000; i++) {
        int port = 10000 + (int)(rand_r(&seed) % 12000); /* both below 32768 */
        if (port_free(port) && port_free(port + 10000)) return port;
    }
    return -1;
}

int sp_t_cluster_start(sp_t_cluster *c, int masters, int replicas, int node_timeout_ms) {
    memset(c, 0, sizeof *c);
    c->n = masters * (1 + replicas);
    if (c->n > SP_T_CLUSTER_MAX) return -1;
    size_t len = 0;
    for (int i = 0; i < c->n; i++) {
        sp_t_redis *r = &c->node[i];
        snprintf(r->dir, sizeof r->dir, "%s", sp_t_tmpdir());
        r->port = cluster_free_port();
        r->cluster_node_timeout = node_timeout_ms;
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
        if (redis_launch(r)) {
            c->n = i + 1;
            sp_t_cluster_stop(c);
            return -1;
        }
        len += (size_t)snprintf(c->seeds + len, sizeof c->seeds - len, "%s127.0.0.1:%d",
                                i ? "," : "", r->port);
    }
    snprintf(c->url, sizeof c->url, "cluster:%s", c->seeds);
    char *argv[4 + SP_T_CLUSTER_MAX + 4] = {"redis-cli", "--cluster", "create"};
    char addrs[SP_T_CLUSTER_MAX][32], reps[8];
    int a = 3;
    for (int i = 0; i < c->n; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", c->node[i].port);
        argv[a++] = addrs[i];
    }
    snprintf(reps, sizeof reps, "%d", replicas);
    argv[a++] = "--cluster-replicas";
    argv[a++] = reps;
    argv[a++] = "--cluster-yes";
    int st;
    free(sp_t_capture(argv, &st));
    if (st != 0 || sp_t_cluster_wait_ok(c, 30000)) {
        sp_t_cluster_stop(c); /* nothing left running behind a failed start */
        return -1;
    }
    return 0;
}

void sp_t_cluster_stop(sp_t_cluster *c) {
    for (int i = 0; i < c->n; i++) sp_t_redis_stop(&c->node[i]);
}

/* "start-end:port ..." of CLUSTER SLOTS, sorted by start: equal strings mean
 * two nodes agree on who owns what. */
static int slots_signature(int port, char *out, size_t outlen) {
    redisReply *r = node_cmd(port, "CLUSTER SLOTS");
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r) freeReplyObject(r);
        return -1;
    }
    long long owner[16384];
    for (int s = 0; s < 16384; s++) owner[s] = -1;
    for (size_t k = 0; k < r->elements; k++) {
        redisReply *e = r->element[k];
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            owner[s] = e->element[2]->element[1]->integer;
    }
    freeReplyObject(r);
    size_t len = 0;
    for (int s = 0; s < 16384; s++) {
        if (owner[s] < 0) return -1;
        if (!s || owner[s] != owner[s - 1])
            len += (size_t)snprintf(out + len, outlen > len ? outlen - len : 0, "%d:%lld ", s,
                                    owner[s]);
    }
    return len < outlen ? 0 : -1;
}

int sp_t_cluster_wait_ok(sp_t_cluster *c, int timeout_ms) {
    int64_t end = mono_ms() + timeout_ms;
    static char first[65536], other[65536];
    while (mono_ms() < end) {
        int ok = 1, have = 0;
        for (int i = 0; i < c->n && ok; i++) {
            if (c->node[i].pid <= 0) continue;
            redisReply *r = node_cmd(c->node[i].port, "CLUSTER INFO");
            ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
            if (r) freeReplyObject(r);
            if (!ok) break;
            if (slots_signature(c->node[i].port, have ? other : first, sizeof first)) ok = 0;
            else if (have && strcmp(first, other)) ok = 0;
            have = 1;
        }
        if (ok && have) return 0;
        sp_t_sleep_ms(100);
    }
    return -1;
}

int sp_t_cluster_node_id(sp_t_cluster *c, int i, char *id) {
    redisReply *r = node_cmd(c->node[i].port, "CLUSTER MYID");
    int ok = r && r->type == REDIS_REPLY_STRING && r->len == 40;
    if (ok) memcpy(id, r->str, 41);
    if (r) freeReplyObject(r);
    return ok ? 0 : -1;
}

int sp_t_cluster_master_of(sp_t_cluster *c, const char *key) {
    for (int i = 0; i < c->n; i++) {
        if (c->node[i].pid <= 0) continue;
        char cmd[300];
        snprintf(cmd, sizeof cmd, "CLUSTER KEYSLOT %s", key);
        redisReply *r = node_cmd(c->node[i].port, cmd);
        if (!r || r->type != REDIS_REPLY_INTEGER) {
            if (r) freeReplyObject(r);
            continue;
        }
        long long slot = r->integer;
        freeReplyObject(r);
        r = node_cmd(c->node[i].port, "CLUSTER SLOTS");
        long long port = -1;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            redisReply *e = r->element[k];
            if (slot >= e->element[0]->integer && slot <= e->element[1]->integer)
                port = e->element[2]->element[1]->integer;
        }
        if (r) freeReplyObject(r);
        for (int j = 0; j < c->n; j++)
            if (c->node[j].port == port) return j;
        return -1;
    }
    return -1;
}

int sp_t_mock_start(sp_t_mock *m, int partitions) { return sp_t_mock_start_rtt(m, partitions, 0); }

int sp_t_mock_start_rtt(sp_t_mock *m, int partitions, int rtt_ms) {
    memset(m, 0, sizeof *m);
    const char *dir = sp_t_tmpdir();
    char file[320], log[320], parts[16], rtt[16];
    snprintf(file, sizeof file, "%s/bootstrap", dir);
    snprintf(log, sizeof log, "%s/mock.log", dir);
    snprintf(parts, sizeof parts, "%d", partitions);
    snprintf(rtt, sizeof rtt, "%d", rtt_ms);
    char *argv[] = {(char *)sp_t_bin(), "mock-kafka", "--partitions", parts,
                    "--bootstrap-file", file, "--rtt-ms", rtt, NULL};
    m->pid = sp_t_spawn(argv, log);
    for (int i = 0; i < 300; i++) {
        size_t len;
        char *s = sp_t_read_file(file, &len);
        if (s && len > 1 && s[len - 1] == '\n') {
            s[len - 1] = '\0';
            snprintf(m->bootstrap, sizeof m->bootstrap, "%s", s);
            free(s);
            return 0;
        }
        free(s);
        sp_t_sleep_ms(25);
    }
    return -1;
}

void sp_t_mock_stop(sp_t_mock *m) {
    if (m->pid <= 0) return;
    kill(m->pid, SIGTERM);
    if (sp_t_wait(m->pid, 10000) < 0) {
        kill(m->pid, SIGKILL);
        sp_t_wait(m->pid, 5000);
    }
    m->pid = 0;
}

char *sp_t_dump(const char *url) {
    int cluster = !strncmp(url, "cluster:", 8);
    char *argv[] = {(char *)sp_t_bin(), "dump-state", cluster ? "--redis-cluster" : "--redis-url",
                    (char *)(cluster ? url + 8 : url), NULL};
    int st;
    char *out = sp_t_capture(argv, &st);
    if (st != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int64_t committed_at(int port, const char *topic, int masters_only);

int64_t sp_t_committed(const char *url, const char *topic) {
    if (strncmp(url, "cluster:", 8)) return committed_at(atoi(strrchr(url, ':') + 1), topic, 0);
    /* Every node of the seed list that is up and a master. */
    int64_t sum = 0;
    for (const char *p = url + 8; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        int64_t n = committed_at(atoi(strchr(p, ':') + 1), topic, 1);
        if (n > 0) sum += n;
    }
    return sum;
}

static int64_t committed_at(int port, const char *topic, int masters_only) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    if (masters_only) {
        redisReply *role = redisCommand(c, "ROLE");
        int master = role && role->type == REDIS_REPLY_ARRAY && role->elements &&
                     !strcmp(role->element[0]->str, "master");
        if (role) freeReplyObject(role);
        if (!master) {
            redisFree(c);
            return 0;
        }
    }
    int64_t sum = 0;
    redisReply *keys = redisCommand(c, "KEYS {p*}:meta");
    for (size_t i = 0; keys && i < keys->elements; i++) {
        redisReply *v = redisCommand(c, "HGET %s off:%s", keys->element[i]->str, topic);
        if (v && v->type == REDIS_REPLY_STRING) sum += atoll(v->str);
        if (v) freeReplyObject(v);
    }
    if (keys) freeReplyObject(keys);
    redisFree(c);
    return sum;
}

int sp_t_wait_committed(const char *url, const char *const *topics, const int64_t *want, int n,
                        int timeout_ms) {
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        int ok = 1;
        for (int i = 0; i < n && ok; i++) ok = sp_t_committed(url, topics[i]) == want[i];
        if (ok) return 0;
        sp_t_sleep_ms(100);
    }
    return -1;
}

char *sp_t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, n = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 4096) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

const char *sp_t_first_diff(const char *got, const char *want) {
    static char msg[512];
    const char *g = got ? got : "", *w = want ? want : "";
    while (*g && *g == *w) { /* to the start of the first differing line */
        const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
        if (!ge || !we || ge - g != we - w || memcmp(g, w, (size_t)(ge - g))) break;
        g = ge + 1;
        w = we + 1;
    }
    int gl = (int)(strchr(g, '\n') ? strchr(g, '\n') - g : (long)strlen(g));
    int wl = (int)(strchr(w, '\n') ? strchr(w, '\n') - w : (long)strlen(w));
    snprintf(msg, sizeof msg, "got '%.*s' want '%.*s'", gl > 200 ? 200 : gl, g,
             wl > 200 ? 200 : wl, w);
    return msg;
}

char *sp_t_tail_lines(const char *path, int n) {
    char *text = sp_t_read_file(path, NULL);
    if (!text) return strdup("(no log)");
    const char *tail = text + strlen(text);
    if (tail > text && tail[-1] == '\n') tail--;
    for (int lines = 0; tail > text; tail--)
        if (tail[-1] == '\n' && ++lines == n) break;
    char *out = strdup(tail);
    free(text);
    return out;
}
