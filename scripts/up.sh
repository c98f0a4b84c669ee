#!/usr/bin/env bash
# Brings the platform up: installs what is missing, builds, and runs `strata up` in the foreground.
# Extra arguments go to `strata up` (e.g. --data-dir DIR, --listen ADDR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -p strata
exec target/release/strata up "$@"
