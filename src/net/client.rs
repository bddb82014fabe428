//! The client endpoint: a replica's [`ClientServer`] and the client's
//! [`ClientConnector`].
//!
//! Clients use their own port and ALPN (`pbft-client/1`), so client load and
//! client-facing bugs can't touch the replica mesh. Each request is one
//! bidirectional stream: the client writes one frame and finishes its side;
//! the server hands the frame to the node and writes back the one response
//! frame the node sends on `respond`.
//!
//! The client pins each replica's genesis key (it will only talk to the real
//! replica). The server accepts any ed25519 certificate: clients are not
//! members, and their transactions carry their own signatures, so the TLS key
//! only tells the node *which* client is asking ([`ClientRequest::client_key`]).
//!
//! Bounds: at most `CLIENT_CONNECTIONS` connections and `CLIENT_STREAMS`
//! concurrent requests per connection (a QUIC stream limit, so the client
//! simply waits); at most `queue_max` requests in flight in total (queued for
//! the node or awaiting its response), beyond which a request's stream is
//! reset as busy; a response not produced within `CLIENT_RESPONSE_SECS` is
//! reset too.

use super::tls::{self, Identity, Pin};
use super::{codes, connection_error, limits, transport_config, NetError};
use crate::crypto::{KeyPair, PublicKey};
use quinn::{Connection, Endpoint, VarInt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// One client request, as handed to the node.
#[derive(Debug)]
pub struct ClientRequest {
    /// The request frame, at most `frame_bytes_max` bytes, not yet decoded.
    pub frame: Vec<u8>,
    /// Send the one response frame here; dropping it resets the client's
    /// stream ("no response").
    pub respond: oneshot::Sender<Vec<u8>>,
    /// The key the client presented in its TLS certificate.
    pub client_key: PublicKey,
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

impl ClientServer {
    /// Binds `listen` and starts accepting clients. Requests arrive on the
    /// returned channel (capacity `queue_max`).
    pub async fn start(
        listen: SocketAddr,
        key: &KeyPair,
        frame_bytes_max: usize,
        queue_max: usize,
    ) -> Result<(ClientServer, mpsc::Receiver<ClientRequest>), NetError> {
        if frame_bytes_max == 0 || queue_max == 0 {
            return Err(NetError::Config(
                "client frame and queue bounds must be non-zero".into(),
            ));
        }
        let identity = Identity::new(key)?;
        let transport = transport_config(Duration::from_secs(30), None, 0, limits::CLIENT_STREAMS)?;
        let server = tls::server_config(&identity, Pin::Any, tls::ALPN_CLIENT, transport)?;
        let endpoint = Endpoint::server(server, listen).map_err(|source| NetError::Bind {
            addr: listen,
            source,
        })?;
        let (tx, rx) = mpsc::channel(queue_max);
        let in_flight = Arc::new(Semaphore::new(queue_max));
        let accept = tokio::spawn(accept_clients(
            endpoint.clone(),
            tx,
            in_flight,
            frame_bytes_max,
        ));
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

async fn accept_clients(
    endpoint: Endpoint,
    tx: mpsc::Sender<ClientRequest>,
    in_flight: Arc<Semaphore>,
    max: usize,
) {
    let connections = Arc::new(Semaphore::new(limits::CLIENT_CONNECTIONS));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(target: "pbft::net", from = %incoming.remote_address(), "too many clients; refused");
            incoming.refuse();
            continue;
        };
        let (tx, in_flight) = (tx.clone(), in_flight.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let from = incoming.remote_address();
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
            serve_connection(conn, client_key, tx, in_flight, max).await;
        });
    }
}

async fn serve_connection(
    conn: Connection,
    client_key: PublicKey,
    tx: mpsc::Sender<ClientRequest>,
    in_flight: Arc<Semaphore>,
    max: usize,
) {
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                debug!(target: "pbft::net", client = ?client_key, reason = %e, "client disconnected");
                return;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let _ = send.reset(codes::BUSY);
            let _ = recv.stop(codes::BUSY);
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let deadline =
                tokio::time::Instant::now() + Duration::from_secs(limits::CLIENT_RESPONSE_SECS);
            let frame = match tokio::time::timeout_at(deadline, recv.read_to_end(max)).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(quinn::ReadToEndError::TooLong)) => {
                    warn!(target: "pbft::net", client = ?client_key, max, "client frame over the size cap refused");
                    let _ = recv.stop(codes::FRAME_TOO_LARGE);
                    let _ = send.reset(codes::FRAME_TOO_LARGE);
                    return;
                }
                Ok(Err(e)) => {
                    debug!(target: "pbft::net", client = ?client_key, reason = %e, "client stream failed");
                    return;
                }
                Err(_) => {
                    let _ = send.reset(codes::TIMEOUT);
                    return;
                }
            };
            let (respond, response) = oneshot::channel();
            let request = ClientRequest {
                frame,
                respond,
                client_key,
            };
            if tx.try_send(request).is_err() {
                let _ = send.reset(codes::BUSY);
                return;
            }
            let stopped = send.stopped();
            tokio::select! {
                r = response => match r {
                    Ok(bytes) => {
                        match tokio::time::timeout_at(deadline, send.write_all(&bytes)).await {
                            Ok(Ok(())) => { let _ = send.finish(); }
                            _ => { let _ = send.reset(codes::TIMEOUT); }
                        }
                    }
                    Err(_) => { let _ = send.reset(codes::NO_RESPONSE); }
                },
                _ = stopped => {}
                _ = tokio::time::sleep_until(deadline) => { let _ = send.reset(codes::TIMEOUT); }
            }
        });
    }
}

struct Replica {
    addr: SocketAddr,
    config: quinn::ClientConfig,
    conn: tokio::sync::Mutex<Option<Connection>>,
}

/// A client's connections to the replicas (one lazily dialled, reused
/// connection per replica, each replica's key pinned).
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
                    conn: tokio::sync::Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, NetError>>()?;
        let bind: SocketAddr = if replicas.iter().any(|r| r.addr.is_ipv6()) {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
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
            let (conn, fresh) = self.connection(r).await?;
            match exchange(&conn, frame).await {
                Err(NetError::Unreachable(reason)) if !fresh => {
                    debug!(target: "pbft::net", replica, %reason, "cached connection dead; redialling");
                    let (conn, _) = self.connection(r).await?;
                    exchange(&conn, frame).await
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

    /// The live connection to `r`, dialling if needed; `true` if just dialled.
    async fn connection(&self, r: &Replica) -> Result<(Connection, bool), NetError> {
        let mut slot = r.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok((conn.clone(), false));
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
        *slot = Some(conn.clone());
        Ok((conn, true))
    }
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

/// One request/response on a fresh bidirectional stream.
async fn exchange(conn: &Connection, frame: &[u8]) -> Result<Vec<u8>, NetError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| connection_error(&e))?;
    send.write_all(frame).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => connection_error(&e),
        quinn::WriteError::Stopped(code) => reset_reason(code),
        other => NetError::Closed(other.to_string()),
    })?;
    send.finish().map_err(|e| NetError::Closed(e.to_string()))?;
    recv.read_to_end(crate::codec::FRAME_BYTES_MAX)
        .await
        .map_err(|e| match e {
            quinn::ReadToEndError::TooLong => NetError::FrameTooLarge,
            quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => reset_reason(code),
            quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e)) => {
                connection_error(&e)
            }
            quinn::ReadToEndError::Read(other) => NetError::Closed(other.to_string()),
        })
}
