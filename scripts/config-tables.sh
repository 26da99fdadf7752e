#!/usr/bin/env bash
# Regenerates the configuration table in each services/<name>/README.md (between the
# "<!-- config:begin -->" and "<!-- config:end -->" markers) from `<binary> --config-help`.
#   scripts/config-tables.sh [build-dir]          rewrite the READMEs
#   scripts/config-tables.sh --check [build-dir]  exit 1 if any README is out of date
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
build=${1:-build}
rc=0
for readme in services/*/README.md; do
  svc=$(basename "$(dirname "$readme")")
  [ "$svc" = common ] && continue
  bin="$build/bin/$svc"
  [ -x "$bin" ] || { echo "config-tables: $bin not built" >&2; exit 2; }
  table=$("$bin" --config-help)
  new=$(awk -v table="$table" '
    /<!-- config:begin -->/ { print; print table; skip = 1; next }
    /<!-- config:end -->/ { skip = 0 }
    !skip { print }' "$readme")
  if [ "$check" -eq 1 ]; then
    if [ "$new" != "$(cat "$readme")" ]; then
      echo "config-tables: $readme is out of date (run scripts/config-tables.sh)" >&2
      rc=1
    fi
  else
    printf '%s\n' "$new" >"$readme"
  fi
done
exit $rc
