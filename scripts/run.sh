#!/usr/bin/env bash
# Builds the example plugins, fetches the default model and starts Sluice
# with the bundled engine on http://127.0.0.1:8080. Extra arguments go to
# `sluice serve` (e.g. --upstream URL, --config FILE, --listen ADDR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --locked -p sluice -- serve "$@"
