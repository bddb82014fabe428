//! Unit tests of the sans-IO core: one input, the exact list of actions.
//!
//! Every test drives a lone [`Replica`] by hand, playing the other replicas
//! with their keys, and asserts *every* action one input produces, in order
//! (openraft's engine tests). Actions are compared through a compact
//! description ([`Net::describe`]) in which batch digests carry names (`A`,
//! `B`, `null`, ...) and each signed message shows its signer (`@r1`); the
//! description marks any output whose signature does not verify or whose
//! batch does not hash to its digest, so an exact comparison also checks those.
//! Order is part of the contract: a `Persist` must come before the
//! `Send`/`Broadcast` that depends on it.
//!
//! Peer misbehaviour is checked as "no action at all, and exactly this
//! `stats().ignored` reason went up by one" ([`Net::expect_ignored`]).
//!
//! Sections refer to Castro & Liskov, *Practical Byzantine Fault Tolerance
//! and Proactive Recovery*, ACM TOCS 20(4), 2002: §4.1 client requests, §4.2
//! normal case, §4.3 garbage collection (checkpoints), §4.4 view changes,
//! §4.5.2 liveness.

use super::messages::{
    Checkpoint, Commit, CommittedBatch, Message, NewView, PrePrepare, Prepare, PreparedProof,
    Suspect, ViewChange,
};
use super::{Action, Config, Input, PersistOp, Recovered, Replica};
use crate::cluster::Cluster;
use crate::crypto::{Digest, KeyPair, NetworkId, Payload, Signed, Verifier};
use crate::tx::{batch_digest, Batch, Transaction};
use crate::types::{ReplicaId, Seq, Time, View};
use std::cell::RefCell;
use std::collections::BTreeMap;

// ----- harness ----------------------------------------------------------------

/// The clock every test starts at (ms); batch timestamps are taken from it.
const T0_MS: u64 = 100_000;

/// `T0 + ms`.
fn at(ms: u64) -> Time {
    Time::from_millis(T0_MS + ms)
}

/// Small numbers so windows, pipelines and timers are reached in a few steps.
fn config() -> Config {
    Config {
        checkpoint_interval: 2,
        watermark_window: 8,
        batch_txs_max: 4,
        pipeline_depth: 2,
        request_timeout_ms: 1_000,
        view_change_timeout_max_ms: 3_000,
        retransmit_ms: 300,
        pending_requests_max: 5,
        pending_per_client_max: 3,
        timestamp_skew_max_ms: 60_000,
        future_messages_max: 64,
        fetch_batches_max: 4,
    }
}

/// A batch as a primary would propose it: exact bytes and their digest.
#[derive(Clone)]
struct TestBatch {
    bytes: Vec<u8>,
    digest: Digest,
}

/// One network: genesis, every replica's and client's key, and the names
/// given to digests for [`Net::describe`].
struct Net {
    cfg: Config,
    cluster: Cluster,
    keys: Vec<KeyPair>,
    clients: Vec<KeyPair>,
    network: NetworkId,
    verifier: Verifier,
    names: RefCell<BTreeMap<Digest, String>>,
}

impl Net {
    fn new(n: u32) -> Net {
        let keys: Vec<KeyPair> = (0..n)
            .map(|i| KeyPair::from_label(&format!("consensus-test-replica-{i}")))
            .collect();
        let clients: Vec<KeyPair> = (0..3)
            .map(|i| KeyPair::from_label(&format!("consensus-test-client-{i}")))
            .collect();
        let addrs: Vec<(String, String)> = (0..n).map(|_| ("sim".into(), "sim".into())).collect();
        let accounts: Vec<_> = clients.iter().map(|k| (k.public(), 1_000_000)).collect();
        let publics: Vec<_> = keys.iter().map(|k| k.public()).collect();
        let genesis =
            crate::genesis::build("consensus-tests", &publics, &addrs, &accounts, config())
                .expect("test genesis is valid");
        let names = BTreeMap::from([(Replica::null_batch().0, "null".to_string())]);
        Net {
            cfg: genesis.config().clone(),
            cluster: genesis.cluster,
            keys,
            clients,
            network: genesis.network,
            verifier: genesis.verifier.clone(),
            names: RefCell::new(names),
        }
    }

    fn n(&self) -> u32 {
        self.cluster.n()
    }

    fn primary(&self, view: u64) -> u32 {
        self.cluster.primary(View(view)).0
    }

    /// Replica `i` starting from genesis.
    fn replica(&self, i: u32) -> Replica {
        self.restart(i, Recovered::default())
    }

    /// Replica `i` rebuilt from what it persisted.
    fn restart(&self, i: u32, recovered: Recovered) -> Replica {
        Replica::new(
            self.cfg.clone(),
            self.cluster,
            ReplicaId(i),
            self.keys[i as usize].clone(),
            self.verifier.clone(),
            recovered,
        )
    }

    /// Signs `value` as replica `i` (any replica: tests play Byzantine ones too).
    fn sign<T: Payload>(&self, i: u32, value: T) -> Signed<T> {
        self.keys[i as usize]
            .sign(self.network, ReplicaId(i), value)
            .into_signed()
    }

    /// A transfer signed by client `client`.
    fn tx(&self, client: usize, nonce: u64) -> Transaction {
        let to = self.clients[(client + 1) % self.clients.len()].public();
        Transaction::transfer(self.network, &self.clients[client], to, 1, nonce)
    }

    /// Names `digest` `name` in descriptions.
    fn name(&self, digest: Digest, name: &str) {
        self.names.borrow_mut().insert(digest, name.to_string());
    }

    /// Encodes a batch and names its digest.
    fn batch(&self, name: &str, timestamp_ms: u64, txs: Vec<Transaction>) -> TestBatch {
        let bytes = Batch { timestamp_ms, txs }.encode();
        let digest = batch_digest(&bytes);
        self.name(digest, name);
        TestBatch { bytes, digest }
    }

    // ----- messages, as replica `i` would sign them --------------------------

    fn pre_prepare_by(
        &self,
        signer: u32,
        view: u64,
        seq: u64,
        digest: Digest,
        batch: &[u8],
    ) -> Message {
        let pp = PrePrepare {
            view: View(view),
            seq: Seq(seq),
            digest,
        };
        Message::PrePrepare {
            pre_prepare: self.sign(signer, pp),
            batch: batch.to_vec(),
        }
    }

    /// The PRE-PREPARE the primary of `view` sends for `b` at `seq`.
    fn pre_prepare(&self, view: u64, seq: u64, b: &TestBatch) -> Message {
        self.pre_prepare_by(self.primary(view), view, seq, b.digest, &b.bytes)
    }

    fn prepare(&self, i: u32, view: u64, seq: u64, digest: Digest) -> Message {
        Message::Prepare(self.sign(
            i,
            Prepare {
                view: View(view),
                seq: Seq(seq),
                digest,
            },
        ))
    }

    fn signed_commit(&self, i: u32, view: u64, seq: u64, digest: Digest) -> Signed<Commit> {
        self.sign(
            i,
            Commit {
                view: View(view),
                seq: Seq(seq),
                digest,
            },
        )
    }

    fn commit(&self, i: u32, view: u64, seq: u64, digest: Digest) -> Message {
        Message::Commit(self.signed_commit(i, view, seq, digest))
    }

    fn checkpoint(&self, i: u32, seq: u64, digest: Digest) -> Message {
        Message::Checkpoint(self.sign(
            i,
            Checkpoint {
                seq: Seq(seq),
                digest,
            },
        ))
    }

    fn suspect(&self, i: u32, view: u64) -> Message {
        Message::Suspect(self.sign(i, Suspect { view: View(view) }))
    }

    /// A prepared certificate for `b` at `(view, seq)` with PREPAREs from `backups`.
    fn prepared_proof(&self, view: u64, seq: u64, b: &TestBatch, backups: &[u32]) -> PreparedProof {
        let pp = PrePrepare {
            view: View(view),
            seq: Seq(seq),
            digest: b.digest,
        };
        PreparedProof {
            pre_prepare: self.sign(self.primary(view), pp),
            prepares: backups
                .iter()
                .map(|i| {
                    let p = Prepare {
                        view: View(view),
                        seq: Seq(seq),
                        digest: b.digest,
                    };
                    self.sign(*i, p)
                })
                .collect(),
            batch: b.bytes.clone(),
        }
    }

    /// A VIEW-CHANGE from the genesis checkpoint (seq 0, empty proof).
    fn view_change(
        &self,
        i: u32,
        new_view: u64,
        prepared: Vec<PreparedProof>,
    ) -> Signed<ViewChange> {
        self.sign(
            i,
            ViewChange {
                new_view: View(new_view),
                stable_seq: Seq(0),
                checkpoint_proof: Vec::new(),
                prepared,
            },
        )
    }

    /// A NEW-VIEW signed by `signer` whose O-set holds `o` = (seq, digest).
    fn new_view(
        &self,
        signer: u32,
        view: u64,
        vcs: Vec<Signed<ViewChange>>,
        o: &[(u64, Digest)],
    ) -> Signed<NewView> {
        let pre_prepares = o
            .iter()
            .map(|(seq, digest)| {
                let pp = PrePrepare {
                    view: View(view),
                    seq: Seq(*seq),
                    digest: *digest,
                };
                self.sign(signer, pp)
            })
            .collect();
        self.sign(
            signer,
            NewView {
                view: View(view),
                view_changes: vcs,
                pre_prepares,
            },
        )
    }

    /// A committed batch with COMMITs for `(view 0, seq, digest)` from `signers`.
    fn committed_batch(
        &self,
        seq: u64,
        b: &TestBatch,
        digest: Digest,
        signers: &[u32],
    ) -> CommittedBatch {
        CommittedBatch {
            seq: Seq(seq),
            batch: b.bytes.clone(),
            certificate: signers
                .iter()
                .map(|i| self.signed_commit(*i, 0, seq, digest))
                .collect(),
        }
    }

    // ----- descriptions -------------------------------------------------------

    fn describe(&self, actions: &[Action]) -> Vec<String> {
        actions.iter().map(|a| self.action(a)).collect()
    }

    fn dn(&self, d: &Digest) -> String {
        self.names
            .borrow()
            .get(d)
            .cloned()
            .unwrap_or_else(|| format!("{d:?}"))
    }

    /// The payload of a signed message and `@signer` (flagged if it does not verify).
    fn open<T: Payload + Clone>(&self, s: &Signed<T>) -> (T, String) {
        match self.verifier.verify(s) {
            Ok(v) => (v.value().clone(), format!("@{:?}", s.signer)),
            Err(e) => (
                T::decode(&s.payload).expect("the core emits well-formed payloads"),
                format!("@{:?}!{e}", s.signer),
            ),
        }
    }

    fn signers<T>(list: &[Signed<T>]) -> String {
        let ids: Vec<String> = list.iter().map(|s| format!("{:?}", s.signer)).collect();
        format!("[{}]", ids.join(","))
    }

    fn pp(&self, s: &Signed<PrePrepare>) -> String {
        let (p, by) = self.open(s);
        format!(
            "PrePrepare({:?},{:?},{}){by}",
            p.view,
            p.seq,
            self.dn(&p.digest)
        )
    }

    fn pp_with_batch(&self, s: &Signed<PrePrepare>, batch: &[u8]) -> String {
        let (p, _) = self.open(s);
        let mark = if batch_digest(batch) == p.digest {
            ""
        } else {
            "!batch"
        };
        format!("{}{mark}", self.pp(s))
    }

    fn proof(&self, p: &PreparedProof) -> String {
        format!(
            "Prepared({},prepares@{})",
            self.pp_with_batch(&p.pre_prepare, &p.batch),
            Net::signers(&p.prepares)
        )
    }

    fn view_change_desc(&self, s: &Signed<ViewChange>) -> String {
        let (vc, by) = self.open(s);
        let p: Vec<String> = vc.prepared.iter().map(|p| self.proof(p)).collect();
        format!(
            "ViewChange({:?},h{},C@{},P=[{}]){by}",
            vc.new_view,
            vc.stable_seq.0,
            Net::signers(&vc.checkpoint_proof),
            p.join(",")
        )
    }

    fn new_view_desc(&self, s: &Signed<NewView>) -> String {
        let (nv, by) = self.open(s);
        let o: Vec<String> = nv.pre_prepares.iter().map(|p| self.pp(p)).collect();
        format!(
            "NewView({:?},V@{},O=[{}]){by}",
            nv.view,
            Net::signers(&nv.view_changes),
            o.join(",")
        )
    }

    fn message(&self, m: &Message) -> String {
        match m {
            Message::Request(tx) => format!("Request(nonce {})", tx.nonce),
            Message::PrePrepare { pre_prepare, batch } => self.pp_with_batch(pre_prepare, batch),
            Message::Prepare(s) => {
                let (p, by) = self.open(s);
                format!(
                    "Prepare({:?},{:?},{}){by}",
                    p.view,
                    p.seq,
                    self.dn(&p.digest)
                )
            }
            Message::Commit(s) => {
                let (c, by) = self.open(s);
                format!(
                    "Commit({:?},{:?},{}){by}",
                    c.view,
                    c.seq,
                    self.dn(&c.digest)
                )
            }
            Message::Checkpoint(s) => {
                let (c, by) = self.open(s);
                format!("Checkpoint({:?},{}){by}", c.seq, self.dn(&c.digest))
            }
            Message::ViewChange(s) => self.view_change_desc(s),
            Message::NewView(s) => self.new_view_desc(s),
            Message::Suspect(s) => {
                let (x, by) = self.open(s);
                format!("Suspect({:?}){by}", x.view)
            }
            Message::NewViewRequest { view } => format!("NewViewRequest({view:?})"),
            Message::Fetch { from, to } => format!("Fetch({from:?}..{to:?})"),
            Message::Batches(b) => {
                let seqs: Vec<String> = b.iter().map(|c| format!("{:?}", c.seq)).collect();
                format!("Batches[{}]", seqs.join(","))
            }
            Message::Reply(_) => "Reply".into(),
        }
    }

    fn op(&self, op: &PersistOp) -> String {
        match op {
            PersistOp::View {
                view,
                changing_to: None,
            } => format!("View({view:?})"),
            PersistOp::View {
                view,
                changing_to: Some(to),
            } => format!("View({view:?}->{to:?})"),
            PersistOp::PrePrepare { pre_prepare, batch } => self.pp_with_batch(pre_prepare, batch),
            PersistOp::Prepare(s) => self.message(&Message::Prepare(s.clone())),
            PersistOp::Commit(s) => self.message(&Message::Commit(s.clone())),
            PersistOp::Prepared(p) => self.proof(p),
            PersistOp::ViewChange(s) => self.view_change_desc(s),
            PersistOp::NewView(s) => self.new_view_desc(s),
            PersistOp::Abstain {
                view,
                commits: false,
            } => format!("Abstain({view:?})"),
            PersistOp::Abstain {
                view,
                commits: true,
            } => format!("Abstain({view:?},commits)"),
            PersistOp::StableCheckpoint { seq, proof } => {
                let digest = proof
                    .first()
                    .map(|c| self.open(c).0.digest)
                    .unwrap_or_default();
                let all_match = proof.iter().all(|c| {
                    let (c, by) = self.open(c);
                    c.seq == *seq && c.digest == digest && !by.contains('!')
                });
                let mark = if all_match { "" } else { "!proof" };
                format!(
                    "StableCheckpoint({seq:?},{})@{}{mark}",
                    self.dn(&digest),
                    Net::signers(proof)
                )
            }
        }
    }

    fn action(&self, a: &Action) -> String {
        match a {
            Action::Persist(ops) => {
                let ops: Vec<String> = ops.iter().map(|op| self.op(op)).collect();
                format!("Persist[{}]", ops.join(", "))
            }
            Action::Send { to, message } => format!("Send({to:?},{})", self.message(message)),
            Action::Broadcast(m) => format!("Broadcast({})", self.message(m)),
            Action::Execute {
                seq,
                digest,
                batch,
                batch_bytes,
                certificate,
            } => {
                let batch_ok = batch_digest(batch_bytes) == *digest
                    && Batch::decode(batch_bytes).is_ok_and(|b| b == **batch);
                let cert_ok = certificate.iter().all(|c| {
                    self.verifier
                        .verify(c)
                        .is_ok_and(|c| c.seq == *seq && c.digest == *digest)
                });
                format!(
                    "Execute({seq:?},{}{},cert@{}{})",
                    self.dn(digest),
                    if batch_ok { "" } else { "!batch" },
                    Net::signers(certificate),
                    if cert_ok { "" } else { "!cert" }
                )
            }
            Action::EnteredView(v) => format!("EnteredView({v:?})"),
        }
    }

    // ----- driving --------------------------------------------------------------

    /// Feeds `input` and asserts it was dropped: no action at all, and exactly
    /// one `stats().ignored` counter — `reason` — went up, by one.
    fn expect_ignored_input(&self, r: &mut Replica, now: Time, input: Input, reason: &str) {
        let before = r.stats().ignored.clone();
        let acts = feed(r, now, input);
        assert_eq!(
            self.describe(&acts),
            Vec::<String>::new(),
            "dropped input must not act"
        );
        let changed: Vec<(&str, u64)> = r
            .stats()
            .ignored
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
            .collect();
        assert_eq!(changed, [(reason, 1)], "ignored counters that changed");
    }

    fn expect_ignored(&self, r: &mut Replica, from: u32, message: Message, reason: &str) {
        let input = Input::Message {
            from: ReplicaId(from),
            message,
        };
        self.expect_ignored_input(r, at(0), input, reason);
    }

    /// Drives backup `r` through the normal case for `b` at `seq` in its view:
    /// PRE-PREPARE, PREPAREs from the other backups, COMMITs from the others.
    fn run_to_execute(&self, r: &mut Replica, seq: u64, b: &TestBatch) {
        let (me, view) = (r.id().0, r.view().0);
        let primary = self.primary(view);
        assert_ne!(me, primary, "run_to_execute drives a backup");
        let mut acts = deliver(r, at(0), primary, self.pre_prepare(view, seq, b));
        for i in (0..self.n()).filter(|i| *i != me && *i != primary) {
            acts.extend(deliver(r, at(0), i, self.prepare(i, view, seq, b.digest)));
        }
        for i in (0..self.n()).filter(|i| *i != me) {
            acts.extend(deliver(r, at(0), i, self.commit(i, view, seq, b.digest)));
        }
        let executed = acts
            .iter()
            .any(|a| matches!(a, Action::Execute { seq: s, .. } if *s == Seq(seq)));
        assert!(
            executed,
            "seq {seq} did not execute: {:?}",
            self.describe(&acts)
        );
    }
}

/// Every pending action, in order.
fn drain(r: &mut Replica) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn feed(r: &mut Replica, now: Time, input: Input) -> Vec<Action> {
    r.on_input(now, input);
    drain(r)
}

fn deliver(r: &mut Replica, now: Time, from: u32, message: Message) -> Vec<Action> {
    let input = Input::Message {
        from: ReplicaId(from),
        message,
    };
    feed(r, now, input)
}

/// The ops of every `Persist` in `actions`, in order: what a store would hold.
fn persisted(actions: &[Action]) -> Vec<PersistOp> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist(ops) => Some(ops.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The signed NEW-VIEW in a `Broadcast` among `actions`.
fn broadcast_new_view(actions: &[Action]) -> Signed<NewView> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Broadcast(Message::NewView(nv)) => Some(nv.clone()),
            _ => None,
        })
        .expect("a NEW-VIEW was broadcast")
}

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
        "pre-prepare: timestamp too far from local clock",
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
/// signed by a backup; one signed by the primary but relayed by a backup; seq 9
/// (above h + L = 8) and seq 0 (at h); a digest that is not the batch's; a
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
            "pre-prepare: not from the primary",
        ),
        (
            2,
            net.pre_prepare(0, 1, &a),
            "pre-prepare: not from the primary",
        ),
        (
            0,
            net.pre_prepare(0, 9, &a),
            "pre-prepare: seq outside the watermark window",
        ),
        (
            0,
            net.pre_prepare(0, 0, &a),
            "pre-prepare: seq outside the watermark window",
        ),
        (
            0,
            net.pre_prepare_by(0, 0, 1, b.digest, &a.bytes),
            "pre-prepare: batch does not match digest",
        ),
        (
            0,
            net.pre_prepare(0, 1, &bad),
            "pre-prepare: batch holds a badly signed transaction",
        ),
        (
            0,
            net.pre_prepare(0, 1, &future),
            "pre-prepare: timestamp too far from local clock",
        ),
        (
            0,
            net.pre_prepare(0, 1, &past),
            "pre-prepare: timestamp too far from local clock",
        ),
    ];
    for (from, message, reason) in cases {
        let mut r1 = net.replica(1);
        net.expect_ignored(&mut r1, from, message, reason);
        assert!(
            r1.slots.values().all(|s| s.pre_prepare.is_none()),
            "{reason}"
        );
    }
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
        "pre-prepare: batch holds a badly signed transaction",
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
        "pre-prepare: conflicting digest (equivocation)",
    );
    let kept = r1.slots[&Seq(1)].pre_prepare.as_ref().map(|p| p.digest);
    assert_eq!(kept, Some(a.digest));

    let acts = deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(net.describe(&acts), ["Send(r0,Prepare(v0,s1,A)@r1)"]);
    assert_eq!(r1.stats().ignored.get("pre-prepare: duplicate"), Some(&1));
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 1, &a),
        "pre-prepare: duplicate",
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
    net.expect_ignored(
        &mut r1,
        0,
        net.pre_prepare(0, 1, &a),
        "message for an older view",
    );
    net.expect_ignored(
        &mut r1,
        2,
        net.prepare(2, 0, 1, a.digest),
        "message for an older view",
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
    assert_eq!(
        r1.stats().ignored.get("message for a far-future view"),
        Some(&1)
    );
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
        "prepare: sent by the primary",
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
        "prepare: duplicate",
    );
    net.expect_ignored(
        &mut r0,
        1,
        net.prepare(1, 0, 1, b.digest),
        "prepare: second digest from one signer (equivocation)",
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
        "commit: duplicate",
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
/// COMMIT ("prepare: duplicate"); a third time — only counted. The same for
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
        "commit: bad signature or payload",
    );
    net.expect_ignored(
        &mut r1,
        2,
        broken(net.prepare(3, 0, 1, a.digest)),
        "prepare: bad signature or payload",
    );
    net.expect_ignored(
        &mut r1,
        3,
        broken(net.prepare(3, 0, 1, a.digest)),
        "prepare: after its quorum (not checked)",
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
        "prepare: duplicate",
    );

    deliver(&mut r1, at(0), 2, net.commit(2, 0, 1, a.digest));
    let acts = deliver(&mut r1, at(0), 3, net.commit(3, 0, 1, a.digest));
    assert_eq!(net.describe(&acts), ["Execute(s1,A,cert@[r1,r2,r3])"]);
    net.expect_ignored(
        &mut r1,
        0,
        broken(net.commit(0, 0, 1, a.digest)),
        "commit: after its quorum (not checked)",
    );
    let acts = deliver(&mut r1, at(0), 0, net.commit(0, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Send(r0,Prepare(v0,s1,A)@r1)",
            "Send(r0,Commit(v0,s1,A)@r1)",
        ]
    );
    assert_eq!(r1.stats().ignored.get("commit: duplicate"), Some(&1));
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
        "prepare: after its quorum (not checked)",
    );
}

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
        "batches: no fetch in progress",
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

// ----- §4.1 client requests --------------------------------------------------------

/// §4.1 (requests are signed by the client) and the pending bounds (STYLE 9).
///
/// Setup: backup 1, `pending_per_client_max` 3, `pending_requests_max` 5.
/// Expect: a request with a bad client signature is dropped ("bad client
/// signature"); a duplicate is not added again (silently: clients re-send);
/// client 0's fourth pending request is dropped ("too many pending for
/// client") while client 1's are taken, until the sixth pending request in
/// total is dropped ("pending set full"). No request makes a backup act.
#[test]
fn client_requests_are_verified_deduplicated_and_bounded() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    let mut forged = net.tx(0, 1);
    forged.amount += 1;
    net.expect_ignored_input(
        &mut r1,
        at(0),
        Input::Request(forged),
        "request: bad client signature",
    );
    assert_eq!(r1.pending_requests(), 0);

    assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, 1))).is_empty());
    assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, 1))).is_empty());
    assert_eq!(r1.pending_requests(), 1, "duplicate not re-added");
    let counted: u64 = r1.stats().ignored.values().sum();
    assert_eq!(counted, 1, "a duplicate is not counted as ignored");

    for nonce in [2, 3] {
        assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, nonce))).is_empty());
    }
    net.expect_ignored_input(
        &mut r1,
        at(0),
        Input::Request(net.tx(0, 4)),
        "request: too many pending for client",
    );
    for nonce in [1, 2] {
        assert!(feed(&mut r1, at(0), Input::Request(net.tx(1, nonce))).is_empty());
    }
    assert_eq!(r1.pending_requests(), 5);
    net.expect_ignored_input(
        &mut r1,
        at(0),
        Input::Request(net.tx(2, 1)),
        "request: pending set full",
    );
    assert_eq!(r1.pending_requests(), 5);
}

/// §4.2: the primary assigns one sequence number per request.
///
/// Setup: primary 0 proposed a request at s1.
/// Expect: the same request again (a client re-sending it, directly or via a
/// backup) gives no action: no second PRE-PREPARE.
#[test]
fn primary_does_not_propose_a_duplicate_request_twice() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));

    let acts = feed(&mut r0, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let acts = deliver(&mut r0, at(0), 2, Message::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    assert_eq!(r0.pending_requests(), 1);
}

// ----- §4.3 checkpoints and catch-up ---------------------------------------------

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
        "checkpoint: bad signature or payload",
    );
    assert_eq!(r1.low_watermark(), Seq(0));

    let acts = deliver(&mut r1, at(0), 3, net.checkpoint(3, 2, c2));
    assert_eq!(
        net.describe(&acts),
        ["Persist[StableCheckpoint(s2,C2)@[r1,r2,r3]]"]
    );
    assert_eq!(r1.low_watermark(), Seq(2));
    assert_eq!(r1.footprint().slots, 1);
    assert!(r1.slots.contains_key(&Seq(3)));
    assert_eq!(r1.footprint().checkpoint_votes, 0);
    assert_eq!(r1.stable_proof().len(), 3);

    net.expect_ignored(
        &mut r1,
        0,
        net.checkpoint(0, 2, c2),
        "checkpoint: at or below the stable checkpoint",
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
        "batches: no fetch in progress",
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
    assert!(r3.fetch.is_some());

    let mut forged = net.committed_batch(1, &a, a.digest, &[0, 1, 2]);
    let by_3 = net.signed_commit(3, 0, 1, a.digest);
    forged.certificate[2] = Signed::from_parts(by_3.payload, ReplicaId(2), by_3.signature);
    let cases = [
        (
            net.committed_batch(1, &a, a.digest, &[0, 1]),
            "batches: certificate below quorum",
        ),
        (
            net.committed_batch(1, &a, a.digest, &[0, 1, 1]),
            "batches: certificate repeats a signer or is too long",
        ),
        (
            // A valid COMMIT repeated: refused before any is checked.
            net.committed_batch(1, &a, a.digest, &[0; 50_000]),
            "batches: certificate repeats a signer or is too long",
        ),
        (forged, "batches: certificate has a bad signature"),
        (
            net.committed_batch(1, &a, b.digest, &[0, 1, 2]),
            "batches: certificate is for another seq or digest",
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

// ----- §4.4 and §4.5.2 view changes ------------------------------------------------

/// §4.4 (backups start a timer when they receive a request and suspect the
/// primary when it expires) with this implementation's refinement: the first
/// expiry re-sends our votes (a lost message is the likeliest cause), the
/// second broadcasts ⟨SUSPECT, v⟩, and f+1 SUSPECTs start the view change,
/// whose VIEW-CHANGE carries the prepared certificate (P).
///
/// Setup: backup 2 holds a request and prepared it at s1 (A); nothing executes.
/// Expect: at +1000 ms Broadcast(own PREPARE, own COMMIT); at +2000 ms the same
/// plus Broadcast(SUSPECT v0); SUSPECT v0 from 3 then gives exactly
/// Persist([View v0->v1, VIEW-CHANGE]) then Broadcast(VIEW-CHANGE v1 with P =
/// the certificate for s1). Messages of view 0 are then dropped.
#[test]
fn request_timer_retransmits_then_suspects_then_view_change() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r2 = net.replica(2);
    assert!(feed(&mut r2, at(0), Input::Request(net.tx(0, 1))).is_empty());
    assert_eq!(r2.request_deadline, Some(at(1_000)));
    deliver(&mut r2, at(0), 0, net.pre_prepare(0, 1, &a));
    let acts = deliver(&mut r2, at(0), 3, net.prepare(3, 0, 1, a.digest));
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r2,r3]), Commit(v0,s1,A)@r2]",
            "Broadcast(Commit(v0,s1,A)@r2)",
        ]
    );

    let acts = feed(&mut r2, at(1_000), Input::Tick);
    assert_eq!(
        net.describe(&acts),
        [
            "Broadcast(Prepare(v0,s1,A)@r2)",
            "Broadcast(Commit(v0,s1,A)@r2)",
        ]
    );
    assert_eq!(r2.request_deadline, Some(at(2_000)));
    let acts = feed(&mut r2, at(2_000), Input::Tick);
    assert_eq!(
        net.describe(&acts),
        [
            "Broadcast(Prepare(v0,s1,A)@r2)",
            "Broadcast(Commit(v0,s1,A)@r2)",
            "Broadcast(Suspect(v0)@r2)",
        ]
    );
    assert_eq!(r2.changing_to(), None, "one suspicion is not a view change");

    let acts = deliver(&mut r2, at(2_100), 3, net.suspect(3, 0));
    let vc = "ViewChange(v1,h0,C@[],P=[Prepared(PrePrepare(v0,s1,A)@r0,prepares@[r2,r3])])@r2";
    assert_eq!(
        net.describe(&acts),
        [
            format!("Persist[View(v0->v1), {vc}]"),
            format!("Broadcast({vc})"),
        ]
    );
    assert_eq!(r2.changing_to(), Some(View(1)));
    assert_eq!(r2.stats().view_changes_started, 1);
    assert_eq!(
        r2.next_deadline(),
        Some(at(2_400)),
        "VIEW-CHANGE retransmission"
    );
    net.expect_ignored(
        &mut r2,
        3,
        net.commit(3, 0, 1, a.digest),
        "message for a view being abandoned",
    );
}

/// §4.4 (the request timer waits for *a request*): a batch that executes
/// without the request the timer waits for is no progress for it. Issue 17,
/// defect 3: a Byzantine primary that commits only other (e.g. stale)
/// transactions must still be suspected.
///
/// Setup: backup 2 holds client 0's request from t=0 (timer due at 1,000).
/// At t=500 the primary commits a batch holding only client 1's transfer.
/// Expect: the timer stays due at 1,000 (not 1,500); at 1,000 the backup
/// retransmits; at 2,000 it suspects the primary.
#[test]
fn executing_other_requests_does_not_stop_the_request_timer() {
    let net = Net::new(4);
    let other = net.batch("O", T0_MS + 500, vec![net.tx(1, 1)]);
    let mut r2 = net.replica(2);
    feed(&mut r2, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(r2.request_deadline, Some(at(1_000)));
    deliver(&mut r2, at(500), 0, net.pre_prepare(0, 1, &other));
    deliver(&mut r2, at(500), 3, net.prepare(3, 0, 1, other.digest));
    deliver(&mut r2, at(500), 0, net.commit(0, 0, 1, other.digest));
    let acts = deliver(&mut r2, at(500), 3, net.commit(3, 0, 1, other.digest));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Execute { seq: Seq(1), .. })),
        "{:?}",
        net.describe(&acts)
    );
    assert_eq!(
        r2.request_deadline,
        Some(at(1_000)),
        "another client's batch executed: the timer still waits for client 0's request"
    );
    feed(&mut r2, at(1_000), Input::Tick);
    let acts = feed(&mut r2, at(2_000), Input::Tick);
    assert!(
        net.describe(&acts)
            .iter()
            .any(|a| a == "Broadcast(Suspect(v0)@r2)"),
        "{:?}",
        net.describe(&acts)
    );

    // Control: once the waited-for request executes, the timer stops.
    let mut r3 = net.replica(3);
    let mine = net.batch("M", T0_MS + 500, vec![net.tx(0, 1)]);
    feed(&mut r3, at(0), Input::Request(net.tx(0, 1)));
    deliver(&mut r3, at(500), 0, net.pre_prepare(0, 1, &mine));
    deliver(&mut r3, at(500), 2, net.prepare(2, 0, 1, mine.digest));
    deliver(&mut r3, at(500), 0, net.commit(0, 0, 1, mine.digest));
    deliver(&mut r3, at(500), 2, net.commit(2, 0, 1, mine.digest));
    assert_eq!(r3.next_deadline(), None, "nothing left to wait for");
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
        "pre-prepare: not from the primary",
    );
    let huge = vec![0; crate::tx::BATCH_BYTES_MAX + 1];
    deliver(
        &mut r0,
        at(0),
        1,
        net.pre_prepare_by(1, 1, 1, digest, &huge),
    );
    assert_eq!(
        r0.stats().ignored.get("pre-prepare: batch too large"),
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
            f.future_bytes <= super::FUTURE_BYTES_PER_SENDER,
            "{} bytes buffered",
            f.future_bytes
        );
        assert!(f.exceeded(&r0.footprint_limits()).is_empty());
    }
    assert_eq!(r0.footprint().future_messages, 2, "the two newest fit");
    assert_eq!(
        r0.stats().ignored.get("future-view buffer full for sender"),
        Some(&6)
    );
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

/// §4.5.2 ("a faulty replica cannot cause a view change on its own") with
/// suspicion before view change (see `view_change` module docs).
///
/// Setup: backup 2 in view 0 whose own timer has not fired.
/// Expect: SUSPECT v0 from 3 — no action; again — dropped ("not newer than the
/// sender's last"); SUSPECT v0 from 1 makes f+1 suspicions: Persist([View
/// v0->v1, VIEW-CHANGE]) then Broadcast(VIEW-CHANGE v1, empty P).
#[test]
fn one_suspect_is_not_enough_f_plus_1_start_a_view_change() {
    let net = Net::new(4);
    let mut r2 = net.replica(2);

    let acts = deliver(&mut r2, at(0), 3, net.suspect(3, 0));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    net.expect_ignored(
        &mut r2,
        3,
        net.suspect(3, 0),
        "suspect: not newer than the sender's last",
    );
    assert_eq!(r2.changing_to(), None);

    let acts = deliver(&mut r2, at(0), 1, net.suspect(1, 0));
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[View(v0->v1), ViewChange(v1,h0,C@[],P=[])@r2]",
            "Broadcast(ViewChange(v1,h0,C@[],P=[])@r2)",
        ]
    );
}

/// §4.5.2: "if a replica receives a set of f+1 valid VIEW-CHANGE messages from
/// other replicas for views greater than its current view, it sends a
/// VIEW-CHANGE message for the smallest view in the set"; the NEW-VIEW timer
/// starts once 2f+1 replicas asked for its target or a later view.
///
/// Setup: backup 2 in view 0.
/// Expect: VIEW-CHANGE v1 from 3 — nothing; VIEW-CHANGE v2 from 0 — joins the
/// smallest, v1: Persist([View v0->v1, VIEW-CHANGE v1]), Broadcast; with 3
/// (v1), 0 (v2) and itself (v1) that is 2f+1 at v1 or later, so the NEW-VIEW
/// timer runs for `request_timeout_ms` (first attempt). VIEW-CHANGE v1 from 1
/// changes nothing.
#[test]
fn f_plus_1_higher_view_changes_make_a_replica_join() {
    let net = Net::new(4);
    let mut r2 = net.replica(2);

    let acts = deliver(
        &mut r2,
        at(0),
        3,
        Message::ViewChange(net.view_change(3, 1, vec![])),
    );
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let acts = deliver(
        &mut r2,
        at(0),
        0,
        Message::ViewChange(net.view_change(0, 2, vec![])),
    );
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[View(v0->v1), ViewChange(v1,h0,C@[],P=[])@r2]",
            "Broadcast(ViewChange(v1,h0,C@[],P=[])@r2)",
        ]
    );
    assert_eq!(r2.view_change_deadline, Some(at(1_000)));
    assert_eq!(r2.next_deadline(), Some(at(300)));

    let acts = deliver(
        &mut r2,
        at(0),
        1,
        Message::ViewChange(net.view_change(1, 1, vec![])),
    );
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    assert_eq!(r2.view_change_deadline, Some(at(1_000)));
    assert_eq!(r2.next_deadline(), Some(at(300)));
}

/// The VIEW-CHANGEs of the NEW-VIEW scenario: replica 2 prepared B at s2 in
/// view 0 (PREPAREs of 2 and 3), replica 3 prepared nothing, replica 1 (the
/// primary of view 1) prepared nothing.
fn view_changes_for_v1(net: &Net) -> (TestBatch, [Signed<ViewChange>; 3]) {
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let proof = net.prepared_proof(0, 2, &b, &[2, 3]);
    let vcs = [
        net.view_change(1, 1, vec![]),
        net.view_change(2, 1, vec![proof]),
        net.view_change(3, 1, vec![]),
    ];
    (b, vcs)
}

/// The NEW-VIEW that primary 1 of view 1 builds from [`view_changes_for_v1`].
fn new_view_v1(net: &Net) -> Signed<NewView> {
    let (_, [_, vc2, vc3]) = view_changes_for_v1(net);
    let mut r1 = net.replica(1);
    deliver(&mut r1, at(0), 2, Message::ViewChange(vc2));
    broadcast_new_view(&deliver(&mut r1, at(0), 3, Message::ViewChange(vc3)))
}

/// §4.4: the primary of v+1 with 2f+1 valid VIEW-CHANGEs multicasts
/// ⟨NEW-VIEW, v+1, V, O⟩; O holds, for every n between min-s and max-s, a
/// PRE-PREPARE for the request prepared in the highest view, or for the null
/// request where none prepared.
///
/// Setup: replica 1 (primary of view 1) in view 0; VIEW-CHANGEs for v1 from 2
/// (prepared B at s2) and from 3 (nothing).
/// Expect: after 2's — nothing; 3's makes f+1, so it joins and, holding 2f+1
/// with its own, sends NEW-VIEW at once: Persist([View v0->v1, VIEW-CHANGE]),
/// Broadcast(VIEW-CHANGE), Persist([NEW-VIEW, View v1]), Broadcast(NEW-VIEW
/// with V = 1, 2, 3 and O = s1: null, s2: B), EnteredView(v1). The NEW-VIEW is
/// byte for byte the one the O-set rule dictates; the next proposal is s3.
#[test]
fn new_primary_sends_new_view_reproposing_prepared_and_null_requests() {
    let net = Net::new(4);
    let (b, [vc1, vc2, vc3]) = view_changes_for_v1(&net);
    let mut r1 = net.replica(1);

    let acts = deliver(&mut r1, at(0), 2, Message::ViewChange(vc2.clone()));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
    let acts = deliver(&mut r1, at(0), 3, Message::ViewChange(vc3.clone()));

    let nv = "NewView(v1,V@[r1,r2,r3],O=[PrePrepare(v1,s1,null)@r1,PrePrepare(v1,s2,B)@r1])@r1";
    assert_eq!(
        net.describe(&acts),
        [
            "Persist[View(v0->v1), ViewChange(v1,h0,C@[],P=[])@r1]".to_string(),
            "Broadcast(ViewChange(v1,h0,C@[],P=[])@r1)".to_string(),
            format!("Persist[{nv}, View(v1)]"),
            format!("Broadcast({nv})"),
            "EnteredView(v1)".to_string(),
        ]
    );
    let null = Replica::null_batch().0;
    let expected = net.new_view(1, 1, vec![vc1, vc2, vc3], &[(1, null), (2, b.digest)]);
    assert_eq!(broadcast_new_view(&acts), expected);
    assert!(r1.is_primary());
    assert_eq!(r1.view(), View(1));
    assert_eq!(r1.next_seq, Seq(3));
}

/// §4.4: a backup accepts a NEW-VIEW if it is properly signed, its
/// VIEW-CHANGEs are valid for v+1, and O is correct (the backup recomputes
/// it); it then enters v+1 and sends a PREPARE for every PRE-PREPARE in O.
///
/// Setup: replica 0 (a backup in view 1) in view 0; primary 1's NEW-VIEW.
/// Expect: exactly Persist([NEW-VIEW, View v1]), EnteredView(v1), then per O
/// entry Broadcast(PREPARE): s1 null, s2 B.
#[test]
fn backup_accepts_correct_new_view_and_prepares_its_o_set() {
    let net = Net::new(4);
    let nv = new_view_v1(&net);
    let mut r0 = net.replica(0);

    let acts = deliver(&mut r0, at(0), 1, Message::NewView(nv));

    let nv = "NewView(v1,V@[r1,r2,r3],O=[PrePrepare(v1,s1,null)@r1,PrePrepare(v1,s2,B)@r1])@r1";
    assert_eq!(
        net.describe(&acts),
        [
            format!("Persist[{nv}, View(v1)]"),
            "EnteredView(v1)".to_string(),
            "Broadcast(Prepare(v1,s1,null)@r0)".to_string(),
            "Broadcast(Prepare(v1,s2,B)@r0)".to_string(),
        ]
    );
    assert_eq!(r0.view(), View(1));
    assert_eq!(r0.changing_to(), None);
    assert_eq!(r0.stats().new_views_entered, 1);
}

/// §4.4, why backups recompute O: a Byzantine new primary must not drop a
/// prepared (possibly committed) request or replace it.
///
/// Setup: replica 0 in view 0; NEW-VIEWs built from the same valid V.
/// Expect: no action and the exact reason for a NEW-VIEW whose O omits s2
/// (the prepared B); whose O has a null request at s2 instead of B; whose O is
/// empty; signed by replica 2, not the primary of view 1; with only 2f
/// VIEW-CHANGEs. Replica 0 stays in view 0.
#[test]
fn backup_rejects_new_view_with_wrong_o_set() {
    let net = Net::new(4);
    let (b, [vc1, vc2, vc3]) = view_changes_for_v1(&net);
    let null = Replica::null_batch().0;
    let all = vec![vc1.clone(), vc2.clone(), vc3];
    let cases = [
        (
            net.new_view(1, 1, all.clone(), &[(1, null)]),
            "new-view: O-set does not match the view-changes",
        ),
        (
            net.new_view(1, 1, all.clone(), &[(1, null), (2, null)]),
            "new-view: O-set does not match the view-changes",
        ),
        (
            net.new_view(1, 1, all.clone(), &[]),
            "new-view: O-set does not match the view-changes",
        ),
        (
            net.new_view(2, 1, all, &[(1, null), (2, b.digest)]),
            "new-view: not from the new view's primary",
        ),
        (
            net.new_view(1, 1, vec![vc1, vc2], &[(1, null), (2, b.digest)]),
            "new-view: fewer than 2f+1 view-changes",
        ),
    ];
    for (nv, reason) in cases {
        let mut r0 = net.replica(0);
        net.expect_ignored(&mut r0, 1, Message::NewView(nv), reason);
        assert_eq!(r0.view(), View(0), "{reason}");
    }
}

/// §4.4: a VIEW-CHANGE is valid only if each prepared certificate in P holds a
/// PRE-PREPARE from the primary of its view and 2f matching PREPAREs from
/// distinct backups, over the batch it carries — otherwise a Byzantine replica
/// could make a NEW-VIEW re-propose a request that never prepared.
///
/// Setup: fresh replica 3 per case; a VIEW-CHANGE v1 from replica 2 whose P
/// holds one forged certificate for s2.
/// Expect: no action, the exact reason, and the VIEW-CHANGE not kept, for:
/// PREPAREs over another digest; only f PREPAREs; one PREPARE twice; a
/// PRE-PREPARE signed by a backup; the primary's PREPARE counted; a batch that
/// is not the digest's; a PREPARE whose signature is forged. A NEW-VIEW
/// carrying such a VIEW-CHANGE in V is rejected for the same reason.
#[test]
fn view_change_with_forged_prepared_certificate_is_rejected() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 2)]);
    let good = net.prepared_proof(0, 2, &b, &[2, 3]);

    let mut other_digest = good.clone();
    other_digest.prepares = net.prepared_proof(0, 2, &a, &[2, 3]).prepares;
    let mut only_f = good.clone();
    only_f.prepares.truncate(1);
    let mut repeated = good.clone();
    repeated.prepares[1] = repeated.prepares[0].clone();
    let mut flood = good.clone();
    flood.prepares = vec![good.prepares[0].clone(); 100_000];
    let mut by_backup = good.clone();
    let pp = PrePrepare {
        view: View(0),
        seq: Seq(2),
        digest: b.digest,
    };
    by_backup.pre_prepare = net.sign(2, pp);
    let with_primary = net.prepared_proof(0, 2, &b, &[0, 2]);
    let mut wrong_batch = good.clone();
    wrong_batch.batch = a.bytes.clone();
    let mut forged_sig = good.clone();
    let by_2 = forged_sig.prepares[0].clone();
    forged_sig.prepares[1] = Signed::from_parts(by_2.payload, ReplicaId(3), by_2.signature);

    let cases = [
        (
            other_digest,
            "view-change: prepared proof prepare does not match",
        ),
        (only_f, "view-change: prepared proof below quorum"),
        (
            repeated,
            "view-change: prepared proof repeats a signer or is too long",
        ),
        (
            // Issue 17, defect 8: refused before any of them is checked.
            flood,
            "view-change: prepared proof repeats a signer or is too long",
        ),
        (
            by_backup,
            "view-change: prepared proof pre-prepare not from its primary",
        ),
        (
            with_primary,
            "view-change: prepared proof counts the primary's prepare",
        ),
        (
            wrong_batch,
            "view-change: prepared proof batch does not match",
        ),
        (forged_sig, "view-change: prepared proof has a bad prepare"),
    ];
    let null = Replica::null_batch().0;
    for (proof, reason) in cases {
        let long = proof.prepares.len() > 4;
        let vc = net.view_change(2, 1, vec![proof]);
        let mut r3 = net.replica(3);
        let started = std::time::Instant::now();
        net.expect_ignored(&mut r3, 2, Message::ViewChange(vc.clone()), reason);
        if long {
            // 100,000 signature checks take seconds; refusing takes none.
            assert!(started.elapsed() < std::time::Duration::from_millis(500));
        }
        assert!(!r3.view_changes.contains_key(&ReplicaId(2)), "{reason}");

        let vcs = vec![
            net.view_change(1, 1, vec![]),
            vc,
            net.view_change(0, 1, vec![]),
        ];
        let nv = net.new_view(1, 1, vcs, &[(1, null), (2, b.digest)]);
        let mut r3 = net.replica(3);
        net.expect_ignored(&mut r3, 1, Message::NewView(nv), reason);
        assert_eq!(r3.view(), View(0));
    }
}

/// §4.5.2: "if the timer of replica i expires in view v+1 before it receives
/// a valid NEW-VIEW for v+1 ... it starts the view change for v+2 but this
/// time it will wait 2T"; here capped at `view_change_timeout_max_ms` (3000),
/// and, per the paper, the timer starts only once 2f+1 VIEW-CHANGEs for the
/// target are in.
///
/// Setup: replica 0 joins v1 (VIEW-CHANGEs from 1 and 3); at each later
/// attempt two peers' VIEW-CHANGEs for the new target arrive 50 ms after it
/// starts. The driver ticks at every `next_deadline()`.
/// Expect: the attempts time out after 1000, 2000 and 3000 ms (not 4000);
/// between, only VIEW-CHANGE re-sends every 300 ms; each expiry gives exactly
/// Persist([View v0->v(k+1), VIEW-CHANGE]) then Broadcast(VIEW-CHANGE); with
/// fewer than 2f+1 VIEW-CHANGEs for the target no timer runs.
#[test]
fn view_change_timeout_doubles_up_to_the_cap() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    deliver(
        &mut r0,
        at(0),
        1,
        Message::ViewChange(net.view_change(1, 1, vec![])),
    );
    let acts = deliver(
        &mut r0,
        at(0),
        3,
        Message::ViewChange(net.view_change(3, 1, vec![])),
    );
    assert_eq!(
        net.describe(&acts)[0],
        "Persist[View(v0->v1), ViewChange(v1,h0,C@[],P=[])@r0]"
    );
    assert_eq!(r0.view_change_deadline, Some(at(1_000)));

    // (VIEW-CHANGE senders for the next target, expected timeout in ms)
    let attempts = [(None, 1_000), (Some([1, 3]), 2_000), (Some([1, 2]), 3_000)];
    let mut armed_at = at(0);
    for (k, (senders, timeout_ms)) in attempts.into_iter().enumerate() {
        let target = k as u64 + 1;
        if let Some(senders) = senders {
            assert_eq!(
                r0.view_change_deadline, None,
                "v{target}: no timer below 2f+1"
            );
            armed_at = Time(r0.now.0 + 50_000);
            for i in senders {
                let vc = net.view_change(i, target, vec![]);
                let acts = deliver(&mut r0, armed_at, i, Message::ViewChange(vc));
                assert_eq!(net.describe(&acts), Vec::<String>::new());
            }
        }
        let expiry = armed_at.plus_millis(timeout_ms);
        assert_eq!(r0.view_change_deadline, Some(expiry), "v{target}");
        loop {
            let t = r0.next_deadline().expect("timers armed");
            assert!(t <= expiry, "v{target}: no deadline may pass the expiry");
            let acts = feed(&mut r0, t, Input::Tick);
            if t < expiry {
                let resend = format!("Broadcast(ViewChange(v{target},h0,C@[],P=[])@r0)");
                assert_eq!(net.describe(&acts), [resend]);
                continue;
            }
            let next = target + 1;
            assert_eq!(
                net.describe(&acts),
                [
                    format!("Persist[View(v0->v{next}), ViewChange(v{next},h0,C@[],P=[])@r0]"),
                    format!("Broadcast(ViewChange(v{next},h0,C@[],P=[])@r0)"),
                ]
            );
            break;
        }
        assert_eq!(r0.changing_to(), Some(View(target + 1)));
    }
}

// ----- restarts (no equivocation across a crash) -----------------------------------

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
        "pre-prepare: conflicts with a prepare we signed",
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
        "message for a view being abandoned",
    );
}

/// The ops a node's store gives back after `actions` were persisted: written
/// with `node::persist::add_ops`, read with `node::persist::load_ops` (which
/// replays stable checkpoint, view, NEW-VIEW, VIEW-CHANGE, then the log).
fn through_store(actions: &[Action]) -> Vec<PersistOp> {
    use crate::storage::Store;
    let mut store = crate::storage::memory::MemoryStore::new();
    for a in actions {
        if let Action::Persist(ops) = a {
            let mut batch = crate::storage::WriteBatch::default();
            crate::node::persist::add_ops(&mut batch, ops);
            store.write(batch).expect("memory store writes");
        }
    }
    crate::node::persist::load_ops(&store).expect("memory store reads")
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
    assert_eq!(r1.next_seq, Seq(3));

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
    assert_eq!(r1.next_seq, Seq(3), "s1 and s2 belong to the O-set");

    let acts = feed(&mut r1, at(0), Input::Request(net.tx(0, 1)));
    assert_eq!(net.describe(&acts), Vec::<String>::new());
}

/// §4.1 with STYLE 9 ("put a limit on everything"): what a replica keeps per
/// request must stay within `pending_requests_max`.
///
/// Setup: backup 1 receives and then executes 8 requests one after another
/// (`pending_requests_max` is 5); nothing is pending at the end.
/// Expect: its request bookkeeping is empty again. (It once kept every
/// executed request's key in the backup's proposal queue, growing for as long
/// as the view lasted.)
#[test]
fn backup_request_bookkeeping_stays_bounded() {
    let net = Net::new(4);
    let mut r1 = net.replica(1);
    for nonce in 1..=8 {
        assert!(feed(&mut r1, at(0), Input::Request(net.tx(0, nonce))).is_empty());
        let b = net.batch(&format!("B{nonce}"), T0_MS, vec![net.tx(0, nonce)]);
        net.run_to_execute(&mut r1, nonce, &b);
    }
    assert_eq!(r1.pending_requests(), 0);
    assert_eq!(
        r1.pending.unproposed_len(),
        0,
        "the proposal queue holds keys of executed requests"
    );
}

/// §4.4: "min-s is the sequence number of the latest stable checkpoint in V";
/// O covers only (min-s, max-s], and a replica whose own checkpoint is older
/// brings its state up to min-s (here by fetching committed batches, §4.3).
///
/// Setup: replica 0 in view 0 at h = 0; a NEW-VIEW from primary 1 of view 1
/// whose V has: 1 with a stable checkpoint at s2 (proof of 1, 2, 3) and B
/// prepared at s3; 2 with A prepared at s1 (below min-s, so not re-proposed);
/// 3 with nothing.
/// Expect: Persist([NEW-VIEW, View v1]), EnteredView(v1), Broadcast(PREPARE
/// v1 s3 B), then Send(Fetch s1..s2) to the next peer.
#[test]
fn new_view_above_a_later_stable_checkpoint() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let b = net.batch("B", T0_MS, vec![net.tx(0, 3)]);
    let c2 = Digest([2; 32]);
    net.name(c2, "C2");
    let proof: Vec<Signed<Checkpoint>> = [1, 2, 3]
        .into_iter()
        .map(|i| {
            let c = Checkpoint {
                seq: Seq(2),
                digest: c2,
            };
            net.sign(i, c)
        })
        .collect();
    let vc1 = net.sign(
        1,
        ViewChange {
            new_view: View(1),
            stable_seq: Seq(2),
            checkpoint_proof: proof,
            prepared: vec![net.prepared_proof(0, 3, &b, &[2, 3])],
        },
    );
    let vc2 = net.view_change(2, 1, vec![net.prepared_proof(0, 1, &a, &[2, 3])]);
    let vc3 = net.view_change(3, 1, vec![]);
    let nv = net.new_view(1, 1, vec![vc1, vc2, vc3], &[(3, b.digest)]);
    let mut r0 = net.replica(0);

    let acts = deliver(&mut r0, at(0), 1, Message::NewView(nv));

    let nv = "NewView(v1,V@[r1,r2,r3],O=[PrePrepare(v1,s3,B)@r1])@r1";
    assert_eq!(
        net.describe(&acts),
        [
            format!("Persist[{nv}, View(v1)]"),
            "EnteredView(v1)".to_string(),
            "Broadcast(Prepare(v1,s3,B)@r0)".to_string(),
            "Send(r1,Fetch(s1..s2))".to_string(),
        ]
    );
    assert_eq!(r0.low_watermark(), Seq(0), "stable only once executed");
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

/// §4.4 liveness: a replica that asks for a view we already entered missed
/// the NEW-VIEW. The answer can be lost, or reach the asker while it is down,
/// so it is repeated — but at most once per request timeout per asker.
///
/// Setup: replica 0 entered view 1; replica 2 keeps sending VIEW-CHANGE(v1).
/// Expect: NEW-VIEW to 2 on the first; nothing on a second just after; the
/// NEW-VIEW again once a request timeout passed. (A seed of 10,000 once
/// ended with a replica asking for ever after its one answer was lost.)
#[test]
fn straggler_gets_the_new_view_again_after_a_timeout() {
    let net = Net::new(4);
    let nv = new_view_v1(&net);
    let mut r0 = net.replica(0);
    deliver(&mut r0, at(0), 1, Message::NewView(nv));
    assert_eq!(r0.view(), View(1));
    let asked = || Message::ViewChange(net.view_change(2, 1, vec![]));
    let timeout = config().request_timeout_ms;
    let nv = "NewView(v1,V@[r1,r2,r3],O=[PrePrepare(v1,s1,null)@r1,PrePrepare(v1,s2,B)@r1])@r1";
    let first = deliver(&mut r0, at(10), 2, asked());
    assert_eq!(net.describe(&first), [format!("Send(r2,{nv})")]);
    let again = deliver(&mut r0, at(20), 2, asked());
    assert_eq!(net.describe(&again), Vec::<String>::new());
    // (The request timer fires at the same moment and re-sends r0's votes.)
    let later = deliver(&mut r0, at(10 + timeout), 2, asked());
    assert_eq!(
        net.describe(&later).first(),
        Some(&format!("Send(r2,{nv})"))
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

/// The NEW-VIEW timer counts replicas that asked for our target view *or a
/// later one*: one whose timer already moved it past our target no longer
/// backs the target, and waiting for 2f+1 VIEW-CHANGEs for the target alone
/// can then last for ever (a silent-primary campaign seed ended with two
/// replicas waiting for view 1 and the third alone in view 2).
///
/// Setup: backup 2 changing to v1 after SUSPECTs from 1 and 3; VIEW-CHANGE
/// v1 from 1; then VIEW-CHANGE v2 from 3.
/// Expect: no NEW-VIEW timer with two replicas at v1; with 3 at v2 it runs.
#[test]
fn new_view_timer_counts_view_changes_for_later_views() {
    let net = Net::new(4);
    let mut r2 = net.replica(2);
    deliver(&mut r2, at(0), 1, net.suspect(1, 0));
    deliver(&mut r2, at(0), 3, net.suspect(3, 0));
    assert_eq!(r2.changing_to(), Some(View(1)));
    deliver(
        &mut r2,
        at(0),
        1,
        Message::ViewChange(net.view_change(1, 1, vec![])),
    );
    assert_eq!(r2.view_change_deadline, None, "2 of 3 needed");
    deliver(
        &mut r2,
        at(0),
        3,
        Message::ViewChange(net.view_change(3, 2, vec![])),
    );
    assert_eq!(r2.view_change_deadline, Some(at(1_000)));
}

/// The request timer also runs while a PRE-PREPARE above our height waits,
/// even with no client request pending here (the clients may have got their
/// f+1 replies and fallen silent): otherwise a replica one block behind
/// never retransmits, fetches or suspects. (A mutation campaign seed ended
/// with two replicas one block short and nothing scheduled.)
///
/// Setup: backup 3 accepts PRE-PREPARE(v0,s1,A); no request was delivered.
/// Expect: a deadline one request timeout later; at it, our PREPARE again.
#[test]
fn request_timer_runs_for_a_pre_prepare_without_pending_requests() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r3 = net.replica(3);
    deliver(&mut r3, at(0), 0, net.pre_prepare(0, 1, &a));
    assert_eq!(r3.pending_requests(), 0);
    let timeout = config().request_timeout_ms;
    assert_eq!(r3.request_deadline, Some(at(timeout)));
    let acts = feed(&mut r3, at(timeout), Input::Tick);
    assert_eq!(net.describe(&acts), ["Broadcast(Prepare(v0,s1,A)@r3)"]);
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

/// Entering a view drops the double-sign guard's entries of older views (we
/// never sign for them again); repeated view changes without a new stable
/// checkpoint once piled them up beyond the S8 bound.
///
/// Setup: replica 0, primary of view 0, proposes a request at s1 (its
/// PRE-PREPARE is in the guard), then accepts the NEW-VIEW of view 1.
/// Expect: no guard entry of view 0 remains.
#[test]
fn entering_a_view_forgets_older_views_votes() {
    let net = Net::new(4);
    let mut r0 = net.replica(0);
    feed(&mut r0, at(0), Input::Request(net.tx(0, 5)));
    assert!(r0.votes.keys().any(|(_, v, _)| *v == View(0)));
    let nv = new_view_v1(&net);
    deliver(&mut r0, at(0), 1, Message::NewView(nv));
    assert_eq!(r0.view(), View(1));
    assert!(!r0.votes.is_empty());
    assert!(
        r0.votes.keys().all(|(_, v, _)| *v == View(1)),
        "{:?}",
        r0.votes.keys().collect::<Vec<_>>()
    );
}

/// A replica that sees a later view it has no NEW-VIEW for asks the sender
/// again after a request timeout (the request or the answer may be lost; a
/// Twins seed ended with a replica in view 1 for ever after its one request
/// per peer was sent on a lossy network).
///
/// Setup: replica 2 in view 0; PREPAREs of view 1 from replica 3.
/// Expect: NewViewRequest to 3 on the first; nothing on a second right after;
/// a NewViewRequest again one request timeout later.
#[test]
fn new_view_request_is_repeated_after_a_timeout() {
    let net = Net::new(4);
    let a = net.batch("A", T0_MS, vec![net.tx(0, 1)]);
    let mut r2 = net.replica(2);
    let timeout = config().request_timeout_ms;
    let first = deliver(&mut r2, at(0), 3, net.prepare(3, 1, 1, a.digest));
    assert_eq!(net.describe(&first), ["Send(r3,NewViewRequest(v0))"]);
    let again = deliver(&mut r2, at(1), 3, net.prepare(3, 1, 2, a.digest));
    assert_eq!(net.describe(&again), Vec::<String>::new());
    let later = deliver(&mut r2, at(1 + timeout), 3, net.prepare(3, 1, 3, a.digest));
    assert_eq!(net.describe(&later), ["Send(r3,NewViewRequest(v0))"]);
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
    let below = "view-change: prepared proof below quorum";
    net.expect_ignored(&mut r3, 2, vc(1), below);
    net.expect_ignored(
        &mut r3,
        2,
        vc(1),
        "view-change: its sender's VIEW-CHANGE for this view was refused",
    );
    for view in 2..=4 {
        net.expect_ignored(&mut r3, 2, vc(view), below);
    }
    net.expect_ignored(
        &mut r3,
        2,
        vc(5),
        "view-change: over the sender's rate of certificate checks",
    );
    assert!(!r3.view_changes.contains_key(&ReplicaId(2)));
    deliver(
        &mut r3,
        at(0),
        1,
        Message::ViewChange(net.view_change(1, 1, vec![])),
    );
    assert!(
        r3.view_changes.contains_key(&ReplicaId(1)),
        "another sender is checked"
    );
}

/// Issue 17, defect 5: a peer whose messages keep failing their signature
/// check (or are refused after it) spends an allowance; beyond it its
/// messages are dropped unchecked until the allowance refills, while
/// another peer's messages are still checked and used.
#[test]
fn wasted_signature_checks_are_limited_per_peer() {
    use super::{WASTED_CHECKS_BURST, WASTED_CHECK_INTERVAL_MS};
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
    let bad = "prepare: bad signature or payload";
    let over = "peer over its allowance of wasted signature checks (not checked)";
    for k in 0..WASTED_CHECKS_BURST {
        net.expect_ignored(&mut r1, 2, broken(k), bad);
    }
    net.expect_ignored(&mut r1, 2, broken(5_000), over);
    // A validly signed vote of that peer is not checked either for now.
    net.expect_ignored(&mut r1, 2, net.prepare(2, 0, 2, b.digest), over);
    // Another peer is checked and its vote used.
    deliver(&mut r1, at(0), 0, net.pre_prepare(0, 1, &b));
    deliver(&mut r1, at(0), 3, net.prepare(3, 0, 1, b.digest));
    assert!(r1.slots[&Seq(1)].prepares.contains_key(&ReplicaId(3)));
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
    assert!(r1.slots[&Seq(2)].prepares.contains_key(&ReplicaId(2)));
}
