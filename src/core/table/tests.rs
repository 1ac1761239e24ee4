use super::*;
use crate::core::event::{FileCreated, FileDeleted, FileUpdated};
use crate::core::ids::{ClientId, StoreId};

fn store() -> StoreId {
    StoreId::new("s").unwrap()
}
fn fid(s: &str) -> FileId {
    FileId::new(s).unwrap()
}
fn eid(c: &str, n: u64) -> EventId {
    EventId {
        client: ClientId::new(c).unwrap(),
        n,
    }
}
fn info() -> FileInfo {
    FileInfo {
        name: "a.bin".into(),
        mime_type: "".into(),
        size: 1,
    }
}
fn create(id: &str, content: &[u8]) -> FileEvent {
    FileEvent::Created(FileCreated {
        id: fid(id),
        path: format!("files/{id}"),
        content_hash: ContentHash::of(content),
        info: info(),
        metadata_json: None,
        created_at: Millis(1),
        updated_at: Millis(1),
    })
}
fn edit(id: &str, content: &[u8]) -> FileEvent {
    FileEvent::Updated(FileUpdated {
        id: fid(id),
        path: format!("files/{id}"),
        remote_key: None,
        content_hash: ContentHash::of(content),
        info: info(),
        metadata: MetadataPatch::Keep,
        updated_at: Millis(2),
        expected_content_hash: None,
        previous_content_hash: None,
    })
}
fn uploaded(id: &str, content: &[u8]) -> FileEvent {
    let h = ContentHash::of(content);
    FileEvent::Updated(FileUpdated {
        id: fid(id),
        path: format!("files/{id}"),
        remote_key: Some(RemoteKey::for_content(&StoreId::new("s").unwrap(), &h)),
        content_hash: h,
        info: info(),
        metadata: MetadataPatch::Keep,
        updated_at: Millis(3),
        expected_content_hash: Some(h),
        previous_content_hash: None,
    })
}
fn delete(id: &str) -> FileEvent {
    FileEvent::Deleted(FileDeleted {
        id: fid(id),
        deleted_at: Millis(4),
    })
}
fn confirmed(events: &[(&str, FileEvent)]) -> Vec<ConfirmedEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, (c, e))| ConfirmedEvent {
            seq: Seq(i as u64 + 1),
            id: eid(c, i as u64),
            event: e.clone(),
        })
        .collect()
}

fn edit_over(id: &str, content: &[u8], previous: &[u8]) -> FileEvent {
    let FileEvent::Updated(mut u) = edit(id, content) else {
        unreachable!("edit makes updates")
    };
    u.previous_content_hash = Some(ContentHash::of(previous));
    FileEvent::Updated(u)
}

#[test]
fn files_with_pending_events_are_known_until_every_one_is_confirmed() {
    let mut t = FilesTable::default();
    t.apply_confirmed(&store(), confirmed(&[("b", create("f1", b"1"))]));
    assert!(!t.has_pending(&fid("f1")));
    for (n, content) in [(0, b"x"), (1, b"y")] {
        t.commit_local(ClientEvent {
            id: eid("a", n),
            event: edit("f1", content),
        })
        .unwrap();
    }
    assert!(t.has_pending(&fid("f1")) && !t.has_pending(&fid("f2")));
    let first = ConfirmedEvent {
        seq: Seq(2),
        id: eid("a", 0),
        event: edit("f1", b"x"),
    };
    t.apply_confirmed(&store(), [first]);
    assert!(t.has_pending(&fid("f1")), "one event is still unconfirmed");
    let second = ConfirmedEvent {
        seq: Seq(3),
        id: eid("a", 1),
        event: edit("f1", b"y"),
    };
    t.apply_confirmed(&store(), [second]);
    assert!(!t.has_pending(&fid("f1")));
    // A restart rebuilds the counts from the stored pending events.
    t.commit_local(ClientEvent {
        id: eid("a", 2),
        event: delete("f1"),
    })
    .unwrap();
    let restored = FilesTable::restore(
        t.confirmed_rows().cloned(),
        t.cursor(),
        t.pending().to_vec(),
    );
    assert!(restored.has_pending(&fid("f1")));
}

#[test]
fn an_upload_completion_confirmed_without_its_key_is_reported() {
    let mut t = FilesTable::default();
    t.apply_confirmed(&store(), confirmed(&[("a", create("f1", b"1"))]));
    t.commit_local(ClientEvent {
        id: eid("a", 7),
        event: uploaded("f1", b"1"),
    })
    .unwrap();
    // The server does not hold the blob: it stores the completion with the key cleared.
    let FileEvent::Updated(mut cleared) = uploaded("f1", b"1") else {
        unreachable!()
    };
    cleared.remote_key = None;
    let applied = t.apply_confirmed(
        &store(),
        [ConfirmedEvent {
            seq: Seq(2),
            id: eid("a", 7),
            event: FileEvent::Updated(cleared),
        }],
    );
    assert_eq!(applied.key_cleared, vec![ContentHash::of(b"1")]);
    assert!(t.get(&fid("f1")).unwrap().remote_key.is_none());
    // Another client's update without a key is not ours to report.
    let applied = t.apply_confirmed(
        &store(),
        [ConfirmedEvent {
            seq: Seq(3),
            id: eid("b", 1),
            event: edit("f1", b"1"),
        }],
    );
    assert!(applied.key_cleared.is_empty());
}

#[test]
fn an_edit_made_without_knowledge_of_the_current_content_is_a_concurrent_overwrite() {
    let mut t = FilesTable::default();
    let log = confirmed(&[
        ("a", create("f1", b"base")),
        // b saw "base" and wrote "b": sequential.
        ("b", edit_over("f1", b"b", b"base")),
    ]);
    let applied = t.apply_confirmed(&store(), log);
    assert!(applied.concurrent.is_empty());
    // c also edited "base", offline: its edit lands over "b", which it never saw.
    let applied = t.apply_confirmed(
        &store(),
        [ConfirmedEvent {
            seq: Seq(3),
            id: eid("c", 0),
            event: edit_over("f1", b"c", b"base"),
        }],
    );
    assert_eq!(
        applied.concurrent,
        vec![Overwrite {
            file: fid("f1"),
            replaced: ContentHash::of(b"b"),
            winner: ContentHash::of(b"c"),
        }]
    );
    // An edit without a previous content (older clients, upload completions) or that
    // keeps the content is never one.
    let later = [
        (Seq(4), eid("x", 0), edit("f1", b"d")),
        (Seq(5), eid("y", 0), edit_over("f1", b"d", b"zzz")),
    ];
    let applied = t.apply_confirmed(
        &store(),
        later
            .into_iter()
            .map(|(seq, id, event)| ConfirmedEvent { seq, id, event }),
    );
    assert!(applied.concurrent.is_empty(), "{:?}", applied.concurrent);
    assert_eq!(t.cursor(), Seq(5));
}

#[test]
fn materializing_is_deterministic_and_idempotent() {
    let log = confirmed(&[
        ("a", create("f1", b"1")),
        ("b", create("f2", b"2")),
        ("a", edit("f1", b"1b")),
        ("b", uploaded("f2", b"2")),
        ("a", delete("f2")),
    ]);
    let mut t1 = FilesTable::default();
    t1.apply_confirmed(&store(), log.clone());
    let mut t2 = FilesTable::default();
    for e in &log {
        t2.apply_confirmed(&store(), [e.clone()]);
        // Redelivery of everything seen so far changes nothing.
        let again = t2.apply_confirmed(&store(), log.iter().filter(|x| x.seq <= e.seq).cloned());
        assert!(again.applied.is_empty() && again.changed.is_empty());
    }
    let rows1: Vec<_> = t1.rows().cloned().collect();
    let rows2: Vec<_> = t2.rows().cloned().collect();
    assert_eq!(rows1, rows2);
    assert_eq!(t1.cursor(), Seq(5));
    assert_eq!(
        t1.get(&fid("f1")).unwrap().content_hash,
        ContentHash::of(b"1b")
    );
    assert!(!t1.get(&fid("f2")).unwrap().is_live());
    assert!(!t1.is_referenced(&ContentHash::of(b"2")));
}

#[test]
fn pending_events_sit_on_top_and_rebase_when_confirmed_events_arrive() {
    let mut t = FilesTable::default();
    t.apply_confirmed(&store(), confirmed(&[("b", create("f1", b"1"))]));
    t.commit_local(ClientEvent {
        id: eid("a", 0),
        event: edit("f1", b"mine"),
    })
    .unwrap();
    assert_eq!(
        t.get(&fid("f1")).unwrap().content_hash,
        ContentHash::of(b"mine")
    );
    assert_eq!(
        t.confirmed(&fid("f1")).unwrap().content_hash,
        ContentHash::of(b"1")
    );
    // Another client's edit is confirmed first: our pending edit still shows on top.
    let theirs = ConfirmedEvent {
        seq: Seq(2),
        id: eid("b", 1),
        event: edit("f1", b"theirs"),
    };
    let applied = t.apply_confirmed(&store(), [theirs]);
    assert!(
        applied.changed.is_empty(),
        "view unchanged: ours is still on top"
    );
    assert_eq!(
        t.get(&fid("f1")).unwrap().content_hash,
        ContentHash::of(b"mine")
    );
    // Ours is confirmed after theirs: last writer in server order wins, pending is gone.
    t.apply_confirmed(
        &store(),
        [ConfirmedEvent {
            seq: Seq(3),
            id: eid("a", 0),
            event: edit("f1", b"mine"),
        }],
    );
    assert!(t.pending().is_empty());
    assert_eq!(
        t.confirmed(&fid("f1")).unwrap().content_hash,
        ContentHash::of(b"mine")
    );
    assert!(t
        .view_refs(&ContentHash::of(b"mine"))
        .any(|id| *id == fid("f1")));
    assert!(!t.is_referenced(&ContentHash::of(b"theirs")));
}

#[test]
fn stale_upload_completion_never_puts_an_old_key_on_new_content() {
    // Client b uploads the first version while client a edits; the server orders the edit
    // first. On every client the completion must be a no-op.
    let log = confirmed(&[
        ("b", create("f1", b"v1")),
        ("a", edit("f1", b"v2")),
        ("b", uploaded("f1", b"v1")),
    ]);
    let mut t = FilesTable::default();
    t.apply_confirmed(&store(), log);
    let row = t.get(&fid("f1")).unwrap();
    assert_eq!(row.content_hash, ContentHash::of(b"v2"));
    assert_eq!(row.remote_key, None);
}

#[test]
fn first_create_wins_and_deletes_are_final() {
    let log = confirmed(&[
        ("a", create("f1", b"a")),
        ("b", create("f1", b"b")),
        ("a", delete("f1")),
        ("b", edit("f1", b"late")),
        ("b", create("f1", b"again")),
    ]);
    let mut t = FilesTable::default();
    t.apply_confirmed(&store(), log);
    let row = t.get(&fid("f1")).unwrap();
    assert_eq!(row.content_hash, ContentHash::of(b"a"));
    assert!(!row.is_live());
}

#[test]
fn local_commits_are_checked_against_the_view() {
    let mut t = FilesTable::default();
    let ev = |n, e| ClientEvent {
        id: eid("a", n),
        event: e,
    };
    t.commit_local(ev(0, create("f1", b"1"))).unwrap();
    assert_eq!(
        t.commit_local(ev(1, create("f1", b"1")))
            .unwrap_err()
            .code(),
        "already_exists"
    );
    assert_eq!(
        t.commit_local(ev(2, edit("nope", b"1")))
            .unwrap_err()
            .code(),
        "not_found"
    );
    t.commit_local(ev(3, delete("f1"))).unwrap();
    assert_eq!(
        t.commit_local(ev(4, delete("f1"))).unwrap_err().code(),
        "not_found"
    );
    assert_eq!(t.pending().len(), 2);
}

#[test]
fn restore_rebuilds_view_and_indexes() {
    let mut t = FilesTable::default();
    t.apply_confirmed(
        &store(),
        confirmed(&[("b", create("f1", b"1")), ("b", create("f2", b"1"))]),
    );
    t.commit_local(ClientEvent {
        id: eid("a", 0),
        event: delete("f1"),
    })
    .unwrap();
    let r = FilesTable::restore(
        t.confirmed_rows().cloned(),
        t.cursor(),
        t.pending().to_vec(),
    );
    assert_eq!(
        r.rows().cloned().collect::<Vec<_>>(),
        t.rows().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        r.view_refs(&ContentHash::of(b"1"))
            .cloned()
            .collect::<Vec<_>>(),
        vec![fid("f2")]
    );
    assert!(r.is_confirmed_referenced(&ContentHash::of(b"1")));
}
