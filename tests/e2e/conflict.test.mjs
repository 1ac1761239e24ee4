// The losing side of a conflict is told: two devices edit one file while apart; the one whose
// edit the server's order overwrote gets one `conflict` event, can read its own version and
// save it again.
//   node --test tests/e2e/conflict.test.mjs   (after the package and server builds)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WAIT, useServer, save, twoDevices, waitLocal, readText, serverEvents } from './harness.mjs';

const env = useServer();

const edit = (page, id, text) => page.evaluate(([id, text]) =>
  window.fs.updateFile(id, new File([text], 'doc.txt', { type: 'text/plain' })), [id, text]);

/** The content of the later of the two edits in the server's log, once both are there. */
async function serverWinner(store, id, hashes) {
  const t0 = Date.now();
  for (;;) {
    const edits = (await serverEvents(store))
      // Edits, not upload attaches (conditional updates that change no content).
      .filter((e) => e.name === 'v1.FileUpdated' && !e.args.expectedContentHash)
      .filter((e) => e.args.id === id && hashes.includes(e.args.contentHash))
      .map((e) => e.args.contentHash);
    if (new Set(edits).size === 2) return edits.at(-1);
    assert.ok(Date.now() - t0 < WAIT.timeout, 'both edits reach the server');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const conflicts = (page) => page.evaluate(() => window.events.filter((e) => e.type === 'conflict'));

/** Waits until the tab shows `hash` for the file, with its bytes, and nothing pending. */
const settledOn = (page, id, hash) => page.waitForFunction(([id, hash]) => {
  const f = window.fs.getFile(id);
  const s = window.fs.getSyncStatus();
  return window.fs.isOnline() && f && f.contentHash === hash && f.hasLocalCopy && !s.hasPending;
}, [id, hash], WAIT);

test('the device whose offline edit lost is told once, reads its version and keeps it', async () => {
  const { store, a1, b1 } = await twoDevices('conflict-told');
  const doc = await save(a1, 'doc.txt', 'original');
  await waitLocal(b1, doc.id, doc.contentHash);
  await env.server.stop();
  await a1.waitForFunction(() => !window.fs.isOnline(), null, WAIT);
  await b1.waitForFunction(() => !window.fs.isOnline(), null, WAIT);
  const mineA = await edit(a1, doc.id, 'edited in A');
  const mineB = await edit(b1, doc.id, 'edited in B');
  await env.server.start();
  // The server orders the two edits; the later one wins everywhere. Which device pushed first
  // is up to the network: the server's log says.
  const winner = await serverWinner(store, doc.id, [mineA.contentHash, mineB.contentHash]);
  await settledOn(a1, doc.id, winner);
  await settledOn(b1, doc.id, winner);
  const [loser, loserEdit, other] = winner === mineB.contentHash
    ? [a1, { hash: mineA.contentHash, text: 'edited in A' }, b1]
    : [b1, { hash: mineB.contentHash, text: 'edited in B' }, a1];
  const told = await loser.waitForFunction(
    () => window.events.find((e) => e.type === 'conflict'), null, WAIT,
  ).then((h) => h.jsonValue());
  assert.deepEqual(told, {
    type: 'conflict', fileId: doc.id, contentHash: loserEdit.hash, winningContentHash: winner,
  });
  // Its own version is still readable by hash, with the file's name and type.
  const kept = await loser.evaluate(async ([id, hash]) => {
    const f = await window.fs.readFile(id, { contentHash: hash });
    return { name: f.name, type: f.type, text: await f.text() };
  }, [doc.id, loserEdit.hash]);
  assert.deepEqual(kept, { name: 'doc.txt', type: 'text/plain', text: loserEdit.text });
  // "Keep mine": saved again, it becomes the current content on both devices.
  await loser.evaluate(async ([id, hash]) => {
    const mine = await window.fs.readFile(id, { contentHash: hash });
    await window.fs.updateFile(id, mine);
  }, [doc.id, loserEdit.hash]);
  await settledOn(loser, doc.id, loserEdit.hash);
  await settledOn(other, doc.id, loserEdit.hash);
  assert.equal(await readText(other, doc.id), loserEdit.text);
  // Told once, and only the loser: the winner's edit and the re-save (made with knowledge of
  // the current content) are no conflict.
  assert.equal((await conflicts(loser)).length, 1);
  assert.deepEqual(await conflicts(other), []);
  // A hash nobody holds is a typed error, not a hang.
  const gone = await loser.evaluate((id) => window.fs.readFile(id, { contentHash: 'ab'.repeat(32) })
    .then(() => 'read', (e) => e.code), doc.id);
  assert.equal(gone, 'not_available');
  await a1.close();
  await b1.close();
});
