//! The HTTP routes of the operations endpoint (axum). The probes, the
//! status API and the metrics read the latest [`Published`] status or the
//! metric registry; the JSON API under `/v1/blocks`, `/v1/txs` and
//! `/v1/accounts` asks the node through [`Shared::requests`] (see the
//! module above). Errors are JSON `{"code": ..., "message": ...}` with a 4xx
//! or 5xx status, never a panic. `configs/openapi.json` describes every
//! route ([`routes`] lists them; a test holds the two together).
//!
//! Every answer is one replica's word: a program that acts on one asks
//! f+1 replicas and checks the proofs (a reply's signature and path, a
//! transaction's path to its block's tx_root).

use super::{Published, Shared};
use crate::client::proto::{
    BalanceInfo, BlockInfo, ClientRequest, ClientResponse, SubmitRejected, TxInfo,
};
use crate::codec;
use crate::consensus::messages::{Reply, ReplyProof, ReplyRoot};
use crate::crypto::{Digest, Payload, PublicKey};
use crate::ledger;
use crate::net;
use crate::tx::{Receipt, Transaction};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The largest request body accepted (requests that carry one are small:
/// a signed transfer is a few hundred bytes of JSON).
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// The dashboard: one static page that polls `/v1/status`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The `client_key` of the API's queries. The node answers a query the
/// same whoever asks (`node::service` does not look at the key); the key
/// matters to the QUIC endpoint, which shares its request slots out per
/// client key before a request reaches the node. The API's requests do not
/// pass through those shares: the bounded queue, offered with `try_send`,
/// is their bound. One fixed key for all of them keeps them apart from
/// every real client: 32 zero bytes encode a point of small order, which
/// the transaction rule (`crypto::txsig`) refuses as a signer, so no
/// client's transfers can ever come from it. A submission carries its
/// sender's key instead (`from`), as a QUIC client presents its own.
pub const QUERY_CLIENT_KEY: PublicKey = PublicKey([0; 32]);

/// Seconds a client should wait before retrying after a "busy" answer.
const RETRY_AFTER_SECONDS: &str = "1";

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

/// A 503 "busy" with `Retry-After`.
fn busy(message: impl Into<String>) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

/// Every route: method, path (in axum's and OpenAPI's `{name}` syntax) and
/// handler. [`router`] serves exactly these, and [`routes`] lists them for
/// the test that compares them with `configs/openapi.json`.
fn table() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Shared>>)> {
    vec![
        ("GET", "/", get(dashboard)),
        ("GET", "/metrics", get(metrics)),
        ("GET", "/healthz", get(healthz)),
        ("GET", "/readyz", get(readyz)),
        ("GET", "/v1/status", get(status)),
        ("GET", "/v1/blocks/latest", get(latest_block)),
        ("GET", "/v1/blocks/{height}", get(block)),
        ("GET", "/v1/txs/{hash}", get(tx)),
        ("POST", "/v1/txs", post(submit)),
        ("GET", "/v1/accounts/{id}", get(account)),
    ]
}

/// The (method, path) pairs the server serves.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The routes, on `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(refuse_head))
        .with_state(shared)
}

/// axum answers HEAD on every GET route; the routes (and the OpenAPI
/// description) take only the methods [`table`] lists, so HEAD is a 405
/// like any other method a route does not take.
async fn refuse_head(request: Request, next: axum::middleware::Next) -> Response {
    if request.method() == axum::http::Method::HEAD {
        return method_not_allowed().await;
    }
    next.run(request).await
}

/// The most bytes hyper buffers for one connection's reading (a request
/// head must fit in it) and queued writing. With [`BODY_BYTES_MAX`], this
/// bounds a connection's buffers; `Settings::connections_max` bounds how
/// many there are.
pub const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

/// How long the accept loop pauses after an accept error (e.g. out of file
/// descriptors), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves the routes on `listener` until the task is dropped (which also
/// drops every connection). Hostile clients are bounded by `shared`'s
/// settings:
///
/// - at most `connections_max` connections are served at once. The loop
///   takes a slot before it accepts, so a connection over the cap waits in
///   the kernel's listen backlog (itself bounded; beyond it the kernel
///   refuses) and costs this process nothing until a slot frees; it is
///   then served. Accepting and closing at once would instead spend a
///   task and two syscalls on each attempt of a client that retries in a
///   loop, and refuse honest clients as readily as hostile ones.
/// - a slot frees within `header_wait` of the server waiting for a request
///   head that does not come whole (idle keep-alive connections, a client
///   that sends its head a byte at a time), within `body_wait` of a body
///   that does not come whole (answered 408), within `write_stall` of a
///   client that does not read its answer, and otherwise when the answer
///   is written (the API's waits bound how long that takes).
/// - a connection's buffers are bounded by [`CONNECTION_BUFFER_BYTES`]
///   and [`BODY_BYTES_MAX`].
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let settings = shared.settings;
    let app = router(shared);
    let slots = Arc::new(Semaphore::new(settings.connections_max));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Reaps finished connections (the set would otherwise keep
            // their results); disabled while the set is empty.
            Some(_) = connections.join_next() => {}
            accepted = accept(&listener, &slots) => {
                let (stream, slot) = accepted?;
                connections.spawn(connection(stream, slot, app.clone(), settings));
            }
        }
    }
}

/// A slot, then a connection. Cancel-safe: dropped half way, it gives the
/// slot back and loses no connection (tokio's accept is cancel-safe).
async fn accept(
    listener: &tokio::net::TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::TcpStream, OwnedSemaphorePermit)> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("the connection slots are closed"))?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return Ok((stream, slot)),
            Err(e) => {
                tracing::debug!(error = %e, "operations endpoint: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Serves one connection, holding its slot until it closes.
async fn connection(
    stream: tokio::net::TcpStream,
    _slot: OwnedSemaphorePermit,
    app: Router,
    settings: super::Settings,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(StallGuard::new(stream, settings.write_stall));
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_wait)
        .max_buf_size(CONNECTION_BUFFER_BYTES)
        .serve_connection(io, TowerToHyperService::new(app))
        .await;
    if let Err(e) = result {
        tracing::trace!(error = %e, "operations endpoint: connection ended");
    }
}

/// A stream whose writes fail once they have made no progress for `stall`
/// (a client that does not read its answers): the connection then closes
/// and frees its slot.
struct StallGuard {
    stream: tokio::net::TcpStream,
    stall: Duration,
    /// Armed while writing is blocked.
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn new(stream: tokio::net::TcpStream, stall: Duration) -> StallGuard {
        StallGuard {
            stream,
            stall,
            blocked: None,
        }
    }

    /// Passes a write's outcome on, timing how long it stays pending.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if outcome.is_ready() {
            self.blocked = None;
            return outcome;
        }
        let stall = self.stall;
        let blocked = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match blocked.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client has not read its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let outcome = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let outcome = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch(cx, outcome)
    }
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

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the endpoint does not take this method",
    )
}

// ----- the JSON API: asking the node --------------------------------------

/// Either answer of a handler: the success or the error response.
fn either(result: Result<Response, Response>) -> Response {
    result.unwrap_or_else(|e| e)
}

/// Offers `request` to the node's loop and waits (at most `wait`) for its
/// answer.
async fn ask(
    shared: &Shared,
    request: &ClientRequest,
    client_key: PublicKey,
    wait: Duration,
) -> Result<ClientResponse, Response> {
    let Some(requests) = &shared.requests else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_not_enabled",
            "api not enabled: this replica's operations endpoint does not serve the JSON API",
        ));
    };
    let (respond, answer) = net::Responder::oneshot();
    let request = net::ClientRequest {
        frame: request.to_frame(),
        respond,
        client_key,
    };
    match requests.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(busy("the replica's request queue is full; retry later"))
        }
        Err(TrySendError::Closed(_)) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the replica's loop no longer takes requests (it is stopping)",
            ))
        }
    }
    let frame = match tokio::time::timeout(wait, answer).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) | Ok(Err(_)) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_response",
                "the replica dropped the request without answering (it may be stopping); retry",
            ))
        }
        Err(_) => {
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the replica's loop did not answer within {} ms",
                    wait.as_millis()
                ),
            ))
        }
    };
    ClientResponse::from_frame(&frame).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad_answer",
            format!("the replica's answer does not decode: {e}"),
        )
    })
}

/// The node answered something other than what the request asks for.
fn unexpected(answer: &ClientResponse) -> Response {
    let what = match answer {
        ClientResponse::Malformed => "the replica could not decode the request",
        _ => "the replica answered with the wrong kind of answer",
    };
    error(StatusCode::INTERNAL_SERVER_ERROR, "bad_answer", what)
}

fn bad_path(rejection: PathRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        rejection.body_text(),
    )
}

fn hex_list(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(Digest::to_hex).collect()
}

/// A block header and its commit certificate's signers.
#[derive(Debug, Serialize)]
struct BlockJson {
    height: u64,
    block_hash: String,
    parent_hash: String,
    batch_digest: String,
    tx_root: String,
    state_root: String,
    timestamp_ms: u64,
    tx_count: u32,
    signers: Vec<u32>,
}

impl From<BlockInfo> for BlockJson {
    fn from(b: BlockInfo) -> BlockJson {
        BlockJson {
            height: b.height,
            block_hash: b.block_hash.to_hex(),
            parent_hash: b.parent_hash.to_hex(),
            batch_digest: b.batch_digest.to_hex(),
            tx_root: b.tx_root.to_hex(),
            state_root: b.state_root.to_hex(),
            timestamp_ms: b.timestamp_ms,
            tx_count: b.tx_count,
            signers: b.signers,
        }
    }
}

/// Parses a height: decimal digits, at least 1.
fn parse_height(raw: &str) -> Result<u64, Response> {
    let height = raw
        .parse::<u64>()
        .ok()
        .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()));
    match height {
        Some(0) => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_block",
            "height 0 is the genesis, which has no block; blocks start at 1",
        )),
        Some(h) => Ok(h),
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_height",
            format!("{raw:?} is not a block height (a decimal number from 1)"),
        )),
    }
}

async fn ask_block(shared: &Shared, height: u64) -> Result<Response, Response> {
    let wait = shared.settings.api_query_wait;
    match ask(
        shared,
        &ClientRequest::Block(height),
        QUERY_CLIENT_KEY,
        wait,
    )
    .await?
    {
        ClientResponse::Block(Some(b)) if b.height == height => {
            Ok(Json(BlockJson::from(b)).into_response())
        }
        ClientResponse::Block(None) => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_block",
            format!("this replica has no block at height {height}"),
        )),
        other => Err(unexpected(&other)),
    }
}

async fn block(
    State(shared): State<Arc<Shared>>,
    height: Result<Path<String>, PathRejection>,
) -> Response {
    either(
        async {
            let Path(raw) = height.map_err(bad_path)?;
            let height = parse_height(&raw)?;
            ask_block(&shared, height).await
        }
        .await,
    )
}

/// The block at the replica's executed height, asked for in two steps
/// (the height, then the block): the block at that height exists, as the
/// chain only grows.
async fn latest_block(State(shared): State<Arc<Shared>>) -> Response {
    either(
        async {
            let wait = shared.settings.api_query_wait;
            let height = match ask(&shared, &ClientRequest::Status, QUERY_CLIENT_KEY, wait).await? {
                ClientResponse::Status(s) => s.height,
                other => return Err(unexpected(&other)),
            };
            if height == 0 {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "unknown_block",
                    "this replica has executed no block yet",
                ));
            }
            ask_block(&shared, height).await
        }
        .await,
    )
}

/// A receipt as the API shows it: its name and its number.
fn receipt_fields(receipt: Receipt) -> (&'static str, u8) {
    (receipt.as_str(), receipt.code())
}

/// Where a transaction landed and the proof that its block holds it.
#[derive(Debug, Serialize)]
struct TxJson {
    tx_id: String,
    height: u64,
    index: u32,
    receipt: &'static str,
    receipt_code: u8,
    from: String,
    to: String,
    amount: u64,
    nonce: u64,
    signature: String,
    inclusion: InclusionJson,
}

/// The merkle path from a transaction's leaf to its block's tx_root.
#[derive(Debug, Serialize)]
struct InclusionJson {
    /// The leaf, as the replica computed it (a verifier computes its own).
    leaf: String,
    index: u32,
    leaf_count: u32,
    path: Vec<String>,
    tx_root: String,
    block_hash: String,
}

impl From<TxInfo> for TxJson {
    fn from(t: TxInfo) -> TxJson {
        let (receipt, receipt_code) = receipt_fields(t.receipt);
        TxJson {
            tx_id: t.tx_id.to_hex(),
            height: t.height,
            index: t.index,
            receipt,
            receipt_code,
            from: t.from.to_hex(),
            to: t.to.to_hex(),
            amount: t.amount,
            nonce: t.nonce,
            signature: hex::encode(t.signature),
            inclusion: InclusionJson {
                leaf: ledger::tx_leaf(&t.transaction()).to_hex(),
                index: t.index,
                leaf_count: t.tx_count,
                path: hex_list(&t.path),
                tx_root: t.tx_root.to_hex(),
                block_hash: t.block_hash.to_hex(),
            },
        }
    }
}

async fn tx(
    State(shared): State<Arc<Shared>>,
    hash: Result<Path<String>, PathRejection>,
) -> Response {
    either(
        async {
            let Path(raw) = hash.map_err(bad_path)?;
            let id = Digest::from_hex(&raw).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_hash",
                    "a transaction id is 64 hex digits (32 bytes)",
                )
            })?;
            let wait = shared.settings.api_query_wait;
            match ask(&shared, &ClientRequest::Tx(id), QUERY_CLIENT_KEY, wait).await? {
                ClientResponse::Tx(Some(t)) if t.tx_id == id => {
                    Ok(Json(TxJson::from(t)).into_response())
                }
                ClientResponse::Tx(None) => Err(error(
                    StatusCode::NOT_FOUND,
                    "unknown_tx",
                    format!("this replica has executed no transaction {id}"),
                )),
                other => Err(unexpected(&other)),
            }
        }
        .await,
    )
}

/// An account as one replica sees it.
#[derive(Debug, Serialize)]
struct AccountJson {
    account: String,
    exists: bool,
    balance: u64,
    nonce: u64,
    height: u64,
}

impl From<BalanceInfo> for AccountJson {
    fn from(b: BalanceInfo) -> AccountJson {
        AccountJson {
            account: b.account.to_hex(),
            exists: b.exists,
            balance: b.balance,
            nonce: b.nonce,
            height: b.height,
        }
    }
}

async fn account(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    either(
        async {
            let Path(raw) = id.map_err(bad_path)?;
            let account = parse_key(&raw).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_account",
                    "an account is its ed25519 public key: 64 hex digits (32 bytes)",
                )
            })?;
            let wait = shared.settings.api_query_wait;
            let request = ClientRequest::Balance(account);
            match ask(&shared, &request, QUERY_CLIENT_KEY, wait).await? {
                ClientResponse::Balance(b) if b.account == account => {
                    Ok(Json(AccountJson::from(b)).into_response())
                }
                other => Err(unexpected(&other)),
            }
        }
        .await,
    )
}

/// 64 hex digits, nothing around them.
fn parse_key(raw: &str) -> Option<PublicKey> {
    let bytes = hex::decode(raw).ok()?;
    Some(PublicKey(bytes.try_into().ok()?))
}

/// The body of `POST /v1/txs`: a transfer signed by `from` (see
/// `configs/openapi.json` for the signing bytes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferJson {
    from: String,
    to: String,
    amount: u64,
    nonce: u64,
    signature: String,
}

impl TransferJson {
    fn transaction(&self) -> Result<Transaction, Response> {
        let invalid = |field: &str, what: &str| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                format!("{field}: {what}"),
            )
        };
        let key = "64 hex digits (a 32-byte ed25519 public key)";
        let from = parse_key(&self.from).ok_or_else(|| invalid("from", key))?;
        let to = parse_key(&self.to).ok_or_else(|| invalid("to", key))?;
        let signature: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("signature", "128 hex digits (a 64-byte ed25519 signature)"))?;
        Ok(Transaction {
            from,
            to,
            amount: self.amount,
            nonce: self.nonce,
            signature,
        })
    }
}

/// The replica's reply to an executed transfer, decoded.
#[derive(Debug, Serialize)]
struct ReplyJson {
    view: u64,
    client: String,
    nonce: u64,
    tx_id: String,
    /// The height of the block that holds the transaction.
    seq: u64,
    receipt: &'static str,
    receipt_code: u8,
}

/// The signed root of a block's reply tree, decoded, with its exact bytes.
#[derive(Debug, Serialize)]
struct ReplyRootJson {
    payload: String,
    view: u64,
    seq: u64,
    count: u32,
    root: String,
}

/// The proof that replica `signer` signed the reply.
#[derive(Debug, Serialize)]
struct ReplyProofJson {
    /// The whole proof as this crate's codec frames it
    /// (`codec::decode_frame::<ReplyProof>`).
    encoded: String,
    /// The reply's exact bytes (the leaf is hashed over them).
    reply: String,
    index: u32,
    path: Vec<String>,
    root: ReplyRootJson,
    signature: String,
    signer: u32,
}

#[derive(Debug, Serialize)]
struct SubmittedJson {
    tx_id: String,
    reply: ReplyJson,
    proof: ReplyProofJson,
}

fn submitted(tx_id: Digest, proof: &ReplyProof) -> Result<Response, Response> {
    let garbled = |what: &str| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad_answer",
            format!("the replica's reply proof does not decode: {what}"),
        )
    };
    let reply: Reply = proof.reply_unchecked().map_err(|_| garbled("reply"))?;
    let root = ReplyRoot::decode(&proof.root.payload).map_err(|_| garbled("signed root"))?;
    if reply.tx_id != tx_id {
        return Err(error(
            StatusCode::CONFLICT,
            "nonce_conflict",
            format!(
                "nonce {} of this account executed another transaction, {}",
                reply.nonce, reply.tx_id
            ),
        ));
    }
    let (receipt, receipt_code) = receipt_fields(reply.receipt);
    let body = SubmittedJson {
        tx_id: tx_id.to_hex(),
        reply: ReplyJson {
            view: reply.view.0,
            client: reply.client.to_hex(),
            nonce: reply.nonce,
            tx_id: reply.tx_id.to_hex(),
            seq: reply.seq.0,
            receipt,
            receipt_code,
        },
        proof: ReplyProofJson {
            encoded: hex::encode(codec::encode_frame(proof)),
            reply: hex::encode(&proof.reply),
            index: proof.index,
            path: hex_list(&proof.path),
            root: ReplyRootJson {
                payload: hex::encode(&proof.root.payload),
                view: root.view.0,
                seq: root.seq.0,
                count: root.count,
                root: root.root.to_hex(),
            },
            signature: hex::encode(proof.root.signature),
            signer: proof.root.signer.0,
        },
    };
    Ok(Json(body).into_response())
}

/// The answer to a submission the replica gave up on.
fn rejected(reason: SubmitRejected) -> Response {
    let message = reason.to_string();
    match reason {
        SubmitRejected::Busy => busy(message),
        SubmitRejected::Timeout => error(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
        SubmitRejected::ShuttingDown => {
            error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message)
        }
        SubmitRejected::BadSignature => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "bad_signature", message)
        }
        SubmitRejected::StaleNonce { .. } => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "stale_nonce", message)
        }
        SubmitRejected::UnknownAccount => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_account", message)
        }
        SubmitRejected::WouldFail(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "would_fail", message)
        }
    }
}

/// `POST /v1/txs`: submits a signed transfer and answers once it executed
/// (with this replica's signed reply) or the replica gave up on it.
async fn submit(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    either(
        async {
            let body: Result<Bytes, BytesRejection> =
                tokio::time::timeout(shared.settings.body_wait, Bytes::from_request(request, &()))
                    .await
                    .map_err(|_| {
                        error(
                            StatusCode::REQUEST_TIMEOUT,
                            "body_timeout",
                            format!(
                                "the body did not arrive whole within {} ms",
                                shared.settings.body_wait.as_millis()
                            ),
                        )
                    })?;
            let body = body.map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is over {BODY_BYTES_MAX} bytes"),
                ),
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    rejection.body_text(),
                ),
            })?;
            let transfer: TransferJson = serde_json::from_slice(&body).map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("not a transfer: {e}"),
                )
            })?;
            let tx = transfer.transaction()?;
            let id = tx.id();
            let (from, wait) = (tx.from, shared.settings.api_submit_wait);
            match ask(&shared, &ClientRequest::Submit(tx), from, wait).await? {
                ClientResponse::Reply(proof) => submitted(id, &proof),
                ClientResponse::Rejected(reason) => Err(rejected(reason)),
                other => Err(unexpected(&other)),
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests;
