#!/usr/bin/env bash
# loyalty-sync under a backlog, through the real binary and the platform simulator (default
# collision windows: a write within 0.2 s of the previous one to the same member collides, plus
# LOYALTY_BACKLOG_CONFLICT_RATE random conflicts, default 0.3):
#  1. LOYALTY_BACKLOG_TX (default 400) till sales and returns for 40 customers are written to
#     pos.transactions.v1 before the service starts (tests/tools/loyalty_backlog);
#  2. loyalty-sync starts with its default settings and gets SIGTERM while the backlog is being
#     worked off: it must exit 0 within 5 s;
#  3. a restart (same consumer group) finishes the work: every change applied exactly once and
#     every member's balance on the simulator equals the expected one (no member created twice);
#     the time it took is printed as "applied N changes in S s".
# Own database, topic prefix, tenant, consumer group. Prints the figures; about 30 s.
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
: "${TILLSYNC_BUILD_DIR:?TILLSYNC_BUILD_DIR not set}"
: "${KAFKA_BROKERS:?run through tests/lib/with-stack}"
# shellcheck source=../lib/svc.sh
source "$src/tests/lib/svc.sh"

ntx=${LOYALTY_BACKLOG_TX:-400}
ncust=${LOYALTY_BACKLOG_CUSTOMERS:-40}
conflicts=${LOYALTY_BACKLOG_CONFLICT_RATE:-0.3}
run="lsbl$$x$RANDOM"
export TENANT_ID=$run TOPIC_PREFIX="$run."
work=$(mktemp -d "${TMPDIR:-/tmp}/loyalty-backlog.XXXXXX")
base_db=$DATABASE_URL
db="${base_db%/*}/$run"
shop="$run.myshopify.com"
sim_pid=""
ok=0
cleanup() {
  svc_stop_all
  [ -n "$sim_pid" ] && { kill -TERM "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; } || true
  psql "$base_db" -qXc "DROP DATABASE IF EXISTS $run WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$ok" = 1 ] && [ -z "${LOYALTY_BACKLOG_KEEP:-}" ]; then rm -rf "$work" "$SVC_LOG_DIR"; else echo "logs kept in $SVC_LOG_DIR $work" >&2; fi
}
trap cleanup EXIT
now_ms() { date +%s%3N; }

psql "$base_db" -qXc "CREATE DATABASE $run" >/dev/null
for t in pos.transactions.v1 shop.orders.v1 loyalty.points.v1 recon.exceptions.v1; do
  "$src/deploy/local/stack" kafka create-topic "$TOPIC_PREFIX$t" 6 >/dev/null
done

python3 "$src/tests/sim/platform-sim" --port 0 --port-file "$work/sim.port" --seed 7 \
  >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sim.port" ] && break; sleep 0.1; done
[ -s "$work/sim.port" ] || fail "simulator did not start"
sim="http://127.0.0.1:$(cat "$work/sim.port")"
curl -fsS -X POST "$sim/_sim/shops" -H 'Content-Type: application/json' \
  -d "{\"platform\": \"shopify\", \"domain\": \"$shop\", \"token\": \"tok\",
       \"loyalty\": {\"conflict_rate\": $conflicts}}" >/dev/null

cat >"$work/rules.json" <<'EOF'
{"rule_id": "backlog-1", "points_per_unit": 1, "unit_minor": 100}
EOF

"$TILLSYNC_BUILD_DIR/bin/loyalty_backlog" "${TOPIC_PREFIX}pos.transactions.v1" "$run" "$ncust" \
  "$ntx" >"$work/expected.txt"
[ "$(wc -l <"$work/expected.txt")" -eq "$ncust" ] || fail "backlog not written"

env_args=(DATABASE_URL="$db" MIGRATIONS_DIR="$src/services/loyalty-sync/migrations"
  RULES_FILE="$work/rules.json" LOYALTY_PLATFORM=shopify LOYALTY_SHOP="$shop"
  LOYALTY_API_URL="$sim" LOYALTY_API_TOKEN=tok LOYALTY_CONSUMER_GROUP="$run-g" LOG_LEVEL=info
  LOYALTY_MAX_RETRIES=20)
# extra settings for measurements, e.g. LOYALTY_BACKLOG_SVC_ENV="RATELIMIT_REFILL_PER_S=4"
read -r -a extra_env <<<"${LOYALTY_BACKLOG_SVC_ENV:-}"
env_args+=("${extra_env[@]}")

count() { psql "$db" -qtAXc "SELECT count(*) FROM loyalty_change WHERE $1" 2>/dev/null || echo 0; }

# ---- 2. SIGTERM during the backlog
t0=$(now_ms)
svc_start loyalty-sync "${env_args[@]}"
want=$((ntx / 5))
for _ in $(seq 1 600); do
  [ "$(count "state = 'applied'")" -ge "$want" ] && break
  sleep 0.1
done
first=$(count "state = 'applied'")
[ "$first" -ge "$want" ] || fail "only $first of $want changes applied in 60 s before SIGTERM"
echo "loyalty_backlog: $first changes applied $(( ($(now_ms) - t0) )) ms after start; SIGTERM"
t1=$(now_ms)
svc_stop loyalty-sync 5
echo "loyalty_backlog: exited 0 in $(( $(now_ms) - t1 )) ms after SIGTERM"
left=$(count "state <> 'applied'")
echo "loyalty_backlog: left open at exit: $left (in_flight $(count "state = 'in_flight'"))"

# ---- 3. restart finishes the work
t2=$(now_ms)
svc_start loyalty-sync "${env_args[@]}"
for _ in $(seq 1 1200); do
  [ "$(count "state = 'applied' AND published")" -ge "$ntx" ] && break
  sleep 0.1
done
done_n=$(count "state = 'applied' AND published")
t3=$(now_ms)
[ "$done_n" -eq "$ntx" ] || fail "$done_n of $ntx changes applied after the restart (open: \
$(psql "$db" -qtAXc "SELECT state, count(*) FROM loyalty_change GROUP BY 1" | tr '\n' ' '))"
echo "loyalty_backlog: applied $((ntx - first)) changes in $(( (t3 - t2) )) ms after the restart" \
  "(whole backlog $ntx changes: start to done $(( t3 - t0 )) ms including the restart)"
svc_stop loyalty-sync 5

# balances: exactly the expected ones, one member per customer
curl -fsS "$sim/_sim/shops/$shop/members" >"$work/members.json"
python3 - "$work/members.json" "$work/expected.txt" <<'EOF'
import json, sys
members = json.load(open(sys.argv[1]))["members"]
want = dict(l.split() for l in open(sys.argv[2]))
by_email = {}
for m in members:
    by_email.setdefault((m["email"] or "").lower(), []).append(m)
bad = []
for email, pts in want.items():
    ms = by_email.get(email, [])
    if len(ms) != 1:
        bad.append("%s: %d members" % (email, len(ms)))
    elif ms[0]["points"] != int(pts):
        bad.append("%s: %d points, want %s" % (email, ms[0]["points"], pts))
if bad:
    print("FAIL: balances: " + "; ".join(bad[:10]), file=sys.stderr)
    sys.exit(1)
print("loyalty_backlog: %d members, balances exact" % len(want))
EOF
grep -q '"points change failed"' "$SVC_LOG_DIR/loyalty-sync.log" && fail "a change failed"
ok=1
echo "loyalty_backlog: PASS"
