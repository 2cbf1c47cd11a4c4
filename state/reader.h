#ifndef STATE_READER_H
#define STATE_READER_H

/* A read-side Redis connection for the HTTP thread (/metrics, /healthz,
 * /api/...): never the consumer loop's connection. Each call tries once,
 * reconnecting first if the last call lost the connection, and returns
 * SP_ERR_RETRY when Redis is unreachable -- a reader answers "unavailable"
 * rather than waiting the way the store does.
 *
 * @locality one thread: the HTTP server's (it serves one request at a time). */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_reader sp_reader;

/* Parses the URL (as redis.url); connects lazily. NULL with err on a bad URL. */
sp_reader *sp_reader_new(const char *url, int timeout_ms, char *err, size_t errlen);
/* The same, reaching Redis the way the store does: the Redis Cluster of
 * `cluster` (seed nodes, as redis.cluster) when it is set, else url; user
 * and password for cluster nodes and for a URL that carries none. In cluster
 * mode every call is routed by key (state/cluster.h) and scans visit every
 * master. */
sp_reader *sp_reader_new_conf(const char *url, const char *cluster, const char *user,
                              const char *password, int timeout_ms, char *err, size_t errlen);
void sp_reader_destroy(sp_reader *r);

/* PING. On failure the reason goes to err. */
int sp_reader_ping(sp_reader *r, char *err, size_t errlen);

/* Calls fn(ctx, i, field, value) for each field of each of the n hashes,
 * loaded in one pipelined round trip (i is the key's index). */
int sp_reader_hgetall(sp_reader *r, size_t n, const char *const *keys,
                      void (*fn)(void *ctx, size_t i, const char *field, const char *value),
                      void *ctx);

/* Members of a sorted set with lo <= score <= hi, ascending. */
int sp_reader_zrange_score(sp_reader *r, const char *key, int64_t lo, int64_t hi,
                           void (*fn)(void *ctx, const char *member, double score), void *ctx);

/* PFCOUNT of n keys (which must share a slot in Redis Cluster): *out. */
int sp_reader_pfcount(sp_reader *r, size_t n, const char *const *keys, long long *out);

/* PFCOUNT of each key on its own (outs[i]), pipelined in one round trip. */
int sp_reader_pfcount_each(sp_reader *r, size_t n, const char *const *keys, long long *outs);

/* Every key matching a glob pattern (SCAN; a key may come twice). */
int sp_reader_scan(sp_reader *r, const char *pattern,
                   void (*fn)(void *ctx, const char *key), void *ctx);

/* Elements start..stop of a list. */
int sp_reader_lrange(sp_reader *r, const char *key, long start, long stop,
                     void (*fn)(void *ctx, const char *value, size_t len), void *ctx);

#endif
