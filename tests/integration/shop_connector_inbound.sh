#!/usr/bin/env bash
# shop-connector inbound against the platform simulator (tests/sim): webhook HMAC (401 and
# nothing published), big ids exact, refunds / BOPIS / POS, pause-queue-resume, dead-letter
# replay, tax lines mapped or dead-lettered (TAX_MAPPING_FAILED), and a load run with
# duplicates, out-of-order, dropped and first-attempt failures ending with exactly one event
# per business change. Details in shop_connector_inbound.py.
# ORDERS per platform: 500 by default, 5000 with TILLSYNC_LONG_TESTS=1.
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
exec python3 "$src/tests/integration/shop_connector_inbound.py"
