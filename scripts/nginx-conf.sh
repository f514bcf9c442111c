#!/usr/bin/env bash
# Prints deploy/nginx.conf filled in for an unprivileged nginx (`nginx -p RUNTIME -c RUNTIME/nginx.conf`):
#   scripts/nginx-conf.sh RUNTIME PORT UPSTREAM...
# RUNTIME: the folder for its pid, logs, temp files and cache; PORT: where it listens on 127.0.0.1; each UPSTREAM
# one `server` line of the upstream block (`HOST:PORT [PARAMETERS]`). Used by scripts/cluster.sh and scripts/bench.sh.
set -euo pipefail
runtime=$1 port=$2
shift 2
upstreams=""
for upstream in "$@"; do upstreams+="        server $upstream;"$'\n'; done
sed -e "s|@RUNTIME@|$runtime|g" -e "s|@PORT@|$port|g" "$(dirname "$0")/../deploy/nginx.conf" \
  | awk -v upstreams="$upstreams" '{ if ($0 == "@UPSTREAMS@") printf "%s", upstreams; else print }'
