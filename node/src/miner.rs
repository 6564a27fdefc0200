//! Proof-of-work mining: worker threads that search nonces for the engine's current template.
//!
//! Each [`Action::StartWork`](medchain_consensus::Action::StartWork) replaces the job and bumps a
//! generation counter; workers check it every [`CHUNK`] nonces, so a better tip abandons the
//! old search within about a millisecond. Worker `w` of `n` searches nonces `w, w + n, ...`
//! from a random start, so workers never repeat each other's work. A solution is handed back
//! through `found` (the engine's inbox) as the template's hash and the nonce.

use medchain_types::{sha256, Hash, Header};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};

/// Nonces tried between two checks for a newer job.
const CHUNK: u64 = 1024;

#[derive(Debug, Clone)]
struct Job {
    generation: u64,
    header: Header,
    target: Hash,
    start: u64,
}

#[derive(Debug, Default)]
struct State {
    job: Option<Job>,
    generation: u64,
    stopped: bool,
}

/// The mining workers of one node.
#[derive(Debug)]
pub struct Miner {
    state: Arc<(Mutex<State>, Condvar)>,
    generation: Arc<AtomicU64>,
    /// Hashes tried since start (for the metrics).
    pub hashes: Arc<AtomicU64>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Miner {
    /// Starts `threads` workers (none if 0: the node then validates but never mines); each
    /// solution is passed to `found`.
    pub fn start(threads: usize, found: impl Fn(Hash, u64) + Send + Sync + 'static) -> Miner {
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let generation = Arc::new(AtomicU64::new(0));
        let hashes = Arc::new(AtomicU64::new(0));
        let found = Arc::new(found);
        let handles = (0..threads)
            .map(|w| {
                let (state, generation, hashes, found) = (
                    state.clone(),
                    generation.clone(),
                    hashes.clone(),
                    found.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("miner-{w}"))
                    .spawn(move || {
                        worker(
                            w as u64,
                            threads as u64,
                            &state,
                            &generation,
                            &hashes,
                            &*found,
                        )
                    })
                    .expect("spawn a mining thread")
            })
            .collect();
        Miner {
            state,
            generation,
            hashes,
            threads: Mutex::new(handles),
        }
    }

    /// Replaces the current search.
    pub fn work(&self, header: Header, target: Hash) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().expect("miner lock");
        s.generation += 1;
        self.generation.store(s.generation, Relaxed);
        s.job = Some(Job {
            generation: s.generation,
            header,
            target,
            start: rand::random(),
        });
        cv.notify_all();
    }

    /// Abandons the current search.
    pub fn idle(&self) {
        let (lock, _) = &*self.state;
        let mut s = lock.lock().expect("miner lock");
        s.generation += 1;
        self.generation.store(s.generation, Relaxed);
        s.job = None;
    }

    /// Stops the workers and waits for them.
    pub fn stop(&self) {
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().expect("miner lock");
            s.stopped = true;
            s.generation += 1;
            self.generation.store(s.generation, Relaxed);
            cv.notify_all();
        }
        let threads: Vec<_> = self.threads.lock().expect("miner lock").drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bytes whose double SHA-256 is the work hash, with the nonce in the last 8.
fn preimage(header: &Header) -> Vec<u8> {
    let mut bytes = medchain_types::codec::encode(header);
    bytes.extend_from_slice(&[0; 8]);
    bytes
}

fn worker(
    w: u64,
    n: u64,
    state: &(Mutex<State>, Condvar),
    generation: &AtomicU64,
    hashes: &AtomicU64,
    found: &(dyn Fn(Hash, u64) + Send + Sync),
) {
    let (lock, cv) = state;
    loop {
        let job = {
            let mut s = lock.lock().expect("miner lock");
            loop {
                if s.stopped {
                    return;
                }
                if let Some(j) = &s.job {
                    break j.clone();
                }
                s = cv.wait(s).expect("miner lock");
            }
        };
        let mut bytes = preimage(&job.header);
        let at = bytes.len() - 8;
        let mut nonce = job.start.wrapping_add(w);
        let solved = 'search: loop {
            for _ in 0..CHUNK {
                bytes[at..].copy_from_slice(&nonce.to_le_bytes());
                if sha256(sha256(&bytes).as_bytes()) <= job.target {
                    break 'search Some(nonce);
                }
                nonce = nonce.wrapping_add(n);
            }
            hashes.fetch_add(CHUNK, Relaxed);
            if generation.load(Relaxed) != job.generation {
                break None;
            }
        };
        let mut s = lock.lock().expect("miner lock");
        if let Some(nonce) = solved {
            if s.generation == job.generation {
                // One solution per job: the other workers stop; the engine answers with a new
                // template.
                s.job = None;
                s.generation += 1;
                generation.store(s.generation, Relaxed);
                drop(s);
                found(job.header.hash(), nonce);
                continue;
            }
        }
        // Wait for a job newer than the one just left.
        while !s.stopped
            && s.job
                .as_ref()
                .is_some_and(|j| j.generation == job.generation)
        {
            s = cv.wait(s).expect("miner lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_types::PublicKey;
    use std::time::Duration;

    fn header(height: u64) -> Header {
        Header {
            height,
            parent: Hash::ZERO,
            tx_root: Hash::ZERO,
            tx_count: 0,
            state_height: 0,
            state_root: Hash::ZERO,
            time_ms: 0,
            proposer: PublicKey([0; 32]),
            seal: vec![1; 32],
        }
    }

    #[test]
    fn workers_find_a_nonce_the_engine_accepts_and_abandon_old_jobs() {
        let (tx, rx) = std::sync::mpsc::channel();
        let miner = Miner::start(2, move |h, n| {
            let _ = tx.send((h, n));
        });
        // An impossible target, then a replacement: only the replacement is solved.
        miner.work(header(1), Hash::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        let target = easy();
        miner.work(header(2), target);
        let (h, nonce) = rx.recv_timeout(Duration::from_secs(20)).expect("solved");
        assert_eq!(h, header(2).hash());
        assert!(medchain_consensus::work_hash(&header(2), nonce) <= target);
        assert!(miner.hashes.load(Relaxed) > 0);
        miner.stop();
    }

    fn easy() -> Hash {
        let mut t = [0xff; 32];
        t[0] = 0;
        t[1] = 0x0f;
        Hash(t)
    }
}
