# Shell helpers to run the whole suite against the platform simulator with a generated chain
# (tests/sim/storeday); sourced by scripts/run.sh and tests/integration/system_day.sh.
# Needs: SD_SRC (repository), SD_BIN (directory of the service binaries), SD_WORK (scratch
# directory: generated config, logs), and the stack's KAFKA_BROKERS, DATABASE_URL, REDIS_URL,
# TENANT_ID, TOPIC_PREFIX in the environment.

SD_SERVICES=(pos-ingest shop-connector inventory-ledger loyalty-sync recon-reporter)
declare -A SD_PID SD_ADDR
SD_SIM_PID=""
SD_SIM_URL=""

sd_die() { echo "storeday: $*" >&2; return 1; }

# sd_start_sim: the platform simulator on a free port; sets SD_SIM_URL.
sd_start_sim() {
  local pf="$SD_WORK/sim.port"
  rm -f "$pf"
  "$SD_SRC/tests/sim/platform-sim" --port 0 --port-file "$pf" --seed "${SD_SEED:-1}" \
    --time-factor 0.001 >"$SD_WORK/logs/platform-sim.log" 2>&1 &
  SD_SIM_PID=$!
  for _ in $(seq 1 100); do
    if [ -s "$pf" ]; then SD_SIM_URL="http://127.0.0.1:$(cat "$pf")"; return 0; fi
    kill -0 "$SD_SIM_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$SD_WORK/logs/platform-sim.log" >&2
  sd_die "platform simulator did not start"
}

# sd_env SERVICE: the VAR=value lines of SERVICE's section of $SD_WORK/services.env.
sd_env() {
  awk -v s="[$1]" '/^\[/ {on = ($0 == s); next} on && NF' "$SD_WORK/services.env"
}

# sd_start SERVICE [VAR=value...]: starts SERVICE with its generated config; waits until it
# listens; records SD_PID / SD_ADDR. Appends to its log (restarts keep the history).
sd_start() {
  local s=$1; shift
  local log="$SD_WORK/logs/$s.log" addr="" n0
  local -a env_args
  mapfile -t env_args < <(sd_env "$s")
  touch "$log"
  n0=$(grep -c '"msg":"listening"' "$log" || true)
  env HTTP_LISTEN=127.0.0.1:0 "${env_args[@]}" "$@" "$SD_BIN/$s" >>"$log" 2>&1 &
  SD_PID[$s]=$!
  for _ in $(seq 1 300); do
    if [ "$(grep -c '"msg":"listening"' "$log" || true)" -gt "$n0" ]; then
      addr=$(sed -n 's/.*"msg":"listening".*"address":"\([^"]*\)".*/\1/p' "$log" | tail -n1)
      break
    fi
    kill -0 "${SD_PID[$s]}" 2>/dev/null || { tail -n 30 "$log" >&2; sd_die "$s exited at start"; return 1; }
    sleep 0.1
  done
  [ -n "$addr" ] || { tail -n 30 "$log" >&2; sd_die "$s did not start listening"; return 1; }
  SD_ADDR[$s]=$addr
}

# sd_up [VAR=value...]: simulator, chain (storeday prepare, SD_PREPARE_ARGS), the five services
# (extra variables given to each), seeding (storeday seed).
sd_up() {
  mkdir -p "$SD_WORK/logs"
  sd_start_sim || return 1
  # shellcheck disable=SC2086
  "$SD_SRC/tests/sim/storeday" prepare --work "$SD_WORK" --sim "$SD_SIM_URL" \
    --tenant "$TENANT_ID" --seed "${SD_SEED:-1}" ${SD_PREPARE_ARGS:-} || return 1
  local s
  for s in "${SD_SERVICES[@]}"; do sd_start "$s" "$@" || return 1; done
  "$SD_SRC/tests/sim/storeday" seed --work "$SD_WORK" --pos "http://${SD_ADDR[pos-ingest]}" \
    --ledger "http://${SD_ADDR[inventory-ledger]}" --shop "http://${SD_ADDR[shop-connector]}" \
    --pos-db "$DATABASE_URL" || return 1
}

# sd_play [storeday play options...]
sd_play() {
  "$SD_SRC/tests/sim/storeday" play --work "$SD_WORK" --pos "http://${SD_ADDR[pos-ingest]}" \
    --sim "$SD_SIM_URL" "$@"
}

sd_down() {
  local s
  for s in "${SD_SERVICES[@]}"; do
    [ -n "${SD_PID[$s]:-}" ] && kill -TERM "${SD_PID[$s]}" 2>/dev/null || true
  done
  for s in "${SD_SERVICES[@]}"; do
    [ -n "${SD_PID[$s]:-}" ] && wait "${SD_PID[$s]}" 2>/dev/null || true
  done
  [ -n "$SD_SIM_PID" ] && { kill -TERM "$SD_SIM_PID" 2>/dev/null; wait "$SD_SIM_PID" 2>/dev/null; } || true
  SD_SIM_PID=""
}

# sd_alive: 0 when every service still runs, else names the first one gone.
sd_alive() {
  local s
  for s in "${SD_SERVICES[@]}"; do
    kill -0 "${SD_PID[$s]}" 2>/dev/null || { echo "$s"; return 1; }
  done
}
