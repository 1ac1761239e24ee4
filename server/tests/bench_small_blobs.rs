//! Timing of many small blobs through the proxy (a benchmark, not a correctness test: ignored by default, with its reason on the attribute):
//!
//! ```sh
//! cargo test --release -p filesync-server --test bench_small_blobs -- --ignored --nocapture
//! ```
//!
//! 1,000 distinct 10 KiB blobs, 4 requests in flight: signed PUT of each, then signed GET of
//! each, over real HTTP on loopback against a local data dir. Set `BENCH_FSYNC=0` to compare
//! with durability off (`BENCH_N`, `BENCH_SIZE`, `BENCH_CONCURRENCY` change the shape).

use std::time::Instant;

use filesync::core::ids::ContentHash;
use filesync_server::auth::Tokens;
use filesync_server::{serve, Config};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn small_blobs_through_the_proxy() {
    let (n, size, conc) = (
        env("BENCH_N", 1000),
        env("BENCH_SIZE", 10 * 1024),
        env("BENCH_CONCURRENCY", 4),
    );
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let cfg = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        tokens: Tokens::parse("t=*").unwrap(),
        ..Config::new(dir.path())
    };
    let running = serve(cfg).await.unwrap();
    let base = running.url();
    let http = reqwest::Client::new();
    let blobs: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let mut b = vec![0u8; size];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (format!("bench/{}", ContentHash::of(&b).to_hex()), b)
        })
        .collect();
    let sign = |call: &'static str, key: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let body: Value = http
                .post(format!("{base}/api/v1/sign/{call}"))
                .bearer_auth("t")
                .json(&json!({"key": key, "contentLength": size}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["url"].as_str().unwrap().to_string()
        }
    };

    let t = Instant::now();
    stream::iter(blobs.iter().cloned())
        .map(|(key, bytes)| {
            let http = http.clone();
            let sign = &sign;
            async move {
                let url = sign("upload", key).await;
                let r = http.put(url).body(bytes).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        })
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    let put = t.elapsed();

    let t = Instant::now();
    stream::iter(blobs.iter().cloned())
        .map(|(key, bytes)| {
            let http = http.clone();
            let sign = &sign;
            async move {
                let url = sign("download", key).await;
                let r = http.get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.bytes().await.unwrap().len(), bytes.len());
            }
        })
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    let get = t.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / n as f64;
    println!(
        "{n} x {size} B, {conc} in flight: sign+PUT {:.2} s ({:.2} ms each), sign+GET {:.2} s ({:.2} ms each)",
        put.as_secs_f64(),
        per(put),
        get.as_secs_f64(),
        per(get)
    );
    running.shutdown().await.unwrap();
}
