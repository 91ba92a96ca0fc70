#!/usr/bin/env bash
# Runs every test: installs what the tests need, then the whole workspace's
# tests (the real model, the official SDKs, plugins built from source).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export SLUICE_REQUIRE_MODELS=1 SLUICE_REQUIRE_SDKS=1 SLUICE_REQUIRE_REDIS=1 SLUICE_REQUIRE_DATA=1 SLUICE_REQUIRE_BROWSER=1
# Tests run in parallel on few cores: candle's spinning worker pool stalls
# under that contention, one matmul thread per engine does not.
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
cargo test --workspace --locked
