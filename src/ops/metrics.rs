//! `GET /metrics`: the replica's metrics in Prometheus's text format
//! (prometheus-client's encoder). Gauges and counters are read, at scrape
//! time, from the last [`Published`] status, so `/metrics` and
//! `/v1/status` always agree; the histograms are observed by the replica's
//! loop as things happen (block size, commit latency, synced writes).
//!
//! Names carry the `pbft_` prefix and their unit (`_seconds`, `_total` on
//! counters, added by the encoder).

use super::status::Status;
use super::Published;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt::Error;
use std::sync::Arc;
use tokio::sync::watch;

/// Histograms the replica's loop observes directly (each a cheap handle
/// to shared atomic buckets; clones observe into the same one).
#[derive(Clone, Debug)]
pub struct Histograms {
    /// Transactions per executed block.
    pub block_transactions: Histogram,
    /// Seconds from the PRE-PREPARE of a seq (sent, as primary, or
    /// received) to the execution of its block.
    pub commit_latency_seconds: Histogram,
    /// Seconds one synced RocksDB write took (write and fdatasync).
    pub storage_synced_write_seconds: Histogram,
}

impl Histograms {
    fn new() -> Histograms {
        Histograms {
            // 1, 2, 4, ... 4096 transactions.
            block_transactions: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 0.25 ms ... 8 s.
            commit_latency_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            // 50 µs ... 1.6 s.
            storage_synced_write_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

/// The registry behind `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    histograms: Histograms,
}

impl Metrics {
    pub fn new(published: watch::Receiver<Arc<Published>>) -> Metrics {
        let histograms = Histograms::new();
        let mut registry = Registry::default();
        registry.register(
            "pbft_block_transactions",
            "Transactions per executed block",
            histograms.block_transactions.clone(),
        );
        registry.register(
            "pbft_commit_latency_seconds",
            "Seconds from the PRE-PREPARE of a seq to the execution of its block",
            histograms.commit_latency_seconds.clone(),
        );
        registry.register(
            "pbft_storage_synced_write_seconds",
            "Seconds per synced RocksDB write (write and fdatasync)",
            histograms.storage_synced_write_seconds.clone(),
        );
        registry.register_collector(Box::new(StatusCollector(published)));
        Metrics {
            registry,
            histograms,
        }
    }

    /// Handles for the replica's loop to observe into.
    pub fn histograms(&self) -> Histograms {
        self.histograms.clone()
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<String, Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Gauges and counters of the last published status, made at each scrape.
#[derive(Debug)]
struct StatusCollector(watch::Receiver<Arc<Published>>);

impl prometheus_client::collector::Collector for StatusCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let published = self.0.borrow().clone();
        encode_status(&published.status, &mut e)
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), Error> {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), Error> {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

/// One counter per key of `values`, labelled `label="key"`.
fn counters_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<String, u64>,
) -> Result<(), Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (key, v) in values {
        let labels = [(label, key.as_str())];
        ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_status(s: &Status, e: &mut DescriptorEncoder) -> Result<(), Error> {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(e, "pbft_height", "Executed height (blocks)", i(s.height))?;
    gauge(
        e,
        "pbft_last_executed_seq",
        "Last executed seq (null requests included)",
        i(s.last_executed),
    )?;
    gauge(e, "pbft_view", "Current view", i(s.view))?;
    gauge(
        e,
        "pbft_primary",
        "Replica id of the current view's primary",
        i64::from(s.primary),
    )?;
    gauge(
        e,
        "pbft_view_change_in_progress",
        "1 while a view change is in progress",
        i64::from(s.changing_to.is_some()),
    )?;
    gauge(
        e,
        "pbft_stable_checkpoint",
        "Seq of the stable checkpoint",
        i(s.stable_checkpoint),
    )?;
    gauge(
        e,
        "pbft_low_watermark",
        "Low watermark h of the log window (h, H]",
        i(s.low_watermark),
    )?;
    gauge(
        e,
        "pbft_high_watermark",
        "High watermark H of the log window (h, H]",
        i(s.high_watermark),
    )?;
    gauge(
        e,
        "pbft_catching_up",
        "1 while fetching committed blocks from peers",
        i64::from(s.catching_up_to.is_some()),
    )?;
    gauge(
        e,
        "pbft_connected_peers",
        "Replicas with a live connection",
        i64::from(s.connected_peers),
    )?;
    gauge(
        e,
        "pbft_pending_requests",
        "Client requests held, not yet executed",
        i(s.pending_requests),
    )?;
    gauge(
        e,
        "pbft_client_requests_in_flight",
        "Client requests received and not yet answered",
        i(s.client_requests_in_flight),
    )?;
    gauge(
        e,
        "pbft_uptime_seconds",
        "Seconds since the replica started",
        i(s.uptime_ms / 1000),
    )?;
    let c = &s.counters;
    counter(
        e,
        "pbft_committed_transactions",
        "Transactions executed",
        c.committed_transactions,
    )?;
    counter(
        e,
        "pbft_committed_blocks",
        "Blocks executed",
        c.committed_blocks,
    )?;
    counters_by(
        e,
        "pbft_view_changes_started",
        "View changes this replica started, by reason",
        "reason",
        &s.view_changes_by_reason,
    )?;
    counter(
        e,
        "pbft_new_views_entered",
        "New views this replica entered",
        c.new_views_entered,
    )?;
    counter(
        e,
        "pbft_fetches_sent",
        "Catch-up fetches sent to peers",
        c.fetches_sent,
    )?;
    counter(
        e,
        "pbft_fetches_served",
        "Catch-up fetches answered with blocks",
        c.fetches_served,
    )?;
    counter(
        e,
        "pbft_fetches_throttled",
        "Catch-up fetches of peers refused by the rate limit",
        c.fetches_throttled,
    )?;
    counter(
        e,
        "pbft_blocks_fetched",
        "Committed blocks executed from catch-up",
        c.blocks_fetched,
    )?;
    counter(
        e,
        "pbft_client_requests_busy",
        "Client submissions answered busy",
        c.client_requests_busy,
    )?;
    counter(
        e,
        "pbft_undecodable_frames",
        "Frames from peers that did not decode",
        c.undecodable_frames,
    )?;
    counter(
        e,
        "pbft_synced_writes",
        "Synced RocksDB writes",
        c.synced_writes,
    )?;
    counter(
        e,
        "pbft_primaries_suspected_stalling",
        "Primaries this backup suspected for leaving requests unproposed with room in the pipeline",
        c.primaries_suspected_stalling,
    )?;
    counter(
        e,
        "pbft_requests_forwarded",
        "Requests this backup forwarded to a primary that left them unproposed",
        c.requests_forwarded,
    )?;
    counters_by(
        e,
        "pbft_messages_received",
        "Messages received from peers, by kind",
        "kind",
        &s.received,
    )?;
    counters_by(
        e,
        "pbft_messages_refused",
        "Peer and client input refused, by reason",
        "reason",
        &s.refused,
    )?;
    counters_by(
        e,
        "pbft_signature_checks",
        "Signature checks, by what was checked",
        "kind",
        &s.signature_checks,
    )?;
    let mut m = e.encode_descriptor(
        "pbft_peer_connected",
        "1 if the peer has a live connection",
        None,
        MetricType::Gauge,
    )?;
    for p in &s.peers {
        let id = p.replica.to_string();
        let labels = [("peer", id.as_str())];
        ConstGauge::new(i64::from(p.connected)).encode(m.encode_family(&labels)?)?;
    }
    let mut m = e.encode_descriptor(
        "pbft_peer_rtt_seconds",
        "QUIC's smoothed round trip to each connected peer replica",
        None,
        MetricType::Gauge,
    )?;
    for p in &s.peers {
        if let Some(us) = p.rtt_us {
            let peer = p.replica.to_string();
            let labels = [("peer", peer.as_str())];
            ConstGauge::new(us as f64 / 1e6).encode(m.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::status::{Peer, Status};
    use super::*;
    use std::collections::BTreeSet;

    /// The names of every sample `/metrics` gives for a status with every
    /// labelled family filled.
    fn exported_names() -> BTreeSet<String> {
        let mut s = Status {
            replicas: 4,
            ..Status::default()
        };
        s.peers.push(Peer {
            rtt_us: Some(1_500),
            ..Peer::default()
        });
        for map in [
            &mut s.view_changes_by_reason,
            &mut s.refused,
            &mut s.received,
            &mut s.signature_checks,
        ] {
            map.insert("x".into(), 1);
        }
        let (tx, rx) = watch::channel(Arc::new(Published {
            status: s,
            at: std::time::Instant::now(),
        }));
        let metrics = Metrics::new(rx);
        drop(tx);
        let text = metrics.encode().unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(String::from)
            .collect()
    }

    #[test]
    fn every_name_has_the_prefix_and_counters_their_suffix() {
        let names = exported_names();
        assert!(names.len() > 30, "{names:?}");
        for n in &names {
            assert!(n.starts_with("pbft_"), "{n}");
        }
        assert!(names.contains("pbft_committed_transactions_total"));
        assert!(names.contains("pbft_commit_latency_seconds_bucket"));
    }

    /// The Grafana dashboard in configs/ is valid JSON and asks only for
    /// series the replica exports.
    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let text = include_str!("../../configs/grafana/pbft-ledger.json");
        let v: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let names = exported_names();
        let mut exprs = 0;
        for panel in v["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                exprs += 1;
                let mut rest = expr;
                while let Some(at) = rest.find("pbft_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        names.contains(&name),
                        "{expr}: {name} is not exported (exported: {names:?})"
                    );
                    rest = &rest[at + name.len()..];
                }
            }
        }
        assert!(exprs >= 15, "the dashboard has {exprs} queries");
    }
}
