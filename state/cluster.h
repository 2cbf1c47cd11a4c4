#ifndef STATE_CLUSTER_H
#define STATE_CLUSTER_H

/* A Redis Cluster client on top of hiredis 0.14, which has none.
 *
 * It follows the Redis Cluster specification: a key's slot is CRC16 of the
 * key (or of its first non-empty {hash tag}) mod 16384; the slot map comes
 * from CLUSTER SLOTS; a MOVED reply refreshes the map and resends the command
 * to the named node; an ASK reply resends it once to the named node, preceded
 * by ASKING, without touching the map; TRYAGAIN (a multi-key command during a
 * slot migration) and CLUSTERDOWN (a failover in progress) are retried after
 * a backoff; a node that cannot be reached makes the client refresh the map
 * from any other reachable node (the seeds included) and retry.
 *
 * One connection per master node. sp_cluster_pipeline() groups the commands
 * by the node that owns their key, writes every node's share before reading
 * any reply, so a batch costs one round trip per node, and those round trips
 * overlap. A transaction, WATCH through EXEC, travels whole to the node of
 * the WATCHed key and is sent again whole if any part of it was redirected
 * or unanswered; an ASK for one of its parts (a slot half migrated) is
 * waited out with the backoff, as TRYAGAIN is, rather than followed.
 *
 * Retries are unbounded but abortable, as in the single-node store: while no
 * node is reachable every call waits with exponential backoff (capped at 2 s)
 * until it succeeds or *abort_flag is set (SP_ERR_RETRY). A command may thus
 * be sent more than once; callers send only idempotent ones.
 *
 * @locality one thread: a cluster client belongs to one store. */
#include <hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define SP_CLUSTER_SLOTS 16384

typedef struct sp_cluster sp_cluster;

typedef struct sp_cluster_conf {
    const char *seeds;        /* "host:port,host:port,...": any nodes of the cluster */
    const char *user;         /* ACL user, or NULL/"" for the default user */
    const char *password;     /* NULL/"" for none; never logged */
    int timeout_ms;           /* connect and command timeout */
    volatile int *abort_flag; /* set by a signal handler: stop retrying */
} sp_cluster_conf;

/* CRC16-CCITT (XModem) as the specification defines it. */
uint16_t sp_cluster_crc16(const char *buf, size_t len);

/* The slot of a key: only the part between the first '{' and the next '}'
 * is hashed when that part is not empty. */
unsigned sp_cluster_keyslot(const char *key, size_t len);

/* Connects to a seed and loads the slot map. Returns NULL with the reason in
 * err for a bad seed list, a failed AUTH, or when aborted while no seed was
 * reachable. */
sp_cluster *sp_cluster_new(const sp_cluster_conf *conf, char *err, size_t errlen);
void sp_cluster_destroy(sp_cluster *cl);

/* Sends n commands and stores their replies in replies[] (the caller frees
 * them with freeReplyObject). Each command goes to the node owning the slot
 * of its key: argv[3] for EVAL/EVALSHA (the first of KEYS), argv[1]
 * otherwise. lens may be NULL (C strings). nodes_out, when not NULL, receives for each command the node
 * that finally executed it (for sp_cluster_wait). Redirections and
 * connection failures are handled as described above; error replies that are
 * not redirections are returned as replies. Returns 0, SP_ERR_RETRY
 * (aborted) or SP_ERR_FATAL (AUTH refused); on failure no replies are
 * returned. */
int sp_cluster_pipeline(sp_cluster *cl, size_t n, int *argcs, const char ***argvs,
                        size_t **lens, redisReply **replies, int *nodes_out);

/* WAIT numreplicas timeout on node `node` (from nodes_out): how many replicas
 * acknowledged every write this client sent to that node. Returns 0 with
 * *acked set, or SP_ERR_RETRY when the node cannot be reached (the caller
 * resends its writes, then waits again). timeout_ms must be below the
 * command timeout. */
int sp_cluster_wait(sp_cluster *cl, int node, int numreplicas, int timeout_ms, long long *acked);

/* Sends one command to every master that owns slots (SCRIPT LOAD, whose
 * effect is per node and is not replicated) and returns one reply: the first
 * error reply if any master refused, else the last master's reply. Retries
 * like sp_cluster_pipeline; the command must be idempotent. */
int sp_cluster_broadcast(sp_cluster *cl, int argc, const char **argv, const size_t *lens,
                         redisReply **reply);

/* Calls fn with a connection to each master that owns slots (for SCAN over
 * the whole keyspace). Stops at and returns the first non-zero return of fn,
 * or SP_ERR_RETRY when a master cannot be reached. */
int sp_cluster_each_master(sp_cluster *cl, int (*fn)(void *ctx, redisContext *c, const char *addr),
                           void *ctx);

/* Counters, for logs and tests. */
typedef struct sp_cluster_stats {
    uint64_t moved, ask, tryagain, clusterdown, refreshes, conn_errors;
} sp_cluster_stats;
void sp_cluster_get_stats(const sp_cluster *cl, sp_cluster_stats *out);

#endif
