//! The routes against a published status and against a fake node: a task
//! that serves the API's requests with real encoded answers (real blocks,
//! transactions and reply proofs). Every answer is also checked against
//! `configs/openapi.json`: its status must be listed for the route and its
//! JSON body must match the schema given there.

use super::super::status::{Peer, Status};
use super::super::{channel, Settings};
use super::*;
use crate::client::proto::StatusInfo;
use crate::consensus::messages::ReplyChecker;
use crate::crypto::{merkle, KeyPair, NetworkId, Verifier};
use crate::ledger::BlockHeader;
use crate::types::{ReplicaId, Seq, View};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// One HTTP answer: status code, head (status line and headers), body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The `code` of a JSON error.
    fn error_code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }
}

/// A plain HTTP/1.1 request; what arrived before the server closed.
async fn call(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n").into_bytes();
    if method == "POST" {
        req.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    // A server that refuses a body may answer before reading all of it.
    let _ = s.write_all(&req).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = s.read(&mut buf).await {
        out.extend_from_slice(&buf[..n]);
    }
    parse_answer(&out)
}

/// The first answer in what a connection received.
fn parse_answer(out: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(out).to_string();
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    Answer { code, head, body }
}

/// A plain HTTP/1.1 GET: (status code, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let a = call(addr, "GET", path, b"").await;
    (a.code, a.body)
}

// ----- the OpenAPI description ------------------------------------------

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/openapi.json");
    let text = std::fs::read_to_string(path).expect("configs/openapi.json is readable");
    serde_json::from_str(&text).expect("configs/openapi.json is JSON")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Whether `value` is what `schema` (the subset of OpenAPI 3.0 schemas
/// the description uses) allows; `Err` says where and why not.
fn check(spec: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or(format!("{at}: unsupported $ref {r}"))?;
        let target = &spec["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: dangling $ref {r}"));
        }
        return check(spec, target, value, at);
    }
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return Ok(());
    }
    let fail = |what: &str| Err(format!("{at}: {what}, got {value}"));
    match schema["type"].as_str() {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                return fail("expected an object");
            };
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !obj.contains_key(name) {
                    return Err(format!("{at}: required {name} missing in {value}"));
                }
            }
            for (k, v) in obj {
                let inner = format!("{at}.{k}");
                match (schema["properties"].get(k), &schema["additionalProperties"]) {
                    (Some(p), _) => check(spec, p, v, &inner)?,
                    (None, Value::Bool(false)) | (None, Value::Null) => {
                        return Err(format!("{inner}: not in the schema"))
                    }
                    (None, extra) => check(spec, extra, v, &inner)?,
                }
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return fail("expected an array");
            };
            for (i, v) in items.iter().enumerate() {
                check(spec, &schema["items"], v, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        // Every number of the API is unsigned, and the schema says so.
        Some("integer") if value.as_u64().is_some() && schema["minimum"] == json!(0) => Ok(()),
        Some("integer") => fail("expected a non-negative integer (a schema with minimum 0)"),
        Some("boolean") if value.is_boolean() => Ok(()),
        Some("string") => {
            let Some(text) = value.as_str() else {
                return fail("expected a string");
            };
            let len = text.len() as u64;
            if schema["minLength"].as_u64().is_some_and(|m| len < m)
                || schema["maxLength"].as_u64().is_some_and(|m| len > m)
            {
                return fail("length out of bounds");
            }
            if let Some(options) = schema["enum"].as_array() {
                if !options.contains(value) {
                    return fail("not one of the enum");
                }
            }
            Ok(())
        }
        other => fail(&format!("unexpected or unsupported type {other:?}")),
    }
}

/// Asserts that the spec lists `answer`'s status for the operation and
/// that a JSON body matches the schema it gives.
fn conforms(method: &str, template: &str, answer: &Answer) {
    let spec = spec();
    let op = &spec["paths"][template][method.to_lowercase()];
    assert!(op.is_object(), "the spec lacks {method} {template}");
    let response = &op["responses"][answer.code.to_string()];
    assert!(
        response.is_object(),
        "the spec lacks status {} of {method} {template} ({})",
        answer.code,
        answer.body
    );
    let schema = &response["content"]["application/json"]["schema"];
    if !schema.is_null() {
        check(&spec, schema, &answer.json(), "body")
            .unwrap_or_else(|e| panic!("{method} {template} {}: {e}", answer.code));
    }
}

#[test]
fn the_openapi_description_lists_exactly_the_served_routes() {
    let spec = spec();
    assert!(spec["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let mut described = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            described.insert((method.to_uppercase(), path.clone()));
            // Every `{name}` of the path is a declared path parameter.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let used: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, used, "{method} {path}");
            assert!(op["responses"].is_object(), "{method} {path}");
        }
    }
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(described, served);
    // Every schema reference resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("a schema ref");
        assert!(spec["components"]["schemas"][name].is_object(), "{r}");
    }
}

#[test]
fn the_schema_check_refuses_what_the_schema_does_not_allow() {
    // The checker the route tests rely on must be able to say no.
    let spec = spec();
    let schema = json!({"$ref": "#/components/schemas/Account"});
    let good =
        json!({"account": "ab".repeat(32), "exists": true, "balance": 5, "nonce": 1, "height": 2});
    assert_eq!(check(&spec, &schema, &good, "a"), Ok(()));
    let mut extra = good.clone();
    extra["surprise"] = json!(1);
    let mut missing = good.clone();
    missing.as_object_mut().expect("object").remove("nonce");
    let mut short = good.clone();
    short["account"] = json!("abcd");
    let mut negative = good.clone();
    negative["balance"] = json!(-1);
    let mut text = good.clone();
    text["exists"] = json!("yes");
    for bad in [extra, missing, short, negative, text] {
        assert!(check(&spec, &schema, &bad, "a").is_err(), "{bad}");
    }
}

#[test]
fn no_client_can_sign_as_the_query_key() {
    // The transaction rule refuses small-order keys: nothing signed by
    // the API's query key can ever execute.
    assert_eq!(QUERY_CLIENT_KEY.point(), None);
}

// ----- the status, metrics and probes ----------------------------------

fn sample() -> Status {
    let mut s = Status {
        replica: 2,
        replicas: 4,
        network: "ab".repeat(32),
        view: 3,
        primary: 3,
        height: 41,
        block_hash: "cd".repeat(32),
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
            rtt_us: Some(250 * u64::from(r + 1)),
            ..Peer::default()
        })
        .collect();
    s.counters.committed_transactions = 1234;
    s.refused.insert("prepare: duplicate".into(), 7);
    s.received.insert("prepare".into(), 99);
    s
}

async fn serve_on_loopback(shared: Arc<Shared>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, shared));
    addr
}

async fn start(
    status: Status,
    settings: Settings,
) -> (std::net::SocketAddr, super::super::Publisher) {
    let (publisher, shared) = channel(status, settings, None);
    (serve_on_loopback(shared).await, publisher)
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
        "pbft_peer_rtt_seconds{peer=\"3\"} 0.001",
        "pbft_block_transactions_count 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "no line {line:?} in:\n{body}"
        );
    }

    let answer = call(addr, "GET", "/v1/status", b"").await;
    assert_eq!(answer.code, 200);
    conforms("GET", "/v1/status", &answer);
    let v = answer.json();
    assert_eq!(v["height"], 41);
    assert_eq!(v["counters"]["committed_transactions"], 1234);

    for probe in ["/healthz", "/readyz"] {
        let answer = call(addr, "GET", probe, b"").await;
        assert_eq!(answer.code, 200);
        conforms("GET", probe, &answer);
    }

    // One peer left: 2 of the 2f = 2 needed are still there; two left: not ready.
    let mut lonely = sample();
    lonely.connected_peers = 1;
    publisher.publish(lonely);
    let answer = call(addr, "GET", "/readyz", b"").await;
    assert_eq!(answer.code, 503);
    conforms("GET", "/readyz", &answer);
    assert!(
        answer
            .body
            .contains("connected to 1 peers, needs at least 2"),
        "{}",
        answer.body
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
    let answer = call(addr, "GET", "/healthz", b"").await;
    assert_eq!(answer.code, 503);
    conforms("GET", "/healthz", &answer);
    assert!(
        answer.body.contains("has not turned for"),
        "{}",
        answer.body
    );
    assert_eq!(get(addr, "/readyz").await.0, 503, "not ready either");
    publisher.publish(sample());
    assert_eq!(get(addr, "/healthz").await.0, 200, "healthy again");
}

// ----- the JSON API, against a fake node --------------------------------

/// What the fake node knows: two real blocks (the second holds `txs`),
/// and the replies replica 1 signed for the second block's transfers.
struct World {
    network: NetworkId,
    replica: KeyPair,
    sender: KeyPair,
    payee: PublicKey,
    txs: Vec<Transaction>,
    headers: [BlockHeader; 2],
    proofs: Vec<ReplyProof>,
}

fn world() -> World {
    let network = NetworkId(Digest([5; 32]));
    let replica = KeyPair::from_label("ops-api-replica-1");
    let sender = KeyPair::from_label("ops-api-sender");
    let payee = KeyPair::from_label("ops-api-payee").public();
    let txs: Vec<Transaction> = (1..=5)
        .map(|n| Transaction::transfer(network, &sender, payee, 10 * n, n))
        .collect();
    let first = BlockHeader {
        height: 1,
        parent_hash: network.0,
        batch_digest: Digest([1; 32]),
        tx_root: ledger::tx_root(&[]),
        state_root: Digest([2; 32]),
        timestamp_ms: 1_000,
    };
    let second = BlockHeader {
        height: 2,
        parent_hash: first.hash(),
        batch_digest: Digest([3; 32]),
        tx_root: ledger::tx_root(&txs),
        state_root: Digest([4; 32]),
        timestamp_ms: 2_000,
    };
    let replies: Vec<Reply> = txs
        .iter()
        .map(|tx| Reply {
            view: View(0),
            client: tx.from,
            nonce: tx.nonce,
            tx_id: tx.id(),
            seq: Seq(2),
            receipt: Receipt::Ok,
        })
        .collect();
    let proofs = ReplyProof::sign_block(&replica, network, ReplicaId(1), View(0), Seq(2), &replies);
    World {
        network,
        replica,
        sender,
        payee,
        txs,
        headers: [first, second],
        proofs,
    }
}

impl World {
    /// A transfer of the sender's that is not in a block; its nonce
    /// picks the fake node's answer (see [`World::act`]).
    fn outsider(&self, nonce: u64) -> Transaction {
        Transaction::transfer(self.network, &self.sender, self.payee, 1, nonce)
    }
}

/// The fake node's way with one request.
enum Act {
    Answer(Box<ClientResponse>),
    /// Drop the responder unanswered.
    Drop,
    /// Keep the responder, never answer.
    Hold,
}

impl World {
    fn act(&self, request: &ClientRequest, client_key: PublicKey) -> Act {
        let key_ok = match request {
            ClientRequest::Submit(tx) => client_key == tx.from,
            _ => client_key == QUERY_CLIENT_KEY,
        };
        if !key_ok {
            return Act::Answer(Box::new(ClientResponse::Malformed));
        }
        let answer = match request {
            ClientRequest::Status => ClientResponse::Status(StatusInfo {
                replica: 1,
                view: 0,
                changing_to: None,
                primary: 0,
                height: 2,
                block_hash: self.headers[1].hash(),
                stable_checkpoint: 0,
                pending_requests: 0,
                connected_peers: 3,
                view_changes_started: 0,
                new_views_entered: 0,
                undecodable_frames: 0,
                ignored: Vec::new(),
            }),
            ClientRequest::Block(height) => {
                ClientResponse::Block(self.headers.iter().find(|h| h.height == *height).map(|h| {
                    BlockInfo {
                        height: h.height,
                        block_hash: h.hash(),
                        parent_hash: h.parent_hash,
                        batch_digest: h.batch_digest,
                        tx_root: h.tx_root,
                        state_root: h.state_root,
                        timestamp_ms: h.timestamp_ms,
                        tx_count: if h.height == 2 {
                            self.txs.len() as u32
                        } else {
                            0
                        },
                        commit_signers: 3,
                        signers: vec![0, 1, 3],
                    }
                }))
            }
            ClientRequest::Tx(id) => {
                let leaves: Vec<Digest> = self.txs.iter().map(ledger::tx_leaf).collect();
                ClientResponse::Tx(self.txs.iter().position(|t| t.id() == *id).map(|i| {
                    let tx = &self.txs[i];
                    TxInfo {
                        tx_id: *id,
                        height: 2,
                        index: i as u32,
                        receipt: Receipt::Ok,
                        from: tx.from,
                        to: tx.to,
                        amount: tx.amount,
                        nonce: tx.nonce,
                        signature: tx.signature,
                        block_hash: self.headers[1].hash(),
                        tx_root: self.headers[1].tx_root,
                        tx_count: leaves.len() as u32,
                        path: merkle::path(&leaves, i).unwrap_or_default(),
                    }
                }))
            }
            ClientRequest::Balance(account) => {
                let known = *account == self.sender.public();
                ClientResponse::Balance(BalanceInfo {
                    account: *account,
                    exists: known,
                    balance: if known { 850 } else { 0 },
                    nonce: if known { 5 } else { 0 },
                    height: 2,
                })
            }
            ClientRequest::Submit(tx) => {
                if let Some(i) = self.txs.iter().position(|t| t == tx) {
                    return Act::Answer(Box::new(ClientResponse::Reply(self.proofs[i].clone())));
                }
                match tx.nonce {
                    20 => ClientResponse::Rejected(SubmitRejected::Busy),
                    21 => ClientResponse::Rejected(SubmitRejected::Timeout),
                    22 => ClientResponse::Rejected(SubmitRejected::StaleNonce { account_nonce: 7 }),
                    23 => ClientResponse::Rejected(SubmitRejected::BadSignature),
                    24 => ClientResponse::Rejected(SubmitRejected::UnknownAccount),
                    25 => ClientResponse::Rejected(SubmitRejected::WouldFail(
                        Receipt::InsufficientFunds,
                    )),
                    26 => ClientResponse::Rejected(SubmitRejected::ShuttingDown),
                    27 => return Act::Drop,
                    28 => return Act::Hold,
                    // Another transaction executed with this nonce.
                    29 => ClientResponse::Reply(self.proofs[0].clone()),
                    _ => ClientResponse::Malformed,
                }
            }
        };
        Act::Answer(Box::new(answer))
    }
}

/// Serves the API's requests as the node's loop would, with real
/// encoded answers.
fn fake_node(world: Arc<World>, mut requests: mpsc::Receiver<net::ClientRequest>) {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(request) = requests.recv().await {
            let act = match ClientRequest::from_frame(&request.frame) {
                Ok(decoded) => world.act(&decoded, request.client_key),
                Err(_) => Act::Answer(Box::new(ClientResponse::Malformed)),
            };
            match act {
                Act::Answer(answer) => {
                    let _ = request.respond.send(answer.to_frame());
                }
                Act::Drop => drop(request.respond),
                Act::Hold => held.push(request.respond),
            }
        }
    });
}

async fn start_api(settings: Settings) -> (std::net::SocketAddr, Arc<World>) {
    let world = Arc::new(world());
    let (requests, received) = mpsc::channel(8);
    fake_node(world.clone(), received);
    let (_publisher, shared) = channel(sample(), settings, Some(requests));
    // The publisher may go: the API does not read the publication.
    (serve_on_loopback(shared).await, world)
}

fn bytes32(v: &Value) -> [u8; 32] {
    let text = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| panic!("not 32 bytes of hex: {text}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_default()).expect("hex")
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// blake3 in derive-key mode over `parts`: the hashing the OpenAPI
/// description documents, written out here apart from `crypto`.
fn derive(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The documented walk from a leaf up a merkle path to the root.
fn walk(leaf: [u8; 32], index: u64, count: u64, path: &[[u8; 32]]) -> Option<[u8; 32]> {
    const NODE: &str = "pbft-ledger v1 merkle node";
    if index >= count {
        return None;
    }
    let (mut at, mut width, mut acc) = (index, count, leaf);
    let mut siblings = path.iter();
    while width > 1 {
        if at ^ 1 < width {
            let s = siblings.next()?;
            acc = if at % 2 == 0 {
                derive(NODE, &[&acc, s])
            } else {
                derive(NODE, &[s, &acc])
            };
        }
        at /= 2;
        width = width.div_ceil(2);
    }
    if siblings.next().is_some() {
        return None;
    }
    Some(derive(NODE, &[&count.to_le_bytes(), &acc]))
}

/// Checks a `GET /v1/txs/{hash}` answer as a client in another language
/// would: the id, the leaf, the path to the tx_root and the header's
/// hash over that tx_root.
fn tx_proof_holds(tx: &Value, block: &Value) -> bool {
    let mut body = Vec::new();
    body.extend_from_slice(&bytes32(&tx["from"]));
    body.extend_from_slice(&bytes32(&tx["to"]));
    body.extend_from_slice(&number(&tx["amount"]).to_le_bytes());
    body.extend_from_slice(&number(&tx["nonce"]).to_le_bytes());
    let signature = bytes(&tx["signature"]);
    let inclusion = &tx["inclusion"];
    let leaf = derive("pbft-ledger v1 merkle leaf", &[&body, &signature]);
    let path: Vec<[u8; 32]> = inclusion["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(bytes32)
        .collect();
    let root = walk(
        leaf,
        number(&inclusion["index"]),
        number(&inclusion["leaf_count"]),
        &path,
    );
    let mut header = Vec::new();
    header.extend_from_slice(&number(&block["height"]).to_le_bytes());
    for field in ["parent_hash", "batch_digest", "tx_root", "state_root"] {
        header.extend_from_slice(&bytes32(&block[field]));
    }
    header.extend_from_slice(&number(&block["timestamp_ms"]).to_le_bytes());
    derive("pbft-ledger v1 transaction id", &[&body]) == bytes32(&tx["tx_id"])
        && leaf == bytes32(&inclusion["leaf"])
        && root == Some(bytes32(&inclusion["tx_root"]))
        && bytes32(&block["tx_root"]) == bytes32(&inclusion["tx_root"])
        && derive("pbft-ledger v1 block header", &[&header]) == bytes32(&block["block_hash"])
        && bytes32(&block["block_hash"]) == bytes32(&inclusion["block_hash"])
        && number(&block["height"]) == number(&tx["height"])
}

/// Checks a `POST /v1/txs` answer as a client in another language
/// would: the reply's bytes against its decoded fields, its path to the
/// signed root, the root's bytes and the replica's signature.
fn reply_proof_holds(answer: &Value, network: NetworkId, replica: PublicKey) -> bool {
    let (reply, proof) = (&answer["reply"], &answer["proof"]);
    let root = &proof["root"];
    let raw = bytes(&proof["reply"]);
    let payload = bytes(&root["payload"]);
    if raw.len() != 96 || payload.len() != 56 {
        return false;
    }
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let fields_match = u64_at(&raw, 0) == number(&reply["view"])
        && raw[8..40] == bytes32(&reply["client"])
        && u64_at(&raw, 40) == number(&reply["nonce"])
        && raw[48..80] == bytes32(&reply["tx_id"])
        && u64_at(&raw, 80) == number(&reply["seq"])
        && u64::from(raw[88]) == number(&reply["receipt_code"])
        && raw[89..].iter().all(|b| *b == 0)
        && u64_at(&payload, 0) == number(&root["view"])
        && u64_at(&payload, 8) == number(&root["seq"])
        && u64::from(u32::from_le_bytes(payload[16..20].try_into().expect("4")))
            == number(&root["count"])
        && payload[20..52] == bytes32(&root["root"])
        && payload[52..].iter().all(|b| *b == 0)
        && number(&reply["view"]) == number(&root["view"])
        && number(&reply["seq"]) == number(&root["seq"])
        && bytes32(&reply["tx_id"]) == bytes32(&answer["tx_id"]);
    let path: Vec<[u8; 32]> = proof["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(bytes32)
        .collect();
    let leaf = derive("pbft-ledger v1 reply leaf", &[&raw]);
    let in_tree = walk(leaf, number(&proof["index"]), number(&root["count"]), &path)
        == Some(bytes32(&root["root"]));
    let message = derive("pbft-ledger v1 reply root", &[&network.0 .0, &payload]);
    let signature: [u8; 64] = bytes(&proof["signature"]).try_into().unwrap_or([0; 64]);
    let signed = ed25519_dalek::VerifyingKey::from_bytes(&replica.0)
        .ok()
        .is_some_and(|key| {
            key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
                .is_ok()
        });
    fields_match && in_tree && signed && number(&proof["signer"]) == 1
}

fn transfer_json(tx: &Transaction) -> Value {
    json!({
        "from": tx.from.to_hex(),
        "to": tx.to.to_hex(),
        "amount": tx.amount,
        "nonce": tx.nonce,
        "signature": hex::encode(tx.signature),
    })
}

#[tokio::test]
async fn blocks_transactions_and_accounts_come_with_proofs_that_check() {
    let (addr, world) = start_api(Settings::default()).await;

    let second = call(addr, "GET", "/v1/blocks/2", b"").await;
    assert_eq!(second.code, 200, "{}", second.body);
    conforms("GET", "/v1/blocks/{height}", &second);
    let block = second.json();
    assert_eq!(block["height"], 2);
    assert_eq!(block["block_hash"], world.headers[1].hash().to_hex());
    assert_eq!(block["parent_hash"], world.headers[0].hash().to_hex());
    assert_eq!(block["tx_count"], 5);
    assert_eq!(block["signers"], json!([0, 1, 3]));

    let latest = call(addr, "GET", "/v1/blocks/latest", b"").await;
    assert_eq!(latest.code, 200, "{}", latest.body);
    conforms("GET", "/v1/blocks/latest", &latest);
    assert_eq!(latest.json(), block, "the latest block is at height 2");

    let first = call(addr, "GET", "/v1/blocks/1", b"").await;
    assert_eq!(first.json()["tx_root"], ledger::tx_root(&[]).to_hex());

    for (path, code, error) in [
        ("/v1/blocks/3", 404, "unknown_block"),
        ("/v1/blocks/0", 404, "unknown_block"),
        ("/v1/blocks/abc", 400, "invalid_height"),
        ("/v1/blocks/-1", 400, "invalid_height"),
        ("/v1/blocks/+2", 400, "invalid_height"),
        ("/v1/blocks/99999999999999999999999", 400, "invalid_height"),
    ] {
        let answer = call(addr, "GET", path, b"").await;
        assert_eq!(
            (answer.code, answer.error_code()),
            (code, error.into()),
            "{path}"
        );
        conforms("GET", "/v1/blocks/{height}", &answer);
    }

    for tx in &world.txs {
        let answer = call(addr, "GET", &format!("/v1/txs/{}", tx.id()), b"").await;
        assert_eq!(answer.code, 200, "{}", answer.body);
        conforms("GET", "/v1/txs/{hash}", &answer);
        let v = answer.json();
        assert_eq!(
            (
                v["amount"].clone(),
                v["nonce"].clone(),
                v["receipt"].clone()
            ),
            (json!(tx.amount), json!(tx.nonce), json!("ok"))
        );
        assert!(tx_proof_holds(&v, &block), "{v}");
        // A proof that does not check is told apart.
        let mut forged = v.clone();
        forged["amount"] = json!(tx.amount + 1);
        assert!(!tx_proof_holds(&forged, &block));
        let mut moved = v.clone();
        moved["inclusion"]["index"] = json!((tx.nonce % 5) as u32);
        assert!(!tx_proof_holds(&moved, &block));
    }
    let unknown = world.outsider(99).id();
    for (path, code, error) in [
        (format!("/v1/txs/{unknown}"), 404, "unknown_tx"),
        ("/v1/txs/zz".to_string(), 400, "invalid_hash"),
        (
            format!("/v1/txs/{}", &unknown.to_hex()[..62]),
            400,
            "invalid_hash",
        ),
        (format!("/v1/txs/{unknown}00"), 400, "invalid_hash"),
    ] {
        let answer = call(addr, "GET", &path, b"").await;
        assert_eq!(
            (answer.code, answer.error_code()),
            (code, error.into()),
            "{path}"
        );
        conforms("GET", "/v1/txs/{hash}", &answer);
    }

    let sender = call(
        addr,
        "GET",
        &format!("/v1/accounts/{}", world.sender.public()),
        b"",
    )
    .await;
    assert_eq!(sender.code, 200, "{}", sender.body);
    conforms("GET", "/v1/accounts/{id}", &sender);
    assert_eq!(
        sender.json(),
        json!({"account": world.sender.public().to_hex(), "exists": true,
               "balance": 850, "nonce": 5, "height": 2})
    );
    let stranger = call(addr, "GET", &format!("/v1/accounts/{}", world.payee), b"").await;
    assert_eq!(stranger.code, 200);
    assert_eq!(stranger.json()["exists"], false);
    for bad in ["xyz", "abcd", &format!("{}ff", world.payee), "%20"] {
        let answer = call(addr, "GET", &format!("/v1/accounts/{bad}"), b"").await;
        assert_eq!(
            (answer.code, answer.error_code()),
            (400, "invalid_account".into()),
            "{bad}"
        );
        conforms("GET", "/v1/accounts/{id}", &answer);
    }
}

#[tokio::test]
async fn a_submitted_transfer_is_answered_with_the_signed_reply_or_why_not() {
    let settings = Settings {
        api_submit_wait: Duration::from_millis(300),
        ..Settings::default()
    };
    let (addr, world) = start_api(settings).await;
    let post = |body: Vec<u8>| async move {
        let answer = call(addr, "POST", "/v1/txs", &body).await;
        conforms("POST", "/v1/txs", &answer);
        answer
    };
    let json_of = |tx: &Transaction| transfer_json(tx).to_string().into_bytes();

    // Executed: the reply, and a proof a client can check without this crate.
    let tx = &world.txs[2];
    let answer = post(json_of(tx)).await;
    assert_eq!(answer.code, 200, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["tx_id"], tx.id().to_hex());
    assert_eq!(v["reply"]["receipt"], "ok");
    assert_eq!(v["reply"]["seq"], 2);
    assert_eq!(v["proof"]["index"], 2);
    assert!(
        reply_proof_holds(&v, world.network, world.replica.public()),
        "{v}"
    );
    for (field, value) in [
        ("/reply/nonce", json!(9)),
        ("/proof/index", json!(1)),
        ("/proof/signer", json!(0)),
    ] {
        let mut forged = v.clone();
        *forged.pointer_mut(field).expect("field") = value;
        assert!(
            !reply_proof_holds(&forged, world.network, world.replica.public()),
            "{field}"
        );
    }
    // The encoded proof is the one the crate's own checker accepts.
    let encoded: ReplyProof =
        codec::decode_frame(&bytes(&v["proof"]["encoded"]), 1 << 16).expect("a ReplyProof frame");
    let verifier = Verifier::new(
        world.network,
        &[
            KeyPair::from_label("ops-api-replica-0").public(),
            world.replica.public(),
        ],
    )
    .expect("keys");
    let (signer, reply) = ReplyChecker::default()
        .check(&verifier, &encoded)
        .expect("a good proof");
    assert_eq!((signer, reply.tx_id), (ReplicaId(1), tx.id()));

    // The replica's reasons, as statuses.
    for (nonce, code, error) in [
        (20, 503, "busy"),
        (21, 504, "timeout"),
        (22, 422, "stale_nonce"),
        (23, 422, "bad_signature"),
        (24, 422, "unknown_account"),
        (25, 422, "would_fail"),
        (26, 503, "shutting_down"),
        (27, 503, "no_response"),
        (28, 504, "timeout"),
        (29, 409, "nonce_conflict"),
        (30, 500, "bad_answer"),
    ] {
        let answer = post(json_of(&world.outsider(nonce))).await;
        assert_eq!(
            (answer.code, answer.error_code()),
            (code, error.into()),
            "nonce {nonce}: {}",
            answer.body
        );
        if error == "busy" {
            assert!(answer.head.to_ascii_lowercase().contains("retry-after: 1"));
        }
    }
    let stale = post(json_of(&world.outsider(22))).await;
    assert!(stale.body.contains("last nonce is 7"), "{}", stale.body);

    // Malformed bodies never reach the node.
    let good = transfer_json(&world.txs[0]);
    let mut unknown_field = good.clone();
    unknown_field["fee"] = json!(1);
    let mut short_signature = good.clone();
    short_signature["signature"] = json!("abcd");
    let mut bad_key = good.clone();
    bad_key["to"] = json!("not hex");
    let mut negative = good.clone();
    negative["amount"] = json!(-5);
    let mut missing = good.clone();
    missing.as_object_mut().expect("object").remove("nonce");
    for (body, error) in [
        (b"{not json".to_vec(), "invalid_json"),
        (b"".to_vec(), "invalid_json"),
        (unknown_field.to_string().into_bytes(), "invalid_json"),
        (negative.to_string().into_bytes(), "invalid_json"),
        (missing.to_string().into_bytes(), "invalid_json"),
        (short_signature.to_string().into_bytes(), "invalid_field"),
        (bad_key.to_string().into_bytes(), "invalid_field"),
    ] {
        let answer = post(body).await;
        assert_eq!(
            (answer.code, answer.error_code()),
            (400, error.into()),
            "{}",
            answer.body
        );
    }
    let oversize = post(vec![b' '; BODY_BYTES_MAX + 1]).await;
    assert_eq!(
        (oversize.code, oversize.error_code()),
        (413, "too_large".into())
    );

    // The wrong method on a path that exists: a JSON 405.
    let answer = call(addr, "GET", "/v1/txs", b"").await;
    assert_eq!(
        (answer.code, answer.error_code()),
        (405, "method_not_allowed".into())
    );
}

#[tokio::test]
async fn the_api_says_why_when_the_node_cannot_be_asked() {
    let path = "/v1/blocks/1";
    // Off.
    let (addr, _publisher) = start(sample(), Settings::default()).await;
    let answer = call(addr, "GET", path, b"").await;
    assert_eq!(
        (answer.code, answer.error_code()),
        (503, "api_not_enabled".into())
    );
    conforms("GET", "/v1/blocks/{height}", &answer);

    // The queue is full: busy at once, with Retry-After.
    let (requests, mut received) = mpsc::channel(1);
    let (filler, _answer) = net::Responder::oneshot();
    requests
        .try_send(net::ClientRequest {
            frame: ClientRequest::Status.to_frame(),
            respond: filler,
            client_key: QUERY_CLIENT_KEY,
        })
        .expect("room for one");
    let (_publisher, shared) = channel(sample(), Settings::default(), Some(requests));
    let addr = serve_on_loopback(shared).await;
    let answer = call(addr, "GET", path, b"").await;
    assert_eq!((answer.code, answer.error_code()), (503, "busy".into()));
    assert!(answer.head.to_ascii_lowercase().contains("retry-after: 1"));
    conforms("GET", "/v1/blocks/{height}", &answer);

    // The loop took the request and never answers: 504 after the wait.
    let settings = Settings {
        api_query_wait: Duration::from_millis(100),
        ..Settings::default()
    };
    let (requests, mut stuck) = mpsc::channel(4);
    let (_publisher, shared) = channel(sample(), settings, Some(requests));
    let addr_stuck = serve_on_loopback(shared).await;
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(r) = stuck.recv().await {
            held.push(r);
        }
    });
    let answer = call(addr_stuck, "GET", path, b"").await;
    assert_eq!((answer.code, answer.error_code()), (504, "timeout".into()));
    conforms("GET", "/v1/blocks/{height}", &answer);
    held.abort();

    // The loop is gone: its queue is closed.
    received.close();
    while received.try_recv().is_ok() {}
    drop(received);
    let answer = call(addr, "GET", path, b"").await;
    assert_eq!(
        (answer.code, answer.error_code()),
        (503, "unavailable".into())
    );
    conforms("GET", "/v1/blocks/{height}", &answer);

    // A dropped responder is a 5xx at once, not a hang.
    let (requests, mut dropping) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(r) = dropping.recv().await {
            drop(r);
        }
    });
    let (_publisher, shared) = channel(sample(), Settings::default(), Some(requests));
    let addr = serve_on_loopback(shared).await;
    for path in [
        "/v1/blocks/1",
        "/v1/blocks/latest",
        &format!("/v1/accounts/{}", "00".repeat(32)),
    ] {
        let answer = tokio::time::timeout(Duration::from_secs(5), call(addr, "GET", path, b""))
            .await
            .expect("answered at once");
        assert_eq!(
            (answer.code, answer.error_code()),
            (503, "no_response".into()),
            "{path}"
        );
    }
}

// ----- hostile clients ----------------------------------------------------

/// What arrives on `s` until the server closes it (or resets it), and when
/// it closed; `None` if it is still open after `limit`.
async fn until_closed(
    s: &mut tokio::net::TcpStream,
    limit: Duration,
) -> Option<(Vec<u8>, std::time::Instant)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return std::time::Instant::now(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let at = tokio::time::timeout(limit, read_all).await.ok()?;
    Some((out, at))
}

#[tokio::test]
async fn connections_over_the_cap_wait_and_idle_ones_are_closed() {
    let wait = Duration::from_millis(400);
    let settings = Settings {
        connections_max: 4,
        header_wait: wait,
        ..Settings::default()
    };
    let (addr, _publisher) = start(sample(), settings).await;

    // A kept-alive connection that asked once, then idles: answered, then
    // closed once the server has waited `wait` for its next request.
    let mut kept = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let asked = std::time::Instant::now();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: ops\r\n\r\n")
        .await
        .expect("write");
    let (out, closed) = until_closed(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection is closed");
    assert_eq!(parse_answer(&out).code, 200);
    assert!(closed - asked >= wait - Duration::from_millis(50));

    // The cap's worth of idle connections (nothing sent).
    let opened = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // One more, with a whole request: it waits for a slot...
    let mut late = tokio::net::TcpStream::connect(addr).await.expect("connect");
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), late.read(&mut first))
            .await
            .is_err(),
        "a connection over the cap is not served while the cap's worth are open"
    );
    // ... which frees when the idle ones are closed, after `wait`.
    for s in &mut idle {
        let (out, closed) = until_closed(s, Duration::from_secs(5))
            .await
            .expect("an idle connection is closed");
        assert!(out.is_empty() || parse_answer(&out).code == 408, "{out:?}");
        assert!(closed - opened >= wait - Duration::from_millis(50));
    }
    let (out, served) = until_closed(&mut late, Duration::from_secs(5))
        .await
        .expect("the waiting connection is served once a slot frees");
    assert_eq!(parse_answer(&out).code, 200);
    assert!(served - opened >= wait - Duration::from_millis(50));
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off() {
    let wait = Duration::from_millis(500);
    let settings = Settings {
        header_wait: wait,
        ..Settings::default()
    };
    let (addr, _publisher) = start(sample(), settings).await;
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = s.into_split();
    let started = std::time::Instant::now();
    // A byte of its head every 100 ms: 6 s for the whole head, if the
    // server let it.
    let head = b"GET /healthz HTTP/1.1\r\nHost: ops\r\nX-Slow: aaaaaaaaaaaaaaaaaa\r\n\r\n";
    let dribble = tokio::spawn(async move {
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the slow client is still connected after 3 s"
    );
    let took = started.elapsed();
    assert!(took >= wait - Duration::from_millis(50), "{took:?}");
    assert!(
        out.is_empty() || parse_answer(&out).code == 408,
        "the slow client got no answer to its request: {out:?}"
    );
    dribble.abort();
}

#[tokio::test]
async fn a_body_that_does_not_arrive_is_answered_408() {
    let settings = Settings {
        body_wait: Duration::from_millis(300),
        ..Settings::default()
    };
    let (addr, _publisher) = start(sample(), settings).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"POST /v1/txs HTTP/1.1\r\nHost: ops\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"from\"",
    )
    .await
    .expect("write");
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // Reads until the answer's head and its JSON body are in.
    let answered = tokio::time::timeout(Duration::from_secs(3), async {
        while !out.ends_with(b"}") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer within 3 s: {out:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let answer = parse_answer(&out);
    assert_eq!(answer.code, 408, "{}", answer.body);
    assert_eq!(answer.error_code(), "body_timeout");
    conforms("POST", "/v1/txs", &answer);
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answers_is_cut_off() {
    let settings = Settings {
        write_stall: Duration::from_millis(300),
        ..Settings::default()
    };
    let (addr, _publisher) = start(sample(), settings).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer");
    let s = socket.connect(addr).await.expect("connect");
    let (mut reader, mut writer) = s.into_split();
    // Many pipelined requests for the dashboard (several KiB each): far
    // more answer than the socket buffers hold.
    let asks = 2000;
    let one = b"GET / HTTP/1.1\r\nHost: ops\r\n\r\n";
    let pipelined = tokio::spawn(async move {
        for _ in 0..asks {
            if writer.write_all(one).await.is_err() {
                break;
            }
        }
        writer
    });
    // The client reads nothing for a while: the server's writes stall.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut received = 0usize;
    let mut buf = [0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open");
    assert!(
        received < asks * DASHBOARD.len(),
        "all {asks} answers were written ({received} bytes): the stall was not cut"
    );
    pipelined.abort();
}

#[tokio::test]
async fn head_is_refused_as_the_description_does_not_list_it() {
    let (addr, _publisher) = start(sample(), Settings::default()).await;
    for (_, path) in routes() {
        let path = path
            .replace("{height}", "1")
            .replace("{hash}", &"00".repeat(32))
            .replace("{id}", &"00".repeat(32));
        let answer = call(addr, "HEAD", &path, b"").await;
        assert_eq!(answer.code, 405, "HEAD {path}");
    }
    assert_eq!(call(addr, "GET", "/healthz", b"").await.code, 200);
}
