#!/usr/bin/env bash
# bench/kafka_broker.sh: figures for the local Apache Kafka broker alone,
# without shopstream's processor: how long the broker takes to start, and the
# raw produce and consume rates that kcat gets from it on this machine. These
# are the ceiling the processor's own events/s on the same broker is compared
# with.
#
#   bench/kafka_broker.sh [N_MESSAGES] [PARTITIONS]    (default 200000, 12)
#
# Starts a private broker in a temporary directory and stops it at the end.
# Prints one "name: value" line per figure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-200000}
PARTS=${2:-12}
SHOPSTREAM=${SHOPSTREAM_BIN:-$ROOT/bin/shopstream}
KAFKA_SH=$ROOT/deploy/local/kafka.sh
DIR=$(mktemp -d "${TMPDIR:-/tmp}/sp-kafka-bench-XXXXXX")
trap 'bash "$KAFKA_SH" stop --dir "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT

[ -x "$SHOPSTREAM" ] || { echo "build shopstream first (make)" >&2; exit 1; }
ms() { date +%s%3N; }

bash "$KAFKA_SH" fetch
t0=$(ms)
BS=$(bash "$KAFKA_SH" start --dir "$DIR" --watch-pid $$ | sed -n 's/^bootstrap: //p')
t1=$(ms)
echo "kafka_version: ${KAFKA_VERSION:-4.4.0}"
echo "broker_start_s: $(awk "BEGIN{printf \"%.1f\", ($t1-$t0)/1000}")"

"$SHOPSTREAM" topics create --brokers "$BS" --partitions "$PARTS" --replication 1 bench.raw 2>/dev/null

# N messages of about 200 bytes, keyed by a user id as the real events are.
python3 - "$N" >"$DIR/msgs.txt" <<'EOF'
import sys
n = int(sys.argv[1])
pad = "x" * 170
for i in range(n):
    print(f"user-{i % 5000}:{{\"event_id\":\"e{i}\",\"pad\":\"{pad}\"}}")
EOF
bytes=$(stat -c %s "$DIR/msgs.txt")

t0=$(ms)
kcat -P -b "$BS" -t bench.raw -K: -X linger.ms=5 -X batch.num.messages=10000 -l "$DIR/msgs.txt"
t1=$(ms)
echo "messages: $N in $PARTS partitions, $((bytes / N)) bytes each"
echo "produce_msgs_per_s: $(awk "BEGIN{printf \"%.0f\", $N*1000/($t1-$t0)}")"

t0=$(ms)
got=$(kcat -C -b "$BS" -t bench.raw -o beginning -e -q -f '%o\n' | wc -l)
t1=$(ms)
[ "$got" -eq "$N" ] || { echo "consumed $got of $N" >&2; exit 1; }
echo "consume_msgs_per_s: $(awk "BEGIN{printf \"%.0f\", $N*1000/($t1-$t0)}")"
echo "consume_MB_per_s: $(awk "BEGIN{printf \"%.1f\", $bytes/1048576*1000/($t1-$t0)}")"
