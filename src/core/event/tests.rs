use super::*;
use crate::core::ids::ClientId;

fn hash() -> ContentHash {
    ContentHash::of(b"hello")
}

fn created() -> FileEvent {
    FileEvent::Created(FileCreated {
        id: FileId::new("f1").unwrap(),
        path: "docs/a.txt".into(),
        content_hash: hash(),
        info: FileInfo {
            name: "a.txt".into(),
            mime_type: "text/plain".into(),
            size: 5,
        },
        metadata_json: Some(r#"{"custom":1}"#.into()),
        created_at: Millis(1),
        updated_at: Millis(2),
    })
}

fn updated(metadata: MetadataPatch, key: Option<RemoteKey>) -> FileEvent {
    FileEvent::Updated(FileUpdated {
        id: FileId::new("f1").unwrap(),
        path: "docs/a.txt".into(),
        remote_key: key,
        content_hash: hash(),
        info: FileInfo {
            name: "a.txt".into(),
            mime_type: "".into(),
            size: 5,
        },
        metadata,
        updated_at: Millis(3),
        expected_content_hash: Some(hash()),
        previous_content_hash: None,
    })
}

#[test]
fn every_event_round_trips_through_json() {
    let store = StoreId::new("s").unwrap();
    let key = Some(RemoteKey::for_content(&store, &hash()));
    let events = [
        created(),
        updated(MetadataPatch::Keep, None),
        updated(MetadataPatch::Clear, key.clone()),
        updated(MetadataPatch::Set("[1]".into()), key),
        FileEvent::Deleted(FileDeleted {
            id: FileId::new("f1").unwrap(),
            deleted_at: Millis(9),
        }),
    ];
    for e in events {
        let text = serde_json::to_string(&e.to_wire()).unwrap();
        assert_eq!(FileEvent::decode_json(&text).unwrap(), e, "{text}");
        e.validate_for_store(&store).unwrap();
    }
    let c = ConfirmedEvent {
        seq: Seq(7),
        id: EventId {
            client: ClientId::new("c").unwrap(),
            n: 1,
        },
        event: created(),
    };
    let text = serde_json::to_string(&c.to_wire()).unwrap();
    assert_eq!(ConfirmedEvent::decode_json(&text).unwrap(), c);
}

#[test]
fn metadata_absent_null_and_set_are_three_different_things() {
    let base = r#"{"name":"v1.FileUpdated","args":{"id":"f","path":"p","contentHash":"HASH","name":"n","size":1,"updatedAt":1 EXTRA}}"#
        .replace("HASH", &hash().to_hex());
    let get = |extra: &str| match FileEvent::decode_json(&base.replace(" EXTRA", extra)).unwrap() {
        FileEvent::Updated(u) => u.metadata,
        other => panic!("{other:?}"),
    };
    assert_eq!(get(""), MetadataPatch::Keep);
    assert_eq!(get(r#","metadataJson":null"#), MetadataPatch::Clear);
    assert_eq!(
        get(r#","metadataJson":"{}""#),
        MetadataPatch::Set("{}".into())
    );
}

/// `w` with other arguments.
fn with_args(w: &WireEvent, args: &serde_json::Value) -> WireEvent {
    WireEvent {
        name: w.name.clone(),
        args: serde_json::value::to_raw_value(args).unwrap(),
    }
}

fn decode_created_with(field: &str, value: serde_json::Value) -> Result<FileEvent, DecodeError> {
    let w = created().to_wire();
    let mut args: serde_json::Value = serde_json::from_str(w.args.get()).unwrap();
    match value {
        serde_json::Value::Null => {
            args.as_object_mut().unwrap().remove(field);
        }
        v => {
            args[field] = v;
        }
    }
    FileEvent::from_wire(&with_args(&w, &args))
}

#[test]
fn bad_input_gets_a_typed_error_never_a_panic() {
    use serde_json::json;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("contentHash", json!("ABC"), "invalid_hash"),
        (
            "contentHash",
            json!(&hash().to_hex().to_uppercase()),
            "invalid_hash",
        ),
        ("contentHash", json!(null), "malformed"),
        ("id", json!("../x"), "invalid_id"),
        ("id", json!(12), "malformed"),
        ("path", json!("/etc/passwd"), "unsafe_path"),
        ("path", json!("a/../b"), "unsafe_path"),
        ("path", json!("a//b"), "unsafe_path"),
        ("path", json!("a\\b"), "unsafe_path"),
        ("path", json!("a\u{0}b"), "unsafe_path"),
        ("name", json!(""), "invalid_field"),
        ("name", json!("a/b"), "invalid_field"),
        ("mimeType", json!("text"), "invalid_field"),
        ("size", json!(-1), "malformed"),
        ("size", json!(1u64 << 60), "invalid_field"),
        ("metadataJson", json!("{not json"), "invalid_field"),
        (
            "metadataJson",
            json!("x".repeat(MAX_METADATA_BYTES + 1)),
            "invalid_field",
        ),
        ("createdAt", json!("yesterday"), "malformed"),
    ];
    for (field, value, code) in cases {
        let err = decode_created_with(field, value.clone()).unwrap_err();
        assert_eq!(err.code(), code, "{field}={value}: {err}");
    }
    for (text, code) in [
        ("", "malformed"),
        ("[]", "malformed"),
        (r#"{"name":"v2.FileCreated","args":{}}"#, "unknown_event"),
        (
            r#"{"name":"v1.FileDeleted","args":{"id":"f"}}"#,
            "malformed",
        ),
        (r#"{"name":"v1.FileDeleted"}"#, "malformed"),
    ] {
        assert_eq!(
            FileEvent::decode_json(text).unwrap_err().code(),
            code,
            "{text}"
        );
    }
    let no_seq = serde_json::to_string(
        &ClientEvent {
            id: EventId {
                client: ClientId::new("c").unwrap(),
                n: 1,
            },
            event: created(),
        }
        .to_wire(),
    )
    .unwrap();
    assert_eq!(
        ConfirmedEvent::decode_json(&no_seq).unwrap_err().code(),
        "invalid_field"
    );
}

#[test]
fn remote_keys_must_name_this_store_and_this_content() {
    let store = StoreId::new("s").unwrap();
    let w = updated(MetadataPatch::Keep, None).to_wire();
    let mut args: serde_json::Value = serde_json::from_str(w.args.get()).unwrap();
    let other = ContentHash::of(b"other").to_hex();
    for (key, code) in [
        (format!("s/{other}"), "invalid_remote_key"),
        ("s/../x".to_string(), "invalid_remote_key"),
        (format!("/s/{}", hash()), "invalid_remote_key"),
        (hash().to_hex(), "invalid_remote_key"),
    ] {
        args["remoteKey"] = key.clone().into();
        let bad = with_args(&w, &args);
        assert_eq!(
            FileEvent::from_wire(&bad).unwrap_err().code(),
            code,
            "{key}"
        );
    }
    args["remoteKey"] = format!("elsewhere/{}", hash()).into();
    let e = FileEvent::from_wire(&with_args(&w, &args)).unwrap();
    assert_eq!(
        e.validate_for_store(&store).unwrap_err().code(),
        "invalid_remote_key"
    );
}
