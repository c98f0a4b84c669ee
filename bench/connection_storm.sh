#!/usr/bin/env bash
# A connection storm: new client connections at a fixed rate (default 5,000/s for 10 s), each logging
# in, running one query and closing. Every one must succeed or get a clean MySQL error; afterwards the
# gateway must still serve.
#
# Usage: bench/connection_storm.sh [rate, default 5000] [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-5000}
secs=${2:-10}
source bench/common.sh
cargo build --release -q -p strata -p strata-bench
start_strata
trap stop_strata EXIT
target/release/connection_storm --gateway "127.0.0.1:$gw_port" --user "$user" --password "$pass" \
  --rate "$rate" --seconds "$secs" --sources 4
mariadb -h127.0.0.1 -P"$gw_port" -u"$user" -p"$pass" bench -N -e "SELECT 'gateway still serving:', 1 + 1"
