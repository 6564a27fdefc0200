#!/usr/bin/env bash
# The main job: installs missing build dependencies, builds medchain in release mode and runs it.
# Until the networked consortium (`medchain up`) lands, this runs `medchain demo`: it writes a
# chain of signed transactions into a RocksDB ledger under ./data/demo, verifies it, and proves
# one transaction's inclusion. Extra arguments go to `medchain demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --locked -p medchain-node
exec ./target/release/medchain demo "$@"
