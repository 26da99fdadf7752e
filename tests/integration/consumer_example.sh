#!/usr/bin/env bash
# The consumer guide works (docs/consuming.md): one valid record of every topic, encoded with
# `protoc --encode` from text format and produced with kcat with the CloudEvents headers, is
# printed decoded by the C example (tests/examples/consumer.c); a redelivered record (same ce_id)
# is reported as a duplicate, not a second event; a dead letter shows its dlq_* headers; a
# tombstone and a record that is not a valid message are reported, not fatal. The guide's
# kcat | protoc --decode command decodes a record too. Needs the stack env (KAFKA_BROKERS,
# TOPIC_PREFIX) and the build (TILLSYNC_BUILD_DIR).
set -euo pipefail

SRC=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${TILLSYNC_BUILD_DIR:-$SRC/build}
CONSUMER=$BUILD/tests/example_consumer
P=${TOPIC_PREFIX:-}
: "${KAFKA_BROKERS:?KAFKA_BROKERS is not set (run through tests/lib/with-stack)}"

fail() { printf 'consumer_example: FAIL: %s\n' "$*" >&2; exit 1; }
[ -x "$CONSUMER" ] || fail "$CONSUMER not built (cmake --build ... --target example_consumer)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RUN=$$-$RANDOM

uuid() { cat /proc/sys/kernel/random/uuid; }
now_iso() { date -u +%Y-%m-%dT%H:%M:%S.000Z; }

# encode TOPIC_BASE MESSAGE FILE: text format on stdin -> $WORK/<base>.bin
encode() {
    protoc --encode="$2" -I "$SRC/proto" "$3" >"$WORK/$1.bin" ||
        fail "protoc --encode $2 rejected the text-format example"
}

# produce TOPIC KEY CE_ID CE_TYPE FILE [extra -H args...]
produce() {
    local topic=$1 key=$2 id=$3 type=$4 file=$5
    shift 5
    kcat -P -b "$KAFKA_BROKERS" -t "$topic" -k "$key" \
        -H ce_specversion=1.0 -H "ce_id=$id" -H "ce_source=/tillsync/acme/consumer-example-test" \
        -H "ce_type=$type" -H "ce_time=$(now_iso)" -H content-type=application/protobuf \
        "$@" "$file" || fail "kcat could not produce to $topic"
}

env_text() { # event_id source producer
    printf 'envelope { event_id: "%s" tenant_id: "acme" occurred_at_ms: 1764000000000 recorded_at_ms: 1764000001000 source: %s producer: "%s" }\n' "$1" "$2" "$3"
}

declare -A ID TYPE KEY
ID[pos]=$(uuid); ID[stock]=$(uuid); ID[order]=$(uuid); ID[catalog]=$(uuid)
ID[level]=$(uuid); ID[points]=$(uuid); ID[exception]=$(uuid)

{ env_text "${ID[pos]}" SOURCE_SYSTEM_POS pos-ingest
  echo 'transaction { transaction_id: "T-'$RUN'" store_code: "STORE-01" till_id: "TILL-3" location_id: "LOC-STORE-01" kind: TRANSACTION_KIND_SALE'
  echo '  lines { line_id: "1" sku: "SKU-123" quantity: 2 unit_price { minor_units: 1299 currency: "GBP" } net_amount { minor_units: 2598 currency: "GBP" } }'
  echo '  tenders { type: TENDER_TYPE_CARD amount { minor_units: 2598 currency: "GBP" } }'
  echo '  currency: "GBP" total { minor_units: 2598 currency: "GBP" } business_date: "2025-11-24" }'
} | encode pos tillsync.v1.PosTransactionEvent tillsync/v1/pos.proto
{ env_text "${ID[stock]}" SOURCE_SYSTEM_WMS pos-ingest
  echo 'movement { movement_id: "M-'$RUN'" kind: MOVEMENT_KIND_RECEIVED location_id: "LOC-STORE-01" lines { line_id: "1" sku: "SKU-123" quantity: 24 } source_reference: "PO-77" }'
} | encode stock tillsync.v1.StockMovementEvent tillsync/v1/stock.proto
{ env_text "${ID[order]}" SOURCE_SYSTEM_SHOPIFY shop-connector
  echo 'kind: ORDER_EVENT_KIND_CREATED order { platform: PLATFORM_SHOPIFY shop_id: "acme.myshopify.com" order { id: "5123456789012345678" gid: "gid://shopify/Order/5123456789012345678" } order_name: "#1001" source_name: "web"'
  echo '  lines { line_id: "13912345678901234" sku: "SKU-123" quantity: 1 unit_price { minor_units: 1299 currency: "GBP" } requires_shipping: true }'
  echo '  currency: "GBP" total { minor_units: 1299 currency: "GBP" } }'
} | encode order tillsync.v1.ShopOrderEvent tillsync/v1/order.proto
{ env_text "${ID[catalog]}" SOURCE_SYSTEM_SHOPLINE shop-connector
  echo 'item { platform: PLATFORM_SHOPLINE shop_id: "acme-store" sku: "SKU-123" title: "Mug" variant { id: "16057209128362103728401234" } price { minor_units: 1299 currency: "GBP" } requires_shipping: true tracked: true }'
} | encode catalog tillsync.v1.CatalogItemEvent tillsync/v1/catalog.proto
{ env_text "${ID[level]}" SOURCE_SYSTEM_TILLSYNC inventory-ledger
  echo 'level { sku: "SKU-123" location_id: "LOC-STORE-01" location_kind: LOCATION_KIND_STORE on_hand: 22 committed: 1 available: 21 version: 7 as_of_ms: 1764000002000 }'
} | encode level tillsync.v1.InventoryLevelEvent tillsync/v1/inventory.proto
{ env_text "${ID[points]}" SOURCE_SYSTEM_TILLSYNC loyalty-sync
  echo 'change { platform: PLATFORM_SHOPIFY shop_id: "acme.myshopify.com" member_id: "7012345678901" kind: POINTS_CHANGE_KIND_AWARD points: 13 balance_after: 113 idempotency_key: "award/'"${ID[order]}"'" status: POINTS_CHANGE_STATUS_APPLIED }'
} | encode points tillsync.v1.LoyaltyPointsEvent tillsync/v1/loyalty.proto
{ env_text "${ID[exception]}" SOURCE_SYSTEM_TILLSYNC pos-ingest
  echo 'exception { dedupe_key: "sku_unknown/STORE-01/SKU-999" type: EXCEPTION_TYPE_SKU_UNKNOWN owner: OWNER_TEAM_ECOMMERCE severity: SEVERITY_WARNING signal: EXCEPTION_SIGNAL_RAISED summary: "SKU-999 sold at STORE-01 is not in the catalogue" }'
} | encode exception tillsync.v1.ExceptionEvent tillsync/v1/exception.proto

declare -A TOPIC=([pos]=pos.transactions.v1 [stock]=stock.movements.v1 [order]=shop.orders.v1
    [catalog]=catalog.items.v1 [level]=inventory.levels.v1 [points]=loyalty.points.v1
    [exception]=recon.exceptions.v1)
TYPE=([pos]=PosTransactionEvent [stock]=StockMovementEvent [order]=ShopOrderEvent
    [catalog]=CatalogItemEvent [level]=InventoryLevelEvent [points]=LoyaltyPointsEvent
    [exception]=ExceptionEvent)
KEY=([pos]=STORE-01/TILL-3 [stock]=LOC-STORE-01 [order]=shopify/acme.myshopify.com/5123456789012345678
    [catalog]=shopline/acme-store/16057209128362103728401234 [level]=LOC-STORE-01/SKU-123
    [points]=shopify/acme.myshopify.com/7012345678901 [exception]=sku_unknown/STORE-01/SKU-999)

for k in pos stock order catalog level points exception; do
    produce "$P${TOPIC[$k]}" "${KEY[$k]}" "${ID[$k]}" "tillsync.v1.${TYPE[$k]}" "$WORK/$k.bin"
done
# the same record again (a producer retry): must be skipped as a duplicate
produce "$P${TOPIC[pos]}" "${KEY[pos]}" "${ID[pos]}" tillsync.v1.PosTransactionEvent "$WORK/pos.bin"
# a dead letter of the stock movement: original key/payload/headers plus the dlq_* headers
produce "$P${TOPIC[stock]}.dlq" "${KEY[stock]}" "${ID[stock]}" tillsync.v1.StockMovementEvent \
    "$WORK/stock.bin" -H dlq_error_code=unknown_location -H "dlq_error_message=LOC-STORE-01 is not mapped" \
    -H "dlq_original_topic=$P${TOPIC[stock]}" -H dlq_original_partition=0 -H dlq_original_offset=0 \
    -H "dlq_failed_at=$(now_iso)" -H dlq_service=inventory-ledger
# not a valid message (field 1 with wire type 7), and a tombstone on the compacted catalogue
BAD_ID=$(uuid)
printf '\x0f\xff\xff' >"$WORK/bad.bin"
produce "$P${TOPIC[order]}" bad/key "$BAD_ID" tillsync.v1.ShopOrderEvent "$WORK/bad.bin"
printf 'gone/%s:\n' "$RUN" | kcat -P -Z -K: -b "$KAFKA_BROKERS" -t "$P${TOPIC[catalog]}" ||
    fail "kcat could not produce a tombstone"

# ---- the C example
topics=()
for k in pos stock order catalog level points exception; do topics+=("$P${TOPIC[$k]}"); done
topics+=("$P${TOPIC[stock]}.dlq")
start=$(date +%s)
timeout 90 "$CONSUMER" -g "consumer-example-$RUN" -i 6000 "${topics[@]}" >"$WORK/out.txt" \
    2>"$WORK/err.txt" || fail "consumer exited with $?: $(cat "$WORK/err.txt")"
echo "consumer_example: consumer ran $(( $(date +%s) - start )) s"
cat "$WORK/out.txt"

for k in pos stock order catalog level points exception; do
    n=$(grep -c "^EVENT $P${TOPIC[$k]} .* ce_id=${ID[$k]} " "$WORK/out.txt" || true)
    [ "$n" = 1 ] || fail "$k: expected one decoded EVENT line for ce_id ${ID[$k]} on $P${TOPIC[$k]}, got $n"
done
grep -q "^EVENT $P${TOPIC[pos]} .*ce_type=tillsync.v1.PosTransactionEvent .* pos transaction T-$RUN kind=TRANSACTION_KIND_SALE store=STORE-01 till=TILL-3 lines=1 total=2598 GBP" "$WORK/out.txt" ||
    fail "pos summary is not decoded as expected"
grep -q "key=shopify/acme.myshopify.com/5123456789012345678 .* shop order 5123456789012345678 kind=ORDER_EVENT_KIND_CREATED" "$WORK/out.txt" ||
    fail "order summary lost the 19-digit platform id"
grep -q "variant=16057209128362103728401234 " "$WORK/out.txt" || fail "catalog summary lost the 26-digit id"
grep -q "^DUPLICATE $P${TOPIC[pos]} .* ce_id=${ID[pos]}$" "$WORK/out.txt" ||
    fail "the redelivered record was not reported as a duplicate"
grep -q "^EVENT $P${TOPIC[stock]}.dlq .* ce_id=${ID[stock]} stock movement M-$RUN .* dlq_error_code=unknown_location dlq_original_topic=$P${TOPIC[stock]} dlq_service=inventory-ledger$" "$WORK/out.txt" ||
    fail "the dead letter was not decoded with its dlq headers"
grep -q "^UNDECODABLE $P${TOPIC[order]} .* ce_id=$BAD_ID not a valid tillsync.v1.ShopOrderEvent$" "$WORK/out.txt" ||
    fail "the invalid payload was not reported as undecodable"
grep -q "^TOMBSTONE $P${TOPIC[catalog]} .* key=gone/$RUN$" "$WORK/out.txt" || fail "the tombstone was not reported"

# ---- bad invocations fail with the usage message
if KAFKA_BROKERS= "$CONSUMER" "$P${TOPIC[pos]}" 2>"$WORK/usage.txt"; then fail "consumer ran without brokers"; fi
grep -q '^usage: consumer' "$WORK/usage.txt" || fail "no usage message without brokers"
if "$CONSUMER" -c nope "$P${TOPIC[pos]}" 2>/dev/null; then fail "consumer accepted -c nope"; fi
# -c not reached before going idle is a failure
if timeout 60 "$CONSUMER" -g "consumer-example-idle-$RUN" -c 1000000 -i 4000 "$P${TOPIC[level]}" \
    >/dev/null 2>"$WORK/idle.txt"; then
    fail "consumer reported success without reaching -c"
fi
grep -q 'events before going idle' "$WORK/idle.txt" || fail "no message when -c was not reached"

# ---- the guide's kcat | protoc --decode command (docs/consuming.md) on the level record
kcat -C -b "$KAFKA_BROKERS" -t "$P${TOPIC[level]}" -o beginning -e -q -f '%k\t%h\n' >"$WORK/heads.txt" ||
    fail "kcat could not read headers"
grep -q "ce_id=${ID[level]}" "$WORK/heads.txt" || fail "kcat -f '%h' did not show the ce_id header"
found=0
while IFS=$'\t' read -r part off; do
    kcat -C -b "$KAFKA_BROKERS" -t "$P${TOPIC[level]}" -p "$part" -o "$off" -c 1 -e -q -f '%s' |
        protoc --decode=tillsync.v1.InventoryLevelEvent -I "$SRC/proto" tillsync/v1/inventory.proto \
            >"$WORK/decoded.txt" || fail "protoc --decode failed on the level record"
    grep -q "event_id: \"${ID[level]}\"" "$WORK/decoded.txt" && grep -q 'available: 21' "$WORK/decoded.txt" && found=1
done < <(kcat -C -b "$KAFKA_BROKERS" -t "$P${TOPIC[level]}" -o beginning -e -q -f '%p\t%o\t%h\n' |
    awk -F'\t' -v id="ce_id=${ID[level]}" 'index($3, id) { print $1 "\t" $2 }')
[ "$found" = 1 ] || fail "kcat | protoc --decode did not show the level record"

echo "consumer_example: ok"
