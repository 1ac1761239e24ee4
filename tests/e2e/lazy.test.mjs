// On-demand downloads end to end (`downloads: 'lazy'`): the real server on loopback, two
// devices. A lazy device lists every file and downloads none until the app reads one; a read
// downloads that file alone, with the usual events, and resolves with verified bytes; a pinned
// file downloads without a read and stays pinned across a reload; offline, reading a file whose
// bytes are not here fails at once with a typed, retryable error. A `downloads` function picks
// the files that download at once, offered each file once per content.
//   node --test tests/e2e/lazy.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TOKEN, WAIT, useServer, device, openTab, blankTab, unique, readText, readFailure, saveUploaded, waitLocal,
} from './harness.mjs';

const env = useServer();

test('a lazy device downloads only the files the app reads, and an offline read fails at once', async () => {
  const store = unique('lazy');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const files = [];
  for (const n of ['one', 'two', 'three']) files.push(await saveUploaded(a1, `${n}.txt`, `the bytes of ${n}`));

  const b1 = await openTab(b, store, { authToken: TOKEN }, { downloads: 'lazy' });
  await b1.evaluate(() => window.fs.whenLoaded());
  await b1.waitForFunction((n) => window.fs.getFiles().length === n, files.length, WAIT);
  const shown = () => b1.evaluate(() =>
    Object.fromEntries(window.fs.getFiles().map((f) => [f.name, [f.downloadStatus, f.hasLocalCopy, f.canDisplay]])));
  // Known, remote only, not displayable; nothing asked of the blob store.
  assert.deepEqual(await shown(), {
    'one.txt': ['remote', false, false],
    'two.txt': ['remote', false, false],
    'three.txt': ['remote', false, false],
  });
  const gets = () => b.blobRequests.filter(([method]) => method === 'GET').map(([, p]) => p.split('/').pop());
  assert.deepEqual(gets(), []);
  assert.equal(await b1.evaluate(() => window.fs.getSyncStatus().hasPending), false);

  // Reading one file downloads it, and only it, with the usual events.
  assert.equal(await readText(b1, files[1].id), 'the bytes of two');
  assert.deepEqual(gets(), [files[1].contentHash]);
  const seen = await b1.evaluate(() => window.events.filter((e) => e.type.startsWith('download:')).map((e) => [e.type, e.fileId]));
  assert.deepEqual(seen.filter(([type]) => type !== 'download:progress'), [
    ['download:start', files[1].id],
    ['download:complete', files[1].id],
  ]);
  assert.deepEqual(await shown(), {
    'one.txt': ['remote', false, false],
    'two.txt': ['done', true, true],
    'three.txt': ['remote', false, false],
  });
  // An object URL waits the same way.
  const url = await b1.evaluate((id) => window.fs.resolveFileUrl(id), files[2].id);
  assert.equal(await b1.evaluate(async (u) => (await fetch(u)).text(), url), 'the bytes of three');
  assert.deepEqual(gets(), [files[1].contentHash, files[2].contentHash]);

  // Pinned: downloads without a read; the pin is this browser's, kept across a reload.
  const four = await saveUploaded(a1, 'four.txt', 'the bytes of four');
  await b1.waitForFunction((id) => window.fs.getFile(id)?.downloadStatus === 'remote', four.id, WAIT);
  await b1.evaluate((id) => window.fs.pin(id), four.id);
  await b1.waitForFunction((id) => window.fs.getFile(id)?.hasLocalCopy, four.id, WAIT);
  assert.deepEqual(gets(), [files[1].contentHash, files[2].contentHash, four.contentHash]);
  await b1.reload();
  await b1.waitForSelector('body[data-ready="true"]');
  await b1.evaluate(async ([storeId, token]) => {
    window.events = [];
    window.fs = await window.filesync.openFileSync({ storeId, remote: { authToken: token }, downloads: 'lazy' });
    window.fs.on('*', (e) => window.events.push(e));
    await window.fs.whenLoaded();
  }, [store, TOKEN]);
  const pins = await b1.evaluate(() => Object.fromEntries(window.fs.getFiles().map((f) => [f.name, f.isPinned])));
  assert.deepEqual(pins, { 'one.txt': false, 'two.txt': false, 'three.txt': false, 'four.txt': true });
  await b1.evaluate((id) => window.fs.unpin(id), four.id);
  assert.equal(await b1.evaluate((id) => window.fs.getFile(id).isPinned, four.id), false);
  const missing = await b1.evaluate(() => window.fs.pin('no-such-file').then(() => 'pinned', (e) => e.code));
  assert.equal(missing, 'not_found');

  // Offline: a remote-only file's read fails at once, typed and retryable; bytes already here
  // still read.
  await env.server.stop();
  await b1.evaluate(() => window.fs.syncNow().catch(() => {}));
  await b1.waitForFunction(() => window.events.some((e) => e.type === 'offline'), null, WAIT);
  assert.deepEqual(await readFailure(b1, files[0].id), ['offline', true]);
  assert.equal(await readText(b1, files[1].id), 'the bytes of two');

  // Back online, the same read succeeds.
  await env.server.start();
  await b1.evaluate(() => window.fs.syncNow().catch(() => {}));
  await b1.waitForFunction(() => {
    const last = (type) => window.events.findLastIndex((e) => e.type === type);
    return last('online') > last('offline');
  }, null, WAIT);
  assert.equal(await readText(b1, files[0].id), 'the bytes of one');
  for (const p of [a1, b1]) await p.close();
});

test('a downloads function picks the files that come at once; the others wait for a read', async () => {
  const store = unique('policy');
  const [a, b] = [await device(), await device()];
  const a1 = await openTab(a, store);
  const small = await saveUploaded(a1, 'small.txt', 'tiny');
  const big = await saveUploaded(a1, 'big.txt', 'x'.repeat(5000));
  const b1 = await blankTab(b);
  await b1.evaluate(async ([storeId, token]) => {
    window.events = [];
    window.offered = [];
    const downloads = (f) => {
      window.offered.push(f.name);
      if (f.name === 'odd.txt') throw new Error('a policy bug');
      return f.size < 100;
    };
    window.fs = await window.filesync.openFileSync({ storeId, remote: { authToken: token }, downloads });
    window.fs.on('*', (e) => window.events.push(e));
  }, [store, TOKEN]);
  const gets = () => b.blobRequests.filter(([method]) => method === 'GET').map(([, p]) => p.split('/').pop());
  await waitLocal(b1, small.id, small.contentHash);
  assert.equal(await b1.evaluate((id) => window.fs.getFile(id).downloadStatus, big.id), 'remote');
  assert.deepEqual(gets(), [small.contentHash]);

  // New content of a file it wants, and a new file it wants, come at once; a policy that
  // throws counts as "no".
  const edited = await a1.evaluate((id) => window.fs.updateFile(id, new File(['tiny, edited'], 'small.txt')), small.id);
  const more = await saveUploaded(a1, 'more.txt', 'also tiny');
  const odd = await saveUploaded(a1, 'odd.txt', 'tiny but odd');
  await waitLocal(b1, small.id, edited.contentHash);
  await waitLocal(b1, more.id, more.contentHash);
  await b1.waitForFunction((id) => window.offered.includes('odd.txt'), odd.id, WAIT);
  assert.equal(await b1.evaluate((id) => window.fs.getFile(id).downloadStatus, odd.id), 'remote');
  // Each file offered once per content, however many changes went by.
  const offered = await b1.evaluate(() => window.offered);
  assert.deepEqual(offered.filter((n) => n === 'big.txt'), ['big.txt']);
  assert.deepEqual(offered.filter((n) => n === 'small.txt'), ['small.txt', 'small.txt']);
  assert.ok(!gets().includes(big.contentHash));
  // The others still come when read.
  assert.equal(await readText(b1, big.id), 'x'.repeat(5000));
  for (const p of [a1, b1]) await p.close();
});
