//! Proof of stake in the simulator: every fault on many seeds, and an equivocating validator
//! slashed by the others' evidence.

use medchain_pos::PosConfig;
use medchain_sim::{run_many, run_seed, EngineKind, Faults, SimConfig};

fn pos() -> EngineKind {
    EngineKind::by_name("pos").unwrap()
}

#[test]
fn pos_survives_every_fault_on_many_seeds() {
    let cfg = SimConfig::new(pos(), 4);
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
        "pos: {} seeds, 0 violations, {} blocks, {} txs, {} s simulated, {} ms real",
        summary.runs,
        summary.blocks,
        summary.committed_txs,
        summary.simulated_ms / 1000,
        summary.real_ms
    );
}

#[test]
fn an_equivocating_validator_is_slashed_and_the_rest_stay_safe() {
    let EngineKind::Pos(honest) = pos() else {
        unreachable!()
    };
    let byzantine = EngineKind::Pos(PosConfig {
        unsafe_equivocate: true,
        ..honest.clone()
    });
    let mut cfg = SimConfig::new(EngineKind::Pos(honest), 4);
    cfg.faults = Faults::parse("drop,dup,reorder").unwrap();
    cfg.byzantine = Some((3, byzantine));
    for seed in 1..=5 {
        let report = run_seed(&cfg, seed);
        assert!(report.violations.is_empty(), "seed {seed}: {report:?}");
        let status = report.statuses[0].clone();
        let slashed = status.extra.get("slashed").cloned().unwrap_or_default();
        let offender = medchain_consensus::conformance::validator_key(3)
            .public()
            .to_hex();
        assert!(
            !slashed.is_empty() && offender.starts_with(&slashed),
            "seed {seed}: node 3 slashed ({slashed:?}), status {status:?}"
        );
        assert!(
            status
                .counters
                .get("equivocations_detected")
                .copied()
                .unwrap_or(0)
                >= 1,
            "{status:?}"
        );
        assert!(
            report.height > 16,
            "progress after slashing: {}",
            report.height
        );
    }
}
