#!/usr/bin/env bash
# kafka_decode.sh — the Kafka contract as another team sees it, with plain tools only:
#  1. `kcat -L` lists every topic of DESIGN.md (with $TOPIC_PREFIX) and each consumed topic's .dlq;
#  2. one tillsync.v1.PosTransactionEvent written through services/common's producer
#     (build/bin/kafka_produce_event) is read back with kcat, carries the CloudEvents headers and
#     decodes with `protoc --decode` from proto/ showing its fields;
#  3. a truncated payload does NOT decode (the check above can fail).
# Needs the stack environment (tests/lib/with-stack): KAFKA_BROKERS, optionally TOPIC_PREFIX.
set -euo pipefail

src=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${TILLSYNC_BUILD_DIR:-$src/build}
prefix=${TOPIC_PREFIX:-}
: "${KAFKA_BROKERS:?KAFKA_BROKERS is not set (run through tests/lib/with-stack)}"
work=$(mktemp -d "${TMPDIR:-/tmp}/kafka_decode.XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }

# 1. topics
kcat -b "$KAFKA_BROKERS" -L -m 10 >"$work/meta"
for t in pos.transactions.v1 stock.movements.v1 shop.orders.v1 catalog.items.v1 \
    inventory.levels.v1 loyalty.points.v1 recon.exceptions.v1; do
    for name in "$prefix$t" "$prefix$t.dlq"; do
        if grep -q "topic \"$name\" with" "$work/meta"; then
            ok "topic $name listed"
        else
            not_ok "topic $name missing from kcat -L"
        fi
    done
done

# 2. produce one event, read it back, decode it
topic="test.decode.$$.${prefix}pos.transactions.v1"
event_id="evt-decode-$$-$RANDOM"
if "$build/bin/kafka_produce_event" "$topic" "$event_id"; then
    ok "produced $event_id to $topic"
else
    not_ok "kafka_produce_event failed"
fi
timeout 30 kcat -b "$KAFKA_BROKERS" -C -t "$topic" -o beginning -e -c 1 -f '%s' >"$work/payload.bin"
timeout 30 kcat -b "$KAFKA_BROKERS" -C -t "$topic" -o beginning -e -c 1 -f '%k|%h\n' >"$work/meta.txt"
if [ -s "$work/payload.bin" ]; then
    ok "kcat consumed $(wc -c <"$work/payload.bin") bytes"
else
    not_ok "kcat consumed nothing from $topic"
fi
for want in "S001/T1|" "ce_specversion=1.0" "ce_id=$event_id" "ce_type=tillsync.v1.PosTransactionEvent" \
    "ce_source=tillsync/pos-ingest/S001/T1" "content-type=application/protobuf" "ce_subject=S001/T1" "ce_time=20"; do
    if grep -qF -- "$want" "$work/meta.txt"; then ok "key/header $want"; else not_ok "key/header $want missing: $(cat "$work/meta.txt")"; fi
done
if protoc --decode tillsync.v1.PosTransactionEvent -I "$src/proto" "$src/proto/tillsync/v1/pos.proto" \
    <"$work/payload.bin" >"$work/decoded.txt" 2>"$work/decode.err"; then
    ok "protoc --decode tillsync.v1.PosTransactionEvent"
else
    not_ok "protoc --decode failed: $(cat "$work/decode.err")"
fi
sed 's/^/    /' "$work/decoded.txt"
for want in "event_id: \"$event_id\"" 'tenant_id: "acme"' 'source: SOURCE_SYSTEM_POS' \
    'transaction_id: "TX-0001"' 'store_code: "S001"' 'kind: TRANSACTION_KIND_SALE' \
    'sku: "SKU-123"' 'quantity: 2' 'minor_units: 1250' 'currency: "EUR"'; do
    if grep -qF -- "$want" "$work/decoded.txt"; then ok "decoded $want"; else not_ok "decoded text lacks $want"; fi
done

# 3. the decode check is not vacuous: a truncated payload is rejected
head -c $(($(wc -c <"$work/payload.bin") / 2)) "$work/payload.bin" >"$work/truncated.bin"
if protoc --decode tillsync.v1.PosTransactionEvent -I "$src/proto" "$src/proto/tillsync/v1/pos.proto" \
    <"$work/truncated.bin" >/dev/null 2>&1; then
    not_ok "a truncated payload decoded"
else
    ok "a truncated payload does not decode"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
