//! S3 mode against a real S3 server: `s3s-fs` (an S3 implementation on a local directory, with
//! SigV4 header and presigned-URL authentication) started in-process on 127.0.0.1:0, and the
//! filesync server started on port 0 in front of it. All traffic is real HTTP on loopback:
//! presigned URLs are used with plain `PUT`/`GET` requests, as a browser would.

use std::net::SocketAddr;
use std::path::PathBuf;

use filesync_server::blobs::{S3Config, DEFAULT_VERIFY_MAX_BYTES};
use filesync_server::{serve, BlobMode, Config};
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;
use common::{big_content, hash, sha256_b64, start_with, url_of, Server, MIB, PART, TOKENS};

const BUCKET: &str = "filesync-test";
const ACCESS_KEY: &str = "AKIATESTFILESYNC";
const SECRET_KEY: &str = "test-secret-access-key";

/// An S3 server on a temp dir; the bucket is the directory `<root>/<BUCKET>`.
struct S3 {
    endpoint: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3 {
    async fn start() -> S3 {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        S3 {
            endpoint: format!("http://{addr}"),
            root,
            task,
        }
    }

    /// Settings of this server's bucket; `prefix`: the object-key prefix (`--s3-prefix`).
    fn config(&self, prefix: Option<&str>) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            session_token: None,
            path_style: true,
            verify_max_bytes: DEFAULT_VERIFY_MAX_BYTES,
            prefix: prefix.map(str::to_string),
        }
    }

    /// Where s3s-fs keeps an object (`key`: the full object key, prefix included).
    fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every file in the bucket, as object keys (`a/b/c`), sorted.
    fn object_keys(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                let key = format!("{rel}{name}");
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{key}/"), out);
                } else {
                    out.push(key);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root.path().join(BUCKET), "", &mut out);
        out.sort();
        out
    }
}

fn config(
    s3: &S3,
    mode: BlobMode,
    ttl: u64,
    prefix: Option<&str>,
    dir: &std::path::Path,
) -> Config {
    Config {
        url_ttl_secs: ttl,
        s3: Some(s3.config(prefix)),
        blob_mode: mode,
        ..common::config(dir, TOKENS)
    }
}

/// Starts the server in front of `s3`; `prefix`: `--s3-prefix`.
async fn start(s3: &S3, mode: BlobMode, ttl: u64, prefix: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    start_with(config(s3, mode, ttl, prefix, dir.path()), Some(dir)).await
}

// The events of client `c` on storeA.
fn created(n: u64, file: &str, content: &[u8]) -> Value {
    common::created("c", n, file, content)
}

fn attached(n: u64, file: &str, content: &[u8]) -> Value {
    common::attached("storeA", "c", n, file, content)
}

fn deleted(n: u64, file: &str) -> Value {
    common::deleted("c", n, file)
}

impl Server {
    /// Signs `call` of `key` for `token` (with a content length of 1); asserts 200.
    async fn sign_key(&self, token: &str, call: &str, key: &str) -> Value {
        self.sign(token, call, json!({"key": key, "contentLength": 1}))
            .await
    }

    /// Signs an upload of `key` as `ta` and PUTs `content`; the status.
    async fn put(&self, key: &str, content: &[u8]) -> StatusCode {
        let url = url_of(&self.sign_key("ta", "upload", key).await);
        self.put_bytes(&url, content.to_vec()).await
    }

    /// Signs a download of `key` as `ta` and GETs it.
    async fn get(&self, key: &str) -> (StatusCode, Vec<u8>) {
        let url = url_of(&self.sign_key("ta", "download", key).await);
        self.get_bytes(&url).await
    }

    /// Pushes `events` to storeA as `ta`; asserts 200.
    async fn push_a(&self, events: Vec<Value>) -> Value {
        let (s, body) = self.push("ta", "storeA", events).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

#[tokio::test]
async fn presigned_urls_round_trip_through_the_bucket() {
    let s3 = S3::start().await;
    let s = start(&s3, BlobMode::Presign, 900, None).await;
    let (_, health) = s.get_json(None, "/api/health").await;
    assert_eq!(
        health["features"],
        json!(["events", "presign", "multipart"])
    );

    let content = b"bytes straight to the bucket".to_vec();
    let key = format!("storeA/{}", hash(&content));
    let signed = s.sign_key("ta", "upload", &key).await;
    assert_eq!(signed["method"], "PUT");
    let url = signed["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/{BUCKET}/{key}?", s3.endpoint)),
        "{url}"
    );
    assert_eq!(query_param(url, "X-Amz-Expires").as_deref(), Some("900"));
    assert!(query_param(url, "X-Amz-Signature").is_some());

    // A tampered signature is refused by the bucket (the test server really checks SigV4).
    let sig = query_param(url, "X-Amz-Signature").unwrap();
    let forged = url.replace(&sig, &"0".repeat(sig.len()));
    let resp = s
        .http
        .put(forged)
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!s3.object_file(&key).exists());

    let resp = s.http.put(url).body(content.clone()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(std::fs::read(s3.object_file(&key)).unwrap(), content);
    let (status, bytes) = s.get(&key).await;
    assert_eq!((status, bytes), (StatusCode::OK, content.clone()));
    // A download URL does not allow an upload.
    let get_url = url_of(&s.sign_key("ta", "download", &key).await);
    let resp = s
        .http
        .put(get_url)
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(std::fs::read(s3.object_file(&key)).unwrap(), content);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn presign_expiry_is_capped_and_sign_calls_keep_auth_rules() {
    let s3 = S3::start().await;
    let s = start(&s3, BlobMode::Presign, 7200, None).await;
    let key = format!("storeA/{}", hash(b"x"));
    let before = chrono::Utc::now();
    let signed = s.sign_key("ta", "download", &key).await;
    let url = signed["url"].as_str().unwrap();
    assert_eq!(query_param(url, "X-Amz-Expires").as_deref(), Some("3600"));
    let expires: chrono::DateTime<chrono::Utc> =
        signed["expiresAt"].as_str().unwrap().parse().unwrap();
    let secs = (expires - before).num_seconds();
    assert!((3599..=3601).contains(&secs), "{secs}");

    let other = format!("storeB/{}", hash(b"x"));
    for call in ["upload", "download"] {
        let path = format!("/api/v1/sign/{call}");
        let body = json!({"key": other, "contentLength": 1});
        assert_eq!(
            s.post(Some("ta"), &path, body.clone()).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            s.post(None, &path, body.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            s.post(Some("nope"), &path, body.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(s.post(Some("tb"), &path, body).await.0, StatusCode::OK);
        let bad = json!({"key": "storeA/../storeB/x", "contentLength": 1});
        assert_eq!(
            s.post(Some("admin"), &path, bad).await.0,
            StatusCode::BAD_REQUEST
        );
    }
    let (status, _) = s.delete("ta", &other).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn push_checks_presence_and_content_in_the_bucket_and_delete_respects_references() {
    let s3 = S3::start().await;
    let s = start(&s3, BlobMode::Presign, 900, None).await;
    let content = b"referenced content".to_vec();
    let key = format!("storeA/{}", hash(&content));
    s.push_a(vec![created(1, "f1", &content)]).await;

    // Not uploaded yet: the remote key is cleared (HEAD on the bucket).
    let body = s.push_a(vec![attached(2, "f1", &content)]).await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], "");

    // Wrong bytes under the key: the first reference hashes them, deletes the object and
    // clears the remote key.
    assert_eq!(s.put(&key, b"not the content").await, StatusCode::OK);
    assert!(s3.object_file(&key).exists());
    let body = s.push_a(vec![attached(3, "f1", &content)]).await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], "");
    assert!(!s3.object_file(&key).exists());

    // The real bytes: kept.
    assert_eq!(s.put(&key, &content).await, StatusCode::OK);
    let body = s.push_a(vec![attached(4, "f1", &content)]).await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], key.as_str());

    // Referenced: 409, the object stays.
    assert_eq!(s.delete("ta", &key).await.0, StatusCode::CONFLICT);
    assert_eq!(s.get(&key).await, (StatusCode::OK, content.clone()));
    // Released by the delete of f1: 204, gone from the bucket; again: still 204.
    s.push_a(vec![deleted(5, "f1")]).await;
    assert_eq!(s.delete("ta", &key).await.0, StatusCode::NO_CONTENT);
    assert!(!s3.object_file(&key).exists());
    assert_eq!(s.get(&key).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete("ta", &key).await.0, StatusCode::NO_CONTENT);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn proxy_mode_streams_to_the_bucket_and_verifies_hashes() {
    let s3 = S3::start().await;
    let s = start(&s3, BlobMode::Proxy, 900, None).await;
    let (_, health) = s.get_json(None, "/health").await;
    assert_eq!(health["features"], json!(["events", "proxy", "multipart"]));
    let content: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let key = format!("storeA/{}", hash(&content));
    // Upload URLs are this server's own.
    let url = url_of(&s.sign_key("ta", "upload", &key).await);
    assert!(url.starts_with(&s.base), "{url}");
    let bad = s
        .http
        .put(&url)
        .body(b"wrong".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!s3.object_file(&key).exists());
    let ok = s.http.put(&url).body(content.clone()).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(std::fs::read(s3.object_file(&key)).unwrap(), content);
    assert_eq!(s.get(&key).await, (StatusCode::OK, content.clone()));
    // A range is read from the bucket.
    let get_url = url_of(&s.sign_key("ta", "download", &key).await);
    let resp = s.get_with(&get_url, "Range", "bytes=100-109").await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        content[100..110].to_vec()
    );
    // Presence at push is a HEAD on the bucket.
    s.push_a(vec![created(1, "f1", &content)]).await;
    let body = s.push_a(vec![attached(2, "f1", &content)]).await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], key.as_str());
    assert_eq!(s.delete("ta", &key).await.0, StatusCode::CONFLICT);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn presign_mode_without_a_bucket_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        blob_mode: BlobMode::Presign,
        ..Config::new(dir.path())
    };
    let err = serve(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("presign"), "{err}");
}

/// With `--s3-prefix`, the client-visible round trip of `mode` (sign upload, PUT, push, sign
/// download, GET, delete) uses keys without the prefix, while every object sits under it.
async fn prefixed_round_trip(mode: BlobMode) {
    let s3 = S3::start().await;
    // Given without its trailing '/': the server adds it.
    let s = start(&s3, mode, 900, Some("apps/photos")).await;
    let prefix = "apps/photos/";
    let content = format!("bytes under a prefix, {mode:?}").into_bytes();
    let key = format!("storeA/{}", hash(&content));
    let object = format!("{prefix}{key}");

    let signed = s.sign_key("ta", "upload", &key).await;
    let url = signed["url"].as_str().unwrap().to_string();
    if mode == BlobMode::Presign {
        // The presigned URL names the prefixed object, and its signature covers that path
        // (s3s-fs checks it).
        assert!(
            url.starts_with(&format!("{}/{BUCKET}/{object}?", s3.endpoint)),
            "{url}"
        );
        // Wrong bytes: the push-time verification reads the prefixed object, hashes it and
        // deletes it.
        let resp = s.http.put(&url).body(b"not it".to_vec()).send().await;
        assert_eq!(resp.unwrap().status(), StatusCode::OK);
        assert!(s3.object_file(&object).exists());
        s.push_a(vec![created(1, "f1", &content)]).await;
        let body = s.push_a(vec![attached(2, "f1", &content)]).await;
        assert_eq!(body["events"][0]["args"]["remoteKey"], "");
        assert!(!s3.object_file(&object).exists());
    } else {
        assert!(url.starts_with(&s.base), "{url}");
        s.push_a(vec![created(1, "f1", &content)]).await;
    }
    let resp = s.http.put(&url).body(content.clone()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(std::fs::read(s3.object_file(&object)).unwrap(), content);
    assert!(!s3.object_file(&key).exists());
    assert_eq!(s3.object_keys(), vec![object.clone()]);

    // The push references the key without the prefix, and the presence check finds it.
    let body = s.push_a(vec![attached(3, "f1", &content)]).await;
    assert_eq!(body["events"][0]["args"]["remoteKey"], key.as_str());
    assert_eq!(s.get(&key).await, (StatusCode::OK, content.clone()));
    assert_eq!(s.delete("ta", &key).await.0, StatusCode::CONFLICT);

    s.push_a(vec![deleted(4, "f1")]).await;
    assert_eq!(s.delete("ta", &key).await.0, StatusCode::NO_CONTENT);
    assert!(!s3.object_file(&object).exists());
    assert_eq!(s3.object_keys(), Vec::<String>::new());
    assert_eq!(s.get(&key).await.0, StatusCode::NOT_FOUND);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn presign_mode_keeps_objects_under_the_prefix() {
    prefixed_round_trip(BlobMode::Presign).await;
}

#[tokio::test]
async fn proxy_mode_keeps_objects_under_the_prefix() {
    prefixed_round_trip(BlobMode::Proxy).await;
}

#[tokio::test]
async fn bad_prefixes_are_refused_at_start() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "/apps/",
        "apps//photos/",
        "../apps/",
        "apps/../x",
        "apps\nx/",
        "",
    ] {
        for mode in [BlobMode::Proxy, BlobMode::Presign] {
            let err = serve(config(&s3, mode, 900, Some(bad), dir.path()))
                .await
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(err.to_string().contains("--s3-prefix"), "{bad:?}: {err}");
        }
    }
}

/// Runs the binary with `args` (no FILESYNC_* or AWS_* variables) and returns its exit code
/// and stderr; it must exit on its own within 30 s.
fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_filesync-server"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FILESYNC_") || name.starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .args(["--port", "0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{args:?}: the server started");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_refuses_a_bad_prefix_and_a_prefix_without_a_bucket() {
    let (code, stderr) = run_binary(&["--s3-prefix", "apps/photos/"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--s3-prefix needs --s3-bucket"), "{stderr}");
    let bucket = [
        "--s3-bucket",
        BUCKET,
        "--s3-endpoint",
        "http://127.0.0.1:9",
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
    ];
    for bad in ["/apps", "apps/../x/", "a//b"] {
        let mut args = bucket.to_vec();
        args.extend(["--s3-prefix", bad]);
        let (code, stderr) = run_binary(&args);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--s3-prefix:"), "{bad}: {stderr}");
    }
}

/// [`start`] with blobs up to 64 MiB (multipart tests).
async fn start_big(s3: &S3, mode: BlobMode, prefix: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        max_blob_bytes: 64 * MIB as u64,
        ..config(s3, mode, 900, prefix, dir.path())
    };
    start_with(cfg, Some(dir)).await
}

/// Whether any object of the multipart extension's own (manifests, staged parts) is left.
fn uploads_left(s3: &S3) -> Vec<String> {
    s3.object_keys()
        .into_iter()
        .filter(|k| k.contains("_uploads/"))
        .collect()
}

#[tokio::test]
async fn multipart_uploads_through_the_server_in_proxy_mode() {
    let s3 = S3::start().await;
    let s = start_big(&s3, BlobMode::Proxy, Some("apps/x")).await;
    let up = s
        .create_upload("ta", "storeA", big_content(2 * PART + 99, 11))
        .await;
    s.upload_in_parts("ta", &up).await;
    let (status, body) = s.get(&up.key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == up.content, "assembled blob differs");
    assert_eq!(s3.object_keys(), vec![format!("apps/x/{}", up.key)]);
}

#[tokio::test]
async fn multipart_parts_go_straight_to_the_bucket_in_presign_mode() {
    let s3 = S3::start().await;
    let s = start_big(&s3, BlobMode::Presign, Some("apps/x")).await;
    let up = s
        .create_upload("ta", "storeA", big_content(PART + 4321, 12))
        .await;
    let signed = s.sign_parts("ta", &up, &[1, 2]).await;
    let url = signed[0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/{BUCKET}/apps/x/{}?", s3.endpoint, up.key)),
        "{url}"
    );
    assert_eq!(query_param(url, "partNumber").as_deref(), Some("1"));
    assert!(query_param(url, "uploadId").is_some());
    assert_eq!(
        signed[0]["headers"]["x-amz-checksum-sha256"],
        sha256_b64(up.part(1)).as_str()
    );

    // The checksum header is part of the signature: another value, or none, is refused.
    let mut wrong = signed[0].clone();
    wrong["headers"]["x-amz-checksum-sha256"] = sha256_b64(b"other").into();
    assert_eq!(
        s.put_part(&wrong, up.part(1).to_vec()).await.0,
        StatusCode::FORBIDDEN
    );
    let mut bare = signed[0].clone();
    bare["headers"] = json!({});
    assert_eq!(
        s.put_part(&bare, up.part(1).to_vec()).await.0,
        StatusCode::FORBIDDEN
    );

    s.upload_in_parts("ta", &up).await;
    let (status, body) = s.get(&up.key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body == up.content, "completed object differs");
    assert!(uploads_left(&s3).is_empty(), "{:?}", uploads_left(&s3));
    // The completed object is known good: a push naming it keeps its remote key.
    s.push_a(vec![created(1, "f", &up.content)]).await;
    let pushed = s.push_a(vec![attached(2, "f", &up.content)]).await;
    assert_eq!(pushed["events"][0]["args"]["remoteKey"], up.key.as_str());
}

#[tokio::test]
async fn a_presign_multipart_upload_of_other_bytes_is_refused_at_completion() {
    let s3 = S3::start().await;
    let s = start_big(&s3, BlobMode::Presign, None).await;
    let mut up = s
        .create_upload("ta", "storeA", big_content(PART + 5, 13))
        .await;
    up.content = big_content(PART + 5, 14);
    let etags = s.send_parts("ta", &up, &[1, 2]).await;
    let (status, body) = s.complete_upload("ta", &up, &etags).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(s.get(&up.key).await.0, StatusCode::NOT_FOUND);
    assert!(s3.object_keys().is_empty(), "{:?}", s3.object_keys());
}

#[tokio::test]
async fn aborted_and_stale_presign_uploads_are_gone_from_the_bucket() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = |max_age| Config {
        max_blob_bytes: 64 * MIB as u64,
        multipart_max_age: max_age,
        ..config(&s3, BlobMode::Presign, 900, None, dir.path())
    };
    let s = start_with(cfg(std::time::Duration::from_secs(3600)), None).await;
    let up = s
        .create_upload("ta", "storeA", big_content(PART + 5, 15))
        .await;
    let later = s.sign_parts("ta", &up, &[2]).await.remove(0);
    s.send_parts("ta", &up, &[1]).await;
    let (status, _) = s
        .multipart("ta", "abort", json!({"key": up.key, "uploadId": up.id}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The bucket no longer knows the upload: a part signed before is refused there.
    assert_ne!(
        s.put_part(&later, up.part(2).to_vec()).await.0,
        StatusCode::OK
    );
    assert!(uploads_left(&s3).is_empty());

    let stale = s
        .create_upload("ta", "storeA", big_content(PART + 5, 16))
        .await;
    let later = s.sign_parts("ta", &stale, &[2]).await.remove(0);
    s.running.shutdown().await.unwrap();
    let s = start_with(cfg(std::time::Duration::ZERO), None).await;
    assert!(uploads_left(&s3).is_empty(), "{:?}", uploads_left(&s3));
    assert_ne!(
        s.put_part(&later, stale.part(2).to_vec()).await.0,
        StatusCode::OK
    );
    s.running.shutdown().await.unwrap();
}
