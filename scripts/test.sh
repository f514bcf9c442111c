#!/usr/bin/env bash
# Installs whatever is missing, then runs every test: Rust unit and HTTP-contract tests, then Playwright in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

# cargo-leptos compiles leptos with LEPTOS_OUTPUT_NAME set; the same here keeps one build of it, not two.
export LEPTOS_OUTPUT_NAME=broadcasting
printf '\n== cargo test --features ssr\n'
cargo test --features ssr

printf '\n== cargo leptos end-to-end (Playwright)\n'
cargo leptos end-to-end
