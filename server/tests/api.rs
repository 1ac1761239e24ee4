//! The server over real HTTP on loopback: each test starts it on port 0 in a temp data dir.

use std::time::Duration;

use filesync_server::signing::Signer;
use filesync_server::Config;
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{
    attached, config, created, deleted, hash, read_sse, seqs, start, start_with, Server, SECRET,
    TOKENS,
};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn health_answers_on_both_paths() {
    let s = start(TOKENS).await;
    for path in ["/health", "/api/health"] {
        let (status, body) = s.get_json(None, path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ok"], true);
        assert_eq!(body["service"], "filesync-server");
        assert_eq!(body["features"], json!(["events", "proxy", "multipart"]));
        assert!(body["version"].is_string());
    }
    let (status, body) = s.get_json(None, "/nope").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn signer_contract_upload_download_and_range() {
    let s = start(TOKENS).await;
    let content = b"hello, filesync".to_vec();
    let key = format!("storeA/{}", hash(&content));
    let (status, body) = s
        .post(
            Some("ta"),
            "/api/v1/sign/upload",
            json!({"key": key, "contentType": "text/plain", "contentLength": content.len()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["headers"], json!({"Content-Type": "text/plain"}));
    let url = body["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/livestore-filesync-files/{key}?exp=", s.base)),
        "{url}"
    );
    assert!(url.contains("&sig="));
    let expires = body["expiresAt"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");

    // Not there yet.
    assert_eq!(s.download("ta", &key).await.0, StatusCode::NOT_FOUND);

    let put = s.http.put(url).body(content.clone()).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(
        put.headers()["etag"],
        format!("\"{}\"", hash(&content)).as_str()
    );
    // Uploading the same content again is a success.
    s.upload("ta", "storeA", &content).await;

    let (status, body) = s
        .post(Some("ta"), "/api/v1/sign/download", json!({"key": key}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["expiresAt"].is_string());
    let url = body["url"].as_str().unwrap();
    let resp = s.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        content.len().to_string().as_str()
    );
    assert_eq!(
        resp.headers()["etag"],
        format!("\"{}\"", hash(&content)).as_str()
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &content[..]);

    let resp = s.get_with(url, "Range", "bytes=7-14").await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 7-14/{}", content.len()).as_str()
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"filesync");
    let resp = s.get_with(url, "Range", "bytes=-4").await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"sync");
    let resp = s.get_with(url, "Range", "bytes=999-").await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{}", content.len()).as_str()
    );
    let resp = s.http.head(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-length"],
        content.len().to_string().as_str()
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn hash_mismatch_and_oversized_uploads_store_nothing() {
    let s = start(TOKENS).await;
    let claimed = b"the real content";
    let key = format!("storeA/{}", hash(claimed));
    let url = s.sign_upload("ta", &key, 5).await;
    let resp = s.http.put(&url).body("other").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "hash_mismatch");
    assert_eq!(s.download("ta", &key).await.0, StatusCode::NOT_FOUND);

    // The limit is 64 KiB in these tests: refused when signing, by Content-Length, and while
    // streaming a chunked body that has no length.
    let big = vec![7u8; 64 * 1024 + 1];
    let big_key = format!("storeA/{}", hash(&big));
    let (status, body) = s
        .post(
            Some("ta"),
            "/api/v1/sign/upload",
            json!({"key": big_key, "contentLength": big.len()}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let url = s.sign_upload("ta", &big_key, 1).await;
    let resp = s.http.put(&url).body(big.clone()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    let resp = s
        .http
        .put(&url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.download("ta", &big_key).await.0, StatusCode::NOT_FOUND);
    // No staging files left behind.
    let dir = s.running_dir();
    let leftovers: Vec<_> = walk(&dir.join("blobs"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.running.shutdown().await.unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

impl Server {
    fn running_dir(&self) -> std::path::PathBuf {
        self.dir.as_ref().unwrap().path().to_path_buf()
    }
}

#[tokio::test]
async fn tokens_are_checked_and_scoped_to_their_prefixes() {
    let s = start(TOKENS).await;
    let key_b = format!("storeB/{}", hash(b"x"));
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong"), StatusCode::UNAUTHORIZED),
        (Some("ta"), StatusCode::FORBIDDEN),
    ] {
        for path in [
            "/api/v1/sign/upload",
            "/api/v1/sign/download",
            "/api/v1/delete",
        ] {
            let (status, body) = s
                .post(token, path, json!({"key": key_b, "contentLength": 1}))
                .await;
            assert_eq!(status, want, "{token:?} {path} {body}");
            let code = if want == StatusCode::UNAUTHORIZED {
                "unauthorized"
            } else {
                "forbidden"
            };
            assert_eq!(error_code(&body), code);
        }
        let (status, _) = s
            .post(
                token,
                "/api/v1/stores/storeB/events",
                json!({"events": [created("c", 1, "f", b"x")]}),
            )
            .await;
        assert_eq!(status, want, "{token:?} push");
        let (status, _) = s.get_json(token, "/api/v1/stores/storeB/events").await;
        assert_eq!(status, want, "{token:?} pull");
        let mut req = s.http.get(s.url("/api/v1/stores/storeB/events/live"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.unwrap().status(), want, "{token:?} live");
    }
    // Nothing reached store B.
    let (_, body) = s.pull("tb", "storeB", "after=0").await;
    assert_eq!(body["events"], json!([]));
    // The right token and the all-prefixes token work.
    assert_eq!(
        s.push("tb", "storeB", vec![created("c", 1, "f", b"x")])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(s.pull("admin", "storeB", "").await.0, StatusCode::OK);
    s.sign_upload("admin", &key_b, 1).await;
    s.sign_upload("tb", &key_b, 1).await;
    // A prefix is a prefix of the key, not of the store name: storeA/ does not allow storeAB.
    let (status, _) = s
        .push("ta", "storeAB", vec![created("c", 1, "f", b"x")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn open_mode_allows_anonymous_requests() {
    let s = start("").await;
    let key = s.upload("anything", "s1", b"open").await;
    assert_eq!(s.download("", &key).await.1, b"open");
    let (status, _) = s
        .post(
            None,
            "/api/v1/stores/s1/events",
            json!({"events": [created("c", 1, "f", b"open")]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_tampered_and_unsigned_urls_are_refused() {
    let s = start(TOKENS).await;
    let content = b"signed";
    let key = s.upload("ta", "storeA", content).await;
    let url = s.sign_download("ta", &key).await;
    let signer = Signer::new(SECRET.as_bytes().to_vec());
    let path = format!("{}/livestore-filesync-files/{key}", s.base);
    let past = 1_000;
    let cases = [
        (
            format!("{path}?exp={past}&sig={}", signer.sign("GET", &key, past)),
            "expired",
        ),
        (url.replace("sig=", "sig=A"), "bad_signature"),
        (url.replace("exp=", "exp=9"), "bad_signature"),
        (
            format!(
                "{path}?exp=99999999999&sig={}",
                signer.sign("PUT", &key, 99_999_999_999)
            ),
            "bad_signature",
        ),
        (path.clone(), "bad_signature"),
        (format!("{path}?exp=abc&sig=x"), "bad_signature"),
    ];
    for (u, code) in cases {
        let resp = s.http.get(&u).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{u}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), code, "{u}");
    }
    // A download URL cannot be used to upload.
    let resp = s
        .http
        .put(&url)
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A URL signed for one key does not open another.
    let other = format!("storeA/{}", hash(b"other"));
    let resp = s.http.get(url.replace(&key, &other)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    s.running.shutdown().await.unwrap();
}

/// Sends one raw request, so no client library normalizes the path first.
async fn raw_status(addr: std::net::SocketAddr, method: &str, path: &str) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap()
}

#[tokio::test]
async fn unsafe_keys_never_reach_storage() {
    let s = start(TOKENS).await;
    let h = hash(b"x");
    for key in [
        String::new(),
        format!("/storeA/{h}"),
        format!("storeA//{h}"),
        format!("storeA/../{h}"),
        format!("storeA/./{h}"),
        format!("storeA\\{h}"),
        format!("storeA/{h}\u{1}"),
        "storeA/not-a-hash".to_string(),
        format!("storeA/sub/{h}"),
        format!("storeA/{}", h.to_uppercase()),
    ] {
        for path in [
            "/api/v1/sign/upload",
            "/api/v1/sign/download",
            "/api/v1/delete",
        ] {
            let (status, body) = s
                .post(Some("admin"), path, json!({"key": key, "contentLength": 1}))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?} {path}");
            assert_eq!(error_code(&body), "invalid_key");
        }
    }
    let signer = Signer::new(SECRET.as_bytes().to_vec());
    for key in [
        "../../etc/passwd",
        "storeA/../../secret",
        "storeA/%2e%2e/x",
        "..%2f..%2fsigning-secret",
        "storeA/./x",
    ] {
        let sig = signer.sign("GET", key, 99_999_999_999);
        let path = format!("/livestore-filesync-files/{key}?exp=99999999999&sig={sig}");
        let status = raw_status(s.running.addr(), "GET", &path).await;
        assert_eq!(status, 400, "{key}");
        let status = raw_status(
            s.running.addr(),
            "PUT",
            &path.replace(&sig, &signer.sign("PUT", key, 99_999_999_999)),
        )
        .await;
        assert_eq!(status, 400, "{key}");
    }
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn push_validates_is_idempotent_and_pull_pages() {
    let s = start(TOKENS).await;
    let e1 = created("c1", 1, "f1", b"one");
    let e2 = created("c1", 2, "f2", b"two");
    let (status, body) = s.push("ta", "storeA", vec![e1.clone(), e1.clone()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seqs(&body), [1, 1]);
    assert_eq!(body["events"][0]["id"], e1["id"]);
    assert_eq!(body["events"][0]["args"], e1["args"]);
    let (_, body) = s.push("ta", "storeA", vec![e2, e1.clone()]).await;
    assert_eq!(seqs(&body), [2, 1]);

    // One invalid event refuses the whole request and stores nothing.
    let mut bad = created("c1", 4, "f4", b"four");
    bad["args"]["contentHash"] = json!("ABC");
    let (status, body) = s
        .push("ta", "storeA", vec![created("c1", 3, "f3", b"three"), bad])
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_event")
    );
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("events[1]: invalid_hash"), "{msg}");
    // A remote key of another store is invalid too.
    let (status, _) = s
        .push(
            "ta",
            "storeA",
            vec![attached("storeB", "c1", 3, "f1", b"one")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut huge_n = created("c1", u64::MAX, "f9", b"nine");
    huge_n["args"]["createdAt"] = json!(u64::MAX);
    for ev in [huge_n.clone(), {
        huge_n["id"]["n"] = json!(9);
        huge_n
    }] {
        let (status, body) = s.push("ta", "storeA", vec![ev]).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_event")
        );
    }
    let (_, page) = s.pull("ta", "storeA", &format!("after={}", u64::MAX)).await;
    assert_eq!(page["events"], json!([]));
    let (status, body) = s
        .post(
            Some("ta"),
            "/api/v1/stores/storeA/events",
            json!({"nope": 1}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, body) = s.push("ta", "bad store", vec![]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_store")
    );

    let more: Vec<Value> = (3..=7)
        .map(|n| created("c2", n, &format!("g{n}"), b"x"))
        .collect();
    let (_, body) = s.push("ta", "storeA", more).await;
    assert_eq!(seqs(&body), [3, 4, 5, 6, 7]);

    let (_, page) = s.pull("ta", "storeA", "after=0&limit=3").await;
    assert_eq!(
        (seqs(&page), page["hasMore"].clone()),
        (vec![1, 2, 3], json!(true))
    );
    let (_, page) = s.pull("ta", "storeA", "after=3&limit=3").await;
    assert_eq!(
        (seqs(&page), page["hasMore"].clone()),
        (vec![4, 5, 6], json!(true))
    );
    let (_, page) = s.pull("ta", "storeA", "after=6&limit=3").await;
    assert_eq!(
        (seqs(&page), page["hasMore"].clone()),
        (vec![7], json!(false))
    );
    let (_, page) = s.pull("ta", "storeA", "").await;
    assert_eq!(seqs(&page).len(), 7);
    assert_eq!(page["events"][0]["name"], "v1.FileCreated");
    let (status, body) = s.pull("ta", "storeA", "after=x").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn event_requests_have_size_and_count_limits() {
    let s = start(TOKENS).await;
    let many: Vec<Value> = (1..=1001).map(|n| deleted("c", n, "f")).collect();
    let (status, body) = s.push("ta", "storeA", many).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events")
    );
    let huge = json!({"events": [], "pad": "x".repeat(1024 * 1024)});
    let (status, body) = s
        .post(Some("ta"), "/api/v1/stores/storeA/events", huge)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let (_, page) = s.pull("ta", "storeA", "").await;
    assert_eq!(page["events"], json!([]));
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn remote_key_is_cleared_when_the_blob_is_absent_and_deletes_respect_references() {
    let s = start(TOKENS).await;
    let content = b"shared bytes";
    let key = format!("storeA/{}", hash(content));
    s.push("ta", "storeA", vec![created("c", 1, "f1", content)])
        .await;
    // Attach before the upload: stored without its remote key.
    let (_, body) = s
        .push(
            "ta",
            "storeA",
            vec![attached("storeA", "c", 2, "f1", content)],
        )
        .await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], "");
    s.upload("ta", "storeA", content).await;
    let (_, body) = s
        .push(
            "ta",
            "storeA",
            vec![attached("storeA", "c", 3, "f1", content)],
        )
        .await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], key.as_str());

    // Referenced by f1: refused.
    let (status, body) = s.delete("ta", &key).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "referenced")
    );
    assert_eq!(s.download("ta", &key).await.1, content);
    // The same content in another store does not count.
    let (status, _) = s
        .push("admin", "storeB", vec![created("c", 1, "g", content)])
        .await;
    assert_eq!(status, StatusCode::OK);
    // Deleting f1 releases it.
    s.push("ta", "storeA", vec![deleted("c", 4, "f1")]).await;
    let (status, _) = s.delete("ta", &key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.download("ta", &key).await.0, StatusCode::NOT_FOUND);
    // Already absent: still 204.
    let (status, _) = s.delete("ta", &key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn live_stream_sends_ready_then_new_batches() {
    let s = start(TOKENS).await;
    s.push("ta", "storeA", vec![created("c", 1, "f1", b"1")])
        .await;
    let resp = s
        .http
        .get(s.url("/api/v1/stores/storeA/events/live?after=1"))
        .bearer_auth("ta")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let ready = read_sse(&mut stream, &mut buf, 1).await;
    assert_eq!(ready, vec![("ready".to_string(), json!({"head": 1}))]);
    // Repeats store nothing and send nothing; new events arrive as one batch.
    s.push(
        "ta",
        "storeA",
        vec![
            created("c", 1, "f1", b"1"),
            created("c", 2, "f2", b"2"),
            created("c", 3, "f3", b"3"),
        ],
    )
    .await;
    s.push("ta", "storeB", vec![created("c", 1, "f1", b"1")])
        .await;
    s.push("ta", "storeA", vec![deleted("c", 4, "f2")]).await;
    let msgs = read_sse(&mut stream, &mut buf, 2).await;
    assert_eq!(msgs[0].0, "events");
    assert_eq!(seqs(&msgs[0].1), [2, 3]);
    assert_eq!(msgs[0].1["events"][0]["args"]["id"], "f2");
    assert_eq!(seqs(&msgs[1].1), [4]);
    // Shutdown ends the stream instead of waiting for it.
    tokio::time::timeout(Duration::from_secs(5), s.running.shutdown())
        .await
        .expect("shutdown does not wait for live streams")
        .unwrap();
}

#[tokio::test]
async fn live_stream_pings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        ping_interval: Duration::from_millis(50),
        ..config(dir.path(), TOKENS)
    };
    let s = start_with(cfg, Some(dir)).await;
    let resp = s
        .http
        .get(s.url("/api/v1/stores/storeA/events/live"))
        .bearer_auth("ta")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n: ping\n") {
        assert!(text.len() < 10_000, "no ping in {text}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.starts_with("event: ready\ndata: {\"head\":0}"),
        "{text}"
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_keeps_events_blobs_and_signed_urls() {
    let dir = tempfile::tempdir().unwrap();
    // No configured secret: the generated one must survive the restart.
    let cfg = Config {
        signing_secret: None,
        ..config(dir.path(), TOKENS)
    };
    let s = start_with(cfg.clone(), None).await;
    let key = s.upload("ta", "storeA", b"durable").await;
    s.push(
        "ta",
        "storeA",
        vec![
            created("c", 1, "f1", b"durable"),
            attached("storeA", "c", 2, "f1", b"durable"),
        ],
    )
    .await;
    let url = s.sign_download("ta", &key).await;
    s.running.shutdown().await.unwrap();

    let s = start_with(cfg, None).await;
    let (_, page) = s.pull("ta", "storeA", "").await;
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page["events"][1]["args"]["remoteKey"], key.as_str());
    let (_, body) = s
        .push(
            "ta",
            "storeA",
            vec![created("c", 1, "f1", b"durable"), deleted("c", 3, "f1")],
        )
        .await;
    assert_eq!(seqs(&body), [1, 3]);
    // The old URL names the old port; the path and query stay valid.
    let path = &url[url.find("/livestore-filesync-files/").unwrap()..];
    let resp = s.http.get(s.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"durable");
    // The reference state was rebuilt from storage: f1 is deleted, so the blob can go.
    let (status, _) = s.delete("ta", &key).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.running.shutdown().await.unwrap();
    drop(dir);
}

#[tokio::test]
async fn a_restart_removes_staging_files_of_interrupted_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), TOKENS);
    let s = start_with(cfg.clone(), None).await;
    let key = s.upload("ta", "storeA", b"kept").await;
    s.running.shutdown().await.unwrap();
    // What a process killed in the middle of an upload leaves: object_store's staging files.
    let store_dir = dir.path().join("blobs/storeA");
    let staging = store_dir.join(format!("{}#1", hash(b"cut short")));
    let staging2 = store_dir.join(format!("{}#2", hash(b"kept")));
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(20 * 60);
    for (path, bytes) in [(&staging, &b"cut sh"[..]), (&staging2, &b"ke"[..])] {
        std::fs::write(path, bytes).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(long_ago).unwrap();
    }
    // One being written right now (another instance sharing the blob dir): kept.
    let live = store_dir.join(format!("{}#3", hash(b"in flight")));
    std::fs::write(&live, b"in fl").unwrap();

    let s = start_with(cfg, None).await;
    assert!(!staging.exists() && !staging2.exists());
    assert!(live.exists(), "an upload in flight lost its staging file");
    std::fs::remove_file(&live).unwrap();
    assert_eq!(
        s.download("ta", &key).await,
        (StatusCode::OK, b"kept".to_vec())
    );
    assert_eq!(walk(&dir.path().join("blobs")).len(), 1);
    s.running.shutdown().await.unwrap();
    drop(dir);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let s = start(TOKENS).await;
    let resp = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/api/v1/sign/upload"))
        .header("Origin", "http://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["content-type", "authorization", "range", "last-event-id"] {
        assert!(headers.contains(name), "{headers}");
    }
    // Errors carry CORS headers too, so the browser can read the code.
    let resp = s
        .http
        .post(s.url("/api/v1/sign/upload"))
        .header("Origin", "http://app.example")
        .json(&json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("content-length"),
        "{exposed}"
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn static_files_are_served_when_the_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>demo</h1>").unwrap();
    let cfg = Config {
        www_dir: Some(www),
        ..config(&dir.path().join("data"), TOKENS)
    };
    let s = start_with(cfg, Some(dir)).await;
    let resp = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["cache-control"],
        "no-cache",
        "revalidated at each load"
    );
    let modified = resp.headers()["last-modified"].clone();
    assert_eq!(resp.text().await.unwrap(), "<h1>demo</h1>");
    let resp = s
        .get_with(&s.url("/"), "If-Modified-Since", modified.to_str().unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(s.get_json(None, "/health").await.0, StatusCode::OK);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn empty_content_uploads_and_downloads() {
    let s = start(TOKENS).await;
    let key = s.upload("ta", "storeA", b"").await;
    let url = s.sign_download("ta", &key).await;
    let resp = s.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "0");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = s.get_with(&url, "Range", "bytes=0-").await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let etag = format!("\"{}\"", hash(b""));
    let resp = s.get_with(&url, "If-None-Match", &etag).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    s.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_get_gapless_sequence_numbers() {
    let s = std::sync::Arc::new(start(TOKENS).await);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for n in 1..=5 {
                let ev = created(&format!("c{c}"), n, &format!("f{c}-{n}"), b"x");
                let (status, _) = s.push("ta", "storeA", vec![ev.clone(), ev]).await;
                assert_eq!(status, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, page) = s.pull("ta", "storeA", "limit=1000").await;
    assert_eq!(seqs(&page), (1..=40).collect::<Vec<u64>>());
    let s = std::sync::Arc::into_inner(s).unwrap();
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn external_blob_mode_serves_events_only_and_keeps_attaches_as_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filesync_server::Config {
        blob_mode: filesync_server::BlobMode::External,
        ..config(dir.path(), TOKENS)
    };
    let s = start_with(cfg, Some(dir)).await;
    let (status, health) = s.get_json(None, "/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        health["features"],
        serde_json::json!(["events", "external"])
    );
    // No signer API here: the app's own signer answers those.
    let content = b"kept elsewhere";
    let key = format!("storeA/{}", hash(content));
    let (status, _) = s
        .post(
            Some("ta"),
            "/api/v1/sign/upload",
            serde_json::json!({"key": key, "contentLength": 14}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.delete("ta", &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The attach keeps its key: this server cannot see the other signer's blobs.
    s.push("ta", "storeA", vec![created("c", 1, "f1", content)])
        .await;
    let (status, body) = s
        .push(
            "ta",
            "storeA",
            vec![attached("storeA", "c", 2, "f1", content)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"][0]["args"]["remoteKey"], key.as_str());
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn external_blob_mode_refuses_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filesync_server::Config {
        blob_mode: filesync_server::BlobMode::External,
        s3: Some(filesync_server::blobs::S3Config {
            endpoint: Some("http://127.0.0.1:1".into()),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            session_token: None,
            path_style: true,
            verify_max_bytes: 0,
            prefix: None,
        }),
        ..config(dir.path(), TOKENS)
    };
    let err = filesync_server::serve(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("external"), "{err}");
}
