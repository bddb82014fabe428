//! What `pbft-client` prints: one [`Report`] per command, rendered as text
//! (aligned `key value` lines, the default) or, with `--output json`, as
//! one JSON document on stdout.
//!
//! Every command builds one of the structs below; their serde field names
//! are the JSON interface (snake_case; digests and accounts as 64 lowercase
//! hex digits; heights, nonces, amounts and counts as numbers) and the README
//! documents them. A failed command prints, in JSON mode, an object with an
//! `error` member on stdout — the command's own document with `error` added
//! when the command has a result to show (a transfer that executed with a
//! failed receipt, a benchmark with failures), else `{"error": ...}` alone —
//! and in both modes the message as an `error: ` line on stderr. The exit
//! code is the same in both modes.

use super::bench::BenchReport;
use super::cli::CliError;
use super::proto::{BalanceInfo, BlockInfo, StatusInfo, TxInfo};
use super::Committed;
use crate::exit;
use crate::tx::{Receipt, Transaction};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `--output`: how a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned `key value` lines (a table for `status` and `watch`).
    #[default]
    Text,
    /// One JSON document per command (one line per refresh for `watch`).
    Json,
}

/// A command's result in both renderings.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub text: String,
    pub json: Value,
}

impl Document {
    /// `value` as JSON and `text` as its text rendering.
    pub fn new<T: Serialize>(value: &T, text: String) -> Result<Document, CliError> {
        let json = serde_json::to_value(value).map_err(|e| CliError {
            code: exit::FAILURE,
            message: format!("cannot encode the result as JSON: {e}"),
        })?;
        Ok(Document { text, json })
    }
}

/// What a command ended with: its document (`None` when the command printed
/// as it went, as `watch` does) and, if it failed, why.
#[derive(Debug)]
pub struct Report {
    pub document: Option<Document>,
    pub error: Option<CliError>,
}

impl Report {
    pub fn ok(document: Document) -> Report {
        Report {
            document: Some(document),
            error: None,
        }
    }

    /// A result that is also a failure (printed, then the exit code).
    pub fn failed(document: Document, error: CliError) -> Report {
        Report {
            document: Some(document),
            error: Some(error),
        }
    }

    /// Everything was printed already.
    pub fn streamed() -> Report {
        Report {
            document: None,
            error: None,
        }
    }
}

/// The stable name of an exit code, for JSON errors' `code`.
pub fn code_name(code: i32) -> &'static str {
    match code {
        exit::OK => "ok",
        exit::USAGE => "usage",
        exit::CONFIG => "config",
        exit::STORAGE => "storage",
        exit::TIMEOUT => "timeout",
        exit::REJECTED => "rejected",
        _ => "failure",
    }
}

/// `{"code": ..., "exit_code": ..., "message": ...}`.
pub fn error_json(e: &CliError) -> Value {
    serde_json::json!({
        "code": code_name(e.code),
        "exit_code": e.code,
        "message": e.message,
    })
}

/// What to print where, and the exit code.
#[derive(Debug, PartialEq)]
pub struct Rendered {
    /// For stdout, newline included (empty: nothing).
    pub stdout: String,
    /// For stderr, newline included (empty: nothing).
    pub stderr: String,
    pub code: i32,
}

/// Renders a command's outcome in `format`.
pub fn render(format: Format, outcome: &Result<Report, CliError>) -> Rendered {
    let (document, error) = match outcome {
        Ok(r) => (r.document.as_ref(), r.error.as_ref()),
        Err(e) => (None, Some(e)),
    };
    let stdout = match format {
        Format::Text => document.map(|d| d.text.clone()).unwrap_or_default(),
        Format::Json => {
            let json = match (document, error) {
                (Some(d), Some(e)) => {
                    let mut json = d.json.clone();
                    match &mut json {
                        Value::Object(m) => {
                            m.insert("error".into(), error_json(e));
                            json
                        }
                        other => serde_json::json!({ "result": other, "error": error_json(e) }),
                    }
                }
                (Some(d), None) => d.json.clone(),
                (None, Some(e)) => serde_json::json!({ "error": error_json(e) }),
                (None, None) => Value::Null,
            };
            if json.is_null() {
                String::new()
            } else {
                format!("{json}\n")
            }
        }
    };
    let (stderr, code) = match error {
        Some(e) => (format!("error: {e}\n"), e.code),
        None => (String::new(), exit::OK),
    };
    Rendered {
        stdout,
        stderr,
        code,
    }
}

/// A receipt's stable JSON name.
pub fn receipt_name(r: Receipt) -> &'static str {
    match r {
        Receipt::Ok => "ok",
        Receipt::InsufficientFunds => "insufficient_funds",
        Receipt::StaleNonce => "stale_nonce",
        Receipt::UnknownAccount => "unknown_account",
        Receipt::Invalid => "invalid",
        Receipt::NonceTooFar => "nonce_too_far",
    }
}

/// `transfer`: a committed transfer.
#[derive(Clone, Debug, Serialize)]
pub struct TransferOutput {
    pub tx_id: String,
    pub from: String,
    pub to: String,
    pub amount: u64,
    pub nonce: u64,
    pub height: u64,
    pub receipt: &'static str,
    /// Replicas whose matching signed replies were accepted.
    pub replicas: Vec<u32>,
    /// f+1: how many matching replies were needed.
    pub needed: usize,
    pub latency_ms: f64,
    #[serde(skip)]
    pub receipt_text: &'static str,
}

impl TransferOutput {
    pub fn new(tx: &Transaction, c: &Committed, needed: usize) -> TransferOutput {
        TransferOutput {
            tx_id: c.tx_id.to_hex(),
            from: tx.from.to_hex(),
            to: tx.to.to_hex(),
            amount: tx.amount,
            nonce: c.nonce,
            height: c.height,
            receipt: receipt_name(c.receipt),
            replicas: c.replicas.clone(),
            needed,
            latency_ms: c.latency.as_secs_f64() * 1000.0,
            receipt_text: c.receipt.as_str(),
        }
    }

    pub fn text(&self) -> String {
        let replicas: Vec<String> = self.replicas.iter().map(u32::to_string).collect();
        let mut s = String::new();
        let _ = writeln!(s, "tx       {}", self.tx_id);
        let _ = writeln!(s, "from     {}", self.from);
        let _ = writeln!(s, "to       {}", self.to);
        let _ = writeln!(s, "amount   {}", self.amount);
        let _ = writeln!(s, "nonce    {}", self.nonce);
        let _ = writeln!(s, "height   {}", self.height);
        let _ = writeln!(s, "receipt  {}", self.receipt_text);
        let _ = writeln!(
            s,
            "replies  {} matching from replicas {} (f+1 = {})",
            self.replicas.len(),
            replicas.join(","),
            self.needed
        );
        let _ = writeln!(s, "latency  {:.1} ms", self.latency_ms);
        s
    }
}

/// `balance`: the account as 2f+1 replicas agree on it.
#[derive(Clone, Debug, Serialize)]
pub struct BalanceOutput {
    pub account: String,
    /// False if the account never held funds.
    pub exists: bool,
    pub balance: u64,
    /// The last nonce the account used.
    pub nonce: u64,
    /// Replicas that gave this answer, of `replicas` asked.
    pub agreed: usize,
    pub replicas: usize,
}

impl BalanceOutput {
    pub fn new(b: &BalanceInfo, agreed: usize, replicas: usize) -> BalanceOutput {
        BalanceOutput {
            account: b.account.to_hex(),
            exists: b.exists,
            balance: b.balance,
            nonce: b.nonce,
            agreed,
            replicas,
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "account  {}", self.account);
        let _ = writeln!(s, "balance  {}", self.balance);
        let _ = writeln!(s, "nonce    {}", self.nonce);
        let _ = writeln!(s, "agreed   {} of {} replicas", self.agreed, self.replicas);
        if !self.exists {
            let _ = writeln!(s, "note     the account has never held funds");
        }
        s
    }
}

/// `tx`: where a transaction landed, as f+1 replicas agree.
#[derive(Clone, Debug, Serialize)]
pub struct TxOutput {
    pub tx_id: String,
    pub height: u64,
    /// Position in its block.
    pub index: u32,
    pub receipt: &'static str,
    pub from: String,
    pub to: String,
    pub amount: u64,
    pub nonce: u64,
    pub agreed: usize,
    pub replicas: usize,
    #[serde(skip)]
    pub receipt_text: &'static str,
}

impl TxOutput {
    pub fn new(t: &TxInfo, agreed: usize, replicas: usize) -> TxOutput {
        TxOutput {
            tx_id: t.tx_id.to_hex(),
            height: t.height,
            index: t.index,
            receipt: receipt_name(t.receipt),
            from: t.from.to_hex(),
            to: t.to.to_hex(),
            amount: t.amount,
            nonce: t.nonce,
            agreed,
            replicas,
            receipt_text: t.receipt.as_str(),
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tx       {}", self.tx_id);
        let _ = writeln!(s, "height   {}", self.height);
        let _ = writeln!(s, "index    {}", self.index);
        let _ = writeln!(s, "receipt  {}", self.receipt_text);
        let _ = writeln!(s, "from     {}", self.from);
        let _ = writeln!(s, "to       {}", self.to);
        let _ = writeln!(s, "amount   {}", self.amount);
        let _ = writeln!(s, "nonce    {}", self.nonce);
        let _ = writeln!(s, "agreed   {} of {} replicas", self.agreed, self.replicas);
        s
    }
}

/// `block`: a block header, as f+1 replicas agree.
#[derive(Clone, Debug, Serialize)]
pub struct BlockOutput {
    pub height: u64,
    pub block_hash: String,
    pub parent_hash: String,
    pub batch_digest: String,
    pub tx_root: String,
    /// State root before this block executed.
    pub state_root: String,
    pub timestamp_ms: u64,
    pub tx_count: u32,
    pub commit_signers: u32,
    pub agreed: usize,
    pub replicas: usize,
}

impl BlockOutput {
    pub fn new(b: &BlockInfo, agreed: usize, replicas: usize) -> BlockOutput {
        BlockOutput {
            height: b.height,
            block_hash: b.block_hash.to_hex(),
            parent_hash: b.parent_hash.to_hex(),
            batch_digest: b.batch_digest.to_hex(),
            tx_root: b.tx_root.to_hex(),
            state_root: b.state_root.to_hex(),
            timestamp_ms: b.timestamp_ms,
            tx_count: b.tx_count,
            commit_signers: b.commit_signers,
            agreed,
            replicas,
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "height          {}", self.height);
        let _ = writeln!(s, "hash            {}", self.block_hash);
        let _ = writeln!(s, "parent          {}", self.parent_hash);
        let _ = writeln!(s, "batch_digest    {}", self.batch_digest);
        let _ = writeln!(s, "tx_root         {}", self.tx_root);
        let _ = writeln!(s, "state_root      {}", self.state_root);
        let _ = writeln!(s, "timestamp_ms    {}", self.timestamp_ms);
        let _ = writeln!(s, "txs             {}", self.tx_count);
        let _ = writeln!(s, "commit_signers  {}", self.commit_signers);
        let _ = writeln!(
            s,
            "agreed          {} of {} replicas",
            self.agreed, self.replicas
        );
        s
    }
}

/// What a reachable replica reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaState {
    pub view: u64,
    /// The view a view change in progress goes to, else `null`.
    pub changing_to: Option<u64>,
    pub primary: u32,
    pub height: u64,
    /// The hash of the block at `height`.
    pub block_hash: String,
    pub stable_checkpoint: u64,
    pub pending_requests: u64,
    pub connected_peers: u32,
}

/// `status --stats`: a replica's counters since it started.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaStats {
    pub view_changes_started: u64,
    pub new_views_entered: u64,
    pub undecodable_frames: u64,
    /// Input the core refused, by reason.
    pub ignored: BTreeMap<String, u64>,
}

/// One replica's row of `status` (and of `watch`): `replica`, `reachable`
/// and then either the [`ReplicaState`] fields or `error`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicaStatus {
    pub replica: usize,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub state: Option<ReplicaState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<ReplicaStats>,
}

impl ReplicaStatus {
    /// Replica `replica`'s answer; `stats` adds its counters.
    pub fn new(replica: usize, answer: &Result<StatusInfo, String>, stats: bool) -> ReplicaStatus {
        match answer {
            Ok(s) => ReplicaStatus {
                replica,
                reachable: true,
                error: None,
                state: Some(ReplicaState {
                    view: s.view,
                    changing_to: s.changing_to,
                    primary: s.primary,
                    height: s.height,
                    block_hash: s.block_hash.to_hex(),
                    stable_checkpoint: s.stable_checkpoint,
                    pending_requests: s.pending_requests,
                    connected_peers: s.connected_peers,
                }),
                stats: stats.then(|| {
                    let mut ignored = BTreeMap::new();
                    for (reason, n) in &s.ignored {
                        *ignored.entry(reason.clone()).or_insert(0u64) += n;
                    }
                    ReplicaStats {
                        view_changes_started: s.view_changes_started,
                        new_views_entered: s.new_views_entered,
                        undecodable_frames: s.undecodable_frames,
                        ignored,
                    }
                }),
            },
            Err(e) => ReplicaStatus {
                replica,
                reachable: false,
                error: Some(e.clone()),
                state: None,
                stats: None,
            },
        }
    }
}

/// `status`: every replica's row and how many were reachable.
#[derive(Clone, Debug, Serialize)]
pub struct StatusOutput {
    pub replicas: Vec<ReplicaStatus>,
    pub reachable: usize,
}

impl StatusOutput {
    pub fn new(replicas: Vec<ReplicaStatus>) -> StatusOutput {
        let reachable = replicas.iter().filter(|r| r.reachable).count();
        StatusOutput {
            replicas,
            reachable,
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for r in &self.replicas {
            let i = r.replica;
            match (&r.state, &r.error) {
                (Some(st), _) => {
                    let view = match st.changing_to {
                        Some(to) => format!("{} (changing to {to})", st.view),
                        None => st.view.to_string(),
                    };
                    let _ = writeln!(
                        s,
                        "replica {i}  reachable    view {view}  primary {}  height {}  stable {}  pending {}  peers {}  tip {}",
                        st.primary,
                        st.height,
                        st.stable_checkpoint,
                        st.pending_requests,
                        st.connected_peers,
                        st.block_hash.get(..16).unwrap_or(&st.block_hash),
                    );
                }
                (None, e) => {
                    let _ = writeln!(
                        s,
                        "replica {i}  unreachable  ({})",
                        e.as_deref().unwrap_or("no answer")
                    );
                }
            }
        }
        for r in &self.replicas {
            let Some(st) = &r.stats else { continue };
            let i = r.replica;
            let _ = writeln!(
                s,
                "replica {i}  counters     view_changes {}  new_views {}  undecodable {}  ignored {}",
                st.view_changes_started,
                st.new_views_entered,
                st.undecodable_frames,
                st.ignored.values().sum::<u64>(),
            );
            for (reason, n) in &st.ignored {
                let _ = writeln!(s, "replica {i}  ignored      {n}  {reason}");
            }
        }
        s
    }
}

/// `keygen`: the new key file and its account.
#[derive(Clone, Debug, Serialize)]
pub struct KeygenOutput {
    pub account: String,
    pub key_file: String,
}

impl KeygenOutput {
    pub fn text(&self) -> String {
        format!("{}\n", self.account)
    }
}

/// `bench`'s report as `key value` lines (its JSON is [`BenchReport`]'s
/// fields).
pub fn bench_text(r: &BenchReport) -> String {
    let rate = match r.rate {
        Some(rate) => format!("{rate} tx/s offered (open loop)"),
        None => format!("closed loop, {} outstanding", r.concurrency),
    };
    let l = &r.latency_ms;
    let mut s = String::new();
    let _ = writeln!(s, "txs          {}", r.txs);
    let _ = writeln!(s, "senders      {}", r.concurrency);
    let _ = writeln!(s, "load         {rate}");
    let _ = writeln!(s, "committed    {}", r.committed);
    let _ = writeln!(s, "failures     {}", r.failures);
    for (kind, n) in &r.failures_by_kind {
        let _ = writeln!(s, "failed       {n}  {kind}");
    }
    let _ = writeln!(s, "retries      {}", r.retries);
    let _ = writeln!(s, "re-asks      {}", r.replica_retries);
    let _ = writeln!(s, "elapsed      {:.2} s", r.elapsed_s);
    let _ = writeln!(s, "throughput   {:.0} tx/s", r.tx_per_s);
    let _ = writeln!(
        s,
        "latency      p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  mean {:.2} ms",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    let _ = writeln!(
        s,
        "blocks       {}..={}  ({:.1} committed txs per block)",
        r.first_height, r.last_height, r.txs_per_block
    );
    let _ = writeln!(
        s,
        "setup        {:.2} s  ({} senders funded)",
        r.setup_s, r.funded
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::bench::Latency;
    use crate::crypto::{Digest, KeyPair, NetworkId};
    use std::time::Duration;

    /// The sorted member names of a JSON object.
    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {v}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn json_of(r: Result<Report, CliError>) -> (Value, Rendered) {
        let out = render(Format::Json, &r);
        assert_eq!(out.stdout.matches('\n').count(), 1, "{out:?}");
        (serde_json::from_str(&out.stdout).expect("JSON"), out)
    }

    fn status_info(height: u64) -> StatusInfo {
        StatusInfo {
            replica: 0,
            view: 1,
            changing_to: Some(2),
            primary: 1,
            height,
            block_hash: Digest([0xcd; 32]),
            stable_checkpoint: 8,
            pending_requests: 4,
            connected_peers: 3,
            view_changes_started: 2,
            new_views_entered: 1,
            undecodable_frames: 7,
            ignored: vec![("stale view".into(), 3), ("bad signature".into(), 2)],
        }
    }

    #[test]
    fn transfer_json_names_every_field_and_a_failed_receipt_adds_the_error() {
        let net = NetworkId(Digest([1; 32]));
        let a = KeyPair::from_label("out-a");
        let b = KeyPair::from_label("out-b");
        let tx = Transaction::transfer(net, &a, b.public(), 25, 3);
        let mut c = Committed {
            tx_id: tx.id(),
            nonce: 3,
            height: 17,
            receipt: Receipt::Ok,
            replicas: vec![0, 2],
            latency: Duration::from_micros(5_600),
        };
        let out = TransferOutput::new(&tx, &c, 2);
        let doc = Document::new(&out, out.text()).unwrap();
        let (v, r) = json_of(Ok(Report::ok(doc.clone())));
        assert_eq!(
            keys(&v),
            [
                "amount",
                "from",
                "height",
                "latency_ms",
                "needed",
                "nonce",
                "receipt",
                "replicas",
                "to",
                "tx_id"
            ]
        );
        assert_eq!(v["tx_id"], tx.id().to_hex());
        assert_eq!(v["from"], a.public().to_hex());
        assert_eq!(v["to"], b.public().to_hex());
        assert_eq!(v["tx_id"].as_str().unwrap().len(), 64);
        assert!(v["tx_id"]
            .as_str()
            .unwrap()
            .chars()
            .all(|ch| ch.is_ascii_digit() || ('a'..='f').contains(&ch)));
        assert_eq!(
            (v["amount"].as_u64(), v["nonce"].as_u64()),
            (Some(25), Some(3))
        );
        assert_eq!(
            (v["height"].as_u64(), v["needed"].as_u64()),
            (Some(17), Some(2))
        );
        assert_eq!(v["receipt"], "ok");
        assert_eq!(v["replicas"], serde_json::json!([0, 2]));
        assert!((v["latency_ms"].as_f64().unwrap() - 5.6).abs() < 1e-9);
        assert_eq!((r.stderr.as_str(), r.code), ("", exit::OK));
        // The text rendering is unchanged by the JSON one.
        let text = render(Format::Text, &Ok(Report::ok(doc)));
        assert!(text.stdout.contains("receipt  ok\n"), "{}", text.stdout);
        assert!(text
            .stdout
            .contains("replies  2 matching from replicas 0,2 (f+1 = 2)\n"));

        c.receipt = Receipt::InsufficientFunds;
        let out = TransferOutput::new(&tx, &c, 2);
        let failed = Report::failed(
            Document::new(&out, out.text()).unwrap(),
            CliError {
                code: exit::REJECTED,
                message: "transfer executed but failed: insufficient funds".into(),
            },
        );
        let (v, r) = json_of(Ok(failed));
        assert_eq!(v["receipt"], "insufficient_funds");
        assert_eq!(v["height"], 17);
        assert_eq!(keys(&v["error"]), ["code", "exit_code", "message"]);
        assert_eq!(v["error"]["code"], "rejected");
        assert_eq!(v["error"]["exit_code"], 6);
        assert_eq!(r.code, exit::REJECTED);
        assert_eq!(
            r.stderr,
            "error: transfer executed but failed: insufficient funds\n"
        );
    }

    #[test]
    fn an_error_without_a_result_is_an_error_object_with_the_same_exit_code() {
        for (code, name) in [
            (exit::FAILURE, "failure"),
            (exit::USAGE, "usage"),
            (exit::CONFIG, "config"),
            (exit::TIMEOUT, "timeout"),
            (exit::REJECTED, "rejected"),
        ] {
            let e = || CliError {
                code,
                message: "no replica reachable within 10 ms (timed out)".into(),
            };
            let (v, r) = json_of(Err(e()));
            assert_eq!(keys(&v), ["error"]);
            assert_eq!(v["error"]["code"], name);
            assert_eq!(v["error"]["exit_code"], code);
            assert_eq!(
                v["error"]["message"],
                "no replica reachable within 10 ms (timed out)"
            );
            assert_eq!(r.code, code);
            let t = render(Format::Text, &Err(e()));
            assert_eq!((t.stdout.as_str(), t.code), ("", code));
            assert_eq!(t.stderr, r.stderr);
        }
    }

    #[test]
    fn balance_tx_block_and_keygen_json_field_names() {
        let a = KeyPair::from_label("out-balance").public();
        let b = BalanceInfo {
            account: a,
            exists: true,
            balance: 975,
            nonce: 4,
            height: 9,
        };
        let out = BalanceOutput::new(&b, 3, 4);
        let (v, _) = json_of(Ok(Report::ok(Document::new(&out, out.text()).unwrap())));
        assert_eq!(
            keys(&v),
            ["account", "agreed", "balance", "exists", "nonce", "replicas"]
        );
        assert_eq!(v["account"], a.to_hex());
        assert_eq!(
            (v["balance"].as_u64(), v["nonce"].as_u64()),
            (Some(975), Some(4))
        );
        assert_eq!(
            (v["agreed"].as_u64(), v["replicas"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(v["exists"], true);

        let t = TxInfo {
            tx_id: Digest([0x3f; 32]),
            height: 5,
            index: 2,
            receipt: Receipt::StaleNonce,
            from: a,
            to: a,
            amount: 9,
            nonce: 8,
            signature: [7; 64],
            block_hash: Digest([1; 32]),
            tx_root: Digest([4; 32]),
            tx_count: 3,
            path: vec![Digest([9; 32])],
        };
        let out = TxOutput::new(&t, 2, 4);
        let (v, _) = json_of(Ok(Report::ok(Document::new(&out, out.text()).unwrap())));
        assert_eq!(
            keys(&v),
            [
                "agreed", "amount", "from", "height", "index", "nonce", "receipt", "replicas",
                "to", "tx_id"
            ]
        );
        assert_eq!(v["tx_id"], "3f".repeat(32));
        assert_eq!(v["receipt"], "stale_nonce");
        assert_eq!(
            (v["height"].as_u64(), v["index"].as_u64()),
            (Some(5), Some(2))
        );
        assert!(out.text().contains("receipt  stale nonce\n"));

        let blk = BlockInfo {
            height: 5,
            block_hash: Digest([1; 32]),
            parent_hash: Digest([2; 32]),
            batch_digest: Digest([3; 32]),
            tx_root: Digest([4; 32]),
            state_root: Digest([5; 32]),
            timestamp_ms: 1_700_000_000_123,
            tx_count: 31,
            commit_signers: 3,
            signers: vec![0, 1, 3],
        };
        let out = BlockOutput::new(&blk, 4, 4);
        let (v, _) = json_of(Ok(Report::ok(Document::new(&out, out.text()).unwrap())));
        assert_eq!(
            keys(&v),
            [
                "agreed",
                "batch_digest",
                "block_hash",
                "commit_signers",
                "height",
                "parent_hash",
                "replicas",
                "state_root",
                "timestamp_ms",
                "tx_count",
                "tx_root"
            ]
        );
        assert_eq!(v["parent_hash"], "02".repeat(32));
        assert_eq!(v["state_root"], "05".repeat(32));
        assert_eq!(v["timestamp_ms"], 1_700_000_000_123u64);
        assert_eq!(v["tx_count"], 31);

        let out = KeygenOutput {
            account: a.to_hex(),
            key_file: "carol.key".into(),
        };
        let (v, _) = json_of(Ok(Report::ok(Document::new(&out, out.text()).unwrap())));
        assert_eq!(keys(&v), ["account", "key_file"]);
        assert_eq!(out.text(), format!("{}\n", a.to_hex()));
    }

    #[test]
    fn status_json_has_a_row_per_replica_and_stats_only_when_asked() {
        let answers = [(0, Ok(status_info(12))), (1, Err("timed out".to_string()))];
        let rows = |stats| {
            answers
                .iter()
                .map(|(i, a)| ReplicaStatus::new(*i, a, stats))
                .collect::<Vec<_>>()
        };
        let out = StatusOutput::new(rows(false));
        let (v, _) = json_of(Ok(Report::ok(Document::new(&out, out.text()).unwrap())));
        assert_eq!(keys(&v), ["reachable", "replicas"]);
        assert_eq!(v["reachable"], 1);
        let r = &v["replicas"];
        assert_eq!(
            keys(&r[0]),
            [
                "block_hash",
                "changing_to",
                "connected_peers",
                "height",
                "pending_requests",
                "primary",
                "reachable",
                "replica",
                "stable_checkpoint",
                "view"
            ]
        );
        assert_eq!(
            (r[0]["height"].as_u64(), r[0]["changing_to"].as_u64()),
            (Some(12), Some(2))
        );
        assert_eq!(r[0]["block_hash"], "cd".repeat(32));
        assert_eq!(keys(&r[1]), ["error", "reachable", "replica"]);
        assert_eq!(
            (r[1]["replica"].as_u64(), &r[1]["reachable"]),
            (Some(1), &Value::Bool(false))
        );
        assert!(out.text().contains(
            "replica 0  reachable    view 1 (changing to 2)  primary 1  height 12  stable 8  pending 4  peers 3  tip cdcdcdcdcdcdcdcd\n"
        ));
        assert!(out.text().contains("replica 1  unreachable  (timed out)\n"));

        let out = StatusOutput::new(rows(true));
        let (v, _) = json_of(Ok(Report::ok(Document::new(&out, out.text()).unwrap())));
        let s = &v["replicas"][0]["stats"];
        assert_eq!(
            keys(s),
            [
                "ignored",
                "new_views_entered",
                "undecodable_frames",
                "view_changes_started"
            ]
        );
        assert_eq!(
            s["ignored"],
            serde_json::json!({"bad signature": 2, "stale view": 3})
        );
        assert_eq!(s["undecodable_frames"], 7);
        assert!(out.text().contains(
            "replica 0  counters     view_changes 2  new_views 1  undecodable 7  ignored 5\n"
        ));
    }

    #[test]
    fn bench_json_is_the_report_and_failures_add_the_error() {
        let mut report = BenchReport {
            txs: 100,
            concurrency: 8,
            rate: None,
            committed: 100,
            failures: 0,
            failures_by_kind: BTreeMap::new(),
            unsent: 0,
            retries: 1,
            replica_retries: 2,
            elapsed_s: 0.5,
            tx_per_s: 200.0,
            latency_ms: Latency::default(),
            first_height: 3,
            last_height: 12,
            txs_per_block: 10.0,
            setup_s: 0.1,
            funded: 8,
            first_error: None,
            exit_code: 0,
        };
        let doc = Document::new(&report, bench_text(&report)).unwrap();
        let (v, _) = json_of(Ok(Report::ok(doc)));
        assert_eq!(
            keys(&v),
            [
                "committed",
                "concurrency",
                "elapsed_s",
                "exit_code",
                "failures",
                "failures_by_kind",
                "first_error",
                "first_height",
                "funded",
                "last_height",
                "latency_ms",
                "rate",
                "replica_retries",
                "retries",
                "setup_s",
                "tx_per_s",
                "txs",
                "txs_per_block",
                "unsent"
            ]
        );
        assert_eq!(
            keys(&v["latency_ms"]),
            ["max", "mean", "p50", "p90", "p99", "p999"]
        );
        report.exit_code = exit::TIMEOUT;
        let doc = Document::new(&report, bench_text(&report)).unwrap();
        let e = CliError {
            code: exit::TIMEOUT,
            message: "3 of 100 transfers did not commit".into(),
        };
        let (v, r) = json_of(Ok(Report::failed(doc, e)));
        assert_eq!(v["error"]["code"], "timeout");
        assert_eq!(v["txs"], 100);
        assert_eq!(r.code, exit::TIMEOUT);
    }
}
