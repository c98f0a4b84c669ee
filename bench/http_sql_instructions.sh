#!/usr/bin/env bash
# Instructions `strata up` executes per point select over the HTTP SQL endpoint against the MySQL
# port: counted by valgrind's callgrind, so the figure repeats whatever else the machine is doing
# (unlike throughput on this 2-core machine). Same queries as bench/http_sql.sh (one native client,
# a new HTTP session per call as the serverless driver's `execute` makes), counters zeroed before
# and dumped after each side. The per-function profile of each side stays in the work directory
# when STRATA_BENCH_KEEP is set (callgrind_annotate reads it).
#
# Usage: bench/http_sql_instructions.sh [seconds per side, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
for c in valgrind callgrind_control; do
  command -v $c >/dev/null || { echo "$c missing (apt-get install valgrind)" >&2; exit 1; }
done
source bench/common.sh
cargo build --release -q -p strata -p strata-bench
finish() {
  if [ -n "${STRATA_BENCH_KEEP:-}" ]; then
    cp "$work"/cg.* "$STRATA_BENCH_KEEP"/ 2>/dev/null || true
  fi
  stop_strata
}
trap finish EXIT
STRATA_BENCH_WRAP="valgrind --tool=callgrind --callgrind-out-file={work}/cg.%p" start_strata
http_port=$(sed -n 's/.*HTTP SQL: *https:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/up.out")
mariadb -h127.0.0.1 -P"$gw_port" -u"$user" -p"$pass" bench -e "
  CREATE TABLE points (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(60) NOT NULL);
  INSERT INTO points SELECT seq, seq % 1000, MD5(seq) FROM seq_1_to_10000"
count() { # side -> instructions per query
  callgrind_control -z "$up" >/dev/null
  local out
  out=$(target/release/http_points --gateway "127.0.0.1:$gw_port" --user "$user" --password "$pass" --database bench \
    --http "http://127.0.0.1:$http_port" --clients 1 --seconds "$seconds" --side "$1")
  callgrind_control -d "$up" >/dev/null
  sleep 1
  local queries f
  queries=$(echo "$out" | sed -n 's/.*queries \([0-9]*\).*/\1/p')
  f=$(ls -t "$work"/cg.* | head -1)
  mv "$f" "$work/cg.$1"
  python3 - "$work/cg.$1" "$queries" <<'PY'
import sys
total = 0
for line in open(sys.argv[1]):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = max(total, int(line.split()[1]))
print(round(total / max(int(sys.argv[2]), 1)), sys.argv[2])
PY
}
read -r h hq < <(count http)
read -r m mq < <(count mysql)
echo "machine: $(nproc) cores; $(valgrind --version); one client, $seconds s per side"
echo "HTTP SQL instructions/query:   $h ($hq queries)"
echo "MySQL port instructions/query: $m ($mq queries)"
python3 -c "print(f'HTTP / MySQL: {$h/$m:.2f}')"
