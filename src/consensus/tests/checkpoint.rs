//! §4.3 garbage collection: CHECKPOINTs, stable checkpoints and the low
//! watermark.

use super::*;

/// §4.3: every K seqs a replica multicasts ⟨CHECKPOINT, n, d, i⟩; with 2f+1
/// matching ones (a proof of stability) the checkpoint becomes stable, the
/// low watermark moves to n and the log at or below n is discarded.
///
/// Setup: backup 1 executed s1..s3 (K = 2).
/// Expect: Executed(s1) — nothing; Executed(s2) — Broadcast(CHECKPOINT s2).
/// CHECKPOINT from 2 (f+1 = 2 votes) — nothing; from 0 with another digest —
/// nothing; a CHECKPOINT claiming replica 3 but signed by 2 — dropped ("bad
/// signature"); 3's real one makes 2f+1: Persist(StableCheckpoint s2 with
/// proof 1, 2, 3), low watermark s2, only slot s3 left. A CHECKPOINT for s2
/// afterwards is dropped ("at or below the stable checkpoint").
#[test]
fn checkpoint_becomes_stable_with_2f_plus_1_matching() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    for seq in 1..=3 {
        let b = net.batch(&format!("B{seq}"), T0_MS, vec![net.tx(0, seq)]);
        net.run_to_execute(&mut r1, seq, &b);
    }
    assert_eq!(r1.footprint().slots, 3);
    let c2 = Digest([2; 32]);
    net.name(c2, "C2");
    let other = Digest([3; 32]);
    net.name(other, "X");

    let acts = feed(
        &mut r1,
        at(0),
        Input::Executed {
            seq: Seq(1),
            checkpoint_digest: Digest([1; 32]),
        },
    );
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let executed = Input::Executed {
        seq: Seq(2),
        checkpoint_digest: c2,
    };
    let acts = feed(&mut r1, at(0), executed);
    assert_eq!(net.describe(&acts), ["Broadcast(Checkpoint(s2,C2)@r1)"]);

    let acts = deliver(&mut r1, at(0), 2, net.checkpoint(2, 2, c2));
    assert_eq!(
        net.describe(&acts),
        Vec::<String>::new(),
        "f+1 are not enough"
    );
    let acts = deliver(&mut r1, at(0), 0, net.checkpoint(0, 2, other));
    assert_eq!(
        net.describe(&acts),
        Vec::<String>::new(),
        "another digest does not count"
    );
    let Message::Checkpoint(by_2) = net.checkpoint(2, 2, c2) else {
        unreachable!()
    };
    let forged = Signed::from_parts(by_2.payload, ReplicaId(3), by_2.signature);
    net.expect_ignored(
        &mut r1,
        3,
        Message::Checkpoint(forged),
        Refusal::CheckpointBadSignature,
    );
    assert_eq!(r1.low_watermark(), Seq(0));

    let acts = deliver(&mut r1, at(0), 3, net.checkpoint(3, 2, c2));
    assert_eq!(
        net.describe(&acts),
        ["Persist[StableCheckpoint(s2,C2)@[r1,r2,r3]]"]
    );
    assert_eq!(r1.low_watermark(), Seq(2));
    assert_eq!(r1.footprint().slots, 1);
    assert!(r1.log.slots.contains_key(&Seq(3)));
    assert_eq!(r1.footprint().checkpoint_votes, 0);
    assert_eq!(r1.stable_proof().len(), 3);

    net.expect_ignored(
        &mut r1,
        0,
        net.checkpoint(0, 2, c2),
        Refusal::CheckpointNotAboveStable,
    );
}

/// A CHECKPOINT lost in a peer's crash must not leave the window stuck: the
/// request timer re-sends our latest checkpoint while it is not stable. (An
/// omission seed churned through 100 views with a full window: the replicas
/// that executed first had sent their CHECKPOINTs before the others
/// restarted with empty memories.)
///
/// Setup: backup 1 executes s1 and s2 (checkpoint C2 at s2, K = 2); no other
/// CHECKPOINT arrives; a request is pending.
/// Expect: at the request timer, among the re-sent votes, CHECKPOINT(s2, C2).
#[test]
fn request_timer_resends_an_unstable_checkpoint() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let c2 = Digest([2; 32]);
    net.name(c2, "C2");
    let mut r1 = net.replica(1);
    net.run_to_execute(&mut r1, 1, &a);
    feed(
        &mut r1,
        at(0),
        Input::Executed {
            seq: Seq(1),
            checkpoint_digest: Digest([1; 32]),
        },
    );
    net.run_to_execute(&mut r1, 2, &b);
    let sent = feed(
        &mut r1,
        at(0),
        Input::Executed {
            seq: Seq(2),
            checkpoint_digest: c2,
        },
    );
    assert_eq!(net.describe(&sent), ["Broadcast(Checkpoint(s2,C2)@r1)"]);
    feed(&mut r1, at(0), Input::Request(net.tx(1, 1)));
    let timeout = config().request_timeout_ms;
    let acts = feed(&mut r1, at(timeout), Input::Tick);
    assert!(
        net.describe(&acts)
            .contains(&"Broadcast(Checkpoint(s2,C2)@r1)".to_string()),
        "{:?}",
        net.describe(&acts)
    );
}
