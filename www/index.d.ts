// Types of filesync-wasm's public API. The generated pkg/filesync.d.ts types the raw
// wasm-bindgen class loosely (`any`); these are the precise ones apps should use.

/**
 * Status of one direction of transfer for one file. `'remote'` (downloads only): the bytes
 * are on the server and not wanted here yet; they download when the app reads the file
 * (`downloads: 'lazy'`).
 */
export type TransferStatus = 'pending' | 'queued' | 'inProgress' | 'done' | 'error' | 'remote';

/** A JSON value (what `metadata` may hold). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The last transfer error of a file. */
export interface SyncErrorInfo {
  code: string;
  message: string;
}

/** A file as the app sees it. */
export interface FileState {
  id: string;
  path: string;
  /** Original file name. */
  name: string;
  mimeType: string;
  size: number;
  /** Lowercase hex SHA-256 of the bytes. */
  contentHash: string;
  /** `""` until uploaded. */
  remoteKey: string;
  metadata: Json | null;
  createdAt: number;
  updatedAt: number;
  /** The content whose bytes this browser holds for the file (`""`: none). */
  localHash: string;
  uploadStatus: TransferStatus;
  downloadStatus: TransferStatus;
  lastSyncError: SyncErrorInfo | null;
  /** The bytes of the current content are in this browser. */
  hasLocalCopy: boolean;
  /**
   * The bytes of the current content are in remote storage (this browser knows their remote
   * key). The event that records the key may not have reached the server yet, and until it
   * has, other devices cannot fetch them: see `isSynced`.
   */
  isUploaded: boolean;
  /**
   * The server has recorded the file as this browser shows it, bytes included: none of its
   * changes made here waits for the server's confirmation, and its content is uploaded.
   * Every other device can get it now. Always `false` in a local-only store.
   */
  isSynced: boolean;
  /**
   * `hasLocalCopy`, or uploaded and on its way here: `false` for a lazy file not read yet
   * (`downloadStatus: 'remote'`), until `readFile`/`resolveFileUrl` asks for it.
   */
  canDisplay: boolean;
  /**
   * While `uploadStatus` is `'inProgress'`: bytes of the content sent so far, as the last
   * `upload:progress` event reported them (throttled the same way); `0` otherwise. Part of the
   * state every tab shares, so a tab opened or reloaded mid-transfer shows the real progress.
   */
  uploadedBytes: number;
  /** The same for `downloadStatus` and `download:progress`. */
  downloadedBytes: number;
  /** Kept available offline in this browser (`pin`), whatever the `downloads` policy. */
  isPinned: boolean;
}

/** Aggregate status of this browser (livestore-filesync's field names). */
export interface SyncStatus {
  uploadingCount: number;
  downloadingCount: number;
  queuedUploadCount: number;
  queuedDownloadCount: number;
  pendingUploadCount: number;
  pendingDownloadCount: number;
  errorCount: number;
  uploadingFileIds: string[];
  downloadingFileIds: string[];
  queuedUploadFileIds: string[];
  queuedDownloadFileIds: string[];
  pendingUploadFileIds: string[];
  pendingDownloadFileIds: string[];
  errors: { fileId: string; code: string; error: string }[];
  /**
   * Events made in this browser (saves, edits, deletes, upload completions) that the server
   * has not confirmed yet, sent or not. Other devices do not see them until it has.
   */
  unconfirmedEventCount: number;
  /** Work is moving: a transfer runs, or events wait for the server's confirmation. */
  isSyncing: boolean;
  /**
   * Something is not yet where it goes: a transfer queued, pending or running, or an
   * unconfirmed event. `false` with no errors: every change made here is on the server (see
   * also `whenSynced()`).
   */
  hasPending: boolean;
}

/** The ephemeral events (never persisted). */
export type FileSyncEvent =
  | { type: 'sync:start' }
  | { type: 'sync:complete' }
  | { type: 'sync:error'; code: string; message: string; context: string }
  | { type: 'upload:start' | 'download:start'; fileId: string }
  | { type: 'upload:progress' | 'download:progress'; fileId: string; loaded: number; total: number }
  | { type: 'upload:complete' | 'download:complete'; fileId: string }
  | {
      type: 'upload:error' | 'download:error';
      fileId: string;
      code: string;
      message: string;
      /** Set when another attempt is scheduled. */
      retryInMs: number | null;
    }
  | { type: 'transfer:exhausted'; kind: 'upload' | 'download'; fileId: string; code: string; message: string }
  | { type: 'online' }
  | { type: 'offline' }
  | {
      /**
       * A concurrent edit from another device replaced content written here (both were made
       * without seeing each other; the server's order picked theirs). `contentHash` is this
       * device's lost version, readable with `readFile(fileId, {contentHash})` for a while;
       * saving it again with `updateFile` makes it current.
       */
      type: 'conflict';
      fileId: string;
      contentHash: string;
      winningContentHash: string;
    }
  | { type: 'sync:recovery'; fileIds: string[] }
  | { type: 'sync:error-retry-start'; fileIds: string[] }
  /**
   * Local storage refused a write (it is retried), or the hub could not start. Code
   * `superseded`: a tab of another build of the app took the store over, or a newer build
   * holds it; every later call in this tab fails with that code (reload the page).
   */
  | { type: 'storage:error'; code: string; message: string }
  | {
      /**
       * The browser removed this origin's storage under the open store ("Clear site data",
       * eviction under storage pressure). The store started again on the emptied storage from
       * what it held in memory: every change is written again and what the server has is
       * downloaded again. `lostFileIds`: files whose bytes existed only in this browser (not
       * uploaded yet), gone for good.
       */
      type: 'storage:cleared';
      code: 'storage_cleared';
      message: string;
      lostFileIds: string[];
    }
  /** A stored record was broken and skipped when the state loaded (see `getStorageIssues`). */
  | { type: 'storage:issue'; table: string; key: string; code: string; message: string }
  | { type: 'leader:gained' }
  | { type: 'leader:lost' };

export type FileSyncEventType = FileSyncEvent['type'];

/** The event of a given type (members that share a shape are narrowed to the one type). */
export type EventOf<T extends FileSyncEventType> = FileSyncEvent extends infer E
  ? E extends { type: infer U }
    ? T extends U
      ? Omit<E, 'type'> & { type: T }
      : never
    : never
  : never;

/** What `getStorageInfo()` reports. */
export interface StorageInfo {
  /** Bytes the origin uses (all its stores and other data). */
  usage: number;
  /** Bytes the origin may use. */
  quota: number;
  /** Whether the browser keeps the origin's data under storage pressure (see `requestPersistence`). */
  persisted: boolean;
  kind: 'opfs' | 'indexeddb';
  /** The `storageBudget` the store runs with; `null`: no limit. */
  budget: number | null;
  /** Bytes of file content this browser holds for the store (each content counted once). */
  held: number;
  /** How many of them the budget may evict now (safely on the server, not pinned, not in use). */
  evictable: number;
}

/** One entry of `getHistory()`: an event and when the hub emitted it (ms since the epoch). */
export interface HistoryEntry {
  at: number;
  event: FileSyncEvent;
}

/** A stored record skipped at start because it was broken (the rest loaded). */
export interface StorageIssue {
  table: string;
  key: string;
  code: string;
  message: string;
}

/** Errors are `Error`s with a stable `code` and whether retrying may help. */
export interface FileSyncError extends Error {
  name: 'FileSyncError';
  code: string;
  retryable: boolean;
}

/** Where the server is and how to reach it. */
export interface RemoteOptions {
  /** Base URL of the signer API, relative to the page or absolute (default `'/api'`, as livestore-filesync's `signerBaseUrl`). */
  baseUrl?: string;
  /** Base URL of the event sync API (default: `baseUrl`). */
  syncUrl?: string;
  /** Sent as `Authorization: Bearer <token>` on API calls (never on signed blob URLs). */
  authToken?: string;
  /** Extra headers on API calls. */
  headers?: Record<string, string>;
  /** Send cookies with API calls (default `false`). */
  includeCredentials?: boolean;
  /** A request without an answer for this long fails with `timeout` (default 30000 ms). */
  requestTimeoutMs?: number;
}

export interface OpenOptions {
  /** The store: every tab and device opening it sees the same files. */
  storeId: string;
  /**
   * The server to sync with (`filesync-server`, or any signer API of livestore-filesync for
   * blobs plus our event sync API), or `false` for a local-only store whose data never
   * leaves the browser (the default).
   */
  remote?: false | RemoteOptions;
  /** Least time between two progress events of a transfer, in ms (default 200). */
  progressThrottleMs?: number;
  /** Uploads at once (default 4). */
  maxUploads?: number;
  /** Downloads at once (default 4). */
  maxDownloads?: number;
  /**
   * When the bytes of files other devices saved come to this browser: `'eager'` (default) as
   * soon as they are on the server; `'lazy'` only when the app reads the file (`readFile`,
   * `resolveFileUrl`, `prioritizeDownload`), which then waits for that one download, ahead of
   * any other. Until read, a lazy file's `downloadStatus` is `'remote'`. Files saved here are
   * uploaded either way. The first tab to open the store decides for every tab of the browser.
   *
   * A function decides per file: the store is lazy, and each tab with the function offers it
   * every remote-only file once per content (at open, then as files change); the files it
   * returns `true` for download (not ahead of reads), the others wait to be read. A function
   * that throws counts as `false`. A file the `storageBudget` evicted is not downloaded again
   * by the policy (a read brings it back). Give every tab the same function.
   */
  downloads?: 'eager' | 'lazy' | ((file: FileState) => boolean);
  /**
   * The most bytes of file content this browser keeps (default: no limit). Over it, the least
   * recently read content is evicted: the file becomes remote-only (`downloadStatus:
   * 'remote'`, also under `downloads: 'eager'`) and downloads again, verified, when read.
   * Never evicted: content not yet safely on the server (saved here and not uploaded, or
   * uploaded and not yet confirmed), pinned files, content a transfer is moving, and content
   * an object URL of an open tab shows (see `releaseFileUrl`). So usage can stay over the
   * budget while those exceed it. The first tab to open the store decides for every tab.
   */
  storageBudget?: number;
  /**
   * Remote content is deleted this long after the last file using it went (default 60000 ms),
   * so an upload still in flight cannot land after the delete.
   */
  deleteGraceMs?: number;
  /** Where the wasm file is (default: next to the package's JS). */
  wasmUrl?: string | URL;
  /** Where the hub's SharedWorker script is (default: `filesync-worker.js` next to the package's JS). */
  workerUrl?: string;
  /**
   * How that script runs (default: what the bundler left in the package's worker call, or
   * `'module'` for a `workerUrl` of yours): `'module'` for the package's own file and the
   * chunks of Vite and webpack, `'classic'` for a bundle loaded with `importScripts`.
   */
  workerType?: 'module' | 'classic';
  /**
   * Where the hub runs: `'auto'` (default) uses a SharedWorker where the browser has one
   * (not Android Chrome); `'tab'` makes one tab host it and the others reach it over
   * BroadcastChannel (when that tab closes, another takes over; requests it had in flight
   * are settled by the new one: nothing lost, nothing applied twice).
   */
  hub?: 'auto' | 'shared-worker' | 'tab';
  /**
   * Run before a file is saved or updated, chosen by MIME type: an exact type (`image/png`)
   * wins over a family (`image/*`), which wins over `*`. A preprocessor may return a
   * replacement file and metadata, merged under the metadata the call passes.
   */
  preprocessors?: Record<string, Preprocessor>;
}

/** See `OpenOptions.preprocessors`. */
export type Preprocessor = (
  file: File,
) => Promise<{ file?: File; metadata?: { [key: string]: Json } } | void> | { file?: File; metadata?: { [key: string]: Json } } | void;

/** The preprocessor `openFileSync` would use for a MIME type. */
export function pickPreprocessor(
  preprocessors: Record<string, Preprocessor> | undefined,
  mimeType: string,
): Preprocessor | undefined;

export interface SaveOptions {
  /** Path of the file in the store (default: the file's name). */
  path?: string;
  /** The app's metadata, any JSON. */
  metadata?: Json;
}

export interface UpdateOptions {
  /** New metadata; omitted keeps the current one. */
  metadata?: Json;
}

/** A store opened in this tab. */
export interface FileSync {
  saveFile(file: File, options?: SaveOptions): Promise<FileState>;
  updateFile(id: string, file: File, options?: UpdateOptions): Promise<FileState>;
  deleteFile(id: string): Promise<void>;
  /**
   * The bytes as a `File` with the original name and type. `contentHash` reads another
   * content of the file while this browser still holds it: the losing side of a `conflict`
   * (kept for at least `deleteGraceMs`); `not_available` once it is gone. Waits for the
   * current content's download when the bytes are not here yet (see `resolveFileUrl`). The
   * `File` reads the bytes stored in this browser: with a `storageBudget`, read it soon
   * (content read in the last 10 s is never evicted; a `File` whose content was evicted later
   * fails to read).
   */
  readFile(id: string, options?: { contentHash?: string }): Promise<File>;
  /**
   * An object URL, cached per content and revoked when no longer needed.
   *
   * Like `readFile`, when the bytes are not in this browser yet (a lazy file, or a download
   * still queued) it asks for the download, at the head of the queue, and resolves once the
   * verified bytes are stored, with the usual progress events in every tab. It rejects at once
   * when they cannot come now: `offline` (retryable) while the server is unreachable,
   * `not_available` (retryable) before the device that saved the file uploaded it, and with
   * the download's own error (`integrity`, `not_found`, ...; retryable when another attempt is
   * scheduled) when an attempt fails.
   */
  resolveFileUrl(id: string): Promise<string>;
  /**
   * Revokes this tab's object URL of the file's current content (from `resolveFileUrl`): call
   * it when the app stops showing it. Until then the `storageBudget` never evicts that content.
   */
  releaseFileUrl(id: string): void;
  getFiles(): FileState[];
  getFile(id: string): FileState | undefined;
  getSyncStatus(): SyncStatus;
  getStorageIssues(): StorageIssue[];
  /** Calls `listener` after every change of files, status or leader; returns an unsubscribe. */
  subscribe(listener: () => void): () => void;
  /** Calls `listener` for events of `type` (`'*'` for all); returns an unsubscribe. */
  on<T extends FileSyncEventType>(type: T, listener: (event: EventOf<T>) => void): () => void;
  on(type: '*', listener: (event: FileSyncEvent) => void): () => void;
  /**
   * The hub's recent events, oldest first, for debugging (what happened before a bug report):
   * up to 256, progress left out, the same for every tab of the store (a tab opened later sees
   * what happened before), in memory only (gone when the hub stops). Events a tab emits itself
   * (`leader:*`, `storage:issue`) are not in it.
   */
  getHistory(): Promise<HistoryEntry[]>;
  /** Moves the file's download to the head of the queue; starts a lazy file's download. */
  prioritizeDownload(id: string): Promise<void>;
  /**
   * Keeps the file available offline in this browser whatever the `downloads` policy: its
   * bytes download now if they are not here, and again after each edit. Remembered by this
   * browser (every tab), not synced to other devices. Rejects with `not_found` for no such file.
   */
  pin(id: string): Promise<void>;
  /** Undoes `pin`; the bytes already here stay until the `storageBudget` evicts them. */
  unpin(id: string): Promise<void>;
  cancel(id: string): Promise<void>;
  retryErrors(): Promise<void>;
  syncNow(): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Resolves once the hub has loaded the store's whole state from storage (storage issues
   * known, interrupted transfers recovered). `openFileSync` may resolve before: on a cold
   * start it shows the files as the previous hub last saved them (one IndexedDB record, much
   * faster than loading every table), and the loaded state follows through `subscribe`.
   * Rejects with code `disposed` if the store is disposed first.
   */
  whenLoaded(): Promise<void>;
  /** Whether the hub has loaded the store's state (see `whenLoaded`). */
  isLoaded(): boolean;
  /**
   * Resolves once everything made in this browser is on the server: every save, edit and
   * delete confirmed by the server and every file's bytes uploaded from here (downloads do
   * not count). Use it to tell users when closing the app is safe. Rejects with a
   * `FileSyncError` instead of waiting when it cannot get there: `offline` (the server is
   * unreachable and work is left), the code of an upload that stopped for good (see
   * `retryErrors()`), the code of a push the server refused (`auth`, `server_error`, ...),
   * `local_only` for a store with `remote: false`, `disposed` or `superseded`. While the
   * store is paused (`pause()`), uploads wait, and so does this.
   */
  whenSynced(): Promise<void>;
  /** Whether the server is believed reachable; `online` / `offline` events report changes (always true when local-only). */
  isOnline(): boolean;
  isLeader(): boolean;
  leaderTabId(): string | undefined;
  tabId(): string;
  /** Whether this tab hosts the hub (tab-hosted mode only). */
  hostsHub(): boolean;
  storageKind(): 'opfs' | 'indexeddb';
  /**
   * The bytes the origin uses and may use (the whole origin, from `navigator.storage.estimate()`),
   * whether the browser keeps its data under storage pressure, where this store's bytes live,
   * and the store's byte budget: the budget, the bytes held, how many the budget may evict.
   */
  getStorageInfo(): Promise<StorageInfo>;
  /**
   * Asks the browser to keep this origin's data under storage pressure
   * (`navigator.storage.persist()`): files not uploaded yet exist only in this browser, and a
   * browser may evict a site's storage when the disk fills. Resolves to whether it is kept now;
   * the browser decides (Chromium by how the site is used, Firefox by asking the user).
   */
  requestPersistence(): Promise<boolean>;
  /** Leaves the store in this tab; later calls fail with code `disposed`. */
  dispose(): void;
}

/** Loads the WebAssembly module (done by `openFileSync` too). */
export function load(wasmUrl?: string | URL): Promise<unknown>;

/**
 * Opens a store in this tab. Resolves once the hub answered with the store's files (on a cold
 * start possibly the saved files view first: see `FileSync.whenLoaded`). Rejects with a
 * `FileSyncError` whose `code` says why the store cannot open (`invalid_options`,
 * `invalid_id`, `unavailable`, `schema_too_new`, ...); opening again tries again. Outside a
 * browser (server-side rendering) it rejects with `unavailable` before loading anything.
 */
export function openFileSync(options: OpenOptions): Promise<FileSync>;

/** The library version. */
export function version(): string;
