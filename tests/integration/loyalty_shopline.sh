#!/usr/bin/env bash
# loyalty-sync on Shopline (LOYALTY_PLATFORM=shopline), through the real binary and the platform
# simulator: customers REST (GET customers/v2/search.json?query_param=, a fuzzy search;
# POST customers.json) and Admin GraphQL (pointsInfo, pointsUpdate answering the user error
# OPERATION_TOO_FREQUENT on a collision: a write within 0.2 s of the previous one to the member,
# or LOYALTY_SHOPLINE_CONFLICT_RATE random ones, default 0.3). Ids are 26-digit bare JSON numbers.
#  1. LOYALTY_SHOPLINE_TX (default 50) till sales and returns for LOYALTY_SHOPLINE_CUSTOMERS
#     (default 10) customers (tests/tools/loyalty_backlog), plus two decoy members the fuzzy
#     search returns for customers 1 and 2 (a phone and an email containing theirs);
#  2. while loyalty-sync works them off, a stand-in for shop-connector (tests/tools/shop_rl_client)
#     calls the shop's REST API taking from the same Redis bucket (tillsync:rl:<tenant>:<shop>:rest,
#     36 tokens, 4/s); the simulator's REST bucket (40, 4/s) answers 429 at once when full
#     ("immediate"), so no 429 at all proves the two share one budget (a control with two
#     separate buckets gets 429s);
#  3. every member's balance equals the expected one, one member per customer, the decoys
#     untouched; every member id is 26 digits and the same in the journal and in the
#     loyalty.points.v1 keys; collisions happened; REST calls took the "rest" bucket and GraphQL
#     the "graphql" one;
#  4. a new consumer group replays pos.transactions.v1 from the beginning, followed by 8 new
#     sales and returns on every partition (new emails, the phones of customers 0-2: matched to
#     their members by phone): once these are applied, every member changed by exactly them
#     (points and history) and no member was created: the replay itself changed nothing.
# Own database, topic prefix, tenant, consumer groups. About 45 s.
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
: "${TILLSYNC_BUILD_DIR:?TILLSYNC_BUILD_DIR not set}"
: "${KAFKA_BROKERS:?run through tests/lib/with-stack}"
# shellcheck source=../lib/svc.sh
source "$src/tests/lib/svc.sh"

ntx=${LOYALTY_SHOPLINE_TX:-50}
ncust=${LOYALTY_SHOPLINE_CUSTOMERS:-10}
conflicts=${LOYALTY_SHOPLINE_CONFLICT_RATE:-0.3}
run="lssl$$x$RANDOM"
export TENANT_ID=$run TOPIC_PREFIX="$run."
work=$(mktemp -d "${TMPDIR:-/tmp}/loyalty-shopline.XXXXXX")
base_db=$DATABASE_URL
db="${base_db%/*}/$run"
shop="$run.myshopline.com"
ctl_shop="$run-ctl.myshopline.com"
ver=v20240601
topic_pos="${TOPIC_PREFIX}pos.transactions.v1"
sim_pid=""
bg_pids=()
ok=0
cleanup() {
  svc_stop_all
  for p in "${bg_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "$sim_pid" ] && { kill -TERM "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; } || true
  psql "$base_db" -qXc "DROP DATABASE IF EXISTS $run WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$ok" = 1 ]; then rm -rf "$work" "$SVC_LOG_DIR"; else echo "logs kept in $SVC_LOG_DIR $work" >&2; fi
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
t_start=$(now_ms)

psql "$base_db" -qXc "CREATE DATABASE $run" >/dev/null
for t in pos.transactions.v1 shop.orders.v1 loyalty.points.v1 recon.exceptions.v1; do
  "$src/deploy/local/stack" kafka create-topic "$TOPIC_PREFIX$t" 2 >/dev/null
done

python3 "$src/tests/sim/platform-sim" --port 0 --port-file "$work/sim.port" --seed 11 \
  >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sim.port" ] && break; sleep 0.1; done
[ -s "$work/sim.port" ] || fail "simulator did not start"
sim="http://127.0.0.1:$(cat "$work/sim.port")"
post() { curl -fsS -X POST "$sim$1" -H 'Content-Type: application/json' -d "$2"; }
for d in "$shop" "$ctl_shop"; do
  post /_sim/shops "{\"platform\": \"shopline\", \"domain\": \"$d\", \"token\": \"tok-$d\",
    \"rest_bucket_mode\": \"immediate\", \"loyalty\": {\"conflict_rate\": $conflicts}}" >/dev/null
done
counters() { curl -fsS "$sim/_sim/shops/$1/counters"; }
counter() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"; }

# decoys: customer 1's phone and customer 2's email are contained in theirs (a fuzzy search hit)
decoy_a=$(post "/_sim/shops/$shop/members" "{\"email\": \"decoy-a@$run.test\", \"phone\": \"+4477009000011\"}")
decoy_b=$(post "/_sim/shops/$shop/members" "{\"email\": \"xc2@$run.test\"}")
decoys=$(python3 -c 'import json,sys; print(" ".join(json.loads(a)["id"] for a in sys.argv[1:]))' \
  "$decoy_a" "$decoy_b")

cat >"$work/rules.json" <<'EOF'
{"rule_id": "shopline-1", "points_per_unit": 1, "unit_minor": 100}
EOF

"$TILLSYNC_BUILD_DIR/bin/loyalty_backlog" "$topic_pos" "$run" "$ncust" "$ntx" >"$work/expected.txt"
[ "$(wc -l <"$work/expected.txt")" -eq "$ncust" ] || fail "backlog not written"

env_args=(DATABASE_URL="$db" MIGRATIONS_DIR="$src/services/loyalty-sync/migrations"
  RULES_FILE="$work/rules.json" LOYALTY_PLATFORM=shopline LOYALTY_SHOP="$shop"
  LOYALTY_API_URL="$sim" LOYALTY_API_TOKEN="tok-$shop" LOYALTY_API_VERSION=$ver
  LOYALTY_CONSUMER_GROUP="$run-g" LOG_LEVEL=info LOYALTY_MAX_RETRIES=20
  RATELIMIT_REST_CAPACITY=36 RATELIMIT_REST_REFILL_PER_S=4)

count() { psql "$db" -qtAXc "SELECT count(*) FROM loyalty_change WHERE $1" 2>/dev/null || echo 0; }
rl_client() { # URL-of-shop KEY SECONDS OUT
  "$TILLSYNC_BUILD_DIR/bin/shop_rl_client" "$sim/admin/openapi/$ver/locations.json" \
    "Authorization: Bearer tok-$1" "$2" 36 4 "$3" >"$4" 2>&1 &
  bg_pids+=($!)
}
rl_field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1" | tail -1; }

# ---- 1-2. the backlog, with shop-connector's stand-in on the same REST bucket
t0=$(now_ms)
rl_client "$shop" "tillsync:rl:$run:$shop:rest" 12 "$work/rl_shared.txt"
# control: two clients on separate buckets of another shop overrun its REST budget
rl_client "$ctl_shop" "tillsync:rl:$run:$ctl_shop:rest-a" 3 "$work/rl_ctl_a.txt"
rl_client "$ctl_shop" "tillsync:rl:$run:$ctl_shop:rest-b" 3 "$work/rl_ctl_b.txt"
svc_start loyalty-sync "${env_args[@]}"
for _ in $(seq 1 900); do
  [ "$(count "state = 'applied' AND published")" -ge "$ntx" ] && break
  sleep 0.1
done
done_n=$(count "state = 'applied' AND published")
[ "$done_n" -eq "$ntx" ] || fail "$done_n of $ntx changes applied (open: \
$(psql "$db" -qtAXc "SELECT state, count(*) FROM loyalty_change GROUP BY 1" | tr '\n' ' '))"
echo "loyalty_shopline: $ntx changes applied in $(( $(now_ms) - t0 )) ms"
for p in "${bg_pids[@]}"; do wait "$p" || fail "shop_rl_client failed: $(cat "$work"/rl_*.txt)"; done
bg_pids=()
svc_stop loyalty-sync 5

# ---- 3. balances, ids, collisions, buckets
curl -fsS "$sim/_sim/shops/$shop/members" >"$work/members.json"
kcat -b "$KAFKA_BROKERS" -C -t "${TOPIC_PREFIX}loyalty.points.v1" -o beginning -e -q -f '%k\n' \
  >"$work/keys.txt" 2>/dev/null || fail "kcat could not read loyalty.points.v1"
psql "$db" -qtAXc "SELECT DISTINCT member_id FROM loyalty_change" >"$work/journal_ids.txt"
python3 - "$work" "$shop" "$decoys" <<'EOF'
import json, sys
work, shop, decoys = sys.argv[1], sys.argv[2], sys.argv[3].split()
members = json.load(open(work + "/members.json"))["members"]
want = dict(l.split() for l in open(work + "/expected.txt"))
bad = []
by_email, ids = {}, set()
for m in members:
    if m["id"] in decoys:
        if m["points"] != 0 or m["history"]:
            bad.append("decoy %s (%s) was written: %d points" % (m["id"], m["email"], m["points"]))
        continue
    by_email.setdefault((m["email"] or "").lower(), []).append(m)
for email, pts in want.items():
    ms = by_email.get(email, [])
    if len(ms) != 1:
        bad.append("%s: %d members" % (email, len(ms)))
    elif ms[0]["points"] != int(pts):
        bad.append("%s: %d points, want %s" % (email, ms[0]["points"], pts))
    else:
        ids.add(ms[0]["id"])
if len(by_email) != len(want):
    bad.append("%d members for %d customers" % (len(by_email), len(want)))
short = [i for i in ids | set(decoys) if len(i) != 26 or not i.isdigit()]
if short:
    bad.append("ids not 26 digits: %s" % short[:3])
journal = set(l.strip() for l in open(work + "/journal_ids.txt") if l.strip())
if journal != ids:
    bad.append("journal member ids differ from the platform's: %s" % sorted(journal ^ ids)[:4])
keys = [l.strip() for l in open(work + "/keys.txt") if l.strip()]
prefix = "shopline/%s/" % shop
key_ids = set(k[len(prefix):] for k in keys if k.startswith(prefix))
if key_ids != ids or not all(k.startswith(prefix) for k in keys):
    bad.append("loyalty.points.v1 keys: %d, ids %s" % (len(keys), sorted(key_ids ^ ids)[:4]))
if bad:
    print("FAIL: " + "; ".join(bad[:10]), file=sys.stderr)
    sys.exit(1)
print("loyalty_shopline: %d members exact, decoys untouched, %d events keyed by 26-digit ids "
      "equal to the journal's" % (len(want), len(keys)))
EOF
[ "$(wc -l <"$work/keys.txt")" -eq "$ntx" ] || fail "$(wc -l <"$work/keys.txt") events for $ntx changes"

counters "$shop" >"$work/counters.json"
c() { counter "$1" <"$work/counters.json"; }
updates=$(c shopline.graphql.pointsUpdate)
frequent=$(c shopline.points_too_frequent)
searches=$(c "shopline.rest.GET /customers/v2/search.json")
creates=$(c "shopline.rest.POST /customers.json")
throttled=$(c shopline.rest.throttled)
echo "loyalty_shopline: pointsUpdate $updates (refused as too frequent: $frequent)," \
  "customer searches $searches, creates $creates, REST 429s $throttled;" \
  "shop-connector stand-in: $(cat "$work/rl_shared.txt")"
[ "$frequent" -gt 0 ] || fail "no collision happened"
[ "$updates" -eq $((ntx + frequent)) ] || fail "$updates pointsUpdate calls, want $ntx + $frequent"
[ "$creates" -eq "$ncust" ] || fail "$creates members created, want $ncust"
[ "$searches" -gt 0 ] || fail "no customers/v2/search.json call"
[ "$(rl_field "$work/rl_shared.txt" calls)" -gt 0 ] || fail "the stand-in made no call"
[ "$throttled" -eq 0 ] && [ "$(rl_field "$work/rl_shared.txt" throttled)" -eq 0 ] ||
  fail "REST budget overrun: $throttled 429s (loyalty-sync not on the shop's REST bucket?)"
ctl_429=$(counters "$ctl_shop" | counter shopline.rest.throttled)
[ "$ctl_429" -gt 0 ] || fail "control: two separate buckets did not overrun the REST budget"
for api in rest graphql; do
  [ "$(redis-cli -u "$REDIS_URL" EXISTS "tillsync:rl:$run:$shop:$api")" = 1 ] ||
    fail "no Redis bucket tillsync:rl:$run:$shop:$api"
done
[ "$(redis-cli -u "$REDIS_URL" EXISTS "tillsync:rl:$run:$shop:loyalty")" = 0 ] ||
  fail "a loyalty-app bucket was used on Shopline"
echo "loyalty_shopline: control with separate buckets: $ctl_429 REST 429s"

# ---- 4. replay from the beginning with a new group, then new sales on every partition
before_end() { kcat -b "$KAFKA_BROKERS" -C -t "$topic_pos" -o beginning -e -q -f '%p\n' | sort | uniq -c; }
before_end >"$work/parts_before.txt"
svc_start loyalty-sync "${env_args[@]}" LOYALTY_CONSUMER_GROUP="$run-replay"
"$TILLSYNC_BUILD_DIR/bin/loyalty_backlog" "$topic_pos" "${run}s" 3 8 >"$work/expected_s.txt"
before_end >"$work/parts_after.txt"
[ "$(awk '{print $2}' "$work/parts_before.txt" | sort -u | wc -l)" -eq 2 ] &&
  [ "$(join -1 2 -2 2 <(sort -k2 "$work/parts_before.txt") <(sort -k2 "$work/parts_after.txt") |
    awk '$3 > $2' | wc -l)" -eq 2 ] || fail "the new sales did not reach every partition"
for _ in $(seq 1 600); do
  [ "$(count "idem_key LIKE '%${run}s-T%' AND state = 'applied' AND published")" -ge 8 ] && break
  sleep 0.1
done
[ "$(count "idem_key LIKE '%${run}s-T%' AND state = 'applied' AND published")" -eq 8 ] ||
  fail "the sales after the replay were not applied"
svc_stop loyalty-sync 5
curl -fsS "$sim/_sim/shops/$shop/members" >"$work/members2.json"
psql "$db" -qtAXc "SELECT member_id, count(*) FROM loyalty_change WHERE idem_key LIKE '%${run}s-T%'
  GROUP BY 1" >"$work/new_changes.txt"
python3 - "$work" "$run" <<'EOF'
import json, sys
work, run = sys.argv[1], sys.argv[2]
old = {m["id"]: m for m in json.load(open(work + "/members.json"))["members"]}
new = {m["id"]: m for m in json.load(open(work + "/members2.json"))["members"]}
added = dict(l.strip().split("|") for l in open(work + "/new_changes.txt") if l.strip())
sale = {e.replace("@%ss." % run, "@%s." % run): int(p)
        for e, p in (l.split() for l in open(work + "/expected_s.txt"))}
bad = ["members created: %s" % sorted(set(new) - set(old))] if set(new) != set(old) else []
for i, m in old.items():
    want = (m["points"] + sale.get((m["email"] or "").lower(), 0),
            len(m["history"]) + int(added.get(i, 0)))
    got = (new[i]["points"], len(new[i]["history"]))
    if got != want:
        bad.append("%s: (points, writes) %s, want %s" % (m["email"], got, want))
if bad or not added:
    print("FAIL: after the replay: " + "; ".join(bad[:6]), file=sys.stderr)
    sys.exit(1)
print("loyalty_shopline: replay from the beginning changed no member; the 8 new changes exact")
EOF
[ "$(count "true")" -eq $((ntx + 8)) ] || fail "journal has $(count "true") changes, want $((ntx + 8))"
grep -q '"points change failed"' "$SVC_LOG_DIR/loyalty-sync.log" && fail "a change failed"
ok=1
echo "loyalty_shopline: PASS in $(( ($(now_ms) - t_start) / 1000 )) s"
