#!/usr/bin/env bash
# Benchmarks a release build on this machine through the public HTTP contract; the figures go to BENCHMARKS.md.
#   scripts/bench.sh [sends] [fanout] [refetch] [render] [size] [live] [publish] [feeds] [private] [soak] [redis]
#   (no argument: the first six)
#     sends   acknowledged durable sends per second, 1 and 8 concurrent senders
#     fanout  N = 1,000 / 5,000 / 10,000 subscribers in one session group, 1 message per second, against the bare
#             axum + broadcast floor and against Broadcasting (every subscriber refetching like the page)
#     refetch at 10,000 x 1/s, 1,000 x 5/s and 10,000 x 20/s, each on a fresh server: the floor's notice alone; the
#             floor with static pages (its notice, then /api/messages answered from prepared bytes: the design's
#             floor); then Broadcasting (--scope everyone); the last two with every subscriber its own browser
#             refetching as Chromium does (its headers, Accept-Encoding). Each summary line gives the fetched p99s,
#             Broadcasting's ratio to both floors and both servers' CPU per refetch. Then nginx (deploy/nginx.conf)
#             in front of Broadcasting without its cache of /api/messages, with it, and with it but no cache lock
#             (servers and nginx pinned to core 0, the load generator to core 1)
#     render  server-rendered pages of / per second with 200 messages in the log
#     size    release wasm, JS and CSS: raw, gzip -9, brotli -11, and as served
#     live    Chromium (Playwright): time from navigation to hydrated and to the event stream live
#     publish messages published per second through the API (one key, 1 and 8 publishers) next to the tabs' sends
#     feeds   many named feeds: 10,000 streams over 1,000 feeds with 100 sending 1/s against one feed at the same
#             total deliveries, net of the appends (a sends-alone run) and of idle CPU; an idle stream following 1 and
#             8 feeds; 30,000 visits to feeds nobody writes to (what the server keeps of them)
#     private the same fan-out (1,000 and 5,000 subscribers, each its own browser, 5 messages/s, refetching like the
#             page) to the members of a private feed (every page checked against the read pass, answered by the
#             route) and to an open one, on the same cores: fetched p99 and server CPU per refetch, side by side
#     soak    1,000 tabs, 10 % reconnecting at random, 100 sends/s for 60 s; every tab's log equals the server's
#     redis   scale-out on Redis (appendfsync always): durable sends/s with 8 senders, Redis next to SQLite; fan-out
#             to N subscribers on SQLite, on one Redis replica, and split over two Redis replicas (servers and
#             Redis pinned to core 0, the load generator to core 1); time to heal a killed pub/sub connection
# Environment: BENCH_SUBSCRIBERS="1000 5000 10000", BENCH_MESSAGES=30, BENCH_RATE=1, BENCH_REDIS_SUBSCRIBERS=10000,
# BENCH_FAST_MESSAGES=200 (refetch at 20/s: about 10 s), BENCH_CACHE_SUBSCRIBERS=5000 (refetch through nginx, which
# holds two open files per stream and 16,384 connections).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The size section measures brotli -11 with Debian's command-line brotli.
if ! command -v brotli >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y brotli; else sudo apt-get install -y brotli; fi
fi
export PATH="$HOME/.cargo/bin:$PATH"
sections=${*:-sends fanout refetch render size live}
subscribers=${BENCH_SUBSCRIBERS:-1000 5000 10000}
messages=${BENCH_MESSAGES:-30}
rate=${BENCH_RATE:-1}

cargo leptos build --release --precompress
cargo build --release --manifest-path bench/Cargo.toml
bench=bench/target/release/broadcasting-bench
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, open files $(ulimit -n); loader and server share them"

data=$(mktemp -d)
runs=$(mktemp -d) # each run's report, read back for the comparisons
pid=""
pids=()
stop() {
  for p in $pid "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in $pid "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pid=""
  pids=()
}
trap 'stop; rm -rf "$data" "$runs"' EXIT

# start_server PORT [FLAGS...]: a fresh release server on an empty data directory (SQLite store, the default). The
# load comes from one machine in one session group, so the per-browser stream cap, the send rate limit and the
# per-address budgets and stream cap are lifted.
start_server() {
  rm -rf "$data" && mkdir -p "$data"
  local config=(--config /dev/null) arg
  for arg in "${@:2}"; do if [ "$arg" = --config ]; then config=(); fi; done
  ${pin_sqlite:-} target/release/broadcasting --addr "127.0.0.1:$1" --data-dir "$data" --log-level warn "${config[@]}" \
    --send-rate 0 --max-streams-per-browser 0 --address-rate 0 --max-streams-per-address 0 "${@:2}" &
  pid=$!
  wait_for "http://127.0.0.1:$1/healthz" # not a page: a private `main` refuses those
  kill -0 "$pid"
}
# start_redis PORT: a fresh Redis on an empty directory, durable as the README asks (every write fsynced).
start_redis() {
  rm -rf "$data/redis" && mkdir -p "$data/redis"
  $pin_server redis-server --port "$1" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes --appendfsync always \
    --save '' --maxmemory-policy noeviction --daemonize no --logfile "$data/redis.log" &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis did not start" >&2
  return 1
}
# start_replica PORT REDIS_PORT: a release server on the Redis store (its pid is the last of $pids).
start_replica() {
  mkdir -p "$data/replica-$1"
  $pin_server target/release/broadcasting --addr "127.0.0.1:$1" --data-dir "$data/replica-$1" --log-level warn \
    --config /dev/null --store redis --redis-url "redis://127.0.0.1:$2" \
    --send-rate 0 --max-streams-per-browser 0 --address-rate 0 --max-streams-per-address 0 &
  pids+=($!)
  wait_for "http://127.0.0.1:$1/api/messages"
}
# With two cores or more, servers (and Redis) run on core 0 and the load generator on core 1, so each side's figures
# are its own.
if [ "$(nproc)" -ge 2 ]; then pin_server="taskset -c 0"; pin_bench="taskset -c 1"; else pin_server=""; pin_bench=""; fi
wait_for() {
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done
  echo "nothing answers at $1" >&2
  return 1
}
# start_floor: the bare axum + broadcast floor on port 3078.
start_floor() {
  ${pin_sqlite:-} $bench floor --addr 127.0.0.1:3078 &
  pid=$!
  wait_for "http://127.0.0.1:3078/api/send" -X POST
  kill -0 "$pid" # it is ours that answers, not a leftover
}
# start_nginx PORT UPSTREAM CACHE: deploy/nginx.conf filled in by scripts/nginx-conf.sh, in front of the one server
# UPSTREAM (HOST:PORT); CACHE `off` turns its cache of /api/messages off, `nolock` its cache lock (its pid is the
# last of $pids).
start_nginx() {
  local dir=$runs/nginx-$1 nginx_bin
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  rm -rf "$dir" && mkdir -p "$dir"
  chmod go+x "$runs" # started as root, nginx runs its worker as nobody, which must reach its cache in $dir
  bash scripts/nginx-conf.sh "$dir" "$1" "$2" \
    | case $3 in
      off) sed 's|proxy_cache messages;|proxy_cache off;|' ;;
      nolock) sed 's|proxy_cache_lock on;|proxy_cache_lock off;|' ;;
      *) cat ;;
    esac >"$dir/nginx.conf"
  $pin_server "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
  pids+=($!)
  wait_for "http://127.0.0.1:$1/api/messages" || { tail -n 5 "$dir/error.log" >&2; return 1; }
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# p99 KIND FILE: the p99 in ms of a fanout report's "KIND latency" line (notification, full-loop).
p99() {
  grep -o "$1 latency ms p50=[0-9.]* p99=[0-9.]*" "$2" | sed 's/.*p99=//'
}
# per_refetch FILE: the server CPU in µs per refetch of a fanout report, or nothing if it has none.
per_refetch() {
  grep -o '[0-9.]* µs per refetch' "$1" | sed 's/ µs per refetch//' || true
}
# fanout_run NAME FANOUT-FLAGS...: a fanout run pinned to the bench's core, its report shown and kept in
# $runs/NAME; a run that does not deliver every message is reported, not fatal.
fanout_run() {
  local name=$1
  shift
  $pin_bench $bench fanout "$@" 2>&1 | tee "$runs/$name" || echo "$name: the run failed (see above)"
}

for section in $sections; do
  case $section in
  sends)
    start_server 3077
    echo "== sends: SQLite store"
    for senders in 1 8; do
      $bench sends --url "http://127.0.0.1:3077" --senders "$senders" --count 10000
    done
    stop
    ;;
  publish)
    # The publish API (issue 25): one API key, 1 and 8 publishers, against the tabs' sends on the same server.
    keys=$runs/api-keys.toml
    made=$(target/release/broadcasting make-api-key bench)
    key=$(printf '%s\n' "$made" | grep '^bk_')
    printf '%s\n' "$made" | sed -n '/^\[\[key\]\]/,$p' | sed 's/^per-minute = .*/per-minute = 100000000/' >"$keys"
    start_server 3077 --api-keys-file "$keys"
    echo "== publish: SQLite store, one API key, against the tabs' sends"
    for senders in 1 8; do
      $bench publish --url "http://127.0.0.1:3077" --key "$key" --senders "$senders" --count 10000
      $bench sends --url "http://127.0.0.1:3077" --senders "$senders" --count 10000
    done
    stop
    ;;
  fanout)
    for n in $subscribers; do
      start_floor
      $bench fanout --url http://127.0.0.1:3078 --subscribers "$n" --messages "$messages" --rate "$rate" \
        --no-fetch --pid "$pid" --label floor
      stop
      start_server 3077
      $bench fanout --url http://127.0.0.1:3077 --subscribers "$n" --messages "$messages" --rate "$rate" \
        --pid "$pid" --label broadcasting
      stop
    done
    ;;
  refetch)
    # Broadcasting's full loop (notice, then the page refetched as a browser does) against the floor's notice alone,
    # and against the design's floor: the same floor's notice, then a static page (its /api/messages answered from
    # prepared bytes), refetched the same way. All on the same cores, each on a fresh server. Every subscriber is its
    # own browser; --scope everyone puts them all in one group (the floor sets no cookie).
    pin_sqlite=$pin_server
    for run in "10000 1 $messages 2" "1000 5 $messages 4" "10000 20 ${BENCH_FAST_MESSAGES:-200} -"; do
      read -r n r m target <<<"$run"
      start_floor
      fanout_run floor --url http://127.0.0.1:3078 --subscribers "$n" --messages "$m" --rate "$r" --no-fetch \
        --pid "$pid" --label floor
      stop
      start_floor
      fanout_run floor-pages --url http://127.0.0.1:3078 --subscribers "$n" --messages "$m" --rate "$r" \
        --browsers --pid "$pid" --label floor-pages
      stop
      start_server 3077 --scope everyone
      fanout_run broadcasting --url http://127.0.0.1:3077 --subscribers "$n" --messages "$m" --rate "$r" \
        --browsers --pid "$pid" --label broadcasting
      stop
      floor=$(p99 notification "$runs/floor")
      fetched=$(p99 full-loop "$runs/broadcasting")
      pages=$(p99 full-loop "$runs/floor-pages" || true)
      if [ "$target" = - ]; then
        target="every subscriber ends with every message: $(grep -o 'fetched [0-9]*/[0-9]*' "$runs/broadcasting")"
      else
        target="target <= ${target}x"
      fi
      # The line's beginning is as it was before the static-pages floor, so older figures stay comparable.
      awk -v n="$n" -v r="$r" -v floor="$floor" -v fetched="$fetched" -v target="$target" -v pages="${pages:-?}" \
        -v cpu="$(per_refetch "$runs/broadcasting")" -v pages_cpu="$(per_refetch "$runs/floor-pages")" 'BEGIN {
        printf "== refetch N=%s rate=%s/s: floor notification p99 %s ms, Broadcasting fetched p99 %s ms: %s x the floor (%s)",
          n, r, floor, fetched, (floor > 0 ? sprintf("%.1f", fetched / floor) : "?"), target
        printf "; floor with static pages fetched p99 %s ms (Broadcasting %s x that); CPU per refetch: Broadcasting %s µs, floor with static pages %s µs\n",
          pages, (pages + 0 > 0 ? sprintf("%.1f", fetched / pages) : "?"), (cpu == "" ? "?" : cpu),
          (pages_cpu == "" ? "?" : pages_cpu) }'
    done
    # nginx in front of one server, without and with its cache of /api/messages (and with it but no cache lock,
    # whose waiters nginx wakes every 500 ms): what reaches the server (its own /metrics) and what the tabs wait.
    n=${BENCH_CACHE_SUBSCRIBERS:-5000}
    port=$(free_port)
    for cache in off on nolock; do
      start_server 3077 --scope everyone
      server=$pid
      start_nginx "$port" 127.0.0.1:3077 "$cache"
      fanout_run "nginx-cache-$cache" --url "http://127.0.0.1:$port" --metrics http://127.0.0.1:3077 \
        --subscribers "$n" --messages "$messages" --rate 1 --browsers --pid "$server" --label "nginx-cache-$cache"
      stop
    done
    for cache in off on nolock; do
      printf '== refetch through nginx, cache %s, N=%s rate=1/s: origin refetches per message %s, fetched p99 %s ms\n' \
        "$cache" "$n" "$(grep -o 'origin answered [0-9]* ([^)]*), [0-9.]* per message' "$runs/nginx-cache-$cache" \
        | sed 's/.*, //; s/ per message//')" "$(p99 full-loop "$runs/nginx-cache-$cache")"
    done
    pin_sqlite=""
    ;;
  private)
    # Private feeds (issue 25): members of a private `main` (its read pass on every stream and page request, each
    # page checked and answered by the route, never from the shortcut or a shared cache) against the same load on an
    # open `main`. Both join with the same sign-in token; every subscriber is its own browser (--scope everyone).
    pin_sqlite=$pin_server
    secret="the bench's token secret, thirty-two bytes or more"
    settings=$runs/private.toml
    printf '[broadcasting.named-feeds.main]\nread = "token"\nwrite = "token"\n' >"$settings"
    token=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
part = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
body = part({"alg": "HS256", "typ": "JWT"}) + "." + part({"sub": "bench", "name": "bench", "exp": int(time.time()) + 86400})
mac = hmac.new(sys.argv[1].encode(), body.encode(), hashlib.sha256).digest()
print(body + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode())
PY
)
    for n in 1000 5000; do
      for kind in open private; do
        extra=()
        if [ "$kind" = private ]; then extra=(--config "$settings"); fi
        start_server 3077 --scope everyone --join both --token-secret "$secret" "${extra[@]}"
        fanout_run "$kind" --url http://127.0.0.1:3077 --subscribers "$n" --messages 100 --rate 5 --browsers \
          --pid "$pid" --label "$kind" --token "$token"
        stop
      done
      printf '== private N=%s rate=5/s: fetched p99 open %s ms, private %s ms; server CPU per refetch open %s µs, private %s µs\n' \
        "$n" "$(p99 full-loop "$runs/open")" "$(p99 full-loop "$runs/private")" "$(per_refetch "$runs/open")" \
        "$(per_refetch "$runs/private")"
    done
    pin_sqlite=""
    ;;
  feeds)
    # Many named feeds (issue 24), every stream its own browser refetching like the page (--scope everyone: one
    # group), the server on core 0 and the load generator on core 1, each run on a fresh server; the same runs
    # against the floor (bench floor: axum + one broadcast channel per feed + prepared pages), which shows what
    # spreading the same deliveries over many feeds costs any server:
    #   appends  100 feeds x 1 message/s for 30 s and no stream: the server CPU per append, taken off the others'
    #            net figure (the appends are not fan-out, and the many-feeds run has 100x the messages)
    #   one      one feed, 1,000 streams x 1/s: the same total deliveries (30,000) as the many-feeds run
    #   many     10,000 streams over 1,000 feeds, 1 message/s in each of 100 of them for 30 s
    #   one-10k  (Broadcasting only) one feed, 10,000 streams x 1/s: the familiar figure (fanout's, with browsers)
    #   idle-K   (Broadcasting only) 10,000 idle streams over 1,000 feeds following K = 1 and 8 feeds each: what
    #            an extra feed on a stream costs
    #   visits   3 x 10,000 feeds nobody writes to visited on one server (page, pages, presence, a stream opened
    #            and closed): what the server keeps of them
    pin_sqlite=$pin_server
    # feeds_run SERVER NAME FLAGS...: one run on a fresh SERVER (floor or broadcasting), its report in $runs/NAME.
    feeds_run() {
      local server=$1 name=$2 url=http://127.0.0.1:3077
      shift 2
      if [ "$server" = floor ]; then
        start_floor
        url=http://127.0.0.1:3078
      else
        start_server 3077 --scope everyone --new-feeds-per-hour 0
      fi
      $pin_bench $bench feeds --url "$url" --pid "$pid" --label "$name" "$@" 2>&1 | tee "$runs/$name" \
        || echo "$name: the run failed (see above)"
      stop
    }
    append_ms() { grep -o '[0-9.]* ms per message' "$runs/$1" | sed 's/ ms per message//'; }
    for server in floor broadcasting; do
      feeds_run "$server" "$server-appends" --streams 0 --feeds 100 --sending 100 --rate 1 --seconds "$messages"
      append=$(append_ms "$server-appends")
      feeds_run "$server" "$server-one" --streams 1000 --feeds 1 --sending 1 --rate 1 --seconds "$messages" \
        --append-ms "$append"
      feeds_run "$server" "$server-many" --streams 10000 --feeds 1000 --sending 100 --rate 1 --seconds "$messages" \
        --append-ms "$append"
    done
    feeds_run broadcasting one-10k --streams 10000 --feeds 1 --sending 1 --rate 1 --seconds "$messages" \
      --append-ms "$(append_ms broadcasting-appends)"
    for k in 1 8; do
      feeds_run broadcasting "idle-$k" --streams 10000 --feeds 1000 --per-stream "$k" --seconds 0
    done
    start_server 3077 --scope everyone --new-feeds-per-hour 0
    before=$(du -sb "$data" | cut -f1)
    for round in 1 2 3; do
      $pin_bench $bench feeds --url http://127.0.0.1:3077 --pid "$pid" --label "visits$round" --visits 10000
    done
    echo "== feeds visits: data directory $before bytes before, $(du -sb "$data" | cut -f1) bytes after 30,000 visits"
    stop
    net() { grep -o '[0-9.]* µs net per delivery' "$runs/$1" | sed 's/ µs net per delivery//'; }
    kib() { grep -o '[0-9.]* KiB per idle stream' "$runs/$1" | sed 's/ KiB per idle stream//'; }
    awk -v one="$(net broadcasting-one)" -v one10k="$(net one-10k)" -v many="$(net broadcasting-many)" \
      -v f_one="$(net floor-one)" -v f_many="$(net floor-many)" \
      -v p_one="$(p99 full-loop "$runs/broadcasting-one")" -v p_many="$(p99 full-loop "$runs/broadcasting-many")" \
      -v fp_one="$(p99 full-loop "$runs/floor-one")" -v fp_many="$(p99 full-loop "$runs/floor-many")" \
      -v k1="$(kib idle-1)" -v k8="$(kib idle-8)" -v append="$(append_ms broadcasting-appends)" 'BEGIN {
      r = (one > 0 ? many / one : 0); fr = (f_one > 0 ? f_many / f_one : 0)
      printf "== feeds: fan-out CPU per delivery (net of idle CPU and of %s ms per append): one feed %s µs (10,000 streams: %s µs), 1,000 feeds %s µs = %.2f x (target <= 1.5x); the floor: one feed %s µs, 1,000 feeds %s µs = %.2f x; Broadcasting over the floor: %.2f x one feed, %.2f x 1,000 feeds\n",
        append, one, one10k, many, r, f_one, f_many, fr, (f_one > 0 ? one / f_one : 0), (f_many > 0 ? many / f_many : 0)
      printf "== feeds: fetched p99 one feed %s ms, 1,000 feeds %s ms = %.2f x (target <= 1.5x); the floor %s ms and %s ms\n",
        p_one, p_many, (p_one > 0 ? p_many / p_one : 0), fp_one, fp_many
      printf "== feeds: idle stream %s KiB following 1 feed, %s KiB following 8: %.2f KiB per extra feed\n",
        k1, k8, (k8 - k1) / 7 }'
    pin_sqlite=""
    ;;
  render)
    start_server 3077
    $bench sends --url "http://127.0.0.1:3077" --senders 4 --count 200 >/dev/null
    echo "== render: / with 200 messages"
    $bench render --url "http://127.0.0.1:3077/" --connections 8 --seconds 10
    stop
    ;;
  size)
    start_server 3077
    echo "== size: file raw gzip-9 brotli-11 served-br served-gzip (bytes)"
    for file in target/site/pkg/broadcasting.wasm target/site/pkg/broadcasting.js target/site/pkg/broadcasting.css; do
      url="http://127.0.0.1:3077/pkg/$(basename "$file")"
      printf '%s %s %s %s %s %s\n' "$(basename "$file")" "$(stat -c %s "$file")" "$(gzip -9c "$file" | wc -c)" \
        "$(brotli -q 11 -c "$file" | wc -c)" \
        "$(curl -sf -H 'Accept-Encoding: br' "$url" | wc -c)" "$(curl -sf -H 'Accept-Encoding: gzip' "$url" | wc -c)"
    done
    printf '/ (empty log) %s - - %s %s\n' "$(curl -sf http://127.0.0.1:3077/ | wc -c)" \
      "$(curl -sf -H 'Accept-Encoding: br' http://127.0.0.1:3077/ | wc -c)" \
      "$(curl -sf -H 'Accept-Encoding: gzip' http://127.0.0.1:3077/ | wc -c)"
    stop
    ;;
  soak)
    # Not part of the default run: 1,000 tabs, 10 % dropping and reopening their stream at random, 100 sends/s for
    # 60 s; every tab's log must equal the server's at the end.
    start_server 3077
    $bench soak --url http://127.0.0.1:3077 --subscribers "${BENCH_SOAK_TABS:-1000}" --flaky 0.1 --rate 100 \
      --seconds "${BENCH_SOAK_SECONDS:-60}" --pid "$pid"
    stop
    ;;
  redis)
    pin_sqlite=$pin_server # the single process it is compared with is pinned the same way
    echo "== redis: durable sends, 8 senders (Redis appendfsync always, then SQLite synchronous=FULL)"
    start_redis 6391
    # The floor: Redis alone, 8 clients each waiting for its SET (every write fsynced), on the same disk.
    printf 'floor: redis-benchmark SET, 8 clients, appendfsync always: '
    $pin_bench redis-benchmark -p 6391 -t set -c 8 -n 20000 --csv | tail -n1
    start_replica 3081 6391
    $pin_bench $bench sends --url "http://127.0.0.1:3081" --senders 8 --count 20000
    stop
    start_server 3077
    $pin_bench $bench sends --url "http://127.0.0.1:3077" --senders 8 --count 20000
    stop
    n=${BENCH_REDIS_SUBSCRIBERS:-10000}
    echo "== redis: fan-out to $n subscribers at $rate/s: SQLite single process, one Redis replica, two Redis replicas"
    start_server 3077
    $pin_bench $bench fanout --url http://127.0.0.1:3077 --subscribers "$n" --messages "$messages" --rate "$rate" \
      --pid "$pid" --label sqlite-1-process
    stop
    start_redis 6391
    start_replica 3081 6391
    $pin_bench $bench fanout --url http://127.0.0.1:3081 --subscribers "$n" --messages "$messages" --rate "$rate" \
      --pid "${pids[-1]}" --label redis-1-replica
    stop
    start_redis 6391
    start_replica 3081 6391
    start_replica 3082 6391
    $pin_bench $bench fanout --url http://127.0.0.1:3081 --also http://127.0.0.1:3082 --subscribers "$n" \
      --messages "$messages" --rate "$rate" --pid "${pids[1]}" --pid "${pids[2]}" --label redis-2-replicas
    stop
    echo "== redis: time to heal a killed pub/sub connection"
    start_redis 6391
    start_replica 3081 6391
    start_replica 3082 6391
    $bench heal --url http://127.0.0.1:3081 --via http://127.0.0.1:3082 --redis-port 6391 --rounds 20
    stop
    ;;
  live)
    start_server 3077
    (cd end2end && BASE_URL=http://127.0.0.1:3077 npx playwright test tests/timing.spec.ts --reporter=line) | grep timing:
    stop
    ;;
  *)
    echo "unknown section $section (sends, fanout, refetch, render, size, live, soak, redis)" >&2
    exit 2
    ;;
  esac
done
