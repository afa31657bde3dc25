#!/usr/bin/env bash
# Proves that Kiln works on aarch64 from this x86-64 machine: builds the test suite for
# aarch64-unknown-linux-gnu and runs it under qemu-user, once per emulated CPU model, then checks
# that a cache pre-warmed for aarch64 on this machine serves the emulated `kiln`. `.ci/run` calls
# it last; `KILN_SKIP_AARCH64=1` skips it (for a quick local run of .ci/run).
#
# What it needs, installed here if missing: Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross
# and qemu-user (apt-get, as root), and the Rust target aarch64-unknown-linux-gnu (rustup). A step
# that cannot be had (no apt-get, no network, `rustup target add` failing, qemu unable to run an
# aarch64 program at all) prints one line `SKIPPED: aarch64 suite: REASON` and exits 0; anything
# that fails after that (the cross build, a test, a check) exits non-zero.
#
# The CPU models: `-cpu max` (every feature qemu emulates: LSE atomics, PAuth, BTI, SVE ...) and
# `-cpu cortex-a53` (plain ARMv8.0). cranelift-native detects different ISA flags under each, so
# the engine fingerprint, and every cache key, differs between them. The CPU is chosen with
# `QEMU_CPU`, which the `kiln` processes the tests start under qemu inherit too.
#
# How the suite runs under emulation: `cargo test --workspace` with the target, the linker and
# qemu as Cargo's runner, in its own target directory (target/aarch64, so the native build is
# untouched). The integration tests start the `kiln` binary (and the hot_reload example), which
# are aarch64 programs here; tests/it/support.rs puts `KILN_TEST_RUNNER` (qemu again) in front of
# every such spawn, so nothing relies on binfmt_misc. The cache tests that write, reload and
# relink cached code run in full on both models: jit/src/cache.rs (unit), tests/it/cache.rs and
# tests/it/reload.rs.
#
# Then, for each CPU model: `kiln target` under qemu names the emulated machine, the native
# x86-64 `kiln build` with those words fills a fresh cache for it with the sample script, and the
# emulated `kiln run --stats` must report `"module_hit":true` and print what the native run
# prints; a cache built for the other model must miss (its fingerprint differs), still run
# correctly, and hit on the next run.
#
# Budget and decisions (CI has 90 minutes for all of .ci/run, whose native part takes about 8).
# Measured on this 2-core machine from scratch, with nothing else running: toolchain under a
# minute, cross build ~7 min, each model's suite ~6 min (the `it` binary 5.5 of it), the cache
# checks ~20 s once .ci/run has built the native `kiln`: about 20 minutes. With the machine
# shared with other heavy builds (load 5 to 10) the same took 47 minutes (cross build 11.4, each
# suite 13.5). So the whole suite runs on both models, nothing reduced: the differential test's
# 300 random programs (KILN_DIFF_SEEDS) take ~22 s under emulation. Each model's suite is cut off
# after KILN_AARCH64_SUITE_LIMIT seconds (default 1200), which fails the run, so a hang cannot
# eat CI's budget.
# Two tests are skipped under emulation, each named in the output:
# - kiln-cache store::tests::a_full_disk_is_an_error re-executes its own test binary through
#   `sh`, and this x86-64 kernel cannot exec an aarch64 binary without binfmt_misc ("Exec format
#   error"). It tests the store's handling of EFBIG, not code generation, and the native suite
#   runs it; tests/it/cache.rs's a_full_disk_is_not_an_error, which starts `kiln` the same way,
#   does run here, through the runner.
# - kiln-lang parser::tests::ten_megabytes asserts that a debug build parses 10 MB in under
#   10 s of wall time: ~1.2 s natively, ~9.5 s under qemu alone and over 10 s beside the other
#   tests. A budget for the host's speed, not a property of aarch64; the native suite runs it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

TRIPLE=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
CPUS=(max cortex-a53)
PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
SAMPLE=benches/programs/nbody.kl
RUNNER="qemu-aarch64 -L $SYSROOT"
# The native build's target directory (where .ci/run's `cargo test` left `kiln`), and this
# script's own beside it, so the two builds never invalidate each other.
NATIVE_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CROSS_TARGET_DIR=$NATIVE_TARGET_DIR/aarch64
LOGS=$NATIVE_TARGET_DIR/aarch64-logs
# The most one CPU model's emulated suite may take: 6 minutes here on a quiet machine, 14
# under load.
SUITE_LIMIT=${KILN_AARCH64_SUITE_LIMIT:-1200}
# Tests that cannot work under emulation, for the reasons the header gives.
SKIP_UNDER_EMULATION=(store::tests::a_full_disk_is_an_error parser::tests::ten_megabytes)

SCRIPT_START=$SECONDS
PHASE_START=$SECONDS
PHASE=""
TIMINGS=()
SUMMARY=()
FAILED_MODELS=()

skip() {
    echo "SKIPPED: aarch64 suite: $*"
    exit 0
}

fail() {
    summary
    echo "FAILED: aarch64 suite: $*" >&2
    exit 1
}

# The phases' times and each CPU model's counts; printed once, at the end or on a failure.
summary() {
    end_phase
    [[ -z ${SUMMARY_DONE:-} ]] || return 0
    SUMMARY_DONE=1
    echo "--- aarch64: summary"
    local line
    for line in "${TIMINGS[@]}" "$(printf '%5d s  in all' $((SECONDS - SCRIPT_START)))" \
        "${SUMMARY[@]}"; do
        echo "$line"
    done
}

# `--- NAME` like .ci/run; the previous phase's time is printed when the next one starts.
phase() {
    end_phase
    PHASE=$1
    PHASE_START=$SECONDS
    echo "--- aarch64: $PHASE"
}

end_phase() {
    if [[ -n $PHASE ]]; then
        local took=$((SECONDS - PHASE_START))
        echo "    ($PHASE: ${took} s)"
        TIMINGS+=("$(printf '%5d s  %s' "$took" "$PHASE")")
        PHASE=""
    fi
}

if [[ ${KILN_SKIP_AARCH64:-} == 1 ]]; then
    skip "KILN_SKIP_AARCH64=1 is set"
fi
if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
    skip "this script emulates aarch64 on x86-64 Linux; this machine is $(uname -s) $(uname -m)"
fi

mkdir -p "$LOGS"

phase "toolchain (apt: ${PACKAGES[*]}; rustup: $TRIPLE)"
have_packages() {
    command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null &&
        [[ -e $SYSROOT/lib/ld-linux-aarch64.so.1 && -e $SYSROOT/include/stdio.h ]]
}
if have_packages; then
    echo "the cross compiler, the aarch64 libc and qemu-aarch64 are installed"
else
    command -v apt-get >/dev/null || skip "no apt-get to install ${PACKAGES[*]}"
    SUDO=()
    if [[ $(id -u) != 0 ]]; then
        if ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
            skip "installing ${PACKAGES[*]} needs root (or passwordless sudo)"
        fi
        SUDO=(sudo -n)
    fi
    echo "installing ${PACKAGES[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq >/dev/null 2>"$LOGS/apt.log" ||
        skip "apt-get update failed: $(tail -n 1 "$LOGS/apt.log")"
    "${SUDO[@]}" apt-get install -y -qq "${PACKAGES[@]}" >/dev/null 2>>"$LOGS/apt.log" ||
        skip "apt-get install ${PACKAGES[*]} failed: $(tail -n 1 "$LOGS/apt.log")"
    have_packages || skip "apt-get installed ${PACKAGES[*]} but qemu-aarch64, aarch64-linux-gnu-gcc or $SYSROOT is missing"
fi
command -v rustup >/dev/null || skip "no rustup to add the Rust target $TRIPLE"
if rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE"; then
    echo "the Rust target $TRIPLE is installed"
else
    echo "adding the Rust target $TRIPLE with rustup"
    rustup target add "$TRIPLE" >"$LOGS/rustup.log" 2>&1 ||
        skip "rustup target add $TRIPLE failed: $(tail -n 1 "$LOGS/rustup.log")"
fi

# An emulator that is installed but cannot run the simplest aarch64 program (a kernel without
# the address space qemu-user needs, say) is a machine problem, not a Kiln one.
SMOKE=$LOGS/smoke
printf 'int main(void) { return 42; }\n' >"$SMOKE.c"
aarch64-linux-gnu-gcc -o "$SMOKE" "$SMOKE.c" 2>"$LOGS/smoke.log" ||
    skip "aarch64-linux-gnu-gcc cannot build a C program: $(tail -n 1 "$LOGS/smoke.log")"
for cpu in "${CPUS[@]}"; do
    status=0
    QEMU_CPU=$cpu $RUNNER "$SMOKE" 2>>"$LOGS/smoke.log" || status=$?
    [[ $status == 42 ]] ||
        skip "qemu-aarch64 -cpu $cpu cannot run an aarch64 program here (status $status): $(tail -n 1 "$LOGS/smoke.log")"
done
echo "$(qemu-aarch64 --version | head -n 1) runs aarch64 programs as ${CPUS[*]}"

# Cargo for aarch64: its own target directory, the cross linker, qemu as the runner of test
# binaries, and the same qemu in front of every `kiln` the integration tests start.
XCARGO=(env CARGO_TARGET_DIR="$CROSS_TARGET_DIR"
    CARGO_BUILD_TARGET="$TRIPLE"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$RUNNER"
    KILN_TEST_RUNNER="$RUNNER"
    cargo)

phase "cargo test --no-run --target $TRIPLE"
"${XCARGO[@]}" test --workspace --no-run || fail "the build for $TRIPLE failed"
CROSS_KILN=$CROSS_TARGET_DIR/$TRIPLE/debug/kiln
# ELF e_machine 0xb7 is AArch64.
[[ $(od -An -tx1 -j18 -N2 "$CROSS_KILN" | tr -d ' ') == b700 ]] ||
    fail "$CROSS_KILN is not an aarch64 executable"

# The suite under each CPU model. Every failure is collected; the script fails after both ran.
SKIP_ARGS=()
for name in "${SKIP_UNDER_EMULATION[@]}"; do
    SKIP_ARGS+=(--skip "$name")
done
for cpu in "${CPUS[@]}"; do
    phase "cargo test under qemu-aarch64 -cpu $cpu"
    echo "skipped under emulation (see scripts/test-aarch64.sh): ${SKIP_UNDER_EMULATION[*]}"
    log=$LOGS/test-$cpu.log
    status=0
    QEMU_CPU=$cpu timeout -k 30 "$SUITE_LIMIT" \
        "${XCARGO[@]}" test --workspace --no-fail-fast -- "${SKIP_ARGS[@]}" 2>&1 |
        tee "$log" || status=$?
    counts=$(awk '/^test result:/ { p += $4; f += $6; i += $8; s += $12 }
        END { print p + 0 " passed, " f + 0 " failed, " i + 0 " ignored, " s + 0 " skipped" }' "$log")
    SUMMARY+=("-cpu $cpu: $counts")
    if [[ $status != 0 ]]; then
        FAILED_MODELS+=("$cpu")
        if [[ $status == 124 || $status == 137 ]]; then
            echo "FAILED: the suite under -cpu $cpu did not finish within $SUITE_LIMIT s" >&2
        fi
        echo "failing tests under -cpu $cpu:" >&2
        grep -E '^test .* \.\.\. FAILED$' "$log" >&2 || echo "(none reported: see $log)" >&2
    fi
done

# Runs the aarch64 `kiln ARGS...` under `-cpu $1`; sets RUN_OUT, RUN_ERR and RUN_STATUS.
emulated_kiln() {
    local cpu=$1
    shift
    RUN_STATUS=0
    QEMU_CPU=$cpu $RUNNER "$CROSS_KILN" "$@" >"$LOGS/run.out" 2>"$LOGS/run.err" || RUN_STATUS=$?
    RUN_OUT=$(cat "$LOGS/run.out")
    RUN_ERR=$(cat "$LOGS/run.err")
}

# `kiln run --stats` of the sample under `-cpu $2` with the cache in $3 must print what the
# native run printed, exit as it did, and report `"module_hit":$1`.
expect_run() {
    local hit=$1 cpu=$2 cache=$3 what=$4
    emulated_kiln "$cpu" run --stats --cache-dir "$cache" "$SAMPLE"
    local stats
    stats=$(grep -E '^\{"functions"' <<<"$RUN_ERR" | tail -n 1) || true
    echo "-cpu $cpu, $what: exit $RUN_STATUS, $stats"
    [[ $RUN_STATUS == "$NATIVE_STATUS" ]] ||
        fail "-cpu $cpu, $what: exit status $RUN_STATUS, natively $NATIVE_STATUS; stderr: $RUN_ERR"
    [[ $RUN_OUT == "$NATIVE_OUT" ]] ||
        fail "-cpu $cpu, $what: the output differs from the native run's:$(diff <(echo "$NATIVE_OUT") <(echo "$RUN_OUT"))"
    [[ -n $stats ]] || fail "-cpu $cpu, $what: no --stats line on stderr: $RUN_ERR"
    [[ $stats == *"\"module_hit\":$hit"* ]] ||
        fail "-cpu $cpu, $what: expected \"module_hit\":$hit; stderr: $RUN_ERR"
}

# The native `kiln` (.ci/run's `cargo test` built it; a no-op then), and what the sample does
# natively: the emulated runs must print the same.
phase "kiln build on x86-64, kiln run under qemu ($SAMPLE)"
env -u CARGO_BUILD_TARGET CARGO_TARGET_DIR="$NATIVE_TARGET_DIR" cargo build --quiet --bin kiln
NATIVE_KILN=$NATIVE_TARGET_DIR/debug/kiln
NATIVE_STATUS=0
NATIVE_OUT=$("$NATIVE_KILN" run --no-cache "$SAMPLE" 2>"$LOGS/native.err") || NATIVE_STATUS=$?
[[ $NATIVE_STATUS == 0 ]] || fail "the native kiln run $SAMPLE failed: $(cat "$LOGS/native.err")"

for command in target build; do
    "$NATIVE_KILN" help "$command" >/dev/null 2>&1 ||
        fail "this kiln has no \`kiln $command\`, which the pre-warmed cache check needs"
done
CACHES=$LOGS/caches
rm -rf "$CACHES"
mkdir -p "$CACHES"
declare -A TARGET_OF
for cpu in "${CPUS[@]}"; do
    # `kiln target` under this CPU model, passed word for word to the native `kiln build`
    # (quotes stripped, so `--features ""` is an empty list).
    emulated_kiln "$cpu" target
    [[ $RUN_STATUS == 0 && $RUN_OUT == --target* ]] ||
        fail "-cpu $cpu: kiln target exited $RUN_STATUS and printed '$RUN_OUT' $RUN_ERR"
    TARGET_OF[$cpu]=$RUN_OUT
    echo "-cpu $cpu: kiln target: $RUN_OUT"
    read -ra words <<<"$RUN_OUT"
    target_args=()
    for word in "${words[@]}"; do
        word=${word#\"}
        target_args+=("${word%\"}")
    done
    "$NATIVE_KILN" build --cache-dir "$CACHES/$cpu" "${target_args[@]}" "$SAMPLE" ||
        fail "-cpu $cpu: the native kiln build ${target_args[*]} $SAMPLE failed"
done
[[ ${TARGET_OF[max]} != "${TARGET_OF[cortex-a53]}" ]] ||
    fail "kiln target prints the same under -cpu max and -cpu cortex-a53: the models cannot be told apart"
for cpu in "${CPUS[@]}"; do
    expect_run true "$cpu" "$CACHES/$cpu" "cache pre-warmed for it on x86-64"
done
for cpu in "${CPUS[@]}"; do
    for other in "${CPUS[@]}"; do
        [[ $other != "$cpu" ]] || continue
        # A copy, so the other model's cache stays as built.
        cp -r "$CACHES/$other" "$CACHES/$cpu-in-$other"
        expect_run false "$cpu" "$CACHES/$cpu-in-$other" "cache pre-warmed for -cpu $other"
        expect_run true "$cpu" "$CACHES/$cpu-in-$other" "the same cache, run again"
    done
done
summary
if [[ ${#FAILED_MODELS[@]} -gt 0 ]]; then
    fail "tests failed under -cpu ${FAILED_MODELS[*]} (logs in $LOGS)"
fi
awk '/^test result:/ { p += $4; f += $6 } END { print "aarch64: " p + 0 " passed, " f + 0 " failed" }' \
    "$LOGS"/test-*.log
