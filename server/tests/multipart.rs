//! The multipart extension in proxy mode on local disk, over real HTTP on loopback: parts in any
//! order, every refusal a part URL or a completion can meet, abort, a server restart between
//! parts, and the sweep of stale uploads. (S3 proxy and presign modes: tests/s3.rs.)

use std::time::Duration;

use filesync_server::signing::Signer;
use filesync_server::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;
use common::{big_content, hash, start_with, Server, MIB, PART, SECRET, TOKENS};

fn config(dir: &std::path::Path) -> Config {
    Config {
        max_blob_bytes: 64 * MIB as u64,
        ..common::config(dir, TOKENS)
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    start_with(config(dir.path()), Some(dir)).await
}

/// What is left in the staging folder of multipart uploads.
fn staged(s: &Server) -> Vec<String> {
    let dir = s.dir.as_ref().unwrap().path().join("blobs/_uploads");
    let mut out = Vec::new();
    for upload in std::fs::read_dir(dir).into_iter().flatten() {
        let upload = upload.unwrap();
        for f in std::fs::read_dir(upload.path()).unwrap() {
            out.push(f.unwrap().file_name().into_string().unwrap());
        }
    }
    out
}

/// Replaces the value of query parameter `name` in `url`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[tokio::test]
async fn parts_sent_in_any_order_make_the_whole_blob() {
    let s = start().await;
    let (_, health) = s.get_json(None, "/api/health").await;
    assert_eq!(health["features"], json!(["events", "proxy", "multipart"]));

    let up = s
        .create_upload("ta", "storeA", big_content(2 * PART + 12_345, 1))
        .await;
    assert_eq!(up.part_count(), 3);
    // Signed in one request; sent last part first.
    s.upload_in_parts("ta", &up).await;
    let (status, body) = s.download("ta", &up.key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == up.content, "the assembled blob differs");
    assert!(staged(&s).is_empty(), "parts left: {:?}", staged(&s));

    // A retried completion (its first answer lost) succeeds again.
    let etags: Vec<String> = (1..=3)
        .map(|n| format!("\"{}\"", hash(up.part(n))))
        .collect();
    let (status, again) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::OK, "{again}");
}

#[tokio::test]
async fn a_part_url_stores_only_the_part_it_was_signed_for() {
    let s = start().await;
    let up = s
        .create_upload("ta", "storeA", big_content(PART + 10, 2))
        .await;
    let signed = s.sign_parts("ta", &up, &[1]).await.remove(0);
    let url = signed["url"].as_str().unwrap().to_string();

    // Same length, other bytes: refused, nothing kept.
    let mut corrupt = up.part(1).to_vec();
    corrupt[1000] ^= 1;
    let resp = s.http.put(&url).body(corrupt).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "hash_mismatch"
    );
    // Too short, too long.
    for body in [up.part(1)[1..].to_vec(), [up.part(1), b"x"].concat()] {
        let resp = s.http.put(&url).body(body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    // No part recorded (the refused bytes may sit in the upload's data file, which is only
    // ever made a blob from recorded parts).
    assert!(
        staged(&s).iter().all(|f| f == "manifest" || f == "data"),
        "{:?}",
        staged(&s)
    );
    let etag = format!("\"{}\"", hash(up.part(1)));
    let (status, body) = s.complete_upload("ta", &up, &[etag]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Another part number, length or upload under the same signature: forged.
    for (name, value) in [
        ("partNumber", "2"),
        ("length", "10"),
        ("uploadId", &"0".repeat(32)),
    ] {
        let forged = with_param(&url, name, value);
        let resp = s
            .http
            .put(forged)
            .body(up.part(1).to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{name}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"]["code"],
            "bad_signature"
        );
    }

    // A correctly signed URL that has expired.
    let signer = Signer::new(SECRET.as_bytes());
    let sum = hash(up.part(1));
    let len = up.part(1).len();
    let resource = format!("{}\n{}\n1\n{len}\n{sum}", up.key, up.id);
    let past = 1_000;
    let expired = with_param(
        &with_param(&url, "exp", &past.to_string()),
        "sig",
        &signer.sign("PUT", &resource, past),
    );
    let resp = s
        .http
        .put(expired)
        .body(up.part(1).to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "expired"
    );

    // The right bytes: stored, with the part's hash as its ETag; sending it again is harmless.
    for _ in 0..2 {
        let (status, etag) = s.put_part(&signed, up.part(1).to_vec()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(etag.unwrap(), format!("\"{sum}\""));
    }
}

#[tokio::test]
async fn requests_are_checked_before_anything_is_stored() {
    let s = start().await;
    let content = big_content(PART + 1, 3);
    let key = format!("storeA/{}", hash(&content));
    let create =
        |key: &str, size: usize, part: usize| json!({"key": key, "size": size, "partSize": part});
    let code = |(status, body): (StatusCode, Value)| {
        (
            status.as_u16(),
            body["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };

    let no_token = s
        .post(
            None,
            "/api/v1/multipart/create",
            create(&key, content.len(), PART),
        )
        .await;
    assert_eq!(code(no_token), (401, "unauthorized".into()));
    let other_store = s
        .multipart("tb", "create", create(&key, content.len(), PART))
        .await;
    assert_eq!(code(other_store), (403, "forbidden".into()));
    let unsafe_key = format!("storeA/../{}", hash(&content));
    let r = s
        .multipart("ta", "create", create(&unsafe_key, content.len(), PART))
        .await;
    assert_eq!(code(r), (400, "invalid_key".into()));
    let r = s
        .multipart("ta", "create", create(&key, 65 * MIB, PART))
        .await;
    assert_eq!(code(r), (413, "too_large".into()));
    let r = s
        .multipart("ta", "create", create(&key, content.len(), MIB))
        .await;
    assert_eq!(code(r), (400, "invalid_request".into()));
    assert!(staged(&s).is_empty());

    // Unknown and malformed upload ids.
    for id in ["0".repeat(32), "../../etc".into()] {
        let body = json!({"key": key, "uploadId": id,
                          "parts": [{"partNumber": 1, "checksumSha256": common::sha256_b64(b"x")}]});
        assert_eq!(
            code(s.multipart("ta", "sign", body).await),
            (404, "upload_not_found".into())
        );
    }

    // An upload is bound to its key: another key of the same token cannot use it.
    let up = s.create_upload("ta", "storeA", content).await;
    let other_key = format!("storeA/{}", hash(b"other"));
    let body = json!({"key": other_key, "uploadId": up.id,
                      "parts": [{"partNumber": 1, "checksumSha256": common::sha256_b64(b"x")}]});
    assert_eq!(
        code(s.multipart("ta", "sign", body).await),
        (404, "upload_not_found".into())
    );
    // Part numbers outside the plan, too many parts per request.
    let sign = |parts: Value| json!({"key": up.key, "uploadId": up.id, "parts": parts});
    let bad_part = sign(json!([{"partNumber": 3, "checksumSha256": common::sha256_b64(b"x")}]));
    assert_eq!(code(s.multipart("ta", "sign", bad_part).await).0, 400);
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"partNumber": 1, "checksumSha256": common::sha256_b64(b"x")}))
        .collect();
    assert_eq!(
        code(s.multipart("ta", "sign", sign(json!(many))).await).0,
        400
    );
    let bad_sum = sign(json!([{"partNumber": 1, "checksumSha256": "AAAA"}]));
    assert_eq!(code(s.multipart("ta", "sign", bad_sum).await).0, 400);

    // Completing with a part missing, or one never sent.
    let etags = s.send_parts("ta", &up, &[1]).await;
    let (status, _) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = s
        .complete_upload(
            "ta",
            &up,
            &[etags[0].clone(), format!("\"{}\"", hash(b"never"))],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn parts_that_do_not_make_the_key_s_content_are_refused_and_dropped() {
    let s = start().await;
    let mut up = s
        .create_upload("ta", "storeA", big_content(PART + 100, 4))
        .await;
    // The client sends other bytes than the key names (each part consistent with its URL).
    up.content = big_content(PART + 100, 5);
    let etags = s.send_parts("ta", &up, &[1, 2]).await;
    let (status, body) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "hash_mismatch");
    assert_eq!(s.download("ta", &up.key).await.0, StatusCode::NOT_FOUND);
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));
    let (status, body) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("upload_not_found"))
    );
}

#[tokio::test]
async fn a_part_sent_again_with_other_bytes_must_be_sent_once_more() {
    let s = start().await;
    let up = s
        .create_upload("ta", "storeA", big_content(2 * PART + 5, 8))
        .await;
    let etags = s.send_parts("ta", &up, &[1, 2, 3]).await;
    // Part 2 again, with bytes that fail its checksum: refused, and part 2 no longer counts
    // (its range may hold some of the refused bytes now).
    let signed = s.sign_parts("ta", &up, &[2]).await.remove(0);
    let mut corrupt = up.part(2).to_vec();
    corrupt[PART - 1] ^= 1;
    let (status, _) = s.put_part(&signed, corrupt).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("part 2"),
        "{body}"
    );

    // Sent once more, the upload completes with the right bytes.
    assert_eq!(s.send_parts("ta", &up, &[2]).await, etags[1..2]);
    let (status, body) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(s.download("ta", &up.key).await.1 == up.content);
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));
}

#[tokio::test]
async fn abort_removes_the_upload_and_its_parts() {
    let s = start().await;
    let up = s
        .create_upload("ta", "storeA", big_content(PART + 7, 6))
        .await;
    let signed = s.sign_parts("ta", &up, &[2]).await.remove(0);
    s.send_parts("ta", &up, &[1]).await;
    let marker = format!("1-{}", hash(up.part(1)));
    assert!(staged(&s).contains(&marker), "{:?}", staged(&s));

    let abort = json!({"key": up.key, "uploadId": up.id});
    for _ in 0..2 {
        let (status, _) = s.multipart("ta", "abort", abort.clone()).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));
    // A URL signed before the abort stores nothing.
    let (status, _) = s.put_part(&signed, up.part(2).to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(staged(&s).is_empty());
    let (status, _) = s.complete_upload("ta", &up, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_upload_survives_a_restart_and_a_stale_one_is_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(config(dir.path()), None).await;
    let up = s
        .create_upload("ta", "storeA", big_content(2 * PART + 3, 7))
        .await;
    let first = s.send_parts("ta", &up, &[1]).await;
    s.running.shutdown().await.unwrap();

    // The next process (same data dir) takes the upload where it was.
    let s = start_with(config(dir.path()), None).await;
    let rest = s.send_parts("ta", &up, &[2, 3]).await;
    let etags = [first, rest].concat();
    let (status, body) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(s.download("ta", &up.key).await.1 == up.content);

    let stale = s
        .create_upload("ta", "storeA", big_content(PART + 3, 8))
        .await;
    s.send_parts("ta", &stale, &[1]).await;
    s.running.shutdown().await.unwrap();
    let swept = Config {
        multipart_max_age: Duration::ZERO,
        ..config(dir.path())
    };
    let s = start_with(swept, None).await;
    let uploads = dir.path().join("blobs/_uploads");
    let left = std::fs::read_dir(&uploads).map_or(0, |d| d.count());
    assert_eq!(left, 0, "stale upload not swept");
    let body = json!({"key": stale.key, "uploadId": stale.id,
                      "parts": [{"partNumber": 1, "checksumSha256": common::sha256_b64(stale.part(1))}]});
    let (status, _) = s.multipart("ta", "sign", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sweeping_at_once_remove_every_stale_upload() {
    use filesync_server::blobs::{BlobStore, ObjectStoreBlobs};
    let s = start().await;
    let mut uploads = Vec::new();
    for seed in 0..6 {
        let up = s
            .create_upload("ta", "storeA", big_content(PART + 1, 20 + seed))
            .await;
        s.send_parts("ta", &up, &[1]).await;
        uploads.push(up);
    }
    // Two instances sharing the blob directory sweep at the same moment.
    let dir = s.dir.as_ref().unwrap().path().join("blobs");
    let (a, b) = (
        ObjectStoreBlobs::local(&dir).unwrap(),
        ObjectStoreBlobs::local(&dir).unwrap(),
    );
    let (ra, rb) = tokio::join!(a.multipart().sweep(u64::MAX), b.multipart().sweep(u64::MAX));
    let swept = ra.unwrap() + rb.unwrap();
    assert!(swept >= uploads.len(), "swept {swept}");
    assert!(staged(&s).is_empty(), "{:?}", staged(&s));
    for up in &uploads {
        let body = json!({"key": up.key, "uploadId": up.id,
                          "parts": [{"partNumber": 1, "checksumSha256": common::sha256_b64(up.part(1))}]});
        let (status, _) = s.multipart("ta", "sign", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
