#!/usr/bin/env bash
# Runs the whole suite locally: installs what is missing, builds, starts the local stack
# (Postgres, Redis, Kafka mock cluster) and the five services, prints where each listens, and
# keeps everything running until Ctrl-C, when it stops the services and the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh
echo "== building" >&2
scripts/build.sh build >&2

export TENANT_ID=${TENANT_ID:-demo}
export TOPIC_PREFIX=${TOPIC_PREFIX:-}
echo "== starting the local stack" >&2
eval "$(TILLSYNC_BUILD_DIR="$root/build" deploy/local/stack up --prefix "$TOPIC_PREFIX")"
logs="$TILLSYNC_STACK_DIR/logs"
mkdir -p "$logs"

services=(pos-ingest shop-connector inventory-ledger loyalty-sync recon-reporter)
declare -A pids addrs

stop_all() {
  trap - INT TERM EXIT
  echo >&2
  echo "== stopping services" >&2
  for s in "${services[@]}"; do
    [ -n "${pids[$s]:-}" ] && kill -TERM "${pids[$s]}" 2>/dev/null || true
  done
  for s in "${services[@]}"; do
    [ -n "${pids[$s]:-}" ] && wait "${pids[$s]}" 2>/dev/null || true
  done
  echo "== stopping the local stack" >&2
  deploy/local/stack down >&2 || true
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

for s in "${services[@]}"; do
  HTTP_LISTEN=127.0.0.1:0 build/bin/"$s" >"$logs/$s.log" 2>&1 &
  pids[$s]=$!
done

# Each service logs {"msg":"listening","address":"host:port"} once its HTTP server is up.
for s in "${services[@]}"; do
  for _ in $(seq 1 150); do
    addr=$(sed -n 's/.*"msg":"listening".*"address":"\([^"]*\)".*/\1/p' "$logs/$s.log" | head -n1)
    if [ -n "$addr" ]; then addrs[$s]=$addr; break; fi
    if ! kill -0 "${pids[$s]}" 2>/dev/null; then
      echo "$s exited at start; its log:" >&2; cat "$logs/$s.log" >&2; exit 1
    fi
    sleep 0.2
  done
  [ -n "${addrs[$s]:-}" ] || { echo "$s did not start listening; log: $logs/$s.log" >&2; exit 1; }
done

echo
echo "tillsync is running for tenant '$TENANT_ID'"
for s in "${services[@]}"; do
  printf '  %-18s http://%s\n' "$s" "${addrs[$s]}"
done
echo "  Kafka              $KAFKA_BROKERS"
echo "  Postgres           $DATABASE_URL"
echo "  Redis              $REDIS_URL"
echo "  logs               $logs"
echo
echo "Each service answers /healthz, /readyz and /metrics. Press Ctrl-C to stop everything."

while true; do
  for s in "${services[@]}"; do
    if ! kill -0 "${pids[$s]}" 2>/dev/null; then
      echo "$s stopped unexpectedly; see $logs/$s.log" >&2
      exit 1
    fi
  done
  sleep 1
done
