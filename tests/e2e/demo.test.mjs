// The demo app (www/index.html) end to end, driven through its UI: the real filesync-server
// serves it; two persistent browser profiles are two devices, device A with two tabs.
//   node --test tests/e2e/demo.test.mjs   (after the package and server builds)
// Screenshots of the main states go to target/demo-screenshots/ (DEMO_SCREENSHOTS overrides).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { startServer } from './server.mjs';
import { useServer, device as harnessDevice, throttle } from './harness.mjs';
import { NEWER_VERSION, VERSION, WWW, writeNewerBuild } from './builds.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOTS = process.env.DEMO_SCREENSHOTS ?? path.join(repo, 'target/demo-screenshots');
const TOKEN = 'demo-e2e-token';
const WAIT = { timeout: 20_000 };
const POLL = { timeout: 20_000, polling: 50 };

const env = useServer({ tokens: `${TOKEN}=*` });
before(() => mkdir(SHOTS, { recursive: true }));

/** A device whose pages are as wide as a laptop's. */
const device = () => harnessDevice({ viewport: { width: 1280, height: 860 } });

/** The demo page of `store` in a new tab of `dev`, once the store is open (from `site`). */
async function openDemo(dev, store, site = env.server) {
  const page = await dev.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.errors = errors;
  await page.goto(`${site.url}/?store=${encodeURIComponent(store)}&token=${TOKEN}`);
  await page.waitForSelector('body[data-ready="true"]', WAIT);
  return page;
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true, animations: 'disabled' });
const card = (page, name) => page.locator(`[data-testid="file-card"][data-name="${name}"]`);
const cardAttr = (page, name, attr) => card(page, name).getAttribute(attr);

/** Waits until the card of `name` in `page` has every `data-*` value of `want`. */
function waitCard(page, name, want, opts = WAIT) {
  return page.waitForFunction(([name, want]) => {
    const el = document.querySelector(`[data-testid="file-card"][data-name="${CSS.escape(name)}"]`);
    return !!el && Object.entries(want).every(([k, v]) => el.dataset[k] === v);
  }, [name, want], opts);
}

/** A small valid PNG (a colour gradient) for thumbnails. */
function png(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      const i = row + 1 + x * 3;
      raw[i] = 70 + Math.round((150 * x) / width);
      raw[i + 1] = 60 + Math.round((120 * y) / height);
      raw[i + 2] = 230 - Math.round((90 * x) / width);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Drops `files` ({name, mimeType, text | base64}) on `selector` as a drag and drop would;
 * `whileOver` runs between the dragover and the drop.
 */
async function drop(page, selector, files, whileOver = async () => {}) {
  const dataTransfer = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = f.base64 ? Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0)) : f.text;
      dt.items.add(new File([bytes], f.name, { type: f.mimeType }));
    }
    return dt;
  }, files);
  await page.dispatchEvent(selector, 'dragenter', { dataTransfer });
  await page.dispatchEvent(selector, 'dragover', { dataTransfer });
  await whileOver();
  await page.dispatchEvent(selector, 'drop', { dataTransfer });
}


const logTypes = (page) => page.$$eval('[data-testid="log-entry"]', (rows) => rows.map((r) => r.dataset.type));

test('the demo shows saves, progress, previews, edits, deletes and errors across tabs and devices', async () => {
  const t0 = Date.now();
  const store = `demo-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const [a, b] = [await device(), await device()];
  const a1 = await openDemo(a, store);
  const a2 = await openDemo(a, store);
  const b1 = await openDemo(b, store);

  // The page says which store and server it uses, and that it is online.
  for (const page of [a1, a2, b1]) {
    assert.equal(await page.getByTestId('store-id').textContent(), store);
    assert.equal(await page.getByTestId('server-url').textContent(), `${env.server.url}/api`);
    assert.equal(await page.getByTestId('auth').textContent(), 'with token');
    await page.waitForSelector('[data-testid="connection"][data-state="online"]', WAIT);
    await page.getByTestId('empty').waitFor({ state: 'visible' });
  }
  // One leader per device, and each tab says which role it has.
  await a1.waitForFunction(() => window.demo.fs.leaderTabId() !== undefined, null, WAIT);
  await b1.waitForSelector('[data-testid="leader"][data-leader="true"]', WAIT);
  const aTabs = [a1, a2];
  for (const page of aTabs) await page.waitForSelector('[data-testid="leader"]:is([data-state="leader"], [data-state="follower"])', WAIT);
  const flags = await Promise.all(aTabs.map((p) => p.getByTestId('leader').getAttribute('data-leader')));
  assert.deepEqual(flags.slice().sort(), ['false', 'true'], `one leader tab in device A: ${flags}`);
  const leader = aTabs[flags.indexOf('true')];
  const follower = aTabs[flags.indexOf('false')];
  assert.match(await follower.getByTestId('leader').textContent(), /Follower/);
  assert.match(await leader.getByTestId('leader').textContent(), /This tab leads/);
  await shot(a1, '1-empty');

  // 1. A text file through the picker of one tab: in the other tab at once, uploaded with
  // upload progress at 100 %, then in device B downloaded with download progress at 100 %.
  const notes = 'Meeting notes\n- ship the demo\n- check screenshots\n'.repeat(40);
  await a1.getByTestId('file-picker').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(notes) });
  await card(a2, 'notes.txt').waitFor(WAIT);
  for (const page of aTabs) await waitCard(page, 'notes.txt', { status: 'done', uploaded: 'true', observedPercent: '100', kind: 'upload' });
  await waitCard(b1, 'notes.txt', { status: 'done', local: 'true', observedPercent: '100', kind: 'download' });
  for (const page of [a1, a2, b1]) {
    const c = card(page, 'notes.txt');
    assert.equal(await c.getByTestId('file-percent').textContent(), '100 %');
    assert.equal(await c.getByTestId('file-progress').getAttribute('aria-valuenow'), '100');
    assert.equal(await c.getByTestId('file-type').textContent(), 'text/plain');
    assert.equal(await c.getByTestId('file-size').textContent(), '2.0 KiB');
    assert.match(await c.getByTestId('file-status').textContent(), /Synced/);
    await c.getByTestId('text-preview').waitFor(WAIT);
    assert.match(await c.getByTestId('text-preview').textContent(), /^Meeting notes/);
  }
  assert.equal(await b1.getByTestId('file-count').textContent(), '1');
  assert.ok(await b1.getByTestId('empty').isHidden());
  // The log shows the callbacks of each device.
  await b1.waitForSelector('[data-testid="log-entry"][data-type="download:complete"]', WAIT);
  assert.ok((await logTypes(b1)).includes('download:progress'));
  await a2.waitForSelector('[data-testid="log-entry"][data-type="upload:complete"]', WAIT);

  // 2. An image by drag and drop in the other tab: a thumbnail from resolveFileUrl everywhere.
  const image = png(240, 160);
  await drop(a2, '[data-testid="dropzone"]', [{ name: 'gradient.png', mimeType: 'image/png', base64: image.toString('base64') }], async () => {
    await a2.getByTestId('drop-overlay').waitFor({ state: 'visible', ...WAIT });
    await shot(a2, '2-dragging');
  });
  await a2.getByTestId('drop-overlay').waitFor({ state: 'hidden', ...WAIT });
  for (const page of [a1, a2, b1]) {
    await waitCard(page, 'gradient.png', { status: 'done', uploaded: 'true', local: 'true' });
    const img = card(page, 'gradient.png').getByTestId('file-thumb');
    await img.waitFor(WAIT);
    assert.match(await img.getAttribute('src'), /^blob:/);
    await page.waitForFunction(() => {
      const i = document.querySelector('[data-name="gradient.png"] [data-testid="file-thumb"]');
      return i && i.complete && i.naturalWidth === 240 && i.naturalHeight === 160;
    }, null, WAIT);
  }
  await shot(a1, '3-synced-tab-a1');
  await shot(b1, '3-synced-device-b');

  // 3. A large file uploads slowly from a throttled leader: every tab shows it uploading with
  // a partial percentage; Cancel turns it into an error with its message, Retry errors
  // uploads it again, and device B downloads it (throttled too) showing its progress.
  const leaderNet = await throttle(a, leader, { up: 512 * 1024 });
  const big = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) % 251;
  await follower.getByTestId('file-picker').setInputFiles({ name: 'archive.bin', mimeType: 'application/octet-stream', buffer: big });
  const partial = ([name]) => {
    const el = document.querySelector(`[data-testid="file-card"][data-name="${name}"]`);
    const pct = el && Number(el.querySelector('[data-testid="file-progress"]').getAttribute('aria-valuenow'));
    return el && ['uploading', 'downloading'].includes(el.dataset.status) && pct > 0 && pct < 100
      ? el.dataset.status : false;
  };
  const uploading = await follower.waitForFunction(partial, ['archive.bin'], POLL).then((h) => h.jsonValue());
  assert.equal(uploading, 'uploading');
  assert.match(await card(follower, 'archive.bin').getByTestId('file-status').textContent(), /Uploading/);
  assert.match(await card(follower, 'archive.bin').getByTestId('file-percent').textContent(), /^\d{1,2} %$/);
  await follower.waitForSelector('[data-testid="syncing"][data-syncing="true"]', WAIT);
  assert.notEqual(await follower.getByTestId('count-uploading').textContent(), '0');
  assert.equal(await follower.getByTestId('pending').getAttribute('data-pending'), 'true');
  await shot(follower, '4-uploading');
  await card(follower, 'archive.bin').getByTestId('file-cancel').click();
  for (const page of aTabs) await waitCard(page, 'archive.bin', { status: 'error' });
  assert.equal(await card(a1, 'archive.bin').getByTestId('file-error').getAttribute('data-code'), 'cancelled');
  assert.match(await card(a1, 'archive.bin').getByTestId('file-error').textContent(), /^Cancelled/);
  assert.match(await card(a1, 'archive.bin').getByTestId('file-status').textContent(), /Upload failed/);
  assert.ok(await card(a1, 'archive.bin').getByTestId('file-error').isVisible());
  await a1.waitForFunction(() => document.querySelector('[data-testid="count-errors"]').textContent === '1', null, WAIT);
  assert.match(await a1.getByTestId('error-list').textContent(), /archive\.bin: Cancelled/);
  assert.equal(await a1.getByTestId('retry-errors').isEnabled(), true);
  await shot(a1, '5-error');
  await leaderNet.send('Network.emulateNetworkConditions', { offline: false, latency: 0, uploadThroughput: -1, downloadThroughput: -1 });
  await throttle(b, b1, { down: 1024 * 1024 });
  await a1.getByTestId('retry-errors').click();
  for (const page of aTabs) await waitCard(page, 'archive.bin', { status: 'done', uploaded: 'true', observedPercent: '100' });
  assert.ok(await card(a1, 'archive.bin').getByTestId('file-error').isHidden());
  assert.equal(await a1.getByTestId('count-errors').textContent(), '0');
  const downloading = await b1.waitForFunction(partial, ['archive.bin'], POLL).then((h) => h.jsonValue());
  assert.equal(downloading, 'downloading');
  assert.match(await card(b1, 'archive.bin').getByTestId('file-status').textContent(), /Downloading/);
  await shot(b1, '6-downloading');
  await waitCard(b1, 'archive.bin', { status: 'done', local: 'true', observedPercent: '100', kind: 'download' });
  assert.equal(await card(b1, 'archive.bin').getByTestId('file-size').textContent(), '4.0 MiB');
  assert.equal(await card(b1, 'archive.bin').getByTestId('file-icon').textContent(), 'BIN');

  // 4. Edit through device B's Replace button: device A's tabs show the new content.
  const oldHash = await cardAttr(a1, 'notes.txt', 'data-hash');
  const chooser = b1.waitForEvent('filechooser', WAIT);
  await card(b1, 'notes.txt').getByTestId('file-edit').click();
  await (await chooser).setFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Edited on device B\nall good') });
  for (const page of aTabs) {
    await page.waitForFunction((old) => {
      const el = document.querySelector('[data-name="notes.txt"]');
      return el && el.dataset.hash !== old && el.dataset.local === 'true' && el.dataset.status === 'done'
        && el.querySelector('[data-testid="text-preview"]')?.textContent.startsWith('Edited on device B');
    }, oldHash, WAIT);
    assert.equal(await card(page, 'notes.txt').getByTestId('file-size').textContent(), '27 B');
  }

  // Dropping one file on a card replaces that file's content (here in the other tab of A).
  const editedHash = await cardAttr(a2, 'notes.txt', 'data-hash');
  await drop(a2, '[data-testid="file-card"][data-name="notes.txt"] .body', [{ name: 'notes.txt', mimeType: 'text/plain', text: 'Third version, dropped on the card' }]);
  await b1.waitForFunction((old) => {
    const el = document.querySelector('[data-name="notes.txt"]');
    return el && el.dataset.hash !== old && el.dataset.status === 'done'
      && el.querySelector('[data-testid="text-preview"]')?.textContent.startsWith('Third version');
  }, editedHash, WAIT);
  assert.equal(await a2.getByTestId('file-count').textContent(), '3', 'the drop on a card added no file');

  // 5. Delete through the UI of one tab: gone from every tab and device.
  await card(a2, 'gradient.png').getByTestId('file-delete').click();
  for (const page of [a1, a2, b1]) {
    await card(page, 'gradient.png').waitFor({ state: 'detached', ...WAIT });
    await page.waitForFunction(() => document.querySelector('[data-testid="file-count"]').textContent === '2', null, WAIT);
  }

  // Sync now and the other calls end in the log (a sync round has no callback when idle).
  await a1.getByTestId('sync-now').click();
  await a1.waitForSelector('[data-testid="log-entry"][data-type="call:syncNow"][data-tone="good"]', WAIT);
  const calls = await a2.$$eval('[data-testid="log-entry"][data-category="call"]', (rows) => rows.map((r) => r.textContent));
  assert.ok(calls.some((t) => /deleteFile\(\)gradient\.png done/.test(t)), `deleteFile in ${calls}`);
  for (const page of [a1, b1]) {
    await page.waitForSelector('[data-testid="pending"][data-pending="false"]', WAIT);
    assert.equal(await page.getByTestId('count-errors').textContent(), '0');
  }
  await shot(a1, '7-after-edit-delete');

  // 6. The server goes away: every tab says offline, a save waits in the queue (and reads
  // back locally); when the server is back the tabs say online and device B gets the file.
  const tStop = Date.now();
  await env.server.stop();
  // Sync now finds out at once (without it the next pull or probe would, later).
  for (const page of [a1, b1]) await page.getByTestId('sync-now').click();
  for (const page of [a1, a2, b1]) await page.waitForSelector('[data-testid="connection"][data-state="offline"]', WAIT);
  assert.match(await a1.getByTestId('connection').textContent(), /^\s*Offline\s*$/);
  console.log(`# offline shown ${Date.now() - tStop} ms after the server stopped`);
  await a1.getByTestId('file-picker').setInputFiles({ name: 'offline.txt', mimeType: 'text/plain', buffer: Buffer.from('written while offline') });
  await waitCard(a1, 'offline.txt', { status: 'queued', local: 'true', uploaded: 'false' });
  await card(a1, 'offline.txt').getByTestId('text-preview').waitFor(WAIT);
  assert.match(await card(a1, 'offline.txt').getByTestId('file-status').textContent(), /Upload queued/);
  await a1.waitForSelector('[data-testid="pending"][data-pending="true"]', WAIT);
  await shot(a1, '8-offline');
  const tStart = Date.now();
  await env.server.start();
  for (const page of [a1, a2, b1]) await page.waitForSelector('[data-testid="connection"][data-state="online"]', WAIT);
  console.log(`# online shown ${Date.now() - tStart} ms after the server restarted`);
  await waitCard(a1, 'offline.txt', { status: 'done', uploaded: 'true' });
  await waitCard(b1, 'offline.txt', { status: 'done', local: 'true' });
  assert.ok((await logTypes(a1)).includes('offline'));
  assert.ok((await logTypes(a1)).includes('online'));
  for (const page of [a1, a2, b1]) assert.deepEqual(page.errors, []);
  console.log(`# demo test body ${Date.now() - t0} ms; screenshots in ${SHOTS}`);
});

test('a store that cannot open says so on the page', async () => {
  const dev = await device();
  const page = await dev.context.newPage();
  await page.goto(`${env.server.url}/?store=${encodeURIComponent('../escape')}`);
  await page.waitForSelector('body[data-ready="error"]', WAIT);
  assert.ok(await page.getByTestId('fatal').isVisible());
  assert.match(await page.getByTestId('fatal').textContent(), /Could not open store "\.\.\/escape": invalid_id/);
  await page.close();
});

test('the demo shows whether the browser keeps its storage, and asks it to', async () => {
  const dev = await device();
  const page = await openDemo(dev, `persist-${Date.now()}`);
  await page.waitForSelector('[data-testid="storage-persisted"][data-persisted="false"]', WAIT);
  assert.match(await page.getByTestId('storage-persisted').textContent(), /^best-effort storage \([\d.]+ of \d+ MiB used\)$/);
  // The browser decides (site engagement, an installed app, the user): grant it here.
  const cdp = await dev.context.browser().newBrowserCDPSession();
  await cdp.send('Browser.grantPermissions', { origin: env.server.url, permissions: ['durableStorage'] });
  try {
    await page.getByTestId('keep-files').click();
    await page.waitForSelector('[data-testid="storage-persisted"][data-persisted="true"]', WAIT);
  } finally {
    await cdp.send('Browser.resetPermissions');
  }
  assert.match(await page.getByTestId('storage-persisted').textContent(), /^storage kept \(/);
  assert.equal(await page.getByTestId('keep-files').isHidden(), true);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('after a deploy, an open page says a newer version took the store over, and reloads into it', async () => {
  // The site as deployed: the built package in a directory of its own, served by the server.
  const site = await mkdtemp(path.join(tmpdir(), 'filesync-site-'));
  await cp(WWW, site, { recursive: true });
  const deployed = await startServer({ tokens: `${TOKEN}=*`, www: site });
  try {
    const dev = await device();
    const store = `deploy-${Date.now()}`;
    const old = await openDemo(dev, store, deployed);
    assert.equal(await old.getByTestId('version').textContent(), VERSION);
    await old.getByTestId('file-picker').setInputFiles({ name: 'before.txt', mimeType: 'text/plain', buffer: Buffer.from('saved before the deploy') });
    await card(old, 'before.txt').waitFor(WAIT);
    // The next release replaces the files at the same URLs; a new tab loads it, and its hub
    // (a SharedWorker of its own version) takes the store from the old one.
    await writeNewerBuild(site);
    const fresh = await openDemo(dev, store, deployed);
    assert.equal(await fresh.getByTestId('version').textContent(), NEWER_VERSION);
    await card(fresh, 'before.txt').waitFor(WAIT);
    await old.waitForSelector('body[data-superseded="true"]', WAIT);
    assert.match(await old.getByTestId('fatal').textContent(), /A newer version of this app took this store over in another tab/);
    assert.equal(await old.evaluate(() => document.querySelector('main').inert), true, 'the old page takes no input');
    assert.equal((await old.getByTestId('leader').textContent()).trim(), 'Stopped: a newer version runs');
    assert.equal(await old.getByTestId('keep-files').isHidden(), true);
    await shot(old, '9-superseded');
    // Reload: the page comes back as the new release, with the store's files.
    await old.getByTestId('reload').click();
    await old.waitForSelector('body[data-ready="true"]', WAIT);
    assert.equal(await old.getByTestId('version').textContent(), NEWER_VERSION);
    await card(old, 'before.txt').waitFor(WAIT);
    assert.deepEqual([...old.errors, ...fresh.errors], []);
  } finally {
    await deployed.close();
    await rm(site, { recursive: true, force: true });
  }
});
