#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, and runs every test (unit, static
# checks, integration against a real local stack) twice: in the normal build and in the
# AddressSanitizer + UndefinedBehaviorSanitizer build. Options:
#   --quick   skip the sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    *) echo "test.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

scripts/deps.sh
start=$(date +%s)

echo "== build (build/)"
scripts/build.sh build
echo "== tests (build/)"
ctest --test-dir build --output-on-failure --timeout 900

if [ "$quick" -eq 0 ]; then
  echo "== build with ASan+UBSan (build-asan/)"
  scripts/build.sh build-asan -DTILLSYNC_SANITIZE=ON
  echo "== tests with ASan+UBSan (build-asan/)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --timeout 1800
fi
echo "== all tests passed in $(( $(date +%s) - start ))s"
