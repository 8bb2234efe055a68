#!/usr/bin/env bash
# A bounded fuzz run: builds every cargo-fuzz target in fuzz/ and runs each one
# for a fixed time, starting from the seed corpus in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [TARGET...]        default: every target (`cargo fuzz list`)
#
#   STELE_FUZZ_SECONDS   seconds per target (default 20; CI uses the default)
#
# Runs on the stable toolchain: cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address), which RUSTC_BOOTSTRAP=1 allows. cargo-fuzz is built
# into the repo-local .tools/ when it is missing. New inputs the fuzzer finds
# go to .tools/fuzz-corpus/<target>/ (git-ignored), never into the seeds.
# A crash leaves its input in fuzz/artifacts/<target>/; keep it under
# fuzz/regressions/<target>/ and turn it into a regression test in the crate
# that owns the parser. Exit code: 0 when every target ran clean, 1 otherwise.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
TOOLS=$REPO/.tools
export PATH=$TOOLS/bin:$PATH
seconds=${STELE_FUZZ_SECONDS:-20}

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "[fuzz.sh] installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/" >&2
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS" || exit 1
fi
export RUSTC_BOOTSTRAP=1

echo "[fuzz.sh] building the fuzz targets (release, AddressSanitizer)" >&2
cargo fuzz build || {
    echo "[fuzz.sh] the fuzz targets did not build" >&2
    exit 1
}

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for target in "${targets[@]}"; do
    work=$TOOLS/fuzz-corpus/$target
    mkdir -p "$work" "fuzz/corpus/$target"
    echo "==== fuzz $target (${seconds}s) ===="
    # -timeout: one input taking over 10 s is a finding (e.g. a backtracking
    # matcher). -rss_limit_mb: unbounded allocation is a finding too.
    log=$TOOLS/fuzz-logs/$target.log
    mkdir -p "$(dirname "$log")"
    if cargo fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus)' "$log" || tail -n 5 "$log"
    else
        failed+=("$target")
        tail -n 60 "$log"
    fi
done

if ((${#failed[@]} > 0)); then
    echo "[fuzz.sh] FAILED: ${failed[*]}; the inputs are in fuzz/artifacts/<target>/" >&2
    exit 1
fi
echo "[fuzz.sh] ${#targets[@]} targets, ${seconds}s each: no crash, leak or timeout" >&2
