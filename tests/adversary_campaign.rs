//! Byzantine campaigns (TESTING.md): every adversary of the catalogue, at
//! most f replicas under its control, 0 violations — and proof that each
//! attack really happened (the correct replicas refused what it sent), and
//! that with more than f Byzantine replicas the checker does report
//! violations (the negative control).

use pbft_ledger::adversary::{Kind, CATALOGUE};
use pbft_ledger::sim::scenario::Scenario;
use pbft_ledger::sim::{self, campaign, AdversaryChoice, SeedOutcome, SimOptions};
use std::collections::BTreeMap;
use std::sync::Mutex;

fn options(adversary: AdversaryChoice, byzantine: Option<u32>) -> SimOptions {
    SimOptions {
        replicas: 4,
        adversary: Some(adversary),
        byzantine_replicas: byzantine,
        ..SimOptions::default()
    }
}

/// What shows that an adversary's attack reached the correct replicas: a
/// refusal reason (substring) they counted, or another observable effect.
fn exercised(kind: Kind, o: &SeedOutcome) -> bool {
    let refused = |needle: &str| o.refused.keys().any(|r| r.contains(needle));
    match kind {
        Kind::Equivocate => refused("digest other than our pre-prepare") || refused("equivocation"),
        Kind::DoubleVote => refused("second digest from one signer"),
        // Replaced by a view change although blocks kept coming.
        Kind::Silent | Kind::Censor => o.honest_view > 0,
        Kind::Slow | Kind::Omit | Kind::Twins => o.txs_committed > 0,
        Kind::Mutate => o.refused.keys().any(|r| {
            r.starts_with("prepare:") || r.starts_with("commit:") || r.starts_with("checkpoint:")
        }),
        Kind::Replay => refused("outside the watermark window") || refused("older view"),
        Kind::SigReuse | Kind::Forge | Kind::SigFlood => refused("bad signature or payload"),
        Kind::BadTxs => refused("badly signed transaction"),
        Kind::BadCheckpoint => refused("checkpoint:"),
        Kind::ForgedViewChange => refused("view-change: prepared proof"),
        Kind::BadNewView => refused("new-view: O-set does not match"),
        Kind::ViewChangeStorm => refused("view-change: not newer"),
        Kind::FarFlood => refused("far-future") || refused("above the watermark"),
        Kind::Malformed => o.frames_refused > 0,
        Kind::Clients => refused("request: bad client signature"),
        // Clients asked, and the liar's answers reached them.
        Kind::LyingAnswers => o.queries > 0 && o.query_lies > 0,
        // Correct replicas held frames for it (at its slowest pace the
        // fetch pacer serves every fetch; at the others it refuses some).
        Kind::FetchNeverRead => o.outbound_peak_bytes > 0,
    }
}

/// 2,000 seeds spread round-robin over the whole catalogue (about 90 each):
/// no violation of safety, nor of liveness once honest faults stop, and
/// every attack observably reached the correct replicas.
#[test]
fn every_adversary_two_thousand_seeds() {
    let seen: Mutex<BTreeMap<Kind, (u64, u64)>> = Mutex::new(BTreeMap::new());
    let opts = options(AdversaryChoice::All, None);
    let summary = campaign::run_jobs(
        2_000,
        2,
        false,
        &|o| eprintln!("seed {}: {:?}", o.seed, o.violations),
        &|i| {
            let o = sim::run_seed(700_000 + i, &opts);
            let kind = o.adversary.expect("every seed has an adversary");
            let mut seen = seen.lock().unwrap();
            let entry = seen.entry(kind).or_default();
            entry.0 += 1;
            entry.1 += u64::from(exercised(kind, &o));
            o
        },
    );
    for line in summary.adversary_lines() {
        eprintln!("{line}");
    }
    eprintln!("{}", summary.line());
    assert_eq!(
        summary.violations,
        0,
        "failing seeds: {:?}",
        summary
            .failing
            .iter()
            .map(|o| (o.seed, o.adversary.map(|k| k.name())))
            .collect::<Vec<_>>()
    );
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), CATALOGUE.len(), "every adversary ran");
    for (kind, (seeds, hit)) in seen {
        eprintln!("{:<20} exercised in {hit} of {seeds} seeds", kind.name());
        assert!(
            hit * 4 >= seeds,
            "{} reached the correct replicas in only {hit} of {seeds} seeds",
            kind.name()
        );
    }
}

/// The negative control: two Byzantine replicas out of four (f = 1) that
/// equivocate together break agreement, and the checker says so.
#[test]
fn more_than_f_equivocators_are_caught() {
    let opts = options(AdversaryChoice::One(Kind::Equivocate), Some(2));
    let summary = campaign::run(800_000, 40, &opts, 2, false, &|_| {});
    eprintln!("{}", summary.line());
    assert!(
        summary.violations >= 20,
        "only {} of 40 seeds detected a violation",
        summary.violations
    );
    let safety = summary
        .failing
        .iter()
        .flat_map(|o| &o.violations)
        .filter(|v| v.starts_with("S1") || v.starts_with("S2"))
        .count();
    assert!(safety > 0, "no agreement violation among the failures");
}

/// The negative control over the whole catalogue: with 2 of 4 replicas
/// Byzantine, violations (safety or liveness) are found in many seeds.
#[test]
fn more_than_f_byzantine_replicas_over_all_adversaries_are_caught() {
    let opts = options(AdversaryChoice::All, Some(2));
    let summary = campaign::run(810_000, 72, &opts, 2, false, &|_| {});
    eprintln!("{}", summary.line());
    assert!(summary.violations >= 10, "{}", summary.line());
}

/// Issue 21: backups replace a primary that holds requests back (the
/// proposal monitor, `consensus/monitor.rs`), so throughput under the
/// `slow`, `silent` and `twins` adversaries keeps at least half of the same
/// seeds' without them (medians over 40 seeds, each re-run without its
/// adversary). Before the monitor: 0.16, 0.55 and 0.30; with it judging
/// by a fixed guess until it measured a round: 0.73, 0.69 and 0.48; with
/// the transport's round trips standing in for that guess and bounding the
/// round from below: 0.83, 0.78 and 0.55.
#[test]
fn a_slow_silent_or_twinned_primary_keeps_half_the_throughput() {
    for (kind, bound) in [(Kind::Slow, 0.5), (Kind::Silent, 0.5), (Kind::Twins, 0.5)] {
        let opts = SimOptions {
            baseline: true,
            ..options(AdversaryChoice::One(kind), None)
        };
        let summary = campaign::run(0, 40, &opts, 2, false, &|_| {});
        eprintln!("{}", summary.line());
        assert_eq!(summary.violations, 0);
        let ratio = summary.throughput_ratio().expect("baselines ran");
        assert!(
            ratio >= bound,
            "{}: throughput under attack {ratio:.2} of the same seeds without it",
            kind.name()
        );
    }
}

/// Twins, exhaustively for one round (32 partitions x leaders) and the
/// generator's scenarios are distinct.
#[test]
fn twins_one_round_exhaustive() {
    let scenarios: Vec<Scenario> = (0..32).map(|i| Scenario::twins(1, i)).collect();
    for (i, a) in scenarios.iter().enumerate() {
        for b in &scenarios[i + 1..] {
            assert_ne!(a.twin_rounds, b.twin_rounds);
        }
    }
    let summary = campaign::run_jobs(32, 2, false, &|_| {}, &|i| {
        sim::run_scenario(
            900_000 + i,
            Scenario::twins(1, i),
            &SimOptions {
                replicas: 4,
                ..SimOptions::default()
            },
        )
    });
    eprintln!("{}", summary.line());
    assert_eq!(summary.violations, 0);
}

/// One adversary over `seeds` seeds from `start`: no violation, and the
/// attack reached the correct replicas in most seeds.
fn one_adversary(kind: Kind, start: u64, seeds: u64) -> Vec<SeedOutcome> {
    let opts = options(AdversaryChoice::One(kind), None);
    let outcomes = Mutex::new(Vec::new());
    let summary = campaign::run_jobs(seeds, 2, false, &|_| {}, &|i| {
        let o = sim::run_seed(start + i, &opts);
        outcomes.lock().unwrap().push(o.clone());
        o
    });
    eprintln!("{}", summary.line());
    assert_eq!(
        summary.violations,
        0,
        "{:?}",
        summary
            .failing
            .iter()
            .map(|o| (o.seed, &o.violations))
            .collect::<Vec<_>>()
    );
    let outcomes = outcomes.into_inner().unwrap();
    let hit = outcomes.iter().filter(|o| exercised(kind, o)).count() as u64;
    assert!(
        hit * 2 >= seeds,
        "{} exercised in {hit} of {seeds} seeds",
        kind.name()
    );
    outcomes
}

/// Issue 17: clients that restart learn their nonce and balance from the
/// replicas' answers, one of which lies (u64::MAX - 1, u64::MAX, beyond the
/// nonce jump, zero, stale; balances inflated or zero). Combined as the
/// real client combines them (`client::next_nonce_of`, 2f+1 for a read),
/// no lie picks a nonce (C1), stalls a client (C2, L1) or is read (C3).
#[test]
fn lying_answers_pick_no_nonce() {
    let outcomes = one_adversary(Kind::LyingAnswers, 830_000, 12);
    let queries: u64 = outcomes.iter().map(|o| o.queries).sum();
    let lies: u64 = outcomes.iter().map(|o| o.query_lies).sum();
    eprintln!("queries: {queries} lies: {lies}");
    assert!(
        queries >= 12 * 5 && lies >= 12,
        "queries {queries} lies {lies}"
    );
}

/// Issue 17: a replica that keeps fetching and never reads what it is sent
/// makes the correct replicas hold frames for it — up to the transport's
/// per-peer bound and no more (S8) — and they stay live.
#[test]
fn fetch_and_never_read_is_held_within_bounds() {
    let outcomes = one_adversary(Kind::FetchNeverRead, 840_000, 8);
    let peak = outcomes.iter().map(|o| o.outbound_peak_bytes).max();
    let refused: u64 = outcomes.iter().map(|o| o.fetches_refused).sum();
    eprintln!("peak queued bytes: {peak:?} fetches refused: {refused}");
    assert!(refused > 0);
    // The bound was reached (frames dropped): without it, S8 fails.
    assert!(outcomes.iter().any(|o| o.outbound_dropped > 0));
}

/// Seeds that campaigns at fresh seeds found, each after its fix: no
/// violation, and the adversary that found it still runs there.
/// - 902995 (`mutate`, Byzantine replica 1, K = 2, L = 4): backup 3 got the
///   primary's PRE-PREPARE for s19 before the CHECKPOINT that moved its
///   window past 18 and dropped it, replica 1 withheld a valid COMMIT, and
///   the proposal monitor replaced the correct primary before the
///   primary's re-send (L3). Now a PRE-PREPARE at most one checkpoint
///   interval above the window is kept and re-fed when the window moves;
///   no view change at all.
/// - 1000163 (`twins`): a restarted client learned next nonce 5 from the
///   replicas (most lagged in view changes) while f+1 replies showed 5 used
///   by its transfer from before the restart; it signed nonce 5 again and
///   again (C2). Now a client signs above a nonce f+1 replies showed used.
#[test]
fn seeds_found_at_fresh_seeds_stay_fixed() {
    for (seed, kind, view_changes) in [
        (902_995, Kind::Mutate, Some(0)),
        (1_000_163, Kind::Twins, None),
    ] {
        let o = sim::run_seed(seed, &options(AdversaryChoice::All, None));
        assert_eq!(o.adversary, Some(kind), "seed {seed}: the scenario moved");
        assert!(o.violations.is_empty(), "seed {seed}: {:?}", o.violations);
        if let Some(v) = view_changes {
            assert_eq!(
                o.honest_view, v,
                "seed {seed}: a correct primary was replaced"
            );
        }
    }
}
