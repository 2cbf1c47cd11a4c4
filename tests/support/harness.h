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
    int cluster_node_timeout; /* > 0: a Redis Cluster node (--cluster-enabled yes) */
    char dir[256];
    char url[128];   /* redis://127.0.0.1:PORT */
    const char *const *extra;
    const char *password;
} sp_t_redis;

/* A Redis Cluster of real redis-server nodes on loopback, made with
 * `redis-cli --cluster create`. Its url, "cluster:host:port,...", is
 * accepted wherever the helpers below take a Redis URL. */
#define SP_T_CLUSTER_MAX 8
typedef struct sp_t_cluster {
    int n;
    sp_t_redis node[SP_T_CLUSTER_MAX];
    char seeds[512];  /* every node, "127.0.0.1:P1,127.0.0.1:P2,..." */
    char url[530];    /* "cluster:" seeds */
} sp_t_cluster;

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

/* Starts masters * (1 + replicas) nodes and creates the cluster; returns
 * once every node reports cluster_state:ok. node_timeout_ms is
 * cluster-node-timeout (how soon a dead master's replica takes over). */
int sp_t_cluster_start(sp_t_cluster *c, int masters, int replicas, int node_timeout_ms);
void sp_t_cluster_stop(sp_t_cluster *c);
/* Index of the node that is master of key's slot, as node `asking` sees it
 * (-1: asking = first reachable node). -1 if unknown. */
int sp_t_cluster_master_of(sp_t_cluster *c, const char *key);
/* Node `i`'s cluster node id (40 hex digits) into id[41]; 0 or -1. */
int sp_t_cluster_node_id(sp_t_cluster *c, int i, char *id);
/* Polls until every running node says cluster_state:ok and agrees on the
 * owner of every slot. 0, or -1 on timeout. */
int sp_t_cluster_wait_ok(sp_t_cluster *c, int timeout_ms);

int sp_t_mock_start(sp_t_mock *m, int partitions);
/* The same with every broker response delayed by rtt_ms (mock-kafka --rtt-ms). */
int sp_t_mock_start_rtt(sp_t_mock *m, int partitions, int rtt_ms);
void sp_t_mock_stop(sp_t_mock *m);

/* Spawns argv (argv[0] is looked up as given), stdout+stderr to logfile
 * (appended). Returns the pid. */
pid_t sp_t_spawn(char *const argv[], const char *logfile);
/* Waits up to timeout_ms; returns the exit status, 128+signal, or -1 on
 * timeout (the child is left running). */
int sp_t_wait(pid_t pid, int timeout_ms);
/* Runs argv to completion and returns its stdout (malloc'd), or NULL. */
char *sp_t_capture(char *const argv[], int *status);
/* `shopstream dump-state` of a Redis URL (or a cluster's url). */
char *sp_t_dump(const char *url);
/* Sum over every {p*}:meta of field off:<topic> (over every master of a
 * cluster url; -1 if a single server is unreachable). */
int64_t sp_t_committed(const char *url, const char *topic);
/* Polls until sp_t_committed(url, topic[i]) == want[i] for all i. Returns 0,
 * or -1 on timeout. */
int sp_t_wait_committed(const char *url, const char *const *topics, const int64_t *want, int n,
                        int timeout_ms);
void sp_t_sleep_ms(int ms);
char *sp_t_read_file(const char *path, size_t *len);

/* The first line where two dumps differ, as "got '<line>' want '<line>'",
 * in a static buffer: for assertion messages, so that a rare failure says
 * which key moved. */
const char *sp_t_first_diff(const char *got, const char *want);

/* The last n lines of a file (a processor's log), malloc'd; "(no log)" when
 * it cannot be read. */
char *sp_t_tail_lines(const char *path, int n);

#endif
