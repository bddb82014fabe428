//! Restarts: no equivocation across a crash (persisted votes, the rule that a
//! crashed replica sits out the view it crashed in), and resuming a view
//! change or a new primary's O-set.

use super::*;

/// §4.2 safety across a crash. The paper's replicas keep their log in stable
/// storage; here a PREPARE is not written when sent. A clean stop saves it
/// (`unsaved_votes`); after a crash the replica sends no new PREPARE in the
/// view it crashed in, since it cannot know which ones it sent there.
///
/// Setup: backup 1 accepted PRE-PREPARE (v0, s1, A) and stopped; it restarts
/// from the votes a clean stop saved, or from nothing after a crash.
/// Expect: clean stop — a PRE-PREPARE (v0, s1, B) from the (Byzantine)
/// primary is dropped ("conflicts with a prepare we signed"); the original
/// one is accepted again and yields the very same signed PREPARE. Crash —
/// the PRE-PREPARE for B is recorded but gives no PREPARE at all, and neither
/// does a fresh one at s2; in view 1 it prepares again.
#[test]
fn restarted_backup_does_not_sign_a_conflicting_prepare() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut r1 = net.replica(1);
    let before = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    let saved = r1.unsaved_votes();
    assert_eq!(saved.len(), 1);

    let mut r1 = net.restart(
        1,
        Recovered {
            ops: saved,
            ..Recovered::default()
        },
    );
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 1, &b),
        Refusal::PrePrepareConflictsWithOurPrepare,
    );
    let after = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(net.describe(&after), ["Broadcast(Prepare(v0,s1,A)@r1)"]);
    let prepare = |acts: &[Action]| match acts {
        [Action::Broadcast(Message::Prepare(p))] => p.clone(),
        other => panic!("not one PREPARE: {:?}", net.describe(other)),
    };
    assert_eq!(prepare(&after), prepare(&before), "the same signed PREPARE");

    // After a crash (backup 2 here: backup 1 leads view 1).
    let mut r2 = net.restart(
        2,
        Recovered {
            votes_lost: true,
            ..Recovered::default()
        },
    );
    assert_eq!(
        net.describe(&drain(&mut r2)),
        ["Persist[Abstain(v0)]"],
        "the rule is written before anything is sent"
    );
    let acts = deliver(&mut r2, at(0), 0, net.pre_prepare(0, 1, &b));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let c = net.batch("C", T0_MS, vec![net.tx(0, 3)]);
    let acts = deliver(&mut r2, at(0), 0, net.pre_prepare(0, 2, &c));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    assert!(r2.stats().ignored.is_empty(), "recorded, not refused");
    let nv = new_view_v1(&net);
    let acts = deliver(&mut r2, at(0), 1, Message::NewView(nv));
    assert!(
        net.describe(&acts)
            .contains(&"Broadcast(Prepare(v1,s2,B)@r2)".to_string()),
        "{:?}",
        net.describe(&acts)
    );
}

/// §4.2 safety across a crash, for the primary: a sequence number is assigned
/// once.
///
/// Setup: primary 0 proposed A at s1 and stopped; it restarts from the votes
/// a clean stop saved, or from nothing after a crash.
/// Expect: clean stop — a new request is proposed at s2, never a second
/// batch at s1. Crash — it proposes nothing in view 0 (it cannot know which
/// seqs it used); at its first request-timer expiry it suspects itself.
#[test]
fn restarted_primary_does_not_reuse_a_seq() {
    let net = Net::new(4);
    net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut r0 = net.replica(0);
    feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));
    let recovered = Recovered {
        ops: r0.unsaved_votes(),
        ..Recovered::default()
    };
    let mut r0 = net.restart(0, recovered);
    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 2)));
    assert_eq!(net.describe(&acts), ["Broadcast(PrePrepare(v0,s2,B)@r0)"]);

    let mut r0 = net.restart(
        0,
        Recovered {
            votes_lost: true,
            ..Recovered::default()
        },
    );
    assert_eq!(net.describe(&drain(&mut r0)), ["Persist[Abstain(v0)]"]);
    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 2)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let timeout = config().request_timeout_ms;
    let acts = feed(&mut r0, at(timeout), Input::Tick);
    assert!(
        net.describe(&acts)
            .contains(&"Broadcast(Suspect(v0)@r0)".to_string()),
        "{:?}",
        net.describe(&acts)
    );
}

/// §4.4 across a crash: a replica that sent VIEW-CHANGE for v+1 must not
/// return to view v (it promised not to), and keeps asking for v+1.
///
/// Setup: backup 2 prepared A at s1, then started a view change on 2 SUSPECTs,
/// crashed and restarted from its persisted ops.
/// Expect: it is still changing to v1; the first Tick re-broadcasts the same
/// VIEW-CHANGE (with P = s1); a COMMIT of view 0 is dropped ("message for a
/// view being abandoned").
#[test]
fn restart_during_view_change_resumes_it() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r2 = net.replica(2);
    let mut acts = deliver(&mut r2, at(0), 0, net.pre_prepare(0, 1, &a));
    acts.extend(deliver(&mut r2, at(0), 3, net.prepare(3, 0, 1, a.digest)));
    acts.extend(deliver(&mut r2, at(0), 3, net.suspect(3, 0)));
    acts.extend(deliver(&mut r2, at(0), 1, net.suspect(1, 0)));
    assert_eq!(r2.changing_to(), Some(View(1)));
    let recovered = Recovered {
        ops: persisted(&acts),
        ..Recovered::default()
    };

    let mut r2 = net.restart(2, recovered);
    assert_eq!((r2.view(), r2.changing_to()), (View(0), Some(View(1))));
    let acts = feed(&mut r2, at(5_000), Input::Tick);
    assert_eq!(
        net.describe(&acts),
        ["Broadcast(ViewChange(v1,h0,C@[],P=[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r2,r3])])@r2)"]
    );
    net.expect_ignored(
        &mut r2,
        3,
        net.commit(3, 0, 1, a.digest),
        Refusal::AbandonedView,
    );
}

/// The actions of replica 1 becoming primary of view 1 (see
/// [`new_primary_sends_new_view_reproposing_prepared_and_null_requests`]).
fn become_primary_of_v1(net: &Net) -> Vec<Action> {
    let (_, [_, vc2, vc3]) = view_changes_for_v1(net);
    let mut r1 = net.replica(1);
    let mut acts = deliver(&mut r1, at(0), 2, Message::ViewChange(vc2));
    acts.extend(deliver(&mut r1, at(0), 3, Message::ViewChange(vc3)));
    assert!(r1.is_primary() && r1.view() == View(1));
    acts
}

/// §4.2 "a primary assigns a sequence number once" across a crash, for
/// sequence numbers taken by a NEW-VIEW's O-set (§4.4).
///
/// Setup: replica 1 became primary of view 1 with O = s1 null, s2 B, crashed,
/// and restarts from what the node's store gives back (`load_ops` order).
/// Expect: primary of v1, next proposal at s3; a client request then gives no
/// action (s1 and s2 are in flight, pipeline depth 2).
#[test]
fn restarted_new_primary_keeps_its_o_set_seqs() {
    let net = Net::new(4);
    let acts = become_primary_of_v1(&net);
    let recovered = Recovered {
        ops: through_store(&acts),
        ..Recovered::default()
    };
    let mut r1 = net.restart(1, recovered);
    assert!(r1.is_primary());
    assert_eq!(r1.requests.next_seq, Seq(3));

    let acts = feed(&mut r1, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
}

/// As [`restarted_new_primary_keeps_its_o_set_seqs`], but the replica is
/// rebuilt from its `Persist` ops in write order, which is what
/// [`Recovered::ops`] documents ("in write order").
///
/// Setup: replica 1 became primary of view 1 (O = s1 null, s2 B) and restarts
/// from `[View v0->v1, VIEW-CHANGE, NEW-VIEW, View v1]`.
/// Expect: next proposal at s3 and no action for a client request. (Restore
/// once handled `NewView` while its view was still v0 — the `View v1` op
/// follows it in the same write — left `next_seq` at s1, and the next
/// proposal tripped the double-sign assertion.)
#[test]
fn restarted_new_primary_from_ops_in_write_order_keeps_its_o_set_seqs() {
    let net = Net::new(4);
    let acts = become_primary_of_v1(&net);
    let recovered = Recovered {
        ops: persisted(&acts),
        ..Recovered::default()
    };
    let mut r1 = net.restart(1, recovered);
    assert!(r1.is_primary());
    assert_eq!(
        r1.requests.next_seq,
        Seq(3),
        "s1 and s2 belong to the O-set"
    );

    let acts = feed(&mut r1, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
}

/// §4.4 with §4.6: a backup that prepared A at s1 in view 0 (and sent its
/// COMMIT), then entered view 1 whose NEW-VIEW re-proposes A at s1, and
/// restarts. Its view-0 COMMIT must not count as sent in view 1, and the O-set
/// PRE-PREPARE must be back in the slot without the primary re-sending it.
///
/// Setup: replica 2 gets PRE-PREPARE(v0,s1,A) and PREPARE from 3 (prepared,
/// COMMIT v0 sent), SUSPECTs from 3 and 1 (VIEW-CHANGE), the NEW-VIEW of
/// view 1, and restarts from its persisted ops (in write order, and as read
/// back from a store), after a clean stop (its view-1 PREPARE saved) or a
/// crash (`votes_lost`).
/// Expect: clean stop — PREPARE(v1,s1,A) from 3 alone makes it prepared in
/// view 1 (with its own PREPARE): it persists the certificate with
/// COMMIT(v1,s1,A) and broadcasts the COMMIT. Crash — it sent a PREPARE it
/// no longer holds, so 3's is not enough; with 0's it is prepared by
/// [r0, r3] and commits the same way.
#[test]
fn restarted_backup_prepares_the_new_views_o_set() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r2 = net.replica(2);
    let mut acts = deliver(&mut r2, at(0), 0, net.pre_prepare(0, 1, &a));
    acts.extend(deliver(&mut r2, at(0), 3, net.prepare(3, 0, 1, a.digest)));
    acts.extend(deliver(&mut r2, at(0), 3, net.suspect(3, 0)));
    acts.extend(deliver(&mut r2, at(0), 1, net.suspect(1, 0)));
    let own_vc = acts
        .iter()
        .find_map(|a| match a {
            Action::Broadcast(Message::ViewChange(v)) => Some(v.clone()),
            _ => None,
        })
        .expect("two suspects start a view change");
    let vcs = vec![
        net.view_change(1, 1, vec![]),
        own_vc,
        net.view_change(3, 1, vec![]),
    ];
    let nv = net.new_view(1, 1, vcs, &[(1, a.digest)]);
    acts.extend(deliver(&mut r2, at(0), 1, Message::NewView(nv)));
    let mut stopped = acts.clone();
    stopped.push(Action::Persist(r2.unsaved_votes()));
    for (name, ops, votes_lost) in [
        ("write", persisted(&stopped), false),
        ("store", through_store(&stopped), false),
        ("crash write", persisted(&acts), true),
        ("crash store", through_store(&acts), true),
    ] {
        let mut r2 = net.restart(
            2,
            Recovered {
                ops,
                votes_lost,
                ..Recovered::default()
            },
        );
        assert_eq!(r2.view(), View(1), "{name}");
        let abstain: &[&str] = if votes_lost {
            &["Persist[Abstain(v1)]"]
        } else {
            &[]
        };
        assert_eq!(net.describe(&drain(&mut r2)), abstain, "{name}");
        let mut x = deliver(&mut r2, at(0), 3, net.prepare(3, 1, 1, a.digest));
        let mut prepared_by = "r2,r3";
        if votes_lost {
            assert_eq!(net.describe(&x), Vec::<String>::new(), "{name}");
            x = deliver(&mut r2, at(0), 0, net.prepare(0, 1, 1, a.digest));
            prepared_by = "r0,r3";
        }
        assert_eq!(
            net.describe(&x),
            [
                format!("Persist[Prepared(PrePrepare(v1,s1,A)@r1,prepares@[{prepared_by}]), Commit(v1,s1,A)@r2]"),
                "Broadcast(Commit(v1,s1,A)@r2)".to_string(),
            ],
            "{name}"
        );
    }
}
