#!/usr/bin/env bash
# shop-connector outbound (issue 7) against the platform simulator: channel levels produced on
# inventory.levels.v1 end on Shopify and Shopline exactly as last published after a burst; a
# compare-and-set conflict is resolved to the ledger's figure; a permanent rejection is
# dead-lettered with an exception; drift is raised, corrected and cleared; a kill -9 in the
# middle of a burst loses nothing; two replicas plus a loyalty-style client sharing one bucket
# get no throttling answer. Details in shop_connector_outbound.py (about 90 s).
set -euo pipefail
src="${TILLSYNC_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
exec python3 "$src/tests/integration/shop_connector_outbound.py"
