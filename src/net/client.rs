//! The client endpoint: a replica's [`ClientServer`] and the client's
//! [`ClientConnector`].
//!
//! Clients use their own port and ALPN (`pbft-client/2`), so client load and
//! client-facing bugs can't touch the replica mesh. A client talks to a
//! replica over a *session*: one bidirectional stream per connection on
//! which it writes request records and reads response records, any number
//! in flight (up to a cap) and answered in any order:
//!
//! ```text
//! record = len: u32 LE (of what follows) ‖ id: u64 LE ‖ kind: u8 ‖ payload
//! client → replica  kind 0: payload = one request frame
//! replica → client  kind 0: payload = the response frame
//!                   kind 1: busy (no request slot free at the replica)
//!                   kind 2: no response (the node dropped the request)
//! ```
//!
//! Why not one stream per request: every transfer would open and close a
//! stream at each of the four replicas, and each costs the replica a
//! spawned task, two timers and quinn's stream bookkeeping, and the client
//! four stream set-ups; a session costs none of that per request, and
//! records written together leave in one write. A
//! lost packet now delays the session's other requests (head-of-line
//! blocking), which a client that is latency-sensitive across a lossy
//! network could avoid by opening more than one session.
//!
//! The client pins each replica's genesis key (it will only talk to the real
//! replica). The server accepts any ed25519 certificate: clients are not
//! members, and their transactions carry their own signatures, so the TLS key
//! only tells the node *which* client is asking ([`ClientRequest::client_key`]).
//!
//! Bounds: at most `CLIENT_CONNECTIONS` connections, `CLIENT_STREAMS`
//! sessions per connection (a QUIC stream limit) and `SESSION_IN_FLIGHT`
//! requests in flight per session (the client's connector waits for a free
//! slot; a client that sends more anyway loses its connection); at most
//! `queue_max` requests in flight in total (queued for the node or awaiting
//! its response), beyond which a request is answered "busy". A record over
//! the frame cap closes the connection (`FRAME_TOO_LARGE`). An answer costs
//! the replica nothing until the node produces it: the node's own timeouts
//! (`submit_timeout`) bound how long it holds a request.

use super::share::{Shares, Unit};
use super::tls::{self, Identity, Pin};
use super::{codes, connection_error, limits, transport_config, NetError};
use crate::crypto::{KeyPair, PublicKey};
use quinn::{Connection, Endpoint, VarInt};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

const KIND_FRAME: u8 = 0;
const KIND_BUSY: u8 = 1;
const KIND_NO_RESPONSE: u8 = 2;
/// Bytes of a record after the length: id and kind.
const RECORD_HEAD: usize = 8 + 1;
/// Records a writer puts into one write when several are ready.
const COALESCE_BYTES_MAX: usize = 64 * 1024;

pub(super) fn put_record(buf: &mut Vec<u8>, id: u64, kind: u8, payload: &[u8]) {
    buf.extend_from_slice(&((RECORD_HEAD + payload.len()) as u32).to_le_bytes());
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

/// Why reading the next record failed.
enum ReadFailure {
    /// The stream ended cleanly between records.
    Ended,
    /// The declared length is outside `RECORD_HEAD..=RECORD_HEAD + max`.
    BadLength(usize),
    Read(quinn::ReadError),
}

/// Reads one record: `(id, kind, payload)`.
async fn read_record(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(u64, u8, Vec<u8>), ReadFailure> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(ReadFailure::Ended),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadFailure::Read(e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(RECORD_HEAD..=RECORD_HEAD + max).contains(&len) {
        return Err(ReadFailure::BadLength(len));
    }
    let mut body = vec![0u8; len];
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(ReadFailure::Ended),
        Err(quinn::ReadExactError::ReadError(e)) => return Err(ReadFailure::Read(e)),
    }
    let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    let kind = body[8];
    body.drain(..RECORD_HEAD);
    Ok((id, kind, body))
}

/// One client request, as handed to the node.
#[derive(Debug)]
pub struct ClientRequest {
    /// The request frame, at most `frame_bytes_max` bytes, not yet decoded.
    pub frame: Vec<u8>,
    /// Send the one response frame here; dropping it answers "no response".
    pub respond: Responder,
    /// The key the client presented in its TLS certificate.
    pub client_key: PublicKey,
}

/// Where the answer to one request goes. It holds the request's slots
/// (its session's and the server's) until the answer has been written.
pub struct Responder {
    id: u64,
    to: mpsc::UnboundedSender<Answer>,
    slots: Option<Slots>,
}

struct Slots {
    _session: OwnedSemaphorePermit,
    _server: Option<ServerSlot>,
}

/// A replica-wide request slot and the client's share units for it.
struct ServerSlot {
    _slot: OwnedSemaphorePermit,
    _shares: [Unit<ShareOf>; 2],
}

struct Answer {
    id: u64,
    kind: u8,
    payload: Vec<u8>,
    _slots: Slots,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Responder({})", self.id)
    }
}

impl Responder {
    /// Answers the request with `frame`; gives it back if the session is gone.
    pub fn send(mut self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        self.answer(KIND_FRAME, frame)
    }

    fn answer(&mut self, kind: u8, payload: Vec<u8>) -> Result<(), Vec<u8>> {
        let Some(slots) = self.slots.take() else {
            return Err(payload);
        };
        self.to
            .send(Answer {
                id: self.id,
                kind,
                payload,
                _slots: slots,
            })
            .map_err(|e| e.0.payload)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.answer(KIND_NO_RESPONSE, Vec::new());
    }
}

/// A replica's client-facing QUIC endpoint.
pub struct ClientServer {
    endpoint: Endpoint,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ClientServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientServer({:?})", self.endpoint.local_addr().ok())
    }
}

/// Bounds of a replica's client endpoint.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Largest request frame.
    pub frame_bytes_max: usize,
    /// Requests in flight at the replica (queued for the node or awaiting
    /// its answer, or answered and not yet written); beyond it, "busy".
    pub queue_max: usize,
    /// Of `queue_max`, what one client key may hold (so a client that never
    /// reads its answers cannot take every slot).
    pub key_share: usize,
    /// Of `queue_max`, what one source IP address may hold, whatever keys
    /// it presents.
    pub source_share: usize,
    /// An answer not written within this (the client does not read) ends
    /// its session and frees the session's slots.
    pub write_timeout: Duration,
    /// Client connections one source IP may hold, handshakes included.
    pub connections_per_source: usize,
    /// A connection that sends no request record for this long is closed
    /// (keep-alives do not count).
    pub idle_timeout: Duration,
}

impl ClientLimits {
    /// The bounds a replica uses for a replica-wide `queue_max`: a quarter
    /// of it per key, half per source address.
    pub fn for_queue(frame_bytes_max: usize, queue_max: usize) -> ClientLimits {
        ClientLimits {
            frame_bytes_max,
            queue_max,
            key_share: (queue_max / 4).max(1),
            source_share: (queue_max / 2).max(1),
            write_timeout: Duration::from_secs(10),
            connections_per_source: limits::CLIENT_CONNECTIONS / 4,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Answers a request frame on sight, without the node and without taking a
/// slot of the replica's capacity (the node's answer to a frame it cannot
/// decode); `None` passes the frame on.
pub type Screen = fn(&[u8]) -> Option<Vec<u8>>;

impl ClientServer {
    /// Binds `listen` and starts accepting clients. Requests arrive on the
    /// returned channel (capacity `limits.queue_max`); frames `screen`
    /// answers never reach it.
    pub async fn start(
        listen: SocketAddr,
        key: &KeyPair,
        limits: ClientLimits,
        screen: Screen,
    ) -> Result<(ClientServer, mpsc::Receiver<ClientRequest>), NetError> {
        if limits.frame_bytes_max == 0
            || limits.queue_max == 0
            || limits.key_share == 0
            || limits.source_share == 0
            || limits.connections_per_source == 0
        {
            return Err(NetError::Config(
                "client frame, queue, share and connection bounds must be non-zero".into(),
            ));
        }
        let identity = Identity::new(key)?;
        let transport = transport_config(Duration::from_secs(30), None, 0, limits::CLIENT_STREAMS)?;
        let server = tls::server_config(&identity, Pin::Any, tls::ALPN_CLIENT, transport)?;
        let endpoint = Endpoint::server(server, listen).map_err(|source| NetError::Bind {
            addr: listen,
            source,
        })?;
        let (tx, rx) = mpsc::channel(limits.queue_max);
        let shared = Arc::new(Shared {
            in_flight: Arc::new(Semaphore::new(limits.queue_max)),
            shares: Shares::default(),
            screen,
            limits,
        });
        let accept = tokio::spawn(accept_clients(endpoint.clone(), tx, shared));
        info!(target: "pbft::net", %listen, "client endpoint started");
        Ok((ClientServer { endpoint, accept }, rx))
    }

    /// The bound address (useful when `listen` had port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Stops accepting, closes every client connection and waits (at most
    /// 3 s) for the close to be sent.
    pub async fn shutdown(self) {
        self.accept.abort();
        let _ = self.accept.await;
        self.endpoint.close(codes::SHUTDOWN, b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
    }
}

/// What every connection of one endpoint shares.
struct Shared {
    /// The replica-wide request slots (`limits.queue_max`).
    in_flight: Arc<Semaphore>,
    /// Slots and connections held per client key and per source address.
    shares: Shares<ShareOf>,
    screen: Screen,
    limits: ClientLimits,
}

/// Who a share of the endpoint's capacity is counted against.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ShareOf {
    /// Request slots of one client key.
    Key(PublicKey),
    /// Request slots of one source IP address.
    Source(IpAddr),
    /// Connections (and handshakes) of one source IP address.
    Connections(IpAddr),
}

impl Shared {
    /// A replica-wide request slot within the client's shares.
    fn request_slot(&self, key: PublicKey, source: IpAddr) -> Option<ServerSlot> {
        let shares = self.shares.take([
            (ShareOf::Key(key), self.limits.key_share),
            (ShareOf::Source(source), self.limits.source_share),
        ])?;
        let slot = self.in_flight.clone().try_acquire_owned().ok()?;
        Some(ServerSlot {
            _slot: slot,
            _shares: shares,
        })
    }
}

async fn accept_clients(endpoint: Endpoint, tx: mpsc::Sender<ClientRequest>, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(limits::CLIENT_CONNECTIONS));
    while let Some(incoming) = endpoint.accept().await {
        let from = incoming.remote_address();
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(target: "pbft::net", %from, "too many clients; refused");
            incoming.refuse();
            continue;
        };
        // Issue 24, defect 2: one source cannot take every connection (or
        // handshake) slot; counted from before the handshake.
        let Some(source_unit) = shared.shares.take([(
            ShareOf::Connections(from.ip()),
            shared.limits.connections_per_source,
        )]) else {
            debug!(target: "pbft::net", %from,
                cap = shared.limits.connections_per_source, "too many connections from this source; refused");
            incoming.refuse();
            continue;
        };
        let (tx, shared) = (tx.clone(), shared.clone());
        tokio::spawn(async move {
            let _held = (permit, source_unit);
            let conn = match incoming.await {
                Ok(conn) => conn,
                Err(e) => {
                    debug!(target: "pbft::net", %from, reason = %e, "client handshake failed");
                    return;
                }
            };
            let Some(client_key) = tls::peer_key(&conn) else {
                conn.close(codes::SHUTDOWN, b"no key");
                return;
            };
            debug!(target: "pbft::net", %from, client = ?client_key, "client connected");
            serve_connection(conn, client_key, tx, shared).await;
        });
    }
}

/// Accepts a connection's sessions; closes it once it has sent no request
/// record for `idle_timeout` (keep-alives alone do not hold a connection
/// slot for ever).
async fn serve_connection(
    conn: Connection,
    client_key: PublicKey,
    tx: mpsc::Sender<ClientRequest>,
    shared: Arc<Shared>,
) {
    let started = tokio::time::Instant::now();
    // Milliseconds since `started` of the last request record.
    let active = Arc::new(AtomicU64::new(0));
    let idle = shared.limits.idle_timeout;
    loop {
        let last = started + Duration::from_millis(active.load(Ordering::Relaxed));
        let accepted = tokio::select! {
            accepted = conn.accept_bi() => accepted,
            _ = tokio::time::sleep_until(last + idle) => {
                let last = started + Duration::from_millis(active.load(Ordering::Relaxed));
                if last + idle <= tokio::time::Instant::now() {
                    debug!(target: "pbft::net", client = ?client_key, ?idle, "idle client connection closed");
                    conn.close(codes::TIMEOUT, b"idle");
                    return;
                }
                continue;
            }
        };
        let (send, recv) = match accepted {
            Ok(streams) => streams,
            Err(e) => {
                debug!(target: "pbft::net", client = ?client_key, reason = %e, "client disconnected");
                return;
            }
        };
        tokio::spawn(serve_session(
            SessionContext {
                conn: conn.clone(),
                client_key,
                started,
                active: active.clone(),
            },
            send,
            recv,
            tx.clone(),
            shared.clone(),
        ));
    }
}

/// What a session's reader knows of its connection.
struct SessionContext {
    conn: Connection,
    client_key: PublicKey,
    started: tokio::time::Instant,
    active: Arc<AtomicU64>,
}

/// Reads a session's request records and hands them to the node; a writer
/// task sends the answers back as the node produces them.
async fn serve_session(
    session: SessionContext,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<ClientRequest>,
    shared: Arc<Shared>,
) {
    let SessionContext {
        conn,
        client_key,
        started,
        active,
    } = session;
    let source = conn.remote_address().ip();
    let (answers, answers_rx) = mpsc::unbounded_channel::<Answer>();
    let stalled = Arc::new(tokio::sync::Notify::new());
    // Ends once every Responder is gone, or the client stops reading.
    tokio::spawn(write_answers(
        send,
        answers_rx,
        shared.limits.write_timeout,
        stalled.clone(),
        client_key,
    ));
    let slots = Arc::new(Semaphore::new(limits::SESSION_IN_FLIGHT));
    let max = shared.limits.frame_bytes_max;
    loop {
        let record = tokio::select! {
            biased;
            _ = stalled.notified() => return,
            record = read_record(&mut recv, max) => record,
        };
        let (id, kind, frame) = match record {
            Ok(record) => record,
            Err(ReadFailure::Ended) => return,
            Err(ReadFailure::BadLength(len)) => {
                warn!(target: "pbft::net", client = ?client_key, len, max,
                    "client record over the size cap; connection closed");
                conn.close(codes::FRAME_TOO_LARGE, b"frame too large");
                return;
            }
            Err(ReadFailure::Read(e)) => {
                debug!(target: "pbft::net", client = ?client_key, reason = %e, "client session ended");
                return;
            }
        };
        active.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let Ok(session_slot) = slots.clone().try_acquire_owned() else {
            warn!(target: "pbft::net", client = ?client_key,
                cap = limits::SESSION_IN_FLIGHT, "client over its in-flight cap; connection closed");
            conn.close(codes::BUSY, b"too many requests in flight");
            return;
        };
        if kind != KIND_FRAME {
            conn.close(codes::FRAME_TOO_LARGE, b"unknown record kind");
            return;
        }
        let mut respond = Responder {
            id,
            to: answers.clone(),
            slots: Some(Slots {
                _session: session_slot,
                _server: None,
            }),
        };
        // A frame answered on sight (undecodable) takes no replica-wide slot.
        if let Some(answer) = (shared.screen)(&frame) {
            let _ = respond.answer(KIND_FRAME, answer);
            continue;
        }
        let Some(server_slot) = shared.request_slot(client_key, source) else {
            let _ = respond.answer(KIND_BUSY, Vec::new());
            continue;
        };
        if let Some(slots) = respond.slots.as_mut() {
            slots._server = Some(server_slot);
        }
        let request = ClientRequest {
            frame,
            respond,
            client_key,
        };
        if let Err(e) = tx.try_send(request) {
            let mut respond = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => {
                    r.respond
                }
            };
            let _ = respond.answer(KIND_BUSY, Vec::new());
        }
    }
}

/// Writes answers as they come, several at once when several are ready.
/// A record's slots are freed only once it is written; a write that does
/// not finish within `timeout` (the client is not reading) resets the
/// stream, tells the reader to stop and frees every slot of the session
/// (else a client that never reads would hold its slots, and the
/// replica's, for as long as it stayed connected).
async fn write_answers(
    mut send: quinn::SendStream,
    mut answers: mpsc::UnboundedReceiver<Answer>,
    timeout: Duration,
    stalled: Arc<tokio::sync::Notify>,
    client_key: PublicKey,
) {
    let mut buf = Vec::new();
    let mut written = Vec::new();
    while let Some(first) = answers.recv().await {
        buf.clear();
        put_record(&mut buf, first.id, first.kind, &first.payload);
        written.push(first);
        while buf.len() < COALESCE_BYTES_MAX {
            let Ok(next) = answers.try_recv() else {
                break;
            };
            put_record(&mut buf, next.id, next.kind, &next.payload);
            written.push(next);
        }
        match tokio::time::timeout(timeout, send.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                stalled.notify_one();
                return;
            }
            Err(_) => {
                warn!(target: "pbft::net", client = ?client_key, ?timeout,
                    "client does not read its answers; session closed");
                let _ = send.reset(codes::TIMEOUT);
                stalled.notify_one();
                return;
            }
        }
        written.clear();
    }
    let _ = send.finish();
}

struct Replica {
    addr: SocketAddr,
    config: quinn::ClientConfig,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

/// A client's connections to the replicas (one lazily dialled, reused
/// connection and session per replica, each replica's key pinned).
pub struct ClientConnector {
    endpoint: Endpoint,
    replicas: Vec<Replica>,
    dial_timeout: Duration,
}

impl std::fmt::Debug for ClientConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientConnector({} replicas)", self.replicas.len())
    }
}

impl ClientConnector {
    /// `replicas[i]` is replica `i`'s (genesis key, client address). Must be
    /// called inside a tokio runtime (the UDP socket is bound here).
    pub fn new(
        key: &KeyPair,
        replicas: Vec<(PublicKey, SocketAddr)>,
        dial_timeout: Duration,
    ) -> Result<Self, NetError> {
        ClientConnector::bound(key, replicas, dial_timeout, None)
    }

    /// [`ClientConnector::new`] sending from `bind` (an address of this
    /// host) instead of the unspecified address.
    pub fn bound(
        key: &KeyPair,
        replicas: Vec<(PublicKey, SocketAddr)>,
        dial_timeout: Duration,
        bind: Option<IpAddr>,
    ) -> Result<Self, NetError> {
        let identity = Identity::new(key)?;
        let transport =
            transport_config(Duration::from_secs(10), Some(Duration::from_secs(2)), 0, 0)?;
        let replicas = replicas
            .into_iter()
            .map(|(public_key, addr)| {
                let config = tls::client_config(
                    &identity,
                    Pin::One(public_key),
                    tls::ALPN_CLIENT,
                    transport.clone(),
                )?;
                Ok(Replica {
                    addr,
                    config,
                    session: tokio::sync::Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, NetError>>()?;
        let bind: SocketAddr = match bind {
            Some(ip) => (ip, 0).into(),
            None if replicas.iter().any(|r| r.addr.is_ipv6()) => {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            }
            None => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        };
        let endpoint =
            Endpoint::client(bind).map_err(|source| NetError::Bind { addr: bind, source })?;
        Ok(ClientConnector {
            endpoint,
            replicas,
            dial_timeout,
        })
    }

    /// Number of replicas known to the connector.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Sends one request frame to replica `replica` and awaits its response
    /// frame, all within `timeout` (dial included). A cached connection that
    /// turns out dead is redialled once.
    pub async fn request(
        &self,
        replica: usize,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        let r = self
            .replicas
            .get(replica)
            .ok_or(NetError::UnknownReplica(replica))?;
        let attempt = async {
            let (session, fresh) = self.session(r).await?;
            match session.exchange(frame).await {
                Err(NetError::Unreachable(reason)) if !fresh => {
                    debug!(target: "pbft::net", replica, %reason, "cached connection dead; redialling");
                    let (session, _) = self.session(r).await?;
                    session.exchange(frame).await
                }
                other => other,
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(NetError::Timeout))
    }

    /// Closes every connection and waits (at most 1 s) for the close to be sent.
    pub async fn close(self) {
        self.endpoint.close(codes::SHUTDOWN, b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// The live session with `r`, dialling if needed; `true` if just dialled.
    async fn session(&self, r: &Replica) -> Result<(Arc<Session>, bool), NetError> {
        let mut slot = r.session.lock().await;
        if let Some(session) = slot.as_ref().filter(|s| s.alive()) {
            return Ok((session.clone(), false));
        }
        *slot = None;
        let connecting = self
            .endpoint
            .connect_with(r.config.clone(), r.addr, "pbft-replica")
            .map_err(|e| NetError::Unreachable(e.to_string()))?;
        let conn = match tokio::time::timeout(self.dial_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connection_error(&e)),
            Err(_) => return Err(NetError::Timeout),
        };
        let session = Arc::new(Session::open(conn).await?);
        *slot = Some(session.clone());
        Ok((session, true))
    }
}

/// Why a client session ended (kept to answer later requests with it).
#[derive(Clone, Debug)]
enum Ended {
    FrameTooLarge,
    Unreachable(String),
    Closed(String),
}

impl Ended {
    fn error(&self) -> NetError {
        match self {
            Ended::FrameTooLarge => NetError::FrameTooLarge,
            Ended::Unreachable(s) => NetError::Unreachable(s.clone()),
            Ended::Closed(s) => NetError::Closed(s.clone()),
        }
    }

    fn of_connection(e: &quinn::ConnectionError) -> Ended {
        match e {
            quinn::ConnectionError::ApplicationClosed(c)
                if c.error_code == codes::FRAME_TOO_LARGE =>
            {
                Ended::FrameTooLarge
            }
            quinn::ConnectionError::ApplicationClosed(c) if c.error_code == codes::BUSY => {
                Ended::Closed("server busy".into())
            }
            other => Ended::Unreachable(other.to_string()),
        }
    }
}

type Waiter = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// Requests awaiting their answers, or why the session ended. Each request
/// keeps its in-flight slot until its answer arrives, even if its caller
/// gave up (`None` waiter): the replica frees its slot only when it answers,
/// so the two counts stay equal and the client never exceeds the cap.
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, (Option<Waiter>, OwnedSemaphorePermit)>,
    ended: Option<Ended>,
}

impl Pending {
    /// Ends the session: every waiter, and every later request, gets `why`.
    fn end(&mut self, why: Ended) {
        for (_, (w, _slot)) in self.waiters.drain() {
            if let Some(w) = w {
                let _ = w.send(Err(why.error()));
            }
        }
        self.ended.get_or_insert(why);
    }
}

/// One session with a replica: a writer task sends request records (several
/// at once when several are ready), a reader task hands each answer to its
/// waiter.
struct Session {
    conn: Connection,
    records: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    slots: Arc<Semaphore>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Forgets a request's waiter if the request is abandoned (timed out); its
/// slot stays taken until the answer arrives.
struct Registered<'a> {
    pending: &'a Mutex<Pending>,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some((waiter, _)) = lock(self.pending).waiters.get_mut(&self.id) {
            *waiter = None;
        }
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    async fn open(conn: Connection) -> Result<Session, NetError> {
        let (send, recv) = conn.open_bi().await.map_err(|e| connection_error(&e))?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (records, records_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_records(send, records_rx, pending.clone()));
        let reader = tokio::spawn(read_answers(conn.clone(), recv, pending.clone()));
        Ok(Session {
            conn,
            records,
            pending,
            next_id: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(limits::SESSION_IN_FLIGHT)),
            tasks: [writer, reader],
        })
    }

    /// Whether every request in flight was abandoned by its caller (and
    /// there are any).
    fn all_abandoned(&self) -> bool {
        let pending = lock(&self.pending);
        !pending.waiters.is_empty() && pending.waiters.values().all(|(w, _)| w.is_none())
    }

    fn alive(&self) -> bool {
        self.conn.close_reason().is_none() && lock(&self.pending).ended.is_none()
    }

    /// Sends one request and awaits its answer. Cancel-safe: dropping the
    /// future abandons the request (its record may still be sent).
    async fn exchange(&self, frame: &[u8]) -> Result<Vec<u8>, NetError> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::NoPermits) if self.all_abandoned() => {
                // Issue 24, defect 12: every slot is held by a request whose
                // caller gave up; the replica is not answering this session.
                // Before, the session stayed full for as long as the
                // connection lived, and every later request to this replica
                // timed out even once it answered again. End it: the caller
                // redials a fresh connection.
                let why = Ended::Unreachable(format!(
                    "no answer to {} abandoned requests",
                    limits::SESSION_IN_FLIGHT
                ));
                lock(&self.pending).end(why.clone());
                self.conn.close(codes::TIMEOUT, b"no answers");
                return Err(why.error());
            }
            Err(_) => self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| NetError::Closed("session closed".into()))?,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if let Some(why) = &pending.ended {
                return Err(why.error());
            }
            pending.waiters.insert(id, (Some(tx), slot));
        }
        let _registered = Registered {
            pending: &self.pending,
            id,
        };
        let mut record = Vec::with_capacity(4 + RECORD_HEAD + frame.len());
        put_record(&mut record, id, KIND_FRAME, frame);
        if self.records.send(record).is_err() {
            return Err(NetError::Closed("session closed".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(NetError::Closed("session closed".into())))
    }
}

async fn write_records(
    mut send: quinn::SendStream,
    mut records: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<Mutex<Pending>>,
) {
    while let Some(mut buf) = records.recv().await {
        while buf.len() < COALESCE_BYTES_MAX {
            let Ok(next) = records.try_recv() else {
                break;
            };
            buf.extend_from_slice(&next);
        }
        if let Err(e) = send.write_all(&buf).await {
            let why = match e {
                quinn::WriteError::ConnectionLost(e) => Ended::of_connection(&e),
                quinn::WriteError::Stopped(code) => Ended::Closed(reset_reason(code).to_string()),
                other => Ended::Closed(other.to_string()),
            };
            lock(&pending).end(why);
            return;
        }
    }
}

async fn read_answers(conn: Connection, mut recv: quinn::RecvStream, pending: Arc<Mutex<Pending>>) {
    let why = loop {
        match read_record(&mut recv, crate::codec::FRAME_BYTES_MAX).await {
            Ok((id, kind, payload)) => {
                let answer = match kind {
                    KIND_FRAME => Ok(payload),
                    KIND_BUSY => Err(reset_reason(codes::BUSY)),
                    KIND_NO_RESPONSE => Err(reset_reason(codes::NO_RESPONSE)),
                    other => Err(NetError::Closed(format!("unknown answer kind {other}"))),
                };
                let waiter = lock(&pending).waiters.remove(&id);
                if let Some((Some(w), _slot)) = waiter {
                    let _ = w.send(answer);
                }
            }
            Err(ReadFailure::Ended) => break Ended::Closed("replica ended the session".into()),
            Err(ReadFailure::BadLength(len)) => {
                conn.close(codes::FRAME_TOO_LARGE, b"answer over the size cap");
                break Ended::Closed(format!("answer of {len} bytes over the cap"));
            }
            Err(ReadFailure::Read(quinn::ReadError::ConnectionLost(e))) => {
                break Ended::of_connection(&e)
            }
            Err(ReadFailure::Read(quinn::ReadError::Reset(code))) => {
                break Ended::Closed(reset_reason(code).to_string())
            }
            Err(ReadFailure::Read(other)) => break Ended::Closed(other.to_string()),
        }
    };
    lock(&pending).end(why);
}

fn reset_reason(code: VarInt) -> NetError {
    match code {
        codes::FRAME_TOO_LARGE => NetError::FrameTooLarge,
        codes::BUSY => NetError::Closed("server busy".into()),
        codes::NO_RESPONSE => NetError::Closed("no response".into()),
        codes::TIMEOUT => NetError::Closed("response timed out".into()),
        other => NetError::Closed(format!("stream reset ({other})")),
    }
}
