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

pid_t sp_t_spawn(char *const argv[], const char *logfile) {
    pid_t pid = fork();
    if (pid == 0) {
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
    char port[16], log[320];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    char *argv[40] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r->dir,
                      "--save", "", "--appendonly", r->appendonly ? "yes" : "no",
                      "--appendfsync", "always", NULL};
    for (int i = 0, n = 13; r->extra && r->extra[i] && n < 39; i++) argv[n++] = (char *)r->extra[i];
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

int sp_t_mock_start(sp_t_mock *m, int partitions) {
    memset(m, 0, sizeof *m);
    const char *dir = sp_t_tmpdir();
    char file[320], log[320], parts[16];
    snprintf(file, sizeof file, "%s/bootstrap", dir);
    snprintf(log, sizeof log, "%s/mock.log", dir);
    snprintf(parts, sizeof parts, "%d", partitions);
    char *argv[] = {(char *)sp_t_bin(), "mock-kafka", "--partitions", parts,
                    "--bootstrap-file", file, NULL};
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
    char *argv[] = {(char *)sp_t_bin(), "dump-state", "--redis-url", (char *)url, NULL};
    int st;
    char *out = sp_t_capture(argv, &st);
    if (st != 0) {
        free(out);
        return NULL;
    }
    return out;
}

int64_t sp_t_committed(const char *url, const char *topic) {
    int port = atoi(strrchr(url, ':') + 1);
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return -1;
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
