// Remote sync end to end: the real filesync-server on loopback (it also serves the pages),
// two persistent browser profiles = two devices, several tabs each.
//   node --test tests/e2e/remote.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createStaticServer } from '../../scripts/serve.mjs';
import {
  TOKEN, WAIT, useServer, device, openTab, unique, save, readText, waitLocal, waitUploaded,
  saveUploaded, twoDevices, throttle, blankTab, fetchBlob, readFailure,
} from './harness.mjs';

const env = useServer();

test('a tab of another build takes a synced store over and keeps syncing it', async () => {
  const store = unique('handover');
  const [a, b] = [await device(), await device()];
  const old = await openTab(a, store);
  const one = await saveUploaded(old, 'one.txt', 'one');
  // A deploy changed the hub worker's URL: the new build's tab gets the store from the old hub.
  const fresh = await openTab(a, store, { authToken: TOKEN }, { workerUrl: '/filesync-worker.js?build=2' });
  await old.waitForFunction(() => window.events.some((e) => e.code === 'superseded'), null, WAIT);
  const two = await save(fresh, 'two.txt', 'two');
  // The new build's tab leads (the old one resigned) and its hub syncs: uploads, then B gets both.
  await waitUploaded(fresh, two.id);
  const b1 = await openTab(b, store);
  await waitLocal(b1, one.id);
  await waitLocal(b1, two.id);
  // B's save reaches the new build's hub over its live channel and downloads there.
  const three = await save(b1, 'three.txt', 'three');
  await waitLocal(fresh, three.id);
  assert.equal(await readText(fresh, three.id), 'three');
  // The old tab stopped with the old hub: its replica no longer changes.
  assert.equal(await old.evaluate((id) => !!window.fs.getFile(id), three.id), false);
  for (const p of [old, fresh, b1]) await p.close();
});

test('a save in device A reaches every tab of A at once and device B with download progress', async () => {
  const store = unique('sync');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const a2 = await openTab(a, store);
  const b1 = await openTab(b, store);
  const b2 = await openTab(b, store);
  const text = 'hello from A '.repeat(1000);
  const saved = await save(a1, 'hello.txt', text);
  await a2.waitForFunction((id) => !!window.fs.getFile(id), saved.id, WAIT);
  await waitUploaded(a1, saved.id);
  await waitLocal(b1, saved.id);
  await waitLocal(b2, saved.id);
  assert.equal(await readText(b2, saved.id), text);
  const file = await b1.evaluate((id) => window.fs.getFile(id), saved.id);
  assert.equal(file.name, 'hello.txt');
  assert.equal(file.mimeType, 'text/plain');
  assert.equal(file.downloadStatus, 'done');
  // Progress reached every tab of B, and ended at the whole size.
  for (const tab of [b1, b2]) {
    const events = await tab.evaluate((id) => window.events.filter((e) => e.fileId === id).map((e) => e.type), saved.id);
    assert.ok(events.includes('download:start'), `download:start in ${events}`);
    assert.ok(events.includes('download:complete'), `download:complete in ${events}`);
    const last = await tab.evaluate((id) => window.events.filter((e) => e.type === 'download:progress' && e.fileId === id).at(-1), saved.id);
    assert.ok(last, 'a download:progress event');
    assert.equal(last.loaded, last.total);
    assert.equal(last.total, text.length);
  }
  // One upload by A's leader, one download by B's leader: tabs do not duplicate transfers.
  assert.deepEqual(a.blobRequests.filter(([m]) => m === 'PUT').length, 1);
  assert.deepEqual(b.blobRequests.filter(([m]) => m === 'GET').length, 1);
  // B's leader hashed the download in a hash worker, not on its own thread.
  const cdp = await b.context.browser().newBrowserCDPSession();
  const { targetInfos } = await cdp.send('Target.getTargets');
  assert.ok(targetInfos.some((t) => t.type === 'worker' && t.title === 'filesync-hash'), 'a hash worker in B');
  await cdp.detach();
  for (const t of [a1, a2, b1, b2]) await t.close();
});

test('edits and deletes in A reach B; an edit never leaves the old key on the new content', async () => {
  const { a1, b1 } = await twoDevices('edit');
  const saved = await save(a1, 'doc.txt', 'version 1');
  await waitLocal(b1, saved.id, saved.contentHash);
  // Edit at once, and again while the first edit may still be uploading.
  const v2 = await a1.evaluate((id) => window.fs.updateFile(id, new File(['version 2'], 'doc.txt', { type: 'text/plain' })), saved.id);
  const v3 = await a1.evaluate((id) => window.fs.updateFile(id, new File(['version 3'], 'doc.txt', { type: 'text/plain' })), saved.id);
  assert.notEqual(v2.contentHash, v3.contentHash);
  await waitUploaded(a1, saved.id, v3.contentHash);
  const state = await a1.evaluate((id) => window.fs.getFile(id), saved.id);
  assert.ok(state.remoteKey.endsWith(v3.contentHash), `remote key ${state.remoteKey} names ${v3.contentHash}`);
  await waitLocal(b1, saved.id, v3.contentHash);
  assert.equal(await readText(b1, saved.id), 'version 3');
  await a1.evaluate((id) => window.fs.deleteFile(id), saved.id);
  await b1.waitForFunction((id) => !window.fs.getFile(id), saved.id, WAIT);
  assert.equal(await b1.evaluate(() => window.fs.getFiles().length), 0);
  await a1.close();
  await b1.close();
});

test('files saved while the server is down upload after it restarts and reach B', async () => {
  const { a1, b1 } = await twoDevices('restart');
  const first = await save(a1, 'before.txt', 'before');
  await waitLocal(b1, first.id);
  await env.server.stop();
  // The live channel drops with the server: the hub knows at once, and so does every tab.
  await a1.waitForFunction(() => !window.fs.isOnline(), null, WAIT);
  const saved = [];
  for (let i = 0; i < 5; i++) saved.push(await save(a1, `offline-${i}.txt`, `offline ${i}`));
  // Saves are local first: readable at once, without the server.
  assert.equal(await readText(a1, saved[4].id), 'offline 4');
  const t0 = Date.now();
  await env.server.start();
  // No user action: the health probes and the live channel's reconnects find the server.
  for (const f of saved) await waitLocal(b1, f.id, f.contentHash);
  assert.equal(await readText(b1, saved[2].id), 'offline 2');
  assert.equal(await a1.evaluate(() => window.fs.isOnline()), true);
  const events = await a1.evaluate(() => window.events.map((e) => e.type));
  assert.ok(events.includes('offline') && events.includes('online'), `offline then online in ${events}`);
  console.log(`# recovered ${Date.now() - t0} ms after the restart`);
  await a1.close();
  await b1.close();
});

test('conflicting offline edits on two devices converge on one version everywhere', async () => {
  const { a1, b1 } = await twoDevices('conflict');
  const doc = await save(a1, 'doc.txt', 'original');
  const gone = await save(a1, 'gone.txt', 'to delete');
  await waitLocal(b1, doc.id, doc.contentHash);
  await waitLocal(b1, gone.id, gone.contentHash);
  await env.server.stop();
  await a1.waitForFunction(() => !window.fs.isOnline(), null, WAIT);
  await b1.waitForFunction(() => !window.fs.isOnline(), null, WAIT);
  // Both edit the same file while apart; A deletes a file that B edits.
  const edit = (page, id, text) => page.evaluate(([id, text]) =>
    window.fs.updateFile(id, new File([text], 'doc.txt', { type: 'text/plain' })), [id, text]);
  const fromA = await edit(a1, doc.id, 'edited in A');
  const fromB = await edit(b1, doc.id, 'edited in B');
  await a1.evaluate((id) => window.fs.deleteFile(id), gone.id);
  await edit(b1, gone.id, 'edited in B while A deleted it');
  await env.server.start();
  // Once both are back, both show the same thing: one edit of doc.txt (the server's order
  // decides), with its bytes, and the same fate for gone.txt.
  const settled = (page) => page.waitForFunction(([id, hashes]) => {
    const f = window.fs.getFile(id);
    const s = window.fs.getSyncStatus();
    return window.fs.isOnline() && f && hashes.includes(f.contentHash) && f.hasLocalCopy && !s.hasPending;
  }, [doc.id, [fromA.contentHash, fromB.contentHash]], WAIT);
  await settled(a1);
  await settled(b1);
  // A file's text, or where it stands while its bytes are still on their way.
  const view = (page) => page.evaluate(async ([doc, gone]) => {
    const text = async (id) => {
      const f = window.fs.getFile(id);
      if (!f) return null;
      return f.hasLocalCopy ? (await window.fs.readFile(id)).text() : `(downloading ${f.contentHash})`;
    };
    return { doc: await text(doc), gone: await text(gone), count: window.fs.getFiles().length };
  }, [doc.id, gone.id]);
  // Each device may settle on its own edit first; they agree once each has the other's.
  let va, vb;
  for (const t0 = Date.now(); ; await new Promise((resolve) => setTimeout(resolve, 50))) {
    [va, vb] = [await view(a1), await view(b1)];
    if (JSON.stringify(va) === JSON.stringify(vb) || Date.now() - t0 > WAIT.timeout) break;
  }
  assert.ok(['edited in A', 'edited in B'].includes(va.doc), va.doc);
  assert.deepEqual(vb, va, 'both devices show the same files and bytes');
  console.log(`converged on ${JSON.stringify(va)}`);
  await a1.close();
  await b1.close();
});

test('a reloaded device does not download again what it already has', async () => {
  let { store, b, a1, b1 } = await twoDevices('reload');
  const files = [];
  for (let i = 0; i < 3; i++) files.push(await save(a1, `r-${i}.txt`, `reload ${i}`));
  for (const f of files) await waitLocal(b1, f.id);
  const gets = () => b.blobRequests.filter(([m, p]) => m === 'GET' && p.includes(store)).length;
  assert.equal(gets(), 3);
  await b1.close();
  b1 = await openTab(b, store);
  const later = await save(a1, 'after-reload.txt', 'after');
  await waitLocal(b1, later.id);
  for (const f of files) assert.equal(await readText(b1, f.id), `reload ${files.indexOf(f)}`);
  assert.equal(gets(), 4, 'only the new file was downloaded after the reload');
  await a1.close();
  await b1.close();
});

test('a wrong token is a clear auth error through the callbacks, and nothing is lost locally', async () => {
  const store = unique('auth');
  const a = await device();
  const tab = await openTab(a, store, { authToken: 'not-the-token' });
  const saved = await save(tab, 'kept.txt', 'kept locally');
  const err = await tab.waitForFunction(
    () => window.events.find((e) => e.type === 'sync:error'),
    null,
    WAIT,
  ).then((h) => h.jsonValue());
  assert.equal(err.code, 'auth');
  assert.equal(await readText(tab, saved.id), 'kept locally');
  const status = await tab.evaluate(() => window.fs.getSyncStatus());
  assert.equal(status.hasPending, true, 'the upload waits for valid credentials');
  await tab.close();
});

test('getHistory shows a tab what the hub did before it opened, with times, without progress', async () => {
  const store = unique('history');
  const a = await device();
  const first = await openTab(a, store);
  const t0 = Date.now();
  const saved = await saveUploaded(first, 'history.txt', 'what happened');
  const later = await openTab(a, store);
  const [history, seen] = await later.evaluate(async () => [await window.fs.getHistory(), window.events]);
  const ofFile = history.filter((h) => h.event.fileId === saved.id).map((h) => h.event.type);
  assert.deepEqual(ofFile, ['upload:start', 'upload:complete']);
  assert.ok(history.some((h) => h.event.type === 'sync:complete'), JSON.stringify(history));
  assert.ok(!history.some((h) => h.event.type.endsWith(':progress')), 'progress is left out');
  const times = history.map((h) => h.at);
  assert.deepEqual(times, [...times].sort((x, y) => x - y), 'oldest first');
  const ofSave = history.filter((h) => h.event.fileId === saved.id).map((h) => h.at);
  assert.ok(ofSave.every((at) => at >= t0 && at <= Date.now()), `${ofSave} within the save`);
  assert.ok(!seen.some((e) => e.fileId === saved.id), 'the later tab saw none of it through callbacks');
  await first.close();
  await later.close();
});

/** The tab among `tabs` that leads its device. */
async function leaderOf(tabs) {
  await tabs[0].waitForFunction(() => window.fs.leaderTabId() !== undefined, null, WAIT);
  const flags = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.isLeader())));
  assert.equal(flags.filter(Boolean).length, 1, `one leader among ${flags}`);
  return tabs[flags.indexOf(true)];
}

function saveBig(page, name, mib) {
  return page.evaluate(({ name, mib }) => {
    const bytes = new Uint8Array(mib * 1024 * 1024);
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) % 251;
    return window.fs.saveFile(new File([bytes], name, { type: 'application/octet-stream' }));
  }, { name, mib });
}

test('closing the leader tab mid-upload: another tab of the device completes it, once', async () => {
  const store = unique('handover');
  const [a, b] = [await device(), await device()];
  const tabs = [await openTab(a, store), await openTab(a, store)];
  const b1 = await openTab(b, store);
  const leader = await leaderOf(tabs);
  const other = tabs.find((t) => t !== leader);
  await throttle(a, leader, { up: 1024 * 1024 });
  const okPuts = [];
  a.context.on('requestfinished', async (r) => {
    if (r.method() !== 'PUT' || !r.url().includes(store)) return;
    const res = await r.response();
    if (res && res.ok()) okPuts.push(r.url());
  });
  const saved = await saveBig(other, 'big.bin', 4);
  // Progress is relayed to every tab: wait for a partial one, then close the leader.
  await other.waitForFunction((id) => window.events.some(
    (e) => e.type === 'upload:progress' && e.fileId === id && e.loaded > 0 && e.loaded < e.total,
  ), saved.id, WAIT);
  await leader.close();
  await other.waitForFunction(() => window.fs.isLeader(), null, WAIT);
  await waitUploaded(other, saved.id);
  await waitLocal(b1, saved.id, saved.contentHash);
  assert.equal(okPuts.length, 1, `one completed upload: ${okPuts}`);
  await other.close();
  await b1.close();
});

test('reloading the device in the middle of a download completes it after the reload', async () => {
  let { store, b, a1, b1 } = await twoDevices('midload');
  await throttle(b, b1, { down: 1024 * 1024 });
  const saved = await saveBig(a1, 'big.bin', 4);
  await b1.waitForFunction((id) => window.events.some(
    (e) => e.type === 'download:progress' && e.fileId === id && e.loaded > 0 && e.loaded < e.total,
  ), saved.id, WAIT);
  await b1.close();
  b1 = await openTab(b, store);
  await waitLocal(b1, saved.id, saved.contentHash);
  const size = await b1.evaluate(async (id) => (await window.fs.readFile(id)).size, saved.id);
  assert.equal(size, 4 * 1024 * 1024);
  await a1.close();
  await b1.close();
});

/**
 * Device B's blob downloads for `store`: each GET's `Range` header (null: none) and status.
 * With `ignoreRange`, they are answered as by a server that ignores `Range` (200, every byte).
 */
async function blobGets(dev, store, { ignoreRange = false } = {}) {
  const gets = [];
  const pattern = (url) => url.pathname.startsWith('/livestore-filesync-files/') && url.pathname.includes(store);
  await dev.context.route(pattern, async (route) => {
    const headers = { ...route.request().headers() };
    const get = { range: headers.range ?? null, status: null };
    if (route.request().method() === 'GET') gets.push(get);
    if (ignoreRange) delete headers.range;
    const res = await route.fetch({ headers });
    get.status = res.status();
    await route.fulfill({ response: res });
  });
  return gets;
}

const MIB = 1024 * 1024;

test('a download interrupted at about half resumes with a Range request for the rest', async () => {
  let { store, b, a1, b1 } = await twoDevices('resume');
  await throttle(b, b1, { down: 2 * MIB });
  const saved = await saveBig(a1, 'big.bin', 8);
  const before = await b1.waitForFunction((id) => {
    const f = window.fs.getFile(id);
    return f && f.downloadStatus === 'inProgress' && f.downloadedBytes >= 0.4 * f.size && f.downloadedBytes;
  }, saved.id, WAIT).then((h) => h.jsonValue());
  await b1.close();
  const gets = await blobGets(b, store);
  b1 = await openTab(b, store);
  await waitLocal(b1, saved.id, saved.contentHash);
  assert.equal(gets.length, 1, JSON.stringify(gets));
  const from = Number(/^bytes=(\d+)-$/.exec(gets[0].range ?? '')?.[1]);
  assert.ok(from >= before && from < 8 * MIB, `resumed at ${from}, ${before} reported before the close`);
  assert.equal(gets[0].status, 206);
  // The kept prefix and the appended rest, as saved (the engine checked the hash already).
  const wrong = await b1.evaluate(async (id) => {
    const bytes = new Uint8Array(await (await window.fs.readFile(id)).arrayBuffer());
    if (bytes.length !== 8 * 1024 * 1024) return `length ${bytes.length}`;
    return bytes.findIndex((v, i) => v !== (i % 4096 ? 0 : (i / 4096) % 251));
  }, saved.id);
  assert.equal(wrong, -1, 'every byte as saved');
  await a1.close();
  await b1.close();
});

test('a download resumed from a URL that ignores Range starts over and stores the right bytes', async () => {
  let { store, b, a1, b1 } = await twoDevices('norange');
  await throttle(b, b1, { down: 2 * MIB });
  const saved = await saveBig(a1, 'big.bin', 8);
  await b1.waitForFunction((id) => window.fs.getFile(id)?.downloadedBytes >= 2 * 1024 * 1024, saved.id, WAIT);
  await b1.close();
  const gets = await blobGets(b, store, { ignoreRange: true });
  b1 = await openTab(b, store);
  await waitLocal(b1, saved.id, saved.contentHash);
  assert.equal(gets.length, 1, JSON.stringify(gets));
  assert.match(gets[0].range ?? '', /^bytes=\d+-$/, 'asked for the rest');
  assert.equal(gets[0].status, 200, 'got everything');
  const size = await b1.evaluate(async (id) => (await window.fs.readFile(id)).size, saved.id);
  assert.equal(size, 8 * MIB);
  await a1.close();
  await b1.close();
});

test('a tab opened in the middle of a transfer shows the bytes already moved, not 0 %', async () => {
  const store = unique('progress');
  const a = await device();
  const a1 = await openTab(a, store);
  await throttle(a, a1, { up: 1024 * 1024 });
  const saved = await saveBig(a1, 'big.bin', 4);
  // The state agrees with the events: when a progress event is delivered, the file's state
  // already carries at least its bytes.
  const agree = await a1.waitForFunction((id) => {
    const e = window.events.findLast((e) => e.type === 'upload:progress' && e.fileId === id);
    const f = window.fs.getFile(id);
    return e && e.loaded > 0 && f.uploadStatus === 'inProgress'
      && { event: e.loaded, state: f.uploadedBytes, size: f.size };
  }, saved.id, WAIT).then((h) => h.jsonValue());
  assert.ok(agree.state >= agree.event && agree.state < agree.size, JSON.stringify(agree));
  // A tab opened now: its first state (read in the same task as the open resolves, before
  // any later message) shows the upload with the bytes sent so far.
  const late = await blankTab(a);
  const first = await late.evaluate(async ({ storeId, id, token }) => {
    window.fs = await window.filesync.openFileSync({ storeId, remote: { authToken: token } });
    const f = window.fs.getFile(id);
    return { status: f.uploadStatus, sent: f.uploadedBytes, size: f.size };
  }, { storeId: store, id: saved.id, token: TOKEN });
  assert.equal(first.status, 'inProgress');
  assert.ok(first.sent >= agree.event && first.sent < first.size, JSON.stringify(first));
  // Done: no transfer runs, no bytes in flight.
  await waitUploaded(late, saved.id);
  assert.equal(await late.evaluate((id) => window.fs.getFile(id).uploadedBytes, saved.id), 0);
  await a1.close();
  await late.close();
});

/** Whether the server holds the blob of `key` (through the signer API, as a client would). */
async function serverHas(key) {
  const res = await fetchBlob(key);
  await res.arrayBuffer();
  return res.status === 200;
}

test('shared content stays remote while any file uses it, and goes when the last one does', async () => {
  const store = unique('shared');
  const [a, c] = [await device(), await device()];
  const remote = { authToken: TOKEN };
  const pageA = await a.context.newPage();
  await pageA.goto(`${env.server.url}/e2e.html`);
  await pageA.waitForSelector('body[data-ready="true"]');
  await pageA.evaluate(async ([storeId, remote]) => {
    window.events = [];
    window.fs = await window.filesync.openFileSync({ storeId, remote, deleteGraceMs: 0 });
  }, [store, remote]);
  const one = await save(pageA, 'one.txt', 'same bytes');
  const two = await save(pageA, 'two.txt', 'same bytes');
  await waitUploaded(pageA, one.id);
  await waitUploaded(pageA, two.id);
  const key = await pageA.evaluate((id) => window.fs.getFile(id).remoteKey, two.id);
  await pageA.evaluate((id) => window.fs.deleteFile(id), one.id);
  // A new device joins after the delete: the other file's bytes are still there for it.
  const c1 = await openTab(c, store);
  await waitLocal(c1, two.id);
  assert.equal(await readText(c1, two.id), 'same bytes');
  assert.equal(await serverHas(key), true);
  await pageA.evaluate((id) => window.fs.deleteFile(id), two.id);
  const t0 = Date.now();
  while (await serverHas(key)) {
    assert.ok(Date.now() - t0 < 20_000, 'the unused blob is deleted from the server');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await c1.waitForFunction(() => window.fs.getFiles().length === 0, null, WAIT);
  await pageA.close();
  await c1.close();
});

test('bytes that do not match their hash are refused as an integrity error and never shown', async () => {
  const store = unique('integrity');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const saved = await saveUploaded(a1, 'true.txt', 'the true bytes');
  // Corrupt the stored blob behind the server's back (same length, other bytes).
  await writeFile(path.join(env.server.dataDir, 'blobs', store, saved.contentHash), 'the fake bytes');
  const b1 = await openTab(b, store);
  const err = await b1.waitForFunction(
    (id) => window.events.find((e) => e.type === 'download:error' && e.fileId === id),
    saved.id,
    WAIT,
  ).then((h) => h.jsonValue());
  assert.equal(err.code, 'integrity');
  const state = await b1.evaluate((id) => window.fs.getFile(id), saved.id);
  assert.equal(state.hasLocalCopy, false);
  // A read asks for the download again (at once, not after the retry delay); it fails the
  // same way, and the read says why instead of waiting out the retries.
  assert.deepEqual(await readFailure(b1, saved.id), ['integrity', true]);
  await a1.close();
  await b1.close();
});

/**
 * A fake backend on a port of its own: the real pages, and `api(req, res)` for every `/api/`
 * call. Resolves to a tab of a new device with a store synced through it (`window.fs`, its
 * events in `window.events`, uncaught page errors in `page.errors`) and `close()`.
 */
async function withFakeBackend(api) {
  const www = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../www');
  const fake = await createStaticServer(www);
  const serveStatic = fake.listeners('request')[0];
  fake.removeAllListeners('request');
  fake.on('request', (req, res) => (req.url.startsWith('/api/') ? api(req, res) : serveStatic(req, res)));
  await new Promise((resolve) => fake.listen(0, '127.0.0.1', resolve));
  const dev = await device();
  const page = await dev.context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${fake.address().port}/e2e.html`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.evaluate(async (storeId) => {
    window.events = [];
    window.fs = await window.filesync.openFileSync({ storeId, remote: {} });
    window.fs.on('*', (e) => window.events.push(e));
  }, unique('fake'));
  const close = async () => {
    await page.close();
    await new Promise((resolve) => fake.close(resolve));
  };
  return { page, close };
}

/** Waits for the `n`th `sync:error` of code `bad_response`; resolves to it. */
const badResponse = (page, n = 1) => page.waitForFunction(
  (n) => window.events.filter((e) => e.type === 'sync:error' && e.code === 'bad_response')[n - 1],
  n,
  WAIT,
).then((h) => h.jsonValue());

test('a server answering garbage is a typed bad_response error; the store keeps working locally', async () => {
  // Every API answer malformed in its own way.
  let pushed;
  const pushSeen = new Promise((resolve) => (pushed = resolve));
  const { page, close } = await withFakeBackend((req, res) => {
    if (req.url === '/api/health') return res.end('ok');
    if (req.url.includes('/live')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      return res.end('event: events\ndata: {"events": [{"seq": "one"}]}\n\n');
    }
    if (req.method === 'POST') {
      pushed();
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<html>a proxy error page</html>');
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"events": [{"seq": 1, "id": {"client": "x", "n": 1}, "name": "v1.Nope", "args": {}}], "hasMore": false}');
  });
  const first = await save(page, 'one.txt', 'first');
  const err = await badResponse(page);
  assert.match(err.message, /unreadable server response/);
  // Nothing broke: saves and reads go on, the pending work waits for a sane env.server.
  const second = await save(page, 'two.txt', 'second');
  assert.equal(await readText(page, first.id), 'first');
  assert.equal(await readText(page, second.id), 'second');
  assert.equal((await page.evaluate(() => window.fs.getSyncStatus())).hasPending, true);
  // The push's answer (an HTML page) is refused the same way once the pull's backoff ends.
  await pushSeen;
  await badResponse(page, 2);
  assert.deepEqual(page.errors, []);
  await close();
});

test('an answer that never ends is refused at 32 MiB, not read into memory', async () => {
  // The pull's answer streams whitespace (chunked: no length to refuse it by) until the client
  // hangs up; the live channel sends one line that never ends.
  const MiB = 1024 * 1024;
  const END = 512 * MiB;
  // Each kind's first answer: how much got out, and whether the client hung up first. What the
  // sockets and the browser buffer between the two varies (up to ~25 MiB here), so the bound
  // below is loose; a client without the cap reads all 512 MiB (or fails near there).
  const settle = {};
  const closed = Object.fromEntries(['pull', 'live'].map((key) => [key, new Promise((resolve) => (settle[key] = resolve))]));
  const endless = (res, key, chunk) => {
    let n = 0;
    res.once('close', () => settle[key]({ n, byClient: !res.writableEnded }));
    const more = () => {
      while (!res.destroyed && n < END) {
        n += chunk.length;
        if (!res.write(chunk)) return res.once('drain', more);
      }
      res.end();
    };
    more();
  };
  const { page, close } = await withFakeBackend((req, res) => {
    if (req.url === '/api/health') return res.end('ok');
    if (req.url.includes('/live')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: ');
      return endless(res, 'live', Buffer.alloc(MiB, 'x'));
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"events": [');
    endless(res, 'pull', Buffer.alloc(MiB, ' '));
  });
  const err = await badResponse(page);
  assert.match(err.message, /larger than 33554432 bytes/);
  const saved = await save(page, 'local.txt', 'still works');
  assert.equal(await readText(page, saved.id), 'still works');
  // The client stopped reading soon after the cap (what was in flight on the socket aside).
  for (const key of ['pull', 'live']) {
    const { n, byClient } = await closed[key];
    assert.ok(byClient && n >= 32 * MiB && n < 256 * MiB, `${key}: ${n / MiB} MiB sent, client hung up: ${byClient}`);
  }
  assert.deepEqual(page.errors, []);
  await close();
});

test('an edit while the old content uploads: the new content ends uploaded under its own hash', async () => {
  const store = unique('edit-mid-upload');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  await throttle(a, a1, { up: 1024 * 1024 });
  const saved = await saveBig(a1, 'doc.bin', 4);
  await a1.waitForFunction((id) => window.events.some(
    (e) => e.type === 'upload:progress' && e.fileId === id && e.loaded > 0 && e.loaded < e.total,
  ), saved.id, WAIT);
  const edited = await a1.evaluate(
    (id) => window.fs.updateFile(id, new File(['the new, small content'], 'doc.txt', { type: 'text/plain' })),
    saved.id,
  );
  await waitUploaded(a1, saved.id, edited.contentHash);
  const state = await a1.evaluate((id) => window.fs.getFile(id), saved.id);
  assert.ok(state.remoteKey.endsWith(edited.contentHash), `remote key ${state.remoteKey}`);
  // B downloads and verifies the bytes under the new key: the old bytes never got its name.
  const b1 = await openTab(b, store);
  await waitLocal(b1, saved.id, edited.contentHash);
  assert.equal(await readText(b1, saved.id), 'the new, small content');
  assert.equal(await b1.evaluate(() => window.events.some((e) => e.type === 'download:error')), false);
  await a1.close();
  await b1.close();
});
