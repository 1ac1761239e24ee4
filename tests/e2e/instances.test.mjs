// Two filesync-server instances over one PostgreSQL database (the throwaway cluster the test
// command starts: FILESYNC_TEST_DATABASE_URL) and one data dir (blobs, signing secret).
// Device A works through instance 1, device B through a front that forwards to instance 2:
// saves, edits and deletes reach B live; then instance 2 is killed (SIGKILL), the front sends
// B to instance 1, as a load balancer would, and B misses nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { startServer } from './server.mjs';
import { useServer, device, openTab, unique, saveUploaded, waitLocal, readText, TOKEN, WAIT } from './harness.mjs';

const admin = process.env.FILESYNC_TEST_DATABASE_URL;
if (!admin) {
  throw new Error('FILESYNC_TEST_DATABASE_URL is not set: this test needs the PostgreSQL cluster scripts/test.sh starts (or `scripts/pg.sh start`)');
}
const database = unique('e2e').replace(/-/g, '_');
execFileSync('psql', [admin, '-q', '-c', `CREATE DATABASE ${database}`]);
const adminUrl = new URL(admin);
adminUrl.pathname = `/${database}`;
const databaseUrl = adminUrl.href;
const tokens = `${TOKEN}=*`;
const env = useServer({ tokens, args: ['--database-url', databaseUrl] });

/** A front that forwards every request to `target`, which the test may change. */
async function front(target) {
  const f = { target };
  const server = http.createServer((req, res) => {
    const up = http.request(new URL(req.url, f.target), { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
      r.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  f.url = `http://127.0.0.1:${server.address().port}`;
  f.close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return f;
}

/** The files a tab shows, as `id:contentHash`, sorted. */
const shown = (page) => page.evaluate(() => window.fs.getFiles().map((f) => `${f.id}:${f.contentHash}`).sort());

test('two instances: changes reach the other instance live, and its clients survive its death', async () => {
  const two = await startServer({ tokens, args: ['--database-url', databaseUrl], dataDir: env.server.dataDir });
  const lb = await front(two.url);
  try {
    const store = unique('instances');
    const [a, b] = [await device(), await device()];
    const a1 = await openTab(a, store);
    const b1 = await openTab(b, store, undefined, { base: lb.url });
    // WAIT (20 s) is shorter than the client's periodic pull (30 s): what arrives, arrives live.
    const one = await saveUploaded(a1, 'one.txt', 'first');
    await waitLocal(b1, one.id, one.contentHash);
    assert.equal(await readText(b1, one.id), 'first');
    const second = await saveUploaded(a1, 'two.txt', 'second');
    await waitLocal(b1, second.id, second.contentHash);
    const edited = await a1.evaluate(
      (id) => window.fs.updateFile(id, new File(['first, edited'], 'one.txt', { type: 'text/plain' })),
      one.id,
    );
    await waitLocal(b1, one.id, edited.contentHash);
    assert.equal(await readText(b1, one.id), 'first, edited');
    await a1.evaluate((id) => window.fs.deleteFile(id), second.id);
    await b1.waitForFunction((id) => !window.fs.getFile(id), second.id, WAIT);

    // Instance 2 dies; the front sends B's reconnections to instance 1.
    await two.stop();
    lb.target = env.server.url;
    const third = await saveUploaded(a1, 'three.txt', 'third');
    await waitLocal(b1, third.id, third.contentHash);
    assert.equal(await readText(b1, third.id), 'third');
    assert.deepEqual(await shown(b1), await shown(a1), 'B shows exactly what A shows');
  } finally {
    await lb.close();
    await two.stop();
  }
});
