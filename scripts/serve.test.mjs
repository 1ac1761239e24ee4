// Tests for scripts/serve.mjs (node's built-in test runner: `npm run test:node`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, symlink, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createStaticServer } from './serve.mjs';

let dir, server, port;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'serve-test-'));
  const root = path.join(dir, 'www');
  await mkdir(path.join(root, 'pkg'), { recursive: true });
  await writeFile(path.join(root, 'index.html'), '<!doctype html><title>t</title>');
  await writeFile(path.join(root, 'pkg', 'm.js'), 'export {};');
  await writeFile(path.join(root, 'pkg', 'm.mjs'), 'export {};');
  await writeFile(path.join(root, 'pkg', 'm_bg.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  await writeFile(path.join(dir, 'secret.txt'), 'secret');
  await symlink(path.join(dir, 'secret.txt'), path.join(root, 'link.txt'));
  await mkdir(path.join(dir, 'other'));
  await writeFile(path.join(dir, 'other', 'index.html'), '<!doctype html><title>other</title>');
  server = await createStaticServer(root, { mounts: { '/v2/': path.join(dir, 'other') } });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = server.address().port;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

// Raw request: the path is sent exactly as given (fetch would normalize `..` away).
function get(rawPath, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: rawPath, method }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('serves index.html for /', async () => {
  const res = await get('/');
  assert.equal(res.status, 200);
  assert.match(res.type, /^text\/html/);
  assert.match(res.body.toString(), /<title>t<\/title>/);
});

test('serves .wasm as application/wasm and .js/.mjs as text/javascript', async () => {
  const wasm = await get('/pkg/m_bg.wasm');
  assert.equal(wasm.status, 200);
  assert.equal(wasm.type, 'application/wasm');
  assert.equal(wasm.body.subarray(0, 4).toString('latin1'), '\0asm');
  assert.match((await get('/pkg/m.js')).type, /^text\/javascript/);
  assert.match((await get('/pkg/m.mjs?v=1')).type, /^text\/javascript/);
});

test('HEAD has headers and no body; other methods are refused', async () => {
  const head = await get('/pkg/m_bg.wasm', 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal((await get('/', 'POST')).status, 405);
});

test('nothing outside the root is served', async () => {
  for (const p of ['/../secret.txt', '/pkg/../../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt',
    '/%2e%2e%2fsecret.txt', '/pkg/%2e%2e/%2e%2e/secret.txt', '/link.txt', '/%00', '/%E0%A4%A']) {
    const res = await get(p);
    assert.equal(res.status, 404, p);
    assert.doesNotMatch(res.body.toString(), /secret/, p);
  }
  assert.equal((await get('/missing.js')).status, 404);
});

test('a mount serves its own directory under its prefix, and nothing outside it', async () => {
  assert.match((await get('/v2/')).body.toString(), /<title>other<\/title>/);
  assert.match((await get('/v2/index.html')).body.toString(), /<title>other<\/title>/);
  assert.equal((await get('/v2/pkg/m.js')).status, 404, 'the root is not under the mount');
  for (const p of ['/v2/../secret.txt', '/v2/%2e%2e/secret.txt', '/v2/..%2fsecret.txt']) {
    assert.equal((await get(p)).status, 404, p);
  }
  assert.match((await get('/')).body.toString(), /<title>t<\/title>/, 'the root is still served');
});
