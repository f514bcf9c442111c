#!/usr/bin/env bash
# Installs what building and testing Broadcasting needs, skipping whatever is already present.
# Only the package registries are used (crates.io, npm, Debian); nothing downloads prebuilt binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
# cargo-leptos builds faster this way and works the same (measured: see README).
export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

step() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

CARGO_LEPTOS_VERSION=0.3.10   # 0.3.11 needs a newer rustc than these machines have
BINARYEN_VERSION=132          # wasm-opt >= 116; Debian's binaryen 108 silently breaks hydration
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
  step "cargo install cargo-leptos@$CARGO_LEPTOS_VERSION (about 10 minutes)"
  cargo install "cargo-leptos@$CARGO_LEPTOS_VERSION" --locked
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  step "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 3 minutes)"
  # Not --locked: its lock file pins a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if dpkg -s binaryen >/dev/null 2>&1; then
  step "removing Debian's binaryen (its wasm-opt 108 breaks hydration)"
  as_root apt-get remove -y binaryen
fi
wasm_opt_version=$(wasm-opt --version 2>/dev/null | grep -oE '[0-9]+' | head -n1 || true)
if [ -z "$wasm_opt_version" ] || [ "$wasm_opt_version" -lt 116 ]; then
  step "npm install -g binaryen@$BINARYEN_VERSION (wasm-opt)"
  as_root npm install -g --no-fund --no-audit "binaryen@$BINARYEN_VERSION"
fi

if ! command -v chromium >/dev/null 2>&1; then
  step "apt-get install chromium (for the Playwright tests)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

missing=()
for tool in redis-server nginx; do command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]} (for running several replicas, and their tests; the services are not started)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  # Debian starts the system services on install; the project starts its own, so stop those.
  for tool in "${missing[@]}"; do as_root service "$tool" stop >/dev/null 2>&1 || true; done
fi

if [ ! -d end2end/node_modules/@playwright/test ] || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
  step "npm ci in end2end/ (Playwright, using Debian's chromium)"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-fund --no-audit)
fi

step "toolchain ready: $(cargo leptos --version), $(wasm-bindgen --version), wasm-opt $(wasm-opt --version | head -n1), $(chromium --version 2>/dev/null), $(redis-server --version | awk '{print $1, $3}'), $(/usr/sbin/nginx -v 2>&1)"
