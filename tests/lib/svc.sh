# Shell helpers for integration tests that run service binaries (source this file).
# Needs TILLSYNC_BUILD_DIR and the stack variables (tests/lib/with-stack exports them).

: "${TILLSYNC_BUILD_DIR:?TILLSYNC_BUILD_DIR not set}"
SVC_LOG_DIR=${SVC_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/tillsync-svc.XXXXXX")}
declare -A SVC_PID SVC_ADDR

# fail MESSAGE: say it, show each service's last warnings and errors (CI keeps no files), exit 1
fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$SVC_LOG_DIR"/*.log; do
    [ -s "$f" ] || continue
    echo "--- $(basename "$f"): last warnings and errors" >&2
    grep -v '"level":"info"' "$f" | tail -n 15 | cut -c1-400 >&2 || true
  done
  exit 1
}

# svc_start NAME [VAR=value ...]: starts build/bin/NAME on a free loopback port with the stack's
# variables plus the given ones; waits for its "listening" log line and records its address.
svc_start() {
  local name=$1; shift
  local log="$SVC_LOG_DIR/$name.log"
  : >>"$log" # exists before the wait below reads it (the background job opens it later)
  env TENANT_ID="${TENANT_ID:-test}" HTTP_LISTEN=127.0.0.1:0 "$@" \
    "$TILLSYNC_BUILD_DIR/bin/$name" >>"$log" 2>&1 &
  SVC_PID[$name]=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*"msg":"listening".*"address":"\([^"]*\)".*/\1/p' "$log" | tail -n1)
    [ -n "$addr" ] && break
    kill -0 "${SVC_PID[$name]}" 2>/dev/null || { cat "$log" >&2; fail "$name exited at start"; }
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; fail "$name did not log its address"; }
  SVC_ADDR[$name]=$addr
}

# svc_stop NAME [max_seconds]: SIGTERM, waits, fails unless it exits 0 in time.
svc_stop() {
  local name=$1 max=${2:-5} pid=${SVC_PID[$1]}
  kill -TERM "$pid"
  local t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if [ $((SECONDS - t0)) -gt "$max" ]; then
      kill -KILL "$pid"; fail "$name did not stop within ${max}s of SIGTERM"
    fi
    sleep 0.1
  done
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$SVC_LOG_DIR/$name.log" >&2; fail "$name exited with $rc after SIGTERM"; }
  unset "SVC_PID[$name]"
}

svc_stop_all() {
  local n
  for n in "${!SVC_PID[@]}"; do kill -TERM "${SVC_PID[$n]}" 2>/dev/null || true; done
  for n in "${!SVC_PID[@]}"; do wait "${SVC_PID[$n]}" 2>/dev/null || true; done
}
