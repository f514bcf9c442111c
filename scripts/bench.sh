#!/usr/bin/env bash
# Benchmarks a release server on this machine through the public HTTP contract; figures go to BENCHMARKS.md.
#   scripts/bench.sh            sends per second to the SQLite store, 1 and 8 concurrent senders
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo leptos build --release
cargo build --release --manifest-path bench/Cargo.toml

data=$(mktemp -d)
port=3077
trap 'kill "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
target/release/broadcasting --addr "127.0.0.1:$port" --data-dir "$data" --log-level warn --config /dev/null &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/messages" >/dev/null && break; sleep 0.1; done

echo "== SQLite store ($(nproc) cores, loader on the same machine)"
for senders in 1 8; do
  bench/target/release/broadcasting-bench sends --url "http://127.0.0.1:$port" --senders "$senders" --count 10000
done
