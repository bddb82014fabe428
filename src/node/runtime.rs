//! The tokio runtime of a real replica: the only place tokio, quinn and
//! rocksdb meet.
//!
//! ```text
//!  peers ──QUIC──▶ Transport ──(from, frame)──┐
//!                                             │ decode (Message::from_frame;
//!  clients ─QUIC─▶ ClientServer ──request──┐  │  undecodable: counted, dropped)
//!                                          ▼  ▼
//!  SIGTERM/SIGINT ──────────────▶  select! loop ──▶ Node::ingest(now, input) × n
//!  sleep_until(next_deadline) ──Tick──▶ │         Node::flush (one write per group)
//!                                       │              ▼
//!                                       │        pop_outgoing():
//!                                       │          ToReplica ─▶ transport.send
//!                                       │          Broadcast ─▶ transport.broadcast
//!                                       └───────── ToClient  ─▶ waiting client(s)
//! ```
//!
//! One task owns the [`Node`]. Each turn of its loop ingests the input that
//! woke it and whatever else has already arrived (up to
//! `INGEST_BURST_MAX`), then flushes: one write for all of their writes,
//! synced unless it holds blocks alone (group commit). What they produced
//! goes to the transport in order; what depends on a vote in the write only
//! after it is synced. Time is wall-clock microseconds since the Unix epoch. With `worker_threads = 1` (the default) everything —
//! QUIC, client streams and this loop — runs on one thread.
//!
//! With the cargo feature `byzantine`, `pbft-replica start --byzantine B`
//! runs `Role::Byzantine`: the same loop, but what the node sends passes
//! through an adversary strategy (module `byzantine`). The loop reaches it
//! only through the seam in `egress`, built once in [`run`]; in default
//! builds that seam is a zero-sized pass-through.
//!
//! A [`NodeError`] is a storage failure: the replica cannot keep its
//! promises (never forget a vote), so it stops and the binary exits with
//! the storage exit code. Peer loss is never fatal: the transport keeps
//! redialling and PBFT tolerates f silent replicas.

use super::config::RuntimeConfig;
use super::service::ClientService;
use super::{Node, NodeError, NodeInput, Outgoing};
use crate::consensus::messages::Message;
use crate::exit;
use crate::net::{self, ClientServer, NetError, Transport};
use crate::ops;
use crate::storage::rocks::RocksStore;
use crate::storage::StorageError;
use crate::types::{ReplicaId, Time};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

#[cfg(feature = "byzantine")]
pub mod byzantine;
mod egress;
mod observe;

use egress::Egress;
use observe::{LoopCounters, Observer};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The store could not be opened or failed while running (fatal).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A socket could not be bound or the transport could not start.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    /// The operations endpoint (`ops.listen`) could not be bound.
    #[error("operations endpoint: cannot listen on {addr}: {source}")]
    Ops {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl From<NodeError> for RuntimeError {
    fn from(e: NodeError) -> RuntimeError {
        match e {
            NodeError::Storage(s) => RuntimeError::Storage(s),
        }
    }
}

impl RuntimeError {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Storage(_) => exit::STORAGE,
            RuntimeError::Net(_) | RuntimeError::Signal(_) | RuntimeError::Ops { .. } => {
                exit::FAILURE
            }
        }
    }
}

/// How a replica behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs the protocol.
    Honest,
    /// Runs the honest node, but its traffic passes through this adversary
    /// strategy (cargo feature `byzantine`; see [`byzantine`]).
    #[cfg(feature = "byzantine")]
    Byzantine(crate::adversary::Kind),
}

/// Counters of the runtime loop.
#[derive(Clone, Copy, Debug, Default)]
struct LoopStats {
    frames: u64,
    undecodable: u64,
    blocks: u64,
    /// Synced writes (a group of blocks alone is written unsynced), and
    /// the writes of inputs grouped into all writes.
    syncs: u64,
    grouped_writes: u64,
    /// Wall time spent in writes that hold messages back (synced or not).
    write_micros: u64,
}

/// Microseconds since the Unix epoch on the wall clock, which NTP or a
/// resumed VM may step forward or back.
fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The core's timer clock: monotonic (std's `Instant`), counted from the
/// wall time of its first reading. Issue 24, defect 7: fed the wall clock,
/// the core kept the highest time it saw, so after a step forward and its
/// correction its timers stood still for the size of the step (and its
/// PRE-PREPAREs were refused for skew). The wall clock goes to the core
/// apart (`Node::set_wall_clock`), for batch timestamps and the skew check.
pub fn core_now() -> Time {
    static ORIGIN: std::sync::OnceLock<(std::time::Instant, u64)> = std::sync::OnceLock::new();
    let (at, wall) = ORIGIN.get_or_init(|| (std::time::Instant::now(), wall_micros()));
    Time(wall + at.elapsed().as_micros() as u64)
}

/// The tokio instant at which timer-clock `deadline` falls.
fn instant_of(deadline: Time) -> Instant {
    let now = core_now();
    Instant::now() + Duration::from_micros(deadline.0.saturating_sub(now.0))
}

struct Driver {
    node: Node<RocksStore>,
    transport: Transport,
    service: ClientService,
    me: ReplicaId,
    stats: LoopStats,
    /// Submissions ingested since the last flush (see `ClientService::after_submit`).
    submitted: Vec<(crate::crypto::PublicKey, u64)>,
    /// The adversary seam (a pass-through unless this replica is Byzantine).
    egress: Egress,
    /// Counters for the operations endpoint.
    observer: Observer,
    /// Where the status goes (`None` when `ops.listen` is "").
    publisher: Option<ops::Publisher>,
    /// Transfers submitted through the JSON API since the last flush, by
    /// (sender, nonce): once admitted they are relayed to the other
    /// replicas (see [`Driver::on_api`]). At most one flush's worth.
    relay: std::collections::HashSet<(crate::crypto::PublicKey, u64)>,
}

impl Driver {
    /// Feeds one input; what it produced leaves at the next [`Driver::flush`].
    fn ingest(&mut self, input: NodeInput) -> Result<(), NodeError> {
        self.node.set_wall_clock(wall_micros() / 1000);
        self.node.ingest(core_now(), input)
    }

    /// Feeds one input and delivers everything it produced, in order.
    async fn handle(&mut self, input: NodeInput) -> Result<(), NodeError> {
        self.ingest(input)?;
        self.flush().await
    }

    /// Syncs the writes of every input ingested since the last flush in one
    /// write (group commit), then delivers what they produced, in order.
    /// What the node releases before the sync (the release rule of `Node`:
    /// a block's replies and the next PRE-PREPARE need none) is handed to
    /// the transport first, and the loop yields once so the connection
    /// tasks put it on the wire before the thread blocks in the sync. (A
    /// sync on a blocking-pool thread, which lets the loop run on during it,
    /// measured worse on two shared cores: the thread hand-offs cost more
    /// CPU than the overlap saved — interleaved A/B, 1,000 tx/s p50 7.6 vs
    /// 6.6 ms, 256 in flight 7,156 vs 7,764 tx/s.)
    async fn flush(&mut self) -> Result<(), NodeError> {
        // Submissions of this turn: signatures checked in one batch.
        let replica = self.node.replica();
        let admitted = self
            .service
            .admit(replica.network(), |tx| replica.verified_tx(tx));
        let mut relayed = Vec::new();
        for tx in admitted {
            if let Some(receipt) = self.node.refusal(&tx) {
                self.service.refused((tx.from, tx.nonce), receipt);
            } else if self.node.deferral(&tx) {
                self.service.busy((tx.from, tx.nonce));
            } else if self.relay.remove(&(tx.from, tx.nonce)) {
                relayed.push(Message::Request((*tx).clone()));
            }
            // Answered after the flush, once replies to it have gone out.
            self.submitted.push((tx.from, tx.nonce));
            self.ingest(NodeInput::VerifiedRequest(tx))?;
        }
        self.relay.clear();
        for request in relayed {
            self.transport.broadcast(Arc::from(request.to_frame()));
        }
        let writes = self.node.unsynced_writes();
        let pending = self.node.begin_flush()?;
        self.deliver();
        if let Some(pending) = pending {
            tokio::task::yield_now().await;
            let started = std::time::Instant::now();
            self.node.write_pending(pending)?;
            let took = started.elapsed();
            self.stats.write_micros += took.as_micros() as u64;
            self.stats.syncs += 1;
            if let Some(p) = &self.publisher {
                p.histograms
                    .storage_synced_write_seconds
                    .observe(took.as_secs_f64());
            }
        }
        self.node.finish_flush();
        self.stats.grouped_writes += writes as u64;
        self.deliver();
        for key in std::mem::take(&mut self.submitted) {
            self.service.after_submit(&self.node, key);
        }
        Ok(())
    }

    fn deliver(&mut self) {
        while let Some(out) = self.node.pop_outgoing() {
            let Some(out) = self.egress.outgoing(&self.node, &self.transport, out) else {
                continue;
            };
            match out {
                Outgoing::ToReplica { to, message } => {
                    self.observer.on_sent(&message);
                    self.transport.send(to, Arc::from(message.to_frame()))
                }
                Outgoing::Broadcast(message) => {
                    self.observer.on_sent(&message);
                    self.transport.broadcast(Arc::from(message.to_frame()))
                }
                Outgoing::ToClient {
                    client,
                    reply,
                    proof,
                } => self.service.on_reply(client, reply, proof),
            }
        }
        for block in self.node.drain_committed() {
            self.stats.blocks += 1;
            if let Some(p) = &self.publisher {
                self.observer.on_committed(&block, &p.histograms);
            }
            debug!(replica = %self.me, height = block.height, hash = %block.block_hash,
                "committed block");
        }
        // Logged by the node itself; drained so the list stays bounded.
        let _ = self.node.drain_views_entered();
    }

    fn on_frame(&mut self, from: ReplicaId, frame: &[u8], cap: usize) -> Result<(), NodeError> {
        self.stats.frames += 1;
        match Message::from_frame(frame, cap) {
            Ok(message) => {
                self.observer.on_received(&message);
                self.egress.incoming(&self.node, from, &message);
                self.ingest(NodeInput::Message { from, message })
            }
            Err(e) => {
                self.stats.undecodable += 1;
                // Logged at warn on powers of two so a flood cannot flood the log.
                if self.stats.undecodable.is_power_of_two() {
                    warn!(replica = %self.me, peer = %from, reason = %e,
                        undecodable = self.stats.undecodable, "undecodable frame from peer dropped");
                } else {
                    debug!(replica = %self.me, peer = %from, reason = %e, "undecodable frame dropped");
                }
                Ok(())
            }
        }
    }

    /// Publishes the status for the operations endpoint if one is due
    /// (`force`: whatever the time, e.g. at start).
    fn publish(&mut self, force: bool) {
        let Some(p) = &mut self.publisher else {
            return;
        };
        if !force && !p.due() {
            return;
        }
        let counters = LoopCounters {
            undecodable: self.stats.undecodable,
            syncs: self.stats.syncs,
        };
        let status = self
            .observer
            .status(&self.node, &self.transport, &self.service, counters);
        p.publish(status);
    }

    /// A request of the JSON API. A program posting a transfer asks one
    /// replica, where the client library sends it to every replica; this
    /// replica stands in for it and relays the transfer to the others once
    /// its signature checked and it is not refused, so the primary holds
    /// it (a backup's request timer alone would never get it ordered).
    /// Peers check a relayed request's signature themselves.
    fn on_api(&mut self, request: net::ClientRequest) -> Result<(), NodeError> {
        if let Ok(crate::client::proto::ClientRequest::Submit(tx)) =
            crate::client::proto::ClientRequest::from_frame(&request.frame)
        {
            self.relay.insert((tx.from, tx.nonce));
        }
        self.on_client(request)
    }

    fn on_client(&mut self, request: net::ClientRequest) -> Result<(), NodeError> {
        let transport = &self.transport;
        let connected = || {
            transport
                .stats()
                .peers
                .iter()
                .filter(|p| p.connected)
                .count() as u32
        };
        let undecodable = self.stats.undecodable;
        let answer = self.egress.answers(&self.node);
        // A submission waits for the flush, which checks it with the rest.
        self.service
            .on_request(&self.node, request, connected, undecodable, answer)
    }
}

/// Runs a replica until SIGTERM or SIGINT (`Ok`) or a fatal error.
///
/// Opens the store and the node, starts the mesh and the client endpoint,
/// logs one `event="ready"` line, then serves. On a signal it stops
/// accepting clients, answers waiting submissions, shuts the transport
/// down and closes the store.
pub async fn run(cfg: RuntimeConfig, role: Role) -> Result<(), RuntimeError> {
    let me = cfg.me;
    let store = RocksStore::open(&cfg.data_dir)?;
    let view_record = super::FileViewRecord::open(cfg.view_record.clone())?;
    let node = Node::open_recorded(
        &cfg.genesis,
        me,
        cfg.key.clone(),
        store,
        Box::new(view_record),
    )?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RuntimeError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RuntimeError::Signal)?;
    let frame_cap = cfg.net.frame_bytes_max;
    let (transport, mut inbound) = Transport::start(cfg.net.clone(), &cfg.key).await?;
    let (clients, mut requests) = match ClientServer::start(
        cfg.client_listen,
        &cfg.key,
        net::ClientLimits::for_queue(
            crate::client::proto::REQUEST_BYTES_MAX,
            cfg.client_queue_max,
        ),
        ClientService::screen,
    )
    .await
    {
        Ok(started) => started,
        Err(e) => {
            transport.shutdown().await;
            return Err(e.into());
        }
    };
    let egress = Egress::new(role, &cfg, node.replica().network());
    let mut d = Driver {
        node,
        transport,
        service: ClientService::new(cfg.submit_timeout, cfg.submit_waiters_max),
        me,
        stats: LoopStats::default(),
        submitted: Vec::new(),
        egress,
        observer: Observer::new(),
        publisher: None,
        relay: std::collections::HashSet::new(),
    };
    // The JSON API's requests: served by the loop like the client
    // endpoint's (a bounded queue; the handlers never wait for room).
    let (api_tx, mut api_requests) = tokio::sync::mpsc::channel(API_QUEUE_MAX);
    let settings = ops::Settings {
        // Above the replica's own submit timeout, which answers first.
        api_submit_wait: cfg.submit_timeout + Duration::from_secs(10),
        ..ops::Settings::default()
    };
    let ops_server = match cfg.ops_listen {
        Some(addr) => match start_ops(&mut d, addr, settings, api_tx).await {
            Ok(server) => Some(server),
            Err(e) => {
                clients.shutdown().await;
                d.transport.shutdown().await;
                return Err(e);
            }
        },
        None => None,
    };
    info!(
        event = "ready",
        replica = %me,
        p2p = %d.transport.local_addr().map_or("?".into(), |a| a.to_string()),
        client = %clients.local_addr().map_or("?".into(), |a| a.to_string()),
        network = %cfg.genesis.network.0,
        ops = %cfg.ops_listen.map_or("disabled".into(), |a| format!("http://{a}/")),
        height = d.node.height(),
        view = %d.node.replica().view(),
        "replica ready"
    );
    // Recovery may have left the core with work for its timers (e.g. a
    // view change in progress): let it act once at start.
    let mut outcome: Result<(), RuntimeError> = d.handle(NodeInput::Tick).await.map_err(Into::into);
    if outcome.is_ok() {
        outcome = serve(
            &mut d,
            &mut inbound,
            &mut requests,
            &mut api_requests,
            &mut sigterm,
            &mut sigint,
            frame_cap,
        )
        .await;
    }
    if let Err(e) = &outcome {
        error!(replica = %me, error = %e, "fatal error; stopping");
    }
    d.service.shutdown();
    clients.shutdown().await;
    if let Some(server) = ops_server {
        server.abort();
    }
    if outcome.is_ok() {
        // A clean stop: the next start may keep voting in this view. If this
        // fails, the next start treats the stop as a crash (still safe).
        if let Err(e) = d.node.save_votes() {
            warn!(replica = %me, error = %e, "could not save this view's votes; the next start will sit this view out");
        }
    }
    d.egress.log_stopped(me);
    let Driver {
        node,
        transport,
        stats,
        service,
        ..
    } = d;
    transport.shutdown().await;
    let height = node.height();
    let core = node.replica().stats();
    let ignored = core
        .ignored
        .iter()
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect::<Vec<_>>()
        .join("; ");
    let view = node.replica().view();
    let fetches_refused = node.fetches_refused();
    let (view_changes, new_views) = (core.view_changes_started, core.new_views_entered);
    drop(node);
    info!(
        event = "stopped",
        replica = %me,
        height,
        %view,
        blocks = stats.blocks,
        syncs = stats.syncs,
        write_ms = stats.write_micros / 1000,
        grouped_writes = stats.grouped_writes,
        frames = stats.frames,
        undecodable = stats.undecodable,
        fetches_refused,
        client_requests = service.stats().requests,
        client_signatures_checked_before = service.stats().checked_before,
        view_changes,
        new_views,
        ignored = %ignored,
        "replica stopped"
    );
    outcome
}

/// How often the loop hands the core the transport's round trips.
const RTT_READ_INTERVAL: Duration = Duration::from_millis(200);

async fn serve(
    d: &mut Driver,
    inbound: &mut net::Inbound,
    requests: &mut tokio::sync::mpsc::Receiver<net::ClientRequest>,
    api_requests: &mut tokio::sync::mpsc::Receiver<net::ClientRequest>,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
    frame_cap: usize,
) -> Result<(), RuntimeError> {
    // The operations endpoint hears from the loop at least this often,
    // even when nothing happens (its `/healthz` judges the loop by it).
    let mut publish_tick = tokio::time::interval(ops::PUBLISH_INTERVAL);
    publish_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publishing = d.publisher.is_some();
    // The core's proposal monitor judges the primary by round trips until
    // it measured a round (`consensus::monitor`): QUIC's, read this often.
    let mut rtt_tick = tokio::time::interval(RTT_READ_INTERVAL);
    rtt_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = d.egress.deadline(d.node.next_deadline().map(instant_of));
        let expiry = d.service.next_expiry();
        // Unbiased: no source can starve another (the core also checks its
        // timers on every input, so a busy mesh cannot postpone them).
        tokio::select! {
            _ = sigterm.recv() => {
                info!(replica = %d.me, signal = "SIGTERM", "shutting down");
                return Ok(());
            }
            _ = sigint.recv() => {
                info!(replica = %d.me, signal = "SIGINT", "shutting down");
                return Ok(());
            }
            frame = inbound.recv() => match frame {
                Some((from, frame)) => d.on_frame(from, &frame, frame_cap)?,
                None => return Err(NetError::Closed("transport stopped".into()).into()),
            },
            request = requests.recv() => match request {
                Some(request) => d.on_client(request)?,
                None => return Err(NetError::Closed("client endpoint stopped".into()).into()),
            },
            // `None` only once the endpoint is gone (or disabled): the
            // branch is then off.
            Some(request) = api_requests.recv() => d.on_api(request)?,
            _ = sleep_until_opt(deadline) => {
                // The adversary's tick shares the deadline; the core's
                // tick, if also due, fires on the next turn.
                if d.egress.tick(&d.node, &d.transport) {
                    continue;
                }
                d.ingest(NodeInput::Tick)?
            }
            _ = sleep_until_opt(expiry) => d.service.expire(Instant::now()),
            _ = publish_tick.tick(), if publishing => {
                d.publish(false);
                continue;
            }
            _ = rtt_tick.tick() => {
                for (peer, rtt) in d.transport.round_trips() {
                    d.node.observe_link_rtt(peer, rtt);
                }
                continue;
            }
        }
        // Group commit: take whatever else already arrived, then sync the
        // writes of all of it at once and send what they produced.
        let mut taken = 0;
        while taken < INGEST_BURST_MAX {
            let before = taken;
            if let Ok((from, frame)) = inbound.try_recv() {
                d.on_frame(from, &frame, frame_cap)?;
                taken += 1;
            }
            if let Ok(request) = requests.try_recv() {
                d.on_client(request)?;
                taken += 1;
            }
            if let Ok(request) = api_requests.try_recv() {
                d.on_api(request)?;
                taken += 1;
            }
            if taken == before {
                break;
            }
        }
        d.flush().await?;
        d.publish(false);
    }
}

/// Binds the operations endpoint, publishes a first status and serves it
/// on a task of its own (aborted at shutdown).
async fn start_ops(
    d: &mut Driver,
    addr: std::net::SocketAddr,
    settings: ops::Settings,
    api: tokio::sync::mpsc::Sender<net::ClientRequest>,
) -> Result<tokio::task::JoinHandle<()>, RuntimeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Ops { addr, source })?;
    let (publisher, shared) = ops::channel(ops::status::Status::default(), settings, Some(api));
    d.publisher = Some(publisher);
    d.publish(true);
    let me = d.me;
    Ok(tokio::spawn(async move {
        if let Err(e) = ops::http::serve(listener, shared).await {
            warn!(replica = %me, error = %e, "operations endpoint stopped");
        }
    }))
}

/// Most inputs one synced write may group: bounds how long the first of
/// them waits for its messages to leave.
const INGEST_BURST_MAX: usize = 256;

/// JSON API requests queued for the loop; more are answered 503 busy.
const API_QUEUE_MAX: usize = 1024;

/// Sleeps until `at`, or forever if there is no deadline.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
