#!/usr/bin/env bash
# Query consolidation on a hot-row read storm: 64 clients run the same read-only query (an aggregate
# over 200,000 rows, a few ms each) for 10 s, through a gateway with consolidation on and, in the same
# run, one with it off.
#
# Usage: bench/consolidation.sh [clients, default 64] [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-64}
secs=${2:-10}
source bench/common.sh
cargo build --release -q -p strata -p strata-bench
query="SELECT COUNT(*), SUM(v) FROM hot WHERE v % 3 = 0"
for mode in on off; do
  flags=()
  [ "$mode" = off ] && flags=(--no-consolidation)
  start_strata "${flags[@]}"
  mariadb -h127.0.0.1 -P"$gw_port" -u"$user" -p"$pass" bench -e \
    "CREATE TABLE hot (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO hot SELECT seq, seq FROM seq_1_to_200000"
  printf "consolidation %-3s: " "$mode"
  target/release/read_storm --gateway "127.0.0.1:$gw_port" --user "$user" --password "$pass" \
    --clients "$clients" --seconds "$secs" --query "$query"
  stop_strata
done
