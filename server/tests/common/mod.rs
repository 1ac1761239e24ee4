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
