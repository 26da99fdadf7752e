#!/usr/bin/env bash
# The 10-minute libFuzzer run of tests/fuzz/fuzz_pos_json.c (pos-ingest's JSON validation), behind
# TILLSYNC_LONG_TESTS=1; skipped otherwise (ctest replays the corpus in every run anyway:
# replay_fuzz_pos_json). Builds a clang libFuzzer tree in $TILLSYNC_FUZZ_BUILD_DIR
# (default <build>/../build-fuzz-pos) when needed. Fails on any crash, leak, timeout or OOM.
set -euo pipefail
if [ "${TILLSYNC_LONG_TESTS:-0}" != 1 ]; then
  echo "skip: pos_ingest_fuzz_long runs only with TILLSYNC_LONG_TESTS=1 (10 minutes of libFuzzer)"
  exit 0
fi
src=${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TILLSYNC_BUILD_DIR:-$src/build}
fuzz_build=${TILLSYNC_FUZZ_BUILD_DIR:-$build/../build-fuzz-pos}
secs=${POS_FUZZ_SECONDS:-600}
if [ ! -x "$fuzz_build/fuzz/fuzz_pos_json" ]; then
  CC=clang cmake -S "$src" -B "$fuzz_build" -DTILLSYNC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="-Wno-unknown-warning-option -fsanitize=fuzzer-no-link,address,undefined" >/dev/null
  cmake --build "$fuzz_build" -j2 --target fuzz_pos_json >/dev/null
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_pos_json.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$src"/tests/fuzz/corpus/fuzz_pos_json/* "$work/"
cd "$work"
"$fuzz_build/fuzz/fuzz_pos_json" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=8192 -detect_leaks=1 "$work" 2>&1 | tail -n 5
echo "ok: fuzz_pos_json ran ${secs}s without a crash, leak or hang"
