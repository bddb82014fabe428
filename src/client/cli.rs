//! What `pbft-client`'s subcommands do. The binary parses the command line;
//! everything else is here. Each command returns a [`Report`] (its result
//! and, if it failed, why), which [`super::output`] renders as text or JSON;
//! a failure is a message plus an exit code ([`crate::exit`]).

use super::output::{
    bench_text, BalanceOutput, BlockOutput, Document, KeygenOutput, ReplicaStatus, Report,
    StatusOutput, TransferOutput, TxOutput,
};
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

/// `transfer`: the transaction hash, height and receipt. A transfer that
/// executed with a failed receipt is printed, then fails (exit 6).
pub async fn transfer(client: &Client, to: PublicKey, amount: u64) -> Result<Report, CliError> {
    let (tx, c) = client.transfer(to, amount).await?;
    let out = TransferOutput::new(&tx, &c, client.needed());
    let doc = Document::new(&out, out.text())?;
    if c.receipt != Receipt::Ok {
        return Ok(Report::failed(
            doc,
            fail(
                exit::REJECTED,
                format!("transfer executed but failed: {}", c.receipt.as_str()),
            ),
        ));
    }
    Ok(Report::ok(doc))
}

/// `balance`: the balance and nonce 2f+1 replicas agree on (a quorum: at
/// least f+1 correct replicas executed to a state with this value). With
/// f+1 only, one Byzantine and one lagging replica could report a balance
/// from before a completed transfer.
pub async fn balance(client: &Client, account: PublicKey) -> Result<Report, CliError> {
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
    let out = BalanceOutput::new(&a.value, a.replicas, g.answers.len());
    Ok(Report::ok(Document::new(&out, out.text())?))
}

/// `tx`: where a transaction landed.
pub async fn tx(client: &Client, id: Digest) -> Result<Report, CliError> {
    let g = client.tx(id).await?;
    match g.agreed(|t| t.clone().map(|t| (t.height, t.index, t.receipt.code()))) {
        Some(a) => match a.value {
            Some(t) => {
                let out = TxOutput::new(&t, a.replicas, g.answers.len());
                Ok(Report::ok(Document::new(&out, out.text())?))
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
pub async fn block(client: &Client, height: u64) -> Result<Report, CliError> {
    let g = client.block(height).await?;
    match g.agreed(|b| b.as_ref().map(|b| b.block_hash)) {
        Some(a) => match a.value {
            Some(b) => {
                let out = BlockOutput::new(&b, a.replicas, g.answers.len());
                Ok(Report::ok(Document::new(&out, out.text())?))
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

/// `status`: one row per replica; with `stats`, also each reachable
/// replica's view-change counters and the input its core refused, by
/// reason. Fails (after printing the rows) only if no replica is reachable.
pub async fn status(client: &Client, stats: bool) -> Result<Report, CliError> {
    let g = client.status().await;
    let out = StatusOutput::new(
        g.answers
            .iter()
            .map(|(i, a)| ReplicaStatus::new(*i, a, stats))
            .collect(),
    );
    let doc = Document::new(&out, out.text())?;
    if out.reachable == 0 {
        return Ok(Report::failed(
            doc,
            fail(exit::TIMEOUT, "no replica reachable"),
        ));
    }
    Ok(Report::ok(doc))
}

/// `keygen`: writes a new key file and prints its account.
pub fn keygen(out: &Path) -> Result<Report, CliError> {
    let key = keyfile::generate(out).map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    let o = KeygenOutput {
        account: key.public().to_hex(),
        key_file: out.display().to_string(),
    };
    Ok(Report::ok(Document::new(&o, o.text())?))
}

/// `bench`: runs the benchmark (`client::bench`) and reports it (as JSON:
/// [`super::bench::BenchReport`]'s fields). The report is printed even when
/// transfers failed; the exit code then says how (5: a timeout or the
/// deadline, 6: rejected or a failed receipt, 1: other).
pub async fn bench(client: &Client, opts: &super::bench::BenchOptions) -> Result<Report, CliError> {
    let r = super::bench::run(client, opts).await?;
    let doc = Document::new(&r, bench_text(&r))?;
    if r.exit_code != exit::OK {
        let detail = r.first_error.as_deref().unwrap_or("see the report");
        return Ok(Report::failed(
            doc,
            fail(
                r.exit_code,
                format!(
                    "{} of {} transfers did not commit ({detail})",
                    r.failures, r.txs
                ),
            ),
        ));
    }
    Ok(Report::ok(doc))
}

/// `relay`: runs a delaying UDP relay ([`super::relay`]) on its own
/// single-threaded runtime until SIGINT, SIGTERM or `duration`, then prints
/// each link's counts on stderr (and, as JSON, `{"links": [...]}`). A bad
/// option set exits 2, an address that cannot be bound 1.
pub fn relay(
    opts: &super::relay::RelayOptions,
    duration: Option<Duration>,
) -> Result<Report, CliError> {
    opts.validate().map_err(|e| fail(exit::USAGE, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                exit::FAILURE,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    let stats = runtime
        .block_on(super::relay::run(opts, duration))
        .map_err(|e| fail(exit::FAILURE, e))?;
    for s in &stats {
        eprintln!("{}", s.text());
    }
    let json = serde_json::json!({ "links": stats });
    Ok(Report::ok(Document::new(&json, String::new())?))
}
