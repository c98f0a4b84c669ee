#!/usr/bin/env bash
# Online deploys on a 1M-row table (id, k, c CHAR(120), pad CHAR(60)): the deploy request adds a
# column and an index.
#  1. idle: `strata deploy-request deploy --wait`, from queue to cut-over;
#  2. the same ALTER under a steady writer (bench/deploy_writer.py), once through Strata's deploy and
#     once with pt-online-schema-change (Debian's percona-toolkit) on the same table freshly loaded,
#     in the same run: durations, the writer's throughput and its longest single write.
#
# Usage: bench/online_deploy.sh [rows, default 1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
source bench/common.sh
command -v pt-online-schema-change >/dev/null || { echo "install percona-toolkit (apt-get install percona-toolkit)"; exit 1; }
cargo build --release -q -p strata
S=target/release/strata
alter="ADD COLUMN extra INT NULL, ADD INDEX ipad (pad)"

load() { # table (as the control plane's user: with safe migrations on, the roles have no DDL)
  mariadb --defaults-file="$work/data/instances/$branch/client-strata_root.cnf" bench -e "
    DROP TABLE IF EXISTS $1;
    CREATE TABLE $1 (id BIGINT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY ik (k)) ENGINE=InnoDB;
    INSERT INTO $1 SELECT seq, seq % 100000, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2)), MD5(seq * 7) FROM seq_1_to_$rows;"
}

deploy() { # number -> seconds from queue to cut-over
  local t0 t1
  t0=$(date +%s.%N)
  $S deploy-request deploy bench "$1" --wait >/dev/null
  t1=$(date +%s.%N)
  $S deploy-request skip-revert bench "$1" >/dev/null
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

start_writer() { # table
  stop_file=$work/stop-writer; rm -f "$stop_file"
  python3 bench/deploy_writer.py --port "$direct_port" --user strata_admin --password "$direct_pass" \
    --table "$1" --rows "$rows" --stop-file "$stop_file" >"$work/writer.out" 2>&1 &
  writer=$!
  sleep 2
}
# Not in a $(…) subshell: `wait` works only on the shell's own children.
stop_writer() { touch "$stop_file"; wait "$writer" || true; writer_result=$(tail -1 "$work/writer.out"); }

start_strata
trap stop_strata EXIT
load t
$S branch safe-migrations enable bench main >/dev/null
$S branch create bench dev --wait >/dev/null
dev=$($S branch show bench dev -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
dev_cnf=$work/data/instances/$dev/client-strata_admin.cnf
mariadb --defaults-file="$dev_cnf" bench -e "ALTER TABLE t $alter"
$S deploy-request create bench dev >/dev/null
echo "rows: $rows; ALTER: $alter"
echo "strata, idle:          $(deploy 1) s"

# Under writes: the dev branch goes back to the old schema, production gets a fresh table.
mariadb --defaults-file="$dev_cnf" bench -e "ALTER TABLE t DROP COLUMN extra, DROP INDEX ipad"
$S deploy-request create bench dev >/dev/null
$S deploy-request deploy bench 2 --wait >/dev/null
$S deploy-request skip-revert bench 2 >/dev/null
load t
mariadb --defaults-file="$dev_cnf" bench -e "ALTER TABLE t $alter"
$S deploy-request create bench dev >/dev/null
start_writer t
took=$(deploy 3)
stop_writer
echo "strata, under writes:  $took s; writer: $writer_result"

load t2
root_cnf=$work/data/instances/$branch/client-strata_root.cnf
root_pass=$(sed -n 's/^password=//p' "$root_cnf")
root_user=$(sed -n 's/^user=//p' "$root_cnf")
start_writer t2
t0=$(date +%s.%N)
pt-online-schema-change --alter "$alter" "h=127.0.0.1,P=$direct_port,u=$root_user,p=$root_pass,D=bench,t=t2" \
  --execute --recursion-method=none --no-check-replication-filters --no-drop-old-table >"$work/ptosc.out" 2>&1 \
  || { cat "$work/ptosc.out"; exit 1; }
t1=$(date +%s.%N)
stop_writer
echo "pt-osc, under writes:  $(python3 -c "print(f'{$t1 - $t0:.2f}')") s; writer: $writer_result"
# With STRATA_LOG=info, each deployment's phases (prepare, copy, keys, cut-over) as logged.
grep -E "deployment (prepared|copied|keys built|cut over)" "$work/up.err" | sed 's/\x1b\[[0-9;]*m//g' || true
