//! Proof of work in the simulator: every fault on many seeds, and stale-block rates against the
//! analytic rate for a given propagation delay.

use medchain_sim::{run_many, EngineKind, Faults, SimConfig};

fn pow() -> EngineKind {
    EngineKind::by_name("pow").unwrap()
}

#[test]
fn pow_survives_every_fault_on_many_seeds() {
    let cfg = SimConfig::new(pow(), 4);
    let seeds = std::env::var("MEDCHAIN_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let summary = run_many(&cfg, 1, seeds, 2, &|_| {});
    for f in &summary.failures {
        eprintln!("seed {} failed: {:?}", f.seed, f.violations);
    }
    assert!(
        summary.failures.is_empty(),
        "{} of {} seeds broke an invariant",
        summary.failures.len(),
        summary.runs
    );
    assert!(
        summary.blocks > seeds * 10,
        "runs made progress ({} blocks)",
        summary.blocks
    );
    eprintln!(
        "pow: {} seeds, 0 violations, {} blocks, {} txs, {} s simulated, {} ms real",
        summary.runs,
        summary.blocks,
        summary.committed_txs,
        summary.simulated_ms / 1000,
        summary.real_ms
    );
}

/// Stale rate with a fixed one-way delay `d` and no faults, over `seeds` runs of 10 miners.
fn stale_rate(delay_ms: u64, seeds: u64) -> (f64, u64) {
    let mut cfg = SimConfig::new(pow(), 10);
    cfg.faults = Faults::default();
    cfg.latency_ms = (delay_ms, delay_ms);
    cfg.txs = 0;
    cfg.fault_window = std::time::Duration::from_secs(300);
    let summary = run_many(&cfg, 1, seeds, 2, &|_| {});
    assert!(
        summary.failures.is_empty(),
        "{:?}",
        summary.failures.first()
    );
    let (mined, stale) = (summary.mined_blocks, summary.stale_blocks);
    (stale as f64 / mined as f64, mined)
}

#[test]
fn stale_rate_follows_the_propagation_delay() {
    // Analytic rate for a block interval T and delay d: 1 - e^(-d/T). Ten miners, so the nine
    // others hold 90% of the power while a block propagates.
    let interval = 2000.0;
    for delay in [100u64, 400] {
        let (rate, mined) = stale_rate(delay, 8);
        let analytic = 1.0 - (-(delay as f64) / interval).exp();
        eprintln!("delay {delay} ms: stale {rate:.4} of {mined} mined, analytic {analytic:.4}");
        assert!(
            (rate / analytic - 1.0).abs() < 0.35,
            "delay {delay} ms: stale rate {rate:.4} vs analytic {analytic:.4}"
        );
    }
}
