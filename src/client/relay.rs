//! `pbft-client relay`: a user-space UDP relay that gives links a one-way
//! delay, jitter and loss, for measuring the ledger over a wide-area network
//! on one machine (the kernel's `tc netem` is not always there).
//!
//! Each [`Link`] binds `LISTEN` and forwards to `TARGET`. Every distinct
//! source seen on `LISTEN` gets its own upstream socket connected to
//! `TARGET` (a NAT-like flow table, bounded by [`RelayOptions::flows_max`];
//! a flow idle for [`RelayOptions::flow_idle`] is forgotten), so the target
//! sees one peer per source and its answers find their way back. Datagrams
//! in either direction wait `delay + U[0, jitter]` before they are sent on,
//! in their arrival order (a datagram never leaves before the one ahead of
//! it in the same direction: the due time is the later of the previous
//! one's and `now + delay + jitter`, as netem without reordering), and
//! each is dropped with
//! probability `loss`. What waits is bounded in bytes per direction
//! ([`RelayOptions::queue_bytes_max`]); a datagram over the bound is dropped
//! and counted.
//!
//! `scripts/bench.sh --delay-ms D` puts one relay link in front of every
//! replica's p2p and client address: genesis names the relay, the replica
//! binds another port. A replica's connection to another (one QUIC
//! connection per pair, the lower id dials) then passes the higher id's
//! relay both ways, and a client's requests and replies pass the replica's
//! client relay, so every message between two parties is delayed once.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Default bound on the datagram bytes waiting in one direction of a link.
pub const QUEUE_BYTES_MAX: usize = 32 << 20;
/// Default bound on the sources one link relays for at once.
pub const FLOWS_MAX: usize = 256;
/// Default time after which a silent flow is forgotten.
pub const FLOW_IDLE: Duration = Duration::from_secs(120);
/// Largest UDP payload.
const DATAGRAM_MAX: usize = 65_535;
/// Kernel buffer asked for each relay socket, each way (the system caps it
/// at `net.core.rmem_max` / `wmem_max`). With the default (about 200 kB) a
/// relay that shares the cores with the replicas overflowed its receive
/// buffer under load while it waited for a core, and QUIC took the drops
/// for congestion.
const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;

/// Asks for [`SOCKET_BUFFER_BYTES`] of receive and send buffer; a refusal
/// leaves the system's default (the relay still works, with more drops).
fn enlarge_buffers(s: &StdUdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        let v = SOCKET_BUFFER_BYTES;
        // SAFETY: `fd` is an open socket owned by `s` for the whole call,
        // and the option value is a c_int of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// A non-blocking tokio socket bound to `addr`, with enlarged buffers.
fn bind_udp(addr: SocketAddr) -> std::io::Result<StdUdpSocket> {
    let s = StdUdpSocket::bind(addr)?;
    enlarge_buffers(&s);
    s.set_nonblocking(true)?;
    Ok(s)
}

/// One relayed address: datagrams to `listen` go on to `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

/// Parses `LISTEN=TARGET`, two socket addresses of the same family
/// (`127.0.0.1:29000=127.0.0.1:29005`).
pub fn parse_link(s: &str) -> Result<Link, String> {
    let (l, t) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not LISTEN=TARGET (two IP:PORT addresses)"))?;
    let listen: SocketAddr = l
        .trim()
        .parse()
        .map_err(|_| format!("'{l}' (in '{s}') is not an IP:PORT address"))?;
    let target: SocketAddr = t
        .trim()
        .parse()
        .map_err(|_| format!("'{t}' (in '{s}') is not an IP:PORT address"))?;
    if listen.is_ipv4() != target.is_ipv4() {
        return Err(format!(
            "'{s}': LISTEN and TARGET must both be IPv4 or both IPv6"
        ));
    }
    if target.port() == 0 || target.ip().is_unspecified() {
        return Err(format!(
            "'{s}': TARGET needs a concrete IP and a non-zero port"
        ));
    }
    Ok(Link { listen, target })
}

/// What a link does to every datagram, in each direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a datagram is dropped.
    pub loss: f64,
}

/// A relay's links and impairment.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    pub links: Vec<Link>,
    pub impairment: Impairment,
    /// Seeds the loss and jitter draws (each direction of each link gets its
    /// own stream), for a repeatable run; without it, fresh entropy.
    pub seed: Option<u64>,
    pub queue_bytes_max: usize,
    pub flows_max: usize,
    pub flow_idle: Duration,
}

impl RelayOptions {
    pub fn new(links: Vec<Link>, impairment: Impairment) -> RelayOptions {
        RelayOptions {
            links,
            impairment,
            seed: None,
            queue_bytes_max: QUEUE_BYTES_MAX,
            flows_max: FLOWS_MAX,
            flow_idle: FLOW_IDLE,
        }
    }

    /// The checks the command line cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.links.is_empty() {
            return Err("name at least one --link LISTEN=TARGET".into());
        }
        for (k, a) in self.links.iter().enumerate() {
            if a.listen.port() != 0 && self.links[..k].iter().any(|b| b.listen == a.listen) {
                return Err(format!("--link: {} is named twice as LISTEN", a.listen));
            }
        }
        let loss = self.impairment.loss;
        if !(0.0..=1.0).contains(&loss) {
            return Err(format!("loss {loss} is not a probability in [0, 1]"));
        }
        if self.queue_bytes_max == 0 || self.flows_max == 0 {
            return Err("the queue and flow bounds must be positive".into());
        }
        Ok(())
    }
}

/// Datagrams one direction of a link handled.
#[derive(Default, Debug)]
struct DirectionCounters {
    forwarded: AtomicU64,
    lost: AtomicU64,
    queue_full: AtomicU64,
    send_errors: AtomicU64,
}

#[derive(Default, Debug)]
struct Counters {
    /// Source to target.
    up: DirectionCounters,
    /// Target back to the source.
    down: DirectionCounters,
    flows: AtomicU64,
    flows_refused: AtomicU64,
}

/// Counts of one direction, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectionStats {
    /// Sent on after their delay.
    pub forwarded: u64,
    /// Dropped by the loss draw.
    pub lost: u64,
    /// Dropped because the direction's queue was full.
    pub queue_full: u64,
    /// The onward send failed (the target not listening yet, say).
    pub send_errors: u64,
}

/// One link's counts, at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    pub up: DirectionStats,
    pub down: DirectionStats,
    /// Flows (sources) opened so far.
    pub flows: u64,
    /// Datagrams from new sources refused because the flow table was full.
    pub flows_refused: u64,
}

impl LinkStats {
    /// One line for a person: `LISTEN -> TARGET: ...`.
    pub fn text(&self) -> String {
        let d = |s: &DirectionStats| {
            format!(
                "forwarded {} lost {} queue-full {} send-errors {}",
                s.forwarded, s.lost, s.queue_full, s.send_errors
            )
        };
        format!(
            "relay {} -> {}: to target {}; back {}; flows {} (refused datagrams {})",
            self.listen,
            self.target,
            d(&self.up),
            d(&self.down),
            self.flows,
            self.flows_refused
        )
    }
}

fn snapshot(c: &DirectionCounters) -> DirectionStats {
    DirectionStats {
        forwarded: c.forwarded.load(Relaxed),
        lost: c.lost.load(Relaxed),
        queue_full: c.queue_full.load(Relaxed),
        send_errors: c.send_errors.load(Relaxed),
    }
}

/// Where a delayed datagram goes: up a flow's socket to the target, or from
/// the listening socket back to a source.
enum Hop {
    Up(Arc<UdpSocket>),
    Down(SocketAddr),
}

struct Queued {
    due: Instant,
    hop: Hop,
    data: Vec<u8>,
}

/// One direction of a link: decides a datagram's fate and due time, and
/// hands it to the task that sends it when due.
struct DelayLine {
    impairment: Impairment,
    bytes_max: usize,
    bytes: Arc<AtomicUsize>,
    state: Mutex<LineState>,
    tx: mpsc::UnboundedSender<Queued>,
}

struct LineState {
    rng: StdRng,
    /// The due time of the datagram queued last: no later one leaves before.
    last_due: Instant,
}

impl DelayLine {
    fn push(&self, counters: &DirectionCounters, hop: Hop, data: Vec<u8>) {
        let imp = &self.impairment;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if imp.loss > 0.0 && st.rng.gen::<f64>() < imp.loss {
            counters.lost.fetch_add(1, Relaxed);
            return;
        }
        let len = data.len();
        if self.bytes.load(Relaxed) + len > self.bytes_max {
            counters.queue_full.fetch_add(1, Relaxed);
            return;
        }
        let jitter = match imp.jitter.as_micros() as u64 {
            0 => Duration::ZERO,
            j => Duration::from_micros(st.rng.gen_range(0..=j)),
        };
        let due = (Instant::now() + imp.delay + jitter).max(st.last_due);
        st.last_due = due;
        self.bytes.fetch_add(len, Relaxed);
        // The receiver ends only with the relay.
        let _ = self.tx.send(Queued { due, hop, data });
    }
}

/// Sends a direction's datagrams when due, in order.
async fn drain(
    mut rx: mpsc::UnboundedReceiver<Queued>,
    listen: Arc<UdpSocket>,
    bytes: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    up: bool,
) {
    let c = if up { &counters.up } else { &counters.down };
    while let Some(q) = rx.recv().await {
        if q.due > Instant::now() {
            tokio::time::sleep_until(q.due).await;
        }
        let sent = match &q.hop {
            Hop::Up(sock) => sock.send(&q.data).await,
            Hop::Down(to) => listen.send_to(&q.data, to).await,
        };
        bytes.fetch_sub(q.data.len(), Relaxed);
        match sent {
            Ok(_) => c.forwarded.fetch_add(1, Relaxed),
            Err(_) => c.send_errors.fetch_add(1, Relaxed),
        };
    }
}

struct Flow {
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the relay started, at the flow's last datagram.
    last_seen: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

struct LinkState {
    link: Link,
    local: SocketAddr,
    listen: Arc<UdpSocket>,
    up: DelayLine,
    down: Arc<DelayLine>,
    counters: Arc<Counters>,
    flows: Mutex<HashMap<SocketAddr, Flow>>,
    flows_max: usize,
    epoch: Instant,
}

impl LinkState {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The upstream socket of `from`'s flow, opened if new (and if the
    /// table has room).
    fn flow(self: &Arc<Self>, from: SocketAddr) -> std::io::Result<Option<Arc<UdpSocket>>> {
        let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now_ms();
        if let Some(f) = flows.get(&from) {
            f.last_seen.store(now, Relaxed);
            return Ok(Some(f.upstream.clone()));
        }
        if flows.len() >= self.flows_max {
            self.counters.flows_refused.fetch_add(1, Relaxed);
            return Ok(None);
        }
        let any: SocketAddr = if self.link.target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = bind_udp(any)?;
        s.connect(self.link.target)?;
        let upstream = Arc::new(UdpSocket::from_std(s)?);
        let last_seen = Arc::new(AtomicU64::new(now));
        let task = tokio::spawn(back_to_source(
            self.clone(),
            upstream.clone(),
            from,
            last_seen.clone(),
        ));
        flows.insert(
            from,
            Flow {
                upstream: upstream.clone(),
                last_seen,
                task,
            },
        );
        self.counters.flows.fetch_add(1, Relaxed);
        Ok(Some(upstream))
    }

    /// Forgets flows silent for longer than `idle`.
    fn expire(&self, idle: Duration) {
        let now = self.now_ms();
        let idle = idle.as_millis() as u64;
        let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        flows.retain(|_, f| {
            let keep = now.saturating_sub(f.last_seen.load(Relaxed)) <= idle;
            if !keep {
                f.task.abort();
            }
            keep
        });
    }
}

/// Receives on `LISTEN` and queues each datagram up its source's flow.
async fn from_sources(link: Arc<LinkState>) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (n, from) = match link.listen.recv_from(&mut buf).await {
            Ok(r) => r,
            // A failed receive (an ICMP error reported late, say) does not
            // end the link.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        match link.flow(from) {
            Ok(Some(upstream)) => {
                link.up
                    .push(&link.counters.up, Hop::Up(upstream), buf[..n].to_vec());
            }
            Ok(None) => {}
            Err(_) => {
                link.counters.up.send_errors.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Receives the target's answers on one flow and queues them back to its
/// source.
async fn back_to_source(
    link: Arc<LinkState>,
    upstream: Arc<UdpSocket>,
    source: SocketAddr,
    last_seen: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(n) => {
                last_seen.store(link.now_ms(), Relaxed);
                link.down
                    .push(&link.counters.down, Hop::Down(source), buf[..n].to_vec());
            }
            // Connection refused: the target is not listening (yet); the
            // next datagram from the source tries again.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// A running relay; dropping it (or [`Relay::stop`]) ends every task.
pub struct Relay {
    links: Vec<Arc<LinkState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds every link's `LISTEN` and starts relaying (inside a tokio
    /// runtime). Fails, naming the address, if one cannot be bound.
    pub async fn start(opts: &RelayOptions) -> Result<Relay, String> {
        opts.validate()?;
        let epoch = Instant::now();
        let mut links = Vec::new();
        let mut tasks = Vec::new();
        for (k, link) in opts.links.iter().enumerate() {
            let listen = bind_udp(link.listen)
                .and_then(UdpSocket::from_std)
                .map_err(|e| format!("cannot bind {} (--link {}): {e}", link.listen, k + 1))?;
            let local = listen
                .local_addr()
                .map_err(|e| format!("{}: {e}", link.listen))?;
            let listen = Arc::new(listen);
            let counters = Arc::new(Counters::default());
            let mut line = |direction: u64| {
                let rng = match opts.seed {
                    Some(s) => {
                        StdRng::seed_from_u64(s.wrapping_add(2 * k as u64).wrapping_add(direction))
                    }
                    None => StdRng::from_entropy(),
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let bytes = Arc::new(AtomicUsize::new(0));
                tasks.push(tokio::spawn(drain(
                    rx,
                    listen.clone(),
                    bytes.clone(),
                    counters.clone(),
                    direction == 0,
                )));
                DelayLine {
                    impairment: opts.impairment,
                    bytes_max: opts.queue_bytes_max,
                    bytes,
                    state: Mutex::new(LineState {
                        rng,
                        last_due: epoch,
                    }),
                    tx,
                }
            };
            let up = line(0);
            let down = Arc::new(line(1));
            let state = Arc::new(LinkState {
                link: *link,
                local,
                listen,
                up,
                down,
                counters,
                flows: Mutex::new(HashMap::new()),
                flows_max: opts.flows_max,
                epoch,
            });
            tasks.push(tokio::spawn(from_sources(state.clone())));
            let (expiring, idle) = (state.clone(), opts.flow_idle);
            tasks.push(tokio::spawn(async move {
                let every = (idle / 4).max(Duration::from_millis(100));
                loop {
                    tokio::time::sleep(every).await;
                    expiring.expire(idle);
                }
            }));
            links.push(state);
        }
        Ok(Relay { links, tasks })
    }

    /// The address each link is bound to (its `LISTEN`, with the port the
    /// system chose if it was 0), in `--link` order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.links.iter().map(|l| l.local).collect()
    }

    /// Every link's counts so far, in `--link` order.
    pub fn stats(&self) -> Vec<LinkStats> {
        self.links
            .iter()
            .map(|l| LinkStats {
                listen: l.local,
                target: l.link.target,
                up: snapshot(&l.counters.up),
                down: snapshot(&l.counters.down),
                flows: l.counters.flows.load(Relaxed),
                flows_refused: l.counters.flows_refused.load(Relaxed),
            })
            .collect()
    }

    /// Stops relaying; datagrams still waiting are dropped.
    pub fn stop(mut self) {
        self.abort();
    }

    fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for l in &self.links {
            let mut flows = l.flows.lock().unwrap_or_else(|p| p.into_inner());
            for (_, f) in flows.drain() {
                f.task.abort();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| format!("cannot listen for SIGINT: {e}")),
        _ = term.recv() => Ok(()),
    }
}

/// `pbft-client relay`: relays until SIGINT, SIGTERM or `duration`, then
/// returns every link's counts. Each link's address is announced on stderr
/// once bound (`relay listening LISTEN -> TARGET`), so a script can wait
/// for it.
pub async fn run(
    opts: &RelayOptions,
    duration: Option<Duration>,
) -> Result<Vec<LinkStats>, String> {
    let relay = Relay::start(opts).await?;
    let imp = &opts.impairment;
    for (l, local) in opts.links.iter().zip(relay.local_addrs()) {
        eprintln!(
            "relay listening {local} -> {} (delay {} ms, jitter {} ms, loss {}%)",
            l.target,
            imp.delay.as_secs_f64() * 1e3,
            imp.jitter.as_secs_f64() * 1e3,
            imp.loss * 100.0
        );
    }
    match duration {
        Some(d) => tokio::select! {
            r = terminated() => r?,
            _ = tokio::time::sleep(d) => {}
        },
        None => terminated().await?,
    }
    let stats = relay.stats();
    relay.stop();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    fn imp(delay_ms: u64, jitter_ms: u64, loss: f64) -> Impairment {
        Impairment {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss,
        }
    }

    /// A target and a relay in front of it; returns (target socket, relay,
    /// relay's address).
    async fn setup(
        mut opts: impl FnMut(SocketAddr) -> RelayOptions,
    ) -> (UdpSocket, Relay, SocketAddr) {
        let target = UdpSocket::bind(local()).await.unwrap();
        let relay = Relay::start(&opts(target.local_addr().unwrap()))
            .await
            .unwrap();
        let at = relay.local_addrs()[0];
        (target, relay, at)
    }

    fn seq(buf: &[u8]) -> u32 {
        u32::from_be_bytes(buf[..4].try_into().unwrap())
    }

    /// Sends `n` numbered datagrams through the relay and echoes each at
    /// the target: checks both ways that each waited at least the delay
    /// (twice, round trip) and that order held.
    async fn round_trip(delay_ms: u64, jitter_ms: u64, n: u32) -> Vec<LinkStats> {
        let (target, relay, at) = setup(|t| {
            let mut o = RelayOptions::new(
                vec![Link {
                    listen: local(),
                    target: t,
                }],
                imp(delay_ms, jitter_ms, 0.0),
            );
            o.seed = Some(7);
            o
        })
        .await;
        let source = UdpSocket::bind(local()).await.unwrap();
        source.connect(at).await.unwrap();
        let delay = Duration::from_millis(delay_ms);
        let bound = Duration::from_millis(2_000 + 2 * (delay_ms + jitter_ms));
        let start = Instant::now();
        let mut sent = Vec::new();
        for k in 0..n {
            sent.push(Instant::now());
            source.send(&k.to_be_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut buf = [0u8; 64];
        let mut relay_addr = None;
        for k in 0..n {
            let (len, from) = tokio::time::timeout(bound, target.recv_from(&mut buf))
                .await
                .expect("datagram reached the target")
                .unwrap();
            assert_eq!(len, 4);
            assert_eq!(seq(&buf), k, "arrived in order at the target");
            assert!(
                sent[k as usize].elapsed() >= delay,
                "datagram {k} arrived after {:?}, before the {delay:?} delay",
                sent[k as usize].elapsed()
            );
            // One flow: the target sees a single relay address.
            assert_eq!(*relay_addr.get_or_insert(from), from);
            target.send_to(&buf[..len], from).await.unwrap();
        }
        for k in 0..n {
            let len = tokio::time::timeout(bound, source.recv(&mut buf))
                .await
                .expect("reply came back")
                .unwrap();
            assert_eq!(len, 4);
            assert_eq!(seq(&buf), k, "replies in order");
            assert!(
                sent[k as usize].elapsed() >= 2 * delay,
                "reply {k} back after {:?}, before twice the delay",
                sent[k as usize].elapsed()
            );
        }
        assert!(start.elapsed() < bound);
        relay.stats()
    }

    #[tokio::test]
    async fn delays_both_directions_in_order() {
        let stats = round_trip(30, 0, 20).await;
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].up.forwarded, 20);
        assert_eq!(stats[0].down.forwarded, 20);
        assert_eq!(stats[0].flows, 1);
        assert_eq!(stats[0].up.lost + stats[0].up.queue_full, 0);
    }

    #[tokio::test]
    async fn jitter_does_not_reorder() {
        // Jitter larger than the gap between datagrams would reorder them
        // without the FIFO rule.
        let stats = round_trip(5, 20, 50).await;
        assert_eq!(stats[0].up.forwarded, 50);
        assert_eq!(stats[0].down.forwarded, 50);
    }

    #[tokio::test]
    async fn full_loss_drops_everything() {
        let (target, relay, at) = setup(|t| {
            RelayOptions::new(
                vec![Link {
                    listen: local(),
                    target: t,
                }],
                imp(0, 0, 1.0),
            )
        })
        .await;
        let source = UdpSocket::bind(local()).await.unwrap();
        for k in 0u32..20 {
            source.send_to(&k.to_be_bytes(), at).await.unwrap();
        }
        let mut buf = [0u8; 64];
        let got =
            tokio::time::timeout(Duration::from_millis(300), target.recv_from(&mut buf)).await;
        assert!(got.is_err(), "a datagram got through at loss 100%");
        let s = relay.stats()[0];
        assert_eq!((s.up.lost, s.up.forwarded), (20, 0));
    }

    #[tokio::test]
    async fn partial_loss_is_seeded_and_roughly_its_rate() {
        let (target, relay, at) = setup(|t| {
            let mut o = RelayOptions::new(
                vec![Link {
                    listen: local(),
                    target: t,
                }],
                imp(0, 0, 0.25),
            );
            o.seed = Some(42);
            o
        })
        .await;
        // The target reads while the source sends, so its socket buffer
        // does not overflow.
        let counting = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut got = 0u64;
            while tokio::time::timeout(Duration::from_millis(300), target.recv_from(&mut buf))
                .await
                .is_ok()
            {
                got += 1;
            }
            got
        });
        let source = UdpSocket::bind(local()).await.unwrap();
        for k in 0u32..400 {
            source.send_to(&k.to_be_bytes(), at).await.unwrap();
            if k % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let got = counting.await.unwrap();
        let s = relay.stats()[0];
        assert_eq!(s.up.lost + s.up.forwarded, 400);
        assert_eq!(s.up.forwarded, got);
        assert!(
            (60..=140).contains(&s.up.lost),
            "lost {} of 400 at 25%",
            s.up.lost
        );
    }

    #[tokio::test]
    async fn queue_is_bounded_in_bytes() {
        let (target, relay, at) = setup(|t| {
            let mut o = RelayOptions::new(
                vec![Link {
                    listen: local(),
                    target: t,
                }],
                imp(200, 0, 0.0),
            );
            o.queue_bytes_max = 3_000;
            o
        })
        .await;
        let source = UdpSocket::bind(local()).await.unwrap();
        for _ in 0..10 {
            source.send_to(&[0u8; 1_000], at).await.unwrap();
        }
        let mut buf = [0u8; 2_000];
        let mut got = 0;
        while tokio::time::timeout(Duration::from_millis(500), target.recv_from(&mut buf))
            .await
            .is_ok()
        {
            got += 1;
        }
        let s = relay.stats()[0];
        assert_eq!((got, s.up.forwarded, s.up.queue_full), (3, 3, 7));
    }

    #[tokio::test]
    async fn flow_table_is_bounded_and_flows_expire() {
        let (target, relay, at) = setup(|t| {
            let mut o = RelayOptions::new(
                vec![Link {
                    listen: local(),
                    target: t,
                }],
                imp(0, 0, 0.0),
            );
            o.flows_max = 1;
            o.flow_idle = Duration::from_millis(200);
            o
        })
        .await;
        let a = UdpSocket::bind(local()).await.unwrap();
        let b = UdpSocket::bind(local()).await.unwrap();
        let mut buf = [0u8; 64];
        a.send_to(b"a", at).await.unwrap();
        let (_, from_a) = target.recv_from(&mut buf).await.unwrap();
        b.send_to(b"b", at).await.unwrap();
        let refused =
            tokio::time::timeout(Duration::from_millis(200), target.recv_from(&mut buf)).await;
        assert!(
            refused.is_err(),
            "a second source got a flow past the bound"
        );
        assert_eq!(relay.stats()[0].flows_refused, 1);
        // Once a's flow is idle past flow_idle, b gets one.
        tokio::time::sleep(Duration::from_millis(600)).await;
        b.send_to(b"b", at).await.unwrap();
        let (n, from_b) = tokio::time::timeout(Duration::from_secs(2), target.recv_from(&mut buf))
            .await
            .expect("b's datagram after a's flow expired")
            .unwrap();
        assert_eq!(&buf[..n], b"b");
        assert_ne!(from_a, from_b, "each flow has its own upstream socket");
        assert_eq!(relay.stats()[0].flows, 2);
    }

    #[test]
    fn parses_links_and_refuses_bad_ones() {
        let l = parse_link("127.0.0.1:29000=127.0.0.1:29005").unwrap();
        assert_eq!(l.listen.port(), 29000);
        assert_eq!(l.target.port(), 29005);
        for bad in [
            "127.0.0.1:29000",
            "127.0.0.1:29000=nowhere",
            "127.0.0.1=127.0.0.1:1",
            "127.0.0.1:1=[::1]:2",
            "127.0.0.1:1=127.0.0.1:0",
            "127.0.0.1:1=0.0.0.0:5",
        ] {
            assert!(parse_link(bad).is_err(), "{bad} accepted");
        }
        let l = parse_link("127.0.0.1:29000=127.0.0.1:29005").unwrap();
        let twice = RelayOptions::new(vec![l, l], imp(0, 0, 0.0));
        assert!(twice.validate().unwrap_err().contains("twice"));
        assert!(RelayOptions::new(vec![], imp(0, 0, 0.0))
            .validate()
            .is_err());
        assert!(RelayOptions::new(vec![l], imp(0, 0, 1.5))
            .validate()
            .is_err());
    }
}
