#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and property tests, and the end-to-end tests
# against real mariadbd instances and the stock mariadb client.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
