//! What the integration tests share: the server started on loopback port 0 in a temp data dir,
//! an HTTP client on it, and the requests every test file makes (signer calls, blob PUT/GET by
//! URL, event pushes and pulls, deletes), plus the events the tests push.

// Each file in tests/ is its own crate that includes this module, and none of them uses all of
// it: what one test binary leaves unused is not dead code.
#![allow(dead_code)]

use filesync::core::ids::ContentHash;
use filesync_server::auth::Tokens;
use filesync_server::{serve, Config, Running};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

/// The tokens most tests use: `ta` may use storeA, `tb` storeB, `admin` every store.
pub const TOKENS: &str = "ta=storeA/;tb=storeB/;admin=*";
/// The signing secret of [`config`].
pub const SECRET: &str = "test-secret";

/// The server on port 0 of 127.0.0.1 with data in `dir` and `tokens`; otherwise the defaults.
pub fn loopback(dir: &std::path::Path, tokens: &str) -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        tokens: Tokens::parse(tokens).unwrap(),
        ..Config::new(dir)
    }
}

/// [`loopback`] with the signing secret [`SECRET`] and a 64 KiB blob limit.
pub fn config(dir: &std::path::Path, tokens: &str) -> Config {
    Config {
        signing_secret: Some(SECRET.into()),
        max_blob_bytes: 64 * 1024,
        ..loopback(dir, tokens)
    }
}

/// A started server and a client for it.
pub struct Server {
    pub running: Running,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub http: Client,
    /// The temp dir the server's data is in, when this server owns it.
    pub dir: Option<tempfile::TempDir>,
}

/// Starts the server with `cfg`; `dir`: the temp dir to keep alive as long as the server.
pub async fn start_with(cfg: Config, dir: Option<tempfile::TempDir>) -> Server {
    let running = serve(cfg).await.expect("server starts");
    Server {
        base: running.url(),
        running,
        http: Client::new(),
        dir,
    }
}

/// Starts the server with [`config`] in a new temp dir.
pub async fn start(tokens: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), tokens);
    start_with(cfg, Some(dir)).await
}

/// The content hash of `bytes`, as in blob keys.
pub fn hash(bytes: &[u8]) -> String {
    ContentHash::of(bytes).to_hex()
}

/// The `url` of a signer answer.
pub fn url_of(signed: &Value) -> String {
    signed["url"].as_str().unwrap().to_string()
}

/// A `v1.FileCreated` of `file` (at `docs/<file>`) with `content`, as event `n` of `client`.
pub fn created(client: &str, n: u64, file: &str, content: &[u8]) -> Value {
    json!({"id": {"client": client, "n": n}, "name": "v1.FileCreated", "args": {
        "id": file, "path": format!("docs/{file}"), "contentHash": hash(content), "name": "a.txt",
        "mimeType": "text/plain", "size": content.len(), "metadataJson": null, "createdAt": 1,
        "updatedAt": 1}})
}

/// A `v1.FileUpdated` attaching the blob `<store>/<hash of content>` to `file`.
pub fn attached(store: &str, client: &str, n: u64, file: &str, content: &[u8]) -> Value {
    let h = hash(content);
    json!({"id": {"client": client, "n": n}, "name": "v1.FileUpdated", "args": {
        "id": file, "path": format!("docs/{file}"), "remoteKey": format!("{store}/{h}"),
        "contentHash": h, "name": "a.txt", "mimeType": "text/plain", "size": content.len(),
        "updatedAt": 2, "expectedContentHash": h}})
}

/// A `v1.FileDeleted` of `file`.
pub fn deleted(client: &str, n: u64, file: &str) -> Value {
    json!({"id": {"client": client, "n": n}, "name": "v1.FileDeleted",
           "args": {"id": file, "deletedAt": 3}})
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` as JSON; the answer's status and JSON body (null if it has none).
    pub async fn post(&self, token: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs `path`; the answer's status and JSON body (null if it has none).
    pub async fn get_json(&self, token: Option<&str>, path: &str) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn push(&self, token: &str, store: &str, events: Vec<Value>) -> (StatusCode, Value) {
        self.post(
            Some(token),
            &format!("/api/v1/stores/{store}/events"),
            json!({ "events": events }),
        )
        .await
    }

    pub async fn pull(&self, token: &str, store: &str, query: &str) -> (StatusCode, Value) {
        self.get_json(
            Some(token),
            &format!("/api/v1/stores/{store}/events?{query}"),
        )
        .await
    }

    /// `POST /api/v1/delete` of `key`.
    pub async fn delete(&self, token: &str, key: &str) -> (StatusCode, Value) {
        self.post(Some(token), "/api/v1/delete", json!({"key": key}))
            .await
    }

    /// `POST /api/v1/sign/<call>` with `body`; asserts 200 and returns the answer.
    pub async fn sign(&self, token: &str, call: &str, body: Value) -> Value {
        let (s, body) = self
            .post(Some(token), &format!("/api/v1/sign/{call}"), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body
    }

    /// An upload URL of `key` for `len` bytes.
    pub async fn sign_upload(&self, token: &str, key: &str, len: usize) -> String {
        let body = json!({"key": key, "contentLength": len});
        url_of(&self.sign(token, "upload", body).await)
    }

    /// A download URL of `key`.
    pub async fn sign_download(&self, token: &str, key: &str) -> String {
        url_of(&self.sign(token, "download", json!({"key": key})).await)
    }

    /// PUTs `body` to a (signed) URL; the status.
    pub async fn put_bytes(&self, url: &str, body: impl Into<reqwest::Body>) -> StatusCode {
        let resp = self.http.put(url).body(body).send().await.unwrap();
        resp.status()
    }

    /// GETs a (signed) URL; the status and the body.
    pub async fn get_bytes(&self, url: &str) -> (StatusCode, Vec<u8>) {
        let resp = self.http.get(url).send().await.unwrap();
        (resp.status(), resp.bytes().await.unwrap().to_vec())
    }

    /// GETs a (signed) URL with one request header (`Range`, `If-None-Match`).
    pub async fn get_with(&self, url: &str, header: &str, value: &str) -> reqwest::Response {
        self.http
            .get(url)
            .header(header, value)
            .send()
            .await
            .unwrap()
    }

    /// Signs and PUTs `content` under `<store>/<its hash>`, asserts 200; the key.
    pub async fn upload(&self, token: &str, store: &str, content: &[u8]) -> String {
        let key = format!("{store}/{}", hash(content));
        let url = self.sign_upload(token, &key, content.len()).await;
        assert_eq!(self.put_bytes(&url, content.to_vec()).await, StatusCode::OK);
        key
    }

    /// Signs and GETs `key`; the status and the body.
    pub async fn download(&self, token: &str, key: &str) -> (StatusCode, Vec<u8>) {
        let url = self.sign_download(token, key).await;
        self.get_bytes(&url).await
    }
}

/// 1 MiB.
pub const MIB: usize = 1024 * 1024;
/// The smallest part size of the multipart extension.
pub const PART: usize = 5 * MIB;

/// `len` bytes that differ from part to part (so a part put in the wrong place changes the hash).
pub fn big_content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 4096) as u8 ^ (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// The base64 SHA-256 of `bytes`, as the multipart extension's `checksumSha256`.
pub fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let digest = ContentHash::of(bytes);
    let raw: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&digest.to_hex()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// One multipart upload as a client drives it.
pub struct Upload {
    pub key: String,
    pub id: String,
    pub content: Vec<u8>,
    pub part_size: usize,
}

impl Upload {
    /// The bytes of part `n` (1-based).
    pub fn part(&self, n: usize) -> &[u8] {
        let start = (n - 1) * self.part_size;
        &self.content[start..(start + self.part_size).min(self.content.len())]
    }

    pub fn part_count(&self) -> usize {
        self.content.len().div_ceil(self.part_size)
    }
}

impl Server {
    /// `POST /api/v1/multipart/<call>` as `token`.
    pub async fn multipart(&self, token: &str, call: &str, body: Value) -> (StatusCode, Value) {
        self.post(Some(token), &format!("/api/v1/multipart/{call}"), body)
            .await
    }

    /// Creates an upload of `content` under `<store>/<its hash>`; asserts 200.
    pub async fn create_upload(&self, token: &str, store: &str, content: Vec<u8>) -> Upload {
        let key = format!("{store}/{}", hash(&content));
        let body = json!({"key": key, "size": content.len(), "partSize": PART});
        let (s, created) = self.multipart(token, "create", body).await;
        assert_eq!(s, StatusCode::OK, "{created}");
        assert_eq!(created["partSize"], PART);
        assert_eq!(created["partCount"], content.len().div_ceil(PART));
        Upload {
            key,
            id: created["uploadId"].as_str().unwrap().to_string(),
            content,
            part_size: PART,
        }
    }

    /// Signs parts `numbers` of `up` (their checksums from `up`'s content); the answer's parts.
    pub async fn sign_parts(&self, token: &str, up: &Upload, numbers: &[usize]) -> Vec<Value> {
        let parts: Vec<Value> = numbers
            .iter()
            .map(|&n| json!({"partNumber": n, "checksumSha256": sha256_b64(up.part(n))}))
            .collect();
        let body = json!({"key": up.key, "uploadId": up.id, "parts": parts});
        let (s, signed) = self.multipart(token, "sign", body).await;
        assert_eq!(s, StatusCode::OK, "{signed}");
        signed["parts"].as_array().unwrap().clone()
    }

    /// PUTs `body` to a signed part (with the headers it lists); the status and ETag.
    pub async fn put_part(&self, signed: &Value, body: Vec<u8>) -> (StatusCode, Option<String>) {
        let mut req = self.http.put(signed["url"].as_str().unwrap()).body(body);
        if let Some(headers) = signed["headers"].as_object() {
            for (name, value) in headers {
                req = req.header(name, value.as_str().unwrap());
            }
        }
        let resp = req.send().await.unwrap();
        let etag = resp
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status(), etag)
    }

    /// Signs and PUTs parts `numbers` of `up`; asserts 200 each; their ETags, in `numbers` order.
    pub async fn send_parts(&self, token: &str, up: &Upload, numbers: &[usize]) -> Vec<String> {
        let signed = self.sign_parts(token, up, numbers).await;
        let mut etags = Vec::new();
        for (entry, &n) in signed.iter().zip(numbers) {
            assert_eq!(entry["partNumber"], n);
            let (s, etag) = self.put_part(entry, up.part(n).to_vec()).await;
            assert_eq!(s, StatusCode::OK, "part {n}");
            etags.push(etag.expect("a part's PUT answers with its ETag"));
        }
        etags
    }

    /// `complete` of `up` with `etags` (part 1 first).
    pub async fn complete_upload(
        &self,
        token: &str,
        up: &Upload,
        etags: &[String],
    ) -> (StatusCode, Value) {
        let parts: Vec<Value> = etags
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                json!({"partNumber": i + 1, "etag": etag,
                       "checksumSha256": sha256_b64(up.part(i + 1))})
            })
            .collect();
        let body = json!({"key": up.key, "uploadId": up.id, "parts": parts});
        self.multipart(token, "complete", body).await
    }

    /// Sends every part of `up`, last first, and completes it; asserts 200.
    pub async fn upload_in_parts(&self, token: &str, up: &Upload) {
        let numbers: Vec<usize> = (1..=up.part_count()).rev().collect();
        let mut etags = self.send_parts(token, up, &numbers).await;
        etags.reverse();
        let (s, done) = self.complete_upload(token, up, &etags).await;
        assert_eq!(s, StatusCode::OK, "{done}");
        assert_eq!(done["key"], up.key.as_str());
    }
}

/// A fresh PostgreSQL database (named `<prefix>_<random>`) on the test cluster that
/// `scripts/test.sh` starts (`FILESYNC_TEST_DATABASE_URL`), and its URL. Fails, saying why,
/// when the cluster is not there: these tests are never skipped.
pub async fn pg_database(prefix: &str) -> String {
    let admin = std::env::var("FILESYNC_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "FILESYNC_TEST_DATABASE_URL is not set: these tests need the PostgreSQL cluster \
             scripts/test.sh starts (or `scripts/pg.sh start`)"
        )
    });
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test cluster at {admin}: {e}"));
    tokio::spawn(conn);
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let name: String = std::iter::once(format!("{prefix}_"))
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    // Same server, credentials and options, another database.
    let (url, options) = admin.split_once('?').unwrap_or((admin.as_str(), ""));
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    let options = if options.is_empty() {
        String::new()
    } else {
        format!("?{options}")
    };
    format!("{base}/{name}{options}")
}

/// Reads SSE messages `(event, data)` from a response until `n` were seen.
pub async fn read_sse(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    n: usize,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(pos) = buf.find("\n\n") {
            let msg: String = buf.drain(..pos + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in msg.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !event.is_empty() {
                out.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
        if out.len() >= n {
            break;
        }
        let chunk = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures_util::StreamExt::next(stream),
        )
        .await
        .expect("an SSE message within 10 s")
        .expect("stream open")
        .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    out
}

/// The server binary started with `args`, after `--addr 127.0.0.1:0 --data-dir <dir>` and no
/// static files, without the FILESYNC_ and AWS_ variables of this environment, through
/// `wrapper` when there is one (`["prlimit", "--nofile=200"]`); stdout piped for
/// [`listening_url`].
pub fn spawn_server(dir: &std::path::Path, args: &[&str], wrapper: &[&str]) -> std::process::Child {
    let binary = env!("CARGO_BIN_EXE_filesync-server");
    let mut cmd = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut c = std::process::Command::new(program);
            c.args(wrapper_args).arg(binary);
            c
        }
        None => std::process::Command::new(binary),
    };
    cmd.args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--www-dir", "/nonexistent"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .env("RUST_LOG", "error");
    for (k, _) in std::env::vars() {
        if k.starts_with("FILESYNC_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().unwrap()
}

/// Reads a spawned server's stdout up to its "listening on <url>" line; the URL.
pub fn listening_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix("filesync-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

/// The `seq` of every event of a push or pull answer.
pub fn seqs(body: &Value) -> Vec<u64> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// Every event of `store` in the log of the server at `base` (all pages), as `token`.
pub async fn pull_all(http: &Client, base: &str, token: &str, store: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e["seq"].as_u64().unwrap());
        let page: Value = http
            .get(format!(
                "{base}/api/v1/stores/{store}/events?after={after}&limit=1000"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return all;
        }
        all.extend(events.iter().cloned());
    }
}
