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
# The server's output is part of the verdict: a panic in it fails the run even if every page looked fine.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# The browser tests send hundreds of messages in seconds (history, scrolling, the XSS corpus): the send rate limit,
# tested on its own in tests/hardening.rs, is lifted for them, and so are the per-address budgets (every tab is
# 127.0.0.1; tested in tests/hostile.rs).
BROADCASTING_SEND_RATE=0 BROADCASTING_ADDRESS_RATE=0 cargo leptos end-to-end 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -E "^thread '.*' panicked at" "$log"; then
  echo "FAILED: the server panicked during the browser tests (see above)" >&2
  exit 1
fi
exit "$status"
