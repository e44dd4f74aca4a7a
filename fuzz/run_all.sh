#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 30), one after another,
# and exits non-zero if any of them crashed. Usage, from anywhere:
#
#   fuzz/run_all.sh [SECONDS]
#
# Environment:
#   FUZZ_SANITIZER     cargo fuzz --sanitizer value (default: address)
#   CARGO_TARGET_DIR   where to build (default: fuzz/target, git-ignored)
#
# Seeds come from fuzz/seeds/<target> (small, committed); what the fuzzer
# finds goes to fuzz/corpus/<target> and crashes to fuzz/artifacts/<target>,
# both git-ignored. Per-target logs are written to fuzz/artifacts/logs/.
set -euo pipefail

seconds="${1:-30}"
sanitizer="${FUZZ_SANITIZER:-address}"
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz_dir/.."

# cargo fuzz passes nightly-only flags (-Zsanitizer, sancov passes); the
# project's toolchain is stable, which accepts them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz > /dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

echo "building all targets (sanitizer: $sanitizer)"
cargo fuzz build --sanitizer "$sanitizer"

mkdir -p "$fuzz_dir/artifacts/logs"
failed=()
for target in $(cargo fuzz list); do
    corpus="$fuzz_dir/corpus/$target"
    log="$fuzz_dir/artifacts/logs/$target.log"
    mkdir -p "$corpus"
    echo "== $target: ${seconds}s (log: $log)"
    if cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" "$fuzz_dir/seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 > "$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
        echo "   ok: ${runs:-?} executions, ${rate:-?} exec/s"
    else
        echo "   CRASH: see $log and $fuzz_dir/artifacts/$target/" >&2
        grep -m 5 -E "panicked at|^thread '|SUMMARY|Test unit written" "$log" >&2 || true
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
echo "all targets ran ${seconds}s without a crash"
