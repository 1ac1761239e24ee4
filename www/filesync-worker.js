// The worker script of filesync, in two roles:
//
// * As a SharedWorker (one per store and browser profile, shared by every tab): the hub. It
//   runs the engine, IndexedDB and the byte store, and serves each tab's port.
// * As a dedicated worker (one per page, started by the page on its first large save or
//   download): the hash worker. It computes the SHA-256 of the chunks the page sends it, so
//   hashing runs on another core while the page reads and writes the bytes.
//
// The wasm file is next to the glue (`new URL()` with `import.meta.url`, which Vite emits as an
// asset when it builds this worker as a chunk), unless the page passed `wasmUrl` to
// `openFileSync`: then it is this script's `wasm` query parameter.
import init, { Hub, Sha256Stream } from './pkg/filesync.js';

const wasmUrl = new URL(self.location.href).searchParams.get('wasm');
const ready = init({ module_or_path: wasmUrl ?? new URL('./pkg/filesync_bg.wasm', import.meta.url) });

if (typeof SharedWorkerGlobalScope !== 'undefined' && self instanceof SharedWorkerGlobalScope) {
  let hub;
  self.onconnect = (event) => {
    const port = event.ports[0];
    // Messages the tab posts meanwhile wait in the port until the hub listens.
    ready.then(() => {
      hub ??= new Hub();
      hub.connect(port);
    });
  };
} else {
  // Jobs by id: {id, chunk} feeds one (acknowledged with {id, hashed, buffer}: the chunk's
  // buffer handed back), {id, end} answers
  // {id, hex} and ends it, {id, discard} drops it. Messages are handled in order.
  // {id, fill: {handle, stream, from}} writes a download into an OPFS file while hashing it,
  // through a sync access handle, after the file's first `from` bytes (a resumed download:
  // they are hashed first; 0 empties the file): {id, loaded} as it goes (bytes of the whole
  // file), then {id, filled: {hex, bytes}} or {id, failed: {name, message}}; the bytes
  // written before a failure stay in the file, for the next attempt. {id, discard} stops it.
  const jobs = new Map();
  const fills = new Map();
  const fill = async (id, { handle, stream, from }) => {
    const reader = stream.getReader();
    fills.set(id, reader);
    let access, sha, answer;
    try {
      access = await handle.createSyncAccessHandle();
      sha = new Sha256Stream();
      if (access.getSize() < from) {
        throw new DOMException(`the partial file holds ${access.getSize()} bytes, not ${from}`, 'InvalidStateError');
      }
      // The held prefix is hashed from the disk (cheap next to downloading it again).
      const buffer = new Uint8Array(Math.min(from, 4 << 20));
      for (let pos = 0; pos < from; ) {
        const n = access.read(buffer.subarray(0, Math.min(buffer.length, from - pos)), { at: pos });
        if (n === 0) throw new DOMException('the partial file ended early', 'InvalidStateError');
        sha.update(buffer.subarray(0, n));
        pos += n;
      }
      access.truncate(from);
      let at = from;
      let told = at;
      if (from > 0) self.postMessage({ id, loaded: at });
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (let n = 0; n < value.byteLength; ) n += access.write(value.subarray(n), { at: at + n });
        sha.update(value);
        at += value.byteLength;
        // Progress about every MiB, not every network chunk.
        if (at - told >= 1 << 20) {
          told = at;
          self.postMessage({ id, loaded: at });
        }
      }
      access.flush();
      const hex = sha.finish();
      sha = null;
      answer = { id, filled: { hex, bytes: at } };
    } catch (e) {
      reader.cancel().catch(() => {});
      try {
        access?.flush();
      } catch {
        // Closing writes what it can; the next attempt checks the file anyway.
      }
      answer = { id, failed: { name: e?.name ?? 'Error', message: String(e?.message ?? e) } };
    } finally {
      sha?.free();
      // Closed before the answer: the page may move or remove the file at once.
      access?.close();
      fills.delete(id);
    }
    self.postMessage(answer);
  };
  // {id, digest: blob} reads the blob here and answers {id, hex} (or {id, failed}): the page
  // never holds its bytes. Reads fill reused buffers, one per digest under way.
  const spare = [];
  const digest = async (id, blob) => {
    let sha = new Sha256Stream();
    let buffer = spare.pop() ?? new ArrayBuffer(1 << 20);
    let answer;
    try {
      const reader = blob.stream().getReader({ mode: 'byob' });
      // Whole buffers to the hasher (as the page's chunk reader does): same-sized copies into
      // wasm memory, which its allocator reuses instead of growing for ever-new sizes.
      for (let end = false; !end; ) {
        let filled = 0;
        while (filled < buffer.byteLength) {
          const { done, value } = await reader.read(new Uint8Array(buffer, filled));
          if (value) buffer = value.buffer;
          if (done) {
            end = true;
            break;
          }
          filled += value.byteLength;
        }
        if (filled > 0) sha.update(new Uint8Array(buffer, 0, filled));
      }
      answer = { id, hex: sha.finish() };
      sha = null;
    } catch (e) {
      answer = { id, failed: { name: e?.name ?? 'Error', message: String(e?.message ?? e) } };
    } finally {
      sha?.free();
      if (buffer.byteLength) spare.push(buffer);
    }
    self.postMessage(answer);
  };
  let failed = null;
  ready.catch((e) => { failed = e; });
  self.onmessage = async ({ data }) => {
    try {
      await ready;
    } catch {
      self.postMessage({ id: data.id, error: String(failed) });
      return;
    }
    const { id } = data;
    if (data.fill) return fill(id, data.fill);
    if (data.digest) return digest(id, data.digest);
    if (data.discard) {
      fills.get(id)?.cancel().catch(() => {});
      jobs.get(id)?.free();
      jobs.delete(id);
      return;
    }
    let job = jobs.get(id);
    if (!job) {
      job = new Sha256Stream();
      jobs.set(id, job);
    }
    if (data.chunk) {
      job.update(data.chunk);
      // The buffer goes back to the page, which reuses it for a later chunk.
      const { buffer } = data.chunk;
      self.postMessage({ id, hashed: data.chunk.byteLength, buffer }, [buffer]);
    }
    if (data.end) {
      jobs.delete(id);
      self.postMessage({ id, hex: job.finish() });
    }
  };
}
