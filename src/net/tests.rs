//! Loopback tests of the mesh and the client endpoint. Every test runs under
//! a hard timeout so a hang fails instead of blocking the suite.

use super::*;
use crate::crypto::KeyPair;
use std::future::Future;
use std::time::Instant;

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
            addr: *a,
        })
        .collect()
}

/// A config with short timeouts so tests run fast.
fn config(me: usize, peers: Vec<PeerInfo>) -> NetConfig {
    let mut c = NetConfig::new(ReplicaId(me as u32), peers[me].addr, peers);
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

async fn echo_server(key: &KeyPair, max: usize) -> (ClientServer, SocketAddr) {
    let (server, mut rx) = ClientServer::start("127.0.0.1:0".parse().unwrap(), key, max, 16)
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
