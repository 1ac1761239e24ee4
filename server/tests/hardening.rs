//! The server against hostile and broken clients, over raw sockets on loopback: bodies sent
//! without a token, request lines never finished, live subscribers that stop reading, refused
//! uploads on keep-alive connections, a SIGTERM right after start, and `kill -9` with pushes in
//! flight.

use std::time::Duration;

use filesync_server::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{created, listening_url, pull_all, spawn_server, start_with, Server, TOKENS};

/// Limits low enough for a test to meet them.
fn config(dir: &std::path::Path) -> Config {
    Config {
        header_read_timeout: Duration::from_millis(500),
        write_timeout: Duration::from_secs(1),
        ..common::config(dir, TOKENS)
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    start_with(config(dir.path()), Some(dir)).await
}

async fn connect(s: &Server) -> TcpStream {
    TcpStream::connect(s.running.addr()).await.unwrap()
}

/// Reads what the server sends until it closes the connection or `limit` passes; `None` if it
/// did not close in time.
async fn read_until_closed(sock: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

/// Reads one response head (up to the blank line), within `limit`.
async fn read_head(sock: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, async {
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n\r\n") {
            if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            out.push(byte[0]);
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&out).to_lowercase())
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_refused_before_its_body_is_read() {
    let s = start().await;
    for (path, auth, len) in [
        ("/api/v1/stores/storeA/events", "", 1_000_000),
        (
            "/api/v1/stores/storeA/events",
            "Authorization: Bearer nope\r\n",
            1_000_000,
        ),
        ("/api/v1/sign/upload", "", 60_000),
        ("/api/v1/multipart/create", "", 60_000),
    ] {
        let mut sock = connect(&s).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {len}\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        // Not one byte of the body is sent: the answer must come anyway.
        let got = read_head(&mut sock, Duration::from_secs(5)).await;
        let got = got.unwrap_or_else(|| panic!("{path}: no answer before the body"));
        assert!(got.starts_with("http/1.1 401"), "{path}: {got}");
        assert!(got.contains("connection: close"), "{path}: {got}");
    }

    // A hundred such connections at once are all answered (and none is kept waiting).
    let mut socks = Vec::new();
    for _ in 0..100 {
        let mut sock = connect(&s).await;
        let head = "POST /api/v1/stores/storeA/events HTTP/1.1\r\nHost: x\r\n\
                    Content-Length: 1048000\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&vec![b' '; 64 * 1024]).await.unwrap();
        socks.push(sock);
    }
    for sock in &mut socks {
        let got = read_head(sock, Duration::from_secs(5)).await.unwrap();
        assert!(got.starts_with("http/1.1 401"), "{got}");
    }
}

#[tokio::test]
async fn connections_that_never_finish_their_request_are_closed() {
    let s = start().await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut sock = connect(&s).await;
        sock.write_all(b"GET /api/hea").await.unwrap();
        stalled.push(sock);
    }
    // An idle keep-alive connection goes the same way.
    let mut idle = connect(&s).await;
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut idle, Duration::from_secs(5))
        .await
        .unwrap()
        .starts_with("http/1.1 200"));
    stalled.push(idle);
    for sock in &mut stalled {
        let closed = read_until_closed(sock, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "a stalled connection was kept open");
    }
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(60),
        ..config(dir.path())
    };
    let s = start_with(cfg, Some(dir)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut sock = connect(&s).await;
        sock.write_all(b"GET /api/hea").await.unwrap();
        held.push(sock);
    }
    // The ninth waits in the listen queue: no answer while the eight are open...
    let mut ninth = connect(&s).await;
    ninth
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_head(&mut ninth, Duration::from_millis(500))
        .await
        .is_none());
    // ...and is served as soon as one of them goes.
    drop(held.pop());
    let got = read_head(&mut ninth, Duration::from_secs(5)).await.unwrap();
    assert!(got.starts_with("http/1.1 200"), "{got}");
}

#[tokio::test]
async fn a_live_subscriber_that_stops_reading_is_cut_off() {
    let s = start().await;
    let mut sock = connect(&s).await;
    let head = "GET /api/v1/stores/storeA/events/live?after=0 HTTP/1.1\r\nHost: x\r\n\
                Authorization: Bearer ta\r\nAccept: text/event-stream\r\n\r\n";
    sock.write_all(head.as_bytes()).await.unwrap();
    let got = read_head(&mut sock, Duration::from_secs(5)).await.unwrap();
    assert!(got.starts_with("http/1.1 200"), "{got}");
    // The subscriber reads nothing more while ~40 MB of events go out.
    let path = "x".repeat(900);
    for batch in 0..400u64 {
        let events: Vec<Value> = (0..100u64)
            .map(|i| {
                let mut e = created("c", batch * 100 + i + 1, &format!("f{batch}-{i}"), b"x");
                e["args"]["path"] = json!(format!("{path}/{batch}/{i}"));
                e
            })
            .collect();
        let (status, body) = s.push("ta", "storeA", events).await;
        assert!(status.is_success(), "{body}");
    }
    // Its socket stays full for the write timeout (1 s here); the server then drops it, with
    // the events it kept for it. Nothing on this side can see that moment: wait it out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rest = read_until_closed(&mut sock, Duration::from_secs(10)).await;
    let rest = rest.expect("the stuck subscriber was never disconnected");
    assert!(
        rest.len() < 40_000_000,
        "it got everything: {} bytes",
        rest.len()
    );
}

#[tokio::test]
async fn a_refused_upload_closes_its_keep_alive_connection() {
    let s = start().await;
    let key = format!("storeA/{}", common::hash(b"abc"));
    for query in ["exp=1&sig=bad", "exp=99999999999&sig=bad"] {
        let mut sock = connect(&s).await;
        let head = format!(
            "PUT /livestore-filesync-files/{key}?{query} HTTP/1.1\r\nHost: x\r\n\
             Content-Length: 100000\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        let got = read_head(&mut sock, Duration::from_secs(5)).await.unwrap();
        assert!(got.starts_with("http/1.1 403"), "{got}");
        assert!(got.contains("connection: close"), "{got}");
    }
}

/// The binary with the tests' tokens and `extra` flags.
fn spawn_binary(dir: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let args: Vec<&str> = ["--tokens", TOKENS]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    spawn_server(dir, &args, &[])
}

#[tokio::test]
async fn stalled_connections_cannot_starve_health_under_a_low_descriptor_limit() {
    // The binary with 200 descriptors at most (soft and hard), a 1 s header timeout.
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_server(
        dir.path(),
        &["--header-timeout-secs", "1"],
        &["prlimit", "--nofile=200"],
    );
    let base = listening_url(&mut child);
    let addr = base.strip_prefix("http://").unwrap().to_string();
    // More connections than descriptors, each stuck in its request line.
    let mut stalled = Vec::new();
    for _ in 0..250 {
        let Ok(mut sock) = TcpStream::connect(&addr).await else {
            break;
        };
        let _ = sock.write_all(b"GET /api/hea").await;
        stalled.push(sock);
    }
    let health = async {
        let mut sock = TcpStream::connect(&addr).await.unwrap();
        sock.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_head(&mut sock, Duration::from_secs(10)).await
    };
    let got = health.await.expect("/health answered within 10 s");
    assert!(got.starts_with("http/1.1 200"), "{got}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_right_after_start_stops_the_server_gracefully() {
    use std::os::unix::process::ExitStatusExt;
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_binary(dir.path(), &[]);
        listening_url(&mut child);
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) of our own child process, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            None,
            "killed by the signal instead of stopping"
        );
        assert_eq!(status.code(), Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_push_is_lost_to_kill_9() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    filesync_server::blobs::install_tls_provider();
    let http = reqwest::Client::new();
    // Every event the server acknowledged: (client, n).
    let mut acknowledged: BTreeSet<(String, u64)> = BTreeSet::new();
    for round in 0..5u64 {
        let mut child = spawn_binary(dir.path(), &[]);
        let base = listening_url(&mut child);
        // Eight pushers, each its own client, pushing batches of five until the kill.
        let (progress, mut acked_so_far) = tokio::sync::watch::channel(0u64);
        let progress = std::sync::Arc::new(progress);
        let mut pushers = Vec::new();
        for p in 0..8u64 {
            let (http, base, progress) = (http.clone(), base.clone(), progress.clone());
            pushers.push(tokio::spawn(async move {
                let client = format!("r{round}p{p}");
                let mut acked = Vec::new();
                for batch in 0u64.. {
                    let events: Vec<Value> = (1..=5)
                        .map(|i| {
                            let n = batch * 5 + i;
                            created(&client, n, &format!("{client}-{n}"), b"x")
                        })
                        .collect();
                    let sent = http
                        .post(format!("{base}/api/v1/stores/storeA/events"))
                        .bearer_auth("ta")
                        .json(&json!({ "events": events }))
                        .send()
                        .await;
                    let ok = match sent {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if !ok {
                        // The server is gone (killed): what was acknowledged is what counts.
                        return acked;
                    }
                    acked.extend((1..=5).map(|i| (client.clone(), batch * 5 + i)));
                    progress.send_modify(|n| *n += 5);
                }
                acked
            }));
        }
        // Kill it while the pushers are busy, once a few hundred events of this round are in.
        acked_so_far.wait_for(|n| *n >= 300).await.unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        for p in pushers {
            acknowledged.extend(p.await.unwrap());
        }
    }
    // A last start: every acknowledged event is in the log, once, in seq order without gaps.
    let mut child = spawn_binary(dir.path(), &[]);
    let base = listening_url(&mut child);
    let mut seen = BTreeSet::new();
    let log = pull_all(&http, &base, "ta", "storeA").await;
    for (i, e) in log.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "a gap or a repeat in the log"
        );
        let id = (
            e["id"]["client"].as_str().unwrap().to_string(),
            e["id"]["n"].as_u64().unwrap(),
        );
        assert!(seen.insert(id.clone()), "{id:?} stored twice");
    }
    let lost: Vec<_> = acknowledged.difference(&seen).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(
        acknowledged.len() >= 1000,
        "only {} acknowledged",
        acknowledged.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
