//! The replica mesh: accept loop, one dial task per higher peer, one sender
//! task per peer, one accepting task per connection and one reader task per
//! inbound stream (the peer's shared stream, and each long frame's own).
//!
//! Each peer has a [`PeerSlot`] holding its bounded outbound queue, its
//! counters and a `watch` of its current connection. Whoever obtains a
//! connection (the dial task for higher peers, the accept loop for lower ones)
//! installs it in the slot; the sender task follows the `watch`, so sending
//! code never cares which side dialled.

use super::tls::{self, Identity, Pin};
use super::{codes, limits, transport_config, NetConfig, NetError, NetStats, PeerStats};
use crate::crypto::{KeyPair, PublicKey};
use crate::types::ReplicaId;
use quinn::{Connection, Endpoint};
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

use super::inbound::{Inbound, InboundQueues};
use super::share::{Shares, Unit};

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    send_failed: AtomicU64,
    oversize: AtomicU64,
    inbound_dropped: AtomicU64,
}

/// A peer's outbound frames and their bytes.
#[derive(Default)]
struct OutQueue {
    frames: VecDeque<Arc<[u8]>>,
    bytes: usize,
}

struct PeerSlot {
    queue: Mutex<OutQueue>,
    /// Bytes of long frames being written on streams of their own (in KiB
    /// permits): with `queue`, bounds what a peer that never reads can make
    /// us hold.
    long_writes: Arc<Semaphore>,
    wake: Notify,
    conn: watch::Sender<Option<Connection>>,
    counters: Counters,
}

impl PeerSlot {
    fn pop(&self) -> Option<Arc<[u8]>> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let frame = q.frames.pop_front()?;
        q.bytes -= frame.len();
        Some(frame)
    }
    fn queued(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frames
            .len()
    }
    /// The live connection's smoothed round trip (QUIC's, from its ACKs;
    /// the handshake gives the first sample); `None` while not connected.
    fn round_trip(&self) -> Option<Duration> {
        let conn = self.conn.borrow();
        let live = conn.as_ref().filter(|c| c.close_reason().is_none())?;
        Some(live.rtt())
    }
}

struct Shared {
    cfg: NetConfig,
    endpoint: Endpoint,
    peers: Vec<PeerSlot>,
    by_key: HashMap<PublicKey, ReplicaId>,
    inbound: Arc<InboundQueues>,
    rejected_handshakes: AtomicU64,
    tie_break_refused: AtomicU64,
    handshakes: Handshakes,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Room for inbound handshakes (issue 24, defect 2). Each genesis peer,
/// from its own genesis address, has `PEER_HANDSHAKES` slots of its own;
/// anyone else shares `HANDSHAKES` slots, at most `HANDSHAKES_PER_SOURCE`
/// per source IP. Before, 64 stalled handshakes from one host kept a
/// restarted peer from being accepted until they timed out.
struct Handshakes {
    /// Each peer's address as last known: its literal genesis address, or
    /// what its name resolved to last (`None` for me and for a name not
    /// resolved yet). Replaced, never added to: bounded by the peer count.
    peers: std::sync::RwLock<Vec<Option<SocketAddr>>>,
    shares: Shares<HandshakeOf>,
    others: Arc<Semaphore>,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum HandshakeOf {
    Peer(SocketAddr),
    Source(std::net::IpAddr),
}

/// A handshake's slot; given back when dropped.
#[allow(dead_code)] // held for its Drop
enum HandshakeSlot {
    Peer(Unit<HandshakeOf>),
    Other(Unit<HandshakeOf>, tokio::sync::OwnedSemaphorePermit),
}

impl Handshakes {
    fn new(cfg: &NetConfig) -> Handshakes {
        Handshakes {
            peers: std::sync::RwLock::new(
                cfg.peers
                    .iter()
                    .map(|p| if p.id == cfg.me { None } else { p.addr.ip() })
                    .collect(),
            ),
            shares: Shares::default(),
            others: Arc::new(Semaphore::new(limits::HANDSHAKES)),
        }
    }

    /// A slot for a handshake from `from`, or `None` (refuse it).
    /// Peer `id`'s name now resolves to `addr`.
    fn learn(&self, id: ReplicaId, addr: SocketAddr) {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        peers[id.index()] = Some(addr);
    }

    fn is_peer(&self, from: SocketAddr) -> bool {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        peers.contains(&Some(from))
    }

    fn slot(&self, from: SocketAddr) -> Option<HandshakeSlot> {
        if self.is_peer(from) {
            let [unit] = self
                .shares
                .take([(HandshakeOf::Peer(from), limits::PEER_HANDSHAKES)])?;
            return Some(HandshakeSlot::Peer(unit));
        }
        let [unit] = self.shares.take([(
            HandshakeOf::Source(from.ip()),
            limits::HANDSHAKES_PER_SOURCE,
        )])?;
        let permit = self.others.clone().try_acquire_owned().ok()?;
        Some(HandshakeSlot::Other(unit, permit))
    }
}

/// A cloneable handle to the replica mesh.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({})", self.inner.cfg.me)
    }
}

impl Transport {
    /// Binds `cfg.listen`, starts the accept loop, one dial task per higher
    /// peer and one sender task per peer. Returns the handle and the channel
    /// of inbound `(sender, frame)` pairs.
    pub async fn start(cfg: NetConfig, key: &KeyPair) -> Result<(Transport, Inbound), NetError> {
        cfg.validate()?;
        if cfg.peers[cfg.me.index()].public_key != key.public() {
            return Err(NetError::Config(format!(
                "key {:?} is not replica {}'s genesis key",
                key.public(),
                cfg.me
            )));
        }
        let identity = Identity::new(key)?;
        let transport = transport_config(
            cfg.idle_timeout,
            Some(cfg.keep_alive),
            limits::MESH_UNI_STREAMS,
            0,
        )?;
        let genesis: Arc<std::collections::HashSet<PublicKey>> =
            Arc::new(cfg.peers.iter().map(|p| p.public_key).collect());
        let server = tls::server_config(
            &identity,
            Pin::Set(genesis),
            tls::ALPN_REPLICA,
            transport.clone(),
        )?;
        let endpoint =
            tls::bind_endpoint(cfg.listen, server, key, "replica mesh").map_err(|source| {
                NetError::Bind {
                    addr: cfg.listen,
                    source,
                }
            })?;
        let n = cfg.peers.len();
        let queues = InboundQueues::new(
            n,
            cfg.inbound_queue_max / n.saturating_sub(1).max(1),
            peer_bytes_max(&cfg),
        );
        let rx = Inbound::new(queues.clone());
        let long_write_permits = kib(peer_bytes_max(&cfg));
        let peers = cfg
            .peers
            .iter()
            .map(|_| PeerSlot {
                queue: Mutex::new(OutQueue::default()),
                long_writes: Arc::new(Semaphore::new(long_write_permits as usize)),
                wake: Notify::new(),
                conn: watch::Sender::new(None),
                counters: Counters::default(),
            })
            .collect();
        let by_key = cfg.peers.iter().map(|p| (p.public_key, p.id)).collect();
        let handshakes = Handshakes::new(&cfg);
        let shared = Arc::new(Shared {
            cfg,
            endpoint,
            peers,
            by_key,
            inbound: queues,
            rejected_handshakes: AtomicU64::new(0),
            tie_break_refused: AtomicU64::new(0),
            handshakes,
            tasks: Mutex::new(Vec::new()),
        });
        let me = shared.cfg.me;
        // Every log line of this transport carries `replica = me`.
        let span = tracing::info_span!(target: "pbft::net", "net", replica = %me);
        let mut tasks = vec![
            tokio::spawn(accept_loop(shared.clone()).instrument(span.clone())),
            tokio::spawn(refresh_names(shared.clone()).instrument(span.clone())),
        ];
        for peer in &shared.cfg.peers {
            if peer.id == me {
                continue;
            }
            tasks.push(tokio::spawn(
                send_loop(shared.clone(), peer.id).instrument(span.clone()),
            ));
            if me < peer.id {
                let client = tls::client_config(
                    &identity,
                    Pin::One(peer.public_key),
                    tls::ALPN_REPLICA,
                    transport.clone(),
                )?;
                tasks.push(tokio::spawn(
                    dial_loop(shared.clone(), peer.id, client).instrument(span.clone()),
                ));
            }
        }
        *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        info!(target: "pbft::net", replica = %me, listen = %shared.cfg.listen, "transport started");
        Ok((Transport { inner: shared }, rx))
    }

    /// The bound mesh address (useful when `listen` had port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    /// Queues `frame` for `to` without blocking; when the queue is full —
    /// `peer_queue_max` frames, or [`peer_bytes_max`] bytes — the oldest
    /// queued frames are dropped and counted. Frames to `me` or to an
    /// unknown replica are ignored.
    pub fn send(&self, to: ReplicaId, frame: Arc<[u8]>) {
        if to == self.inner.cfg.me {
            return;
        }
        let Some(slot) = self.inner.peers.get(to.index()) else {
            debug!(target: "pbft::net", peer = %to, "send to unknown replica ignored");
            return;
        };
        let bytes_max = peer_bytes_max(&self.inner.cfg);
        let dropped = {
            let mut q = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.bytes += frame.len();
            q.frames.push_back(frame);
            let mut dropped = 0;
            while q.frames.len() > self.inner.cfg.peer_queue_max
                || (q.bytes > bytes_max && q.frames.len() > 1)
            {
                if let Some(old) = q.frames.pop_front() {
                    q.bytes -= old.len();
                }
                dropped += 1;
            }
            dropped
        };
        if dropped > 0 {
            slot.counters.dropped.fetch_add(dropped, Relaxed);
        }
        slot.wake.notify_one();
    }

    /// Queues `frame` for every replica except me.
    pub fn broadcast(&self, frame: Arc<[u8]>) {
        for peer in &self.inner.cfg.peers {
            if peer.id != self.inner.cfg.me {
                self.send(peer.id, frame.clone());
            }
        }
    }

    /// The smoothed round trip QUIC measured to each connected peer (from
    /// its ACKs; the handshake gives the first sample).
    pub fn round_trips(&self) -> Vec<(ReplicaId, Duration)> {
        self.inner
            .peers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.inner.cfg.me.index())
            .filter_map(|(i, slot)| Some((ReplicaId(i as u32), slot.round_trip()?)))
            .collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        let s = &self.inner;
        let peers = s
            .peers
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let c = &slot.counters;
                let round_trip = slot.round_trip();
                PeerStats {
                    id: ReplicaId(i as u32),
                    connected: round_trip.is_some(),
                    round_trip,
                    frames_sent: c.sent.load(Relaxed),
                    frames_received: c.received.load(Relaxed),
                    frames_dropped: c.dropped.load(Relaxed),
                    send_failed: c.send_failed.load(Relaxed),
                    frames_oversize: c.oversize.load(Relaxed),
                    inbound_dropped: c.inbound_dropped.load(Relaxed),
                    queued: slot.queued(),
                }
            })
            .collect();
        NetStats {
            peers,
            rejected_handshakes: s.rejected_handshakes.load(Relaxed),
            tie_break_refused: s.tie_break_refused.load(Relaxed),
        }
    }

    /// Stops all tasks, closes every connection and waits (at most 3 s) for
    /// the close to reach the peers. Other clones of this handle become inert.
    pub async fn shutdown(self) {
        let s = &self.inner;
        let tasks = std::mem::take(&mut *s.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        s.inbound.close();
        s.endpoint.close(codes::SHUTDOWN, b"shutdown");
        for slot in &s.peers {
            slot.conn.send_replace(None);
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), s.endpoint.wait_idle()).await;
        info!(target: "pbft::net", replica = %s.cfg.me, "transport shut down");
    }
}

/// Jittered exponential backoff: uniform in `[d/2, d]` with
/// `d = min(max, min * 2^attempt)`.
fn backoff(cfg: &NetConfig, attempt: u32) -> Duration {
    let base = cfg
        .reconnect_min
        .saturating_mul(1u32 << attempt.min(20))
        .min(cfg.reconnect_max);
    let ms = base.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

async fn accept_loop(s: Arc<Shared>) {
    while let Some(incoming) = s.endpoint.accept().await {
        let Some(permit) = s.handshakes.slot(incoming.remote_address()) else {
            debug!(target: "pbft::net", from = %incoming.remote_address(), "too many handshakes; refused");
            incoming.refuse();
            continue;
        };
        let s = s.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let from = incoming.remote_address();
            match incoming.await {
                Ok(conn) => on_accepted(&s, conn),
                Err(e) => {
                    if tls::is_handshake_rejection(&e) {
                        s.rejected_handshakes.fetch_add(1, Relaxed);
                        warn!(target: "pbft::net", %from, reason = %e, "rejected replica handshake");
                    } else {
                        debug!(target: "pbft::net", %from, reason = %e, "inbound handshake failed");
                    }
                }
            }
        }.in_current_span());
    }
}

fn on_accepted(s: &Arc<Shared>, conn: Connection) {
    let from = conn.remote_address();
    // The verifier only lets genesis keys through, so the lookup succeeds.
    let Some(id) = tls::peer_key(&conn).and_then(|k| s.by_key.get(&k).copied()) else {
        s.rejected_handshakes.fetch_add(1, Relaxed);
        warn!(target: "pbft::net", %from, "connection without a genesis key; closed");
        conn.close(codes::UNKNOWN_KEY, b"unknown key");
        return;
    };
    if id >= s.cfg.me {
        s.tie_break_refused.fetch_add(1, Relaxed);
        warn!(target: "pbft::net", peer = %id, %from, reason = "lower id dials", "connection against the tie-break; closed");
        conn.close(codes::TIE_BREAK, b"lower id dials");
        return;
    }
    install(s, id, conn);
}

/// Makes `conn` the connection of `id` and starts its reader.
fn install(s: &Arc<Shared>, id: ReplicaId, conn: Connection) {
    let slot = &s.peers[id.index()];
    let old = slot.conn.send_replace(Some(conn.clone()));
    if let Some(old) = old {
        if old.stable_id() != conn.stable_id() {
            old.close(codes::REPLACED, b"replaced");
        }
    }
    info!(target: "pbft::net", peer = %id, addr = %conn.remote_address(), "connected");
    tokio::spawn(read_loop(s.clone(), id, conn).in_current_span());
}

async fn dial_loop(s: Arc<Shared>, id: ReplicaId, client: quinn::ClientConfig) {
    let genesis_addr = s.cfg.peers[id.index()].addr.clone();
    let name = format!("replica-{}", id.0);
    let mut failures = 0u32;
    loop {
        // A name is looked up at every dial: the peer may be back under a
        // new IP (a rescheduled pod, a replaced container).
        let local = s.endpoint.local_addr().ok();
        let resolved = genesis_addr
            .resolve(&s.cfg.resolver, local, s.cfg.dial_timeout)
            .await;
        let addr = resolved.as_ref().ok().copied();
        if let Some(addr) = addr {
            s.handshakes.learn(id, addr);
        }
        let result = match resolved {
            Err(reason) => Err(reason),
            Ok(addr) => match s.endpoint.connect_with(client.clone(), addr, &name) {
                Ok(connecting) => {
                    match tokio::time::timeout(s.cfg.dial_timeout, connecting).await {
                        Ok(Ok(conn)) => Ok(conn),
                        Ok(Err(e)) => {
                            if tls::is_handshake_rejection(&e) {
                                s.rejected_handshakes.fetch_add(1, Relaxed);
                                warn!(target: "pbft::net", peer = %id, addr = %genesis_addr, %addr, reason = %e, "rejected replica handshake");
                            }
                            Err(e.to_string())
                        }
                        Err(_) => Err("dial timed out".to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match result {
            Ok(conn) => {
                install(&s, id, conn.clone());
                let reason = conn.closed().await;
                if tls::is_handshake_rejection(&reason) {
                    // A TLS 1.3 client finishes first; the peer refused our
                    // certificate afterwards. Back off as for a failed dial.
                    s.rejected_handshakes.fetch_add(1, Relaxed);
                    failures = failures.saturating_add(1);
                    warn!(target: "pbft::net", peer = %id, addr = %genesis_addr, %reason, "peer rejected our certificate");
                } else {
                    failures = 0;
                }
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                let resolved = addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
                if failures == 1 {
                    info!(target: "pbft::net", peer = %id, addr = %genesis_addr, %resolved, %reason, "dial failed; retrying with backoff");
                } else {
                    debug!(target: "pbft::net", peer = %id, addr = %genesis_addr, %resolved, %reason, failures, "dial failed");
                }
            }
        }
        tokio::time::sleep(backoff(&s.cfg, failures)).await;
    }
}

/// How often the names of the peers that dial us are looked up again: their
/// current addresses give their handshakes the room kept for genesis peers.
const NAME_REFRESH: Duration = Duration::from_secs(10);

/// Keeps the addresses of the lower-id peers named by DNS (they dial us; we
/// never dial them) current for [`Handshakes`]. A failure only waits for the
/// next round: their handshakes are still accepted, from the shared room.
async fn refresh_names(s: Arc<Shared>) {
    let named: Vec<_> = s
        .cfg
        .peers
        .iter()
        .filter(|p| p.id < s.cfg.me && p.addr.ip().is_none())
        .map(|p| (p.id, p.addr.clone()))
        .collect();
    if named.is_empty() {
        return;
    }
    loop {
        let local = s.endpoint.local_addr().ok();
        for (id, addr) in &named {
            match addr
                .resolve(&s.cfg.resolver, local, s.cfg.dial_timeout)
                .await
            {
                Ok(found) => s.handshakes.learn(*id, found),
                Err(reason) => {
                    debug!(target: "pbft::net", peer = %id, %addr, %reason, "name lookup failed; retried in 10 s")
                }
            }
        }
        tokio::time::sleep(NAME_REFRESH).await;
    }
}

async fn read_loop(s: Arc<Shared>, id: ReplicaId, conn: Connection) {
    let slot = &s.peers[id.index()];
    let readers = Arc::new(Semaphore::new(limits::MESH_READERS));
    let reason = loop {
        let Ok(permit) = readers.clone().acquire_owned().await else {
            break "reader semaphore closed".to_string();
        };
        let recv = match conn.accept_uni().await {
            Ok(r) => r,
            Err(e) => break e.to_string(),
        };
        let s = s.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                read_stream(&s, id, recv).await;
            }
            .in_current_span(),
        );
    };
    let cleared = slot.conn.send_if_modified(|c| {
        if c.as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            *c = None;
            true
        } else {
            false
        }
    });
    if cleared {
        info!(target: "pbft::net", peer = %id, %reason, "disconnected");
    } else {
        debug!(target: "pbft::net", peer = %id, %reason, "superseded connection ended");
    }
}

/// Reads `len: u32 LE ‖ frame` records from one uni stream until it ends,
/// delivering each frame to the node. A record over `frame_bytes_max` is
/// counted and its bytes are read and discarded in chunks (never buffered),
/// so the frames after it on the stream still arrive.
async fn read_stream(s: &Shared, id: ReplicaId, mut recv: quinn::RecvStream) {
    let counters = &s.peers[id.index()].counters;
    let max = s.cfg.frame_bytes_max;
    loop {
        let mut len = [0u8; RECORD_LEN_BYTES];
        match recv.read_exact(&mut len).await {
            Ok(()) => {}
            // Finished cleanly between records.
            Err(quinn::ReadExactError::FinishedEarly(0)) => return,
            Err(e) => {
                debug!(target: "pbft::net", peer = %id, reason = %e, "inbound stream ended");
                return;
            }
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > max {
            counters.oversize.fetch_add(1, Relaxed);
            warn!(target: "pbft::net", peer = %id, len, max, "frame over the size cap refused");
            if let Err(reason) = discard(&mut recv, len).await {
                debug!(target: "pbft::net", peer = %id, %reason, "inbound stream ended");
                return;
            }
            continue;
        }
        // The frame's bytes come out of the peer's inbound budget before
        // they are allocated, and go back once the node has taken it.
        let Some(permit) = s.inbound.reserve(id, len).await else {
            return;
        };
        let mut frame = vec![0u8; len];
        if let Err(e) = recv.read_exact(&mut frame).await {
            // A truncated record (the writer reset the stream) is not a frame.
            debug!(target: "pbft::net", peer = %id, reason = %e, "inbound stream ended in a frame");
            return;
        }
        counters.received.fetch_add(1, Relaxed);
        if !s.inbound.push(id, frame, permit) {
            counters.inbound_dropped.fetch_add(1, Relaxed);
            debug!(target: "pbft::net", peer = %id, "peer's inbound queue full; frame dropped");
        }
    }
}

/// Reads and drops the next `len` bytes of `recv`.
async fn discard(recv: &mut quinn::RecvStream, mut len: usize) -> Result<(), String> {
    while len > 0 {
        match recv.read_chunk(len, true).await {
            Ok(Some(chunk)) => len -= chunk.bytes.len(),
            Ok(None) => return Err("finished inside a frame".to_string()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Bytes a peer may hold in each direction: queued for it plus long frames
/// being written to it, and frames from it queued or being read. Room for
/// two of the largest frames, so a peer that asks for fetches and never
/// reads them makes us hold at most this much (issue 17, defect 7).
pub(crate) fn peer_bytes_max(cfg: &NetConfig) -> usize {
    (2 * cfg.frame_bytes_max).max(8 * 1024 * 1024)
}

/// `bytes` in KiB permits, rounded up.
fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).max(1) as u32
}

/// Bytes of a record's length prefix.
const RECORD_LEN_BYTES: usize = 4;

/// Frames at most this long share the peer's persistent stream, and several
/// ready ones leave in one write of at most about this many bytes. A longer
/// frame (a state snapshot, a batch of fetched blocks) gets a stream of its
/// own, so it never holds the consensus messages up behind it.
const SHARED_STREAM_FRAME_MAX: usize = 64 * 1024;

fn put_record(buf: &mut Vec<u8>, frame: &[u8]) {
    buf.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    buf.extend_from_slice(frame);
}

/// Sends the peer's queued frames over its current connection: small frames
/// as records on one long-lived uni stream (opened at the first frame,
/// replaced after a failed write), several ready ones coalesced into one
/// write; each larger frame on a stream of its own, written by a task of
/// its own (at most `MESH_WRITERS` at once).
async fn send_loop(s: Arc<Shared>, id: ReplicaId) {
    let slot = &s.peers[id.index()];
    let writers = Arc::new(Semaphore::new(limits::MESH_WRITERS));
    let mut rx = slot.conn.subscribe();
    let mut buf = Vec::with_capacity(2 * SHARED_STREAM_FRAME_MAX);
    loop {
        let live = |c: &Option<Connection>| c.as_ref().is_some_and(|c| c.close_reason().is_none());
        let conn = match rx.wait_for(live).await {
            Ok(c) => match c.as_ref() {
                Some(c) => c.clone(),
                None => continue,
            },
            Err(_) => return,
        };
        let mut stream: Option<quinn::SendStream> = None;
        while conn.close_reason().is_none() {
            buf.clear();
            let (mut frames, mut taken) = (0u64, 0usize);
            while buf.len() < SHARED_STREAM_FRAME_MAX {
                let Some(frame) = slot.pop() else { break };
                taken += 1;
                if frame.len() > SHARED_STREAM_FRAME_MAX {
                    let Ok(permit) = writers.clone().acquire_owned().await else {
                        return;
                    };
                    let wanted = kib(frame.len()).min(kib(peer_bytes_max(&s.cfg)));
                    let Ok(bytes) = slot.long_writes.clone().acquire_many_owned(wanted).await
                    else {
                        return;
                    };
                    spawn_long_write(s.clone(), id, conn.clone(), frame, (permit, bytes));
                    continue;
                }
                put_record(&mut buf, &frame);
                frames += 1;
            }
            if taken == 0 {
                tokio::select! {
                    _ = slot.wake.notified() => continue,
                    _ = conn.closed() => break,
                    _ = rx.changed() => break,
                }
            }
            if frames == 0 {
                continue;
            }
            let result = write_records(&conn, &mut stream, &buf, s.cfg.idle_timeout).await;
            count_write(&s, id, frames, result);
        }
    }
}

/// Writes one long frame on a stream of its own, in a task of its own that
/// holds `permit` until it is done.
fn spawn_long_write(
    s: Arc<Shared>,
    id: ReplicaId,
    conn: Connection,
    frame: Arc<[u8]>,
    permit: (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    ),
) {
    let task = async move {
        let _permit = permit;
        let mut record = Vec::with_capacity(RECORD_LEN_BYTES + frame.len());
        put_record(&mut record, &frame);
        let mut own = None;
        let result = write_records(&conn, &mut own, &record, s.cfg.idle_timeout).await;
        if let Some(mut stream) = own {
            let _ = stream.finish();
        }
        count_write(&s, id, 1, result);
    };
    tokio::spawn(task.in_current_span());
}

fn count_write(s: &Shared, id: ReplicaId, frames: u64, result: Result<(), String>) {
    let counters = &s.peers[id.index()].counters;
    match result {
        Ok(()) => {
            counters.sent.fetch_add(frames, Relaxed);
        }
        Err(reason) => {
            counters.send_failed.fetch_add(frames, Relaxed);
            debug!(target: "pbft::net", peer = %id, frames, %reason, "frame write failed");
        }
    }
}

/// Writes whole records on `stream`, opening it first if there is none. On
/// failure or timeout the stream is reset and forgotten (the next write opens
/// another), so the peer never takes a truncated record for a frame.
async fn write_records(
    conn: &Connection,
    stream: &mut Option<quinn::SendStream>,
    records: &[u8],
    limit: Duration,
) -> Result<(), String> {
    if stream.is_none() {
        let opened = tokio::time::timeout(limit, conn.open_uni())
            .await
            .map_err(|_| "open stream timed out".to_string())?
            .map_err(|e| e.to_string())?;
        *stream = Some(opened);
    }
    let s = stream.as_mut().expect("opened above");
    let result = match tokio::time::timeout(limit, s.write_all(records)).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => {
            let _ = s.reset(codes::SHUTDOWN);
            Err(e.to_string())
        }
        Err(_) => {
            let _ = s.reset(codes::TIMEOUT);
            Err("write timed out".to_string())
        }
    };
    *stream = None;
    result
}

#[cfg(test)]
mod handshake_tests {
    use super::*;
    use crate::net::PeerInfo;

    /// Issue 24, defect 2: however many handshakes others hold, a genesis
    /// peer's own address finds room; one source IP holds at most its cap.
    #[test]
    fn a_peer_always_finds_handshake_room_and_one_source_is_capped() {
        let peers: Vec<PeerInfo> = (0..4)
            .map(|i| PeerInfo {
                id: ReplicaId(i),
                public_key: KeyPair::from_label(&format!("hs-{i}")).public(),
                addr: crate::net::PeerAddr::parse(&format!("127.0.0.1:{}", 7000 + i)).unwrap(),
            })
            .collect();
        let cfg = NetConfig::new(ReplicaId(0), peers[0].addr.ip().unwrap(), peers.clone());
        let h = Handshakes::new(&cfg);
        // One host (the peers' own IP, other ports) stalls handshakes.
        let stalled: Vec<HandshakeSlot> = (0..100u16)
            .filter_map(|port| h.slot(SocketAddr::from(([127, 0, 0, 1], 20_000 + port))))
            .collect();
        assert_eq!(stalled.len(), limits::HANDSHAKES_PER_SOURCE);
        // Many hosts fill the shared pool.
        let flood: Vec<HandshakeSlot> = (0..100u8)
            .filter_map(|host| h.slot(SocketAddr::from(([10, 0, 0, host], 5000))))
            .collect();
        assert_eq!(
            flood.len(),
            limits::HANDSHAKES - limits::HANDSHAKES_PER_SOURCE
        );
        assert!(
            h.slot(SocketAddr::from(([10, 0, 1, 1], 5000))).is_none(),
            "pool full"
        );
        // Every peer still has room, up to its own cap.
        for p in &peers[1..] {
            let addr = p.addr.ip().unwrap();
            let mine: Vec<HandshakeSlot> = (0..5).filter_map(|_| h.slot(addr)).collect();
            assert_eq!(mine.len(), limits::PEER_HANDSHAKES, "peer {}", p.id);
        }
        // Slots come back when the handshakes end.
        drop(flood);
        assert!(h.slot(SocketAddr::from(([10, 0, 1, 1], 5000))).is_some());
        drop(stalled);
    }

    /// A peer named by DNS gets its room once its name resolved, at the
    /// address it resolved to last (not at an old one).
    #[test]
    fn a_named_peer_gets_room_at_its_current_address() {
        let peers: Vec<PeerInfo> = (0..4)
            .map(|i| PeerInfo {
                id: ReplicaId(i),
                public_key: KeyPair::from_label(&format!("hn-{i}")).public(),
                addr: crate::net::PeerAddr::parse(&format!("replica-{i}.test:7000")).unwrap(),
            })
            .collect();
        let cfg = NetConfig::new(ReplicaId(3), "127.0.0.1:7000".parse().unwrap(), peers);
        let h = Handshakes::new(&cfg);
        let old: SocketAddr = "127.0.0.5:7000".parse().unwrap();
        let new: SocketAddr = "127.0.0.6:7000".parse().unwrap();
        assert!(!h.is_peer(old));
        h.learn(ReplicaId(1), old);
        assert!(h.is_peer(old));
        h.learn(ReplicaId(1), new);
        assert!(!h.is_peer(old) && h.is_peer(new));
        let mine: Vec<HandshakeSlot> = (0..5).filter_map(|_| h.slot(new)).collect();
        assert_eq!(mine.len(), limits::PEER_HANDSHAKES);
    }
}
