//! The deterministic simulator: N consensus engines, each with a real ledger (RocksDB in
//! memory) and executor, over a simulated network with a virtual clock, all driven by one seed.
//!
//! Faults (each optional): message latency drawn from a distribution, drops, duplicates,
//! reordering (extra random delay), partitions (two-way and one-way), and crash/restart in which
//! a node keeps only its ledger and what its engine persisted. Faults happen during a fault
//! window; after it everything heals and the run checks liveness.
//!
//! After every step the run checks the safety invariants: no two different blocks final at one
//! height, no final block reverted, every acknowledged transaction executed exactly once, equal
//! state roots at equal heights. An engine that panics (a broken assertion of its own) is a
//! violation too. A run is a function of its seed: a failing seed is printed and replays exactly.

mod runtime;

pub use runtime::{run_seed, Attack, EngineKind, Faults, RunReport, SimConfig, Violation};

use std::time::Instant;

/// Totals over many seeds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Seeds run.
    pub runs: u64,
    /// Seeds with at least one violation, with their reports.
    pub failures: Vec<RunReport>,
    /// Sum of the final heights reached.
    pub blocks: u64,
    /// Transactions committed, summed over runs.
    pub committed_txs: u64,
    /// Simulated time, summed.
    pub simulated_ms: u64,
    /// Wall-clock time of the whole batch.
    pub real_ms: u64,
    /// Proof of work: blocks mined at or below each run's final height, summed.
    pub mined_blocks: u64,
    /// Proof of work: of those, blocks left out of the final chain (stale), summed.
    pub stale_blocks: u64,
}

/// Runs seeds `first..first + count` on `threads` threads; `progress` sees each report as it
/// completes. The result does not depend on the thread count.
pub fn run_many(
    cfg: &SimConfig,
    first: u64,
    count: u64,
    threads: usize,
    progress: &(dyn Fn(&RunReport) + Sync),
) -> Summary {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicU64::new(first);
    let reports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seed >= first + count {
                    return;
                }
                let report = run_seed(cfg, seed);
                progress(&report);
                reports.lock().expect("reports lock").push(report);
            });
        }
    });
    let mut reports = reports.into_inner().expect("reports lock");
    reports.sort_by_key(|r| r.seed);
    let mut summary = Summary {
        runs: reports.len() as u64,
        real_ms: started.elapsed().as_millis() as u64,
        ..Summary::default()
    };
    for r in reports {
        summary.blocks += r.height;
        summary.committed_txs += r.committed_txs;
        summary.simulated_ms += r.simulated_ms;
        summary.mined_blocks += r.mined_blocks;
        summary.stale_blocks += r.stale_blocks;
        if !r.violations.is_empty() {
            summary.failures.push(r);
        }
    }
    summary
}
