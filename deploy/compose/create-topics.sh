#!/usr/bin/env bash
# Run by the kafka-init service of deploy/docker-compose.yml: creates every
# topic shopstream reads or writes, all with $PARTITIONS partitions (the
# input topics must have equal counts). Safe to run again.
set -euo pipefail
bs=${BOOTSTRAP:-kafka:9092}
parts=${PARTITIONS:-12}
for t in shop.clicks shop.orders shop.reviews \
         shop.recommendations shop.fraud-alerts shop.kpi shop.deadletter; do
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$bs" --create --if-not-exists \
    --topic "$t" --partitions "$parts" --replication-factor 1
done
/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$bs" --describe --topic shop.clicks
