#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and property tests, and the end-to-end tests
# against real mariadbd instances and the stock mariadb client.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Copy-on-write snapshots are tested on an XFS image when this machine can mount one (root).
if dir=$(scripts/reflink-dir.sh 4G 2>/dev/null); then
  export STRATA_TEST_REFLINK_DIR="$dir"
else
  echo "note: no reflink-capable directory (needs root and xfsprogs); snapshots are tested on the copy path only" >&2
fi
cargo test --workspace --locked
