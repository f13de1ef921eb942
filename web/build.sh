#!/usr/bin/env bash
# Builds the web demo into web/dist/: index.html, app.js, the wasm and its JS glue
# (wasm-bindgen), and the shipped Fashion-MNIST subset the page fetches. Any static file
# server can serve web/dist/ (web/serve.sh does); nothing is fetched from the internet.
#
# Needs: rustup's wasm32-unknown-unknown target and wasm-bindgen-cli at exactly the version
# of the wasm-bindgen crate in web/Cargo.lock (`cargo install wasm-bindgen-cli --version V`).
set -euo pipefail
web="$(cd "$(dirname "$0")" && pwd)"
cd "$web"

want=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$have" ]; then
    echo "build.sh: wasm-bindgen (the CLI) is not installed; cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
if [ "$have" != "$want" ]; then
    echo "build.sh: wasm-bindgen CLI $have differs from the crate's $want (web/Cargo.lock); cargo install wasm-bindgen-cli --version $want --force" >&2
    exit 1
fi

cargo build --release --quiet --target wasm32-unknown-unknown
rm -rf dist
mkdir -p dist/data
wasm-bindgen --target web --no-typescript --out-dir dist \
    target/wasm32-unknown-unknown/release/wgnn_web.wasm
cp index.html app.js dist/
cp ../data/train-images-idx3-ubyte.gz ../data/train-labels-idx1-ubyte.gz \
    ../data/t10k-images-idx3-ubyte.gz ../data/t10k-labels-idx1-ubyte.gz ../data/README.md dist/data/
echo "build.sh: web/dist/ ($(du -sh dist | cut -f1)): $(cd dist && find . -type f | sort | tr '\n' ' ')"
