// What the end-to-end tests against the real server share: the server, devices (browser
// profiles of their own), tabs with a store open, and the waits and writes every test uses.
// A test file calls `useServer()` once at top level; the rest takes the devices it makes.
import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from './server.mjs';
import { launchProfile } from './chromium.mjs';

export const TOKEN = 'e2e-token';
export const WAIT = { timeout: 20_000 };

const devices = [];
/** Uncaught errors in any page; each test fails on those it caused. */
const pageErrors = [];
const env = { server: null };

/**
 * Starts the real server before the file's tests (`options` as for `startServer`; by default
 * one token for every store), closes it and every device after them, and fails each test that
 * left an uncaught error in a page (a wasm closure called after it was freed, a rejected
 * promise nobody handled...). Returns `{ server }`, filled once the tests run.
 */
export function useServer(options = { tokens: `${TOKEN}=*` }) {
  before(async () => {
    env.server = await startServer(options);
  });
  failOnPageErrors();
  after(async () => {
    for (const d of devices.splice(0)) {
      await d.context.close().catch(() => {});
      await rm(d.dir, { recursive: true, force: true });
    }
    await env.server?.close();
  });
  return env;
}

/** Fails each test of the file that left an uncaught error in a page of `blankTab`'s. */
export function failOnPageErrors() {
  afterEach(() => assert.deepEqual(pageErrors.splice(0), [], 'uncaught errors in pages'));
}

/**
 * A browser profile of its own: a device (`options`: Playwright's, e.g. a viewport).
 * `blobRequests` lists its signed-URL requests.
 */
export async function device(options = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'filesync-device-'));
  const context = await launchProfile(dir, options);
  const blobRequests = [];
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/livestore-filesync-files/')) blobRequests.push([r.method(), u.pathname]);
  });
  const d = { dir, context, blobRequests };
  devices.push(d);
  return d;
}

/**
 * A new tab of `dev` on the server's test page (or on `base`: another server, a front), the
 * package loaded, no store open.
 */
export async function blankTab(dev, base = env.server.url) {
  const page = await dev.context.newPage();
  page.on('pageerror', (e) => {
    pageErrors.push(String(e));
    console.error('page error:', e);
  });
  await page.goto(`${base}/e2e.html`);
  await page.waitForSelector('body[data-ready="true"]');
  return page;
}

/**
 * A tab of `dev` with the store open as `window.fs`; callbacks collected in `window.events`.
 * `remote`: the server option (`false`: local-only). `extra.base`: the page's server, when not
 * the test's (the store's API is on the page's origin).
 */
export async function openTab(dev, storeId, remote = { authToken: TOKEN }, { base, ...extra } = {}) {
  const page = await blankTab(dev, base);
  await page.evaluate(async (options) => {
    window.events = [];
    window.fs = await window.filesync.openFileSync(options);
    window.fs.on('*', (e) => window.events.push(e));
  }, { storeId, remote, ...extra });
  return page;
}

export function unique(name) {
  return `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
}

/** Saves a text file in a tab (with `metadata` if given); resolves to its state. */
export function save(page, name, text, metadata) {
  return page.evaluate(
    ({ name, text, metadata }) =>
      window.fs.saveFile(new File([text], name, { type: 'text/plain' }), metadata ? { metadata } : undefined),
    { name, text, metadata },
  );
}

export const readText = (page, id) => page.evaluate(async (id) => (await window.fs.readFile(id)).text(), id);

/** A read expected to fail: resolves to `[code, retryable]` of its error (`'read'` if it did not). */
export const readFailure = (page, id) =>
  page.evaluate((id) => window.fs.readFile(id).then(() => 'read', (e) => [e.code, e.retryable]), id);

/** Waits until the file's bytes are in this browser with the given content hash. */
export const waitLocal = (page, id, hash) =>
  page.waitForFunction(([id, hash]) => {
    const f = window.fs.getFile(id);
    return f && f.hasLocalCopy && (!hash || f.contentHash === hash);
  }, [id, hash], WAIT);

export const waitUploaded = (page, id, hash) =>
  page.waitForFunction(([id, hash]) => {
    const f = window.fs.getFile(id);
    return f && f.isUploaded && f.uploadStatus === 'done' && (!hash || f.contentHash === hash);
  }, [id, hash], WAIT);

/** Saves a text file in a tab and waits until it is uploaded; resolves to the file state. */
export async function saveUploaded(page, name, text) {
  const saved = await save(page, name, text);
  await waitUploaded(page, saved.id);
  return saved;
}

/** Every event the server stores for `store`, in order, read as a client would (all pages). */
export async function serverEvents(store, serverUrl = env.server.url) {
  const all = [];
  for (;;) {
    const after = all.at(-1)?.seq ?? 0;
    const res = await fetch(`${serverUrl}/api/v1/stores/${store}/events?after=${after}&limit=1000`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200, `pull of ${store}`);
    const { events, hasMore } = await res.json();
    all.push(...events);
    if (!hasMore) return all;
  }
}

/** Two devices with a tab each on a new store named after `name`. */
export async function twoDevices(name) {
  const store = unique(name);
  const [a, b] = [await device(), await device()];
  return { store, a, b, a1: await openTab(a, store), b1: await openTab(b, store) };
}

/**
 * Limits a tab's network throughput (bytes/s; -1: unlimited) through the DevTools protocol;
 * resolves to the session (send it other conditions later).
 */
export async function throttle(dev, page, { up = -1, down = -1 }) {
  const cdp = await dev.context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    uploadThroughput: up,
    downloadThroughput: down,
  });
  return cdp;
}

/** Resolves once no hub SharedWorker runs in `dev` (every tab of every store closed). */
export async function hubsGone(dev, limitMs = 15_000) {
  const cdp = await dev.context.browser().newBrowserCDPSession();
  const t0 = Date.now();
  try {
    for (;;) {
      const { targetInfos } = await cdp.send('Target.getTargets');
      if (!targetInfos.some((t) => t.type === 'shared_worker')) return;
      if (Date.now() - t0 > limitMs) throw new Error(`a hub still runs after ${limitMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await cdp.detach();
  }
}

/**
 * GETs the blob the server keeps under `key` through the signer API, as a client would;
 * resolves to the response (its body unread).
 */
export async function fetchBlob(key, serverUrl = env.server.url) {
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  const signed = await fetch(`${serverUrl}/api/v1/sign/download`, {
    method: 'POST', headers, body: JSON.stringify({ key }),
  }).then((r) => r.json());
  return fetch(new URL(signed.url, serverUrl));
}
