// The npm package as users get it. Run by scripts/test.sh after the build (www/pkg must exist):
//   node --test tests/package/
//
// `npm pack`s the repository, installs the tarball into a throwaway consumer in a temp dir, and
// checks that
//   - the tarball holds the library (entry, types, SharedWorker script, wasm glue and snippets,
//     wasm) and nothing of the demo, the tests or the sources;
//   - a TypeScript consumer (consumer.ts) type-checks against the installed package, with both
//     `bundler` and `nodenext` resolution, and the public types contain no `any`;
//   - an app built by Vite (the repo's own vite, with `root` set to the consumer), an app built
//     by webpack 5 (its Node API, production mode, no loader or plugin configured) and a plain
//     page without a bundler (an import map into node_modules) each save a file in one tab and
//     read it back (name, type, bytes) in another, through the hub's SharedWorker, with every
//     asset served from where the loader said (no 404s); so does the app on Vite's dev server
//     (default config: the package goes through the dependency optimizer);
//   - a Next.js app (a client component importing the package, prerendered on the server)
//     built with Turbopack and with webpack does the same under `next start`, large saves
//     hashed in the worker chunk, and on `next dev`;
//   - `wasmUrl` overrides where both the tab and the hub worker load the wasm from.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { cp, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { build, createServer } from 'vite';
import webpack from 'webpack';
import { createStaticServer } from '../../scripts/serve.mjs';
import { launchProfile } from '../e2e/chromium.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
// npm reads the environment; keep it quiet and away from the network where it can.
const NPM_ENV = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
let NEXT_BIN;

let work, consumer, pkgDir, packed, context, cdp;
const servers = [];
const nextServers = [];
let viteDev;

/** Serves `root` on a free loopback port; `log` collects `[status, path]` of every request. */
async function serve(root) {
  const server = await createStaticServer(root);
  const log = [];
  server.prependListener('request', (req, res) => {
    res.on('finish', () => log.push([res.statusCode, req.url]));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { base: `http://127.0.0.1:${server.address().port}`, log };
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'filesync-package-'));
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
    cwd: repo,
    env: NPM_ENV,
  });
  [packed] = JSON.parse(stdout);
  const tarball = path.join(work, packed.filename);

  consumer = path.join(work, 'consumer');
  await mkdir(consumer);
  // Next.js and React at the versions the repository pins (installed by setup, so in npm's
  // cache): the Next.js app below is built inside the consumer.
  const pinned = JSON.parse(await readFile(path.join(repo, 'package.json'), 'utf8')).devDependencies;
  const next = Object.fromEntries(['next', 'react', 'react-dom'].map((name) => [name, pinned[name]]));
  await writeFile(
    path.join(consumer, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { 'filesync-wasm': `file:${tarball}`, ...next } }),
  );
  // The package has no dependencies; the others come from npm's cache.
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts'], {
    cwd: consumer,
    env: NPM_ENV,
  });
  pkgDir = path.join(consumer, 'node_modules', 'filesync-wasm');
  NEXT_BIN = path.join(consumer, 'node_modules', 'next', 'dist', 'bin', 'next');
  await cp(path.join(here, 'vite-app'), path.join(consumer, 'vite-app'), { recursive: true });
  await cp(path.join(here, 'webpack-app'), path.join(consumer, 'webpack-app'), { recursive: true });
  await cp(path.join(here, 'static'), path.join(consumer, 'static'), { recursive: true });
  await cp(path.join(here, 'next-app'), path.join(consumer, 'next-app'), { recursive: true });

  context = await launchProfile(path.join(work, 'profile'));
  cdp = await context.browser().newBrowserCDPSession();
});

after(async () => {
  await context?.close();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await viteDev?.close();
  for (const child of nextServers) child.kill();
  if (work) await rm(work, { recursive: true, force: true });
});

test('the tarball holds the library and nothing else', async () => {
  const files = packed.files.map((f) => f.path).sort();
  const snippets = files.filter((f) => f.startsWith('www/pkg/snippets/'));
  assert.ok(snippets.length > 0, 'the wasm glue imports its snippets: they must be packed');
  assert.ok(snippets.every((f) => /^www\/pkg\/snippets\/[^/]+\/.+\.js$/.test(f)), `snippets: ${snippets}`);
  // The glue imports exactly the snippets that are packed.
  const glue = await readFile(path.join(repo, 'www/pkg/filesync.js'), 'utf8');
  const imported = new Set([...glue.matchAll(/from\s*['"]\.\/(snippets\/[^'"]+)['"]/g)].map((m) => `www/pkg/${m[1]}`));
  assert.deepEqual([...imported].sort(), snippets);
  assert.deepEqual(
    files.filter((f) => !f.startsWith('www/pkg/snippets/')),
    [
      'README.md',
      'package.json',
      'www/filesync-worker.js',
      'www/index.d.ts',
      'www/index.js',
      'www/pkg/filesync.js',
      'www/pkg/filesync_bg.wasm',
    ],
  );

  const manifest = JSON.parse(await readFile(path.join(pkgDir, 'package.json'), 'utf8'));
  assert.equal(manifest.name, 'filesync-wasm');
  assert.equal(manifest.type, 'module');
  const main = manifest.exports['.'];
  assert.equal(Object.keys(main)[0], 'types', 'the types condition must come first');
  assert.equal(main.types, manifest.types);
  // Every export target is in the package.
  const targets = Object.values(manifest.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)));
  for (const t of targets) assert.ok(files.includes(t.replace(/^\.\//, '')), `export target ${t} is packed`);
  assert.ok(Array.isArray(manifest.sideEffects) && manifest.sideEffects.includes('./www/filesync-worker.js'));
});

test('outside a browser (server-side rendering) the package imports, and opening a store fails clearly', async () => {
  // The consumer's own Node resolves the installed package, as a framework's server would.
  const script = `
    const m = await import('filesync-wasm');
    try {
      await m.openFileSync({ storeId: 'ssr' });
      console.log('opened');
    } catch (e) {
      console.log(JSON.stringify({ name: e.name, code: e.code, retryable: e.retryable, message: e.message, error: e instanceof Error }));
    }`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: consumer });
  const got = JSON.parse(stdout);
  assert.deepEqual({ ...got, message: undefined }, { name: 'FileSyncError', code: 'unavailable', retryable: false, message: undefined, error: true });
  assert.match(got.message, /^IndexedDB is missing: filesync-wasm opens stores in browsers only/);
});

test('a TypeScript consumer type-checks against the installed package; no any in the public types', async () => {
  await copyFile(path.join(here, 'consumer.ts'), path.join(consumer, 'consumer.ts'));
  const tsc = path.join(repo, 'node_modules/typescript/bin/tsc');
  for (const [module, moduleResolution] of [['ES2022', 'bundler'], ['NodeNext', 'NodeNext']]) {
    const config = `tsconfig.${moduleResolution.toLowerCase()}.json`;
    await writeFile(
      path.join(consumer, config),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022', module, moduleResolution, lib: ['ES2022', 'DOM'], types: [],
          strict: true, noEmit: true, skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    const { stdout } = await run(process.execPath, [tsc, '-p', config, '--listFiles'], { cwd: consumer }).catch((e) => {
      assert.fail(`tsc (${moduleResolution}) failed:\n${e.stdout}${e.stderr}`);
    });
    // Resolved through the installed package, and only its public declarations.
    const fromPackage = stdout
      .split('\n')
      .filter((f) => f.includes('/node_modules/filesync-wasm/'))
      .map((f) => path.relative(pkgDir, f.trim()));
    assert.deepEqual(fromPackage, ['www/index.d.ts'], `${moduleResolution}: ${fromPackage}`);
  }

  const dts = path.join(pkgDir, 'www/index.d.ts');
  const source = ts.createSourceFile(dts, await readFile(dts, 'utf8'), ts.ScriptTarget.Latest, true);
  const anys = [];
  const visit = (node) => {
    if (node.kind === ts.SyntaxKind.AnyKeyword) {
      const { line } = source.getLineAndCharacterOfPosition(node.getStart());
      anys.push(`index.d.ts:${line + 1}: ${node.parent.getText()}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  assert.deepEqual(anys, []);
});

/** Shared worker targets (their script URLs) running under `base`. */
async function sharedWorkers(base) {
  const { targetInfos } = await cdp.send('Target.getTargets');
  return targetInfos.filter((t) => t.type === 'shared_worker' && t.url.startsWith(base)).map((t) => t.url);
}

/**
 * The wasm fetches in a request log. The server says `no-store`, so each of the two tabs and
 * the hub worker fetches it once.
 */
function wasmFetches(log) {
  return log.map(([, url]) => url).filter((url) => url.split('?')[0].endsWith('.wasm'));
}

/** A tab at `url` with the store opened as `window.fs`; page errors are collected in `errors`. */
async function openTab(url, storeId, options, errors) {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached', timeout: 15_000 });
  await page.evaluate(async ([storeId, options]) => {
    window.fs = await window.filesync.openFileSync({ storeId, remote: false, ...options });
  }, [storeId, options]);
  return page;
}

const BYTES = Array.from({ length: 1000 }, (_, i) => (i * 37 + 11) % 256);
const NAME = 'résumé 2024.bin';
const TYPE = 'application/x-filesync-test';

/**
 * Saves a file in one tab and reads it back in a second tab of the same origin: the second tab
 * only learns of the file through the shared hub. Returns the shared workers seen meanwhile.
 */
async function saveInOneTabReadInAnother(url, base, options = {}) {
  const storeId = `pkg-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const errors = [];
  const a = await openTab(url, storeId, options, errors);
  const b = await openTab(url, storeId, options, errors);
  const workers = await sharedWorkers(base);
  const hosts = await Promise.all([a, b].map((p) => p.evaluate(() => window.fs.hostsHub())));
  assert.deepEqual(hosts, [false, false], 'the hub runs in the SharedWorker, not in a tab');

  const saved = await a.evaluate(
    ({ bytes, name, type }) => window.fs.saveFile(new File([new Uint8Array(bytes)], name, { type })),
    { bytes: BYTES, name: NAME, type: TYPE },
  );
  assert.equal(saved.size, BYTES.length);
  await b.waitForFunction((id) => window.fs.getFile(id)?.hasLocalCopy === true, saved.id, { timeout: 15_000 });
  const read = await b.evaluate(async (id) => {
    const f = await window.fs.readFile(id);
    return { name: f.name, type: f.type, bytes: Array.from(new Uint8Array(await f.arrayBuffer())) };
  }, saved.id);
  assert.deepEqual(read, { name: NAME, type: TYPE, bytes: BYTES });
  await a.close();
  await b.close();
  assert.deepEqual(errors, []);
  return workers;
}

/**
 * A bundler's output, served as is: the hub worker chunk (`workerPath`, relative to `outDir`)
 * was built with its imports, and the two-tab check runs with the hub in that chunk, the wasm
 * fetched by both tabs and the worker from paths matching `wasmPath`, and no request failing.
 */
async function builtAppSavesAndReadsBack(outDir, workerPath, wasmPath) {
  // Built with its imports, not copied: nothing left to resolve next to the package.
  const workerCode = await readFile(path.join(outDir, workerPath), 'utf8');
  assert.ok(!/\bfrom\s*["'`]|\bimport\s*\(/.test(workerCode), 'the worker chunk imports nothing');
  // The wasm starts it as a module worker, where importScripts throws.
  assert.ok(!/\bimportScripts\s*\(/.test(workerCode), 'the worker chunk loads no other chunk');
  assert.ok(workerCode.includes('onconnect'), 'the worker chunk is the hub worker');

  const { base, log } = await serve(outDir);
  const workers = await saveInOneTabReadInAnother(`${base}/`, base);
  assert.deepEqual(workers, [`${base}/${workerPath}`]);
  assert.deepEqual(log.filter(([status]) => status !== 200), []);
  const wasm = wasmFetches(log);
  assert.equal(wasm.length, 3, `two tabs and the worker fetch the wasm: ${wasm}`);
  assert.ok(wasm.every((u) => wasmPath.test(u)), `wasm: ${wasm}`);
  await largeSaveHashesInTheWorkerChunk(base, `${base}/${workerPath}`);
  assert.deepEqual(log.filter(([status]) => status !== 200), []);
}

/**
 * A save over the WebCrypto limit hashes in a hash worker: the same built chunk, started as a
 * dedicated worker. Its digest must be WebCrypto's of the same bytes.
 */
async function largeSaveHashesInTheWorkerChunk(base, workerUrl) {
  const errors = [];
  const storeId = `pkg-large-${Date.now()}`;
  const page = await openTab(`${base}/`, storeId, {}, errors);
  const r = await page.evaluate(async () => {
    const bytes = new Uint8Array(20 * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 4093) bytes[i] = i & 255;
    const saved = await window.fs.saveFile(new File([bytes], 'large.bin'));
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return { saved: saved.contentHash, hex: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
  });
  assert.equal(r.saved, r.hex);
  const { targetInfos } = await cdp.send('Target.getTargets');
  const hashWorkers = targetInfos.filter((t) => t.type === 'worker' && t.title === 'filesync-hash');
  assert.ok(hashWorkers.length > 0 && hashWorkers.every((t) => t.url === workerUrl), `hash workers: ${hashWorkers.map((t) => t.url)}`);
  await page.close();
  assert.deepEqual(errors, []);
}

test('an app built by Vite saves a file in one tab and reads it back in another', async () => {
  const outDir = path.join(work, 'vite-dist');
  await build({
    root: path.join(consumer, 'vite-app'),
    configFile: false,
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true },
  });
  const assets = await readdir(path.join(outDir, 'assets'));
  const workerChunk = assets.find((f) => /^filesync-worker-.*\.js$/.test(f));
  assert.ok(workerChunk, `the hub worker is emitted as a chunk: ${assets}`);
  assert.equal(assets.filter((f) => f.endsWith('.wasm')).length, 1, `one wasm asset: ${assets}`);
  await builtAppSavesAndReadsBack(outDir, `assets/${workerChunk}`, /^\/assets\/filesync_bg-[^/]+\.wasm$/);
});

test('an app built by webpack 5 saves a file in one tab and reads it back in another', async () => {
  const outDir = path.join(work, 'webpack-dist');
  const app = path.join(consumer, 'webpack-app');
  // What a user's webpack.config.js would hold: an entry and an output directory, nothing about
  // workers, wasm or this package. (Size hints off: the wasm is over the default 244 KiB budget.)
  const compiler = webpack({
    mode: 'production',
    context: app,
    entry: './main.js',
    output: { path: outDir, clean: true },
    performance: { hints: false },
  });
  const stats = await new Promise((resolve, reject) => {
    compiler.run((err, result) => (err ? reject(err) : resolve(result)));
  });
  await new Promise((resolve, reject) => compiler.close((err) => (err ? reject(err) : resolve())));
  const { errors, warnings } = stats.toJson({ all: false, errors: true, warnings: true });
  assert.deepEqual([...errors, ...warnings].map((e) => e.message), [], 'webpack: no errors or warnings');
  await copyFile(path.join(app, 'index.html'), path.join(outDir, 'index.html'));

  // main.js, the hub worker as its own chunk (not the script copied as a lone asset), one wasm.
  const assets = (await readdir(outDir)).filter((f) => f !== 'index.html');
  const scripts = assets.filter((f) => f.endsWith('.js') && f !== 'main.js');
  assert.equal(scripts.length, 1, `main.js and one worker chunk: ${assets}`);
  assert.equal(assets.filter((f) => f.endsWith('.wasm')).length, 1, `one wasm asset: ${assets}`);
  assert.equal(assets.length, 3, `nothing else: ${assets}`);
  await builtAppSavesAndReadsBack(outDir, scripts[0], /^\/[^/]+\.wasm$/);
});

/**
 * Runs `next <command>` (`start` for the built app, or `dev`) in `dir` on a free port; resolves
 * to its base URL once it is ready. The dev server refuses its own assets to other hosts than
 * `localhost` unless configured (`allowedDevOrigins`), so it is reached there.
 */
async function nextServe(dir, command) {
  const port = await new Promise((resolve) => {
    const probe = createNetServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  const host = command === 'dev' ? 'localhost' : '127.0.0.1';
  const child = spawn(process.execPath, [NEXT_BIN, command, '--hostname', host, '--port', String(port)], {
    cwd: dir,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  nextServers.push(child);
  await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (/Ready in/.test(out)) resolve();
    });
    child.stderr.on('data', (d) => (out += d));
    child.once('exit', (code) => reject(new Error(`next ${command} exited with ${code}:\n${out}`)));
  });
  return `http://${host}:${port}`;
}

for (const bundler of ['turbopack', 'webpack']) {
  test(`a Next.js app built with ${bundler} saves a file in one tab and reads it back in another`, async () => {
    const app = path.join(consumer, 'next-app');
    const flag = bundler === 'webpack' ? ['--webpack'] : [];
    await run(process.execPath, [NEXT_BIN, 'build', ...flag], {
      cwd: app,
      env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' },
    }).catch((e) => assert.fail(`next build (${bundler}) failed:\n${e.stdout}${e.stderr}`));
    const base = await nextServe(app, 'start');
    const workers = await saveInOneTabReadInAnother(`${base}/`, base);
    // Turbopack starts the worker through its own loader, a classic script that loads the
    // chunks with importScripts: the package starts it as the classic worker it is.
    const chunk = bundler === 'turbopack'
      ? /^\/_next\/static\/chunks\/turbopack-worker-[^/]+\.js[?#]params=/
      : /^\/_next\/static\/(chunks|media)\/[^/?]+\.js$/;
    assert.equal(workers.length, 1, `one hub worker: ${workers}`);
    assert.match(workers[0].slice(base.length), chunk);
    await largeSaveHashesInTheWorkerChunk(base, workers[0]);
  });
}

test('the Next.js app on its dev server (Turbopack) saves and reads back across tabs', async () => {
  const base = await nextServe(path.join(consumer, 'next-app'), 'dev');
  const workers = await saveInOneTabReadInAnother(`${base}/`, base);
  assert.equal(workers.length, 1, `one hub worker: ${workers}`);
  assert.match(workers[0].slice(base.length), /^\/_next\/static\/chunks\/[^?#]*\.js[?#]params=/);
});

test('the same app on the Vite dev server saves and reads back across tabs', async () => {
  viteDev = await createServer({
    root: path.join(consumer, 'vite-app'),
    configFile: false,
    logLevel: 'warn',
    server: { host: '127.0.0.1', port: 0, strictPort: false },
  });
  await viteDev.listen();
  const base = viteDev.resolvedUrls.local[0].replace(/\/$/, '');
  const workers = await saveInOneTabReadInAnother(`${base}/`, base);
  assert.equal(workers.length, 1, `one hub worker: ${workers}`);
  assert.match(workers[0], /\/node_modules\/filesync-wasm\/www\/filesync-worker\.js(\?.*)?$/);
});

test('a plain page without a bundler (import map into node_modules) saves and reads back across tabs', async () => {
  const { base, log } = await serve(consumer);
  const workers = await saveInOneTabReadInAnother(`${base}/static/`, base);
  assert.deepEqual(workers, [`${base}/node_modules/filesync-wasm/www/filesync-worker.js`]);
  assert.deepEqual(log.filter(([status]) => status !== 200), []);
  assert.deepEqual(wasmFetches(log), Array(3).fill('/node_modules/filesync-wasm/www/pkg/filesync_bg.wasm'));
});

test('wasmUrl moves where the tab and the hub worker load the wasm from', async () => {
  await mkdir(path.join(consumer, 'custom'), { recursive: true });
  await copyFile(path.join(pkgDir, 'www/pkg/filesync_bg.wasm'), path.join(consumer, 'custom/engine.wasm'));
  const { base, log } = await serve(consumer);
  const workers = await saveInOneTabReadInAnother(`${base}/static/`, base, { wasmUrl: '/custom/engine.wasm' });
  const wasmParam = encodeURIComponent(`${base}/custom/engine.wasm`);
  assert.deepEqual(workers, [`${base}/node_modules/filesync-wasm/www/filesync-worker.js?wasm=${wasmParam}`]);
  assert.deepEqual(log.filter(([status]) => status !== 200), []);
  // Both tabs and the hub worker, all from the override.
  assert.deepEqual(wasmFetches(log), Array(3).fill('/custom/engine.wasm'));
});
