//! Proof of stake passes the engine conformance suite.

use medchain_consensus::conformance;
use medchain_pos::{Pos, PosConfig};

#[test]
fn pos_passes_the_conformance_suite() {
    conformance::check_engine(&|ctx| Box::new(Pos::new(ctx, PosConfig::default())));
}

/// Stake and unstake transactions in final blocks change the stake table at the next epoch
/// boundary, not before; a replayed or oversized operation changes nothing.
#[test]
fn stake_operations_take_effect_at_the_epoch_boundary() {
    use medchain_consensus::conformance::{validator_key, Harness, CHAIN};
    use medchain_types::staking::{StakeOp, STAKING_CHAINCODE};
    use medchain_types::{codec, Transaction};
    let cfg = PosConfig {
        epoch_length: 8,
        ..PosConfig::default()
    };
    let factory = |ctx| Box::new(Pos::new(ctx, cfg.clone())) as Box<dyn medchain_consensus::Engine>;
    let mut h = Harness::new(4, &factory);
    let op = |i: usize, op: StakeOp, nonce: u64| {
        Transaction::signed(
            CHAIN,
            STAKING_CHAINCODE,
            codec::encode(&op),
            nonce,
            &validator_key(i),
        )
    };
    let unstake = op(1, StakeOp::Unstake { amount: 60 }, 1);
    let stake = op(2, StakeOp::Stake { amount: 10 }, 2);
    let too_much = op(3, StakeOp::Stake { amount: 1_000 }, 3);
    h.submit([unstake.clone(), stake, too_much]);
    let committed =
        |h: &Harness, tx: &Transaction| h.chain(0).iter().any(|(b, _)| b.txs.contains(tx));
    assert!(h.run_until(60_000, |h| committed(h, &unstake)));
    let height = h.chain(0).len() as u64 - 1;
    assert!(height < 8, "committed in epoch 0 (height {height})");
    let stakes = |h: &Harness| h.status(0).extra["stakes"].clone();
    let before = stakes(&h);
    assert!(
        !before.contains(":40") && !before.contains(":110"),
        "{before}"
    );
    // The replay of the unstake (same transaction) must not subtract again.
    h.submit([unstake]);
    assert!(h.run_until(60_000, |h| h.chain(0).len() > 10));
    let after = stakes(&h);
    let key = |i: usize| validator_key(i).public().to_hex()[..16].to_owned();
    assert!(after.contains(&format!("{}:40", key(1))), "{after}");
    assert!(after.contains(&format!("{}:110", key(2))), "{after}");
    assert!(after.contains(&format!("{}:100", key(3))), "{after}");
    assert_eq!(h.status(0).extra["total_stake"], "350");
    // Every validator agrees.
    for i in 1..4 {
        assert_eq!(stakes(&h), h.status(i).extra["stakes"]);
    }
}
