//! Faults of replicas: scheduled crashes (power loss, `kill -9`), clean
//! stops, disk wipes, crashes armed inside a write (torn or applied), and
//! restarts from what the store kept. Restarts also judge L2 (a primary
//! down long with no view change).

use super::*;

impl Sim {
    pub(super) fn schedule_faults(&mut self) {
        for c in self.scenario.crashes.clone() {
            self.push(
                c.at,
                Event::Crash {
                    replica: c.replica,
                    how: c.how,
                    in_write: c.in_write,
                    down_ms: c.down_ms,
                },
            );
            if c.in_write.is_some() {
                // Restarted `down_ms` after the write it dies in.
                continue;
            }
            if let Some(ms) = c.down_ms {
                let back = c.at.plus_millis(ms).min(self.scenario.faults_end);
                self.push(back, Event::Restart(c.replica));
            }
        }
        self.push(self.scenario.faults_end, Event::FaultsEnd);
    }

    pub(super) fn restart(&mut self, r: ReplicaId) {
        if self.nodes[r.index()].is_some() {
            return;
        }
        if let Some((since, view_then)) = self.down_since.remove(&r) {
            // L2: the primary was down long, the others were all up and
            // connected, a request stalled meanwhile, yet no view change.
            let timeout = self.scenario.request_timeout_ms;
            let long = self.now.saturating_sub_millis(since) > 20 * timeout;
            let was_primary = self.genesis.cluster.primary(crate::types::View(view_then)) == r;
            let now = self.now;
            let overlapping_outage = self
                .outages
                .iter()
                .any(|(o, down, up)| *o != r && *down < now && *up > since);
            let others_fine = self.down_since.is_empty()
                && !overlapping_outage
                && !self
                    .scenario
                    .partitions
                    .iter()
                    .any(|p| p.start < self.now && p.end > since);
            // A Byzantine replica that never reads (seeds 1100525, 1100943)
            // or may withhold its VIEW-CHANGE (seed 1402656) takes no part
            // in a view change: with it and the crashed primary, more than
            // f replicas are out and PBFT promises no progress.
            let absent = if self
                .scenario
                .adversary
                .is_some_and(|k| k.may_withhold_view_changes())
            {
                self.byzantine.len()
            } else {
                0
            };
            let quorum_left = absent < self.genesis.cluster.f() as usize;
            let stalled = self.last_stall.is_some_and(|t| t > since);
            if long
                && was_primary
                && others_fine
                && quorum_left
                && stalled
                && self.max_view == view_then
            {
                self.primary_down_long = true;
            }
            self.outages.push((r, since, self.now));
        }
        self.record(TraceEvent::Restart { replica: r });
        self.draw_item(|t| diagram::Item::Restart {
            at_us: t.0,
            lane: r.index(),
        });
        self.stores[r.index()].reopen();
        // New process, new connections: its round trips are measured anew.
        self.link_rtt_us.retain(|(slot, _), _| *slot != r.index());
        self.probe_generation[r.index()] += 1;
        self.start_probes(r);
        self.armed_down.remove(&r);
        let died_applied = self.died_applied.remove(&r);
        match Node::open_recorded(
            &self.genesis,
            r,
            self.keys[r.index()].clone(),
            self.stores[r.index()].clone(),
            Box::new(self.view_records[r.index()].clone()),
        ) {
            Ok(mut node) => {
                node.check_invariants_always();
                node.watch_proposals(self.scenario.proposal_monitor);
                let seen = self.checker.chain(r).len() as u64;
                if died_applied {
                    // The write it died in survived: the blocks it held
                    // (one synced write may group several) were committed
                    // unseen and are judged now (agreement, validity).
                    for height in seen + 1..=node.height() {
                        self.unseen_blocks_recovered += 1;
                        match node.committed_block(height) {
                            Ok(Some(block)) => self.checker.on_commit(r, &block),
                            other => self.checker.report(format!(
                                "S3 durability: {r:?} restarted at height {} but cannot read block {height}: {other:?}",
                                node.height()
                            )),
                        }
                    }
                }
                self.checker
                    .check_supply(r, node.bank().total_supply(), self.supply);
                self.checker
                    .on_restart(r, node.height(), node.tip().block_hash);
                self.log(|| format!("RESTART {r:?} at height {}", node.height()));
                self.nodes[r.index()] = Some(node);
                self.deliver_to_slot(r.index(), NodeInput::Tick);
            }
            Err(e) => self.checker.report(format!(
                "S3 durability: {r:?} failed to reopen its store: {e}"
            )),
        }
    }

    /// Takes replica `r` down between two inputs, the way `how` says.
    pub(super) fn stop(&mut self, r: ReplicaId, how: scenario::Stop) {
        let Some(mut node) = self.nodes[r.index()].take() else {
            return;
        };
        match how {
            scenario::Stop::PowerLoss => {}
            scenario::Stop::Wipe => {
                // A new, empty disk: the replica restarts from genesis and
                // catches up; what it committed before is judged no more.
                self.stores[r.index()] = MemoryStore::new();
                self.checker.on_wipe(r);
                self.died_applied.remove(&r);
                self.wiped += 1;
            }
            scenario::Stop::Kill => {
                // The kernel keeps the unsynced blocks: the replica may come
                // back above what it was seen to commit.
                self.stores[r.index()].keep_unsynced();
                self.died_applied.insert(r);
            }
            scenario::Stop::Clean => {
                // As the runtime on SIGTERM: flush what was ingested, save
                // this view's votes; nothing more is sent.
                if let Err(e) = node.save_votes() {
                    match self.stores[r.index()].crashed() {
                        // A crash armed in its writes came during the stop:
                        // it died in that write, as it could for real.
                        Some(applied) => {
                            self.write_crashes += 1;
                            if applied {
                                self.write_crashes_applied += 1;
                            }
                            self.log(|| format!("CRASH IN CLEAN STOP {r:?} ({e})"));
                            if let Some(Some(down)) = self.armed_down.remove(&r) {
                                self.push(self.now.plus_millis(down), Event::Restart(r));
                            }
                        }
                        None => self
                            .checker
                            .report(format!("{r:?} failed to stop cleanly: {e}")),
                    }
                }
                let committed: Vec<_> = node.drain_committed().collect();
                for block in &committed {
                    self.checker.on_commit(r, block);
                }
                // Blocks whose events waited for a sync are durable now.
                self.died_applied.insert(r);
            }
        }
        drop(node);
        let what = match how {
            scenario::Stop::PowerLoss => "CRASH (power loss)",
            scenario::Stop::Kill => "CRASH (kill -9)",
            scenario::Stop::Clean => "CLEAN STOP",
            scenario::Stop::Wipe => "CRASH AND DISK WIPED",
        };
        self.went_down(r, what.into());
    }

    /// Replica `r` was taken down (its node is already gone).
    pub(super) fn went_down(&mut self, r: ReplicaId, what: String) {
        self.record(TraceEvent::Down { replica: r });
        if self.drawing.is_some() {
            let what = what.clone();
            self.draw_item(|t| diagram::Item::Down {
                at_us: t.0,
                lane: r.index(),
                what,
            });
        }
        self.log(|| format!("{what} {r:?}"));
        self.wake_at[r.index()] = None;
        self.down_since.insert(r, (self.now, self.max_view));
    }

    /// Replica `r` died inside a write (an armed crash): what it committed
    /// before that write is durable and judged; the rest of the input —
    /// messages, replies — is lost with the process.
    pub(super) fn died_in_write(&mut self, r: ReplicaId, applied: bool, error: &str) {
        let mut node = self.nodes[r.index()].take().expect("caller checked");
        let committed: Vec<_> = node.drain_committed().collect();
        drop(node);
        for block in &committed {
            self.checker.on_commit(r, block);
        }
        self.write_crashes += 1;
        if applied {
            self.write_crashes_applied += 1;
            self.died_applied.insert(r);
        }
        self.went_down(r, format!("CRASH IN WRITE ({error})"));
        if let Some(Some(down)) = self.armed_down.remove(&r) {
            self.push(self.now.plus_millis(down), Event::Restart(r));
        }
    }

    /// Arms a crash inside replica `r`'s `w.nth` write (if it is up): it
    /// dies in that write and stays down `down_ms` (if any) after it.
    pub(super) fn arm_crash(
        &mut self,
        r: ReplicaId,
        w: scenario::WriteCrash,
        down_ms: Option<u64>,
    ) {
        if self.nodes[r.index()].is_some() {
            self.record(TraceEvent::CrashArmed {
                replica: r,
                nth: w.nth,
                applied: w.applied,
            });
            self.log(|| {
                let how = if w.applied { "applied" } else { "torn" };
                format!("CRASH ARMED {r:?}: dies in its write #{} ({how})", w.nth)
            });
            self.stores[r.index()].arm_crash(w.nth, w.applied);
            self.armed_down.insert(r, down_ms);
        }
    }

    /// The faults stop: the network is reliable, crashes armed in writes
    /// are disarmed, every replica down restarts, and the clients send
    /// their tail of transfers.
    pub(super) fn faults_end(&mut self) {
        self.record(TraceEvent::FaultsEnd);
        self.draw_item(|t| diagram::Item::FaultsEnd { at_us: t.0 });
        self.log(|| "FAULTS END: network reliable, all replicas restart".into());
        self.faults_active = false;
        for store in &self.stores {
            store.disarm();
        }
        self.armed_down.clear();
        for r in 0..self.scenario.replicas {
            if self.nodes[r as usize].is_none() {
                self.restart(ReplicaId(r));
            }
        }
        for c in &mut self.clients {
            c.target += self.scenario.tail_txs_per_client;
        }
        for c in 0..self.clients.len() {
            self.push(self.now, Event::ClientTick(c));
        }
    }
}
