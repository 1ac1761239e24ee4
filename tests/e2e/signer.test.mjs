// Blobs kept by another signer (livestore-filesync's deployments: an R2 or S3 handler signs,
// filesync-server keeps only the events): uploads go once and downloads work; against an
// event server that does not know that signer's blobs, uploads stop within the retry budget.
//   node --test tests/e2e/signer.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer } from './server.mjs';
import {
  TOKEN, useServer, device, openTab, unique, save, readText, waitLocal, serverEvents,
} from './harness.mjs';

const env = useServer();

/**
 * A signer of another make, in Node: livestore-filesync's signer contract
 * (`POST /api/v1/sign/upload|download`, `POST /api/v1/delete`) over blobs it keeps in memory
 * and serves at URLs of its own origin (so every browser call is cross-origin, with CORS).
 */
async function foreignSigner() {
  const blobs = new Map();
  const log = [];
  const server = http.createServer(async (req, res) => {
    res.setHeader('access-control-allow-origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, PUT, POST, OPTIONS',
        'access-control-allow-headers': req.headers['access-control-request-headers'] ?? '',
      });
      return res.end();
    }
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://signer');
    log.push([req.method, url.pathname]);
    const json = (status, value) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(value === undefined ? '' : JSON.stringify(value));
    };
    if (url.pathname.startsWith('/api/')) {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return json(401, { error: 'unauthorized' });
      const { key } = JSON.parse(body.toString() || '{}');
      const expiresAt = new Date(Date.now() + 600_000).toISOString();
      const blobUrl = `http://127.0.0.1:${server.address().port}/blobs/${key}`;
      if (url.pathname === '/api/v1/sign/upload') return json(200, { method: 'PUT', url: blobUrl, expiresAt });
      if (url.pathname === '/api/v1/sign/download') return json(200, { url: blobUrl, expiresAt });
      if (url.pathname === '/api/v1/delete') {
        blobs.delete(key);
        return json(204);
      }
      return json(404, { error: 'not_found' });
    }
    const key = url.pathname.replace(/^\/blobs\//, '');
    if (req.method === 'PUT') {
      blobs.set(key, body);
      return json(200);
    }
    if (req.method === 'GET' && blobs.has(key)) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blobs.get(key).length });
      return res.end(blobs.get(key));
    }
    json(404, { error: 'not_found' });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    blobs,
    puts: () => log.filter(([m, p]) => m === 'PUT' && p.startsWith('/blobs/')).length,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

const eventCount = async (serverUrl, store) => (await serverEvents(store, serverUrl)).length;

test('with blobs behind another signer, a save uploads once and another device downloads it', async () => {
  const signer = await foreignSigner();
  const events = await startServer({ tokens: `${TOKEN}=*`, args: ['--blob-mode', 'external'] });
  try {
    const health = await fetch(`${events.url}/api/health`).then((r) => r.json());
    assert.deepEqual(health.features, ['events', 'external']);
    const remote = { baseUrl: `${signer.base}/api`, syncUrl: `${events.url}/api`, authToken: TOKEN };
    const store = unique('foreign');
    const [a, b] = [await device(), await device()];
    const a1 = await openTab(a, store, remote);
    const saved = await save(a1, 'elsewhere.txt', 'bytes behind another signer');
    await a1.evaluate(() => window.fs.whenSynced());
    assert.equal(signer.puts(), 1, 'uploaded once');
    assert.equal(await eventCount(events.url, store), 2, 'create and attach, nothing more');
    const b1 = await openTab(b, store, remote);
    await waitLocal(b1, saved.id, saved.contentHash);
    assert.equal(await readText(b1, saved.id), 'bytes behind another signer');
    assert.equal(signer.puts(), 1, 'still once');
    await a1.close();
    await b1.close();
  } finally {
    await events.close();
    await signer.close();
  }
});

test('an event server that keeps clearing the remote key stops the uploads within the budget', async () => {
  // The default server keeps blobs itself: it clears every attach of bytes the signer took.
  const signer = await foreignSigner();
  try {
    const remote = { baseUrl: `${signer.base}/api`, syncUrl: `${env.server.url}/api`, authToken: TOKEN };
    const store = unique('clearing');
    const a1 = await openTab(await device(), store, remote);
    // Retry at once instead of after the backoff (the app's "sync now"): the budget counts
    // attempts, not time.
    await a1.evaluate(() => window.fs.on('upload:error', (e) => {
      if (e.retryInMs !== null) window.fs.syncNow();
    }));
    const saved = await save(a1, 'looping.txt', 'never attached');
    const exhausted = await a1.waitForFunction(
      () => window.events.find((e) => e.type === 'transfer:exhausted'),
      null,
      { timeout: 60_000 },
    ).then((h) => h.jsonValue());
    assert.equal(exhausted.code, 'remote_key_cleared');
    assert.equal(exhausted.fileId, saved.id);
    const errors = await a1.evaluate(() => window.events.filter((e) => e.type === 'upload:error').map((e) => e.code));
    assert.ok(errors.every((c) => c === 'remote_key_cleared'), errors.join());
    const f = await a1.evaluate((id) => window.fs.getFile(id), saved.id);
    assert.equal(f.uploadStatus, 'error');
    assert.equal(f.lastSyncError.code, 'remote_key_cleared');
    // One upload and one attach per attempt: six (the budget of five retries plus the first).
    assert.equal(signer.puts(), 6);
    assert.equal(await eventCount(env.server.url, store), 1 + 6);
    const synced = await a1.evaluate(() => window.fs.whenSynced().then(() => 'resolved', (e) => e.code));
    assert.equal(synced, 'remote_key_cleared', 'whenSynced says why');
    await a1.close();
  } finally {
    await signer.close();
  }
});
