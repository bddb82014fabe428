//! §4.3 state transfer: fetching committed batches (each checked against a
//! commit certificate), lagging replicas, and the probe after a restart.

use super::*;

/// After a restart a replica probes for batches committed while it was down
/// (an idle network would never show them), bounded: one peer per
/// retransmission timeout, and the probe ends when every peer in a row let
/// one pass without a batch. A batch that arrives moves it on.
///
/// Setup: backup 1 at height 0 starts a probe (fetch_batches_max 32).
/// Expect: Fetch(s1..s32) to r2 at once, then to r3 and r0 at each
/// retransmission timeout; at the next one nothing (the probe ended), and
/// batches that arrive afterwards are refused ("no fetch in progress").
/// Probing again, a committed batch for s1 from r2 is executed and the probe
/// goes on: the next range is asked for at once, and it again takes three
/// silent timeouts to end.
#[test]
fn restart_probe_asks_each_peer_once_and_ends_when_all_are_silent() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r1 = net.replica(1);
    let max = config().fetch_batches_max;
    let retransmit = config().retransmit_ms;
    r1.probe_for_missed_batches();
    let fetch = |to: u32, from: u64| format!("Send(r{to},Fetch(s{from}..s{}))", from + max - 1);
    assert_eq!(net.describe(&drain(&mut r1)), [fetch(2, 1)]);
    let mut t = 0;
    for to in [3, 0] {
        t += retransmit;
        assert_eq!(
            net.describe(&feed(&mut r1, at(t), Input::Tick)),
            [fetch(to, 1)]
        );
    }
    t += retransmit;
    assert_eq!(
        net.describe(&feed(&mut r1, at(t), Input::Tick)),
        Vec::<String>::new()
    );
    assert_eq!(r1.next_deadline(), None);
    net.expect_ignored_input(
        &mut r1,
        at(t),
        Input::Message {
            from: ReplicaId(2),
            message: Message::Batches(vec![net.committed_batch(1, &a, a.digest, &[0, 2, 3])]),
        },
        Refusal::BatchesNotFetching,
    );

    r1.probe_for_missed_batches();
    assert_eq!(net.describe(&drain(&mut r1)), [fetch(2, 1)]);
    let acts = feed(
        &mut r1,
        at(t),
        Input::Message {
            from: ReplicaId(2),
            message: Message::Batches(vec![net.committed_batch(1, &a, a.digest, &[0, 2, 3])]),
        },
    );
    assert_eq!(
        net.describe(&acts),
        ["Execute(s1,A,cert@[r0,r2,r3])".to_string(), fetch(3, 2)]
    );
    feed(
        &mut r1,
        at(t),
        Input::Executed {
            seq: Seq(1),
            checkpoint_digest: Digest([0; 32]),
        },
    );
    for _ in 0..2 {
        t += retransmit;
        assert_eq!(net.describe(&feed(&mut r1, at(t), Input::Tick)).len(), 1);
    }
    t += retransmit;
    assert_eq!(
        net.describe(&feed(&mut r1, at(t), Input::Tick)),
        Vec::<String>::new()
    );
}

/// §4.3 (state transfer: "a replica may learn about a stable checkpoint ... it
/// has not executed; it fetches the missing state"), here as committed
/// batches each checked against a commit certificate (2f+1 COMMITs).
///
/// Setup: fresh backup 3; 2f+1 CHECKPOINTs for s2 arrive (2f do nothing).
/// Expect: Send(Fetch s1..s2) to the next peer (0); its Batches with valid
/// certificates give exactly Execute(s1), Execute(s2); Executed(s2) then gives
/// Broadcast(own CHECKPOINT) and Persist(StableCheckpoint s2).
#[test]
fn catch_up_executes_fetched_batches_with_valid_certificates() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let c2 = Digest([2; 32]);
    net.name(c2, "C2");
    let mut r3 = net.replica(3);
    net.expect_ignored(
        &mut r3,
        0,
        Message::Batches(vec![net.committed_batch(1, &a, a.digest, &[0, 1, 2])]),
        Refusal::BatchesNotFetching,
    );

    for i in [0, 1] {
        let acts = deliver(&mut r3, at(0), i, net.checkpoint(i, 2, c2));
        assert_eq!(net.describe(&acts), Vec::<String>::new());
    }
    let acts = deliver(&mut r3, at(0), 2, net.checkpoint(2, 2, c2));
    assert_eq!(net.describe(&acts), ["Send(r0,Fetch(s1..s2))"]);

    let batches = vec![
        net.committed_batch(1, &a, a.digest, &[0, 1, 2]),
        net.committed_batch(2, &b, b.digest, &[0, 1, 2]),
    ];
    let acts = deliver(&mut r3, at(0), 0, Message::Batches(batches));
    assert_eq!(
        net.describe(&acts),
        [
            "Execute(s1,A,cert@[r0,r1,r2])",
            "Execute(s2,B,cert@[r0,r1,r2])",
        ]
    );
    assert_eq!(r3.stats().batches_fetched, 2);

    let executed = |seq, checkpoint_digest| Input::Executed {
        seq: Seq(seq),
        checkpoint_digest,
    };
    assert!(feed(&mut r3, at(0), executed(1, Digest([1; 32]))).is_empty());
    let acts = feed(&mut r3, at(0), executed(2, c2));
    assert_eq!(
        net.describe(&acts),
        [
            "Broadcast(Checkpoint(s2,C2)@r3)",
            "Persist[StableCheckpoint(s2,C2)@[r0,r1,r2]]",
        ]
    );
    assert_eq!(r3.low_watermark(), Seq(2));
}

/// §4.3 state transfer must not trust the serving peer: a committed batch
/// counts only with 2f+1 valid COMMITs from distinct replicas over its digest.
///
/// Setup: backup 3 fetching s1..s2 (2f+1 CHECKPOINTs for s2 seen).
/// Expect: dropped with the exact reason, and nothing executed, for a
/// certificate of 2f signers; of 2f+1 COMMITs with one signer twice; with a
/// COMMIT signed by 3's key but claiming replica 2 (forged); over another
/// batch's digest. A valid one afterwards executes.
#[test]
fn catch_up_rejects_bad_commit_certificates() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let c2 = Digest([2; 32]);
    let mut r3 = net.replica(3);
    for i in 0..3 {
        deliver(&mut r3, at(0), i, net.checkpoint(i, 2, c2));
    }
    assert!(r3.catch_up.fetch.is_some());

    let mut forged = net.committed_batch(1, &a, a.digest, &[0, 1, 2]);
    let by_3 = net.signed_commit(3, 0, 1, a.digest);
    forged.certificate[2] = Signed::from_parts(by_3.payload, ReplicaId(2), by_3.signature);
    let cases = [
        (
            net.committed_batch(1, &a, a.digest, &[0, 1]),
            Refusal::BatchesCertificateBelowQuorum,
        ),
        (
            net.committed_batch(1, &a, a.digest, &[0, 1, 1]),
            Refusal::BatchesCertificateRepeatsSigner,
        ),
        (
            // A valid COMMIT repeated: refused before any is checked.
            net.committed_batch(1, &a, a.digest, &[0; 50_000]),
            Refusal::BatchesCertificateRepeatsSigner,
        ),
        (forged, Refusal::BatchesCertificateBadSignature),
        (
            net.committed_batch(1, &a, b.digest, &[0, 1, 2]),
            Refusal::BatchesCertificateMismatch,
        ),
    ];
    for (cb, reason) in cases {
        net.expect_ignored(&mut r3, 0, Message::Batches(vec![cb]), reason);
        assert_eq!(r3.last_executed(), Seq(0), "{reason}");
    }

    let ok = net.committed_batch(1, &a, a.digest, &[0, 1, 2]);
    let acts = deliver(&mut r3, at(0), 0, Message::Batches(vec![ok]));
    assert_eq!(
        net.describe(&acts),
        ["Execute(s1,A,cert@[r0,r1,r2])", "Send(r1,Fetch(s2..s2))"]
    );
}

/// §4.3/§4.4, issue 17 defect 2: a replica votes only inside its own
/// window `(h, h + L]`, the range its VIEW-CHANGEs report prepared
/// certificates for. A NEW-VIEW whose checkpoint is above a lagging replica
/// places entries above that window: the replica holds them, but sends no
/// PREPARE or COMMIT for them until its own stable checkpoint has moved up
/// (otherwise its COMMIT could help commit a seq that its next VIEW-CHANGE
/// would leave out, and a later view could fill that seq with another batch).
///
/// Setup: K=2, L=8. Replica 0 at h=0, nothing executed. VIEW-CHANGEs for v1
/// from 1, 2, 3 with stable checkpoint s8 (2f+1 CHECKPOINTs) and B prepared
/// at s10. NEW-VIEW v1 from 1: O = s9 null, s10 B.
/// Expect: replica 0 enters v1 and fetches, but sends no PREPARE for s9/s10,
/// and no COMMIT for s10 when 2f PREPAREs arrive; once it has fetched and
/// executed s1..s8 and made s8 stable, it prepares s9 and s10 and commits s10.
#[test]
fn a_lagging_replica_votes_on_new_view_entries_only_inside_its_own_window() {
    let net = Net::new(4);
    let ckpt = Digest([8; 32]);
    net.name(ckpt, "C8");
    let proof: Vec<Signed<Checkpoint>> = (1..=3)
        .map(|i| {
            net.sign(
                i,
                Checkpoint {
                    seq: Seq(8),
                    digest: ckpt,
                },
            )
        })
        .collect();
    let b = net.batch("B", T0_MS, vec![net.tx(1, 1)]);
    let vc = |i: u32, prepared: Vec<PreparedProof>| {
        net.sign(
            i,
            ViewChange {
                new_view: View(1),
                stable_seq: Seq(8),
                checkpoint_proof: proof.clone(),
                prepared,
            },
        )
    };
    let vcs = vec![
        vc(1, vec![]),
        vc(2, vec![net.prepared_proof(0, 10, &b, &[2, 3])]),
        vc(3, vec![]),
    ];
    let null = Replica::null_batch().0;
    let nv = net.new_view(1, 1, vcs, &[(9, null), (10, b.digest)]);
    let mut r0 = net.replica(0);
    let acts = net.describe(&deliver(&mut r0, at(0), 1, Message::NewView(nv)));
    assert_eq!(r0.view(), View(1), "{acts:?}");
    let votes_above = |acts: &[String]| -> Vec<String> {
        acts.iter()
            .filter(|a| a.starts_with("Broadcast(Prepare(") || a.starts_with("Broadcast(Commit("))
            .cloned()
            .collect()
    };
    assert_eq!(votes_above(&acts), Vec::<String>::new(), "{acts:?}");
    let fetch_from = |acts: &[String]| -> u32 {
        let send = acts
            .iter()
            .find(|a| a.contains("Fetch("))
            .unwrap_or_else(|| panic!("no fetch in {acts:?}"));
        send["Send(r".len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let peer = fetch_from(&acts);
    // 2f PREPAREs for s10 arrive: prepared, but no COMMIT yet.
    for i in [2, 3] {
        let acts = net.describe(&deliver(&mut r0, at(0), i, net.prepare(i, 1, 10, b.digest)));
        assert_eq!(votes_above(&acts), Vec::<String>::new(), "{acts:?}");
    }

    // It catches up to s8 (two ranges of four) and executes them.
    let fetched: Vec<TestBatch> = (1..=8)
        .map(|s| net.batch(&format!("F{s}"), T0_MS, vec![net.tx(0, s)]))
        .collect();
    let range = |lo: u64| -> Message {
        Message::Batches(
            (lo..lo + 4)
                .map(|s| {
                    let f = &fetched[s as usize - 1];
                    net.committed_batch(s, f, f.digest, &[1, 2, 3])
                })
                .collect(),
        )
    };
    let acts = net.describe(&deliver(&mut r0, at(0), peer, range(1)));
    let peer = fetch_from(&acts);
    deliver(&mut r0, at(0), peer, range(5));
    let mut acts = Vec::new();
    for s in 1..=8 {
        let digest = if s == 8 { ckpt } else { Digest([s as u8; 32]) };
        acts.extend(feed(
            &mut r0,
            at(0),
            Input::Executed {
                seq: Seq(s),
                checkpoint_digest: digest,
            },
        ));
    }
    assert_eq!(r0.low_watermark(), Seq(8));
    let acts = net.describe(&acts);
    assert_eq!(
        votes_above(&acts),
        [
            "Broadcast(Prepare(v1,s9,null)@r0)",
            "Broadcast(Prepare(v1,s10,B)@r0)",
            "Broadcast(Commit(v1,s10,B)@r0)",
        ],
        "{acts:?}"
    );
}

/// An equivocating primary showed us the losing side: f+1 COMMITs for
/// another digest mean a correct replica prepared it, so ours cannot commit
/// in this view. We fetch the seq rather than wait for a view change that
/// the others (who are making progress) will never join.
///
/// Setup: replica 3 accepts PRE-PREPARE(v0,s1,B); COMMITs for A arrive from
/// 1, then 2.
/// Expect: nothing after the first; after the second, a Fetch of s1.
#[test]
fn f_plus_1_commits_for_another_digest_start_a_fetch() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS + 1, vec![net.tx(0, 1)]);
    let mut r3 = net.replica(3);
    deliver(&mut r3, at(0), 0, net.pre_prepare(0, 1, &b));
    let first = deliver(&mut r3, at(1), 1, net.commit(1, 0, 1, a.digest));
    assert_eq!(net.describe(&first), Vec::<String>::new());
    let second = deliver(&mut r3, at(2), 2, net.commit(2, 0, 1, a.digest));
    assert_eq!(net.describe(&second), ["Send(r0,Fetch(s1..s1))"]);
}

/// A replica waiting for a NEW-VIEW still catches up: f+1 CHECKPOINTs above
/// its height make the retransmission timer fetch (the request timer, which
/// fetches otherwise, is off during a view change). A flood seed ended with
/// a replica alone in a view change, 11 blocks behind.
///
/// Setup: backup 2 starts a view change (SUSPECTs from 1 and 3), then gets
/// CHECKPOINT(s2) from 1 and 3.
/// Expect: at the retransmission timer, its VIEW-CHANGE again and a Fetch of
/// s1..s2.
#[test]
fn replica_in_a_view_change_fetches_what_f_plus_1_checkpoints_claim() {
    let net = Net::new(4);
    let c2 = Digest([2; 32]);
    net.name(c2, "C2");
    let mut r2 = net.replica(2);
    deliver(&mut r2, at(0), 1, net.suspect(1, 0));
    deliver(&mut r2, at(0), 3, net.suspect(3, 0));
    assert_eq!(r2.changing_to(), Some(View(1)));
    deliver(&mut r2, at(1), 1, net.checkpoint(1, 2, c2));
    deliver(&mut r2, at(1), 3, net.checkpoint(3, 2, c2));
    let retransmit = config().retransmit_ms;
    let acts = feed(&mut r2, at(retransmit), Input::Tick);
    let described = net.describe(&acts);
    assert!(
        described
            .iter()
            .any(|a| a.starts_with("Send(") && a.contains("Fetch(s1..s2)")),
        "{described:?}"
    );
    assert!(described
        .iter()
        .any(|a| a.starts_with("Broadcast(ViewChange(v1")));
}
