//! The operations endpoint of a replica: Prometheus metrics, health and
//! readiness probes, a JSON status API and a live dashboard, served over
//! HTTP by axum on the replica's own tokio runtime.
//!
//! ```text
//!  select! loop ──Publisher::publish(Status)──▶ watch channel ──▶ HTTP handlers
//!       │                                                          GET /metrics
//!       ├──Histograms::observe (atomic buckets)──────────────────▶ GET /healthz, /readyz
//!       │                                                          GET /v1/status, GET /
//!       │
//!       └◀──net::ClientRequest (bounded mpsc, try_send)──────────── GET /v1/blocks/…, /v1/txs/…,
//!            answered through a one-shot Responder                  /v1/accounts/…, POST /v1/txs
//! ```
//!
//! The consensus loop never waits for this server: it publishes a
//! [`status::Status`] (plain numbers copied out of the node) into a
//! `tokio::sync::watch` channel at most every [`PUBLISH_INTERVAL`] and on
//! an interval tick when idle, and observes a few histograms (atomic
//! buckets). Handlers read the latest publication; none of them touches
//! the core or the store, and none holds a lock across I/O.
//!
//! The JSON API (blocks, transactions, accounts, submitting a transfer)
//! asks the node the way a QUIC client does: a handler encodes a
//! `client::proto::ClientRequest` frame and offers it, with a
//! `net::Responder::oneshot`, on [`Shared::requests`], which the loop
//! serves like its client endpoint's requests. The handler never waits
//! for room in that queue (a full one is "busy") and waits for the answer
//! at most [`Settings::api_query_wait`] or [`Settings::api_submit_wait`].
//!
//! Every answer is one replica's word. A Byzantine replica can publish
//! anything; a program that acts on what it reads asks f+1 replicas (the
//! README's "Operating a network" shows how), and checks the proofs the
//! API hands out (a reply's signature and merkle path, a transaction's
//! path to its block's tx_root) as `configs/openapi.json` describes.

pub mod http;
pub mod metrics;
pub mod status;

use crate::net;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often, at most, the loop publishes while busy (and at least, via
/// its idle tick).
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// One publication of the loop.
#[derive(Clone, Debug)]
pub struct Published {
    pub status: status::Status,
    /// When the loop published it: `/healthz` fails once this is older than
    /// [`Settings::loop_stall_bound`] (the loop is stuck, e.g. in a write
    /// that does not return).
    pub at: Instant,
}

/// Bounds the probes judge by, and how long the API waits for the node.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// `/healthz` fails when the loop has not published for this long.
    pub loop_stall_bound: Duration,
    /// `/readyz` fails when a view change has lasted this long.
    pub view_change_bound: Duration,
    /// A query (block, transaction, account) not answered within this is
    /// answered 504. The loop answers queries on sight, so only a stuck
    /// loop gets here.
    pub api_query_wait: Duration,
    /// A submitted transfer not answered within this is answered 504. The
    /// replica answers "timeout" itself after its own submit timeout
    /// (`client.submit_timeout_ms`, 30 s by default); this guard, set
    /// above it, only bounds the wait on a loop that does not answer.
    pub api_submit_wait: Duration,
    /// Connections served at once; a further one waits in the kernel's
    /// listen backlog until one closes (`http::serve`).
    pub connections_max: usize,
    /// A connection that has not sent a whole request head within this of
    /// the server starting to wait for one (on connecting, and after each
    /// answer on a kept-alive connection) is closed: idle connections and
    /// slow-header clients hold a slot at most this long.
    pub header_wait: Duration,
    /// A request body not received whole within this is answered 408.
    pub body_wait: Duration,
    /// A connection whose answer cannot be written for this long (a client
    /// that does not read) is closed.
    pub write_stall: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            loop_stall_bound: Duration::from_secs(10),
            view_change_bound: Duration::from_secs(30),
            api_query_wait: Duration::from_secs(10),
            api_submit_wait: Duration::from_secs(40),
            connections_max: 256,
            header_wait: Duration::from_secs(10),
            body_wait: Duration::from_secs(10),
            write_stall: Duration::from_secs(10),
        }
    }
}

/// The loop's side: publishes statuses, owns the histogram handles.
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Arc<Published>>,
    last: Instant,
    pub histograms: metrics::Histograms,
}

impl Publisher {
    /// Whether a publication is due (one per [`PUBLISH_INTERVAL`]).
    pub fn due(&self) -> bool {
        self.last.elapsed() >= PUBLISH_INTERVAL
    }

    pub fn publish(&mut self, status: status::Status) {
        self.last = Instant::now();
        self.tx.send_replace(Arc::new(Published {
            status,
            at: self.last,
        }));
    }
}

/// The server's side: what every handler reads.
#[derive(Debug)]
pub struct Shared {
    pub published: watch::Receiver<Arc<Published>>,
    pub metrics: metrics::Metrics,
    pub settings: Settings,
    /// Where the API's requests go: a bounded queue the replica's loop
    /// serves as it serves its client endpoint's (`node::service`). `None`:
    /// the API routes answer 503 "api not enabled".
    pub requests: Option<mpsc::Sender<net::ClientRequest>>,
}

/// A publisher and the state its server reads, connected; the API's
/// requests go to `requests` (none: the API is off).
pub fn channel(
    initial: status::Status,
    settings: Settings,
    requests: Option<mpsc::Sender<net::ClientRequest>>,
) -> (Publisher, Arc<Shared>) {
    let now = Instant::now();
    let (tx, rx) = watch::channel(Arc::new(Published {
        status: initial,
        at: now,
    }));
    let metrics = metrics::Metrics::new(rx.clone());
    let publisher = Publisher {
        tx,
        last: now,
        histograms: metrics.histograms(),
    };
    let shared = Arc::new(Shared {
        published: rx,
        metrics,
        settings,
        requests,
    });
    (publisher, shared)
}
