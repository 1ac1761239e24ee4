#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run).
#
#   setup (installs what is missing), rustfmt, clippy (native and wasm32), native tests
#   (unit, simulation, doc tests, the server's HTTP tests, its event store on SQLite and on a
#   throwaway PostgreSQL cluster started here), node tests, the package build, the
#   type checks (the public types, and the JavaScript the wasm imports: src/web/*.js), the
#   end-to-end tests (Playwright driving Debian's Chromium: multi-tab, and two devices syncing
#   through the real filesync-server on loopback), the npm package test (npm pack, installed
#   into a Vite app, a plain page and a TypeScript consumer), and the browser suites:
#   every tests/browser_*.rs file, run by wasm-bindgen-test in headless Chromium.
#
# Every step runs even when an earlier one failed; the exit status is non-zero if any failed.
# It must not call `npm test` (that script is this file).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# Per test binary (wasm-bindgen-test's default is 20 s, too little for a cold browser).
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-180}"
START=$SECONDS

bash scripts/setup.sh

# The server's PostgreSQL tests use a throwaway cluster (scripts/pg.sh), stopped on exit. If it
# cannot start, those tests fail and say why (they are never skipped).
if pg_env="$(bash scripts/pg.sh start)"; then
    # Lines NAME=value without spaces.
    # shellcheck disable=SC2086
    export ${pg_env?}
    trap 'bash scripts/pg.sh stop' EXIT
else
    echo "test.sh: the PostgreSQL test cluster did not start; the server's PostgreSQL tests will fail" >&2
fi

names=() results=()
step() {
    local name="$1"
    shift
    printf '\n==== test.sh: %s: %s\n' "$name" "$*"
    local t0=$SECONDS status=ok
    "$@" || status=FAILED
    names+=("$name")
    results+=("$status ($((SECONDS - t0)) s)")
    printf '==== test.sh: %s: %s\n' "$name" "$status"
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step clippy-wasm cargo clippy --target wasm32-unknown-unknown --lib --tests -- -D warnings
step cargo-test cargo test --workspace
step node-test npm run --silent test:node
step build env SKIP_SETUP=1 bash scripts/build.sh
step types npx --no-install tsc -p tests/types
step js-types npx --no-install tsc -p src/web
step server-build cargo build -p filesync-server
step e2e node --test --test-timeout=900000 tests/e2e/
step package node --test --test-timeout=900000 tests/package/
step browser bash scripts/browser-tests.sh

printf '\n==== test.sh summary (%s s)\n' "$((SECONDS - START))"
failed=0
for i in "${!names[@]}"; do
    printf '  %-12s %s\n' "${names[$i]}" "${results[$i]}"
    [[ "${results[$i]}" == ok* ]] || failed=$((failed + 1))
done
if [ "$failed" -gt 0 ]; then
    echo "test.sh: $failed of ${#names[@]} steps FAILED"
    exit 1
fi
echo "test.sh: all ${#names[@]} steps ok"
