#!/usr/bin/env bash
# The main job: installs missing build dependencies, builds medchain in release mode and starts a
# local consortium with `medchain up`: 4 validators running PBFT over QUIC on 127.0.0.1, each with
# its RocksDB ledger and HTTP API, in ./data/local. Ctrl-C stops every node cleanly; running it
# again resumes from disk. Extra arguments go to `medchain up` (see `medchain up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --locked -p medchain
exec ./target/release/medchain up "$@"
