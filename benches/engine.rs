//! Native benchmark of the sans-IO engine at 100,000 files (`cargo bench --bench engine`).
//!
//! Not a test: nothing here asserts on time. It prints, for each figure, the median of
//! `BENCH_RUNS` runs (default 7, after one warm-up run), a baseline measured in the same run
//! and the ratio between the two, then one line of JSON for scripts. The issue's target is
//! 200 ms per figure; whether it is met is printed as information only.
//!
//! Figures (see `docs/BENCHMARKS.md`):
//! 1. `materialize`: 100,000 confirmed events (60k creates, 30k updates, 10k deletes) applied to
//!    a fresh `FilesTable` in one `apply_confirmed` call.
//! 2. `bootstrap`: `Engine::new` (`Mode::Remote`) from a snapshot of 100,000 confirmed live rows
//!    and no per-client rows, so every file is reconciled (and again with lazy downloads: no
//!    download tasks); `cold_start`: the same with the
//!    per-client rows already present (`engine.snapshot()` of the first engine).
//! 3. `status`: `engine.status()` over the 100,000 per-client rows.
//!
//! Inputs are cloned before the clock starts and outputs dropped after it stops, so only the
//! measured call is timed.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use filesync::core::local::LocalState;
use filesync::core::table::{fold, FilesTable};
use filesync::core::{
    ClientId, Config, ConfirmedEvent, ContentHash, Engine, EventId, FileCreated, FileDeleted,
    FileEvent, FileId, FileInfo, FileRow, FileUpdated, MetadataPatch, Millis, Mode, RemoteKey, Seq,
    Snapshot, StoreId, SyncStatus, TransferStatus,
};

const FILES: usize = 100_000;
const TARGET_MS: f64 = 200.0;
/// Pull page size of the engine (`Config::batch_limit`), for the paged variant of (1).
const PAGE: usize = 256;

// ----- measuring -------------------------------------------------------------------------------

/// Median of `xs` (mean of the two middle values for an even count).
fn median(xs: &[Duration]) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    let n = v.len();
    assert!(n > 0, "no samples");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// Timings of one figure.
struct Sample {
    median: Duration,
    min: Duration,
    max: Duration,
}

/// Runs `setup` untimed, then times `f` on its result; one warm-up run, then `runs` timed
/// ones. The value `f` returns is dropped after the clock stops.
fn measure<I, O>(runs: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> O) -> Sample {
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let input = setup();
        let t0 = Instant::now();
        let out = black_box(f(black_box(input)));
        let dt = t0.elapsed();
        drop(out);
        if i > 0 {
            times.push(dt);
        }
    }
    Sample {
        median: median(&times),
        min: *times.iter().min().expect("runs > 0"),
        max: *times.iter().max().expect("runs > 0"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----- data ------------------------------------------------------------------------------------

fn store() -> StoreId {
    StoreId::new("bench-store").expect("valid store id")
}

fn fid(i: usize) -> FileId {
    FileId::new(format!("file-{i:06}")).expect("valid file id")
}

/// A distinct content hash per `(i, version)`, without hashing bytes.
fn hash(i: usize, version: u8) -> ContentHash {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b[8] = version;
    b[31] = 0xb5;
    ContentHash::from_bytes(b)
}

fn info(i: usize, version: u8) -> FileInfo {
    let (name, mime) = match i % 4 {
        0 => (format!("photo-{i}.jpg"), "image/jpeg"),
        1 => (format!("notes-{i}.txt"), "text/plain"),
        2 => (format!("report-{i}.pdf"), "application/pdf"),
        _ => (format!("blob-{i}.bin"), ""),
    };
    FileInfo {
        name,
        mime_type: mime.into(),
        size: 1_000 + (i as u64 * 37) % 5_000_000 + u64::from(version),
    }
}

fn path(i: usize) -> String {
    format!("users/u{}/dir{}/file-{i:06}", i % 97, i % 13)
}

fn metadata(i: usize) -> Option<String> {
    (i % 3 == 0).then(|| format!(r#"{{"album":"a{}","stars":{}}}"#, i % 50, i % 5))
}

fn eid(n: usize) -> EventId {
    EventId {
        client: ClientId::new(format!("client-{}", n % 8)).expect("valid client id"),
        n: n as u64,
    }
}

/// 100,000 confirmed events in ten epochs of 10,000: 6,000 creates, then 3,000 updates of that
/// epoch's even files and 1,000 deletes of its files `≡ 1 (mod 6)`, interleaved. Of the
/// updates, 40% are upload completions (remote key, `expected_content_hash` = current content),
/// 10% stale completions (expected hash no longer holds: skipped by `fold`), 50% edits (new
/// content, new metadata, no key). Totals: 60k created, 30k updated, 10k deleted, 50k live.
fn confirmed_events(store: &StoreId) -> Vec<ConfirmedEvent> {
    const EPOCH_CREATES: usize = 6_000;
    let mut evs: Vec<FileEvent> = Vec::with_capacity(FILES);
    for epoch in 0..10 {
        let base = epoch * EPOCH_CREATES;
        for i in base..base + EPOCH_CREATES {
            evs.push(FileEvent::Created(FileCreated {
                id: fid(i),
                path: path(i),
                content_hash: hash(i, 0),
                info: info(i, 0),
                metadata_json: metadata(i),
                created_at: Millis(1_000 + i as u64),
                updated_at: Millis(1_000 + i as u64),
            }));
        }
        // 3,000 updates and 1,000 deletes: three updates, then one delete.
        let mut updates = (base..base + EPOCH_CREATES).step_by(2);
        let mut deletes = (base + 1..base + EPOCH_CREATES).step_by(6);
        for k in 0..4_000 {
            let at = Millis(10_000_000 + (base + k) as u64);
            if k % 4 == 3 {
                let i = deletes.next().expect("1,000 deletes per epoch");
                evs.push(FileEvent::Deleted(FileDeleted {
                    id: fid(i),
                    deleted_at: at,
                }));
                continue;
            }
            let i = updates.next().expect("3,000 updates per epoch");
            let (content_hash, remote_key, expected, version, meta) = match i / 2 % 10 {
                0..=3 => {
                    let h = hash(i, 0);
                    (
                        h,
                        Some(RemoteKey::for_content(store, &h)),
                        Some(h),
                        0,
                        MetadataPatch::Keep,
                    )
                }
                4 => {
                    let h = hash(i, 0);
                    (
                        h,
                        Some(RemoteKey::for_content(store, &h)),
                        Some(hash(i, 9)),
                        0,
                        MetadataPatch::Keep,
                    )
                }
                _ => (
                    hash(i, 1),
                    None,
                    None,
                    1,
                    MetadataPatch::Set(format!(r#"{{"edited":{k}}}"#)),
                ),
            };
            evs.push(FileEvent::Updated(FileUpdated {
                id: fid(i),
                path: path(i),
                remote_key,
                content_hash,
                info: info(i, version),
                metadata: meta,
                updated_at: at,
                expected_content_hash: expected,
                previous_content_hash: None,
            }));
        }
    }
    assert_eq!(evs.len(), FILES);
    evs.into_iter()
        .enumerate()
        .map(|(n, event)| ConfirmedEvent {
            seq: Seq(n as u64 + 1),
            id: eid(n),
            event,
        })
        .collect()
}

/// 100,000 confirmed live rows: 70% uploaded (remote key set), 30% not; 2% share their content
/// with the previous file (deduplicated transfers).
fn live_rows(store: &StoreId) -> Vec<FileRow> {
    (0..FILES)
        .map(|i| {
            let content_hash = if i % 50 == 49 {
                hash(i - 1, 0)
            } else {
                hash(i, 0)
            };
            FileRow {
                id: fid(i),
                path: path(i),
                content_hash,
                remote_key: (i % 10 < 7).then(|| RemoteKey::for_content(store, &content_hash)),
                info: info(i, 0),
                metadata_json: metadata(i),
                created_at: Millis(1_000 + i as u64),
                updated_at: Millis(2_000 + i as u64),
                deleted_at: None,
            }
        })
        .collect()
}

fn config(store: &StoreId) -> Config {
    Config::new(
        store.clone(),
        ClientId::new("bench-client").expect("valid client id"),
        Mode::Remote,
    )
}

/// Baseline of (1) and (2): the same rows cloned into a plain ordered map.
fn clone_into_map(rows: &[FileRow]) -> BTreeMap<String, FileRow> {
    rows.iter()
        .map(|r| (r.id.as_str().to_string(), r.clone()))
        .collect()
}

/// Second baseline of (1): the same events folded with `table::fold` into a plain map, without
/// the table's cursor, reference indexes and change tracking.
fn fold_into_map(events: &[ConfirmedEvent]) -> BTreeMap<FileId, FileRow> {
    let mut m: BTreeMap<FileId, FileRow> = BTreeMap::new();
    for ev in events {
        let id = ev.event.file_id();
        if let Some(next) = fold(m.get(id), &ev.event) {
            m.insert(id.clone(), next);
        }
    }
    m
}

/// Baseline of (3): count statuses in one loop, no ids collected.
fn count_statuses(local: &LocalState) -> [usize; 7] {
    use TransferStatus::*;
    let mut c = [0usize; 7];
    for r in local.rows() {
        match r.upload {
            InProgress => c[0] += 1,
            Queued => c[1] += 1,
            Pending => c[2] += 1,
            _ => {}
        }
        match r.download {
            InProgress => c[3] += 1,
            Queued => c[4] += 1,
            Pending => c[5] += 1,
            _ => {}
        }
        if r.upload == Error || r.download == Error {
            c[6] += 1;
        }
    }
    c
}

// ----- report ----------------------------------------------------------------------------------

struct Line {
    key: &'static str,
    what: &'static str,
    sample: Sample,
    baseline: Option<(&'static str, Duration)>,
    target: bool,
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(7);
    // BENCH_ONLY=<substring>: measure only the figures whose key contains it (for profiling).
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |key: &str| only.as_deref().is_none_or(|o| key.contains(o));
    let store = store();

    eprintln!("engine bench: building inputs for {FILES} files ...");
    let events = confirmed_events(&store);
    let rows = live_rows(&store);

    // Sanity checks of the inputs (about meaning, never about time).
    let mut probe = FilesTable::default();
    let applied = probe.apply_confirmed(&store, events.clone());
    assert!(
        applied.rejected.is_empty(),
        "{:?}",
        applied.rejected.first()
    );
    let table_rows = probe.confirmed_rows().count();
    let table_live = probe.confirmed_rows().filter(|r| r.is_live()).count();
    let table_uploaded = probe
        .confirmed_rows()
        .filter(|r| r.is_live() && r.remote_key.is_some())
        .count();
    assert_eq!((table_rows, table_live), (60_000, 50_000));
    drop((probe, applied));

    let boot = Engine::new(
        config(&store),
        Snapshot {
            rows: rows.clone(),
            cursor: Seq(FILES as u64),
            ..Snapshot::default()
        },
        Millis(0),
    );
    assert_eq!(boot.local_state().len(), FILES);
    let warm = boot.snapshot();
    assert_eq!(warm.local.len(), FILES);
    let status = boot.status();
    eprintln!(
        "engine bench: table after (1): {table_rows} rows, {table_live} live, {table_uploaded} \
         uploaded; engine: {} per-client rows, {} queued downloads, {} pending downloads, {} \
         queued uploads; {runs} runs + 1 warm-up per figure",
        boot.local_state().len(),
        status.queued_download_count,
        status.pending_download_count,
        status.queued_upload_count,
    );

    let mut lines = Vec::new();

    // (1) materialize.
    let map_baseline = measure(runs, || (), |()| clone_into_map(&rows));
    if want("materialize_100k") {
        lines.push(Line {
            key: "materialize_100k",
            what: "apply 100k confirmed events to a fresh FilesTable (one call)",
            sample: measure(
                runs,
                || (FilesTable::default(), events.clone()),
                |(mut t, evs)| {
                    let applied = t.apply_confirmed(&store, evs);
                    (t, applied)
                },
            ),
            baseline: Some((
                "clone 100k rows into BTreeMap<String, FileRow>",
                map_baseline.median,
            )),
            target: true,
        });
    }
    if want("materialize_100k_paged") {
        lines.push(Line {
            key: "materialize_100k_paged",
            what: "same, in pages of 256 events (as pulled)",
            sample: measure(
                runs,
                || (FilesTable::default(), events.clone()),
                |(mut t, evs)| {
                    let mut evs = evs.into_iter();
                    let mut outs = Vec::with_capacity(FILES / PAGE + 1);
                    loop {
                        let page: Vec<ConfirmedEvent> = evs.by_ref().take(PAGE).collect();
                        if page.is_empty() {
                            break;
                        }
                        outs.push(t.apply_confirmed(&store, page));
                    }
                    (t, outs)
                },
            ),
            baseline: Some((
                "clone 100k rows into BTreeMap<String, FileRow>",
                map_baseline.median,
            )),
            target: false,
        });
    }
    if want("materialize_fold_only") {
        lines.push(Line {
            key: "materialize_fold_only",
            what: "fold the 100k events into a plain BTreeMap (no indexes)",
            sample: measure(runs, || (), |()| fold_into_map(&events)),
            baseline: Some((
                "clone 100k rows into BTreeMap<String, FileRow>",
                map_baseline.median,
            )),
            target: false,
        });
    }

    // (2) reconcile: bootstrap and cold start.
    let bootstrap_snapshot = Snapshot {
        rows: rows.clone(),
        cursor: Seq(FILES as u64),
        ..Snapshot::default()
    };
    if want("reconcile_bootstrap_100k") {
        lines.push(Line {
            key: "reconcile_bootstrap_100k",
            what: "Engine::new, 100k rows, no per-client rows (bootstrap)",
            sample: measure(
                runs,
                || bootstrap_snapshot.clone(),
                |s| Engine::new(config(&store), s, Millis(0)),
            ),
            baseline: Some((
                "clone 100k rows into BTreeMap<String, FileRow>",
                map_baseline.median,
            )),
            target: true,
        });
    }
    if want("reconcile_bootstrap_100k_lazy") {
        // The same with `downloads: 'lazy'`: remote-only rows and no download tasks, next to
        // the eager bootstrap measured just now.
        let eager = measure(
            runs,
            || bootstrap_snapshot.clone(),
            |s| Engine::new(config(&store), s, Millis(0)),
        );
        let lazy = || {
            let mut c = config(&store);
            c.downloads = filesync::core::Downloads::Lazy;
            c
        };
        lines.push(Line {
            key: "reconcile_bootstrap_100k_lazy",
            what: "Engine::new, 100k rows, no per-client rows, downloads lazy",
            sample: measure(
                runs,
                || bootstrap_snapshot.clone(),
                |s| Engine::new(lazy(), s, Millis(0)),
            ),
            baseline: Some(("the same bootstrap, downloads eager", eager.median)),
            target: false,
        });
    }
    if want("cold_start_100k") {
        lines.push(Line {
            key: "cold_start_100k",
            what: "Engine::new, 100k rows + 100k per-client rows",
            sample: measure(
                runs,
                || warm.clone(),
                |s| Engine::new(config(&store), s, Millis(0)),
            ),
            baseline: Some((
                "clone 100k rows into BTreeMap<String, FileRow>",
                map_baseline.median,
            )),
            target: true,
        });
    }
    if want("table_restore_100k") {
        lines.push(Line {
            key: "table_restore_100k",
            what: "FilesTable::restore of the 100k rows alone (part of both)",
            sample: measure(
                runs,
                || rows.clone(),
                |r| FilesTable::restore(r, Seq(FILES as u64), Vec::new()),
            ),
            baseline: Some((
                "clone 100k rows into BTreeMap<String, FileRow>",
                map_baseline.median,
            )),
            target: false,
        });
    }

    // (3) status.
    let count_baseline = measure(runs, || (), |()| count_statuses(boot.local_state()));
    if want("status_100k") {
        lines.push(Line {
            key: "status_100k",
            what: "engine.status() over 100k per-client rows",
            sample: measure(runs, || (), |()| boot.status()),
            baseline: Some((
                "loop counting statuses over the 100k rows",
                count_baseline.median,
            )),
            target: true,
        });
    }
    if want("status_derive_100k") {
        lines.push(Line {
            key: "status_derive_100k",
            what: "SyncStatus::derive(local.rows()) directly",
            sample: measure(
                runs,
                || (),
                |()| SyncStatus::derive(boot.local_state().rows(), 0),
            ),
            baseline: Some((
                "loop counting statuses over the 100k rows",
                count_baseline.median,
            )),
            target: false,
        });
    }

    print_report(runs, &lines, &map_baseline, &count_baseline);
}

fn print_report(runs: usize, lines: &[Line], map_baseline: &Sample, count_baseline: &Sample) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "filesync engine benchmark: {FILES} files, median of {runs} runs after 1 warm-up, \
         {cores} cores, target < {TARGET_MS:.0} ms"
    );
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>12} {:>9}  target",
        "figure", "median ms", "min ms", "max ms", "baseline ms", "ratio"
    );
    println!("{}", "-".repeat(100));
    for l in lines {
        let (base, ratio) = match l.baseline {
            Some((_, b)) => (
                format!("{:.2}", ms(b)),
                format!("{:.1}x", ms(l.sample.median) / ms(b).max(1e-9)),
            ),
            None => ("-".into(), "-".into()),
        };
        let verdict = if !l.target {
            "(info)"
        } else if ms(l.sample.median) < TARGET_MS {
            "meets"
        } else {
            "MISSES"
        };
        println!(
            "{:<26} {:>10.2} {:>10.2} {:>10.2} {:>12} {:>9}  {}",
            l.key,
            ms(l.sample.median),
            ms(l.sample.min),
            ms(l.sample.max),
            base,
            ratio,
            verdict
        );
    }
    println!();
    for l in lines {
        let base = l.baseline.map_or("", |(b, _)| b);
        println!("  {:<26} {}; baseline: {}", l.key, l.what, base);
    }
    println!();

    // One line of JSON, keys in a stable order (figures first); every value is a number or a
    // boolean, so it is written by hand.
    let mut json: Vec<(String, String)> = Vec::new();
    let num = |x: f64| format!("{x:.2}");
    for l in lines {
        json.push((format!("{}_ms", l.key), num(ms(l.sample.median))));
    }
    json.push((
        "baseline_clone_map_100k_ms".into(),
        num(ms(map_baseline.median)),
    ));
    json.push((
        "baseline_count_statuses_100k_ms".into(),
        num(ms(count_baseline.median)),
    ));
    for l in lines {
        if let Some((_, b)) = l.baseline {
            let ratio = ms(l.sample.median) / ms(b).max(1e-9);
            json.push((format!("{}_ratio", l.key), num(ratio)));
        }
    }
    for l in lines.iter().filter(|l| l.target) {
        let meets = ms(l.sample.median) < TARGET_MS;
        json.push((format!("{}_meets_target", l.key), meets.to_string()));
    }
    json.push(("target_ms".into(), num(TARGET_MS)));
    json.push(("files".into(), FILES.to_string()));
    json.push(("runs".into(), runs.to_string()));
    json.push(("cores".into(), cores.to_string()));
    let body: Vec<String> = json.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!("{{{}}}", body.join(", "));
}
