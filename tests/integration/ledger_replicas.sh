#!/usr/bin/env bash
# Two inventory-ledger replicas in one consumer group share the partitions and stay exact across
# rebalances: a replica joining, one leaving cleanly, one joining, one killed with SIGKILL.
set -euo pipefail
. "$TILLSYNC_SOURCE_DIR/tests/lib/svc.sh"
. "$TILLSYNC_SOURCE_DIR/tests/lib/ledger.sh"
trap ledger_teardown EXIT
ledger_setup lrp
exp=$(mktemp -d)
# wait_assigned NAME: the replica owns partitions (a first group join takes ~3 s)
wait_assigned() {
  local t0=$SECONDS
  until grep -q '"msg":"partition assigned"' "$SVC_LOG_DIR/$1.log"; do
    [ $((SECONDS - t0)) -lt 60 ] || fail "$1 never got a partition"
    sleep 0.1
  done
}
ledger_start R1 LEDGER_BATCH_MAX=100
ledger_wait_migrated
ledger_catalog
wait_assigned R1
produce gen 1500 11 "$exp/1"
ledger_start R2 LEDGER_BATCH_MAX=100   # joins: rebalance while R1 works
produce gen 1500 12 "$exp/2"
wait_assigned R2
svc_stop R1 20                         # leaves cleanly: rebalance
ledger_start R3 LEDGER_BATCH_MAX=100   # joins
produce gen 1500 13 "$exp/3"
wait_assigned R3
ledger_kill R2                         # dies: its partitions move after the session timeout
produce gen 500 14 "$exp/4"
ledger_wait 5000 120
ledger_check_sums
ledger_sum_expect "$exp"/* >"$exp/all"
ledger_check_expect "$exp/all"
for r in R1 R2 R3; do
  grep -q '"msg":"partition assigned"' "$SVC_LOG_DIR/$r.log" || fail "$r never got a partition"
done
svc_stop R3 15
rm -rf "$exp"
echo "ok: replicas exact across rebalances"
