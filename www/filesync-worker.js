// The SharedWorker of filesync: one per store and browser profile, shared by every tab. It
// runs the hub (the engine, IndexedDB and the byte store) and serves each tab's port.
//
// The wasm file is next to the glue (`new URL()` with `import.meta.url`, which Vite emits as an
// asset when it builds this worker as a chunk), unless the page passed `wasmUrl` to
// `openFileSync`: then it is this script's `wasm` query parameter.
import init, { Hub } from './pkg/filesync.js';

const wasmUrl = new URL(self.location.href).searchParams.get('wasm');
const ready = init({ module_or_path: wasmUrl ?? new URL('./pkg/filesync_bg.wasm', import.meta.url) });
let hub;

self.onconnect = (event) => {
  const port = event.ports[0];
  // Messages the tab posts meanwhile wait in the port until the hub listens.
  ready.then(() => {
    hub ??= new Hub();
    hub.connect(port);
  });
};
