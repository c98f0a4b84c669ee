#!/usr/bin/env bash
# The schema engine on two 500-table schemas: parse both and diff (goal ≤ 200 ms).
# Usage: bench/schema_diff.sh [tables, default 500]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p strata-bench
target/release/schema_diff --tables "${1:-500}"
