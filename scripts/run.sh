#!/usr/bin/env bash
# Runs the whole suite locally: installs what is missing, builds, starts the local stack
# (Postgres, Redis, Kafka mock cluster), the platform simulator and the five services configured
# for a generated chain (tests/sim/storeday), plays a short store day, prints the reconciliation
# summary, the open exceptions by owner and the dashboard address, and keeps everything running
# until Ctrl-C, when it stops the services and the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=${TILLSYNC_BUILD_DIR:-$root/build}
scripts/deps.sh
echo "== building" >&2
scripts/build.sh "$build" >&2

export TENANT_ID=${TENANT_ID:-demo}
export TOPIC_PREFIX=${TOPIC_PREFIX:-}
echo "== starting the local stack" >&2
eval "$(TILLSYNC_BUILD_DIR="$build" deploy/local/stack up --prefix "$TOPIC_PREFIX")"

work="$TILLSYNC_STACK_DIR/storeday"
mkdir -p "$work/logs"
logs="$work/logs"
export SD_SRC=$root SD_BIN=$build/bin SD_WORK=$work
export SD_PREPARE_ARGS=${STOREDAY_ARGS:-}
# shellcheck source=../tests/lib/storeday.sh
source tests/lib/storeday.sh
services=("${SD_SERVICES[@]}")

stop_all() {
  trap - INT TERM EXIT
  echo >&2
  echo "== stopping services and the platform simulator" >&2
  sd_down
  echo "== stopping the local stack" >&2
  deploy/local/stack down >&2 || true
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

# The platform simulator stands in for Shopify and Shopline; the store-day generator creates the
# chain there, writes the services' configuration (mapping, shops, rules) into $work, and seeds
# API keys, SKUs, locations and channel mappings once the services listen.
echo "== starting the platform simulator, the chain and the five services" >&2
sd_up

echo
echo "tillsync is running for tenant '$TENANT_ID'"
for s in "${services[@]}"; do
  printf '  %-18s http://%s\n' "$s" "${SD_ADDR[$s]}"
done
echo "  platform simulator $SD_SIM_URL"
echo "  Kafka              $KAFKA_BROKERS"
echo "  Postgres           $DATABASE_URL"
echo "  Redis              $REDIS_URL"
echo "  logs               $logs"
echo
echo "== playing a store day (${STOREDAY_SECONDS:-90} s; STOREDAY_SECONDS, STOREDAY_ARGS=\"--stores 20 --skus 5000\")"
sd_play --duration "${STOREDAY_SECONDS:-90}" --rate "${STOREDAY_RATE:-40}" --progress 5 \
  --expected "$work/expected.json" || echo "the store day stopped early; see above" >&2
echo "== waiting for the suite to settle (webhooks delivered, ledger caught up)"
"$root/tests/sim/storeday" check --expected "$work/expected.json" --db "$DATABASE_URL" \
  --brokers "$KAFKA_BROKERS" --prefix "$TOPIC_PREFIX" --sim "$SD_SIM_URL" --timeout 60 ||
  echo "(some end-of-day checks failed: see above)"
recon="http://${SD_ADDR[recon-reporter]}"
curl -fsS -X POST "$recon/v1/checks/run" >/dev/null 2>&1 || true
echo
echo "== reconciliation summary ($(date -u +%F))"
curl -fsS "$recon/v1/reconciliation?date=$(date -u +%F)" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rows = {}
for g in d.get("groups", []):
    for f in g["figures"]:
        if f["metric"] in ("transactions", "tenders", "orders", "refunds", "cancellations",
                           "sales", "returns", "takings_declared"):
            rows.setdefault((g["store_code"] or "-", g["channel"]), []).append(
                "%s/%s %s%s" % (f["metric"], f["key"] or "-", f["amount"] or "",
                                 " (%d)" % f["quantity"] if f.get("quantity") else ""))
for (store, chan), figs in sorted(rows.items()):
    print("  %-8s %-34s %s" % (store, chan, "; ".join(figs)))
' || echo "  (reconciliation not available)"
echo
echo "== open exceptions by owner"
curl -fsS "$recon/v1/exceptions?status=open&limit=1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
per = {}
for c in d.get("counts", []):
    if c.get("status") == "open":
        per.setdefault(c["owner"], []).append("%s %d" % (c["type"], c["count"]))
for o in sorted(per):
    print("  %-12s %s" % (o, ", ".join(per[o])))
print("  (none)" if not per else "")
' || echo "  (exceptions not available)"
echo "== dashboard: $recon/"
echo
echo "Each service answers /healthz, /readyz and /metrics. Press Ctrl-C to stop everything."

while true; do
  for s in "${services[@]}"; do
    if ! kill -0 "${SD_PID[$s]}" 2>/dev/null; then
      echo "$s stopped unexpectedly; see $logs/$s.log" >&2
      exit 1
    fi
  done
  sleep 1
done
