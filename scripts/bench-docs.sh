#!/usr/bin/env bash
# Regenerates BENCHMARKS.md from runs: N full `bench --json` runs (default 5) taken one after
# another at lavapipe's default width, each kept under target/bench-runs/<UTC stamp>/, then
# the table of every figure's median (min-max) over them, stamped with the commit, the
# working tree's state, the adapter and driver, the 1-minute load at start and end and the
# date, and each target marked met or not met by its median (scripts/bench_docs.py).
#
#   scripts/bench-docs.sh [N] [--quick] [--out PATH]
#
# --quick passes --quick to the bench (small sizes: for trying the script, not for
# publishing; the page then says so). --out writes somewhere other than BENCHMARKS.md.
# A bench run that fails (a check off its reference, an invalid dispatch) stops the script
# before anything is written.
set -euo pipefail
cd "$(dirname "$0")/.."

n=5
quick=()
out=BENCHMARKS.md
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *[!0-9]*|'') echo "bench-docs: unknown argument $1" >&2; exit 2 ;;
        *) n="$1" ;;
    esac
    shift
done
[ "$n" -ge 1 ] || { echo "bench-docs: N must be at least 1" >&2; exit 2; }

# The default lavapipe width: whatever the environment sets is not the published setting.
unset LP_NATIVE_VECTOR_WIDTH

stamp=$(date -u +%Y%m%dT%H%M%SZ)
dir="target/bench-runs/$stamp"
mkdir -p "$dir"
commit=$(git rev-parse HEAD)
dirty=$([ -n "$(git status --porcelain)" ] && echo true || echo false)
load_start=$(cut -d' ' -f1 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

cargo build --release --example bench
for i in $(seq 1 "$n"); do
    echo "bench-docs: run $i of $n" >&2
    if ! ./target/release/examples/bench --json "${quick[@]}" > "$dir/run-$i.json"; then
        echo "bench-docs: run $i failed (see $dir/run-$i.json); nothing written" >&2
        exit 1
    fi
done
load_end=$(cut -d' ' -f1 /proc/loadavg)
ended=$(date -u '+%Y-%m-%d %H:%M UTC')

python3 scripts/bench_docs.py \
    --runs "$dir" --out "$out" --commit "$commit" --dirty "$dirty" \
    --load-start "$load_start" --load-end "$load_end" \
    --started "$started" --ended "$ended" --quick "${#quick[@]}"
echo "bench-docs: wrote $out from $n run(s) in $dir" >&2
