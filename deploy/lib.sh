# Shared by deploy/demo.sh and bench/run.sh (source it; bash): a temporary
# directory removed at exit, child processes killed at exit, a free loopback
# port, a private redis-server and librdkafka's mock cluster.
#
#   sp_init NAME            tmp=<new dir>, pids=(), kafka_dir=, trap on EXIT
#   sp_free_port            prints a free port on 127.0.0.1
#   sp_redis_start PORT     redis-server on 127.0.0.1:PORT in $tmp, no persistence
#   sp_mock_start N         mock cluster with N partitions per topic; prints bootstrap
# A local Kafka broker started by the caller into $kafka_dir is stopped at exit.

sp_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${kafka_dir:-}" ]; then bash deploy/local/kafka.sh stop --dir "$kafka_dir" >/dev/null 2>&1 || true; fi
  wait 2>/dev/null || true
  rm -rf "$tmp"
}

sp_init() {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/shopstream-$1.XXXXXX")
  pids=()
  kafka_dir=
  trap sp_cleanup EXIT
}

sp_free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port on 127.0.0.1" >&2
  exit 1
}

sp_redis_start() {
  redis-server --port "$1" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
    --logfile "$tmp/redis-$1.log" &
  pids+=($!)
  local pid=$!
  for _ in $(seq 200); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return
    kill -0 "$pid" 2>/dev/null || break # it exited: a taken port, a bad flag
    sleep 0.05
  done
  echo "redis-server on port $1 did not start; its log ($tmp/redis-$1.log) ends:" >&2
  tail -5 "$tmp/redis-$1.log" >&2 2>/dev/null
  exit 1
}

# Runs in the caller's shell (not a subshell) so that its pid is recorded:
# use as `sp_mock_start N; brokers=$sp_bootstrap`.
sp_mock_start() {
  "$BIN" mock-kafka --partitions "$1" --bootstrap-file "$tmp/bootstrap" >/dev/null 2>"$tmp/mock.log" &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$tmp/bootstrap" ] && break; sleep 0.05; done
  sp_bootstrap=$(cat "$tmp/bootstrap" 2>/dev/null)
  [ -n "$sp_bootstrap" ] || { echo "the mock Kafka cluster did not start (log: $tmp/mock.log)" >&2; exit 1; }
}
