#!/usr/bin/env bash
# Builds the npm package (wasm + JS glue) as configured in wasm-pack.toml, then prints the size
# of every file the published package holds (raw and gzip), as `npm pack` would pack them.
#
# The package is published from the repository root: package.json's `files` and `exports` point
# into www/ (index.js, index.d.ts, filesync-worker.js) and into the out-dir www/pkg (the glue,
# its snippets and the wasm), so the demo, the e2e tests and the package use the same files.
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

# Read with Python's own TOML parser (tomllib, Python >= 3.11, on every machine of this kind):
# the four settings under [build], checked, one per line.
settings="$(python3 - "$CONFIG" <<'PY'
import sys, tomllib

path = sys.argv[1]
try:
    with open(path, "rb") as f:
        config = tomllib.load(f)
except tomllib.TOMLDecodeError as e:
    sys.exit(f"build: {path}: {e}")
keys = ["target", "profile", "out-dir", "out-name"]
unknown = sorted(set(config) - {"build"}) + sorted(set(config.get("build", {})) - set(keys))
if unknown:
    sys.exit(f"build: {path}: unknown settings: {', '.join(unknown)}")
for key in keys:
    value = config.get("build", {}).get(key)
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        sys.exit(f"build: {path}: [build] {key} must be a non-empty string without spaces")
    print(value)
PY
)"
{ read -r target; read -r profile; read -r out_dir; read -r out_name; } <<<"$settings"
case "$profile" in
    release | dev | profiling) ;;
    *) echo "build: $CONFIG: profile must be release, dev or profiling, not '$profile'" >&2; exit 1 ;;
esac

# wasm-bindgen never deletes snippet directories of earlier builds: start from none, so the
# package holds only the ones this glue imports.
rm -rf "$out_dir/snippets"

cmd=(wasm-pack build --target "$target" "--$profile" --mode no-install
    --out-dir "$out_dir" --out-name "$out_name")
[ $# -eq 0 ] || cmd+=(-- "$@")
echo "build: ${cmd[*]}"
"${cmd[@]}"

# wasm-bindgen's own name section (closure shims, imports) is for debuggers only, and so are
# the comments of the JS it generated or copied (its glue, the src/web snippets).
if [ "$profile" = release ]; then
    node scripts/strip-wasm-names.mjs "$out_dir/${out_name}_bg.wasm"
    node scripts/compact-js.mjs "$out_dir"
fi

# wasm-pack writes a `.gitignore` of `*` into the out-dir, which npm would also apply to the
# package; an .npmignore takes precedence over it there (the root .gitignore still keeps the
# directory out of git).
: >"$out_dir/.npmignore"

# What the package holds, from npm itself (the `files` of package.json), with sizes.
pack_err="$(mktemp)"
trap 'rm -f "$pack_err"' EXIT
pack_json="$(npm pack --dry-run --json --ignore-scripts 2>"$pack_err")" || {
    echo "build: npm pack --dry-run failed:" >&2
    cat "$pack_err" >&2
    exit 1
}
OUT_DIR="$out_dir" OUT_NAME="$out_name" node --input-type=module -e '
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
const [pack] = JSON.parse(readFileSync(0, "utf8"));
const { OUT_DIR: dir, OUT_NAME: name } = process.env;
const paths = pack.files.map((f) => f.path);
for (const need of [`${dir}/${name}_bg.wasm`, `${dir}/${name}.js`]) {
  if (!paths.includes(need)) {
    console.error(`build: the package does not contain ${need}: package.json files/exports and wasm-pack.toml out-dir disagree`);
    process.exit(1);
  }
}
const row = (label, raw, gz) => console.log(`build: ${label.padEnd(56)} ${String(raw).padStart(9)} B ${String(gz).padStart(9)} B`);
console.log(`build: ${"package file".padEnd(56)} ${"raw".padStart(11)} ${"gzip".padStart(11)}`);
const totals = {};
for (const path of paths.sort()) {
  const bytes = readFileSync(path);
  const raw = bytes.length, gz = gzipSync(bytes, { level: 9 }).length;
  row(path, raw, gz);
  const kind = path.endsWith(".wasm") ? "wasm" : path.endsWith(".d.ts") ? "types" : path.endsWith(".js") ? "JavaScript" : "other (README, package.json)";
  const t = (totals[kind] ??= [0, 0]);
  t[0] += raw;
  t[1] += gz;
}
for (const kind of ["wasm", "JavaScript", "types", "other (README, package.json)"]) {
  if (totals[kind]) row(`total ${kind}`, ...totals[kind]);
}
console.log(`build: ${pack.filename}: ${pack.entryCount} files, ${pack.unpackedSize} B unpacked, ${pack.size} B packed`);
' <<<"$pack_json"
