// What the gzip size of the wasm would be without a group of functions: blanks the bodies of
// the functions whose names match each group and prints how much `gzip -9` of the module
// drops. An analysis tool for the bundle target (docs/BENCHMARKS.md), not part of the build.
//
//   node scripts/bundle-whatif.mjs target/sizes/bg/filesync_bg.wasm
//
// Needs a build with function names (the "named build" recipe in docs/BENCHMARKS.md); the
// name section itself is left out of every measure.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const data = readFileSync(process.argv[2]);

function leb(b, i) {
  let r = 0;
  let shift = 0;
  for (;;) {
    const x = b[i++];
    r += (x & 0x7f) * 2 ** shift;
    shift += 7;
    if (x < 0x80) return [r, i];
  }
}

function enc(n) {
  const out = [];
  do {
    let x = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) x |= 0x80;
    out.push(x);
  } while (n);
  return Buffer.from(out);
}

// Sections: [id, payload, whole section bytes].
const sections = [];
for (let i = 8; i < data.length;) {
  const [size, j] = leb(data, i + 1);
  sections.push([data[i], data.subarray(j, j + size), data.subarray(i, j + size)]);
  i = j + size;
}

// Imported functions come first in the function index space.
let imported = 0;
for (const [id, body] of sections) {
  if (id !== 2) continue;
  let [n, k] = leb(body, 0);
  const skipName = () => { const [l, p] = leb(body, k); k = p + l; };
  const skipLimits = () => { const flags = body[k++]; k = leb(body, k)[1]; if (flags & 1) k = leb(body, k)[1]; };
  while (n--) {
    skipName();
    skipName();
    const kind = body[k++];
    if (kind === 0) { k = leb(body, k)[1]; imported++; } else if (kind === 1) { k++; skipLimits(); } else if (kind === 2) skipLimits();
    else if (kind === 3) k += 2;
    else if (kind === 4) { k++; k = leb(body, k)[1]; }
  }
}

// Function names (custom section "name", subsection 1), crate hashes dropped.
const names = new Map();
for (const [id, body] of sections) {
  if (id !== 0) continue;
  const [nl, k0] = leb(body, 0);
  if (body.subarray(k0, k0 + nl).toString() !== 'name') continue;
  for (let k = k0 + nl; k < body.length;) {
    const sub = body[k];
    const [size, start] = leb(body, k + 1);
    if (sub === 1) {
      let [n, p] = leb(body, start);
      while (n--) {
        const [index, q] = leb(body, p);
        const [l, r] = leb(body, q);
        names.set(index, body.subarray(r, r + l).toString().replace(/\[[0-9a-f]+\]/g, ''));
        p = r + l;
      }
    }
    k = start + size;
  }
}
if (names.size === 0) throw new Error('no function names: use the named build (docs/BENCHMARKS.md)');

const code = sections.find(([id]) => id === 10)[1];
const bodies = [];
{
  let [n, k] = leb(code, 0);
  while (n--) {
    const [size, start] = leb(code, k);
    bodies.push(code.subarray(start, start + size));
    k = start + size;
  }
}

/** The module without its name section, with the bodies of `blank` functions cut to `unreachable`. */
function build(blank) {
  const parts = [data.subarray(0, 8)];
  for (const [id, , whole] of sections) {
    if (id === 0) continue;
    if (id !== 10) { parts.push(whole); continue; }
    const fns = [enc(bodies.length)];
    bodies.forEach((b, f) => {
      const body = blank(names.get(imported + f) ?? '') ? Buffer.from([0, 0, 0x0b]) : b;
      fns.push(enc(body.length), body);
    });
    const payload = Buffer.concat(fns);
    parts.push(Buffer.from([10]), enc(payload.length), payload);
  }
  return Buffer.concat(parts);
}

const gz = (b) => gzipSync(b, { level: 9 }).length;
const base = build(() => false);
const baseGz = gz(base);
console.log(`module without names: ${base.length} B raw, ${baseGz} B gzip -9`);
const ours = (n) => n.includes('filesync::');
const groups = {
  'serde_json, instantiated for our types': (n) => n.includes('serde_json') && ours(n),
  'serde_json, all': (n) => n.includes('serde_json'),
  'serde, serde_json, serde_wasm_bindgen: all': (n) => n.includes('serde'),
  'B-trees': (n) => n.includes('btree'),
  'hash maps': (n) => n.includes('hashbrown'),
  'formatting (core::fmt, floats)': (n) => n.includes('flt2dec') || n.includes('::fmt'),
  'wasm-bindgen, js-sys, web-sys glue': (n) => /wasm_bindgen|js_sys|web_sys/.test(n) && !ours(n),
  'our code (no serde, maps or sets)': (n) => ours(n) && !/serde|btree|hashbrown/.test(n),
  '  of which core::engine': (n) => n.includes('filesync::core::engine') && !n.includes('serde'),
  '  of which runtime::hub': (n) => n.includes('filesync::runtime::hub') && !n.includes('serde'),
  '  of which runtime::tab': (n) => n.includes('filesync::runtime::tab') && !n.includes('serde'),
  '  of which web:: adapters': (n) => n.includes('filesync::web::') && !n.includes('serde'),
  '  of which api::': (n) => n.includes('filesync::api') && !n.includes('serde'),
};
for (const [group, match] of Object.entries(groups)) {
  const without = build(match);
  const raw = base.length - without.length;
  console.log(`${group.padEnd(44)} ${String(raw).padStart(8)} B raw ${String(baseGz - gz(without)).padStart(7)} B gzip`);
}
