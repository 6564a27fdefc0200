#!/usr/bin/env bash
# The test command: installs missing build dependencies, then runs every test of the workspace
# (unit, property, crash-loop, CLI) and prints one summary line over all test binaries.
# Extra arguments go to `cargo test` (e.g. `./scripts/test.sh -p medchain-ledger`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
     END { printf "all test binaries: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
