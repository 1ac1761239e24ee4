//! One conformance suite for every event store: SQLite (a temp file) and PostgreSQL (the
//! throwaway cluster `scripts/test.sh` starts, named by `FILESYNC_TEST_DATABASE_URL`; each
//! test uses a database of its own). The PostgreSQL tests fail, with the reason, when that
//! variable is not set: run them through `scripts/test.sh`, or start a cluster with
//! `scripts/pg.sh start` and export the URL it prints.

use std::collections::BTreeSet;
use std::sync::Arc;

use filesync::core::event::{
    ClientEvent, FileCreated, FileDeleted, FileEvent, FileInfo, FileUpdated, MetadataPatch,
};
use filesync::core::ids::{
    ClientId, ContentHash, EventId, FileId, Millis, RemoteKey, Seq, StoreId,
};
use filesync_server::error::BlobError;
use filesync_server::events::{EventStore, PostgresEventStore, SqliteEventStore};
use futures_util::future::FutureExt;

mod common;

// ---------------------------------------------------------------------------------------------
// The two backends

async fn postgres() -> Arc<dyn EventStore> {
    let url = common::pg_database("events").await;
    Arc::new(PostgresEventStore::connect(&url, 8, None).await.unwrap())
}

fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    Arc::new(SqliteEventStore::open(&dir.path().join("events.sqlite")).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Events

fn store() -> StoreId {
    StoreId::new("s").unwrap()
}

fn id(client: &str, n: u64) -> EventId {
    EventId {
        client: ClientId::new(client).unwrap(),
        n,
    }
}

fn info() -> FileInfo {
    FileInfo {
        name: "a.txt".into(),
        mime_type: "text/plain".into(),
        size: 1,
    }
}

fn created(client: &str, n: u64, file: &str, content: &[u8]) -> ClientEvent {
    ClientEvent {
        id: id(client, n),
        event: FileEvent::Created(FileCreated {
            id: FileId::new(file).unwrap(),
            path: file.into(),
            content_hash: ContentHash::of(content),
            info: info(),
            metadata_json: None,
            created_at: Millis(1),
            updated_at: Millis(1),
        }),
    }
}

fn uploaded(n: u64, file: &str, content: &[u8]) -> ClientEvent {
    let h = ContentHash::of(content);
    ClientEvent {
        id: id("c", n),
        event: FileEvent::Updated(FileUpdated {
            id: FileId::new(file).unwrap(),
            path: file.into(),
            remote_key: Some(RemoteKey::for_content(&store(), &h)),
            content_hash: h,
            info: info(),
            metadata: MetadataPatch::Keep,
            updated_at: Millis(2),
            expected_content_hash: Some(h),
            previous_content_hash: None,
        }),
    }
}

fn deleted(n: u64, file: &str) -> ClientEvent {
    ClientEvent {
        id: id("c", n),
        event: FileEvent::Deleted(FileDeleted {
            id: FileId::new(file).unwrap(),
            deleted_at: Millis(3),
        }),
    }
}

/// A blob check that reports `absent` (of what it is asked) as missing.
async fn push(
    db: &dyn EventStore,
    store: &StoreId,
    events: &[ClientEvent],
    absent: &BTreeSet<ContentHash>,
) -> filesync_server::events::PushResult {
    let absent = absent.clone();
    let check = move |asked: BTreeSet<ContentHash>| {
        let missing: BTreeSet<ContentHash> = asked.intersection(&absent).copied().collect();
        async move { Ok::<_, BlobError>(missing) }.boxed()
    };
    db.push(store, events, &check).await.unwrap()
}

async fn is_referenced(db: &dyn EventStore, hash: &ContentHash) -> bool {
    let noop = || async { Ok::<_, BlobError>(()) }.boxed();
    !db.delete_unreferenced(&store(), hash, &noop).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The checks

async fn push_is_idempotent_gapless_and_per_store(db: Arc<dyn EventStore>) {
    let none = BTreeSet::new();
    let a = created("c", 1, "f1", b"x");
    let r = push(&*db, &store(), &[a.clone(), a.clone()], &none).await;
    assert_eq!(r.new.len(), 1);
    assert_eq!(r.events.iter().map(|e| e.seq.0).collect::<Vec<_>>(), [1, 1]);
    let r = push(&*db, &store(), &[a, created("c", 2, "f2", b"y")], &none).await;
    assert_eq!(r.events.iter().map(|e| e.seq.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(r.new.len(), 1);
    // Another store has its own numbering and ids.
    let other = StoreId::new("t").unwrap();
    let r = push(&*db, &other, &[created("c", 1, "f1", b"x")], &none).await;
    assert_eq!(r.new[0].seq, Seq(1));
    assert_eq!(db.head(&store()).await.unwrap(), Seq(2));
    assert_eq!(db.pull(&store(), Seq(0), 10).await.unwrap().len(), 2);
    assert_eq!(db.pull(&store(), Seq(1), 10).await.unwrap()[0].seq, Seq(2));
    assert_eq!(db.pull(&store(), Seq(0), 1).await.unwrap().len(), 1);
    assert_eq!(
        db.head(&StoreId::new("empty").unwrap()).await.unwrap(),
        Seq(0)
    );
}

async fn references_follow_the_fold_and_absent_blobs_clear_keys(db: Arc<dyn EventStore>) {
    let h = ContentHash::of(b"x");
    let absent: BTreeSet<_> = [h].into();
    push(&*db, &store(), &[created("c", 1, "f1", b"x")], &absent).await;
    assert!(is_referenced(&*db, &h).await);
    let r = push(&*db, &store(), &[uploaded(2, "f1", b"x")], &absent).await;
    match &r.events[0].event {
        FileEvent::Updated(u) => assert_eq!(u.remote_key, None),
        e => panic!("{e:?}"),
    }
    let r = push(&*db, &store(), &[uploaded(3, "f1", b"x")], &BTreeSet::new()).await;
    match &r.events[0].event {
        FileEvent::Updated(u) => assert!(u.remote_key.is_some()),
        e => panic!("{e:?}"),
    }
    // Referenced: the delete does not run.
    let ran = std::sync::atomic::AtomicBool::new(false);
    let ran = Arc::new(ran);
    let flag = ran.clone();
    let delete = move || {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, BlobError>(()) }.boxed()
    };
    assert!(!db.delete_unreferenced(&store(), &h, &delete).await.unwrap());
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    push(&*db, &store(), &[deleted(4, "f1")], &absent).await;
    assert!(db.delete_unreferenced(&store(), &h, &delete).await.unwrap());
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
}

/// Pushes from many tasks (and, for PostgreSQL, through several store handles: instances) to
/// one store: every event stored once, numbered 1..=N without gaps, retries idempotent.
async fn concurrent_pushes_number_without_gaps(handles: Vec<Arc<dyn EventStore>>) {
    let none = BTreeSet::new();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let db = handles[t as usize % handles.len()].clone();
        let none = none.clone();
        tasks.push(tokio::spawn(async move {
            let client = format!("c{t}");
            for batch in 0..10u64 {
                let events: Vec<ClientEvent> = (1..=3)
                    .map(|i| {
                        let n = batch * 3 + i;
                        created(&client, n, &format!("{client}-{n}"), b"x")
                    })
                    .collect();
                push(&*db, &store(), &events, &none).await;
                // A retry of the same batch (its answer lost) stores nothing new.
                let again = push(&*db, &store(), &events, &none).await;
                assert!(again.new.is_empty());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = handles[0].pull(&store(), Seq(0), 10_000).await.unwrap();
    assert_eq!(all.len(), 16 * 10 * 3);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, Seq(i as u64 + 1), "gap or repeat at {i}");
    }
    let ids: BTreeSet<(String, u64)> = all
        .iter()
        .map(|e| (e.id.client.as_str().to_string(), e.id.n))
        .collect();
    assert_eq!(ids.len(), all.len(), "an event stored twice");
    assert_eq!(handles[0].head(&store()).await.unwrap(), Seq(480));
}

/// A delete whose blob delete is in progress holds back a push naming that content until it
/// is done, so the push sees the blob gone and clears the key: across instances, so
/// PostgreSQL only (SQLite has one process, whose routes hold the per-store lock).
/// `url`: the database, watched for the push waiting on the store's lock.
async fn a_push_waits_for_a_delete_in_progress(
    url: &str,
    a: Arc<dyn EventStore>,
    b: Arc<dyn EventStore>,
) {
    let h = ContentHash::of(b"x");
    push(
        &*a,
        &store(),
        &[created("c", 1, "f1", b"x")],
        &BTreeSet::new(),
    )
    .await;
    push(&*a, &store(), &[deleted(2, "f1")], &BTreeSet::new()).await;
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::sync::Mutex::new(Some(started_tx));
    let finish = Arc::new(tokio::sync::Mutex::new(Some(finish_rx)));
    let flag = gone.clone();
    let delete = move || {
        if let Some(tx) = started.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let (finish, flag) = (finish.clone(), flag.clone());
        async move {
            if let Some(rx) = finish.lock().await.take() {
                let _ = rx.await;
            }
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, BlobError>(())
        }
        .boxed()
    };
    let deleting = {
        let a = a.clone();
        tokio::spawn(async move { a.delete_unreferenced(&store(), &h, &delete).await })
    };
    started_rx.await.unwrap();
    // The push's blob check runs only once the delete finished, and sees the blob gone.
    let seen = gone.clone();
    let check = move |asked: BTreeSet<ContentHash>| {
        let absent = if seen.load(std::sync::atomic::Ordering::SeqCst) {
            asked
        } else {
            BTreeSet::new()
        };
        async move { Ok::<_, BlobError>(absent) }.boxed()
    };
    let pushing = {
        let b = b.clone();
        let events = vec![created("d", 1, "f2", b"x"), {
            let mut u = uploaded(3, "f2", b"x");
            u.id = id("d", 2);
            u
        }];
        tokio::spawn(async move { b.push(&store(), &events, &check).await })
    };
    // Let the delete finish only once the push waits for the store's row lock.
    let (watch, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut waiting = 0i64;
    for _ in 0..2_000 {
        waiting = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(waiting, 1, "the push did not wait for the delete's lock");
    finish_tx.send(()).unwrap();
    assert!(deleting.await.unwrap().unwrap());
    let pushed = pushing.await.unwrap().unwrap();
    match &pushed.events[1].event {
        FileEvent::Updated(u) => assert_eq!(u.remote_key, None, "the key of a deleted blob"),
        e => panic!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The suite, per backend

#[tokio::test]
async fn sqlite_push_is_idempotent_gapless_and_per_store() {
    let dir = tempfile::tempdir().unwrap();
    push_is_idempotent_gapless_and_per_store(sqlite(&dir)).await;
    // And it survives reopening.
    let db = sqlite(&dir);
    assert_eq!(db.head(&store()).await.unwrap(), Seq(2));
}

#[tokio::test]
async fn sqlite_references_follow_the_fold_and_absent_blobs_clear_keys() {
    let dir = tempfile::tempdir().unwrap();
    references_follow_the_fold_and_absent_blobs_clear_keys(sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_pushes_number_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_pushes_number_without_gaps(vec![sqlite(&dir)]).await;
}

#[tokio::test]
async fn postgres_push_is_idempotent_gapless_and_per_store() {
    let url = common::pg_database("events").await;
    let db: Arc<dyn EventStore> =
        Arc::new(PostgresEventStore::connect(&url, 4, None).await.unwrap());
    push_is_idempotent_gapless_and_per_store(db).await;
    // Another connection (a restart, another instance) sees the same, and migrates nothing.
    let again = PostgresEventStore::connect(&url, 4, None).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), 1);
    assert_eq!(again.head(&store()).await.unwrap(), Seq(2));
}

#[tokio::test]
async fn postgres_references_follow_the_fold_and_absent_blobs_clear_keys() {
    references_follow_the_fold_and_absent_blobs_clear_keys(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_pushes_from_three_instances_number_without_gaps() {
    let url = common::pg_database("events").await;
    let mut handles: Vec<Arc<dyn EventStore>> = Vec::new();
    for _ in 0..3 {
        handles.push(Arc::new(
            PostgresEventStore::connect(&url, 4, None).await.unwrap(),
        ));
    }
    concurrent_pushes_number_without_gaps(handles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_push_on_one_instance_waits_for_a_delete_on_another() {
    let url = common::pg_database("events").await;
    let a = Arc::new(PostgresEventStore::connect(&url, 4, None).await.unwrap());
    let b = Arc::new(PostgresEventStore::connect(&url, 4, None).await.unwrap());
    a_push_waits_for_a_delete_in_progress(&url, a, b).await;
}

#[tokio::test]
async fn postgres_instances_starting_together_migrate_once() {
    let url = common::pg_database("events").await;
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PostgresEventStore::connect(&url, 2, None).await.map(drop) })
    });
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let db = PostgresEventStore::connect(&url, 2, None).await.unwrap();
    assert_eq!(db.schema_version().await.unwrap(), 1);
}

#[tokio::test]
async fn postgres_connections_are_verified_tls_when_asked() {
    use filesync_server::events::tls_connector;
    let ca = std::env::var("FILESYNC_TEST_DATABASE_CA").unwrap_or_else(|_| {
        panic!("FILESYNC_TEST_DATABASE_CA is not set: the test cluster of scripts/pg.sh has it")
    });
    let ca = std::path::PathBuf::from(ca);
    let url = common::pg_database("tls")
        .await
        .replace("sslmode=disable", "sslmode=require");
    let db = PostgresEventStore::connect(&url, 2, Some(&ca))
        .await
        .unwrap();
    let r = push(
        &db,
        &store(),
        &[created("c", 1, "f1", b"x")],
        &BTreeSet::new(),
    )
    .await;
    assert_eq!(r.new[0].seq, Seq(1));
    // The connection is encrypted.
    let (client, conn) = tokio_postgres::connect(&url, tls_connector(Some(&ca)).unwrap())
        .await
        .unwrap();
    tokio::spawn(conn);
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    // Without the CA the server's certificate is refused: never unverified TLS.
    let refused = PostgresEventStore::connect(&url, 2, None)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("TLS handshake"), "{refused}");
    // A CA file without a certificate is a clear error at start.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let bad = PostgresEventStore::connect(&url, 2, Some(empty.path()))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("no certificate"), "{bad}");
}
