#!/usr/bin/env bash
# Self-test of the shop-platform simulator (tests/sim/): signatures, compare-and-set, throttling,
# big ids in raw JSON, webhook retries and misbehaviour rates. Python 3 standard library only;
# needs no part of the local stack. Takes about 25 s.
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
exec python3 "$src/tests/sim/test_sim.py"
