// Remote sync benchmarks: two devices (persistent Chromium profiles) syncing through the real
// filesync-server (release build) on loopback. Run by scripts/bench.sh; needs the package build
// (www/pkg) and `cargo build --release -p filesync-server`.
//
//   node scripts/bench-sync.mjs
//   BENCH_SYNC_ONLY=small node scripts/bench-sync.mjs      (sections: small, large, concurrency)
//
// * small: 1,000 files of 10 KiB saved in device A until device B holds all their bytes
//   (files/s), next to the same bytes sent as plain signed PUTs from a page (the ceiling).
// * large: 5 files of 50 MiB: upload and download throughput (transfer start to complete, from
//   the callbacks) as a ratio of plain `fetch` PUT / GET of the same bytes to the same server,
//   measured in the same run (target >= 0.8).
// * concurrency: the small scenario (300 files) with 2, 4 and 8 transfers at once: the figures
//   the defaults were picked from.
// * huge: one disk-backed file (picked with setInputFiles) of 64 MiB (the multipart threshold)
//   and of 1 GiB (BENCH_HUGE_MIB): save time, save to uploaded (in parts), next to a plain
//   `fetch` PUT of the same disk-backed File to the same server in the same run (target
//   >= 0.9), and the uploading page's peak growth of V8 heap plus ArrayBuffer backing stores
//   (CDP) and of wasm memory during the upload (target <= 64 MiB).
// * link: the huge scenario for one file of BENCH_LINK_MIB (default 256) through a link of
//   BENCH_LINK_MIBPS MiB/s (default 25) upstream: a TCP relay in this process that every
//   connection of the page goes through (the page is loaded from it), sharing one budget, so
//   the plain PUT and the parts compete for the same uplink, as on a real network.
// * lazy: device A saves 20 files of 100 KiB; device B opens the store with downloads: 'lazy'
//   and calls resolveFileUrl on them one after another: the time from the call to the URL
//   (goal: one round trip plus the transfer, under 100 ms on loopback), next to a plain signed
//   GET of the same bytes from the same page.
// * lazycold: BENCH_LAZY_FILES (default 10,000) files of 1 KiB saved and uploaded by device A;
//   device B opens the store eagerly and holds every file's bytes, device C lazily and holds
//   none. Then each reopens it cold BENCH_SYNC_RUNS times (its tab closed, the hub gone, a new
//   tab): the time from openFileSync to whenLoaded with every file listed, the V8 heap plus
//   ArrayBuffer stores of the page and of the hub after a GC, and the wasm memory of each
//   (goal: lazy unchanged versus eager, within noise).
// * presign: one file of BENCH_PRESIGN_MIB (default 6144: past S3's 5 GiB single-PUT limit)
//   saved and uploaded in parts straight to an S3 server (server/examples/s3_dev.rs: s3s-fs
//   with CORS, built by scripts/bench.sh) through a second filesync-server in presign mode.
//   The size is lowered to what the disk holds (the file, its OPFS copy and the bucket's parts
//   and object: about 4x), and the size run is reported.
//
// Figures, not assertions: medians of BENCH_SYNC_RUNS runs (default 3); the exit status is
// non-zero only when a section fails to run. Prints a table, then one line of JSON.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../tests/e2e/server.mjs';
import { launchProfile } from '../tests/e2e/chromium.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The release build (an option, not the environment: imports run before this module's body).
const SERVER_BIN = process.env.FILESYNC_SERVER_BIN ?? path.join(ROOT, 'target/release/filesync-server');
const SECTIONS = ['small', 'large', 'concurrency', 'huge', 'link', 'presign', 'lazy', 'lazycold'];
const only = (process.env.BENCH_SYNC_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
for (const s of only) {
  if (!SECTIONS.includes(s)) {
    console.error(`bench-sync: unknown section ${s} (known: ${SECTIONS.join(', ')})`);
    process.exit(2);
  }
}
const wanted = (s) => only.length === 0 || only.includes(s);
const RUNS = Number(process.env.BENCH_SYNC_RUNS ?? 3);
const TOKEN = 'bench-token';
const MiB = 1024 * 1024;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const server = await startServer({ tokens: `${TOKEN}=*`, binary: SERVER_BIN });
console.error(`bench-sync: server ${SERVER_BIN}`);
const devices = [];

async function device() {
  const dir = await mkdtemp(path.join(tmpdir(), 'filesync-bench-device-'));
  const context = await launchProfile(dir);
  devices.push({ dir, context });
  return context;
}

async function openTab(context, storeId, extra = {}, base = server.url) {
  const page = await context.newPage();
  await page.goto(`${base}/e2e.html`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.evaluate(async ([storeId, extra, token]) => {
    window.events = [];
    window.fs = await window.filesync.openFileSync({ storeId, remote: { authToken: token }, ...extra });
    window.fs.on('*', (e) => window.events.push({ ...e, at: performance.now() }));
  }, [storeId, extra, TOKEN]);
  return page;
}

const unique = (name) => `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

/**
 * In a page: plain signed PUTs (and GETs) of generated content, the baseline of a transfer.
 * `put` sends in-memory Blobs. With `stored`, `putStored` also times PUTs of the same sizes
 * read from files in the origin's private file system, where a sync store keeps its bytes
 * (a disk-backed File costs the browser more to send than memory: see docs/BENCHMARKS.md).
 */
async function plainTransfers(page, storeId, sizes, concurrency, { stored = false } = {}) {
  return page.evaluate(async ([storeId, sizes, concurrency, token, stored]) => {
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
    const generate = async (i, variant) => {
      const bytes = new Uint8Array(sizes[i]);
      crypto.getRandomValues(bytes.subarray(0, Math.min(bytes.length, 65536)));
      bytes[bytes.length - 1] = (i * 2 + variant) % 251;
      return { bytes, key: `${storeId}/${hex(await crypto.subtle.digest('SHA-256', bytes))}` };
    };
    const items = [];
    for (let i = 0; i < sizes.length; i++) {
      const { bytes, key } = await generate(i, 0);
      items.push({ key, blob: new Blob([bytes]) });
    }
    const files = [];
    const root = await navigator.storage.getDirectory();
    const dirName = `plain-${storeId}`;
    if (stored) {
      const dir = await root.getDirectoryHandle(dirName, { create: true });
      for (let i = 0; i < sizes.length; i++) {
        const { bytes, key } = await generate(i, 1);
        const handle = await dir.getFileHandle(`${i}`, { create: true });
        const writable = await handle.createWritable();
        await writable.write(bytes);
        await writable.close();
        files.push({ key, blob: await handle.getFile() });
      }
    }
    const sign = (kind, body) => fetch(`/api/v1/sign/${kind}`, { method: 'POST', headers, body: JSON.stringify(body) })
      .then((r) => r.json());
    const pool = async (list, work) => {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < list.length) {
          const i = next++;
          await work(list[i], i);
        }
      }));
      return performance.now() - t0;
    };
    const put = async ({ key, blob }) => {
      const s = await sign('upload', { key, contentLength: blob.size });
      const r = await fetch(s.url, { method: s.method, headers: s.headers ?? {}, body: blob });
      if (!r.ok) throw new Error(`PUT ${r.status}`);
    };
    const result = { put: await pool(items, put) };
    const get = (into) => async ({ key }, i) => {
      const s = await sign('download', { key });
      const r = await fetch(s.url, { headers: s.headers ?? {} });
      if (into) {
        await r.body.pipeTo(await (await into.getFileHandle(`get-${i}`, { create: true })).createWritable());
      } else {
        const reader = r.body.getReader();
        while (!(await reader.read()).done);
      }
    };
    result.get = await pool(items, get(null));
    if (stored) {
      result.putStored = await pool(files, put);
      result.getStored = await pool(items, get(await root.getDirectoryHandle(dirName)));
      await root.removeEntry(dirName, { recursive: true });
    }
    return result;
  }, [storeId, sizes, concurrency, TOKEN, stored]);
}

/**
 * Device A saves `count` files of `size` bytes; resolves when device B holds them all. With
 * `isolate`, each phase runs alone (A saves while paused, uploads, then B opens and
 * downloads), so transfer figures are not shared with hashing elsewhere on the two cores.
 */
async function aToB({ count, size, extra = {}, isolate = false }) {
  const [ca, cb] = [await device(), await device()];
  const store = unique('bench');
  const a = await openTab(ca, store, extra);
  let b = isolate ? null : await openTab(cb, store, extra);
  const t0 = Date.now();
  const started = await a.evaluate(async ([count, size, isolate]) => {
    if (isolate) await window.fs.pause();
    const t = performance.now();
    for (let i = 0; i < count; i++) {
      const bytes = new Uint8Array(size);
      bytes[0] = i & 255;
      bytes[1] = i >> 8;
      await window.fs.saveFile(new File([bytes], `f-${i}.bin`));
    }
    const saved = performance.now() - t;
    if (isolate) {
      await window.fs.resume();
      await new Promise((resolve) => {
        const done = () => window.fs.getFiles().every((f) => f.isUploaded);
        if (done()) resolve();
        const off = window.fs.subscribe(() => done() && (off(), resolve()));
      });
    }
    return saved;
  }, [count, size, isolate]);
  b ??= await openTab(cb, store, extra);
  await b.waitForFunction((count) => {
    const files = window.fs.getFiles();
    return files.length === count && files.every((f) => f.hasLocalCopy);
  }, count, { timeout: 600_000, polling: 50 });
  const total = Date.now() - t0;
  const transfer = (page, kind) => page.evaluate((kind) => {
    const starts = window.events.filter((e) => e.type === `${kind}:start`).map((e) => e.at);
    const ends = window.events.filter((e) => e.type === `${kind}:complete`).map((e) => e.at);
    return Math.max(...ends) - Math.min(...starts);
  }, kind);
  const result = { total, saves: started, upload: await transfer(a, 'upload'), download: await transfer(b, 'download'), a, b, store };
  return result;
}

async function closeAll() {
  for (const d of devices.splice(0)) {
    await d.context.close().catch(() => {});
    await rm(d.dir, { recursive: true, force: true });
  }
}

const rows = [];
const json = {};
function report(name, value, unit, note = '') {
  rows.push([name, typeof value === 'number' ? value.toFixed(value < 10 ? 2 : 0) : String(value), unit, note]);
  json[name] = typeof value === 'number' ? Number(value.toFixed(3)) : value;
}

let failed = 0;
async function section(name, fn) {
  if (!wanted(name)) return;
  try {
    await fn();
  } catch (e) {
    failed++;
    console.error(`bench-sync: section ${name} failed:`, e);
  } finally {
    await closeAll();
  }
}

await section('small', async () => {
  const totals = [], baselines = [];
  for (let r = 0; r < RUNS; r++) {
    const run = await aToB({ count: 1000, size: 10 * 1024 });
    totals.push(run.total);
    const plain = await plainTransfers(run.a, unique('plain'), Array(1000).fill(10 * 1024), 4);
    baselines.push(plain.put + plain.get);
    await closeAll();
  }
  const t = median(totals), base = median(baselines);
  report('small.files', 1000, 'files', '10 KiB each, A saves, B downloads');
  report('small.total_ms', t, 'ms', 'first save in A to all bytes in B');
  report('small.files_per_s', 1000 / (t / 1000), 'files/s', 'anchor: 4.6 files/s (200 files)');
  report('small.plain_put_get_ms', base, 'ms', 'same count and size: signed PUT then GET, 4 at once, no sync');
  report('small.ratio_vs_plain', base / t, 'x', 'plain / ours (1 = as fast as bare transfers)');
});

await section('large', async () => {
  const up = [], down = [], plainUp = [], plainUpStored = [], plainDown = [];
  const plainDownStored = [], upRatio = [], upRatioMemory = [], downRatio = [], downRatioDropped = [];
  const bytes = 5 * 50 * MiB;
  for (let r = 0; r < RUNS; r++) {
    const run = await aToB({ count: 5, size: 50 * MiB, isolate: true });
    up.push(run.upload);
    down.push(run.download);
    // Each baseline right after ours, in the page that did the transfer (A uploads, B
    // downloads): the machine's drift between runs is larger than the gap being measured,
    // so the ratio is taken within each run, and its median reported.
    const sizes = Array(5).fill(50 * MiB);
    const plainA = await plainTransfers(run.a, unique('plain'), sizes, 4, { stored: true });
    const plainB = await plainTransfers(run.b, unique('plain'), sizes, 4, { stored: true });
    plainUp.push(plainA.put);
    plainUpStored.push(plainA.putStored);
    plainDown.push(plainB.get);
    plainDownStored.push(plainB.getStored);
    upRatio.push(plainA.putStored / run.upload);
    upRatioMemory.push(plainA.put / run.upload);
    downRatio.push(plainB.getStored / run.download);
    downRatioDropped.push(plainB.get / run.download);
    console.error(`bench-sync: large run ${r + 1}/${RUNS}: upload ratio ${upRatio.at(-1).toFixed(2)} (vs memory ${upRatioMemory.at(-1).toFixed(2)}), download ratio ${downRatio.at(-1).toFixed(2)} (vs dropped ${downRatioDropped.at(-1).toFixed(2)})`);
    await closeAll();
  }
  const mbps = (ms) => bytes / MiB / (ms / 1000);
  report('large.upload_MiB_s', mbps(median(up)), 'MiB/s', '5 x 50 MiB, first upload:start to last upload:complete');
  const runs = (xs) => xs.map((x) => x.toFixed(2)).join(', ');
  report('large.plain_put_stored_MiB_s', mbps(median(plainUpStored)), 'MiB/s', 'fetch PUT of the same sizes as files in OPFS, as a store keeps them');
  report('large.upload_ratio', median(upRatio), 'x', `vs PUT from OPFS files; median of per-run ratios (${runs(upRatio)}); target >= 0.8`);
  report('large.plain_put_MiB_s', mbps(median(plainUp)), 'MiB/s', 'fetch PUT of the same sizes from in-memory Blobs, same server');
  report('large.upload_ratio_vs_memory', median(upRatioMemory), 'x', `vs PUT from memory; median of per-run ratios (${runs(upRatioMemory)})`);
  report('large.download_MiB_s', mbps(median(down)), 'MiB/s', 'B: first download:start to last download:complete (hash + store included)');
  report('large.plain_get_stored_MiB_s', mbps(median(plainDownStored)), 'MiB/s', 'fetch GET of the same sizes piped into OPFS files');
  report('large.download_ratio', median(downRatio), 'x', `vs GET into OPFS files; median of per-run ratios (${runs(downRatio)}); target >= 0.8`);
  report('large.plain_get_MiB_s', mbps(median(plainDown)), 'MiB/s', 'fetch GET of the same sizes, body read and dropped');
  report('large.download_ratio_vs_dropped', median(downRatioDropped), 'x', `vs GET dropped; median of per-run ratios (${runs(downRatioDropped)})`);
});

await section('concurrency', async () => {
  for (const n of [2, 4, 8]) {
    const totals = [];
    for (let r = 0; r < RUNS; r++) {
      const run = await aToB({ count: 300, size: 10 * 1024, extra: { maxUploads: n, maxDownloads: n } });
      totals.push(run.total);
      await closeAll();
    }
    report(`concurrency.${n}.files_per_s`, 300 / (median(totals) / 1000), 'files/s', `300 x 10 KiB A to B, ${n} uploads and ${n} downloads at once`);
  }
});

/** A file of `mib` MiB on disk (random head, so each run's content is new); its SHA-256. */
async function bigFile(dir, mib) {
  const file = path.join(dir, `huge-${mib}.bin`);
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  const head = randomBytes(64);
  for (let i = 0; i < mib; i++) {
    const chunk = Buffer.alloc(MiB, i % 251);
    if (i === 0) head.copy(chunk);
    chunk.writeUInt32LE(i, 64);
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, e) => out.end((err) => (err ? e(err) : r())));
  return { file, hash: hash.digest('hex') };
}

/**
 * The JS isolates of `page`'s app, over CDP: the page, the hub (the origin's SharedWorker) and
 * the page's dedicated workers (the hash worker), attached as they start. `sample()` resolves
 * to the bytes of V8 heap plus ArrayBuffer backing stores of each: `{ page, hub, workers }`
 * (every dedicated worker summed).
 */
async function isolates(ctx, page) {
  const cdp = await ctx.newCDPSession(page);
  const sessions = new Map(); // CDP session id -> 'hub' | 'workers'
  const pending = new Map();
  let last = 0;
  cdp.on('Target.attachedToTarget', ({ sessionId, targetInfo }) => {
    if (targetInfo.type === 'worker') sessions.set(sessionId, 'workers');
  });
  cdp.on('Target.detachedFromTarget', ({ sessionId }) => sessions.delete(sessionId));
  cdp.on('Target.receivedMessageFromTarget', ({ message }) => {
    const m = JSON.parse(message);
    pending.get(m.id)?.(m.result);
    pending.delete(m.id);
  });
  await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  const origin = new URL(page.url()).origin;
  const { targetInfos } = await cdp.send('Target.getTargets');
  for (const t of targetInfos.filter((t) => t.type === 'shared_worker' && t.url.startsWith(origin))) {
    const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: t.targetId, flatten: false });
    sessions.set(sessionId, 'hub');
  }
  const ask = (sessionId, method, params = {}) => new Promise((resolve) => {
    const id = ++last;
    pending.set(id, resolve);
    const message = JSON.stringify({ id, method, params });
    cdp.send('Target.sendMessageToTarget', { sessionId, message }).catch(() => resolve(undefined));
  });
  const bytes = (u) => (u?.usedSize ?? 0) + (u?.backingStorageSize ?? 0);
  // The bytes of every WebAssembly.Memory of an isolate (where the engine's state lives; V8's
  // heap figures leave it out): found with queryObjects, so nothing in the product exposes it.
  const wasmBytes = async (send) => {
    const proto = await send('Runtime.evaluate', { expression: 'WebAssembly.Memory.prototype' });
    const all = await send('Runtime.queryObjects', { prototypeObjectId: proto?.result?.objectId });
    const sum = await send('Runtime.callFunctionOn', {
      objectId: all?.objects?.objectId,
      functionDeclaration: 'function () { return this.reduce((n, m) => n + m.buffer.byteLength, 0); }',
      returnByValue: true,
    });
    return sum?.result?.value ?? 0;
  };
  return {
    /** The same per isolate kind for wasm memory: `{ page, hub, workers }`. */
    async sampleWasm() {
      const out = { page: await wasmBytes((m, p) => cdp.send(m, p)), hub: 0, workers: 0 };
      for (const [id, kind] of sessions) out[kind] += await wasmBytes((m, p) => ask(id, m, p));
      return out;
    },
    async collectGarbage() {
      await cdp.send('HeapProfiler.collectGarbage');
      for (const id of sessions.keys()) await ask(id, 'HeapProfiler.collectGarbage');
    },
    async sample() {
      const out = { page: bytes(await cdp.send('Runtime.getHeapUsage')), hub: 0, workers: 0 };
      for (const [id, kind] of sessions) out[kind] += bytes(await ask(id, 'Runtime.getHeapUsage'));
      return out;
    },
  };
}

/**
 * One disk-backed file of `mib` MiB: a plain PUT of it, then filesync's save and upload, with
 * the page's memory sampled during the upload. Resolves to the figures (ms, MiB).
 */
async function hugeRun(mib, { base = server.url, plain: withPlain = true } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'filesync-bench-huge-'));
  try {
    const { file, hash } = await bigFile(dir, mib);
    const ctx = await device();
    const store = unique('huge');
    const page = await openTab(ctx, store, {}, base);
    await page.evaluate(() => {
      const input = document.createElement('input');
      input.type = 'file';
      input.id = 'pick';
      document.body.append(input);
    });
    await page.setInputFiles('#pick', file);
    // The baseline: the same File, PUT whole through a URL of the same signer (another store's
    // key, so the server stores it anew).
    const plain = withPlain && await page.evaluate(async ([key, token]) => {
      const f = document.getElementById('pick').files[0];
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const s = await fetch('/api/v1/sign/upload', { method: 'POST', headers, body: JSON.stringify({ key, contentLength: f.size }) }).then((r) => r.json());
      const t0 = performance.now();
      const r = await fetch(s.url, { method: s.method, headers: s.headers ?? {}, body: f });
      if (!r.ok) throw new Error(`plain PUT ${r.status}`);
      return performance.now() - t0;
    }, [`${unique('plain')}/${hash}`, TOKEN]);
    const heaps = await isolates(ctx, page);
    await heaps.collectGarbage();
    const heap0 = await heaps.sample();
    const wasm0 = await page.evaluate(async () => (await window.filesync.load()).memory.buffer.byteLength);
    const peak = { ...heap0 };
    let done = false;
    const sampler = (async () => {
      while (!done) {
        const now = await heaps.sample().catch(() => peak);
        for (const k of Object.keys(peak)) peak[k] = Math.max(peak[k], now[k]);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const ours = await page.evaluate(async () => {
      const f = document.getElementById('pick').files[0];
      const t0 = performance.now();
      const saved = await window.fs.saveFile(f);
      const t1 = performance.now();
      await new Promise((resolve, reject) => {
        const up = () => window.fs.getFile(saved.id)?.isUploaded;
        if (up()) resolve();
        const off = window.fs.subscribe(() => up() && (off(), resolve()));
        // An upload that gave up fails the run instead of leaving it waiting.
        window.fs.on('transfer:exhausted', (e) => e.fileId === saved.id && reject(new Error(`upload gave up: ${e.code}: ${e.message}`)));
      });
      const t2 = performance.now();
      const start = window.events.find((e) => e.type === 'upload:start' && e.fileId === saved.id)?.at ?? t1;
      // A failed attempt (retried after a backoff) shows in the time: say why.
      const errors = window.events.filter((e) => e.type === 'upload:error').map((e) => `${e.code}: ${e.message} (retry in ${e.retryInMs} ms)`);
      return { save: t1 - t0, saveToUploaded: t2 - t0, upload: t2 - start, size: saved.size, errors };
    });
    done = true;
    await sampler;
    const wasm1 = await page.evaluate(async () => (await window.filesync.load()).memory.buffer.byteLength);
    if (ours.size !== mib * MiB) throw new Error(`saved ${ours.size} bytes`);
    for (const e of ours.errors) console.error(`bench-sync: an upload attempt failed (retried): ${e}`);
    const growth = (k) => (peak[k] - heap0[k]) / MiB;
    return { plain, ...ours, heapGrowth: growth('page'), hubGrowth: growth('hub'), workersGrowth: growth('workers'), wasmGrowth: (wasm1 - wasm0) / MiB };
  } finally {
    await closeAll();
    await rm(dir, { recursive: true, force: true });
  }
}

await section('huge', async () => {
  const big = Number(process.env.BENCH_HUGE_MIB ?? 1024);
  for (const mib of [64, big]) {
    const runs = [];
    for (let r = 0; r < RUNS; r++) {
      const run = await hugeRun(mib);
      runs.push(run);
      console.error(`bench-sync: huge ${mib} MiB run ${r + 1}/${RUNS}: save ${run.save.toFixed(0)} ms, upload ${run.upload.toFixed(0)} ms, plain PUT ${run.plain.toFixed(0)} ms, ratio ${(run.plain / run.upload).toFixed(2)}, heap +${run.heapGrowth.toFixed(1)} MiB (hub +${run.hubGrowth.toFixed(1)}, workers +${run.workersGrowth.toFixed(1)}), wasm +${run.wasmGrowth.toFixed(1)} MiB`);
    }
    const m = (k) => median(runs.map((r) => r[k]));
    const name = `huge.${mib}mib`;
    report(`${name}.save_ms`, m('save'), 'ms', 'saveFile of the disk-backed file (stored and hashed)');
    report(`${name}.save_to_uploaded_ms`, m('saveToUploaded'), 'ms', 'saveFile called to isUploaded');
    report(`${name}.upload_ms`, m('upload'), 'ms', 'upload:start to isUploaded (in parts of 8 MiB, 4 at once)');
    report(`${name}.plain_put_ms`, m('plain'), 'ms', 'fetch PUT of the same File, same server');
    report(`${name}.upload_ratio`, median(runs.map((r) => r.plain / r.upload)), 'x', 'plain PUT / ours; target >= 0.9');
    report(`${name}.heap_growth_MiB`, m('heapGrowth'), 'MiB', 'page: V8 heap + ArrayBuffer backing stores, peak during save+upload; target <= 64');
    report(`${name}.hub_heap_growth_MiB`, m('hubGrowth'), 'MiB', 'hub (SharedWorker): the same, peak');
    report(`${name}.workers_heap_growth_MiB`, m('workersGrowth'), 'MiB', "the page's dedicated workers (hash worker): the same, peak");
    report(`${name}.wasm_growth_MiB`, m('wasmGrowth'), 'MiB', 'page: wasm memory growth');
  }
});

/**
 * A TCP relay to the server on another loopback port whose client-to-server bytes, over all
 * its connections together, flow at most `bytesPerS` (server-to-client bytes are not held).
 */
async function uplink(bytesPerS) {
  const upstream = new URL(server.url);
  let free = 0; // when the link is next idle (performance.now() ms)
  const sockets = new Set();
  const relay = net.createServer((client) => {
    const up = net.connect(Number(upstream.port), upstream.hostname);
    for (const s of [client, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); up.destroy(); });
    }
    client.on('data', (chunk) => {
      const now = performance.now();
      free = Math.max(now, free) + (chunk.length / bytesPerS) * 1000;
      client.pause();
      setTimeout(() => { up.write(chunk); client.resume(); }, free - now);
    });
    client.on('end', () => up.end());
    up.pipe(client);
  });
  await new Promise((r) => relay.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${relay.address().port}`,
    close: () => new Promise((r) => { sockets.forEach((s) => s.destroy()); relay.close(r); }),
  };
}

await section('link', async () => {
  const mib = Number(process.env.BENCH_LINK_MIB ?? 256);
  const rate = Number(process.env.BENCH_LINK_MIBPS ?? 25);
  const link = await uplink(rate * MiB);
  try {
    const runs = [];
    for (let r = 0; r < RUNS; r++) {
      const run = await hugeRun(mib, { base: link.url });
      runs.push(run);
      console.error(`bench-sync: link ${rate} MiB/s, ${mib} MiB run ${r + 1}/${RUNS}: upload ${run.upload.toFixed(0)} ms, plain PUT ${run.plain.toFixed(0)} ms, ratio ${(run.plain / run.upload).toFixed(2)}`);
    }
    const name = `link.${rate}mibps.${mib}mib`;
    report(`${name}.upload_ms`, median(runs.map((r) => r.upload)), 'ms', `upload:start to isUploaded over a ${rate} MiB/s uplink`);
    report(`${name}.plain_put_ms`, median(runs.map((r) => r.plain)), 'ms', 'fetch PUT of the same File over the same link');
    report(`${name}.upload_ratio`, median(runs.map((r) => r.plain / r.upload)), 'x', 'plain PUT / ours; target >= 0.9');
  } finally {
    await link.close();
  }
});

await section('lazy', async () => {
  const store = unique('lazy');
  const a = await openTab(await device(), store);
  const ids = await a.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 20; i++) {
      const bytes = new Uint8Array(100 * 1024).map((_, j) => (i * 31 + j) % 251);
      out.push((await window.fs.saveFile(new File([bytes], `f${i}.bin`))).id);
    }
    return out;
  });
  await a.waitForFunction((ids) => ids.every((id) => window.fs.getFile(id)?.isUploaded), ids, { timeout: 60_000 });
  const b = await openTab(await device(), store, { downloads: 'lazy' });
  await b.evaluate(() => window.fs.whenLoaded());
  await b.waitForFunction((n) => window.fs.getFiles().length === n, ids.length, { timeout: 60_000 });
  // Leadership first (the leader runs the downloads): the first read should not wait for it.
  await b.waitForFunction(() => window.fs.isLeader(), null, { timeout: 60_000 });
  const times = await b.evaluate(async ([ids, token]) => {
    const ours = [];
    const plain = [];
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    for (const id of ids) {
      const f = window.fs.getFile(id);
      if (f.downloadStatus !== 'remote') throw new Error(`${id} is ${f.downloadStatus}, not remote`);
      let t0 = performance.now();
      await window.fs.resolveFileUrl(id);
      ours.push(performance.now() - t0);
      t0 = performance.now();
      const s = await fetch('/api/v1/sign/download', { method: 'POST', headers, body: JSON.stringify({ key: f.remoteKey }) }).then((r) => r.json());
      await (await fetch(s.url)).arrayBuffer();
      plain.push(performance.now() - t0);
    }
    return { ours, plain };
  }, [ids, TOKEN]);
  report('lazy.resolve_url_100kib_ms', median(times.ours), 'ms', `resolveFileUrl of a remote-only 100 KiB file, median of ${ids.length} (goal < 100)`);
  report('lazy.plain_get_100kib_ms', median(times.plain), 'ms', 'sign + GET of the same bytes from the page');
});

/** Resolves once no SharedWorker of the device runs (every tab closed, the hub gone). */
async function hubGone(ctx) {
  const cdp = await ctx.browser().newBrowserCDPSession();
  try {
    for (const t0 = Date.now(); Date.now() - t0 < 15_000; await new Promise((r) => setTimeout(r, 20))) {
      const { targetInfos } = await cdp.send('Target.getTargets');
      if (!targetInfos.some((t) => t.type === 'shared_worker')) return;
    }
    throw new Error('the hub still runs 15 s after its last tab closed');
  } finally {
    await cdp.detach();
  }
}

await section('lazycold', async () => {
  const n = Number(process.env.BENCH_LAZY_FILES ?? 10_000);
  const store = unique('lazycold');
  const a = await openTab(await device(), store, { maxUploads: 8 });
  await a.evaluate(async (n) => {
    for (let i = 0; i < n; i++) {
      const bytes = new Uint8Array(1024).map((_, j) => (i * 7 + j) % 253);
      await window.fs.saveFile(new File([bytes, String(i)], `f${i}.bin`));
    }
  }, n);
  await a.waitForFunction(() => window.fs.getFiles().every((f) => f.isUploaded && f.isSynced), null, { timeout: 600_000, polling: 500 });
  const modes = {};
  for (const mode of ['eager', 'lazy']) {
    const ctx = await device();
    const first = await openTab(ctx, store, { downloads: mode, maxDownloads: 8 });
    const ready = mode === 'eager'
      ? (m) => window.fs.getFiles().length === m && window.fs.getFiles().every((f) => f.hasLocalCopy)
      : (m) => window.fs.getFiles().length === m;
    await first.waitForFunction(ready, n, { timeout: 600_000, polling: 500 });
    await first.close();
    await hubGone(ctx);
    // Untimed reopens until a cold start lists every file: a hub whose last tab closes goes
    // with the events it had pulled but not yet stored (they are pulled again), so the first
    // close may leave some for the next start to fetch.
    for (let tries = 0; ; tries++) {
      const page = await openTab(ctx, store, { downloads: mode });
      const listed = await page.evaluate(async () => {
        await window.fs.whenLoaded();
        return window.fs.getFiles().length;
      });
      if (listed !== n) await page.waitForFunction(ready, n, { timeout: 600_000, polling: 500 });
      await page.close();
      await hubGone(ctx);
      if (listed === n) break;
      if (tries === 5) throw new Error(`a cold start still lists ${listed} of ${n} files after ${tries + 1} reopens`);
    }
    const runs = { open: [], page: [], hub: [], pageWasm: [], hubWasm: [] };
    for (let r = 0; r < RUNS; r++) {
      const page = await ctx.newPage();
      await page.goto(`${server.url}/e2e.html`);
      await page.waitForSelector('body[data-ready="true"]');
      const ms = await page.evaluate(async ([storeId, token, mode, n]) => {
        const t0 = performance.now();
        window.fs = await window.filesync.openFileSync({ storeId, remote: { authToken: token }, downloads: mode });
        await window.fs.whenLoaded();
        if (window.fs.getFiles().length !== n) throw new Error(`${window.fs.getFiles().length} files listed, not ${n}`);
        return performance.now() - t0;
      }, [store, TOKEN, mode, n]);
      const heaps = await isolates(ctx, page);
      await heaps.collectGarbage();
      const mem = await heaps.sample();
      const wasm = await heaps.sampleWasm();
      runs.open.push(ms);
      runs.page.push(mem.page / MiB);
      runs.hub.push(mem.hub / MiB);
      runs.pageWasm.push(wasm.page / MiB);
      runs.hubWasm.push(wasm.hub / MiB);
      console.error(`bench-sync: lazycold ${mode} run ${r + 1}/${RUNS}: open ${ms.toFixed(0)} ms, page ${(mem.page / MiB).toFixed(1)} MiB + wasm ${(wasm.page / MiB).toFixed(1)}, hub ${(mem.hub / MiB).toFixed(1)} MiB + wasm ${(wasm.hub / MiB).toFixed(1)}`);
      await page.close();
      await hubGone(ctx);
    }
    modes[mode] = runs;
    report(`lazycold.${mode}_open_ms`, median(runs.open), 'ms', `cold openFileSync to whenLoaded, ${n} files listed (${mode}), median of ${RUNS}`);
    report(`lazycold.${mode}_page_MiB`, median(runs.page), 'MiB', 'page: V8 heap + ArrayBuffer stores after GC');
    report(`lazycold.${mode}_hub_MiB`, median(runs.hub), 'MiB', 'hub (SharedWorker): the same');
    report(`lazycold.${mode}_page_wasm_MiB`, median(runs.pageWasm), 'MiB', "page: wasm memory");
    report(`lazycold.${mode}_hub_wasm_MiB`, median(runs.hubWasm), 'MiB', 'hub: wasm memory (the engine and its 10,000 rows)');
  }
  report('lazycold.open_ratio', median(modes.lazy.open) / median(modes.eager.open), 'x', 'lazy / eager cold open (goal: ~1, within noise)');
});

/** The dev S3 server (its `url`) on a fresh folder; `close()` stops it and removes the folder. */
async function devS3() {
  const bin = path.join(ROOT, 'target/release/examples/s3_dev');
  const dir = await mkdtemp(path.join(tmpdir(), 'filesync-bench-s3-'));
  const child = spawn(bin, [dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`${bin} exited with ${code} (built by scripts/bench.sh)`)));
  });
  return {
    url,
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill();
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

await section('presign', async () => {
  const free = (await statfs(tmpdir())).bavail * (await statfs(tmpdir())).bsize;
  const wanted = Number(process.env.BENCH_PRESIGN_MIB ?? 6144);
  // The file, its copy in the profile, the bucket's parts and its object, and 2 GiB to spare.
  const mib = Math.min(wanted, Math.floor((free - 2 * 1024 * MiB) / 4 / MiB));
  if (mib < 64) throw new Error(`${(free / MiB).toFixed(0)} MiB free: not enough for the presign run`);
  if (mib < wanted) console.error(`bench-sync: presign: ${mib} MiB, not ${wanted}: the disk has ${(free / MiB).toFixed(0)} MiB free`);
  const s3 = await devS3();
  const presign = await startServer({
    tokens: `${TOKEN}=*`,
    binary: SERVER_BIN,
    args: ['--blob-mode', 'presign', '--s3-endpoint', s3.url, '--s3-bucket', 'filesync-dev',
      '--s3-access-key-id', 'AKIADEVFILESYNC', '--s3-secret-access-key', 'dev-secret-access-key'],
  });
  try {
    const run = await hugeRun(mib, { base: presign.url, plain: false });
    console.error(`bench-sync: presign ${mib} MiB: save ${run.save.toFixed(0)} ms, upload ${run.upload.toFixed(0)} ms, heap +${run.heapGrowth.toFixed(1)} MiB (hub +${run.hubGrowth.toFixed(1)}, workers +${run.workersGrowth.toFixed(1)})`);
    const name = `presign.${mib}mib`;
    report(`${name}.save_ms`, run.save, 'ms', 'saveFile (stored and hashed), one run');
    report(`${name}.upload_ms`, run.upload, 'ms', 'upload:start to isUploaded, in parts straight to the bucket');
    report(`${name}.upload_MiB_per_s`, mib / (run.upload / 1000), 'MiB/s', '');
    report(`${name}.heap_growth_MiB`, run.heapGrowth + run.hubGrowth + run.workersGrowth, 'MiB', 'page + hub + workers, peak');
  } finally {
    await presign.close();
    await s3.close();
  }
});

await server.close();
const width = Math.max(...rows.map((r) => r[0].length));
console.log('\nbench-sync (medians of %d runs)', RUNS);
for (const [name, value, unit, note] of rows) {
  console.log(`  ${name.padEnd(width)}  ${value.padStart(9)} ${unit.padEnd(8)} ${note}`);
}
console.log(JSON.stringify({ bench: 'sync', runs: RUNS, ...json }));
process.exit(failed ? 1 : 0);
