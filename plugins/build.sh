#!/usr/bin/env bash
# Builds every example plugin into plugins/dist/ (NAME.wasm + NAME.toml) and
# the test fixtures into tests/fixtures/plugins/dist/.
#
# Installs what it needs on a fresh machine: the wasm32-wasip2 Rust target,
# componentize-py (in plugins/.venv) and componentize-js (npm ci in the JS
# plugin's folder). Idempotent: cargo skips unchanged Rust plugins, and the
# Python and JavaScript ones are rebuilt only when their sources or the WIT
# change. Files land in dist/ by an atomic rename, and only when their bytes
# changed, so a running gateway hot-reloads just what changed.
#
# Usage: plugins/build.sh [--rust-only]
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUG="$ROOT/plugins"
DIST="$PLUG/dist"
FIXDIST="$ROOT/tests/fixtures/plugins/dist"
STAMPS="$DIST/.stamps"
export CARGO_TARGET_DIR="$PLUG/target"
RUST_ONLY=0
[[ "${1:-}" == "--rust-only" ]] && RUST_ONLY=1

mkdir -p "$DIST" "$FIXDIST" "$STAMPS"
log() { echo "build.sh: $*" >&2; }

# Copy $1 to $2 by an atomic rename, only when the bytes differ.
publish() {
    local src="$1" dst="$2"
    if [[ -f "$dst" ]] && cmp -s "$src" "$dst"; then return; fi
    local tmp
    tmp="$(dirname "$dst")/.$(basename "$dst").tmp"
    cp "$src" "$tmp"
    mv -f "$tmp" "$dst"
    log "published $(basename "$dst")"
}

# Hash of the given files and directories (sorted, content and names).
src_hash() {
    find "$@" -type f ! -path '*/node_modules/*' ! -path '*/__pycache__/*' ! -path '*/target/*' \
        ! -name '*.md' ! -name '*.toml' \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# Whether $1 (a stamp name) is up to date with hash $2 and output $3 exists.
up_to_date() {
    [[ -f "$3" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}

# ---- Rust ----------------------------------------------------------------
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "installing the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

# build_rust DIR OUTDIR ARTIFACT:NAME...
build_rust() {
    local dir="$1" out="$2" pair
    log "cargo build $(basename "$dir")"
    (cd "$dir" && cargo build --quiet --release --target wasm32-wasip2)
    for pair in "${@:3}"; do
        publish "$CARGO_TARGET_DIR/wasm32-wasip2/release/${pair%%:*}.wasm" "$out/${pair#*:}.wasm"
    done
}

for dir in "$PLUG"/rust/*/; do
    name="$(basename "$dir")"
    build_rust "$dir" "$DIST" "sluice_plugin_${name//-/_}:$name"
    publish "$dir/$name.toml" "$DIST/$name.toml"
done

build_rust "$ROOT/tests/fixtures/plugins/faulty" "$FIXDIST" \
    sluice_fixture_faulty:faulty not-a-plugin:not-a-plugin
build_rust "$ROOT/tests/fixtures/plugins/wrong-shape" "$FIXDIST" \
    sluice_fixture_wrong_shape:wrong-shape
[[ $RUST_ONLY == 1 ]] && exit 0

# ---- Python (componentize-py) --------------------------------------------
VENV="$PLUG/.venv"

# Path of a componentize-py 0.25, installed into plugins/.venv (or with
# `pip install --user` where venv is unavailable) if needed.
componentize_py() {
    if [[ -x "$VENV/bin/componentize-py" ]]; then echo "$VENV/bin/componentize-py"; return; fi
    local user_bin
    user_bin="$(python3 -m site --user-base)/bin/componentize-py"
    if [[ -x "$user_bin" ]] && "$user_bin" --version | grep -q ' 0\.25\.'; then
        echo "$user_bin"; return
    fi
    if python3 -m venv "$VENV" >&2 2>/dev/null; then
        log "installing componentize-py into $VENV"
        "$VENV/bin/pip" install --quiet 'componentize-py==0.25.*' >&2
        echo "$VENV/bin/componentize-py"
    else
        rm -rf "$VENV"
        log "python3 -m venv unavailable: pip install --user componentize-py"
        python3 -m pip install --quiet --user 'componentize-py==0.25.*' >&2
        echo "$user_bin"
    fi
}
for dir in "$PLUG"/python/*/; do
    name="$(basename "$dir")-py"
    hash="$(src_hash "$dir" "$ROOT/wit")"
    publish "$dir/$name.toml" "$DIST/$name.toml"
    if up_to_date "$name" "$hash" "$DIST/$name.wasm"; then continue; fi
    CPY="$(componentize_py)"
    log "componentize-py $name"
    world="$(cat "$dir/world")"
    tmp="$(mktemp -d)"
    (cd "$dir" && "$CPY" -d "$ROOT/wit" -w "$world" componentize app \
        -o "$tmp/$name.wasm" >/dev/null)
    publish "$tmp/$name.wasm" "$DIST/$name.wasm"
    rm -rf "$tmp"
    echo "$hash" > "$STAMPS/$name"
done

# ---- JavaScript (componentize-js) ----------------------------------------
for dir in "$PLUG"/js/*/; do
    name="$(basename "$dir")-js"
    hash="$(src_hash "$dir" "$ROOT/wit")"
    publish "$dir/$name.toml" "$DIST/$name.toml"
    if up_to_date "$name" "$hash" "$DIST/$name.wasm"; then continue; fi
    if [[ ! -d "$dir/node_modules/@bytecodealliance/preview2-shim" ]]; then
        log "npm ci in $dir"
        # `npm ci` refuses a lockfile that lacks other platforms' optional
        # packages (as some registries leave out); then install from it anyway.
        (cd "$dir" && { npm ci --silent --no-audit --no-fund 2>/dev/null \
            || npm install --no-save --silent --no-audit --no-fund; })
    fi
    log "componentize-js $name"
    tmp="$(mktemp -d)"
    (cd "$dir" && node build.mjs "$ROOT/wit" "$tmp/$name.wasm")
    publish "$tmp/$name.wasm" "$DIST/$name.wasm"
    rm -rf "$tmp"
    echo "$hash" > "$STAMPS/$name"
done
log "done"
