#!/usr/bin/env bash
# sysbench through the gateway against the same instance directly and through haproxy in TCP mode
# (the floor for any proxy on this machine: it parses nothing), in one run.
#
# Starts `strata up` on a temporary data directory, creates a database, loads the sysbench tables,
# then runs oltp_point_select and oltp_read_write at 1 and 8 threads three ways each: directly against
# the branch instance (as its internal admin user), through haproxy to the same instance (same user),
# and through the gateway (with an admin password).
#
# Usage: bench/gateway_sysbench.sh [seconds per run, default 20] [table size, default 100000]
# STRATA_BENCH_TESTS and STRATA_BENCH_THREADS narrow the lines run (defaults: both tests, 1 and 8).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
size=${2:-100000}
command -v sysbench >/dev/null || { echo "sysbench missing: apt-get install sysbench" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy missing: apt-get install haproxy" >&2; exit 1; }
source bench/common.sh
cargo build --release -q -p strata
haproxy_pid=
trap 'kill $haproxy_pid 2>/dev/null || true; stop_strata' EXIT
start_strata

# haproxy in TCP mode in front of the same instance: a byte relay, as cheap as a proxy gets.
haproxy_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen mysql
  bind 127.0.0.1:$haproxy_port
  server instance 127.0.0.1:$direct_port
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!

common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-db=bench --tables=4 --table-size="$size" --percentile=50 --report-interval=0)
direct=(--mysql-port="$direct_port" --mysql-user=strata_admin --mysql-password="$direct_pass")
gateway=(--mysql-port="$gw_port" --mysql-user="$user" --mysql-password="$pass")
haproxy=(--mysql-port="$haproxy_port" --mysql-user=strata_admin --mysql-password="$direct_pass")

sysbench oltp_read_write "${common[@]}" "${direct[@]}" prepare >/dev/null

run() { # test threads target...
  local test=$1 threads=$2; shift 2
  sysbench "$test" "${common[@]}" "$@" --threads="$threads" --time="$secs" run 2>&1 |
    awk '/queries:/ {gsub(/[(]/,""); q=$3} /50th percentile:/ {p=$3} /^ *errors:/ {e=$2} END {printf "%s %s %s\n", q, p, e}'
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(mariadbd --version | cut -d' ' -f3-5); sysbench $(sysbench --version | cut -d' ' -f2); $(haproxy -v | head -1 | cut -d' ' -f1-3)"
printf "%-18s %7s | %10s %7s | %11s %7s | %11s %7s %6s | %9s %10s %10s\n" test threads direct_qps p50_ms haproxy_qps p50_ms gateway_qps p50_ms errors gw/direct gw/haproxy added_p50
for test in ${STRATA_BENCH_TESTS:-oltp_point_select oltp_read_write}; do
  for threads in ${STRATA_BENCH_THREADS:-1 8}; do
    read -r dq dp _ <<<"$(run $test $threads "${direct[@]}")"
    read -r hq hp _ <<<"$(run $test $threads "${haproxy[@]}")"
    read -r gq gp ge <<<"$(run $test $threads "${gateway[@]}")"
    ratio=$(python3 -c "print(f'{$gq/$dq:.2f}')")
    floor=$(python3 -c "print(f'{$gq/$hq:.2f}')")
    added=$(python3 -c "print(f'{($gp-$dp)*1000:.0f} us')")
    printf "%-18s %7s | %10s %7s | %11s %7s | %11s %7s %6s | %9s %10s %10s\n" "$test" "$threads" "$dq" "$dp" "$hq" "$hp" "$gq" "$gp" "$ge" "$ratio" "$floor" "$added"
  done
done
