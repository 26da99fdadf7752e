#!/usr/bin/env bash
# The recon-reporter dashboard in a real browser (headless Debian chromium driven by Playwright,
# tools/browser/recon-dashboard.mjs): after a seeded day, it loads, filters by owner,
# acknowledges and resolves an exception, and keeps a screenshot in tests/artifacts/.
set -euo pipefail
. "$(dirname "$0")/../lib/svc.sh"
SRC=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
trap svc_stop_all EXIT
[ -x /usr/bin/chromium ] || fail "chromium is not installed (scripts/deps.sh installs it)"
[ -d "$SRC/tools/browser/node_modules/playwright-core" ] ||
  fail "playwright-core missing: (cd tools/browser && npm ci)"

PREFIX="recondash$$x$RANDOM."
DB="recon_dash_$$_$RANDOM"
psql "$DATABASE_URL" -qc "CREATE DATABASE $DB" >/dev/null
mock() {
  local hp=${KAFKA_MOCK_CONTROL:?} ans
  exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}"; printf '%s\n' "$*" >&3; read -r ans <&3; exec 3>&-
  case "$ans" in ok*) ;; *) fail "kafka mock: $* -> $ans" ;; esac
}
for t in pos.transactions.v1 stock.movements.v1 shop.orders.v1 catalog.items.v1 \
  inventory.levels.v1 loyalty.points.v1 recon.exceptions.v1; do
  mock create-topic "$PREFIX$t" 1
  mock create-topic "$PREFIX$t.dlq" 1
done
svc_start recon-reporter TOPIC_PREFIX="$PREFIX" DATABASE_URL="${DATABASE_URL%/*}/$DB" \
  RECON_GROUP_ID="g-$PREFIX" RECON_KAFKA_SESSION_TIMEOUT_MS=6000 RECON_CHECK_INTERVAL_MS=500 \
  RECON_APPLY_DEADLINE_S=2
BASE="http://${SVC_ADDR[recon-reporter]}"
"$TILLSYNC_BUILD_DIR/bin/recon_seed" "$PREFIX" "$SVC_LOG_DIR/expected.json"
for _ in $(seq 1 120); do
  curl -sf "$BASE/v1/exceptions?status=open&type=takings_variance" |
    jq -e '.exceptions | length == 1' >/dev/null && break
  sleep 0.5
done
mkdir -p "$SRC/tests/artifacts"
node "$SRC/tools/browser/recon-dashboard.mjs" "$BASE" "$SRC/tests/artifacts/recon-dashboard.png"
[ -s "$SRC/tests/artifacts/recon-dashboard.png" ] || fail "no screenshot"
svc_stop recon-reporter 10
psql "$DATABASE_URL" -qc "DROP DATABASE $DB" >/dev/null || true
echo "ok: recon-reporter dashboard"
