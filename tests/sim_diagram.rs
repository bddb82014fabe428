//! The space-time diagram of a simulated seed (issue 22), end to end: a
//! real seed drawn by `pbft-sim replay --html`, the page loaded in headless
//! Chromium, its arrows counted against the trace, and a screenshot saved
//! as a CI artefact (`$CARGO_TARGET_DIR/artefacts/sim-diagram.png`).
//!
//! `chromium` (Debian's package) is installed by `scripts/test.sh`; the
//! test fails and says so if it is missing.

use std::process::Command;
use std::time::Duration;

mod common;
use common::browser::{chromium, screenshot};
use common::{run_bounded, text};

const SIM: &str = env!("CARGO_BIN_EXE_pbft-sim");

/// The seed drawn: `mutate` (the Byzantine r1 re-signs messages with
/// view, seq or digest nudged: arrows marked as rewritten), 15% loss (drops)
/// and a crash of r1 (a kill -9 at 3158 ms, back at 6085 ms).
const REPLAY: [&str; 5] = ["replay", "--seed", "8", "--adversary", "mutate"];

fn sim(args: &[&str]) -> (String, String) {
    let out = run_bounded(Command::new(SIM).args(args), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "pbft-sim {args:?}: {}",
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// A verbose trace line's virtual time in ms, as printed ("   1.043s ...").
fn line_ms(line: &str) -> Option<u64> {
    let t = line.trim_start().split_once("s ")?.0;
    let (s, ms) = t.split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1000 + ms.parse::<u64>().ok()?)
}

/// The trace's messages that reached a live replica (every `A -> B` line:
/// the simulator logs a delivery only when the receiver is up).
fn delivered_to_replicas(trace: &[(u64, String)], from: u64, to: u64) -> usize {
    trace
        .iter()
        .filter(|(t, l)| (from..to).contains(t) && l.contains(" -> "))
        .count()
}

/// Setup: seed 8 under `mutate` (loss, the Byzantine r1 rewriting
/// messages, then crashed). The verbose trace picks a window
/// around the crash whose edges no event is within a millisecond of (the
/// trace prints times rounded to the ms, the cut is exact). Expect: the
/// page drawn for that window (the crash and what came before), loaded in headless Chromium, holds as many
/// arrows into replica lanes that arrived (taken in or refused by the
/// receiver) as the trace has deliveries in the window; it also draws the
/// dropped ones, marks adversary-made ones and the crash band; a
/// screenshot is saved.
#[test]
fn the_diagram_of_a_seed_draws_every_delivered_message_of_its_window() {
    let mut args = REPLAY.to_vec();
    args.push("--verbose");
    let (stdout, _) = sim(&args);
    let trace: Vec<(u64, String)> = stdout
        .lines()
        .filter_map(|l| Some((line_ms(l)?, l.to_string())))
        .collect();
    assert!(trace.len() > 1_000, "a short trace: {}", trace.len());
    let busy = |ms: u64| trace.iter().any(|(t, _)| *t + 1 >= ms && *t <= ms);
    let mut from = 2_700;
    while busy(from) {
        from += 1;
    }
    let mut to = from + 900;
    while busy(to) {
        to += 1;
    }
    let expected = delivered_to_replicas(&trace, from, to);
    assert!(expected > 50, "window {from}..{to} too quiet: {expected}");

    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("seed-8.html");
    let mut args = REPLAY.to_vec();
    let (f, t) = (from.to_string(), to.to_string());
    let path = page.to_str().unwrap();
    args.extend(["--html", path, "--from-ms", &f, "--to-ms", &t]);
    let (_, stderr) = sim(&args);
    assert!(stderr.contains("diagram: "), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));

    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{path}");
    let dom = chromium(
        profile.path(),
        &["--virtual-time-budget=5000", "--dump-dom", url.as_str()],
    );
    let arrows: Vec<&str> = dom
        .split("<line class=\"arrow ")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    let arrived = arrows
        .iter()
        .filter(|c| c.contains("to-r") && (c.contains("f-delivered") || c.contains("f-refused")))
        .count();
    assert_eq!(
        arrived, expected,
        "arrows into replica lanes vs deliveries in the trace, window {from}..{to} ms"
    );
    let drawn = format!("data-arrows=\"{}\"", arrows.len());
    assert!(
        dom.contains(&drawn),
        "the page's own count differs: {drawn}"
    );
    assert!(
        arrows.iter().any(|c| c.contains("f-dropped")),
        "no drop drawn"
    );
    assert!(
        arrows.iter().any(|c| c.contains("f-receiver-down")),
        "no message to the crashed replica drawn"
    );
    assert!(
        arrows
            .iter()
            .any(|c| c.contains("o-rewritten") || c.contains("o-forged")),
        "no adversary-made message marked"
    );
    assert!(dom.contains("CRASH (kill -9)"), "no crash band");

    let shot = screenshot(profile.path(), &url, "1100,1400", 5000, "sim-diagram.png");
    eprintln!("diagram screenshot: {}", shot.display());
}
