// A TypeScript app using filesync-wasm as installed from its tarball: tests/package copies this
// file into a throwaway consumer and runs `tsc --noEmit` on it, so `filesync-wasm` resolves
// through the package's `exports` (types condition). Each `@ts-expect-error` line must stay an
// error: if the public types loosened to `any`, the directive would be unused and tsc would fail.
import {
  load,
  openFileSync,
  pickPreprocessor,
  version,
  type EventOf,
  type FileState,
  type FileSync,
  type FileSyncError,
  type FileSyncEvent,
  type OpenOptions,
  type SyncStatus,
} from 'filesync-wasm';

export async function roundTrip(input: File): Promise<[string, string, number, boolean]> {
  const options: OpenOptions = {
    storeId: 'photos',
    remote: false,
    hub: 'auto',
    wasmUrl: new URL('https://cdn.example/filesync_bg.wasm'),
    workerUrl: '/filesync-worker.js',
    preprocessors: { 'image/*': (f) => ({ metadata: { bytes: f.size } }) },
  };
  await load();
  const fs: FileSync = await openFileSync(options);
  const saved: FileState = await fs.saveFile(input, { path: 'a/b.txt', metadata: { tags: ['x'] } });
  const back: File = await fs.readFile(saved.id);
  const status: SyncStatus = fs.getSyncStatus();
  const ratio = (e: EventOf<'download:progress'>): number => e.loaded / e.total;
  const off = fs.on('download:progress', (e) => void ratio(e));
  fs.on('*', (e: FileSyncEvent) => {
    if (e.type === 'upload:error') void (e.retryInMs ?? 0);
  });
  off();
  const pre = pickPreprocessor(options.preprocessors, 'image/png');
  void pre;
  try {
    await fs.deleteFile(saved.id);
  } catch (e) {
    const err = e as FileSyncError;
    const code: string = err.code;
    void code;
  }

  // @ts-expect-error a string is not a File
  await fs.saveFile('not a file');
  // @ts-expect-error storeId is required
  await openFileSync({ remote: false });
  // @ts-expect-error no such event
  fs.on('upload:progres', () => undefined);
  // @ts-expect-error remote is false or an object
  await openFileSync({ storeId: 'x', remote: true });
  // @ts-expect-error size is a number
  const size: string = saved.size;
  void size;
  // @ts-expect-error hub is one of three names
  await openFileSync({ storeId: 'x', hub: 'worker' });

  fs.dispose();
  return [back.name, version(), saved.size, status.hasPending];
}
