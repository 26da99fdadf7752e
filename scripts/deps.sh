#!/usr/bin/env bash
# Installs the Debian packages tillsync needs to build, test and run, when any is missing.
# Safe to run again: it asks apt only for what is not installed yet. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates curl procps iproute2
  librdkafka-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  libmicrohttpd-dev libpq-dev libhiredis-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
  libjansson-dev libjson-c-dev libcjson-dev jq python3 docker-compose
  postgresql redis-server redis-tools kcat prometheus
  clang libclang-rt-14-dev
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Node tools from the npm registry (linters and validators used by tests/static): each folder
# tools/<name>/ has its own package.json and package-lock.json; install when missing or stale.
if ! command -v npm >/dev/null; then
  echo "deps: installing Debian's nodejs and npm" >&2
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >&2
fi
if command -v npm >/dev/null; then
  for pj in tools/*/package.json; do
    [ -f "$pj" ] || continue
    d=$(dirname "$pj")
    if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules" ]; then
      echo "deps: npm ci in $d" >&2
      (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >&2) && touch "$d/node_modules"
    fi
  done
else
  echo "deps: npm not found; install Node.js and npm to run the document and chart checks" >&2
fi
