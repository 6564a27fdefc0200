//! The simulator finds what it should: clean runs of PBFT under every fault, and a violation for
//! an engine with a deliberately broken quorum.

use medchain_pbft::PbftConfig;
use medchain_sim::{run_many, run_seed, EngineKind, Faults, SimConfig};
use std::time::Duration;

fn pbft() -> EngineKind {
    EngineKind::by_name("pbft").unwrap()
}

#[test]
fn pbft_survives_every_fault_on_many_seeds() {
    let cfg = SimConfig::new(pbft(), 4);
    let seeds = std::env::var("MEDCHAIN_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
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
    assert_eq!(summary.runs, seeds);
    assert!(
        summary.blocks > seeds * 5,
        "runs made progress ({} blocks)",
        summary.blocks
    );
    eprintln!(
        "pbft: {} seeds, 0 violations, {} blocks, {} txs, {} s simulated, {} ms real",
        summary.runs,
        summary.blocks,
        summary.committed_txs,
        summary.simulated_ms / 1000,
        summary.real_ms
    );
}

#[test]
fn seven_validators_survive_every_fault() {
    let cfg = SimConfig::new(pbft(), 7);
    let summary = run_many(&cfg, 1000, 20, 2, &|_| {});
    assert!(
        summary.failures.is_empty(),
        "{:?}",
        summary.failures.first().map(|f| &f.violations)
    );
}

#[test]
fn a_seed_replays_exactly() {
    let cfg = SimConfig::new(pbft(), 4);
    let a = run_seed(&cfg, 77);
    let b = run_seed(&cfg, 77);
    assert_eq!(
        (a.events, a.height, a.committed_txs, a.simulated_ms),
        (b.events, b.height, b.committed_txs, b.simulated_ms)
    );
    let c = run_seed(&cfg, 78);
    assert_ne!(a.events, c.events, "another seed, another run");
}

#[test]
fn the_checker_catches_an_engine_with_a_broken_quorum() {
    // A quorum of 2 out of 4: two disjoint pairs can both commit. Partitions split them.
    let broken = EngineKind::Pbft(PbftConfig {
        unsafe_quorum_override: Some(2),
        timeout_view_change: Duration::from_millis(500),
        batch_poll: Duration::from_millis(20),
        ..PbftConfig::default()
    });
    let mut cfg = SimConfig::new(broken, 4);
    cfg.faults = Faults::parse("partition").unwrap();
    cfg.txs = 120;
    let summary = run_many(&cfg, 1, 60, 2, &|_| {});
    let caught = summary
        .failures
        .iter()
        .flat_map(|f| &f.violations)
        .find(|v| {
            v.what.contains("two different blocks final") || v.what.contains("refused final block")
        });
    assert!(
        caught.is_some(),
        "60 seeds of a quorum-2 engine under partitions broke no safety invariant"
    );
    eprintln!("caught: {:?}", caught.unwrap());
}
