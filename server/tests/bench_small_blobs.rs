//! Timing of many small blobs through the proxy (a benchmark, not a correctness test: ignored by default, with its reason on the attribute):
//!
//! ```sh
//! cargo test --release -p filesync-server --test bench_small_blobs -- --ignored --nocapture
//! ```
//!
//! 1,000 distinct 10 KiB blobs, 4 requests in flight: signed PUT of each, then signed GET of
//! each, over real HTTP on loopback against a local data dir. Set `BENCH_FSYNC=0` to compare
//! with durability off (`BENCH_N`, `BENCH_SIZE`, `BENCH_CONCURRENCY` change the shape).

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde_json::json;

mod common;
use common::{hash, loopback, start_with, url_of};

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
    let cfg = loopback(dir.path(), "t=*");
    let server = start_with(cfg, Some(dir)).await;
    let blobs: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let mut b = vec![0u8; size];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (format!("bench/{}", hash(&b)), b)
        })
        .collect();
    let s = &server;
    let sign = |call: &'static str, key: String| async move {
        let body = json!({"key": key, "contentLength": size});
        url_of(&s.sign("t", call, body).await)
    };
    let sign = &sign;

    let put = timed(&blobs, conc, |(key, bytes)| async move {
        let url = sign("upload", key).await;
        assert_eq!(s.put_bytes(&url, bytes).await, 200);
    })
    .await;
    let get = timed(&blobs, conc, |(key, bytes)| async move {
        let url = sign("download", key).await;
        let (status, got) = s.get_bytes(&url).await;
        assert_eq!(status, 200);
        assert_eq!(got.len(), bytes.len());
    })
    .await;
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    println!(
        "{n} x {size} B, {conc} in flight: sign+PUT {:.2} s ({:.2} ms each), sign+GET {:.2} s ({:.2} ms each)",
        put.as_secs_f64(),
        per(put),
        get.as_secs_f64(),
        per(get)
    );
    server.running.shutdown().await.unwrap();
}

/// How long `each` takes on every blob, `conc` at a time.
async fn timed<F, Fut>(blobs: &[(String, Vec<u8>)], conc: usize, each: F) -> Duration
where
    F: Fn((String, Vec<u8>)) -> Fut,
    Fut: Future<Output = ()>,
{
    let t = Instant::now();
    stream::iter(blobs.iter().cloned())
        .map(each)
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    t.elapsed()
}
