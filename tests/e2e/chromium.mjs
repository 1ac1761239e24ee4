// How every browser test and benchmark launches Debian's Chromium (root, no network): the
// flags of the toolchain notes, in one place.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

/**
 * A headless Chromium with a persistent (on-disk) profile in `dir`, so IndexedDB and OPFS are
 * on disk as for users; `options` are added to Playwright's.
 */
export function launchProfile(dir, options = {}) {
  return chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    ...options,
  });
}
