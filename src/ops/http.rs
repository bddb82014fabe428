//! The HTTP routes of the operations endpoint (axum). Every handler reads
//! the latest [`Published`] status or the metric registry; errors are JSON
//! `{"code": ..., "message": ...}` with a 4xx or 5xx status, never a panic.

use super::{Published, Shared};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

/// The largest request body accepted (requests that carry one are small:
/// a signed transfer is a few hundred bytes of hex).
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// The dashboard: one static page that polls `/v1/status`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// An error answer.
#[derive(Debug, Serialize)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            code,
            message: message.into(),
        }),
    )
        .into_response()
}

/// The routes, on `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(shared)
}

/// Serves the routes on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).await
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding",
            "the metrics could not be encoded",
        ),
    }
}

#[derive(Serialize)]
struct Probe {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn probe(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => (
            StatusCode::OK,
            Json(Probe {
                status: "ok",
                reason: None,
            }),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Probe {
                status: "unavailable",
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// The loop publishes at least every publish interval, even when idle; a
/// publication older than the bound means the loop is stuck (a write that
/// does not return, a busy loop): the process is not healthy.
fn alive(shared: &Shared, published: &Published) -> Result<(), String> {
    let age = published.at.elapsed();
    if age > shared.settings.loop_stall_bound {
        return Err(format!(
            "the replica's loop has not turned for {} ms (a storage write may hang)",
            age.as_millis()
        ));
    }
    Ok(())
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let published = shared.published.borrow().clone();
    probe(alive(&shared, &published))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let published = shared.published.borrow().clone();
    let bound = shared.settings.view_change_bound.as_millis() as u64;
    probe(
        alive(&shared, &published)
            .and_then(|()| published.status.readiness(bound).map_err(|e| e.to_string())),
    )
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let published = shared.published.borrow().clone();
    Json(&published.status).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

#[cfg(test)]
mod tests {
    use super::super::status::{Peer, Status};
    use super::super::{channel, Settings};
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plain HTTP/1.1 GET: (status code, body).
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        let text = String::from_utf8_lossy(&out).to_string();
        let code = text[9..12].parse().expect("status code");
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    fn sample() -> Status {
        let mut s = Status {
            replica: 2,
            replicas: 4,
            network: "ab".repeat(32),
            view: 3,
            primary: 3,
            height: 41,
            last_executed: 42,
            stable_checkpoint: 40,
            low_watermark: 40,
            high_watermark: 72,
            connected_peers: 3,
            ..Status::default()
        };
        s.peers = (0..4)
            .filter(|r| *r != 2)
            .map(|r| Peer {
                replica: r,
                connected: true,
                ..Peer::default()
            })
            .collect();
        s.counters.committed_transactions = 1234;
        s.refused.insert("prepare: duplicate".into(), 7);
        s.received.insert("prepare".into(), 99);
        s
    }

    async fn start(
        status: Status,
        settings: Settings,
    ) -> (std::net::SocketAddr, super::super::Publisher) {
        let (publisher, shared) = channel(status, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, shared));
        (addr, publisher)
    }

    #[tokio::test]
    async fn metrics_status_and_probes_follow_what_the_loop_published() {
        let (addr, mut publisher) = start(sample(), Settings::default()).await;
        publisher.histograms.block_transactions.observe(3.0);

        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        for line in [
            "pbft_height 41",
            "pbft_view 3",
            "pbft_committed_transactions_total 1234",
            "pbft_messages_refused_total{reason=\"prepare: duplicate\"} 7",
            "pbft_messages_received_total{kind=\"prepare\"} 99",
            "pbft_peer_connected{peer=\"3\"} 1",
            "pbft_block_transactions_count 1",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "no line {line:?} in:\n{body}"
            );
        }

        let (code, body) = get(addr, "/v1/status").await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["height"], 41);
        assert_eq!(v["counters"]["committed_transactions"], 1234);

        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 200);

        // One peer left: 2 of the 2f = 2 needed are still there; two left: not ready.
        let mut lonely = sample();
        lonely.connected_peers = 1;
        publisher.publish(lonely);
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(
            body.contains("connected to 1 peers, needs at least 2"),
            "{body}"
        );
        assert_eq!(get(addr, "/healthz").await.0, 200, "healthy but not ready");
        let (code, body) = get(addr, "/v1/status").await;
        assert_eq!(code, 200);
        assert!(body.contains("\"connected_peers\":1"), "{body}");

        let (code, body) = get(addr, "/no/such/thing").await;
        assert_eq!(code, 404);
        assert!(body.contains("\"code\":\"not_found\""), "{body}");

        let (code, body) = get(addr, "/").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("/v1/status"),
            "the dashboard polls the status API"
        );
    }

    #[tokio::test]
    async fn a_loop_that_stops_publishing_is_unhealthy() {
        let settings = Settings {
            loop_stall_bound: Duration::from_millis(50),
            ..Settings::default()
        };
        let (addr, mut publisher) = start(sample(), settings).await;
        assert_eq!(get(addr, "/healthz").await.0, 200);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (code, body) = get(addr, "/healthz").await;
        assert_eq!(code, 503);
        assert!(body.contains("has not turned for"), "{body}");
        assert_eq!(get(addr, "/readyz").await.0, 503, "not ready either");
        publisher.publish(sample());
        assert_eq!(get(addr, "/healthz").await.0, 200, "healthy again");
    }
}
