#!/usr/bin/env bash
# The deploy invariant on many generated cases (crates/strata/tests/generated_deploys.rs): random
# schema changes deployed while four writers run a mix through the gateway, most of them reverted.
# Prints the test's summary line: cases passed of N, writes, writer errors, the longest write.
#
# Runs in the test (debug) profile, as scripts/test.sh does, unless STRATA_BENCH_PROFILE=release:
# the count is the same either way; writer stalls are pessimistic in debug (the gateway and the
# deploy steps run unoptimised), so the stall figure is measured in release.
#
# Usage: [STRATA_BENCH_PROFILE=release] bench/generated_deploys.sh [cases, default 300] [seed, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-300}
seed=${2:-1}
scripts/deps.sh >/dev/null
scripts/test-deps.sh >/dev/null
STRATA_DEPLOY_CASES=$cases STRATA_DEPLOY_SEED=$seed \
  cargo test -q $([ "${STRATA_BENCH_PROFILE:-}" = release ] && echo --release) -p strata --test generated_deploys generated_deploys_under_mixed_writers -- --nocapture 2>&1 \
  | grep -E -A4 "^generated deploys:|panicked|seed [0-9]+ case [0-9]+: .*(differs|errors|failed|slow write)" || true
