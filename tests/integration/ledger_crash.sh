#!/usr/bin/env bash
# inventory-ledger survives kill -9 at random moments while mixed events flow: after the last
# restart every balance equals the expected figure, the sum of the ledger, and exactly every
# event was applied once. Default: 3,000 events and 3 kills; TILLSYNC_LONG_TESTS=1: 100,000
# events and 10 kills.
set -euo pipefail
. "$TILLSYNC_SOURCE_DIR/tests/lib/svc.sh"
. "$TILLSYNC_SOURCE_DIR/tests/lib/ledger.sh"
trap ledger_teardown EXIT
if [ "${TILLSYNC_LONG_TESTS:-0}" = 1 ]; then total=100000 kills=10; else total=3000 kills=3; fi
ledger_setup lcr
chunk=$((total / (kills + 1)))
exp=$(mktemp -d)
produced=0
for k in $(seq 0 "$kills"); do
  n=$chunk
  [ "$k" -eq "$kills" ] && n=$((total - produced))
  produce gen "$n" "$((k + 1))" "$exp/$k" &
  prod=$!
  ledger_start L LEDGER_BATCH_MAX=50
  if [ "$k" -eq 0 ]; then ledger_wait_migrated; ledger_catalog; fi
  wait "$prod" || fail "producer"
  produced=$((produced + n))
  [ "$k" -eq "$kills" ] && break
  # kill -9 once this replica made progress, at a random moment of its work
  before=$(applied)
  t0=$SECONDS
  until [ "$(applied)" -gt "$before" ]; do
    [ $((SECONDS - t0)) -lt 60 ] || fail "no progress before kill $((k + 1))"
    sleep 0.05
  done
  sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
  ledger_kill L
  echo "kill $((k + 1)) at $(applied) of $produced applied"
done
ledger_wait "$total" 180
ledger_check_sums
ledger_sum_expect "$exp"/* >"$exp/all"
ledger_check_expect "$exp/all"
[ "$(lsql "SELECT count(DISTINCT event_id) FROM ledger_entries")" = "$(lsql "SELECT count(*) FROM applied_events WHERE event_id IN (SELECT event_id FROM ledger_entries)")" ] || fail "entries of unknown events"
svc_stop L 15
rm -rf "$exp"
echo "ok: $total events, $kills kills, balances exact"
