#!/usr/bin/env bash
# Builds the example plugins, fetches the default model and starts Sluice
# with the bundled engine on http://127.0.0.1:8080. Extra arguments go to
# `sluice serve` (e.g. --upstream URL, --config FILE, --listen ADDR,
# --redis URL). The response cache is on (the example cache-policy plugin
# decides what is cacheable: deterministic requests, or sampled ones with a seed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --locked -p sluice -- serve --cache "$@"
