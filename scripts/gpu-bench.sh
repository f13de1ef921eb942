#!/usr/bin/env bash
# scripts/gpu-bench.sh: one prepared run on a machine with a real GPU (issue 17), in under
# 8 minutes, everything written to the folder in $OUT (a new temporary folder when unset):
#   1. builds the bench, the adapter listing and the kernel tests in release (or takes them
#      prebuilt from $WGNN_GPU_BENCH_PREBUILT, see --package below);
#   2. finds a Vulkan loader (libvulkan.so.1): the system's, else one carried along (the
#      file or folder in $WGNN_VULKAN_LOADER, the package folder, shared/ in the repository),
#      and an NVIDIA ICD manifest, written to $OUT when the driver has none;
#   3. lists the adapters (examples/adapters.rs) -> adapters.txt;
#   4. runs the kernel tests (dense conv2d dropout softmax_xent batchnorm optim pool) on the
#      hardware adapter(s) (WGNN_TEST_ADAPTER=gpu, tests/common/mod.rs) -> tests-NAME.log;
#   5. runs `bench --json --gpu-sizes` (matmul 1024 to 4096 and every variant, dropout over
#      256M f32, the MLP step at batch 256 and 4096, the issue's target_* rows) ->
#      bench.json (one JSON object a line), bench.log, targets.json; the autotuner's choices
#      -> tune.tsv.
#   summary.txt says what ran, how long, and each step's status.
#
# Without a hardware adapter the GPU steps (4, 5) are skipped with a message and the script
# exits 0. WGNN_GPU_BENCH_ALLOW_SOFTWARE=1 runs them on the software adapter instead, at
# quick sizes (bench --quick --gpu-sizes; the tests on the default software adapters), to
# try the whole flow on a machine without a GPU.
#
# Time: the whole run stays within WGNN_GPU_BENCH_BUDGET seconds (default 450): the bench
# keeps 240 of them, the tests get at most 120 each from the rest, and a test that would
# start with too little left is skipped (and says so).
# Other settings: WGNN_BENCH_F32_PEAK (FLOP/s, default 67e12: H100/H200 SXM f32), the peak
# the matmul target is measured against; WGNN_GPU_BENCH_TESTS (default: the seven above);
# WGNN_GPU_BENCH_TEST_FILTER, arguments for every test binary (a name filter, --skip ...).
#
#   scripts/gpu-bench.sh                 run (from anywhere; works in the repository root)
#   scripts/gpu-bench.sh --package DIR   build here and copy the binaries (stripped) and this
#                                        machine's Vulkan loader into DIR and DIR.tar.xz, for
#                                        a machine without cargo or a loader: run there with
#                                        WGNN_GPU_BENCH_PREBUILT=DIR (or =DIR.tar.xz)
#
# Exit status: 0 when every step that ran passed (or the GPU steps were skipped), 1 when a
# build, test or bench check failed, 2 on bad usage.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
TESTS=${WGNN_GPU_BENCH_TESTS:-"dense conv2d dropout softmax_xent batchnorm optim pool"}
START=$(date +%s)
BUDGET=${WGNN_GPU_BENCH_BUDGET:-450}
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
export NODEVICE_SELECT=${NODEVICE_SELECT:-1}

# Copies the release binaries of the bench, the listing and the tests into $1 (named
# bench, adapters, and each test by name), with the system's Vulkan loader if it has one.
build_bins() {
    local dest=$1 log=$2
    cargo build --release --example bench --example adapters >>"$log" 2>&1 || return 1
    local args=()
    for t in $TESTS; do args+=(--test "$t"); done
    cargo test --release --no-run "${args[@]}" >>"$log" 2>&1 || return 1
    mkdir -p "$dest"
    cp target/release/examples/bench target/release/examples/adapters "$dest/" || return 1
    for t in $TESTS; do
        # cargo prints "Executable tests/NAME.rs (target/release/deps/NAME-HASH)".
        local exe
        exe=$(grep -E "Executable tests/$t\.rs " "$log" | tail -1 | sed -E 's/.*\((.*)\)$/\1/')
        [ -n "$exe" ] && [ -x "$exe" ] || { echo "no test binary for $t" >>"$log"; return 1; }
        cp "$exe" "$dest/test-$t" || return 1
    done
}

if [ "${1:-}" = "--package" ]; then
    [ $# -eq 2 ] || { echo "usage: scripts/gpu-bench.sh --package DIR" >&2; exit 2; }
    mkdir -p "$2"
    build_bins "$2" "$2/build.log" || { echo "build failed: see $2/build.log" >&2; exit 1; }
    for f in /lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib/x86_64-linux-gnu/libvulkan.so.1 \
        /usr/lib64/libvulkan.so.1 /usr/lib/libvulkan.so.1; do
        if [ -e "$f" ]; then cp -L "$f" "$2/libvulkan.so.1"; break; fi
    done
    # Stripped and packed: the nine binaries come to about 20 MB as .tar.xz.
    for f in "$2"/bench "$2"/adapters "$2"/test-*; do strip "$f" 2>/dev/null; done
    if [ -n "${WGNN_GPU_BENCH_NO_TAR:-}" ]; then exit 0; fi # the run's own build
    tar -C "$2" -cJf "$2.tar.xz" --exclude build.log . || exit 1
    du -sh "$2" "$2.tar.xz"
    echo "packaged in $2 and $2.tar.xz; on the GPU machine:"
    echo "  WGNN_GPU_BENCH_PREBUILT=$2 (or $2.tar.xz) scripts/gpu-bench.sh"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: scripts/gpu-bench.sh [--package DIR]" >&2; exit 2; }

OUT=${OUT:-$(mktemp -d -t wgnn-gpu-bench.XXXXXX)}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILED=0
# Messages go to the summary and to the script's own output (fd 3), whatever a step's
# output is redirected to.
exec 3>&1
say() { echo "$*" | tee -a "$SUMMARY" >&3; }
elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }
# step NAME SECONDS CMD...: runs CMD with a time limit, logs its status and duration.
step() {
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    local took=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        say "ok      $name (${took}s)"
    else
        [ $rc -eq 124 ] && say "TIMEOUT $name after ${limit}s" || say "FAILED  $name (exit $rc, ${took}s)"
        FAILED=1
    fi
    return $rc
}

say "wgnn gpu-bench: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) at $(date -u +%FT%TZ) on $(hostname)"
say "output: $OUT"

# 1. Binaries.
BIN=${WGNN_GPU_BENCH_PREBUILT:-}
if [ -n "$BIN" ] && [ -f "$BIN" ]; then
    mkdir -p "$OUT/bin" && tar -C "$OUT/bin" -xf "$BIN" || { say "cannot unpack $BIN"; exit 2; }
    say "prebuilt binaries: $BIN, unpacked in $OUT/bin"
    BIN=$OUT/bin
elif [ -n "$BIN" ]; then
    BIN=$(cd "$BIN" && pwd) || { say "WGNN_GPU_BENCH_PREBUILT=$BIN: no such folder"; exit 2; }
    say "prebuilt binaries: $BIN"
elif command -v cargo >/dev/null; then
    BIN=$OUT/bin
    step "build (release)" 360 env WGNN_GPU_BENCH_NO_TAR=1 "$0" --package "$BIN" >"$OUT/build-step.log" 2>&1 || {
        say "the build failed: see bin/build.log"
        exit 1
    }
else
    say "no cargo on this machine and no WGNN_GPU_BENCH_PREBUILT: build elsewhere with"
    say "  scripts/gpu-bench.sh --package DIR   and carry DIR here"
    exit 1
fi

# 2. A Vulkan loader: the one $WGNN_VULKAN_LOADER names (a file or a folder), else the
# system's, else one carried along (in the package folder, or shared/ in the repository).
LOADER=""
use_loader() { # puts the folder of loader $1 first on the library path
    LOADER=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    # wgpu dlopens libvulkan.so.1 by that name: through a link when the file has another.
    if [ "$(basename "$LOADER")" != libvulkan.so.1 ]; then
        mkdir -p "$OUT/loader" && ln -sf "$LOADER" "$OUT/loader/libvulkan.so.1"
        export LD_LIBRARY_PATH=$OUT/loader${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    else
        export LD_LIBRARY_PATH=$(dirname "$LOADER")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
}
if [ -n "${WGNN_VULKAN_LOADER:-}" ]; then
    cand=$WGNN_VULKAN_LOADER
    [ -d "$cand" ] && cand=$cand/libvulkan.so.1
    if [ -e "$cand" ]; then
        use_loader "$cand"
    else
        say "WGNN_VULKAN_LOADER=$WGNN_VULKAN_LOADER: no loader there"
    fi
fi
[ -n "$LOADER" ] || for f in $("$LDCONFIG" -p 2>/dev/null | grep 'libvulkan\.so\.1 ' | sed 's/.*=> //') \
    /lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib/x86_64-linux-gnu/libvulkan.so.1 \
    /usr/lib64/libvulkan.so.1 /usr/lib/libvulkan.so.1; do
    if [ -e "$f" ]; then LOADER=$f; break; fi
done
if [ -z "$LOADER" ]; then
    for cand in "$BIN/libvulkan.so.1" "$ROOT/shared/vulkan/libvulkan.so.1" \
        "$ROOT/shared/libvulkan.so.1"; do
        if [ -e "$cand" ]; then
            use_loader "$cand"
            break
        fi
    done
fi
if [ -n "$LOADER" ]; then
    say "Vulkan loader: $LOADER${LD_LIBRARY_PATH:+ (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)}"
else
    say "NO VULKAN LOADER: libvulkan.so.1 is not installed, and none was carried (set"
    say "  WGNN_VULKAN_LOADER=FILE or folder, or put it in shared/vulkan/); Vulkan adapters"
    say "  will be missing"
fi
# The NVIDIA driver's ICD manifest: written here when the driver library is present and no
# manifest names it (a container with the driver mounted but not its Vulkan files).
ICDS="/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d"
if ! grep -qs nvidia $(for d in $ICDS; do ls "$d"/*.json 2>/dev/null; done) /dev/null; then
    NV=$("$LDCONFIG" -p 2>/dev/null | grep -o '/.*libGLX_nvidia\.so\.0$' | head -1)
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
        [ -z "$NV" ] && [ -e "$d/libGLX_nvidia.so.0" ] && NV=$d/libGLX_nvidia.so.0
    done
    if [ -n "$NV" ] && [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
        printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
            "$NV" >"$OUT/nvidia_icd.json"
        export VK_DRIVER_FILES=$OUT/nvidia_icd.json VK_ICD_FILENAMES=$OUT/nvidia_icd.json
        say "NVIDIA ICD manifest written: $OUT/nvidia_icd.json ($NV)"
    fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1

# 3. The adapters.
step "list adapters" 60 "$BIN/adapters" >"$OUT/adapters.txt" 2>&1
cat "$OUT/adapters.txt" >>"$SUMMARY"
HW=$(grep -cE 'device type: (DiscreteGpu|IntegratedGpu|VirtualGpu)' "$OUT/adapters.txt")
if [ "$HW" -gt 0 ]; then
    say "hardware adapters: $HW"
    export WGNN_TEST_ADAPTER=gpu
    QUICK=()
elif [ "${WGNN_GPU_BENCH_ALLOW_SOFTWARE:-0}" = 1 ]; then
    say "no hardware adapter; WGNN_GPU_BENCH_ALLOW_SOFTWARE=1: the GPU steps run on the"
    say "  software adapter(s) at quick sizes (their figures say nothing about a GPU)"
    QUICK=(--quick)
else
    say "SKIPPED the GPU steps (kernel tests, bench): no hardware adapter (see adapters.txt);"
    say "  WGNN_GPU_BENCH_ALLOW_SOFTWARE=1 runs them on a software adapter"
    say "done in $(elapsed)s"
    exit $FAILED
fi

# 4. The kernel tests on the GPU.
export WGNN_TUNE_CACHE=$OUT/tune.tsv
for t in $TESTS; do
    limit=$(($(left) - 240))
    [ $limit -gt 120 ] && limit=120
    if [ $limit -lt 20 ]; then
        say "SKIPPED tests $t: ${limit}s left before the bench's 240 (budget ${BUDGET}s)"
        FAILED=1
        continue
    fi
    # shellcheck disable=SC2086 # the filter is words on purpose
    step "tests $t" "$limit" "$BIN/test-$t" ${WGNN_GPU_BENCH_TEST_FILTER:-} >"$OUT/tests-$t.log" 2>&1
    grep -E '^test result|^test adapter|SKIPPED' "$OUT/tests-$t.log" | sed 's/^/    /' >>"$SUMMARY"
done

# 5. The bench at GPU sizes.
export WGNN_BENCH_F32_PEAK=${WGNN_BENCH_F32_PEAK:-67e12}
limit=$(($(left) - 5))
[ $limit -lt 60 ] && limit=60
step "bench --json --gpu-sizes ${QUICK[*]}" "$limit" "$BIN/bench" --json --gpu-sizes "${QUICK[@]}" \
    >"$OUT/bench.json" 2>"$OUT/bench.log"
grep '"name":"target_' "$OUT/bench.json" >"$OUT/targets.json"
grep -E '"name":"(adapter|backend|driver)"' "$OUT/bench.json" | sed 's/^/    /' >>"$SUMMARY"
sed 's/^/    /' "$OUT/targets.json" >>"$SUMMARY"
say "done in $(elapsed)s; status $FAILED"
exit $FAILED
