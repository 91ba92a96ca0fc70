#!/usr/bin/env bash
# Installs what Sluice needs to build, run and test, on a fresh machine.
# Idempotent: what is already there is kept.
#   scripts/setup.sh          the wasm target, the models, the benchmark data, the example plugins
#   scripts/setup.sh --test   also the official SDKs the tests drive, Redis and Chromium
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

bash engine/fetch-models.sh
bash scripts/fetch-data.sh

if [ -x plugins/build.sh ]; then
  bash plugins/build.sh
fi

if [ "${1:-}" = "--test" ]; then
  # The tests start private Redis servers (and kill them, for outage tests),
  # and open the dashboard in headless Chromium.
  missing=""
  command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  if [ -n "$missing" ]; then
    if command -v apt-get >/dev/null 2>&1; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    else
      echo "setup: the tests need$missing; install it" >&2
      exit 1
    fi
  fi
  if ! python3 -c 'import openai, anthropic' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check openai==3.54.0 anthropic==2.12.0
  fi
  if [ ! -d tests/sdk/node_modules/openai ]; then
    (cd tests/sdk && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
