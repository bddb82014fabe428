//! The replica's side of the client endpoint: a [`ClientServer`] accepts
//! connections and their sessions, hands each request record to the node
//! as a [`ClientRequest`], and writes the answers back as the node
//! produces them.

use super::capacity::{ClientLimits, ServerSlot, ShareOf, Shared};
use super::record::{
    put_record, read_record, ReadFailure, COALESCE_BYTES_MAX, KIND_BUSY, KIND_FRAME,
    KIND_NO_RESPONSE,
};
use crate::crypto::{KeyPair, PublicKey};
use crate::net::share::Shares;
use crate::net::tls::{self, Identity, Pin};
use crate::net::{codes, limits, transport_config, NetError};
use quinn::{Connection, Endpoint};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

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

/// Where the answer to one request goes: a record of a QUIC session, or a
/// one-shot channel to a task of this process (the operations endpoint's
/// HTTP API, `ops::http`). Either way the node answers through
/// [`Responder::send`], and a responder dropped unanswered answers "no
/// response".
pub struct Responder {
    to: To,
}

enum To {
    /// A session's writer. Holds the request's slots (its session's and
    /// the server's) until the answer has been written.
    Session {
        id: u64,
        answers: mpsc::UnboundedSender<Answer>,
        slots: Option<Slots>,
    },
    /// A local waiter: `Some(frame)` is the answer, `None` "no response".
    Oneshot(Option<oneshot::Sender<Option<Vec<u8>>>>),
}

struct Slots {
    _session: OwnedSemaphorePermit,
    _server: Option<ServerSlot>,
}

struct Answer {
    id: u64,
    kind: u8,
    payload: Vec<u8>,
    _slots: Slots,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.to {
            To::Session { id, .. } => write!(f, "Responder({id})"),
            To::Oneshot(_) => write!(f, "Responder(oneshot)"),
        }
    }
}

impl Responder {
    /// A responder whose answer arrives on the returned receiver:
    /// `Some(frame)` once the node answers, `None` if the node drops the
    /// responder without answering.
    pub fn oneshot() -> (Responder, oneshot::Receiver<Option<Vec<u8>>>) {
        let (tx, rx) = oneshot::channel();
        (
            Responder {
                to: To::Oneshot(Some(tx)),
            },
            rx,
        )
    }

    /// Answers the request with `frame`; gives it back if the session (or
    /// the waiter) is gone.
    pub fn send(mut self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        self.answer(KIND_FRAME, frame)
    }

    fn answer(&mut self, kind: u8, payload: Vec<u8>) -> Result<(), Vec<u8>> {
        match &mut self.to {
            To::Session { id, answers, slots } => {
                let Some(slots) = slots.take() else {
                    return Err(payload);
                };
                answers
                    .send(Answer {
                        id: *id,
                        kind,
                        payload,
                        _slots: slots,
                    })
                    .map_err(|e| e.0.payload)
            }
            To::Oneshot(waiter) => {
                let Some(waiter) = waiter.take() else {
                    return Err(payload);
                };
                // A local waiter has no "busy" record: only a frame is an
                // answer; anything else is "no response".
                let answer = (kind == KIND_FRAME).then_some(payload);
                waiter.send(answer).map_err(Option::unwrap_or_default)
            }
        }
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
        let endpoint =
            tls::bind_endpoint(listen, server, key, "client endpoint").map_err(|source| {
                NetError::Bind {
                    addr: listen,
                    source,
                }
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

async fn accept_clients(endpoint: Endpoint, tx: mpsc::Sender<ClientRequest>, shared: Arc<Shared>) {
    let connections = Arc::new(Semaphore::new(limits::CLIENT_CONNECTIONS));
    while let Some(incoming) = endpoint.accept().await {
        let from = incoming.remote_address();
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(target: "pbft::net", %from, "too many clients; refused");
            incoming.refuse();
            continue;
        };
        // One source cannot take every connection (or handshake) slot: its
        // share is counted from before the handshake.
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
            to: To::Session {
                id,
                answers: answers.clone(),
                slots: Some(Slots {
                    _session: session_slot,
                    _server: None,
                }),
            },
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
        if let To::Session {
            slots: Some(slots), ..
        } = &mut respond.to
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_oneshot_responder_delivers_the_frame_or_no_response() {
        let (respond, answer) = Responder::oneshot();
        assert_eq!(respond.send(vec![1, 2, 3]), Ok(()));
        assert_eq!(answer.await, Ok(Some(vec![1, 2, 3])));

        let (respond, answer) = Responder::oneshot();
        drop(respond);
        assert_eq!(answer.await, Ok(None), "dropped unanswered: no response");

        // The waiter gave up: the frame comes back to the node.
        let (respond, answer) = Responder::oneshot();
        drop(answer);
        assert_eq!(respond.send(vec![9]), Err(vec![9]));
    }

    #[tokio::test]
    async fn a_session_responder_writes_one_record_and_frees_its_slots_with_it() {
        let permits = Arc::new(Semaphore::new(2));
        let (answers, mut written) = mpsc::unbounded_channel();
        let session = |id: u64| Responder {
            to: To::Session {
                id,
                answers: answers.clone(),
                slots: Some(Slots {
                    _session: permits.clone().try_acquire_owned().expect("a permit"),
                    _server: None,
                }),
            },
        };
        let (sent, dropped) = (session(7), session(8));
        assert_eq!(permits.available_permits(), 0);
        assert_eq!(sent.send(vec![4, 5]), Ok(()));
        drop(dropped);
        let first = written.recv().await.expect("an answer");
        assert_eq!(
            (first.id, first.kind, first.payload.clone()),
            (7, KIND_FRAME, vec![4, 5])
        );
        let second = written.recv().await.expect("an answer");
        assert_eq!((second.id, second.kind), (8, KIND_NO_RESPONSE));
        assert!(second.payload.is_empty());
        assert_eq!(permits.available_permits(), 0, "held until written");
        drop((first, second));
        assert_eq!(permits.available_permits(), 2);

        // The session's writer is gone: the frame comes back.
        drop(written);
        assert_eq!(session(9).send(vec![1]), Err(vec![1]));
    }
}
