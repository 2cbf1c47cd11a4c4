#ifndef STREAM_ADMIN_H
#define STREAM_ADMIN_H

/* Kafka topic administration over librdkafka's admin API: create, delete and
 * describe topics on any Kafka cluster (the local test broker, or a real one
 * with SASL/SSL). Used by `shopstream topics` and by the integration tests.
 *
 * Every call is bounded by the timeout given to sp_admin_new(): an
 * unreachable cluster or a failed login is an error, never a hang. Error
 * texts never contain property values, so a password passed as
 * sasl.password=... cannot leak through them. */

#include <stddef.h>

typedef struct sp_admin sp_admin;

/* Connects to `brokers` with librdkafka properties `props` ("key=value"
 * strings; a leading "kafka." on the key is dropped, so config-file keys
 * work as they are) and checks that the cluster answers a metadata request
 * within timeout_ms. Returns NULL and fills err on a bad property, on an
 * authentication failure (reported at once, not at the timeout) or when no
 * broker answered in time. */
sp_admin *sp_admin_new(const char *brokers, const char *const *props, size_t nprops,
                       int timeout_ms, char *err, size_t errlen);
void sp_admin_destroy(sp_admin *a);

/* Creates the topics with `partitions` partitions each and `replication`
 * replicas (-1: the broker's default), then waits until metadata shows every
 * partition with a leader, so a producer can use them at once. A topic that
 * already exists with the same partition count is not an error (scripts can
 * run this again); one with a different count is SP_ERR_FATAL. */
int sp_admin_create_topics(sp_admin *a, const char *const *names, size_t n, int partitions,
                           int replication, char *err, size_t errlen);

/* Deletes the topics. A topic that does not exist is not an error. */
int sp_admin_delete_topics(sp_admin *a, const char *const *names, size_t n, char *err,
                           size_t errlen);

/* Partition count of `topic` as the cluster's metadata reports it:
 * SP_ERR_NOTFOUND if there is no such topic. */
int sp_admin_partition_count(sp_admin *a, const char *topic, int *partitions, char *err,
                             size_t errlen);

#endif
