//! Loopback tests of the mesh and the client endpoint. Every test runs under
//! a hard timeout so a hang fails instead of blocking the suite.

use super::*;
use crate::crypto::KeyPair;
use std::future::Future;
use std::time::Instant;
use tokio::sync::mpsc;

const TEST_LIMIT: Duration = Duration::from_secs(40);

async fn bounded<F: Future<Output = ()>>(f: F) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time limit");
}

fn keys(tag: &str, n: usize) -> Vec<KeyPair> {
    (0..n)
        .map(|i| KeyPair::from_label(&format!("net-{tag}-{i}")))
        .collect()
}

/// `n` distinct free UDP ports on 127.0.0.1 (held together, then released).
fn addrs(n: usize) -> Vec<SocketAddr> {
    let sockets: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets.iter().map(|s| s.local_addr().unwrap()).collect()
}

fn genesis(keys: &[KeyPair], addrs: &[SocketAddr]) -> Vec<PeerInfo> {
    keys.iter()
        .zip(addrs)
        .enumerate()
        .map(|(i, (k, a))| PeerInfo {
            id: ReplicaId(i as u32),
            public_key: k.public(),
            addr: (*a).into(),
        })
        .collect()
}

/// A config with short timeouts so tests run fast.
fn config(me: usize, peers: Vec<PeerInfo>) -> NetConfig {
    let listen = (peers[me].addr.ip())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], peers[me].addr.port())));
    let mut c = NetConfig::new(ReplicaId(me as u32), listen, peers);
    c.dial_timeout = Duration::from_millis(500);
    c.idle_timeout = Duration::from_secs(3);
    c.keep_alive = Duration::from_millis(500);
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(500);
    c
}

/// Starts `cfg`, retrying while the port is still held by a previous instance.
async fn start(cfg: NetConfig, key: &KeyPair) -> (Transport, Inbound) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Transport::start(cfg.clone(), key).await {
            Ok(t) => return t,
            Err(NetError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("start failed: {e}"),
        }
    }
}

type Rx = Inbound;

async fn mesh(tag: &str, n: usize) -> (Vec<KeyPair>, Vec<NetConfig>, Vec<Transport>, Vec<Rx>) {
    let keys = keys(tag, n);
    let peers = genesis(&keys, &addrs(n));
    let cfgs: Vec<_> = (0..n).map(|i| config(i, peers.clone())).collect();
    let (mut ts, mut rxs) = (vec![], vec![]);
    for (cfg, key) in cfgs.iter().zip(&keys) {
        let (t, rx) = start(cfg.clone(), key).await;
        ts.push(t);
        rxs.push(rx);
    }
    (keys, cfgs, ts, rxs)
}

fn frame(s: &str) -> Arc<[u8]> {
    Arc::from(s.as_bytes())
}

/// Waits (at most 10 s) until every `(from, bytes)` of `want` has arrived,
/// in any order; other frames are skipped.
async fn expect_all(rx: &mut Rx, mut want: Vec<(usize, String)>) {
    let wait = async {
        while !want.is_empty() {
            let (who, got) = rx.recv().await.expect("transport closed");
            want.retain(|(from, bytes)| !(who.index() == *from && got == bytes.as_bytes()));
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        panic!("frames {want:?} never arrived");
    }
}

async fn expect(rx: &mut Rx, from: usize, bytes: &str) {
    expect_all(rx, vec![(from, bytes.to_string())]).await
}

async fn all_connected(ts: &[Transport]) {
    loop {
        let ok = ts.iter().enumerate().all(|(i, t)| {
            t.stats()
                .peers
                .iter()
                .all(|p| p.id.index() == i || p.connected)
        });
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_form_a_mesh_and_exchange_both_ways() {
    bounded(async {
        let (_, _, ts, mut rxs) = mesh("mesh", 4).await;
        // Sent right after start, mostly before connections are up: queued, then flushed.
        for (i, t) in ts.iter().enumerate() {
            for j in 0..4 {
                t.send(ReplicaId(j as u32), frame(&format!("{i}->{j}")));
            }
        }
        for (j, rx) in rxs.iter_mut().enumerate() {
            let mut seen = [false; 4];
            while seen.iter().filter(|s| **s).count() < 3 {
                let (from, bytes) = rx.recv().await.unwrap();
                assert_eq!(bytes, format!("{from}->{j}").as_bytes());
                assert_ne!(from.index(), j, "a replica never receives its own frame");
                seen[from.index()] = true;
            }
        }
        all_connected(&ts).await;
        ts[2].broadcast(frame("all"));
        for (j, rx) in rxs.iter_mut().enumerate() {
            if j != 2 {
                expect(rx, 2, "all").await;
            }
        }
        let stats = ts[2].stats();
        assert_eq!(stats.rejected_handshakes, 0);
        assert_eq!(stats.tie_break_refused, 0);
        assert!(stats
            .peers
            .iter()
            .filter(|p| p.id.index() != 2)
            .all(|p| p.frames_sent >= 2));
        for t in ts {
            t.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_reconnects_and_frames_flow_again() {
    bounded(async {
        let (keys, cfgs, mut ts, mut rxs) = mesh("restart", 4).await;
        all_connected(&ts).await;
        // Replica 1 dials 2 and 3 and accepts from 0: both roles restart.
        let old = ts.remove(1);
        old.shutdown().await;
        let (t1, rx1) = start(cfgs[1].clone(), &keys[1]).await;
        ts.insert(1, t1);
        rxs[1] = rx1;
        all_connected(&ts).await;
        for j in [0usize, 2, 3] {
            ts[1].send(ReplicaId(j as u32), frame(&format!("again 1->{j}")));
            ts[j].send(ReplicaId(1), frame(&format!("again {j}->1")));
        }
        let mut at_1 = vec![];
        for j in [0usize, 2, 3] {
            expect(&mut rxs[j], 1, &format!("again 1->{j}")).await;
            at_1.push((j, format!("again {j}->1")));
        }
        expect_all(&mut rxs[1], at_1).await;
        for t in ts {
            t.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_outside_genesis_cannot_connect_or_deliver() {
    bounded(async {
        let keys = keys("impostor", 4);
        let peers = genesis(&keys, &addrs(4));
        let (t1, mut rx1) = start(config(1, peers.clone()), &keys[1]).await;
        let (t2, mut rx2) = start(config(2, peers.clone()), &keys[2]).await;
        // Impostors take the places of replica 0 (dials everyone) and
        // replica 3 (is dialled by everyone), each with a key not in genesis.
        let mut impostors = vec![];
        for slot in [0usize, 3] {
            let fake = KeyPair::from_label(&format!("impostor-{slot}"));
            let mut their = peers.clone();
            their[slot].public_key = fake.public();
            impostors.push(start(config(slot, their), &fake).await);
        }
        for (t, _) in &impostors {
            t.broadcast(frame("forged"));
        }
        t1.send(ReplicaId(2), frame("real"));
        expect(&mut rx2, 1, "real").await;
        // Let every dial be retried a few times.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for rx in [&mut rx1, &mut rx2] {
            while let Ok((from, bytes)) = rx.try_recv() {
                assert!(
                    from == ReplicaId(1) || from == ReplicaId(2),
                    "frame from {from}"
                );
                assert_ne!(bytes, b"forged");
            }
        }
        // (An impostor's *own* view may briefly show a connection: a TLS 1.3
        // client finishes before the server has checked its certificate.)
        for (_, rx) in &mut impostors {
            assert!(rx.try_recv().is_err(), "an impostor received a frame");
        }
        for t in [&t1, &t2] {
            let s = t.stats();
            // The impostor dialling in was refused, and our dial to the impostor too.
            assert!(s.rejected_handshakes >= 2, "{s:?}");
            assert!(!s.peers[0].connected && !s.peers[3].connected);
            assert_eq!(s.peers[0].frames_received + s.peers[3].frames_received, 0);
        }
        for t in [t1, t2]
            .into_iter()
            .chain(impostors.into_iter().map(|(t, _)| t))
        {
            t.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_cap_is_not_delivered() {
    bounded(async {
        let keys = keys("cap", 2);
        let peers = genesis(&keys, &addrs(2));
        let (t0, _rx0) = start(config(0, peers.clone()), &keys[0]).await;
        let mut c1 = config(1, peers);
        c1.frame_bytes_max = 1024;
        let (t1, mut rx1) = start(c1, &keys[1]).await;
        t0.send(ReplicaId(1), Arc::from(vec![7u8; 10_000]));
        t0.send(ReplicaId(1), Arc::from(vec![8u8; 1024]));
        let (from, got) = rx1.recv().await.unwrap();
        assert_eq!((from, got), (ReplicaId(0), vec![8u8; 1024]));
        while t1.stats().peers[0].frames_oversize == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t0.send(ReplicaId(1), frame("small"));
        expect(&mut rx1, 0, "small").await;
        assert!(rx1.try_recv().is_err());
        let s = t1.stats().peers[0].clone();
        assert_eq!((s.frames_oversize, s.frames_received), (1, 2));
        t0.shutdown().await;
        t1.shutdown().await;
    })
    .await;
}

/// Consensus-sized frames share one stream and arrive in the order they were
/// queued; a frame over the shared stream's limit travels on its own stream
/// and arrives whole among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_frames_arrive_in_order_and_a_long_one_arrives_whole() {
    bounded(async {
        let (_keys, _cfgs, ts, mut rxs) = mesh("order", 2).await;
        all_connected(&ts).await;
        const SMALL: u32 = 3_000;
        let long: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        for i in 0..SMALL {
            let mut f = i.to_le_bytes().to_vec();
            f.resize(100 + (i as usize % 300), 0xA5);
            ts[0].send(ReplicaId(1), Arc::from(f));
            if i == SMALL / 2 {
                ts[0].send(ReplicaId(1), Arc::from(long.clone()));
            }
        }
        let (mut next, mut long_seen) = (0u32, false);
        while next < SMALL || !long_seen {
            let (from, got) = rxs[1].recv().await.expect("transport closed");
            assert_eq!(from, ReplicaId(0));
            if got.len() == long.len() {
                assert!(got == long, "the long frame arrived altered");
                long_seen = true;
                continue;
            }
            let i = u32::from_le_bytes(got[..4].try_into().unwrap());
            assert_eq!(i, next, "small frames out of order");
            assert_eq!(got.len(), 100 + (i as usize % 300));
            assert!(got[4..].iter().all(|b| *b == 0xA5));
            next += 1;
        }
        let s = ts[0].stats().peers[1].clone();
        assert_eq!((s.send_failed, s.frames_dropped), (0, 0));
        let r = ts[1].stats().peers[0].clone();
        assert_eq!(
            (r.frames_received, r.frames_oversize),
            (SMALL as u64 + 1, 0)
        );
        for t in ts {
            t.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_queue_drops_oldest_when_full() {
    bounded(async {
        let keys = keys("queue", 2);
        let peers = genesis(&keys, &addrs(2));
        let mut c0 = config(0, peers);
        c0.peer_queue_max = 4;
        // Peer 1 is never started, so frames stay queued.
        let (t0, _rx) = start(c0, &keys[0]).await;
        for i in 0..10 {
            t0.send(ReplicaId(1), frame(&i.to_string()));
        }
        let s = t0.stats().peers[1].clone();
        assert_eq!((s.queued, s.frames_dropped, s.connected), (4, 6, false));
        t0.shutdown().await;
    })
    .await;
}

/// Issue 17, defect 7: the outbound queue is bounded in bytes too (here
/// 8 MiB: `peer_bytes_max` with a small frame cap), not only in frames: a
/// peer that never reads cannot make us hold `peer_queue_max` large frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_queue_is_bounded_in_bytes() {
    bounded(async {
        let keys = keys("queue-bytes", 2);
        let peers = genesis(&keys, &addrs(2));
        let mut c0 = config(0, peers);
        c0.peer_queue_max = 4_096;
        c0.frame_bytes_max = 2 * 1024 * 1024;
        assert_eq!(peer::peer_bytes_max(&c0), 8 * 1024 * 1024);
        // Peer 1 is never started, so frames stay queued.
        let (t0, _rx) = start(c0, &keys[0]).await;
        let mib: Arc<[u8]> = vec![7u8; 1024 * 1024].into();
        for _ in 0..20 {
            t0.send(ReplicaId(1), mib.clone());
        }
        let s = t0.stats().peers[1].clone();
        assert_eq!((s.queued, s.frames_dropped), (8, 12), "{s:?}");
        t0.shutdown().await;
    })
    .await;
}

#[test]
fn config_validation() {
    let keys = keys("cfg", 4);
    let peers = genesis(&keys, &addrs(4));
    assert!(config(0, peers.clone()).validate().is_ok());
    let mut c = config(0, peers.clone());
    c.keep_alive = c.idle_timeout;
    assert!(matches!(c.validate(), Err(NetError::Config(_))));
    let mut c = config(0, peers.clone());
    c.peers[2].public_key = c.peers[1].public_key;
    assert!(matches!(c.validate(), Err(NetError::Config(_))));
    let mut c = config(0, peers);
    c.me = ReplicaId(4);
    assert!(matches!(c.validate(), Err(NetError::Config(_))));
}

fn no_screen(_: &[u8]) -> Option<Vec<u8>> {
    None
}

async fn echo_server(key: &KeyPair, max: usize) -> (ClientServer, SocketAddr) {
    let limits = ClientLimits {
        queue_max: 16,
        key_share: 16,
        source_share: 16,
        ..ClientLimits::for_queue(max, 16)
    };
    let (server, mut rx) =
        ClientServer::start("127.0.0.1:0".parse().unwrap(), key, limits, no_screen)
            .await
            .unwrap();
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if req.frame == b"drop" {
                continue; // drops `respond`
            }
            if req.frame.starts_with(b"slow") {
                // Answered later, after requests that came after it.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = req.respond.send(req.frame);
                });
                continue;
            }
            let mut out = req.client_key.0.to_vec();
            out.extend(req.frame.iter().rev());
            let _ = req.respond.send(out);
        }
    });
    let addr = server.local_addr().unwrap();
    (server, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_round_trip_and_pinning() {
    bounded(async {
        let server_key = KeyPair::from_label("client-server");
        let client_key = KeyPair::from_label("client");
        let (server, addr) = echo_server(&server_key, 1024).await;
        let wait = Duration::from_secs(5);
        let good =
            ClientConnector::new(&client_key, vec![(server_key.public(), addr)], wait).unwrap();
        for _ in 0..3 {
            // The second and third requests reuse the connection.
            let resp = good.request(0, b"abc", wait).await.unwrap();
            assert_eq!(&resp[..32], &client_key.public().0);
            assert_eq!(&resp[32..], b"cba");
        }
        assert!(matches!(
            good.request(0, b"drop", wait).await,
            Err(NetError::Closed(_))
        ));
        assert!(matches!(
            good.request(0, &[0u8; 4096], wait).await,
            Err(NetError::FrameTooLarge)
        ));
        assert!(matches!(
            good.request(1, b"abc", wait).await,
            Err(NetError::UnknownReplica(1))
        ));
        // A connector expecting another key refuses the server.
        let wrong = KeyPair::from_label("not-the-server").public();
        let bad = ClientConnector::new(&client_key, vec![(wrong, addr)], wait).unwrap();
        let started = Instant::now();
        let err = bad.request(0, b"abc", wait).await.unwrap_err();
        assert!(matches!(err, NetError::Rejected(_)), "{err:?}");
        assert!(started.elapsed() < wait);
        good.close().await;
        bad.close().await;
        server.shutdown().await;
    })
    .await;
}

/// Many requests share one session: answers come back in the order the
/// server produces them, each to its own request; a request abandoned by
/// its caller (timed out) does not disturb the session when its late answer
/// arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_carries_concurrent_requests_answered_out_of_order() {
    bounded(async {
        let server_key = KeyPair::from_label("session-server");
        let client_key = KeyPair::from_label("session-client");
        let (server, addr) = echo_server(&server_key, 1024).await;
        let wait = Duration::from_secs(5);
        let c = Arc::new(
            ClientConnector::new(&client_key, vec![(server_key.public(), addr)], wait).unwrap(),
        );
        let slow = {
            let c = c.clone();
            tokio::spawn(async move { c.request(0, b"slow-1", wait).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        // The server takes 16 requests at once (its queue bound); 1 is the slow one.
        let fast: Vec<_> = (0..12u32)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(
                    async move { (i, c.request(0, format!("n{i}").as_bytes(), wait).await) },
                )
            })
            .collect();
        for f in fast {
            let (i, resp) = f.await.unwrap();
            let resp = resp.unwrap();
            let want: Vec<u8> = format!("n{i}").bytes().rev().collect();
            assert_eq!(&resp[32..], &want[..], "answer {i} went to its own request");
        }
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "fast answers did not wait for the slow one: {:?}",
            started.elapsed()
        );
        assert_eq!(slow.await.unwrap().unwrap(), b"slow-1");
        // Abandoned: the caller gives up before the answer; the answer
        // arrives later and is dropped, and the session goes on.
        let err = c
            .request(0, b"slow-2", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Timeout), "{err:?}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let resp = c.request(0, b"after", wait).await.unwrap();
        assert_eq!(&resp[32..], b"retfa");
        match Arc::try_unwrap(c) {
            Ok(c) => c.close().await,
            Err(_) => panic!("connector still shared"),
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_an_unreachable_replica_fail_within_the_timeout() {
    bounded(async {
        let key = KeyPair::from_label("lonely-client");
        let nobody = addrs(1)[0];
        let replica = KeyPair::from_label("absent").public();
        // The request timeout is the tighter bound.
        let c =
            ClientConnector::new(&key, vec![(replica, nobody)], Duration::from_secs(30)).unwrap();
        let started = Instant::now();
        let err = c
            .request(0, b"hi", Duration::from_millis(400))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Timeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_millis(1500));
        // The dial timeout is the tighter bound.
        let c = ClientConnector::new(&key, vec![(replica, nobody)], Duration::from_millis(300))
            .unwrap();
        let started = Instant::now();
        assert!(c.request(0, b"hi", Duration::from_secs(30)).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(1500));
    })
    .await;
}

/// A client endpoint with `limits` whose requests the test handles itself.
async fn bare_server(
    key: &KeyPair,
    limits: ClientLimits,
    screen: Screen,
) -> (ClientServer, SocketAddr, mpsc::Receiver<ClientRequest>) {
    let (server, rx) = ClientServer::start("127.0.0.1:0".parse().unwrap(), key, limits, screen)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    (server, addr, rx)
}

/// Issue 24, defect 12: a replica that takes requests and never answers
/// (while keeping its connection alive) fills the client's session with
/// abandoned requests; the client must then drop that session and go on on
/// a fresh one. Before, every later request to that replica waited for a
/// slot until its timeout, even once the replica answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_a_session_its_silent_replica_filled() {
    bounded(async {
        let server_key = KeyPair::from_label("silent-server");
        let client_key = KeyPair::from_label("silent-client");
        let (server, addr, mut rx) =
            bare_server(&server_key, ClientLimits::for_queue(1024, 4096), no_screen).await;
        let silent = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = silent.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(req) = rx.recv().await {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(req); // never answered, never dropped
                } else {
                    let _ = req.respond.send(b"answer".to_vec());
                }
            }
        });
        let wait = Duration::from_secs(5);
        let c = Arc::new(
            ClientConnector::new(&client_key, vec![(server_key.public(), addr)], wait).unwrap(),
        );
        let abandoned: Vec<_> = (0..limits::SESSION_IN_FLIGHT)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.request(0, b"q", Duration::from_millis(500)).await })
            })
            .collect();
        for a in abandoned {
            assert!(matches!(a.await.unwrap(), Err(NetError::Timeout)));
        }
        silent.store(false, std::sync::atomic::Ordering::SeqCst);
        let started = Instant::now();
        let resp = c.request(0, b"again", Duration::from_secs(2)).await;
        assert_eq!(
            resp.expect("the replica answers again; the client must reach it"),
            b"answer"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        server.shutdown().await;
    })
    .await;
}

/// Issue 24, defect 1: a client that sends and never reads its answers.
/// With its key's share used up, another client (same source address) is
/// still served at once; once the first client's answers sit unwritten for
/// the write timeout, its session is reset and its slots come back. Before,
/// such a client held the replica's whole capacity for as long as it stayed
/// connected, and every other client got "busy".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_only_its_share_and_only_for_a_while() {
    bounded(async {
        let server_key = KeyPair::from_label("unread-server");
        let limits = ClientLimits {
            queue_max: 64,
            key_share: 16,
            source_share: 48,
            write_timeout: Duration::from_millis(1500),
            ..ClientLimits::for_queue(4096, 64)
        };
        let (server, addr, mut rx) = bare_server(&server_key, limits, no_screen).await;
        // Answers are 2 KiB each: the lazy client's small window fills at once.
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let _ = req.respond.send(vec![7u8; 2048]);
            }
        });
        // The lazy client: a raw session with a tiny receive window.
        let lazy_key = KeyPair::from_label("unread-lazy");
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(1024u32.into())
            .receive_window(1024u32.into())
            .keep_alive_interval(Some(Duration::from_millis(200)));
        let config = tls::client_config(
            &tls::Identity::new(&lazy_key).unwrap(),
            tls::Pin::One(server_key.public()),
            tls::ALPN_CLIENT,
            Arc::new(t),
        )
        .unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(config, addr, "pbft-replica")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut records = Vec::new();
        for id in 0..200u64 {
            super::client::record::put_record(&mut records, id, 0, &[1u8; 512]);
        }
        send.write_all(&records).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Another client, another key, same address: served at once.
        let honest_key = KeyPair::from_label("unread-honest");
        let wait = Duration::from_secs(5);
        let honest =
            ClientConnector::new(&honest_key, vec![(server_key.public(), addr)], wait).unwrap();
        let started = Instant::now();
        for _ in 0..20 {
            let resp = honest.request(0, b"hi", Duration::from_millis(800)).await;
            assert_eq!(resp.expect("served beside the lazy client").len(), 2048);
        }
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        // The lazy session is reset once its answers wait past the timeout.
        let reset = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = vec![0u8; 4096];
            loop {
                match recv.read(&mut buf).await {
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => return other,
                }
            }
        })
        .await
        .expect("the session of a client that does not read is closed");
        assert!(
            matches!(reset, Err(quinn::ReadError::Reset(code)) if code == codes::TIMEOUT),
            "{reset:?}"
        );
        endpoint.close(codes::SHUTDOWN, b"done");
        honest.close().await;
        server.shutdown().await;
    })
    .await;
}

/// Issue 24, defect 1: a frame the endpoint's screen answers on sight (the
/// node's answer to an undecodable request) takes no replica-wide slot: it
/// is answered even while every slot is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screened_frame_is_answered_without_a_slot() {
    fn screen(frame: &[u8]) -> Option<Vec<u8>> {
        frame.starts_with(b"bad").then(|| b"malformed".to_vec())
    }
    bounded(async {
        let server_key = KeyPair::from_label("screen-server");
        let limits = ClientLimits::for_queue(1024, 1);
        let (server, addr, mut rx) = bare_server(&server_key, limits, screen).await;
        let held = tokio::spawn(async move { rx.recv().await.map(|req| (req, rx)) });
        let key = KeyPair::from_label("screen-client");
        let wait = Duration::from_secs(5);
        let c =
            Arc::new(ClientConnector::new(&key, vec![(server_key.public(), addr)], wait).unwrap());
        let waiting = {
            let c = c.clone();
            tokio::spawn(async move { c.request(0, b"hold", Duration::from_secs(5)).await })
        };
        let (req, _rx) = held.await.unwrap().expect("the request reaches the node");
        assert!(
            matches!(c.request(0, b"other", wait).await, Err(NetError::Closed(_))),
            "the one slot is taken: busy"
        );
        assert_eq!(
            c.request(0, b"bad bytes", wait).await.unwrap(),
            b"malformed"
        );
        let _ = req.respond.send(b"done".to_vec());
        assert_eq!(waiting.await.unwrap().unwrap(), b"done");
        server.shutdown().await;
    })
    .await;
}

/// Issue 24, defect 2: one source address holds at most its share of the
/// connections, and a connection that sends nothing (keep-alives only) is
/// closed after the idle timeout, giving its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_are_capped_and_idle_ones_closed() {
    bounded(async {
        let server_key = KeyPair::from_label("conn-server");
        let limits = ClientLimits {
            connections_per_source: 2,
            idle_timeout: Duration::from_millis(1000),
            ..ClientLimits::for_queue(1024, 64)
        };
        let (server, addr, mut rx) = bare_server(&server_key, limits, no_screen).await;
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let _ = req.respond.send(b"ok".to_vec());
            }
        });
        let wait = Duration::from_millis(1500);
        let connector = |label: &str| {
            ClientConnector::new(
                &KeyPair::from_label(label),
                vec![(server_key.public(), addr)],
                wait,
            )
            .unwrap()
        };
        let (a, b, c) = (
            connector("conn-a"),
            connector("conn-b"),
            connector("conn-c"),
        );
        assert_eq!(a.request(0, b"x", wait).await.unwrap(), b"ok");
        assert_eq!(b.request(0, b"x", wait).await.unwrap(), b"ok");
        assert!(
            c.request(0, b"x", wait).await.is_err(),
            "a third connection from one source is refused"
        );
        // a and b stay connected (keep-alives) but send nothing.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(
            c.request(0, b"x", wait)
                .await
                .expect("idle connections were closed"),
            b"ok"
        );
        // An idle-closed client redials transparently.
        assert_eq!(a.request(0, b"x", wait).await.unwrap(), b"ok");
        server.shutdown().await;
    })
    .await;
}

/// Issue 20: a peer named by DNS is dialled at whatever its name resolves
/// to at each dial. A name that does not resolve yet is retried, never
/// fatal; after the peer comes back under another IP (a rescheduled pod),
/// the next dial finds it there.
#[tokio::test]
async fn a_named_peer_is_found_again_at_its_new_address() {
    bounded(async {
        let keys = keys("names", 2);
        let mut peers = genesis(&keys, &addrs(2));
        let port = peers[1].addr.port();
        peers[1].addr = PeerAddr::parse(&format!("replica-1.test:{port}")).unwrap();
        let (resolver, table) = Resolver::table();
        let mut cfgs: Vec<_> = (0..2).map(|i| config(i, peers.clone())).collect();
        cfgs[1].listen = SocketAddr::from(([127, 0, 0, 1], port));
        for c in &mut cfgs {
            c.resolver = resolver.clone();
        }
        let (a, _rx_a) = start(cfgs[0].clone(), &keys[0]).await;
        let (b, mut rx_b) = start(cfgs[1].clone(), &keys[1]).await;
        // The name does not resolve: replica 0 keeps retrying.
        a.send(ReplicaId(1), frame("queued while unresolved"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !a.stats().peers[1].connected,
            "connected to a name that does not resolve"
        );
        assert!(rx_b.try_recv().is_err());
        table
            .lock()
            .unwrap()
            .insert("replica-1.test".into(), vec!["127.0.0.1".parse().unwrap()]);
        expect(&mut rx_b, 0, "queued while unresolved").await;
        // Replica 1 moves to 127.0.0.2 under the same name.
        b.shutdown().await;
        drop(rx_b);
        table
            .lock()
            .unwrap()
            .insert("replica-1.test".into(), vec!["127.0.0.2".parse().unwrap()]);
        cfgs[1].listen = SocketAddr::from(([127, 0, 0, 2], port));
        let (b, mut rx_b) = start(cfgs[1].clone(), &keys[1]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        loop {
            n += 1;
            a.send(ReplicaId(1), frame(&format!("after the move {n}")));
            let got = tokio::time::timeout(Duration::from_millis(300), rx_b.recv()).await;
            if let Ok(Some((from, _))) = got {
                assert_eq!(from, ReplicaId(0));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never reached the peer at its new address"
            );
        }
        assert!(a.stats().peers[1].connected);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
}
