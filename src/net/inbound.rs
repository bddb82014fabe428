//! Frames from the replica mesh on their way to the node: one bounded queue
//! per peer, read in turn.
//!
//! A single shared channel let one peer that floods cheap frames (bad
//! signatures, say) fill it, so the honest peers' votes were dropped (issue
//! 17, defect 5). Here every peer has a share of its own, in frames and in
//! bytes, and the node takes one frame from each peer with something queued
//! in turn (round robin), so a flooding peer delays an honest peer's frame
//! by at most one of its own and never pushes it out.
//!
//! The byte share also covers frames still being read: a reader takes the
//! frame's bytes from its peer's budget before it allocates the buffer, and
//! they return only when the node has taken the frame. So a peer can make a
//! replica hold at most `budget` bytes of its frames, however many streams
//! it opens.

use crate::types::ReplicaId;
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Bytes per budget permit (a semaphore counts in permits).
const PERMIT_BYTES: usize = 1024;

fn permits_for(bytes: usize) -> u32 {
    bytes.div_ceil(PERMIT_BYTES).max(1) as u32
}

struct PeerQueue {
    frames: VecDeque<(Vec<u8>, OwnedSemaphorePermit)>,
}

pub(crate) struct InboundQueues {
    peers: Vec<Mutex<PeerQueue>>,
    budgets: Vec<Arc<Semaphore>>,
    /// Permits each budget was created with.
    budget_permits: u32,
    frames_max: usize,
    notify: Notify,
    closed: AtomicBool,
}

/// What [`Inbound::try_recv`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    Closed,
}

impl InboundQueues {
    /// Queues for `n` peers: each holds at most `frames_max` frames and
    /// `bytes_max` bytes (queued or being read). `bytes_max` must hold the
    /// largest frame.
    pub(crate) fn new(n: usize, frames_max: usize, bytes_max: usize) -> Arc<InboundQueues> {
        let permits = permits_for(bytes_max) as usize;
        Arc::new(InboundQueues {
            peers: (0..n)
                .map(|_| {
                    Mutex::new(PeerQueue {
                        frames: VecDeque::new(),
                    })
                })
                .collect(),
            budgets: (0..n).map(|_| Arc::new(Semaphore::new(permits))).collect(),
            budget_permits: permits as u32,
            frames_max: frames_max.max(1),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Takes `len` bytes from `peer`'s budget, waiting until its earlier
    /// frames have been taken by the node if it is spent. `None` once closed.
    pub(crate) async fn reserve(
        &self,
        peer: ReplicaId,
        len: usize,
    ) -> Option<OwnedSemaphorePermit> {
        let budget = self.budgets.get(peer.index())?.clone();
        // A frame larger than the whole budget (the transport caps frames
        // below it) would wait for ever: it takes the whole budget instead.
        let wanted = permits_for(len).min(self.budget_permits);
        budget.acquire_many_owned(wanted).await.ok()
    }

    /// Queues a frame read with `permit`; `false` (the frame is dropped) if
    /// the peer's queue is full of frames.
    pub(crate) fn push(
        &self,
        peer: ReplicaId,
        frame: Vec<u8>,
        permit: OwnedSemaphorePermit,
    ) -> bool {
        let Some(q) = self.peers.get(peer.index()) else {
            return false;
        };
        {
            let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
            if q.frames.len() >= self.frames_max {
                return false;
            }
            q.frames.push_back((frame, permit));
        }
        self.notify.notify_one();
        true
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for b in &self.budgets {
            b.close();
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// The node's end: frames from all peers, taken in turn.
pub struct Inbound {
    queues: Arc<InboundQueues>,
    cursor: usize,
}

impl Inbound {
    pub(crate) fn new(queues: Arc<InboundQueues>) -> Inbound {
        Inbound { queues, cursor: 0 }
    }

    /// The next frame: from the first peer after the last one served that
    /// has one queued. `Err(Empty)` if none has.
    pub fn try_recv(&mut self) -> Result<(ReplicaId, Vec<u8>), TryRecvError> {
        let n = self.queues.peers.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let taken = self.queues.peers[i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .frames
                .pop_front();
            if let Some((frame, _permit)) = taken {
                // The permit drops here: the bytes return to the peer's budget.
                self.cursor = (i + 1) % n;
                return Ok((ReplicaId(i as u32), frame));
            }
        }
        if self.queues.closed.load(Ordering::SeqCst) {
            return Err(TryRecvError::Closed);
        }
        Err(TryRecvError::Empty)
    }

    /// Waits for the next frame; `None` once the transport has shut down.
    pub async fn recv(&mut self) -> Option<(ReplicaId, Vec<u8>)> {
        let queues = self.queues.clone();
        loop {
            let mut notified = pin!(queues.notify.notified());
            notified.as_mut().enable();
            match self.try_recv() {
                Ok(frame) => return Some(frame),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// One peer flooding cannot push another's frames out, and the node
    /// serves the peers in turn.
    #[tokio::test]
    async fn a_flooding_peer_fills_only_its_own_share() {
        let q = InboundQueues::new(3, 4, 64 * 1024);
        let mut rx = Inbound::new(q.clone());
        let mut dropped = 0;
        for i in 0..100u8 {
            let permit = q.reserve(ReplicaId(1), 10).await.unwrap();
            if !q.push(ReplicaId(1), vec![i; 10], permit) {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 96, "the flooder keeps four frames");
        for i in 0..2u8 {
            let permit = q.reserve(ReplicaId(2), 10).await.unwrap();
            assert!(q.push(ReplicaId(2), vec![100 + i; 10], permit));
        }
        let order: Vec<u32> = (0..6).map(|_| rx.try_recv().unwrap().0 .0).collect();
        assert_eq!(order, [1, 2, 1, 2, 1, 1]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    /// A peer's bytes, queued or being read, stay within its budget: a
    /// reader waits until the node has taken earlier frames.
    #[tokio::test]
    async fn bytes_are_bounded_per_peer_and_return_when_taken() {
        let q = InboundQueues::new(2, 100, 100 * 1024);
        let mut rx = Inbound::new(q.clone());
        let p = q.reserve(ReplicaId(1), 60 * 1024).await.unwrap();
        assert!(q.push(ReplicaId(1), vec![1; 60 * 1024], p));
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            q.reserve(ReplicaId(1), 60 * 1024),
        )
        .await;
        assert!(waiting.is_err(), "a second 60 KiB frame must wait");
        // Another peer's budget is its own.
        assert!(q.reserve(ReplicaId(0), 60 * 1024).await.is_some());
        assert_eq!(rx.recv().await.unwrap().0, ReplicaId(1));
        let again = tokio::time::timeout(
            Duration::from_millis(500),
            q.reserve(ReplicaId(1), 60 * 1024),
        )
        .await;
        assert!(
            matches!(again, Ok(Some(_))),
            "the taken frame's bytes came back"
        );
        q.close();
        assert_eq!(rx.recv().await, None);
    }
}
