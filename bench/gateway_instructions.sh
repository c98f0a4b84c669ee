#!/usr/bin/env bash
# Instructions the gateway executes per query, against haproxy in TCP mode on the same queries:
# counted by valgrind's callgrind, so the figure repeats whatever else the machine is doing
# (unlike throughput on this 2-core machine).
#
# Starts `strata up` under callgrind on a temporary data directory, loads one sysbench table, then
# runs the same oltp_point_select events through the gateway and through haproxy (also under
# callgrind) in front of the same instance; counters are zeroed before and dumped after each run.
#
# Usage: bench/gateway_instructions.sh [events, default 3000]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-3000}
for c in valgrind callgrind_control sysbench haproxy; do
  command -v $c >/dev/null || { echo "$c missing (apt-get install valgrind sysbench haproxy)" >&2; exit 1; }
done
source bench/common.sh
cargo build --release -q -p strata
ha=
trap 'kill $ha 2>/dev/null || true; wait $ha 2>/dev/null || true; stop_strata' EXIT
STRATA_BENCH_WRAP="valgrind --tool=callgrind --callgrind-out-file={work}/gw.%p" start_strata
hp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen mysql
  bind 127.0.0.1:$hp
  server instance 127.0.0.1:$direct_port
CFG
valgrind --tool=callgrind --callgrind-out-file="$work/ha.%p" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
ha=$!
common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-db=bench --tables=1 --table-size=10000)
sysbench oltp_point_select "${common[@]}" --mysql-port="$direct_port" --mysql-user=strata_admin --mysql-password="$direct_pass" prepare >/dev/null
sleep 5
count() { # pid port user password -> instructions per query
  local pid=$1; shift
  callgrind_control -z "$pid" >/dev/null
  sysbench oltp_point_select "${common[@]}" --mysql-port="$1" --mysql-user="$2" --mysql-password="$3" \
    --threads=1 --events="$events" --time=0 run >/dev/null
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  local f
  f=$(ls -t "$work"/*."$pid".* | head -1)
  python3 - "$f" "$events" <<'PY'
import sys
total = 0
for line in open(sys.argv[1]):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = max(total, int(line.split()[1]))
print(round(total / int(sys.argv[2])))
PY
}
g=$(count "$up" "$gw_port" "$user" "$pass")
h=$(count "$ha" "$hp" strata_admin "$direct_pass")
echo "machine: $(nproc) cores; $(valgrind --version); sysbench $(sysbench --version | cut -d' ' -f2); $(haproxy -v | head -1 | cut -d' ' -f1-3)"
echo "oltp_point_select, 1 thread, $events events on one connection (its login and prepared statements included)"
echo "gateway instructions/query: $g"
echo "haproxy instructions/query: $h"
python3 -c "print(f'gateway / haproxy: {$g/$h:.2f}')"
