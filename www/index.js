// filesync-wasm: local-first file sync for multi-tab web apps.
//
//   import { openFileSync } from 'filesync-wasm';
//   const fs = await openFileSync({ storeId: 'photos', remote: false });
//   const file = await fs.saveFile(input.files[0]);
import init, { FileSync, version } from './pkg/filesync.js';

let loading;

/** Loads the WebAssembly module once (later calls reuse it). */
export function load(wasmUrl) {
  loading ??= init(wasmUrl === undefined ? undefined : { module_or_path: wasmUrl });
  return loading;
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

/** Opens a store in this tab. See index.d.ts for the options and the API. */
export async function openFileSync(options) {
  const { wasmUrl, preprocessors, ...rest } = options ?? {};
  await load(wasmUrl);
  const raw = await FileSync.open({
    workerUrl: new URL('./filesync-worker.js', import.meta.url).href,
    remote: false,
    ...rest,
  });
  if (!preprocessors) return raw;
  // Same object, with saves and updates passed through the preprocessors first.
  const saveFile = raw.saveFile.bind(raw);
  const updateFile = raw.updateFile.bind(raw);
  raw.saveFile = async (file, opts) => saveFile(...(await preprocess(preprocessors, file, opts)));
  raw.updateFile = async (id, file, opts) => updateFile(id, ...(await preprocess(preprocessors, file, opts)));
  return raw;
}

export { FileSync, version };
