#!/usr/bin/env bash
# Bounded fuzzing of the five loader targets (idx, idx_gz, cifar, image,
# safetensors_weights): the bolero harnesses of tests/loaders_hostile.rs, each run for
# 20,000 inputs, then the replay of fuzz/corpus/ and fuzz/regressions/. Every one of the
# 20,000 must run: 60 s per target is a safety cap, and a run it cuts short fails. Built in
# release (the profile CI's `cargo test --release` has already built), so this takes seconds.
# Fails on a panic, a broken invariant, a heap cap breach or a cut-short run; a failing input
# is kept under fuzz/regressions/<target>/ (commit it) and bolero prints the
# BOLERO_RANDOM_SEED that reproduces it. Works on stable Rust with no extra tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export BOLERO_RANDOM_ITERATIONS="${BOLERO_RANDOM_ITERATIONS:-20000}"
export BOLERO_RANDOM_TEST_TIME_MS="${BOLERO_RANDOM_TEST_TIME_MS:-60000}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release --test loaders_hostile fuzz_ -- --nocapture 2>&1 | grep -v '^fuzz \.\.\.' | tee "$log"
# A renamed or filtered-out target would otherwise run nothing and pass.
for target in idx idx_gz cifar image safetensors_weights; do
    grep -Eq "^fuzz $target: $BOLERO_RANDOM_ITERATIONS inputs " "$log" || {
        echo "run-bounded: fuzz target $target did not run $BOLERO_RANDOM_ITERATIONS inputs" >&2
        exit 1
    }
done
