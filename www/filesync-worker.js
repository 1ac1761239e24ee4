// The SharedWorker of filesync: one per store and browser profile, shared by every tab. It
// runs the hub (the engine, IndexedDB and the byte store) and serves each tab's port.
import init, { Hub } from './pkg/filesync.js';

const ready = init();
let hub;

self.onconnect = (event) => {
  const port = event.ports[0];
  // Messages the tab posts meanwhile wait in the port until the hub listens.
  ready.then(() => {
    hub ??= new Hub();
    hub.connect(port);
  });
};
