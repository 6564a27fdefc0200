//! A node's runtime services in the simulation: the engine's actions executed in order
//! (persisted records, messages, timers, transactions from the mempool, block fetching, proof of
//! work), and committed blocks executed on the node's ledger with the invariants checked.

use super::*;

impl World<'_> {
    /// Executes actions in order; returns the local events they produce.
    pub(super) fn run_actions(&mut self, i: usize, out: Vec<Action>) -> Vec<Event> {
        let mut local = Vec::new();
        for action in out {
            match action {
                Action::Send { to, msg } => {
                    if let Some(j) = self.keys.iter().position(|k| *k == to) {
                        self.send(i, j, Payload::Consensus(msg));
                    }
                }
                Action::Broadcast(msg) => {
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.send(i, j, Payload::Consensus(msg.clone()));
                        }
                    }
                }
                Action::SetTimer { id, after } => {
                    self.seq += 1;
                    let token = self.seq;
                    self.nodes[i].timers.insert(id, token);
                    self.schedule(
                        self.now + after.as_millis() as u64,
                        Item::Timer { node: i, id, token },
                    );
                }
                Action::CancelTimer(id) => {
                    self.nodes[i].timers.remove(&id);
                }
                Action::Persist { key, value } => {
                    let records = &mut self.nodes[i].records;
                    match value {
                        Some(v) => records.insert(key, v),
                        None => records.remove(&key),
                    };
                }
                Action::PersistCandidate { key, value, block } => {
                    // The record and the block are kept together: a crash happens between
                    // steps, never inside one.
                    let height = block.header.height;
                    if let Err(e) = self.nodes[i].ledger.put_candidate(&block, &key, &value) {
                        self.violation(format!(
                            "node {i}: the ledger refused a candidate block for height {height}: {e}"
                        ));
                    }
                    self.nodes[i].records.insert(key, value);
                }
                Action::Commit { block, certificate } => {
                    if let Some(ev) = self.commit(i, block, certificate) {
                        local.push(ev);
                    }
                }
                Action::NeedTransactions { max } => {
                    let txs: Vec<Transaction> =
                        self.nodes[i].mempool.values().take(max).cloned().collect();
                    let hashes = txs.iter().map(Transaction::hash).collect();
                    local.push(Event::Transactions { txs, hashes });
                }
                Action::NeedBlocks { from_height, peer } => {
                    let target = peer
                        .and_then(|p| self.keys.iter().position(|k| *k == p))
                        .filter(|&j| j != i)
                        .unwrap_or_else(|| {
                            let j = self.rng.gen_range(0..self.nodes.len() - 1);
                            if j >= i {
                                j + 1
                            } else {
                                j
                            }
                        });
                    self.send(i, target, Payload::BlockRequest { from_height });
                }
                Action::StartWork { header, target } => self.start_work(i, header, target),
                Action::StopWork => self.nodes[i].work = None,
            }
        }
        local
    }

    /// Schedules the solution of a proof-of-work search: an exponentially distributed time
    /// from node `i`'s share of the hash power, and a real nonce (found by brute force).
    pub(super) fn start_work(&mut self, i: usize, header: medchain_types::Header, target: Hash) {
        let EngineKind::Pow(cfg) = &self.cfg.engine else {
            return;
        };
        let n = self.nodes.len();
        let power = |j: usize| self.cfg.hash_power.get(j).copied().unwrap_or(1.0).max(0.0);
        let total: f64 = (0..n).map(power).sum();
        let share = if total > 0.0 { power(i) / total } else { 0.0 };
        self.seq += 1;
        let token = self.seq;
        self.nodes[i].work = Some(token);
        if share <= 0.0 {
            return;
        }
        let relative =
            medchain_pow::work(&target) as f64 / medchain_pow::work(&cfg.initial_target) as f64;
        let mean_ms = cfg.block_interval.as_millis() as f64 * relative / share;
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let after = (-u.ln() * mean_ms).round().max(1.0) as u64;
        let mut nonce: u64 = self.rng.gen();
        while medchain_consensus::work_hash(&header, nonce) > target {
            nonce = nonce.wrapping_add(1);
        }
        self.schedule(
            self.now + after,
            Item::WorkFound {
                node: i,
                token,
                header: Box::new(header),
                nonce,
            },
        );
    }

    /// Executes and stores a final block at node `i`, checking the invariants.
    pub(super) fn commit(
        &mut self,
        i: usize,
        block: Block,
        certificate: Certificate,
    ) -> Option<Event> {
        let height = block.header.height;
        let hash = block.hash();
        if self.cfg.attack.is_some_and(|a| a.attacker == i) {
            // The adversary's own ledger is not judged.
            let (tip, _) = self
                .executor
                .apply(&self.nodes[i].ledger, &block, &certificate)
                .ok()?;
            return Some(Event::BlockExecuted {
                height,
                state_root: tip.state_root,
            });
        }
        match self.finals.get(&height) {
            Some(h) if *h != hash => {
                self.violation(format!(
                    "two different blocks final at height {height}: {h} and {hash} (node {i})"
                ));
                return None;
            }
            _ => {}
        }
        let result = self
            .executor
            .apply(&self.nodes[i].ledger, &block, &certificate);
        if self.trace {
            eprintln!(
                "{:>6} node {i} COMMITS n{height} {} txs={} view-status {:?}",
                self.now,
                short(&hash),
                block.txs.len(),
                self.nodes[i].engine.as_ref().map(|e| e.status().view)
            );
        }
        let (tip, receipts) = match result {
            Ok(r) => r,
            Err(e) => {
                self.violation(format!(
                    "node {i}: the ledger refused final block {height}: {e}"
                ));
                return None;
            }
        };
        if self.finals.insert(height, hash).is_none() {
            // First time this height is final anywhere: count successful executions.
            for r in &receipts {
                if r.status == TxStatus::Success {
                    if let Some(h) = self.executed_once.insert(r.tx_hash, height) {
                        self.violation(format!(
                            "transaction {} executed at heights {h} and {height}",
                            r.tx_hash
                        ));
                    }
                }
            }
        }
        match self.roots.get(&height) {
            Some(r) if *r != tip.state_root => {
                self.violation(format!(
                    "state roots differ at height {height}: {r} and {} (node {i})",
                    tip.state_root
                ));
            }
            _ => {
                self.roots.insert(height, tip.state_root);
            }
        }
        let node = &mut self.nodes[i];
        if height <= node.committed_height {
            let prev = node.committed_height;
            self.violation(format!(
                "node {i} committed height {height} after height {prev}"
            ));
        }
        let node = &mut self.nodes[i];
        node.committed_height = height;
        let committed: BTreeSet<Hash> = receipts.iter().map(|r| r.tx_hash).collect();
        node.mempool.retain(|_, t| !committed.contains(&t.hash()));
        node.in_mempool.retain(|h| !committed.contains(h));
        Some(Event::BlockExecuted {
            height,
            state_root: tip.state_root,
        })
    }
}
