//! What `pbft-client`'s subcommands do and print. The binary parses the
//! command line; everything else is here. Results go to stdout as aligned
//! `key value` lines; errors are one line for stderr plus an exit code
//! ([`crate::exit`]).

use super::{Client, ClientError};
use crate::crypto::{Digest, KeyPair, PublicKey};
use crate::exit;
use crate::genesis::Genesis;
use crate::keyfile;
use crate::tx::Receipt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A failed command: a one-line message and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

fn fail(code: i32, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

/// Parses an account: 64 hex digits of an ed25519 public key.
pub fn parse_account(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s)
        .filter(|k| k.verifying_key().is_some())
        .ok_or_else(|| format!("'{s}' is not an account (64 hex digits of an ed25519 public key)"))
}

/// Parses a transaction hash: 64 hex digits.
pub fn parse_digest(s: &str) -> Result<Digest, String> {
    Digest::from_hex(s.trim())
        .ok_or_else(|| format!("'{s}' is not a transaction hash (64 hex digits)"))
}

/// Where the network is described: `--network DIR` (DIR/genesis.json) or
/// `--genesis FILE`.
pub fn genesis_path(network: Option<&Path>, genesis: Option<&Path>) -> Result<PathBuf, CliError> {
    match (network, genesis) {
        (_, Some(file)) => Ok(file.to_path_buf()),
        (Some(dir), None) => Ok(dir.join("genesis.json")),
        (None, None) => Err(fail(
            exit::USAGE,
            "say which network: --network DIR (with DIR/genesis.json) or --genesis FILE",
        )),
    }
}

pub fn load_genesis(path: &Path) -> Result<Genesis, CliError> {
    let g = Genesis::load(path).map_err(|e| fail(exit::CONFIG, e.to_string()))?;
    if g.client_addrs.len() != g.replica_keys.len() {
        return Err(fail(
            exit::CONFIG,
            format!("genesis {} has no network addresses", path.display()),
        ));
    }
    Ok(g)
}

pub fn load_key(path: &Path) -> Result<KeyPair, CliError> {
    keyfile::read(path).map_err(|e| fail(exit::CONFIG, e.to_string()))
}

/// Opens a client (inside a tokio runtime). Without a key file the client
/// uses a throwaway key: queries need a TLS identity, not an account.
pub fn connect(
    genesis: Genesis,
    key: Option<KeyPair>,
    timeout: Duration,
) -> Result<Client, CliError> {
    Ok(Client::new(
        genesis,
        key.unwrap_or_else(KeyPair::generate),
        timeout,
    )?)
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// `transfer`: prints the transaction hash, height and receipt.
pub async fn transfer(client: &Client, to: PublicKey, amount: u64) -> Result<(), CliError> {
    let (tx, c) = client.transfer(to, amount).await?;
    println!("tx       {}", c.tx_id);
    println!("from     {}", tx.from);
    println!("to       {}", tx.to);
    println!("amount   {}", tx.amount);
    println!("nonce    {}", c.nonce);
    println!("height   {}", c.height);
    println!("receipt  {}", c.receipt.as_str());
    println!(
        "replies  {} matching from replicas {} (f+1 = {})",
        c.replicas.len(),
        join(&c.replicas),
        client.needed()
    );
    println!("latency  {:.1} ms", c.latency.as_secs_f64() * 1000.0);
    if c.receipt != Receipt::Ok {
        return Err(fail(
            exit::REJECTED,
            format!("transfer executed but failed: {}", c.receipt.as_str()),
        ));
    }
    Ok(())
}

/// `balance`: the balance and nonce 2f+1 replicas agree on (a quorum: at
/// least f+1 correct replicas executed to a state with this value). With
/// f+1 only, one Byzantine and one lagging replica could report a balance
/// from before a completed transfer.
pub async fn balance(client: &Client, account: PublicKey) -> Result<(), CliError> {
    let g = client.balance(account).await?;
    let Some(a) = g.agreed_by_quorum(|b| (b.exists, b.balance, b.nonce)) else {
        for (i, b) in g.ok() {
            eprintln!(
                "replica {i}: balance {} nonce {} at height {}",
                b.balance, b.nonce, b.height
            );
        }
        return Err(fail(
            exit::FAILURE,
            "no 2f+1 replicas agree on this account (a transfer may be committing, or a replica is behind); try again",
        ));
    };
    println!("account  {}", account);
    println!("balance  {}", a.value.balance);
    println!("nonce    {}", a.value.nonce);
    println!("agreed   {} of {} replicas", a.replicas, g.answers.len());
    if !a.value.exists {
        println!("note     the account has never held funds");
    }
    Ok(())
}

/// `tx`: where a transaction landed.
pub async fn tx(client: &Client, id: Digest) -> Result<(), CliError> {
    let g = client.tx(id).await?;
    match g.agreed(|t| t.clone().map(|t| (t.height, t.index, t.receipt.code()))) {
        Some(a) => match a.value {
            Some(t) => {
                println!("tx       {}", t.tx_id);
                println!("height   {}", t.height);
                println!("index    {}", t.index);
                println!("receipt  {}", t.receipt.as_str());
                println!("from     {}", t.from);
                println!("to       {}", t.to);
                println!("amount   {}", t.amount);
                println!("nonce    {}", t.nonce);
                println!("agreed   {} of {} replicas", a.replicas, g.answers.len());
                Ok(())
            }
            None => Err(fail(exit::FAILURE, format!("transaction {id} not found"))),
        },
        None => Err(fail(
            exit::FAILURE,
            format!(
                "fewer than {} replicas agree on transaction {id}; try again",
                g.needed
            ),
        )),
    }
}

/// `block`: a block's header and certificate summary.
pub async fn block(client: &Client, height: u64) -> Result<(), CliError> {
    let g = client.block(height).await?;
    match g.agreed(|b| b.as_ref().map(|b| b.block_hash)) {
        Some(a) => match a.value {
            Some(b) => {
                println!("height          {}", b.height);
                println!("hash            {}", b.block_hash);
                println!("parent          {}", b.parent_hash);
                println!("batch_digest    {}", b.batch_digest);
                println!("tx_root         {}", b.tx_root);
                println!("state_root      {}", b.state_root);
                println!("timestamp_ms    {}", b.timestamp_ms);
                println!("txs             {}", b.tx_count);
                println!("commit_signers  {}", b.commit_signers);
                println!(
                    "agreed          {} of {} replicas",
                    a.replicas,
                    g.answers.len()
                );
                Ok(())
            }
            None => Err(fail(
                exit::FAILURE,
                format!("no block at height {height} yet"),
            )),
        },
        None => Err(fail(
            exit::FAILURE,
            format!(
                "fewer than {} replicas agree on block {height}; try again",
                g.needed
            ),
        )),
    }
}

/// `status`: one line per replica; with `stats`, then each reachable
/// replica's view-change counters and the input its core refused, by
/// reason. Fails only if no replica is reachable.
pub async fn status(client: &Client, stats: bool) -> Result<(), CliError> {
    let g = client.status().await;
    for (i, a) in &g.answers {
        match a {
            Ok(s) => {
                let view = match s.changing_to {
                    Some(to) => format!("{} (changing to {to})", s.view),
                    None => s.view.to_string(),
                };
                println!(
                    "replica {i}  reachable    view {view}  primary {}  height {}  stable {}  pending {}  peers {}  tip {}",
                    s.primary,
                    s.height,
                    s.stable_checkpoint,
                    s.pending_requests,
                    s.connected_peers,
                    &s.block_hash.to_hex()[..16],
                );
            }
            Err(e) => println!("replica {i}  unreachable  ({e})"),
        }
    }
    if stats {
        for (i, s) in g
            .answers
            .iter()
            .filter_map(|(i, a)| Some((i, a.as_ref().ok()?)))
        {
            println!(
                "replica {i}  counters     view_changes {}  new_views {}  undecodable {}  ignored {}",
                s.view_changes_started,
                s.new_views_entered,
                s.undecodable_frames,
                s.ignored.iter().map(|(_, n)| n).sum::<u64>(),
            );
            for (reason, n) in &s.ignored {
                println!("replica {i}  ignored      {n}  {reason}");
            }
        }
    }
    if g.ok_count() == 0 {
        return Err(fail(exit::TIMEOUT, "no replica reachable"));
    }
    Ok(())
}

/// `keygen`: writes a new key file and prints its account.
pub fn keygen(out: &Path) -> Result<(), CliError> {
    let key = keyfile::generate(out).map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    println!("{}", key.public());
    Ok(())
}

/// `bench`: runs the benchmark (`client::bench`) and prints its report, as
/// `key value` lines or, with `json`, one JSON object. The report is printed
/// even when transfers failed; the exit code then says how (5: a timeout or
/// the deadline, 6: rejected or a failed receipt, 1: other).
pub async fn bench(
    client: &Client,
    opts: &super::bench::BenchOptions,
    json: bool,
) -> Result<(), CliError> {
    let r = super::bench::run(client, opts).await?;
    if json {
        let line = serde_json::to_string(&r)
            .map_err(|e| fail(exit::FAILURE, format!("cannot encode the report: {e}")))?;
        println!("{line}");
    } else {
        let rate = match r.rate {
            Some(rate) => format!("{rate} tx/s offered (open loop)"),
            None => format!("closed loop, {} outstanding", r.concurrency),
        };
        let l = &r.latency_ms;
        println!("txs          {}", r.txs);
        println!("senders      {}", r.concurrency);
        println!("load         {rate}");
        println!("committed    {}", r.committed);
        println!("failures     {}", r.failures);
        for (kind, n) in &r.failures_by_kind {
            println!("failed       {n}  {kind}");
        }
        println!("retries      {}", r.retries);
        println!("re-asks      {}", r.replica_retries);
        println!("elapsed      {:.2} s", r.elapsed_s);
        println!("throughput   {:.0} tx/s", r.tx_per_s);
        println!(
            "latency      p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  mean {:.2} ms",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        println!(
            "blocks       {}..={}  ({:.1} committed txs per block)",
            r.first_height, r.last_height, r.txs_per_block
        );
        println!(
            "setup        {:.2} s  ({} senders funded)",
            r.setup_s, r.funded
        );
    }
    if r.exit_code != exit::OK {
        let detail = r.first_error.as_deref().unwrap_or("see the report");
        return Err(fail(
            r.exit_code,
            format!(
                "{} of {} transfers did not commit ({detail})",
                r.failures, r.txs
            ),
        ));
    }
    Ok(())
}
