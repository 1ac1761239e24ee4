#!/usr/bin/env bash
# Builds the npm package (wasm + JS glue) as configured in wasm-pack.toml, then prints its size.
#
# wasm-pack.toml is this project's own file: wasm-pack does not read it, this script does.
# Extra arguments are passed on to `wasm-pack build`'s cargo invocation (after `--`).
# SKIP_SETUP=1 skips scripts/setup.sh (used by scripts that already ran it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh

CONFIG=wasm-pack.toml
[ -f "$CONFIG" ] || { echo "build: $CONFIG not found" >&2; exit 1; }

# Flat TOML: only `key = "value"` lines under [build]; comments and blank lines are skipped.
target="" profile="" out_dir="" out_name=""
table=""
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line="${line%%#*}"                                   # strip comments (values hold no '#')
    line="$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$line")"
    [ -z "$line" ] && continue
    if [[ "$line" =~ ^\[([A-Za-z0-9_.-]+)\]$ ]]; then
        table="${BASH_REMATCH[1]}"
        continue
    fi
    if [[ "$line" =~ ^([A-Za-z0-9_-]+)[[:space:]]*=[[:space:]]*\"([^\"]*)\"$ ]]; then
        key="${BASH_REMATCH[1]}" value="${BASH_REMATCH[2]}"
    else
        echo "build: $CONFIG:$lineno: expected key = \"value\": $line" >&2
        exit 1
    fi
    [ "$table" = build ] || { echo "build: $CONFIG:$lineno: key outside [build]: $key" >&2; exit 1; }
    case "$key" in
        target) target="$value" ;;
        profile) profile="$value" ;;
        out-dir) out_dir="$value" ;;
        out-name) out_name="$value" ;;
        *) echo "build: $CONFIG:$lineno: unknown key: $key" >&2; exit 1 ;;
    esac
done <"$CONFIG"

for k in target profile out_dir out_name; do
    [ -n "${!k}" ] || { echo "build: $CONFIG: missing ${k//_/-} under [build]" >&2; exit 1; }
done
case "$profile" in
    release | dev | profiling) ;;
    *) echo "build: $CONFIG: profile must be release, dev or profiling, not '$profile'" >&2; exit 1 ;;
esac

cmd=(wasm-pack build --target "$target" "--$profile" --mode no-install
    --out-dir "$out_dir" --out-name "$out_name")
[ $# -eq 0 ] || cmd+=(-- "$@")
echo "build: ${cmd[*]}"
"${cmd[@]}"

# Sizes of what a page downloads.
printf 'build: %-34s %10s %10s\n' file raw gzip
for f in "$out_dir/${out_name}_bg.wasm" "$out_dir/$out_name.js"; do
    [ -f "$f" ] || { echo "build: expected output $f is missing" >&2; exit 1; }
    raw=$(wc -c <"$f")
    gz=$(gzip -9c "$f" | wc -c)
    printf 'build: %-34s %10s %10s\n' "$f" "$raw B" "$gz B"
done
