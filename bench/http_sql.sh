#!/usr/bin/env bash
# Queries per second over the HTTP SQL endpoint against the MySQL protocol, from the same machine
# in one run: point selects on a 10,000-row table, the same client count on both, plain connections
# on loopback. Twice: with a native load generator on both protocols (target/release/http_points:
# the servers' figure), then with Node.js clients (@planetscale/database over HTTP, mysql2 over the
# gateway: what a Node application sees, where the runtime's fetch costs more than the server).
#
# Usage: bench/http_sql.sh [concurrency, default 16] [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
cargo build --release -q -p strata -p strata-bench
[ -d tests/clients/node_modules/@planetscale/database ] || bash scripts/test-deps.sh
start_strata
trap stop_strata EXIT
http_port=$(sed -n 's/.*HTTP SQL: *https:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/up.out")
mariadb -h127.0.0.1 -P"$gw_port" -u"$user" -p"$pass" bench -e "
  CREATE TABLE points (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(60) NOT NULL);
  INSERT INTO points SELECT seq, seq % 1000, MD5(seq) FROM seq_1_to_10000"
echo "native clients:"
target/release/http_points --gateway "127.0.0.1:$gw_port" --user "$user" --password "$pass" --database bench \
  --http "http://127.0.0.1:$http_port" --clients "${1:-16}" --seconds "${2:-10}"
echo "Node.js clients:"
CLIENTS=$PWD/tests/clients HTTP_URL="http://$user:$pass@127.0.0.1:$http_port" GW_PORT=$gw_port \
  USER=$user PASS=$pass CONCURRENCY=${1:-16} SECONDS=${2:-10} node bench/http_sql.mjs
