// Drops the custom "name" section of a wasm module, in place. Release builds strip Rust's
// function names, but wasm-bindgen writes a name section of its own (its closure shims and
// imports, ~9 KB raw, ~1 KB gzip) that only debuggers read: scripts/build.sh removes it from
// release packages. Sections are copied byte for byte otherwise.
//
//   node scripts/strip-wasm-names.mjs www/pkg/filesync_bg.wasm
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2];
const data = readFileSync(file);
if (data.readUInt32LE(0) !== 0x6d736100) throw new Error(`${file} is not a wasm module`);

/** An unsigned LEB128 at `at`: [value, offset after it]. */
function leb(at) {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = data[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
  }
}

const kept = [data.subarray(0, 8)];
let dropped = 0;
for (let at = 8; at < data.length;) {
  const [size, body] = leb(at + 1);
  const end = body + size;
  if (end > data.length) throw new Error(`${file}: section at ${at} runs past the end`);
  let name = null;
  if (data[at] === 0) {
    const [length, start] = leb(body);
    name = data.subarray(start, start + length).toString();
  }
  if (name === 'name') dropped += end - at;
  else kept.push(data.subarray(at, end));
  at = end;
}
writeFileSync(file, Buffer.concat(kept));
console.log(`strip-wasm-names: ${file}: ${dropped} bytes of names dropped`);
