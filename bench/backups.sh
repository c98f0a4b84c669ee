#!/usr/bin/env bash
# Backups, restores and data branches of a ~1 GB database (4 tables × 1M rows), on an XFS image
# (reflinks) and on the machine's own file system (/tmp: plain copies), each against the direct
# tool run on the same instance in the same run:
#  - backup: `strata backup create --wait` (copy + prepare, then validation on a scratch instance)
#    vs `mariadb-backup --backup` + `--prepare` by hand;
#  - restore into a new branch, until it serves: `strata backup restore --wait` vs
#    `mariadb-backup --copy-back` alone (files only, no server start);
#  - data branch (the parent's data as of now), until it serves: `strata branch create --seed-data
#    --wait` vs `mariadb-backup --backup` + `--prepare` (the usual way to clone a live server).
#
# Usage: bench/backups.sh [rows per table, default 1000000]   (root, for the XFS image)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
source bench/common.sh
cargo build --release -q -p strata
S=target/release/strata

secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
now() { date +%s.%N; }

run_on() { # label base-dir
  local label=$1
  STRATA_BENCH_DIR=$2 start_strata
  for t in 1 2 3 4; do
    mariadb -h127.0.0.1 -P"$direct_port" -ustrata_admin -p"$direct_pass" bench -e "
      CREATE TABLE t$t (id BIGINT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY ik (k)) ENGINE=InnoDB;
      INSERT INTO t$t SELECT seq, seq % 100000, CONCAT(MD5(seq), MD5(seq + 1), MD5(seq + 2)), MD5(seq * 7) FROM seq_1_to_$rows;"
  done
  local size
  size=$(du -sm "$work/data/instances/$branch/data/bench" | cut -f1)
  local fs
  fs=$(df -T "$work" | awk 'NR==2 {print $2}')

  # Backup.
  local t0 t1 bk id dur val
  t0=$(now); bk=$($S backup create bench main --wait -f json); t1=$(now)
  id=$(echo "$bk" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  dur=$(echo "$bk" | python3 -c 'import json,sys; b=json.load(sys.stdin); print("%.2f" % (b["duration_ms"] / 1000))')
  val=$(echo "$bk" | python3 -c '
import json,sys,datetime
b=json.load(sys.stdin); p=lambda s: datetime.datetime.fromisoformat(s.replace("Z","+00:00")).timestamp()
print("%.2f" % (p(b["validated_at"]) - p(b["completed_at"])))')
  local opts=$work/direct.cnf
  printf '[mariadb-backup]\nuser=strata_admin\npassword=%s\nhost=127.0.0.1\nport=%s\ndatadir=%s\n' \
    "$direct_pass" "$direct_port" "$work/data/instances/$branch/data" >"$opts"
  # strata_admin lacks RELOAD/PROCESS; the direct run uses the control plane's user.
  local root_pass
  root_pass=$(sed -n 's/^password=//p' "$work/data/instances/$branch/client-strata_root.cnf")
  sed -i "s/^user=.*/user=strata_root/; s/^password=.*/password=$root_pass/" "$opts"
  local d0 d1 d2
  d0=$(now)
  mariadb-backup --defaults-file="$opts" --backup --target-dir="$work/direct-bk" >/dev/null 2>&1
  d1=$(now)
  mariadb-backup --prepare --target-dir="$work/direct-bk" >/dev/null 2>&1
  d2=$(now)
  local direct_backup
  direct_backup=$(secs "$d0" "$d2")

  # Restore into a new branch.
  local r0 r1 c0 c1 restore
  r0=$(now); $S backup restore bench restored "$id" --wait >/dev/null; r1=$(now)
  restore=$(secs "$r0" "$r1")
  c0=$(now)
  mariadb-backup --copy-back --target-dir="$work/direct-bk" --datadir="$work/direct-restore" >/dev/null 2>&1
  c1=$(now)

  # Data branch as of now.
  # Three data branches in a row: the first start's recovery depends on how much redo the parent
  # has written since its last checkpoint, which varies.
  local b0 b1 seed="" method
  for i in 1 2 3; do
    b0=$(now); $S branch create bench "seeded$i" --seed-data --wait >/dev/null; b1=$(now)
    seed="$seed $(secs "$b0" "$b1")"
    sleep 2
  done
  method=$(grep -o 'method="[a-z]*"\|method=[a-z]*' "$work/up.err" | tail -1 || true)

  echo "== $label ($fs), database $size MB"
  echo "backup (copy+prepare)     strata $dur s (validation after it: $val s; CLI total $(secs "$t0" "$t1") s)   direct mariadb-backup+prepare $direct_backup s"
  echo "restore to a new branch   strata $restore s until the branch serves                direct --copy-back (files only) $(secs "$c0" "$c1") s"
  echo "data branch (as of now)   strata$seed s until the branch serves ($method)   direct mariadb-backup+prepare $direct_backup s"
  grep -E "backup taken|backup complete|backup validated|branch data in place" "$work/up.err" | sed 's/^/   /' || true
  stop_strata
}

export STRATA_LOG=info
if xfs=$(scripts/reflink-dir.sh 16G 2>/dev/null); then
  run_on "XFS image with reflinks" "$xfs"
else
  echo "(no XFS image: needs root and xfsprogs; copy-on-write figures skipped)"
fi
run_on "the machine's file system" /tmp
