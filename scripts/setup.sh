#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need; idempotent.
#
#   wasm32-unknown-unknown target, rustfmt, clippy       (rustup)
#   wasm-pack 0.15.1                                     (cargo install --locked)
#   wasm-bindgen CLI = the wasm-bindgen version in Cargo.lock, built from its crate source
#                      with tiny_http's thread pool fixed (see install_bindgen_cli below);
#                      NOT --locked: its lock names a webpki-roots release the registry does
#                      not serve
#   chromium + chromium-driver, postgresql              (apt-get)
#   node_modules                                         (npm ci)
#
# When everything is present it only checks and returns in seconds. The long steps (the two
# cargo installs, apt, npm) run concurrently; their logs are printed when one fails.
# Debian's binaryen is never installed: its wasm-opt cannot read wasm-bindgen's output and
# wasm-pack would silently pick it up from PATH.
set -euo pipefail

WASM_PACK_VERSION=0.15.1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
START=$SECONDS

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

command -v rustup >/dev/null || die "rustup not found (install Rust with rustup first)"
command -v cargo >/dev/null || die "cargo not found"
command -v npm >/dev/null || die "npm not found (install Node 20+ first)"

# The wasm-bindgen version the crate is locked to; the CLI must match it exactly.
[ -f Cargo.lock ] || die "Cargo.lock is missing"
WASM_BINDGEN_VERSION="$(awk '
    $0 == "name = \"wasm-bindgen\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)"
[ -n "$WASM_BINDGEN_VERSION" ] || die "no wasm-bindgen package in Cargo.lock"

LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/filesync-setup.XXXXXX")"
trap 'rm -rf "$LOGDIR"' EXIT
JOB_NAMES=()
JOB_PIDS=()

# start NAME CMD...: run CMD in the background, output to $LOGDIR/NAME.log.
start() {
    local name="$1"
    shift
    say "start $name: $*"
    (
        set -euo pipefail
        t0=$SECONDS
        "$@"
        echo "[$name took $((SECONDS - t0)) s]"
    ) >"$LOGDIR/$name.log" 2>&1 &
    JOB_NAMES+=("$name")
    JOB_PIDS+=("$!")
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

# --- rustup: wasm target and components --------------------------------------------------
rustup_steps=()
installed_targets="$(rustup target list --installed)"
installed_components="$(rustup component list --installed)"
grep -qx 'wasm32-unknown-unknown' <<<"$installed_targets" || rustup_steps+=(target)
grep -q '^rustfmt' <<<"$installed_components" || rustup_steps+=(rustfmt)
grep -q '^clippy' <<<"$installed_components" || rustup_steps+=(clippy)
rustup_install() {
    for step in "$@"; do
        case "$step" in
            target) rustup target add wasm32-unknown-unknown ;;
            *) rustup component add "$step" ;;
        esac
    done
}
if [ ${#rustup_steps[@]} -gt 0 ]; then
    start rustup rustup_install "${rustup_steps[@]}"
fi

# --- wasm-pack ----------------------------------------------------------------------------
have_wasm_pack="$(wasm-pack --version 2>/dev/null || true)"
if [ "$have_wasm_pack" != "wasm-pack $WASM_PACK_VERSION" ]; then
    say "wasm-pack: have '${have_wasm_pack:-none}', want $WASM_PACK_VERSION"
    start wasm-pack cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --force
fi

# --- wasm-bindgen CLI (also provides wasm-bindgen-test-runner) ---------------------------
# wasm-bindgen-test-runner serves the test page with rouille on tiny_http 0.12.0 (the newest),
# whose thread pool (src/util/task_pool.rs) loses connections: spawn() queues a connection
# when `waiting_tasks` > 0, but a thread woken for an earlier connection stays counted there
# until it retakes the lock. When Chromium opens several connections at once (one per ES
# module: run.js, wasm-bindgen-test.js and one per `inline_js` snippet), the last one can be
# queued behind threads that each hold a keep-alive connection forever: its module never
# loads, the page stays at "Loading scripts..." and chromedriver waits 300 s. With 5 snippets
# (4 new connections, 3 idle threads) this hung 15 of 28 starts of browser_smoke; with the fix
# below 0 of 34. The fix queues only while more threads wait than connections are queued.
# The marker file records which runner binary carries the fix; scripts/browser-tests.sh
# checks it.
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
RUNNER_PATCH="tiny_http-0.12.0-task-pool-fix-1"
RUNNER_MARKER="$CARGO_BIN/wasm-bindgen-test-runner.patch"
runner_patched() {
    local runner
    runner="$(command -v wasm-bindgen-test-runner 2>/dev/null)" || return 1
    [ -f "$RUNNER_MARKER" ] &&
        [ "$(cat "$RUNNER_MARKER")" = "$RUNNER_PATCH $(sha256sum <"$runner" | cut -d' ' -f1)" ]
}
install_bindgen_cli() {
    local dir="$LOGDIR/bindgen-src" cli tiny
    mkdir -p "$dir/fetch/src"
    # A throwaway package makes cargo download and unpack both crates; cargo metadata says where.
    cat >"$dir/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-bindgen-cli"
version = "0.0.0"
edition = "2021"
[dependencies]
wasm-bindgen-cli = "=$WASM_BINDGEN_VERSION"
tiny_http = "=0.12.0"
EOF
    touch "$dir/fetch/src/lib.rs"
    cargo metadata --manifest-path "$dir/fetch/Cargo.toml" --format-version 1 >"$dir/metadata.json"
    crate_dir() {
        node -e '
            const [file, name, version] = process.argv.slice(1);
            const p = require(file).packages.find(p => p.name === name && p.version === version);
            if (!p) { console.error(`no ${name} ${version} in cargo metadata`); process.exit(1); }
            console.log(require("path").dirname(p.manifest_path));
        ' "$dir/metadata.json" "$1" "$2"
    }
    cli="$(crate_dir wasm-bindgen-cli "$WASM_BINDGEN_VERSION")" || return 1
    tiny="$(crate_dir tiny_http 0.12.0)" || return 1
    cp -r "$cli" "$dir/cli"
    cp -r "$tiny" "$dir/tiny_http"
    chmod -R u+w "$dir/cli" "$dir/tiny_http"
    local pool="$dir/tiny_http/src/util/task_pool.rs"
    sed -i 's/if self\.sharing\.waiting_tasks\.load(Ordering::Acquire) == 0 {/if self.sharing.waiting_tasks.load(Ordering::Acquire) <= queue.len() {/' "$pool"
    grep -q 'waiting_tasks.load(Ordering::Acquire) <= queue.len()' "$pool" ||
        { echo "tiny_http's task_pool.rs changed: the patch no longer applies" >&2; return 1; }
    printf '\n[patch.crates-io]\ntiny_http = { path = "%s" }\n' "$dir/tiny_http" >>"$dir/cli/Cargo.toml"
    # No --locked: see the header.
    cargo install --path "$dir/cli" --target-dir "$dir/target" --force
    echo "$RUNNER_PATCH $(sha256sum <"$CARGO_BIN/wasm-bindgen-test-runner" | cut -d' ' -f1)" >"$RUNNER_MARKER"
}
have_bindgen="$(wasm-bindgen --version 2>/dev/null || true)"
have_runner="$(wasm-bindgen-test-runner --version 2>/dev/null || true)"
if [ "$have_bindgen" != "wasm-bindgen $WASM_BINDGEN_VERSION" ] ||
    [ "$have_runner" != "wasm-bindgen-test-runner $WASM_BINDGEN_VERSION" ]; then
    say "wasm-bindgen CLI: have '${have_bindgen:-none}', want $WASM_BINDGEN_VERSION (from Cargo.lock)"
    start wasm-bindgen-cli install_bindgen_cli
elif ! runner_patched; then
    say "wasm-bindgen-test-runner $WASM_BINDGEN_VERSION lacks the tiny_http thread pool fix"
    start wasm-bindgen-cli install_bindgen_cli
fi

# --- Chromium and its driver, PostgreSQL (the server's tests start a throwaway cluster) -----
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
apt_wanted=()
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    say "chromium/chromedriver missing"
    apt_wanted+=(chromium chromium-driver)
fi
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    say "PostgreSQL server missing"
    apt_wanted+=(postgresql)
fi
if [ ${#apt_wanted[@]} -gt 0 ]; then
    apt_install() {
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update
        as_root apt-get -o DPkg::Lock::Timeout=300 install -y "${apt_wanted[@]}"
    }
    start apt apt_install
fi

# --- node_modules -------------------------------------------------------------------------
# npm writes node_modules/.package-lock.json last; it is the marker of a finished install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "node_modules missing or older than package-lock.json"
    start npm npm ci --no-audit --no-fund
fi

# --- wait for the background jobs ---------------------------------------------------------
failed=()
for i in "${!JOB_PIDS[@]}"; do
    name="${JOB_NAMES[$i]}"
    if wait "${JOB_PIDS[$i]}"; then
        say "done $name ($(tail -n 1 "$LOGDIR/$name.log" | tr -d '[]'))"
    else
        failed+=("$name")
        printf '\nsetup: ---- %s FAILED; last lines of its log ----\n' "$name" >&2
        tail -n 60 "$LOGDIR/$name.log" >&2
    fi
done
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"

# --- final checks: fail loudly if anything is still not right -----------------------------
[ "$(wasm-pack --version)" = "wasm-pack $WASM_PACK_VERSION" ] || die "wasm-pack version mismatch"
[ "$(wasm-bindgen --version)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ] || die "wasm-bindgen version mismatch"
runner_patched || die "wasm-bindgen-test-runner lacks the tiny_http fix ($RUNNER_MARKER)"
rustup target list --installed | grep -qx wasm32-unknown-unknown || die "wasm32 target missing"
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || die "chromium/chromedriver missing"
[ -x "$(pg_bin)/initdb" ] || die "PostgreSQL (initdb) missing"
if command -v wasm-opt >/dev/null && wasm-opt --version 2>/dev/null | grep -q 'version 1[01][0-9]\b'; then
    say "WARNING: $(command -v wasm-opt) is an old binaryen that cannot read wasm-bindgen output;" \
        "keep wasm-opt = false in Cargo.toml or remove it"
fi

if [ ${#JOB_PIDS[@]} -eq 0 ]; then
    say "everything present (wasm-pack $WASM_PACK_VERSION, wasm-bindgen $WASM_BINDGEN_VERSION," \
        "wasm32 target, chromium, PostgreSQL, node_modules) in $((SECONDS - START)) s"
else
    say "finished in $((SECONDS - START)) s"
fi
