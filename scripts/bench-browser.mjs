// Browser benchmarks of the built npm package (www/pkg) in Debian's headless Chromium, driven by
// playwright-core with a persistent (on-disk) profile. Run by scripts/bench.sh after the native
// benchmark; needs `bash scripts/build.sh` first.
//
//   node scripts/bench-browser.mjs
//   BENCH_BROWSER_ONLY=hash,commit node scripts/bench-browser.mjs    (a subset, for profiling)
//
// Sections (keys of BENCH_BROWSER_ONLY): hash, webcrypto, memory, cold, commit, failover, bundle. Every
// figure is a median over several runs after a warm-up, next to a baseline measured in the same
// run where there is one, and is compared with the issue's target FOR INFORMATION: nothing here
// asserts, and the exit status is non-zero only when a section fails to run. Prints a table, then
// one line of JSON (flat keys) for scripts. See docs/BENCHMARKS.md ("Browser benchmarks").
//
// Environment: BENCH_BROWSER_ONLY (sections), BENCH_BROWSER_SMALL_FILES (files of the cold-start
// store, default 10000), CHROMIUM (default /usr/bin/chromium).
import { mkdtemp, rm, open, readFile, writeFile, mkdir } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir, loadavg, cpus } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { gzipSync, brotliCompressSync, constants as zc } from 'node:zlib';
import { CHROMIUM_ARGS, launchProfile } from '../tests/e2e/chromium.mjs';
import { createStaticServer } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// BENCH_BROWSER_WWW: serve another build (e.g. a copy of www/ built at another commit, for A/B runs).
const WWW = process.env.BENCH_BROWSER_WWW ? path.resolve(process.env.BENCH_BROWSER_WWW) : path.join(ROOT, 'www');
const MiB = 1024 * 1024;
const ARGS = [
  ...CHROMIUM_ARGS,
  // Exact (not bucketed) performance.memory figures.
  '--enable-precise-memory-info',
  // window.gc(), to release dropped Blobs between runs (never called inside a timed step).
  '--js-flags=--expose-gc',
];
const SECTIONS = ['hash', 'webcrypto', 'memory', 'cold', 'commit', 'failover', 'bundle'];
const only = (process.env.BENCH_BROWSER_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
for (const s of only) {
  if (!SECTIONS.includes(s)) {
    console.error(`bench-browser: unknown section ${s} (known: ${SECTIONS.join(', ')})`);
    process.exit(2);
  }
}
const SMALL_FILES = Number(process.env.BENCH_BROWSER_SMALL_FILES ?? 10_000);
if (!Number.isInteger(SMALL_FILES) || SMALL_FILES < 1) {
  console.error(`bench-browser: BENCH_BROWSER_SMALL_FILES must be a positive integer, not ${process.env.BENCH_BROWSER_SMALL_FILES}`);
  process.exit(2);
}
/** BENCH_BROWSER_CPU_PROFILE=dir: CPU profiles of one cold start written there (see coldStarts). */
const CPU_PROFILE_DIR = process.env.BENCH_BROWSER_CPU_PROFILE ? path.resolve(process.env.BENCH_BROWSER_CPU_PROFILE) : null;
if (CPU_PROFILE_DIR) await mkdir(CPU_PROFILE_DIR, { recursive: true });
/**
 * BENCH_BROWSER_USER_DATA=dir: Chromium's profile dir, kept after the run (default: a temp dir,
 * removed). With it, a second run finds the cold-start store filled and skips saving its files,
 * so cold starts can be measured again in a minute (for profiling changes).
 */
const USER_DATA = process.env.BENCH_BROWSER_USER_DATA ? path.resolve(process.env.BENCH_BROWSER_USER_DATA) : null;
/** Whole run: past this the script cleans up and exits non-zero. */
const WATCHDOG_MS = 9 * 60_000;

// ---------------------------------------------------------------------------------------------
// Helpers

const nodeNow = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length });

/** Rejects after `ms` with a message naming `what`. */
function timeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

const log = (...a) => console.log('bench-browser:', ...a);

/** Rows of the final table and the flat JSON. */
const rows = [];
const json = {};
/**
 * Records one figure: `s` its stats, `baseline` the baseline's median (same run), `ratio` as the
 * caller defines it (see `note`), `target` {op: '<' | '<=' | '>=', value} or undefined (info).
 */
function figure({ key, what, unit, s, baseline, ratio, target, note }) {
  const value = s.median;
  let status = '(info)';
  if (target) {
    const ok = target.op === '<' ? value < target.value
      : target.op === '<=' ? value <= target.value
        : value >= target.value;
    status = ok ? 'meets' : 'MISSES';
  }
  rows.push({ key, what, unit, s, baseline, ratio, target, status, note });
  json[key] = round(value);
  if (baseline !== undefined) json[`${key}_baseline`] = round(baseline);
  if (ratio !== undefined) json[`${key}_ratio`] = round(ratio, 3);
  if (target) json[`${key}_meets_target`] = status === 'meets';
  log(`${key}: ${fmt(value)} ${unit}` +
    (s.n > 1 ? ` (median of ${s.n}, min ${fmt(s.min)}, max ${fmt(s.max)})` : '') +
    (baseline !== undefined ? `, baseline ${fmt(baseline)}` : '') +
    (ratio !== undefined ? `, ratio ${fmt(ratio)}x` : '') +
    (target ? `, target ${target.op} ${target.value} ${unit}: ${status}` : '') +
    (note ? ` [${note}]` : ''));
}
function round(x, d = 2) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return x ?? null;
  const f = 10 ** d;
  return Math.round(x * f) / f;
}
function fmt(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1000 ? x.toFixed(0) : a >= 100 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}
const one = (v) => ({ median: v, min: v, max: v, n: 1 });

// ---------------------------------------------------------------------------------------------
// Browser, server, temp dirs, cleanup

let server, base, profile, dataDir, context, browserCdp;
let cleaning;

/** Closes the browser and the server and removes the temp dirs; every caller waits for the same run. */
function cleanup() {
  cleaning ??= (async () => {
    await timeout(context?.close() ?? Promise.resolve(), 20_000, 'closing the browser').catch((e) => log(String(e)));
    if (server) await new Promise((resolve) => server.close(resolve));
    for (const dir of [USER_DATA ? null : profile, dataDir]) {
      // Retries: a dying browser may still write into its profile.
      if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }).catch((e) => log(`could not remove ${dir}: ${e}`));
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`${signal}: cleaning up`);
    cleanup().finally(() => process.exit(130));
  });
}
const watchdog = setTimeout(() => {
  log(`watchdog: the run took over ${WATCHDOG_MS / 1000} s; cleaning up`);
  cleanup().finally(() => process.exit(1));
}, WATCHDOG_MS);
watchdog.unref();

async function start() {
  try {
    readFileSync(path.join(WWW, 'pkg', 'filesync_bg.wasm'));
  } catch {
    throw new Error('www/pkg is missing: run `bash scripts/build.sh` first');
  }
  server = await createStaticServer(WWW);
  // A kept profile needs the same origin every run (storage is per origin): a fixed port.
  await new Promise((resolve) => server.listen(USER_DATA ? 41_977 : 0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  profile = USER_DATA ?? await mkdtemp(path.join(tmpdir(), 'filesync-bench-profile-'));
  dataDir = await mkdtemp(path.join(tmpdir(), 'filesync-bench-data-'));
  context = await launchProfile(profile, {
    args: ARGS,
    // Our own handlers close the browser first, then remove its profile.
    handleSIGINT: false,
    handleSIGTERM: false,
  });
  // The persistent context opens one blank page; it plays no part.
  for (const p of context.pages()) await p.close();
  browserCdp = await context.browser().newBrowserCDPSession();
  const version = context.browser().version();
  log(`Chromium ${version}, profile ${profile}, serving ${WWW} on ${base}`);
  json.chromium = version;
  try {
    const git = (...a) => execFileSync('git', a, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    json.commit = git('rev-parse', '--short', 'HEAD') + (git('status', '--porcelain', '--', 'src', 'Cargo.toml', 'www') ? '+dirty' : '');
  } catch {
    // Not a git checkout: no commit to report.
  }
  json.cpus = cpus().length;
  json.loadavg_start = round(loadavg()[0]);
  log(`${json.cpus} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} (other work on the machine skews every figure)`);
  log(`commit ${json.commit ?? '?'}, www/pkg built ${new Date(statSync(path.join(WWW, 'pkg', 'filesync_bg.wasm')).mtimeMs).toISOString()}`);
}

const pageErrors = [];

/** A new tab on the harness page (wasm not loaded yet). */
async function newHarnessPage() {
  const page = await context.newPage();
  page.on('pageerror', (e) => {
    pageErrors.push(String(e));
    console.error('bench-browser: page error:', e);
  });
  await page.goto(`${base}/bench.html`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
  return page;
}

/** A new tab with `storeId` opened as `window.fs` (wasm module as `window.wasm`). */
async function openTab(storeId) {
  const page = await newHarnessPage();
  await timeout(page.evaluate(async (storeId) => {
    window.wasm = await window.filesync.load();
    window.fs = await window.filesync.openFileSync({ storeId });
  }, storeId), 20_000, `opening store ${storeId}`);
  return page;
}

/** `pageClock - nodeClock` in ms, from the evaluate round trip with the least delay. */
async function clockOffset(page) {
  let best;
  for (let i = 0; i < 15; i++) {
    const n0 = nodeNow();
    const p = await page.evaluate(() => performance.timeOrigin + performance.now());
    const n1 = nodeNow();
    if (!best || n1 - n0 < best.rtt) best = { rtt: n1 - n0, offset: p - (n0 + n1) / 2 };
  }
  return best;
}

/** Whether the store's SharedWorker (the hub) is running in the browser. */
async function hubRunning() {
  const { targetInfos } = await browserCdp.send('Target.getTargets');
  return targetInfos.some((t) => t.type === 'shared_worker' && t.url.endsWith('/filesync-worker.js'));
}

/** Waits until no hub runs (every tab of every store closed); returns how long it took. */
async function waitForHubGone(limitMs = 15_000) {
  const t0 = performance.now();
  while (await hubRunning()) {
    if (performance.now() - t0 > limitMs) throw new Error(`the hub SharedWorker still runs after ${limitMs} ms`);
    await sleep(20);
  }
  return performance.now() - t0;
}

async function closeAll() {
  for (const p of context.pages()) await p.close();
}

// ---------------------------------------------------------------------------------------------
// 1. Streaming hash throughput: saveFile vs crypto.subtle.digest of the same bytes

async function benchHash() {
  const page = await openTab('bench-hash');
  const storage = await page.evaluate(() => window.fs.storageKind());
  json.storage_kind = storage;
  log(`byte store: ${storage}`);
  for (const [sizeMiB, runs] of [[64, 5], [1, 15]]) {
    const r = await timeout(page.evaluate(async ({ size, runs }) => {
      const fs = window.fs;
      const buf = new Uint8Array(size);
      for (let o = 0; o < size; o += 65536) crypto.getRandomValues(buf.subarray(o, Math.min(size, o + 65536)));
      let unique = 0;
      /** A new in-memory File of the bytes, made unique (first 8 bytes), built before timing. */
      const makeFile = async () => {
        unique += 1;
        new DataView(buf.buffer).setFloat64(0, unique + Math.random());
        const f = new File([buf], `hash-${size}-${unique}.bin`, { type: 'application/octet-stream' });
        await f.slice(size - 1).arrayBuffer(); // waits until the blob is fully built
        return f;
      };
      const time = async (fn) => {
        const t0 = performance.now();
        await fn();
        return performance.now() - t0;
      };
      const opfsRoot = await navigator.storage.getDirectory();
      const scratch = await opfsRoot.getDirectoryHandle('bench-scratch', { create: true });
      const out = { digest: [], save: [], arrayBufferDigest: [], opfsWrite: [], streamRead: [], opfsStreamWrite: [], chunks: 0 };
      // Chromium keeps a bounded amount of Blob data: one File serves every baseline, each save
      // gets a new one (unique bytes, else the store keeps the first copy), and garbage is
      // collected between runs so dropped Files release their data.
      const baseFile = await makeFile();
      // Warm-up of every path (wasm tier-up, OPFS, IndexedDB), then the timed runs.
      for (let i = 0; i <= runs; i++) {
        window.gc?.();
        await new Promise((r) => setTimeout(r, 20));
        const f = baseFile;
        const digest = await time(() => crypto.subtle.digest('SHA-256', buf));
        const abDigest = await time(async () => crypto.subtle.digest('SHA-256', await f.arrayBuffer()));
        const opfsWrite = await time(async () => {
          const h = await scratch.getFileHandle(`w-${i}`, { create: true });
          const w = await h.createWritable();
          await w.write(f);
          await w.close();
        });
        await scratch.removeEntry(`w-${i}`);
        // The library's I/O pattern without the hash: read blob.stream(), write every chunk.
        let chunks = 0;
        const streamRead = await time(async () => {
          const r = f.stream().getReader();
          while (!(await r.read()).done) chunks += 1;
        });
        const opfsStreamWrite = await time(async () => {
          const h = await scratch.getFileHandle(`s-${i}`, { create: true });
          const w = await h.createWritable();
          const r = f.stream().getReader();
          for (let c = await r.read(); !c.done; c = await r.read()) await w.write(c.value);
          await w.close();
        });
        await scratch.removeEntry(`s-${i}`);
        const fresh = await makeFile();
        const save = await time(() => fs.saveFile(fresh));
        if (i === 0) continue;
        out.digest.push(digest);
        out.arrayBufferDigest.push(abDigest);
        out.opfsWrite.push(opfsWrite);
        out.save.push(save);
        out.streamRead.push(streamRead);
        out.opfsStreamWrite.push(opfsStreamWrite);
        out.chunks = chunks;
      }
      await opfsRoot.removeEntry('bench-scratch', { recursive: true });
      return out;
    }, { size: sizeMiB * MiB, runs }), 180_000, `hash ${sizeMiB} MiB`);
    const mbps = (ms) => (sizeMiB * MiB) / 1e6 / (ms / 1000);
    const save = stats(r.save.map(mbps));
    const digest = stats(r.digest.map(mbps));
    const abDigest = stats(r.arrayBufferDigest.map(mbps));
    const opfs = stats(r.opfsWrite.map(mbps));
    const k = `save_${sizeMiB}mib`;
    const path = sizeMiB * MiB > 8 * MiB ? 'streaming sha2 in wasm while writing' : 'WebCrypto one-shot (<= 8 MiB)';
    figure({
      key: `${k}_mbps`, what: `saveFile of a ${sizeMiB} MiB in-memory File (${path})`, unit: 'MB/s', s: save,
      baseline: digest.median, ratio: save.median / digest.median,
    });
    figure({ key: `${k}_ms`, what: `saveFile of ${sizeMiB} MiB, call time`, unit: 'ms', s: stats(r.save) });
    figure({ key: `digest_${sizeMiB}mib_mbps`, what: `baseline: crypto.subtle.digest('SHA-256') of the same ${sizeMiB} MiB buffer`, unit: 'MB/s', s: digest });
    figure({ key: `read_digest_${sizeMiB}mib_mbps`, what: `baseline: File.arrayBuffer() + digest (${sizeMiB} MiB)`, unit: 'MB/s', s: abDigest });
    figure({
      key: `opfs_write_${sizeMiB}mib_mbps`, what: `baseline: plain OPFS createWritable/write(file)/close (${sizeMiB} MiB, no hash)`, unit: 'MB/s', s: opfs,
      ratio: save.median / opfs.median, note: 'ratio = saveFile / this',
    });
    if (sizeMiB * MiB > 8 * MiB) {
      const read = stats(r.streamRead.map(mbps));
      const sw = stats(r.opfsStreamWrite.map(mbps));
      figure({ key: `stream_read_${sizeMiB}mib_mbps`, what: `baseline: blob.stream() read alone, chunks discarded (${r.chunks} chunks)`, unit: 'MB/s', s: read });
      figure({
        key: `opfs_stream_write_${sizeMiB}mib_mbps`, what: 'baseline: blob.stream() chunks written to OPFS one by one (saveFile\'s I/O without hashing)', unit: 'MB/s', s: sw,
        ratio: save.median / sw.median, note: 'ratio = saveFile / this',
      });
    }
  }
  await page.close();
}

// ---------------------------------------------------------------------------------------------
// 2. Memory while saving a 512 MiB disk-backed file

// ---------------------------------------------------------------------------------------------
// 1b. Where to switch from WebCrypto to streaming (WEBCRYPTO_MAX_BYTES in src/web/hash.rs)

/**
 * Both hash paths of src/web/hash.rs on the same in-memory blobs, 64 KiB .. 64 MiB, as JS
 * replicas of their steps (the production wasm exports nothing for benchmarks): `webcrypto`
 * (blob.arrayBuffer() + crypto.subtle.digest, the whole blob in one buffer) and `streaming`
 * (BYOB reads into a 1 MiB buffer, each chunk into the package's `Sha256Stream`, sha2 in wasm:
 * one copy into wasm memory per chunk more than the Rust path, which reads into it). Time is
 * the median of several runs after a warm-up, the two paths alternating; memory is what each
 * path holds at its peak: for WebCrypto the JS heap growth right after arrayBuffer() (the
 * buffer, measured in a JS replica of the same steps), for streaming the wasm memory growth.
 * Prints the time crossover (if any) and the saving per size.
 */
async function benchWebcrypto() {
  const page = await newHarnessPage();
  await page.evaluate(async () => { window.wasm = await window.filesync.load(); });
  const sizes = [64 * 1024, 256 * 1024, MiB, 4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB, 64 * MiB];
  const results = [];
  for (const size of sizes) {
    const runs = size <= MiB ? 15 : size <= 16 * MiB ? 9 : 5;
    const r = await timeout(page.evaluate(async ({ size, runs }) => {
      const pkg = window.filesyncPkg;
      const toHex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
      const paths = {
        webcrypto: async (blob) => toHex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())),
        streaming: async (blob) => {
          const h = new pkg.Sha256Stream();
          const reader = blob.stream().getReader({ mode: 'byob' });
          let buf = new ArrayBuffer(1024 * 1024);
          for (;;) {
            const { value, done } = await reader.read(new Uint8Array(buf));
            if (done) break;
            h.update(value);
            buf = value.buffer;
          }
          return h.finish();
        },
      };
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) bytes[i] = (i * 2654435761) >>> 24;
      const blob = new Blob([bytes]);
      const t = { webcrypto: [], streaming: [] };
      let hex;
      for (let run = 0; run <= runs; run++) {
        for (const path of run % 2 ? ['webcrypto', 'streaming'] : ['streaming', 'webcrypto']) {
          const t0 = performance.now();
          const h = await paths[path](blob);
          const ms = performance.now() - t0;
          if (hex && h !== hex) throw new Error(`the two paths disagree at ${size} B`);
          hex = h;
          if (run > 0) t[path].push(ms);
        }
      }
      // Peak memory of each path.
      window.gc?.();
      const heap0 = performance.memory.usedJSHeapSize;
      const buf = await blob.arrayBuffer();
      const heapPeak = performance.memory.usedJSHeapSize - heap0;
      await crypto.subtle.digest('SHA-256', buf);
      const wasm0 = window.wasm.memory.buffer.byteLength;
      await paths.streaming(blob);
      const wasmGrowth = window.wasm.memory.buffer.byteLength - wasm0;
      return { t, heapPeak: Math.max(heapPeak, buf.byteLength), wasmGrowth };
    }, { size, runs }), 180_000, `webcrypto vs streaming at ${size} B`);
    const w = stats(r.t.webcrypto);
    const st = stats(r.t.streaming);
    const kib = size / 1024;
    const label = kib >= 1024 ? `${kib / 1024}mib` : `${kib}kib`;
    results.push({ size, label, webcrypto: w.median, streaming: st.median, heapPeak: r.heapPeak, wasmGrowth: r.wasmGrowth });
    figure({ key: `hash_webcrypto_${label}_ms`, what: `hash_blob_webcrypto of ${label} (arrayBuffer + digest)`, unit: 'ms', s: w,
      baseline: st.median, ratio: w.median / st.median, note: `baseline: hash_blob_streaming; peak buffer ${fmt(r.heapPeak / MiB)} MiB` });
    figure({ key: `hash_streaming_${label}_ms`, what: `hash_blob_streaming of ${label} (BYOB 1 MiB reads + sha2 in wasm)`, unit: 'ms', s: st,
      note: `wasm memory growth ${fmt(r.wasmGrowth / MiB)} MiB` });
  }
  const faster = results.filter((x) => x.webcrypto < x.streaming).map((x) => x.label);
  const slower = results.filter((x) => x.webcrypto >= x.streaming).map((x) => x.label);
  log(`webcrypto faster at: ${faster.join(', ') || 'none'}; streaming faster or equal at: ${slower.join(', ') || 'none'}`);
  for (const x of results) {
    log(`  ${x.label.padStart(6)}: webcrypto ${fmt(x.webcrypto)} ms (${fmt(x.size / 1e6 / (x.webcrypto / 1000))} MB/s, holds ${fmt(x.heapPeak / MiB)} MiB), ` +
      `streaming ${fmt(x.streaming)} ms (${fmt(x.size / 1e6 / (x.streaming / 1000))} MB/s, wasm memory +${fmt(x.wasmGrowth / MiB)} MiB), saves ${fmt(x.streaming - x.webcrypto)} ms`);
  }
  json.hash_paths = results.map((x) => ({ size: x.size, webcrypto_ms: round(x.webcrypto), streaming_ms: round(x.streaming), webcrypto_peak_mib: round(x.heapPeak / MiB) }));
  await page.close();
}

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function chromiumProcesses() {
  const { processInfo } = await browserCdp.send('SystemInfo.getProcessInfo');
  return processInfo.map((p) => ({ pid: p.id, type: p.type }));
}

async function benchMemory() {
  const size = 512 * MiB;
  const file = path.join(dataDir, 'big-512mib.bin');
  const t0 = performance.now();
  {
    const fh = await open(file, 'w');
    const chunk = randomBytes(8 * MiB);
    for (let o = 0; o < size; o += chunk.length) {
      chunk.writeUInt32LE(o / chunk.length, 0); // every chunk differs
      await fh.write(chunk, 0, chunk.length, o);
    }
    await fh.close();
  }
  log(`wrote ${file} (512 MiB) in ${fmt(performance.now() - t0)} ms`);
  await closeAll();
  const page = await openTab('bench-memory');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  // V8's heap objects alone (JSHeapUsedSize) leave out ArrayBuffer backing stores, where the
  // bytes of stream chunks live; performance.memory.usedJSHeapSize and
  // Runtime.getHeapUsage's usedSize + backingStorageSize count them.
  const cdpHeap = async () => {
    const [{ metrics }, usage] = await Promise.all([
      cdp.send('Performance.getMetrics'),
      cdp.send('Runtime.getHeapUsage'),
    ]);
    return {
      objects: metrics.find((m) => m.name === 'JSHeapUsedSize').value,
      withBuffers: usage.usedSize + (usage.backingStorageSize ?? 0),
    };
  };

  /** Runs `mode` ('save' or 'read') on the picked file while sampling memory every ~50 ms. */
  async function measure(mode) {
    // Unique content per run, changed BEFORE the page gets the file (a disk-backed File
    // becomes unreadable when its file changes after it was picked).
    const fh = await open(file, 'r+');
    await fh.write(randomBytes(16), 0, 16, 0);
    await fh.close();
    await page.setInputFiles('#pick', file);
    const procs = await chromiumProcesses();
    await cdp.send('HeapProfiler.collectGarbage');
    await sleep(100);
    const rss0 = new Map(procs.map((p) => [p.pid, rssKiB(p.pid)]));
    const total0 = [...rss0.values()].reduce((a, b) => a + b, 0);
    const heap0 = await cdpHeap();
    const wasm0 = await page.evaluate(() => window.wasm.memory.buffer.byteLength);
    const peak = { ...heap0 };
    const rssPeak = new Map(rss0);
    let totalPeak = total0;
    let done = false;
    let samples = 0;
    const running = page.evaluate(async (mode) => {
      const samples = [];
      const sample = () => samples.push(performance.memory.usedJSHeapSize);
      sample();
      const timer = setInterval(sample, 50);
      const t0 = performance.now();
      try {
        const f = document.getElementById('pick').files[0];
        let saved = null;
        let chunks = 0;
        let largest = 0;
        if (mode === 'save') {
          saved = await window.fs.saveFile(f);
        } else if (mode === 'byob') {
          // One reusable 1 MiB buffer: the stream fills it instead of allocating chunks.
          const r = f.stream().getReader({ mode: 'byob' });
          let buf = new ArrayBuffer(1024 * 1024);
          for (;;) {
            // One run once never finished: give up on a stalled read (reported, not fatal).
            let stall;
            const c = await Promise.race([
              r.read(new Uint8Array(buf)),
              new Promise((resolve) => { stall = setTimeout(() => resolve({ stalled: true }), 10_000); }),
            ]).finally(() => clearTimeout(stall));
            if (c.stalled) {
              r.cancel().catch(() => {});
              return { stalled: `BYOB read stalled after ${chunks} chunks` };
            }
            if (c.done) break;
            chunks += 1;
            largest = Math.max(largest, c.value.byteLength);
            buf = c.value.buffer;
          }
        } else {
          const r = f.stream().getReader();
          for (let c = await r.read(); !c.done; c = await r.read()) {
            chunks += 1;
            largest = Math.max(largest, c.value.byteLength);
          }
        }
        const ms = performance.now() - t0;
        sample();
        return { ms, size: saved ? saved.size : f.size, id: saved?.id, chunks, largest,
          base: samples[0], peak: Math.max(...samples), n: samples.length, wasm: window.wasm.memory.buffer.byteLength };
      } finally {
        clearInterval(timer);
      }
    }, mode).finally(() => { done = true; });
    const sampler = (async () => {
      while (!done) {
        const h = await cdpHeap().catch(() => peak);
        peak.objects = Math.max(peak.objects, h.objects);
        peak.withBuffers = Math.max(peak.withBuffers, h.withBuffers);
        let total = 0;
        for (const { pid } of procs) {
          const r = rssKiB(pid);
          total += r;
          if (r > (rssPeak.get(pid) ?? 0)) rssPeak.set(pid, r);
        }
        totalPeak = Math.max(totalPeak, total);
        samples += 1;
        await sleep(50);
      }
    })();
    const r = await timeout(running, 120_000, `${mode} of 512 MiB`);
    await sampler;
    if (r.stalled) {
      log(`512 MiB ${mode}: ${r.stalled}; run skipped`);
      return null;
    }
    if (r.size !== size) throw new Error(`${mode}: size ${r.size}, expected ${size}`);
    const renderer = Math.max(0, ...procs.filter((p) => p.type === 'renderer')
      .map((p) => (rssPeak.get(p.pid) - rss0.get(p.pid)) / 1024));
    const browserProc = procs.find((p) => p.type === 'browser');
    const out = {
      ms: r.ms,
      id: r.id,
      pageBase: r.base / MiB,
      pagePeak: r.peak / MiB,
      pageGrowth: (r.peak - r.base) / MiB,
      withBuffersGrowth: (peak.withBuffers - heap0.withBuffers) / MiB,
      objectsGrowth: (peak.objects - heap0.objects) / MiB,
      wasmGrowth: (r.wasm - wasm0) / MiB,
      rendererRss: renderer,
      browserRss: browserProc ? (rssPeak.get(browserProc.pid) - rss0.get(browserProc.pid)) / 1024 : NaN,
      totalRss: (totalPeak - total0) / 1024,
    };
    log(`512 MiB ${mode}: ${fmt(r.ms)} ms; performance.memory ${fmt(out.pageBase)} -> peak ${fmt(out.pagePeak)} MiB ` +
      `(${r.n} in-page samples), CDP heap+buffers growth ${fmt(out.withBuffersGrowth)} MiB, V8 objects only ${fmt(out.objectsGrowth)} MiB ` +
      `(${samples} CDP samples), wasm memory +${fmt(out.wasmGrowth)} MiB; RSS growth: largest renderer ${fmt(out.rendererRss)} MiB, ` +
      `browser process ${fmt(out.browserRss)} MiB, all ${procs.length} processes ${fmt(out.totalRss)} MiB` +
      (mode !== 'save' ? `; ${r.chunks} chunks, largest ${fmt(r.largest / 1024)} KiB` : ''));
    return out;
  }

  const runs = 3;
  const save = [];
  const read = [];
  const byob = [];
  for (let run = 0; run < runs; run++) {
    read.push(await measure('read'));
    const b = await measure('byob');
    if (b) byob.push(b);
    const s = await measure('save');
    save.push(s);
    // Not needed any more; its bytes go once no file uses them.
    await page.evaluate((id) => window.fs.deleteFile(id), s.id);
  }
  const col = (xs, k) => stats(xs.map((x) => x[k]));
  const readGrowth = col(read, 'pageGrowth').median;
  const saveGrowth = col(save, 'pageGrowth');
  figure({
    key: 'save_512mib_heap_growth_mib', what: 'JS heap growth (performance.memory.usedJSHeapSize peak - before, sampled every 50 ms in the page) while saving a 512 MiB disk-backed file',
    unit: 'MiB', s: saveGrowth, baseline: readGrowth, ratio: saveGrowth.median / readGrowth, target: { op: '<=', value: 64 },
    note: 'baseline: the same file read through blob.stream() in JS, chunks discarded',
  });
  if (byob.length) figure({ key: 'read_byob_512mib_heap_growth_mib', what: 'baseline: the same file read with a BYOB reader into one reused 1 MiB buffer, same measure', unit: 'MiB', s: col(byob, 'pageGrowth') });
  figure({ key: 'save_512mib_heap_base_mib', what: 'performance.memory.usedJSHeapSize before the save (after a GC)', unit: 'MiB', s: col(save, 'pageBase') });
  figure({ key: 'save_512mib_heap_peak_mib', what: 'performance.memory.usedJSHeapSize peak during the save', unit: 'MiB', s: col(save, 'pagePeak') });
  figure({ key: 'save_512mib_cdp_heap_buffers_growth_mib', what: 'cross-check from node: CDP Runtime.getHeapUsage usedSize + backingStorageSize, growth', unit: 'MiB', s: col(save, 'withBuffersGrowth'), baseline: col(read, 'withBuffersGrowth').median });
  figure({ key: 'save_512mib_cdp_heap_objects_growth_mib', what: 'CDP Performance.getMetrics JSHeapUsedSize growth (V8 objects only, excludes ArrayBuffer bytes)', unit: 'MiB', s: col(save, 'objectsGrowth'), baseline: col(read, 'objectsGrowth').median });
  figure({ key: 'save_512mib_wasm_memory_growth_mib', what: 'wasm linear memory growth of the tab', unit: 'MiB', s: col(save, 'wasmGrowth') });
  figure({ key: 'save_512mib_renderer_rss_growth_mib', what: 'RSS growth of the renderer process that grew most (/proc VmRSS)', unit: 'MiB', s: col(save, 'rendererRss'), baseline: col(read, 'rendererRss').median });
  figure({ key: 'save_512mib_total_rss_growth_mib', what: 'RSS growth of all Chromium processes together', unit: 'MiB', s: col(save, 'totalRss'), baseline: col(read, 'totalRss').median });
  const mbps = (xs) => stats(xs.map((x) => size / 1e6 / (x.ms / 1000)));
  const readMbps = mbps(read).median;
  const saveMbps = mbps(save);
  figure({ key: 'save_512mib_mbps', what: 'saveFile throughput of the 512 MiB disk-backed file', unit: 'MB/s', s: saveMbps, baseline: readMbps, ratio: saveMbps.median / readMbps, note: 'baseline: blob.stream() read alone' });
  await cdp.detach().catch(() => {});
  await page.close();
  await rm(file, { force: true });
}


/**
 * Cold starts of `store` (holding `n` files): every tab closed, the hub's SharedWorker gone, then
 * a fresh tab loads the wasm and opens the store. One warm-up, then `runs` timed; the last tab
 * stays open.
 */
/**
 * Timed cold starts of `store` (n files). `view`: whether the hub's files view is there, as after
 * normal use (each run waits until the hub saved it again before the next), or deleted first, as
 * after a crash between a change and the view's save (every start then loads the tables first).
 */
async function coldStarts(store, n, { runs = 3, view = true } = {}) {
  const cold = { total: [], load: [], open: [], sinceNav: [], hubGone: [], loaded: [] };
  for (let run = 0; run <= runs; run++) {
    await closeAll();
    const gone = await waitForHubGone();
    await sleep(300);
    if (await hubRunning()) throw new Error('a hub started again with no tab open');
    const page = await newHarnessPage();
    // BENCH_BROWSER_CPU_PROFILE: CPU profiles of the tab and of the hub's SharedWorker during
    // the last timed cold start of a store with files (not timed differently: the profiler adds
    // some overhead to that run).
    const profiling = CPU_PROFILE_DIR && n > 0 && run === runs ? await startCpuProfiles(page) : null;
    const r = await timeout(page.evaluate(async ({ store, n, view }) => {
      const req = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
      const viewStore = async (mode, step) => {
        const db = await req(indexedDB.open(`filesync:${store}`));
        try {
          if (!db.objectStoreNames.contains('view')) return undefined;
          return await req(step(db.transaction('view', mode).objectStore('view')));
        } finally {
          db.close();
        }
      };
      if (!view) await viewStore('readwrite', (os) => os.delete('snapshot'));
      const t0 = performance.now();
      window.wasm = await window.filesync.load();
      const tLoad = performance.now();
      const fs = await window.filesync.openFileSync({ storeId: store });
      const tOpen = performance.now();
      const atOpen = fs.getFiles().length;
      const tFirstGet = performance.now();
      if (atOpen !== n) {
        await new Promise((resolve) => {
          const un = fs.subscribe(() => {
            if (fs.getFiles().length === n) {
              un();
              resolve();
            }
          });
        });
      }
      const tReady = performance.now();
      window.fs = fs;
      await fs.whenLoaded();
      const tLoaded = performance.now();
      // The hub saves its files view a moment after it loaded: wait for it (the next run's).
      for (let i = 0; view && n > 0 && i < 1000; i++) {
        if (typeof (await viewStore('readonly', (os) => os.get('snapshot'))) === 'string') break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return { total: tReady - t0, load: tLoad - t0, open: tOpen - tLoad, firstGet: tFirstGet - tOpen, atOpen,
        wait: tReady - tFirstGet, sinceNav: tReady, count: fs.getFiles().length, loaded: tLoaded - t0 };
    }, { store, n, view }), 60_000, 'cold start');
    log(`cold start (${n} files${view ? '' : ', no view'}) ${run === 0 ? 'warm-up' : `${run}/${runs}`}: ${fmt(r.total)} ms (wasm load in page ${fmt(r.load)} ms, ` +
      `openFileSync ${fmt(r.open)} ms with ${r.atOpen} files, first getFiles() ${fmt(r.firstGet)} ms, then waited ${fmt(r.wait)} ms for ${r.count}; ` +
      `${fmt(r.sinceNav)} ms since navigation start; state loaded at ${fmt(r.loaded)} ms; hub gone ${fmt(gone)} ms after the last tab closed)`);
    if (profiling) await stopCpuProfiles(profiling, `cold-${n}`);
    if (run === 0) continue;
    for (const k of Object.keys(cold)) cold[k].push(k === 'hubGone' ? gone : r[k]);
  }
  return cold;
}

/**
 * Starts the CDP sampling profiler in `page` now, and in the hub's SharedWorker as soon as it
 * appears (attached through the browser session; it misses the worker's first milliseconds).
 */
async function startCpuProfiles(page) {
  const tab = await context.newCDPSession(page);
  await tab.send('Profiler.enable');
  await tab.send('Profiler.setSamplingInterval', { interval: 100 });
  await tab.send('Profiler.start');
  const hub = { sessionId: null, nextId: 1, waiting: new Map() };
  hub.onMessage = ({ sessionId, message }) => {
    if (sessionId !== hub.sessionId) return;
    const m = JSON.parse(message);
    const w = hub.waiting.get(m.id);
    if (w) {
      hub.waiting.delete(m.id);
      if (m.error) w.reject(new Error(m.error.message));
      else w.resolve(m.result);
    }
  };
  hub.send = (method, params = {}) => new Promise((resolve, reject) => {
    const id = hub.nextId++;
    hub.waiting.set(id, { resolve, reject });
    browserCdp.send('Target.sendMessageToTarget', { sessionId: hub.sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
  });
  hub.attached = new Promise((resolve) => {
    hub.onCreated = async ({ targetInfo: t }) => {
      if (hub.sessionId || t.type !== 'shared_worker' || !t.url.endsWith('/filesync-worker.js')) return;
      hub.sessionId = 'pending';
      const { sessionId } = await browserCdp.send('Target.attachToTarget', { targetId: t.targetId, flatten: false });
      hub.sessionId = sessionId;
      await hub.send('Profiler.enable');
      await hub.send('Profiler.setSamplingInterval', { interval: 100 });
      await hub.send('Profiler.start');
      hub.startedAt = performance.now();
      resolve();
    };
  });
  browserCdp.on('Target.receivedMessageFromTarget', hub.onMessage);
  browserCdp.on('Target.targetCreated', hub.onCreated);
  await browserCdp.send('Target.setDiscoverTargets', { discover: true });
  return { tab, hub };
}

/** Stops both profiles, writes them to CPU_PROFILE_DIR and logs where the time went. */
async function stopCpuProfiles({ tab, hub }, name) {
  await timeout(hub.attached, 10_000, 'attaching to the hub worker');
  const profiles = {
    tab: (await tab.send('Profiler.stop')).profile,
    hub: (await hub.send('Profiler.stop')).profile,
  };
  browserCdp.off('Target.receivedMessageFromTarget', hub.onMessage);
  browserCdp.off('Target.targetCreated', hub.onCreated);
  await browserCdp.send('Target.setDiscoverTargets', { discover: false });
  await browserCdp.send('Target.detachFromTarget', { sessionId: hub.sessionId }).catch(() => {});
  await tab.detach().catch(() => {});
  for (const [who, p] of Object.entries(profiles)) {
    const file = path.join(CPU_PROFILE_DIR, `${name}-${who}.cpuprofile`);
    await writeFile(file, JSON.stringify(p));
    log(`CPU profile of the ${who} written to ${file}; where its time went:`);
    for (const line of summarizeProfile(p)) log(`  ${who}: ${line}`);
  }
}

/** Self time by function (top 25) of a CDP profile, as lines. */
function summarizeProfile(p) {
  const byNode = new Map(p.nodes.map((node) => [node.id, node]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    total += dt;
    const f = byNode.get(p.samples[i]).callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
  return [`total ${fmt(total)} ms`, ...top.map(([k, ms]) => `${fmt(ms).padStart(8)} ms ${(100 * ms / total).toFixed(1).padStart(5)}%  ${k}`)];
}

// ---------------------------------------------------------------------------------------------
// 3. 10,000 small files: saving them, then a cold start of the store

/** Saves `n` small files in the store of `page` (window.fs), with its figures and baseline. */
async function saveSmallFiles(page, n) {
  const batch = 1000;
  const concurrency = 16;
  // Baseline: what the byte store does per small file, done directly (temp file,
  // createWritable, write, close, move into blobs/), with the same concurrency; no hashing,
  // no IndexedDB.
  const opfsRate = await timeout(page.evaluate(async ({ count, concurrency }) => {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle('bench-small', { create: true });
    const tmp = await dir.getDirectoryHandle('tmp', { create: true });
    const blobs = await dir.getDirectoryHandle('blobs', { create: true });
    let next = 0;
    const t0 = performance.now();
    const worker = async () => {
      for (let i = next++; i < count; i = next++) {
        const size = 2048 + (i % 2048);
        const body = new Uint8Array(size).fill(i & 255);
        const f = new File([body], `s-${i}.bin`);
        const h = await tmp.getFileHandle(`t-${i}`, { create: true });
        const w = await h.createWritable();
        await w.write(await f.arrayBuffer());
        await w.close();
        await h.move(blobs, `b-${i}`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const ms = performance.now() - t0;
    await root.removeEntry('bench-small', { recursive: true });
    return count / (ms / 1000);
  }, { count: 1000, concurrency }), 120_000, 'OPFS small-file baseline');
  const t0 = performance.now();
  const rates = [];
  for (let from = 0; from < n; from += batch) {
    const count = Math.min(batch, n - from);
    const ms = await timeout(page.evaluate(async ({ from, count, concurrency }) => {
      const fs = window.fs;
      let next = from;
      const end = from + count;
      const t0 = performance.now();
      const worker = async () => {
        for (let i = next++; i < end; i = next++) {
          const size = 2048 + (i % 2048); // 2-4 KB
          const body = new Uint8Array(size).fill(i & 255);
          new DataView(body.buffer).setUint32(0, i);
          await fs.saveFile(new File([body], `small-${i}.bin`, { type: 'application/octet-stream' }), { metadata: { i } });
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      return performance.now() - t0;
    }, { from, count, concurrency }), 240_000, `saving files ${from}..${from + count}`);
    rates.push(count / (ms / 1000));
    log(`saved ${from + count}/${n} small files; this batch of ${count}: ${fmt(count / (ms / 1000))} files/s`);
  }
  const totalS = (performance.now() - t0) / 1000;
  figure({
    key: 'save_small_files_per_s', what: `saveFile of ${n} files of 2-4 KB, ${concurrency} at a time (whole run, incl. driver overhead)`, unit: 'files/s', s: one(n / totalS),
    baseline: opfsRate, ratio: n / totalS / opfsRate, note: `${fmt(totalS)} s; baseline: 1000 plain OPFS temp-write-move of the same sizes, ${concurrency} at a time`,
  });
  figure({ key: 'save_small_first_batch_per_s', what: `same, first batch of ${batch} (empty store)`, unit: 'files/s', s: one(rates[0]) });
  figure({ key: 'save_small_last_batch_per_s', what: `same, last batch (store holds ${n - batch}+ files)`, unit: 'files/s', s: one(rates.at(-1)) });
}

async function benchCold() {
  const store = 'bench-cold';
  const n = SMALL_FILES;
  // The fixed part of a cold start: an empty store (after one open created it).
  await closeAll();
  await (await openTab(`${store}-empty`)).close();
  const empty = await coldStarts(`${store}-empty`, 0);
  await closeAll();
  let page = await openTab(store);
  const held = await page.evaluate(() => window.fs.getFiles().length);
  if (held === n && USER_DATA) {
    log(`the store in ${USER_DATA} already holds ${n} files: not saving them again`);
  } else {
    await saveSmallFiles(page, n);
  }
  const warm = await page.evaluate((n) => {

    const ts = [];
    let count = 0;
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      count = window.fs.getFiles().length;
      ts.push(performance.now() - t0);
    }
    return { ts: ts.slice(1), count };
  }, n);
  if (warm.count !== n) throw new Error(`the store holds ${warm.count} files, expected ${n}`);
  figure({ key: 'get_files_10k_ms', what: `getFiles() of ${n} files in a tab (sync read of the replica)`, unit: 'ms', s: stats(warm.ts) });

  // Cold starts: close every tab, wait for the hub's SharedWorker to go, open a fresh tab.
  const cold = await coldStarts(store, n);
  const noView = await coldStarts(store, n, { view: false });
  page = context.pages()[0];
  // Baselines, in a page with no hub running: what the hub's start reads, done directly.
  await closeAll();
  await waitForHubGone();
  page = await newHarnessPage();
  const raw = { idb: [], opfs: [] };
  let records;
  let entries;
  for (let i = 0; i <= 3; i++) {
    const r = await timeout(page.evaluate(async (store) => {
      const req = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
      const t0 = performance.now();
      const db = await req(indexedDB.open(`filesync:${store}`));
      // The tables (the files view is a cache, read alone first).
      const names = [...db.objectStoreNames].filter((n) => n !== 'view');
      const tx = db.transaction(names, 'readonly');
      const all = await Promise.all(names.flatMap((n) => [req(tx.objectStore(n).getAllKeys()), req(tx.objectStore(n).getAll())]));
      const idb = performance.now() - t0;
      db.close();
      const records = Object.fromEntries(names.map((n, i) => [n, all[2 * i].length]));
      const t1 = performance.now();
      const root = await navigator.storage.getDirectory();
      const blobs = await (await (await root.getDirectoryHandle('filesync')).getDirectoryHandle(store)).getDirectoryHandle('blobs');
      let entries = 0;
      for await (const _ of blobs.keys()) entries += 1;
      return { idb, records, opfs: performance.now() - t1, entries };
    }, store), 60_000, 'raw reads');
    if (i === 0) continue;
    raw.idb.push(r.idb);
    raw.opfs.push(r.opfs);
    records = r.records;
    entries = r.entries;
  }
  await page.close();
  const idbMedian = median(raw.idb);
  const recs = Object.entries(records).map(([k, v]) => `${k} ${v}`).join(', ');
  figure({ key: 'cold_start_10k_ms', what: `cold start: page loaded -> load() + openFileSync resolved with getFiles().length === ${n} (fresh hub; the files view the last hub saved shows first)`, unit: 'ms', s: stats(cold.total), target: { op: '<', value: 300 },
    baseline: idbMedian, ratio: median(cold.total) / idbMedian, note: 'baseline: idb_read_10k_ms' });
  figure({ key: 'cold_start_empty_ms', what: 'the same cold start of an empty store (the fixed part)', unit: 'ms', s: stats(empty.total) });
  figure({ key: 'cold_start_empty_open_ms', what: 'of which openFileSync (hub worker start with its own wasm load, empty IndexedDB, OPFS)', unit: 'ms', s: stats(empty.open) });
  figure({ key: 'cold_start_10k_wasm_load_ms', what: 'part of it: load() (wasm fetch + compile in the page)', unit: 'ms', s: stats(cold.load) });
  figure({ key: 'cold_start_10k_open_ms', what: 'part of it: openFileSync (hub worker start, files view read, snapshot)', unit: 'ms', s: stats(cold.open) });
  figure({ key: 'cold_start_10k_loaded_ms', what: 'page loaded -> whenLoaded() resolved (the hub loaded every table; the state replaces the view)', unit: 'ms', s: stats(cold.loaded) });
  figure({ key: 'cold_start_10k_no_view_ms', what: 'cold start with the files view deleted first (a crash between a change and its save): the tables load first', unit: 'ms', s: stats(noView.total),
    target: { op: '<', value: 300 }, baseline: idbMedian, ratio: median(noView.total) / idbMedian, note: 'baseline: idb_read_10k_ms' });
  figure({ key: 'cold_start_10k_after_open_ms', what: 'part of it: after openFileSync resolved, until getFiles().length === n (incl. one getFiles())', unit: 'ms', s: stats(cold.total.map((t, i) => t - cold.load[i] - cold.open[i])) });
  figure({ key: 'cold_start_10k_since_nav_ms', what: 'navigation start -> ready (incl. HTML and module loading)', unit: 'ms', s: stats(cold.sinceNav) });
  figure({ key: 'idb_read_10k_ms', what: `baseline: open the store's IndexedDB and getAllKeys+getAll of every object store in one transaction (${recs}), in a page with no hub`, unit: 'ms', s: stats(raw.idb) });
  figure({ key: 'opfs_list_10k_ms', what: `baseline: list the store's OPFS blobs/ directory (${entries} entries, for await of keys()), in a page with no hub`, unit: 'ms', s: stats(raw.opfs) });

  // A second tab while the hub runs: the snapshot transfer without the hub's start.
  page = await openTab(store);
  const warmOpen = [];
  for (let i = 0; i <= 3; i++) {
    const p = await newHarnessPage();
    const ms = await timeout(p.evaluate(async (store) => {
      await window.filesync.load();
      const t0 = performance.now();
      const fs = await window.filesync.openFileSync({ storeId: store });
      const ms = performance.now() - t0;
      fs.getFiles();
      fs.dispose();
      return ms;
    }, store), 30_000, 'warm open');
    await p.close();
    if (i > 0) warmOpen.push(ms);
  }
  figure({ key: 'warm_open_10k_ms', what: `openFileSync in another tab while the hub runs (${n} files, wasm already loaded)`, unit: 'ms', s: stats(warmOpen) });
  await closeAll();
}

// ---------------------------------------------------------------------------------------------
// 4. A commit in tab A seen in tab B

async function benchCommit() {
  await closeAll();
  const store = 'bench-commit';
  const a = await openTab(store);
  const b = await openTab(store);
  const install = () => {
    window.seen = [];
    let known = window.fs.getFiles().length;
    window.fs.subscribe(() => {
      const t = performance.timeOrigin + performance.now();
      const m = window.fs.getFiles().length;
      if (m > known) {
        known = m;
        window.seen.push(t);
      }
    });
  };
  await a.evaluate(install);
  await b.evaluate(install);
  const offA = await clockOffset(a);
  const offB = await clockOffset(b);
  const skew = offA.offset - offB.offset; // clockA - clockB
  log(`clocks: tab A - node ${fmt(offA.offset)} ms (rtt ${fmt(offA.rtt)}), tab B - node ${fmt(offB.offset)} ms (rtt ${fmt(offB.rtt)}); A - B ~ ${fmt(skew)} ms`);
  const warm = 5;
  const rounds = 50;
  const visible = [];
  const own = [];
  const call = [];
  for (let i = 0; i < warm + rounds; i++) {
    const r = await a.evaluate(async (i) => {
      const f = new File([`tiny ${i} ${Math.random()}`], `tiny-${i}.txt`, { type: 'text/plain' });
      const t0 = performance.timeOrigin + performance.now();
      await window.fs.saveFile(f);
      return { t0, t1: performance.timeOrigin + performance.now() };
    }, i);
    await b.waitForFunction((n) => window.seen.length >= n, i + 1, { timeout: 10_000, polling: 5 });
    const [tB, tA] = await Promise.all([
      b.evaluate((i) => window.seen[i], i),
      a.evaluate((i) => window.seen[i], i),
    ]);
    if (i < warm) continue;
    visible.push(tB - r.t0);
    own.push(tA - r.t0);
    call.push(r.t1 - r.t0);
  }
  // Baseline: the least a durable cross-tab commit costs without the library: one IndexedDB
  // readwrite transaction of a small record in tab A, then a BroadcastChannel message to B.
  await b.evaluate(() => {
    window.rawSeen = [];
    window.rawChannel = new BroadcastChannel('bench-raw-commit');
    window.rawChannel.onmessage = () => window.rawSeen.push(performance.timeOrigin + performance.now());
  });
  await a.evaluate(async () => {
    const req = (r) => new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
    const open = indexedDB.open('bench-raw-commit', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('rows');
    window.rawDb = await req(open);
    window.rawChannel = new BroadcastChannel('bench-raw-commit');
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle('bench-raw-commit', { create: true });
    window.rawTmp = await dir.getDirectoryHandle('tmp', { create: true });
    window.rawBlobs = await dir.getDirectoryHandle('blobs', { create: true });
  });
  const raw = [];
  const rawOpfs = [];
  for (let i = 0; i < 2 * (warm + rounds); i++) {
    const withOpfs = i % 2 === 1;
    const t0 = await a.evaluate(async ({ i, withOpfs }) => {
      const t0 = performance.timeOrigin + performance.now();
      if (withOpfs) {
        // The byte store's steps for a tiny file: temp file, write, close, move into blobs/.
        const bytes = new TextEncoder().encode(`tiny ${i} ${Math.random()}`);
        const h = await window.rawTmp.getFileHandle(`t-${i}`, { create: true });
        const w = await h.createWritable();
        await w.write(bytes);
        await w.close();
        await h.move(window.rawBlobs, `b-${i}`);
      }
      const tx = window.rawDb.transaction('rows', 'readwrite');
      tx.objectStore('rows').put({ id: `r-${i}`, path: `tiny-${i}.txt`, contentHash: 'x'.repeat(64), size: 20, at: Date.now() }, `r-${i}`);
      await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
      window.rawChannel.postMessage({ i });
      return t0;
    }, { i, withOpfs });
    await b.waitForFunction((n) => window.rawSeen.length >= n, i + 1, { timeout: 10_000, polling: 5 });
    const tB = await b.evaluate((i) => window.rawSeen[i], i);
    if (i >= 2 * warm) (withOpfs ? rawOpfs : raw).push(tB - t0);
  }
  await a.evaluate(async () => (await navigator.storage.getDirectory()).removeEntry('bench-raw-commit', { recursive: true }));
  const rawMedian = median(rawOpfs);
  figure({
    key: 'commit_visible_other_tab_ms', what: 'saveFile start in tab A -> tab B\'s subscriber sees the file (tiny file)', unit: 'ms', s: stats(visible), target: { op: '<', value: 10 },
    baseline: rawMedian, ratio: median(visible) / rawMedian, note: `uncorrected clocks, estimated skew A - B ${fmt(skew)} ms; baseline: raw_commit_opfs_visible_ms`,
  });
  figure({ key: 'raw_commit_opfs_visible_ms', what: 'baseline: in A, OPFS temp file + createWritable/write/close + move, then one IndexedDB readwrite transaction, then BroadcastChannel -> B\'s onmessage', unit: 'ms', s: stats(rawOpfs) });
  figure({ key: 'raw_commit_visible_ms', what: 'baseline: the same without OPFS (IndexedDB transaction + BroadcastChannel)', unit: 'ms', s: stats(raw) });
  figure({ key: 'commit_visible_same_tab_ms', what: 'same, tab A\'s own subscriber (one clock)', unit: 'ms', s: stats(own) });
  figure({ key: 'save_tiny_call_ms', what: 'saveFile call time of the tiny file (start -> promise resolved)', unit: 'ms', s: stats(call) });
  json.commit_clock_skew_ms = round(skew);
  await a.close();
  await b.close();
}

// ---------------------------------------------------------------------------------------------
// 5. Leader failover after the leader tab closes

async function benchFailover() {
  await closeAll();
  const store = 'bench-failover';
  const install = () => {
    window.leaderLog = [];
    let last = window.fs.leaderTabId();
    window.fs.subscribe(() => {
      const id = window.fs.leaderTabId();
      if (id !== last) {
        last = id;
        window.leaderLog.push({ id, t: performance.timeOrigin + performance.now() });
      }
    });
  };
  const tabs = [];
  const addTab = async () => {
    const p = await openTab(store);
    await p.evaluate(install);
    const off = await clockOffset(p);
    const id = await p.evaluate(() => window.fs.tabId());
    tabs.push({ page: p, id, offset: off.offset });
  };
  for (let i = 0; i < 3; i++) await addTab();
  const warm = 1;
  const rounds = 10;
  const failover = [];
  const undefinedGap = [];
  for (let round = 0; round < warm + rounds; round++) {
    // The current leader, as every tab sees it.
    await tabs[0].page.waitForFunction(() => window.fs.leaderTabId() !== undefined, null, { timeout: 10_000 });
    const leaderId = await tabs[0].page.evaluate(() => window.fs.leaderTabId());
    const index = tabs.findIndex((t) => t.id === leaderId);
    if (index < 0) throw new Error(`leader ${leaderId} is none of the open tabs`);
    const flags = await Promise.all(tabs.map((t) => t.page.evaluate(() => window.fs.isLeader())));
    if (flags.filter(Boolean).length !== 1) throw new Error(`leaders among the tabs: ${flags}`);
    const [closing] = tabs.splice(index, 1);
    const logLen = await Promise.all(tabs.map((t) => t.page.evaluate(() => window.leaderLog.length)));
    const t0 = nodeNow();
    await closing.page.close();
    await Promise.all(tabs.map((t) => t.page.waitForFunction((old) => {
      const id = window.fs.leaderTabId();
      return id !== undefined && id !== old;
    }, leaderId, { timeout: 10_000, polling: 5 })));
    // Earliest moment a surviving tab learned the new leader, in node's clock.
    let first = Infinity;
    let gap;
    for (const [i, t] of tabs.entries()) {
      const entries = await t.page.evaluate((from) => window.leaderLog.slice(from), logLen[i]);
      const gained = entries.find((e) => e.id !== undefined && e.id !== leaderId);
      if (gained) first = Math.min(first, gained.t - t.offset);
      const cleared = entries.find((e) => e.id === undefined);
      if (cleared && gained) gap = gained.t - cleared.t;
    }
    const ms = first - t0;
    log(`failover ${round < warm ? 'warm-up' : `${round - warm + 1}/${rounds}`}: ${fmt(ms)} ms` + (gap !== undefined ? ` (no leader for ${fmt(gap)} ms)` : ''));
    if (round >= warm) {
      failover.push(ms);
      if (gap !== undefined) undefinedGap.push(gap);
    }
    await addTab();
    await sleep(100);
  }
  for (const t of tabs) await t.page.close();
  tabs.length = 0;
  // Baseline: the same with a bare Web Lock (no library): 3 tabs request one exclusive lock
  // and hold it forever; the holder's tab is closed; when is the lock granted to another?
  const rawTabs = [];
  const addRaw = async () => {
    const p = await newHarnessPage();
    await p.evaluate(() => {
      window.grantedAt = undefined;
      navigator.locks.request('bench-raw-leader', () => {
        window.grantedAt = performance.timeOrigin + performance.now();
        return new Promise(() => {});
      });
    });
    const off = await clockOffset(p);
    rawTabs.push({ page: p, offset: off.offset });
  };
  for (let i = 0; i < 3; i++) await addRaw();
  const rawFailover = [];
  for (let round = 0; round < warm + rounds; round++) {
    let holder = -1;
    const t1 = performance.now();
    while (holder < 0) {
      const granted = await Promise.all(rawTabs.map((t) => t.page.evaluate(() => window.grantedAt !== undefined)));
      holder = granted.indexOf(true);
      if (holder < 0) {
        if (performance.now() - t1 > 10_000) throw new Error('no tab holds the raw lock');
        await sleep(10);
      }
    }
    const [closing] = rawTabs.splice(holder, 1);
    const t0 = nodeNow();
    await closing.page.close();
    await Promise.race(rawTabs.map((t) => t.page.waitForFunction(() => window.grantedAt !== undefined, null, { timeout: 10_000, polling: 5 })));
    const times = await Promise.all(rawTabs.map(async (t) => (await t.page.evaluate(() => window.grantedAt)) - t.offset));
    const ms = Math.min(...times.filter((x) => Number.isFinite(x))) - t0;
    if (round >= warm) rawFailover.push(ms);
    await addRaw();
    await sleep(100);
  }
  for (const t of rawTabs) await t.page.close();
  const rawMedian = median(rawFailover);
  figure({
    key: 'leader_failover_ms', what: 'leader tab page.close() called -> another tab reports the new leader (3 tabs)', unit: 'ms', s: stats(failover), target: { op: '<', value: 100 },
    baseline: rawMedian, ratio: median(failover) / rawMedian, note: 'baseline: a bare Web Lock handed over the same way',
  });
  figure({ key: 'raw_lock_failover_ms', what: 'baseline: bare navigator.locks exclusive lock, holder tab closed -> granted in another tab (3 tabs)', unit: 'ms', s: stats(rawFailover) });
  if (undefinedGap.length) figure({ key: 'leader_none_ms', what: 'of which: tabs saw no leader (leaderTabId() undefined) for', unit: 'ms', s: stats(undefinedGap) });
}

// ---------------------------------------------------------------------------------------------
// 6. Bundle size

async function benchBundle() {
  const files = ['pkg/filesync_bg.wasm', 'pkg/filesync.js', 'index.js', 'filesync-worker.js'];
  // Snippets the glue imports (wasm-bindgen inline JS).
  const glue = await readFile(path.join(WWW, 'pkg/filesync.js'), 'utf8');
  for (const m of glue.matchAll(/from\s*['"]\.\/(snippets\/[^'"]+)['"]/g)) {
    if (!files.includes(`pkg/${m[1]}`)) files.push(`pkg/${m[1]}`);
  }
  let raw = 0;
  let gz = 0;
  let br = 0;
  for (const f of files) {
    const data = await readFile(path.join(WWW, f));
    const g = gzipSync(data, { level: 9 }).length;
    const b = brotliCompressSync(data, { params: { [zc.BROTLI_PARAM_QUALITY]: 11 } }).length;
    raw += data.length;
    gz += g;
    br += b;
    const key = `bundle_${f.replace(/^pkg\//, '').replace(/^snippets\/.*\//, 'snippet_').replace(/[^a-z0-9]+/gi, '_')}`;
    log(`${f}: ${data.length} B raw, ${g} B gzip -9, ${b} B brotli`);
    json[`${key}_raw_bytes`] = data.length;
    json[`${key}_gzip_bytes`] = g;
  }
  figure({ key: 'bundle_gzip_kb', what: `gzip -9 of ${files.join(', ')}`, unit: 'KB', s: one(gz / 1000), target: { op: '<=', value: 320 } });
  figure({ key: 'bundle_raw_kb', what: 'same, uncompressed', unit: 'KB', s: one(raw / 1000) });
  figure({ key: 'bundle_brotli_kb', what: 'same, brotli 11', unit: 'KB', s: one(br / 1000) });
}

// ---------------------------------------------------------------------------------------------

function printTable() {
  const head = ['figure', 'median', 'unit', 'min', 'max', 'n', 'baseline', 'ratio', 'target', 'status'];
  const body = rows.map((r) => [
    r.key, fmt(r.s.median), r.unit, r.s.n > 1 ? fmt(r.s.min) : '', r.s.n > 1 ? fmt(r.s.max) : '', String(r.s.n),
    r.baseline !== undefined ? fmt(r.baseline) : '', r.ratio !== undefined ? `${fmt(r.ratio)}x` : '',
    r.target ? `${r.target.op} ${r.target.value}` : '', r.status,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 || i === 2 || i >= 8 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log('\n' + line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of body) console.log(line(row));
  console.log('\nWhat each figure is:');
  for (const r of rows) console.log(`  ${r.key}: ${r.what}${r.note ? ` [${r.note}]` : ''}`);
  console.log('Targets are the issue\'s, shown for information only; MB = 10^6 bytes, MiB = 2^20.');
}

const failures = [];
const t0 = performance.now();
try {
  await start();
  const runners = { hash: benchHash, webcrypto: benchWebcrypto, memory: benchMemory, cold: benchCold, commit: benchCommit, failover: benchFailover, bundle: benchBundle };
  for (const name of SECTIONS) {
    if (only.length && !only.includes(name)) continue;
    const ts = performance.now();
    log(`---- ${name}`);
    try {
      await runners[name]();
    } catch (e) {
      failures.push(`${name}: ${e?.stack ?? e}`);
      console.error(`bench-browser: section ${name} FAILED: ${e?.stack ?? e}`);
      await closeAll().catch(() => {});
    }
    log(`---- ${name}: ${fmt((performance.now() - ts) / 1000)} s`);
  }
} catch (e) {
  failures.push(`setup: ${e?.stack ?? e}`);
  console.error(`bench-browser: FAILED: ${e?.stack ?? e}`);
} finally {
  await cleanup();
}
printTable();
if (pageErrors.length) console.log(`page errors: ${pageErrors.length} (first: ${pageErrors[0]})`);
json.total_s = round((performance.now() - t0) / 1000, 1);
json.loadavg_end = round(loadavg()[0]);
if (failures.length) json.failed_sections = failures.map((f) => f.split(':')[0]);
console.log(JSON.stringify(json));
clearTimeout(watchdog);
process.exit(failures.length ? 1 : 0);
