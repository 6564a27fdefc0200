#!/usr/bin/env bash
# Installs what building and testing medchain needs on a Debian/Ubuntu machine, and only what is
# missing: a C++ compiler (the build compiles RocksDB from source, see docs/building.md),
# libclang for bindgen, and Debian's librocksdb-dev only when ROCKSDB_LIB_DIR asks to link it
# instead; with `--test`, Chromium and chromedriver, and the OpenAPI validator in target/venv.
# Safe to run again; prints what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(g++ libclang-dev pkg-config openssl)
if [ -n "${ROCKSDB_LIB_DIR:-}" ]; then
  packages+=(librocksdb-dev)
fi
# `--test`: also what the tests need: Chromium and its WebDriver, for the portal's browser test,
# and Python's venv, for the OpenAPI validator.
if [ "${1:-}" = "--test" ]; then
  packages+=(chromium chromium-driver python3-venv)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is not on PATH. Install the Rust toolchain (rustup, stable >= 1.85) first." >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing ${missing[*]} and no apt-get here; install them with your package manager." >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# `--test`: an OpenAPI validator this project did not write, into target/venv (from PyPI).
if [ "${1:-}" = "--test" ]; then
  validator=target/venv/bin/openapi-spec-validator
  if [ ! -x "$validator" ]; then
    echo "install-deps: installing openapi-spec-validator into target/venv"
    python3 -m venv target/venv
    target/venv/bin/pip install --quiet --disable-pip-version-check 'openapi-spec-validator==0.9.0'
  fi
fi

if [ -n "${ROCKSDB_LIB_DIR:-}" ]; then
  if [ ! -e "$ROCKSDB_LIB_DIR/librocksdb.so" ]; then
    multiarch=$(gcc -dumpmachine 2>/dev/null || echo unknown)
    echo "install-deps: ROCKSDB_LIB_DIR=$ROCKSDB_LIB_DIR has no librocksdb.so (this machine is $multiarch)." >&2
    echo "install-deps: set ROCKSDB_LIB_DIR=/usr/lib/$multiarch, or unset it to compile RocksDB from source." >&2
    exit 1
  fi
  rocksdb="Debian's librocksdb $(dpkg-query -W -f='${Version}' librocksdb-dev)"
else
  rocksdb="bundled RocksDB, compiled on the first build (about 10 minutes on 2 cores)"
fi
echo "install-deps: ok ($rocksdb; $(cargo --version))"
