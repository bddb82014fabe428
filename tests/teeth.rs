//! Teeth (issue 4): every deliberately broken variant of the core
//! (`src/teeth.rs`, cargo feature `teeth`) is caught by a simulator campaign
//! within a bounded number of seeds, and the same campaigns are clean without
//! it. This is what shows the campaigns can find real bugs.
//!
//! Run with `cargo test --release --features teeth --test teeth`. The active
//! tooth is process-wide, so everything runs in one test, one tooth at a time.
#![cfg(feature = "teeth")]

use pbft_ledger::adversary::Kind;
use pbft_ledger::sim::{self, campaign, AdversaryChoice, SeedOutcome, SimOptions};
use pbft_ledger::teeth::{self, Tooth};
use std::time::Instant;

/// Each tooth, the campaign that must catch it (`None`: no adversary, only
/// the honest faults of the random scenarios), and the most seeds it may
/// take. Campaigns are plain unless listed in [`CRASH_ANYWHERE`].
const EXPECTED: &[(Tooth, Option<Kind>, u64)] = &[
    (Tooth::QuorumTwoF, Some(Kind::Equivocate), 100),
    (Tooth::SignersNotDeduplicated, Some(Kind::Forge), 100),
    (Tooth::RestartVotesInCrashView, None, 200),
    (Tooth::OSetNotChecked, Some(Kind::BadNewView), 200),
    (Tooth::CommitSignatureNotChecked, Some(Kind::Forge), 100),
    (Tooth::NoCapOnFutureBuffering, Some(Kind::FarFlood), 100),
    (Tooth::CheckpointFromF, Some(Kind::BadCheckpoint), 100),
    (
        Tooth::CheckpointFromFPlusOne,
        Some(Kind::BadCheckpoint),
        100,
    ),
    (Tooth::NonceNotChecked, Some(Kind::Clients), 100),
    (Tooth::EquivocationGuardOff, Some(Kind::Mutate), 200),
    (
        Tooth::ViewChangeProofNotChecked,
        Some(Kind::ForgedViewChange),
        300,
    ),
    (Tooth::ExecuteNotAtomic, None, 100),
    (Tooth::AbstainNotPersisted, None, 400),
    (Tooth::TimerResetOnAnyExecution, Some(Kind::Censor), 100),
    (Tooth::LostStoreVotesAfresh, None, 400),
    (Tooth::ProposeAtStaleSeq, Some(Kind::BadNewView), 200),
];

/// Teeth caught by a crash-anywhere campaign (crashes inside writes).
const CRASH_ANYWHERE: &[Tooth] = &[Tooth::ExecuteNotAtomic];

/// Teeth of the request timer, whose campaign runs without the proposal
/// monitor (`consensus/monitor.rs`): the monitor replaces a censoring
/// primary that leaves requests waiting with room in its pipeline before
/// the request timer matters, so with it a broken timer goes unseen.
const WITHOUT_MONITOR: &[Tooth] = &[Tooth::TimerResetOnAnyExecution];

/// Seeds run per step: a tooth's campaign stops after the first step that
/// catches it (two seeds per thread).
const CHUNK: u64 = 4;
const THREADS: usize = 2;
const FIRST_SEED: u64 = 0;

/// A tooth's campaign: its adversary, whether crashes happen anywhere, and
/// whether the proposal monitor is off.
type Campaign = (Option<Kind>, bool, bool);

fn campaign_of(tooth: Tooth, adversary: Option<Kind>) -> Campaign {
    (
        adversary,
        CRASH_ANYWHERE.contains(&tooth),
        WITHOUT_MONITOR.contains(&tooth),
    )
}

fn options((adversary, crash_anywhere, no_monitor): Campaign) -> SimOptions {
    SimOptions {
        replicas: 4,
        adversary: adversary.map(AdversaryChoice::One),
        baseline: false,
        crash_anywhere,
        no_proposal_monitor: no_monitor,
        ..SimOptions::default()
    }
}

fn name((adversary, crash_anywhere, no_monitor): Campaign) -> String {
    let mut a = adversary.map_or("none", |k| k.name()).to_string();
    if crash_anywhere {
        a.push_str("+crash-anywhere");
    }
    if no_monitor {
        a.push_str("-monitor");
    }
    a
}

/// Seeds `start..start + count`. A panic of the simulator itself (a broken
/// core can leave it inconsistent) counts as a violation of that seed.
fn run(start: u64, count: u64, opts: &SimOptions) -> campaign::Summary {
    campaign::run_jobs(count, THREADS, false, &|_| {}, &|i| {
        let seed = start + i;
        std::panic::catch_unwind(|| sim::run_seed(seed, opts)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            SeedOutcome {
                seed,
                violations: vec![format!("the simulator panicked: {msg}")],
                ..SeedOutcome::default()
            }
        })
    })
}

#[test]
fn every_tooth_is_caught_and_campaigns_are_clean_without_teeth() {
    // The core's assertions fire on purpose here (the simulator catches and
    // reports them); print panics of this thread only.
    let me = std::thread::current().id();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            default_hook(info)
        }
    }));
    let started = Instant::now();

    // Without teeth, every campaign used below is clean on its first chunk.
    teeth::set(None);
    let mut campaigns: Vec<Campaign> = EXPECTED
        .iter()
        .map(|(t, a, _)| campaign_of(*t, *a))
        .collect();
    campaigns.sort();
    campaigns.dedup();
    for adversary in &campaigns {
        let s = run(FIRST_SEED, CHUNK, &options(*adversary));
        assert_eq!(
            s.violations,
            0,
            "no tooth, adversary {}: {:?}",
            name(*adversary),
            s.failing
                .iter()
                .map(|o| (o.seed, &o.violations))
                .collect::<Vec<_>>()
        );
    }

    let mut missed = Vec::new();
    let mut caught = Vec::new();
    for &(tooth, adversary, bound) in EXPECTED {
        let t0 = Instant::now();
        teeth::set(Some(tooth));
        let adversary = campaign_of(tooth, adversary);
        let opts = options(adversary);
        let mut first: Option<SeedOutcome> = None;
        let mut start = FIRST_SEED;
        while start < FIRST_SEED + bound {
            let count = CHUNK.min(FIRST_SEED + bound - start);
            let s = run(start, count, &opts);
            if let Some(o) = s.failing.into_iter().next() {
                first = Some(o);
                break;
            }
            start += count;
        }
        teeth::set(None);
        let Some(o) = first else {
            eprintln!(
                "tooth {:<30} adversary {:<20} NOT caught in {bound} seeds",
                tooth.name(),
                name(adversary)
            );
            missed.push(tooth.name());
            continue;
        };
        // The same seed without the tooth is clean: the tooth made the difference.
        let clean = run(o.seed, 1, &opts);
        assert_eq!(
            clean.violations,
            0,
            "seed {} is not clean without tooth {}: {:?}",
            o.seed,
            tooth.name(),
            clean.failing.first().map(|f| &f.violations)
        );
        eprintln!(
            "tooth {:<30} adversary {:<20} caught by seed {} ({} seeds, {:.1}s): {}",
            tooth.name(),
            name(adversary),
            o.seed,
            o.seed - FIRST_SEED + 1,
            t0.elapsed().as_secs_f64(),
            o.violations[0].lines().next().unwrap_or_default()
        );
        caught.push(tooth);
    }
    eprintln!(
        "{} of {} teeth caught in {:.1}s",
        caught.len(),
        EXPECTED.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(missed.is_empty(), "teeth no campaign caught: {missed:?}");
    // Every tooth of the catalogue has an expected catcher.
    for (n, tooth, _) in teeth::CATALOGUE {
        assert!(
            caught.contains(tooth),
            "tooth {n} has no campaign in EXPECTED"
        );
    }
}
