//! The proposal monitor (`monitor.rs`): a backup forwards requests its
//! primary leaves unproposed while it has room, then suspects it, well
//! before the request timer; a full pipeline or a PRE-PREPARE we merely
//! missed is never blamed.

use super::*;

/// Replica `i` (a backup of view 0) that executed seq 1 in a round of no
/// time at all: four rounds are below the floor, so its deadline is an
/// eighth of the request timeout (1,000 ms): 125 ms.
fn warmed(net: &Net, i: u32) -> Replica {
    let mut r = net.replica(i);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    net.run_to_execute(&mut r, 1, &a);
    r
}

/// A client hands `r` its request `nonce`.
fn request(net: &Net, r: &mut Replica, now: Time, nonce: u64) -> Vec<String> {
    net.describe(&feed(r, now, Input::Request(net.tx(0, nonce))))
}

/// Ticks `r` at every millisecond of `from..=to` and returns the forwards
/// and suspicions it sent, each with its time.
fn monitor_actions(net: &Net, r: &mut Replica, from: u64, to: u64) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for ms in from..=to {
        for a in net.describe(&feed(r, at(ms), Input::Tick)) {
            if a.contains("Request(") || a.contains("Suspect(") {
                out.push((ms, a));
            }
        }
    }
    out
}

fn suspicion(ms: u64) -> Option<(u64, String)> {
    Some((ms, "Broadcast(Suspect(v0)@r1)".to_string()))
}

#[test]
fn a_backup_forwards_then_suspects_a_primary_that_leaves_a_request_waiting() {
    let net = Net::new(4);
    let mut r1 = warmed(&net, 1);
    assert_eq!(request(&net, &mut r1, at(10), 2), Vec::<String>::new());
    assert_eq!(r1.next_deadline(), Some(at(72)));
    assert_eq!(
        monitor_actions(&net, &mut r1, 11, 700),
        [
            (72, "Send(r0,Request(nonce 2))".to_string()),
            (135, "Broadcast(Suspect(v0)@r1)".to_string()),
        ],
        "forwarded once at D/2, suspected once at D, long before the request timer"
    );
    assert_eq!(r1.stats().primaries_suspected_stalling, 1);
    assert_eq!(r1.stats().requests_forwarded, 1);

    // Control: a primary that proposes the request in time is not blamed.
    let mut r1 = warmed(&net, 1);
    request(&net, &mut r1, at(10), 2);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    deliver(&mut r1, at(100), 0, net.pre_prepare(0, 2, &b));
    assert_eq!(monitor_actions(&net, &mut r1, 101, 900), []);
    assert_eq!(r1.stats().primaries_suspected_stalling, 0);
}

#[test]
fn the_deadline_is_three_measured_rounds_within_its_bounds() {
    let net = Net::new(4);
    // No round measured yet, no round trip known: the request timeout;
    // the forward at half of that.
    let mut r1 = net.replica(1);
    request(&net, &mut r1, at(0), 1);
    assert_eq!(r1.timers.get(Timer::Proposal), Some(at(500)));

    // A round of 100 ms: three of them, 300 ms.
    let mut r1 = net.replica(1);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    for i in [2, 3] {
        deliver(&mut r1, at(0), i, net.prepare(i, 0, 1, a.digest));
    }
    for i in [0, 2, 3] {
        deliver(&mut r1, at(100), i, net.commit(i, 0, 1, a.digest));
    }
    assert_eq!(r1.last_executed(), Seq(1));
    request(&net, &mut r1, at(110), 2);
    let acts = monitor_actions(&net, &mut r1, 111, 900);
    assert_eq!(acts.first().map(|a| a.0), Some(260));
    assert_eq!(acts.last(), suspicion(410).as_ref());

    // A round of 1,000 ms: the ceiling, twice the request timeout.
    let mut r1 = net.replica(1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    for i in [2, 3] {
        deliver(&mut r1, at(0), i, net.prepare(i, 0, 1, a.digest));
    }
    for i in [0, 2, 3] {
        deliver(&mut r1, at(1_000), i, net.commit(i, 0, 1, a.digest));
    }
    request(&net, &mut r1, at(1_010), 2);
    assert_eq!(r1.timers.get(Timer::Proposal), Some(at(2_010)));
}

#[test]
fn a_full_pipeline_is_not_blamed() {
    let net = Net::new(4);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let c = net.batch("C", T0_MS, vec![net.tx(0, 3)]);
    // pipeline_depth 2: seqs 2 and 3 proposed, neither executed.
    let mut r1 = warmed(&net, 1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 2, &b));
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 3, &c));
    request(&net, &mut r1, at(0), 4);
    assert_eq!(monitor_actions(&net, &mut r1, 1, 700), []);

    // Control: with seq 3 not proposed there is room, and the waiting
    // request is blamed on the primary.
    let mut r1 = warmed(&net, 1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 2, &b));
    request(&net, &mut r1, at(0), 4);
    let acts = monitor_actions(&net, &mut r1, 1, 700);
    assert_eq!(acts.last(), suspicion(125).as_ref());
}

#[test]
fn a_pre_prepare_we_missed_is_not_blamed_on_the_primary() {
    let net = Net::new(4);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    // f+1 backups prepared seq 2, whose PRE-PREPARE never reached us: the
    // primary did propose; we cannot tell how full its pipeline is.
    let mut r1 = warmed(&net, 1);
    request(&net, &mut r1, at(0), 3);
    deliver(&mut r1, at(0), 2, net.prepare(2, 0, 2, b.digest));
    deliver(&mut r1, at(0), 3, net.prepare(3, 0, 2, b.digest));
    assert_eq!(monitor_actions(&net, &mut r1, 1, 700), []);

    // Control: one PREPARE (f) could be a Byzantine backup's invention.
    let mut r1 = warmed(&net, 1);
    request(&net, &mut r1, at(0), 3);
    deliver(&mut r1, at(0), 2, net.prepare(2, 0, 2, b.digest));
    let acts = monitor_actions(&net, &mut r1, 1, 700);
    assert_eq!(acts.last(), suspicion(125).as_ref());
}

#[test]
fn a_request_seen_proposed_before_its_client_sent_it_does_not_wait() {
    let net = Net::new(4);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    // The PRE-PREPARE outruns the client's copy of its transaction.
    let mut r1 = warmed(&net, 1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 2, &b));
    request(&net, &mut r1, at(1), 2);
    assert_eq!(monitor_actions(&net, &mut r1, 2, 700), []);

    // Control: a request the PRE-PREPARE did not carry waits.
    let mut r1 = warmed(&net, 1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 2, &b));
    request(&net, &mut r1, at(1), 3);
    let acts = monitor_actions(&net, &mut r1, 2, 700);
    assert_eq!(acts.last(), suspicion(126).as_ref());
}

/// PBFT §4.5.2 doubles the NEW-VIEW wait per failed attempt; the first
/// wait is the monitor's deadline, so a new primary that never answers is
/// passed over after a few measured rounds, not a whole request timeout.
#[test]
fn the_first_new_view_wait_follows_the_measured_round() {
    let net = Net::new(4);
    let mut r2 = warmed(&net, 2);
    for i in [1, 3] {
        let vc = net.view_change(i, 1, vec![]);
        deliver(&mut r2, at(10), i, Message::ViewChange(vc));
    }
    assert_eq!(r2.changing_to(), Some(View(1)));
    assert_eq!(r2.timers.get(Timer::ViewChange), Some(at(135)));
}

/// A driver may turn the monitor off (the simulator does, to show what the
/// request timer alone catches): then a waiting request is left to the
/// request timer, and the first NEW-VIEW wait is the request timeout.
#[test]
fn with_the_monitor_off_only_the_request_timer_acts() {
    let net = Net::new(4);
    let mut r1 = warmed(&net, 1);
    r1.watch_proposals(false);
    request(&net, &mut r1, at(10), 2);
    assert_eq!(r1.timers.get(Timer::Proposal), None);
    assert_eq!(monitor_actions(&net, &mut r1, 11, 900), []);

    let mut r2 = warmed(&net, 2);
    r2.watch_proposals(false);
    for i in [1, 3] {
        let vc = net.view_change(i, 1, vec![]);
        deliver(&mut r2, at(10), i, Message::ViewChange(vc));
    }
    assert_eq!(r2.timers.get(Timer::ViewChange), Some(at(1_010)));
}

/// Before any round was measured, the transport's round trips stand in for
/// one: three times the round trip to the 2f-th nearest peer, within the
/// deadline's bounds; with fewer than 2f peers known, the request timeout.
#[test]
fn before_a_round_the_deadline_follows_the_quorums_round_trip() {
    let net = Net::new(4);
    let ms = |ms: u64| ms * 1000;
    let proposal_timer = |rtts: &[(u32, u64)]| {
        let mut r1 = net.replica(1);
        for (peer, rtt) in rtts {
            r1.observe_link_rtt(ReplicaId(*peer), ms(*rtt));
        }
        request(&net, &mut r1, at(0), 1);
        r1.timers.get(Timer::Proposal)
    };
    // One peer known (2f = 2 needed): the request timeout, D = 1,000 ms,
    // the first check at D/2.
    assert_eq!(proposal_timer(&[(0, 40)]), Some(at(500)));
    // Two known: the farther of them counts, D = 3 x 60 ms.
    assert_eq!(proposal_timer(&[(0, 40), (2, 60)]), Some(at(90)));
    // A third (Byzantine, say) that slows its link does not stretch D: the
    // 2f-th nearest of three is still 60 ms.
    assert_eq!(
        proposal_timer(&[(0, 40), (2, 60), (3, 5_000)]),
        Some(at(90))
    );
    // Reports about ourselves or strangers count for nothing.
    assert_eq!(proposal_timer(&[(0, 40), (1, 60), (9, 60)]), Some(at(500)));
    // Fast links: the floor, an eighth of the timeout (125 ms).
    assert_eq!(proposal_timer(&[(0, 1), (2, 1)]), Some(at(62)));
    // Slow links: up to twice the timeout (the same ceiling as for
    // measured rounds), where the fixed guess of half the timeout replaced
    // honest primaries.
    assert_eq!(proposal_timer(&[(0, 400), (2, 400)]), Some(at(600)));
    assert_eq!(proposal_timer(&[(0, 900), (2, 900)]), Some(at(1_000)));

    // A measured round counts, but never as less than the round trip: a
    // round of no time at all (a PRE-PREPARE that arrived after its votes)
    // is taken as 60 ms here, D = 180 ms.
    let mut r1 = warmed(&net, 1);
    r1.observe_link_rtt(ReplicaId(0), ms(40));
    r1.observe_link_rtt(ReplicaId(2), ms(60));
    request(&net, &mut r1, at(10), 2);
    assert_eq!(r1.timers.get(Timer::Proposal), Some(at(100)));

    // And the first NEW-VIEW wait follows them too.
    let mut r2 = net.replica(2);
    r2.observe_link_rtt(ReplicaId(0), ms(50));
    r2.observe_link_rtt(ReplicaId(1), ms(50));
    for i in [1, 3] {
        let vc = net.view_change(i, 1, vec![]);
        deliver(&mut r2, at(10), i, Message::ViewChange(vc));
    }
    assert_eq!(r2.timers.get(Timer::ViewChange), Some(at(160)));
}
