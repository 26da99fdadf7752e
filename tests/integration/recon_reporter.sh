#!/usr/bin/env bash
# recon-reporter end to end: a day of events with planted problems (tests/tools/recon_seed.c) is
# consumed from every topic and dead-letter topic. Proves:
#   - every planted problem (unknown SKU, tax mapping failure, drift, takings variance, stalled
#     order, dead-lettered payload, undecodable record) appears once, with the right owner and
#     sighting count; a drift that cleared is resolved automatically;
#   - the reconciliation equals the figures recon_seed computed from its own data, the CSV
#     parses with Python's csv module and matches the JSON, every figure's trace sums to it;
#   - the payout check raises on a mismatching payout file and clears once it is corrected; the
#     ledger balance check is "unavailable" without inventory-ledger's tables and raises/clears
#     on tables of their shape;
#   - acknowledge/resolve lifecycle, 404/409/400 answers; every JSON answer matches openapi.yaml;
#   - exactly-once in effect: a restart under a NEW consumer group (Kafka would redeliver
#     everything) changes nothing, since offsets live in Postgres with the effects.
set -euo pipefail
. "$(dirname "$0")/../lib/svc.sh"
SRC=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
API="$SRC/services/recon-reporter/openapi.yaml"
VALIDATE="$SRC/tools/contracts/validate-response"
W=$SVC_LOG_DIR
trap svc_stop_all EXIT

# own topics (prefix), own database, own consumer group
PREFIX="recon$$x$RANDOM."
DB="recon_it_$$_$RANDOM"
psql "$DATABASE_URL" -qc "CREATE DATABASE $DB" >/dev/null
DBURL="${DATABASE_URL%/*}/$DB"
mock() { # one line to the kafka-mock control port
  local hp=${KAFKA_MOCK_CONTROL:?} ans
  exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}"; printf '%s\n' "$*" >&3; read -r ans <&3; exec 3>&-
  case "$ans" in ok*) ;; *) fail "kafka mock: $* -> $ans" ;; esac
}
for t in pos.transactions.v1 stock.movements.v1 shop.orders.v1 catalog.items.v1 \
  inventory.levels.v1 loyalty.points.v1 recon.exceptions.v1; do
  mock create-topic "$PREFIX$t" 2
  mock create-topic "$PREFIX$t.dlq" 1
done

ENV=(TOPIC_PREFIX="$PREFIX" DATABASE_URL="$DBURL" RECON_GROUP_ID="g-$PREFIX"
  RECON_KAFKA_SESSION_TIMEOUT_MS=6000 RECON_CHECK_INTERVAL_MS=500 RECON_APPLY_DEADLINE_S=3)
svc_start recon-reporter "${ENV[@]}"
BASE="http://${SVC_ADDR[recon-reporter]}"

# get/post PATH [curl args]: body to $W/last.json, status to $CODE; validated against openapi.yaml
CODE=0
call() {
  local method=$1 path=$2; shift 2
  CODE=$(curl -s -o "$W/last.json" -w '%{http_code}' -X "$method" "$@" "$BASE$path")
  if [ "$(head -c1 "$W/last.json")" = "{" ]; then
    "$VALIDATE" "$API" "$method" "$path" "$CODE" "$W/last.json" ||
      fail "$method $path ($CODE) does not match openapi.yaml: $(head -c 400 "$W/last.json")"
  fi
}
expect_code() { [ "$CODE" = "$1" ] || fail "wanted $1, got $CODE: $(head -c 400 "$W/last.json")"; }

"$TILLSYNC_BUILD_DIR/bin/recon_seed" "$PREFIX" "$W/expected.json"

# wait until the stalled order and the takings variance were raised (deadline 3 s) and the
# dead-letter recon-reporter wrote for the undecodable movement came back as an exception
ok=0
for _ in $(seq 1 120); do
  call GET "/v1/exceptions?status=open"
  if jq -e '[.exceptions[].type] | (index("order_not_reflected") != null) and
      (index("takings_variance") != null) and (map(select(. == "dead_lettered")) | length == 2)' \
      "$W/last.json" >/dev/null; then ok=1; break; fi
  sleep 0.5
done
[ "$ok" = 1 ] || fail "planted problems not all raised: $(jq -c '[.exceptions[] | [.type, .count]]' "$W/last.json")"
sleep 1.5 # one more check interval: nothing else may appear
call GET "/v1/exceptions"; expect_code 200; cp "$W/last.json" "$W/exceptions.json"

# ---- payouts: a matching file raises nothing; a wrong one raises; the corrected one clears
printf 'payout_id,order_id,kind,amount,currency\r\nP1,O1,charge,60.00,GBP\r\nP1,O1,refund,20.00,GBP\r\nP1,O1,fee,1.80,GBP\r\nP1,O2,charge,30.00,GBP\r\n' >"$W/payout-ok.csv"
sed 's/O2,charge,30.00/O2,charge,29.00/' "$W/payout-ok.csv" >"$W/payout-bad.csv"
call POST /v1/payouts -H 'Content-Type: text/csv' --data-binary "@$W/payout-bad.csv"; expect_code 200
jq -e '.imported == 4' "$W/last.json" >/dev/null || fail "payout import: $(cat "$W/last.json")"
call POST /v1/checks/run; expect_code 200
call GET "/v1/exceptions?type=payout_variance&status=open"; expect_code 200
jq -e '.exceptions | length == 1 and .[0].owner == "finance" and (.[0].summary | test("29.00"))' \
  "$W/last.json" >/dev/null || fail "payout variance not raised: $(cat "$W/last.json")"
call POST /v1/payouts -H 'Content-Type: text/csv' --data-binary "@$W/payout-ok.csv"; expect_code 200
call POST /v1/checks/run; expect_code 200
call GET "/v1/exceptions?type=payout_variance"; expect_code 200
jq -e '.exceptions | length == 1 and .[0].status == "resolved" and .[0].resolution == "cleared"' \
  "$W/last.json" >/dev/null || fail "payout variance not cleared: $(cat "$W/last.json")"
call POST /v1/payouts -H 'Content-Type: text/csv' --data-binary $'payout_id,order_id,kind,amount,currency\nP2,O1,bonus,1.00,GBP\n'
expect_code 400
jq -e '.error.message | test("line 2")' "$W/last.json" >/dev/null || fail "bad CSV error: $(cat "$W/last.json")"
call POST /v1/payouts -H 'Content-Type: application/json' --data '{}'; expect_code 415

# ---- the reconciliation
DATE=$(jq -r .date "$W/expected.json")
call GET "/v1/reconciliation?date=$DATE"; expect_code 200; cp "$W/last.json" "$W/recon.json"
curl -sf -o "$W/recon.csv" "$BASE/v1/reconciliation.csv?date=$DATE" || fail "CSV export failed"
call GET "/v1/reconciliation?date=2026-02-30"; expect_code 400

# traces of every money figure (their events must sum to it)
jq -r '.groups[].figures[] | select(.amount != null) | .trace' "$W/recon.json" >"$W/traces.txt"
n=0
while IFS= read -r path; do
  n=$((n + 1))
  call GET "$path"; expect_code 200; cp "$W/last.json" "$W/trace-$n.json"
done <"$W/traces.txt"

python3 - "$W" <<'PY'
import csv, json, sys
from decimal import Decimal
w = sys.argv[1]
exp = json.load(open(f"{w}/expected.json"))
rep = json.load(open(f"{w}/recon.json"))
exc = json.load(open(f"{w}/exceptions.json"))["exceptions"]

def fail(msg):
    sys.exit("FAIL: " + msg)

# 1. the figures equal recon_seed's own computation (exceptions figures are checked below)
got = {}
for g in rep["groups"]:
    if g["channel"] == "exceptions":
        continue
    for f in g["figures"]:
        got[(g["store_code"], g["channel"], f["metric"], f["key"], f["currency"])] = \
            (f["amount"], f["quantity"], f["event_count"])
want = {(f["store_code"], f["channel"], f["metric"], f["key"], f["currency"]):
        (f["amount"], f["quantity"], f["event_count"]) for f in exp["figures"]}
if got != want:
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            print("figure", k, "got", got.get(k), "want", want.get(k))
    fail("reconciliation differs from the independently computed figures")
print(f"ok: {len(want)} figures equal the seeded day's")

# 2. every planted problem once, with its owner and sighting count; nothing else unresolved
unresolved = sorted((x["type"], x["owner"], x["count"]) for x in exc if x["status"] != "resolved")
planted = sorted((x["type"], x["owner"], x["count"]) for x in exp["exceptions"])
if unresolved != planted:
    fail(f"unresolved exceptions {unresolved} != planted {planted}")
cleared = [x for x in exc if x["status"] == "resolved"]
if [(x["type"], x["owner"], x["resolution"], x["resolved_by"]) for x in cleared] != \
        [("stock_drift", "operations", "cleared", "system")]:
    fail(f"auto-resolved exceptions: {cleared}")
for x in exc:
    if not x["explanation"] or not x["suggested_action"] or not x["event_ids"]:
        fail(f"exception without explanation, action or events: {x}")
dl = [x for x in exc if x["type"] == "dead_lettered"]
if sorted(x["topic"] for x in dl) != ["shop.orders.v1", "stock.movements.v1"]:
    fail(f"dead-lettered topics: {[x['topic'] for x in dl]}")
tv = [x for x in exc if x["type"] == "takings_variance"][0]
if tv["store_code"] != "S1" or tv["details"].get("card_recorded") != "5.25" or \
        tv["details"].get("card_declared") != "5.00":
    fail(f"takings variance details: {tv}")
onr = [x for x in exc if x["type"] == "order_not_reflected"][0]
if onr["refs"].get("platform_order_id") != "O2":
    fail(f"stalled order: {onr}")
print(f"ok: {len(planted)} planted problems, each once with its owner")

# 3. the CSV parses with a standard parser and matches the JSON row for row
with open(f"{w}/recon.csv", newline="", encoding="utf-8") as fh:
    rows = list(csv.DictReader(fh))
json_rows = [(rep["date"], rep["tenant_id"], g["store_code"], g["channel"], f["metric"], f["key"],
              f["currency"], f["amount"] or "", str(f["quantity"]), str(f["event_count"]))
             for g in rep["groups"] for f in g["figures"]]
csv_rows = [(r["date"], r["tenant_id"], r["store_code"], r["channel"], r["metric"], r["key"],
             r["currency"], r["amount"], r["quantity"], r["event_count"]) for r in rows]
if csv_rows != json_rows:
    fail(f"CSV does not match the JSON: {csv_rows[:3]} vs {json_rows[:3]}")
print(f"ok: CSV has {len(rows)} rows equal to the JSON")

# 4. each money figure's trace: events sum to the figure and their count is event_count
figs = [(g, f) for g in rep["groups"] for f in g["figures"] if f["amount"] is not None]
for i, (g, f) in enumerate(figs, 1):
    t = json.load(open(f"{w}/trace-{i}.json"))
    total = sum(Decimal(e["amount"]) for e in t["events"])
    if Decimal(f["amount"]) != total or t["figure"]["amount"] != f["amount"] or \
            len(t["events"]) != f["event_count"] or any(not e["topic"] for e in t["events"]):
        fail(f"trace of {g['store_code']}/{g['channel']}/{f['metric']}/{f['key']}: {t}")
print(f"ok: {len(figs)} figures traced to their events")
PY

# ---- lifecycle through the API
ID=$(jq -r '[.exceptions[] | select(.type == "sku_unknown")][0].id' "$W/exceptions.json")
call GET "/v1/exceptions/$ID"; expect_code 200
jq -e '.events | length >= 2' "$W/last.json" >/dev/null || fail "sku_unknown lacks its 2 sightings"
EV=$(jq -r '.events[0].event_id' "$W/last.json")
call GET "/v1/events/$EV"; expect_code 200
jq -e --arg id "$ID" '.topic == "recon.exceptions.v1" and (.exception_ids | index($id | tonumber) != null)' \
  "$W/last.json" >/dev/null || fail "event view: $(cat "$W/last.json")"
call GET "/v1/events/no-such-event"; expect_code 404
call POST "/v1/exceptions/$ID/acknowledge" -H 'Content-Type: application/json' --data '{"by":"ana"}'
expect_code 200
jq -e '.status == "acknowledged" and .acknowledged_by == "ana"' "$W/last.json" >/dev/null || fail "ack: $(cat "$W/last.json")"
call POST "/v1/exceptions/$ID/acknowledge" -H 'Content-Type: application/json' --data '{"by":"ana"}'
expect_code 409
call POST "/v1/exceptions/$ID/resolve" -H 'Content-Type: application/json' --data '{"by":"ben","note":"SKU added"}'
expect_code 200
jq -e '.status == "resolved" and .resolved_by == "ben" and .resolution == "manual"' "$W/last.json" >/dev/null ||
  fail "resolve: $(cat "$W/last.json")"
call POST "/v1/exceptions/$ID/resolve" -H 'Content-Type: application/json' --data '{"by":"ben"}'; expect_code 409
call POST "/v1/exceptions/999999/resolve" -H 'Content-Type: application/json' --data '{"by":"ben"}'; expect_code 404
call POST "/v1/exceptions/$ID/resolve" -H 'Content-Type: application/json' --data '{"note":"x"}'; expect_code 400
call POST "/v1/exceptions/$ID/resolve" -H 'Content-Type: application/json' --data '{"by":'; expect_code 400
call GET "/v1/exceptions?owner=finance"; expect_code 200
jq -e '[.exceptions[].owner] | unique == ["finance"]' "$W/last.json" >/dev/null || fail "owner filter"
call GET "/v1/exceptions?status=bogus"; expect_code 400
call GET /v1/flows; expect_code 200
jq -e '[.flows[] | select(.topic == "shop.orders.v1")][0] | .dlq_events == 2 and .events == 5' \
  "$W/last.json" >/dev/null || fail "flows: $(cat "$W/last.json")"

# ---- ledger balances vs ledger sum: unavailable without inventory-ledger's tables, then a
# mismatch in tables of its shape is raised and clears once corrected
call POST /v1/checks/run; expect_code 200
jq -e '.ledger_check | startswith("unavailable")' "$W/last.json" >/dev/null || fail "ledger check: $(cat "$W/last.json")"
psql "$DBURL" -q <<'SQL'
CREATE TABLE ledger_entries (tenant_id text, sku text, location_id text, bucket text, delta bigint);
CREATE TABLE balances (tenant_id text, sku text, location_id text, on_hand bigint,
                       committed bigint, in_transit bigint);
INSERT INTO ledger_entries VALUES ('acme', 'SKU-1', 'S1', 'on_hand', 10), ('acme', 'SKU-1', 'S1', 'on_hand', -2),
  ('acme', 'SKU-1', 'S1', 'committed', 1);
INSERT INTO balances VALUES ('acme', 'SKU-1', 'S1', 9, 1, 0);
SQL
call POST /v1/checks/run; expect_code 200
# raised by this run or by the timer's (every 500 ms here), whichever came first: once either way
jq -e '.ledger_check == "ok" and .raised <= 1' "$W/last.json" >/dev/null || fail "ledger check: $(cat "$W/last.json")"
call GET "/v1/exceptions?type=balance_mismatch"; expect_code 200
jq -e '.exceptions | length == 1 and .[0].owner == "operations" and .[0].severity == "critical" and .[0].status == "open"' \
  "$W/last.json" >/dev/null || fail "balance mismatch: $(cat "$W/last.json")"
psql "$DBURL" -qc "UPDATE balances SET on_hand = 8"
call POST /v1/checks/run; expect_code 200
call GET "/v1/exceptions?type=balance_mismatch"; expect_code 200
jq -e '.exceptions[0].status == "resolved" and .exceptions[0].resolution == "cleared"' \
  "$W/last.json" >/dev/null || fail "balance mismatch not cleared: $(cat "$W/last.json")"

# ---- exactly-once in effect: restart in a new consumer group; nothing is applied twice
call GET "/v1/exceptions"; expect_code 200; cp "$W/last.json" "$W/exceptions-before.json"
svc_stop recon-reporter 10
mv "$SVC_LOG_DIR/recon-reporter.log" "$SVC_LOG_DIR/recon-reporter.1.log" # svc_start reads the newest address
ENV[2]="RECON_GROUP_ID=g2-$PREFIX"
svc_start recon-reporter "${ENV[@]}"
BASE="http://${SVC_ADDR[recon-reporter]}"
sleep 8 # group join (~3 s on the mock) and a chance to (wrongly) re-apply
call GET "/v1/reconciliation?date=$DATE"; expect_code 200
diff <(jq -S 'del(.groups[] | select(.channel == "exceptions"))' "$W/recon.json") \
  <(jq -S 'del(.groups[] | select(.channel == "exceptions"))' "$W/last.json") >/dev/null ||
  fail "figures changed after a restart in a new group"
call GET "/v1/exceptions"; expect_code 200
[ "$(jq -c '[.exceptions[] | [.id, .count, .status]]' "$W/last.json")" = "$(jq -c '[.exceptions[] | [.id, .count, .status]]' "$W/exceptions-before.json")" ] ||
  fail "sightings counted twice after a restart"
grep -q 'partitions assigned' "$SVC_LOG_DIR/recon-reporter.log" || fail "the restarted consumer never joined"
svc_stop recon-reporter 10
psql "$DATABASE_URL" -qc "DROP DATABASE $DB" >/dev/null || true
echo "ok: recon-reporter"
