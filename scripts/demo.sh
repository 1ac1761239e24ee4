#!/usr/bin/env bash
# The demo: installs what is missing, builds the package into www/pkg, then serves www/ on
# http://127.0.0.1:8080 (PORT and HOST override). Ctrl-C stops it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
SKIP_SETUP=1 bash scripts/build.sh

export PORT="${PORT:-8080}" HOST="${HOST:-127.0.0.1}"
echo "demo: open http://$HOST:$PORT/"
exec node scripts/serve.mjs
