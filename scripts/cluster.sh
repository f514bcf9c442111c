#!/usr/bin/env bash
# Several replicas behind one origin, on one machine: a Redis, N Broadcasting replicas on it, and nginx in front
# (deploy/nginx.conf) at http://127.0.0.1:3000. Prints where each part listens, then waits; Ctrl-C (or SIGTERM)
# stops them all. Redis keeps its data in DIR/redis (append-only file, fsync on every write), so the log outlives
# the cluster; delete DIR to start empty.
#
#   scripts/cluster.sh [--replicas N] [--port P] [--dir DIR] [--binary PATH --site DIR] [-- SERVER FLAGS...]
#
# Without --binary it installs what is missing and builds the release (as scripts/run.sh does). Tests pass the
# debug build. The last line printed is `origin: URL` once nginx answers through to a ready replica.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

replicas=2
port=3000
dir=data/cluster
binary=""
site=""
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) replicas=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --site) site=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
extra=("$@")

if [ -z "$binary" ]; then
  bash scripts/setup.sh
  export PATH="$HOME/.cargo/bin:$PATH"
  cargo leptos build --release --precompress
  binary=target/release/broadcasting
  site=target/site
fi
site=${site:-target/site}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for tool in redis-server redis-cli "$nginx_bin" curl python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run scripts/setup.sh)" >&2; exit 1; }
done

mkdir -p "$dir/redis"
dir=$(cd "$dir" && pwd)
runtime=$(mktemp -d "${TMPDIR:-/tmp}/broadcasting-cluster.XXXXXX")
chmod go+x "$runtime" # started as root, nginx runs its worker as nobody, which must reach its cache in here
pids=()

stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$runtime"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls `$@` until it succeeds, up to $1 tenths of a second.
until_ok() {
  local tries=$1; shift
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes --appendfsync always \
  --save '' --maxmemory-policy noeviction --daemonize no --logfile "$runtime/redis.log" &
pids+=($!)
until_ok 100 redis-cli -p "$redis_port" ping || { echo "redis did not start:" >&2; cat "$runtime/redis.log" >&2; exit 1; }
echo "redis: redis://127.0.0.1:$redis_port (pid ${pids[-1]}, data in $dir/redis)"

# No settings file unless the extra arguments name one (`--config FILE`: e.g. private feeds), the same for every replica.
config=(--config /dev/null)
for arg in "${extra[@]}"; do
  if [[ $arg == --config || $arg == --config=* ]]; then config=(); fi
done

upstreams=()
for i in $(seq "$replicas"); do
  log="$runtime/replica-$i.log"
  LEPTOS_SITE_ROOT="$site" "$binary" --addr 127.0.0.1:0 "${config[@]}" --data-dir "$dir/replica-$i" \
    --store redis --redis-url "redis://127.0.0.1:$redis_port" --trusted-proxies 127.0.0.1 "${extra[@]}" \
    >"$log" 2>&1 &
  pids+=($!)
  until_ok 300 grep -q "listening on" "$log" || { echo "replica $i did not start:" >&2; cat "$log" >&2; exit 1; }
  url=$(grep -o 'listening on http://[^ ]*' "$log" | head -n1 | cut -d' ' -f3)
  echo "replica $i: $url (pid ${pids[-1]}, log $log)"
  upstreams+=("${url#http://} max_fails=1 fail_timeout=2s")
done

bash "$root/scripts/nginx-conf.sh" "$runtime" "$port" "${upstreams[@]}" >"$runtime/nginx.conf"
"$nginx_bin" -p "$runtime" -c "$runtime/nginx.conf" -g 'daemon off;' &
pids+=($!)
until_ok 100 curl -fsS "http://127.0.0.1:$port/readyz" || {
  echo "nginx or the replicas did not become ready:" >&2
  cat "$runtime/error.log" >&2
  exit 1
}
echo "nginx: pid ${pids[-1]}, config $runtime/nginx.conf"
echo "origin: http://127.0.0.1:$port"
wait
