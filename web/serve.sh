#!/usr/bin/env bash
# Builds the web demo (web/build.sh) and serves web/dist/ on http://127.0.0.1:PORT/
# (default 8000) until interrupted. Open it in a browser with WebGPU.
set -euo pipefail
web="$(cd "$(dirname "$0")" && pwd)"
port="${1:-8000}"
bash "$web/build.sh"
echo "serve.sh: http://127.0.0.1:$port/"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$web/dist"
