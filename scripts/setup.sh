#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need; idempotent.
#
#   wasm32-unknown-unknown target, rustfmt, clippy       (rustup)
#   wasm-pack 0.15.1                                     (cargo install --locked)
#   wasm-bindgen CLI = the wasm-bindgen version in Cargo.lock (cargo install, NOT --locked:
#                      its lock names a webpki-roots release the registry does not serve)
#   chromium + chromium-driver                           (apt-get)
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
have_bindgen="$(wasm-bindgen --version 2>/dev/null || true)"
have_runner="$(wasm-bindgen-test-runner --version 2>/dev/null || true)"
if [ "$have_bindgen" != "wasm-bindgen $WASM_BINDGEN_VERSION" ] ||
    [ "$have_runner" != "wasm-bindgen-test-runner $WASM_BINDGEN_VERSION" ]; then
    say "wasm-bindgen CLI: have '${have_bindgen:-none}', want $WASM_BINDGEN_VERSION (from Cargo.lock)"
    # No --locked: see the header.
    start wasm-bindgen-cli cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# --- Chromium and its driver --------------------------------------------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    say "chromium/chromedriver missing"
    apt_install() {
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update
        as_root apt-get -o DPkg::Lock::Timeout=300 install -y chromium chromium-driver
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
rustup target list --installed | grep -qx wasm32-unknown-unknown || die "wasm32 target missing"
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || die "chromium/chromedriver missing"
if command -v wasm-opt >/dev/null && wasm-opt --version 2>/dev/null | grep -q 'version 1[01][0-9]\b'; then
    say "WARNING: $(command -v wasm-opt) is an old binaryen that cannot read wasm-bindgen output;" \
        "keep wasm-opt = false in Cargo.toml or remove it"
fi

if [ ${#JOB_PIDS[@]} -eq 0 ]; then
    say "everything present (wasm-pack $WASM_PACK_VERSION, wasm-bindgen $WASM_BINDGEN_VERSION," \
        "wasm32 target, chromium, node_modules) in $((SECONDS - START)) s"
else
    say "finished in $((SECONDS - START)) s"
fi
