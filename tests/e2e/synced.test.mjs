// "Synced" tells the truth: what a tab reports as synced is on the server, so a tab closed at
// that moment loses nothing, and `whenSynced()` resolves only then.
//   node --test tests/e2e/synced.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  WAIT, useServer, device, openTab, unique, save, readText, waitLocal, serverEvents,
} from './harness.mjs';

const env = useServer();

/** The store's files as the server records them: file id → remote key ('' while none). */
async function serverFiles(store) {
  const files = new Map();
  for (const e of await serverEvents(store)) {
    if (e.name === 'v1.FileDeleted') files.delete(e.args.id);
    else files.set(e.args.id, e.args.remoteKey ?? '');
  }
  return files;
}

/** In the page: resolves the first time every file is synced and the status says idle. */
function watchFirstSynced(page, count) {
  return page.evaluate((count) => {
    window.firstSynced = new Promise((resolve) => {
      const check = () => {
        const s = window.fs.getSyncStatus();
        const files = window.fs.getFiles();
        if (files.length === count && files.every((f) => f.isSynced) && !s.isSyncing && !s.hasPending) {
          resolve(files.map((f) => ({ id: f.id, hash: f.contentHash, uploaded: f.isUploaded })));
        }
      };
      window.fs.subscribe(check);
    });
  }, count);
}

test('a tab closed the moment it first says synced has put every file on the server (30 rounds)', async () => {
  const writer = await device();
  const reader = await device();
  const FILES = 5;
  for (let round = 0; round < 30; round++) {
    const store = unique(`closing-${round}`);
    const w = await openTab(writer, store);
    await watchFirstSynced(w, FILES);
    const texts = Array.from({ length: FILES }, (_, i) => `round ${round} file ${i} `.repeat(50 + i));
    const saved = await w.evaluate((texts) => Promise.all(texts.map((t, i) =>
      window.fs.saveFile(new File([t], `f${i}.txt`, { type: 'text/plain' })))), texts);
    const synced = await w.evaluate(() => window.firstSynced);
    // Its only tab: the hub goes with it, whatever it had not sent yet.
    await w.close();
    assert.ok(synced.every((f) => f.uploaded), `round ${round}: synced implies uploaded`);
    const onServer = await serverFiles(store);
    for (const f of saved) {
      assert.ok(onServer.get(f.id), `round ${round}: the server has ${f.id} with its remote key`);
    }
    // A device that never saw the store gets every file, with its bytes.
    const r = await openTab(reader, store);
    for (const [i, f] of saved.entries()) {
      await waitLocal(r, f.id, f.contentHash);
      assert.equal(await readText(r, f.id), texts[i]);
    }
    await r.close();
  }
});

test('whenSynced resolves once the server has everything, rejects offline and for local-only stores', async () => {
  const dev = await device();
  const store = unique('when-synced');
  const a1 = await openTab(dev, store);
  const saved = await a1.evaluate(async () => {
    const files = await Promise.all(['one', 'two'].map((t) =>
      window.fs.saveFile(new File([t], `${t}.txt`, { type: 'text/plain' }))));
    await window.fs.whenSynced();
    return files.map((f) => f.id);
  });
  // Resolved means recorded: the server has both files with their keys, right then.
  const onServer = await serverFiles(store);
  for (const id of saved) assert.ok(onServer.get(id), `the server has ${id} with its remote key`);
  assert.equal(await a1.evaluate(() => window.fs.getSyncStatus().unconfirmedEventCount), 0);

  // Offline with a change made here: a typed, retryable rejection, not a hang.
  await env.server.stop();
  await a1.waitForFunction(() => !window.fs.isOnline(), null, WAIT);
  const offline = await a1.evaluate(async () => {
    await window.fs.saveFile(new File(['three'], 'three.txt', { type: 'text/plain' }));
    try {
      await window.fs.whenSynced();
      return null;
    } catch (e) {
      return { code: e.code, retryable: e.retryable, pending: window.fs.getSyncStatus().hasPending };
    }
  });
  assert.deepEqual(offline, { code: 'offline', retryable: true, pending: true });
  // Back online, the same call waits for the upload and the confirmation, then resolves.
  await env.server.start();
  await a1.waitForFunction(() => window.fs.isOnline(), null, WAIT);
  const id = await a1.evaluate(async () => {
    await window.fs.whenSynced();
    return window.fs.getFiles().find((f) => f.name === 'three.txt').id;
  });
  assert.ok((await serverFiles(store)).get(id), 'the offline save is on the server once resolved');

  const local = await openTab(dev, unique('local'), false);
  const code = await local.evaluate(() => window.fs.whenSynced().then(() => 'resolved', (e) => e.code));
  assert.equal(code, 'local_only');
  await a1.close();
  await local.close();
});

/**
 * A same-origin front for the server (pages and API) that can hold one push: after `holdNext`
 * is armed by a blob upload, the next push is kept unanswered and unforwarded; every later
 * one goes through, and `forwarded` resolves with the first such push's status.
 */
async function frontProxy(target) {
  const http = await import('node:http');
  const front = { armed: false, held: null, forwarded: null };
  let settle;
  let holding;
  front.forwarded = new Promise((resolve) => (settle = resolve));
  front.holding = new Promise((resolve) => (holding = resolve));
  const server = http.createServer((req, res) => {
    const isPush = req.method === 'POST' && /\/v1\/stores\/[^/]+\/events$/.test(req.url);
    if (req.method === 'PUT' && req.url.startsWith('/livestore-filesync-files/')) front.armed = true;
    if (isPush && front.armed && !front.held) {
      front.held = req;
      holding();
      return; // never answered: the hub waits for it until its page goes
    }
    const up = http.request(new URL(req.url, target), { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
      if (isPush && front.held) r.on('end', () => settle(r.statusCode));
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.url = `http://127.0.0.1:${server.address().port}`;
  front.close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return front;
}

test('the last tab going sends the changes its hub had not pushed, with keepalive', async () => {
  const front = await frontProxy(env.server.url);
  try {
    const [writer, reader] = [await device(), await device()];
    const store = unique('parting');
    const page = await writer.context.newPage();
    await page.goto(`${front.url}/e2e.html`);
    await page.waitForSelector('body[data-ready="true"]');
    const saved = await page.evaluate(async (store) => {
      window.fs = await window.filesync.openFileSync({ storeId: store, remote: { authToken: 'e2e-token' } });
      return window.fs.saveFile(new File(['parting words'], 'last.txt', { type: 'text/plain' }));
    }, store);
    // Uploaded, but the push that attaches the key hangs: the server does not know it yet.
    await page.waitForFunction((id) => {
      const f = window.fs.getFile(id);
      return f.isUploaded && !f.isSynced && window.fs.getSyncStatus().unconfirmedEventCount === 1;
    }, saved.id, WAIT);
    // The hub pushes only events it has stored, and tells its tabs of them as it pushes.
    await front.holding;
    assert.equal((await serverFiles(store)).get(saved.id), '', 'the server lacks the key');
    // Uploaded is not synced: whenSynced waits for the confirmation (a wrong one resolves at
    // once, in microtasks; the 300 ms are a deadline for that, not a wait for an event).
    const early = await page.evaluate(() => Promise.race([
      window.fs.whenSynced().then(() => 'resolved', (e) => e.code),
      new Promise((resolve) => setTimeout(() => resolve('waiting'), 300)),
    ]));
    assert.equal(early, 'waiting');
    await page.close(); // the only tab: its hub goes too
    assert.equal(await front.forwarded, 200, 'the parting push reached the server');
    assert.ok((await serverFiles(store)).get(saved.id), 'the server has the key');
    const r = await openTab(reader, store);
    await waitLocal(r, saved.id, saved.contentHash);
    assert.equal(await readText(r, saved.id), 'parting words');
    await r.close();
  } finally {
    await front.close();
  }
});
