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
//!
//! This file is the harness; the tests are in one file per phase:
//! `normal` (§4.2 pre-prepare, prepare, commit, execute), `requests` (§4.1),
//! `checkpoint` (§4.3 garbage collection), `catch_up` (§4.3 state transfer),
//! `monitor` (backups replacing a primary that leaves requests waiting),
//! `view_change` (§4.4, §4.5.2), `restart` (no equivocation across a crash)
//! and `limits` (bounds on what peers can make a replica hold or check).

use super::messages::{
    Checkpoint, Commit, CommittedBatch, Message, NewView, PrePrepare, Prepare, PreparedProof,
    Suspect, ViewChange,
};
use super::timers::Timer;
use super::{Action, Config, Input, PersistOp, Recovered, Refusal, Replica};
use crate::cluster::Cluster;
use crate::crypto::{Digest, KeyPair, NetworkId, Payload, Signed, Verifier};
use crate::tx::{batch_digest, Batch, Transaction};
use crate::types::{ReplicaId, Seq, Time, View};
use std::cell::RefCell;
use std::collections::BTreeMap;

mod catch_up;
mod checkpoint;
mod limits;
mod monitor;
mod normal;
mod requests;
mod restart;
mod view_change;

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
    fn expect_ignored_input(&self, r: &mut Replica, now: Time, input: Input, reason: Refusal) {
        let before = r.stats().ignored.clone();
        let acts = feed(r, now, input);
        assert_eq!(
            self.describe(&acts),
            Vec::<String>::new(),
            "dropped input must not act"
        );
        let changed: Vec<(Refusal, u64)> = r
            .stats()
            .ignored
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
            .collect();
        assert_eq!(changed, [(reason, 1)], "ignored counters that changed");
    }

    fn expect_ignored(&self, r: &mut Replica, from: u32, message: Message, reason: Refusal) {
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
