//! Raw client-endpoint behaviours no correct client shows, for the hostile
//! clients of fault-injection runs (`pbft-client hostile`, feature
//! `byzantine`): a session whose answers are never read, and handshakes
//! that are started and never finished. They use the client's own key and
//! the replica's real endpoint; nothing here is reachable without the
//! feature.

use super::client::record::put_record;
use super::tls::{self, Identity, Pin};
use super::NetError;
use crate::crypto::{KeyPair, PublicKey};
use quinn::{Connection, Endpoint};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One request record of the client protocol carrying `frame`.
pub fn request_record(id: u64, frame: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(frame.len() + 16);
    put_record(&mut buf, id, 0, frame);
    buf
}

/// A connection to a replica's client endpoint, sent from `bind`, that
/// reads at most `window` bytes of answers before its flow control stops
/// the replica.
pub async fn connect_unread(
    key: &KeyPair,
    replica: PublicKey,
    addr: SocketAddr,
    window: u32,
    bind: IpAddr,
) -> Result<(Endpoint, Connection), NetError> {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(window.into())
        .receive_window(window.into())
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(30)).expect("30 s fits"),
        ));
    let config = tls::client_config(
        &Identity::new(key)?,
        Pin::One(replica),
        tls::ALPN_CLIENT,
        Arc::new(t),
    )?;
    let bind: SocketAddr = (bind, 0).into();
    let endpoint =
        Endpoint::client(bind).map_err(|source| NetError::Bind { addr: bind, source })?;
    let conn = endpoint
        .connect_with(config, addr, "pbft-replica")
        .map_err(|e| NetError::Unreachable(e.to_string()))?
        .await
        .map_err(|e| super::connection_error(&e))?;
    Ok((endpoint, conn))
}

/// Starts `count` handshakes with the replica at `addr` that never finish,
/// each from a source port of its own on `bind`, and holds them for
/// `hold`: a relay
/// socket per handshake passes the client's packets on and drops every
/// packet the replica sends back, so the replica waits for a client flight
/// that never comes. Returns how many relays were set up.
pub async fn stall_handshakes(
    key: &KeyPair,
    replica: PublicKey,
    addr: SocketAddr,
    count: usize,
    hold: Duration,
    bind: IpAddr,
) -> Result<usize, NetError> {
    let local: SocketAddr = (bind, 0).into();
    let config = tls::client_config(
        &Identity::new(key)?,
        Pin::One(replica),
        tls::ALPN_CLIENT,
        Arc::new(quinn::TransportConfig::default()),
    )?;
    let endpoint = Endpoint::client(local).map_err(|source| NetError::Bind {
        addr: local,
        source,
    })?;
    let client_addr = endpoint.local_addr().map_err(|source| NetError::Bind {
        addr: local,
        source,
    })?;
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let relay = tokio::net::UdpSocket::bind(local)
            .await
            .map_err(|source| NetError::Bind {
                addr: local,
                source,
            })?;
        let relay_addr = relay.local_addr().map_err(|source| NetError::Bind {
            addr: local,
            source,
        })?;
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = relay.recv_from(&mut buf).await {
                if from == client_addr {
                    let _ = relay.send_to(&buf[..n], addr).await;
                }
            }
        }));
        if let Ok(connecting) = endpoint.connect_with(config.clone(), relay_addr, "pbft-replica") {
            // Never completes: the replica's answers are dropped.
            tasks.push(tokio::spawn(async move {
                let _ = connecting.await;
            }));
        }
    }
    let relays = count;
    tokio::time::sleep(hold).await;
    for t in &tasks {
        t.abort();
    }
    endpoint.close(super::codes::SHUTDOWN, b"done");
    Ok(relays)
}
