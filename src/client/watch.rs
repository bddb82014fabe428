//! `pbft-client watch`: a live view of every replica of the network.
//!
//! Every refresh asks each replica for its status (the client protocol's
//! `Status`), all at once and each bounded by the client's timeout, so a
//! replica that is down shows as unreachable and holds up no other. A row
//! per replica shows whether it answered, its view, primary, the view a
//! view change in progress goes to, height, stable checkpoint, connected
//! peers and pending requests, and its commit rate over the last refresh
//! interval:
//!
//! * `blocks_per_s`: the height it reported now minus the height it reported
//!   at the previous refresh, over the time between the two answers;
//! * `tx_per_s`: the transactions in those blocks over the same time. The
//!   replicas report no transaction count, so the client asks the network
//!   for the headers of the blocks in between (each header as f+1 replicas
//!   agree on it, at most [`TX_BLOCKS_MAX`] per refresh) and sums their
//!   `tx_count`; if one of them cannot be had, `tx_per_s` is unknown.
//!
//! A rate is unknown (`null`, `-`) at the first refresh, for a replica that
//! did not answer this time or the previous time, and for one whose height
//! went down. Rendering: a table redrawn in place (ANSI clear) when stdout
//! is a terminal, one line per refresh when it is not, one JSON object per
//! line with `--output json`.

use super::cli::CliError;
use super::output::{Format, ReplicaStatus};
use super::proto::StatusInfo;
use super::Client;
use crate::exit;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// Most block headers one refresh asks for to count transactions (and the
/// largest height step whose transactions are counted): a replica that
/// claims a huge height costs no more than this.
pub const TX_BLOCKS_MAX: u64 = 256;
/// Block-header queries in flight at once (a replica serves 64 requests
/// of one connection at a time).
const BLOCK_QUERIES_IN_FLIGHT: usize = 16;
/// Clears the screen and moves the cursor home.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// How to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Time between the starts of successive refreshes.
    pub interval: Duration,
    /// Stop after this many refreshes; `None`: until Ctrl-C.
    pub count: Option<u64>,
    pub format: Format,
    /// Stdout is a terminal: redraw a table in place (text format only).
    pub terminal: bool,
}

/// A replica's commit rate over one refresh interval (`None`: unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub blocks_per_s: Option<f64>,
    pub tx_per_s: Option<f64>,
}

/// One replica's row: its status (as in `status --output json`) and rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchRow {
    #[serde(flatten)]
    pub status: ReplicaStatus,
    pub blocks_per_s: Option<f64>,
    pub tx_per_s: Option<f64>,
}

/// One refresh: what each replica said.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchFrame {
    /// 1 for the first refresh.
    pub refresh: u64,
    /// When the answers were in, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub interval_ms: u64,
    pub replicas: Vec<WatchRow>,
}

impl WatchFrame {
    /// The rows of one refresh from the replicas' answers (by replica) and
    /// their rates.
    pub fn new(
        refresh: u64,
        time_ms: u64,
        interval_ms: u64,
        answers: &[(usize, Result<StatusInfo, String>)],
        rates: &[Rate],
    ) -> WatchFrame {
        let replicas = answers
            .iter()
            .map(|(i, a)| {
                let rate = rates.get(*i).copied().unwrap_or_default();
                WatchRow {
                    status: ReplicaStatus::new(*i, a, false),
                    blocks_per_s: rate.blocks_per_s,
                    tx_per_s: rate.tx_per_s,
                }
            })
            .collect();
        WatchFrame {
            refresh,
            time_ms,
            interval_ms,
            replicas,
        }
    }
}

/// Successive height readings and the transaction counts of the blocks
/// between them: the commit-rate computation, without I/O.
#[derive(Clone, Debug)]
pub struct Rates {
    /// Each replica's previous reading: (seconds since the watch started,
    /// height), `None` if it did not answer.
    prev: Vec<Option<(f64, u64)>>,
    /// Transactions per block height, for the heights the next refresh may
    /// count.
    tx_counts: BTreeMap<u64, u32>,
}

impl Rates {
    pub fn new(replicas: usize) -> Rates {
        Rates {
            prev: vec![None; replicas],
            tx_counts: BTreeMap::new(),
        }
    }

    /// The heights whose transaction counts [`Rates::advance`] with these
    /// `heights` needs and has not been told, lowest first, at most
    /// [`TX_BLOCKS_MAX`]. A replica that moved more than that contributes
    /// none (its `tx_per_s` stays unknown).
    pub fn missing(&self, heights: &[Option<u64>]) -> Vec<u64> {
        let mut want = BTreeSet::new();
        for (prev, now) in self.prev.iter().zip(heights) {
            if let (Some((_, from)), Some(to)) = (prev, now) {
                if to > from && to - from <= TX_BLOCKS_MAX {
                    want.extend((*from..*to).map(|h| h + 1));
                }
            }
        }
        want.into_iter()
            .filter(|h| !self.tx_counts.contains_key(h))
            .take(TX_BLOCKS_MAX as usize)
            .collect()
    }

    /// Block `height` holds `tx_count` transactions.
    pub fn learn(&mut self, height: u64, tx_count: u32) {
        self.tx_counts.insert(height, tx_count);
    }

    /// Each replica's rate from its previous reading to `heights` read at
    /// `at` (seconds since the watch started); `heights` become the
    /// previous readings.
    pub fn advance(&mut self, at: f64, heights: &[Option<u64>]) -> Vec<Rate> {
        let rates = (0..self.prev.len())
            .map(|i| {
                let (Some((t0, h0)), Some(Some(h1))) = (self.prev[i], heights.get(i)) else {
                    return Rate::default();
                };
                let dt = at - t0;
                if dt <= 0.0 || *h1 < h0 {
                    return Rate::default();
                }
                let blocks = h1 - h0;
                let txs: Option<u64> = if blocks <= TX_BLOCKS_MAX {
                    (h0..*h1)
                        .map(|h| self.tx_counts.get(&(h + 1)).map(|c| u64::from(*c)))
                        .sum()
                } else {
                    None
                };
                Rate {
                    blocks_per_s: Some(blocks as f64 / dt),
                    tx_per_s: txs.map(|t| t as f64 / dt),
                }
            })
            .collect();
        self.prev = (0..self.prev.len())
            .map(|i| heights.get(i).copied().flatten().map(|h| (at, h)))
            .collect();
        // Keep only the counts a next step of at most TX_BLOCKS_MAX from a
        // current height may need.
        let current: Vec<u64> = self.prev.iter().flatten().map(|(_, h)| *h).collect();
        self.tx_counts
            .retain(|x, _| current.iter().any(|h| x > h && x - h <= TX_BLOCKS_MAX));
        rates
    }

    /// How many block counts are held (bounded by replicas × TX_BLOCKS_MAX).
    pub fn held(&self) -> usize {
        self.tx_counts.len()
    }
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"))
}

/// The table redrawn on a terminal.
pub fn table(frame: &WatchFrame) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pbft-client watch: refresh {}, every {} ms (Ctrl-C quits)\n",
        frame.refresh, frame.interval_ms
    );
    let _ = writeln!(
        s,
        "{:<8} {:<11} {:>8} {:>6} {:>7} {:>11} {:>8} {:>5} {:>7} {:>9} {:>9}",
        "replica",
        "state",
        "height",
        "view",
        "primary",
        "changing_to",
        "stable",
        "peers",
        "pending",
        "blocks/s",
        "tx/s"
    );
    for row in &frame.replicas {
        let r = &row.status;
        match &r.state {
            Some(st) => {
                let _ = writeln!(
                    s,
                    "{:<8} {:<11} {:>8} {:>6} {:>7} {:>11} {:>8} {:>5} {:>7} {:>9} {:>9}",
                    r.replica,
                    "reachable",
                    st.height,
                    st.view,
                    st.primary,
                    st.changing_to.map_or("-".to_string(), |v| v.to_string()),
                    st.stable_checkpoint,
                    st.connected_peers,
                    st.pending_requests,
                    rate(row.blocks_per_s),
                    rate(row.tx_per_s),
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{:<8} {:<11} ({})",
                    r.replica,
                    "unreachable",
                    r.error.as_deref().unwrap_or("no answer")
                );
            }
        }
    }
    s
}

/// One line per refresh (stdout not a terminal).
pub fn line(frame: &WatchFrame) -> String {
    let rows: Vec<String> = frame
        .replicas
        .iter()
        .map(|row| {
            let r = &row.status;
            match &r.state {
                Some(st) => format!(
                    "replica {} height {} view {} primary {} changing_to {} stable {} peers {} pending {} blocks/s {} tx/s {}",
                    r.replica,
                    st.height,
                    st.view,
                    st.primary,
                    st.changing_to.map_or("-".to_string(), |v| v.to_string()),
                    st.stable_checkpoint,
                    st.connected_peers,
                    st.pending_requests,
                    rate(row.blocks_per_s),
                    rate(row.tx_per_s),
                ),
                None => format!(
                    "replica {} unreachable ({})",
                    r.replica,
                    r.error.as_deref().unwrap_or("no answer")
                ),
            }
        })
        .collect();
    format!(
        "refresh {} time_ms {}  {}\n",
        frame.refresh,
        frame.time_ms,
        rows.join(" | ")
    )
}

/// A frame as `opts` says it is printed.
pub fn render(frame: &WatchFrame, opts: &WatchOptions) -> Result<String, CliError> {
    match (opts.format, opts.terminal) {
        // Through a `Value`, whose members are sorted, as in every other
        // command's JSON.
        (Format::Json, _) => serde_json::to_value(frame)
            .map(|v| format!("{v}\n"))
            .map_err(|e| fail(format!("cannot encode the refresh as JSON: {e}"))),
        (Format::Text, true) => Ok(format!("{CLEAR}{}", table(frame))),
        (Format::Text, false) => Ok(line(frame)),
    }
}

fn fail(message: String) -> CliError {
    CliError {
        code: exit::FAILURE,
        message,
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

/// Runs `futures` concurrently (in this task) and returns their outputs.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs = Vec::with_capacity(pending.len());
    std::future::poll_fn(|cx| {
        for slot in pending.iter_mut() {
            if let Some(f) = slot {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    outputs.push(v);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs
}

/// The transaction counts of blocks `heights`, each as f+1 replicas agree
/// on its header, [`BLOCK_QUERIES_IN_FLIGHT`] at a time; those not had by
/// `deadline` are left out.
async fn tx_counts(client: &Client, heights: &[u64], deadline: Instant) -> Vec<(u64, u32)> {
    let mut counts = Vec::new();
    for chunk in heights.chunks(BLOCK_QUERIES_IN_FLIGHT) {
        let queries = chunk.iter().map(|&h| async move {
            let g = client.block(h).await.ok()?;
            let agreed = g.agreed(|b| b.as_ref().map(|b| b.block_hash))?;
            agreed.value.map(|b| (h, b.tx_count))
        });
        match tokio::time::timeout_at(deadline, join_all(queries.collect())).await {
            Ok(found) => counts.extend(found.into_iter().flatten()),
            Err(_) => break,
        }
    }
    counts
}

/// Refreshes until `opts.count` refreshes were shown (forever without it).
async fn refreshes(client: &Client, opts: &WatchOptions) -> Result<(), CliError> {
    let n = client.genesis().replica_keys.len();
    let interval_ms = opts.interval.as_millis().min(u128::from(u64::MAX)) as u64;
    let start = Instant::now();
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rates = Rates::new(n);
    let mut refresh = 0u64;
    while opts.count.is_none_or(|c| refresh < c) {
        ticker.tick().await;
        refresh += 1;
        let g = client.status().await;
        let at = start.elapsed().as_secs_f64();
        let time_ms = unix_ms();
        let heights: Vec<Option<u64>> = (0..n)
            .map(|i| {
                g.answers
                    .iter()
                    .find(|(j, _)| *j == i)
                    .and_then(|(_, a)| a.as_ref().ok().map(|s| s.height))
            })
            .collect();
        let missing = rates.missing(&heights);
        if !missing.is_empty() {
            let deadline = Instant::now() + client.timeout();
            for (h, c) in tx_counts(client, &missing, deadline).await {
                rates.learn(h, c);
            }
        }
        let r = rates.advance(at, &heights);
        let frame = WatchFrame::new(refresh, time_ms, interval_ms, &g.answers, &r);
        let text = render(&frame, opts)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| fail(format!("cannot write to stdout: {e}")))?;
    }
    Ok(())
}

/// Watches the network until `opts.count` refreshes were shown or Ctrl-C
/// (both a clean end); everything is printed as it comes.
pub async fn run(client: &Client, opts: &WatchOptions) -> Result<(), CliError> {
    let outcome = tokio::select! {
        r = refreshes(client, opts) => r,
        r = tokio::signal::ctrl_c() => {
            r.map_err(|e| fail(format!("cannot listen for Ctrl-C: {e}")))
        }
    };
    if opts.terminal && opts.format == Format::Text && outcome.is_ok() {
        // The table may have been cut short; end on a fresh line.
        println!();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Digest;

    fn status(replica: u32, height: u64) -> StatusInfo {
        StatusInfo {
            replica,
            view: 2,
            changing_to: None,
            primary: 2,
            height,
            block_hash: Digest([0xab; 32]),
            stable_checkpoint: height / 4 * 4,
            pending_requests: 5,
            connected_peers: 3,
            view_changes_started: 1,
            new_views_entered: 1,
            undecodable_frames: 0,
            ignored: vec![],
        }
    }

    /// Scripted successive readings: blocks/s from the heights, tx/s from
    /// the counts of the blocks in between, unknown where it cannot be had.
    #[test]
    fn rates_come_from_successive_heights_and_block_counts() {
        let mut r = Rates::new(4);
        // First refresh: nothing to compare with.
        assert!(r.missing(&[Some(10), Some(10), None, Some(9)]).is_empty());
        let first = r.advance(1.0, &[Some(10), Some(10), None, Some(9)]);
        assert_eq!(first, vec![Rate::default(); 4]);

        // Half a second later: 0 moved 4 blocks, 1 did not move, 2 is back
        // (no previous reading), 3 moved 2 (its blocks 10 and 11).
        let now = [Some(14), Some(10), Some(14), Some(11)];
        assert_eq!(r.missing(&now), vec![10, 11, 12, 13, 14]);
        for (h, c) in [(10, 7), (11, 3), (12, 0), (13, 10), (14, 5)] {
            r.learn(h, c);
        }
        assert!(r.missing(&now).is_empty());
        let second = r.advance(1.5, &now);
        assert_eq!(
            second[0],
            Rate {
                blocks_per_s: Some(8.0),
                tx_per_s: Some(36.0) // 3+0+10+5 over 0.5 s
            }
        );
        assert_eq!(
            second[1],
            Rate {
                blocks_per_s: Some(0.0),
                tx_per_s: Some(0.0)
            }
        );
        assert_eq!(second[2], Rate::default());
        assert_eq!(
            second[3],
            Rate {
                blocks_per_s: Some(4.0),
                tx_per_s: Some(20.0) // 7+3
            }
        );

        // A block count that could not be had: blocks/s known, tx/s not.
        // Replica 1 goes down, replica 2 reports a lower height.
        let now = [Some(16), None, Some(13), Some(14)];
        assert_eq!(r.missing(&now), vec![15, 16]);
        r.learn(15, 4);
        let third = r.advance(2.5, &now);
        assert_eq!(
            third[0],
            Rate {
                blocks_per_s: Some(2.0),
                tx_per_s: None
            }
        );
        assert_eq!(third[1], Rate::default());
        assert_eq!(third[2], Rate::default(), "a height going down has no rate");
        assert_eq!(
            third[3],
            Rate {
                blocks_per_s: Some(3.0),
                tx_per_s: Some(15.0) // 0+10+5 over 1 s
            }
        );
    }

    /// A replica claiming a huge height costs at most TX_BLOCKS_MAX header
    /// queries, gets a blocks/s but no tx/s, and the held counts stay bounded.
    #[test]
    fn a_huge_height_step_is_not_counted_block_by_block() {
        let mut r = Rates::new(2);
        r.advance(0.0, &[Some(0), Some(0)]);
        let now = [Some(u64::MAX), Some(3)];
        assert_eq!(r.missing(&now), vec![1, 2, 3]);
        for h in 1..=3 {
            r.learn(h, 1);
        }
        let rates = r.advance(1.0, &now);
        assert_eq!(rates[0].tx_per_s, None);
        assert_eq!(rates[0].blocks_per_s, Some(u64::MAX as f64));
        assert_eq!(rates[1].tx_per_s, Some(3.0));
        // Nothing at or below a current height is kept.
        assert_eq!(r.held(), 0);
        let next = [Some(u64::MAX), Some(3 + 2 * TX_BLOCKS_MAX)];
        assert!(r.missing(&next).is_empty(), "a step beyond the cap");
        let next = [Some(u64::MAX), Some(3 + TX_BLOCKS_MAX + 1)];
        assert!(r.missing(&next).is_empty());
        let next = [Some(u64::MAX), Some(3 + TX_BLOCKS_MAX)];
        assert_eq!(r.missing(&next).len(), TX_BLOCKS_MAX as usize);
    }

    fn frame() -> WatchFrame {
        let answers = vec![
            (0, Ok(status(0, 14))),
            (1, Err("timed out".to_string())),
            (
                2,
                Ok(StatusInfo {
                    changing_to: Some(3),
                    ..status(2, 12)
                }),
            ),
        ];
        let rates = [
            Rate {
                blocks_per_s: Some(8.0),
                tx_per_s: Some(36.0),
            },
            Rate::default(),
            Rate {
                blocks_per_s: Some(2.5),
                tx_per_s: None,
            },
        ];
        WatchFrame::new(3, 1_700_000_000_000, 1000, &answers, &rates)
    }

    #[test]
    fn a_refresh_renders_as_json_with_every_field() {
        let opts = WatchOptions {
            interval: Duration::from_secs(1),
            count: Some(1),
            format: Format::Json,
            terminal: true,
        };
        let out = render(&frame(), &opts).unwrap();
        assert!(
            out.ends_with('\n') && out.matches('\n').count() == 1,
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&v), ["interval_ms", "refresh", "replicas", "time_ms"]);
        assert_eq!(v["refresh"], 3);
        assert_eq!(v["time_ms"], 1_700_000_000_000u64);
        let rows = v["replicas"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            keys(&rows[0]),
            [
                "block_hash",
                "blocks_per_s",
                "changing_to",
                "connected_peers",
                "height",
                "pending_requests",
                "primary",
                "reachable",
                "replica",
                "stable_checkpoint",
                "tx_per_s",
                "view",
            ]
        );
        assert_eq!(rows[0]["height"], 14);
        assert_eq!(rows[0]["block_hash"], "ab".repeat(32));
        assert_eq!(rows[0]["changing_to"], serde_json::Value::Null);
        assert_eq!(rows[0]["blocks_per_s"], 8.0);
        assert_eq!(rows[0]["tx_per_s"], 36.0);
        assert_eq!(
            keys(&rows[1]),
            ["blocks_per_s", "error", "reachable", "replica", "tx_per_s"]
        );
        assert_eq!(rows[1]["reachable"], false);
        assert_eq!(rows[1]["error"], "timed out");
        assert_eq!(rows[2]["changing_to"], 3);
        assert_eq!(rows[2]["tx_per_s"], serde_json::Value::Null);
    }

    #[test]
    fn a_refresh_renders_as_a_table_or_one_line() {
        let mut opts = WatchOptions {
            interval: Duration::from_secs(1),
            count: None,
            format: Format::Text,
            terminal: true,
        };
        let t = render(&frame(), &opts).unwrap();
        assert!(t.starts_with(CLEAR), "{t:?}");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("refresh 3"), "{t}");
        let cols = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cols(lines[3]),
            [
                "0",
                "reachable",
                "14",
                "2",
                "2",
                "-",
                "12",
                "3",
                "5",
                "8.0",
                "36.0"
            ]
        );
        assert_eq!(cols(lines[4]), ["1", "unreachable", "(timed", "out)"]);
        assert_eq!(
            cols(lines[5]),
            [
                "2",
                "reachable",
                "12",
                "2",
                "2",
                "3",
                "12",
                "3",
                "5",
                "2.5",
                "-"
            ]
        );

        opts.terminal = false;
        let l = render(&frame(), &opts).unwrap();
        assert!(!l.contains('\x1b'));
        assert_eq!(l.lines().count(), 1, "{l}");
        assert!(
            l.contains("replica 0 height 14 view 2 primary 2 changing_to - stable 12 peers 3 pending 5 blocks/s 8.0 tx/s 36.0 | replica 1 unreachable (timed out) | replica 2 height 12"),
            "{l}"
        );
    }
}
