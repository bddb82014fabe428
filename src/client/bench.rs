//! `pbft-client bench`: load a running network with pre-signed transfers and
//! measure committed throughput and commit latency as a client sees it.
//!
//! A client's nonce must strictly increase per account, and the primary
//! orders requests by arrival, so two transfers of one account in flight at
//! once may be ordered the wrong way round (the later nonce first: the
//! earlier then executes as "stale nonce"). The benchmark therefore sends
//! from `C` = `--concurrency` **sender accounts**, each with at most one
//! transfer in flight:
//!
//! 1. *Setup (not timed).* The senders' keys are derived deterministically
//!    from the `--key` account's seed (so a re-run on the same network reuses
//!    them); their balances and nonces are queried; each sender that holds
//!    less than it will send is funded from the `--key` account in two
//!    levels (that account pays about the square root of their number, one
//!    at a time as they share its nonce, enough to pass on; each of those
//!    pays its group, all groups at once), so funding C senders takes about
//!    2*sqrt(C) commits in sequence, not C; the client
//!    connections are opened; all `N` transfers are signed. Sender `s` sends
//!    1 unit per transfer to sender `s+1` (to the `--key` account if there
//!    is a single sender), so funds circulate and re-runs rarely need funding.
//! 2. *Timed window.* Transfer `j` belongs to sender `j mod C`. Closed loop
//!    (default): each sender submits its next transfer as soon as the
//!    previous one committed, so `C` are outstanding. Open loop (`--rate R`):
//!    transfer `j` is due at `t0 + j/R`; a sender submits it then, or as soon
//!    as its previous transfer committed if that is later. Latency is
//!    measured from when the transfer was due (open loop) or submitted
//!    (closed loop) to f+1 matching signed replies, so queueing behind the
//!    `C` cap counts (no coordinated omission).
//!
//! A submission that times out is resubmitted (safe: replicas deduplicate by
//! nonce) until the global deadline; such resubmissions are `retries`, and
//! the client's own re-asks of single replicas (busy, unreachable) are
//! `replica_retries`. Everything is bounded by the global `--deadline-s`.

use super::cli::CliError;
use super::{Client, ClientError};
use crate::crypto::{KeyPair, PublicKey};
use crate::exit;
use crate::tx::{Receipt, Transaction};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Senders sharing one client connection per replica (a replica allows 64
/// concurrent requests per connection; a submission holds one per replica).
const SENDERS_PER_CONNECTION: usize = 32;
/// Concurrent account queries during setup.
const SETUP_QUERIES: usize = 32;
/// Largest `--concurrency`.
pub const CONCURRENCY_MAX: usize = 4096;
/// Each transfer moves this much.
const AMOUNT: u64 = 1;
/// Context of the sender-key derivation (blake3 `derive_key`).
const SENDER_KEY_CONTEXT: &str = "pbft-ledger 2025 bench sender key v1";

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Transfers to commit.
    pub txs: u64,
    /// Sender accounts, each with at most one transfer in flight.
    pub concurrency: usize,
    /// Open-loop offered rate in tx/s; `None` = closed loop.
    pub rate: Option<f64>,
    /// Bound on the whole run, setup included.
    pub deadline: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// The outcome of a benchmark run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub txs: u64,
    /// Sender accounts actually used (at most `txs`).
    pub concurrency: usize,
    /// Offered rate (tx/s), `null` for closed loop.
    pub rate: Option<f64>,
    pub committed: u64,
    /// Transfers that did not commit with an `ok` receipt (`unsent` included).
    pub failures: u64,
    /// Failures by kind.
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Transfers never submitted because the global deadline passed.
    pub unsent: u64,
    /// Resubmissions of a transfer after its submission timed out.
    pub retries: u64,
    /// Re-asks of a single replica (transport failure, busy, timeout).
    pub replica_retries: u64,
    /// Length of the timed window, seconds.
    pub elapsed_s: f64,
    /// Committed transfers per second of the timed window.
    pub tx_per_s: f64,
    /// Commit latency of the committed transfers.
    pub latency_ms: Latency,
    /// Lowest and highest block height a committed transfer landed in.
    pub first_height: u64,
    pub last_height: u64,
    /// Committed transfers per block over that range.
    pub txs_per_block: f64,
    /// Setup time (queries, funding, connecting, signing), seconds.
    pub setup_s: f64,
    /// Senders funded by the `--key` account in setup.
    pub funded: usize,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// The exit code this run ends with (0: every transfer committed ok).
    pub exit_code: i32,
}

fn fail(code: i32, message: impl Into<String>) -> CliError {
    CliError {
        code,
        message: message.into(),
    }
}

/// The `s`-th sender key of the `funder` account (deterministic).
pub fn sender_key(funder: &KeyPair, s: usize) -> KeyPair {
    let mut material = funder.seed().to_vec();
    material.extend_from_slice(&(s as u64).to_le_bytes());
    KeyPair::from_seed(blake3::derive_key(SENDER_KEY_CONTEXT, &material))
}

/// How many of `txs` transfers sender `s` of `senders` sends (`j mod senders == s`).
fn share(txs: u64, senders: usize, s: usize) -> u64 {
    let c = senders as u64;
    txs / c + u64::from((s as u64) < txs % c)
}

/// An account's balance and last nonce as the replicas report it: the value
/// f+1 agree on, else the lowest balance and the last nonce f+1 vouch for.
async fn account(
    client: &Client,
    account: PublicKey,
    deadline: Instant,
) -> Result<(u64, u64), ClientError> {
    let limit = deadline.saturating_duration_since(Instant::now());
    let g = match tokio::time::timeout(limit, client.balance(account)).await {
        Ok(g) => g?,
        Err(_) => {
            return Err(ClientError::Unreachable {
                timeout_ms: limit.as_millis() as u64,
                detail: "benchmark deadline passed during setup".into(),
            })
        }
    };
    if let Some(a) = g.agreed(|b| (b.balance, b.nonce)) {
        return Ok((a.value.balance, a.value.nonce));
    }
    let balance = g.ok().map(|(_, b)| b.balance).min().unwrap_or(0);
    // The last nonce f+1 replicas vouch for: one lying replica cannot pick it.
    let nonce = g.vouched_max(|b| b.nonce).unwrap_or(0);
    Ok((balance, nonce))
}

/// Which exit code a failure maps to, and its kind for the report.
fn classify(e: &ClientError) -> (i32, String) {
    let kind = match e {
        ClientError::Setup(_) => "setup",
        ClientError::Unreachable { .. } => "unreachable",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Rejected { .. } => "rejected",
        ClientError::NonceConflict { .. } => "nonce conflict",
        ClientError::Disagree(_) => "replicas disagree",
    };
    (e.exit_code(), kind.to_string())
}

/// What one sender measured.
struct SenderResult {
    hist: Histogram<u64>,
    committed: u64,
    failures: BTreeMap<String, u64>,
    codes: Vec<i32>,
    first_error: Option<(Instant, String)>,
    unsent: u64,
    retries: u64,
    heights: Option<(u64, u64)>,
    finished: Instant,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Submits one sender's transfers in order, each after the previous one
/// is decided.
async fn sender(
    client: Arc<Client>,
    txs: Vec<(u64, Transaction)>,
    schedule: Option<(Instant, f64)>,
    deadline: Instant,
    progress: ProgressBar,
) -> SenderResult {
    let mut r = SenderResult {
        hist: histogram(),
        committed: 0,
        failures: BTreeMap::new(),
        codes: Vec::new(),
        first_error: None,
        unsent: 0,
        retries: 0,
        heights: None,
        finished: Instant::now(),
    };
    let total = txs.len() as u64;
    for (done, (j, tx)) in txs.into_iter().enumerate() {
        let due = match schedule {
            Some((t0, rate)) => t0 + Duration::from_secs_f64(j as f64 / rate),
            None => Instant::now(),
        };
        if due >= deadline || Instant::now() >= deadline {
            r.unsent = total - done as u64;
            *r.failures.entry("deadline (not sent)".into()).or_default() += r.unsent;
            r.codes.push(exit::TIMEOUT);
            if r.first_error.is_none() {
                r.first_error = Some((
                    Instant::now(),
                    "the benchmark deadline passed before every transfer was sent".into(),
                ));
            }
            progress.inc(r.unsent);
            break;
        }
        // Open loop: wait until due; a late sender's latency still counts
        // from when the transfer was due.
        tokio::time::sleep_until(due).await;
        let start = due;
        loop {
            let by = (Instant::now() + client.timeout()).min(deadline);
            match client.submit_by(&tx, by).await {
                Ok(c) if c.receipt == Receipt::Ok => {
                    let us = Instant::now().saturating_duration_since(start).as_micros() as u64;
                    r.hist.saturating_record(us.max(1));
                    r.committed += 1;
                    r.heights = Some(match r.heights {
                        None => (c.height, c.height),
                        Some((lo, hi)) => (lo.min(c.height), hi.max(c.height)),
                    });
                }
                Ok(c) => {
                    let kind = format!("receipt: {}", c.receipt.as_str());
                    *r.failures.entry(kind).or_default() += 1;
                    r.codes.push(exit::REJECTED);
                    if r.first_error.is_none() {
                        r.first_error = Some((
                            Instant::now(),
                            format!(
                                "transfer {} executed but failed: {}",
                                c.tx_id,
                                c.receipt.as_str()
                            ),
                        ));
                    }
                }
                Err(e) => {
                    let retryable = matches!(
                        e,
                        ClientError::Timeout { .. } | ClientError::Unreachable { .. }
                    );
                    if retryable && Instant::now() < deadline {
                        r.retries += 1;
                        continue;
                    }
                    let (code, kind, message) = if retryable {
                        (
                            exit::TIMEOUT,
                            "deadline (in flight)".to_string(),
                            "the benchmark deadline passed with transfers in flight".to_string(),
                        )
                    } else {
                        let (code, kind) = classify(&e);
                        (code, kind, e.to_string())
                    };
                    *r.failures.entry(kind).or_default() += 1;
                    r.codes.push(code);
                    if r.first_error.is_none() {
                        r.first_error = Some((Instant::now(), message));
                    }
                }
            }
            break;
        }
        progress.inc(1);
    }
    r.finished = Instant::now();
    r
}

fn progress_bar(len: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} committed-or-failed  {per_sec}  eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Submits one funding transfer (to sender `s`) and waits for it to execute.
async fn fund(
    client: &Client,
    tx: &Transaction,
    s: usize,
    deadline: Instant,
) -> Result<(), CliError> {
    let by = (Instant::now() + client.timeout()).min(deadline);
    let c = client.submit_by(tx, by).await.map_err(|e| CliError {
        code: e.exit_code(),
        message: format!("funding sender {s}: {e}"),
    })?;
    if c.receipt != Receipt::Ok {
        return Err(fail(
            exit::REJECTED,
            format!(
                "funding sender {s} executed but failed: {}",
                c.receipt.as_str()
            ),
        ));
    }
    Ok(())
}

/// Runs the benchmark with `funder` (the `--key` client) paying for setup.
pub async fn run(funder: &Client, opts: &BenchOptions) -> Result<BenchReport, CliError> {
    if opts.txs == 0 {
        return Err(fail(exit::USAGE, "--txs must be positive"));
    }
    if opts.concurrency == 0 || opts.concurrency > CONCURRENCY_MAX {
        return Err(fail(
            exit::USAGE,
            format!("--concurrency must be 1..={CONCURRENCY_MAX}"),
        ));
    }
    if let Some(r) = opts.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(fail(
                exit::USAGE,
                "--rate must be a positive number of tx/s",
            ));
        }
    }
    let setup_start = Instant::now();
    let deadline = setup_start + opts.deadline;
    let genesis = funder.genesis().clone();
    let network = genesis.network;
    let senders = opts
        .concurrency
        .min(opts.txs.min(usize::MAX as u64) as usize);
    let keys: Vec<KeyPair> = (0..senders).map(|s| sender_key(funder.key(), s)).collect();

    // The client connections the senders share (opened now, not timed).
    let mut pool = Vec::new();
    for chunk in keys.chunks(SENDERS_PER_CONNECTION) {
        let c = Client::new(genesis.clone(), chunk[0].clone(), funder.timeout())?;
        pool.push(Arc::new(c));
    }

    // Balances and nonces of the senders.
    let limit = Arc::new(Semaphore::new(SETUP_QUERIES));
    let mut queries = JoinSet::new();
    for (s, key) in keys.iter().enumerate() {
        let client = pool[s / SENDERS_PER_CONNECTION].clone();
        let account_key = key.public();
        let limit = limit.clone();
        queries.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (s, account(&client, account_key, deadline).await)
        });
    }
    let mut state = vec![(0u64, 0u64); senders];
    while let Some(joined) = queries.join_next().await {
        let (s, r) = joined.map_err(|e| fail(exit::FAILURE, format!("setup task failed: {e}")))?;
        state[s] = r?;
    }

    // Fund the senders that hold less than they will send.
    let needs: Vec<(usize, u64)> = (0..senders)
        .filter_map(|s| {
            let need = share(opts.txs, senders, s) * AMOUNT;
            (state[s].0 < need).then(|| (s, need - state[s].0))
        })
        .collect();
    let funded = needs.len();
    if !needs.is_empty() {
        let total: u64 = needs.iter().map(|(_, n)| n).sum();
        let (balance, mut nonce) = account(funder, funder.key().public(), deadline).await?;
        if balance < total {
            return Err(fail(
                exit::REJECTED,
                format!(
                    "the --key account holds {balance}; funding {} sender accounts needs {total}",
                    needs.len()
                ),
            ));
        }
        // Two levels, so setup takes about 2*sqrt(F) commit round trips
        // rather than F (F senders to fund; at a 50 ms one-way delay a
        // round trip is a quarter of a second): the funder pays the first
        // H = ceil(sqrt(F)) of them, the hubs, their own need plus their
        // group's, one at a time (they share its nonce); then the hubs pay
        // their groups, all hubs at once, each one at a time.
        let hubs = (1..=needs.len())
            .find(|h| h * h >= needs.len())
            .unwrap_or(1);
        let groups: Vec<Vec<(usize, u64)>> = needs[hubs..]
            .chunks(needs.len().saturating_sub(hubs).div_ceil(hubs).max(1))
            .map(|g| g.to_vec())
            .collect();
        for (h, &(s, amount)) in needs[..hubs].iter().enumerate() {
            let passed_on: u64 = groups.get(h).map_or(0, |g| g.iter().map(|(_, n)| n).sum());
            nonce += 1;
            let tx = Transaction::transfer(
                network,
                funder.key(),
                keys[s].public(),
                amount + passed_on,
                nonce,
            );
            fund(funder, &tx, s, deadline).await?;
        }
        let mut paying = JoinSet::new();
        for (h, group) in groups.into_iter().enumerate() {
            let hub = needs[h].0;
            let (key, first_nonce) = (keys[hub].clone(), state[hub].1);
            state[hub].1 += group.len() as u64;
            let client = pool[hub / SENDERS_PER_CONNECTION].clone();
            let publics: Vec<(usize, PublicKey, u64)> = group
                .iter()
                .map(|&(s, amount)| (s, keys[s].public(), amount))
                .collect();
            paying.spawn(async move {
                for (k, (s, to, amount)) in publics.into_iter().enumerate() {
                    let tx = Transaction::transfer(
                        network,
                        &key,
                        to,
                        amount,
                        first_nonce + 1 + k as u64,
                    );
                    fund(&client, &tx, s, deadline).await?;
                }
                Ok::<(), CliError>(())
            });
        }
        while let Some(joined) = paying.join_next().await {
            joined.map_err(|e| fail(exit::FAILURE, format!("setup task failed: {e}")))??;
        }
    }

    // Open every connection before the clock starts.
    for c in &pool {
        let limit = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(limit, c.status()).await.is_err() {
            break;
        }
    }

    // Pre-sign every transfer: sender s, its k-th transfer is j = s + k*senders.
    let mut plans: Vec<Vec<(u64, Transaction)>> = (0..senders)
        .map(|s| Vec::with_capacity(share(opts.txs, senders, s) as usize))
        .collect();
    let mut nonces: Vec<u64> = state.iter().map(|(_, n)| *n).collect();
    for j in 0..opts.txs {
        let s = (j % senders as u64) as usize;
        let to = if senders == 1 {
            funder.key().public()
        } else {
            keys[(s + 1) % senders].public()
        };
        nonces[s] += 1;
        plans[s].push((
            j,
            Transaction::transfer(network, &keys[s], to, AMOUNT, nonces[s]),
        ));
    }
    let replica_retries_before: u64 = pool.iter().map(|c| c.retries()).sum();
    let setup_s = setup_start.elapsed().as_secs_f64();
    if Instant::now() >= deadline {
        return Err(fail(
            exit::TIMEOUT,
            "the benchmark deadline passed during setup",
        ));
    }

    // The timed window.
    let progress = progress_bar(opts.txs, opts.progress);
    let t0 = Instant::now();
    let mut workers = JoinSet::new();
    for (s, plan) in plans.into_iter().enumerate() {
        workers.spawn(sender(
            pool[s / SENDERS_PER_CONNECTION].clone(),
            plan,
            opts.rate.map(|r| (t0, r)),
            deadline,
            progress.clone(),
        ));
    }
    let mut hist = histogram();
    let mut committed = 0;
    let mut failures_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut codes = Vec::new();
    let mut first_error: Option<(Instant, String)> = None;
    let mut unsent = 0;
    let mut retries = 0;
    let mut heights: Option<(u64, u64)> = None;
    let mut end = t0;
    while let Some(joined) = workers.join_next().await {
        let r = joined.map_err(|e| fail(exit::FAILURE, format!("sender task failed: {e}")))?;
        hist.add(&r.hist)
            .map_err(|e| fail(exit::FAILURE, format!("histogram: {e}")))?;
        committed += r.committed;
        for (k, n) in r.failures {
            *failures_by_kind.entry(k).or_default() += n;
        }
        codes.extend(r.codes);
        if let Some((at, msg)) = r.first_error {
            if first_error.as_ref().is_none_or(|(t, _)| at < *t) {
                first_error = Some((at, msg));
            }
        }
        unsent += r.unsent;
        retries += r.retries;
        if let Some((lo, hi)) = r.heights {
            heights = Some(match heights {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        end = end.max(r.finished);
    }
    progress.finish_and_clear();
    let replica_retries = pool.iter().map(|c| c.retries()).sum::<u64>() - replica_retries_before;
    for c in pool {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }

    let elapsed_s = end.saturating_duration_since(t0).as_secs_f64();
    let (first_height, last_height) = heights.unwrap_or((0, 0));
    let blocks = if heights.is_some() {
        last_height - first_height + 1
    } else {
        0
    };
    let exit_code = [exit::TIMEOUT, exit::REJECTED, exit::FAILURE]
        .into_iter()
        .find(|c| codes.contains(c))
        .unwrap_or(if codes.is_empty() {
            exit::OK
        } else {
            exit::FAILURE
        });
    let latency_ms = if hist.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    };
    Ok(BenchReport {
        txs: opts.txs,
        concurrency: senders,
        rate: opts.rate,
        committed,
        failures: opts.txs - committed,
        failures_by_kind,
        unsent,
        retries,
        replica_retries,
        elapsed_s,
        tx_per_s: if elapsed_s > 0.0 {
            committed as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms,
        first_height,
        last_height,
        txs_per_block: if blocks > 0 {
            committed as f64 / blocks as f64
        } else {
            0.0
        },
        setup_s,
        funded,
        first_error: first_error.map(|(_, m)| m),
        exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_transfer_and_keys_are_deterministic() {
        for (txs, senders) in [(200, 8), (7, 3), (5, 5), (1, 1), (20_000, 64)] {
            let total: u64 = (0..senders).map(|s| share(txs, senders, s)).sum();
            assert_eq!(total, txs);
            // Sender s sends exactly the j with j mod senders == s.
            for s in 0..senders {
                let expect = (0..txs).filter(|j| j % senders as u64 == s as u64).count();
                assert_eq!(share(txs, senders, s), expect as u64);
            }
        }
        let funder = KeyPair::from_label("bench-funder");
        assert_eq!(
            sender_key(&funder, 3).public(),
            sender_key(&funder, 3).public()
        );
        assert_ne!(
            sender_key(&funder, 3).public(),
            sender_key(&funder, 4).public()
        );
        let other = KeyPair::from_label("bench-funder-2");
        assert_ne!(
            sender_key(&funder, 0).public(),
            sender_key(&other, 0).public()
        );
    }
}
