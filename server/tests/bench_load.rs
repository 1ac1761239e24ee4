//! Load of the event API with many clients (a benchmark, not a correctness test: ignored by
//! default, with its reason on the attribute; `npm run bench` runs it):
//!
//! ```sh
//! scripts/pg.sh start   # prints FILESYNC_TEST_DATABASE_URL=...: export it
//! cargo test --release -p filesync-server --test bench_load -- --ignored --nocapture
//! ```
//!
//! Simulated clients in this process (no browser), against the release server binary on
//! loopback: `LOAD_LIVE` (1,000) live subscribers and `LOAD_PUSHERS` (200) concurrent pushers,
//! each pushing `LOAD_PUSHES` (10) single-event batches, on one store and over 100 stores,
//! against one SQLite instance, one PostgreSQL instance and two PostgreSQL instances (clients
//! spread over both). Reported per run: pushes/s, push latency p50/p99, push-to-live-delivery
//! latency p50/p99 (from sending the push to each subscriber's receipt), and the check that
//! every subscriber received every event of its store exactly once (out-of-order arrivals are
//! counted: clients put them in order, and with two instances a relayed batch can arrive after
//! a later local one). A last run kills one of two instances (SIGKILL) halfway: pushers move
//! to the other, subscribers reconnect there and pull from their last sequence number, and the
//! check is that no acknowledged event is missing from the log or from any subscriber.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

mod common;
use common::{created, listening_url, pg_database, pull_all, spawn_server};

const TOKEN: &str = "load";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A server process.
struct Instance {
    child: std::process::Child,
    url: String,
}

impl Instance {
    fn start(dir: &std::path::Path, database: Option<&str>) -> Instance {
        let tokens = format!("{TOKEN}=*");
        let mut args = vec!["--tokens", tokens.as_str()];
        if let Some(url) = database {
            args.extend(["--database-url", url]);
        }
        let mut child = spawn_server(dir, &args, &[]);
        let url = listening_url(&mut child);
        Instance { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What one subscriber received: per sequence number, how often, and when first.
#[derive(Default)]
struct Seen {
    counts: BTreeMap<u64, u32>,
    first_at: HashMap<(String, u64), Instant>,
    out_of_order: u64,
    last: u64,
}

/// Follows a store's live channel, reconnecting (to the next URL of `urls`, then pulling from
/// the last seq seen) when a connection ends, until `stop`.
async fn subscribe(
    http: reqwest::Client,
    urls: Vec<String>,
    store: String,
    seen: Arc<Mutex<Seen>>,
    ready: tokio::sync::mpsc::Sender<()>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut attempt = 0usize;
    let mut announced = false;
    while !stop.is_cancelled() {
        let base = &urls[attempt % urls.len()];
        attempt += 1;
        let after = seen.lock().unwrap().last;
        let resp = http
            .get(format!(
                "{base}/api/v1/stores/{store}/events/live?after={after}"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await;
        let Ok(resp) = resp else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        loop {
            let chunk = tokio::select! {
                () = stop.cancelled() => return,
                c = stream.next() => c,
            };
            let Some(Ok(chunk)) = chunk else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(pos) = buf.find("\n\n") {
                let msg: String = buf.drain(..pos + 2).collect();
                if msg.contains("event: ready") {
                    // Subscribed: what was stored before (while disconnected) comes by pull,
                    // as a client does it.
                    catch_up(&http, base, &store, &seen).await;
                    if !announced {
                        announced = true;
                        let _ = ready.send(()).await;
                    }
                }
                if let Some(data) = msg.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if msg.contains("event: events") {
                        let v: Value = serde_json::from_str(data).unwrap();
                        record(&seen, v["events"].as_array().unwrap());
                    }
                }
            }
        }
    }
}

/// Pulls the store from the last seq seen to its end.
async fn catch_up(http: &reqwest::Client, base: &str, store: &str, seen: &Mutex<Seen>) {
    let mut from = seen.lock().unwrap().last;
    loop {
        let Ok(r) = http
            .get(format!(
                "{base}/api/v1/stores/{store}/events?after={from}&limit=1000"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
        else {
            return;
        };
        let Ok(page) = r.json::<Value>().await else {
            return;
        };
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return;
        }
        from = record(seen, &events);
    }
}

/// Notes events received; the highest seq seen.
fn record(seen: &Mutex<Seen>, events: &[Value]) -> u64 {
    let now = Instant::now();
    let mut s = seen.lock().unwrap();
    for e in events {
        let seq = e["seq"].as_u64().unwrap();
        let id = (
            e["id"]["client"].as_str().unwrap().to_string(),
            e["id"]["n"].as_u64().unwrap(),
        );
        *s.counts.entry(seq).or_default() += 1;
        s.first_at.entry(id).or_insert(now);
        if seq < s.last {
            s.out_of_order += 1;
        }
        s.last = s.last.max(seq);
    }
    s.last
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One run; prints its figures and checks what every subscriber got.
async fn run(name: &str, instances: &mut [Instance], stores: usize, kill_halfway: bool) {
    let (live, pushers, pushes) = (
        env("LOAD_LIVE", 1000),
        env("LOAD_PUSHERS", 200),
        env("LOAD_PUSHES", 10),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(pushers)
        .build()
        .unwrap();
    let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();
    let store_of = |i: usize| format!("load-{}", i % stores);
    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(live);
    let mut subscribers = Vec::new();
    for i in 0..live {
        let seen = Arc::new(Mutex::new(Seen::default()));
        // Spread over the instances, each starting at its own.
        let mut order = urls.clone();
        order.rotate_left(i % urls.len());
        let task = tokio::spawn(subscribe(
            http.clone(),
            order,
            store_of(i),
            seen.clone(),
            ready_tx.clone(),
            stop.clone(),
        ));
        subscribers.push((store_of(i), seen, task));
    }
    for _ in 0..live {
        ready_rx.recv().await.unwrap();
    }
    // The pushers: each its own client, `pushes` single-event pushes, one at a time.
    let sent_at: Arc<Mutex<HashMap<(String, u64), Instant>>> = Arc::default();
    let acked: Arc<Mutex<Vec<(String, String, u64)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let halfway = Arc::new(tokio::sync::Notify::new());
    let done_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..pushers {
        let (http, urls, store) = (http.clone(), urls.clone(), store_of(p));
        let (sent_at, acked, latencies) = (sent_at.clone(), acked.clone(), latencies.clone());
        let (halfway, done_count) = (halfway.clone(), done_count.clone());
        tasks.push(tokio::spawn(async move {
            let client = format!("p{p}");
            let mut target = p % urls.len();
            for n in 1..=pushes as u64 {
                let event = created(&client, n, &format!("{client}-{n}"), b"x");
                loop {
                    let start = Instant::now();
                    sent_at
                        .lock()
                        .unwrap()
                        .entry((client.clone(), n))
                        .or_insert(start);
                    let r = http
                        .post(format!("{}/api/v1/stores/{store}/events", urls[target]))
                        .bearer_auth(TOKEN)
                        .json(&json!({ "events": [event] }))
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if ok {
                        latencies.lock().unwrap().push(start.elapsed());
                        let mut acked = acked.lock().unwrap();
                        acked.push((store.clone(), client.clone(), n));
                        break;
                    }
                    // The instance is gone: the next one (pushes are idempotent).
                    target = (target + 1) % urls.len();
                }
                if done_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
                    == pushers * pushes / 2
                {
                    halfway.notify_one();
                }
            }
        }));
    }
    if kill_halfway {
        halfway.notified().await;
        instances[1].kill();
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed();
    let acked = acked.lock().unwrap().clone();
    // Every acknowledged event reaches every subscriber of its store (bounded wait).
    let per_store: HashMap<String, usize> =
        acked.iter().fold(HashMap::new(), |mut m, (s, _, _)| {
            *m.entry(s.clone()).or_default() += 1;
            m
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = subscribers.iter().all(|(store, seen, _)| {
            seen.lock().unwrap().counts.len() >= per_store.get(store).copied().unwrap_or(0)
        });
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let sent_at = sent_at.lock().unwrap().clone();
    let mut deliveries = Vec::new();
    let (mut missing, mut duplicates, mut out_of_order) = (0usize, 0u64, 0u64);
    for (store, seen, task) in subscribers {
        task.abort();
        let s = seen.lock().unwrap();
        let want = per_store.get(&store).copied().unwrap_or(0);
        // Sequence numbers 1..=want, each once.
        missing += (1..=want as u64)
            .filter(|q| !s.counts.contains_key(q))
            .count();
        duplicates += s.counts.values().map(|c| u64::from(*c - 1)).sum::<u64>();
        out_of_order += s.out_of_order;
        for (id, at) in &s.first_at {
            if let Some(sent) = sent_at.get(id) {
                deliveries.push(at.saturating_duration_since(*sent));
            }
        }
    }
    let mut push_lat = latencies.lock().unwrap().clone();
    push_lat.sort();
    deliveries.sort();
    println!(
        "{name:<44} {:>7.0} pushes/s  push p50 {:>6.1} ms p99 {:>6.1} ms  delivery p50 {:>6.1} ms p99 {:>6.1} ms  acked {:>5}  missing {missing}  duplicates {duplicates}  out-of-order {out_of_order}",
        acked.len() as f64 / elapsed.as_secs_f64(),
        percentile(&push_lat, 0.5),
        percentile(&push_lat, 0.99),
        percentile(&deliveries, 0.5),
        percentile(&deliveries, 0.99),
        acked.len(),
    );
    assert_eq!(
        acked.len(),
        pushers * pushes,
        "{name}: every push acknowledged"
    );
    assert_eq!(
        missing, 0,
        "{name}: a subscriber missed acknowledged events"
    );
    // And the log holds every acknowledged event (read through a surviving instance).
    let base = &instances[0].url;
    for (store, count) in &per_store {
        let n = pull_all(&http, base, TOKEN, store).await.len();
        assert_eq!(n, *count, "{name}: the log of {store}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture (needs FILESYNC_TEST_DATABASE_URL)"]
async fn many_clients_on_sqlite_and_postgres() {
    // 1,000 subscribers and the servers' sockets: more descriptors than the default 1,024.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    filesync_server::blobs::install_tls_provider();
    // (backend, instances) for each layout, then the kill.
    for stores in [1, 100] {
        for (postgres, instances) in [(false, 1), (true, 1), (true, 2)] {
            let name = format!(
                "{}, {instances} instance(s), {stores} store(s)",
                if postgres { "postgres" } else { "sqlite" }
            );
            scenario(&name, postgres, instances, stores, false).await;
        }
    }
    scenario(
        "postgres, 2 instances, 100 stores, 1 killed",
        true,
        2,
        100,
        true,
    )
    .await;
}

/// Starts `instances` servers (on a new PostgreSQL database, or one on SQLite), sharing a data
/// dir, and runs the load against them.
async fn scenario(name: &str, postgres: bool, instances: usize, stores: usize, kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = if postgres {
        Some(pg_database("load").await)
    } else {
        None
    };
    let mut servers: Vec<Instance> = (0..instances)
        .map(|_| Instance::start(dir.path(), url.as_deref()))
        .collect();
    run(name, &mut servers, stores, kill).await;
}
