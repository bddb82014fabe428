//! Bounds on what peers can make a replica hold or check (STYLE 9, issues 17
//! and 24): the future-view buffer, extreme views and seqs, configuration
//! ranges, and the pacing of signature checks.

use super::*;

/// Issue 17, defect 6: the future-view buffer is bounded in bytes per
/// sender, and a PRE-PREPARE that could never be accepted (not signed by its
/// view's primary, or an oversize batch) is not buffered at all.
///
/// Setup: replica 0 in view 0. Replica 2 (not the primary of view 1) sends a
/// PRE-PREPARE for view 1; replica 1 (view 1's primary) sends one with a batch
/// over `BATCH_BYTES_MAX`, then eight with batches of 900 KB.
/// Expect: the first two are refused with their reasons; the buffer holds at
/// most `FUTURE_BYTES_PER_SENDER` bytes of replica 1's, the newest kept.
#[test]
fn future_view_pre_prepares_are_checked_and_bounded_in_bytes() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    let digest = Digest([7; 32]);
    net.expect_ignored_input(
        &mut r0,
        at(0),
        Input::Message {
            from: ReplicaId(2),
            message: net.pre_prepare_by(2, 1, 1, digest, &[1; 100]),
        },
        Refusal::PrePrepareNotFromPrimary,
    );
    let huge = vec![0; crate::tx::BATCH_BYTES_MAX + 1];
    deliver(
        &mut r0,
        at(0),
        1,
        net.pre_prepare_by(1, 1, 1, digest, &huge),
    );
    assert_eq!(
        r0.stats().ignored.get(&Refusal::PrePrepareBatchTooLarge),
        Some(&1)
    );
    assert_eq!(r0.footprint().future_messages, 0);
    for seq in 1..=8 {
        let batch = vec![seq as u8; 900_000];
        deliver(
            &mut r0,
            at(0),
            1,
            net.pre_prepare_by(1, 1, seq, digest, &batch),
        );
        let f = r0.footprint();
        assert!(
            f.future_bytes <= super::super::FUTURE_BYTES_PER_SENDER,
            "{} bytes buffered",
            f.future_bytes
        );
        assert!(f.exceeded(&r0.footprint_limits()).is_empty());
    }
    assert_eq!(r0.footprint().future_messages, 2, "the two newest fit");
    assert_eq!(r0.stats().ignored.get(&Refusal::FutureBufferFull), Some(&6));
}

/// Issue 24, defect 11: peer-supplied views and seqs at `u64::MAX` are
/// handled without overflow (a debug build panicked on `View::next`).
#[test]
fn extreme_views_and_seqs_from_peers_do_not_overflow() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    let max = u64::MAX;
    let inputs = vec![
        (1, Message::NewViewRequest { view: View(max) }),
        (
            1,
            Message::NewViewRequest {
                view: View(max - 1),
            },
        ),
        (
            2,
            Message::Fetch {
                from: Seq(max),
                to: Seq(max),
            },
        ),
        (
            2,
            Message::Fetch {
                from: Seq(0),
                to: Seq(max),
            },
        ),
        (3, net.prepare(3, max, max, Digest([1; 32]))),
        (3, net.commit(3, max, max, Digest([1; 32]))),
        (3, net.suspect(3, max)),
        (3, net.checkpoint(3, max, Digest([1; 32]))),
        (1, Message::ViewChange(net.view_change(1, max, vec![]))),
    ];
    for (from, m) in inputs {
        deliver(&mut r0, at(0), from, m);
    }
    feed(&mut r0, at(10_000), Input::Tick);
    assert_eq!(r0.view(), View(0));
}

/// Issue 24, defect 9: each parameter is refused outside its range (upper
/// bounds included), naming it; the ends pass. Before, a checkpoint
/// interval near `u64::MAX` wrapped `2 * k` in release and passed.
#[test]
fn each_parameter_is_refused_outside_its_range() {
    let base = Config {
        checkpoint_interval: 1,
        watermark_window: 8_192,
        pipeline_depth: 1,
        request_timeout_ms: 1_000,
        view_change_timeout_max_ms: 3_600_000,
        retransmit_ms: 10,
        pending_requests_max: 1_000_000,
        pending_per_client_max: 1,
        ..Config::default()
    };
    assert_eq!(base.validate(), Ok(()));
    let set = |key: &str, v: u64| {
        let mut c = base.clone();
        match key {
            "checkpoint_interval" => {
                c.checkpoint_interval = v;
                c.watermark_window = v.saturating_mul(2).clamp(2, 8_192);
            }
            "watermark_window" => c.watermark_window = v,
            "batch_txs_max" => c.batch_txs_max = v as usize,
            "pipeline_depth" => c.pipeline_depth = v,
            "request_timeout_ms" => {
                c.request_timeout_ms = v;
                c.retransmit_ms = 10;
            }
            "view_change_timeout_max_ms" => {
                c.view_change_timeout_max_ms = v;
                c.request_timeout_ms = v.clamp(50, 600_000);
            }
            "retransmit_ms" => {
                c.retransmit_ms = v;
                c.request_timeout_ms = 600_000;
            }
            "pending_requests_max" => c.pending_requests_max = v as usize,
            "pending_per_client_max" => {
                c.pending_per_client_max = v as usize;
                c.pending_requests_max = 1_000_000;
            }
            "timestamp_skew_max_ms" => c.timestamp_skew_max_ms = v,
            "future_messages_max" => c.future_messages_max = v as usize,
            "fetch_batches_max" => c.fetch_batches_max = v,
            other => panic!("no such key {other}"),
        }
        c
    };
    for (key, min, max) in Config::RANGES {
        for (v, ok) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
            let c = set(key, v);
            match c.validate() {
                Ok(()) => assert!(ok, "{key} = {v} accepted: {c:?}"),
                Err(e) => {
                    assert!(!ok, "{key} = {v} refused: {e}");
                    assert!(e.contains(key), "{key} = {v}: {e}");
                }
            }
        }
    }
    let wrapping = Config {
        checkpoint_interval: u64::MAX / 2 + 1,
        watermark_window: u64::MAX / 2 + 1,
        ..base.clone()
    };
    assert!(wrapping.validate().is_err());
}

/// Issue 17: checking a VIEW-CHANGE's certificates costs up to (2f+1)·(L+1)
/// signatures. A refused one is not checked again — its sender's later
/// VIEW-CHANGEs for that view or below are dropped unchecked — and the
/// checks of a sender's VIEW-CHANGEs for new views are paced (a burst of 4,
/// then one per half request timeout). Before, a peer could resend one
/// refused VIEW-CHANGE (or new variants of it) for ever, each checked.
///
/// Setup: backup 2 sends VIEW-CHANGEs whose prepared certificate has f
/// PREPAREs only, for views 1, 1 again, 2, 3, 4, 5; then replica 1 a valid one.
/// Expect: the first is refused for the certificate, the repeat as refused
/// before, views 2–4 checked and refused, view 5 over the rate; replica 1's
/// is kept.
#[test]
fn a_refused_view_change_is_not_checked_again_and_checks_are_paced() {
    let net = Net::new(4);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut bad = net.prepared_proof(0, 2, &b, &[2, 3]);
    bad.prepares.truncate(1);
    let mut r3 = net.replica(3);
    let vc = |view| Message::ViewChange(net.view_change(2, view, vec![bad.clone()]));
    let below = Refusal::ViewChangePreparedBelowQuorum;
    net.expect_ignored(&mut r3, 2, vc(1), below);
    net.expect_ignored(&mut r3, 2, vc(1), Refusal::ViewChangeSenderRefused);
    for view in 2..=4 {
        net.expect_ignored(&mut r3, 2, vc(view), below);
    }
    net.expect_ignored(&mut r3, 2, vc(5), Refusal::ViewChangeChecksPaced);
    assert!(!r3.view_change.received.contains_key(&ReplicaId(2)));
    deliver(
        &mut r3,
        at(0),
        1,
        Message::ViewChange(net.view_change(1, 1, vec![])),
    );
    assert!(
        r3.view_change.received.contains_key(&ReplicaId(1)),
        "another sender is checked"
    );
}

/// Issue 17, defect 5: a peer whose messages keep failing their signature
/// check (or are refused after it) spends an allowance; beyond it its
/// messages are dropped unchecked until the allowance refills, while
/// another peer's messages are still checked and used.
#[test]
fn wasted_signature_checks_are_limited_per_peer() {
    use super::super::{WASTED_CHECKS_BURST, WASTED_CHECK_INTERVAL_MS};
    let net = Net::new(4);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut r1 = net.replica(1);
    let broken = |k: u64| {
        let Message::Prepare(mut p) = net.prepare(2, 0, 2, b.digest) else {
            unreachable!()
        };
        p.signature[(k % 64) as usize] ^= 1 + (k / 64) as u8;
        Message::Prepare(p)
    };
    let bad = Refusal::PrepareBadSignature;
    let over = Refusal::WastedChecksSpent;
    for k in 0..WASTED_CHECKS_BURST {
        net.expect_ignored(&mut r1, 2, broken(k), bad);
    }
    net.expect_ignored(&mut r1, 2, broken(5_000), over);
    // A validly signed vote of that peer is not checked either for now.
    net.expect_ignored(&mut r1, 2, net.prepare(2, 0, 2, b.digest), over);
    // Another peer is checked and its vote used.
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &b));
    deliver(&mut r1, at(0), 3, net.prepare(3, 0, 1, b.digest));
    assert!(r1.log.slots[&Seq(1)].prepares.contains_key(&ReplicaId(3)));
    // The allowance refills at one check per interval.
    let later = at(WASTED_CHECK_INTERVAL_MS);
    let input = |m| Input::Message {
        from: ReplicaId(2),
        message: m,
    };
    net.expect_ignored_input(&mut r1, later, input(broken(5_001)), bad);
    net.expect_ignored_input(&mut r1, later, input(broken(5_002)), over);
    // Well after, a valid vote of the peer is checked and used.
    let refilled = at(10 * WASTED_CHECKS_BURST * WASTED_CHECK_INTERVAL_MS);
    feed(&mut r1, refilled, input(net.prepare(2, 0, 2, b.digest)));
    assert!(r1.log.slots[&Seq(2)].prepares.contains_key(&ReplicaId(2)));
}
