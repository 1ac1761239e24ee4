// IndexedDB steps for src/web/idb.rs that are simpler in JS than through web-sys.

export function idbRequest(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
export function idbDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
  });
}
export function idbOpen(factory, name, version, stores) {
  return new Promise((resolve, reject) => {
    const r = factory.open(name, version);
    r.onupgradeneeded = (e) => {
      const db = r.result;
      // Layout 1 held records as JS values: rewrite each as its JSON text, in this upgrade
      // transaction (all or nothing). A value JSON cannot express stays; loading reports it.
      if (e.oldVersion === 1) {
        for (const s of db.objectStoreNames) {
          const os = r.transaction.objectStore(s);
          const keys = os.getAllKeys();
          const values = os.getAll();
          values.onsuccess = () => {
            for (let i = 0; i < values.result.length; i++) {
              let text;
              try { text = JSON.stringify(values.result[i]); } catch { text = undefined; }
              if (typeof text === 'string') os.put(text, keys.result[i]);
            }
          };
        }
      }
      for (const s of stores) if (!db.objectStoreNames.contains(s)) db.createObjectStore(s);
    };
    r.onsuccess = () => {
      const db = r.result;
      // Let a newer version of the page upgrade the database: step aside.
      db.onversionchange = () => db.close();
      resolve(db);
    };
    r.onerror = () => reject(r.error);
  });
}
// Every record of `tables`, read in one transaction, packed per table into one string for
// one copy into wasm: `keys NUL values`, each side joined by newlines, when every key is text
// (or every key a number) and every value is text (the fast path, all native joins). Rust
// checks that both sides have as many lines as there are records; if not (a key or value
// holding a newline), or if anything else is odd, the table comes as `\x01` and lines of
// `JSON.stringify(key) TAB json-text`: JSON text never holds a raw newline inside a string,
// and one outside is whitespace, as a carriage return is, so replacing them changes no
// record's meaning, valid or broken. A value that is not text is read through JSON.stringify
// (layout 1); one JSON cannot express becomes an empty text (reported).
export function idbLoadText(db, tables, slowOnly) {
  const slow = (k, v) => {
    const lines = new Array(v.length);
    for (let i = 0; i < v.length; i++) {
      let text = v[i];
      if (typeof text !== 'string') {
        try { text = JSON.stringify(text); } catch { text = undefined; }
        if (typeof text !== 'string') text = '';
      }
      if (text.includes('\n')) text = text.replaceAll('\n', '\r');
      lines[i] = JSON.stringify(k[i]) + '\t' + text;
    }
    return '\x01' + lines.join('\n');
  };
  const fast = (k, v) => {
    if (v.length === 0) return '';
    const kind = typeof k[0];
    if (kind !== 'string' && kind !== 'number') return null;
    for (let i = 0; i < v.length; i++) {
      if (typeof v[i] !== 'string' || typeof k[i] !== kind) return null;
    }
    return (kind === 'string' ? '\x02' : '\x03') + k.join('\n') + '\0' + v.join('\n');
  };
  return new Promise((resolve, reject) => {
    const tx = db.transaction(tables, 'readonly');
    const reads = tables.map((t) => {
      const os = tx.objectStore(t);
      return [os.getAllKeys(), os.getAll()];
    });
    tx.oncomplete = () => {
      resolve(reads.map(([keys, values]) => {
        const k = keys.result, v = values.result;
        return [(slowOnly ? null : fast(k, v)) ?? slow(k, v), v.length];
      }));
    };
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
  });
}
// The files view, read without creating or upgrading the database: null if there is none
// (no database: the open's upgrade is aborted, so none is created), or if the database has a
// layout newer than `version` (this code cannot vouch for its view).
export function idbPeekView(factory, name, version) {
  return new Promise((resolve) => {
    let r;
    try { r = factory.open(name); } catch { resolve(null); return; }
    r.onupgradeneeded = () => r.transaction.abort();
    r.onerror = () => resolve(null);
    r.onsuccess = () => {
      const db = r.result;
      // Never hold up the hub's upgrade.
      db.onversionchange = () => db.close();
      const done = (value) => { db.close(); resolve(value); };
      try {
        if (db.version > version || !db.objectStoreNames.contains('view')) return done(null);
        const g = db.transaction('view').objectStore('view').get('snapshot');
        // A record that is not text is a broken view: '' (unreadable), not null (none).
        g.onsuccess = () => done(typeof g.result === 'string' ? g.result : g.result === undefined ? null : '');
        g.onerror = () => done(null);
      } catch {
        done(null);
      }
    };
  });
}
export function idbDelete(factory, name) {
  return new Promise((resolve, reject) => {
    const r = factory.deleteDatabase(name);
    r.onsuccess = () => resolve();
    r.onerror = () => reject(r.error);
  });
}
