#!/usr/bin/env bash
# Runs Kiln's fuzz targets (fuzz/, cargo-fuzz and libFuzzer) one after another, each for a
# bounded time, and reports how many inputs each ran and whether it failed:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        # default 300; `.ci/run` passes a short time
#
# The targets (fuzz/README.md says what each checks):
#   frontend      arbitrary bytes through the front end and the diagnostics renderer
#   artifact      mutated real artifacts, and structured ones behind valid checksums, through
#                 the cache reader, the module decoder and relocation (nothing is executed)
#   differential  random valid programs (the input is a seed) run by the JIT and the reference
#                 interpreter, which must agree exactly
#
# What it needs: a nightly toolchain (`cargo +nightly`; libFuzzer's instrumentation uses
# unstable flags) and cargo-fuzz, which it installs with `cargo install cargo-fuzz --locked`
# when missing (about 70 s here). If either cannot be had, it prints one line
# `SKIPPED: fuzzing: REASON` and exits 0; so does `KILN_SKIP_FUZZ=1`. Anything after that
# (building the targets, a target failing) exits non-zero.
#
# Where things go, all under target/ so a run never dirties the repository: the build in
# target/fuzz, a working corpus per target in target/fuzz-corpus/TARGET (the seed corpus of
# fuzz/corpus/TARGET is copied in; what a run adds stays for the next local run), crash inputs
# in target/fuzz-artifacts/TARGET, and each target's full libFuzzer log in
# target/fuzz-logs/TARGET.log. A failing target prints the end of its log, the crash input's
# path and the command that reproduces it.
#
# Decisions:
# - No sanitizer (`--sanitizer none`; KILN_FUZZ_SANITIZER=address to change it). Nearly all of
#   the code under test is safe Rust, where AddressSanitizer adds nothing, and without it the
#   targets run about three times faster. Debug assertions and overflow checks stay on.
#   Under AddressSanitizer, the runtime's use-after-return detection puts Rust locals on a
#   "fake stack" in the heap, and Kiln's native stack limit (jit/src/module.rs) is computed
#   from the address of a local, so script calls fail at once with a spurious `stack
#   overflow`: with KILN_FUZZ_SANITIZER=address this script turns that detection off.
# - One target at a time, each a single libFuzzer process: the machine has two cores, and the
#   JIT compiles on both.
# - Per-input time limits far above any input's real cost (a loaded two-core machine is slow),
#   so a report of a hang is a hang.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

SECONDS_PER_TARGET=${1:-300}
if ! [[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] || ((SECONDS_PER_TARGET == 0)); then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi
TARGETS=(frontend artifact differential)
SANITIZER=${KILN_FUZZ_SANITIZER:-none}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BUILD_DIR=$TARGET_DIR/fuzz
CORPUS_DIR=$TARGET_DIR/fuzz-corpus
ARTIFACT_DIR=$TARGET_DIR/fuzz-artifacts
LOG_DIR=$TARGET_DIR/fuzz-logs

skip() {
    echo "SKIPPED: fuzzing: $*"
    exit 0
}

if [[ ${KILN_SKIP_FUZZ:-} == 1 ]]; then
    skip "KILN_SKIP_FUZZ=1"
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    skip "no nightly toolchain (cargo +nightly); install one with 'rustup toolchain install nightly'"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "--- installing cargo-fuzz"
    start=$(date +%s)
    if ! cargo install cargo-fuzz --locked; then
        skip "cargo-fuzz is not installed and 'cargo install cargo-fuzz --locked' failed"
    fi
    echo "cargo-fuzz installed in $(($(date +%s) - start)) s"
fi

# The same flags for the build and every run, so `cargo fuzz run` finds the build up to date.
FLAGS=(--fuzz-dir "$ROOT/fuzz" --target-dir "$BUILD_DIR" --sanitizer "$SANITIZER")
if [[ $SANITIZER == address ]]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_stack_use_after_return=0
fi

echo "--- building the fuzz targets ($(cargo +nightly --version), cargo-fuzz $(cargo fuzz --version | awk '{print $2}'), sanitizer $SANITIZER)"
start=$(date +%s)
cargo +nightly fuzz build "${FLAGS[@]}"
echo "fuzz targets built in $(($(date +%s) - start)) s"

# Per-target libFuzzer options: the per-input time limit, and for the differential target the
# input length that matters (only the first eight bytes make the seed).
target_options() {
    case $1 in
        differential) echo "-timeout=120 -max_len=8" ;;
        *) echo "-timeout=30" ;;
    esac
}

declare -A EXECS RESULT
failed=0
for target in "${TARGETS[@]}"; do
    corpus=$CORPUS_DIR/$target
    artifacts=$ARTIFACT_DIR/$target
    log=$LOG_DIR/$target.log
    mkdir -p "$corpus" "$artifacts" "$LOG_DIR"
    for seed in "$ROOT/fuzz/corpus/$target"/*; do
        [[ -e $corpus/${seed##*/} ]] || cp "$seed" "$corpus/"
    done
    echo "--- fuzzing $target for $SECONDS_PER_TARGET s (corpus $corpus, log $log)"
    # shellcheck disable=SC2046 # target_options is a list of words
    if cargo +nightly fuzz run "${FLAGS[@]}" "$target" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        -artifact_prefix="$artifacts/" $(target_options "$target") >"$log" 2>&1; then
        status=0
    else
        status=$?
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [[ -z $execs ]]; then
        execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    fi
    EXECS[$target]=${execs:-?}
    if ((status == 0)); then
        RESULT[$target]="no failure"
        echo "$target: ${EXECS[$target]} executions in $SECONDS_PER_TARGET s, no failure"
    else
        failed=1
        crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        RESULT[$target]="FAILED (exit $status)${crash:+, input $crash}"
        echo "$target: FAILED after ${EXECS[$target]} executions (exit $status); the end of $log:"
        grep -v '^"' "$log" | tail -60
        if [[ -n $crash ]]; then
            echo "crash input: $crash"
            echo "reproduce:   cargo +nightly fuzz run ${FLAGS[*]} $target $crash"
        fi
    fi
done

echo "--- fuzzing summary ($SECONDS_PER_TARGET s per target, sanitizer $SANITIZER)"
for target in "${TARGETS[@]}"; do
    printf '%-13s %12s executions  %s\n' "$target" "${EXECS[$target]}" "${RESULT[$target]}"
done
exit "$failed"
