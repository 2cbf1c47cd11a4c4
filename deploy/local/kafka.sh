#!/usr/bin/env bash
# deploy/local/kafka.sh: a local, single-node Apache Kafka 4.x (KRaft) broker
# for shopstream's integration tests, demo and benchmarks.
#
#   kafka.sh start  [--port N] [--dir DIR] [--sasl USER:PASS] [--fresh] [--watch-pid PID]
#   kafka.sh stop   [--dir DIR]
#   kafka.sh status [--dir DIR]
#   kafka.sh fetch       fetch the broker jars into the cache (done by start)
#   kafka.sh available   exit 0 if this machine can run the broker (Java 17+,
#                        and the jars cached or Maven on PATH to fetch them)
#
# The broker is the official Apache Kafka build (org.apache.kafka:kafka_2.13
# and its runtime dependencies, plus log4j2 as the SLF4J binding so it logs),
# fetched from Maven Central with mvn into $KAFKA_CACHE only when missing.
# It runs one combined broker+controller on 127.0.0.1 with a 1 GiB heap; all
# of its state (properties, data, log, pid) lives in DIR, so brokers with
# different --dir coexist. `start` ends by printing `bootstrap: 127.0.0.1:PORT`.
# DIR defaults to build/kafka in the repository (KAFKA_DIR overrides it).
#
# Starting again in a DIR that holds a stopped broker restarts it with its
# data, port and listeners (a broker restart, as tests need); --fresh wipes
# DIR's data and starts a new cluster.
#
# --sasl USER:PASS (or KAFKA_SASL=USER:PASS, which keeps it out of `ps`):
# the only client listener is SASL_PLAINTEXT with the PLAIN mechanism, and
# USER:PASS is a valid login. Broker-to-controller traffic uses SASL too, as
# a generated internal user, so no port accepts an unauthenticated
# connection. Passwords are written only to files of mode 600 in DIR and are
# never printed.
#
# --watch-pid PID: stop the broker when process PID exits (test harnesses use
# it so a crashed test run does not leave a 1 GiB JVM behind).
#
# Environment: KAFKA_VERSION (default 4.4.0), KAFKA_CACHE (default
# $HOME/.cache/shopstream/kafka-$KAFKA_VERSION), KAFKA_HEAP_OPTS (default
# -Xms256m -Xmx1g), KAFKA_JVM_OPTS (default G1 with 20 ms pause target),
# KAFKA_START_TIMEOUT seconds (default 90).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
LOG4J_VERSION=2.24.3
KAFKA_CACHE=${KAFKA_CACHE:-${HOME:-/tmp}/.cache/shopstream/kafka-$KAFKA_VERSION}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20}

say() { echo "kafka.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  sed -n '4,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# java_ok: Java 17 or newer on PATH. The broker needs 17 (Kafka 4.x dropped 11).
java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')
  [ -n "$v" ] && [ "$v" -ge 17 ]
}

jars_cached() { [ -f "$KAFKA_CACHE/.complete" ]; }

# fetch: resolve kafka_2.13 and its runtime closure with Maven from a small
# generated pom, copying the jars into $KAFKA_CACHE/libs. Runs under a lock
# so concurrent test binaries fetch once; writes .complete last so a broken
# fetch is retried next time rather than half-used.
fetch() {
  jars_cached && return 0
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to fetch the Kafka jars into $KAFKA_CACHE"
  mkdir -p "$KAFKA_CACHE"
  exec 9>"$KAFKA_CACHE/.lock"
  flock 9
  if jars_cached; then exec 9>&-; return 0; fi
  say "fetching Apache Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13) with Maven into $KAFKA_CACHE (first run only)"
  local work=$KAFKA_CACHE/fetch t0=$SECONDS
  rm -rf "$work" "$KAFKA_CACHE/libs"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>shopstream.local</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  # Maven prints one "Downloaded from" line per artifact: show those so a
  # slow first fetch is visibly moving, keep the rest in fetch.log.
  local rc
  (cd "$work" && mvn -B -f pom.xml dependency:copy-dependencies \
     -DincludeScope=runtime -DoutputDirectory="$work/libs" 2>&1) \
    | tee "$work/fetch.log" \
    | { grep --line-buffered -E '^\[INFO\] Downloaded from .*\.jar' \
        | sed -u -E 's/.*\/([^/]+\.jar).*/kafka.sh:   got \1/' >&2 || true; }
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] || [ ! -f "$work/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    tail -n 30 "$work/fetch.log" >&2 || true
    die "Maven could not fetch Kafka $KAFKA_VERSION (log: $work/fetch.log)"
  fi
  mv "$work/libs" "$KAFKA_CACHE/libs"
  touch "$KAFKA_CACHE/.complete"
  say "fetched $(ls "$KAFKA_CACHE/libs" | wc -l) jars ($(du -sh "$KAFKA_CACHE/libs" | cut -f1)) in $((SECONDS - t0)) s"
  exec 9>&-
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now. The
# kernel picks it (bind to port 0), so two brokers started together do not
# collide the way random guesses would.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
    return
  fi
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# broker_pid: the pid in DIR/kafka.pid if that process is still our broker
# (its command line names DIR's properties), else nothing. Checking the
# command line keeps stop from signalling an unrelated process that reused
# the pid.
broker_pid() {
  local pid
  [ -f "$DIR/kafka.pid" ] || return 0
  pid=$(cat "$DIR/kafka.pid" 2>/dev/null || true)
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$DIR/server.properties" && echo "$pid"
  return 0
}

# kcat_ok: the broker answers a metadata request. kcat waits its whole -m
# timeout on a closed port, so probe the port first: that keeps the start
# loop's granularity at a fraction of a second.
kcat_ok() {
  local bs
  bs=$(cat "$DIR/bootstrap")
  (exec 3<>"/dev/tcp/${bs%:*}/${bs##*:}") 2>/dev/null || return 1
  local args=(-L -b "$bs" -m 3)
  [ -f "$DIR/client.conf" ] && args+=(-F "$DIR/client.conf")
  kcat "${args[@]}" >/dev/null 2>&1
}

write_config() {
  local port=$1 cport=$2 sasl=$3
  local data=$DIR/data
  mkdir -p "$data"
  umask 077
  cat >"$DIR/log4j2.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
  {
    cat <<EOF
# Written by deploy/local/kafka.sh. One combined broker+controller (KRaft).
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
controller.listener.names=CONTROLLER
log.dirs=$data
# One broker: every internal topic has one replica, or it can never be created.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# Tests start consumer groups and expect partitions at once, not after 3 s.
group.initial.rebalance.delay.ms=0
# Topics are created explicitly with their partition counts (the input
# topics must be co-partitioned); auto-creation would silently make a
# one-partition topic out of a typo or a missing setup step.
auto.create.topics.enable=false
num.partitions=1
# Sized for a shared 2-core machine and a 1 GiB heap.
num.network.threads=2
num.io.threads=4
background.threads=4
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=24
EOF
    if [ -z "$sasl" ]; then
      cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
    else
      local user=${sasl%%:*} pass=${sasl#*:} ipass
      ipass=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
      local jaas="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"shopstream-internal\" password=\"$ipass\" user_shopstream-internal=\"$ipass\" user_$user=\"$pass\";"
      cat <<EOF
listeners=SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas
listener.name.controller.plain.sasl.jaas.config=$jaas
EOF
      printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username=%s\nsasl.password=%s\n' \
        "$user" "$pass" >"$DIR/client.conf"
    fi
  } >"$DIR/server.properties"
  umask 022
}

cmd_start() {
  java_ok || die "Java 17 or newer is required to run the Kafka broker (install openjdk-17-jre-headless)"
  command -v kcat >/dev/null 2>&1 || die "kcat is required (make deps installs it)"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  local pid
  pid=$(broker_pid)
  if [ -n "$pid" ]; then
    say "already running (pid $pid) in $DIR"
    echo "bootstrap: $(cat "$DIR/bootstrap")"
    return 0
  fi
  if [ -n "$SASL" ]; then
    # The login goes into a JAAS line: keep it to characters that need no quoting there.
    [[ "${SASL%%:*}" =~ ^[A-Za-z0-9._-]+$ ]] && [[ "$SASL" == *:?* ]] && [[ "${SASL#*:}" != *[\\\"]* ]] ||
      die "--sasl wants USER:PASS (user of letters, digits, . _ -; password without quotes or backslashes)"
  fi
  if [ -n "$PORT" ] && [[ ! "$PORT" =~ ^[0-9]+$ ]]; then die "--port wants a number"; fi
  fetch
  local cp="$KAFKA_CACHE/libs/*" t0=$SECONDS port
  local jvm=(java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS -Djava.awt.headless=true
             "-Dlog4j2.configurationFile=$DIR/log4j2.properties" -cp "$cp")
  if [ -z "$FRESH" ] && [ -f "$DIR/data/meta.properties" ] && [ -f "$DIR/server.properties" ]; then
    # A restart: same data, same ports (the KRaft voter set recorded at
    # format time names the controller's port) and same listeners, so
    # clients reconnect to the address they had.
    port=$(sed -E 's/.*://' "$DIR/bootstrap")
    if [ -n "$PORT" ] && [ "$PORT" != "$port" ]; then
      die "$DIR holds a broker on port $port; use --fresh to start anew on $PORT"
    fi
    [ -n "$SASL" ] && say "restarting with the existing listener setup in $DIR (--sasl ignored; --fresh to change it)"
    say "restarting the broker in $DIR with its existing data"
  else
    port=${PORT:-$(free_port)}
    local cport cluster_id
    cport=$(free_port)
    while [ "$cport" = "$port" ]; do cport=$(free_port); done
    rm -rf "$DIR/data" "$DIR/client.conf"
    write_config "$port" "$cport" "$SASL"
    echo "127.0.0.1:$port" >"$DIR/bootstrap"
    # A random 16-byte id in URL-safe base64, as kafka-storage random-uuid
    # makes; one starting with '-' would be read as an option, so redraw.
    cluster_id=-
    while [[ "$cluster_id" == -* ]]; do
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    if ! "${jvm[@]}" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
           -c "$DIR/server.properties" >"$DIR/format.log" 2>&1; then
      tail -n 20 "$DIR/format.log" >&2
      die "formatting KRaft storage failed (log: $DIR/format.log)"
    fi
  fi
  echo "=== kafka.sh start $(date -u +%FT%TZ)" >>"$DIR/kafka.log"
  setsid "${jvm[@]}" kafka.Kafka "$DIR/server.properties" >>"$DIR/kafka.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$DIR/kafka.pid"

  # Ready means it answers a metadata request on the client listener, which
  # needs the controller quorum up and the broker registered.
  while ! kcat_ok; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$DIR/kafka.log" >&2
      rm -f "$DIR/kafka.pid"
      die "the broker exited during startup (log: $DIR/kafka.log)"
    fi
    if [ $((SECONDS - t0)) -ge "$KAFKA_START_TIMEOUT" ]; then
      tail -n 30 "$DIR/kafka.log" >&2
      cmd_stop >/dev/null 2>&1 || true
      die "the broker did not answer metadata within ${KAFKA_START_TIMEOUT}s (log: $DIR/kafka.log)"
    fi
    sleep 0.2
  done
  if [ -n "$WATCH_PID" ]; then
    # Detached watchdog: when the owner goes, stop the broker.
    setsid bash "${BASH_SOURCE[0]}" __watch --dir "$DIR" --watch-pid "$WATCH_PID" \
      >/dev/null 2>&1 </dev/null &
  fi
  say "Kafka $KAFKA_VERSION up in $((SECONDS - t0)) s (pid $pid, dir $DIR, log $DIR/kafka.log)"
  [ -f "$DIR/client.conf" ] && say "listener is SASL_PLAINTEXT, mechanism PLAIN (kcat settings: $DIR/client.conf)"
  echo "bootstrap: 127.0.0.1:$port"
}

# cmd_stop: SIGTERM lets the broker close its logs and leave the quorum
# cleanly; past a grace period it gets SIGKILL, as do any leftovers of its
# process group.
cmd_stop() {
  [ -d "$DIR" ] || { say "not running (no $DIR)"; return 0; }
  DIR=$(cd "$DIR" && pwd)
  local pid i
  pid=$(broker_pid)
  if [ -z "$pid" ]; then
    rm -f "$DIR/kafka.pid"
    say "not running in $DIR"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "broker (pid $pid) ignored SIGTERM for 30 s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/kafka.pid"
  say "stopped (pid $pid)"
}

cmd_status() {
  [ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)
  local pid
  pid=$( [ -d "$DIR" ] && broker_pid || true)
  if [ -z "$pid" ]; then
    echo "kafka: not running (dir $DIR)"
    return 1
  fi
  local proto=PLAINTEXT
  [ -f "$DIR/client.conf" ] && proto="SASL_PLAINTEXT (PLAIN)"
  if kcat_ok; then
    echo "kafka: running, pid $pid, $proto, dir $DIR"
  else
    echo "kafka: process $pid alive but not answering metadata, dir $DIR"
  fi
  echo "bootstrap: $(cat "$DIR/bootstrap")"
}

# cmd_watch: the --watch-pid watchdog. It outlives broker restarts in DIR
# (it reads the pid file each time) and ends when DIR is removed.
cmd_watch() {
  while kill -0 "$WATCH_PID" 2>/dev/null; do
    [ -d "$DIR" ] || exit 0
    sleep 1
  done
  [ -d "$DIR" ] && cmd_stop
}

[ $# -ge 1 ] || usage
CMD=$1; shift
DIR=${KAFKA_DIR:-$ROOT/build/kafka}
PORT=""; SASL=${KAFKA_SASL:-}; WATCH_PID=""; FRESH=""
while [ $# -gt 0 ]; do
  case $1 in
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a path}; shift 2 ;;
    --sasl) SASL=${2:?--sasl needs USER:PASS}; shift 2 ;;
    --watch-pid) WATCH_PID=${2:?--watch-pid needs a pid}; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    -h|--help) usage ;;
    *) say "unknown option $1"; usage ;;
  esac
done

case $CMD in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  fetch) java_ok || die "Java 17 or newer is required"; fetch ;;
  available)
    java_ok || { echo "Java 17 or newer is required (install openjdk-17-jre-headless)"; exit 1; }
    jars_cached || command -v mvn >/dev/null 2>&1 ||
      { echo "Maven (mvn) is required to fetch the Kafka jars once (install maven)"; exit 1; } ;;
  __watch) cmd_watch ;;
  *) usage ;;
esac
