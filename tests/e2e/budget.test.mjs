// The byte budget end to end (`storageBudget`): the real server on loopback, two devices. With
// a 20 MiB budget and 60 MiB of files, what this browser holds (the engine's count and the
// bytes really in OPFS) ends at or under the budget; evicted files are remote-only and come
// back on a read with verified bytes; a pinned file stays; files saved while the server is down
// are never evicted (they exist nowhere else) and go only once the server has them; a restart
// right after an eviction leaves every file that says its bytes are here readable.
//   node --test tests/e2e/budget.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, WAIT, useServer, device, openTab, unique, hubsGone } from './harness.mjs';

const env = useServer();
const MIB = 1 << 20;
const BUDGET = 20 * MIB;
const LONG = { timeout: 120_000 };

/** Saves a file of `mib` MiB whose bytes depend on `seed`; resolves to its state. */
const saveBig = (page, name, mib, seed) =>
  page.evaluate(([name, mib, seed]) => {
    const bytes = new Uint8Array(mib << 20);
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i >> 12) + seed;
    bytes[0] = seed;
    return window.fs.saveFile(new File([bytes], name));
  }, [name, mib, seed]);

/** Reads the file; resolves to whether its SHA-256 is its content hash. */
const readsVerified = (page, id) =>
  page.evaluate(async (id) => {
    const f = window.fs.getFile(id);
    const digest = await crypto.subtle.digest('SHA-256', await (await window.fs.readFile(id)).arrayBuffer());
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
    return hex === f.contentHash;
  }, id);

/** The bytes of this store's entries in OPFS (what the browser really holds). */
const opfsBytes = (page, store) =>
  page.evaluate(async (store) => {
    const root = await navigator.storage.getDirectory();
    const dir = await (await (await root.getDirectoryHandle('filesync')).getDirectoryHandle(store)).getDirectoryHandle('blobs');
    let n = 0;
    for await (const [, h] of dir.entries()) {
      // An entry the budget deletes between the listing and this read holds nothing.
      n += await h.getFile().then((f) => f.size, (e) => {
        if (e.name === 'NotFoundError') return 0;
        throw e;
      });
    }
    return n;
  }, store);

const info = (page) => page.evaluate(() => window.fs.getStorageInfo());

/** Waits until no transfer runs or waits and the budget is kept, in the engine and on disk. */
async function settled(page, store) {
  await page.waitForFunction(() => window.fs.getFiles().every((f) =>
    ['done', 'remote'].includes(f.downloadStatus) && f.uploadStatus === 'done'), null, LONG);
  for (let t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
    const [held, disk] = [(await info(page)).held, await opfsBytes(page, store)];
    if (held <= BUDGET && disk <= BUDGET) return held;
    assert.ok(Date.now() - t0 < 60_000, `over the budget: ${held} held, ${disk} on disk`);
  }
}

const local = (page) => page.evaluate(() => window.fs.getFiles().filter((f) => f.hasLocalCopy).map((f) => f.id));

test('a 20 MiB budget keeps 60 MiB of files under it without losing any', async () => {
  const store = unique('budget');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const files = [];
  for (let i = 0; i < 6; i++) files.push(await saveBig(a1, `f${i}.bin`, 10, i));
  await a1.waitForFunction(() => window.fs.getFiles().every((f) => f.isUploaded && f.isSynced), null, LONG);

  // Eager downloads under a budget: everything comes, the least recently read goes.
  const open = { authToken: TOKEN };
  const b1 = await openTab(b, store, open, { storageBudget: BUDGET });
  await b1.waitForFunction((n) => window.fs.getFiles().length === n, files.length, WAIT);
  await settled(b1, store);
  const s = await info(b1);
  assert.equal(s.budget, BUDGET);
  assert.ok(s.held <= BUDGET && s.evictable <= s.held, JSON.stringify(s));
  const kept = await local(b1);
  assert.ok(kept.length >= 1 && kept.length <= 2, `${kept.length} files kept`);
  const evicted = files.map((f) => f.id).filter((id) => !kept.includes(id));
  const shown = await b1.evaluate((id) => {
    const f = window.fs.getFile(id);
    return [f.downloadStatus, f.hasLocalCopy, f.canDisplay];
  }, evicted[0]);
  assert.deepEqual(shown, ['remote', false, false]);

  // Pinned stays; evicted files come back, verified, each with its download's events.
  await b1.evaluate((id) => window.fs.pin(id), evicted[0]);
  await b1.waitForFunction((id) => window.fs.getFile(id).hasLocalCopy, evicted[0], LONG);
  for (const id of evicted.slice(1)) {
    await b1.evaluate(() => { window.events = []; });
    assert.ok(await readsVerified(b1, id), `the bytes of ${id} read back`);
    const seen = await b1.evaluate((id) => window.events.filter((e) => e.fileId === id && e.type !== 'download:progress').map((e) => e.type), id);
    assert.deepEqual(seen, ['download:start', 'download:complete']);
  }
  await settled(b1, store);
  assert.ok((await local(b1)).includes(evicted[0]), 'the pinned file stays');

  // Saved while the server is down: only here, so never evicted, whatever the budget.
  await env.server.stop();
  await b1.evaluate(() => window.fs.syncNow().catch(() => {}));
  await b1.waitForFunction(() => window.events.some((e) => e.type === 'offline'), null, WAIT);
  const mine = [await saveBig(b1, 'mine0.bin', 15, 100), await saveBig(b1, 'mine1.bin', 15, 101)];
  try {
    const over = await info(b1);
    assert.ok(over.held > BUDGET, `${over.held} held`);
    // Neither the pinned file nor the two only here (what was read last may wait its grace).
    assert.ok(over.evictable <= over.held - 10 * MIB - 30 * MIB, 'only what is on the server may go');
    for (const f of mine) assert.ok(await readsVerified(b1, f.id));
    const here = await local(b1);
    for (const f of mine) assert.ok(here.includes(f.id), `${f.name} kept while only here`);
  } finally {
    // Back up: uploaded, confirmed, then evicted like any other; the server has them.
    await env.server.start();
  }
  await b1.evaluate(() => window.fs.syncNow().catch(() => {}));
  await b1.waitForFunction(() => window.fs.getFiles().every((f) => f.isSynced), null, LONG);
  await settled(b1, store);
  assert.ok((await local(b1)).includes(evicted[0]), 'the pinned file stays');
  for (const f of mine) {
    await a1.waitForFunction((id) => window.fs.getFile(id)?.hasLocalCopy, f.id, LONG);
    assert.ok(await readsVerified(a1, f.id), `${f.name} reached the other device intact`);
  }

  // A restart right after a read that evicts: every file that says its bytes are here reads.
  const unread = (await b1.evaluate(() => window.fs.getFiles().filter((f) => !f.hasLocalCopy).map((f) => f.id)));
  await b1.evaluate((id) => window.fs.readFile(id), unread[0]);
  await b1.close();
  await hubsGone(b);
  const b2 = await openTab(b, store, open, { storageBudget: BUDGET });
  await b2.evaluate(() => window.fs.whenLoaded());
  await settled(b2, store);
  for (const id of await local(b2)) assert.ok(await readsVerified(b2, id), `${id} reads after the restart`);
  for (const p of [a1, b2]) await p.close();
});

test('an object URL keeps its content; released, the budget may evict it', async () => {
  const store = unique('budget-url');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const files = [];
  for (let i = 0; i < 3; i++) files.push(await saveBig(a1, `u${i}.bin`, 8, 10 + i));
  await a1.waitForFunction(() => window.fs.getFiles().every((f) => f.isUploaded && f.isSynced), null, LONG);
  const b1 = await openTab(b, store, { authToken: TOKEN }, { downloads: 'lazy', storageBudget: 10 * MIB });
  await b1.waitForFunction((n) => window.fs.getFiles().length === n, files.length, WAIT);
  const url = await b1.evaluate((id) => window.fs.resolveFileUrl(id), files[0].id);
  // Two more reads: each would evict the least recently read, but not what the URL shows.
  for (const f of files.slice(1)) assert.ok(await readsVerified(b1, f.id));
  await b1.waitForFunction(() => window.fs.getFiles().every((f) => f.downloadStatus !== 'inProgress'), null, LONG);
  assert.ok((await local(b1)).includes(files[0].id), 'shown in an object URL: kept');
  assert.equal(await b1.evaluate(async (u) => (await (await fetch(u)).blob()).size, url), 8 * MIB);
  const held = (await info(b1)).held;
  assert.ok(held > 10 * MIB, `${held}: over the budget while the URL shows it`);
  await b1.evaluate((id) => window.fs.releaseFileUrl(id), files[0].id);
  await b1.waitForFunction(async (budget) => (await window.fs.getStorageInfo()).held <= budget, 10 * MIB, LONG);
  // Released: the least recently read goes (every tab hears of it).
  await b1.waitForFunction((id) => window.fs.getFile(id).downloadStatus === 'remote', files[0].id, LONG);
  for (const p of [a1, b1]) await p.close();
});
