// Multi-tab tests of the built package in headless Chromium (Debian's), with a persistent
// browser profile so IndexedDB and OPFS are on disk. Run by scripts/test.sh after the build:
//   node --test tests/e2e/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStaticServer } from '../../scripts/serve.mjs';
import { launchProfile } from './chromium.mjs';
import { NEWER_VERSION, VERSION, writeNewerBuild } from './builds.mjs';
import {
  blankTab, failOnPageErrors, hubsGone as harnessHubsGone, openTab as harnessOpenTab, save, unique,
} from './harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../www');

let server, base, profile, context, cdp, newer;
/** The one browser profile these tests run in, as the harness's device. */
const dev = {};
/** Where tests load another build: this package as a newer release (`NEWER_VERSION`). */
const NEWER = '/newer';

// Uncaught errors in any page (a wasm closure called after it was freed, a rejected promise
// nobody handles...) fail the test that caused them.
failOnPageErrors();

before(async () => {
  newer = await mkdtemp(path.join(tmpdir(), 'filesync-newer-'));
  await writeNewerBuild(newer);
  server = await createStaticServer(root, { mounts: { [`${NEWER}/`]: newer } });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  profile = await mkdtemp(path.join(tmpdir(), 'filesync-e2e-'));
  context = await launchProfile(profile);
  dev.context = context;
  cdp = await context.browser().newBrowserCDPSession();
});

/** Resolves once no hub SharedWorker runs (every tab of every store closed). */
const hubsGone = () => harnessHubsGone(dev);

after(async () => {
  await context?.close();
  await new Promise((resolve) => server?.close(resolve));
  if (profile) await rm(profile, { recursive: true, force: true });
  if (newer) await rm(newer, { recursive: true, force: true });
});

/** A fresh tab on the test page, the package loaded, no store open yet. `build`: a URL
 * prefix to load another build from (`NEWER`). */
const harnessPage = (build = '') => blankTab(dev, `${base}${build}`);

/** A new tab with the store opened (local-only unless `options.remote`) as `window.fs`. */
const openTab = (storeId, options = {}, build = '') =>
  harnessOpenTab(dev, storeId, false, { base: `${base}${build}`, ...options });

const fileCount = (page) => page.evaluate(() => window.fs.getFiles().length);
const waitForCount = (page, n) =>
  page.waitForFunction((n) => window.fs.getFiles().length === n, n, { timeout: 10_000 });

test('three tabs save at once and every tab sees every file', async () => {
  const store = unique('three');
  const tabs = [await openTab(store), await openTab(store), await openTab(store)];
  const saved = await Promise.all(tabs.map((t, i) => save(t, `tab-${i}.txt`, `hello from tab ${i}`, { i })));
  assert.equal(new Set(saved.map((f) => f.id)).size, 3);
  for (const t of tabs) await waitForCount(t, 3);
  // Another tab reads a file back with its original name, type, bytes and metadata.
  const read = await tabs[2].evaluate(async (id) => {
    const f = await window.fs.readFile(id);
    return { name: f.name, type: f.type, text: await f.text(), meta: window.fs.getFile(id).metadata };
  }, saved[0].id);
  assert.deepEqual(read, { name: 'tab-0.txt', type: 'text/plain', text: 'hello from tab 0', meta: { i: 0 } });
  const state = await tabs[1].evaluate((id) => window.fs.getFile(id), saved[1].id);
  assert.equal(state.hasLocalCopy, true);
  assert.equal(state.canDisplay, true);
  assert.equal(state.uploadStatus, 'done', 'local-only: nothing to upload');
  for (const t of tabs) await t.close();
});

test('a tab of another build (another hub worker URL) takes the store over; the old tabs stop and say why', async () => {
  const store = unique('handover');
  const old = await openTab(store);
  await save(old, 'one.txt', '1');
  await old.waitForFunction(() => window.fs.isLeader(), null, { timeout: 10_000 });
  // A deploy changed the worker's URL (bundlers hash it): the new tab starts a second hub,
  // which asks the running one for the store instead of waiting for every old tab to close.
  const fresh = await openTab(store, { workerUrl: '/filesync-worker.js?build=2' });
  await waitForCount(fresh, 1);
  await save(fresh, 'two.txt', '2');
  await waitForCount(fresh, 2);
  // The old tab was told, fails every call with the reason, and let go of leadership.
  await old.waitForFunction(() => window.events.some((e) => e.type === 'storage:error' && e.code === 'superseded'));
  const refused = await old.evaluate(async () => {
    try {
      await window.fs.saveFile(new File(['3'], 'three.txt'));
      return 'saved';
    } catch (e) {
      return `${e.code}:${e.retryable}`;
    }
  });
  assert.equal(refused, 'superseded:false');
  await fresh.waitForFunction(() => window.fs.isLeader(), null, { timeout: 10_000 });
  assert.equal(await old.evaluate(() => window.fs.isLeader()), false);
  // A new tab of the old build reaches the old hub, which no longer serves: it is refused at
  // once instead of taking the store back.
  const late = await harnessPage();
  const lateOpen = await late.evaluate(async (storeId) => {
    try {
      await window.filesync.openFileSync({ storeId });
      return 'opened';
    } catch (e) {
      return e.code;
    }
  }, store);
  assert.equal(lateOpen, 'superseded');
  // The new hub holds the store: another tab of the new build sees both files.
  const second = await openTab(store, { workerUrl: '/filesync-worker.js?build=2' });
  await waitForCount(second, 2);
  for (const t of [old, fresh, late, second]) await t.close();
});

/** In a page: opens `storeId` and says how it went (`opened`, or the error's code and message). */
function tryOpen(page, storeId, options = {}) {
  return page.evaluate(async ([storeId, options]) => {
    try {
      window.fs = await window.filesync.openFileSync({ storeId, ...options });
      return 'opened';
    } catch (e) {
      return `${e.code}: ${e.message}`;
    }
  }, [storeId, options]);
}

const supersededEvent = (page) => page.waitForFunction(
  () => window.events.some((e) => e.type === 'storage:error' && e.code === 'superseded'));

test('a page of an older version is refused at once while a newer one holds the store, and opens once it is gone', async () => {
  const store = unique('older-page');
  const fresh = await openTab(store, {}, NEWER);
  assert.equal(await fresh.evaluate(() => window.filesync.version()), NEWER_VERSION);
  await save(fresh, 'one.txt', '1');
  // A stale page of the previous release (a tab restored from cache) starts its own hub,
  // which asks for the store: the newer hub refuses, so the open fails and says why instead
  // of waiting for every newer tab to close.
  const stale = await harnessPage();
  const refused = await tryOpen(stale, store);
  assert.equal(refused,
    `superseded: a newer version of the app (${NEWER_VERSION}; this is ${VERSION}) holds this store: reload the page`);
  // The newer build carries on.
  await save(fresh, 'two.txt', '2');
  await waitForCount(fresh, 2);
  // Once the newer build's tabs are gone (its hub's alive lock is free), the older page may
  // open the store: nothing newer holds it.
  await fresh.close();
  await stale.evaluate((storeId) => navigator.locks.request(`filesync:hub-alive:${storeId}`, async () => {}), store);
  assert.equal(await tryOpen(stale, store), 'opened');
  await stale.waitForFunction(() => window.fs.getFiles().length === 2);
  await stale.close();
});

test('without SharedWorker, a tab of a newer version takes the store from the hosting tab; the older tabs stop', async () => {
  const store = unique('tab-hosted-versions');
  const opts = { hub: 'tab' };
  const old = [await openTab(store, opts), await openTab(store, opts)];
  await save(old[0], 'one.txt', '1');
  await waitForCount(old[1], 1);
  // The newer tab hosts a hub of its own version (tabs of two versions never share one); it
  // asks the old host's hub for the store, which hands it over.
  const fresh = await openTab(store, opts, NEWER);
  await waitForCount(fresh, 1);
  assert.equal(await fresh.evaluate(() => window.fs.hostsHub()), true);
  await save(fresh, 'two.txt', '2');
  await waitForCount(fresh, 2);
  for (const t of old) await supersededEvent(t);
  await fresh.waitForFunction(() => window.fs.isLeader(), null, { timeout: 10_000 });
  const olderLeads = await Promise.all(old.map((t) => t.evaluate(() => window.fs.isLeader())));
  assert.deepEqual(olderLeads, [false, false]);
  // Another tab of the older version reaches the old host's hub, which no longer serves.
  const late = await harnessPage();
  assert.match(await tryOpen(late, store, opts), /^superseded: /);
  // Another tab of the newer version joins the newer hub.
  const second = await openTab(store, opts, NEWER);
  await waitForCount(second, 2);
  assert.equal(await second.evaluate(() => window.fs.hostsHub()), false);
  for (const t of [...old, fresh, late, second]) await t.close();
});

test('storage info reports usage and quota; persistence is asked of the browser', async () => {
  const page = await openTab(unique('storage'));
  await save(page, 'kept.txt', 'stored here');
  const info = await page.evaluate(() => window.fs.getStorageInfo());
  assert.equal(info.kind, 'opfs');
  assert.ok(info.usage > 0 && info.quota > info.usage, JSON.stringify(info));
  assert.equal(info.persisted, false, 'a fresh profile is best-effort storage');
  // The browser decides (site engagement, an installed app, the user): grant it here.
  await cdp.send('Browser.grantPermissions', { origin: base, permissions: ['durableStorage'] });
  try {
    assert.equal(await page.evaluate(() => window.fs.requestPersistence()), true);
    assert.equal((await page.evaluate(() => window.fs.getStorageInfo())).persisted, true);
  } finally {
    await cdp.send('Browser.resetPermissions');
  }
  await page.close();
});

test('exactly one leader, and closing it hands leadership to another tab', async () => {
  const store = unique('leader');
  const tabs = [await openTab(store), await openTab(store), await openTab(store)];
  const leaderOf = async () => {
    await tabs[0].waitForFunction(() => window.fs.leaderTabId() !== undefined, null, { timeout: 10_000 });
    return tabs[0].evaluate(() => window.fs.leaderTabId());
  };
  const leaderId = await leaderOf();
  const flags = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.isLeader())));
  assert.equal(flags.filter(Boolean).length, 1, `one leader among ${flags}`);
  const ids = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.tabId())));
  const index = ids.indexOf(leaderId);
  assert.ok(index >= 0);
  const [closing] = tabs.splice(index, 1);
  await closing.close();
  await tabs[0].waitForFunction((old) => {
    const id = window.fs.leaderTabId();
    return id !== undefined && id !== old;
  }, leaderId, { timeout: 10_000 });
  const after = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.isLeader())));
  assert.equal(after.filter(Boolean).length, 1, `one new leader among ${after}`);
  for (const t of tabs) await t.close();
});

test('edits and deletes reach every tab; shared bytes survive deleting one of two files', async () => {
  const store = unique('edit');
  const [a, b] = [await openTab(store), await openTab(store)];
  const one = await save(a, 'one.txt', 'same bytes');
  const two = await save(a, 'two.txt', 'same bytes');
  await waitForCount(b, 2);
  const edited = await b.evaluate(
    (id) => window.fs.updateFile(id, new File(['new content'], 'one.txt', { type: 'text/plain' })),
    one.id,
  );
  assert.notEqual(edited.contentHash, one.contentHash);
  await a.waitForFunction(([id, h]) => window.fs.getFile(id)?.contentHash === h, [one.id, edited.contentHash]);
  assert.equal(await a.evaluate(async (id) => (await window.fs.readFile(id)).text(), one.id), 'new content');
  await a.evaluate((id) => window.fs.deleteFile(id), one.id);
  await waitForCount(b, 1);
  assert.equal(await b.evaluate(async (id) => (await window.fs.readFile(id)).text(), two.id), 'same bytes');
  const err = await b.evaluate(async (id) => {
    try {
      await window.fs.readFile(id);
      return null;
    } catch (e) {
      return { name: e.name, code: e.code, retryable: e.retryable };
    }
  }, one.id);
  assert.deepEqual(err, { name: 'FileSyncError', code: 'not_found', retryable: false });
  await a.close();
  await b.close();
});

test('a reload in the middle of a save loses nothing acknowledged', async () => {
  const store = unique('reload');
  const page = await openTab(store);
  for (let i = 0; i < 5; i++) await save(page, `kept-${i}.txt`, `kept ${i}`);
  // Start a bigger save and reload without waiting for it.
  await page.evaluate(() => {
    const big = new Uint8Array(8 * 1024 * 1024).fill(7);
    window.fs.saveFile(new File([big], 'big.bin', { type: 'application/octet-stream' }));
  });
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.evaluate(async (storeId) => {
    window.fs = await window.filesync.openFileSync({ storeId });
  }, store);
  const names = await page.evaluate(() => window.fs.getFiles().map((f) => f.name).sort());
  for (let i = 0; i < 5; i++) assert.ok(names.includes(`kept-${i}.txt`), `kept-${i}.txt survived: ${names}`);
  // The interrupted save is either absent or complete and readable.
  const big = await page.evaluate(async () => {
    const f = window.fs.getFiles().find((f) => f.name === 'big.bin');
    if (!f) return null;
    return (await window.fs.readFile(f.id)).size;
  });
  assert.ok(big === null || big === 8 * 1024 * 1024, `big.bin is whole or absent: ${big}`);
  await page.close();
});

test('broken IndexedDB records are reported and skipped; the rest loads', async () => {
  const store = unique('corrupt');
  let page = await openTab(store);
  await save(page, 'good.txt', 'good');
  await page.close();
  // With every tab closed the hub stops; plant broken rows, then open the store again.
  page = await context.newPage();
  await page.goto(`${base}/e2e.html`);
  await page.evaluate(async (name) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open(name);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const tx = db.transaction(['rows', 'local'], 'readwrite');
    tx.objectStore('rows').put({ id: 'broken', path: 'p', contentHash: 'NOT-A-HASH' }, 'broken');
    tx.objectStore('local').put('garbage', 'also-broken');
    await new Promise((resolve) => (tx.oncomplete = resolve));
    db.close();
  }, `filesync:${store}`);
  await page.close();
  // The hub read the store before the damage: wait until it is gone, so a fresh one loads.
  await hubsGone();
  page = await openTab(store);
  // Issues are known once the hub has loaded the tables (open may show the saved view first).
  const issues = await page.evaluate(async () => {
    await window.fs.whenLoaded();
    return window.fs.getStorageIssues();
  });
  assert.deepEqual(issues.map((i) => `${i.table}/${i.key}`).sort(), ['local/also-broken', 'rows/broken']);
  // And as events, to the listener added right after the open.
  await page.waitForFunction(() => window.events.filter((e) => e.type === 'storage:issue').length === 2);
  const reported = await page.evaluate(() => window.events.filter((e) => e.type === 'storage:issue'));
  assert.deepEqual(reported.map((e) => `${e.table}/${e.key}`).sort(), ['local/also-broken', 'rows/broken']);
  assert.ok(reported.every((e) => e.code && e.message), 'each with its code and message');
  assert.deepEqual(await page.evaluate(() => window.fs.getFiles().map((f) => f.name)), ['good.txt']);
  await page.close();
});

/** In a page: the text of the store's files view record once it exists (the hub saves it a
 * moment after files change; there is no event for it, so this polls IndexedDB). With
 * `readable`, once it is a snapshot (a broken record is being replaced). */
async function savedView(page, store, { readable = false } = {}) {
  return page.evaluate(async ([name, readable]) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open(name);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    try {
      for (let i = 0; i < 500; i++) {
        const text = await new Promise((resolve, reject) => {
          const r = db.transaction('view').objectStore('view').get('snapshot');
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        });
        if (typeof text === 'string' && (!readable || isSnapshot(text))) return text;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('the hub never saved its files view');
    } finally {
      db.close();
    }
    function isSnapshot(text) {
      try {
        return Array.isArray(JSON.parse(text).snapshot.files);
      } catch {
        return false;
      }
    }
  }, [`filesync:${store}`, readable]);
}

test('a cold start shows the files view the last hub saved, then the loaded state', async () => {
  const store = unique('view');
  let page = await openTab(store);
  await save(page, 'a.txt', 'a');
  await save(page, 'b.txt', 'b');
  const view = JSON.parse(await savedView(page, store));
  assert.deepEqual(view.snapshot.files.map((f) => f.name).sort(), ['a.txt', 'b.txt']);
  assert.equal(view.snapshot.provisional, true);
  await page.close();
  await hubsGone();
  // Plant a file only the view knows: the tab shows it until the loaded state replaces it,
  // which proves the view is what a cold start shows first.
  const ghost = { ...view.snapshot.files[0], id: 'ghost', name: 'ghost.txt', path: 'ghost.txt' };
  view.snapshot.files.push(ghost);
  /** Plants `view` as the view record (no hub running), opens the store in a fresh tab. */
  const openWithView = async (view) => {
    await hubsGone();
    const page = await harnessPage();
    const seen = await page.evaluate(async ([name, storeId, view]) => {
      const db = await new Promise((resolve, reject) => {
        const r = indexedDB.open(name);
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
      const tx = db.transaction('view', 'readwrite');
      tx.objectStore('view').put(view, 'snapshot');
      await new Promise((resolve) => (tx.oncomplete = resolve));
      db.close();
      const fs = await window.filesync.openFileSync({ storeId });
      const names = () => fs.getFiles().map((f) => f.name).sort();
      const first = { names: names(), loaded: fs.isLoaded() };
      await fs.whenLoaded();
      return { first, loaded: { names: names(), loaded: fs.isLoaded() } };
    }, [`filesync:${store}`, store, view]);
    await page.close();
    return seen;
  };
  const seen = await openWithView(JSON.stringify(view));
  assert.deepEqual(seen.first, { names: ['a.txt', 'b.txt', 'ghost.txt'], loaded: false });
  assert.deepEqual(seen.loaded, { names: ['a.txt', 'b.txt'], loaded: true });
  // A broken view is ignored: the open waits for the loaded state instead.
  const whole = { names: ['a.txt', 'b.txt'], loaded: true };
  for (const broken of ['{"snapshot":{"files":[', 'garbage', '{"changed":{"files":[],"removed":[]}}', 42]) {
    assert.deepEqual(await openWithView(broken), { first: whole, loaded: whole }, `view ${broken}`);
  }
  // The tab that found it broken told its hub, which saved a fresh one (it does not rewrite a
  // stored view at every start).
  await hubsGone();
  page = await openTab(store);
  const repaired = JSON.parse(await savedView(page, store, { readable: true }));
  assert.deepEqual(repaired.snapshot.files.map((f) => f.name).sort(), ['a.txt', 'b.txt']);
  await page.close();
});

test('storage that cannot load fails the open with its typed error; the next open tries again', async () => {
  const store = unique('toonew');
  const page = await harnessPage();
  const name = `filesync:${store}`;
  // A database a newer filesync wrote (a higher IndexedDB version) cannot be opened by this one,
  // even if it holds what looks like a files view: the open must not show it.
  await page.evaluate(async (name) => {
    const r = indexedDB.open(name, 99);
    r.onupgradeneeded = () => {
      r.result.createObjectStore('future');
      r.result.createObjectStore('view');
      const view = { snapshot: { files: [], leader: null, storage: 'opfs', issues: [], online: true, provisional: true } };
      r.transaction.objectStore('view').put(JSON.stringify(view), 'snapshot');
    };
    await new Promise((resolve, reject) => { r.onsuccess = resolve; r.onerror = () => reject(r.error); });
    r.result.close();
  }, name);
  const attempt = (storeId) => page.evaluate(async (storeId) => {
    try {
      window.fs = await window.filesync.openFileSync({ storeId });
      return { ok: true };
    } catch (e) {
      return { ok: false, name: e.name, code: e.code, retryable: e.retryable };
    }
  }, storeId);
  assert.deepEqual(await attempt(store), { ok: false, name: 'FileSyncError', code: 'schema_too_new', retryable: false });
  const hubs = async () => (await cdp.send('Target.getTargets')).targetInfos
    .filter((t) => t.type === 'shared_worker').map((t) => t.targetId);
  const hub = await hubs();
  // The newer page "went away": the database is this version's again. The same hub, still
  // running, loads the store for the next open instead of repeating its first failure.
  await page.evaluate((name) => new Promise((resolve, reject) => {
    const r = indexedDB.deleteDatabase(name);
    r.onsuccess = resolve;
    r.onerror = () => reject(r.error);
  }), name);
  assert.deepEqual(await attempt(store), { ok: true });
  // No hub started meanwhile (other tests' hubs may have ended): the one that failed loaded it.
  const now = await hubs();
  assert.ok(now.length > 0 && now.every((id) => hub.includes(id)), `no new hub: ${hub} -> ${now}`);
  await save(page, 'after.txt', 'ok');
  assert.deepEqual(await page.evaluate(() => window.fs.getFiles().map((f) => f.name)), ['after.txt']);
  await page.close();
});

test('a large save is hashed in the hash worker, off the tab, to the same digest as WebCrypto', async () => {
  const store = unique('hashworker');
  const page = await openTab(store);
  const workers = async () => (await cdp.send('Target.getTargets')).targetInfos
    .filter((t) => t.type === 'worker' && t.title === 'filesync-hash' && t.url.startsWith(base));
  const before = (await workers()).length;
  // Above the WebCrypto limit (16 MiB): streamed, hashed chunk by chunk.
  const r = await page.evaluate(async () => {
    const bytes = new Uint8Array(24 * 1024 * 1024 + 123);
    for (let i = 0; i < bytes.length; i += 997) bytes[i] = (i * 31) & 255;
    const saved = await window.fs.saveFile(new File([bytes], 'big.bin'));
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
    const back = new Uint8Array(await (await window.fs.readFile(saved.id)).arrayBuffer());
    return { saved: saved.contentHash, hex, same: back.length === bytes.length && back.every((b, i) => b === bytes[i]) };
  });
  assert.equal(r.saved, r.hex);
  assert.ok(r.same, 'the stored bytes read back unchanged');
  assert.equal((await workers()).length, before + 1, 'the tab started its hash worker');
  await page.close();
});

test('object URLs: one per content, kept while a file holds it, revoked when none does', async () => {
  const store = unique('urls');
  const page = await openTab(store);
  const r = await page.evaluate(async () => {
    const fs = window.fs;
    const live = (url) => fetch(url).then((res) => res.text(), () => null);
    const a1 = await fs.saveFile(new File(['same'], 'a1.txt', { type: 'text/plain' }));
    const a2 = await fs.saveFile(new File(['same'], 'a2.txt', { type: 'text/plain' }));
    const b = await fs.saveFile(new File(['other'], 'b.txt', { type: 'text/plain' }));
    const [u1, u2, ub] = [await fs.resolveFileUrl(a1.id), await fs.resolveFileUrl(a2.id), await fs.resolveFileUrl(b.id)];
    const out = { shared: u1 === u2, distinct: u1 !== ub, before: await live(u1) };
    await fs.deleteFile(a1.id);
    out.afterOneDelete = await live(u1);
    await fs.deleteFile(a2.id);
    out.afterBothDeletes = await live(u1);
    // New content for b: its old content's URL goes, the new one is another URL.
    await fs.updateFile(b.id, new File(['changed'], 'b.txt', { type: 'text/plain' }));
    out.oldOfUpdated = await live(ub);
    const nb = await fs.resolveFileUrl(b.id);
    out.newOfUpdated = nb !== ub ? await live(nb) : 'same url';
    return out;
  });
  assert.deepEqual(r, {
    shared: true, distinct: true, before: 'same',
    afterOneDelete: 'same', afterBothDeletes: null,
    oldOfUpdated: null, newOfUpdated: 'changed',
  });
  await page.close();
});

test('local-only mode makes no network request beyond loading the page', async () => {
  const store = unique('offline');
  const requests = [];
  const listener = (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
  context.on('request', listener);
  const page = await openTab(store);
  const before = requests.length;
  await save(page, 'a.txt', 'a');
  await page.evaluate(async () => {
    const f = window.fs.getFiles()[0];
    await window.fs.readFile(f.id);
    await window.fs.resolveFileUrl(f.id);
    await window.fs.syncNow();
  });
  context.off('request', listener);
  const during = requests.slice(before).filter((r) => !r.includes(' blob:'));
  assert.deepEqual(during, [], 'no request while saving, reading and syncing');
  for (const r of requests) assert.match(r, /^GET \//, `only page assets: ${r}`);
  await page.close();
});

test('MIME preprocessors: exact beats type/* beats *, and their metadata is kept', async () => {
  const store = unique('pre');
  const page = await harnessPage();
  const metas = await page.evaluate(async (storeId) => {
    const fs = await window.filesync.openFileSync({
      storeId,
      preprocessors: {
        'text/plain': async (f) => ({ metadata: { by: 'exact', chars: (await f.text()).length } }),
        'text/*': () => ({ metadata: { by: 'family' } }),
        '*': () => ({ metadata: { by: 'any' } }),
      },
    });
    const plain = await fs.saveFile(new File(['hello'], 'a.txt', { type: 'text/plain' }), { metadata: { mine: 1 } });
    const css = await fs.saveFile(new File(['b{}'], 'b.css', { type: 'text/css' }));
    const bin = await fs.saveFile(new File([new Uint8Array(3)], 'c.bin', { type: 'application/octet-stream' }));
    fs.dispose();
    return [plain.metadata, css.metadata, bin.metadata];
  }, store);
  assert.deepEqual(metas, [{ by: 'exact', chars: 5, mine: 1 }, { by: 'family' }, { by: 'any' }]);
  await page.close();
});

test('a throwing listener breaks nothing; calls after dispose fail with code "disposed"', async () => {
  const store = unique('robust');
  const [a, b] = [await openTab(store), await openTab(store)];
  const result = await b.evaluate(async () => {
    let calls = 0;
    window.fs.subscribe(() => {
      calls += 1;
      throw new Error('listener bug');
    });
    window.fs.on('*', () => {
      throw new Error('event listener bug');
    });
    return calls;
  });
  assert.equal(result, 0);
  await save(a, 'one.txt', '1');
  await save(a, 'two.txt', '2');
  // Tab b kept receiving changes despite its throwing listeners.
  await waitForCount(b, 2);
  const afterDispose = await b.evaluate(async () => {
    window.fs.dispose();
    const errors = [];
    for (const call of [
      () => window.fs.saveFile(new File(['x'], 'x.txt')),
      () => window.fs.readFile('anything'),
      () => window.fs.syncNow(),
      () => window.fs.getHistory(),
      () => window.fs.getStorageInfo(),
    ]) {
      try {
        await call();
        errors.push(null);
      } catch (e) {
        errors.push(`${e.name}:${e.code}`);
      }
    }
    return errors;
  });
  assert.deepEqual(afterDispose, Array(5).fill('FileSyncError:disposed'));
  // The other tab is unaffected.
  await save(a, 'three.txt', '3');
  assert.equal(await fileCount(a), 3);
  const bad = await a.evaluate(async () => {
    try {
      await window.filesync.openFileSync({ storeId: '../escape' });
      return null;
    } catch (e) {
      return `${e.name}:${e.code}`;
    }
  });
  assert.equal(bad, 'FileSyncError:invalid_id');
  // `remote` is false, null, absent or an object; anything else is refused, and says what it wants.
  const remotes = await a.evaluate(async () => {
    const out = [];
    for (const remote of [true, 'https://s', { baseURL: '/x' }, { requestTimeoutMs: 0 }]) {
      try {
        await window.filesync.openFileSync({ storeId: 'bad-remote', remote });
        out.push('opened');
      } catch (e) {
        out.push(`${e.code}:${/false or an object|unknown field|requestTimeoutMs/.test(e.message)}`);
      }
    }
    return out;
  });
  assert.deepEqual(remotes, Array(4).fill('invalid_options:true'));
  const noWorker = await a.evaluate(async () => {
    try {
      await window.filesync.openFileSync({ storeId: 'no-worker', workerUrl: '/missing-worker.js' });
      return null;
    } catch (e) {
      return `${e.name}:${e.code}`;
    }
  });
  assert.equal(noWorker, 'FileSyncError:unavailable', 'a hub worker that cannot load fails the open');
  await a.close();
  await b.close();
});

test('without SharedWorker, one tab hosts the hub and another takes over when it closes', async () => {
  const store = unique('tab-hub');
  const opts = { hub: 'tab' };
  const tabs = [await openTab(store, opts), await openTab(store, opts), await openTab(store, opts)];
  await Promise.all(tabs.map((t, i) => save(t, `t${i}.txt`, `from ${i}`)));
  for (const t of tabs) await waitForCount(t, 3);
  const hosts = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.hostsHub())));
  assert.equal(hosts.filter(Boolean).length, 1, `one hub host among ${hosts}`);
  // Close the host: another tab takes the hub lock and starts a hub from IndexedDB.
  const [host] = tabs.splice(hosts.indexOf(true), 1);
  await host.close();
  // A save right after: it waits for the next hub (no error, no retry needed).
  const saved = await tabs[0].evaluate(() =>
    window.fs.saveFile(new File(['after'], 'after.txt', { type: 'text/plain' })));
  assert.equal(saved.name, 'after.txt');
  await waitForCount(tabs[1], 4);
  const after = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.hostsHub())));
  assert.equal(after.filter(Boolean).length, 1, `one new hub host among ${after}`);
  const text = await tabs[1].evaluate(async (id) => (await window.fs.readFile(id)).text(), saved.id);
  assert.equal(text, 'after');
  for (const t of tabs) await t.close();
});

test('one page hosts the hubs of two stores, each with its own files', async () => {
  const stores = [unique('page-a'), unique('page-b')];
  const open = async () => {
    const page = await harnessPage();
    await page.evaluate(async (stores) => {
      window.stores = await Promise.all(stores.map((storeId) => window.filesync.openFileSync({ storeId, hub: 'tab' })));
    }, stores);
    return page;
  };
  const first = await open();
  const hosted = await first.evaluate(async () => {
    const [a, b] = window.stores;
    await Promise.all([
      a.saveFile(new File(['a1'], 'a1.txt')), b.saveFile(new File(['b1'], 'b1.txt')),
      a.saveFile(new File(['a2'], 'a2.txt')),
    ]);
    return window.stores.map((s) => s.hostsHub());
  });
  assert.deepEqual(hosted, [true, true], 'this page hosts both hubs');
  const second = await open();
  const seen = await second.evaluate(async () => {
    const [a, b] = window.stores;
    await b.saveFile(new File(['b2'], 'b2.txt'));
    const names = (s) => s.getFiles().map((f) => f.name).sort();
    return { hosts: window.stores.map((s) => s.hostsHub()), a: names(a), b: names(b) };
  });
  assert.deepEqual(seen, { hosts: [false, false], a: ['a1.txt', 'a2.txt'], b: ['b1.txt', 'b2.txt'] });
  await first.waitForFunction(() => window.stores[1].getFiles().length === 2);
  assert.deepEqual(await first.evaluate(() => window.stores[0].getFiles().length), 2);
  await second.close();
  await first.close();
});

test('writes in flight when the hub moves land exactly once, with no error', async () => {
  const store = unique('moving-hub');
  const opts = { hub: 'tab' };
  const tabs = [await openTab(store, opts), await openTab(store, opts)];
  const hosts = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.hostsHub())));
  const [host] = tabs.splice(hosts.indexOf(true), 1);
  const [writer] = tabs;
  // The writer saves, edits and deletes in a loop while the hub's host goes away: writes sent
  // to the old hub may or may not have landed; the new hub's state tells, and the rest are
  // sent again.
  const running = writer.evaluate(async () => {
    const errors = [];
    const files = [];
    window.started = 0;
    for (let i = 0; i < 24; i++) {
      window.started = i;
      try {
        const f = await window.fs.saveFile(new File([`v1 ${i}`], `f${i}.txt`, { type: 'text/plain' }));
        files.push(f.id);
        if (i % 3 === 0) await window.fs.updateFile(f.id, new File([`v2 ${i}`], `f${i}.txt`, { type: 'text/plain' }));
        if (i % 4 === 0) await window.fs.deleteFile(f.id);
      } catch (e) {
        errors.push(`${i}: ${e.code} ${e.message}`);
      }
    }
    return errors;
  });
  await writer.waitForFunction(() => window.started >= 4);
  await host.close();
  assert.deepEqual(await running, [], 'no write failed');
  const state = await writer.evaluate(async () => Promise.all(window.fs.getFiles()
    .map(async (f) => `${f.name}=${await (await window.fs.readFile(f.id)).text()}`)));
  const expected = [];
  for (let i = 0; i < 24; i++) if (i % 4 !== 0) expected.push(`f${i}.txt=${i % 3 === 0 ? 'v2' : 'v1'} ${i}`);
  assert.deepEqual(state.sort(), expected.sort());
  assert.equal(await writer.evaluate(() => window.fs.hostsHub()), true, 'the writer hosts the hub now');
  await writer.close();
});

test('a crashed leader tab hands leadership to another tab', { timeout: 60_000 }, async () => {
  const store = unique('crash');
  const tabs = [await openTab(store), await openTab(store)];
  await tabs[0].waitForFunction(() => window.fs.leaderTabId() !== undefined, null, { timeout: 10_000 });
  const leaderId = await tabs[0].evaluate(() => window.fs.leaderTabId());
  const ids = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.tabId())));
  const [leader] = tabs.splice(ids.indexOf(leaderId), 1);
  // Kill the leader's renderer: no unload, no goodbye; the browser releases its lock.
  const cdp = await context.newCDPSession(leader);
  const crashed = new Promise((resolve) => leader.once('crash', resolve));
  // The command's reply never comes (its renderer is gone): wait for the crash instead.
  cdp.send('Page.crash').catch(() => {});
  await crashed;
  await tabs[0].waitForFunction(() => window.fs.isLeader(), null, { timeout: 10_000 });
  await save(tabs[0], 'after-crash.txt', 'still here');
  assert.equal(await fileCount(tabs[0]), 1);
  await leader.close().catch(() => {});
  await tabs[0].close();
});

test('a full disk is a typed quota_exceeded error and loses nothing else', { timeout: 60_000 }, async () => {
  const store = unique('quota');
  const page = await openTab(store);
  await save(page, 'small.txt', 'fits');
  const cdp = await context.newCDPSession(page);
  const origin = new URL(base).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 4 * 1024 * 1024 });
  try {
    const err = await page.evaluate(async () => {
      const big = new Uint8Array(24 * 1024 * 1024).fill(1);
      try {
        await window.fs.saveFile(new File([big], 'big.bin'));
        return null;
      } catch (e) {
        return { name: e.name, code: e.code };
      }
    });
    assert.deepEqual(err, { name: 'FileSyncError', code: 'quota_exceeded' });
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
  }
  const names = await page.evaluate(() => window.fs.getFiles().map((f) => f.name));
  assert.deepEqual(names, ['small.txt']);
  assert.equal(await page.evaluate(async () => (await window.fs.readFile(window.fs.getFiles()[0].id)).text()), 'fits');
  await page.close();
});

test('a hung leader loses leadership to a live tab, and learns it when it wakes', async () => {
  const store = unique('hung');
  const tabs = [await openTab(store), await openTab(store)];
  await tabs[0].waitForFunction(() => window.fs.leaderTabId() !== undefined, null, { timeout: 10_000 });
  const flags = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.isLeader())));
  const leader = tabs[flags.indexOf(true)];
  const other = tabs[flags.indexOf(false)];
  const hungId = await leader.evaluate(() => window.fs.tabId());
  // A hung page (its main thread stuck) keeps its Web Lock, but answers no ping. (CDP's
  // "frozen" lifecycle state still delivers messages in headless Chromium, so it proves less.)
  const hang = leader.evaluate(() => {
    const end = Date.now() + 8_000;
    while (Date.now() < end);
  });
  await other.waitForFunction(() => window.fs.isLeader(), null, { timeout: 15_000 });
  assert.notEqual(await other.evaluate(() => window.fs.leaderTabId()), hungId);
  await hang;
  await leader.waitForFunction(() => window.events.some((e) => e.type === 'leader:lost'), null, { timeout: 10_000 });
  assert.equal(await leader.evaluate(() => window.fs.isLeader()), false);
  // Still exactly one leader once the old one runs again.
  const after = await Promise.all(tabs.map((t) => t.evaluate(() => window.fs.isLeader())));
  assert.deepEqual(after.filter(Boolean).length, 1);
  for (const t of tabs) await t.close();
});
