#!/usr/bin/env bash
# Kiln against C (gcc -O2) and LuaJIT on the programs of benches/compare/: the same algorithm
# and the same output in `NAME.kl`, `NAME.c` and `NAME.lua`.
#
#   benches/compare.sh                 # every program, RUNS=5 timed runs of each implementation
#   RUNS=9 benches/compare.sh fib nbody
#
# Builds `kiln` in release and the C with `gcc -O2`, installs LuaJIT from Debian's packages if it
# is missing (without it the LuaJIT column is skipped, loudly), fills a private Kiln cache so
# that every timed Kiln run is a module hit (checked with `--stats`): the table measures the
# generated code, not the compiler. Checks that the three implementations print the same bytes,
# then runs each one RUNS times, interleaved, and prints the median CPU time (user + sys, from
# getrusage) of each, the ratios Kiln/C and Kiln/LuaJIT and their geometric means. The table is
# also written to target/compare.md, with every sample.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SRC=$ROOT/benches/compare
OUT=$ROOT/target/compare
CACHE=$ROOT/target/compare-cache
RUNS=${RUNS:-5}

ALL=(nbody spectral_norm fannkuch_redux mandelbrot fib sieve particles)
if (($# > 0)); then
    PROGRAMS=("$@")
else
    PROGRAMS=("${ALL[@]}")
fi
for p in "${PROGRAMS[@]}"; do
    for ext in kl c lua; do
        [[ -f $SRC/$p.$ext ]] || { echo "error: no $SRC/$p.$ext" >&2; exit 1; }
    done
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "error: RUNS must be a positive integer" >&2; exit 1; }

echo "== building kiln (release)" >&2
cargo build --release --quiet
KILN=$ROOT/target/release/kiln

mkdir -p "$OUT"
echo "== compiling C with gcc -O2" >&2
for p in "${PROGRAMS[@]}"; do
    gcc -O2 -o "$OUT/$p" "$SRC/$p.c" -lm
done

LUAJIT=$(command -v luajit || true)
if [[ -z $LUAJIT ]]; then
    echo "== luajit missing: installing Debian's luajit package" >&2
    SUDO=()
    if [[ $(id -u) != 0 ]]; then
        SUDO=(sudo -n)
    fi
    # Wait for another apt-get rather than fail on its lock; refresh the package lists once if
    # the first attempt cannot find the package.
    APT=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 -y -q)
    if [[ $(id -u) != 0 ]] && ! sudo -n true 2>/dev/null; then
        WHY="luajit is not installed, and installing it needs root (no passwordless sudo)"
    elif ! command -v apt-get >/dev/null; then
        WHY="luajit is not installed, and there is no apt-get to install it with"
    elif "${APT[@]}" install luajit >&2 ||
        { "${APT[@]}" update >&2 && "${APT[@]}" install luajit >&2; }; then
        LUAJIT=$(command -v luajit || true)
        WHY="'apt-get install luajit' succeeded but no luajit is on PATH"
    else
        WHY="'apt-get install luajit' failed (see its messages above)"
    fi
fi
if [[ -z $LUAJIT ]]; then
    echo "SKIPPED: LuaJIT column: $WHY" >&2
fi

# A fresh cache every time: between commits the lowering can change without the cache key
# changing, and the table must measure the code this build generates.
rm -rf "$CACHE"
echo "== warming the Kiln cache in $CACHE" >&2
for p in "${PROGRAMS[@]}"; do
    "$KILN" build --cache-dir "$CACHE" "$SRC/$p.kl" >/dev/null
done

echo "== checking that every implementation prints the same output" >&2
for p in "${PROGRAMS[@]}"; do
    "$OUT/$p" >"$OUT/$p.c.out"
    "$KILN" run --stats --cache-dir "$CACHE" "$SRC/$p.kl" >"$OUT/$p.kl.out" 2>"$OUT/$p.kl.stats"
    if ! grep -q '"module_hit":true' "$OUT/$p.kl.stats"; then
        echo "error: $p.kl: the warm Kiln run was not a module hit:" >&2
        cat "$OUT/$p.kl.stats" >&2
        exit 1
    fi
    if ! diff -u --label "$p.c" --label "$p.kl" "$OUT/$p.c.out" "$OUT/$p.kl.out" >&2; then
        echo "error: $p: Kiln and C print different output" >&2
        exit 1
    fi
    if [[ -n $LUAJIT ]]; then
        "$LUAJIT" "$SRC/$p.lua" >"$OUT/$p.lua.out"
        if ! diff -u --label "$p.c" --label "$p.lua" "$OUT/$p.c.out" "$OUT/$p.lua.out" >&2; then
            echo "error: $p: LuaJIT and C print different output" >&2
            exit 1
        fi
    fi
    echo "   $p: same output ($(wc -l <"$OUT/$p.c.out") lines); Kiln: module hit" >&2
done

echo "== timing: $RUNS runs of each implementation, interleaved" >&2
export KILN LUAJIT SRC OUT CACHE RUNS
python3 - "${PROGRAMS[@]}" <<'PY'
import math, os, platform, resource, statistics, subprocess, sys, time

programs = sys.argv[1:]
env = os.environ
runs, out, src = int(env["RUNS"]), env["OUT"], env["SRC"]
impls = [("C", lambda p: [f"{out}/{p}"])]
if env["LUAJIT"]:
    impls.append(("LuaJIT", lambda p: [env["LUAJIT"], f"{src}/{p}.lua"]))
impls.append(("Kiln", lambda p: [env["KILN"], "run", "--cache-dir", env["CACHE"], f"{src}/{p}.kl"]))

def cpu_seconds(argv, expected):
    """Runs argv; returns its user + sys CPU time. Fails if its output changed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, stdout=subprocess.PIPE, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.stdout != expected:
        sys.exit(f"error: {' '.join(argv)} printed something else than during the check")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

expected = {p: open(f"{out}/{p}.c.out", "rb").read() for p in programs}
samples = {(p, name): [] for p in programs for name, _ in impls}
for r in range(runs):
    for p in programs:
        for name, argv in impls:
            samples[p, name].append(cpu_seconds(argv(p), expected[p]))
    print(f"   run {r + 1}/{runs} done", file=sys.stderr)

def geomean(xs):
    return math.exp(sum(map(math.log, xs)) / len(xs))

median = {k: statistics.median(v) for k, v in samples.items()}
has_lua = bool(env["LUAJIT"])
lines = [
    "| program | C (s) | LuaJIT (s) | Kiln (s) | Kiln/C | Kiln/LuaJIT |",
    "| --- | --- | --- | --- | --- | --- |",
]
vs_c, vs_lua = [], []
for p in programs:
    c, k = median[p, "C"], median[p, "Kiln"]
    vs_c.append(k / c)
    if has_lua:
        lua = median[p, "LuaJIT"]
        vs_lua.append(k / lua)
        lua_cells = (f"{lua:.3f}", f"{k / lua:.2f}")
    else:
        lua_cells = ("skipped", "skipped")
    lines.append(f"| {p} | {c:.3f} | {lua_cells[0]} | {k:.3f} | {k / c:.2f} | {lua_cells[1]} |")
lua_geo = f"**{geomean(vs_lua):.2f}**" if has_lua else "skipped"
lines.append(f"| **geometric mean** | | | | **{geomean(vs_c):.2f}** | {lua_geo} |")
table = "\n".join(lines)
print(table)

load = os.getloadavg()
gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
lua_version = (
    subprocess.run([env["LUAJIT"], "-v"], capture_output=True, text=True).stdout.strip()
    if has_lua else "SKIPPED"
)
detail = [
    f"| {p} | {name} | " + ", ".join(f"{s:.3f}" for s in samples[p, name]) + " |"
    for p in programs for name, _ in impls
]
with open(os.path.join(os.path.dirname(out), "compare.md"), "w") as f:
    f.write(
        f"Median CPU time (user + sys) of {runs} runs, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.node()}, {os.cpu_count()} CPUs, load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.\n"
        f"{gcc}; {lua_version}; Kiln from a warm cache (module hits).\n\n"
        f"{table}\n\nEvery sample (s):\n\n| program | implementation | samples |\n"
        "| --- | --- | --- |\n" + "\n".join(detail) + "\n"
    )
print("(also written to target/compare.md)", file=sys.stderr)
PY
