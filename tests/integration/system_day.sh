#!/usr/bin/env bash
# System test: a small store day (tests/sim/storeday) played against all five services and the
# platform simulator, then the end-of-day checks: every ledger balance equals the generator's
# expected stock (on_hand, committed, in_transit per SKU and location, including a cycle count
# overtaken by a late offline upload), pos.transactions.v1 holds every till fact exactly once,
# and recon-reporter's tenders per store equal the generator's takings.
# SYSTEM_DAY_SECONDS (default 30) sets the length of the day; SYSTEM_DAY_ARGS adds storeday
# prepare options (e.g. "--stores 20 --skus 5000"). Own database, topic prefix, tenant.
# SYSTEM_DAY_FAULT plays the day through a fault, injected a quarter into it, and the same
# end-of-day checks must hold exactly (ctest runs each as integration_system_fault_<fault>):
#   kill      SIGKILL of each service in turn, each restarted on its address 3 s later
#   kafka     Kafka produce and fetch errors, then one broker of three down for 10 s
#   postgres  Postgres stopped and started again
#   redis     Redis stopped and started again
#   platform  both shops' APIs answer 5xx, then throttle, for SYSTEM_DAY_FAULT_SECONDS
#             (default 60) in all
# SD_KEEP=1 keeps the work directory and logs (with the simulator's counters) after a pass too.
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
: "${TILLSYNC_BUILD_DIR:?TILLSYNC_BUILD_DIR not set}"
: "${KAFKA_BROKERS:?run through tests/lib/with-stack}"

run="sday$$x$RANDOM"
export TENANT_ID=$run TOPIC_PREFIX="$run."
export SD_SRC=$src SD_BIN=$TILLSYNC_BUILD_DIR/bin SD_WORK=$(mktemp -d "${TMPDIR:-/tmp}/system-day.XXXXXX")
export SD_PREPARE_ARGS=${SYSTEM_DAY_ARGS:-}
base_db=$DATABASE_URL
psql "$base_db" -qXc "CREATE DATABASE $run" >/dev/null
export DATABASE_URL="${base_db%/*}/$run"
while read -r name parts _; do
  case $name in ''|'#'*) continue ;; esac
  "$src/deploy/local/stack" kafka create-topic "$TOPIC_PREFIX$name" "$parts" >/dev/null
done <"$src/deploy/topics.txt"

# shellcheck source=../lib/storeday.sh
source "$src/tests/lib/storeday.sh"
ok=0
finish() {
  # the simulator's own counts (API calls, throttling, loyalty writes and collisions) tell a failed
  # day's story: kept with the logs
  [ -z "$SD_SIM_URL" ] || curl -fsS -m 5 "$SD_SIM_URL/_sim/counters" >"$SD_WORK/logs/sim-counters.json" 2>/dev/null || true
  sd_down
  psql "$base_db" -qXc "DROP DATABASE IF EXISTS $run WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$ok" = 1 ] && [ -z "${SD_KEEP:-}" ]; then rm -rf "$SD_WORK"; else echo "system_day: logs kept in $SD_WORK/logs" >&2; fi
}
trap finish EXIT

t0=$SECONDS
extra=(KAFKA_SESSION_TIMEOUT_MS=6000 RECON_KAFKA_SESSION_TIMEOUT_MS=6000 LEDGER_BATCH_WAIT_MS=20
  PUBLISH_INTERVAL_MS=50)
sd_up "${extra[@]}"
echo "system_day: suite up in $((SECONDS - t0))s"
day=${SYSTEM_DAY_SECONDS:-30}
fault=${SYSTEM_DAY_FAULT:-}
stack() { "$src/deploy/local/stack" "$@"; }

# inject FAULT: runs in this shell while the day plays (restarted services update SD_PID)
inject() {
  local s secs=${SYSTEM_DAY_FAULT_SECONDS:-60} d
  case $1 in
    kill)
      for s in "${SD_SERVICES[@]}"; do
        echo "system_day: fault: SIGKILL $s"
        kill -KILL "${SD_PID[$s]}"
        wait "${SD_PID[$s]}" 2>/dev/null || true
        sleep 1
        sd_start "$s" "${extra[@]}" "HTTP_LISTEN=${SD_ADDR[$s]}" || return 1
        sleep 2
      done ;;
    kafka)
      echo "system_day: fault: Kafka produce and fetch errors, then broker 1 down for 10 s"
      stack kafka request-errors 0 30 7 >/dev/null        # Produce: REQUEST_TIMED_OUT
      stack kafka request-errors 1 30 6 >/dev/null        # Fetch: NOT_LEADER_OR_FOLLOWER
      sleep 3
      stack kafka broker-down 1 >/dev/null
      sleep 10
      stack kafka broker-up 1 >/dev/null
      stack kafka clear >/dev/null ;;
    postgres)
      echo "system_day: fault: Postgres restarted"
      stack restart-postgres "$TILLSYNC_STACK_DIR" >/dev/null ;;
    redis)
      echo "system_day: fault: Redis restarted"
      stack restart-redis "$TILLSYNC_STACK_DIR" >/dev/null ;;
    platform)
      echo "system_day: fault: both shops answer 5xx for $((secs / 2)) s, then throttle for $((secs / 2)) s"
      for d in $(python3 -c 'import json,sys; print(" ".join(s["domain"] for s in json.load(open(sys.argv[1]))["shops"]))' "$SD_WORK/chain.json"); do
        curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
          -d "{\"kind\":\"5xx\",\"seconds\":$((secs / 2))}" "$SD_SIM_URL/_sim/shops/$d/faults"
      done
      sleep $((secs / 2))
      for d in $(python3 -c 'import json,sys; print(" ".join(s["domain"] for s in json.load(open(sys.argv[1]))["shops"]))' "$SD_WORK/chain.json"); do
        curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
          -d "{\"kind\":\"throttle\",\"seconds\":$((secs / 2))}" "$SD_SIM_URL/_sim/shops/$d/faults"
      done
      sleep $((secs / 2)) ;;
    *) echo "FAIL: unknown SYSTEM_DAY_FAULT '$1'" >&2; return 1 ;;
  esac
}

if [ -z "$fault" ]; then
  sd_play --duration "$day" --progress 5 --expected "$SD_WORK/expected.json"
else
  sd_play --duration "$day" --progress 5 --expected "$SD_WORK/expected.json" &
  play=$!
  sleep $((day / 4))
  inject "$fault" || { kill "$play" 2>/dev/null; echo "FAIL: fault $fault not injected" >&2; exit 1; }
  echo "system_day: fault $fault over after $((SECONDS - t0))s"
  wait "$play" || { echo "FAIL: the day did not play through the fault" >&2; exit 1; }
fi
gone=$(sd_alive) || { echo "FAIL: $gone died during the day" >&2; exit 1; }
"$src/tests/sim/storeday" check --expected "$SD_WORK/expected.json" --db "$DATABASE_URL" \
  --brokers "$KAFKA_BROKERS" --prefix "$TOPIC_PREFIX" --sim "$SD_SIM_URL" \
  --recon "http://${SD_ADDR[recon-reporter]}" --ledger "http://${SD_ADDR[inventory-ledger]}" --points \
  --timeout 90
gone=$(sd_alive) || { echo "FAIL: $gone died" >&2; exit 1; }
ok=1
echo "system_day: PASS in $((SECONDS - t0))s"
