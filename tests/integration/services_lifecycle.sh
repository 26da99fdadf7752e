#!/usr/bin/env bash
# Every service starts against the local stack, answers /healthz and /readyz with 200, serves
# /metrics that promtool accepts, logs JSON, and stops within 5 s of SIGTERM with exit code 0.
# A missing or bad variable stops it at start with one line naming the variable and exit 2.
set -euo pipefail
. "$(dirname "$0")/../lib/svc.sh"
trap svc_stop_all EXIT

services=(pos-ingest shop-connector inventory-ledger loyalty-sync recon-reporter)
# variables a service requires beyond the stack's (its member API is not called at start)
declare -A required_env=(
  [loyalty-sync]="RULES_FILE=$TILLSYNC_SOURCE_DIR/services/loyalty-sync/rules.example.json LOYALTY_PLATFORM=shopify LOYALTY_SHOP=demo.myshopify.com LOYALTY_API_URL=http://127.0.0.1:9 LOYALTY_API_TOKEN=t"
)
for s in "${services[@]}"; do
  # shellcheck disable=SC2086
  svc_start "$s" ${required_env[$s]:-}
  base="http://${SVC_ADDR[$s]}"
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")
  [ "$code" = 200 ] || fail "$s /healthz answered $code"
  ok=0
  for _ in $(seq 1 50); do
    code=$(curl -s -o "$SVC_LOG_DIR/$s.readyz" -w '%{http_code}' "$base/readyz")
    [ "$code" = 200 ] && { ok=1; break; }
    sleep 0.2
  done
  [ "$ok" = 1 ] || fail "$s /readyz answered $code: $(cat "$SVC_LOG_DIR/$s.readyz")"
  curl -sf "$base/metrics" >"$SVC_LOG_DIR/$s.metrics" || fail "$s /metrics failed"
  promtool check metrics <"$SVC_LOG_DIR/$s.metrics" || fail "$s /metrics rejected by promtool"
  grep -q '^http_requests_total' "$SVC_LOG_DIR/$s.metrics" || fail "$s /metrics lacks request counts"
  code=$(curl -s -o "$SVC_LOG_DIR/$s.404" -w '%{http_code}' "$base/no-such-path")
  [ "$code" = 404 ] || fail "$s unknown path answered $code"
  jq -e '.error.code' "$SVC_LOG_DIR/$s.404" >/dev/null || fail "$s 404 body is not a JSON error"
  svc_stop "$s" 5
  # every log line is one JSON object
  while IFS= read -r line; do
    echo "$line" | jq -e . >/dev/null 2>&1 || fail "$s log line is not JSON: $line"
  done <"$SVC_LOG_DIR/$s.log"
  echo "ok: $s"
done

# Configuration errors: one line naming the variable, exit code 2.
check_bad() {
  local name=$1 want=$2; shift 2
  local out rc=0
  out=$(env -i PATH="$PATH" "$@" "$TILLSYNC_BUILD_DIR/bin/$name" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "$name with $* exited $rc, want 2 (output: $out)"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$name printed more than one line: $out"
  case "$out" in *"$want"*) ;; *) fail "$name error does not name $want: $out" ;; esac
  echo "ok: $name rejects $want: $out"
}
for s in "${services[@]}"; do
  check_bad "$s" TENANT_ID KAFKA_BROKERS=127.0.0.1:9 DATABASE_URL=postgresql://x@h/d REDIS_URL=redis://h:1
done
check_bad pos-ingest KAFKA_BROKERS TENANT_ID=t
check_bad inventory-ledger DATABASE_URL TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 REDIS_URL=redis://h:1
check_bad shop-connector REDIS_URL TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 DATABASE_URL=postgresql://x@h/d
check_bad pos-ingest HTTP_LISTEN TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 HTTP_LISTEN=nonsense
check_bad pos-ingest HTTP_THREADS TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 DATABASE_URL=postgresql://x@h/d HTTP_THREADS=0
check_bad pos-ingest LOG_LEVEL TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 DATABASE_URL=postgresql://x@h/d LOG_LEVEL=loud
check_bad pos-ingest TENANT_ID 'TENANT_ID=a b' KAFKA_BROKERS=127.0.0.1:9 DATABASE_URL=postgresql://x@h/d
check_bad pos-ingest KAFKA_BROKERS_FILE TENANT_ID=t KAFKA_BROKERS_FILE=/nonexistent/file
check_bad recon-reporter KAFKA_SASL_MECHANISM TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 \
  DATABASE_URL=postgresql://x@h/d KAFKA_SECURITY_PROTOCOL=sasl_ssl
# a secret's value never appears in the error
check_bad inventory-ledger DATABASE_URL TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 REDIS_URL=redis://h:1 DATABASE_URL=s3cr3t-value
out=$(env -i PATH="$PATH" TENANT_ID=t KAFKA_BROKERS=127.0.0.1:9 REDIS_URL=redis://h:1 \
  DATABASE_URL=s3cr3t-value "$TILLSYNC_BUILD_DIR/bin/inventory-ledger" 2>&1) || true
case "$out" in *s3cr3t-value*) fail "secret value leaked: $out" ;; esac
echo "services_lifecycle: all ok"
