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

/// The private-chain attack of `SimConfig::attack` with an attacker holding `share` of the
/// hash power; returns (runs where the attacker overtook the honest chain after finality,
/// runs where an honest node finalized a conflicting block).
fn attack(share: f64, seeds: u64, horizon_s: u64) -> (u64, u64) {
    let mut cfg = SimConfig::new(pow(), 5);
    cfg.faults = Faults::default();
    cfg.txs = 0;
    cfg.fault_window = std::time::Duration::from_secs(horizon_s);
    let honest = (1.0 - share) / 3.0;
    // Node 0 attacks; node 4 is the late node (no hash power).
    cfg.hash_power = vec![share, honest, honest, honest, 0.0];
    cfg.attack = Some(medchain_sim::Attack {
        attacker: 0,
        late: 4,
        start_ms: 10_000,
    });
    let (mut released, mut reverted) = (0, 0);
    for seed in 1..=seeds {
        let r = medchain_sim::run_seed(&cfg, seed);
        released += r.attack_released_ms.is_some() as u64;
        let conflict = r
            .violations
            .iter()
            .any(|v| v.what.contains("two different blocks final"));
        reverted += conflict as u64;
        assert!(
            r.violations
                .iter()
                .all(|v| v.what.contains("two different blocks final")),
            "seed {seed}: {:?}",
            r.violations
        );
    }
    (released, reverted)
}

#[test]
fn a_majority_attacker_overtakes_final_blocks_and_a_minority_one_does_not() {
    // What the engine promises: k confirmations make a block final against a minority of the
    // hash power, not against a majority. A 51% attacker overtakes blocks the honest nodes
    // had finalized (within 30 simulated minutes), and a node that hears the attacker first
    // finalizes the attacker's blocks: the network splits, which the honest nodes cannot undo.
    let (released, reverted) = attack(0.51, 4, 1800);
    eprintln!("51% attacker: released {released}/4, conflicting finality {reverted}/4");
    assert!(released >= 3 && reverted >= 3, "{released} {reverted}");
    // A 20% attacker does not catch up six confirmations in the same time.
    let (released, reverted) = attack(0.2, 4, 1800);
    eprintln!("20% attacker: released {released}/4, conflicting finality {reverted}/4");
    assert_eq!((released, reverted), (0, 0));
}
