#!/usr/bin/env bash
# Installs the Debian packages shopstream builds and tests with, only those
# that are missing. Called by `make deps`; safe to run again.
set -euo pipefail
pkgs=(build-essential pkg-config librdkafka-dev libhiredis-dev libopenblas-dev
      libprotobuf-c-dev protobuf-c-compiler libcriterion-dev redis-server
      libmicrohttpd-dev libcjson-dev kcat yamllint python3-yaml)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
