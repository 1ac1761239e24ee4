//! One conformance suite for every state store: the in-memory one natively
//! (`tests/store_memory.rs`) and IndexedDB in headless Chromium (`tests/browser_idb.rs`).
//! A store passes if what the engine persists loads back as exactly what the engine holds,
//! broken records are reported and skipped, newer schemas are refused and terms only grow.

use filesync::core::store::{batch_ops, client_id_op, Key, StateStore, Table};
use filesync::core::{
    ClientId, Command, Config, ConfirmedEvent, ContentHash, Engine, FileCreated, FileDeleted,
    FileEvent, FileId, FileInfo, FileUpdated, Input, MetadataPatch, Millis, Mode, OpId, Output,
    Seq, Snapshot, StoreId, Term,
};
use serde_json::json;

/// How a suite reaches one kind of store.
#[allow(async_fn_in_trait)]
pub trait Harness {
    type Store: StateStore;
    /// Opens the store called `name`; opening the same name again sees the same data.
    async fn open(&self, name: &str) -> Self::Store;
    /// Writes a raw record, bypassing encoding (to plant broken data).
    async fn put_raw(&self, store: &Self::Store, table: Table, key: Key, value: serde_json::Value);
}

/// Runs every check; `prefix` keeps the names of this run's stores apart from other runs'.
pub async fn run_all<H: Harness>(h: &H, prefix: &str) {
    empty_store_loads_empty(h, &format!("{prefix}-empty")).await;
    engine_state_round_trips(h, &format!("{prefix}-round-trip"), Mode::LocalOnly).await;
    engine_state_round_trips(h, &format!("{prefix}-round-trip-remote"), Mode::Remote).await;
    broken_records_are_reported_and_skipped(h, &format!("{prefix}-corrupt")).await;
    newer_schema_is_refused(h, &format!("{prefix}-newer")).await;
    terms_only_grow_and_survive_reopening(h, &format!("{prefix}-terms")).await;
}

async fn empty_store_loads_empty<H: Harness>(h: &H, name: &str) {
    let s = h.open(name).await;
    let loaded = s.load().await.expect("load an empty store");
    assert_eq!(loaded.snapshot, Snapshot::default());
    assert!(loaded.corrupt.is_empty());
    assert_eq!(loaded.client_id, None);
    assert_eq!(loaded.last_term, Term(0));
}

fn info(name: &str, size: u64) -> FileInfo {
    FileInfo {
        name: name.into(),
        mime_type: "text/plain".into(),
        size,
    }
}

fn created(id: &str, content: &str) -> FileEvent {
    FileEvent::Created(FileCreated {
        id: FileId::new(id).unwrap(),
        path: format!("dir/{id}.txt"),
        content_hash: ContentHash::of(content.as_bytes()),
        info: info(&format!("{id}.txt"), content.len() as u64),
        metadata_json: Some(r#"{"custom":{"tag":"x"}}"#.into()),
        created_at: Millis(10),
        updated_at: Millis(10),
    })
}

/// Runs the engine through saves, an edit and a delete, writing every persist batch to the
/// store, and returns the engine.
pub async fn drive<S: StateStore>(store: &S, mode: Mode) -> Engine {
    let cfg = Config::new(
        StoreId::new("conformance").unwrap(),
        ClientId::new("client-1").unwrap(),
        mode,
    );
    let mut e = Engine::new(cfg, Snapshot::default(), Millis(0));
    store
        .write(&[client_id_op(&ClientId::new("client-1").unwrap())])
        .await
        .unwrap();
    let mut inputs = vec![
        created("a", "alpha"),
        created("b", "beta"),
        created("c", "alpha"),
        FileEvent::Updated(FileUpdated {
            id: FileId::new("b").unwrap(),
            path: "dir/b-renamed.txt".into(),
            remote_key: None,
            content_hash: ContentHash::of(b"beta 2"),
            info: info("b-renamed.txt", 6),
            metadata: MetadataPatch::Clear,
            updated_at: Millis(20),
            expected_content_hash: None,
            previous_content_hash: None,
        }),
        FileEvent::Deleted(FileDeleted {
            id: FileId::new("a").unwrap(),
            deleted_at: Millis(30),
        }),
    ]
    .into_iter();
    let mut op = 0;
    // In remote mode the server confirms the first two events pushed, so the store sees
    // pending events written and then deleted.
    let mut seq = 0;
    loop {
        let mut wrote = false;
        while let Some(out) = e.poll_output() {
            match out {
                Output::Command(Command::Persist(batch)) => {
                    store
                        .write(&batch_ops(&batch))
                        .await
                        .expect("write a batch");
                    e.handle(Millis(1), Input::Persisted { batch: batch.id })
                        .unwrap();
                    wrote = true;
                }
                Output::Command(Command::Push { request, events }) => {
                    let confirmed = events
                        .into_iter()
                        .take(2 - seq.min(2))
                        .map(|ev| {
                            seq += 1;
                            ConfirmedEvent {
                                seq: Seq(seq as u64),
                                id: ev.id,
                                event: ev.event,
                            }
                        })
                        .collect();
                    e.handle(Millis(1), Input::Pushed { request, confirmed })
                        .unwrap();
                    wrote = true;
                }
                _ => {}
            }
        }
        if wrote {
            continue;
        }
        let Some(event) = inputs.next() else { break };
        op += 1;
        e.handle(
            Millis(op),
            Input::Commit {
                op: OpId(op),
                event: Box::new(event),
            },
        )
        .unwrap();
    }
    e
}

async fn engine_state_round_trips<H: Harness>(h: &H, name: &str, mode: Mode) {
    let engine = {
        let s = h.open(name).await;
        drive(&s, mode).await
    };
    let loaded = h.open(name).await.load().await.expect("reload");
    assert!(loaded.corrupt.is_empty(), "{:?}", loaded.corrupt);
    assert_eq!(loaded.client_id, Some(ClientId::new("client-1").unwrap()));
    let expected = engine.snapshot();
    let got = loaded.snapshot;
    assert_eq!(got.rows, expected.rows, "files table");
    assert_eq!(got.local, expected.local, "per-client rows");
    assert_eq!(got.pending, expected.pending, "pending events");
    assert_eq!(got.cursor, expected.cursor);
    assert_eq!(got.next_event_n, expected.next_event_n);
    match mode {
        Mode::LocalOnly => {
            assert_eq!(got.cursor.0, 5, "five events confirmed locally");
            assert!(
                got.pending.is_empty(),
                "confirmed events left the pending table"
            );
        }
        _ => {
            assert_eq!(got.cursor.0, 2, "two events confirmed by the server");
            assert_eq!(got.pending.len(), 3, "unconfirmed events survive a restart");
        }
    }
    // An engine restarted from the store holds the same state.
    let cfg = Config::new(
        StoreId::new("conformance").unwrap(),
        ClientId::new("client-1").unwrap(),
        mode,
    );
    let restarted = Engine::new(cfg, got, Millis(100));
    assert_eq!(restarted.snapshot().rows, expected.rows);
}

async fn broken_records_are_reported_and_skipped<H: Harness>(h: &H, name: &str) {
    let s = h.open(name).await;
    drive(&s, Mode::LocalOnly).await;
    let hash = ContentHash::of(b"x").to_hex();
    let broken = [
        (
            Table::Rows,
            Key::Str("bad-hash".into()),
            json!({"id": "bad-hash", "path": "p", "contentHash": "XYZ", "name": "n", "size": 1, "createdAt": 1, "updatedAt": 1}),
        ),
        (
            Table::Rows,
            Key::Str("truncated".into()),
            json!({"id": "truncated"}),
        ),
        (
            Table::Rows,
            Key::Str("wrong-key".into()),
            json!({"id": "other", "path": "p", "contentHash": hash, "name": "n", "size": 1, "createdAt": 1, "updatedAt": 1}),
        ),
        (
            Table::Rows,
            Key::Str("traversal".into()),
            json!({"id": "traversal", "path": "../../etc", "contentHash": hash, "name": "n", "size": 1, "createdAt": 1, "updatedAt": 1}),
        ),
        (
            Table::Local,
            Key::Str("b".into()),
            json!({"fileId": "b", "uploadStatus": 7}),
        ),
        (Table::Pending, Key::Num(99), json!("not an event")),
        (Table::Meta, Key::Str("cursor".into()), json!("five")),
    ];
    for (t, k, v) in broken.clone() {
        h.put_raw(&s, t, k, v).await;
    }
    // The log is an audit trail a restart does not read: a broken entry there costs nothing.
    h.put_raw(&s, Table::Log, Key::Num(1000), json!("not an event"))
        .await;
    let loaded = s.load().await.expect("broken records do not fail the load");
    let mut reported: Vec<(Table, Key)> = loaded
        .corrupt
        .iter()
        .map(|c| (c.table, c.key.clone()))
        .collect();
    reported.sort();
    let mut expected: Vec<(Table, Key)> = broken.iter().map(|(t, k, _)| (*t, k.clone())).collect();
    expected.sort();
    assert_eq!(reported, expected);
    let codes: Vec<&str> = loaded.corrupt.iter().map(|c| c.error.code()).collect();
    assert!(
        codes.contains(&"invalid_hash") && codes.contains(&"unsafe_path"),
        "{codes:?}"
    );
    // The rest loads: rows a, b, c (a deleted), c's per-client row.
    let ids: Vec<String> = loaded
        .snapshot
        .rows
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(ids, vec!["a", "b", "c"]);
    assert!(loaded
        .snapshot
        .local
        .iter()
        .any(|r| r.file_id.as_str() == "c"));
    assert!(
        !loaded
            .snapshot
            .local
            .iter()
            .any(|r| r.file_id.as_str() == "b"),
        "b's row was broken"
    );
}

async fn newer_schema_is_refused<H: Harness>(h: &H, name: &str) {
    let s = h.open(name).await;
    drive(&s, Mode::LocalOnly).await;
    h.put_raw(
        &s,
        Table::Meta,
        Key::Str("schemaVersion".into()),
        json!(999),
    )
    .await;
    let err = s.load().await.expect_err("a newer schema must not load");
    assert_eq!(err.code(), "schema_too_new");
}

async fn terms_only_grow_and_survive_reopening<H: Harness>(h: &H, name: &str) {
    let s = h.open(name).await;
    let a = s.next_term().await.unwrap();
    let b = s.next_term().await.unwrap();
    assert!(b > a && a > Term(0));
    drop(s);
    let s = h.open(name).await;
    let c = s.next_term().await.unwrap();
    assert!(c > b, "terms grow across reopening");
    assert_eq!(s.load().await.unwrap().last_term, c);
}
