#!/usr/bin/env bash
# Measure, then decide, on the bundled engine (SmolLM2-135M on the CPU): one
# gateway per configuration, the same FAQ workload against each, then the
# Pareto report and its plot.
#
#   examples/bench/run.sh [OUT_DIR]          (default: bench-out/example)
#
# Configurations (each with the example judge, so quality is comparable):
#   baseline     no stages, no cache
#   cache        the cache-policy stage and the response cache (--cache)
#   routing      the router stage
#   compression  the compressor stage
#   all          all four stages and the cache, measured against a bare
#                gateway with --baseline (the gateway's added latency, savings)
# Env: REQUESTS (48), CONCURRENCY (4), MAX_TOKENS (32), PORT (8191),
#      PRICE_IN / PRICE_OUT (USD per Mtok, 0.15 / 0.60: the engine is free,
#      these price its tokens as a hosted small model would be),
#      SKIP_SETUP=1 (models and plugins/dist already in place).
# It takes minutes: a demo, not a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-bench-out/example}"
REQUESTS="${REQUESTS:-48}" CONCURRENCY="${CONCURRENCY:-4}" MAX_TOKENS="${MAX_TOKENS:-32}" PORT="${PORT:-8191}"
PRICE_IN="${PRICE_IN:-0.15}" PRICE_OUT="${PRICE_OUT:-0.60}"

[ -n "${SKIP_SETUP:-}" ] || bash scripts/setup.sh
cargo build --release --locked -p sluice
SLUICE=target/release/sluice
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.md

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME PORT "PLUGINS" [FLAGS...]: a gateway with those plugins, waited for.
start() {
  local name="$1" port="$2" plugins="$3"; shift 3
  local dir="$OUT/plugins-$name"
  rm -rf "$dir" && mkdir -p "$dir"
  for p in $plugins; do cp "plugins/dist/$p.wasm" "plugins/dist/$p.toml" "$dir/"; done
  "$SLUICE" serve --listen "127.0.0.1:$port" --plugins "$dir" "$@" >"$OUT/$name.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "gateway $name did not start; see $OUT/$name.log" >&2
  exit 1
}

stop() { kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; PIDS=(); }

bench() { # bench LABEL [FLAGS...]
  local label="$1"; shift
  echo "== $label" >&2
  "$SLUICE" bench --target "http://127.0.0.1:$PORT" --workload faq --requests "$REQUESTS" \
    --concurrency "$CONCURRENCY" --max-tokens "$MAX_TOKENS" --price-in "$PRICE_IN" --price-out "$PRICE_OUT" \
    --warmup 2 --label "$label" --out "$OUT" "$@"
}

start baseline "$PORT" "judge";                        bench baseline;    stop
start cache "$PORT" "cache-policy judge" --cache;      bench cache;       stop
start routing "$PORT" "router judge";                  bench routing;     stop
start compression "$PORT" "compressor judge";          bench compression; stop
start bare $((PORT + 1)) ""
start all "$PORT" "compressor cache-policy router judge" --cache
bench all --baseline "http://127.0.0.1:$((PORT + 1))"
stop

"$SLUICE" pareto "$OUT"/baseline.json "$OUT"/cache.json "$OUT"/routing.json "$OUT"/compression.json "$OUT"/all.json \
  --min-quality 0.5 --plot "$OUT/pareto.svg" --out "$OUT/pareto.md"
echo "reports in $OUT: one JSON and Markdown per configuration, pareto.md, pareto.svg" >&2
