// filesync-wasm: local-first file sync for multi-tab web apps.
//
//   import { openFileSync } from 'filesync-wasm';
//   const fs = await openFileSync({ storeId: 'photos', remote: false });
//   const file = await fs.saveFile(input.files[0]);
//
// Assets: the wasm file and the hub's SharedWorker script are found with
// `new URL('./…', import.meta.url)`, next to this file when it is served as is (a plain
// `<script type="module">` with an import map or a path into node_modules), and emitted as
// assets by bundlers that understand the pattern (Vite, webpack 5, Turbopack). `wasmUrl` and
// `workerUrl` override them.
import init, { FileSync, version } from './pkg/filesync.js';

let loading;

/** Loads the WebAssembly module once (later calls reuse it). */
export function load(wasmUrl) {
  loading ??= init({ module_or_path: wasmUrl ?? new URL('./pkg/filesync_bg.wasm', import.meta.url) });
  return loading;
}

/**
 * Stands in for `SharedWorker` in `defaultWorker`: keeps the URL and the worker type the
 * (possibly rewritten) call passes, starts nothing.
 */
class UrlOnly {
  constructor(url, options) {
    this.href = String(url);
    // Turbopack bundles the worker as a classic script (its loader calls importScripts) and
    // drops `type` from the call; Vite and webpack keep a module worker.
    this.type = options?.type === 'module' ? 'module' : 'classic';
  }
}

/**
 * The URL of the hub's SharedWorker script and how it runs. It is written as the
 * `new SharedWorker(new URL('…', import.meta.url), { type: 'module' })` pattern on purpose:
 * bundlers recognise it and build the worker as its own chunk together with what it imports
 * (the wasm glue, and through it the wasm as an asset), then rewrite the URL to that chunk. A
 * plain `new URL()` would only copy the file and its imports would not resolve. The real worker
 * is started (and restarted after a crash) by the wasm from the URL string, so here
 * `SharedWorker` must be a stand-in that only keeps the URL, and the type the call passes once
 * the bundler rewrote it (Turbopack drops `type`: its worker loader is a classic script).
 *
 * The stand-in replaces the global for the duration of this one synchronous expression (and is
 * put back, or removed where the browser has no SharedWorker, before anything else can run)
 * rather than shadowing the name with a local binding: Vite matches the pattern by its text,
 * but webpack 5 matches `new SharedWorker(…)` only where `SharedWorker` is the global, and
 * would treat a locally bound name as an ordinary call (the script copied as a lone asset).
 */
function defaultWorker() {
  const had = Object.getOwnPropertyDescriptor(globalThis, 'SharedWorker');
  Object.defineProperty(globalThis, 'SharedWorker', { value: UrlOnly, configurable: true, writable: true });
  try {
    const { href, type } = new SharedWorker(new URL('./filesync-worker.js', import.meta.url), { type: 'module' });
    return { href, type };
  } finally {
    if (had) Object.defineProperty(globalThis, 'SharedWorker', had);
    else delete globalThis.SharedWorker;
  }
}

/**
 * The hub worker's URL and type (`module` or `classic`). A `wasmUrl` given to `openFileSync`
 * is passed on to the worker (as its `wasm` query parameter, absolute) so the hub loads the
 * same wasm file as the tab. A `workerUrl` of the app's is a module worker unless `workerType`
 * says otherwise.
 */
function hubWorker(workerUrl, workerType, wasmUrl) {
  const base = globalThis.document?.baseURI ?? globalThis.location?.href;
  const found = workerUrl === undefined ? defaultWorker() : { href: workerUrl, type: 'module' };
  const url = new URL(found.href, base);
  if (wasmUrl !== undefined) url.searchParams.set('wasm', new URL(String(wasmUrl), base).href);
  return { workerUrl: url.href, workerType: workerType ?? found.type };
}

/**
 * The preprocessor for a MIME type: an exact match wins over `type/*`, which wins over `*`.
 * Returns undefined when none applies.
 */
export function pickPreprocessor(preprocessors, mimeType) {
  if (!preprocessors) return undefined;
  const type = (mimeType || '').toLowerCase();
  const major = type.split('/')[0];
  return preprocessors[type] ?? (major ? preprocessors[`${major}/*`] : undefined) ?? preprocessors['*'];
}

/** Runs the matching preprocessor; its metadata is merged under the caller's. */
async function preprocess(preprocessors, file, options) {
  const pre = pickPreprocessor(preprocessors, file.type);
  if (!pre) return [file, options];
  const out = (await pre(file)) ?? {};
  const next = out.file ?? file;
  const metadata =
    out.metadata === undefined && options?.metadata === undefined
      ? undefined
      : { ...(out.metadata ?? {}), ...(options?.metadata ?? {}) };
  return [next, { ...(options ?? {}), ...(metadata === undefined ? {} : { metadata }) }];
}

/**
 * The browser API a store needs that this environment lacks (server-side rendering, Node), or
 * `null`. Importing the package is safe anywhere; opening a store is not.
 */
function missingBrowserApi() {
  if (typeof indexedDB === 'undefined') return 'IndexedDB';
  if (!globalThis.navigator?.locks) return 'Web Locks (navigator.locks)';
  return null;
}

/**
 * Asks for the downloads `policy` wants: each remote-only file is offered to it once per content
 * (after every change), and those it returns true for are queued. A policy that throws counts
 * as false. The engine leaves evicted files remote, so the byte budget and the policy never
 * fight over a file.
 */
function followPolicy(raw, policy) {
  const offered = new Map();
  const run = () => {
    const want = [];
    for (const f of raw.getFiles()) {
      if (f.downloadStatus !== 'remote' || offered.get(f.id) === f.contentHash) continue;
      offered.set(f.id, f.contentHash);
      let yes = false;
      try {
        yes = Boolean(policy(f));
      } catch {
        yes = false;
      }
      if (yes) want.push(f.id);
    }
    // Refused only when the store is closed (disposed, superseded): nothing left to ask.
    if (want.length) raw.wantDownloads(want).catch(() => {});
  };
  raw.subscribe(run);
  run();
}

/** Opens a store in this tab. See index.d.ts for the options and the API. */
export async function openFileSync(options) {
  const missing = missingBrowserApi();
  if (missing) {
    const e = new Error(`${missing} is missing: filesync-wasm opens stores in browsers only (in client-side code, not during server-side rendering)`);
    throw Object.assign(e, { name: 'FileSyncError', code: 'unavailable', retryable: false });
  }
  const { wasmUrl, workerUrl, workerType, preprocessors, ...rest } = options ?? {};
  const policy = typeof rest.downloads === 'function' ? rest.downloads : null;
  await load(wasmUrl);
  const raw = await FileSync.open({
    remote: false,
    ...rest,
    // A function runs here, in the page: the store is lazy and the tab asks for what it wants.
    ...(policy && { downloads: 'lazy' }),
    ...hubWorker(workerUrl, workerType, wasmUrl),
  });
  if (policy) followPolicy(raw, policy);
  if (!preprocessors) return raw;
  // Same object, with saves and updates passed through the preprocessors first.
  const saveFile = raw.saveFile.bind(raw);
  const updateFile = raw.updateFile.bind(raw);
  raw.saveFile = async (file, opts) => saveFile(...(await preprocess(preprocessors, file, opts)));
  raw.updateFile = async (id, file, opts) => updateFile(id, ...(await preprocess(preprocessors, file, opts)));
  return raw;
}

export { FileSync, version };
