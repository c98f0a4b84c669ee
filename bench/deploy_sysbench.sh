#!/usr/bin/env bash
# sysbench oltp_read_write (4 threads, through the gateway with an admin password) while deploy
# requests alter its table, against the same workload with no deploy in the same run. sysbench
# retries a deadlock (1213) or a lock wait timeout (1205) and counts it as an "ignored error": with a
# deploy running that count must stay at the baseline's (0), since an application write never fails
# because of a deploy. Each deploy must also finish while the load runs: clients that keep the
# table busy transaction after transaction are held back for a moment at the gateway when the
# deploy needs the table free (its cut-over, its triggers), never failed.
#
# Usage: bench/deploy_sysbench.sh [rows, default 200000] [deploys, default 6]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-200000}
rounds=${2:-6}
source bench/common.sh
cargo build --release -q -p strata
S=target/release/strata

start_strata
trap stop_strata EXIT
root_cnf=$work/data/instances/$branch/client-strata_root.cnf
root_user=$(sed -n 's/^user=//p' "$root_cnf")
root_pass=$(sed -n 's/^password=//p' "$root_cnf")
sb=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-db=bench --tables=1
  --table-size="$rows" --threads=4 --rand-type=uniform --report-interval=0)
# The table is made by the control plane's user: with safe migrations on, roles have no DDL.
sysbench oltp_read_write "${sb[@]}" --mysql-port="$direct_port" --mysql-user="$root_user" --mysql-password="$root_pass" prepare >/dev/null
$S branch safe-migrations enable bench main >/dev/null
$S branch create bench dev --wait >/dev/null
dev=$($S branch show bench dev -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
dev_cnf=$work/data/instances/$dev/client-strata_admin.cnf

run_sysbench() { # seconds -> "tps ignored-errors"
  sysbench oltp_read_write "${sb[@]}" --mysql-port="$gw_port" --mysql-user="$user" --mysql-password="$pass" \
    --time="$1" run >"$work/sb.out" 2>&1 || { cat "$work/sb.out"; exit 1; }
  local tps ignored
  tps=$(sed -n 's/.*transactions: *[0-9]* *(\([0-9.]*\) per sec.).*/\1/p' "$work/sb.out")
  ignored=$(sed -n 's/.*ignored errors: *\([0-9]*\).*/\1/p' "$work/sb.out")
  echo "$tps $ignored"
}

echo "rows: $rows; 4 threads"
read -r tps ignored < <(run_sysbench 20)
echo "no deploy (20 s):  $tps tps, ignored errors $ignored"

total=0
for i in $(seq "$rounds"); do
  if ((i % 2)); then change="ADD COLUMN extra INT NULL, ADD INDEX ipad (pad)"; else change="DROP COLUMN extra, DROP INDEX ipad"; fi
  mariadb --defaults-file="$dev_cnf" bench -e "ALTER TABLE sbtest1 $change"
  $S deploy-request create bench dev >/dev/null
  run_sysbench 40 >"$work/round" &
  sb_pid=$!
  sleep 2
  t0=$(date +%s.%N)
  $S deploy-request deploy bench "$i" --wait >/dev/null
  t1=$(date +%s.%N)
  $S deploy-request skip-revert bench "$i" >/dev/null
  t2=$(date +%s.%N)
  running=$(kill -0 "$sb_pid" 2>/dev/null && echo "while the load ran" || echo "AFTER THE LOAD ENDED")
  wait "$sb_pid"
  read -r tps ignored <"$work/round"
  total=$((total + ignored))
  echo "deploy $i ($change): $(python3 -c "print(f'{$t1 - $t0:.2f}')") s, revert window closed in $(python3 -c "print(f'{$t2 - $t1:.2f}')") s, $running; $tps tps, ignored errors $ignored"
done
echo "ignored errors over $rounds deploys: $total"
