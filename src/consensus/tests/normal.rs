//! §4.2 normal case: the primary's PRE-PREPARE, a backup's guards on it, then
//! prepared, committed-local and execution in sequence order.

use super::*;

// ----- §4.1 client requests and §4.2 normal case: the primary -------------------

/// §4.2 pre-prepare phase ("the primary assigns a sequence number n to the
/// request, multicasts a pre-prepare message ... and appends it to its log").
///
/// Setup: replica 0, primary of view 0, holding nothing.
/// Expect: one client request gives exactly Broadcast(PRE-PREPARE v0 s1 with
/// its batch), not persisted (a crash makes the restarted primary sit the view
/// out, see `restarted_primary_proposes_nothing_in_its_crash_view`); a clean
/// stop saves it (`unsaved_votes`).
#[test]
fn primary_broadcasts_pre_prepare_and_saves_it_only_on_a_clean_stop() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    let tx = net.tx(0, 1);
    net.batch("A", T0_MS, vec![tx.clone()]);

    let acts = feed(&mut r0, at(0), Input::Request(tx));

    assert_eq!(net.describe(&acts), ["Broadcast(PrePrepare(v0,s1,A)@r0)"]);
    assert_eq!(r0.pending_requests(), 1);
    let saved = Action::Persist(r0.unsaved_votes());
    assert_eq!(net.describe(&[saved]), ["Persist[PrePrepare(v0,s1,A)@r0]"]);
}

/// §4.2 with this implementation's pipeline bound (`pipeline_depth`, STYLE 9).
///
/// Setup: primary 0, pipeline depth 2; three requests arrive one by one.
/// Expect: s1 and s2 are proposed, the third request waits (no action); when
/// s1 commits (2f PREPAREs, then 2f+1 COMMITs with its own) the primary emits
/// Execute(s1) and then proposes the waiting request at s3.
#[test]
fn primary_pipeline_bound_defers_proposal_until_execution() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    net.batch("C", T0_MS, vec![net.tx(0, 3)]);

    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), ["Broadcast(PrePrepare(v0,s1,A)@r0)"]);
    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 2)));
    assert_eq!(net.describe(&acts), ["Broadcast(PrePrepare(v0,s2,B)@r0)"]);
    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 3)));
    assert_eq!(net.describe(&acts), Vec::<String>::new(), "pipeline full");

    assert!(deliver(&mut r0, at(0), 1, net.prepare(1, 0, 1, a.digest)).is_empty());
    let acts = deliver(&mut r0, at(0), 2, net.prepare(2, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r1,r2]), Commit(v0,s1,A)@r0]",
            "Broadcast(Commit(v0,s1,A)@r0)",
        ]
    );
    assert!(deliver(&mut r0, at(0), 1, net.commit(1, 0, 1, a.digest)).is_empty());
    let acts = deliver(&mut r0, at(0), 2, net.commit(2, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Execute(s1,A,cert@[r0,r1,r2])",
            "Broadcast(PrePrepare(v0,s3,C)@r0)",
        ]
    );
}

// ----- §4.2 normal case: a backup and the PRE-PREPARE guards ----------------------

/// §4.2: "a backup accepts a pre-prepare message provided the signatures are
/// correct, it is in view v, it has not accepted a pre-prepare for view v and
/// sequence number n containing a different digest, and n is between h and H;
/// if it accepts, it enters a prepare phase by multicasting a PREPARE".
///
/// Setup: backup 1 in view 0.
/// Expect: a valid PRE-PREPARE (v0, s1, A) from primary 0 gives exactly
/// Broadcast(PREPARE) (not persisted, like the primary's PRE-PREPARE), and
/// nothing is counted as ignored.
#[test]
fn backup_accepts_pre_prepare_and_broadcasts_its_prepare() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);

    let acts = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));

    assert_eq!(net.describe(&acts), ["Broadcast(Prepare(v0,s1,A)@r1)"]);
    assert!(r1.stats().ignored.is_empty());
}

/// Issue 24, defect 7: the wall clock steps forward an hour and is
/// corrected. Fed the wall clock as its only clock, the core kept the
/// highest time it had seen, so after the correction it refused every
/// PRE-PREPARE for skew (and its timers stood still) for an hour. Now the
/// timers run on the monotonic clock of the inputs and the skew check reads
/// the wall clock as it is now.
///
/// Setup: backup 1; its wall clock at T0 + 1 h, then back at T0.
/// Expect: a PRE-PREPARE stamped T0 is refused for skew while the clock is
/// an hour ahead, and accepted (PREPARE sent) once it is corrected.
#[test]
fn a_wall_clock_step_and_its_correction_do_not_stall_a_backup() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    r1.set_wall_clock(T0_MS + 3_600_000);
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 1, &a),
        Refusal::PrePrepareClockSkew,
    );
    r1.set_wall_clock(T0_MS);
    let acts = deliver(&mut r1, at(2), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(net.describe(&acts), ["Broadcast(Prepare(v0,s1,A)@r1)"]);
}

/// §4.2 acceptance conditions, each violated once (STYLE 6: Byzantine input is
/// dropped with a reason and a counter).
///
/// Setup: a fresh backup 1 in view 0 per case.
/// Expect: no action, and exactly the named reason counted, for a PRE-PREPARE
/// signed by a backup; one signed by the primary but relayed by a backup; seq
/// 11 (above h + L + K = 10: one just above h + L is kept, see
/// `a_pre_prepare_just_above_the_window_is_kept_until_it_moves`) and seq 0
/// (at h); a digest that is not the batch's; a
/// batch holding a badly signed transaction; a timestamp more than
/// `timestamp_skew_max_ms` away from the backup's clock, either way.
#[test]
fn backup_ignores_invalid_pre_prepares() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut forged_tx = net.tx(0, 1);
    forged_tx.signature[40] ^= 1;
    let bad = net.batch("BAD", T0_MS, vec![forged_tx]);
    let future = net.batch("LATE", T0_MS + 60_001, vec![net.tx(0, 1)]);
    let past = net.batch("EARLY", T0_MS - 60_001, vec![net.tx(0, 1)]);

    let cases = [
        (
            2,
            net.pre_prepare_by(2, 0, 1, a.digest, &a.bytes),
            Refusal::PrePrepareNotFromPrimary,
        ),
        (
            2,
            net.pre_prepare(0, 1, &a),
            Refusal::PrePrepareNotFromPrimary,
        ),
        (
            0,
            net.pre_prepare(0, 11, &a),
            Refusal::PrePrepareOutsideWindow,
        ),
        (
            0,
            net.pre_prepare(0, 0, &a),
            Refusal::PrePrepareOutsideWindow,
        ),
        (
            0,
            net.pre_prepare_by(0, 0, 1, b.digest, &a.bytes),
            Refusal::PrePrepareDigestMismatch,
        ),
        (
            0,
            net.pre_prepare(0, 1, &bad),
            Refusal::PrePrepareBadlySignedTx,
        ),
        (
            0,
            net.pre_prepare(0, 1, &future),
            Refusal::PrePrepareClockSkew,
        ),
        (
            0,
            net.pre_prepare(0, 1, &past),
            Refusal::PrePrepareClockSkew,
        ),
    ];
    for (from, message, reason) in cases {
        let mut r1 = net.replica(1);
        net.expect_ignored(&mut r1, from, message, reason);
        assert!(
            r1.log.slots.values().all(|s| s.pre_prepare.is_none()),
            "{reason}"
        );
    }
}

/// A PRE-PREPARE for a seq just above our window (the primary's window is a
/// checkpoint ahead: the CHECKPOINTs that move ours have not all arrived)
/// is kept, not dropped, and answered with our PREPARE once the window
/// moves; one more than a checkpoint interval above it is still refused.
///
/// Setup: backup 1 executed s1, s2 (K = 2, L = 8, window (0, 8]) and
/// broadcast its CHECKPOINT s2.
/// Expect: PRE-PREPARE s9 — nothing sent, nothing refused; PRE-PREPARE s11
/// — refused ("outside the watermark window"); CHECKPOINTs s2 from 0 and 2
/// make s2 stable (window (2, 10]) and backup 1 broadcasts its PREPARE for
/// s9 at once. Without keeping it, s9 would wait for the primary's re-send
/// while the proposal monitor runs (seed 902995).
#[test]
fn a_pre_prepare_just_above_the_window_is_kept_until_it_moves() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    for seq in 1..=2 {
        let b = net.batch(&format!("B{seq}"), T0_MS, vec![net.tx(0, seq)]);
        net.run_to_execute(&mut r1, seq, &b);
    }
    let c2 = Digest([2; 32]);
    net.name(c2, "C2");
    feed(
        &mut r1,
        at(0),
        Input::Executed {
            seq: Seq(1),
            checkpoint_digest: Digest([1; 32]),
        },
    );
    let acts = feed(
        &mut r1,
        at(0),
        Input::Executed {
            seq: Seq(2),
            checkpoint_digest: c2,
        },
    );
    assert_eq!(net.describe(&acts), ["Broadcast(Checkpoint(s2,C2)@r1)"]);

    let nine = net.batch("NINE", T0_MS, vec![net.tx(1, 1)]);
    let ignored = r1.stats().ignored.clone();
    let acts = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 9, &nine));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    assert_eq!(r1.stats().ignored, ignored, "kept, not refused");
    assert!(!r1.log.slots.contains_key(&Seq(9)));
    let eleven = net.batch("ELEVEN", T0_MS, vec![net.tx(2, 1)]);
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 11, &eleven),
        Refusal::PrePrepareOutsideWindow,
    );

    deliver(&mut r1, at(0), 0, net.checkpoint(0, 2, c2));
    let acts = deliver(&mut r1, at(0), 2, net.checkpoint(2, 2, c2));
    let described = net.describe(&acts);
    assert!(
        described
            .iter()
            .any(|a| a.starts_with("Broadcast(Prepare(v0,s9,NINE)")),
        "{described:?}"
    );
    assert!(r1.log.slots[&Seq(9)].pre_prepare.is_some());
}

/// A backup remembers the client signatures it checked in a PRE-PREPARE
/// (the client's own copy of the transfer then needs no second check), and
/// only for the identical transaction.
///
/// Setup: backup 1 accepts PRE-PREPARE 1 carrying transfer T.
/// Expect: `verified_tx` vouches for T; not for T with another amount or
/// recipient and T's signature; PRE-PREPARE 2 carrying T with another
/// amount is refused as badly signed.
#[test]
fn a_backup_vouches_only_for_the_identical_transaction_it_checked() {
    let net = Net::new(4);
    let t = net.tx(0, 1);
    let a = net.batch("A", T0_MS, vec![t.clone()]);
    let mut r1 = net.replica(1);
    assert!(r1.verified_tx(&t).is_none());
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(
        r1.verified_tx(&t).map(crate::tx::VerifiedTx::into_inner),
        Some(t.clone())
    );
    let mut more = t.clone();
    more.amount += 1;
    let mut elsewhere = t.clone();
    elsewhere.to = net.clients[2].public();
    assert!(r1.verified_tx(&more).is_none());
    assert!(r1.verified_tx(&elsewhere).is_none());
    let b = net.batch("B", T0_MS, vec![more]);
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 2, &b),
        Refusal::PrePrepareBadlySignedTx,
    );
}

/// §4.2: a backup accepts at most one digest per (v, n) — a primary that
/// equivocates cannot get two batches prepared at one backup.
///
/// Setup: backup 1 accepted PRE-PREPARE (v0, s1, A).
/// Expect: a second PRE-PREPARE (v0, s1, B) from the same primary is dropped
/// ("conflicting digest (equivocation)"), the slot keeps A; a re-sent
/// PRE-PREPARE for A is counted as a duplicate and answered, once, with our
/// PREPARE sent to the primary (it may have missed it).
#[test]
fn backup_refuses_equivocating_pre_prepare_and_answers_a_resend() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut r1 = net.replica(1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));

    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 1, &b),
        Refusal::PrePrepareEquivocation,
    );
    let kept = r1.log.slots[&Seq(1)].pre_prepare.as_ref().map(|p| p.digest);
    assert_eq!(kept, Some(a.digest));

    let acts = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(net.describe(&acts), ["Send(r0,Prepare(v0,s1,A)@r1)"]);
    assert_eq!(
        r1.stats().ignored.get(&Refusal::PrePrepareDuplicate),
        Some(&1)
    );
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 1, &a),
        Refusal::PrePrepareDuplicate,
    );
}

/// §4.2 "replicas only accept messages of their current view"; §4.4, §4.5.2
/// (a replica that sees a later view asks for the NEW-VIEW that leads there).
///
/// Setup: backup 1 restarted into view 1 (persisted `View { v1 }`); a fresh
/// backup 1 in view 0.
/// Expect: in view 1, PRE-PREPARE and PREPARE of view 0 are dropped as "message
/// for an older view". In view 0, a PREPARE of view 1 is buffered and answered
/// with one NewViewRequest(v0) to its sender (not repeated for a second one);
/// a message for a far-future view is dropped but still asks for the NEW-VIEW.
#[test]
fn messages_of_other_views_are_stale_or_buffered() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let in_view_1 = Recovered {
        ops: vec![PersistOp::View {
            view: View(1),
            changing_to: None,
        }],
        ..Recovered::default()
    };
    let mut r1 = net.restart(1, in_view_1);
    assert_eq!(r1.view(), View(1));
    net.expect_ignored(&mut r1, 0, net.pre_prepare(0, 1, &a), Refusal::OlderView);
    net.expect_ignored(
        &mut r1,
        2,
        net.prepare(2, 0, 1, a.digest),
        Refusal::OlderView,
    );

    let mut r1 = net.replica(1);
    let acts = deliver(&mut r1, at(0), 2, net.prepare(2, 1, 1, a.digest));
    assert_eq!(net.describe(&acts), ["Send(r2,NewViewRequest(v0))"]);
    let acts = deliver(&mut r1, at(0), 2, net.prepare(2, 1, 2, a.digest));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    assert_eq!(r1.footprint().future_messages, 2);
    assert!(r1.stats().ignored.is_empty());

    let acts = deliver(&mut r1, at(0), 3, net.prepare(3, 5, 1, a.digest));
    assert_eq!(net.describe(&acts), ["Send(r3,NewViewRequest(v0))"]);
    assert_eq!(r1.stats().ignored.get(&Refusal::FarFutureView), Some(&1));
    assert_eq!(r1.footprint().future_messages, 2);
}

// ----- §4.2 prepared and committed ---------------------------------------------------

/// §4.2: prepared(m, v, n, i) = the PRE-PREPARE plus 2f PREPAREs from
/// different backups that match it; then the replica multicasts COMMIT.
///
/// Setup: backup 1 accepted PRE-PREPARE (v0, s1, A) (its own PREPARE is 1 of 2f).
/// Expect: a PREPARE signed by the primary is dropped ("sent by the primary",
/// it must not count); the PREPARE of backup 2 completes 2f = 2 and gives
/// exactly Persist([Prepared certificate, COMMIT]) then Broadcast(COMMIT).
#[test]
fn backup_prepares_with_2f_prepares_from_backups() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r1 = net.replica(1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));

    net.expect_ignored(
        &mut r1,
        0,
        net.prepare(0, 0, 1, a.digest),
        Refusal::PrepareFromPrimary,
    );
    let acts = deliver(&mut r1, at(0), 2, net.prepare(2, 0, 1, a.digest));

    assert_eq!(
        net.describe(&acts),
        [
            "Persist[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r1,r2]), Commit(v0,s1,A)@r1]",
            "Broadcast(Commit(v0,s1,A)@r1)",
        ]
    );
}

/// §4.2: the 2f PREPAREs must come from *different* backups.
///
/// Setup: primary 0 proposed (v0, s1, A); it signs no PREPARE itself.
/// Expect: PREPARE from backup 1 — nothing; the same PREPARE again — dropped
/// as a duplicate (and not answered: the primary has no vote of its own
/// yet); backup 1 with another digest — dropped as equivocation; only backup
/// 2's PREPARE makes 2f distinct signers: Persist([Prepared, COMMIT]) then
/// Broadcast(COMMIT).
#[test]
fn prepared_needs_distinct_signers() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut r0 = net.replica(0);
    feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));

    assert!(deliver(&mut r0, at(0), 1, net.prepare(1, 0, 1, a.digest)).is_empty());
    net.expect_ignored(
        &mut r0,
        1,
        net.prepare(1, 0, 1, a.digest),
        Refusal::PrepareDuplicate,
    );
    net.expect_ignored(
        &mut r0,
        1,
        net.prepare(1, 0, 1, b.digest),
        Refusal::PrepareEquivocation,
    );
    let acts = deliver(&mut r0, at(0), 2, net.prepare(2, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r1,r2]), Commit(v0,s1,A)@r0]",
            "Broadcast(Commit(v0,s1,A)@r0)",
        ]
    );
}

/// §4.2: committed-local(m, v, n, i) = prepared plus 2f+1 matching COMMITs
/// (possibly including its own) from different replicas; then execute.
///
/// Setup: backup 1 prepared (v0, s1, A) and sent its COMMIT.
/// Expect: COMMIT from 2 — nothing (2 of 2f+1); a re-sent COMMIT from 2 is a
/// duplicate, answered once with our PREPARE and COMMIT, then only counted;
/// COMMIT from 3 gives exactly Execute(s1) whose certificate is the 2f+1
/// COMMITs of replicas 1, 2, 3.
#[test]
fn backup_executes_with_2f_plus_1_commits() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r1 = net.replica(1);
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    deliver(&mut r1, at(0), 2, net.prepare(2, 0, 1, a.digest));

    assert!(deliver(&mut r1, at(0), 2, net.commit(2, 0, 1, a.digest)).is_empty());
    let acts = deliver(&mut r1, at(0), 2, net.commit(2, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Send(r2,Prepare(v0,s1,A)@r1)",
            "Send(r2,Commit(v0,s1,A)@r1)",
        ]
    );
    net.expect_ignored(
        &mut r1,
        2,
        net.commit(2, 0, 1, a.digest),
        Refusal::CommitDuplicate,
    );
    let acts = deliver(&mut r1, at(0), 3, net.commit(3, 0, 1, a.digest));

    assert_eq!(net.describe(&acts), ["Execute(s1,A,cert@[r1,r2,r3])"]);
    assert_eq!(r1.last_executed(), Seq(1));
    assert_eq!(r1.stats().batches_executed, 1);
}

/// Votes that can no longer matter are not checked: once a seq is prepared,
/// a PREPARE from its own signer is neither verified nor kept, and once it is
/// committed neither is a COMMIT. A second one from that signer means it is
/// lagging there and is answered, once, like a duplicate.
///
/// Setup: backup 1 prepared (v0, s1, A) with 2's PREPARE; then committed and
/// executed it with 2's and 3's COMMITs.
/// Expect: 3's PREPARE with a broken signature — counted "after its quorum
/// (not checked)", no action; the same again — Send(r3) of our PREPARE and
/// COMMIT (Refusal::PrepareDuplicate); a third time — only counted. The same for
/// a COMMIT from 0 after execution. Before its quorum, a COMMIT with a broken
/// signature is refused as before, and a vote whose signer is not its sender
/// is always checked.
#[test]
fn votes_after_their_quorum_are_not_checked_and_repeats_are_answered() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r1 = net.replica(1);
    let broken = |m: Message| match m {
        Message::Prepare(mut p) => {
            p.signature[0] ^= 1;
            Message::Prepare(p)
        }
        Message::Commit(mut c) => {
            c.signature[0] ^= 1;
            Message::Commit(c)
        }
        other => other,
    };
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    deliver(&mut r1, at(0), 2, net.prepare(2, 0, 1, a.digest));
    net.expect_ignored(
        &mut r1,
        2,
        broken(net.commit(2, 0, 1, a.digest)),
        Refusal::CommitBadSignature,
    );
    net.expect_ignored(
        &mut r1,
        2,
        broken(net.prepare(3, 0, 1, a.digest)),
        Refusal::PrepareBadSignature,
    );
    net.expect_ignored(
        &mut r1,
        3,
        broken(net.prepare(3, 0, 1, a.digest)),
        Refusal::PrepareAfterQuorum,
    );
    let acts = deliver(&mut r1, at(0), 3, broken(net.prepare(3, 0, 1, a.digest)));
    assert_eq!(
        net.describe(&acts),
        [
            "Send(r3,Prepare(v0,s1,A)@r1)",
            "Send(r3,Commit(v0,s1,A)@r1)",
        ]
    );
    net.expect_ignored(
        &mut r1,
        3,
        net.prepare(3, 0, 1, a.digest),
        Refusal::PrepareDuplicate,
    );

    deliver(&mut r1, at(0), 2, net.commit(2, 0, 1, a.digest));
    let acts = deliver(&mut r1, at(0), 3, net.commit(3, 0, 1, a.digest));
    assert_eq!(net.describe(&acts), ["Execute(s1,A,cert@[r1,r2,r3])"]);
    net.expect_ignored(
        &mut r1,
        0,
        broken(net.commit(0, 0, 1, a.digest)),
        Refusal::CommitAfterQuorum,
    );
    let acts = deliver(&mut r1, at(0), 0, net.commit(0, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Send(r0,Prepare(v0,s1,A)@r1)",
            "Send(r0,Commit(v0,s1,A)@r1)",
        ]
    );
    assert_eq!(r1.stats().ignored.get(&Refusal::CommitDuplicate), Some(&1));
}

/// A seq committed in an earlier view is prepared again in the next one (the
/// NEW-VIEW re-proposes it), and a replica that already executed it must
/// still send its COMMIT of the new view: replicas that did not commit it
/// need them. Its PREPAREs are not "late" until then.
///
/// Setup: backup 2 executed A at s1 in view 0; then the NEW-VIEW of view 1
/// (primary 1) re-proposes A at s1.
/// Expect: PREPARE(v1,s1,A) from 3 (with its own) makes it prepared in view
/// 1: it persists the certificate with COMMIT(v1,s1,A) and broadcasts the
/// COMMIT; a later PREPARE from 0 is not checked.
#[test]
fn a_seq_committed_in_an_earlier_view_is_prepared_and_committed_again() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r2 = net.replica(2);
    net.run_to_execute(&mut r2, 1, &a);
    let vcs = vec![
        net.view_change(1, 1, vec![net.prepared_proof(0, 1, &a, &[1, 3])]),
        net.view_change(2, 1, vec![net.prepared_proof(0, 1, &a, &[1, 3])]),
        net.view_change(3, 1, vec![net.prepared_proof(0, 1, &a, &[1, 3])]),
    ];
    let nv = net.new_view(1, 1, vcs, &[(1, a.digest)]);
    let acts = deliver(&mut r2, at(0), 1, Message::NewView(nv));
    assert!(
        net.describe(&acts)
            .contains(&"Broadcast(Prepare(v1,s1,A)@r2)".to_string()),
        "{:?}",
        net.describe(&acts)
    );
    let acts = deliver(&mut r2, at(0), 3, net.prepare(3, 1, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[Prepared(PrePrepare(v1,s1,A)@r1,prepares@[r2,r3]), Commit(v1,s1,A)@r2]",
            "Broadcast(Commit(v1,s1,A)@r2)",
        ]
    );
    net.expect_ignored(
        &mut r2,
        0,
        net.prepare(0, 1, 1, a.digest),
        Refusal::PrepareAfterQuorum,
    );
}

/// §4.2: "replica i executes the operation requested by m after
/// committed-local(m, v, n, i) is true and i's state reflects the sequential
/// execution of all requests with lower sequence numbers".
///
/// Setup: backup 1 prepared s1 (A) and s2 (B).
/// Expect: 2f+1 COMMITs for s2 first — no action (s1 has not committed); the
/// COMMITs for s1 then give exactly Execute(s1), Execute(s2), in that order.
#[test]
fn execution_is_in_seq_order() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let mut r1 = net.replica(1);
    for (seq, batch) in [(1, &a), (2, &b)] {
        deliver(&mut r1, at(0), 0, net.pre_prepare(0, seq, batch));
        let acts = deliver(&mut r1, at(0), 2, net.prepare(2, 0, seq, batch.digest));
        assert_eq!(acts.len(), 2, "prepared s{seq}");
    }

    assert!(deliver(&mut r1, at(0), 2, net.commit(2, 0, 2, b.digest)).is_empty());
    let acts = deliver(&mut r1, at(0), 3, net.commit(3, 0, 2, b.digest));
    assert_eq!(net.describe(&acts), Vec::<String>::new(), "s2 waits for s1");
    assert_eq!(r1.last_executed(), Seq(0));

    assert!(deliver(&mut r1, at(0), 2, net.commit(2, 0, 1, a.digest)).is_empty());
    let acts = deliver(&mut r1, at(0), 3, net.commit(3, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Execute(s1,A,cert@[r1,r2,r3])",
            "Execute(s2,B,cert@[r1,r2,r3])",
        ]
    );
}

/// §4.2 quorums for n = 7, f = 2: prepared needs 2f = 4 PREPAREs (own
/// included), committed needs 2f+1 = 5 COMMITs.
///
/// Setup: backup 1 of 7 accepted PRE-PREPARE (v0, s1, A).
/// Expect: PREPAREs of 2 and 3 — nothing; of 4 — Persist([Prepared with 4
/// PREPAREs, COMMIT]), Broadcast(COMMIT); COMMITs of 2, 3, 4 — nothing; of 5 —
/// Execute(s1) with a 5-signer certificate.
#[test]
fn quorums_for_seven_replicas() {
    let net = Net::new(7);
    assert_eq!((net.cluster.f(), net.cluster.quorum()), (2, 5));
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r1 = net.replica(1);
    let acts = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(net.describe(&acts), ["Broadcast(Prepare(v0,s1,A)@r1)"]);

    for i in [2, 3] {
        let acts = deliver(&mut r1, at(0), i, net.prepare(i, 0, 1, a.digest));
        assert_eq!(net.describe(&acts), Vec::<String>::new(), "prepare {i}");
    }
    let acts = deliver(&mut r1, at(0), 4, net.prepare(4, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r1,r2,r3,r4]), Commit(v0,s1,A)@r1]",
            "Broadcast(Commit(v0,s1,A)@r1)",
        ]
    );

    for i in [2, 3, 4] {
        let acts = deliver(&mut r1, at(0), i, net.commit(i, 0, 1, a.digest));
        assert_eq!(net.describe(&acts), Vec::<String>::new(), "commit {i}");
    }
    let acts = deliver(&mut r1, at(0), 5, net.commit(5, 0, 1, a.digest));
    assert_eq!(net.describe(&acts), ["Execute(s1,A,cert@[r1,r2,r3,r4,r5])"]);
}

/// `check_invariants` runs after every input in tests and names the broken
/// rule: a replica whose fetch timer runs with no fetch in progress (a
/// state no input can produce) panics on its next input.
#[test]
#[should_panic(expected = "the fetch timer runs exactly while a fetch is in progress")]
fn a_broken_invariant_panics_at_the_next_input() {
    let net = Net::new(4);
    let mut r = net.replica(1);
    feed(&mut r, at(1), Input::Tick);
    r.timers.set(Timer::Fetch, at(1_000));
    feed(&mut r, at(2), Input::Tick);
}

/// A slot with a PRE-PREPARE but no batch breaks an invariant too.
#[test]
#[should_panic(expected = "without its batch")]
fn a_pre_prepare_without_its_batch_is_caught() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    feed(&mut r0, at(1), Input::Request(net.tx(0, 1)));
    let seq = *r0.log.slots.keys().next().expect("the primary proposed");
    r0.log.slots.get_mut(&seq).expect("slot").batch = None;
    r0.check_invariants();
}
