#!/usr/bin/env bash
# Many idle client connections on one gateway: opens N connections (spread over loopback source
# addresses for ports), holds them, reports the gateway's memory per connection and how many backend
# connections the instance saw, and checks a sample of the held connections still answers.
#
# Usage: bench/idle_connections.sh [connections, default 20000] [source addresses, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
sources=${2:-2}
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
source bench/common.sh
cargo build --release -q -p strata -p strata-bench
# One password holds them all: its share of the gateway (a quarter by default) is raised to the whole.
start_strata --max-connections-per-password "$n"
trap stop_strata EXIT
target/release/idle_connections --gateway "127.0.0.1:$gw_port" --user "$user" --password "$pass" \
  --connections "$n" --sources "$sources" --gateway-pid "$up" &
holder=$!
# While they are held: backend connections of the admin role on the instance.
for _ in $(seq 600); do
  sleep 1
  kill -0 $holder 2>/dev/null || break
  if grep -q . /proc/$holder/status 2>/dev/null && [ "$(ls /proc/$holder/fd 2>/dev/null | wc -l)" -ge "$n" ]; then
    backends=$(mariadb -h127.0.0.1 -P"$direct_port" -ustrata_admin -p"$direct_pass" -N -e \
      "SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'strata_admin'")
    echo "backend connections on the instance while holding $n clients: $((backends - 1)) (excluding this query's own)"
    break
  fi
done
wait $holder
