// Tiny dependency-free static file server for the demo page in www/ (a stand-in until the
// project has its own Rust server).
//
//   node scripts/serve.mjs                  serves www/ on http://127.0.0.1:8080
//   PORT=9000 HOST=0.0.0.0 node scripts/serve.mjs
//
// Only GET and HEAD; never serves anything outside the root directory.
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

function send(res, status, text, head) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(head ? undefined : `${status} ${text}\n`);
}

/** Resolves a request path to a file under `root` (a real path), or null when it is not one. */
async function resolveFile(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  let file = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  // Symlinks may point anywhere: compare real paths.
  try {
    file = await realpath(file);
    let info = await stat(file);
    if (info.isDirectory()) {
      file = await realpath(path.join(file, 'index.html'));
      info = await stat(file);
    }
    if (!info.isFile()) return null;
  } catch {
    return null;
  }
  return file === root || file.startsWith(root + path.sep) ? file : null;
}

/**
 * Creates (does not start) a server for the files under `root`. `mounts` serves other
 * directories under URL prefixes (`{ '/v2/': dir }`: `/v2/a.js` is `dir/a.js`).
 */
export async function createStaticServer(root, { mounts = {} } = {}) {
  const realRoot = await realpath(root);
  const realMounts = await Promise.all(
    Object.entries(mounts).map(async ([prefix, dir]) => [prefix, await realpath(dir)]),
  );
  return createServer(async (req, res) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'Method Not Allowed', head);
    }
    const urlPath = (req.url ?? '/').split('?')[0].split('#')[0];
    const mount = realMounts.find(([prefix]) => urlPath.startsWith(prefix));
    const file = mount
      ? await resolveFile(mount[1], urlPath.slice(mount[0].length - 1))
      : await resolveFile(realRoot, urlPath);
    if (!file) return send(res, 404, 'Not Found', head);
    const info = await stat(file);
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': info.size,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    if (head) return res.end();
    createReadStream(file)
      .on('error', () => res.destroy())
      .pipe(res);
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(fileURLToPath(new URL('../www', import.meta.url)));
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? '127.0.0.1';
  const server = await createStaticServer(root);
  server.listen(port, host, () => {
    console.log(`serve: ${root} on http://${host}:${server.address().port}/ (Ctrl-C to stop)`);
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
}
