#!/usr/bin/env bash
# Bounded fuzzing of the five loader targets (idx, idx_gz, cifar, image,
# safetensors_weights): the bolero harnesses of tests/loaders_hostile.rs, each run for
# 20,000 inputs or 60 s, whichever comes first, then the replay of fuzz/corpus/ and
# fuzz/regressions/. Fails on a panic, a broken invariant or a heap cap breach; a failing
# input is kept under fuzz/regressions/<target>/ (commit it) and bolero prints the
# BOLERO_RANDOM_SEED that reproduces it. Works on stable Rust with no extra tools.
set -euo pipefail
cd "$(dirname "$0")/.."
export BOLERO_RANDOM_ITERATIONS="${BOLERO_RANDOM_ITERATIONS:-20000}"
export BOLERO_RANDOM_TEST_TIME_MS="${BOLERO_RANDOM_TEST_TIME_MS:-60000}"
cargo test --test loaders_hostile fuzz_ -- --nocapture 2>&1 | grep -v '^fuzz \.\.\.'
