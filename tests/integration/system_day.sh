#!/usr/bin/env bash
# System test: a small store day (tests/sim/storeday) played against all five services and the
# platform simulator, then the end-of-day checks: every ledger balance equals the generator's
# expected stock (on_hand, committed, in_transit per SKU and location, including a cycle count
# overtaken by a late offline upload), pos.transactions.v1 holds every till fact exactly once,
# and recon-reporter's tenders per store equal the generator's takings.
# SYSTEM_DAY_SECONDS (default 30) sets the length of the day; SYSTEM_DAY_ARGS adds storeday
# prepare options (e.g. "--stores 20 --skus 5000"). Own database, topic prefix, tenant.
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
: "${TILLSYNC_BUILD_DIR:?TILLSYNC_BUILD_DIR not set}"
: "${KAFKA_BROKERS:?run through tests/lib/with-stack}"

run="sday$$x$RANDOM"
export TENANT_ID=$run TOPIC_PREFIX="$run."
export SD_SRC=$src SD_BIN=$TILLSYNC_BUILD_DIR/bin SD_WORK=$(mktemp -d "${TMPDIR:-/tmp}/system-day.XXXXXX")
export SD_PREPARE_ARGS=${SYSTEM_DAY_ARGS:-}
base_db=$DATABASE_URL
psql "$base_db" -qXc "CREATE DATABASE $run" >/dev/null
export DATABASE_URL="${base_db%/*}/$run"
while read -r name parts _; do
  case $name in ''|'#'*) continue ;; esac
  "$src/deploy/local/stack" kafka create-topic "$TOPIC_PREFIX$name" "$parts" >/dev/null
done <"$src/deploy/topics.txt"

# shellcheck source=../lib/storeday.sh
source "$src/tests/lib/storeday.sh"
ok=0
finish() {
  sd_down
  psql "$base_db" -qXc "DROP DATABASE IF EXISTS $run WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$ok" = 1 ]; then rm -rf "$SD_WORK"; else echo "system_day: logs kept in $SD_WORK/logs" >&2; fi
}
trap finish EXIT

t0=$SECONDS
sd_up KAFKA_SESSION_TIMEOUT_MS=6000 RECON_KAFKA_SESSION_TIMEOUT_MS=6000 LEDGER_BATCH_WAIT_MS=20 \
  PUBLISH_INTERVAL_MS=50
echo "system_day: suite up in $((SECONDS - t0))s"
sd_play --duration "${SYSTEM_DAY_SECONDS:-30}" --progress 5 --expected "$SD_WORK/expected.json"
gone=$(sd_alive) || { echo "FAIL: $gone died during the day" >&2; exit 1; }
"$src/tests/sim/storeday" check --expected "$SD_WORK/expected.json" --db "$DATABASE_URL" \
  --brokers "$KAFKA_BROKERS" --prefix "$TOPIC_PREFIX" --sim "$SD_SIM_URL" \
  --recon "http://${SD_ADDR[recon-reporter]}" --timeout 90
gone=$(sd_alive) || { echo "FAIL: $gone died" >&2; exit 1; }
ok=1
echo "system_day: PASS in $((SECONDS - t0))s"
