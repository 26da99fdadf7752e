#!/usr/bin/env bash
# recon-reporter's "SKU known on one side only" check (sku_one_side_only), end to end through
# Kafka and Postgres with records from tests/tools/recon_sku_events.c. Proves:
#   - before any catalogue record the check says "unavailable" and raises nothing;
#   - catalogue lists A and B (tracked), the tills sell A and C (plus a carrier bag, which is no
#     SKU): with RECON_SKU_SIDE_GRACE_S=0 exactly C (till only: the platform lacks it) and B
#     (platform only: the tills lack it) are raised, with side, shops, stores and times; a till
#     sale of B clears B's exception and listing C online clears C's;
#   - a movement at a warehouse does not count as the till side, one at a store's location does;
#     an untracked catalogue SKU is never "platform only"; a tombstoned variant's SKU sold at a
#     till is "till only" with the shop it was deleted from; a Shopify POS sale (shop.orders.v1,
#     in_store_sale) counts as sold in store;
#   - hostile catalogue records (not UTF-8, a time Postgres cannot store, an 8 KiB SKU, no shop,
#     bytes that do not decode) are dead-lettered, each once, and the record after them on the
#     same partition is applied; a loyalty points record is recorded, not dead-lettered;
#   - a restart in a NEW consumer group (everything redelivered) changes neither side's tables,
#     and the grace period holds a new SKU back until it has been listed that long.
set -euo pipefail
. "$(dirname "$0")/../lib/svc.sh"
SRC=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
API="$SRC/services/recon-reporter/openapi.yaml"
VALIDATE="$SRC/tools/contracts/validate-response"
EV="$TILLSYNC_BUILD_DIR/bin/recon_sku_events"
W=$SVC_LOG_DIR
trap svc_stop_all EXIT

PREFIX="sku$$x$RANDOM."
DB="recon_sku_$$_$RANDOM"
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

# the checker's own loop runs once an hour: the test runs the checks itself
ENV=(TOPIC_PREFIX="$PREFIX" DATABASE_URL="$DBURL" RECON_GROUP_ID="g-$PREFIX"
  RECON_KAFKA_SESSION_TIMEOUT_MS=6000 RECON_CHECK_INTERVAL_MS=3600000 RECON_SKU_SIDE_GRACE_S=0)
svc_start recon-reporter "${ENV[@]}"
BASE="http://${SVC_ADDR[recon-reporter]}"

CODE=0
call() { # METHOD PATH [curl args]: body to $W/last.json, validated against openapi.yaml
  local method=$1 path=$2; shift 2
  CODE=$(curl -s -o "$W/last.json" -w '%{http_code}' -X "$method" "$@" "$BASE$path")
  if [ "$(head -c1 "$W/last.json")" = "{" ]; then
    local why
    why=$("$VALIDATE" "$API" "$method" "$path" "$CODE" "$W/last.json" 2>&1) ||
      fail "$method $path ($CODE) does not match openapi.yaml: $why: $(head -c 400 "$W/last.json")"
  fi
}
expect_code() { [ "$CODE" = "$1" ] || fail "wanted $1, got $CODE: $(head -c 400 "$W/last.json")"; }
applied() { # EVENT_ID...: wait until recon-reporter has recorded each event
  local id
  for id in "$@"; do
    for _ in $(seq 1 200); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/v1/events/$id")" = 200 ] && continue 2
      sleep 0.1
    done
    fail "event $id never applied"
  done
}
run_checks() { call POST /v1/checks/run; expect_code 200; cp "$W/last.json" "$W/run.json"; }
open_sides() { # the open sku_one_side_only exceptions as "SKU:side" lines, sorted
  call GET "/v1/exceptions?type=sku_one_side_only&status=open"; expect_code 200
  jq -r '.exceptions[] | "\(.refs.sku):\(.details.side)"' "$W/last.json" | sort | paste -sd' '
}
exception_of() { # SKU: its exception (any status) into $W/x.json
  call GET "/v1/exceptions?type=sku_one_side_only"; expect_code 200
  jq --arg s "$1" '[.exceptions[] | select(.refs.sku == $s)] | if length == 1 then .[0] else error("\(length) exceptions") end' \
    "$W/last.json" >"$W/x.json" || fail "exception of $1: $(cat "$W/last.json")"
}
SHOP=shop-a.myshopify.com

# ---- nothing yet: the check cannot run (every SKU of one side would be flagged)
run_checks
jq -e '.sku_check | startswith("unavailable")' "$W/run.json" >/dev/null || fail "empty check: $(cat "$W/run.json")"

# ---- the brief's case: catalogue A, B; tills sell A and C (and a carrier bag)
"$EV" "$PREFIX" catalog ev-cat-a "$SHOP" 101 SKU-A 1
"$EV" "$PREFIX" catalog ev-cat-b "$SHOP" 102 SKU-B 1
"$EV" "$PREFIX" sale ev-sale-1 S1 TX1 SKU-A SKU-C ns:BAG
applied ev-cat-a ev-cat-b ev-sale-1
run_checks
jq -e '.sku_check == "ok" and .raised == 2' "$W/run.json" >/dev/null || fail "first run: $(cat "$W/run.json")"
got=$(open_sides)
[ "$got" = "SKU-B:platform_only SKU-C:till_only" ] || fail "open sku_one_side_only: '$got'"
exception_of SKU-C
jq -e --arg shop "shopify:$SHOP" '.owner == "ecommerce" and .severity == "info" and
    .dedupe_key == "sku_one_side_only/SKU-C" and .store_code == "S1" and
    .details.missing_on == "platform" and .details.till_stores == ["S1"] and
    .details.till_locations == ["loc-S1"] and .details.till_lines == 1 and
    (.details.till_first_seen | test("^20")) and .details.listed_in == null and
    (.summary | test("SKU-C is on the tills only: sold or moved at S1")) and
    (.explanation | length > 0) and (.suggested_action | length > 0) and (.event_ids == ["ev-sale-1"])' \
  "$W/x.json" >/dev/null || fail "SKU-C: $(cat "$W/x.json")"
exception_of SKU-B
jq -e --arg shop "shopify:$SHOP" '.details.missing_on == "tills" and .details.listed_in == [$shop] and
    .details.grace_s == 0 and (.details.listed_since | test("^20")) and .store_code == "" and
    (.summary | test("SKU-B is on the platform only: tracked in " + $shop)) and .event_ids == ["ev-cat-b"]' \
  "$W/x.json" >/dev/null || fail "SKU-B: $(cat "$W/x.json")"
call GET /v1/flows; expect_code 200
jq -e '.checks.sku_check == "ok"' "$W/last.json" >/dev/null || fail "flows: $(jq -c .checks "$W/last.json")"
# an unchanged finding is not raised again
run_checks
jq -e '.raised == 0 and .cleared == 0' "$W/run.json" >/dev/null || fail "second run: $(cat "$W/run.json")"

# a till sale of B clears B; listing C online clears C
"$EV" "$PREFIX" sale ev-sale-2 S2 TX2 SKU-B
applied ev-sale-2
run_checks
jq -e '.raised == 0 and .cleared == 1' "$W/run.json" >/dev/null || fail "after B sold: $(cat "$W/run.json")"
[ "$(open_sides)" = "SKU-C:till_only" ] || fail "after B sold: '$(open_sides)'"
exception_of SKU-B
jq -e '.status == "resolved" and .resolution == "cleared" and .resolved_by == "system"' "$W/x.json" >/dev/null ||
  fail "B not cleared: $(cat "$W/x.json")"
"$EV" "$PREFIX" catalog ev-cat-c shop-b.myshopify.com 201 SKU-C 0
applied ev-cat-c
run_checks
[ "$(open_sides)" = "" ] || fail "after C listed: '$(open_sides)'"
echo "ok: exactly C (till only) and B (platform only) raised; both cleared by the other side"

# ---- what counts as a side
"$EV" "$PREFIX" movement ev-mv-wh - WH SKU-W          # a warehouse: not the tills
"$EV" "$PREFIX" movement ev-mv-store - loc-S1 SKU-M   # WMS receipt at store S1's location
"$EV" "$PREFIX" catalog ev-cat-d "$SHOP" 104 SKU-D 0   # untracked online, never at a till
"$EV" "$PREFIX" catalog ev-cat-e "$SHOP" 105 SKU-E 1
applied ev-mv-wh ev-mv-store ev-cat-d ev-cat-e
"$EV" "$PREFIX" tombstone "$SHOP" 105                  # variant deleted online...
"$EV" "$PREFIX" sale ev-sale-3 S1 TX3 SKU-E            # ...but still sold in store
applied ev-sale-3
for _ in $(seq 1 50); do # the tombstone has no event id of its own
  [ "$(psql "$DBURL" -Atc "SELECT deleted FROM recon_catalog_items WHERE record_key = 'shopify/$SHOP/105'")" = t ] && break
  sleep 0.1
done
run_checks
got=$(open_sides)
[ "$got" = "SKU-E:till_only SKU-M:till_only" ] || fail "sides: '$got'"
exception_of SKU-E
jq -e --arg shop "shopify:$SHOP" '.details.formerly_listed_in == [$shop] and (.summary | test("deleted from"))' \
  "$W/x.json" >/dev/null || fail "SKU-E: $(cat "$W/x.json")"
exception_of SKU-M
jq -e '.details.till_locations == ["loc-S1"] and .details.till_stores == null' "$W/x.json" >/dev/null ||
  fail "SKU-M: $(cat "$W/x.json")"
echo "ok: warehouse movements and untracked SKUs do not count; store locations and deleted variants do"

# ---- a Shopify POS sale is a till sale: a tracked online SKU sold only through Shopify POS
"$EV" "$PREFIX" catalog ev-cat-p "$SHOP" 107 SKU-P 1
applied ev-cat-p
run_checks
[ "$(open_sides)" = "SKU-E:till_only SKU-M:till_only SKU-P:platform_only" ] || fail "before the POS sale: '$(open_sides)'"
"$EV" "$PREFIX" posorder ev-pos-1 "$SHOP" 9001 STORE-9 SKU-P
applied ev-pos-1
run_checks
[ "$(open_sides)" = "SKU-E:till_only SKU-M:till_only" ] || fail "after the Shopify POS sale: '$(open_sides)'"
echo "ok: a Shopify POS sale counts as sold in store"

# ---- hostile catalogue records are dead-lettered; the next record on the partition applies
for kind in utf8 time longsku noshop; do "$EV" "$PREFIX" hostile "$kind" "ev-bad-$kind"; done
"$EV" "$PREFIX" hostile garbage ev-bad-garbage
"$EV" "$PREFIX" catalog ev-cat-g hostile.myshopify.com 666 SKU-G 0  # same key as the hostile ones
"$EV" "$PREFIX" loyalty ev-points-1
applied ev-cat-g ev-points-1
ok=0
for _ in $(seq 1 100); do
  call GET "/v1/exceptions?type=dead_lettered"; expect_code 200
  [ "$(jq '[.exceptions[] | select(.topic == "catalog.items.v1")] | length' "$W/last.json")" = 5 ] && { ok=1; break; }
  sleep 0.2
done
[ "$ok" = 1 ] || fail "hostile catalogue records not dead-lettered: $(jq -c '[.exceptions[] | [.topic, .summary]]' "$W/last.json")"
jq -e '[.exceptions[] | select(.topic == "catalog.items.v1") | .details.dlq_error_code] | sort ==
    ["decode_failed", "validation_failed", "validation_failed", "validation_failed", "validation_failed"]' \
  "$W/last.json" >/dev/null || fail "dead-letter codes: $(jq -c '[.exceptions[] | .details]' "$W/last.json")"
jq -e '[.exceptions[] | select(.topic != "catalog.items.v1")] | length == 0' "$W/last.json" >/dev/null ||
  fail "other dead letters (loyalty?): $(jq -c '[.exceptions[] | [.topic, .summary]]' "$W/last.json")"
[ "$(psql "$DBURL" -Atc "SELECT sku FROM recon_catalog_items WHERE record_key = 'shopify/hostile.myshopify.com/666'")" = SKU-G ] ||
  fail "the record after the hostile ones was not applied"
[ "$(psql "$DBURL" -Atc "SELECT count(*) FROM recon_catalog_items WHERE sku LIKE 'SKU-H%' OR sku LIKE 'XXXX%'")" = 0 ] ||
  fail "a hostile record changed the catalogue"
run_checks
[ "$(open_sides)" = "SKU-E:till_only SKU-M:till_only" ] || fail "after hostile records: '$(open_sides)'"
echo "ok: 5 hostile catalogue records dead-lettered, nothing of them applied, the partition flows"

# ---- restart in a new group: everything is redelivered and nothing changes; grace period
snap() { psql "$DBURL" -Atc "SELECT string_agg(t, '|' ORDER BY t) FROM (
  SELECT concat_ws(',', sku, store_code, location_id, source, first_seen, last_seen, lines) AS t FROM recon_sku_sightings
  UNION ALL SELECT concat_ws(',', record_key, sku, tracked, deleted, listed_since, event_id) FROM recon_catalog_items) x"; }
before=$(snap)
svc_stop recon-reporter 10
mv "$SVC_LOG_DIR/recon-reporter.log" "$SVC_LOG_DIR/recon-reporter.1.log"
ENV[2]="RECON_GROUP_ID=g2-$PREFIX"
ENV[5]="RECON_SKU_SIDE_GRACE_S=3600"
svc_start recon-reporter "${ENV[@]}"
BASE="http://${SVC_ADDR[recon-reporter]}"
"$EV" "$PREFIX" catalog ev-cat-f "$SHOP" 106 SKU-F 1
applied ev-cat-f
sleep 3 # a chance to (wrongly) re-apply the redelivered records
grep -q 'partitions assigned' "$SVC_LOG_DIR/recon-reporter.log" || fail "the restarted consumer never joined"
after=$(psql "$DBURL" -Atc "SELECT string_agg(t, '|' ORDER BY t) FROM (
  SELECT concat_ws(',', sku, store_code, location_id, source, first_seen, last_seen, lines) AS t FROM recon_sku_sightings
  UNION ALL SELECT concat_ws(',', record_key, sku, tracked, deleted, listed_since, event_id) FROM recon_catalog_items
  WHERE sku <> 'SKU-F') x")
[ "$before" = "$after" ] || fail "a redelivery changed the SKU sides: $(diff <(tr '|' '\n' <<<"$before") <(tr '|' '\n' <<<"$after"))"
run_checks
[ "$(open_sides)" = "SKU-E:till_only SKU-M:till_only" ] || fail "F raised within its grace: '$(open_sides)'"
psql "$DBURL" -qc "UPDATE recon_catalog_items SET listed_since = now() - interval '2 hours' WHERE sku = 'SKU-F'"
run_checks
[ "$(open_sides)" = "SKU-E:till_only SKU-F:platform_only SKU-M:till_only" ] || fail "F after its grace: '$(open_sides)'"
exception_of SKU-F
jq -e '.details.grace_s == 3600' "$W/x.json" >/dev/null || fail "SKU-F: $(cat "$W/x.json")"
echo "ok: a redelivery changes nothing; the grace period holds a new SKU back"

svc_stop recon-reporter 10
psql "$DATABASE_URL" -qc "DROP DATABASE $DB" >/dev/null || true
echo "ok: recon-reporter SKU sides"
