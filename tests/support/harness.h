#ifndef TESTS_SUPPORT_HARNESS_H
#define TESTS_SUPPORT_HARNESS_H

/* Test harness: real redis-server and the mock Kafka cluster as child
 * processes on free loopback ports, the shopstream binary as a child, and
 * small helpers to wait and compare. Everything started here is stopped by
 * the matching _stop, and killed at exit if a test aborts. */
#include <stdint.h>
#include <sys/types.h>

typedef struct sp_t_redis {
    pid_t pid;
    int port;
    int appendonly;
    char dir[256];
    char url[128];   /* redis://127.0.0.1:PORT */
    const char *const *extra;
    const char *password;
} sp_t_redis;

typedef struct sp_t_mock {
    pid_t pid;
    char bootstrap[128];
} sp_t_mock;

/* The binary under test: $SHOPSTREAM_BIN, else ./bin/shopstream. */
const char *sp_t_bin(void);
int sp_t_free_port(void);
/* A fresh temporary directory (created). */
const char *sp_t_tmpdir(void);

int sp_t_redis_start(sp_t_redis *r, int appendonly);
/* The same with extra redis-server arguments (NULL-terminated), e.g.
 * "--requirepass", "pw". ping_password is used to see that it is up. */
int sp_t_redis_start_args(sp_t_redis *r, int appendonly, const char *const *extra,
                          const char *ping_password);
/* Graceful SHUTDOWN (data kept on disk when appendonly), then wait. */
void sp_t_redis_stop(sp_t_redis *r);
/* Starts again on the same port and directory. */
int sp_t_redis_restart(sp_t_redis *r);

int sp_t_mock_start(sp_t_mock *m, int partitions);
void sp_t_mock_stop(sp_t_mock *m);

/* Spawns argv (argv[0] is looked up as given), stdout+stderr to logfile
 * (appended). Returns the pid. */
pid_t sp_t_spawn(char *const argv[], const char *logfile);
/* Waits up to timeout_ms; returns the exit status, 128+signal, or -1 on
 * timeout (the child is left running). */
int sp_t_wait(pid_t pid, int timeout_ms);
/* Runs argv to completion and returns its stdout (malloc'd), or NULL. */
char *sp_t_capture(char *const argv[], int *status);
/* `shopstream dump-state` of a Redis URL. */
char *sp_t_dump(const char *url);
/* Sum over every {p*}:meta of field off:<topic>. */
int64_t sp_t_committed(const char *url, const char *topic);
/* Polls until sp_t_committed(url, topic[i]) == want[i] for all i. Returns 0,
 * or -1 on timeout. */
int sp_t_wait_committed(const char *url, const char *const *topics, const int64_t *want, int n,
                        int timeout_ms);
void sp_t_sleep_ms(int ms);
char *sp_t_read_file(const char *path, size_t *len);

#endif
