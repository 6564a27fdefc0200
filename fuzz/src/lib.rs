//! What the fuzz targets share: a reader that splits one fuzzer input into fields, a driver that
//! feeds events to a consensus engine as the node's runtime would, and the parties of the
//! chaincode targets.

use medchain_consensus::{
    conformance, Action, ChainTip, Engine, EngineContext, Event, TimerId, ValidatorSet, VerifyAll,
};
use medchain_types::{codec, sha256, Block, Certificate, Hash, PublicKey, SecretKey};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Reads fields off the front of a fuzzer input; every read succeeds (with zeros or an empty
/// slice once the input is used up).
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { rest: data }
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        let (b, rest) = self
            .rest
            .split_first()
            .map_or((0, &[][..]), |(b, r)| (*b, r));
        self.rest = rest;
        b
    }

    /// Two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// A slice whose length is the next two bytes (cut to what is left).
    pub fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16()).min(self.rest.len());
        let (b, rest) = self.rest.split_at(len);
        self.rest = rest;
        b
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Validators of the engine targets.
pub const VALIDATORS: usize = 4;

/// The keys of the engine targets' validators (the conformance suite's).
pub fn validator_keys() -> Vec<SecretKey> {
    (0..VALIDATORS).map(conformance::validator_key).collect()
}

/// The context of validator `me` of [`VALIDATORS`], at the conformance suite's genesis.
pub fn engine_context(me: usize) -> EngineContext {
    let keys = validator_keys();
    let validators = ValidatorSet::new(keys.iter().map(SecretKey::public)).expect("distinct keys");
    let genesis = conformance::genesis(&validators);
    EngineContext {
        chain_id: conformance::CHAIN.into(),
        key: keys[me % VALIDATORS].clone(),
        validators,
        tip: ChainTip {
            header: genesis.header.clone(),
            certificate: Certificate::default(),
            state_root: Hash::ZERO,
        },
        records: BTreeMap::new(),
        candidate: None,
        verifier: Arc::new(VerifyAll {
            chain_id: conformance::CHAIN.into(),
        }),
    }
}

/// Feeds the events that `data` describes to `engine`, answering its actions as the node's
/// runtime does: messages from any validator or a stranger (`from` is authenticated by the
/// transport, the bytes are anything), blocks a peer sent in answer to a fetch (decoded as the
/// node decodes them, with no check of structure or certificate), timers that the engine set,
/// time that passes, and transactions and executions when the engine asks for them. Each
/// message's bytes go to `check` first.
pub fn drive(engine: &mut dyn Engine, data: &[u8], check: impl Fn(&[u8])) {
    let mut r = Reader::new(data);
    let senders: Vec<PublicKey> = validator_keys()
        .iter()
        .map(SecretKey::public)
        .chain([SecretKey::from_seed([0xee; 32]).public()])
        .collect();
    let mut now = 1_000;
    let mut out = Vec::new();
    engine.start(now, &mut out);
    let mut timers = BTreeSet::new();
    let mut root = Hash::ZERO;
    let mut steps = 0;
    while !r.is_empty() && steps < 256 {
        steps += 1;
        let mut pending = Vec::new();
        for a in out.drain(..) {
            match a {
                Action::SetTimer { id, .. } => {
                    timers.insert(id);
                }
                Action::CancelTimer(id) => {
                    timers.remove(&id);
                }
                Action::Commit { block, .. } => {
                    root = sha256(&[root.0, block.hash().0].concat());
                    pending.push(Event::BlockExecuted {
                        height: block.header.height,
                        state_root: root,
                    });
                }
                Action::NeedTransactions { .. } => pending.push(Event::Transactions {
                    txs: Vec::new(),
                    hashes: Vec::new(),
                }),
                _ => {}
            }
        }
        for e in pending {
            engine.handle(now, e, &mut out);
        }
        now += u64::from(r.u16());
        let event = match r.u8() % 4 {
            0 => {
                let from = senders[usize::from(r.u8()) % senders.len()];
                let bytes = r.bytes();
                check(bytes);
                Event::Message {
                    from,
                    bytes: bytes.to_vec(),
                }
            }
            1 => {
                let Ok(block) = codec::decode::<Block>(r.bytes()) else {
                    continue;
                };
                Event::SyncedBlock {
                    block,
                    certificate: Certificate(r.bytes().to_vec()),
                }
            }
            2 => {
                let Some(&id) = timers.iter().nth(usize::from(r.u8()) % timers.len().max(1)) else {
                    continue;
                };
                Event::TimerFired(id)
            }
            _ => Event::TimerFired(TimerId(u64::from(r.u8()))),
        };
        engine.handle(now, event, &mut out);
        let _ = engine.status();
    }
}

/// Parties of the chaincode targets: key `i` is `SecretKey::from_seed([0xa0 + i; 32])`; key 0
/// is the administrator named at genesis.
pub const PARTIES: u8 = 6;

/// Party `i` of the chaincode targets (see [`PARTIES`]).
pub fn party(i: u8) -> SecretKey {
    SecretKey::from_seed([0xa0 + i % PARTIES; 32])
}
