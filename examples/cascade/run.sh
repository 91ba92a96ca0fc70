#!/usr/bin/env bash
# The cascade demo, one command: the bundled engine (SmolLM2-135M) as the
# cheap tier, a mock "strong" upstream with a frontier model's latency and
# price, the example router and judge plugins, and a replayed prompt set
# (prompts.jsonl). Prints cost, latency and judge score against always-strong.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ] || engine/fetch-models.sh
[ -f plugins/dist/router.wasm ] && [ -f plugins/dist/judge.wasm ] || plugins/build.sh
# The dev profile optimises the dependencies and the engine (see Cargo.toml),
# so this reuses the test build instead of a full release build.
CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}" exec cargo bench -p sluice-tests --bench routing --profile dev -- cascade
