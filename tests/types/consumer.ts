// A consumer of the public types, type-checked by `tsc -p tests/types` in the test command:
// if the declarations drift from what apps are told, this stops compiling.
import { openFileSync, type FileState, type FileSyncEvent, type SyncStatus } from '../../www/index.js';

export async function example(input: File): Promise<string[]> {
  const fs = await openFileSync({
    storeId: 'photos',
    remote: false,
    progressThrottleMs: 500,
    preprocessors: {
      'image/*': async (f) => ({ metadata: { kind: 'image', bytes: f.size } }),
      '*': () => undefined,
    },
  });
  const saved: FileState = await fs.saveFile(input, { metadata: { album: 'summer', stars: 5 } });
  const status: SyncStatus = fs.getSyncStatus();
  // The loaded state (open may show the files view the last hub saved first).
  await fs.whenLoaded();
  const loaded: boolean = fs.isLoaded();
  void loaded;
  const off = fs.on("upload:progress", (e) => {
    // Narrowed: `loaded` and `total` exist on progress events only.
    const ratio: number = e.loaded / e.total;
    void ratio;
  });
  fs.on('*', (e: FileSyncEvent) => {
    if (e.type === 'transfer:exhausted') {
      const kind: 'upload' | 'download' = e.kind;
      void kind;
    }
  });
  // "Keep mine": the losing side of a conflict, read by its hash and saved again.
  fs.on('conflict', async (e) => {
    const winner: string = e.winningContentHash;
    const mine: File = await fs.readFile(e.fileId, { contentHash: e.contentHash });
    if (winner !== e.contentHash) await fs.updateFile(e.fileId, mine);
  });
  const unsubscribe = fs.subscribe(() => void fs.getFiles());
  const file: File = await fs.readFile(saved.id);
  const url: string = await fs.resolveFileUrl(saved.id);
  off();
  unsubscribe();
  try {
    await fs.deleteFile(saved.id);
  } catch (e) {
    const err = e as import('../../www/index.js').FileSyncError;
    if (err.retryable) console.warn(err.code);
  }
  fs.dispose();
  return [file.name, url, String(status.hasPending)];
}

// A store synced through a server: every remote option, typed.
export async function synced(): Promise<void> {
  const fs = await openFileSync({
    storeId: 'photos',
    remote: {
      baseUrl: '/api',
      syncUrl: 'https://sync.example/api',
      authToken: 'token',
      headers: { 'x-app': 'demo' },
      includeCredentials: false,
      requestTimeoutMs: 10_000,
    },
    maxUploads: 2,
    downloads: 'lazy',
    storageBudget: 512 * 1024 * 1024,
  });
  // A per-file downloads policy: small images come at once, the rest when read.
  const policy = await openFileSync({
    storeId: 'scans',
    remote: { baseUrl: '/api' },
    downloads: (f) => f.mimeType.startsWith('image/') && f.size < 1_000_000,
  });
  policy.dispose();
  // The byte budget: what is held, what may go; an object URL released lets its content go.
  const info = await fs.getStorageInfo();
  const room: number | null = info.budget === null ? null : info.budget - info.held;
  const evictable: number = info.evictable;
  void room;
  void evictable;
  for (const f of fs.getFiles()) fs.releaseFileUrl(f.id);
  fs.on('online', () => undefined);
  // Lazy: a file not read yet is on the server only, not displayable until asked for.
  const remoteOnly: string[] = fs.getFiles().filter((f) => f.downloadStatus === 'remote' && !f.canDisplay).map((f) => f.id);
  void remoteOnly;
  // "Synced" means the server recorded it; "uploaded" only that the bytes are there.
  const confirming: number = fs.getSyncStatus().unconfirmedEventCount;
  const onServer: boolean[] = fs.getFiles().map((f) => f.isSynced && f.isUploaded);
  // Progress is part of the state: a percentage for every running transfer.
  const percents: number[] = fs.getFiles().map((f) => (f.size ? (f.uploadedBytes + f.downloadedBytes) / f.size : 1));
  void confirming;
  void onServer;
  void percents;
  try {
    await fs.whenSynced();
  } catch (e) {
    const err = e as import('../../www/index.js').FileSyncError;
    if (err.code === 'offline' && err.retryable) console.warn('close later');
  }
  // Local-only files live in this browser: ask it to keep them, and watch the quota.
  const { usage, quota, persisted } = await fs.getStorageInfo();
  if (!persisted && usage / quota > 0.8) void (await fs.requestPersistence());
  // Debugging: the hub's recent events, each with when it happened.
  for (const { at, event } of await fs.getHistory()) {
    const when: Date = new Date(at);
    if (event.type === 'upload:error') console.warn(when, event.fileId, event.code);
  }
  fs.dispose();
}
