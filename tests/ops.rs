//! The operations endpoint of real replicas (issue 19): `/metrics` checked
//! by Prometheus's own `promtool` and scraped by a real Prometheus, the
//! probes following what happens to the network, the status API agreeing
//! with the metrics, and the dashboard rendered by headless Chromium.
//!
//! `promtool`, `prometheus` (Debian's `prometheus` package) and `chromium`
//! are installed by `scripts/test.sh`; a test that finds one missing fails
//! and says what to install.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::browser::{chromium, screenshot, tool};
use common::cluster::*;
use common::{run_bounded, text};

/// Bound on a value reaching what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// Samples of the Prometheus text `body`: `name{labels}` → value.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metrics(c: &Cluster, i: usize) -> BTreeMap<String, f64> {
    let (code, body) = c.ops_get(i, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    samples(&body)
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(c: &Cluster, i: usize) -> serde_json::Value {
    let (code, body) = c.ops_get(i, "/v1/status").expect("GET /v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// Setup: four replicas, transfers. Expect: every replica's `/metrics`
/// passes `promtool check metrics`, holds every metric the issue names
/// (height, view, watermarks, committed counters, histograms observed,
/// messages by kind, signature checks by kind, peers), agrees with
/// `/v1/status`; `/readyz` turns 503 when fewer than 2f peers are left,
/// while `/healthz` stays 200; `pbft-replica probe` reports both.
#[test]
fn metrics_probes_and_status_follow_a_running_network() {
    let promtool = tool("promtool");
    let mut c = Cluster::generate();
    c.start_all();
    for i in 0..c.n {
        wait_until("every replica ready", || {
            c.ops_get(i, "/readyz").is_some_and(|(code, _)| code == 200)
        });
    }
    for k in 0..3 {
        c.transfer_ok(k % 2, (k + 1) % 2, 5);
    }
    for i in 0..c.n {
        wait_until("three transactions committed everywhere", || {
            metrics(&c, i)
                .get("pbft_committed_transactions_total")
                .is_some_and(|v| *v >= 3.0)
        });
        let (_, body) = c.ops_get(i, "/metrics").unwrap();
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn promtool");
        check
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics, replica {i}: {}{}\n{body}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let m = samples(&body);
        let at_least = |name: &str, min: f64| {
            let v = m.get(name).copied();
            assert!(
                v.is_some_and(|v| v >= min),
                "replica {i}: {name} = {v:?}, expected >= {min}\n{body}"
            );
        };
        at_least("pbft_height", 3.0);
        at_least("pbft_committed_blocks_total", 1.0);
        at_least("pbft_block_transactions_count", 1.0);
        at_least("pbft_block_transactions_sum", 3.0);
        at_least("pbft_commit_latency_seconds_count", 1.0);
        at_least("pbft_storage_synced_write_seconds_count", 1.0);
        at_least("pbft_messages_received_total{kind=\"commit\"}", 2.0);
        at_least("pbft_signature_checks_total{kind=\"commit\"}", 2.0);
        at_least("pbft_signature_checks_total{kind=\"transaction\"}", 3.0);
        at_least("pbft_high_watermark", 8.0);
        for name in [
            "pbft_view",
            "pbft_primary",
            "pbft_stable_checkpoint",
            "pbft_low_watermark",
            "pbft_pending_requests",
            "pbft_client_requests_in_flight",
            "pbft_client_requests_busy_total",
            "pbft_new_views_entered_total",
            "pbft_view_changes_started_total{reason=\"primary-suspected\"}",
            "pbft_fetches_sent_total",
            "pbft_fetches_served_total",
            "pbft_fetches_throttled_total",
            "pbft_blocks_fetched_total",
        ] {
            at_least(name, 0.0);
        }
        assert_eq!(m["pbft_connected_peers"], 3.0, "replica {i}");
        // QUIC's round trip to each peer: measured, and loopback's (well
        // under 100 ms); the status gives the same peers one.
        for peer in (0..c.n).filter(|p| *p != i) {
            let rtt = m.get(&format!("pbft_peer_rtt_seconds{{peer=\"{peer}\"}}"));
            assert!(
                rtt.is_some_and(|r| *r > 0.0 && *r < 0.1),
                "replica {i}: round trip to {peer} = {rtt:?}\n{body}"
            );
        }
        assert_eq!(m["pbft_view"], 0.0, "no view change in a healthy network");
        let s = status(&c, i);
        assert_eq!(s["replica"], i);
        assert_eq!(s["height"].as_f64(), Some(m["pbft_height"]));
        assert_eq!(s["primary"], 0);
        assert_eq!(s["connected_peers"], 3);
        let peers = s["peers"].as_array().expect("peers");
        assert!(
            peers
                .iter()
                .all(|p| p["rtt_us"].as_u64().is_some_and(|us| us > 0)),
            "replica {i}: {peers:?}"
        );
    }

    // Two peers gone: replica 0 keeps 1 of the 2f = 2 it needs.
    let probe = |c: &Cluster, ready: bool| {
        let home = c.home(0);
        let mut cmd = Command::new(REPLICA);
        cmd.args(["probe", "--home", home.to_str().unwrap()]);
        if ready {
            cmd.arg("--ready");
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(10));
        (out.status.code(), text(&out.stdout))
    };
    assert_eq!(probe(&c, true).0, Some(0));
    c.stop(3);
    assert_eq!(
        c.ops_get(0, "/readyz").map(|r| r.0),
        Some(200),
        "2f peers left"
    );
    c.stop(2);
    wait_until("replica 0 not ready with one peer", || {
        c.ops_get(0, "/readyz").is_some_and(|(code, body)| {
            code == 503 && body.contains("connected to 1 peers, needs at least 2")
        })
    });
    assert_eq!(c.ops_get(0, "/healthz").map(|r| r.0), Some(200));
    // A round trip only for the peer still connected.
    let m = metrics(&c, 0);
    let rtts: Vec<&String> = m
        .keys()
        .filter(|k| k.starts_with("pbft_peer_rtt_seconds"))
        .collect();
    assert_eq!(rtts, ["pbft_peer_rtt_seconds{peer=\"1\"}"], "{m:?}");
    let (code, body) = probe(&c, true);
    assert_eq!(
        code,
        Some(1),
        "probe --ready of a replica that is not ready"
    );
    assert!(body.contains("needs at least 2"), "{body}");
    assert_eq!(probe(&c, false).0, Some(0), "but it is healthy");
    c.stop(0);
    let (code, _) = probe(&c, false);
    assert_eq!(code, Some(1), "probe of a stopped replica");
}

/// `POST path` with a JSON body to `addr`: (status, body).
fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: ops\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let t = text(&out);
    let code = t[9..12].parse().expect("status code");
    let body = t
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Setup: four replicas. Expect: a transfer signed here (as a program in
/// another language would, from the documented fields) and posted to one
/// replica's `POST /v1/txs` executes; its answer holds the reply and a
/// proof the crate's own reply checker accepts; `/v1/txs/{hash}`,
/// `/v1/blocks/latest` and `/v1/accounts/{id}` of every replica agree on it;
/// bad input is a 4xx JSON error.
#[test]
fn a_transfer_posted_to_the_api_executes_and_every_replica_agrees() {
    use pbft_ledger::crypto::{NetworkId, PublicKey};
    use pbft_ledger::tx::Transaction;
    let mut c = Cluster::generate();
    c.start_all();
    let key = pbft_ledger::keyfile::read(Path::new(&c.key(0))).unwrap();
    let to = PublicKey::from_hex(&c.accounts[1]).unwrap();
    let network = status(&c, 2)["network"].as_str().unwrap().to_string();
    let network = NetworkId(pbft_ledger::crypto::Digest::from_hex(&network).unwrap());
    let (code, account) = c
        .ops_get(2, &format!("/v1/accounts/{}", key.public().to_hex()))
        .unwrap();
    assert_eq!(code, 200, "{account}");
    let account: serde_json::Value = serde_json::from_str(&account).unwrap();
    let nonce = account["nonce"].as_u64().unwrap() + 1;
    let before = account["balance"].as_u64().unwrap();
    let tx = Transaction::transfer(network, &key, to, 41, nonce);
    let body = serde_json::json!({
        "from": key.public().to_hex(),
        "to": to.to_hex(),
        "amount": 41,
        "nonce": nonce,
        "signature": hex::encode(tx.signature),
    })
    .to_string();
    let (code, answer) = post(c.ops_addr(2), "/v1/txs", &body);
    assert_eq!(code, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let tx_id = tx.id().to_hex();
    assert_eq!(answer["tx_id"], tx_id.as_str());
    assert_eq!(answer["reply"]["receipt"], "ok", "{answer}");
    assert_eq!(answer["proof"]["signer"], 2, "{answer}");
    let height = answer["reply"]["seq"].as_u64().unwrap();

    // Posting it again: the replica answers from its reply cache, alike.
    let (code, again) = post(c.ops_addr(2), "/v1/txs", &body);
    assert_eq!(code, 200, "{again}");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["reply"], answer["reply"]);

    for i in 0..c.n {
        wait_until("the transfer executed everywhere", || {
            c.ops_get(i, &format!("/v1/txs/{tx_id}"))
                .is_some_and(|(code, _)| code == 200)
        });
        let (_, t) = c.ops_get(i, &format!("/v1/txs/{tx_id}")).unwrap();
        let t: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(t["height"].as_u64(), Some(height), "replica {i}: {t}");
        assert_eq!(t["amount"], 41);
        let (code, b) = c.ops_get(i, &format!("/v1/blocks/{height}")).unwrap();
        assert_eq!(code, 200, "{b}");
        let b: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(b["tx_root"], t["inclusion"]["tx_root"], "replica {i}");
        assert!(b["signers"].as_array().unwrap().len() >= 3, "{b}");
        let (code, latest) = c.ops_get(i, "/v1/blocks/latest").unwrap();
        assert_eq!(code, 200, "{latest}");
        let (_, acc) = c
            .ops_get(i, &format!("/v1/accounts/{}", key.public().to_hex()))
            .unwrap();
        let acc: serde_json::Value = serde_json::from_str(&acc).unwrap();
        assert_eq!(acc["balance"].as_u64(), Some(before - 41), "replica {i}");
        assert_eq!(acc["nonce"].as_u64(), Some(nonce));
    }

    // Bad input: 4xx with a JSON code, never a hang or a 5xx.
    let (code, e) = post(c.ops_addr(0), "/v1/txs", "{\"from\": \"zz\"}");
    assert!((400..500).contains(&code), "{code} {e}");
    assert!(e.contains("\"code\""), "{e}");
    let mut forged: serde_json::Value = serde_json::from_str(&body).unwrap();
    forged["amount"] = 42.into();
    forged["nonce"] = (nonce + 1).into();
    let (code, e) = post(c.ops_addr(0), "/v1/txs", &forged.to_string());
    assert_eq!(code, 422, "a signature over other fields: {e}");
    assert_eq!(c.ops_get(0, "/v1/blocks/999999").unwrap().0, 404);
    assert_eq!(c.ops_get(0, "/v1/txs/nothex").unwrap().0, 400);
    assert_eq!(c.ops_get(0, "/v1/accounts/00").unwrap().0, 400);
}

/// Setup: four replicas and Debian's Prometheus with the scrape
/// configuration `testnet` wrote. Expect: Prometheus's own query API shows
/// the committed-transactions counter of every replica rise to the
/// transfers made.
#[test]
fn prometheus_scrapes_every_replica() {
    let prometheus = tool("prometheus");
    let mut c = Cluster::generate();
    c.start_all();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let data = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(data.path().join("prometheus.log")).unwrap();
    let server = Command::new(prometheus)
        .arg(format!(
            "--config.file={}",
            c.root.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn prometheus");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(server);
    for k in 0..4 {
        c.transfer_ok(k % 2, (k + 1) % 2, 3);
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let query = "/api/v1/query?query=pbft_committed_transactions_total";
    let deadline = Instant::now() + Duration::from_secs(60);
    let replicas = loop {
        let answer = pbft_ledger::operator::probe::get(addr, query, Duration::from_secs(5));
        let seen: BTreeMap<String, f64> = match answer {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
                v["data"]["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| {
                        let replica = r["metric"]["replica"].as_str()?.to_string();
                        let value = r["value"][1].as_str()?.parse().ok()?;
                        Some((replica, value))
                    })
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        if seen.len() == c.n && seen.values().all(|v| *v >= 4.0) {
            break seen;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(data.path().join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus did not see 4 transactions at every replica: {seen:?}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        replicas.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    drop(guard);
}

/// Headless Chromium with a fresh profile in `dir`, run to completion.
/// The text of the element with id `id` in a dumped DOM.
fn element_text(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[start..];
    let open = rest.find('>')? + 1;
    let close = rest[open..].find('<')?;
    Some(rest[open..open + close].to_string())
}

/// Setup: four replicas; the dashboard of replica 1 loaded in headless
/// Chromium. Expect: the page shows the replica's height (its JavaScript
/// polled `/v1/status`), and after transfers commit it shows the new
/// height. A screenshot is saved as a CI artefact.
#[test]
fn the_dashboard_shows_the_height_and_follows_it() {
    let mut c = Cluster::generate();
    c.start_all();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", c.ops_addr(1));
    let dump = |profile: &Path| {
        chromium(
            profile,
            &["--virtual-time-budget=3000", "--dump-dom", url.as_str()],
        )
    };
    let before = dump(profile.path());
    assert_eq!(
        element_text(&before, "replica").as_deref(),
        Some("1"),
        "the page did not fill in the status:\n{before}"
    );
    let h0: u64 = element_text(&before, "height")
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height on the page:\n{before}"));
    for k in 0..3 {
        c.transfer_ok(k % 2, (k + 1) % 2, 7);
    }
    // The transfers returned on f+1 replies: replica 1 may execute them
    // (and publish its status) a moment later.
    let mut target = h0;
    wait_until("replica 1 executes the transfers", || {
        target = status(&c, 1)["height"].as_u64().unwrap();
        target > h0
    });
    let after = dump(profile.path());
    let h1: u64 = element_text(&after, "height")
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height on the page:\n{after}"));
    assert!(
        h1 >= target,
        "the page shows height {h1}, the replica is at {target}"
    );
    assert_eq!(element_text(&after, "state").as_deref(), Some("normal"));
    let shot = screenshot(profile.path(), &url, "1100,1100", 3000, "dashboard.png");
    eprintln!("dashboard screenshot: {}", shot.display());
}
