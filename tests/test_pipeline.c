/* The spine end to end against librdkafka's mock cluster (run as its own
 * process, so processors can be killed while "Kafka" lives on) and real
 * redis-servers. The cases are in tests/support/pipeline.c, shared with
 * tests/test_pipeline_kafka.c, which runs them against Apache Kafka. */
#include <criterion/criterion.h>

#include "tests/support/pipeline.h"

TestSuite(pipeline, .init = pl_setup_mock, .fini = pl_teardown, .timeout = 400);

Test(pipeline, jsonl_counts_in_redis_equal_counts_from_the_file) { pl_case_end_to_end("jsonl"); }

Test(pipeline, protobuf_counts_in_redis_equal_counts_from_the_file) {
    pl_case_end_to_end("proto");
}

Test(pipeline, kill9_at_random_points_loses_nothing_and_counts_nothing_twice) { pl_case_kill9(); }

Test(pipeline, rebalance_two_processors_one_stopped_mid_stream) { pl_case_rebalance(); }

Test(pipeline, redis_outage_mid_stream_loses_nothing) { pl_case_redis_outage(); }

Test(pipeline, poison_messages_go_to_the_dead_letter_topic_with_reasons) { pl_case_poison(); }
