# Shared by deploy/demo.sh and bench/run.sh (source it; bash): a temporary
# directory removed at exit, child processes killed at exit, a free loopback
# port, a private redis-server and librdkafka's mock cluster.
#
#   sp_init NAME            tmp=<new dir>, pids=(), kafka_dir=, trap on EXIT
#   sp_free_port            prints a free port on 127.0.0.1
#   sp_redis_start PORT [VAR]  redis-server on 127.0.0.1:PORT in $tmp, no persistence;
#                           with VAR, another free port if PORT was taken meanwhile
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
  # With VAR, a port that another job took between sp_free_port and the bind
  # is replaced by another free one (up to 5 tries), and VAR names the port
  # used. A server counts as started once the one answering on the port is
  # this one (its process_id), not another job's.
  local sp_p=$1 sp_var=${2:-} sp_pid # prefixed: VAR may be "port"
  for _ in 1 2 3 4 5; do
    redis-server --port "$sp_p" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
      --logfile "$tmp/redis-$sp_p.log" &
    sp_pid=$!
    pids+=($sp_pid)
    for _ in $(seq 200); do
      kill -0 "$sp_pid" 2>/dev/null || break # it exited: a taken port, a bad flag
      if [ "$(redis-cli -p "$sp_p" info server 2>/dev/null | tr -d '\r' |
        sed -n 's/^process_id://p')" = "$sp_pid" ]; then
        [ -z "$sp_var" ] || printf -v "$sp_var" '%s' "$sp_p"
        return
      fi
      sleep 0.05
    done
    kill -0 "$sp_pid" 2>/dev/null && break # running, not answering
    [ -n "$sp_var" ] && grep -q 'Address already in use' "$tmp/redis-$sp_p.log" 2>/dev/null || break
    sp_p=$(sp_free_port)
  done
  echo "redis-server on port $sp_p did not start; its log ($tmp/redis-$sp_p.log) ends:" >&2
  tail -5 "$tmp/redis-$sp_p.log" >&2 2>/dev/null
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
