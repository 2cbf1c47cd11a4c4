#!/usr/bin/env bash
# Installs the Debian packages shopstream builds and tests with, only those
# that are missing. Called by `make deps`; safe to run again.
set -euo pipefail
pkgs=(build-essential pkg-config librdkafka-dev libhiredis-dev libopenblas-dev
      libprotobuf-c-dev protobuf-c-compiler libcriterion-dev redis-server
      libmicrohttpd-dev libcjson-dev kcat prometheus chromium yamllint python3-yaml)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# The real-Kafka integration tests run the broker on Java 17+ and fetch its
# jars with Maven. Machines may carry a JDK or Maven not from Debian, so ask
# the PATH, not dpkg, and install Debian's only when there is none.
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# npm fetches the dashboard's charting library at build time; any npm will do
# (Debian's package, or the one that comes with a nodejs build).
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
