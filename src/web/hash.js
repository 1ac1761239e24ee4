// The hash worker and chunked reads for src/web/hash.rs.

// The hash worker: the package's worker script started as a dedicated worker (it hashes
// there, see www/filesync-worker.js), one per page, made on first use. A job's chunks are
// copied and transferred to it (and their buffers back, for reuse); at most HASH_AHEAD bytes
// wait in it, then update() returns a
// promise that resolves as it catches up. `null` when no worker can run (none configured, no
// Worker, or it failed): the caller hashes on its own thread.
const HASH_AHEAD = 8 * 1024 * 1024;
// Up to one hash worker per core (at least two), made on demand: a new job goes to the
// worker with the fewest jobs, or to a new worker while all are busy.
const HASH_WORKERS = Math.max(2, Math.min(4, globalThis.navigator?.hardwareConcurrency ?? 2));
const hashWorkers = [];
let hashWorkersDead = false;
// Chunk buffers the hash workers handed back once hashed, reused for the next chunks: a fresh
// buffer per chunk is garbage on both sides, which V8 collects late (a 256 MiB upload's
// checksums grew the hash worker's heap by ~125 MiB that way).
const spareBuffers = [];
const SPARE_BUFFERS = 8;
function startHashWorker(url, module) {
  const worker = new Worker(url, module ? { type: 'module', name: 'filesync-hash' } : { name: 'filesync-hash' });
  const hw = { worker, next: 1, jobs: new Map(), dead: false };
  const fail = (error) => {
    hw.dead = true;
    hashWorkersDead = true;
    for (const job of hw.jobs.values()) job.fail(error);
    hw.jobs.clear();
  };
  worker.onmessage = ({ data }) => {
    const job = hw.jobs.get(data.id);
    if (data.error !== undefined) return fail(new Error(`hash worker: ${data.error}`));
    if (!job) return;
    if (data.loaded !== undefined) {
      job.progress?.(data.loaded);
    } else if (data.filled !== undefined) {
      hw.jobs.delete(data.id);
      job.progress?.(data.filled.bytes);
      job.done(data.filled);
    } else if (data.failed !== undefined) {
      hw.jobs.delete(data.id);
      const e = new Error(data.failed.message);
      e.name = data.failed.name;
      job.fail(e);
    } else if (data.hashed !== undefined) {
      if (data.buffer && spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(data.buffer);
      job.ahead -= data.hashed;
      if (job.ahead <= HASH_AHEAD && job.resume) job.resume();
    } else if (data.hex !== undefined) {
      hw.jobs.delete(data.id);
      job.done(data.hex);
    }
  };
  worker.onerror = (e) => {
    e.preventDefault?.();
    fail(new Error(`hash worker: ${e.message || 'failed to start'}`));
  };
  return hw;
}
function hashWorkerFor(url, module) {
  if (!url || typeof Worker === 'undefined' || hashWorkersDead) return null;
  const idle = hashWorkers.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a), hashWorkers[0]);
  if (idle && (idle.jobs.size === 0 || hashWorkers.length >= HASH_WORKERS)) return idle;
  try {
    const hw = startHashWorker(url, module);
    hashWorkers.push(hw);
    return hw;
  } catch {
    hashWorkersDead = true;
    return null;
  }
}

export function hashJob(url, module) {
  const hw = hashWorkerFor(url, module);
  if (!hw) return null;
  const id = hw.next++;
  let failed = null;
  const job = { ahead: 0, resume: null, done: null, fail: null };
  // One promise waits at a time: a caught-up worker (update) or the digest (finish).
  const waitFor = (kind) => new Promise((resolve, reject) => {
    job[kind] = (value) => { job[kind] = null; resolve(value); };
    job.fail = (e) => { failed = e; reject(e); };
  });
  job.fail = (e) => { failed = e; };
  hw.jobs.set(id, job);
  return {
    update(chunk) {
      if (failed) return Promise.reject(failed);
      const n = chunk.byteLength;
      const at = spareBuffers.findIndex((b) => b.byteLength >= n);
      const copy = new Uint8Array(at < 0 ? new ArrayBuffer(n) : spareBuffers.splice(at, 1)[0], 0, n);
      copy.set(chunk);
      job.ahead += n;
      hw.worker.postMessage({ id, chunk: copy }, [copy.buffer]);
      return job.ahead <= HASH_AHEAD ? undefined : waitFor('resume');
    },
    finish() {
      if (failed) return Promise.reject(failed);
      const done = waitFor('done');
      hw.worker.postMessage({ id, end: true });
      return done;
    },
    discard() {
      if (hw.jobs.delete(id)) hw.worker.postMessage({ id, discard: true });
    },
  };
}

// Has a hash worker read `blob` and hash it: the page holds none of its bytes. A promise of
// the hex digest; `null` when there is no hash worker.
export function workerDigest(url, module, blob) {
  const hw = hashWorkerFor(url, module);
  if (!hw) return null;
  const id = hw.next++;
  return new Promise((resolve, reject) => {
    hw.jobs.set(id, { done: resolve, fail: reject });
    hw.worker.postMessage({ id, digest: blob });
  });
}

// Whether a hash worker can run here (none failed, `Worker` exists).
export function hashWorkerRuns() {
  return !hashWorkersDead && typeof Worker !== 'undefined';
}

// Has the hash worker write a download into `handle` (an OPFS file, through a sync access
// handle) while it hashes it: the page neither reads nor copies the bytes. The stream's bytes
// go after the file's first `from` bytes (a resumed download: they are hashed first; `0`
// empties the file). Resolves to {hex, bytes}, the hash and size of the whole file; on a
// failure the bytes written so far stay in the file. `abort()` stops it. `null` when there is
// no hash worker.
export function workerFill(url, module, handle, stream, from, progress) {
  const hw = hashWorkerFor(url, module);
  if (!hw) return null;
  const id = hw.next++;
  const job = { progress, done: null, fail: null };
  const done = new Promise((resolve, reject) => {
    job.done = resolve;
    job.fail = reject;
  });
  hw.jobs.set(id, job);
  try {
    hw.worker.postMessage({ id, fill: { handle, stream, from } }, [stream]);
  } catch (e) {
    hw.jobs.delete(id);
    return null;
  }
  return {
    done,
    abort() {
      if (hw.jobs.delete(id)) {
        hw.worker.postMessage({ id, discard: true });
        job.fail(new DOMException('the write was aborted', 'AbortError'));
      }
    },
  };
}

export function chunkReader(source, size) {
  const stream = source instanceof ReadableStream ? source : source.stream();
  let reader, buffers;
  let turn = 0;
  try {
    // A BYOB reader fills reused buffers: the default reader allocates a fresh buffer per
    // chunk, which V8 collects late (a 512 MiB save grew the heap by ~110 MiB that way). Two
    // in turn, so the caller can write one while the next is read.
    reader = stream.getReader({ mode: 'byob' });
    buffers = [new ArrayBuffer(size), new ArrayBuffer(size)];
  } catch {
    reader = stream.getReader();
  }
  return {
    async next() {
      if (!buffers) {
        const r = await reader.read();
        return r.done ? null : r.value;
      }
      // Fill the whole buffer before handing it out: network streams yield small pieces
      // (tens of KiB), and every piece handed out costs a storage write round trip.
      const slot = turn;
      turn = 1 - turn;
      let buffer = buffers[slot];
      let filled = 0;
      while (filled < size) {
        const r = await reader.read(new Uint8Array(buffer, filled, size - filled));
        if (r.value) buffer = r.value.buffer;
        if (r.done) break;
        filled += r.value.byteLength;
      }
      buffers[slot] = buffer;
      return filled === 0 ? null : new Uint8Array(buffer, 0, filled);
    },
    cancel() {
      reader.cancel().catch(() => {});
    },
  };
}

// Standard base64 of a few bytes (a digest).
export function base64(bytes) {
  return btoa(String.fromCharCode(...bytes));
}
