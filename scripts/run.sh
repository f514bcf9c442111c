#!/usr/bin/env bash
# Installs whatever is missing, then builds and serves Broadcasting at http://127.0.0.1:3000 (release build).
# Extra arguments go to cargo-leptos, e.g. `scripts/run.sh --hot-reload`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# --precompress: the wasm, JS and CSS are served as brotli or gzip files made once at build time.
exec cargo leptos serve --release --precompress "$@"
