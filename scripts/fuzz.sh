#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/fuzz_targets/, see docs/fuzzing.md): builds them instrumented with
# cargo-fuzz (libFuzzer, on stable Rust through RUSTC_BOOTSTRAP), then runs each for a while from
# its checked-in seeds (fuzz/seeds/<target>/) and what earlier runs here found
# (target/fuzz/corpus/<target>/). A crash, a panic, a timeout or a 5xx answer of the API stops a
# target, its input is kept in target/fuzz/artifacts/<target>/, and the script fails.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     (default: 5 seconds each, every target)
#
# Installs what it needs when missing: cargo-fuzz (from crates.io) and Debian's librocksdb-dev
# (the instrumented build links it instead of compiling RocksDB once more).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=5
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(tx block peer signed_headers pbft pos pow ehr api)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz: no target $t (targets: ${all[*]})" >&2; exit 2; }
done

cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
  cargo install --quiet --locked cargo-fuzz --version "$cargo_fuzz_version"
fi
multiarch=$(gcc -dumpmachine)
if ! dpkg-query -W -f='${Status}' librocksdb-dev 2>/dev/null | grep -q "install ok installed"; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "fuzz: installing librocksdb-dev"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends librocksdb-dev >/dev/null
fi

export RUSTC_BOOTSTRAP=1
export ROCKSDB_LIB_DIR="/usr/lib/$multiarch"
flags=(--fuzz-dir fuzz --sanitizer none --target-dir target/fuzz/build)

echo "fuzz: building ${#targets[@]} targets (instrumented, release with debug assertions)"
cargo fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
  corpus="target/fuzz/corpus/$t"
  artifacts="target/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="target/fuzz/$t.log"
  echo "fuzz: $t for ${seconds} s"
  if cargo fuzz run "${flags[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
      -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 -max_len=65536 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$log" | tail -1)
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    echo "fuzz: $t: ${runs:-?} runs, coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) inputs, no crash"
  else
    failed+=("$t")
    echo "fuzz: $t FAILED; the end of $log:" >&2
    tail -40 "$log" >&2
    echo "fuzz: the input is in $artifacts/ (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $t FILE)" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
