// Large files end to end: a disk-backed file (picked with setInputFiles, as a user picks one)
// uploads in parts through the real server's multipart extension, and an interruption at
// about half (the leader tab closed, the whole browser restarted, the server restarted) costs
// at most the parts in flight: the upload goes on from the first missing part, with the same
// upload. The server's copy is then read back and hashed.
//
// FILESYNC_E2E_LARGE_MIB sets the size (default 1024: 1 GiB).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchProfile } from './chromium.mjs';
import { TOKEN, useServer, device, blankTab, openTab, unique, throttle, fetchBlob } from './harness.mjs';

const env = useServer();
const MIB = 1024 * 1024;
const SIZE_MIB = Number(process.env.FILESYNC_E2E_LARGE_MIB ?? 1024);
const SIZE = SIZE_MIB * MIB;
/** Parts in flight at once and their size (src/runtime/multipart.rs). */
const PARALLEL = 4;
const PART = 8 * MIB;
/** Long enough for the save, the upload and the read-back of 1 GiB on a loaded 2-core machine. */
const LONG = { timeout: 240_000, polling: 100 };

let dir;
let file;
let fileHash;
/** The store the first test uploaded the large file to (the download test reads it). */
let uploadedStore;

before(async () => {
  // Every MiB differs (its number in its first bytes), so every part has its own checksum.
  dir = await mkdtemp(path.join(tmpdir(), 'filesync-large-'));
  file = path.join(dir, 'large.bin');
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  for (let i = 0; i < SIZE_MIB; i++) {
    const chunk = Buffer.alloc(MIB, i % 251);
    chunk.writeUInt32LE(i, 0);
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, e) => out.end((err) => (err ? e(err) : r())));
  fileHash = hash.digest('hex');
});

after(() => rm(dir, { recursive: true, force: true }));

/** Saves the large file through a file input of `page` (disk-backed); resolves to its state. */
async function saveLarge(page) {
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'pick';
    document.body.append(input);
  });
  await page.setInputFiles('#pick', file);
  return page.evaluate(() => window.fs.saveFile(document.getElementById('pick').files[0]));
}

/**
 * The device's multipart calls and part PUTs, as the browser sent them (its hub's, in the
 * SharedWorker, included): `creates` counts `multipart/create`, `aborts` lists the bodies of
 * `multipart/abort`, `parts` each part PUT ({at, n, length}).
 */
function watchParts(dev, store) {
  const seen = { creates: 0, aborts: [], parts: [] };
  dev.context.on('request', (r) => {
    const u = new URL(r.url());
    if (r.method() === 'POST' && u.pathname.endsWith('/v1/multipart/create')) seen.creates += 1;
    if (r.method() === 'POST' && u.pathname.endsWith('/v1/multipart/abort')) seen.aborts.push(r.postDataJSON());
    if (r.method() === 'PUT' && u.pathname.includes(store) && u.searchParams.has('partNumber')) {
      seen.parts.push({ at: Date.now(), n: Number(u.searchParams.get('partNumber')), length: Number(u.searchParams.get('length')) });
    }
  });
  return seen;
}

/** Waits until `page` shows the upload of `id` at least half done; resolves to the bytes. */
const halfUploaded = (page, id) => page.waitForFunction((id) => {
  const f = window.fs.getFile(id);
  return f && f.uploadStatus === 'inProgress' && f.uploadedBytes >= f.size / 2 && f.uploadedBytes;
}, id, LONG).then((h) => h.jsonValue());

const uploaded = (page, id) => page.waitForFunction((id) => {
  const f = window.fs.getFile(id);
  return f && f.isUploaded && f.uploadStatus === 'done';
}, id, LONG);

/** The SHA-256 of the blob the server holds under `key`, read back through the signer API. */
async function serverHash(key) {
  const res = await fetchBlob(key);
  assert.equal(res.status, 200);
  const hash = createHash('sha256');
  for await (const chunk of res.body) hash.update(chunk);
  return hash.digest('hex');
}

/**
 * What an interruption at `done` bytes cost: the part bytes sent after it, at most what was
 * left plus the parts that were in flight. Prints the figure.
 */
function assertResent(seen, since, done, what) {
  const resent = seen.parts.filter((p) => p.at >= since).reduce((a, p) => a + p.length, 0);
  console.log(`# ${what}: interrupted at ${(done / MIB).toFixed(0)} MiB of ${SIZE_MIB} MiB; ${(resent / MIB).toFixed(0)} MiB sent after (at most ${((SIZE - done) / MIB + PARALLEL * PART / MIB).toFixed(0)})`);
  assert.ok(resent <= SIZE - done + PARALLEL * PART, `${resent} bytes sent after the interruption at ${done}`);
  assert.ok(resent > 0, 'the rest was sent after the interruption');
}

test('a large upload goes in parts; the leader tab closed at half, another tab sends only what was missing', async () => {
  const store = unique('large-leader');
  const a = await device();
  const seen = watchParts(a, store);
  const a1 = await openTab(a, store);
  const a2 = await openTab(a, store);
  await a1.waitForFunction(() => window.fs.leaderTabId() !== undefined);
  const [leader, other] = (await a1.evaluate(() => window.fs.isLeader())) ? [a1, a2] : [a2, a1];
  await throttle(a, leader, { up: 96 * MIB });
  const saved = await saveLarge(other);
  assert.equal(saved.size, SIZE);
  assert.equal(saved.contentHash, fileHash);
  const done = await halfUploaded(other, saved.id);
  const since = Date.now();
  await leader.close();
  await uploaded(other, saved.id);
  assert.equal(seen.creates, 1, 'one multipart upload, resumed by the next leader');
  assertResent(seen, since, done, 'leader closed');
  assert.equal(await serverHash(`${store}/${fileHash}`), fileHash);
  uploadedStore = store;
  await other.close();
});

test('a large download reloaded at half resumes with a Range request for the rest', async () => {
  assert.ok(uploadedStore, 'the first test uploaded the file');
  const b = await device();
  const gets = [];
  b.context.on('request', (r) => {
    if (r.method() === 'GET' && r.url().includes(`/livestore-filesync-files/${uploadedStore}/`)) {
      gets.push(r.headers().range ?? null);
    }
  });
  let b1 = await openTab(b, uploadedStore);
  await throttle(b, b1, { down: 96 * MIB });
  const id = await b1.waitForFunction(() => window.fs.getFiles()[0]?.id, null, LONG).then((h) => h.jsonValue());
  const done = await b1.waitForFunction((id) => {
    const f = window.fs.getFile(id);
    return f && f.downloadStatus === 'inProgress' && f.downloadedBytes >= f.size / 2 && f.downloadedBytes;
  }, id, LONG).then((h) => h.jsonValue());
  await b1.close();
  b1 = await openTab(b, uploadedStore);
  await b1.waitForFunction((id) => window.fs.getFile(id)?.hasLocalCopy, id, LONG);
  assert.equal(gets.length, 2, JSON.stringify(gets));
  assert.equal(gets[0], null, 'the first attempt asks for everything');
  const from = Number(/^bytes=(\d+)-$/.exec(gets[1] ?? '')?.[1]);
  console.log(`# download reloaded at ${(done / MIB).toFixed(0)} MiB of ${SIZE_MIB} MiB: resumed from ${(from / MIB).toFixed(0)} MiB`);
  assert.ok(from >= done && from < SIZE, `resumed at ${from}, ${done} reported before the reload`);
  // Present means verified: the whole content hashed to the file's content hash.
  assert.equal(await b1.evaluate((id) => window.fs.getFile(id).contentHash, id), fileHash);
  await b1.close();
});

test('a large upload resumes after the whole browser restarted', async () => {
  const store = unique('large-browser');
  const a = await device();
  const seen = watchParts(a, store);
  let a1 = await openTab(a, store);
  await throttle(a, a1, { up: 96 * MIB });
  const saved = await saveLarge(a1);
  const done = await halfUploaded(a1, saved.id);
  const since = Date.now();
  await a.context.close();
  a.context = await launchProfile(a.dir);
  const again = watchParts(a, store);
  a1 = await openTab(a, store);
  await uploaded(a1, saved.id);
  assert.equal(seen.creates + again.creates, 1, 'the upload id survived the restart');
  assertResent(again, since, done, 'browser restarted');
  assert.equal(await serverHash(`${store}/${fileHash}`), fileHash);
  await a1.close();
});

test('a large upload resumes after the server restarted', async () => {
  const store = unique('large-server');
  const a = await device();
  const seen = watchParts(a, store);
  const a1 = await openTab(a, store);
  await throttle(a, a1, { up: 96 * MIB });
  const saved = await saveLarge(a1);
  const done = await halfUploaded(a1, saved.id);
  const since = Date.now();
  await env.server.restart();
  // The client's retry waits out its backoff; sync now ends the wait.
  await a1.evaluate(() => window.fs.syncNow());
  await uploaded(a1, saved.id);
  assert.equal(seen.creates, 1, 'the server kept the upload across its restart');
  assertResent(seen, since, done, 'server restarted');
  assert.equal(await serverHash(`${store}/${fileHash}`), fileHash);
  await a1.close();
});

test('a large upload abandoned (its file deleted) is aborted on the server', async () => {
  const store = unique('large-deleted');
  const a = await device();
  const a1 = await openTab(a, store);
  const created = a.context.waitForEvent('requestfinished', {
    predicate: (r) => r.url().endsWith('/v1/multipart/create'),
    timeout: LONG.timeout,
  });
  await throttle(a, a1, { up: 64 * MIB });
  const saved = await saveLarge(a1);
  const { uploadId } = await (await (await created).response()).json();
  await a1.waitForFunction((id) => window.fs.getFile(id)?.uploadedBytes > 0, saved.id, LONG);
  // The hub aborts it, best effort and from its worker, where the test cannot see the request:
  // ask the server until it no longer knows the upload (`complete` answers 404 then).
  const complete = () => fetch(`${env.server.url}/api/v1/multipart/complete`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ key: `${store}/${fileHash}`, uploadId, parts: [] }),
  }).then((r) => r.status);
  assert.equal(await complete(), 400, 'known to the server while the upload runs');
  await a1.evaluate((id) => window.fs.deleteFile(id), saved.id);
  const deadline = Date.now() + 30_000;
  let status;
  while ((status = await complete()) !== 404 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 404, 'aborted: the server forgot the upload');
  await a1.close();
});

test('a file below the multipart threshold still goes in one PUT', async () => {
  const store = unique('small');
  const a = await device();
  const seen = watchParts(a, store);
  const a1 = await blankTab(a);
  await a1.evaluate(async ({ storeId, token }) => {
    window.fs = await window.filesync.openFileSync({ storeId, remote: { authToken: token } });
  }, { storeId: store, token: TOKEN });
  const saved = await a1.evaluate(() => window.fs.saveFile(new File([new Uint8Array(4 * 1024 * 1024)], 'four.bin')));
  await uploaded(a1, saved.id);
  assert.equal(seen.creates, 0);
  assert.equal(seen.parts.length, 0);
  await a1.close();
});
