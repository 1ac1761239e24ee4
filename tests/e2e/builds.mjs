// Another release of the built package (www/), for tests of two versions of an app at once.
import assert from 'node:assert/strict';
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WWW = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../www');
/** The package's version, as the built wasm reports it. */
export const VERSION = JSON.parse(await readFile(path.join(WWW, '../package.json'), 'utf8')).version;
/** The version of the build `writeNewerBuild` writes: the next major, the same length. */
export const NEWER_VERSION = VERSION.replace(/^\d+/, (major) => String(Number(major) + 1));

/**
 * Writes www/ (pages, loader, worker, wasm) to `dir` as a build of `NEWER_VERSION`: the wasm's
 * one copy of the version text is rewritten (same length, so nothing else moves). The runtime
 * compares versions, so for it this is another release. Files already in `dir` are replaced
 * (a deploy over the previous build).
 */
export async function writeNewerBuild(dir) {
  await cp(WWW, dir, { recursive: true, force: true });
  const wasmPath = path.join(dir, 'pkg/filesync_bg.wasm');
  const wasm = await readFile(wasmPath);
  const from = Buffer.from(VERSION);
  const at = wasm.indexOf(from);
  assert.ok(at >= 0 && wasm.indexOf(from, at + 1) < 0, `one copy of "${VERSION}" in the wasm`);
  assert.equal(NEWER_VERSION.length, VERSION.length);
  Buffer.from(NEWER_VERSION).copy(wasm, at);
  await writeFile(wasmPath, wasm);
}
