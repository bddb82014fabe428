//! Restart: rebuilding a replica from what it persisted (`Recovered`), and
//! the rules a restart imposes — sit out the view whose PRE-PREPAREs and
//! PREPAREs a crash erased, and every vote of the views a lost store
//! erased (`Recovered::votes_lost`, `Recovered::store_lost`).

use super::*;

impl Replica {
    /// Rebuilds the replica from its persisted ops. The result does not
    /// depend on the order of the ops: the view is the last `View` op, a
    /// slot keeps the votes of the highest view seen for it, and the double-sign
    /// guard learns every vote whatever its view.
    pub(super) fn restore(&mut self, rec: Recovered) {
        let votes_lost = rec.votes_lost;
        if let Some(d) = rec.last_checkpoint_digest {
            self.checkpoints.own.insert(rec.last_executed, d);
        }
        let mut abstain: Option<View> = None;
        let mut abstain_commits: Option<View> = None;
        for op in &rec.ops {
            match op {
                PersistOp::View { view, changing_to } => {
                    self.view = *view;
                    self.status = (*changing_to).into();
                }
                PersistOp::Abstain { view, commits } => {
                    abstain = abstain.max(Some(*view));
                    if *commits {
                        abstain_commits = abstain_commits.max(Some(*view));
                    }
                }
                PersistOp::StableCheckpoint { seq, proof } if *seq >= self.log.low => {
                    self.log.low = *seq;
                    self.log.stable_proof = proof.clone();
                }
                _ => {}
            }
        }
        let mut new_views = Vec::new();
        for op in rec.ops {
            match op {
                PersistOp::View { .. }
                | PersistOp::StableCheckpoint { .. }
                | PersistOp::Abstain { .. } => {}
                PersistOp::PrePrepare { pre_prepare, batch } => {
                    let Ok(pp) = self.verifier.verify::<PrePrepare>(&pre_prepare) else {
                        continue;
                    };
                    self.guard
                        .restore(VoteKind::PrePrepare, pp.view, pp.seq, pp.digest);
                    if let Ok(b) = Batch::decode(&batch) {
                        self.restore_pre_prepare(pp, b, batch.into());
                    }
                }
                PersistOp::Prepare(p) => {
                    if let Ok(v) = self.verifier.verify(&p) {
                        self.guard
                            .restore(VoteKind::Prepare, v.view, v.seq, v.digest);
                        let me = self.me;
                        if let Some(slot) = self.log.restored_slot(v.seq, v.view) {
                            slot.prepares.insert(me, v);
                        }
                    }
                }
                PersistOp::Commit(c) => {
                    if let Ok(v) = self.verifier.verify(&c) {
                        self.guard
                            .restore(VoteKind::Commit, v.view, v.seq, v.digest);
                        let me = self.me;
                        if let Some(slot) = self.log.restored_slot(v.seq, v.view) {
                            slot.sent_commit = true;
                            slot.commits.insert(me, v);
                        }
                    }
                }
                PersistOp::Prepared(proof) => {
                    if let Ok(pp) = PrePrepare::decode(&proof.pre_prepare.payload) {
                        let slot = self.log.slots.entry(pp.seq).or_default();
                        if slot.prepared.as_ref().is_none_or(|(v, _)| *v <= pp.view) {
                            slot.prepared = Some((pp.view, proof));
                        }
                    }
                }
                PersistOp::ViewChange(vc) => {
                    if let Ok(v) = self.verifier.verify(&vc) {
                        let newer = self
                            .view_change
                            .received
                            .get(&self.me)
                            .is_none_or(|old| old.new_view <= v.new_view);
                        if newer {
                            self.view_change.own = Some(vc);
                            self.view_change.received.insert(self.me, v);
                        }
                    }
                }
                PersistOp::NewView(nv) => {
                    if let Ok(v) = self.verifier.verify::<NewView>(&nv) {
                        new_views.push(v);
                    }
                }
            }
        }
        new_views.sort_by_key(|nv| nv.view);
        for nv in new_views {
            self.restore_new_view(nv);
        }
        self.log.slots.retain(|s, _| *s > self.log.low);
        self.guard.forget_through(self.log.low);
        self.guard.forget_views_before(self.view);
        // Our own vote for the checkpoint we stopped at, so it counts when
        // the peers' CHECKPOINTs for it arrive.
        if let Some(&digest) = self.checkpoints.own.get(&rec.last_executed) {
            if rec.last_executed > self.log.low {
                let seq = rec.last_executed;
                let ckpt = self.sign(messages::Checkpoint { seq, digest });
                self.record_checkpoint(ckpt);
            }
        }
        // Next proposal: above everything we pre-prepared in this view.
        let view = self.view;
        let proposed = self.guard.highest_pre_prepare(view).unwrap_or(Seq(0));
        self.requests.next_seq = proposed
            .max(self.log.last_executed)
            .max(self.log.low)
            .next();
        // Slots that hold votes from an older view than ours start afresh.
        self.log.reset_older_slots(view);
        // A crash (no clean stop's record) erased the PRE-PREPAREs and
        // PREPAREs of the view it happened in. The rule to sit that view out
        // is written before anything is sent and read back at every later
        // start, so a clean stop in between does not lift it (a clean stop
        // saves only the votes of *this* run).
        self.guard.forgotten_view = abstain;
        self.guard.forgotten_commits = abstain_commits;
        let store_lost = rec.store_lost.filter(|_| !teeth::lost_store_votes_afresh());
        if let Some(lost) = store_lost {
            let through = lost.max(view);
            self.abstain_through(through, true);
            tracing::warn!(replica = %self.me, %view, through = %through,
                "this store is empty or older than the last view this replica entered \
                 (wiped, replaced or restored from a backup): it may have voted there, \
                 so it sends no pre-prepare, prepare or commit up to that view");
        }
        if votes_lost {
            self.abstain_through(view, false);
            tracing::info!(replica = %self.me, %view,
                "restarted without a record of the pre-prepares and prepares it sent; \
                 sending none in this view (commits only until the next view)");
        } else if let Some(f) = abstain.filter(|f| *f >= view) {
            tracing::info!(replica = %self.me, %view, forgotten = %f,
                "an earlier crash erased this view's pre-prepares and prepares; \
                 still sending none up to the forgotten view");
        }
        if teeth::restart_votes_in_crash_view() {
            // Broken on purpose: votes the crash erased are not ours to
            // contradict, as far as this replica knows.
            self.guard.forgotten_view = None;
        }
        if teeth::abstain_not_persisted() && !votes_lost {
            // Broken on purpose: the rule lives only as long as the run
            // that learned it (a clean stop in between lifts it).
            self.guard.forgotten_view = None;
        }
        if self.status != Status::Normal {
            // Resume waiting for the NEW-VIEW: re-send our VIEW-CHANGE soon.
            // The NEW-VIEW timer restarts once 2f+1 VIEW-CHANGEs are in again.
            self.timers.set(Timer::Retransmit, Time::ZERO);
        }
    }

    pub(super) fn restore_pre_prepare(
        &mut self,
        pp: Verified<PrePrepare>,
        batch: Batch,
        bytes: Arc<[u8]>,
    ) {
        if let Some(slot) = self.log.restored_slot(pp.seq, pp.view) {
            if slot.pre_prepare.is_none() {
                slot.pre_prepare = Some(pp);
                slot.batch = Some((Arc::new(batch), bytes));
            }
        }
    }

    /// A NEW-VIEW we accepted (or sent) before the restart: its O-set's
    /// PRE-PREPAREs are back in their slots, so the view goes on where it was.
    /// The batches come from recomputing O from its VIEW-CHANGEs.
    pub(super) fn restore_new_view(&mut self, nv: Verified<NewView>) {
        let vcs: Result<Vec<Verified<ViewChange>>, _> = nv
            .view_changes
            .iter()
            .map(|vc| self.verifier.verify::<ViewChange>(vc))
            .collect();
        if let Ok(vcs) = vcs {
            let o = self.compute_o_set(&vcs);
            let max_s = o.entries.last().map_or(o.min_s, |e| e.seq);
            self.log.new_view_ceiling = self.log.new_view_ceiling.max(max_s);
            for (entry, pp) in o.entries.into_iter().zip(&nv.pre_prepares) {
                let Ok(pp) = self.verifier.verify::<PrePrepare>(pp) else {
                    continue;
                };
                if pp.seq != entry.seq || pp.digest != entry.digest || pp.view != nv.view {
                    continue;
                }
                if pp.signer() == self.me {
                    self.guard
                        .restore(VoteKind::PrePrepare, pp.view, pp.seq, pp.digest);
                }
                if let Ok(batch) = Batch::decode(&entry.batch) {
                    self.restore_pre_prepare(pp, batch, entry.batch.into());
                }
            }
        }
        if self
            .view_change
            .latest_new_view
            .as_ref()
            .and_then(|l| NewView::decode(&l.payload).ok())
            .is_none_or(|l| l.view <= nv.view)
        {
            self.view_change.latest_new_view = Some(nv.into_signed());
        }
    }
}
