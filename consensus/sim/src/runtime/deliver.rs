//! What happens when the clock reaches a scheduled item: a message delivered (or lost to a
//! partition), a timer, a client transaction, a crash, a restart, a partition or its healing,
//! proof of work found, the checks after healing.

use super::*;

impl World<'_> {
    pub(super) fn handle(&mut self, item: Item) {
        match item {
            Item::Deliver { from, to, payload } => {
                if !self.nodes[to].up {
                    return;
                }
                if self.trace {
                    let what = match &payload {
                        Payload::Consensus(b) => self.cfg.engine.describe(b),
                        Payload::Txs(t) => format!("{} txs", t.len()),
                        Payload::BlockRequest { from_height } => {
                            format!("BlockRequest from {from_height}")
                        }
                        Payload::BlockResponse(b) => format!("BlockResponse {} blocks", b.len()),
                    };
                    eprintln!("{:>6} {from}->{to} {what}", self.now);
                }
                match payload {
                    Payload::Consensus(bytes) => self.engine_event(
                        to,
                        Event::Message {
                            from: self.keys[from],
                            bytes,
                        },
                    ),
                    Payload::Txs(txs) => {
                        for tx in txs {
                            self.admit(to, tx);
                        }
                    }
                    Payload::BlockRequest { from_height } => {
                        let ledger = &self.nodes[to].ledger;
                        let top = ledger.tip().map_or(0, |t| t.height);
                        let blocks: Vec<_> = (from_height..=top.min(from_height + 255))
                            .filter_map(|h| {
                                Some((
                                    ledger.block(h).ok().flatten()?,
                                    ledger.certificate(h).ok().flatten()?,
                                ))
                            })
                            .collect();
                        if !blocks.is_empty() {
                            self.send(to, from, Payload::BlockResponse(blocks));
                        }
                    }
                    Payload::BlockResponse(blocks) => {
                        for (block, certificate) in blocks {
                            self.engine_event(to, Event::SyncedBlock { block, certificate });
                        }
                    }
                }
            }
            Item::Timer { node, id, token } => {
                if self.nodes[node].up && self.nodes[node].timers.get(&id) == Some(&token) {
                    self.nodes[node].timers.remove(&id);
                    self.engine_event(node, Event::TimerFired(id));
                }
            }
            Item::Submit(tx) => {
                let up: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].up)
                    .collect();
                if up.is_empty() {
                    return;
                }
                let at = up[self.rng.gen_range(0..up.len())];
                if self.admit(at, tx.clone()) {
                    for j in 0..self.nodes.len() {
                        if j != at {
                            self.send(at, j, Payload::Txs(vec![tx.clone()]));
                        }
                    }
                }
            }
            Item::Crash(i) => {
                let down = self.nodes.iter().filter(|n| !n.up).count();
                if self.nodes[i].up && down < self.validators.f() {
                    let node = &mut self.nodes[i];
                    node.up = false;
                    node.engine = None;
                    node.timers.clear();
                    node.work = None;
                    node.mempool.clear();
                    node.in_mempool.clear();
                }
            }
            Item::Restart(i) => {
                if !self.nodes[i].up && !self.nodes[i].dead {
                    self.boot(i);
                }
            }
            Item::Partition { id, pairs } => {
                if self.trace {
                    eprintln!("{:>6} PARTITION {id}: {pairs:?}", self.now);
                }
                for p in &pairs {
                    *self.blocked.entry(*p).or_default() += 1;
                }
                self.partitions.insert(id, pairs);
            }
            Item::Heal(id) => {
                if self.trace {
                    eprintln!("{:>6} HEAL {id}", self.now);
                }
                for p in self.partitions.remove(&id).unwrap_or_default() {
                    if let Some(c) = self.blocked.get_mut(&p) {
                        *c -= 1;
                        if *c == 0 {
                            self.blocked.remove(&p);
                        }
                    }
                }
            }
            Item::WorkFound {
                node,
                token,
                header,
                nonce,
            } => {
                if self.nodes[node].up && self.nodes[node].work == Some(token) {
                    self.nodes[node].work = None;
                    let mut sealed = (*header).clone();
                    sealed.seal.extend_from_slice(&nonce.to_le_bytes());
                    self.mined.push((sealed.height, sealed.hash()));
                    if self.trace {
                        eprintln!(
                            "{:>6} node {node} MINED n{} {}",
                            self.now,
                            sealed.height,
                            short(&sealed.hash())
                        );
                    }
                    self.engine_event(
                        node,
                        Event::WorkFound {
                            header_hash: header.hash(),
                            nonce,
                        },
                    );
                }
            }
            Item::AttackStart => {
                let a = self.cfg.attack.expect("scheduled with an attack");
                let late = &mut self.nodes[a.late];
                late.up = false;
                late.engine = None;
                late.timers.clear();
                late.work = None;
                for j in 0..self.nodes.len() {
                    if j != a.attacker {
                        *self.blocked.entry((a.attacker, j)).or_default() += 1;
                        *self.blocked.entry((j, a.attacker)).or_default() += 1;
                    }
                }
                // The fork point: the heaviest tip anyone has when the attacker goes private.
                let best = (0..self.nodes.len())
                    .filter_map(|i| {
                        self.nodes[i]
                            .engine
                            .as_ref()?
                            .status()
                            .extra
                            .get("best_height")?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0);
                self.attack_base = Some(best);
                self.schedule(self.now + 500, Item::AttackCheck);
            }
            Item::AttackCheck => {
                let a = self.cfg.attack.expect("scheduled with an attack");
                let work = |w: &World, i: usize| -> u128 {
                    w.nodes[i]
                        .engine
                        .as_ref()
                        .and_then(|e| e.status().extra.get("best_work")?.parse().ok())
                        .unwrap_or(0)
                };
                let honest = (0..self.nodes.len())
                    .filter(|&i| i != a.attacker && i != a.late)
                    .map(|i| work(self, i))
                    .max()
                    .unwrap_or(0);
                let top = self.finals.keys().next_back().copied().unwrap_or(0);
                // Honest nodes have finalized a block above the fork point.
                let deep = top > self.attack_base.unwrap_or(0);
                if deep && work(self, a.attacker) > honest {
                    // Release: the attacker rejoins. The late node comes back a moment later
                    // hearing only the attacker for 30 s (an eclipse, the usual companion of
                    // this attack), then everyone.
                    self.attack_released = Some(self.now);
                    self.blocked.clear();
                    let pairs: Vec<(usize, usize)> = (0..self.nodes.len())
                        .filter(|&j| j != a.attacker && j != a.late)
                        .flat_map(|j| [(a.late, j), (j, a.late)])
                        .collect();
                    for p in &pairs {
                        *self.blocked.entry(*p).or_default() += 1;
                    }
                    self.partitions.insert(u64::MAX, pairs);
                    self.schedule(self.now + 30_000, Item::Heal(u64::MAX));
                    self.schedule(self.now + 100, Item::Restart(a.late));
                } else {
                    self.schedule(self.now + 500, Item::AttackCheck);
                }
            }
            Item::EndOfFaults => {
                self.faulty = false;
                self.drop_rate = 0.0;
                if self.attack_released.is_some() || self.cfg.attack.is_none() {
                    self.blocked.clear();
                }
                self.partitions.clear();
                for i in 0..self.nodes.len() {
                    if !self.nodes[i].up && !self.nodes[i].dead {
                        self.boot(i);
                    }
                }
                self.healed_at = Some(self.now);
                self.height_at_heal = self.finals.keys().next_back().copied().unwrap_or(0);
            }
        }
    }
}
