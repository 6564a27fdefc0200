//! The per-peer send queue: bounded in frames and bytes, so a slow or absent peer cannot make a
//! node buffer without limit.
//!
//! Policy when full: the new frame is refused (`send` returns [`crate::SendError::QueueFull`] and
//! the drop is counted); frames already queued are kept and sent in order. Consensus protocols
//! recover lost messages by their own timeouts and retransmissions, and the caller learns of the
//! drop at once.

use crate::metrics::PeerCounters;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

/// A bounded FIFO of frames for one peer, drained by that peer's connection writer.
#[derive(Debug)]
pub struct SendQueue {
    inner: Mutex<Inner>,
    frames_max: usize,
    bytes_max: usize,
    /// Wakes the writer when frames arrive.
    pub(crate) ready: Notify,
}

impl SendQueue {
    pub(crate) fn new(frames_max: usize, bytes_max: usize) -> SendQueue {
        SendQueue {
            inner: Mutex::new(Inner::default()),
            frames_max,
            bytes_max,
            ready: Notify::new(),
        }
    }

    /// Appends a frame unless that would exceed a bound; returns whether it was queued.
    pub(crate) fn push(&self, frame: Bytes, counters: &PeerCounters) -> bool {
        let mut q = self.inner.lock().expect("send queue lock poisoned");
        if q.frames.len() >= self.frames_max || q.bytes + frame.len() > self.bytes_max {
            drop(q);
            counters.frames_dropped.fetch_add(1, Relaxed);
            return false;
        }
        q.bytes += frame.len();
        counters.queued_bytes.store(q.bytes as u64, Relaxed);
        counters
            .queued_frames
            .store(q.frames.len() as u64 + 1, Relaxed);
        q.frames.push_back(frame);
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Takes frames from the front, up to `bytes_budget` bytes (at least one frame if any).
    pub(crate) fn pop_batch(
        &self,
        bytes_budget: usize,
        out: &mut Vec<Bytes>,
        counters: &PeerCounters,
    ) {
        let mut q = self.inner.lock().expect("send queue lock poisoned");
        let mut taken = 0;
        while let Some(front) = q.frames.front() {
            if taken > 0 && taken + front.len() > bytes_budget {
                break;
            }
            let f = q.frames.pop_front().expect("front exists");
            taken += f.len();
            q.bytes -= f.len();
            out.push(f);
        }
        counters.queued_bytes.store(q.bytes as u64, Relaxed);
        counters.queued_frames.store(q.frames.len() as u64, Relaxed);
    }

    /// True if no frame is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .expect("send queue lock poisoned")
            .frames
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_refuse_the_newest_and_keep_order() {
        let c = PeerCounters::default();
        let q = SendQueue::new(3, 100);
        assert!(q.push(Bytes::from_static(b"a"), &c));
        assert!(q.push(Bytes::from(vec![0; 90]), &c));
        assert!(!q.push(Bytes::from(vec![0; 20]), &c), "bytes bound");
        assert!(q.push(Bytes::from_static(b"b"), &c));
        assert!(!q.push(Bytes::from_static(b"c"), &c), "frames bound");
        assert_eq!(c.frames_dropped.load(Relaxed), 2);
        assert_eq!(c.queued_bytes.load(Relaxed), 92);
        let mut out = Vec::new();
        q.pop_batch(50, &mut out, &c);
        assert_eq!(
            out,
            vec![Bytes::from_static(b"a")],
            "budget stops before the 90-byte frame"
        );
        out.clear();
        q.pop_batch(50, &mut out, &c);
        assert_eq!(out.len(), 1, "a frame over budget is still taken alone");
        out.clear();
        q.pop_batch(50, &mut out, &c);
        assert_eq!(out, vec![Bytes::from_static(b"b")]);
        assert!(q.is_empty());
        assert_eq!(c.queued_bytes.load(Relaxed), 0);
    }
}
