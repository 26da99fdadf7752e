#!/usr/bin/env bash
# Each service README's configuration table equals what the binary reads (--config-help).
set -euo pipefail
cd "${TILLSYNC_SOURCE_DIR:?}"
scripts/config-tables.sh --check "${TILLSYNC_BUILD_DIR:?}"
echo "config_docs: ok"
