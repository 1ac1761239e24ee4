use super::*;
use crate::core::{Downloads, SyncStatus};

#[test]
fn a_write_landed_if_the_new_hub_shows_it_or_a_later_write_won() {
    use crate::core::event::{FileDeleted, FileEvent, FileInfo, FileUpdated, MetadataPatch};
    use crate::core::FileId;
    let hash = |s: &str| ContentHash::of(s.as_bytes());
    let id = FileId::new("f").unwrap();
    let update = FileEvent::Updated(FileUpdated {
        id: id.clone(),
        path: "f".into(),
        remote_key: None,
        content_hash: hash("new"),
        info: FileInfo {
            name: "f".into(),
            mime_type: "text/plain".into(),
            size: 3,
        },
        metadata: MetadataPatch::Keep,
        updated_at: Millis(7),
        expected_content_hash: None,
        previous_content_hash: Some(hash("old")),
    });
    let base = Some(hash("old"));
    let (new, old, other) = (
        hash("new").to_hex(),
        hash("old").to_hex(),
        hash("x").to_hex(),
    );
    assert!(
        write_landed(&update, base, Some((7, &new))),
        "shown as sent"
    );
    assert!(
        !write_landed(&update, base, Some((1, &old))),
        "still the content it replaced"
    );
    assert!(
        write_landed(&update, base, Some((9, &other))),
        "a later write won"
    );
    assert!(write_landed(&update, base, None), "the file is gone");
    let delete = FileEvent::Deleted(FileDeleted {
        id,
        deleted_at: Millis(7),
    });
    assert!(write_landed(&delete, None, None));
    assert!(!write_landed(&delete, None, Some((1, &old))));
}

#[test]
fn the_first_tabs_settings_override_the_engine_defaults() {
    use crate::core::{ClientId, StoreId};
    let hub = HubConfig {
        store_id: "s".into(),
        remote: None,
        progress_interval_ms: Some(50),
        max_uploads: Some(0),
        max_downloads: None,
        downloads: crate::core::Downloads::Lazy,
        budget: Some(20 << 20),
        delete_grace_ms: Some(1_000),
    };
    let cfg = engine_config(
        &hub,
        StoreId::new("s").unwrap(),
        ClientId::new("c").unwrap(),
    );
    assert_eq!(cfg.mode, crate::core::Mode::LocalOnly);
    assert_eq!(cfg.progress_interval_ms, 50);
    assert_eq!(cfg.max_uploads, 1, "at least one transfer at once");
    let defaults = crate::core::Config::new(
        StoreId::new("s").unwrap(),
        ClientId::new("c").unwrap(),
        crate::core::Mode::LocalOnly,
    );
    assert_eq!(cfg.max_downloads, defaults.max_downloads);
    assert_eq!(cfg.delete_grace_ms, 1_000);
    assert_eq!(cfg.downloads, crate::core::Downloads::Lazy);
    assert_eq!((cfg.budget, defaults.budget), (Some(20 << 20), None));
}

#[test]
fn a_hung_leader_is_taken_over_by_the_tab_that_answered_last_once_per_term() {
    let seen = |t: &str| match t {
        "leader" => Some(Millis(1_000)),
        "a" => Some(Millis(8_000)),
        "b" => Some(Millis(9_000)),
        _ => None,
    };
    let tabs = ["leader", "a", "b", "gone"];
    let now = Millis(10_000);
    assert_eq!(
        takeover_heir("leader", Term(3), None, seen, tabs, now, 4_000),
        Some("b")
    );
    assert_eq!(
        takeover_heir("leader", Term(3), Some(Term(3)), seen, tabs, now, 4_000),
        None,
        "asked once per term"
    );
    assert_eq!(
        takeover_heir("leader", Term(3), None, seen, tabs, Millis(4_000), 4_000),
        None,
        "the leader is fresh"
    );
    assert_eq!(
        takeover_heir(
            "leader",
            Term(3),
            None,
            seen,
            ["leader", "gone"],
            now,
            4_000
        ),
        None,
        "no other tab is fresh"
    );
}

/// What the hub sends, and what a tab decodes of it.
type Sent = ToTab<FileState>;
type Got = ToTab<TabFile>;

#[test]
fn messages_have_the_documented_json_shape() {
    let m = ToHub::Control {
        req: 3,
        control: Control::Prioritize {
            file_id: "f".into(),
        },
    };
    let text = encode(&m);
    assert_eq!(
        text,
        r#"{"control":{"req":3,"control":{"prioritize":{"fileId":"f"}}}}"#
    );
    assert_eq!(serde_json::from_str::<ToHub>(&text).unwrap(), m);
    let r = ToHub::Transfer {
        report: TransferReport::Failed {
            task: 2,
            term: 1,
            failure: Failure::Server { status: 503 },
        },
    };
    let text = encode(&r);
    assert_eq!(
        text,
        r#"{"transfer":{"report":{"failed":{"task":2,"term":1,"failure":{"server":{"status":503}}}}}}"#
    );
    assert_eq!(serde_json::from_str::<ToHub>(&text).unwrap(), r);
    assert_eq!(encode(&Failure::Offline), r#""offline""#);
    assert!(matches!(
        TransferReport::Done {
            task: 2,
            term: 1,
            downloaded: None
        }
        .into_input(),
        Input::TransferDone {
            task: TaskId(2),
            term: Term(1),
            downloaded_hash: None
        }
    ));
    let t = Sent::Leader {
        tab: Some("t1".into()),
        term: 4,
    };
    assert!(matches!(
        serde_json::from_str::<Got>(&encode(&t)).unwrap(),
        Got::Leader { tab: Some(tab), term: 4 } if tab == "t1"
    ));
    assert_eq!(encode(&Sent::Ping), r#""ping""#);
}

#[test]
fn app_events_reach_tabs_as_the_json_apps_get() {
    let e = AppEvent::UploadProgress {
        file_id: "f".into(),
        loaded: 1,
        total: 2,
    };
    let app = r#"{"type":"upload:progress","fileId":"f","loaded":1,"total":2}"#;
    assert_eq!(encode(&e), app);
    let text = encode(&ToTab::event(&e));
    assert_eq!(text, format!(r#"{{"event":{{"event":{app}}}}}"#));
    match serde_json::from_str::<Got>(&text).unwrap() {
        Got::Event { event } => assert_eq!(event.get(), app),
        other => panic!("decoded {other:?}"),
    }
}

#[test]
fn channel_envelopes_carry_the_message_text_untouched() {
    let msg = encode(&Sent::Abort { task: 7 });
    let wrapped = Envelope::wrap(Some("tab \"1\""), &msg);
    let e: Envelope<'_> = serde_json::from_str(&wrapped).unwrap();
    assert_eq!(e.peer.as_deref(), Some("tab \"1\""));
    assert_eq!(e.msg.get(), msg);
    let wrapped = Envelope::wrap(None, &msg);
    let all: Envelope<'_> = serde_json::from_str(&wrapped).unwrap();
    assert_eq!(all.peer, None);
}

#[test]
fn a_snapshot_of_many_files_round_trips() {
    let file = FileState {
        id: FileId::new("f").unwrap(),
        path: "a.txt".into(),
        name: "a.txt".into(),
        mime_type: "text/plain".into(),
        size: 3,
        content_hash: "ab".repeat(32),
        remote_key: String::new(),
        metadata: Some(RawValue::from_string(r#"{"tags":["x"]}"#.into()).unwrap()),
        created_at: 1,
        updated_at: 2,
        local_hash: String::new(),
        upload_status: TransferStatus::Pending,
        download_status: TransferStatus::Done,
        last_sync_error: None,
        has_local_copy: true,
        is_uploaded: false,
        is_synced: false,
        can_display: true,
        uploaded_bytes: 0,
        downloaded_bytes: 0,
        is_pinned: false,
    };
    let files: Vec<FileState> = (0..100)
        .map(|i| FileState {
            id: FileId::new(format!("f{i}")).unwrap(),
            ..file.clone()
        })
        .collect();
    let snap = ToTab::Snapshot {
        files: files.clone(),
        leader: None,
        storage: "opfs".into(),
        issues: Vec::new(),
        online: true,
        unconfirmed: 0,
        provisional: false,
    };
    let text = encode(&snap);
    // The app's object carries every field, the metadata as it was stored.
    assert!(text.contains(r#""metadata":{"tags":["x"]}"#));
    let kept: Vec<TabFile> = files
        .iter()
        .map(|f| TabFile {
            id: f.id.clone(),
            path: f.path.clone(),
            name: f.name.clone(),
            mime_type: f.mime_type.clone(),
            content_hash: f.content_hash.clone(),
            updated_at: f.updated_at,
            upload_status: f.upload_status,
            download_status: f.download_status,
            last_sync_error: f.last_sync_error.clone(),
            has_local_copy: f.has_local_copy,
        })
        .collect();
    match serde_json::from_str::<Got>(&text).unwrap() {
        Got::Snapshot { files: got, .. } => assert_eq!(got, kept),
        other => panic!("decoded {other:?}"),
    }
}

#[test]
fn tabs_derive_the_engines_status_from_the_files_they_get() {
    use crate::core::local::{reconcile, SyncError};
    use crate::core::status::TransferStates;
    use crate::core::{ClientId, Config, Engine, Millis, Mode, Seq, Snapshot, StoreId};
    let rows: Vec<_> = (0..8)
        .map(|i| {
            let id = format!("f{i}");
            crate::core::table::test_row(&id, id.as_bytes(), i % 2 == 0)
        })
        .collect();
    let mut local: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| reconcile(r, None, i % 3 == 0, Downloads::Eager))
        .collect();
    local[1].upload = TransferStatus::Error;
    local[1].last_error = Some(SyncError {
        code: "auth".into(),
        message: "no".into(),
    });
    local[2].download = TransferStatus::InProgress;
    local[5].download = TransferStatus::Error;
    let cfg = Config::new(
        StoreId::new("s").unwrap(),
        ClientId::new("c").unwrap(),
        Mode::Remote,
    );
    let snap = Snapshot {
        rows,
        local,
        cursor: Seq(8),
        ..Snapshot::default()
    };
    let engine = Engine::new(cfg, snap, Millis(0));
    // What a tab keeps of the files the hub sends.
    let sent = Sent::Changed {
        files: engine.files().map(|f| FileState::from_view(&f)).collect(),
        removed: Vec::new(),
        unconfirmed: engine.unconfirmed_events(),
    };
    let Ok(Got::Changed { files, .. }) = serde_json::from_str::<Got>(&encode(&sent)) else {
        panic!("the files did not decode");
    };
    let derived = SyncStatus::from_transfers(
        files.iter().map(|f| TransferStates {
            file_id: &f.id,
            upload: f.upload_status,
            download: f.download_status,
            last_error: f.last_sync_error.as_ref(),
        }),
        engine.unconfirmed_events(),
    );
    let status = engine.status();
    assert_eq!(derived, status);
    assert!(status.error_count == 2 && status.has_pending, "{status:?}");
}

#[test]
fn only_the_same_or_a_newer_build_takes_a_store_over() {
    assert!(may_take_over(VERSION));
    assert!(may_take_over("999.0.0"));
    assert!(!may_take_over("0.0.0"));
    assert!(!may_take_over(""), "a message that is not a version");
    let newer_patch = {
        let mut p: Vec<u64> = VERSION.split('.').map(|x| x.parse().unwrap()).collect();
        p[2] += 1;
        format!("{}.{}.{}", p[0], p[1], p[2])
    };
    assert!(may_take_over(&newer_patch));
}

#[test]
fn handover_messages_round_trip_and_foreign_text_is_ignored() {
    for m in [
        Handover::Ask {
            version: VERSION.into(),
        },
        Handover::Refuse {
            asker: "0.1.0".into(),
            holder: "0.2.0".into(),
        },
    ] {
        assert_eq!(Handover::decode(&m.encode()), Some(m));
    }
    for foreign in [
        "",
        "ask",
        "ask ",
        "0.1.0",
        "refuse 0.1.0",
        "ask 1 2",
        "hello 1",
    ] {
        assert_eq!(Handover::decode(foreign), None, "{foreign:?}");
    }
}

#[test]
fn hubs_of_two_versions_use_their_own_workers_channels_and_host_locks() {
    let (to_hub, to_tabs) = channel_names("s1");
    assert!(to_hub.contains(VERSION) && to_tabs.contains(VERSION));
    assert_ne!(to_hub, to_tabs);
    assert!(host_lock_name("s1").ends_with(&format!("s1:{VERSION}")));
    assert_eq!(worker_name("s1"), format!("filesync:s1:{VERSION}"));
    assert_ne!(host_lock_name("s1"), host_lock_name("s2"));
}

#[test]
fn history_lists_the_apps_events_with_their_times_oldest_first() {
    let file = crate::core::FileId::new("f1").unwrap();
    let history = [
        (Millis(10), Event::SyncStart),
        (
            Millis(11),
            Event::Committed {
                op: crate::core::OpId(1),
            },
        ),
        (
            Millis(12),
            Event::TransferComplete {
                kind: TransferKind::Upload,
                file,
            },
        ),
    ];
    let json = history_json(history.iter());
    assert_eq!(
        json.get(),
        r#"[{"at":10,"event":{"type":"sync:start"}},{"at":12,"event":{"type":"upload:complete","fileId":"f1"}}]"#
    );
    let empty: [(Millis, Event); 0] = [];
    assert_eq!(history_json(empty.iter()).get(), "[]");
    // The tab takes the answer's entries as they are.
    let reply = encode(&ToTab::<FileState>::Answer {
        req: 7,
        value: json,
    });
    let Ok(ToTab::<TabFile>::Answer { req: 7, value }) = serde_json::from_str(&reply) else {
        panic!("{reply}");
    };
    assert!(value.get().starts_with(r#"[{"at":10"#));
}

#[test]
fn the_byte_budget_figures_reach_apps_as_numbers_or_null() {
    let usage = crate::core::StorageUse {
        budget: Some(20),
        held: 12,
        evictable: 8,
    };
    assert_eq!(
        usage_json(&usage).get(),
        r#"{"budget":20,"held":12,"evictable":8}"#
    );
    let unlimited = crate::core::StorageUse {
        budget: None,
        ..usage
    };
    assert!(usage_json(&unlimited)
        .get()
        .starts_with(r#"{"budget":null"#));
}

#[test]
fn internal_engine_events_do_not_reach_apps() {
    assert_eq!(
        AppEvent::from_engine(&Event::Committed {
            op: crate::core::OpId(1)
        }),
        None
    );
    assert_eq!(
        AppEvent::from_engine(&Event::Online),
        Some(AppEvent::Online)
    );
}
