#!/usr/bin/env bash
# Contracts other teams build on (issue 12):
#   - docs/asyncapi.yaml is valid AsyncAPI (`asyncapi validate`) and its embedded protobuf equals
#     proto/ (tools/contracts/asyncapi-protos --check);
#   - proto/ passes `buf lint` and `buf breaking` against HEAD (uncommitted changes) and HEAD~1
#     (the commit under test), so a renumbered or retyped field fails;
#   - every services/*/openapi.yaml and docs/*openapi*.yaml passes `redocly lint`;
#   - every topic the code produces to (string literals in services/ and the kafka-mock topic
#     table) is a channel of docs/asyncapi.yaml, each consumed topic has its .dlq channel, and the
#     partition counts agree with the kafka-mock table;
#   - and each of these checks is shown to FAIL on a broken scratch copy (mktemp -d).
# Tools come from tools/contracts (npm ci, run by scripts/deps.sh).
set -uo pipefail

SRC=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TOOLS=$SRC/tools/contracts
BIN=$TOOLS/node_modules/.bin
failures=0

say() { printf 'contracts: %s\n' "$*"; }
bad() { printf 'contracts: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }

for t in asyncapi buf redocly; do
    [ -x "$BIN/$t" ] || { say "FAIL: $BIN/$t missing: run scripts/deps.sh (npm ci in tools/contracts)" >&2; exit 1; }
done

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
# Quiet, offline tools: no analytics, no update notices, caches in the scratch dir.
printf '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"tillsync-test"}\n' >"$SCRATCH/asyncapi-analytics.json"
export ASYNCAPI_METRICS_CONFIG_PATH=$SCRATCH/asyncapi-analytics.json SUPPRESS_NO_CONFIG_WARNING=1
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
export BUF_CACHE_DIR=$SCRATCH/buf-cache

# ---- the checks; each takes the tree (or file) to check, prints why on failure, returns non-zero

# check_asyncapi DOC PROTO_ROOT
check_asyncapi() {
    "$TOOLS/asyncapi-protos" --check "$1" "$2" || return 1
    "$BIN/asyncapi" validate "$1" --fail-severity warn >"$SCRATCH/asyncapi.out" 2>&1 ||
        { grep -v '^WARNING: \(NODE_ENV\|See https\)' "$SCRATCH/asyncapi.out" >&2; return 1; }
}

# check_buf_lint ROOT (holds buf.yaml and proto/)
check_buf_lint() { (cd "$1" && "$BIN/buf" lint); }

# check_buf_breaking ROOT AGAINST_INPUT
check_buf_breaking() { (cd "$1" && "$BIN/buf" breaking --against "$2"); }

# check_openapi FILE
check_openapi() {
    "$BIN/redocly" lint --config "$TOOLS/redocly.yaml" --format stylish "$1" >"$SCRATCH/redocly.out" 2>&1 ||
        { grep -v '[║╔╚]' "$SCRATCH/redocly.out" | grep -v '^\s*$' >&2; return 1; }
}

# check_topics ROOT DOC: topics in code and the kafka-mock table vs channels of DOC
check_topics() {
    local root=$1 doc=$2 rc=0 t
    node -e '
        const YAML = require(process.argv[1] + "/node_modules/yaml");
        const doc = YAML.parse(require("fs").readFileSync(process.argv[2], "utf8"));
        for (const [, ch] of Object.entries(doc.channels || {})) {
            const p = ch.bindings && ch.bindings.kafka && ch.bindings.kafka.partitions;
            console.log(String(ch.address).replace(/^\{prefix\}/, "") + " " + (p === undefined ? "-" : p));
        }' "$TOOLS" "$doc" >"$SCRATCH/channels.txt" || { echo "cannot read channels of $doc" >&2; return 1; }
    # topic names as string literals in C code that produces (services/) or creates (kafka-mock)
    grep -rhoE --include='*.c' --include='*.h' '"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[0-9]+(\.dlq)?"' \
        "$root/services" "$root/deploy/local/kafka-mock" 2>/dev/null | tr -d '"' | sort -u >"$SCRATCH/code-topics.txt"
    [ -s "$SCRATCH/code-topics.txt" ] || { echo "no topic literals found under $root/services or $root/deploy/local/kafka-mock" >&2; return 1; }
    while read -r t; do
        grep -q "^$t " "$SCRATCH/channels.txt" || { echo "topic \"$t\" used in the code is not a channel of $doc" >&2; rc=1; }
    done <"$SCRATCH/code-topics.txt"
    # the kafka-mock table: {"name", partitions, consumed}
    grep -hoE '\{"[a-z0-9_.]+", *[0-9]+, *(true|false)\}' "$root"/deploy/local/kafka-mock/*.c |
        tr -d '{}" ' | tr ',' ' ' >"$SCRATCH/mock-topics.txt"
    [ -s "$SCRATCH/mock-topics.txt" ] || { echo "no topic table found in deploy/local/kafka-mock" >&2; return 1; }
    local name parts consumed
    while read -r name parts consumed; do
        grep -q "^$name $parts$" "$SCRATCH/channels.txt" ||
            { echo "kafka-mock creates $name with $parts partitions; $doc says: $(grep "^$name " "$SCRATCH/channels.txt" || echo 'no such channel')" >&2; rc=1; }
        if [ "$consumed" = true ]; then
            grep -q "^$name.dlq " "$SCRATCH/channels.txt" || { echo "consumed topic $name has no $name.dlq channel in $doc" >&2; rc=1; }
        fi
    done <"$SCRATCH/mock-topics.txt"
    return $rc
}

# expect_fail WHAT CMD...: the check must fail on the broken copy
expect_fail() {
    local what=$1
    shift
    if "$@" >"$SCRATCH/expect.out" 2>&1; then
        bad "the check did not catch: $what"
    else
        say "caught as expected: $what ($(grep -m1 -v -e '^\s*$' -e 'messages match proto/' -e '^validating ' \
            -e '^WARNING: ' -e '^File .* governance issues' -e '^Errors' "$SCRATCH/expect.out" | cut -c1-120))"
    fi
}

start=$(date +%s)

# ==== 1. the real tree ============================================================================
if check_asyncapi "$SRC/docs/asyncapi.yaml" "$SRC/proto"; then say "asyncapi: docs/asyncapi.yaml valid, protobuf in sync"; else bad "docs/asyncapi.yaml"; fi
if check_buf_lint "$SRC"; then say "buf lint: clean"; else bad "buf lint"; fi

if git -C "$SRC" rev-parse --verify -q HEAD >/dev/null 2>&1 && git -C "$SRC" cat-file -e HEAD:proto 2>/dev/null; then
    if check_buf_breaking "$SRC" "$SRC/.git#ref=HEAD,subdir=proto"; then say "buf breaking: proto/ compatible with HEAD"; else bad "buf breaking against HEAD"; fi
    if git -C "$SRC" rev-parse --verify -q 'HEAD~1' >/dev/null 2>&1 && git -C "$SRC" cat-file -e 'HEAD~1:proto' 2>/dev/null; then
        if check_buf_breaking "$SRC" "$SRC/.git#ref=HEAD~1,subdir=proto"; then say "buf breaking: proto/ compatible with HEAD~1"; else bad "buf breaking against HEAD~1"; fi
    else
        say "buf breaking: no previous commit with proto/ (first commit or shallow clone): compared with HEAD only"
    fi
else
    say "buf breaking: not a git checkout with proto/ committed: skipped against git"
fi

n=0
for f in "$SRC"/services/*/openapi.yaml "$SRC"/docs/*openapi*.yaml; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    if check_openapi "$f"; then say "redocly: ${f#"$SRC"/} valid"; else bad "redocly lint ${f#"$SRC"/}"; fi
done
[ "$n" -gt 0 ] || say "redocly: no OpenAPI documents yet (services/*/openapi.yaml)"

if check_topics "$SRC" "$SRC/docs/asyncapi.yaml"; then
    say "topics: every topic in the code and the kafka-mock table is documented ($(wc -l <"$SCRATCH/code-topics.txt") literals)"
else
    bad "topics missing from docs/asyncapi.yaml"
fi

# ==== 2. each check fails on a broken scratch copy ================================================
C=$SCRATCH/copy
mkdir -p "$C/docs" "$C/services/pos-ingest" "$C/deploy/local"
cp -r "$SRC/proto" "$C/proto"
cp "$SRC/buf.yaml" "$C/"
cp -r "$SRC/deploy/local/kafka-mock" "$C/deploy/local/"
cp "$SRC/docs/asyncapi.yaml" "$C/docs/"
BASE=$SCRATCH/base-proto
cp -r "$SRC/proto" "$BASE"

# AsyncAPI: an operation with an invalid action; a channel address parameter left undefined
sed '0,/    action: send/s//    action: publish/' "$C/docs/asyncapi.yaml" >"$C/docs/bad-action.yaml"
expect_fail "AsyncAPI operation with action 'publish'" check_asyncapi "$C/docs/bad-action.yaml" "$C/proto"
sed 's/^defaultContentType: .*/defaultContentType: 42/' "$C/docs/asyncapi.yaml" >"$C/docs/bad-type.yaml"
expect_fail "AsyncAPI defaultContentType not a string" check_asyncapi "$C/docs/bad-type.yaml" "$C/proto"
# AsyncAPI drifting from proto/: a new field in proto/ without regenerating the document
cp -r "$C/proto" "$SCRATCH/drift-proto"
sed -i 's/^  bool requires_shipping = 17;/  bool requires_shipping = 17;\n  string note = 18;/' "$SCRATCH/drift-proto/tillsync/v1/inventory.proto"
expect_fail "AsyncAPI protobuf out of date with proto/" check_asyncapi "$C/docs/asyncapi.yaml" "$SCRATCH/drift-proto"

# buf lint: a message named against the style guide
cp -r "$C" "$SCRATCH/lint"
printf '\nmessage bad_name {\n  string X = 1;\n}\n' >>"$SCRATCH/lint/proto/tillsync/v1/inventory.proto"
expect_fail "buf lint: message bad_name, field X" check_buf_lint "$SCRATCH/lint"

# buf breaking: a renumbered field; a retyped field
cp -r "$C" "$SCRATCH/renum"
sed -i 's/^  int64 on_hand = 8;/  int64 on_hand = 30;/' "$SCRATCH/renum/proto/tillsync/v1/inventory.proto"
grep -q 'on_hand = 30' "$SCRATCH/renum/proto/tillsync/v1/inventory.proto" || bad "scratch: renumbering did not apply"
expect_fail "buf breaking: InventoryLevel.on_hand renumbered 8 -> 30" check_buf_breaking "$SCRATCH/renum" "$BASE"
cp -r "$C" "$SCRATCH/retype"
sed -i 's/^  int64 minor_units = 1;/  double minor_units = 1;/' "$SCRATCH/retype/proto/tillsync/v1/common.proto"
grep -q 'double minor_units' "$SCRATCH/retype/proto/tillsync/v1/common.proto" || bad "scratch: retyping did not apply"
expect_fail "buf breaking: Money.minor_units retyped int64 -> double" check_buf_breaking "$SCRATCH/retype" "$BASE"
# ... and a compatible change (a new field) passes
cp -r "$C" "$SCRATCH/compat"
sed -i 's/^  bool requires_shipping = 17;/  bool requires_shipping = 17;\n  string note = 18;/' "$SCRATCH/compat/proto/tillsync/v1/inventory.proto"
if check_buf_breaking "$SCRATCH/compat" "$BASE" >"$SCRATCH/compat.out" 2>&1; then
    say "accepted as expected: a new field is compatible"
else
    bad "buf breaking rejected a compatible new field: $(cat "$SCRATCH/compat.out")"
fi

# OpenAPI: a tiny valid example passes, broken ones fail
cat >"$C/services/pos-ingest/openapi.yaml" <<'EOF'
openapi: 3.0.3
info:
  title: example
  version: 1.0.0
  license: {name: UNLICENSED, url: https://example.invalid/license}
servers:
  - url: http://127.0.0.1:8080
security: []
paths:
  /v1/holds/{id}:
    get:
      operationId: getHold
      summary: One checkout or pickup hold.
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        '200':
          description: The hold.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Hold'}
        '404':
          description: No such hold.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Error'}
components:
  schemas:
    Hold:
      type: object
      required: [id, sku, quantity, expires_at]
      properties:
        id: {type: string}
        sku: {type: string}
        quantity: {type: integer, format: int64, minimum: 1}
        expires_at: {type: string, format: date-time, nullable: true}
    Error:
      type: object
      required: [error]
      properties:
        error:
          type: object
          required: [code, message]
          properties:
            code: {type: string}
            message: {type: string}
            field: {type: string}
EOF
if check_openapi "$C/services/pos-ingest/openapi.yaml"; then say "accepted as expected: a valid example OpenAPI document"; else bad "redocly rejected the valid example"; fi
sed 's/^      responses:$/      responsez:/' "$C/services/pos-ingest/openapi.yaml" >"$C/services/pos-ingest/bad1.yaml"
expect_fail "OpenAPI operation without responses" check_openapi "$C/services/pos-ingest/bad1.yaml"
sed "s|schema: {\$ref: '#/components/schemas/Hold'}|schema: {\$ref: '#/components/schemas/Nope'}|" "$C/services/pos-ingest/openapi.yaml" >"$C/services/pos-ingest/bad2.yaml"
expect_fail "OpenAPI unresolved \$ref" check_openapi "$C/services/pos-ingest/bad2.yaml"

# validate-response on the example: a matching body passes, drifted ones fail
VR=$TOOLS/validate-response
OA=$C/services/pos-ingest/openapi.yaml
printf '{"id":"h-1","sku":"SKU-123","quantity":2,"expires_at":null}' >"$SCRATCH/ok.json"
printf '{"id":"h-1","sku":"SKU-123","quantity":"2","expires_at":null}' >"$SCRATCH/bad.json"
printf '{"error":{"code":"not_found"}}' >"$SCRATCH/err.json"
if "$VR" "$OA" GET /v1/holds/h-1 200 "$SCRATCH/ok.json" >/dev/null; then say "accepted as expected: validate-response on a matching body"; else bad "validate-response rejected a matching body"; fi
expect_fail "validate-response: quantity as a string" "$VR" "$OA" GET /v1/holds/h-1 200 "$SCRATCH/bad.json"
expect_fail "validate-response: error without message" "$VR" "$OA" GET /v1/holds/h-1 404 "$SCRATCH/err.json"
expect_fail "validate-response: undocumented status 500" "$VR" "$OA" GET /v1/holds/h-1 500 "$SCRATCH/ok.json"
expect_fail "validate-response: undocumented path" "$VR" "$OA" GET /v1/levels 200 "$SCRATCH/ok.json"

# topics: a producer writing to a topic the document does not describe
printf 'static const char *topic = "pos.refunds.v1";\n' >"$C/services/pos-ingest/extra.c"
expect_fail "a produced topic missing from the AsyncAPI document" check_topics "$C" "$C/docs/asyncapi.yaml"
rm -f "$C/services/pos-ingest/extra.c"
sed -i 's/{"catalog.items.v1", 3, true}/{"catalog.items.v1", 4, true}/' "$C"/deploy/local/kafka-mock/main.c
expect_fail "kafka-mock partitions differ from the AsyncAPI document" check_topics "$C" "$C/docs/asyncapi.yaml"

say "$(($(date +%s) - start)) s"
if [ "$failures" -gt 0 ]; then
    say "$failures check(s) failed"
    exit 1
fi
say "ok"
