#!/usr/bin/env bash
# The demo (`npm start`): installs what is missing, builds the package into www/pkg and the
# release server, then runs filesync-server, which serves the demo page (www/) and the signer +
# event sync API (/api) on http://127.0.0.1:8080. Ctrl-C stops it.
#
#   HOST, PORT        where to listen (default 127.0.0.1 and 8080)
#   FILESYNC_TOKENS   tokens the server accepts (default: none, an open server); open the page
#                     with ?token=... then. Other FILESYNC_* variables: filesync-server --help.
# Data (events and blobs) stays in .data/demo between runs; delete it to start afresh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

bash scripts/setup.sh
SKIP_SETUP=1 bash scripts/build.sh
cargo build --release -p filesync-server

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8080}"
mkdir -p .data/demo
url="http://$HOST:$PORT/"
cat <<MSG

demo: open $url in several tabs, and in a second browser profile, to watch files sync.
demo: other stores: ${url}?store=NAME (add &token=TOKEN when FILESYNC_TOKENS is set).
demo: data in .data/demo; Ctrl-C stops the server.

MSG
exec target/release/filesync-server --addr "$HOST:$PORT" --data-dir .data/demo --www-dir www
