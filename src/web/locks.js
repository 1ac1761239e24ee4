// Web Locks held or watched for as long as a context lives, for src/web/locks.rs.

// Holds an exclusive lock: `granted` resolves once it is held; it stays held until `release()`
// or until this context dies.
export function holdLock(name) {
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  const granted = new Promise((resolve) => {
    navigator.locks.request(name, { mode: 'exclusive' }, () => {
      resolve();
      return held;
    });
  });
  return { granted, release: () => release() };
}

// Resolves when nobody holds the lock exclusively (its holder died).
export function whenFree(name) {
  return navigator.locks.request(name, { mode: 'shared' }, () => {});
}
