// The filesync demo: one store opened in this tab, synced through the same-origin server.
//   /?store=demo&token=SECRET   (defaults: store "demo", no token)
// Plain ES module, no framework: the page keeps one card element per file and updates it in
// place on every change the library reports (subscribe) and every callback (on('*')).
import { openFileSync, version } from './index.js';

const params = new URLSearchParams(location.search);
const storeId = params.get('store') || 'demo';
const authToken = params.get('token') || '';
const apiUrl = new URL('/api', location.href).href;
const LOG_LIMIT = 80;

const $ = (sel, root = document) => root.querySelector(sel);
const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

/** Creates an element: h('div', { class: 'x', dataset: {...}, onclick }, ...children). */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const ui = {
  fatal: byTestId('fatal'),
  syncError: byTestId('sync-error'),
  connection: byTestId('connection'),
  leader: byTestId('leader'),
  picker: byTestId('file-picker'),
  editPicker: byTestId('edit-picker'),
  dropzone: byTestId('dropzone'),
  list: byTestId('file-list'),
  empty: byTestId('empty'),
  count: byTestId('file-count'),
  log: byTestId('event-log'),
  syncNow: byTestId('sync-now'),
  retry: byTestId('retry-errors'),
};

/** What the page knows besides the library's own state. */
const state = {
  fs: null,
  /** fileId -> { kind: 'upload' | 'download', hash, loaded, total, observed } from the callbacks. */
  transfers: new Map(),
  /** fileId -> card element. */
  cards: new Map(),
  /** fileId -> { hash, url } of the thumbnail shown (or being resolved). */
  thumbs: new Map(),
  /** 'unknown' | 'online' | 'offline': `isOnline()` at open, then the online/offline callbacks. */
  connection: 'unknown',
  /** Last `sync:error` until the next `sync:complete`. */
  syncError: null,
  /** When the storage figures were last asked for (`showStorage`). */
  storageShownAt: 0,
  storageTimer: null,
  /** File whose content the edit picker replaces. */
  editing: null,
};

// ---------------------------------------------------------------------------------------------
// Formatting

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function extension(name, mimeType) {
  const dot = name.lastIndexOf('.');
  if (dot > 0 && dot < name.length - 1) return name.slice(dot + 1).slice(0, 4).toUpperCase();
  return (mimeType.split('/')[1] || 'file').slice(0, 4).toUpperCase();
}

/** A colour family for the file icon. */
function family(mimeType) {
  const [major, minor = ''] = mimeType.split('/');
  if (major === 'image') return 'image';
  if (major === 'audio' || major === 'video') return 'media';
  if (major === 'text' || /json|xml|javascript|yaml|csv/.test(minor)) return 'text';
  if (/pdf|document|msword|presentation|spreadsheet/.test(minor)) return 'doc';
  if (/zip|tar|gzip|compressed|7z|rar/.test(minor)) return 'archive';
  return 'other';
}

const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);
/** An error's message, with its code unless the message already says it. */
const errorText = (code, message) => (message.toLowerCase().includes(code.replace(/_/g, ' '))
  ? capitalize(message) : `${capitalize(message)} (${code})`);
const time = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const nameOf = (fileId) => state.fs?.getFile(fileId)?.name ?? `${fileId.slice(0, 8)}…`;
const percentOf = (loaded, total) => (total > 0 ? Math.min(100, Math.floor((loaded / total) * 100)) : 100);

// ---------------------------------------------------------------------------------------------
// Per-file status

/**
 * What a card shows: `queued | uploading | downloading | done | error`, with a label, the
 * direction and the progress in percent.
 */
function displayStatus(f) {
  const t = state.transfers.get(f.id);
  const tr = t && t.hash === f.contentHash ? t : null;
  if (f.uploadStatus === 'error' || f.downloadStatus === 'error') {
    const kind = f.uploadStatus === 'error' ? 'upload' : 'download';
    return { status: 'error', label: `${kind === 'upload' ? 'Upload' : 'Download'} failed`, kind, percent: tr ? percentOf(tr.loaded, tr.total) : 0 };
  }
  if (f.uploadStatus === 'inProgress') {
    // The state carries the bytes moved, so a tab opened mid-transfer shows them at once.
    return { status: 'uploading', label: 'Uploading', kind: 'upload', percent: percentOf(f.uploadedBytes, f.size) };
  }
  if (f.downloadStatus === 'inProgress') {
    return { status: 'downloading', label: 'Downloading', kind: 'download', percent: percentOf(f.downloadedBytes, f.size) };
  }
  if (f.uploadStatus === 'queued' || f.uploadStatus === 'pending') {
    return { status: 'queued', label: f.lastSyncError ? 'Upload queued (retrying)' : 'Upload queued', kind: 'upload', percent: 0 };
  }
  if (f.downloadStatus === 'queued') {
    return { status: 'queued', label: f.lastSyncError ? 'Download queued (retrying)' : 'Download queued', kind: 'download', percent: 0 };
  }
  if (f.downloadStatus === 'pending') {
    return { status: 'queued', label: 'Waiting for its upload', kind: 'download', percent: 0 };
  }
  // Synced: the server has the file as shown here. Uploaded only: the bytes are up, the
  // event that records them is not confirmed yet (other devices cannot fetch them yet).
  const label = f.isSynced ? 'Synced' : f.isUploaded ? 'Uploaded, confirming' : 'Saved here';
  return { status: 'done', label, kind: tr?.kind ?? null, percent: 100 };
}

// ---------------------------------------------------------------------------------------------
// Cards

function createCard(f) {
  const thumb = h('div', { class: 'thumb' });
  const name = h('h3', { class: 'name', 'data-testid': 'file-name' });
  const type = h('span', { 'data-testid': 'file-type' });
  const size = h('span', { 'data-testid': 'file-size' });
  const updated = h('span', { 'data-testid': 'file-updated' });
  const pill = h('span', { class: 'status-pill', 'data-testid': 'file-status' });
  const percent = h('span', { class: 'percent', 'data-testid': 'file-percent' });
  const bar = h('div', { class: 'bar' });
  const progress = h('div', {
    class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100',
    'data-testid': 'file-progress',
  }, bar);
  const error = h('p', { class: 'error-msg', 'data-testid': 'file-error', role: 'alert', hidden: true });
  const edit = h('button', { type: 'button', class: 'button small', 'data-testid': 'file-edit', onclick: () => startEdit(f.id) }, 'Replace…');
  const cancel = h('button', { type: 'button', class: 'button tiny ghost', 'data-testid': 'file-cancel', onclick: () => act('cancel', nameOf(f.id), () => state.fs.cancel(f.id)) }, 'Cancel');
  const del = h('button', { type: 'button', class: 'button small danger', 'data-testid': 'file-delete', onclick: () => act('deleteFile', nameOf(f.id), () => state.fs.deleteFile(f.id)) }, 'Delete');
  const card = h('li', { class: 'card', 'data-testid': 'file-card', dataset: { fileId: f.id } },
    thumb,
    h('div', { class: 'body' },
      name,
      h('div', { class: 'meta muted small' },
        h('p', {}, type, h('span', { 'aria-hidden': 'true' }, ' · '), size),
        h('p', {}, updated)),
      h('div', { class: 'status-row' }, pill, h('span', { class: 'status-right' }, cancel, percent)),
      progress,
      error,
      h('div', { class: 'card-actions' }, edit, del)));
  card._parts = { thumb, name, type, size, updated, pill, percent, bar, progress, error, edit, cancel, del };
  return card;
}

function updateCard(card, f) {
  const p = card._parts;
  const s = displayStatus(f);
  const tr = state.transfers.get(f.id);
  card.dataset.name = f.name;
  card.dataset.status = s.status;
  card.dataset.kind = s.kind ?? '';
  card.dataset.hash = f.contentHash;
  card.dataset.local = String(f.hasLocalCopy);
  card.dataset.uploaded = String(f.isUploaded);
  card.dataset.synced = String(f.isSynced);
  // The highest progress seen in a callback for this content (not inferred from "done").
  card.dataset.observedPercent = tr && tr.hash === f.contentHash && tr.observed ? String(percentOf(tr.loaded, tr.total)) : '';
  p.name.textContent = f.name;
  p.name.title = f.path;
  p.type.textContent = f.mimeType || 'unknown type';
  p.size.textContent = formatSize(f.size);
  p.updated.textContent = `changed ${time(f.updatedAt)}`;
  p.pill.textContent = s.label;
  p.pill.dataset.status = s.status;
  p.percent.textContent = `${s.percent} %`;
  p.bar.style.width = `${s.percent}%`;
  p.progress.dataset.status = s.status;
  p.progress.setAttribute('aria-valuenow', String(s.percent));
  p.progress.setAttribute('aria-label', `${s.label} ${f.name}: ${s.percent} percent`);
  const err = f.lastSyncError;
  p.error.hidden = !err;
  p.error.dataset.code = err?.code ?? '';
  p.error.textContent = err ? errorText(err.code, err.message) : '';
  p.cancel.hidden = !(s.status === 'uploading' || s.status === 'downloading' || (s.status === 'queued' && f.downloadStatus !== 'pending'));
  for (const [b, verb] of [[p.edit, 'Replace the content of'], [p.cancel, 'Cancel the transfer of'], [p.del, 'Delete']]) {
    b.setAttribute('aria-label', `${verb} ${f.name}`);
  }
  updateThumb(card, f);
}

const TEXT_PREVIEW_MAX = 64 * 1024;

/** How a card previews the file: `image` (thumbnail), `text` (first lines) or `icon`. */
function previewKind(f) {
  if (f.mimeType.startsWith('image/')) return 'image';
  if (family(f.mimeType) === 'text' && f.size <= TEXT_PREVIEW_MAX) return 'text';
  return 'icon';
}

/**
 * Images show their bytes through `resolveFileUrl`, small text files their first lines through
 * `readFile` (once this browser has the bytes); other files an icon with their extension.
 */
function updateThumb(card, f) {
  const box = card._parts.thumb;
  const kind = previewKind(f);
  box.dataset.family = family(f.mimeType);
  box.dataset.preview = kind;
  const icon = () => {
    const ext = extension(f.name, f.mimeType);
    if (box.dataset.ext === ext && box.querySelector('.file-icon')) return;
    box.dataset.ext = ext;
    box.replaceChildren(h('span', { class: 'file-icon', 'data-testid': 'file-icon', 'aria-hidden': 'true' }, ext));
  };
  if (kind === 'icon') {
    state.thumbs.delete(f.id);
    icon();
    return;
  }
  const shown = state.thumbs.get(f.id);
  if (shown?.hash === f.contentHash && shown.kind === kind) return;
  if (!f.hasLocalCopy) {
    if (kind === 'text') icon();
    else if (!box.querySelector('.thumb-wait')) {
      box.dataset.ext = '';
      box.replaceChildren(h('span', { class: 'thumb-wait', 'data-testid': 'thumb-placeholder' }, 'preview after download'));
    }
    return;
  }
  const hash = f.contentHash;
  const current = () => state.thumbs.get(f.id)?.hash === hash;
  state.thumbs.set(f.id, { hash, kind });
  const load = kind === 'image'
    ? state.fs.resolveFileUrl(f.id).then((url) => {
      if (!current()) return;
      const img = h('img', { 'data-testid': 'file-thumb', alt: `Preview of ${f.name}`, src: url, decoding: 'async' });
      // The URL went (content replaced or deleted meanwhile): resolve again on the next render.
      img.addEventListener('error', () => { if (current()) state.thumbs.delete(f.id); });
      box.dataset.ext = '';
      box.replaceChildren(img);
    })
    : state.fs.readFile(f.id).then((file) => file.slice(0, 2048).text()).then((text) => {
      if (!current()) return;
      box.dataset.ext = '';
      box.replaceChildren(h('pre', { class: 'text-preview', 'data-testid': 'text-preview', 'aria-label': `Beginning of ${f.name}` }, text.split('\n').slice(0, 8).join('\n')));
    });
  load.catch((e) => {
    if (current()) state.thumbs.delete(f.id);
    console.warn('preview', f.id, e);
  });
}

function renderFiles() {
  const files = state.fs.getFiles().sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
  const live = new Set();
  let prev = null;
  for (const f of files) {
    live.add(f.id);
    let card = state.cards.get(f.id);
    if (!card) {
      card = createCard(f);
      state.cards.set(f.id, card);
    }
    updateCard(card, f);
    // Keep order without moving cards that are already in place (keeps focus and images).
    const want = prev ? prev.nextSibling : ui.list.firstChild;
    if (want !== card) ui.list.insertBefore(card, want);
    prev = card;
  }
  for (const [id, card] of state.cards) {
    if (live.has(id)) continue;
    card.remove();
    state.cards.delete(id);
    state.thumbs.delete(id);
    state.transfers.delete(id);
  }
  ui.count.textContent = String(files.length);
  ui.empty.hidden = files.length > 0;
}

// ---------------------------------------------------------------------------------------------
// Status panel, leader and connection

function renderStatus() {
  const s = state.fs.getSyncStatus();
  const set = (id, v) => { byTestId(id).textContent = String(v); };
  set('count-uploading', s.uploadingCount);
  set('count-downloading', s.downloadingCount);
  set('count-queued-up', s.queuedUploadCount);
  set('count-queued-down', s.queuedDownloadCount);
  set('count-pending-up', s.pendingUploadCount);
  set('count-pending-down', s.pendingDownloadCount);
  set('count-errors', s.errorCount);
  set('count-unconfirmed', s.unconfirmedEventCount);
  byTestId('count-errors').parentElement.dataset.nonzero = String(s.errorCount > 0);
  const syncing = byTestId('syncing');
  syncing.dataset.syncing = String(s.isSyncing);
  syncing.textContent = s.isSyncing ? 'Syncing' : 'Idle';
  const pending = byTestId('pending');
  pending.dataset.pending = String(s.hasPending);
  pending.dataset.errors = String(s.errorCount > 0);
  const work = s.uploadingCount + s.downloadingCount + s.queuedUploadCount + s.queuedDownloadCount + s.pendingUploadCount + s.pendingDownloadCount;
  const todo = [
    work ? `${work} transfer${work === 1 ? '' : 's'} to do` : '',
    s.unconfirmedEventCount ? `${s.unconfirmedEventCount} change${s.unconfirmedEventCount === 1 ? '' : 's'} to confirm` : '',
    s.errorCount ? `${s.errorCount} failed` : '',
  ].filter(Boolean).join(', ');
  pending.textContent = s.hasPending
    ? `${capitalize(todo)}.`
    : s.errorCount ? `${s.errorCount} transfer${s.errorCount === 1 ? '' : 's'} failed.` : 'Everything is in sync.';
  const list = byTestId('error-list');
  list.replaceChildren(...s.errors.map((e) => h('li', { 'data-testid': 'error-item' },
    h('strong', {}, nameOf(e.fileId)), h('span', {}, `: ${errorText(e.code, e.error)}`))));
  ui.retry.disabled = s.errorCount === 0;
  ui.syncNow.disabled = false;
}

function renderLeader() {
  const fs = state.fs;
  if (document.body.dataset.superseded) {
    ui.leader.dataset.leader = 'false';
    ui.leader.dataset.state = 'none';
    $('.label', ui.leader).textContent = 'Stopped: a newer version runs';
    ui.leader.title = 'A newer version of this app took the store over in another tab: reload this page.';
    return;
  }
  const leader = fs.isLeader();
  const id = fs.leaderTabId();
  ui.leader.dataset.leader = String(leader);
  ui.leader.dataset.state = leader ? 'leader' : id ? 'follower' : 'none';
  $('.label', ui.leader).textContent = leader
    ? 'This tab leads'
    : id ? `Follower · leader ${id.slice(0, 6)}` : 'No leader yet';
  ui.leader.title = leader
    ? 'This tab is the leader of this browser: it uploads and downloads for every tab.'
    : 'Another tab of this browser moves the bytes; this one shows the same files and progress.';
}

function setConnection(next) {
  state.connection = next;
  ui.connection.dataset.state = next;
  $('.label', ui.connection).textContent = next === 'online' ? 'Online' : next === 'offline' ? 'Offline' : 'Connecting…';
}

function renderSyncError() {
  const e = state.syncError;
  ui.syncError.hidden = !e;
  ui.syncError.textContent = e ? `Sync error (${e.code}${e.context ? `, ${e.context}` : ''}): ${e.message}` : '';
}

let scheduled = false;
/** Coalesces renders (timers, not animation frames: hidden tabs keep up to date too). */
function render() {
  if (scheduled || !state.fs) return;
  scheduled = true;
  setTimeout(() => {
    scheduled = false;
    renderFiles();
    renderStatus();
    renderLeader();
    showStorage();
  }, 0);
}

// ---------------------------------------------------------------------------------------------
// Event log

function describe(e) {
  switch (e.type) {
    case 'upload:start': case 'download:start': case 'upload:complete': case 'download:complete':
      return nameOf(e.fileId);
    case 'upload:progress': case 'download:progress':
      return `${nameOf(e.fileId)} ${percentOf(e.loaded, e.total)} % (${formatSize(e.loaded)} of ${formatSize(e.total)})`;
    case 'upload:error': case 'download:error':
      return `${nameOf(e.fileId)}: ${e.code}: ${e.message}${e.retryInMs != null ? `; retry in ${(e.retryInMs / 1000).toFixed(1)} s` : ''}`;
    case 'transfer:exhausted':
      return `${e.kind} of ${nameOf(e.fileId)} gave up: ${e.code}: ${e.message}`;
    case 'sync:error': return `${e.code} (${e.context}): ${e.message}`;
    case 'storage:error': return `${e.code}: ${e.message}`;
    case 'sync:recovery': case 'sync:error-retry-start':
      return e.fileIds.map(nameOf).join(', ');
    default: return '';
  }
}

function logEvent(e) {
  const category = e.type.split(':')[0];
  const tone = /error|exhausted|offline|lost/.test(e.type) ? 'bad' : /complete|online|gained|recovery/.test(e.type) ? 'good' : '';
  const first = ui.log.firstElementChild;
  // Progress of one transfer updates its row instead of flooding the log.
  if (e.type.endsWith(':progress') && first?.dataset.type === e.type && first.dataset.fileId === e.fileId) {
    $('.detail', first).textContent = describe(e);
    $('time', first).textContent = time(Date.now());
    return;
  }
  const row = h('li', { 'data-testid': 'log-entry', dataset: { type: e.type, fileId: e.fileId ?? '', category, tone } },
    h('time', {}, time(Date.now())),
    h('span', { class: 'type' }, e.type),
    h('span', { class: 'detail' }, describe(e)));
  ui.log.prepend(row);
  while (ui.log.childElementCount > LOG_LIMIT) ui.log.lastElementChild.remove();
}

/** Shows the page-wide error banner; `reload` adds a button that reloads the page. */
function showFatal(text, { reload = false } = {}) {
  ui.fatal.hidden = false;
  ui.fatal.replaceChildren(text);
  if (reload) {
    ui.fatal.append(' ', h('button', { type: 'button', class: 'button small', 'data-testid': 'reload', onclick: () => location.reload() }, 'Reload'));
  }
}

/**
 * A newer build of the app (a deploy, opened in another tab) took the store over: every call
 * of this page would fail with `superseded`, so the page stops taking input and offers a reload.
 */
function onSuperseded() {
  showFatal('A newer version of this app took this store over in another tab. Reload this page to use it.', { reload: true });
  document.querySelector('main').inert = true;
  document.body.dataset.superseded = 'true';
  byTestId('keep-files').hidden = true;
  renderLeader();
}

function onEvent(e) {
  switch (e.type) {
    case 'storage:error':
      if (e.code === 'superseded') onSuperseded();
      break;
    case 'upload:start': case 'download:start':
      state.transfers.set(e.fileId, { kind: e.type.split(':')[0], hash: state.fs.getFile(e.fileId)?.contentHash, loaded: 0, total: 0, observed: false });
      break;
    case 'upload:progress': case 'download:progress': {
      const kind = e.type.split(':')[0];
      const hash = state.fs.getFile(e.fileId)?.contentHash;
      const t = state.transfers.get(e.fileId);
      const fresh = !t || t.kind !== kind || t.hash !== hash;
      state.transfers.set(e.fileId, {
        kind, hash, total: e.total, observed: true,
        loaded: fresh ? e.loaded : Math.max(t.loaded, e.loaded),
      });
      break;
    }
    case 'online':
      setConnection('online');
      break;
    case 'sync:complete':
      state.syncError = null;
      renderSyncError();
      break;
    case 'offline':
      setConnection('offline');
      break;
    case 'sync:error':
      state.syncError = e;
      if (e.code === 'offline') setConnection('offline');
      renderSyncError();
      break;
    default:
  }
  logEvent(e);
  render();
}

// ---------------------------------------------------------------------------------------------
// Actions

/**
 * Runs a library call of the app (`method`, about `subject`) and logs how it ended next to the
 * callbacks, so a failure shows on the page with its code.
 */
async function act(method, subject, fn) {
  try {
    const out = await fn();
    logCall(method, subject, null);
    return out;
  } catch (e) {
    logCall(method, subject, e);
    console.error(e);
    return undefined;
  }
}

function logCall(method, subject, error) {
  const row = h('li', { 'data-testid': 'log-entry', dataset: { type: `call:${method}`, category: 'call', tone: error ? 'bad' : 'good' } },
    h('time', {}, time(Date.now())),
    h('span', { class: 'type' }, `${method}()`),
    h('span', { class: 'detail' }, [subject, error ? `failed: ${error.code ?? error.name}: ${error.message}` : 'done'].filter(Boolean).join(' ')));
  ui.log.prepend(row);
  while (ui.log.childElementCount > LOG_LIMIT) ui.log.lastElementChild.remove();
}

/**
 * Shows whether the browser keeps this site's data under storage pressure (files not uploaded
 * yet exist only here) and how much it uses, at most once a second.
 */
async function showStorage() {
  // A superseded page asks nothing more of the library (every call would fail).
  if (document.body.dataset.superseded) return;
  const wait = state.storageShownAt + 1000 - Date.now();
  if (wait > 0) {
    // Asked again within the second: once more at its end, so the last change shows.
    state.storageTimer ??= setTimeout(() => {
      state.storageTimer = null;
      showStorage();
    }, wait);
    return;
  }
  state.storageShownAt = Date.now();
  const label = byTestId('storage-persisted');
  try {
    const { persisted, usage, quota } = await state.fs.getStorageInfo();
    label.dataset.persisted = String(persisted);
    const used = `${(usage / 1048576).toFixed(1)} of ${(quota / 1048576).toFixed(0)} MiB used`;
    label.textContent = persisted ? `storage kept (${used})` : `best-effort storage (${used})`;
    byTestId('keep-files').hidden = persisted;
  } catch (e) {
    label.textContent = `storage: ${e.code}`;
  }
}

/** Offers to ask the browser to keep the site's data while it does not. */
function showPersistence() {
  byTestId('keep-files').onclick = () => act('requestPersistence', '', async () => {
    await state.fs.requestPersistence();
    state.storageShownAt = 0;
    await showStorage();
  });
  return showStorage();
}

async function addFiles(files) {
  for (const file of files) await act('saveFile', file.name, () => state.fs.saveFile(file));
}

function startEdit(fileId) {
  state.editing = fileId;
  ui.editPicker.value = '';
  ui.editPicker.click();
}

async function replaceContent(fileId, file) {
  const f = state.fs.getFile(fileId);
  if (!f) return;
  await act('updateFile', `${f.name} ← ${file.name}`, () => state.fs.updateFile(fileId, file));
}

function wireInputs() {
  ui.picker.addEventListener('change', async () => {
    const files = [...ui.picker.files];
    ui.picker.value = '';
    await addFiles(files);
  });
  ui.editPicker.addEventListener('change', async () => {
    const file = ui.editPicker.files[0];
    const id = state.editing;
    state.editing = null;
    ui.editPicker.value = '';
    if (file && id) await replaceContent(id, file);
  });
  ui.syncNow.addEventListener('click', () => act('syncNow', '', () => state.fs.syncNow()));
  ui.retry.addEventListener('click', () => act('retryErrors', '', () => state.fs.retryErrors()));
  byTestId('clear-log').addEventListener('click', () => ui.log.replaceChildren());

  // Drag and drop: anywhere on the page adds files; on a card, one file replaces its content.
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
  const clearTargets = () => document.querySelectorAll('.card.drop-target').forEach((c) => c.classList.remove('drop-target'));
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    depth++;
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) {
      document.body.classList.remove('dragging');
      clearTargets();
    }
  });
  document.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    const card = e.target.closest?.('.card');
    clearTargets();
    card?.classList.add('drop-target');
    document.body.classList.toggle('drag-card', !!card);
  });
  document.addEventListener('drop', async (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove('dragging', 'drag-card');
    clearTargets();
    if (!state.fs || document.body.dataset.superseded) return;
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length === 0) return;
    const card = e.target.closest?.('.card');
    if (card && files.length === 1) await replaceContent(card.dataset.fileId, files[0]);
    else await addFiles(files);
  });
}

// ---------------------------------------------------------------------------------------------
// Start

async function main() {
  for (const el of document.querySelectorAll('[data-testid="store-id"], [data-testid="store-id-2"]')) el.textContent = storeId;
  byTestId('server-url').textContent = apiUrl;
  byTestId('auth').textContent = authToken ? 'with token' : 'no token';
  document.title = `${storeId} · filesync demo`;
  wireInputs();
  let fs;
  try {
    fs = await openFileSync({ storeId, remote: authToken ? { authToken } : {} });
  } catch (e) {
    // `superseded`: a newer build of the app holds the store; a reload fetches it.
    showFatal(`Could not open store "${storeId}": ${e.code ? `${e.code}: ` : ''}${e.message}`, { reload: e.code === 'superseded' });
    document.body.dataset.ready = 'error';
    console.error(e);
    return;
  }
  state.fs = fs;
  window.demo = { fs, state };
  fs.on('*', onEvent);
  fs.subscribe(render);
  byTestId('version').textContent = version();
  byTestId('tab-id').textContent = fs.tabId();
  byTestId('storage-kind').textContent = fs.storageKind() === 'opfs' ? 'OPFS' : 'IndexedDB';
  showPersistence();
  const issues = fs.getStorageIssues();
  if (issues.length) {
    const el = byTestId('storage-issues');
    el.hidden = false;
    el.textContent = `${issues.length} broken record${issues.length === 1 ? '' : 's'} skipped at start`;
  }
  ui.picker.disabled = false;
  renderFiles();
  renderStatus();
  renderLeader();
  if (state.connection === 'unknown') setConnection(fs.isOnline() ? 'online' : 'offline');
  document.body.dataset.ready = 'true';
}

main();
