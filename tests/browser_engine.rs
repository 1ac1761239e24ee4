//! The sans-IO engine compiled to wasm and driven in a page: the same core the native tests
//! and the simulation exercise, now under V8, with its outputs crossing into JS values.
#![cfg(target_arch = "wasm32")]

use filesync::core::{
    ClientId, Command, Config, ContentHash, Engine, Event, FileCreated, FileEvent, FileId,
    FileInfo, Input, Millis, Mode, OpId, Output, Snapshot, StoreId, Term,
};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn now() -> Millis {
    Millis(js_sys::Date::now() as u64)
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn save(e: &mut Engine, id: &str, bytes: &[u8]) {
    let event = FileEvent::Created(FileCreated {
        id: FileId::new(id).unwrap(),
        path: format!("docs/{id}.txt"),
        content_hash: ContentHash::of(bytes),
        info: FileInfo {
            name: format!("{id}.txt"),
            mime_type: "text/plain".into(),
            size: bytes.len() as u64,
        },
        metadata_json: None,
        created_at: now(),
        updated_at: now(),
    });
    e.handle(
        now(),
        Input::Commit {
            op: OpId(1),
            event: Box::new(event),
        },
    )
    .unwrap();
}

#[wasm_bindgen_test]
fn local_only_engine_runs_in_a_page() {
    let cfg = Config::new(
        StoreId::new("page").unwrap(),
        ClientId::new("tab").unwrap(),
        Mode::LocalOnly,
    );
    let mut e = Engine::new(cfg, Snapshot::default(), now());
    drain(&mut e);
    save(&mut e, "a", b"hello from wasm");
    let out = drain(&mut e);
    let batch = out
        .iter()
        .find_map(|o| match o {
            Output::Command(Command::Persist(b)) => Some(b.clone()),
            _ => None,
        })
        .expect("a persist batch");
    assert!(out.iter().all(|o| !matches!(
        o,
        Output::Command(Command::Push { .. } | Command::StartTransfer(_))
    )));
    e.handle(now(), Input::Persisted { batch: batch.id })
        .unwrap();
    assert!(drain(&mut e).contains(&Output::Event(Event::Committed { op: OpId(1) })));

    let file = e.file(&FileId::new("a").unwrap()).unwrap();
    assert!(file.display.can_display && file.display.has_local_copy);
    // Derived state crosses into JS (as the tab hands it out) as a plain object with the
    // documented field names.
    let status = filesync::api::js::to_js(&e.status());
    let has_pending = js_sys::Reflect::get(&status, &JsValue::from_str("hasPending")).unwrap();
    assert_eq!(has_pending, JsValue::FALSE);
}

#[wasm_bindgen_test]
fn remote_engine_schedules_uploads_only_for_a_leader() {
    let cfg = Config::new(
        StoreId::new("page").unwrap(),
        ClientId::new("tab").unwrap(),
        Mode::Remote,
    );
    let mut e = Engine::new(cfg, Snapshot::default(), now());
    drain(&mut e);
    save(&mut e, "a", b"bytes");
    let starts = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Command(Command::StartTransfer(_))))
            .count()
    };
    assert_eq!(starts(&drain(&mut e)), 0);
    e.handle(now(), Input::LeaderElected { term: Term(1) })
        .unwrap();
    // Still nothing: the server has not confirmed the file yet.
    assert_eq!(starts(&drain(&mut e)), 0);
    assert_eq!(e.status().queued_upload_count, 1);
    assert_eq!(e.leader_term(), Some(Term(1)));
}

#[wasm_bindgen_test]
fn sha256_in_wasm_matches_the_known_answer() {
    assert_eq!(
        ContentHash::of(b"abc").to_hex(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
