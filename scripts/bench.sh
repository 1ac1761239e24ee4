#!/usr/bin/env bash
# The project's benchmarks (`npm run bench`). See docs/BENCHMARKS.md.
#
#   engine: native benchmark of the sans-IO engine at 100,000 files (benches/engine.rs), built
#           with the release profile by `cargo bench`. Prints a table and one line of JSON.
#
# Then the browser benchmarks of the wasm package, the remote sync benchmarks and the server's
# load test, as further `bench` steps. Every step runs even when an earlier one failed. The exit status is non-zero only if a
# benchmark fails to build or run: timings are information, never a failure (no thresholds).
#
# Environment: BENCH_RUNS (timed runs per figure, default 7, after one warm-up run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

names=() results=()
bench() {
    local name="$1"
    shift
    printf '\n==== bench.sh: %s: %s\n' "$name" "$*"
    local t0=$SECONDS status=ok
    "$@" || status=FAILED
    names+=("$name")
    results+=("$status ($((SECONDS - t0)) s)")
    printf '==== bench.sh: %s: %s\n' "$name" "$status"
}

bench engine cargo bench --bench engine

# Browser benchmarks of the wasm package in headless Chromium (scripts/bench-browser.mjs); builds
# www/pkg first only when it is missing.
bench_browser() {
    if [ ! -f www/pkg/filesync_bg.wasm ] || [ ! -f www/pkg/filesync.js ]; then
        SKIP_SETUP=1 bash scripts/build.sh || return 1
    fi
    node scripts/bench-browser.mjs
}
bench browser bench_browser

# Remote sync between two browser profiles through the release server
# (scripts/bench-sync.mjs): small files A to B, large-file throughput against plain fetch.
bench_sync() {
    if [ ! -f www/pkg/filesync_bg.wasm ]; then
        SKIP_SETUP=1 bash scripts/build.sh || return 1
    fi
    cargo build --release -p filesync-server || return 1
    # The dev S3 server of the presign section.
    cargo build --release -p filesync-server --example s3_dev || return 1
    node scripts/bench-sync.mjs
}
bench sync bench_sync

# The event API under many simulated clients (server/tests/bench_load.rs): 1,000 live
# subscribers and 200 pushers on SQLite, PostgreSQL and two PostgreSQL instances (the last run
# kills one), against the release server on a throwaway PostgreSQL cluster (scripts/pg.sh).
bench_load() {
    local pg_env
    pg_env="$(bash scripts/pg.sh start)" || return 1
    # shellcheck disable=SC2086
    env $pg_env cargo test --release -p filesync-server --test bench_load -- --ignored --nocapture
    local status=$?
    bash scripts/pg.sh stop
    return $status
}
bench load bench_load

printf '\n==== bench.sh summary\n'
failed=0
for i in "${!names[@]}"; do
    printf '  %-12s %s\n' "${names[$i]}" "${results[$i]}"
    [[ "${results[$i]}" == ok* ]] || failed=$((failed + 1))
done
if [ "$failed" -gt 0 ]; then
    echo "bench.sh: $failed of ${#names[@]} benchmarks FAILED to run"
    exit 1
fi
echo "bench.sh: all ${#names[@]} benchmarks ran"
