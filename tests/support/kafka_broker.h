#ifndef TESTS_SUPPORT_KAFKA_BROKER_H
#define TESTS_SUPPORT_KAFKA_BROKER_H

/* A real Apache Kafka broker for integration tests, run by
 * deploy/local/kafka.sh in a fresh temporary directory.
 *
 * Criterion runs every test in a re-executed child process, so a broker
 * shared by a whole test binary is started in a ReportHook(PRE_ALL) of the
 * runner and handed to the tests through the environment:
 * sp_test_broker_export() / sp_test_broker_from_env(). The script finds
 * itself through SHOPSTREAM_KAFKA_SH, else deploy/local/kafka.sh relative to
 * the working directory (make test runs from the repository root), else next
 * to $SHOPSTREAM_BIN. A broker is stopped by sp_test_broker_stop(), and
 * also by the script's watchdog when the process that started it exits, so
 * a crashed test run leaves no JVM behind. */

#include <stddef.h>
#include <stdint.h>

typedef struct sp_test_broker sp_test_broker;

/* 1 if this machine can run the broker: Java 17+ on PATH and the Kafka jars
 * cached or Maven on PATH to fetch them. Fills why (if not NULL) otherwise. */
int sp_test_broker_available(char *why, size_t whylen);

/* Starts a broker in a new temporary directory; sasl_user_pass "USER:PASS"
 * makes its only listener SASL_PLAINTEXT/PLAIN with that login, NULL makes
 * it PLAINTEXT. The first run on a machine fetches the jars with Maven
 * (progress on stderr). Returns NULL and fills err on failure (the
 * script's own output, with the broker log's tail, is on stderr). Test
 * brokers run a C1-only JVM unless KAFKA_JVM_OPTS says otherwise. */
sp_test_broker *sp_test_broker_start(const char *sasl_user_pass, char *err, size_t errlen);

/* Starts n brokers at once (sasl[i] as above; sasl itself may be NULL),
 * which on two cores is faster than one after another. On success fills
 * out[0..n-1] and returns 0; on any failure stops those that started, sets
 * out[] to NULL and returns -1 with err filled. */
int sp_test_brokers_start(size_t n, const char *const *sasl, sp_test_broker **out, char *err,
                          size_t errlen);

/* "127.0.0.1:PORT"; stays the same across sp_test_broker_restart(). */
const char *sp_test_broker_bootstrap(const sp_test_broker *b);

/* The broker's directory (kafka.log, server.properties, data/). */
const char *sp_test_broker_dir(const sp_test_broker *b);

/* Stops the broker (SIGTERM, then SIGKILL if it hangs) and starts it again
 * on the same data, port and listeners: the "broker restart mid-stream"
 * case. Returns 0 or -1 with err filled. */
int sp_test_broker_restart(sp_test_broker *b, char *err, size_t errlen);

/* Stops the broker, removes its directory (kept if SP_TEST_KEEP_KAFKA is
 * set, for post-mortems) and frees b. Accepts NULL. */
void sp_test_broker_stop(sp_test_broker *b);

/* Publishes b in the environment as SP_TEST_KAFKA_<NAME>_{BOOTSTRAP,DIR}, so
 * that tests in child processes can find it; and the reverse, which returns
 * a handle that does not own the broker (its _stop only frees the handle),
 * or NULL if nothing was published under name. */
void sp_test_broker_export(const sp_test_broker *b, const char *name);
sp_test_broker *sp_test_broker_from_env(const char *name);

/* Creates topics with the admin API: `partitions` partitions each, one
 * replica, ready (every partition has a leader) on return. extra_conf is a
 * NULL-terminated list of "key=value" librdkafka properties (SASL settings)
 * or NULL. An existing topic with the same count is fine. Returns 0 or -1
 * with err filled. */
int sp_test_create_topics(const char *bootstrap, const char *const *names, size_t n,
                          int partitions, const char *const *extra_conf, char *err,
                          size_t errlen);

/* Deletes the records below offset `before` in partitions 0..partitions-1 of
 * topic (the admin API's DeleteRecords, as retention would), so that those
 * logs no longer start at 0. Returns how many records went (a partition
 * shorter than `before` loses them all), or -1 with err filled. */
long sp_test_delete_records(const char *bootstrap, const char *topic, int partitions,
                            int64_t before, char *err, size_t errlen);

#endif
