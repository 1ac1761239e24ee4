//! Deterministic simulation of browsers, tabs, a server and faults, checked against invariants.
//!
//! `cargo test --test simulation` runs 1,000 seeds. `FILESYNC_SIM_SEEDS=N` runs N seeds (a
//! longer soak), `FILESYNC_SIM_SEED=S` replays one seed and prints its trace. A failing seed
//! prints itself and the tail of its trace.
#![cfg(not(target_arch = "wasm32"))]

mod sim;

use std::thread;

fn run_seed(seed: u64) -> Result<(u64, usize), String> {
    let mut w = sim::World::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.run();
        w.check()
    }));
    let failure = match outcome {
        Ok(Ok(())) => return Ok((w.steps, w.file_count())),
        Ok(Err(violation)) => violation,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
    };
    let r = w.report();
    let keep = if std::env::var("FILESYNC_SIM_SEED").is_ok() {
        4000
    } else {
        60
    };
    let tail = r.trace[r.trace.len().saturating_sub(keep)..].join("\n");
    Err(format!(
        "seed {} failed: {failure}\nplan: {:?}\nreplay: FILESYNC_SIM_SEED={} cargo test --test simulation\nlast trace lines:\n{tail}",
        r.seed, r.plan, r.seed
    ))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn seeds_converge_and_keep_every_invariant() {
    if let Some(seed) = env_u64("FILESYNC_SIM_SEED") {
        match run_seed(seed) {
            Ok((steps, files)) => println!("seed {seed}: ok, {steps} engine steps, {files} files"),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let seeds = env_u64("FILESYNC_SIM_SEEDS").unwrap_or(1_000);
    let threads = thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            thread::spawn(move || {
                let mut failures = Vec::new();
                let (mut steps, mut files) = (0u64, 0usize);
                for seed in (t..seeds).step_by(threads as usize) {
                    match run_seed(seed) {
                        Ok((s, f)) => {
                            steps += s;
                            files += f;
                        }
                        Err(e) => failures.push(e),
                    }
                }
                (failures, steps, files)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let (mut steps, mut files) = (0, 0);
    for h in handles {
        let (f, s, n) = h.join().expect("simulation thread");
        failures.extend(f);
        steps += s;
        files += n;
    }
    println!("{seeds} seeds: {steps} engine steps, {files} files at the end");
    assert!(
        files > 0,
        "the workload created no files: the simulation checks nothing"
    );
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{}", f.lines().next().unwrap_or_default());
        }
        panic!(
            "{} of {seeds} seeds failed; first:\n{}",
            failures.len(),
            failures[0]
        );
    }
}
