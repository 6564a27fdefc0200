//! Committed blocks to the apps' hooks (`AppNode::committed`), on a thread of their own.
//!
//! The engine thread only picks out the receipts of the apps' chaincodes and offers them to a
//! bounded queue ([`HOOK_QUEUE_MAX`] blocks); it never waits for an app. If the queue is full,
//! it notes the first height that did not fit and the hook thread reads those blocks back
//! from the ledger. Delivery is in height order and at least once: the hook thread records the
//! height it has delivered through in `app-hooks.height` in the data directory (at most every
//! [`CURSOR_INTERVAL`], and when the node stops), and on start delivers what the ledger holds
//! beyond it again. A node without that file (a new one, or one whose data predates it) starts
//! at its tip.

use medchain_app::{AppNode, CommittedBlock, Pages};
use medchain_ledger::Ledger;
use medchain_types::{Block, Receipt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most blocks waiting for the hooks; beyond it the hook thread reads blocks from the ledger.
pub const HOOK_QUEUE_MAX: usize = 1024;
/// How often the hook thread records how far it got, at most.
pub const CURSOR_INTERVAL: Duration = Duration::from_secs(2);
/// How long the hook thread waits for a block before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(250);
/// The file that records the height the hooks were delivered through.
const CURSOR_FILE: &str = "app-hooks.height";

/// An app started on this node.
pub struct MountedApp {
    /// Its name (routes under `/api/v1/<name>/`).
    pub name: &'static str,
    /// Its side of this node.
    pub node: Arc<dyn AppNode>,
    /// The names of the chaincodes it installed.
    pub chaincodes: Vec<String>,
    /// Its static pages.
    pub pages: Option<Pages>,
}

impl std::fmt::Debug for MountedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MountedApp({})", self.name)
    }
}

/// One committed block's receipts for the apps, each with the index of its app.
struct Delivery {
    height: u64,
    time_ms: u64,
    receipts: Vec<(usize, Receipt)>,
}

/// What the engine thread and the hook thread share.
#[derive(Debug)]
struct HookState {
    /// The last height the engine thread handed over (stored after its delivery was queued).
    committed: AtomicU64,
    /// The first height whose delivery did not fit the queue (`u64::MAX`: none).
    overflow_from: AtomicU64,
    /// The last height holding app receipts that the engine thread handed over (queued or
    /// marked), or the tip when the node started.
    app_committed: AtomicU64,
    /// The height the hooks were delivered through (the hook thread's cursor, as it moves).
    delivered: tokio::sync::watch::Sender<u64>,
    /// Set to stop the hook thread (it delivers what is queued first).
    stop: AtomicBool,
}

/// Which app a chaincode belongs to, by name.
#[derive(Debug, Clone)]
struct Routes(Vec<(String, usize)>);

impl Routes {
    fn new(app_chaincodes: &[Vec<String>]) -> Routes {
        Routes(
            app_chaincodes
                .iter()
                .enumerate()
                .flat_map(|(app, names)| names.iter().map(move |n| (n.clone(), app)))
                .collect(),
        )
    }

    /// The receipts of `block` that belong to an app, with the app's index.
    fn pick(&self, block: &Block, receipts: &[Receipt]) -> Vec<(usize, Receipt)> {
        block
            .txs
            .iter()
            .zip(receipts)
            .filter_map(|(tx, r)| {
                self.0
                    .iter()
                    .find(|(name, _)| *name == tx.chaincode)
                    .map(|&(_, app)| (app, r.clone()))
            })
            .collect()
    }
}

/// The engine thread's end.
#[derive(Debug)]
pub(super) struct HookSender {
    routes: Routes,
    /// `None` when no app installed a chaincode (nothing to deliver).
    queue: Option<SyncSender<Delivery>>,
    state: Arc<HookState>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Delivery({}, {} receipts)",
            self.height,
            self.receipts.len()
        )
    }
}

impl HookSender {
    /// Hands a committed block to the hooks (called on the engine thread after its write);
    /// never blocks.
    pub(super) fn committed(&self, block: &Block, receipts: &[Receipt]) {
        let Some(queue) = &self.queue else {
            return;
        };
        let height = block.header.height;
        let mine = self.routes.pick(block, receipts);
        if !mine.is_empty() {
            // Once a block did not fit, none after it is queued until the hook thread has read
            // them back from the ledger (so none is delivered before it).
            let overflowed = self.state.overflow_from.load(SeqCst) != u64::MAX;
            let d = Delivery {
                height,
                time_ms: block.header.time_ms,
                receipts: mine,
            };
            if overflowed || queue.try_send(d).is_err() {
                self.state.overflow_from.fetch_min(height, SeqCst);
            }
            self.state.app_committed.store(height, SeqCst);
        }
        // After the block is written, and queued or marked: the hook thread relies on this
        // order.
        self.state.committed.store(height, SeqCst);
    }

    /// Waits until the hooks have run for every block holding app receipts that was handed
    /// over before the call (`true`), or `limit` passed first (`false`).
    pub(super) async fn caught_up(&self, limit: Duration) -> bool {
        if self.queue.is_none() {
            return true;
        }
        let target = self.state.app_committed.load(SeqCst);
        let mut delivered = self.state.delivered.subscribe();
        let waited = tokio::time::timeout(limit, delivered.wait_for(|h| *h >= target)).await;
        matches!(waited, Ok(Ok(_)))
    }
}

/// The hook thread's end, before the apps are started.
#[derive(Debug)]
pub(super) struct HookReceiver {
    routes: Routes,
    queue: Receiver<Delivery>,
    state: Arc<HookState>,
    cursor_path: PathBuf,
    /// The height the hooks were delivered through, as recorded.
    delivered: u64,
    /// The ledger's tip when the node started: what lies beyond `delivered` up to it is read
    /// back from the ledger first.
    start_tip: u64,
}

/// The two ends, for the apps' chaincodes (by app, in the order of the apps), for a ledger whose
/// tip is at `tip`, with the cursor read from `data_dir` (the tip if it has none).
pub(super) fn channel(
    app_chaincodes: &[Vec<String>],
    data_dir: &Path,
    tip: u64,
) -> anyhow::Result<(HookSender, HookReceiver)> {
    let cursor_path = data_dir.join(CURSOR_FILE);
    let delivered = match std::fs::read_to_string(&cursor_path) {
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(h) => h.min(tip),
            Err(e) => {
                tracing::warn!(
                    path = %cursor_path.display(),
                    error = %e,
                    "the apps' hook cursor is damaged; starting at the tip"
                );
                tip
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => tip,
        Err(e) => anyhow::bail!("cannot read {}: {e}", cursor_path.display()),
    };
    let routes = Routes::new(app_chaincodes);
    let state = Arc::new(HookState {
        committed: AtomicU64::new(tip),
        overflow_from: AtomicU64::new(u64::MAX),
        app_committed: AtomicU64::new(tip),
        delivered: tokio::sync::watch::Sender::new(delivered),
        stop: AtomicBool::new(false),
    });
    let (tx, rx) = sync_channel(HOOK_QUEUE_MAX);
    Ok((
        HookSender {
            routes: routes.clone(),
            queue: (!routes.0.is_empty()).then_some(tx),
            state: state.clone(),
        },
        HookReceiver {
            routes,
            queue: rx,
            state,
            cursor_path,
            delivered,
            start_tip: tip,
        },
    ))
}

/// The running hook thread.
#[derive(Debug)]
pub(super) struct HookThread {
    state: Arc<HookState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HookThread {
    /// Stops the thread after it delivered what was handed over, and waits for it.
    pub(super) fn stop(mut self) {
        self.state.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HookReceiver {
    /// Starts the hook thread for the started apps.
    pub(super) fn start(
        self,
        apps: &[MountedApp],
        ledger: Arc<Ledger>,
    ) -> std::io::Result<HookThread> {
        let state = self.state.clone();
        if self.routes.0.is_empty() {
            return Ok(HookThread {
                state,
                thread: None,
            });
        }
        let nodes: Vec<Arc<dyn AppNode>> = apps.iter().map(|a| a.node.clone()).collect();
        let thread = std::thread::Builder::new()
            .name("app-hooks".into())
            .spawn(move || {
                HookLoop {
                    rx: self,
                    nodes,
                    ledger,
                    recorded: Instant::now(),
                }
                .run()
            })?;
        Ok(HookThread {
            state,
            thread: Some(thread),
        })
    }
}

struct HookLoop {
    rx: HookReceiver,
    nodes: Vec<Arc<dyn AppNode>>,
    ledger: Arc<Ledger>,
    /// When the cursor was last recorded.
    recorded: Instant,
}

impl HookLoop {
    fn run(mut self) {
        let mut recorded = self.rx.delivered;
        // What the ledger holds beyond the recorded cursor (a crash came between a commit and
        // its delivery, or the record of it).
        if let Err(failed) = self.replay(self.rx.delivered + 1, self.rx.start_tip) {
            // Read again on the next pass.
            self.rx.state.overflow_from.fetch_min(failed, SeqCst);
        }
        let mut next: Option<Delivery> = None;
        loop {
            let stopping = self.rx.state.stop.load(SeqCst);
            self.catch_up(next.take());
            if self.rx.delivered != recorded
                && (stopping || self.recorded.elapsed() >= CURSOR_INTERVAL)
            {
                self.record();
                recorded = self.rx.delivered;
            }
            if stopping {
                return;
            }
            match self.rx.queue.recv_timeout(POLL) {
                Ok(d) => next = Some(d),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The node is gone: deliver what was handed over, record, stop.
                    self.catch_up(None);
                    self.record();
                    return;
                }
            }
        }
    }

    /// Delivers everything handed over so far, in height order: `first` (already received),
    /// what is queued, and what did not fit the queue (read from the ledger); then moves the
    /// cursor past what it delivered.
    fn catch_up(&mut self, first: Option<Delivery>) {
        // Every block up to `target` is queued, or marked overflowed (the engine thread marks
        // before it stores `committed`).
        let target = self.rx.state.committed.load(SeqCst);
        self.drain(first);
        let mark = self.rx.state.overflow_from.load(SeqCst);
        if mark == u64::MAX {
            self.advance(self.rx.delivered.max(target));
            return;
        }
        // Nothing at or after the mark was queued (it is sticky), so the queue holds only what
        // came before it: deliver that, then let the engine queue again, and read everything
        // from the mark to the ledger's tip back. A block written before the swap is in the
        // ledger when its tip is read after it; one written later is queued or marked anew.
        self.drain(None);
        self.rx.state.overflow_from.swap(u64::MAX, SeqCst);
        let tip = self.ledger.tip().map_or(0, |t| t.height);
        tracing::warn!(
            from = mark,
            to = tip,
            "the apps' hooks fell behind; reading the blocks back from the ledger"
        );
        if let Err(failed) = self.replay(mark.max(self.rx.delivered + 1), tip) {
            self.rx.state.overflow_from.fetch_min(failed, SeqCst);
        }
    }

    /// Delivers `first` and what is queued, each once, in order.
    fn drain(&mut self, first: Option<Delivery>) {
        let mut pending = first;
        loop {
            let d = match pending.take() {
                Some(d) => d,
                None => match self.rx.queue.try_recv() {
                    Ok(d) => d,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
                },
            };
            if d.height > self.rx.delivered {
                self.deliver(d);
            }
        }
    }

    /// Delivers heights `from..=to` read from the ledger; `Err(height)` names the first it
    /// could not read (the cursor stays before it).
    fn replay(&mut self, from: u64, to: u64) -> Result<(), u64> {
        for height in from..=to {
            let block = self.ledger.block(height);
            let receipts = self.ledger.receipts(height);
            match (block, receipts) {
                (Ok(Some(block)), Ok(Some(receipts))) => {
                    let mine = self.rx.routes.pick(&block, &receipts);
                    if !mine.is_empty() {
                        self.deliver(Delivery {
                            height,
                            time_ms: block.header.time_ms,
                            receipts: mine,
                        });
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(height, error = %e, "cannot read a block for the apps' hooks");
                    return Err(height);
                }
                _ => {
                    tracing::error!(height, "a committed block is missing for the apps' hooks");
                    return Err(height);
                }
            }
            self.advance(height);
        }
        Ok(())
    }

    /// Hands one block to each app that has receipts in it (a panicking hook is logged; the
    /// others still run).
    fn deliver(&mut self, d: Delivery) {
        for (app, node) in self.nodes.iter().enumerate() {
            let receipts: Vec<Receipt> = d
                .receipts
                .iter()
                .filter(|(a, _)| *a == app)
                .map(|(_, r)| r.clone())
                .collect();
            if receipts.is_empty() {
                continue;
            }
            let block = CommittedBlock {
                height: d.height,
                time_ms: d.time_ms,
                receipts,
            };
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                node.committed(&block);
            }));
            if ran.is_err() {
                tracing::error!(height = d.height, app, "an app's commit hook panicked");
            }
        }
        self.advance(d.height);
    }

    /// Moves the cursor to `height` (and tells those waiting for it).
    fn advance(&mut self, height: u64) {
        self.rx.delivered = height;
        self.rx.state.delivered.send_replace(height);
    }

    /// Records the cursor (write and rename: a crash leaves the old or the new one).
    fn record(&mut self) {
        let path = &self.rx.cursor_path;
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, format!("{}\n", self.rx.delivered))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "cannot record the apps' hook cursor");
        }
        self.recorded = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_chaincode::builtin::{Kv, KvOp};
    use medchain_ledger::Executor;
    use medchain_types::{Certificate, SecretKey, Transaction};
    use std::sync::Mutex;

    /// Records what it was given.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u64, usize)>>);

    impl AppNode for Recorder {
        fn routes(self: Arc<Self>) -> axum::Router {
            axum::Router::new()
        }
        fn committed(&self, block: &CommittedBlock) {
            self.0
                .lock()
                .unwrap()
                .push((block.height, block.receipts.len()));
        }
    }

    /// A ledger with `blocks` blocks after genesis, each with a `kv` and a `noop` transaction.
    fn ledger(blocks: u64) -> (Ledger, Vec<Block>) {
        let chain = "hooks";
        let ledger = Ledger::open_in_memory(chain).unwrap();
        let exec = Executor::with_builtins(chain);
        let key = SecretKey::from_seed([3; 32]);
        let mut out = Vec::new();
        for h in 0..=blocks {
            let tip = ledger.tip();
            let txs = if h == 0 {
                vec![]
            } else {
                let op = KvOp::Put {
                    key: vec![h as u8],
                    value: vec![1],
                };
                vec![
                    Transaction::signed(chain, "kv", Kv::payload(&op), h, &key),
                    Transaction::signed(chain, "noop", vec![], h, &key),
                ]
            };
            let b = Block::build(
                h,
                tip.map_or(medchain_types::Hash::ZERO, |t| t.hash),
                h.saturating_sub(1),
                tip.map_or(medchain_types::Hash::ZERO, |t| t.state_root),
                1_000 + h,
                key.public(),
                vec![],
                txs,
            );
            exec.apply(&ledger, &b, &Certificate::default()).unwrap();
            out.push(b);
        }
        (ledger, out)
    }

    fn mounted(node: Arc<Recorder>) -> Vec<MountedApp> {
        vec![MountedApp {
            name: "rec",
            node,
            chaincodes: vec!["kv".into()],
            pages: None,
        }]
    }

    /// Blocks come in height order, once each, with only the app's receipts; what overflowed
    /// the queue comes back from the ledger, in order; after a restart from the recorded
    /// cursor, the blocks beyond it come again.
    #[test]
    fn hooks_get_every_block_in_order_including_overflow_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, blocks) = ledger(HOOK_QUEUE_MAX as u64 + 20);
        let ledger = Arc::new(ledger);
        // The node "started" at height 0 (the cursor file is absent: start at the tip, 0).
        let (tx, rx) = channel(&[vec!["kv".into()]], dir.path(), 0).unwrap();
        let rec = Arc::new(Recorder::default());
        // Hand over every block before the thread starts: the queue overflows.
        for b in &blocks[1..] {
            let receipts = ledger.receipts(b.header.height).unwrap().unwrap();
            tx.committed(b, &receipts);
        }
        let thread = rx.start(&mounted(rec.clone()), ledger.clone()).unwrap();
        thread.stop();
        let got = rec.0.lock().unwrap().clone();
        let expected: Vec<(u64, usize)> = (1..blocks.len() as u64).map(|h| (h, 1)).collect();
        assert_eq!(
            got, expected,
            "every block once, in order, only the kv receipt"
        );
        let cursor = std::fs::read_to_string(dir.path().join(CURSOR_FILE)).unwrap();
        assert_eq!(cursor.trim(), (blocks.len() - 1).to_string());

        // A restart whose record is behind: the blocks beyond it come again.
        std::fs::write(dir.path().join(CURSOR_FILE), "5\n").unwrap();
        let tip = blocks.len() as u64 - 1;
        let (_tx, rx) = channel(&[vec!["kv".into()]], dir.path(), tip).unwrap();
        let again = Arc::new(Recorder::default());
        rx.start(&mounted(again.clone()), ledger.clone())
            .unwrap()
            .stop();
        let got = again.0.lock().unwrap().clone();
        assert_eq!(got.first(), Some(&(6, 1)));
        assert_eq!(got.len(), blocks.len() - 6);
    }

    /// Holds each block at a gate until the test lets it through, then records its height.
    struct Gated {
        gate: Mutex<Receiver<()>>,
        seen: Mutex<Vec<u64>>,
    }

    impl AppNode for Gated {
        fn routes(self: Arc<Self>) -> axum::Router {
            axum::Router::new()
        }
        fn committed(&self, block: &CommittedBlock) {
            let _ = self.gate.lock().unwrap().recv();
            self.seen.lock().unwrap().push(block.height);
        }
    }

    /// A read that waits for the hooks returns once they ran for every block handed over
    /// before it, and not before: while a hook is held, the wait runs out.
    #[tokio::test]
    async fn waiting_for_the_hooks_ends_when_they_ran_for_every_committed_block() {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, blocks) = ledger(3);
        let ledger = Arc::new(ledger);
        let (tx, rx) = channel(&[vec!["kv".into()]], dir.path(), 0).unwrap();
        assert!(
            tx.caught_up(Duration::from_millis(1)).await,
            "nothing handed over"
        );
        let (open, gate) = std::sync::mpsc::channel();
        let node = Arc::new(Gated {
            gate: Mutex::new(gate),
            seen: Mutex::new(Vec::new()),
        });
        let apps = vec![MountedApp {
            name: "gated",
            node: node.clone(),
            chaincodes: vec!["kv".into()],
            pages: None,
        }];
        let thread = rx.start(&apps, ledger.clone()).unwrap();
        for b in &blocks[1..] {
            let receipts = ledger.receipts(b.header.height).unwrap().unwrap();
            tx.committed(b, &receipts);
        }
        open.send(()).unwrap();
        assert!(
            !tx.caught_up(Duration::from_millis(300)).await,
            "blocks 2 and 3 are held"
        );
        open.send(()).unwrap();
        open.send(()).unwrap();
        assert!(tx.caught_up(Duration::from_secs(30)).await);
        assert_eq!(*node.seen.lock().unwrap(), vec![1, 2, 3]);
        thread.stop();
    }

    /// Once a block did not fit the queue, the blocks after it are not queued even when a slot
    /// frees (they would be delivered before it): they wait for the ledger.
    #[test]
    fn an_overflow_holds_back_every_later_block() {
        let dir = tempfile::tempdir().unwrap();
        let n = HOOK_QUEUE_MAX as u64 + 2;
        let (ledger, blocks) = ledger(n);
        let (tx, rx) = channel(&[vec!["kv".into()]], dir.path(), 0).unwrap();
        let hand = |h: usize| {
            let receipts = ledger.receipts(h as u64).unwrap().unwrap();
            tx.committed(&blocks[h], &receipts);
        };
        for h in 1..=HOOK_QUEUE_MAX + 1 {
            hand(h);
        }
        assert_eq!(
            tx.state.overflow_from.load(SeqCst),
            HOOK_QUEUE_MAX as u64 + 1
        );
        let first = rx.queue.try_recv().unwrap();
        assert_eq!(first.height, 1, "a slot frees");
        hand(HOOK_QUEUE_MAX + 2);
        let queued: Vec<u64> = std::iter::from_fn(|| rx.queue.try_recv().ok())
            .map(|d| d.height)
            .collect();
        assert_eq!(queued, (2..=HOOK_QUEUE_MAX as u64).collect::<Vec<_>>());
        assert_eq!(
            tx.state.overflow_from.load(SeqCst),
            HOOK_QUEUE_MAX as u64 + 1
        );
        assert_eq!(tx.state.committed.load(SeqCst), n);
    }
}
