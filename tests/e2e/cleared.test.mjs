// Storage cleared under a running store ("Clear site data", the browser evicting the origin):
// the hub starts again on the emptied storage from what it holds in memory, tells every tab,
// downloads again what the server has, and saves keep working in open and new tabs.
//   node --test tests/e2e/cleared.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TOKEN, WAIT, useServer, device, openTab, unique, save, readText, waitLocal, waitUploaded, hubsGone,
} from './harness.mjs';

const env = useServer();

/** Every file a tab shows as local can be read; resolves to the ids it checked. */
async function localClaimsHold(page) {
  return page.evaluate(async () => {
    const checked = [];
    for (const f of window.fs.getFiles().filter((f) => f.hasLocalCopy)) {
      const file = await window.fs.readFile(f.id);
      await file.arrayBuffer(); // the bytes themselves, not just a handle
      checked.push(f.id);
    }
    return checked;
  });
}

test('clearing site data under two open tabs: told, nothing shown local that is not, saves sync', async () => {
  const store = unique('cleared');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const a2 = await openTab(a, store);
  const b1 = await openTab(b, store);
  const synced = await save(a1, 'synced.txt', 'on the server before the wipe');
  await waitUploaded(a1, synced.id);
  await a1.evaluate(() => window.fs.whenSynced());
  // A save that never left this browser: uploads paused.
  await a1.evaluate(() => window.fs.pause());
  const onlyHere = await save(a1, 'only-here.txt', 'never uploaded');

  const cdp = await a.context.newCDPSession(a1);
  await cdp.send('Storage.clearDataForOrigin', { origin: env.server.url, storageTypes: 'all' });

  // Every tab is told, once, with what is gone for good.
  for (const tab of [a1, a2]) {
    const cleared = await tab.waitForFunction(
      () => window.events.find((e) => e.type === 'storage:cleared'), null, WAIT,
    ).then((h) => h.jsonValue());
    assert.equal(cleared.code, 'storage_cleared');
    assert.deepEqual(cleared.lostFileIds, [onlyHere.id]);
  }
  // No tab claims bytes it does not have: the lost file and (until downloaded again) the
  // synced one are not local; whatever is shown local reads.
  for (const tab of [a1, a2]) {
    assert.equal(await tab.evaluate((id) => window.fs.getFile(id).hasLocalCopy, onlyHere.id), false);
    for (const id of await localClaimsHold(tab)) assert.notEqual(id, onlyHere.id);
  }
  await a1.evaluate(() => window.fs.resume());
  // What the server has comes back.
  await waitLocal(a2, synced.id, synced.contentHash);
  assert.equal(await readText(a2, synced.id), 'on the server before the wipe');

  // Saves after the wipe: in an open tab and in a tab opened after it; both reach B.
  const fromOpen = await save(a1, 'after-open.txt', 'saved in an open tab');
  const a3 = await openTab(a, store);
  const fromNew = await save(a3, 'after-new.txt', 'saved in a new tab');
  for (const f of [fromOpen, fromNew]) await waitLocal(b1, f.id, f.contentHash);
  assert.equal(await readText(b1, fromOpen.id), 'saved in an open tab');
  assert.equal(await readText(b1, fromNew.id), 'saved in a new tab');
  for (const tab of [a1, a2, a3]) await localClaimsHold(tab);
  for (const tab of [a1, a2]) {
    const told = await tab.evaluate(() => window.events.filter((e) => e.type === 'storage:cleared').length);
    assert.equal(told, 1, 'told once');
  }
  // No storage errors once started again (the old database's "connection is closing"
  // every few seconds). A write that failed as the storage went may be reported, before.
  for (const tab of [a1, a2, a3]) {
    const errors = await tab.evaluate(() => {
      const from = window.events.findIndex((e) => e.type === 'storage:cleared');
      return window.events.slice(from + 1).filter((e) => e.type === 'storage:error');
    });
    assert.deepEqual(errors, []);
  }

  // The state was written again: a cold start of the device shows every file without the
  // server, and the saves made after the wipe are there.
  for (const tab of [a1, a2, a3]) await tab.close();
  await hubsGone(a);
  // Its server unreachable: what it shows comes from this browser's storage alone.
  const again = await openTab(a, store, { baseUrl: 'http://127.0.0.1:9/api', authToken: TOKEN });
  await again.evaluate(() => window.fs.whenLoaded());
  const names = await again.evaluate(() => window.fs.getFiles().map((f) => f.name).sort());
  assert.deepEqual(names, ['after-new.txt', 'after-open.txt', 'only-here.txt', 'synced.txt']);
  assert.equal(await readText(again, fromNew.id), 'saved in a new tab');
  await again.close();
  await b1.close();
});
