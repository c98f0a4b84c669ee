# Shared by the bench scripts: start `strata up` on a temporary data directory and make a database
# with an admin password. Sets: work, up (pid), gw_port, user, pass, branch, direct_port, direct_pass.
# STRATA_BENCH_WRAP: a command `strata up` runs under (e.g. valgrind), given the work directory's
# path as `{work}`.
start_strata() { # extra strata up flags...
  work=$(mktemp -d "${STRATA_BENCH_DIR:-/tmp}/strata-bench-XXXX")
  export STRATA_CONFIG=$work/config.toml STRATA_LOG=${STRATA_LOG:-warn}
  local wrap=${STRATA_BENCH_WRAP:-}
  ${wrap//\{work\}/$work} target/release/strata up --data-dir "$work/data" --listen 127.0.0.1:0 --mysql-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 "$@" >"$work/up.out" 2>"$work/up.err" &
  up=$!
  # Slower under a wrapper: up to 300 s.
  for _ in $(seq 3000); do grep -q "MySQL:" "$work/up.out" 2>/dev/null && break; sleep 0.1; done
  gw_port=$(sed -n 's/.*MySQL: *127.0.0.1:\([0-9]*\).*/\1/p' "$work/up.out")
  local S=target/release/strata
  $S database create bench --wait >/dev/null
  branch=$($S branch show bench main -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  local pw_json
  pw_json=$($S password create bench main bench --role admin -f json)
  user=$(echo "$pw_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["username"])')
  pass=$(echo "$pw_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["plain_text"])')
  local cnf=$work/data/instances/$branch/client-strata_admin.cnf
  direct_port=$(sed -n 's/^port=//p' "$cnf")
  direct_pass=$(sed -n 's/^password=//p' "$cnf")
}

stop_strata() { # STRATA_BENCH_LOG: a file the platform's log is kept in
  kill "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  if [ -n "${STRATA_BENCH_LOG:-}" ]; then cp "$work/up.err" "$STRATA_BENCH_LOG" || true; fi
  rm -rf "$work"
}
