// Starts the real filesync-server binary (built by scripts/test.sh before the e2e step) on a
// loopback port for end-to-end tests, and restarts it on the same port and data directory.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The debug build unless FILESYNC_SERVER_BIN names another (read at each start). */
const defaultBinary = () => process.env.FILESYNC_SERVER_BIN
  ?? path.join(repo, 'target/debug/filesync-server');

/**
 * A running server: `url`, `stop()`, `restart()` (same port and data), `close()`. It serves
 * the app's files from `www` (default: the repository's www/); `args` are more flags;
 * `dataDir` shares another server's data dir (its blobs and signing secret: a second instance).
 */
export async function startServer({ tokens, args: extra = [], binary: serverBinary = defaultBinary(), www = path.join(repo, 'www'), dataDir: shared } = {}) {
  if (!existsSync(serverBinary)) {
    throw new Error(`${serverBinary} is missing: run cargo build -p filesync-server first`);
  }
  const dataDir = shared ?? await mkdtemp(path.join(tmpdir(), 'filesync-server-'));
  let child = null;
  let addr = '127.0.0.1:0';
  const server = {
    url: '',
    dataDir,
    async start() {
      const args = ['--addr', addr, '--data-dir', dataDir, '--www-dir', www];
      if (tokens) args.push('--tokens', tokens);
      args.push(...extra);
      child = spawn(serverBinary, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
      });
      child.stderr.on('data', (d) => process.stderr.write(`[server] ${d}`));
      server.url = await new Promise((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
          const m = out.match(/listening on (http:\/\/[^\s]+)/);
          if (m) resolve(m[1]);
        });
        child.once('exit', (code) => reject(new Error(`filesync-server exited with ${code}: ${out}`)));
      });
      addr = new URL(server.url).host;
      return server.url;
    },
    /** Stops the process (SIGKILL: a crash, not a graceful shutdown). */
    async stop() {
      // Exited, or killed before (a killed process has no exit code, only a signal).
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    async restart() {
      await server.stop();
      return server.start();
    },
    async close() {
      await server.stop();
      // A shared data dir is its owner's to remove.
      if (!shared) await rm(dataDir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
