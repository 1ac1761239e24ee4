#!/usr/bin/env bash
# The wasm-bindgen browser suites (every tests/browser_*.rs), one test binary at a time in
# headless Chromium through chromedriver. Run by scripts/test.sh.
#
# No retries. The test pages used to hang at "Loading scripts..." in 10-50% of starts: a bug
# in the thread pool of tiny_http, the HTTP server of wasm-bindgen-test-runner, lost one of
# the page's parallel module requests (see scripts/setup.sh, which builds the runner with the
# fix). A stock runner is refused here instead of being retried around.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-180}"
# A binary that takes longer than this is stuck (the slowest takes ~15 s once built).
LIMIT="${BROWSER_TEST_LIMIT:-120}"

runner="$(command -v wasm-bindgen-test-runner || true)"
marker="$(dirname "${runner:-/nonexistent}")/wasm-bindgen-test-runner.patch"
if [ -z "$runner" ] || [ ! -f "$marker" ] ||
    [ "$(cut -d' ' -f2 "$marker")" != "$(sha256sum <"$runner" | cut -d' ' -f1)" ]; then
    echo "browser-tests: ${runner:-wasm-bindgen-test-runner} is not the runner scripts/setup.sh" \
        "builds with tiny_http's thread pool fixed (its pages hang at random); run scripts/setup.sh"
    exit 1
fi

names=()
for f in tests/browser_*.rs; do
    names+=("$(basename "$f" .rs)")
done
# Build every test binary first, so the time limit below counts only the browser's run.
targets=()
for name in "${names[@]}"; do targets+=(--test "$name"); done
cargo test --target wasm32-unknown-unknown --no-run "${targets[@]}"

failed=()
for name in "${names[@]}"; do
    status=0
    timeout "$LIMIT" wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver \
        --mode no-install -- --test "$name" || status=$?
    if [ "$status" -ne 0 ]; then
        [ "$status" -ne 124 ] || echo "browser-tests: $name: stopped after ${LIMIT} s"
        failed+=("$name")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "browser-tests: FAILED: ${failed[*]}"
    exit 1
fi
echo "browser-tests: every suite passed"
