//! The client's side of the client endpoint: a [`ClientConnector`] keeps
//! one connection and session per replica (dialled when first needed,
//! redialled once it is dead) and hands each answer record to the request
//! waiting for it.

use super::record::{
    put_record, read_record, ReadFailure, COALESCE_BYTES_MAX, KIND_BUSY, KIND_FRAME,
    KIND_NO_RESPONSE, RECORD_HEAD,
};
use crate::crypto::{KeyPair, PublicKey};
use crate::net::tls::{self, Identity, Pin};
use crate::net::{codes, connection_error, limits, transport_config, NetError, PeerAddr, Resolver};
use quinn::{Connection, Endpoint, VarInt};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tracing::debug;

struct Replica {
    /// As genesis names it; a name is resolved again at each dial.
    addr: PeerAddr,
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
    pub fn new<A: Into<PeerAddr>>(
        key: &KeyPair,
        replicas: Vec<(PublicKey, A)>,
        dial_timeout: Duration,
    ) -> Result<Self, NetError> {
        ClientConnector::bound(key, replicas, dial_timeout, None)
    }

    /// [`ClientConnector::new`] sending from `bind` (an address of this
    /// host) instead of the unspecified address.
    pub fn bound<A: Into<PeerAddr>>(
        key: &KeyPair,
        replicas: Vec<(PublicKey, A)>,
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
                    addr: addr.into(),
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
        let addr = r
            .addr
            .resolve(
                &Resolver::System,
                self.endpoint.local_addr().ok(),
                self.dial_timeout,
            )
            .await
            .map_err(NetError::Unreachable)?;
        let connecting = self
            .endpoint
            .connect_with(r.config.clone(), addr, "pbft-replica")
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
                // Every slot is held by a request whose caller gave up: the
                // replica is not answering this session. Kept, the session
                // would stay full for as long as the connection lived, and
                // every later request to this replica would time out even
                // once it answered again. End it: the caller redials a fresh
                // connection.
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
