#ifndef STATE_STORE_H
#define STATE_STORE_H

/* The Redis state store of DESIGN.md.
 *
 * Every per-user key lives under its Kafka partition's hash tag, "{p<n>}:",
 * so one partition's state is one Redis Cluster slot and one transaction can
 * write it. The store keeps a read-through cache of Redis hashes (sp_obj);
 * operators change cached objects during a batch, and sp_store_commit() writes
 * the dirty fields of one partition together with that partition's next input
 * offsets in one MULTI/EXEC transaction, WATCHing the partition's meta hash
 * behind a fence check of its epoch (see fence_lua in store.c).
 * A state change and the offset that produced it therefore land together or
 * not at all.
 *
 * Values written are absolute (HSET of the new value, never HINCRBY), so
 * running the same commit twice -- as happens when a reply is lost and the
 * call is retried -- changes nothing.
 *
 * With conf.cluster set, every command is routed to the Redis Cluster master
 * that owns its key's slot (state/cluster.c): a partition's commit goes to
 * the node owning "{p<n>}", and a prefetch costs one round trip per node.
 *
 * Redis being unreachable is not an error here: every call retries with
 * exponential backoff (capped at 2 s) until it succeeds or the abort flag
 * given to sp_store_new() is set, in which case it returns SP_ERR_RETRY and
 * the caller must stop without committing.
 *
 * @locality one thread: a store belongs to one consumer loop. */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_store sp_store;
typedef struct sp_obj sp_obj;

typedef struct sp_store_conf {
    const char *url;          /* redis://[user:pass@]host:port[/db] | unix:///path[?db=N] */
    int timeout_ms;
    int64_t max_entries;      /* cache bound; clean entries are evicted above it */
    volatile int *abort_flag; /* set by a signal handler: stop retrying */
    /* Redis Cluster: seed nodes "host:port,..." (url is then ignored); NULL
     * or "" for the single-node store. See state/cluster.h. */
    const char *cluster;
    /* Credentials for cluster nodes, and for url when it carries none. */
    const char *user, *password;
    /* > 0: a commit counts only once this many replicas acknowledged it
     * (WAIT); the commit is resent until they do. */
    int wait_replicas;
} sp_store_conf;

/* Parses the URL and connects (retrying as described above; returns NULL
 * with the reason in err only for a bad URL or when aborted). */
sp_store *sp_store_new(const sp_store_conf *conf, char *err, size_t errlen);
void sp_store_destroy(sp_store *st);

/* Takes ownership of partition `part`: bumps {p<n>}:meta epoch (fencing any
 * earlier owner) and reads the next offset of each topic; offsets[i] is -1
 * when nothing was ever committed for topics[i]. */
int sp_store_assign(sp_store *st, int32_t part, const char *const *topics, int ntopics,
                    int64_t *offsets);

/* Gives up partition `part`: drops its cached objects and pending commands.
 * Call after its last commit. */
void sp_store_revoke(sp_store *st, int32_t part);
int sp_store_owns(const sp_store *st, int32_t part);

/* Queues the object "{p<part>}:<suffix>" for sp_store_prefetch() and
 * returns its cache entry, which may not be loaded yet (sp_store_load). The
 * pointer stays valid until the end of the batch, as sp_store_get's: a
 * caller that keeps it for the same event's process saves a second lookup
 * of the key (operators/operator.h, sp_op_want). */
sp_obj *sp_store_want(sp_store *st, int32_t part, const char *suffix);

/* Loads an entry from sp_store_want if the batch's prefetch did not (a
 * round trip of its own). */
int sp_store_load(sp_store *st, sp_obj *o);

/* Which batch this is: changes at every sp_store_end_batch and
 * sp_store_revoke, after which entries of an earlier batch may be gone. */
uint64_t sp_store_batch(const sp_store *st);

/* Loads every queued object that is not cached, in one pipelined round trip. */
int sp_store_prefetch(sp_store *st);

/* The object "{p<part>}:<suffix>", loaded from Redis on a cache miss. The
 * pointer stays valid until the end of the batch (sp_store_end_batch). */
int sp_store_get(sp_store *st, int32_t part, const char *suffix, sp_obj **out);

/* Fields. A field holds an integer, a double or a string, in the form it was
 * last set (a value loaded from Redis is a string until first read as a
 * number, then parsed once). Redis holds text, byte for byte what "%lld"
 * and "%.17g" print, so doubles read back exactly; that text is written only
 * when needed (commit, or a reader of the text). Reads behave as reading the
 * text always did: get_int is strtoll of it, get_double strtod -- so a
 * double read with get_int truncates its text ("2.5" -> 2, "1e+20" -> 1).
 *
 * get_str and field_value return the field's text (a number's is written
 * on demand). It stays valid and unchanged until that field is next set or
 * incremented, or the object leaves the cache; changing or adding other
 * fields does not touch it. Names from field_name live as long as the
 * object. Fields keep the order they were first set or loaded in. */
int64_t sp_obj_get_int(const sp_obj *o, const char *field, int64_t def);
double sp_obj_get_double(const sp_obj *o, const char *field, double def);
const char *sp_obj_get_str(const sp_obj *o, const char *field); /* NULL if absent */
void sp_obj_incr(sp_obj *o, const char *field, int64_t by);

/* A field name with its length, hash and first bytes worked out once, for
 * a field an operator touches at every event: the _f calls skip hashing
 * the name. name is borrowed and must outlive it. */
typedef struct sp_fname {
    const char *name;
    uint32_t len, hash;
    uint64_t head;        /* the name's first eight bytes, zeros past a shorter one */
} sp_fname;
sp_fname sp_fname_of(const char *name);
void sp_obj_incr_f(sp_obj *o, const sp_fname *f, int64_t by);
int64_t sp_obj_get_int_f(const sp_obj *o, const sp_fname *f, int64_t def);
double sp_obj_get_double_f(const sp_obj *o, const sp_fname *f, double def);
const char *sp_obj_get_str_f(const sp_obj *o, const sp_fname *f);
/* get_str_f with the text's length in *len (0 when absent): no strlen. */
const char *sp_obj_get_strn_f(const sp_obj *o, const sp_fname *f, size_t *len);
void sp_obj_set_int_f(sp_obj *o, const sp_fname *f, int64_t v);
void sp_obj_set_double_f(sp_obj *o, const sp_fname *f, double v);
/* v is len bytes (no NUL inside), as the caller measured it: no strlen. */
void sp_obj_set_str_f(sp_obj *o, const sp_fname *f, const char *v, size_t len);
void sp_obj_incrf(sp_obj *o, const char *field, double by);
void sp_obj_set_int(sp_obj *o, const char *field, int64_t v);
void sp_obj_set_double(sp_obj *o, const char *field, double v);
void sp_obj_set_str(sp_obj *o, const char *field, const char *v);
size_t sp_obj_nfields(const sp_obj *o);
/* Room for n fields in all, so that an object about to get many fields at
 * once (a new profile: some twenty at its first event) grows its field
 * array and index once, not one doubling after another; for an object with
 * no text yet, room for the new fields' texts as numbers too, in one piece.
 * Changes no field. */
void sp_obj_reserve(sp_obj *o, size_t n);
const char *sp_obj_field_name(const sp_obj *o, size_t i);
const char *sp_obj_field_value(const sp_obj *o, size_t i);

/* Appends a raw command to partition `part`'s next commit; argv[1] must be a
 * key of that partition ("{p<n>}:..."). Strings are copied. For state that is
 * not a hash (sorted sets of recent event ids, ...). */
void sp_store_tx_cmd(sp_store *st, int32_t part, int argc, const char *const *argv);

/* Queues a job to run with the next transaction: sp_store_submit's
 * committer thread, or sp_store_commit*(), calls run(conn, ctx) just before
 * that transaction's commits, with conn a store on the connection that
 * sends them (use sp_store_call and sp_store_side* on it, nothing else), so
 * a batch's side writes reach Redis before its offsets do and the consumer
 * loop does not wait for them. run returns SP_OK, SP_ERR_RETRY (aborted) or
 * SP_ERR_FATAL (logged), which fails the transaction before its commits.
 * free_ctx(ctx) (may be NULL) runs once, after run or when the job is
 * dropped unrun (the store destroyed first: the batch is consumed again).
 * ctx must own what run reads: run is on another thread. Jobs are not
 * fenced and not numbered: a crash between a job and its commits applies
 * the job again on replay -- for state that is at-least-once by design
 * (mf's shared item deltas), never for per-partition state. */
void sp_store_tx_job(sp_store *st, int (*run)(sp_store *conn, void *ctx),
                     void (*free_ctx)(void *ctx), void *ctx);

/* Runs `n` commands pipelined in one round trip (argvlens required), with
 * the store's retry (a lost reply sends them all again) and wait_replicas,
 * and leaves the replies in replies[] for the caller to freeReplyObject. */
struct redisReply;
int sp_store_call(sp_store *st, size_t n, const int *argcs, const char *const *const *argvs,
                  const size_t *const *argvlens, struct redisReply **replies);

/* Runs `n` commands now, pipelined in one round trip, outside any
 * partition's commit, with the store's retry. For idempotent side writes
 * whose effect does not need the offsets (PFADD of a HyperLogLog: adding an
 * element twice changes nothing) and for guarded scripts (an EVAL that
 * checks a per-key offset itself), and for the reads that go with them
 * (PFCOUNT). Every command must be safe to run twice: a lost reply repeats
 * the whole pipeline. argv strings are borrowed. ints[i] (if ints is not
 * NULL) receives an integer reply, or -1 for any other reply. Returns 0,
 * SP_ERR_RETRY (aborted while Redis was unreachable) or SP_ERR_FATAL (Redis
 * answered an error; logged). */
int sp_store_side(sp_store *st, size_t n, const int *argcs, const char *const *const *argvs,
                  long long *ints);
/* The same with explicit argument lengths (binary-safe arguments). */
int sp_store_side_bin(sp_store *st, size_t n, const int *argcs, const char *const *const *argvs,
                      const size_t *const *argvlens, long long *ints);

/* Writes partition `part`'s dirty objects, queued commands and the next
 * offsets atomically, if and only if its epoch is still ours. Returns 0,
 * SP_ERR_FENCED (another instance took the partition: its cache is dropped),
 * or SP_ERR_RETRY (aborted while Redis was unreachable). */
int sp_store_commit(sp_store *st, int32_t part, const char *const *topics,
                    const int64_t *offsets, int n);

/* Commits several partitions in one pipelined round trip; each commit is
 * atomic and fenced on its own, and its outcome (0 or SP_ERR_FENCED) is
 * left in .result. Returns 0, SP_ERR_RETRY (aborted while Redis was
 * unreachable) or SP_ERR_FATAL. */
typedef struct sp_commit {
    int32_t part;
    const char *const *topics;
    const int64_t *offsets;
    int n;
    int result;
} sp_commit;
int sp_store_commit_many(sp_store *st, sp_commit *commits, size_t n);

/* Asynchronous commits: the consumer loop goes on with the next batch
 * while Redis applies the last one.
 *
 * sp_store_prepare() builds the commits of cs[0..n) exactly as
 * sp_store_commit_many() would, copies them, and takes the partitions'
 * changes out of the batch: their objects are clean again (later changes
 * make them dirty for the next transaction) and stay cached, never evicted
 * or re-read, until this transaction has been reaped. sp_store_submit()
 * hands a prepared transaction to the store's committer thread, which sends
 * transactions in submit order on a connection of its own, with the same
 * retry, fencing, NOSCRIPT and wait_replicas handling as the synchronous
 * commit. sp_store_reap() returns finished transactions in that order;
 * a partition whose commit was refused (.result SP_ERR_FENCED or
 * SP_ERR_FATAL) is revoked as sp_store_commit_many() does.
 *
 * Order is what keeps exactly-once: a transaction holds only the fields
 * changed since the previous one, and Redis applies them in sequence, each
 * with the offsets it covers. Prepared-but-unapplied transactions die with a
 * crash; their batches are consumed again from the offsets in Redis. Do not
 * mix with sp_store_commit*() while transactions are in flight. */
typedef struct sp_txn {
    sp_commit *commits;  /* copies; .topics/.offsets are not kept */
    size_t n;
    int rc;              /* when reaped: SP_OK, SP_ERR_RETRY (aborted) or SP_ERR_FATAL */
    double latency_us;   /* the committer's round trip(s) */
    void *user;          /* the caller's */
    struct sp_txn_priv *priv;
} sp_txn;
sp_txn *sp_store_prepare(sp_store *st, const sp_commit *cs, size_t n);
/* From here until reaped the transaction is the store's; sp_store_destroy()
 * sends what is still queued, then frees what was not reaped. */
void sp_store_submit(sp_store *st, sp_txn *t);
/* The oldest finished transaction, or NULL if none has finished within
 * wait_ms (0: do not wait). Free it with sp_txn_free(). */
sp_txn *sp_store_reap(sp_store *st, int wait_ms);
void sp_txn_free(sp_txn *t);

/* Ends a batch: evicts clean objects while the cache is over its bound. */
void sp_store_end_batch(sp_store *st);

/* Calls fn for each field of the hash "{p<part>}:<suffix>" (binary-safe). */
int sp_store_hscan(sp_store *st, int32_t part, const char *suffix,
                   void (*fn)(void *ctx, const char *field, size_t flen, const char *value,
                              size_t vlen),
                   void *ctx);

/* Calls fn once with the string "{p<part>}:<suffix>", if it exists. */
int sp_store_read_string(sp_store *st, int32_t part, const char *suffix,
                         void (*fn)(void *ctx, const char *data, size_t len), void *ctx);

/* Calls fn for each member of the sorted set "{p<part>}:<suffix>". */
int sp_store_zscan(sp_store *st, int32_t part, const char *suffix,
                   void (*fn)(void *ctx, const char *member, size_t len, double score),
                   void *ctx);

/* Statistics. */
size_t sp_store_cached(const sp_store *st);
uint64_t sp_store_reconnects(const sp_store *st);
/* Commits resent because fewer than wait_replicas replicas acknowledged them
 * in time, or the node was lost before they did. */
uint64_t sp_store_wait_retries(const sp_store *st);

/* Parses a Redis URL into its parts (exported for tests). Returns 0 or
 * SP_ERR_FATAL with the reason in err; never copies the password into err. */
typedef struct sp_redis_url {
    char host[256];
    int port;
    char unix_path[512];
    char user[128];
    char password[256];
    int db;
} sp_redis_url;
int sp_redis_url_parse(const char *url, sp_redis_url *out, char *err, size_t errlen);

#endif
