//! Hostile clients for fault-injection runs (`pbft-client hostile KIND`,
//! feature `byzantine`; issue 24). Each behaviour runs against every
//! replica of the network for a bounded time, with keys of its own, and
//! sends what a malicious client could send:
//!
//! * `never-read`: connections whose receive window is 1 KiB, each with
//!   four sessions of 256 status requests in flight, answers never read; a
//!   session the replica closes is opened again.
//! * `stall-handshakes`: handshakes started from many source ports and
//!   never finished (the replica's answers are dropped), renewed as they
//!   expire.
//! * `throwaway-keys`: transfers signed by fresh keys without accounts
//!   (each valid, each refused), a pool of them sent round and round.
//! * `replay`: the funding key executes 32 transfers, which are then resent
//!   round and round (executed, mostly no longer in any reply cache).
//!
//! `rate` bounds the requests per second a behaviour sends (on one machine
//! the attacker's own CPU would otherwise be the attack); the handshake
//! staller renews at most `rate` handshakes per second. Everything is sent
//! from `bind`, an address of this host: on one machine, `127.0.0.2` plays
//! another host (per-source limits apply per address).

use super::proto::ClientRequest;
use super::session::Client;
use crate::crypto::{KeyPair, PublicKey};
use crate::net::{hostile, ClientConnector, NetError};
use crate::tx::Transaction;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a hostile client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Behaviour {
    NeverRead,
    StallHandshakes,
    ThrowawayKeys,
    Replay,
}

/// What a run did, for its report line.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests (or handshakes) sent.
    pub sent: u64,
    /// Sessions or connections the replicas closed on us.
    pub closed_on_us: u64,
    /// Requests answered (for the kinds that read).
    pub answered: u64,
}

/// Runs `behaviour` against every replica of `client`'s network until
/// `duration` has passed.
pub async fn run(
    client: &Client,
    behaviour: Behaviour,
    duration: Duration,
    rate: u64,
    bind: IpAddr,
) -> Result<Report, NetError> {
    let deadline = Instant::now() + duration;
    let g = client.genesis();
    // Names are looked up once: an attack run is short.
    let mut replicas: Vec<(PublicKey, SocketAddr)> = Vec::new();
    for (key, addr) in g.replica_keys.iter().zip(&g.client_addrs) {
        let local = Some(SocketAddr::new(bind, 0));
        let found = addr
            .resolve(&crate::net::Resolver::System, local, Duration::from_secs(5))
            .await
            .map_err(NetError::Unreachable)?;
        replicas.push((*key, found));
    }
    let per_replica = (rate / replicas.len().max(1) as u64).max(1);
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    match behaviour {
        Behaviour::NeverRead => {
            for (i, (key, addr)) in replicas.iter().copied().enumerate() {
                for c in 0..4 {
                    let me = KeyPair::from_label(&format!("hostile-never-read-{i}-{c}"));
                    tasks.push(tokio::spawn(never_read(
                        me,
                        (key, addr, bind),
                        deadline,
                        per_replica / 4 + 1,
                        counters.clone(),
                    )));
                }
            }
        }
        Behaviour::StallHandshakes => {
            for (key, addr) in replicas.iter().copied() {
                let me = KeyPair::generate();
                let counters = counters.clone();
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let hold = deadline
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_secs(10));
                        // `per_replica` new handshakes per second, held `hold`.
                        let count = (per_replica * hold.as_secs().max(1)) as usize;
                        match hostile::stall_handshakes(&me, key, addr, count, hold, bind).await {
                            Ok(n) => counters.sent.fetch_add(n as u64, Ordering::Relaxed),
                            Err(_) => counters.closed_on_us.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
        }
        Behaviour::ThrowawayKeys | Behaviour::Replay => {
            let payee = KeyPair::from_label("hostile-payee").public();
            let mut frames: Vec<Vec<u8>> = Vec::new();
            if behaviour == Behaviour::ThrowawayKeys {
                for _ in 0..2_048 {
                    let k = KeyPair::generate();
                    let tx = Transaction::transfer(g.network, &k, payee, 1, 1);
                    frames.push(ClientRequest::Submit(tx).to_frame());
                }
            } else {
                for _ in 0..32 {
                    let (tx, _) = client
                        .transfer(payee, 1)
                        .await
                        .map_err(|e| NetError::Closed(format!("replay setup transfer: {e}")))?;
                    frames.push(ClientRequest::Submit(tx).to_frame());
                }
            }
            tasks.extend(send_round_robin(
                (&replicas, bind),
                frames,
                deadline,
                per_replica,
                counters.clone(),
            )?);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(Report {
        sent: counters.sent.load(Ordering::Relaxed),
        closed_on_us: counters.closed_on_us.load(Ordering::Relaxed),
        answered: counters.answered.load(Ordering::Relaxed),
    })
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    closed_on_us: AtomicU64,
    answered: AtomicU64,
}

/// One connection's sessions that never read, renewed until `deadline`.
async fn never_read(
    me: KeyPair,
    (replica, addr, bind): (PublicKey, SocketAddr, IpAddr),
    deadline: Instant,
    rate: u64,
    counters: Arc<Counters>,
) {
    let status = ClientRequest::Status.to_frame();
    let mut next_id = 0u64;
    while Instant::now() < deadline {
        let Ok(Ok((endpoint, conn))) = tokio::time::timeout_at(
            deadline,
            hostile::connect_unread(&me, replica, addr, 1024, bind),
        )
        .await
        else {
            counters.closed_on_us.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut sessions = Vec::new();
        for _ in 0..4 {
            let conn = conn.clone();
            let status = status.clone();
            let counters = counters.clone();
            let first = next_id;
            next_id += 1 << 20;
            sessions.push(tokio::spawn(async move {
                let mut id = first;
                while let Ok((mut send, _recv)) = conn.open_bi().await {
                    // 256 requests at `rate` per second, then wait for the
                    // replica to give up on the session.
                    for _ in 0..256 {
                        if send
                            .write_all(&hostile::request_record(id, &status))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        id += 1;
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_micros(1_000_000 / rate)).await;
                    }
                    let _ = send.stopped().await;
                    counters.closed_on_us.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let _ = tokio::time::timeout_at(deadline, conn.closed()).await;
        for s in sessions {
            s.abort();
        }
        endpoint.close(0u32.into(), b"done");
    }
}

/// Sends `frames` round and round to every replica, `rate` per second per
/// replica, at most 64 unanswered at a time per replica.
fn send_round_robin(
    (replicas, bind): (&[(PublicKey, SocketAddr)], IpAddr),
    frames: Vec<Vec<u8>>,
    deadline: Instant,
    rate: u64,
    counters: Arc<Counters>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, NetError> {
    let connector = Arc::new(ClientConnector::bound(
        &KeyPair::generate(),
        replicas.to_vec(),
        Duration::from_secs(2),
        Some(bind),
    )?);
    let frames = Arc::new(frames);
    let mut tasks = Vec::new();
    for r in 0..replicas.len() {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
        let (connector, frames, counters) = (connector.clone(), frames.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut i = 0usize;
            while Instant::now() < deadline {
                tick.tick().await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let frame = frames[i % frames.len()].clone();
                i += 1;
                let (connector, counters) = (connector.clone(), counters.clone());
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _permit = permit;
                    if connector
                        .request(r, &frame, Duration::from_secs(2))
                        .await
                        .is_ok()
                    {
                        counters.answered.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }));
    }
    Ok(tasks)
}
