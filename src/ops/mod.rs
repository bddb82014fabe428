//! The operations endpoint of a replica: Prometheus metrics, health and
//! readiness probes, a JSON status API and a live dashboard, served over
//! HTTP by axum on the replica's own tokio runtime.
//!
//! ```text
//!  select! loop ──Publisher::publish(Status)──▶ watch channel ──▶ HTTP handlers
//!       │                                                          GET /metrics
//!       └──Histograms::observe (atomic buckets)──────────────────▶ GET /healthz, /readyz
//!                                                                  GET /v1/status, GET /
//! ```
//!
//! The consensus loop never waits for this server: it publishes a
//! [`status::Status`] (plain numbers copied out of the node) into a
//! `tokio::sync::watch` channel at most every [`PUBLISH_INTERVAL`] and on
//! an interval tick when idle, and observes a few histograms (atomic
//! buckets). Handlers read the latest publication; none of them touches
//! the core or the store, and none holds a lock across I/O.
//!
//! Every answer is one replica's word. A Byzantine replica can publish
//! anything; a program that acts on what it reads asks f+1 replicas (the
//! README's "Operating a network" shows how).

pub mod http;
pub mod metrics;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

/// Bounds the probes judge by.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// `/healthz` fails when the loop has not published for this long.
    pub loop_stall_bound: Duration,
    /// `/readyz` fails when a view change has lasted this long.
    pub view_change_bound: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            loop_stall_bound: Duration::from_secs(10),
            view_change_bound: Duration::from_secs(30),
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
}

/// A publisher and the state its server reads, connected.
pub fn channel(initial: status::Status, settings: Settings) -> (Publisher, Arc<Shared>) {
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
    });
    (publisher, shared)
}
