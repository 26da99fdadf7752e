#!/usr/bin/env bash
# inventory-ledger against the real stack: every event kind moves the right quantities, the
# balance always equals the sum of the ledger, exceptions are raised, late sales after a count
# are not deducted twice, a flash sale takes the channel figure to 0 with its buffer, bad HTTP
# input gets a 4xx and changes nothing, and a replay from offset 0 changes nothing.
set -euo pipefail
. "$TILLSYNC_SOURCE_DIR/tests/lib/svc.sh"
. "$TILLSYNC_SOURCE_DIR/tests/lib/ledger.sh"
trap ledger_teardown EXIT
ledger_setup lev

ledger_start L
A=http://${SVC_ADDR[L]}
for l in L1 L2; do http_json PUT "$A/v1/locations/$l" '{"kind":"store"}' | grep -q '^200' || fail "location $l"; done
http_json PUT "$A/v1/locations/W1" '{"kind":"warehouse"}' | grep -q '^200' || fail "location W1"
for s in A B C E F; do http_json PUT "$A/v1/skus/$s" '{"requires_shipping":true}' | grep -q '^200' || fail "sku $s"; done
http_json PUT "$A/v1/channel-locations/CH1" '{"platform":"shopify","shop_id":"shop.example","platform_location_id":"gid://shopify/Location/1","buffer":5,"locations":["L1","W1"]}' | grep -q '^200' || fail "channel"
http_json PUT "$A/v1/safety-stock/F/W1" '{"quantity":1}' | grep -q '^200' || fail "safety stock"

produce script <<'EV'
mov r1 received W1 M1 1000 - A:100
mov r2 received L1 M2 1000 - A:20 B:10
pos p1 sale L1 TX1 2000 - A:3 @BAG:1:LC-BAG
pos p2 return L1 TX2 2100 - A:-1:r
pos p3 return L1 TX3 2200 - A:-1
pos p4 exchange L1 TX4 2300 - A:-1:r B:1
pos p5 sale L1 TX5 2400 - B:2
pos p6 void L1 TX6 2500 TX5
mov t1 transfer_out W1 M3 2600 L2 A:10
mov t2 transfer_in L2 M4 2700 W1 A:4
mov d1 damage L1 M5 2800 - A:1
mov d2 shrinkage L1 M6 2900 - A:1
mov d3 adjustment L1 M7 3000 - B:-2
ord o1 created O1 W1 3100 web - A:5
ord o2 fulfilled O1 W1 3200 web W1 A:5
ord o3 created O2 W1 3300 web - A:3
ord o4 cancelled O2 W1 3400 web -
ord o5 created O3 W1 3500 web - A:4
ord o6 refunded O3 W1 3600 web - A:2:cancel:W1
ord o7 fulfilled O3 W1 3700 web W1 A:2
ord o8 refunded O3 W1 3800 web - A:1:return:W1
ord o9 created O4 L2 3900 pickup - A:2
ord o10 picked_up O4 L2 4000 pickup - A:2
ord o11 created O5 L1 4100 instore - A:1
pos x1 sale L1 TX7 4200 - @REPAIR:1
ord x2 created O6 W1 4300 web - @GIFTCARD:1
mov x3 received L1 M8 4400 - D:1
mov x4 received X9 M9 4500 - A:1
pos x5 sale L2 TX8 4600 - C:1
mov e1 received L1 M10 1000 - E:10
mov e2 count L1 M11 5000 - E:8
mov f1 received W1 M14 8000 - F:5
mov f2 received L1 M15 8000 - F:3
EV
ledger_wait 33
expect_bal E L1 8 0 0
# a sale made before the count (offline till) arrives after it
echo "pos e3 sale L1 TX9 3000 - E:1" | produce script
ledger_wait 34
expect_bal E L1 8 0 0
produce script <<'EV'
pos e4 sale L1 TX10 6000 - E:1
mov e5 count L1 M12 4000 - E:100
mov e6 snapshot L1 M13 7000 - E:5
EV
ledger_wait 37
ledger_check_sums
expect_bal A W1 84 0 0
expect_bal A L1 16 0 0
expect_bal A L2 2 0 6
expect_bal B L1 7 0 0
expect_bal D L1 1 0 0
expect_bal A X9 1 0 0
expect_bal C L2 -1 0 0
expect_bal E L1 5 0 0
# the late sale is in the ledger with its correction, at the count's time
[ "$(lsql "SELECT string_agg(reason || ':' || delta || '@' || occurred_at_ms, ',' ORDER BY id) FROM ledger_entries WHERE event_id = 'e3'")" = "sale:-1@3000,count_correction:1@5000" ] ||
  fail "late sale entries: $(lsql "SELECT string_agg(reason || delta, ',') FROM ledger_entries WHERE event_id = 'e3'")"
[ "$(lsql "SELECT reason || ':' || delta FROM ledger_entries WHERE event_id = 'e5'")" = "cycle_count_superseded:0" ] || fail "older count not superseded"
# HTTP: figures per location and channel, ledger history with source references
body=$(http_json GET "$A/v1/stock/F")
echo "$body" | grep -q '^200' || fail "stock F: $body"
echo "$body" | grep -q '"kind":"channel","on_hand":8,"committed":0,"reserved":0,"in_transit":0,"safety_stock":1,"available":2,"channel_location_id":"CH1"' ||
  fail "channel figure before the flash sale: $body"
body=$(http_json GET "$A/v1/ledger/A/W1?limit=50")
echo "$body" | grep -q '"source_ref":"order:shopify/shop.example/O3"' || fail "ledger history: $body"
# exceptions: unmapped non-stock lines (till and online), unknown SKU and location, negative stock
produce script </dev/null
keys=$(kcat -C -b "$KAFKA_BROKERS" -t "${TOPIC_PREFIX}recon.exceptions.v1" -o beginning -e -q -f '%k\n' 2>/dev/null | sort -u)
for k in "non_stock_unmapped/L1/REPAIR" "non_stock_unmapped/W1/L" "sku_unknown/L1/D" "unknown_location/X9/" "negative_stock/L2/C"; do
  echo "$keys" | grep -qxF "$k" || fail "exception $k not raised (got: $(echo $keys))"
done

# flash sale: the channel figure reaches 0 with the buffer and stays there
produce script <<'EV'
pos f3 sale L1 TX11 9000 - F:2
pos f4 sale L1 TX12 9100 - F:1
EV
ledger_wait 39
body=$(http_json GET "$A/v1/stock/F")
echo "$body" | grep -q '"kind":"channel","on_hand":5,"committed":0,"reserved":0,"in_transit":0,"safety_stock":1,"available":0,"channel_location_id":"CH1"' ||
  fail "channel figure after the flash sale: $body"
levels=$(kcat -C -b "$KAFKA_BROKERS" -t "${TOPIC_PREFIX}inventory.levels.v1" -o beginning -e -q -f '%k\n' 2>/dev/null)
echo "$levels" | grep -qxF "CH1/F" || fail "no level published for CH1/F"
echo "$levels" | grep -qxF "L1/F" || fail "no level published for L1/F"
[ "$(lsql "SELECT version FROM level_versions WHERE key = 'CH1/F'")" -ge 3 ] || fail "CH1/F version did not grow"

# bad HTTP input: clear 4xx, nothing changes
before=$(lsql "SELECT (SELECT string_agg(quantity::text, ',') FROM safety_stock) || (SELECT string_agg(buffer::text, ',') FROM channel_locations) || (SELECT count(*) FROM channel_location_members) || (SELECT count(*) FROM locations)")
check4xx() { local r; r=$(http_json "$@"); case "$r" in 4??\ *'"error"'*) ;; *) fail "$1 $2 $3 answered: $r";; esac; }
check4xx PUT "$A/v1/safety-stock/F/W1" '{"quantity":-1}'
check4xx PUT "$A/v1/safety-stock/F/W1" '{"quantity":"3"}'
check4xx PUT "$A/v1/safety-stock/F/W1" '{"quantity":1.5}'
check4xx PUT "$A/v1/safety-stock/F/W1" 'not json'
check4xx PUT "$A/v1/channel-locations/CH1" '{"platform":"ebay","buffer":1,"locations":["L1"]}'
check4xx PUT "$A/v1/channel-locations/CH1" '{"platform":"shopify","buffer":-5,"locations":["L1"]}'
check4xx PUT "$A/v1/channel-locations/CH1" '{"platform":"shopify","buffer":1,"locations":[]}'
check4xx PUT "$A/v1/channel-locations/CH1" '{"platform":"shopify","buffer":1,"locations":[7]}'
check4xx PUT "$A/v1/locations/L9" '{"kind":"moon"}'
check4xx PUT "$A/v1/locations/L9" '{}'
check4xx GET "$A/v1/ledger/A/W1?limit=0"
check4xx GET "$A/v1/ledger/A/W1?limit=abc"
check4xx GET "$A/v1/stock/NOPE"
check4xx GET "$A/v1/channel-locations/NOPE"
r=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: text/plain' -d '{"quantity":1}' "$A/v1/safety-stock/F/W1")
[ "$r" = 415 ] || fail "wrong media type answered $r"
after=$(lsql "SELECT (SELECT string_agg(quantity::text, ',') FROM safety_stock) || (SELECT string_agg(buffer::text, ',') FROM channel_locations) || (SELECT count(*) FROM channel_location_members) || (SELECT count(*) FROM locations)")
[ "$before" = "$after" ] || fail "bad input changed the admin tables: $before → $after"
if [ -x "$TILLSYNC_SOURCE_DIR/tools/contracts/validate-response" ]; then
  tmp=$(mktemp)
  curl -s "$A/v1/stock/F" >"$tmp"
  "$TILLSYNC_SOURCE_DIR/tools/contracts/validate-response" "$TILLSYNC_SOURCE_DIR/services/inventory-ledger/openapi.yaml" GET /v1/stock/{sku} 200 "$tmp" || fail "stock response off contract"
  curl -s "$A/v1/ledger/A/W1" >"$tmp"
  "$TILLSYNC_SOURCE_DIR/tools/contracts/validate-response" "$TILLSYNC_SOURCE_DIR/services/inventory-ledger/openapi.yaml" GET /v1/ledger/{sku}/{location} 200 "$tmp" || fail "ledger response off contract"
  curl -s -X PUT -H 'content-type: application/json' -d '{"quantity":-1}' "$A/v1/safety-stock/F/W1" >"$tmp"
  "$TILLSYNC_SOURCE_DIR/tools/contracts/validate-response" "$TILLSYNC_SOURCE_DIR/services/inventory-ledger/openapi.yaml" PUT /v1/safety-stock/{sku}/{location} 400 "$tmp" || fail "error response off contract"
  rm -f "$tmp"
fi

# duplicates: the same events produced again, and the topics replayed from offset 0 by a new
# consumer group on the same ledger, change nothing
snap=$(lsql "SELECT string_agg(sku || location_id || on_hand || '/' || committed || '/' || in_transit, ',' ORDER BY sku, location_id) || (SELECT count(*) FROM ledger_entries) FROM balances")
produce script <<'EV'
mov r1 received W1 M1 1000 - A:100
pos p1 sale L1 TX1 2000 - A:3 @BAG:1:LC-BAG
ord o1 created O1 W1 3100 web - A:5
EV
svc_stop L 15
ledger_start L2 LEDGER_GROUP_ID=replay-from-zero
t0=$SECONDS
until [ "$(lsql "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = 'replay-from-zero'")" = 42 ]; do
  [ $((SECONDS - t0)) -lt 60 ] || fail "replay did not reach the end of the topics"
  sleep 0.2
done
ledger_wait 39
ledger_check_sums
[ "$(lsql "SELECT string_agg(sku || location_id || on_hand || '/' || committed || '/' || in_transit, ',' ORDER BY sku, location_id) || (SELECT count(*) FROM ledger_entries) FROM balances")" = "$snap" ] ||
  fail "a replay changed the ledger"
grep -q '"ledger_events_duplicate_total"' /dev/null || true
curl -s "http://${SVC_ADDR[L2]}/metrics" | grep -q '^ledger_events_duplicate_total 42$' || fail "replay: not 42 duplicates: $(curl -s "http://${SVC_ADDR[L2]}/metrics" | grep ledger_events)"
svc_stop L2 15
echo "ok: ledger events, exceptions, late sale, flash sale, bad input, replay"
